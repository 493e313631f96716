//! `surveil run --metrics`: the Prometheus endpoint answers while the run lasts, with what the
//! run has read, refused and alerted, its watermark and its operators' time.

mod runs;

use runs::{scrape, surveil, value};

use std::process::Stdio;
use std::time::{Duration, Instant};

#[test]
fn metrics_are_served_during_a_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let day = dir.path().join("day");
    let status = surveil()
        .args(["generate", "--events", "1000000", "--accounts", "80", "--instruments", "8", "--out"])
        .arg(&day)
        .status()
        .expect("spawn");
    assert!(status.success());
    // A bad line near the start, so that a dead letter shows while the run is reading.
    let events = day.join("events.csv");
    let text = std::fs::read(&events).expect("read");
    let header = text.iter().position(|&b| b == b'\n').expect("header") + 1;
    let mut with_bad_line = text[..header].to_vec();
    with_bad_line.extend_from_slice(b"not,a,valid,line\n");
    with_bad_line.extend_from_slice(&text[header..]);
    std::fs::write(&events, with_bad_line).expect("write");
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port();
    let address = format!("127.0.0.1:{port}");
    let mut child = surveil()
        .args(["run", "--quiet", "--workers", "2", "--metrics", &address, "--config"])
        .arg(day.join("surveil.toml"))
        .arg("--out")
        .arg(dir.path().join("out"))
        .arg(&events)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Scrape until the run ends; keep the last answer that came while it was reading.
    let started = Instant::now();
    let mut scrapes = Vec::new();
    while child.try_wait().expect("wait").is_none() {
        assert!(started.elapsed() < Duration::from_secs(300), "the run did not end");
        if let Some(text) = scrape(&address) {
            scrapes.push(text);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let output = child.wait_with_output().expect("output");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(scrapes.len() >= 2, "the endpoint answered {} times during the run", scrapes.len());
    let during = scrapes.iter().find(|t| value(t, "surveil_events_read_total").is_some_and(|v| v > 0.0));
    let during = during.expect("a scrape during the run counted events read");
    assert!(during.contains("# TYPE surveil_events_read_total counter"), "{during}");
    assert!(during.contains("kind=\"new\""), "{during}");
    assert!(
        scrapes.iter().any(|t| value(t, "surveil_operator_busy_seconds_total{").is_some_and(|v| v > 0.0)),
        "a scrape during the run had the operators' time"
    );
    assert!(value(during, "surveil_records_in_flight").is_some(), "{during}");
    // Later scrapes see more, and the last one the alerts, the dead letter and the watermark.
    let last = scrapes.last().expect("scrapes");
    let read = |t: &str| -> f64 {
        t.lines()
            .filter(|l| l.starts_with("surveil_events_read_total"))
            .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
            .sum()
    };
    assert!(read(last) >= read(during), "counters only grow");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("out/summary.json")).expect("summary"))
            .expect("json");
    assert!(read(last) <= summary["events"].as_f64().unwrap_or_default());
    let alerting = scrapes.iter().rev().find(|t| value(t, "surveil_alerts_total{").is_some());
    let alerting = alerting.expect("a scrape counted alerts");
    assert!(alerting.contains("severity=\""), "{alerting}");
    assert!(scrapes.iter().any(|t| value(t, "surveil_watermark_seconds").is_some_and(|w| w > 1e9)));
    assert!(
        scrapes.iter().any(|t| t.contains("surveil_dead_letters_total{reason=")),
        "the bad line shows as a dead letter"
    );
}
