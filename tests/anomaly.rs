//! The feature store and the behavioural anomaly detector on a generated day: explained alerts,
//! no alert storm on a cold start, the same rows and alerts on one and two workers, a burst that
//! is caught, and deterministic training that warms the detector.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};

use common::{alerts_without_clock, read_jsonl, run};
use serde_json::Value;
use surveil::anomaly::{AnomalyModel, AnomalyProcessor, ModelError, train};
use surveil::config::Config;
use surveil::features::export::{FEATURES_FILE, read};
use surveil::features::{FEATURES, FeatureScope};
use surveil::generate::{GenerateConfig, generate};
use surveil::pipeline::{inputs, train_files};

const MINUTE: u64 = 60_000_000_000;

/// A generated day plus, one minute after its last event, a burst of 300 orders in one minute by
/// the account and instrument of the file's first order (a market maker active all day).
fn day_with_burst(dir: &Path) -> (PathBuf, Config, String, String) {
    let config = GenerateConfig { events: 200_000, accounts: 80, instruments: 8, ..Default::default() };
    let summary = generate(&config, dir).expect("generate");
    let text = std::fs::read_to_string(&summary.events_path).expect("events");
    let first: Vec<&str> = text.lines().nth(1).expect("first event").split(',').collect();
    let (instrument, account, desk, price) = (first[4], first[6], first[8], first[11]);
    let last_time: u64 =
        text.lines().last().and_then(|l| l.split(',').next()).and_then(|t| t.parse().ok()).expect("time");
    let start = (last_time / MINUTE + 2) * MINUTE;
    let mut file = std::fs::OpenOptions::new().append(true).open(&summary.events_path).expect("append");
    for i in 0..300u64 {
        writeln!(
            file,
            "{},{},new,XSVL,{instrument},BURST{i},{account},,{desk},,buy,{price},100,,,,,,,,,,,,,,",
            start + i * 100_000_000,
            9_000_000 + i
        )
        .expect("write");
    }
    let mut run_config = Config::load(&dir.join("surveil.toml")).expect("config");
    run_config.rules.anomaly.enabled = true;
    run_config.features.export = true;
    (summary.events_path, run_config, account.to_string(), instrument.to_string())
}

fn anomalies(dir: &Path) -> Vec<Value> {
    read_jsonl(dir, "alerts.jsonl").into_iter().filter(|a| a["rule"] == "behavioural_anomaly").collect()
}

fn sorted_lines(path: &Path) -> Vec<String> {
    let mut lines: Vec<String> = std::fs::read_to_string(path).expect("file").lines().map(String::from).collect();
    lines.sort();
    lines
}

#[test]
fn anomaly_alerts_are_explained_bounded_and_the_same_on_one_and_two_workers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (events, config, account, instrument) = day_with_burst(dir.path());
    let (one, out1) = run(std::slice::from_ref(&events), config.clone(), 1);
    let (two, out2) = run(&[events], config, 2);

    // The feature store and the detector give the same rows and alerts on any number of workers.
    assert!(one.written.feature_rows > 10_000, "{}", one.written.feature_rows);
    assert_eq!(one.written.feature_rows, two.written.feature_rows);
    assert_eq!(sorted_lines(&out1.path().join(FEATURES_FILE)), sorted_lines(&out2.path().join(FEATURES_FILE)));
    assert_eq!(alerts_without_clock(out1.path()), alerts_without_clock(out2.path()));

    let alerts = anomalies(out1.path());
    // No storm: a small fraction of the rows alert.
    assert!(!alerts.is_empty());
    assert!((alerts.len() as u64) * 500 < one.written.feature_rows, "{} alerts", alerts.len());

    // Cold start: nothing alerts in the first window, before any baseline exists.
    let rows = read(&out1.path().join(FEATURES_FILE)).expect("features");
    let first_end = rows.iter().map(|r| r.window_end).min().expect("rows");
    assert!(alerts.iter().all(|a| a["event_time_ns"].as_u64().expect("time") > first_end));

    // Every alert explains itself.
    for alert in &alerts {
        let p = &alert["parameters"];
        let features = p["features"].as_array().expect("features");
        assert!(!features.is_empty() && features.len() <= 3, "{alert}");
        assert!(FEATURES.iter().any(|f| f.name == features[0]["feature"]), "{alert}");
        assert!(p["max_abs_z"].as_f64().expect("z") >= 6.0);
        assert_eq!(p["model_version"], "online");
        assert_eq!(p["seed"], 7);
        let basis = p["baseline"].as_str().expect("baseline");
        let z = if basis == "own" { &features[0]["z_own"] } else { &features[0]["z_peers"] };
        assert!((z.as_f64().expect("z of the basis").abs() - p["max_abs_z"].as_f64().expect("z")).abs() < 1e-9);
    }

    // The burst is caught, against the pair's own history, with the order rate first.
    let burst: Vec<&Value> = alerts
        .iter()
        .filter(|a| a["account"] == account.as_str() && a["parameters"]["scope"] == "account_instrument")
        .filter(|a| a["instrument"] == instrument.as_str() && a["parameters"]["features"][0]["feature"] == "order_rate")
        .collect();
    assert_eq!(burst.len(), 1, "{alerts:#?}");
    assert_eq!(burst[0]["parameters"]["baseline"], "own");
    assert!(burst[0]["parameters"]["features"][0]["value"].as_f64().expect("rate") == 5.0);
}

