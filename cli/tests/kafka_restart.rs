//! `surveil run --kafka` killed with SIGKILL four times while it consumes, then started again
//! with the same command: the alerts topic, deduplicated by key as a compacted topic keeps it,
//! ends with exactly the alerts of an uninterrupted run; with checkpoints, so does the output
//! folder. Against a real tansu broker on 127.0.0.1.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use surveil::kafka::test_broker::TestBroker;

fn surveil() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_surveil"));
    command.stdout(Stdio::null()).stderr(Stdio::piped());
    command
}

fn succeed(command: &mut Command) {
    let output = command.output().expect("surveil runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

/// `surveil run` over the topic to its end with the configuration `config`, alerts to
/// `alerts`, positions for `group`.
fn run_command(broker: &TestBroker, config: &Path, group: &str, alerts: &str, out: &Path) -> Command {
    let mut command = surveil();
    command
        .args(["run", "--quiet", "--workers", "2", "--kafka", "day", "--to-end"])
        .args(["--brokers", broker.address(), "--kafka-alerts", alerts, "--kafka-group", group])
        .arg("--config")
        .arg(config)
        .arg("--out")
        .arg(out);
    command
}

fn alert_ids(out: &Path) -> BTreeSet<String> {
    std::fs::read_to_string(out.join("alerts.jsonl"))
        .expect("alerts.jsonl")
        .lines()
        .map(|line| {
            let alert: serde_json::Value = serde_json::from_str(line).expect("an alert");
            alert["id"].as_str().unwrap_or_default().to_string()
        })
        .collect()
}

/// Starts `command` and kills it with SIGKILL after `wait`, unless it has ended by then.
fn kill_after(command: &mut Command, wait: Duration) {
    let mut child = command.spawn().expect("surveil starts");
    std::thread::sleep(wait);
    if child.try_wait().expect("status").is_none() {
        child.kill().expect("SIGKILL");
    }
    child.wait().expect("killed");
}

/// A generated day of 150,000 events (`seed`) in `work/day`, produced to the topic `day` of 4
/// partitions, an alerts topic for the uninterrupted run and one for the interrupted runs, and
/// the uninterrupted run into `work/whole`: the day's folder and how long that run took.
fn day_on_a_topic(broker: &TestBroker, work: &Path, seed: u64, interrupted_alerts: &str) -> (PathBuf, Duration) {
    let day = work.join("day");
    succeed(surveil().args(["generate", "--events", "150000", "--seed", &seed.to_string(), "--out"]).arg(&day));
    succeed(
        surveil()
            .args(["kafka", "produce", "--topic", "day", "--partitions", "4", "--brokers", broker.address()])
            .arg("--config")
            .arg(day.join("surveil.toml"))
            .arg(day.join("events.csv")),
    );
    for topic in ["alerts-whole", interrupted_alerts] {
        succeed(surveil().args(["kafka", "create-topic", topic, "--partitions", "1", "--brokers", broker.address()]));
    }
    let started = Instant::now();
    succeed(&mut run_command(broker, &day.join("surveil.toml"), "whole", "alerts-whole", &work.join("whole")));
    (day, started.elapsed())
}

#[test]
fn killed_runs_restarted_end_with_the_alerts_of_an_uninterrupted_run() {
    let broker = TestBroker::start().unwrap_or_else(|e| panic!("{e}"));
    let work = tempfile::tempdir().expect("temp dir");
    // The uninterrupted run, and how long it takes.
    let (day, duration) = day_on_a_topic(&broker, work.path(), 7, "alerts-crashed");
    let whole = work.path().join("whole");
    let expected = alert_ids(&whole);
    assert!(expected.len() > 20, "a day with breaches: {} alerts", expected.len());

    // Killed at several points of that time, then run to the end.
    let out = work.path().join("crashed");
    let mut published_by_killed_runs = 0;
    for share in [0.3, 0.6, 0.75, 0.85] {
        kill_after(
            &mut run_command(&broker, &day.join("surveil.toml"), "crashed", "alerts-crashed", &out),
            duration.mul_f64(share),
        );
        let so_far = broker.read_topic("alerts-crashed", 0).expect("the alerts topic").len();
        published_by_killed_runs = so_far;
        eprintln!("killed at {:.0}% of the run: {so_far} alert records on the topic so far", share * 100.0);
    }
    // On a machine slower than when the uninterrupted run was timed, every kill may land before
    // the first alert: one more run is then killed as soon as it has published one.
    if published_by_killed_runs == 0 {
        let mut child = run_command(&broker, &day.join("surveil.toml"), "crashed", "alerts-crashed", &out)
            .spawn()
            .expect("surveil starts");
        let started = Instant::now();
        while published_by_killed_runs == 0 && child.try_wait().expect("status").is_none() {
            assert!(started.elapsed() < Duration::from_secs(300), "no alert published within 5 minutes");
            std::thread::sleep(Duration::from_millis(100));
            published_by_killed_runs = broker.read_topic("alerts-crashed", 0).expect("the alerts topic").len();
        }
        if child.try_wait().expect("status").is_none() {
            child.kill().expect("SIGKILL");
        }
        child.wait().expect("killed");
        eprintln!("killed after its first alerts: {published_by_killed_runs} alert records on the topic so far");
    }
    succeed(&mut run_command(&broker, &day.join("surveil.toml"), "crashed", "alerts-crashed", &out));
    // A killed run that got as far as its end committed its positions (the kill may land
    // after the commit): then the last run has nothing left to read.
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).expect("summary")).expect("json");
    match summary["events"].as_u64() {
        Some(0) => assert!(alert_ids(&out).is_empty(), "a run with nothing to read raises nothing"),
        _ => assert_eq!(alert_ids(&out), expected, "the last run's own outputs"),
    }

    // The topic holds every alert of the uninterrupted run (same ids: the same offsets), and
    // nothing else; a compacted topic keeps one record per key.
    let published = broker.read_topic("alerts-crashed", expected.len()).expect("the alerts topic");
    let mut per_key: BTreeMap<String, usize> = BTreeMap::new();
    for message in &published {
        *per_key.entry(message.key.clone()).or_default() += 1;
    }
    let keys: BTreeSet<String> = per_key.keys().cloned().collect();
    assert_eq!(keys, expected, "alerts missing or extra after the restarts");
    // Some killed run must have published before it died, or the test tests nothing. Whether
    // that left duplicates depends on where the kill landed: after a commit, the next run
    // resumes past everything published, and there are none.
    assert!(published_by_killed_runs > 0, "no killed run got as far as publishing alerts: the test tests nothing");
    let duplicates = published.len() - keys.len();
    eprintln!(
        "{} alerts; the raw topic holds {} records: {duplicates} duplicates from the killed runs",
        expected.len(),
        published.len()
    );
    // And a record per alert of the uninterrupted run's own topic: no duplicates without a crash.
    let whole_topic = broker.read_topic("alerts-whole", expected.len()).expect("the alerts topic");
    assert_eq!(whole_topic.len(), expected.len());
}

