//! Adversarial input, interruption and tight limits: every run terminates, no input is ever
//! written, outputs are whole or clearly partial, and every line read is accounted for.
//!
//! Each run goes through [`guarded`], a watchdog that fails the test (instead of hanging the
//! suite) if the run does not end within a generous time.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use surveil::config::Config;
use surveil::ingest::{Format, InputSpec};
use surveil::pipeline::{RunError, RunOptions, RunSummary, run};

const EXAMPLE_CSV: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../datasets/example.csv");
const EXAMPLE_JSONL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../datasets/example.jsonl");
const WATCHDOG: Duration = Duration::from_secs(120);

/// Runs `f` on a thread and fails if it does not return within the watchdog's time.
fn guarded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(WATCHDOG) {
        Ok(value) => value,
        Err(_) => panic!("{what}: did not terminate within {WATCHDOG:?}"),
    }
}

/// Runs the default job over `inputs` (with their format, or detected) into `out`.
fn run_guarded(
    inputs: Vec<(PathBuf, Option<Format>)>,
    config: Config,
    workers: usize,
    out: &Path,
) -> Result<RunSummary, RunError> {
    let specs: Vec<InputSpec> = inputs
        .iter()
        .enumerate()
        .map(|(i, (path, format))| InputSpec {
            index: i as u32,
            path: path.clone(),
            format: format.unwrap_or_else(|| Format::detect(path)),
        })
        .collect();
    let what = format!("{inputs:?} on {workers} workers");
    let out = out.to_path_buf();
    guarded(&what.clone(), move || run(RunOptions { workers, out_dir: out, ..RunOptions::new(specs, config) }))
}

/// Lines in a file as the reader splits them: `\n`-separated, a last line without one counts.
fn lines_in(bytes: &[u8]) -> u64 {
    let ends = bytes.iter().filter(|&&b| b == b'\n').count() as u64;
    ends + u64::from(bytes.last().is_some_and(|&b| b != b'\n'))
}

/// Every line read is exactly one of header, blank, accepted or rejected, every rejected line is
/// a dead letter, and each output line is valid JSON.
fn assert_accounted(summary: &RunSummary, out: &Path, expected_lines: Option<u64>, what: &str) {
    let lines = summary.lines;
    assert_eq!(lines.read, lines.header + lines.blank + lines.accepted + lines.rejected, "{what}: {lines:?}");
    if let Some(expected) = expected_lines {
        assert_eq!(lines.read, expected, "{what}: every line of the input is read once");
    }
    let letters = &summary.written.dead_letters_by_reason;
    let after_parse = letters.get("unknown_order").copied().unwrap_or(0);
    let unreadable = letters.get("io_error").copied().unwrap_or(0);
    assert_eq!(summary.dead_letters, lines.rejected + after_parse + unreadable, "{what}: {letters:?} {lines:?}");
    assert!(summary.complete, "{what}");
    for file in ["alerts.jsonl", "dead_letters.jsonl", "late_events.jsonl", "order_to_trade.jsonl"] {
        let text = std::fs::read_to_string(out.join(file)).expect("output file");
        for line in text.lines() {
            serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{what}: {file}: {e}: {line}"));
        }
    }
    let written = common::read_jsonl(out, "dead_letters.jsonl").len() as u64;
    assert_eq!(written, summary.dead_letters, "{what}");
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write");
    path
}

fn header() -> String {
    std::fs::read_to_string(EXAMPLE_CSV).expect("example").lines().next().expect("header").to_string()
}