#[test]
fn training_is_deterministic_and_a_model_warms_the_detector() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (events, config, _, _) = day_with_burst(dir.path());
    let work1 = dir.path().join("train1");
    let work2 = dir.path().join("train2");
    let (model, _) =
        train_files(inputs(std::slice::from_ref(&events), None), config.clone(), 1, &work1).expect("train");
    let (model2, _) =
        train_files(inputs(std::slice::from_ref(&events), None), config.clone(), 2, &work2).expect("train");
    assert_eq!(model.version, model2.version);
    assert!(model == model2, "same model on one and two workers");
    assert_eq!(model.forests.len(), 3, "a forest per scope");
    assert_eq!(model.seed, 7);

    // Training on the exported rows is training on the live stream.
    let window_ns = config.features.window.as_nanos() as u64;
    let mut rows = read(&work1.join(FEATURES_FILE)).expect("features");
    let replayed = train(&mut rows.clone(), &config.rules.anomaly, window_ns);
    assert_eq!(replayed.version, model.version);
    assert!(replayed == model, "training on the export is training on the live rows");

    // Saved and loaded unchanged; a model of another window is refused.
    let path = dir.path().join("model.json");
    model.save(&path).expect("save");
    assert!(AnomalyModel::load(&path, window_ns).expect("load") == model, "the model file round-trips exactly");
    assert!(matches!(AnomalyModel::load(&path, window_ns * 2), Err(ModelError::Incompatible { .. })));
    // A forest over another number of features (a model edited, or of another build) is refused.
    let mut wrong = model.clone();
    let narrow = surveil_operators::IsolationForest::fit(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0], 2, Default::default())
        .expect("a 2-feature forest");
    wrong.forests[0].forest = narrow;
    let wrong_path = dir.path().join("wrong.json");
    wrong.save(&wrong_path).expect("save");
    match AnomalyModel::load(&wrong_path, window_ns) {
        Err(ModelError::Incompatible { reason, .. }) => assert!(reason.contains("scores 2 features"), "{reason}"),
        other => panic!("accepted a forest of the wrong width: {:?}", other.map(|m| m.version)),
    }
    // The export knows its window.
    let (_, window) = surveil::features::export::read_with_window(&work1.join(FEATURES_FILE)).expect("features");
    assert_eq!(window, Some(window_ns));

    // Warm: every row of the first window is scored; cold: none is.
    rows.sort_by_key(surveil::anomaly::order_row);
    let first_end = rows[0].window_end;
    let first: Vec<_> = rows.iter().filter(|r| r.window_end == first_end).collect();
    let mut warm = AnomalyProcessor::new(&config.rules.anomaly, window_ns, Some(&model));
    let mut cold = AnomalyProcessor::new(&config.rules.anomaly, window_ns, None);
    for row in &first {
        let score = warm.score_and_learn(row).expect("a trained key is scored from its first window");
        if row.scope != FeatureScope::Instrument || row.counters.activity() > 0 {
            assert!(score.forest.is_some());
        }
        assert!(cold.score_and_learn(row).is_none());
    }

    // A run with the model names it in its alerts and asks the forest too.
    let mut with_model = config;
    with_model.rules.anomaly.model = Some(path);
    let (_, out) = run(&[events], with_model, 2);
    let alerts = anomalies(out.path());
    assert!(!alerts.is_empty());
    for alert in &alerts {
        assert_eq!(alert["parameters"]["model_version"], model.version.as_str());
        assert!(alert["parameters"]["forest_score"].as_f64().expect("forest score") >= 0.55);
        let contribution = &alert["parameters"]["features"][0]["forest_contribution"];
        assert!(contribution.as_f64().is_some(), "{alert}");
    }
}