/// The alerts of an output folder without the wall clock (`detected_at`), in file order.
fn alerts_without_clock(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("alerts.jsonl"))
        .expect("alerts.jsonl")
        .lines()
        .map(|line| {
            let mut alert: serde_json::Value = serde_json::from_str(line).expect("an alert");
            alert.as_object_mut().map(|fields| fields.remove("detected_at"));
            alert
        })
        .collect()
}

/// The same with checkpoints (`[checkpoint]`, every 20 ms): killed with SIGKILL four times,
/// then run again, the output folder ends as an uninterrupted run's, alert for alert in the
/// same order, since each restart resumes at the checkpoint's positions and cuts the partial
/// outputs back to it.
#[test]
fn killed_runs_with_checkpoints_end_with_the_output_folder_of_an_uninterrupted_run() {
    let broker = TestBroker::start().unwrap_or_else(|e| panic!("{e}"));
    let work = tempfile::tempdir().expect("temp dir");
    let (day, duration) = day_on_a_topic(&broker, work.path(), 3, "alerts-checkpointed");
    let whole = work.path().join("whole");
    let expected = alerts_without_clock(&whole);
    assert!(expected.len() > 20, "a day with breaches: {} alerts", expected.len());

    let config = std::fs::read_to_string(day.join("surveil.toml")).expect("the day's configuration");
    std::fs::write(
        day.join("checkpointed.toml"),
        format!("{config}\n[checkpoint]\ndir = \"state\"\ninterval = \"20ms\"\n"),
    )
    .expect("configuration");
    let command = || {
        run_command(
            &broker,
            &day.join("checkpointed.toml"),
            "checkpointed",
            "alerts-checkpointed",
            &work.path().join("out"),
        )
    };
    let mut left_a_checkpoint = false;
    for share in [0.3, 0.6, 0.75, 0.85] {
        kill_after(&mut command(), duration.mul_f64(share));
        left_a_checkpoint |= day.join("state").join("checkpoint.json").exists();
    }
    succeed(&mut command());
    let out = work.path().join("out");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).expect("summary")).expect("json");
    eprintln!("the last run: {} events, checkpoints {}", summary["events"], summary["checkpoints"]);
    // A killed run that got as far as its end committed its outputs and positions: then the
    // last run starts afresh with nothing left to read.
    match summary["events"].as_u64() {
        Some(0) => assert!(alerts_without_clock(&out).is_empty(), "a run with nothing to read raises nothing"),
        _ => assert_eq!(alerts_without_clock(&out), expected, "the resumed outputs"),
    }
    assert!(left_a_checkpoint, "no killed run left a checkpoint: the test tests nothing");
}