/// Row 1: inputs (or blocks) without a single record that parses, alone or beside good files,
/// in either order, on one or two workers.
#[test]
fn inputs_without_a_good_record_finish() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let mut random = vec![0u8; 3000];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for b in random.iter_mut() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *b = state as u8;
    }
    let mut many_bad = header() + "\n";
    for i in 0..2_000 {
        many_bad.push_str(&format!("{i},x,new,XSVL,ACME,O{i},ACC1,,,,buy,-1,5,,,,,,,,,,,,,\n"));
    }
    let cases: Vec<(PathBuf, Option<Format>)> = vec![
        (write(d, "header_only.csv", format!("{}\n", header()).as_bytes()), None),
        (write(d, "header_and_bad.csv", format!("{}\nnot,a,record\n", header()).as_bytes()), None),
        (write(d, "empty.jsonl", b""), None),
        (write(d, "blank.jsonl", b"\n   \n\r\n"), None),
        (write(d, "random.jsonl", &random), None),
        (write(d, "trades_round_1_day_1.csv", b"timestamp;buyer;seller;symbol;currency;price;quantity\n"), None),
        (write(d, "ACME_2024-03-01_34200000_57600000_message_1.csv", b""), Some(Format::Lobster)),
        (PathBuf::from(EXAMPLE_CSV), Some(Format::Jsonl)),
        (PathBuf::from(EXAMPLE_CSV), Some(Format::Imc)),
        (PathBuf::from(EXAMPLE_JSONL), Some(Format::Imc)),
        (common::data("imc_prosperity/p3_2025/trades_round_5_day_2.csv"), Some(Format::Jsonl)),
        (write(d, "bad_run.csv", many_bad.as_bytes()), None),
    ];
    let good = (PathBuf::from(EXAMPLE_CSV), None);
    let mut small_blocks = Config::default();
    small_blocks.ingest.block_size = 4096;
    for (i, case) in cases.iter().enumerate() {
        let expected = lines_in(&std::fs::read(&case.0).expect("read"));
        for workers in [1, 2] {
            for config in [Config::default(), small_blocks.clone()] {
                let out = d.join(format!("out_{i}_{workers}"));
                let summary = run_guarded(vec![case.clone()], config.clone(), workers, &out).expect("runs");
                assert_accounted(&summary, &out, Some(expected), &format!("{case:?} alone"));
                assert_eq!(summary.events, 0, "{case:?}");
                // Beside a good file, in either order: the good file's alerts are all there.
                for order in [vec![case.clone(), good.clone()], vec![good.clone(), case.clone()]] {
                    let summary = run_guarded(order.clone(), config.clone(), workers, &out).expect("runs");
                    assert_accounted(&summary, &out, None, &format!("{order:?}"));
                    assert_eq!(summary.alerts, 3, "{order:?} on {workers} workers");
                }
            }
        }
    }
}

/// Row 1: a line longer than a block (and than the reader's first buffer).
#[test]
fn a_line_longer_than_a_block_finishes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut text = header() + "\n";
    text.push_str(&"x".repeat(5 << 20));
    text.push('\n');
    text.push_str(
        &std::fs::read_to_string(EXAMPLE_CSV).expect("example").lines().skip(1).collect::<Vec<_>>().join("\n"),
    );
    let path = write(dir.path(), "long.csv", text.as_bytes());
    let mut config = Config::default();
    config.ingest.block_size = 1 << 20;
    for workers in [1, 2] {
        let out = dir.path().join(format!("out{workers}"));
        let summary = run_guarded(vec![(path.clone(), None)], config.clone(), workers, &out).expect("runs");
        assert_accounted(&summary, &out, Some(lines_in(text.as_bytes())), "long line");
        assert_eq!(summary.written.dead_letters_by_reason.get("column_count"), Some(&1));
        assert_eq!(summary.alerts, 3);
    }
}

