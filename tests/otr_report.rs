//! The RTS 9 order-to-trade report of a generated day: its breaches are the run's alerts, its
//! desk rows are the sums of their accounts' rows, and the limits it applies are the
//! configuration's.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{read_jsonl, run};
use surveil::config::{Config, OrderToTradeOverride};
use surveil::generate::{GenerateConfig, generate};
use surveil::reports::ReportError;
use surveil::reports::otr::{Member, UNASSIGNED, otr_report_for, sessions};

#[test]
fn the_report_marks_what_the_run_alerted_and_sums_members_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let day =
        generate(&GenerateConfig { events: 300_000, accounts: 120, instruments: 12, ..Default::default() }, dir.path())
            .expect("generate");
    let config = Config::load(&dir.path().join("surveil.toml")).expect("config");
    let (_, out) = run(std::slice::from_ref(&day.events_path), config.clone(), 2);
    let folder = out.path();
    assert_eq!(sessions(folder).expect("sessions"), vec!["2024-03-01".to_string()]);

    // By account: one row per final value, the breaches exactly the alerted keys.
    let report = otr_report_for(folder, "2024-03-01", Member::Account, &config).expect("report");
    let finals: Vec<serde_json::Value> =
        read_jsonl(folder, "order_to_trade.jsonl").into_iter().filter(|v| v["final"] == true).collect();
    assert_eq!(report.rows.len(), finals.len());
    let alerted: BTreeSet<(String, String)> = read_jsonl(folder, "alerts.jsonl")
        .iter()
        .filter(|a| a["rule"] == "order_to_trade_ratio")
        .map(|a| {
            (a["account"].as_str().unwrap_or_default().into(), a["instrument"].as_str().unwrap_or_default().into())
        })
        .collect();
    assert!(!alerted.is_empty(), "the generated day injects order-to-trade breaches");
    let breached: BTreeSet<(String, String)> =
        report.rows.iter().filter(|r| r.breach()).map(|r| (r.member.clone(), r.instrument.clone())).collect();
    assert_eq!(breached, alerted);
    assert_eq!(report.breaches as usize, alerted.len());
    assert!(report.rows.iter().take(alerted.len()).all(|r| r.breach()), "breaches first");
    assert_eq!(report.limits_match_run(), Some(true));
    let mut other = config.clone();
    other.rules.anomaly.enabled = true;
    other.alerts.group_horizon = std::time::Duration::from_secs(60);
    let same_limits = otr_report_for(folder, "2024-03-01", Member::Account, &other).expect("report");
    assert_eq!(same_limits.limits_match_run(), Some(true), "settings the report does not use do not count");
    assert!(report.source.run.complete);
    assert_eq!(report.source.run.audit_head.as_deref().map(str::len), Some(64));

    // By desk: each row is the sum of its accounts' rows, as the accounts file places them.
    let desks: BTreeMap<String, String> = std::fs::read_to_string(dir.path().join("accounts.csv"))
        .expect("accounts")
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            Some((f.first()?.to_string(), f.get(2)?.to_string()))
        })
        .collect();
    let mut expected: BTreeMap<(String, String), (u64, u64, u64, u64)> = BTreeMap::new();
    for v in &finals {
        let account = v["account"].as_str().unwrap_or_default();
        let desk = desks.get(account).cloned().unwrap_or_else(|| UNASSIGNED.into());
        let e = expected.entry((desk, v["instrument"].as_str().unwrap_or_default().into())).or_default();
        e.0 += v["messages"].as_u64().unwrap_or(0);
        e.1 += v["transactions"].as_u64().unwrap_or(0);
        e.2 += v["order_volume"].as_u64().unwrap_or(0);
        e.3 += 1;
    }
    let by_desk = otr_report_for(folder, "2024-03-01", Member::Desk, &config).expect("desk report");
    let got: BTreeMap<(String, String), (u64, u64, u64, u64)> = by_desk
        .rows
        .iter()
        .map(|r| ((r.member.clone(), r.instrument.clone()), (r.messages, r.transactions, r.order_volume, r.accounts)))
        .collect();
    assert_eq!(got, expected);
    assert!(by_desk.rows.len() < report.rows.len());
    for row in &by_desk.rows {
        let ratio = row.messages as f64 / row.transactions.max(1) as f64 - 1.0;
        assert!((row.count_ratio - ratio).abs() < 1e-9);
        assert_eq!(row.count_breach, row.messages >= 500 && ratio > row.max_count_ratio);
    }

    // An instrument's own limits apply to its rows only.
    let quiet =
        report.rows.iter().find(|r| !r.breach() && !r.below_min_messages && r.count_ratio > 1.0).expect("a judged row");
    let mut strict = config.clone();
    strict
        .rules
        .order_to_trade
        .instruments
        .insert(quiet.instrument.clone(), OrderToTradeOverride { max_count_ratio: Some(1.0), max_volume_ratio: None });
    let strict_report = otr_report_for(folder, "2024-03-01", Member::Account, &strict).expect("strict report");
    assert_eq!(strict_report.limits_match_run(), Some(false));
    for row in &strict_report.rows {
        let judged = !row.below_min_messages;
        if row.instrument == quiet.instrument {
            assert_eq!(row.max_count_ratio, 1.0);
            assert_eq!(row.count_breach, judged && row.count_ratio > 1.0);
        } else {
            assert_eq!(row.max_count_ratio, 100.0);
        }
    }
    assert!(strict_report.breaches > report.breaches);

    // The three renderings.
    let csv_text = report.to_csv();
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    assert_eq!(reader.records().filter_map(Result::ok).count(), report.rows.len());
    let html = report.to_html();
    assert_eq!(html.matches("<tr class=\"breach\">").count() as u64, report.breaches);
    let json = serde_json::to_value(&report).expect("json");
    assert_eq!(json["rows"].as_array().map(Vec::len), Some(report.rows.len()));

    // A session the run does not have is refused, naming the ones it has.
    match otr_report_for(folder, "2024-03-04", Member::Account, &config) {
        Err(ReportError::NotInRun(message)) => assert!(message.contains("2024-03-01"), "{message}"),
        other => panic!("expected a refusal, got {:?}", other.map(|r| r.rows.len())),
    }
}
