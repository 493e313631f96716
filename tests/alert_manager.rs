//! The alert manager on a real day: tiers, groups of repeats and routes, checked against the
//! alerts the run kept, identical on one worker and two, and recorded in the audit trail.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{data, read_jsonl, run};
use serde_json::Value;
use surveil::config::Config;

/// A day of the IMC Prosperity round 5 trades: 1,350 self-trades and 352 off-market prints,
/// most of them repeats of a few accounts in a few products.
const IMC: &str = "imc_prosperity/p3_2025/trades_round_5_day_2.csv";

const CONFIG: &str = r#"
[alerts]
group_horizon = "15m"
max_listed = 50

[alerts.rules.off_market_price]
group_horizon = "5m"

[[alerts.routes]]
name = "all"

[[alerts.routes]]
name = "urgent"
tiers = ["high", "critical"]

[[alerts.routes]]
name = "collar"
rules = ["off_market_price"]
tiers = ["info", "low", "medium", "high", "critical"]
"#;

fn without_clock(mut lines: Vec<Value>) -> Vec<Value> {
    for line in &mut lines {
        if let Some(o) = line.as_object_mut() {
            o.remove("detected_at");
        }
    }
    lines
}

#[test]
fn repeats_fold_into_groups_and_every_notice_matches_its_route() {
    let config = Config::parse(CONFIG).expect("config");
    let (summary, out) = run(&[data(IMC)], config.clone(), 1);
    let alerts = read_jsonl(out.path(), "alerts.jsonl");
    // 1,701 self-trades and off-market prints, one account at the day's price extremes, and
    // five pairs of the venue's bots that prefer each other (cross trades).
    assert_eq!(alerts.len(), 1708, "every alert is kept, grouped or not");
    let id = |v: &Value| v["id"].as_str().unwrap_or_default().to_string();

    // Every alert has a tier from its score by the default cut-offs, and a group.
    for alert in &alerts {
        let score = alert["score"].as_f64().expect("score");
        let expected = config.alerts.tiers.tier(score);
        assert_eq!(alert["tier"], expected.as_str(), "{alert}");
        assert!(alert["group"].is_string());
    }

    // Group summaries: their counts are the alerts that name them, their occurrences are
    // those alerts in event-time order, and single alerts make no summary.
    let notices = read_jsonl(out.path(), "notices_all.jsonl");
    let groups: Vec<&Value> = notices.iter().filter(|n| n["notice"] == "group").collect();
    let mut members: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for alert in &alerts {
        members.entry(alert["group"].as_str().unwrap_or_default().into()).or_default().push(alert);
    }
    assert!(groups.len() >= 10, "a day of repeats makes groups: {}", groups.len());
    for group in &groups {
        let of = &members[group["group"].as_str().expect("group id")];
        assert_eq!(group["count"].as_u64(), Some(of.len() as u64));
        assert!(of.len() > 1);
        let listed: Vec<&str> =
            group["occurrences"].as_array().expect("list").iter().filter_map(|o| o["id"].as_str()).collect();
        let expected: Vec<&str> = of.iter().take(50).filter_map(|a| a["id"].as_str()).collect();
        assert_eq!(listed, expected);
        assert_eq!(group["truncated"], of.len() > 50);
        let top = of.iter().filter_map(|a| a["score"].as_f64()).fold(0.0, f64::max);
        assert_eq!(group["max_score"].as_f64(), Some(top));
        // All alerts of a group share rule, instrument and account, within the horizon.
        let first = of[0];
        assert_eq!(group["group"], first["id"]);
        assert!(of.iter().all(|a| a["rule"] == first["rule"]
            && a["account"] == first["account"]
            && a["instrument"] == first["instrument"]));
        let horizon = if first["rule"] == "off_market_price" { 300 } else { 900 } * 1_000_000_000u64;
        let start = first["event_time_ns"].as_u64().expect("time");
        assert!(of.iter().all(|a| a["event_time_ns"].as_u64().is_some_and(|t| t < start + horizon)));
    }
    let groups_in_summary = summary.written.alert_groups;
    assert_eq!(groups_in_summary, groups.len() as u64);
    assert!(members.len() < alerts.len() / 5, "{} groups for {} alerts", members.len(), alerts.len());

    // Each route got exactly the sent alerts and the summaries that match it.
    let sent = |route: &str| -> BTreeSet<String> {
        alerts
            .iter()
            .filter(|a| a["sent_to"].as_array().is_some_and(|r| r.iter().any(|n| n == route)))
            .map(id)
            .collect()
    };
    for route in ["all", "urgent", "collar"] {
        let file = read_jsonl(out.path(), &format!("notices_{route}.jsonl"));
        let got: BTreeSet<String> = file.iter().filter(|n| n["notice"] == "alert").map(id).collect();
        assert_eq!(got, sent(route), "route {route}");
        for notice in &file {
            let tier = notice["tier"].as_str().unwrap_or_default();
            match route {
                "urgent" => assert!(tier == "high" || tier == "critical", "{notice}"),
                "collar" => assert_eq!(notice["rule"], "off_market_price"),
                _ => assert_ne!(tier, "info"),
            }
        }
        assert_eq!(summary.written.notices_by_route.get(route).copied().unwrap_or(0), file.len() as u64);
    }
    // Every group opener is sent (no tier here is below `low`), repeats only when they raise
    // their group's tier.
    for alert in &alerts {
        let opened = alert["group"] == alert["id"];
        let was_sent = alert["sent_to"].as_array().is_some_and(|r| !r.is_empty());
        if opened {
            assert!(was_sent, "{alert}");
        } else if was_sent {
            let group = &members[alert["group"].as_str().unwrap_or_default()];
            let before = group.iter().take_while(|a| a["id"] != alert["id"]);
            let rank = |t: &Value| ["info", "low", "medium", "high", "critical"].iter().position(|n| t == *n);
            assert!(before.map(|a| rank(&a["tier"])).max() < Some(rank(&alert["tier"])), "{alert}");
        }
    }

    // The audit trail holds every alert and every group summary, and verifies.
    let log = std::fs::read_to_string(out.path().join("audit.jsonl")).expect("audit");
    let head = summary.written.audit.as_ref().expect("head").head.clone();
    surveil::audit::verify_run(&log, Some(&head)).expect("verifies");
    let kinds: Vec<String> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|r| r["kind"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(kinds.iter().filter(|k| *k == "alert").count(), alerts.len());
    assert_eq!(kinds.iter().filter(|k| *k == "alert_group").count(), groups.len());
    // `audit show` of a repeat beyond the listed occurrences still finds its group.
    let big = groups.iter().find(|g| g["truncated"] == true).expect("a group longer than max_listed");
    let late = members[big["group"].as_str().unwrap_or_default()].last().copied().expect("members");
    let shown = surveil::audit::records_about(&log, &id(late));
    let kinds_shown: Vec<String> = shown
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|r| r["kind"].as_str().unwrap_or_default().to_string())
        .collect();
    let without_cases: Vec<&str> = kinds_shown.iter().map(String::as_str).filter(|k| *k != "case").collect();
    assert_eq!(without_cases, ["alert", "alert_group"]);
    assert!(kinds_shown.iter().any(|k| k == "case"), "and the versions of the case its group opened");

    // The same files on two workers.
    let (_, two) = run(&[data(IMC)], config, 2);
    for file in ["alerts.jsonl", "notices_all.jsonl", "notices_urgent.jsonl", "notices_collar.jsonl"] {
        assert_eq!(without_clock(read_jsonl(out.path(), file)), without_clock(read_jsonl(two.path(), file)), "{file}");
    }
}