/// Row 2: more records in one watermark step than the in-flight bound, and tight bounds on a
/// real day's opening.
#[test]
fn a_watermark_step_larger_than_the_in_flight_bound_finishes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut text = header() + "\n";
    let n = 30_000;
    for i in 0..n {
        text.push_str(&format!(
            "1709303400000000000,{},new,XSVL,I{},O{i},ACC{},,,,buy,10.5,5,,,,,,,,,,,,,\n",
            i + 1,
            i % 37,
            i % 101
        ));
    }
    let path = write(dir.path(), "same_time.csv", text.as_bytes());
    for (max_in_flight, workers) in [(1_000, 1), (1_000, 2), (1, 1)] {
        let mut config = Config::default();
        config.ingest.max_in_flight = max_in_flight;
        let out = dir.path().join("out");
        let summary = run_guarded(vec![(path.clone(), None)], config, workers, &out).expect("runs");
        assert_eq!(summary.events, n, "bound {max_in_flight} on {workers} workers");
        assert_accounted(&summary, &out, Some(n + 1), "same time");
    }
    // The opening of a generated day: about a thousand events in its first 100 ms.
    let day = dir.path().join("day");
    let generate =
        surveil::generate::GenerateConfig { events: 40_000, accounts: 60, instruments: 8, ..Default::default() };
    surveil::generate::generate(&generate, &day).expect("generate");
    let baseline_out = dir.path().join("baseline");
    let events = day.join("events.csv");
    let baseline =
        run_guarded(vec![(events.clone(), None)], Config::default(), 1, &baseline_out).expect("baseline runs");
    for max_in_flight in [700, 50] {
        let mut config = Config::default();
        config.ingest.max_in_flight = max_in_flight;
        let out = dir.path().join(format!("tight{max_in_flight}"));
        let summary = run_guarded(vec![(events.clone(), None)], config, 2, &out).expect("runs");
        assert_eq!(summary.events, baseline.events);
        assert_eq!(
            common::alerts_without_clock(&out),
            common::alerts_without_clock(&baseline_out),
            "the bound never changes results"
        );
    }
}

fn surveil() -> Command {
    Command::new(env!("CARGO_BIN_EXE_surveil"))
}

/// Row 3: an output folder holding an input is refused before anything is written.
#[test]
fn inputs_are_never_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().join("d");
    std::fs::create_dir(&d).expect("mkdir");
    let original = std::fs::read(EXAMPLE_JSONL).expect("example");
    let input = d.join("dead_letters.jsonl");
    std::fs::write(&input, &original).expect("write");
    // The same file under the output name, by path, through a symbolic link, or a hard link.
    let linked = dir.path().join("e");
    std::fs::create_dir(&linked).expect("mkdir");
    std::fs::hard_link(&input, linked.join("alerts.jsonl")).expect("hard link");
    let symlinked = dir.path().join("f");
    std::os::unix::fs::symlink(&d, &symlinked).expect("symlink");
    for out in [&d, &linked, &symlinked] {
        let output =
            surveil().args(["run", "-q", "--format", "jsonl", "--out"]).arg(out).arg(&input).output().expect("spawn");
        assert!(!output.status.success(), "{out:?}");
        let err = String::from_utf8_lossy(&output.stderr);
        assert!(err.contains("refusing to write") && err.contains("it is the input"), "{err}");
        assert_eq!(std::fs::read(&input).expect("read"), original, "the input is untouched");
    }
    // The model and reference files are inputs too.
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "[reference]\ninstruments = \"out/summary.json\"\n").expect("write");
    std::fs::create_dir(dir.path().join("out")).expect("mkdir");
    std::fs::write(dir.path().join("out/summary.json"), "instrument,price_scale\nACME,2\n").expect("write");
    let output = surveil()
        .args(["run", "-q", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(dir.path().join("out"))
        .arg(EXAMPLE_CSV)
        .output()
        .expect("spawn");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("it is the input"));
}

/// Generates a day large enough that a run is still reading after a moment.
fn big_day(dir: &Path) -> PathBuf {
    let day = dir.join("day");
    let generate =
        surveil::generate::GenerateConfig { events: 400_000, accounts: 100, instruments: 10, ..Default::default() };
    surveil::generate::generate(&generate, &day).expect("generate");
    day.join("events.csv")
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill").args([&format!("-{name}"), &pid.to_string()]).status().expect("kill");
    assert!(status.success());
}

