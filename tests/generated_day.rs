//! The generated trading day: every injected breach is found, nothing else is, and the alerts
//! do not depend on the number of workers.

mod common;

use common::{alerts_without_clock, read_jsonl, run};
use surveil::config::Config;
use surveil::generate::labels::{evaluate, score};
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
    for rule in ["spoofing", "layering", "quote_stuffing", "marking_close", "momentum_ignition"] {
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
    // Momentum ignition in particular: its injected bursts and turns are found, and the
    // background's takers crossing the spread all day on both sides raise none.
    let scores = evaluate(&dir.path().join("labels.csv"), &out1.path().join("alerts.jsonl")).expect("evaluate");
    let ignition = scores.iter().find(|s| s.rule == "momentum_ignition").expect("scored");
    assert!(ignition.labels >= 2 && ignition.recall() >= 0.95, "{ignition:?}");
    assert_eq!(ignition.false_alerts, 0, "{ignition:?}");

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

/// The recorded AAPL hour as the background of injected scenarios (`surveil generate
/// --background`): the scenarios are found, and the recorded flow, its orders spread over 500
/// synthetic accounts, raises no order-book abuse alert of its own.
#[test]
fn scenarios_injected_into_the_recorded_aapl_hour_are_found_without_false_alerts() {
    use surveil::config::Config;
    use surveil::generate::{BackgroundConfig, generate_over_recording};

    let recording = common::data("lobster/aapl_2012-06-21/AAPL_2012-06-21_34200000_37800000_message_50.csv");
    for seed in [1, 2] {
        let dir = tempfile::tempdir().expect("tempdir");
        let config =
            BackgroundConfig { recording: recording.clone(), seed, accounts: 500, ..BackgroundConfig::default() };
        let summary = generate_over_recording(&config, dir.path()).expect("generate over the recording");
        assert_eq!(summary.recorded_messages, 91_997);
        // Injected takers and ignitions trade with a few recorded orders, whose later messages
        // then differ (with the 19 midpoint executions the file cannot carry).
        assert!(summary.displaced_messages < 150, "{}", summary.displaced_messages);
        for rule in ["spoofing", "layering", "quote_stuffing", "momentum_ignition"] {
            assert!(summary.labels_by_rule.get(rule).is_some_and(|&n| n >= 3), "{rule}: {:?}", summary.labels_by_rule);
        }
        let run_config = Config::load(&dir.path().join("surveil.toml")).expect("config");
        let (run, out) = common::run(std::slice::from_ref(&summary.events_path), run_config, 1);
        assert_eq!(run.dead_letters, 0, "hidden executions without an account are accepted");
        let scores = evaluate(&dir.path().join("labels.csv"), &out.path().join("alerts.jsonl")).expect("evaluate");
        for rule in ["spoofing", "layering", "quote_stuffing", "momentum_ignition"] {
            let score = scores.iter().find(|s| s.rule == rule).expect("scored");
            assert!(score.recall() >= 0.95, "{score:?}");
            assert_eq!(score.false_alerts, 0, "a false {rule} alert on recorded flow: {score:?}");
        }
    }
    // The same seed gives the same file; without scenarios, the recording alone with accounts.
    let write = |scenarios: bool| {
        let dir = tempfile::tempdir().expect("tempdir");
        let config =
            BackgroundConfig { recording: recording.clone(), seed: 7, scenarios, ..BackgroundConfig::default() };
        let summary = generate_over_recording(&config, dir.path()).expect("generate");
        (std::fs::read(&summary.events_path).expect("events"), summary)
    };
    let (first, _) = write(true);
    assert_eq!(write(true).0, first);
    let (plain, summary) = write(false);
    // The 19 messages not written are hidden executions at the midpoint, at half a cent, which
    // the generated instrument's price scale (cents) cannot carry.
    assert_eq!((summary.labels, summary.displaced_messages), (0, 19));
    assert_eq!(summary.events_by_kind["new"], 44_256, "{:?}", summary.events_by_kind);
    assert_ne!(plain, first);
}

#[test]
fn a_shallow_recording_is_refused_as_background() {
    let recording =
        common::data("lobster/amzn_2012-06-21_level1_modified/AMZN_2012-06-21_34200000_57600000_message_1.csv");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = surveil::generate::BackgroundConfig { recording, ..Default::default() };
    let error = surveil::generate::generate_over_recording(&config, dir.path()).expect_err("level 1 is refused");
    assert!(error.to_string().contains("cannot be rebuilt"), "{error}");
}
