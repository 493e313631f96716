//! Cluster mode with real processes on 127.0.0.1: the same outputs, byte for byte, on 1 process
//! of 1 and 2 workers and on 2 processes of 1 and 2 workers; one writer; a lost process, a
//! process running a different job and a process that never comes are clear errors, not hangs;
//! a stopped process holds back the other's reading (backpressure across processes); a cluster
//! that keeps checkpoints resumes after a kill with the outputs of an uninterrupted run.

mod runs;

use runs::{SAME_BYTES, scrape, start, stderr, summary, surveil, total, value, wait, without_wall_clock};

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// No run here takes anywhere near this long; a hang fails the test instead of the suite.
const WATCHDOG: Duration = Duration::from_secs(240);

/// A generated day of `events` events: (the folder that holds it, the day's folder).
fn day(events: u64) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let day = dir.path().join("day");
    let status = surveil()
        .args(["generate", "--events", &events.to_string(), "--accounts", "80", "--instruments", "8", "--out"])
        .arg(&day)
        .status()
        .expect("spawn");
    assert!(status.success());
    (dir, day)
}

/// A host file of two free loopback ports.
fn hostfile(dir: &Path, name: &str) -> PathBuf {
    let ports: Vec<u16> = (0..2)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect::<Vec<_>>()
        .iter()
        .map(|l| l.local_addr().expect("address").port())
        .collect();
    let path = dir.join(name);
    std::fs::write(&path, ports.iter().map(|p| format!("127.0.0.1:{p}\n")).collect::<String>()).expect("hostfile");
    path
}

/// Runs the day over two processes of `workers` threads; returns process 0's output folder.
fn two_processes(dir: &Path, day: &Path, workers: usize, name: &str) -> PathBuf {
    let hosts = hostfile(dir, &format!("{name}.hosts"));
    let hosts = hosts.to_str().expect("path");
    let workers = workers.to_string();
    let out = dir.join(name);
    let peer_out = dir.join(format!("{name}-peer"));
    let peer = start(day, &peer_out, &["-n", "2", "-p", "1", "-h", hosts, "-w", &workers]);
    let first = start(day, &out, &["--processes", "2", "--process", "0", "--hostfile", hosts, "--workers", &workers]);
    let first = wait(first, WATCHDOG, name);
    let peer = wait(peer, WATCHDOG, name);
    assert!(first.status.success(), "{name}: process 0: {}", stderr(&first));
    assert!(peer.status.success(), "{name}: process 1: {}", stderr(&peer));
    assert!(!peer_out.exists(), "{name}: process 1 wrote {}", peer_out.display());
    out
}

#[test]
fn every_layout_writes_the_same_outputs() {
    let (dir, day) = day(120_000);
    let base = dir.path();
    let one = base.join("1x1");
    let output = wait(start(&day, &one, &[]), WATCHDOG, "1x1");
    assert!(output.status.success(), "{}", stderr(&output));
    let threads = base.join("1x2");
    let output = wait(start(&day, &threads, &["-w", "2"]), WATCHDOG, "1x2");
    assert!(output.status.success(), "{}", stderr(&output));
    let processes = two_processes(base, &day, 1, "2x1");
    let both = two_processes(base, &day, 2, "2x2");
    let reference = summary(&one);
    assert!(reference["alerts"].as_u64().unwrap_or(0) > 50, "{reference}");
    for (out, workers, processes) in [(&threads, 2, 1), (&processes, 2, 2), (&both, 4, 2)] {
        for file in SAME_BYTES {
            let expected = without_wall_clock(&one.join(file));
            let got = without_wall_clock(&out.join(file));
            assert!(expected == got, "{file} differs between 1x1 and {}", out.display());
        }
        let summary = summary(out);
        for field in ["complete", "events", "events_by_kind", "bytes", "lines", "alerts", "dead_letters"] {
            assert_eq!(summary[field], reference[field], "{field} in {}", out.display());
        }
        assert_eq!(summary["workers"], workers, "{}", out.display());
        assert_eq!(summary["processes"], processes, "{}", out.display());
        // The audit trail of a cluster run is whole and records every process's reading.
        let audit = std::fs::read_to_string(out.join("audit.jsonl")).expect("audit");
        let end = audit
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|r| r["kind"] == "run_finished")
            .unwrap_or_else(|| panic!("{}: no run_finished record", out.display()));
        assert_eq!(end["data"]["complete"], true, "{}: {end}", out.display());
        assert_eq!(end["data"]["events"], reference["events"], "{}: {end}", out.display());
    }
}