/// Waits until the run has written something, so that a signal lands mid-run.
fn wait_for_progress(out: &Path) {
    let partial = out.join("dead_letters.jsonl.partial");
    for _ in 0..600 {
        if partial.exists() {
            std::thread::sleep(Duration::from_millis(150));
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("the run never started writing");
}

/// Row 4: SIGINT or SIGTERM stops reading, drains, and writes whole lines and a summary that
/// says where the run stopped; a second signal exits at once, leaving only partial files; an
/// earlier run's files are never mixed with a new run's.
#[test]
fn interruption_leaves_whole_or_clearly_partial_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let events = big_day(dir.path());
    let out = dir.path().join("out");
    // An earlier complete run with a feature export: its files must not survive beside a new run.
    let earlier = surveil().args(["run", "-q", "--export-features", "--out"]).arg(&out).arg(EXAMPLE_CSV).status();
    assert!(earlier.expect("spawn").success());
    assert!(out.join("features.csv").exists());

    for (name, code) in [("INT", 130), ("TERM", 143)] {
        let child = surveil().args(["run", "-q", "--out"]).arg(&out).arg(&events).spawn().expect("spawn");
        wait_for_progress(&out);
        signal(child.id(), name);
        let output = guarded("interrupted run", move || child.wait_with_output().expect("wait"));
        assert_eq!(output.status.code(), Some(code), "SIG{name}");
        let summary: Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).expect("summary")).expect("json");
        assert_eq!(summary["complete"], Value::Bool(false));
        assert_eq!(summary["interrupted"]["reason"], Value::String(format!("SIG{name}")));
        let read = &summary["interrupted"]["read"][0];
        assert_eq!(read["finished"], Value::Bool(false));
        let ranges = read["ranges"].as_array().expect("ranges");
        let bytes: u64 = ranges.iter().map(|r| r[1].as_u64().unwrap_or(0) - r[0].as_u64().unwrap_or(0)).sum();
        assert!(bytes > 0 && bytes < std::fs::metadata(&events).expect("meta").len(), "{ranges:?}");
        assert_eq!(summary["bytes"].as_u64(), Some(bytes), "the ranges are what was read");
        for file in ["alerts.jsonl", "dead_letters.jsonl", "late_events.jsonl", "order_to_trade.jsonl"] {
            let text = std::fs::read_to_string(out.join(file)).expect("output file");
            assert!(text.is_empty() || text.ends_with('\n'), "{file} ends with a whole line");
            for line in text.lines() {
                serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{file}: {e}: {line}"));
            }
        }
        assert!(!out.join("features.csv").exists(), "the earlier run's features are gone");
        let partials: Vec<_> = std::fs::read_dir(&out)
            .expect("dir")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
            .collect();
        assert!(partials.is_empty(), "{partials:?}");
    }

    // Twice: the process exits at once, even when it is stuck (here, opening a named pipe that
    // nobody writes); the complete earlier output stays as it was.
    let before = std::fs::read(out.join("summary.json")).expect("summary");
    let fifo = dir.path().join("stuck.csv");
    assert!(Command::new("mkfifo").arg(&fifo).status().expect("mkfifo").success());
    let child = surveil().args(["run", "-q", "--out"]).arg(&out).arg(&fifo).spawn().expect("spawn");
    std::thread::sleep(Duration::from_millis(300));
    signal(child.id(), "INT");
    // Standard signals do not queue: give the handler a moment to take the first.
    std::thread::sleep(Duration::from_millis(300));
    signal(child.id(), "INT");
    let output = guarded("twice interrupted run", move || child.wait_with_output().expect("wait"));
    assert_eq!(output.status.code(), Some(130));
    assert_eq!(std::fs::read(out.join("summary.json")).expect("summary"), before, "earlier summary kept");
    // What a killed run leaves: partial files beside the earlier output, never under its names.
    std::fs::write(out.join("alerts.jsonl.partial"), "{\"cut off").expect("write");
    // The next run clears the partial files and replaces everything.
    let status = surveil().args(["run", "-q", "--out"]).arg(&out).arg(EXAMPLE_CSV).status().expect("spawn");
    assert!(status.success());
    let names: Vec<String> = std::fs::read_dir(&out)
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into())
        .collect();
    assert!(names.iter().all(|n| !n.ends_with(".partial")), "{names:?}");
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).expect("summary")).expect("json");
    assert_eq!(summary["complete"], Value::Bool(true));
    assert_eq!(summary["alerts"].as_u64(), Some(3));
}

