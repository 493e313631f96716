//! What the tests that run `surveil` as a process share: starting a run on a generated day,
//! waiting for it with a watchdog, and comparing its outputs.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Files that must be identical, but for the wall-clock `detected_at` of each alert.
pub const SAME_BYTES: &[&str] = &[
    "alerts.jsonl",
    "dead_letters.jsonl",
    "late_events.jsonl",
    "order_to_trade.jsonl",
    "cases.jsonl",
    "notices_all.jsonl",
];

pub fn surveil() -> Command {
    Command::new(env!("CARGO_BIN_EXE_surveil"))
}

pub fn start(day: &Path, out: &Path, extra: &[&str]) -> Child {
    start_on(day, &day.join("events.csv"), out, extra)
}

/// Runs the job of `day` (its configuration) on `input` instead of its events.
pub fn start_on(day: &Path, input: &Path, out: &Path, extra: &[&str]) -> Child {
    surveil()
        .args(["run", "--quiet", "--config"])
        .arg(day.join("surveil.toml"))
        .arg("--out")
        .arg(out)
        .args(extra)
        .arg(input)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn")
}

pub fn wait(mut child: Child, limit: Duration, what: &str) -> Output {
    let started = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let output = child.wait_with_output().expect("output");
            panic!("{what}: still running after {limit:?}: {}", String::from_utf8_lossy(&output.stderr));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The file's bytes without the `"detected_at":"..."` fields, the one wall-clock time in them.
pub fn without_wall_clock(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    const FIELD: &str = "\"detected_at\":\"";
    while let Some(at) = rest.find(FIELD) {
        out.push_str(&rest[..at]);
        let after = &rest[at + FIELD.len()..];
        let end = after.find('"').map_or(after.len(), |e| e + 1);
        rest = after[end..].strip_prefix(',').unwrap_or(&after[end..]);
    }
    out.push_str(rest);
    out
}

pub fn summary(out: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(out.join("summary.json")).expect("summary");
    serde_json::from_str(&text).expect("json")
}

/// `GET /metrics` from `address`, or `None` while nothing answers there.
pub fn scrape(address: &str) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(address).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer.starts_with("HTTP/1.1 200").then_some(answer)
}

/// The value of the first series whose line starts with `prefix`.
pub fn value(text: &str, prefix: &str) -> Option<f64> {
    text.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok())
}

/// The sum of every series whose line starts with `prefix` (all the labels of one family).
pub fn total(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

/// Two generated trading days of `events` events each, two days apart, in one file of a new
/// day folder in `dir`: a checkpoint on the second day resumes past the first (the replay
/// horizon is a day). The generator numbers each day's orders from the same start; the second
/// day's order ids are renamed so that no id means two orders in the file.
pub fn two_days(dir: &Path, events: u64) -> std::path::PathBuf {
    for (name, date) in [("d1", "2024-03-04"), ("d2", "2024-03-06")] {
        let status = surveil()
            .args(["generate", "--events", &events.to_string(), "--date", date, "--out"])
            .arg(dir.join(name))
            .status()
            .expect("spawn");
        assert!(status.success());
    }
    let day = dir.join("two");
    std::fs::create_dir(&day).expect("mkdir");
    for file in ["surveil.toml", "instruments.csv", "accounts.csv"] {
        std::fs::copy(dir.join("d1").join(file), day.join(file)).expect("copy");
    }
    let first = std::fs::read_to_string(dir.join("d1/events.csv")).expect("read");
    let second = std::fs::read_to_string(dir.join("d2/events.csv")).expect("read");
    let body = second.split_once('\n').map_or("", |(_, rest)| rest);
    // Order ids are `O` and digits (owners are `OWN...`): the second day's become `P...`.
    let mut renamed = String::with_capacity(body.len());
    let mut rest = body;
    while let Some(at) = rest.find(",O") {
        let digit = rest[at + 2..].starts_with(|c: char| c.is_ascii_digit());
        renamed.push_str(&rest[..at]);
        renamed.push_str(if digit { ",P" } else { ",O" });
        rest = &rest[at + 2..];
    }
    renamed.push_str(rest);
    std::fs::write(day.join("events.csv"), first + &renamed).expect("write");
    day
}
