//! Checkpoints and recovery with real processes: a replay of the bundled day killed with
//! SIGKILL at ten random points (one and two workers), resumed each time with the same
//! command, ends with the outputs of a run that was never interrupted, byte for byte but for
//! the wall-clock `detected_at`; a checkpoint of another job is refused with a clear message.

#[path = "../../tests/common/endpoint.rs"]
mod endpoint;
#[path = "../../tests/common/influx.rs"]
mod influx;
mod runs;

use runs::{SAME_BYTES, start, start_on, stderr, summary, surveil, two_days, wait, without_wall_clock};

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// No run here takes anywhere near this long; a hang fails the test instead of the suite.
const WATCHDOG: Duration = Duration::from_secs(300);

/// A generated day of `events` events in a folder of its own: (the folder, the day).
fn generated_day(events: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let day = dir.path().join("day");
    let status = surveil().args(["generate", "--events", events, "--out"]).arg(&day).status().expect("spawn");
    assert!(status.success());
    (dir, day)
}

/// Waits for the uninterrupted run `child`, which must succeed; returns how long it took.
fn reference_run(child: std::process::Child) -> Duration {
    let started = Instant::now();
    let output = wait(child, WATCHDOG, "reference run");
    let full = started.elapsed();
    assert!(output.status.success(), "reference run: {}", stderr(&output));
    full
}

/// The bundled day (the generator's defaults) with a few bad lines spread through it, so that
/// dead letters are reconciled too.
fn bundled_day() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let day = dir.path().join("day");
    let status = surveil().args(["generate", "--out"]).arg(&day).status().expect("spawn");
    assert!(status.success());
    insert_bad_lines(&day.join("events.csv"), 6);
    (dir, day)
}

/// Spreads `count` bad lines evenly through the file at `path`.
fn insert_bad_lines(path: &Path, count: usize) {
    let text = std::fs::read_to_string(path).expect("read");
    let mut lines: Vec<&str> = text.lines().collect();
    let step = lines.len() / (count + 1);
    for i in 1..=count {
        lines.insert(i * step, "not,a,valid,line");
    }
    std::fs::write(path, lines.join("\n") + "\n").expect("write");
}

/// Asserts that `out` holds the outputs of `reference` (and the same summary counts); returns
/// `out`'s summary.
fn assert_same_outputs(reference: &Path, out: &Path, when: &str) -> serde_json::Value {
    for name in SAME_BYTES {
        assert_eq!(reference.join(name).exists(), out.join(name).exists(), "{name}");
        if !reference.join(name).exists() {
            continue;
        }
        let (expected, got) = (without_wall_clock(&reference.join(name)), without_wall_clock(&out.join(name)));
        if expected != got {
            let (e, g) = (expected.as_str(), got.as_str());
            let first = e.lines().zip(g.lines()).position(|(a, b)| a != b);
            let line = |text: &str, at: Option<usize>| at.and_then(|i| text.lines().nth(i)).unwrap_or("").to_string();
            panic!(
                "{name} differs {when} ({} and {} bytes); first differing line {first:?}:\n{}\n{}",
                expected.len(),
                got.len(),
                line(e, first),
                line(g, first)
            );
        }
    }
    let (expected, got) = (summary(reference), summary(out));
    let fields =
        ["events", "events_by_kind", "bytes", "lines", "alerts", "alerts_by_rule", "dead_letters", "late_events"];
    for field in fields.into_iter().chain(["complete"]) {
        assert_eq!(expected[field], got[field], "summary's {field} {when}");
    }
    got
}

/// A small deterministic generator for the kill points.
struct Lcg(u64);

