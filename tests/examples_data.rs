//! The example session in `datasets/`: the CSV and JSON Lines files hold the same events, both
//! read without a dead letter, and both raise the same alerts.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::{alerts_by_rule, alerts_without_clock, read_jsonl, run};
use serde_json::Value;
use surveil::config::Config;

/// (rule, instrument, account, event_time_ns)
type Key = (String, String, String, u64);

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets").join(name)
}

fn keys(dir: &Path) -> BTreeSet<Key> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    read_jsonl(dir, "alerts.jsonl")
        .iter()
        .map(|a| {
            (text(&a["rule"]), text(&a["instrument"]), text(&a["account"]), a["event_time_ns"].as_u64().unwrap_or(0))
        })
        .collect()
}

/// Alerts without what depends on the file they came from: the wall clock, the id (a hash of
/// the evidence's origins) and the evidence's source and byte offset.
fn comparable(dir: &Path) -> Vec<Value> {
    alerts_without_clock(dir)
        .into_iter()
        .map(|mut alert| {
            if let Some(o) = alert.as_object_mut() {
                // Ids hash the evidence's origins (file and offset); a group is named by its
                // first alert's id.
                let opened = o.get("group") == o.get("id");
                o.remove("id");
                if opened {
                    o.insert("group".into(), Value::from("itself"));
                }
            }
            for e in alert["evidence"].as_array_mut().into_iter().flatten() {
                if let Some(o) = e.as_object_mut() {
                    o.remove("source");
                    o.remove("offset");
                }
            }
            alert
        })
        .collect()
}

#[test]
fn csv_and_jsonl_examples_read_cleanly_and_raise_the_same_alerts() {
    let (csv, csv_out) = run(&[example("example.csv")], Config::default(), 1);
    let (jsonl, jsonl_out) = run(&[example("example.jsonl")], Config::default(), 2);
    for (name, summary) in [("example.csv", &csv), ("example.jsonl", &jsonl)] {
        assert_eq!(summary.dead_letters, 0, "{name}: {:?}", summary.written.dead_letters_by_reason);
        assert_eq!(summary.written.late_events, 0, "{name}");
        assert_eq!(summary.events, 26, "{name}");
        for kind in ["new", "replace", "cancel", "fill", "trade", "quote", "status"] {
            assert!(summary.events_by_kind[kind] > 0, "{name} has no {kind} event");
        }
    }
    assert_eq!(csv.events_by_kind, jsonl.events_by_kind);

    let expected: BTreeSet<Key> = [
        ("order_quantity_limit", "BOLT", "ACC004", 1_709_303_400_600_000_000),
        ("off_market_price", "BOLT", "ACC005", 1_709_303_400_900_000_000),
        ("self_trade", "CRUX", "ACC007", 1_709_303_401_050_000_000),
    ]
    .into_iter()
    .map(|(rule, instrument, account, time)| (rule.into(), instrument.into(), account.into(), time))
    .collect();
    assert_eq!(keys(csv_out.path()), expected);
    assert_eq!(keys(jsonl_out.path()), expected);
    assert_eq!(alerts_by_rule(csv_out.path()).values().sum::<usize>(), expected.len(), "one alert per breach");
    assert_eq!(comparable(csv_out.path()), comparable(jsonl_out.path()));
}