#[test]
fn route_files_of_an_earlier_run_do_not_outlive_it() {
    let file = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("datasets/example.csv");
    let out = tempfile::tempdir().expect("tempdir");
    let config = Config::parse(CONFIG).expect("config");
    surveil::pipeline::run_files(std::slice::from_ref(&file), config, 1, out.path()).expect("run");
    assert!(out.path().join("notices_urgent.jsonl").exists());
    surveil::pipeline::run_files(&[file], Config::default(), 1, out.path()).expect("second run");
    assert!(out.path().join("notices_all.jsonl").exists());
    assert!(!out.path().join("notices_urgent.jsonl").exists(), "a route the second run does not have");
    assert!(!out.path().join("notices_collar.jsonl").exists());
}

#[test]
fn a_bad_alerts_section_is_refused_with_its_reason() {
    for (text, reason) in [
        ("[[alerts.routes]]\nname = \"x\"\ntiers = [\"urgent\"]", "unknown tier"),
        ("[[alerts.routes]]\nname = \"x\"\n[[alerts.routes]]\nname = \"X\"", "two routes"),
        ("[[alerts.routes]]\nname = \"../x\"", "names a file"),
        ("[alerts.tiers]\nlow = 60\nmedium = 50", "cut-offs"),
        ("[alerts]\ngroup_horizon = \"30d\"", "group_horizon"),
        ("[alerts]\nlevels = 3", "unknown field"),
    ] {
        let error = Config::parse(text).expect_err(text);
        assert!(error.contains(reason), "{text}: {error}");
    }
}