#[test]
fn a_lost_process_stops_the_other_with_its_name() {
    // A day long enough that the kill lands while both processes are reading.
    let (dir, day) = day(1_500_000);
    let hosts = hostfile(dir.path(), "hosts");
    let hosts = hosts.to_str().expect("path");
    let out = dir.path().join("out");
    let mut peer = start(&day, &dir.path().join("peer"), &["-n", "2", "-p", "1", "-h", hosts]);
    let first = start(&day, &out, &["-n", "2", "-p", "0", "-h", hosts]);
    // Kill once process 0 writes alerts: both are connected and reading, far from the end.
    let reading = Instant::now();
    while !std::fs::metadata(out.join("alerts.jsonl.partial")).is_ok_and(|m| m.len() > 0) {
        assert!(reading.elapsed() < Duration::from_secs(120), "process 0 never wrote an alert");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(peer.try_wait().expect("wait").is_none(), "process 1 ended before it could be killed");
    peer.kill().expect("kill");
    let _ = peer.wait();
    let killed_at = Instant::now();
    let first = wait(first, Duration::from_secs(60), "process 0 after process 1 was killed");
    let text = stderr(&first);
    assert!(!first.status.success(), "process 0 succeeded without process 1: {text}");
    assert!(text.contains("process 1"), "the error names the lost process: {text}");
    assert!(killed_at.elapsed() < Duration::from_secs(30), "process 0 took {:?} to stop", killed_at.elapsed());
    assert!(!out.join("summary.json").exists(), "an incomplete cluster run committed its outputs");
}

/// Sends `signal` (`STOP`, `CONT`) to `child`.
fn signal(child: &std::process::Child, signal: &str) {
    let status = std::process::Command::new("kill").arg(format!("-{signal}")).arg(child.id().to_string()).status();
    assert!(status.expect("kill").success(), "kill -{signal}");
}

/// What process 1's metrics say it has read, and holds in flight.
fn reading(address: &str) -> Option<(f64, f64)> {
    let text = scrape(address)?;
    Some((total(&text, "surveil_events_read_total{"), value(&text, "surveil_records_in_flight ")?))
}

#[test]
fn a_stopped_process_holds_back_the_others_reading() {
    // Process 0 (which also holds the writer) is stopped, as a process on an overloaded machine
    // or behind a stalled disk would be; process 1 must stop reading once `max_in_flight` of its
    // records wait on process 0, not read its whole share into memory.
    let (dir, day) = day(1_500_000);
    const BOUND: f64 = 20_000.0;
    let config = std::fs::read_to_string(day.join("surveil.toml")).expect("config");
    std::fs::write(day.join("surveil.toml"), format!("{config}\n[ingest]\nmax_in_flight = {BOUND}\n")).expect("config");
    let hosts = hostfile(dir.path(), "hosts");
    let hosts = hosts.to_str().expect("path");
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port();
    let address = format!("127.0.0.1:{port}");
    let out = dir.path().join("out");
    let peer = start(&day, &dir.path().join("peer"), &["-n", "2", "-p", "1", "-h", hosts, "--metrics", &address]);
    let first = start(&day, &out, &["-n", "2", "-p", "0", "-h", hosts]);
    let reading_started = Instant::now();
    // Stop it well into the run, with both processes reading and progress flowing.
    while reading(&address).is_none_or(|(read, _)| read < 200_000.0) {
        assert!(reading_started.elapsed() < Duration::from_secs(120), "process 1 never read 200,000 events");
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(&first, "STOP");
    // Process 1 reads on until its records in flight reach the bound, then waits.
    let stopped = Instant::now();
    let mut last = reading(&address).expect("process 1 answers");
    let mut still_since = Instant::now();
    while still_since.elapsed() < Duration::from_secs(2) {
        assert!(
            stopped.elapsed() < Duration::from_secs(30),
            "process 1 kept reading for 30 s while process 0 was stopped: {last:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
        let now = reading(&address).expect("process 1 answers");
        if now.0 != last.0 {
            still_since = Instant::now();
        }
        last = now;
    }
    let (read, in_flight) = last;
    signal(&first, "CONT");
    // One read batch (256 records by default) may start just under the bound.
    assert!(in_flight <= BOUND + 256.0, "{in_flight} records in flight, bound {BOUND}");
    assert!(
        in_flight >= BOUND / 2.0,
        "process 1 stopped at {in_flight} in flight, well under the bound: not the bound"
    );
    let first = wait(first, WATCHDOG, "process 0 after it was continued");
    let peer = wait(peer, WATCHDOG, "process 1 after process 0 was continued");
    assert!(first.status.success(), "process 0: {}", stderr(&first));
    assert!(peer.status.success(), "process 1: {}", stderr(&peer));
    let summary = summary(&out);
    assert_eq!(summary["complete"], true, "{summary}");
    let events = summary["events"].as_f64().expect("events");
    assert!(read < events / 2.0, "process 1 had read {read} of the {events} events when it stopped");
}

/// What the tests read of a checkpoint.
#[derive(Clone, Copy, Debug)]
struct Checkpoint {
    watermark: u64,
    /// It resumes a partition of process 1 past its start. With two processes of one worker,
    /// process 1 reads the odd blocks of the file (blocks of `ingest.block_size`, 8 MiB by
    /// default, dealt round-robin).
    past_a_start_of_process_1: bool,
}

/// The checkpoint in `dir`, if there is one.
fn checkpoint(dir: &Path) -> Option<Checkpoint> {
    let text = std::fs::read_to_string(dir.join("checkpoint.json")).ok()?;
    let checkpoint: serde_json::Value = serde_json::from_str(&text).ok()?;
    let past_a_start_of_process_1 = checkpoint["resume"].as_array()?.iter().any(|p| {
        let (start, offset) = (p["start"].as_u64().unwrap_or(0), p["offset"].as_u64().unwrap_or(0));
        (start / (8 << 20)) % 2 == 1 && offset > start
    });
    Some(Checkpoint { watermark: checkpoint["writer"]["watermark"].as_u64()?, past_a_start_of_process_1 })
}

/// Waits until `until` holds of the checkpoint in `dir`; fails if `process` ends first.
fn wait_for_checkpoint(
    dir: &Path,
    process: &mut std::process::Child,
    what: &str,
    until: impl Fn(&Checkpoint) -> bool,
) -> Checkpoint {
    let started = Instant::now();
    loop {
        if let Some(found) = checkpoint(dir).filter(&until) {
            return found;
        }
        if let Some(status) = process.try_wait().expect("wait") {
            panic!("{what}: the run ended ({status}) first");
        }
        assert!(started.elapsed() < WATCHDOG, "{what}: no such checkpoint");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A cluster that keeps checkpoints resumes after any of its processes is killed or stopped,
/// with the same commands, and ends with the outputs of one process that was never
/// interrupted. Process 0 keeps the checkpoints of both, with the points process 1 sends it
/// while it reads, and tells process 1 where its partitions resume. Two days in one file, so
/// that a checkpoint on the second day resumes process 1's partitions past their start.
#[test]
fn a_cluster_killed_and_stopped_resumes_to_the_outputs_of_one_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    let day = runs::two_days(dir.path(), 300_000);
    // Bad lines spread through both processes' blocks: their dead letters are reconciled by
    // position, so each must be written once whichever process read it.
    let text = std::fs::read_to_string(day.join("events.csv")).expect("read");
    let mut lines: Vec<&str> = text.lines().collect();
    let step = lines.len() / 12;
    for i in 1..12 {
        lines.insert(i * step, "not,a,valid,line");
    }
    std::fs::write(day.join("events.csv"), lines.join("\n") + "\n").expect("write");
    let size = std::fs::metadata(day.join("events.csv")).expect("day").len();
    assert!(size > 4 * (8 << 20), "{size} bytes: too few blocks for process 1 to resume past one");
    let reference = dir.path().join("reference");
    let output = wait(start(&day, &reference, &[]), WATCHDOG, "reference run");
    assert!(output.status.success(), "reference run: {}", stderr(&output));
    let checkpoints = dir.path().join("checkpoints");
    let (out, peer_out) = (dir.path().join("out"), dir.path().join("peer"));
    // Process 1 serves its metrics, so that the test knows when it is reading.
    let launch = |attempt: &str| {
        let hosts = hostfile(dir.path(), &format!("{attempt}.hosts"));
        let hosts = hosts.to_str().expect("path");
        let cp = checkpoints.to_str().expect("path");
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port();
        let address = format!("127.0.0.1:{port}");
        let args = |p| vec!["-n", "2", "-p", p, "-h", hosts, "--checkpoint", cp, "--checkpoint-interval", "20ms"];
        let peer = start(&day, &peer_out, &[args("1"), vec!["--metrics", &address]].concat());
        (start(&day, &out, &args("0")), peer, address)
    };
    // Waits until process 1 has planned its partitions (it counts what it resumes past as read):
    // the cluster is connected and cannot finish without both.
    let until_reading = |address: &str, peer: &mut std::process::Child, what: &str| {
        let started = Instant::now();
        while reading(address).is_none_or(|(read, _)| read == 0.0) {
            assert!(peer.try_wait().expect("wait").is_none(), "{what}: process 1 ended first");
            assert!(started.elapsed() < WATCHDOG, "{what}: process 1 never read");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    let fails_naming = |child: std::process::Child, other: &str, what: &str| {
        let output = wait(child, Duration::from_secs(90), what);
        let text = stderr(&output);
        assert!(!output.status.success(), "{what}: {text}");
        assert!(text.contains(other), "{what}: the error names {other}: {text}");
    };

    // Process 1 killed once a checkpoint resumes one of its partitions past its start.
    let (first, mut peer, _) = launch("first");
    let watermark =
        wait_for_checkpoint(&checkpoints, &mut peer, "first attempt", |c| c.past_a_start_of_process_1).watermark;
    peer.kill().expect("SIGKILL");
    let _ = peer.wait();
    fails_naming(first, "process 1", "process 0 after process 1 was killed");
    assert!(!out.join("summary.json").exists(), "an interrupted cluster run committed its outputs");

    // Resumed, then process 0 killed while both read.
    let (mut first, mut peer, address) = launch("second");
    until_reading(&address, &mut peer, "second attempt");
    first.kill().expect("SIGKILL");
    let _ = first.wait();
    fails_naming(peer, "process 0", "process 1 after process 0 was killed");

    // Resumed, then process 1 stopped with SIGTERM: it exits at once, which stops the cluster.
    let (first, mut peer, address) = launch("third");
    until_reading(&address, &mut peer, "third attempt");
    signal(&peer, "TERM");
    let output = wait(peer, Duration::from_secs(60), "process 1 after SIGTERM");
    assert_eq!(output.status.code(), Some(143), "process 1 after SIGTERM: {}", stderr(&output));
    assert!(stderr(&output).contains("process 0 keeps its checkpoint"), "{}", stderr(&output));
    fails_naming(first, "process 1", "process 0 after process 1 was stopped");
    assert!(checkpoints.join("checkpoint.json").exists());

    // Run to the end with the same commands.
    let (first, peer, _) = launch("last");
    let (first, peer) = (wait(first, WATCHDOG, "last attempt"), wait(peer, WATCHDOG, "last attempt"));
    assert!(first.status.success(), "process 0: {}", stderr(&first));
    assert!(peer.status.success(), "process 1: {}", stderr(&peer));
    assert!(!checkpoints.join("checkpoint.json").exists(), "a finished run removes its checkpoint");
    for file in SAME_BYTES {
        let (expected, got) = (without_wall_clock(&reference.join(file)), without_wall_clock(&out.join(file)));
        assert!(expected == got, "{file} differs between one process and the resumed cluster");
    }
    let (expected, got) = (summary(&reference), summary(&out));
    for field in ["complete", "events", "events_by_kind", "bytes", "lines", "alerts", "dead_letters", "late_events"] {
        assert_eq!(expected[field], got[field], "summary's {field}");
    }
    assert!(got["dead_letters"].as_u64() >= Some(11), "{got}");
    assert!(got["checkpoints"]["resumes"].as_u64() >= Some(1), "{}", got["checkpoints"]);
    assert!(got["checkpoints"]["resumed_at_watermark"].as_u64() >= Some(watermark), "{}", got["checkpoints"]);
    let verify = surveil().args(["audit", "verify"]).arg(&out).output().expect("verify");
    assert!(verify.status.success(), "audit verify: {}", stderr(&verify));
}

#[test]
fn processes_that_run_different_jobs_both_refuse() {
    let (dir, day) = day(20_000);
    let hosts = hostfile(dir.path(), "hosts");
    let hosts = hosts.to_str().expect("path");
    let peer = start(&day, &dir.path().join("peer"), &["-n", "2", "-p", "1", "-h", hosts, "--anomaly"]);
    let first = start(&day, &dir.path().join("out"), &["-n", "2", "-p", "0", "-h", hosts]);
    for (output, which) in [(wait(first, WATCHDOG, "process 0"), 0), (wait(peer, WATCHDOG, "process 1"), 1)] {
        let text = stderr(&output);
        assert!(!output.status.success(), "process {which}: {text}");
        assert!(text.contains("process 1 runs a different job than process 0"), "process {which}: {text}");
    }
    assert!(!dir.path().join("out").join("summary.json").exists());
}

#[test]
fn a_process_that_never_comes_is_a_timeout() {
    let (dir, day) = day(5_000);
    let hosts = hostfile(dir.path(), "hosts");
    let started = Instant::now();
    let output = wait(
        start(
            &day,
            &dir.path().join("out"),
            &["-n", "2", "-p", "0", "-h", hosts.to_str().expect("path"), "--cluster-timeout", "2s"],
        ),
        Duration::from_secs(60),
        "process 0 alone",
    );
    let text = stderr(&output);
    assert!(!output.status.success(), "{text}");
    assert!(text.contains("could not connect to the other processes"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn cluster_flags_are_checked() {
    let (dir, day) = day(5_000);
    let out = dir.path().join("out");
    let output = wait(start(&day, &out, &["-n", "2", "-p", "2"]), WATCHDOG, "index");
    assert!(stderr(&output).contains("outside a cluster of 2"), "{}", stderr(&output));
    let output = wait(start(&day, &out, &["-n", "0"]), WATCHDOG, "none");
    assert!(stderr(&output).contains("--processes must be at least 1"), "{}", stderr(&output));
    let help = surveil().args(["run", "--help"]).output().expect("spawn");
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(help.status.success() && text.contains("--hostfile") && text.contains("-h"), "{text}");
}