/// Row 5, a smoke of the memory benchmark: peak memory does not grow with the number of days.
#[test]
fn memory_does_not_grow_with_the_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let generate =
        surveil::generate::GenerateConfig { events: 100_000, accounts: 80, instruments: 8, ..Default::default() };
    surveil::generate::generate(&generate, &dir.path().join("day")).expect("generate");
    let day = std::fs::read_to_string(dir.path().join("day/events.csv")).expect("day");
    let (head, body) = day.split_once('\n').expect("header");
    // Day k: every event time shifted by k days.
    let days = |k: u64| -> String {
        let mut text = String::with_capacity(body.len() * k as usize + head.len());
        text.push_str(head);
        text.push('\n');
        for d in 0..k {
            for line in body.lines() {
                let (time, rest) = line.split_once(',').expect("time");
                let time: u64 = time.parse().expect("integer time");
                text.push_str(&format!("{},{rest}\n", time + d * 86_400_000_000_000));
            }
        }
        text
    };
    let one = write(dir.path(), "one.csv", days(1).as_bytes());
    let four = write(dir.path(), "four.csv", days(4).as_bytes());
    // A bound on records in flight well below a day, so that one day reaches the steady state.
    let config = write(dir.path(), "c.toml", b"[ingest]\nblock_size = 1048576\nmax_in_flight = 20000\n");
    // Peak memory is per process: each measurement runs in a process of its own.
    let peak = |path: &Path, workers: &str| -> u64 {
        let out = path.with_extension(format!("out{workers}"));
        let status = surveil()
            .args(["run", "-q", "--workers", workers, "--config"])
            .arg(&config)
            .arg("--out")
            .arg(&out)
            .arg(path)
            .status()
            .expect("spawn");
        assert!(status.success());
        let summary: Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).expect("summary")).expect("json");
        summary["peak_rss_bytes"].as_u64().expect("peak memory on Linux")
    };
    for workers in ["1", "2"] {
        let (small, large) = (peak(&one, workers), peak(&four, workers));
        // Four times the input, at most a quarter more memory (allocator noise), never four times.
        assert!(large < small + small / 4 + (16 << 20), "{workers} workers: 1 day {small} B, 4 days {large} B");
    }
}

/// Row 6: a cancel without a quantity after the order was filled says so.
#[test]
fn a_cancel_after_a_fill_is_explained() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        "{}\n1,1,new,X,ACME,F1,A1,,,,buy,10,100,,,,,,,,,,,,,\n2,2,fill,X,ACME,F1,A1,,,,buy,10,100,,,,,,,,,,,,,\n3,3,cancel,X,ACME,F1,A1,,,,,,,,,,,,,,,,,,,\n4,4,cancel,X,ACME,NEVER_SEEN_ORDER_7,A1,,,,,,,,,,,,,,,,,,,\n",
        header()
    );
    let path = write(dir.path(), "f.csv", text.as_bytes());
    let out = dir.path().join("out");
    let summary = run_guarded(vec![(path, None)], Config::default(), 1, &out).expect("runs");
    assert_accounted(&summary, &out, Some(5), "cancel after fill");
    let letters = common::read_jsonl(&out, "dead_letters.jsonl");
    assert_eq!(letters.len(), 2);
    let detail = |i: usize| letters[i]["detail"].as_str().unwrap_or_default().to_string();
    assert!(
        detail(0).contains("order F1, which was filled completely at 1970-01-01T00:00:00.000000002Z"),
        "{}",
        detail(0)
    );
    assert!(detail(1).contains("order NEVER_SEEN_ORDER_7, which is not open"), "{}", detail(1));
    assert!(letters[1]["raw"].as_str().unwrap_or_default().contains("NEVER_SEEN_ORDER_7"), "long names, not #hex");
    assert_eq!(letters[0]["line"], Value::from(4));
}

