//! The teaching examples run on the example session, and what they write is checked.

#[allow(dead_code)]
#[path = "../examples/cancel_burst.rs"]
mod cancel_burst;
#[allow(dead_code)]
#[path = "../examples/custom_pipeline.rs"]
mod custom_pipeline;

use std::path::PathBuf;

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("datasets/example.csv")
}

fn alerts(out: &std::path::Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(out.join("alerts.jsonl")).expect("alerts.jsonl");
    text.lines().map(|l| serde_json::from_str(l).expect("JSON")).collect()
}

#[test]
fn a_rule_of_ones_own_runs_beside_the_built_in_rules() {
    let out = tempfile::tempdir().expect("tempdir");
    let summary = cancel_burst::run_with_rule(&[example()], out.path().into()).expect("runs");
    // ACC001 cancels O1 twice, 0.8 s apart; the three built-in alerts are still there.
    assert_eq!(summary.written.alerts_by_rule.get("cancel_burst"), Some(&1));
    assert_eq!(summary.alerts, 4);
    let burst: Vec<_> = alerts(out.path()).into_iter().filter(|a| a["rule"] == "cancel_burst").collect();
    assert_eq!(burst[0]["account"], "ACC001");
    assert_eq!(burst[0]["explanation"], "2 cancels within 1s");
    assert_eq!(burst[0]["event_time"], "2024-03-01T14:30:01.300000000Z");
}

#[test]
fn a_custom_pipeline_gives_the_same_alerts_on_one_and_two_workers() {
    let mut runs = Vec::new();
    for workers in [1, 2] {
        let out = tempfile::tempdir().expect("tempdir");
        let summary = custom_pipeline::custom_job(&[example()], out.path().into(), timely::Config::process(workers))
            .expect("runs");
        assert_eq!(summary.written.alerts_by_rule.get("order_quantity_limit"), Some(&1), "{summary:?}");
        assert_eq!(summary.written.alerts_by_rule.get("self_trade"), Some(&1));
        assert_eq!(summary.written.alerts_by_rule.get("block_trade"), Some(&1));
        assert_eq!(summary.written.alerts_by_rule.get("cancels_per_window"), Some(&1));
        let mut lines: Vec<String> = alerts(out.path())
            .into_iter()
            .map(|mut a| {
                a.as_object_mut().map(|o| o.remove("detected_at"));
                a.to_string()
            })
            .collect();
        lines.sort();
        runs.push(lines);
    }
    assert_eq!(runs[0], runs[1]);
}