impl Lcg {
    fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Starts runs with `start` and kills each with SIGKILL somewhere in it (a run uninterrupted
/// takes `full`), until `kills` runs were killed and `after_a_checkpoint` of the kills came
/// after a checkpoint (where the first checkpoint lands depends on the machine's speed; fails
/// when three times `kills` kills were not enough); a run that finishes first is complete, and
/// the next starts over (`completed` is called then). Returns the checkpoint left after each
/// kill (null when there was none).
fn kill_at_random_points(
    start: &dyn Fn() -> std::process::Child,
    (kills, after_a_checkpoint): (usize, usize),
    full: Duration,
    seed: u64,
    checkpoints: &Path,
    completed: &dyn Fn(),
) -> Vec<serde_json::Value> {
    let mut random = Lcg(seed);
    let mut seen: Vec<serde_json::Value> = Vec::new();
    let enough = |seen: &[serde_json::Value]| {
        seen.len() >= kills && seen.iter().filter(|c| !c.is_null()).count() >= after_a_checkpoint
    };
    while !enough(&seen) && seen.len() < 3 * kills {
        let mut child = start();
        // Somewhere in the run: a resumed run reads the day again (the replay horizon is a day),
        // so each attempt takes about as long as the first.
        let delay = full.mul_f64(0.1 + 0.8 * random.unit());
        let begun = Instant::now();
        while begun.elapsed() < delay && child.try_wait().expect("wait").is_none() {
            std::thread::sleep(Duration::from_millis(5));
        }
        if child.try_wait().expect("wait").is_some() {
            // It finished first: the run is complete and starts over next time.
            let output = child.wait_with_output().expect("output");
            assert!(output.status.success(), "{}", stderr(&output));
            completed();
            continue;
        }
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        let checkpoint = std::fs::read_to_string(checkpoints.join("checkpoint.json"))
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
        seen.push(checkpoint);
    }
    let after = seen.iter().filter(|c| !c.is_null()).count();
    assert!(after >= after_a_checkpoint, "only {after} of {} kills came after a checkpoint", seen.len());
    seen
}

/// Runs `last` after the kills that left `seen`: it ends with the outputs of the uninterrupted
/// run in `reference`, having resumed when the last kill left a checkpoint. Returns its summary.
fn last_run_ends_as_the_reference(
    last: std::process::Child,
    seen: &[serde_json::Value],
    reference: &Path,
    out: &Path,
) -> serde_json::Value {
    let must_resume = !seen.last().is_some_and(serde_json::Value::is_null);
    let output = wait(last, WATCHDOG, "last run");
    assert!(output.status.success(), "last run: {}", stderr(&output));
    let got = assert_same_outputs(reference, out, "after the kills");
    assert!(!must_resume || got["checkpoints"]["resumes"].as_u64().unwrap_or(0) >= 1, "{}", got["checkpoints"]);
    got
}

fn killed_ten_times_then_resumed(workers: &str, seed: u64) {
    let (dir, day) = bundled_day();
    let reference = dir.path().join("reference");
    let full = reference_run(start(&day, &reference, &["--workers", workers]));

    let out = dir.path().join("resumed");
    let checkpoints = dir.path().join("checkpoints");
    let args =
        ["--workers", workers, "--checkpoint", checkpoints.to_str().expect("path"), "--checkpoint-interval", "50ms"];
    let seen = kill_at_random_points(&|| start(&day, &out, &args), (10, 5), full, seed, &checkpoints, &|| {});
    let kills = seen.len();
    // Stopped with SIGTERM once it has checkpointed: it drains, keeps its checkpoint and does
    // not commit; what drains after the stop is not checkpointed, so nothing read later is lost.
    std::fs::remove_file(out.join("summary.json")).ok();
    let child = start(&day, &out, &args);
    std::thread::sleep(full.mul_f64(0.5));
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(status.success());
    let output = wait(child, WATCHDOG, "stopped run");
    assert!(matches!(output.status.code(), Some(0 | 143)), "stopped run: {}", stderr(&output));
    // A resumed run that finished before the stop committed its outputs and said it resumed;
    // the last run then starts afresh.
    let mut resumed_before_the_last_run = false;
    if output.status.code() == Some(143) {
        assert!(!out.join("summary.json").exists(), "a stopped run with a checkpoint commits nothing");
        assert!(checkpoints.join("checkpoint.json").exists());
    } else {
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).expect("summary")).expect("json");
        resumed_before_the_last_run = summary["checkpoints"]["resumes"].as_u64().unwrap_or(0) >= 1;
    }
    let output = wait(start(&day, &out, &args), WATCHDOG, "last run");
    assert!(output.status.success(), "last run: {}", stderr(&output));
    assert!(!checkpoints.join("checkpoint.json").exists(), "a finished run removes its checkpoint");