/// Row 7: invalid UTF-8 is a dead letter, never repaired into another name; a control character
/// in a name is refused.
#[test]
fn invalid_text_is_refused_not_repaired() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut bytes = format!("{}\n", header()).into_bytes();
    for account in [&b"AC\xffC1"[..], b"AC\xfeC1", b"ACC1"] {
        bytes.extend_from_slice(b"1,1,new,X,ACME,O1,");
        bytes.extend_from_slice(account);
        bytes.extend_from_slice(b",,,,buy,10,100,,,,,,,,,,,,,\n");
    }
    bytes.extend_from_slice(b"2,1,new,X,AC\0ME_LONG_NAME,O2,ACC1,,,,buy,10,100,,,,,,,,,,,,,\n");
    bytes.extend_from_slice(b"2,1,new,X,NUL,O2,ACC1\0X,,,,buy,10,100,,,,,,,,,,,,,\n");
    let path = write(dir.path(), "bad_text.csv", &bytes);
    for format in [None, Some(Format::Jsonl)] {
        let out = dir.path().join("out");
        let summary = run_guarded(vec![(path.clone(), format)], Config::default(), 1, &out).expect("runs");
        assert_accounted(&summary, &out, Some(6), "bad text");
        let reasons = &summary.written.dead_letters_by_reason;
        assert_eq!(reasons.get("bad_utf8"), Some(&2), "{format:?} {reasons:?}");
        if format.is_none() {
            assert_eq!(summary.events, 1);
            assert_eq!(reasons.get("control_character"), Some(&2), "{reasons:?}");
        }
    }
    // JSON escapes decode to control characters too.
    let jsonl = r#"{"event_time":1,"kind":"new","instrument":"AC\u0000ME","order_id":"O1","account":"A","side":"buy","price":"1","quantity":1}"#;
    let path = write(dir.path(), "nul.jsonl", jsonl.as_bytes());
    let out = dir.path().join("out_json");
    let summary = run_guarded(vec![(path, None)], Config::default(), 1, &out).expect("runs");
    assert_eq!(summary.written.dead_letters_by_reason.get("control_character"), Some(&1));
}

/// Row 8: a byte order mark before the header is skipped, in every format.
#[test]
fn a_byte_order_mark_is_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, source) in [("bom.csv", EXAMPLE_CSV), ("bom.jsonl", EXAMPLE_JSONL)] {
        let mut bytes = b"\xEF\xBB\xBF".to_vec();
        bytes.extend(std::fs::read(source).expect("example"));
        let path = write(dir.path(), name, &bytes);
        let out = dir.path().join(format!("out_{name}"));
        let summary = run_guarded(vec![(path, None)], Config::default(), 1, &out).expect("runs");
        assert_eq!((summary.events, summary.dead_letters, summary.alerts), (26, 0, 3), "{name}");
    }
}

/// Row 9: limits that cannot work are refused at load, naming the key.
#[test]
fn bad_configuration_is_refused_at_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (text, key) in [
        ("[rules.order_limits]\nmax_notional = \"-1\"\n", "max_notional"),
        ("[rules.order_to_trade]\nmax_count_ratio = nan\n", "max_count_ratio"),
        ("[rules.order_to_trade]\nmax_count_ratio = -1.0\n", "max_count_ratio"),
        ("[ingest]\nmax_out_of_order = \"600000000000d\"\n", "max_out_of_order"),
        ("[ingest]\nmax_in_flight = 0\n", "max_in_flight"),
    ] {
        let config = write(dir.path(), "c.toml", text.as_bytes());
        let output = surveil().args(["run", "-q", "--config"]).arg(&config).arg(EXAMPLE_CSV).output().expect("spawn");
        assert!(!output.status.success(), "{text}");
        let err = String::from_utf8_lossy(&output.stderr);
        assert!(err.contains(key), "{text}: {err}");
    }
    // A configuration built in code is checked by the library too.
    let mut config = Config::default();
    config.rules.order_to_trade.max_volume_ratio = f64::NAN;
    let out = dir.path().join("out");
    let result = run_guarded(vec![(PathBuf::from(EXAMPLE_CSV), None)], config, 1, &out);
    assert!(matches!(result, Err(RunError::Config(ref m)) if m.contains("max_volume_ratio")), "{result:?}");
}

