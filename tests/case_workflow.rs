//! The case workflow on a real day: cases open from the alert manager's groups, escalate when
//! their deadlines pass unacknowledged, take people's actions from a case-actions file, refuse
//! what the state does not allow, come out the same on one worker and two, and every version
//! is in the audit trail.

mod common;

use std::collections::BTreeMap;

use common::{data, read_jsonl, run};
use serde_json::Value;
use surveil::config::Config;
use surveil::model::{AlertId, CaseAction, CaseActionKind, Disposition};

/// A day of the IMC Prosperity round 5 trades: 1,350 self-trades and 352 off-market prints.
const IMC: &str = "imc_prosperity/p3_2025/trades_round_5_day_2.csv";

/// Short deadlines, so that the day's cases escalate within the day.
const CONFIG: &str = r#"
[alerts]
group_horizon = "15m"

[[alerts.routes]]
name = "all"

[[alerts.routes]]
name = "supervisors"
tiers = ["high", "critical"]

[cases.deadlines]
low = "2m"
medium = "1m"
high = "30s"
critical = "10s"
"#;

fn time_ns(text: &Value) -> u64 {
    surveil::ingest::time::parse_event_time(text.as_str().expect("time").as_bytes()).expect("RFC 3339")
}

/// The latest event time of `path`, read by a job of its own.
fn last_event_time(path: &std::path::Path) -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    use timely::dataflow::operators::Inspect;
    use timely::dataflow::operators::vec::Filter;
    use timely::dataflow::operators::vec::Map;
    let latest = std::sync::Arc::new(AtomicU64::new(0));
    let seen = latest.clone();
    let out = tempfile::tempdir().expect("tempdir");
    let job = surveil::pipeline::Job::new(
        surveil::pipeline::inputs(&[path.to_path_buf()], None),
        Config::default(),
        out.path(),
    )
    .expect("job");
    job.execute(timely::Config::process(1), move |_, _, events| {
        let seen = seen.clone();
        events
            .inspect(move |e| {
                seen.fetch_max(e.time, Ordering::Relaxed);
            })
            .filter(|_| false)
            .map(|e| surveil::model::Report::Late(Box::new(e)))
    })
    .expect("runs");
    latest.load(Ordering::Relaxed)
}

fn by_case(cases: &[Value]) -> BTreeMap<String, Vec<&Value>> {
    let mut map: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for case in cases {
        map.entry(case["case"].as_str().expect("case id").to_string()).or_default().push(case);
    }
    map
}

