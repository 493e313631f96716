//! Shared helpers for integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use surveil::config::Config;
use surveil::pipeline::{RunSummary, run_files};

/// The shared datasets folder: `$SURVEIL_DATA`, or `../shared/datasets` beside the project.
/// Missing data is a failure, never a skip.
pub fn data_dir() -> PathBuf {
    // Beside the project root, which is this package's folder or the one above it (the command
    // line's package shares these helpers).
    let dir = std::env::var_os("SURVEIL_DATA").map(PathBuf::from).unwrap_or_else(|| {
        let here = Path::new(env!("CARGO_MANIFEST_DIR"));
        [here.join("../shared/datasets"), here.join("../../shared/datasets")]
            .into_iter()
            .find(|d| d.join("lobster").is_dir())
            .unwrap_or_else(|| here.join("../shared/datasets"))
    });
    assert!(
        dir.join("lobster").is_dir(),
        "the shared datasets are missing: expected {} (set SURVEIL_DATA to the datasets folder)",
        dir.display()
    );
    dir
}

/// A file in the shared datasets.
pub fn data(relative: &str) -> PathBuf {
    let path = data_dir().join(relative);
    assert!(path.exists(), "missing dataset file {}", path.display());
    path
}

/// Runs the default job and returns the summary and the output folder.
pub fn run(paths: &[PathBuf], config: Config, workers: usize) -> (RunSummary, tempfile::TempDir) {
    let out = tempfile::tempdir().expect("tempdir");
    let summary = run_files(paths, config, workers, out.path()).expect("run succeeds");
    (summary, out)
}

/// The JSON objects of a JSON Lines output file.
pub fn read_jsonl(dir: &Path, name: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join(name)).expect("output file");
    text.lines().map(|l| serde_json::from_str(l).expect("valid JSON line")).collect()
}

/// Alerts without their wall-clock field, for comparing runs.
pub fn alerts_without_clock(dir: &Path) -> Vec<Value> {
    read_jsonl(dir, "alerts.jsonl")
        .into_iter()
        .map(|mut a| {
            if let Some(o) = a.as_object_mut() {
                o.remove("detected_at");
            }
            a
        })
        .collect()
}

/// Alerts counted by rule.
pub fn alerts_by_rule(dir: &Path) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for a in read_jsonl(dir, "alerts.jsonl") {
        *counts.entry(a["rule"].as_str().unwrap_or("?").to_string()).or_default() += 1;
    }
    counts
}

/// The message file through the product's own LOBSTER parser: one event per message line.
pub fn lobster_events(path: &std::path::Path) -> Vec<surveil::model::Event> {
    let config = Config::default();
    let input =
        surveil::ingest::InputSpec { index: 0, path: path.to_path_buf(), format: surveil::ingest::Format::Lobster };
    let mut parser = surveil::ingest::parser_for(&input, &config).expect("parser");
    let reference = surveil::reference::ReferenceData::new(4);
    let (mut side, mut announced) = (Vec::new(), surveil::model::IdMap::default());
    let mut ctx = surveil::ingest::ParseContext::new(&reference, &mut side, &mut announced);
    let text = std::fs::read(path).expect("messages");
    let mut out = Vec::new();
    let mut offset = 0u64;
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        let here = offset;
        offset += line.len() as u64 + 1;
        if line.is_empty() || (i == 0 && parser.is_header(line)) {
            continue;
        }
        let before = out.len();
        let line = surveil::ingest::Line { bytes: line, origin: surveil::model::Origin::new(0, here), companion: None };
        ctx.parse(parser.as_mut(), &line, &mut out).expect("every message parses");
        assert_eq!(out.len(), before + 1, "one event per message");
    }
    out
}

/// A FIX message of `fields` (after 8 and 9, before 10) with its true body length (9) and
/// checksum (10).
pub fn fix_message(version: &str, fields: &[(u32, &str)]) -> String {
    let body: String = fields.iter().map(|(t, v)| format!("{t}={v}\u{1}")).collect();
    let head = format!("8={version}\u{1}9={}\u{1}", body.len());
    let sum = (head.clone() + &body).bytes().map(u32::from).sum::<u32>() % 256;
    format!("{head}{body}10={sum:03}\u{1}")
}

/// The alerts of one rule in a run's output folder.
pub fn alerts_of_rule(out: &Path, rule: &str) -> Vec<Value> {
    read_jsonl(out, "alerts.jsonl").into_iter().filter(|a| a["rule"] == rule).collect()
}

/// A generated day of 400,000 events (120 accounts, 12 instruments) to plant cases in: its
/// folder (with `surveil.toml`, `accounts.csv`) and its events file.
pub fn small_day(seed: u64) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let generated = surveil::generate::GenerateConfig {
        events: 400_000,
        accounts: 120,
        instruments: 12,
        seed,
        ..Default::default()
    };
    let summary = surveil::generate::generate(&generated, dir.path()).expect("generate");
    (dir, summary.events_path)
}

/// Adds `rows` to a generated day's `events.csv`, in event-time order, and `accounts` rows to
/// its `accounts.csv`: a case planted in ordinary flow.
pub fn inject(dir: &Path, rows: Vec<String>, accounts: &[&str]) {
    let events = std::fs::read_to_string(dir.join("events.csv")).expect("events");
    let mut lines: Vec<&str> = events.lines().collect();
    let header = lines.remove(0);
    let time = |l: &str| l.split(',').next().and_then(|t| t.parse::<u64>().ok()).unwrap_or(0);
    let mut all: Vec<&str> = lines.into_iter().chain(rows.iter().map(String::as_str)).collect();
    all.sort_by_key(|l| time(l));
    std::fs::write(dir.join("events.csv"), format!("{header}\n{}\n", all.join("\n"))).expect("write events");
    let mut text = std::fs::read_to_string(dir.join("accounts.csv")).expect("accounts");
    for row in accounts {
        text.push_str(row);
        text.push('\n');
    }
    std::fs::write(dir.join("accounts.csv"), text).expect("write accounts");
}