    let got = assert_same_outputs(&reference, &out, &format!("after {kills} kills"));
    assert!(got["dead_letters"].as_u64().unwrap_or(0) >= 6);
    assert!(
        resumed_before_the_last_run || got["checkpoints"]["resumes"].as_u64().unwrap_or(0) >= 1,
        "{}",
        got["checkpoints"]
    );
    // The audit trail is one chain through every resume, and says where each run resumed.
    let audit = std::fs::read_to_string(out.join("audit.jsonl")).expect("audit");
    let resumed = audit.lines().filter(|l| l.contains("\"kind\":\"run_resumed\"")).count();
    assert!(resumed >= 1 || resumed_before_the_last_run, "no run_resumed record");
    let verify = surveil().args(["audit", "verify"]).arg(&out).output().expect("verify");
    assert!(verify.status.success(), "audit verify: {}", stderr(&verify));
}

#[test]
fn one_worker_killed_ten_times_ends_with_the_same_outputs() {
    killed_ten_times_then_resumed("1", 7);
}

#[test]
fn two_workers_killed_ten_times_end_with_the_same_outputs() {
    killed_ten_times_then_resumed("2", 11);
}

#[test]
fn a_checkpoint_of_another_job_is_refused() {
    let (dir, day) = generated_day("200000");
    let out = dir.path().join("out");
    let checkpoints = dir.path().join("checkpoints");
    let cp = checkpoints.to_str().expect("path");
    // Killed after its first checkpoint.
    let mut child = start(&day, &out, &["--checkpoint", cp, "--checkpoint-interval", "1ms"]);
    let begun = Instant::now();
    while !checkpoints.join("checkpoint.json").exists() {
        assert!(begun.elapsed() < WATCHDOG, "no checkpoint written");
        if child.try_wait().expect("wait").is_some() {
            panic!("the run ended before its first checkpoint");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    // Another configuration: refused, saying so, and nothing is touched.
    let other = day.join("other.toml");
    let config = std::fs::read_to_string(day.join("surveil.toml")).expect("config");
    assert!(config.contains("close = \"16:00\""));
    std::fs::write(&other, config.replace("close = \"16:00\"", "close = \"15:30\"")).expect("write");
    let output = surveil()
        .args(["run", "--quiet", "--config"])
        .arg(&other)
        .arg("--out")
        .arg(&out)
        .args(["--checkpoint", cp])
        .arg(day.join("events.csv"))
        .output()
        .expect("run");
    let message = stderr(&output);
    assert!(!output.status.success());
    assert!(message.contains("was written by a different job: the configuration differs"), "{message}");
    assert!(message.contains("remove it"), "{message}");
    // Another input: refused, naming the inputs.
    let copy = dir.path().join("copy.csv");
    std::fs::copy(day.join("events.csv"), &copy).expect("copy");
    let output = surveil()
        .args(["run", "--quiet", "--config"])
        .arg(day.join("surveil.toml"))
        .arg("--out")
        .arg(&out)
        .args(["--checkpoint", cp])
        .arg(&copy)
        .output()
        .expect("run");
    let message = stderr(&output);
    assert!(!output.status.success());
    assert!(message.contains("its inputs were"), "{message}");
    // A checkpoint from another version of the layout: refused.
    let text = std::fs::read_to_string(checkpoints.join("checkpoint.json")).expect("checkpoint");
    std::fs::write(checkpoints.join("checkpoint.json"), text.replacen("\"layout\":1", "\"layout\":99", 1))
        .expect("write");
    let output = wait(start(&day, &out, &["--checkpoint", cp]), WATCHDOG, "layout");
    let message = stderr(&output);
    assert!(!output.status.success());
    assert!(message.contains("layout 99"), "{message}");
    // Removed, the run starts over and completes.
    std::fs::remove_file(checkpoints.join("checkpoint.json")).expect("remove");
    let output = wait(start(&day, &out, &["--checkpoint", cp]), WATCHDOG, "fresh");
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(summary(&out)["complete"].as_bool().unwrap_or(false));
}

/// Two trading days two days apart in one file: a checkpoint on the second day resumes past
/// the first (the replay horizon is a day), and the outputs are still those of an
/// uninterrupted run, the detectors that read the order book included: orders still open at
/// the end of the first day expire then (`sessions.expire_orders`), so no book state outlives
/// the horizon.
#[test]
fn a_resume_on_the_second_day_skips_the_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let day = two_days(dir.path(), 300_000);
    let reference = dir.path().join("reference");
    let output = wait(start(&day, &reference, &["--workers", "2"]), WATCHDOG, "reference run");
    assert!(output.status.success(), "reference run: {}", stderr(&output));

    let out = dir.path().join("resumed");
    let checkpoints = dir.path().join("checkpoints");
    let args = ["--workers", "2", "--checkpoint", checkpoints.to_str().expect("path"), "--checkpoint-interval", "20ms"];
    // Killed once a checkpoint resumes past the start of the file.
    let mut child = start(&day, &out, &args);
    let skips = |text: &str| -> Option<u64> {
        let checkpoint: serde_json::Value = serde_json::from_str(text).ok()?;
        let points = checkpoint["resume"].as_array()?;
        let skipped = points.iter().any(|p| p["offset"].as_u64().unwrap_or(0) > p["start"].as_u64().unwrap_or(0));
        skipped.then(|| checkpoint["writer"]["watermark"].as_u64()).flatten()
    };
    let watermark = loop {
        if let Some(w) = std::fs::read_to_string(checkpoints.join("checkpoint.json")).ok().as_deref().and_then(skips) {
            break w;
        }
        if let Some(status) = child.try_wait().expect("wait") {
            panic!("the run ended ({status}) before a checkpoint resumed past the first day");
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let output = wait(start(&day, &out, &args), WATCHDOG, "resumed run");
    assert!(output.status.success(), "resumed run: {}", stderr(&output));
    let got = assert_same_outputs(&reference, &out, "after a resume on the second day");
    assert!(got["checkpoints"]["resumed_at_watermark"].as_u64() >= Some(watermark));
}

/// An audit trail sealed at rest is kept through kills: each resume cuts the sealed file back to
/// the checkpoint's whole chunks and continues it with a segment of its own, so the trail opens
/// with its key as one chain through every attempt, and the other outputs are an uninterrupted
/// run's. A resume without the key the trail was sealed with is refused, and touches nothing.
#[test]
fn an_encrypted_audit_trail_continues_through_kills() {
    let (dir, day) = generated_day("1000000");
    let key = dir.path().join("audit.key");
    let made = surveil().args(["audit", "keygen", "--encryption", "--out"]).arg(&key).output().expect("keygen");
    assert!(made.status.success(), "{}", stderr(&made));
    let hex = std::fs::read_to_string(&key).expect("key");
    // The key from the environment, as a deployment gives it: the configuration stays the same
    // whether it is there or not.
    let start = |out: &Path, args: &[&str], sealed: bool| {
        let mut run = surveil();
        run.args(["run", "--quiet", "--config"]).arg(day.join("surveil.toml")).arg("--out").arg(out).args(args);
        if sealed {
            run.env("SURVEIL_ENCRYPTION_KEY", hex.trim());
        } else {
            run.env_remove("SURVEIL_ENCRYPTION_KEY");
        }
        let run = run.arg(day.join("events.csv")).stdout(std::process::Stdio::piped());
        run.stderr(std::process::Stdio::piped()).spawn().expect("spawn")
    };

    let reference = dir.path().join("reference");
    let full = reference_run(start(&reference, &["--workers", "2"], true));

    let out = dir.path().join("resumed");
    let checkpoints = dir.path().join("checkpoints");
    let cp = checkpoints.to_str().expect("path");
    let args = ["--workers", "2", "--checkpoint", cp, "--checkpoint-interval", "5ms"];
    let seen = kill_at_random_points(&|| start(&out, &args, true), (4, 2), full, 5, &checkpoints, &|| {});
    let must_resume = !seen.last().is_some_and(serde_json::Value::is_null);
    let sealed = std::fs::read(out.join("audit.jsonl.partial")).unwrap_or_default();
    assert!(sealed.is_empty() || sealed.starts_with(b"SURVEIL-SEALED-1"), "the trail is sealed");

    // Without the key: refused, naming both, and the trail is left as it was.
    let refused = wait(start(&out, &args, false), WATCHDOG, "resume without the key");
    let message = stderr(&refused);
    assert!(!refused.status.success(), "a plain resume of a sealed trail ran");
    assert!(message.contains("sealed with key") && message.contains("plain"), "{message}");
    assert_eq!(std::fs::read(out.join("audit.jsonl.partial")).expect("partial"), sealed, "the refusal wrote");

    last_run_ends_as_the_reference(start(&out, &args, true), &seen, &reference, &out);

    // One segment per resume after the first attempt's, nothing readable, one chain.
    let trail = std::fs::read(out.join("audit.jsonl")).expect("audit");
    let segments = trail.windows(16).filter(|w| *w == b"SURVEIL-SEALED-1").count();
    assert!(!must_resume || segments >= 2, "{segments} segments");
    assert!(!trail.windows(11).any(|w| w == b"run_resumed"), "plaintext in the sealed trail");
    let verify = surveil().args(["audit", "verify"]).arg(&out).arg("--key").arg(&key).output().expect("verify");
    assert!(verify.status.success(), "audit verify: {}", stderr(&verify));
    let without = surveil().args(["audit", "verify"]).arg(&out).env_remove("SURVEIL_ENCRYPTION_KEY").output();
    assert!(!without.expect("verify").status.success(), "a sealed trail verified without its key");
}

/// Every point in a database, sorted (points of one time may come in any order).
fn points(influx: &influx::Influx, database: &str) -> Vec<String> {
    let mut points = Vec::new();
    for measurement in ["surveil_alerts", "surveil_cases"] {
        let answer = influx.query_in(database, &format!("SELECT * FROM {measurement}"));
        let values = answer["results"][0]["series"][0]["values"].as_array().cloned().unwrap_or_default();
        points.extend(values.iter().map(|v| format!("{measurement} {v}")));
    }
    points.sort();
    points
}

/// The time-series sink through kills: points a checkpoint had queued but not yet written are
/// sent by the resumed run, points after it are written again at the same series and time (the
/// database keeps one), so the database ends with an uninterrupted run's points, none missing,
/// none twice, and the summary counts them once.
#[test]
fn time_series_points_after_kills_are_an_uninterrupted_runs() {
    let influx = influx::Influx::start();
    influx.query("CREATE DATABASE resumed");
    let (dir, day) = generated_day("1000000");
    let config = std::fs::read_to_string(day.join("surveil.toml")).expect("config");
    assert!(!config.contains("[timeseries]"));
    let sink = |database: &str| {
        format!(
            "{config}\n[timeseries]\nurl = \"{}\"\ndatabase = \"{database}\"\nbatch_points = 50\nbackoff = \"10ms\"\n",
            influx.url()
        )
    };
    std::fs::write(day.join("surveil.toml"), sink("surveil")).expect("write");
    let reference = dir.path().join("reference");
    let full = reference_run(start(&day, &reference, &["--workers", "2"]));
    let expected = points(&influx, "surveil");
    assert!(expected.len() > 20, "{} points", expected.len());

    std::fs::write(day.join("surveil.toml"), sink("resumed")).expect("write");
    let out = dir.path().join("resumed");
    let checkpoints = dir.path().join("checkpoints");
    let args = ["--workers", "2", "--checkpoint", checkpoints.to_str().expect("path"), "--checkpoint-interval", "5ms"];
    let seen = kill_at_random_points(&|| start(&day, &out, &args), (4, 2), full, 3, &checkpoints, &|| {});
    let pending: usize = seen.iter().map(|c| c["writer"]["timeseries"]["pending"].as_array().map_or(0, Vec::len)).sum();
    let got = last_run_ends_as_the_reference(start(&day, &out, &args), &seen, &reference, &out);
    let got_points = points(&influx, "resumed");
    let missing: Vec<&String> = expected.iter().filter(|p| !got_points.contains(p)).collect();
    let extra: Vec<&String> = got_points.iter().filter(|p| !expected.contains(p)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "the database after the kills ({pending} points were pending at them): {} missing, {} extra; first {:?} {:?}",
        missing.len(),
        extra.len(),
        missing.first(),
        extra.first()
    );
    assert_eq!(got_points.len(), expected.len());
    assert_eq!(got["timeseries"], summary(&reference)["timeseries"]);
    println!("{pending} points pending at the checkpoints killed after");
}

/// An event as the endpoint or the outbox holds it, without the wall clock.
fn without_detected_at(mut event: serde_json::Value) -> serde_json::Value {
    if let Some(details) = event["payload"]["custom_details"].as_object_mut() {
        details.remove("detected_at");
    }
    event
}

/// A route's outbox: (place, event, delivered, skipped) per line.
fn outbox(path: &Path) -> Vec<(u64, serde_json::Value, bool, bool)> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|line| {
            let d: serde_json::Value = serde_json::from_str(line).expect("outbox line");
            let flag = |f: &str| d[f].as_bool().unwrap_or(false);
            (
                d["seq"].as_u64().unwrap_or(0),
                without_detected_at(d["event"].clone()),
                flag("delivered"),
                flag("skipped"),
            )
        })
        .collect()
}

/// A webhook route through kills: events a checkpoint had queued but not delivered are sent by
/// the resumed run, events the stopped attempt had delivered after it are not sent again, so
/// the endpoint gets every event of an uninterrupted run, in order, and an event twice only
/// when a kill came between its delivery and the outbox line that records it; the outbox ends
/// as an uninterrupted run's.
#[test]
fn webhook_deliveries_after_kills_are_an_uninterrupted_runs() {
    use std::net::TcpListener;
    let (dir, day) = generated_day("1000000");
    let config = std::fs::read_to_string(day.join("surveil.toml")).expect("config");
    assert!(!config.contains("[[alerts.routes]]"));
    let route = |url: &str| {
        format!(
            "{config}\n[[alerts.routes]]\nname = \"all\"\n\n[[alerts.routes]]\nname = \"pager\"\n\
             tiers = [\"high\", \"critical\"]\nwebhook = {{ url = \"{url}\", routing_key = \"R0UT1NGKEY\", \
             backoff = \"10ms\", timeout = \"2s\" }}\n"
        )
    };
    let uninterrupted = endpoint::Endpoint::serve(TcpListener::bind("127.0.0.1:0").expect("bind"), |_| 202);
    std::fs::write(day.join("surveil.toml"), route(&uninterrupted.url())).expect("write");
    let reference = dir.path().join("reference");
    let full = reference_run(start(&day, &reference, &["--workers", "2"]));
    let expected: Vec<serde_json::Value> =
        uninterrupted.requests().into_iter().map(|(event, _)| without_detected_at(event)).collect();
    assert!(expected.len() > 20, "{} events", expected.len());

    // Every seventh request fails once: retries go on through the kills.
    let resumed =
        endpoint::Endpoint::serve(
            TcpListener::bind("127.0.0.1:0").expect("bind"),
            |n| {
                if n % 7 == 3 { 503 } else { 202 }
            },
        );
    std::fs::write(day.join("surveil.toml"), route(&resumed.url())).expect("write");
    let out = dir.path().join("resumed");
    let checkpoints = dir.path().join("checkpoints");
    let args = ["--workers", "2", "--checkpoint", checkpoints.to_str().expect("path"), "--checkpoint-interval", "5ms"];
    // A run that completes before its kill sent everything; the next starts over, and so does
    // the count of what the endpoint got.
    let seen = kill_at_random_points(&|| start(&day, &out, &args), (4, 2), full, 9, &checkpoints, &|| {
        // The endpoint records a request just after answering it.
        std::thread::sleep(Duration::from_millis(100));
        resumed.clear();
    });
    let pending: usize = seen.iter().map(|c| c["writer"]["webhooks"]["pager"].as_array().map_or(0, Vec::len)).sum();
    let got = last_run_ends_as_the_reference(start(&day, &out, &args), &seen, &reference, &out);
    assert_eq!(got["webhooks"], summary(&reference)["webhooks"]);

    // The outbox: every event once, in order, delivered, as the uninterrupted run's.
    assert_eq!(outbox(&out.join("webhook_pager.jsonl")), outbox(&reference.join("webhook_pager.jsonl")));
    // The endpoint: the accepted events are the uninterrupted run's in order, some twice.
    let accepted: Vec<serde_json::Value> = resumed
        .requests()
        .into_iter()
        .filter(|(_, status)| *status == 202)
        .map(|(event, _)| without_detected_at(event))
        .collect();
    let mut next = 0;
    let mut twice = 0;
    for event in &accepted {
        if next < expected.len() && *event == expected[next] {
            next += 1;
        } else {
            assert!(expected[..next].contains(event), "an event the uninterrupted run did not send: {event}");
            twice += 1;
        }
    }
    assert_eq!(next, expected.len(), "events missing from the endpoint");
    assert!(twice <= seen.len(), "{twice} events delivered twice in {} kills", seen.len());
    let nulls = seen.iter().filter(|c| c.is_null()).count();
    println!(
        "{} kills, {nulls} before a checkpoint; {pending} events pending at the checkpoints killed after; {twice} delivered twice",
        seen.len()
    );
}

/// Every file under `root`, by its path below it.
fn files_below(root: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut files = std::collections::BTreeMap::new();
    let mut folders = vec![root.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                folders.push(path);
            } else {
                let name = path.strip_prefix(root).expect("below").display().to_string();
                files.insert(name, std::fs::read(&path).expect("read"));
            }
        }
    }
    files
}