/// Row 10: clear messages, each cause said once; an unreadable gzip file is a dead letter.
#[test]
fn messages_are_clear_and_said_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stderr = |args: &[&str]| -> String {
        let output = surveil().args(args).output().expect("spawn");
        assert!(!output.status.success(), "{args:?}");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let missing = stderr(&["run", "-q", "/no/such/input.csv"]);
    assert_eq!(missing.matches("No such file").count(), 1, "{missing}");
    let folder = stderr(&["run", "-q", dir.path().to_str().expect("utf8")]);
    assert!(folder.contains("is a folder, not a file"), "{folder}");
    let out_file = stderr(&["run", "-q", "--out", EXAMPLE_CSV, EXAMPLE_CSV]);
    assert!(out_file.contains("is not a folder"), "{out_file}");
    let config = stderr(&["run", "-q", "--config", "/no/such/config.toml", EXAMPLE_CSV]);
    assert!(config.contains("cannot read configuration") && config.matches("No such file").count() == 1, "{config}");

    // Five bytes of a gzip header: an io_error dead letter, and the other input still runs.
    let tiny = write(dir.path(), "tiny.csv.gz", b"\x1f\x8b\x08\x00\x00");
    let out = dir.path().join("out");
    let summary =
        run_guarded(vec![(tiny, None), (PathBuf::from(EXAMPLE_CSV), None)], Config::default(), 2, &out).expect("runs");
    assert_eq!(summary.written.dead_letters_by_reason.get("io_error"), Some(&1));
    assert_eq!(summary.alerts, 3);
    let letter = &common::read_jsonl(&out, "dead_letters.jsonl")[0];
    assert!(letter["detail"].as_str().unwrap_or_default().contains("tiny.csv.gz"), "{letter}");

    // A bad time says why.
    let text = format!(
        "{}\n1969-12-31T23:59:59Z,1,new,X,ACME,O1,A,,,,buy,1,5,,,,,,,,,,,,,\nsoon,1,new,X,ACME,O1,A,,,,buy,1,5,,,,,,,,,,,,,\n",
        header()
    );
    let path = write(dir.path(), "times.csv", text.as_bytes());
    let out = dir.path().join("out_times");
    run_guarded(vec![(path, None)], Config::default(), 1, &out).expect("runs");
    let details: Vec<String> = common::read_jsonl(&out, "dead_letters.jsonl")
        .iter()
        .map(|l| l["detail"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(details[0].contains("before 1970"), "{details:?}");
    assert!(details[1].contains("neither integer nanoseconds since 1970 nor RFC 3339"), "{details:?}");
}

/// The schema's smaller rules: extra fields are `column_count`, a column named twice is an
/// input error, trailing zeros beyond the scale and a zero fraction of a quantity are exact.
#[test]
fn the_schema_rules_hold() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        "{}\n1,1,new,X,ACME,O1,A,,,,buy,10.5000000,100.0,,,,,,,,,,,,,\n2,2,new,X,ACME,O2,A,,,,buy,10,5,,,,,,,,,,,,,,extra\n",
        header()
    );
    let path = write(dir.path(), "rules.csv", text.as_bytes());
    let out = dir.path().join("out");
    let summary = run_guarded(vec![(path, None)], Config::default(), 1, &out).expect("runs");
    assert_eq!(summary.events, 1);
    assert_eq!(summary.written.dead_letters_by_reason.get("column_count"), Some(&1));
    let twice = write(dir.path(), "twice.csv", b"event_time,kind,instrument,kind\n1,new,X,new\n");
    let out = dir.path().join("out2");
    let result = run_guarded(vec![(twice, None)], Config::default(), 1, &out);
    assert!(matches!(&result, Err(e) if e.to_string().contains("`kind` twice")), "{result:?}");
    // Nothing was written for a refused input.
    assert!(!out.join("summary.json").exists());
}

/// A gzipped copy cut short: what was read is processed, the rest is one io_error letter.
#[test]
fn a_truncated_gzip_is_read_up_to_the_cut() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut text = std::fs::read(EXAMPLE_CSV).expect("example");
    for _ in 0..200 {
        text.extend(std::fs::read_to_string(EXAMPLE_CSV).expect("example").lines().skip(1).flat_map(|l| {
            let mut l = l.as_bytes().to_vec();
            l.push(b'\n');
            l
        }));
    }
    encoder.write_all(&text).expect("compress");
    let gz = encoder.finish().expect("finish");
    let path = write(dir.path(), "cut.csv.gz", &gz[..gz.len() / 2]);
    for workers in [1, 2] {
        let out = dir.path().join(format!("out{workers}"));
        let summary = run_guarded(vec![(path.clone(), None)], Config::default(), workers, &out).expect("runs");
        assert_eq!(summary.written.dead_letters_by_reason.get("io_error"), Some(&1));
        assert!(summary.events > 0 && summary.lines.read < lines_in(&text));
        assert_accounted(&summary, &out, None, "truncated gzip");
    }
}
