//! The generated trading day: every injected breach is found, nothing else is, and the alerts
//! do not depend on the number of workers.

mod common;

use common::{alerts_without_clock, read_jsonl, run};
use surveil::config::Config;
use surveil::generate::labels::score;
use surveil::generate::{GenerateConfig, generate};

#[test]
fn alerts_match_the_labels_exactly_on_one_and_two_workers() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A seed whose small day holds every kind of scenario played out (not every small day does:
    // a scenario is labelled only when it played out); the nine full-size days measured in
    // docs/detectors.md cover them all.
    let config = GenerateConfig { events: 300_000, accounts: 120, instruments: 12, seed: 2, ..Default::default() };
    let summary = generate(&config, dir.path()).expect("generate");
    assert!(summary.labels >= 60, "{:?}", summary.labels_by_rule);
    for rule in ["spoofing", "layering", "quote_stuffing", "marking_close"] {
        assert!(summary.labels_by_rule.get(rule).is_some_and(|&n| n > 0), "{rule}: {:?}", summary.labels_by_rule);
    }
    let run_config = Config::load(&dir.path().join("surveil.toml")).expect("config");

    let (one, out1) = run(std::slice::from_ref(&summary.events_path), run_config.clone(), 1);
    assert_eq!(one.dead_letters, 0);
    assert_eq!(one.written.late_events, 0);
    assert_eq!(one.events, summary.events);
    let score = score(&dir.path().join("labels.csv"), &out1.path().join("alerts.jsonl")).expect("score");
    assert_eq!(score.labels as u64, summary.labels);
    assert!(score.missed.is_empty() && score.unexpected.is_empty(), "{score:?}");
    assert_eq!(read_jsonl(out1.path(), "alerts.jsonl").len(), score.found, "one alert per breach");

    let mut small_blocks = run_config;
    small_blocks.ingest.block_size = 1 << 20;
    let (two, out2) = run(&[summary.events_path], small_blocks, 2);
    assert_eq!(two.events, one.events);
    assert_eq!(alerts_without_clock(out1.path()), alerts_without_clock(out2.path()));
}

#[test]
fn gzip_and_plain_inputs_give_the_same_alerts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plain = generate(
        &GenerateConfig { events: 60_000, accounts: 40, instruments: 5, ..Default::default() },
        &dir.path().join("p"),
    )
    .expect("generate");
    let gz = generate(
        &GenerateConfig { events: 60_000, accounts: 40, instruments: 5, gzip: true, ..Default::default() },
        &dir.path().join("g"),
    )
    .expect("generate");
    let config = Config::load(&dir.path().join("p/surveil.toml")).expect("config");
    let (_, a) = run(&[plain.events_path], config.clone(), 2);
    let (_, b) = run(&[gz.events_path], config, 2);
    let strip = |dir: &std::path::Path| -> Vec<serde_json::Value> {
        alerts_without_clock(dir)
            .into_iter()
            .map(|mut v| {
                for e in v["evidence"].as_array_mut().into_iter().flatten() {
                    e.as_object_mut().map(|o| o.remove("source"));
                }
                v
            })
            .collect()
    };
    assert_eq!(strip(a.path()), strip(b.path()));
}