/// The archive's `alerts` table, a row per alert with its columns, `detected_at` (wall clock)
/// left out of its JSON.
fn archived_alerts(archive: &Path) -> Vec<serde_json::Value> {
    let reader = surveil::archive::ArchiveReader::open(&surveil::config::ArchiveConfig::local(archive), Vec::new())
        .expect("open the archive");
    let rows = reader.alerts().expect("read the alerts table");
    rows.into_iter()
        .map(|r| {
            let mut json: serde_json::Value = serde_json::from_str(&r.json).expect("json");
            json.as_object_mut().and_then(|alert| alert.remove("detected_at")).expect("detected_at");
            serde_json::json!([r.time, r.id, r.rule, r.instrument, r.account, r.tier, r.score, json])
        })
        .collect()
}

/// A replay that writes a Parquet archive, killed on its second day once the first day's files
/// are published and then at random points, resumed each time: the archive ends with the files
/// of an uninterrupted run (the events byte for byte, the alerts but for `detected_at`), and
/// nothing else; the output folder too.
#[test]
fn an_archive_after_kills_is_an_uninterrupted_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let day = two_days(dir.path(), 300_000);
    let reference = dir.path().join("reference");
    let reference_archive = dir.path().join("reference-archive");
    let archive_arg = |path: &Path| path.to_str().expect("path").to_string();
    let full =
        reference_run(start(&day, &reference, &["--workers", "2", "--archive", &archive_arg(&reference_archive)]));

    let out = dir.path().join("resumed");
    let archive = dir.path().join("archive");
    let checkpoints = dir.path().join("checkpoints");
    let (cp, archived) = (archive_arg(&checkpoints), archive_arg(&archive));
    let args = ["--workers", "2", "--checkpoint", &cp, "--checkpoint-interval", "20ms", "--archive", &archived];
    // Killed once the first day's files are published and a checkpoint was taken after them.
    let first_day = archive.join("events/date=2024-03-04");
    let mut child = start(&day, &out, &args);
    loop {
        let published = std::fs::read_dir(&first_day).map(|d| d.count() > 0).unwrap_or(false);
        let checkpoint = std::fs::read_to_string(checkpoints.join("checkpoint.json")).ok();
        // 2024-03-06T00:00Z: the checkpoint is of the second day.
        let second_day = checkpoint
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .is_some_and(|c| c["writer"]["watermark"].as_u64() >= Some(1_709_683_200_000_000_000));
        if published && second_day {
            break;
        }
        if let Some(status) = child.try_wait().expect("wait") {
            panic!("the run ended ({status}) before a checkpoint of the second day");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let seen = kill_at_random_points(&|| start(&day, &out, &args), (3, 1), full, 5, &checkpoints, &|| {});
    let got = last_run_ends_as_the_reference(start(&day, &out, &args), &seen, &reference, &out);

    let expected = summary(&reference)["archive"].clone();
    for field in ["files", "rows"] {
        assert_eq!(got["archive"][field], expected[field], "the archive's {field}");
    }
    assert!(got["archive"]["error"].is_null(), "{}", got["archive"]);
    let (expected_files, got_files) = (files_below(&reference_archive), files_below(&archive));
    assert_eq!(got_files.keys().collect::<Vec<_>>(), expected_files.keys().collect::<Vec<_>>(), "the archive's files");
    let events: Vec<&String> = expected_files.keys().filter(|k| k.starts_with("events/")).collect();
    assert!(
        events.iter().any(|k| k.contains("date=2024-03-04")) && events.iter().any(|k| k.contains("date=2024-03-06"))
    );
    for key in events {
        assert!(got_files[key] == expected_files[key], "{key} differs");
    }
    let alerts = archived_alerts(&reference_archive);
    assert!(alerts.len() > 20, "{} alerts archived", alerts.len());
    let got_alerts = archived_alerts(&archive);
    if let Some(at) = (0..alerts.len().max(got_alerts.len())).find(|&i| got_alerts.get(i) != alerts.get(i)) {
        panic!(
            "the archive's alerts differ at row {at} of {} and {}:\n{:?}\n{:?}",
            alerts.len(),
            got_alerts.len(),
            alerts.get(at),
            got_alerts.get(at)
        );
    }
    println!("{} kills after the first; {} archive files", seen.len(), got_files.len());
}

/// The replay of an archive (its events, late events and dead letters), killed at random
/// points and resumed each time, ends with the outputs of a replay never interrupted.
#[test]
fn the_replay_of_an_archive_after_kills_is_an_uninterrupted_ones() {
    let (dir, day) = generated_day("500000");
    // A few bad lines: the archive's dead letters are replayed too.
    insert_bad_lines(&day.join("events.csv"), 4);
    let archive = dir.path().join("archive");
    reference_run(start(&day, &dir.path().join("written"), &["--archive", archive.to_str().expect("path")]));

    let reference = dir.path().join("reference");
    let full = reference_run(start_on(&day, &archive, &reference, &["--workers", "2"]));
    let out = dir.path().join("resumed");
    let checkpoints = dir.path().join("checkpoints");
    let args = ["--workers", "2", "--checkpoint", checkpoints.to_str().expect("path"), "--checkpoint-interval", "20ms"];
    let seen = kill_at_random_points(&|| start_on(&day, &archive, &out, &args), (4, 2), full, 3, &checkpoints, &|| {});
    let got = last_run_ends_as_the_reference(start_on(&day, &archive, &out, &args), &seen, &reference, &out);
    assert!(got["dead_letters"].as_u64() >= Some(4), "{}", got["dead_letters"]);
    assert!(got["alerts"].as_u64() > Some(20), "{}", got["alerts"]);
}