#[test]
fn cases_open_escalate_take_actions_and_are_audited() {
    let config = Config::parse(CONFIG).expect("config");
    let (summary, out) = run(&[data(IMC)], config.clone(), 1);
    let alerts = read_jsonl(out.path(), "alerts.jsonl");
    let cases = read_jsonl(out.path(), "cases.jsonl");
    let last_event = last_event_time(&data(IMC));
    // Alerts speak at their events' times, except judgements of a whole session (insider-like
    // trading, cross trades over the session), which speak at the session's end.
    let of_session = |a: &Value| a["rule"] == "insider_like" || a["parameters"]["span"] == "session";
    assert!(alerts.iter().all(|a| of_session(a) || a["event_time_ns"].as_u64().is_some_and(|t| t <= last_event)));
    assert_eq!(alerts.iter().filter(|a| a["rule"] == "insider_like").count(), 1);

    // A case for each group whose alerts reached `low`: its id is the group's.
    let mut worthy: BTreeMap<&str, u64> = BTreeMap::new();
    for alert in alerts.iter().filter(|a| a["tier"] != "info") {
        let group = alert["group"].as_str().expect("group");
        let time = alert["event_time_ns"].as_u64().expect("time");
        worthy.entry(group).and_modify(|t| *t = (*t).min(time)).or_insert(time);
    }
    let versions = by_case(&cases);
    assert!(versions.len() >= 10, "a day of alerts opens cases: {}", versions.len());
    assert_eq!(versions.keys().map(String::as_str).collect::<Vec<_>>(), worthy.keys().copied().collect::<Vec<_>>());
    for (id, case) in &versions {
        assert_eq!(case[0]["change"], "opened");
        assert_eq!(time_ns(&case[0]["time"]), worthy[id.as_str()]);
        // Nobody acted: each version after the opening is a tier raise or an escalation at the
        // deadline then in force, never beyond the end of the input.
        for pair in case.windows(2) {
            let (before, after) = (pair[0], pair[1]);
            assert_eq!(after["version"].as_u64(), before["version"].as_u64().map(|v| v + 1));
            match after["change"].as_str() {
                Some("escalated") => {
                    assert_eq!(after["time"], before["deadline"], "{id}");
                    assert!(time_ns(&after["time"]) <= last_event);
                    assert_eq!(after["by"], "");
                    assert_eq!(after["prior_tier"], before["tier"]);
                }
                Some("tier_raised") => {}
                other => panic!("{id}: unexpected change {other:?}"),
            }
        }
        // A pending deadline is one the input ended before.
        if let Some(deadline) = case.last().and_then(|c| c["deadline"].as_str()) {
            assert!(time_ns(&Value::from(deadline)) > last_event, "{id}: deadline {deadline} passed unescalated");
        }
    }
    let escalations = cases.iter().filter(|c| c["change"] == "escalated").count() as u64;
    assert!(escalations > 0);
    assert_eq!(summary.written.case_changes.get("escalated").copied().unwrap_or(0), escalations);
    // Escalations to high or critical reach the supervisors.
    let notices = read_jsonl(out.path(), "notices_supervisors.jsonl");
    let sent: Vec<&Value> = notices.iter().filter(|n| n["notice"] == "escalation").collect();
    let expected = cases.iter().filter(|c| c["change"] == "escalated" && c["tier"] != "medium").count();
    assert_eq!(sent.len(), expected);

    // People act on three cases: acknowledge one before its deadline, close one with a STOR
    // filed, act on a case that does not exist, and close one without a reason.
    let mut ids = versions.keys();
    let (acked, filed) = (ids.next().expect("a case").clone(), ids.next().expect("two cases").clone());
    let opened_at = |id: &str| time_ns(&versions[id][0]["time"]);
    let action = |case: &str, time: u64, kind: CaseActionKind, reason: &str| CaseAction {
        time,
        case: AlertId::parse(case).expect("id"),
        kind,
        by: "alice".into(),
        reason: reason.into(),
        source: 0,
        line: 0,
        offset: 0,
    };
    let mut lines = vec![
        surveil::cases::action_line(&action(&acked, opened_at(&acked) + 1_000_000_000, CaseActionKind::Ack, "")),
        surveil::cases::action_line(&action(
            &filed,
            opened_at(&filed) + 5_000_000_000,
            CaseActionKind::Close { disposition: Disposition::StorFiled },
            "wash trades between one owner's accounts",
        )),
        surveil::cases::action_line(&action(&"0".repeat(32), opened_at(&acked), CaseActionKind::Review, "")),
    ];
    lines.push(lines[1].replace("wash trades between one owner's accounts", ""));
    let dir = tempfile::tempdir().expect("tempdir");
    let actions = dir.path().join("actions.jsonl");
    std::fs::write(&actions, lines.join("\n") + "\n").expect("write actions");
    let mut config = config;
    config.cases.actions.push(actions.clone());

    let (summary_one, one) = run(&[data(IMC)], config.clone(), 1);
    let (_, two) = run(&[data(IMC)], config, 2);
    let cases_one = read_jsonl(one.path(), "cases.jsonl");
    assert_eq!(cases_one, read_jsonl(two.path(), "cases.jsonl"), "the same cases on one worker and two");
    let after = by_case(&cases_one);
    let changes = |id: &str| after[id].iter().map(|c| c["change"].as_str().unwrap_or("")).collect::<Vec<_>>();
    assert_eq!(changes(&acked)[..2], ["opened", "acknowledged"]);
    // Acknowledged in time, it escalates no more, unless a repeat raises its tier (which needs
    // a new acknowledgement).
    let after_ack = &changes(&acked)[2..];
    let raised = after_ack.iter().position(|c| *c == "tier_raised").unwrap_or(after_ack.len());
    assert!(!after_ack[..raised].contains(&"escalated"), "acknowledged in time: {:?}", changes(&acked));
    let closed = after[&filed].last().expect("versions");
    assert_eq!((closed["state"].as_str(), closed["disposition"].as_str()), (Some("closed"), Some("stor_filed")));
    assert_eq!(closed["reason"], "wash trades between one owner's accounts");
    assert_eq!(closed["by"], "alice");

    // The unknown case is refused in the run; the reasonless close when read.
    let letters = read_jsonl(one.path(), "dead_letters.jsonl");
    let from_actions: Vec<&Value> = letters.iter().filter(|d| d["source"] == actions.display().to_string()).collect();
    assert_eq!(from_actions.len(), 2, "{from_actions:?}");
    assert!(from_actions.iter().any(|d| d["reason"] == "case_action_refused" && d["line"] == 3));
    assert!(from_actions.iter().any(|d| d["reason"] == "missing_field" && d["line"] == 4));

    // Every version is in the audit trail, which verifies; `audit show` finds the case's.
    let log = std::fs::read_to_string(one.path().join("audit.jsonl")).expect("audit log");
    let head = summary_one.written.audit.as_ref().map(|a| a.head.clone());
    surveil::audit::verify_run(&log, head.as_deref()).expect("the log verifies");
    let audited = log.lines().filter(|l| l.contains("\"kind\":\"case\"")).count();
    assert_eq!(audited, cases_one.len());
    let about = surveil::audit::records_about(&log, &filed);
    let case_records = about.iter().filter(|l| l.contains("\"kind\":\"case\"")).count();
    assert_eq!(case_records, after[&filed].len());

    // The STOR of the filed case: final, its suspicion formed when the case was closed, every
    // order and transaction of its alerts' evidence once, the analyst's reason, and what the
    // run could not fill listed (this day has no reference data).
    let mut config = Config::parse(CONFIG).expect("config");
    config.stor.entity_name = "Example Securities Ltd".into();
    config.stor.lei = "5493001KJTIIGC8Y1R12".into();
    let formed = time_ns(&closed["time"]);
    let stor =
        surveil::reports::stor::stor_report_for(one.path(), &filed, &config, formed + 3_600_000_000_000, None, None)
            .expect("a STOR");
    // Decided, but with fields to fill (this day has no reference data): still a draft.
    assert_eq!((stor.status, stor.decided_at.as_deref()), ("draft", closed["time"].as_str()));
    assert_eq!(stor.suspicion_formed_at, stor.decided_at, "the decision stands in");
    assert!(stor.missing.iter().any(|m| m.contains("suspicion was formed")));
    // The attachments' digests are those of the run's own lines.
    let raw: String = std::fs::read_to_string(one.path().join("cases.jsonl"))
        .expect("cases")
        .lines()
        .filter(|l| l.contains(&format!("\"case\":\"{filed}\"")))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(stor.attachments[1].sha256, surveil::audit::sha256_hex(raw.as_bytes()));
    assert!(!stor.delay_explanation_required, "filed within a day of the activity");
    let members: Vec<&Value> = alerts.iter().filter(|a| a["group"] == filed.as_str()).collect();
    assert_eq!(stor.suspicion.alerts.len(), members.len());
    let mut evidence: Vec<(String, u64)> = members
        .iter()
        .flat_map(|a| a["evidence"].as_array().into_iter().flatten())
        .map(|e| (e["source"].to_string(), e["offset"].as_u64().unwrap_or(0)))
        .collect();
    evidence.sort();
    evidence.dedup();
    assert_eq!(stor.orders_and_transactions.len(), evidence.len());
    assert!(stor.suspicion.reasons.iter().any(|r| r.contains("wash trades between one owner's accounts")));
    let rule = members[0]["rule"].as_str().expect("rule");
    assert!(stor.suspicion.types.contains(&surveil::reports::stor::suspicion_type(rule)));
    assert!(stor.missing.iter().any(|m| m.contains("ISIN")));
    assert!(stor.missing.iter().any(|m| m.contains("person_name")));
    assert!(!stor.missing.iter().any(|m| m.contains("entity_name") || m.contains("lei")));
    let xml = stor.to_xml();
    assert!(xml.contains("<LEI>5493001KJTIIGC8Y1R12</LEI>") || xml.contains("<Lei>5493001KJTIIGC8Y1R12</Lei>"));
    assert_eq!(xml.matches("<Event>").count(), evidence.len());
    assert!(stor.to_html().contains("<svg"));
    // A draft of the acknowledged case prepared two days later must explain the delay.
    let two_days = 2 * 86_400_000_000_000;
    let draft = surveil::reports::stor::stor_report_for(one.path(), &acked, &config, formed + two_days, None, None)
        .expect("STOR");
    assert_eq!((draft.status, draft.decided_at.as_deref()), ("draft", None));
    assert!(draft.delay_explanation_required && draft.missing.iter().any(|m| m.contains("delay")));
    let explained = surveil::reports::stor::stor_report_for(
        one.path(),
        &acked,
        &config,
        formed + two_days,
        Some(formed),
        Some("found in the monthly look-back review"),
    )
    .expect("STOR");
    assert!(explained.missing.iter().all(|m| !m.contains("delay") && !m.contains("suspicion was formed")));
    assert_eq!(explained.delay_explanation.as_deref(), Some("found in the monthly look-back review"));

    // The FINRA Rule 3110(d) quarterly report of the same cases: every case an investigation
    // commenced in the quarter, the filed one completed with a violation found.
    use surveil::reports::finra::{FINRA_TIME_ZONE, date_in};
    let quarter = surveil::reports::finra::Quarter::of(date_in(formed, FINRA_TIME_ZONE));
    assert_eq!(surveil::reports::finra::quarters(one.path(), FINRA_TIME_ZONE).expect("quarters"), vec![quarter]);
    let finra = surveil::reports::finra::finra_3110_report(one.path(), quarter, FINRA_TIME_ZONE).expect("report");
    assert_eq!(finra.opened as usize, after.len());
    assert_eq!((finra.closed, finra.violations_found), (1, 1));
    assert_eq!(finra.pending as usize, after.len() - 1);
    assert_eq!(finra.investigations.len(), after.len());
    let done = finra.investigations.iter().find(|i| i.case == filed).expect("the filed case");
    assert_eq!(done.resolution.as_deref(), Some("violation found"));
    assert_eq!(done.findings.as_deref(), Some("wash trades between one owner's accounts"));
    let owed = &finra.violation_reports[0];
    // The IMC day is 2000-01-02 just after midnight UTC: 1 January, a Saturday, in New York;
    // five business days later is Friday 7 January.
    assert_eq!(date_in(formed, FINRA_TIME_ZONE).to_string(), "2000-01-01");
    assert_eq!(owed.due, "2000-01-07");
    assert_eq!(finra.quarter, "2000Q1");
    assert!(finra.to_csv().lines().count() == after.len() + 1);

    // Actions for a run that keeps no cases are refused, not ignored.
    let mut off = Config::parse(CONFIG).expect("config");
    off.cases.enabled = false;
    off.cases.actions.push(actions);
    let out = tempfile::tempdir().expect("tempdir");
    let error = surveil::pipeline::run_files(&[data(IMC)], off, 1, out.path()).expect_err("refused");
    assert!(error.to_string().contains("cases.enabled"), "{error}");
}
