//! Cluster mode with real processes on 127.0.0.1: the same outputs, byte for byte, on 1 process
//! of 1 and 2 workers and on 2 processes of 1 and 2 workers; one writer; a lost process, a
//! process running a different job and a process that never comes are clear errors, not hangs;
//! a stopped process holds back the other's reading (backpressure across processes).

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
