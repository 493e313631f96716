use std::sync::Mutex;

use timely::dataflow::InputHandle;
use timely::dataflow::operators::capture::Event as CaptureEvent;
use timely::dataflow::operators::{Capture, Input};

use super::*;
use crate::config::{AlertsConfig, RouteConfig};
use crate::manager::ManageAlerts;
use crate::model::{Alert, Symbol};
use crate::reference::ReferenceData;

const MINUTE: u64 = 60_000_000_000;

fn alert(account: &str, minute: u64, score: f64) -> Alert {
    Alert::builder("cancel_burst", minute * MINUTE)
        .instrument(Symbol::of(b"ACME"))
        .account(Symbol::of(account.as_bytes()))
        .score(score)
        .build()
}

fn action(case: AlertId, minute: u64, kind: CaseActionKind, by: &str, reason: &str) -> CaseAction {
    CaseAction {
        time: minute * MINUTE,
        case,
        kind,
        by: by.into(),
        reason: reason.into(),
        source: 0,
        line: 0,
        offset: 0,
    }
}

fn alerts_config() -> AlertsConfig {
    let mut config = AlertsConfig::default();
    config.routes.push(RouteConfig {
        name: "supervisors".into(),
        tiers: vec!["high".into(), "critical".into()],
        rules: vec![],
        desks: vec![],
        webhook: None,
        kafka_topic: None,
    });
    config
}

fn cases_config() -> CasesConfig {
    let mut config = CasesConfig::default();
    config.deadlines.low = std::time::Duration::from_secs(60 * 60);
    config.deadlines.medium = std::time::Duration::from_secs(30 * 60);
    config.deadlines.high = std::time::Duration::from_secs(10 * 60);
    config.deadlines.critical = std::time::Duration::from_secs(5 * 60);
    config
}

/// Runs alerts → manager → cases on `workers` workers, each feeding a share of the alerts and
/// actions; with `ends`, the workers announce where the input ended (the latest alert time they
/// fed: the alerts stand for the recorded events).
fn run_cases(workers: usize, alerts: Vec<Alert>, actions: Vec<CaseAction>, ends: bool) -> Vec<Report> {
    let reference = Arc::new(ReferenceData::new(1));
    let alert_policy = Arc::new(AlertPolicy::new(&alerts_config(), reference));
    let policy = Arc::new(CasePolicy::new(&cases_config(), alert_policy.clone()));
    let (alerts, actions) = (Arc::new(alerts), Arc::new(actions));
    let out = Arc::new(Mutex::new(Vec::new()));
    let sink = out.clone();
    timely::execute(timely::Config::process(workers), move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let mut alert_input = InputHandle::<u64, timely::container::CapacityContainerBuilder<Vec<Alert>>>::new();
        let mut action_input = InputHandle::<u64, timely::container::CapacityContainerBuilder<Vec<CaseAction>>>::new();
        let mut end_input = InputHandle::<u64, timely::container::CapacityContainerBuilder<Vec<EndOfInput>>>::new();
        let (alert_policy, policy) = (alert_policy.clone(), policy.clone());
        let captured = worker.dataflow::<u64, _, _>(|scope| {
            let reports = scope.input_from(&mut alert_input).manage_alerts(alert_policy).reports;
            let ends_stream = ends.then(|| scope.input_from(&mut end_input));
            reports
                .work_cases(scope.input_from(&mut action_input), ends_stream, if ends { peers } else { 0 }, policy)
                .capture()
        });
        let mine: Vec<&Alert> = alerts.iter().skip(index).step_by(peers).collect();
        let my_actions: Vec<&CaseAction> = actions.iter().skip(index).step_by(peers).collect();
        for a in &mine {
            alert_input.send((*a).clone());
        }
        for a in &my_actions {
            action_input.send((*a).clone());
        }
        if ends {
            let last = mine.iter().map(|a| a.time).max();
            for to in 0..peers {
                end_input.send(EndOfInput { to, last_time: last });
            }
        }
        drop((alert_input, action_input, end_input));
        while worker.step_or_park(None) {}
        let reports: Vec<Report> = captured
            .try_iter()
            .flat_map(|event| match event {
                CaptureEvent::Messages(_, reports) => reports,
                CaptureEvent::Progress(_) => Vec::new(),
            })
            .collect();
        sink.lock().expect("sink").extend(reports);
    })
    .expect("timely");
    let mut reports = std::mem::take(&mut *out.lock().expect("out"));
    reports.sort_by_key(|r| match r {
        Report::Case(c) => (c.time, c.case, c.version as u64),
        Report::DeadLetter(d) => (u64::MAX, AlertId(0), d.line.unwrap_or(0)),
        _ => (0, AlertId(0), 0),
    });
    reports
}

fn versions(reports: &[Report]) -> Vec<&CaseRecord> {
    reports.iter().filter_map(|r| if let Report::Case(c) = r { Some(&**c) } else { None }).collect()
}

fn refused(reports: &[Report]) -> Vec<&DeadLetter> {
    reports.iter().filter_map(|r| if let Report::DeadLetter(d) = r { Some(&**d) } else { None }).collect()
}

#[test]
fn an_unacknowledged_case_climbs_one_tier_per_missed_deadline_then_waits_at_critical() {
    // Score 55 is low: 60 min, then medium 30, high 10, critical 5, critical again, then waits.
    let first = alert("ACC1", 0, 55.0);
    let reports = run_cases(1, vec![first.clone()], vec![], false);
    let cases = versions(&reports);
    let steps: Vec<(u64, CaseChange, Tier, Option<u64>)> =
        cases.iter().map(|c| (c.time / MINUTE, c.change, c.tier, c.deadline.map(|d| d / MINUTE))).collect();
    assert_eq!(
        steps,
        vec![
            (0, CaseChange::Opened, Tier::Low, Some(60)),
            (60, CaseChange::Escalated, Tier::Medium, Some(90)),
            (90, CaseChange::Escalated, Tier::High, Some(100)),
            (100, CaseChange::Escalated, Tier::Critical, Some(105)),
            (105, CaseChange::Escalated, Tier::Critical, None),
        ]
    );
    assert!(cases.iter().all(|c| c.case == first.id));
    assert_eq!(cases.last().map(|c| c.escalations), Some(4));
    // Escalations go to the new tier's routes: `all` (0) for medium, `supervisors` (1) too from high.
    let routes: Vec<u64> = cases.iter().map(|c| c.routes.0).collect();
    assert_eq!(routes, vec![0, 0b01, 0b11, 0b11, 0b11]);
    assert_eq!(cases[1].reason, "not acknowledged within the low deadline of 1h");
    assert!(cases.iter().skip(1).all(|c| c.by.is_empty() && c.state == CaseState::Escalated));
}

#[test]
fn acknowledging_stops_the_clock_and_closing_needs_nothing_more() {
    let first = alert("ACC1", 0, 75.0); // high: 10 minutes
    let case = first.id;
    let actions = vec![
        action(case, 4, CaseActionKind::Ack, "alice", ""),
        action(case, 30, CaseActionKind::Assign { to: "bob".into() }, "alice", "spoofing desk"),
        action(case, 45, CaseActionKind::Review, "bob", ""),
        action(case, 90, CaseActionKind::Close { disposition: Disposition::StorFiled }, "bob", "layering pattern"),
    ];
    let reports = run_cases(1, vec![first], actions, false);
    let cases = versions(&reports);
    type Step<'a> = (u32, CaseChange, CaseState, Option<CaseState>, Option<&'a str>);
    let steps: Vec<Step> =
        cases.iter().map(|c| (c.version, c.change, c.state, c.prior_state, c.assignee.as_deref())).collect();
    assert_eq!(
        steps,
        vec![
            (1, CaseChange::Opened, CaseState::Open, None, None),
            (2, CaseChange::Acknowledged, CaseState::Assigned, Some(CaseState::Open), Some("alice")),
            (3, CaseChange::Assigned, CaseState::Assigned, Some(CaseState::Assigned), Some("bob")),
            (4, CaseChange::ReviewStarted, CaseState::UnderReview, Some(CaseState::Assigned), Some("bob")),
            (5, CaseChange::Closed, CaseState::Closed, Some(CaseState::UnderReview), Some("bob")),
        ]
    );
    let closed = cases[4];
    assert_eq!(
        (closed.disposition, closed.reason.as_str(), closed.by.as_str()),
        (Some(Disposition::StorFiled), "layering pattern", "bob")
    );
    assert!(refused(&reports).is_empty());
}

#[test]
fn actions_the_state_does_not_allow_are_refused_with_the_reason() {
    let first = alert("ACC1", 0, 75.0);
    let case = first.id;
    let stranger = AlertId(42);
    let actions = vec![
        action(stranger, 1, CaseActionKind::Ack, "alice", ""),
        action(case, 2, CaseActionKind::Close { disposition: Disposition::NoAction }, "alice", "quote refresh"),
        action(case, 3, CaseActionKind::Review, "bob", ""),
    ];
    let reports = run_cases(2, vec![first], actions, false);
    let letters = refused(&reports);
    assert_eq!(letters.len(), 2);
    assert!(letters.iter().all(|d| d.reason == RejectReason::CaseActionRefused));
    assert!(letters.iter().any(|d| d.detail.contains("no case 000000000000000000000000000000")));
    assert!(letters.iter().any(|d| d.detail.contains("was closed") && d.detail.contains("no_action")));
    // The refused action keeps its text, as a case-actions line.
    assert!(letters.iter().any(|d| d.raw.contains("\"action\":\"review\"") && d.raw.contains("\"by\":\"bob\"")));
    assert_eq!(versions(&reports).len(), 2);
}

#[test]
fn a_receipt_is_recorded_on_a_case_closed_as_stor_filed_only() {
    let (filed, dismissed, open) = (alert("ACC1", 0, 75.0), alert("ACC2", 0, 75.0), alert("ACC3", 0, 75.0));
    let digest = "ab".repeat(32);
    let receipt = |case, minute| {
        action(case, minute, CaseActionKind::Filed { receipt: "R-1".into(), report: digest.clone() }, "carol", "")
    };
    let actions = vec![
        receipt(filed.id, 5),
        action(filed.id, 10, CaseActionKind::Close { disposition: Disposition::StorFiled }, "bob", "layering"),
        receipt(filed.id, 20),
        action(dismissed.id, 10, CaseActionKind::Close { disposition: Disposition::NoAction }, "bob", "hedge"),
        receipt(dismissed.id, 20),
        action(filed.id, 30, CaseActionKind::Ack, "bob", ""),
    ];
    let reports = run_cases(1, vec![filed.clone(), dismissed, open], actions, false);
    let last = versions(&reports).into_iter().rfind(|c| c.case == filed.id).expect("versions").clone();
    assert_eq!((last.change, last.state, last.by.as_str()), (CaseChange::ReportFiled, CaseState::Closed, "carol"));
    assert_eq!(last.receipt, Some(("R-1".to_string(), digest.clone())));
    assert_eq!(last.disposition, Some(Disposition::StorFiled));
    // Before the close, on a case closed as no_action, and any other action after: refused.
    let letters = refused(&reports);
    assert_eq!(letters.len(), 3, "{letters:?}");
    assert_eq!(letters.iter().filter(|d| d.detail.contains("closed as stor_filed")).count(), 2);
    assert!(letters.iter().any(|d| d.raw.contains("\"receipt\":\"R-1\"")));
}

#[test]
fn a_repeat_that_raises_the_tier_shortens_a_running_clock() {
    // Low at 0 (60 min), high repeat at 10 (inside the 15-minute grouping horizon): the clock
    // now ends at 20 (10 + 10).
    let alerts = vec![alert("ACC1", 0, 55.0), alert("ACC1", 10, 75.0)];
    let reports = run_cases(1, alerts.clone(), vec![], false);
    let cases = versions(&reports);
    let steps: Vec<(u64, CaseChange, Tier)> = cases.iter().map(|c| (c.time / MINUTE, c.change, c.tier)).collect();
    assert_eq!(
        steps[..3],
        [
            (0, CaseChange::Opened, Tier::Low),
            (10, CaseChange::TierRaised, Tier::High),
            (20, CaseChange::Escalated, Tier::Critical)
        ]
    );
    assert_eq!(cases[1].alert, alerts[1].id);
    assert_eq!(cases[1].prior_tier, Some(Tier::Low));
}

#[test]
fn deadlines_after_the_end_of_a_finite_input_stay_pending() {
    // The recorded input ends at minute 70 (an info alert, which opens no case): the low
    // deadline at 60 passes, the medium one at 90 does not. An acknowledgement at 100 still
    // applies, marked late; an action dated years later moves nothing.
    let first = alert("ACC1", 0, 55.0);
    let end = alert("ACC2", 70, 20.0);
    let case = first.id;
    let actions = vec![
        action(case, 100, CaseActionKind::Ack, "alice", "seen the next morning"),
        action(AlertId(7), 60 * 24 * 365 * 80, CaseActionKind::Ack, "bob", "a mistyped year"),
    ];
    for workers in [1, 2, 3] {
        let reports = run_cases(workers, vec![first.clone(), end.clone()], actions.clone(), true);
        let cases = versions(&reports);
        let steps: Vec<(u64, CaseChange, bool)> = cases.iter().map(|c| (c.time / MINUTE, c.change, c.late)).collect();
        assert_eq!(
            steps,
            vec![
                (0, CaseChange::Opened, false),
                (60, CaseChange::Escalated, false),
                (100, CaseChange::Acknowledged, true)
            ],
            "{workers} workers"
        );
        assert_eq!(cases[1].deadline, Some(90 * MINUTE), "pending when the input ended");
        assert_eq!(refused(&reports).len(), 1, "the unknown case");
    }
}

#[test]
fn acknowledging_an_escalated_case_takes_it_and_a_raise_needs_a_new_acknowledgement() {
    let first = alert("ACC1", 0, 55.0); // low: 60 minutes
    let case = first.id;
    let raise = alert("ACC1", 14, 95.0); // critical, inside the group's 15 minutes
    let actions = vec![
        action(case, 5, CaseActionKind::Assign { to: "carol".into() }, "alice", ""),
        action(case, 6, CaseActionKind::Escalate, "carol", "beyond my desk"),
        action(case, 10, CaseActionKind::Ack, "dave", ""),
    ];
    let reports = run_cases(1, vec![first, raise], actions, false);
    let cases = versions(&reports);
    let steps: Vec<(u64, CaseChange, Option<&str>, Option<u64>)> = cases
        .iter()
        .map(|c| (c.time / MINUTE, c.change, c.assignee.as_deref(), c.deadline.map(|d| d / MINUTE)))
        .collect();
    assert_eq!(
        steps,
        vec![
            (0, CaseChange::Opened, None, Some(60)),
            (5, CaseChange::Assigned, Some("carol"), None),
            (6, CaseChange::Escalated, Some("carol"), Some(36)),
            (10, CaseChange::Acknowledged, Some("dave"), None),
            (14, CaseChange::TierRaised, Some("dave"), Some(19)),
            (19, CaseChange::Escalated, Some("dave"), None),
        ]
    );
    // The first acknowledgement (the assignment) goes to the routes of the case's tier.
    assert_eq!(cases[1].routes, Routes(0b01));
}

#[test]
fn an_alert_sent_after_the_close_is_recorded_and_the_case_stays_closed() {
    let first = alert("ACC1", 0, 55.0);
    let case = first.id;
    let raise = alert("ACC1", 10, 80.0); // high: the manager sends it
    let repeat = alert("ACC1", 11, 56.0); // folds: not sent, nothing to record
    let close = action(case, 5, CaseActionKind::Close { disposition: Disposition::NoAction }, "alice", "hedge");
    let reports = run_cases(1, vec![first, raise.clone(), repeat], vec![close], false);
    let cases = versions(&reports);
    let last = cases.last().expect("versions");
    assert_eq!(cases.len(), 3);
    assert_eq!((last.change, last.state, last.alert), (CaseChange::AlertAfterClose, CaseState::Closed, raise.id));
    assert_eq!(last.routes, Routes(0b11), "sent to the routes of the alert's tier");
}

#[test]
fn parsing_refuses_what_is_not_a_complete_action() {
    let case = "0123456789abcdef0123456789abcdef";
    let ok = parse_action(&format!(
        r#"{{"time":"2024-03-01T15:02:00Z","case":"{case}","action":"assign","to":"bob","by":"alice","reason":""}}"#
    ))
    .expect("valid");
    assert_eq!(ok.kind, CaseActionKind::Assign { to: "bob".into() });
    assert_eq!(ok.time, 1_709_305_320_000_000_000);
    assert_eq!(parse_action(&action_line(&ok)).expect("round trip"), ok);
    let cases = [
        (r#"{"time":1,"case":"CASE","action":"close","disposition":"no_action","by":"a"}"#, "reason"),
        (r#"{"time":1,"case":"CASE","action":"close","by":"a","reason":"r"}"#, "disposition"),
        (r#"{"time":1,"case":"CASE","action":"close","disposition":"maybe","by":"a","reason":"r"}"#, "maybe"),
        (r#"{"time":1,"case":"CASE","action":"ack","reason":"r"}"#, "by"),
        (r#"{"time":1,"case":"CASE","action":"assign","by":"a"}"#, "to"),
        (r#"{"time":1,"case":"CASE","action":"ack","by":"a","to":"b"}"#, "belongs to a assign"),
        (r#"{"time":1,"case":"xyz","action":"ack","by":"a"}"#, "not an alert id"),
        (r#"{"time":"yesterday","case":"CASE","action":"ack","by":"a"}"#, "RFC 3339"),
        (r#"{"time":1,"case":"CASE","action":"approve","by":"a"}"#, "not one of"),
        (r#"{"time":1,"case":"CASE","action":"ack","by":"a","dispostion":"x"}"#, "unknown field"),
        (r#"{"time":1,"case":"CASE","action":"filed","by":"a","receipt":"R"}"#, "report"),
        (r#"{"time":1,"case":"CASE","action":"filed","by":"a","receipt":"R","report":"abc"}"#, "SHA-256"),
        (r#"{"time":1,"case":"CASE","action":"ack","by":"a","receipt":"R"}"#, "belongs to a filed"),
        (r#"[1,2]"#, "not a JSON object"),
        (r#"{"time":1,"case":"CASE","action":"ack","by":"#, "not JSON"),
    ];
    for (line, expected) in cases {
        let line = line.replace("CASE", case);
        let rejection = parse_action(&line).expect_err(&line);
        assert!(rejection.detail.contains(expected), "{line}: {}", rejection.detail);
    }
}

#[test]
fn a_file_of_actions_reads_with_a_dead_letter_per_bad_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("actions.jsonl");
    let case = "0123456789abcdef0123456789abcdef";
    let text = format!(
        "{{\"time\":5,\"case\":\"{case}\",\"action\":\"ack\",\"by\":\"a\"}}\n\n\u{0}garbage\n{{\"time\":9,\"case\":\"{case}\",\"action\":\"review\",\"by\":\"b\",\"reason\":\"\"}}\r\n"
    );
    std::fs::write(&path, &text).expect("write");
    let (actions, letters) = read_actions(&path, 3).expect("read");
    assert_eq!(actions.len(), 2);
    assert_eq!((actions[1].source, actions[1].line), (3, 4));
    assert_eq!(actions[1].offset as usize, text.find("{\"time\":9").expect("second"));
    assert_eq!(letters.len(), 1);
    assert_eq!((letters[0].line, letters[0].reason), (Some(3), RejectReason::BadJson));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(16))]

    /// The same alerts and actions give the same case versions on 1 to 3 workers.
    #[test]
    fn the_same_input_gives_the_same_cases_on_any_number_of_workers(
        raw in proptest::collection::vec((0usize..3, 0u64..300, 40u32..101), 1..25),
        raw_actions in proptest::collection::vec((0usize..25, 0u64..400, 0usize..5), 0..20),
        workers in 2usize..4,
    ) {
        let accounts = ["ACC1", "ACC2", "ACC3"];
        let mut alerts: Vec<Alert> = raw.iter().map(|&(a, t, s)| alert(accounts[a], t, s as f64)).collect();
        alerts.sort_by_key(|a| a.id);
        alerts.dedup_by_key(|a| a.id);
        let actions: Vec<CaseAction> = raw_actions
            .iter()
            .enumerate()
            .map(|(i, &(target, t, kind))| {
                let case = alerts[target % alerts.len()].id;
                let kind = match kind {
                    0 => CaseActionKind::Ack,
                    1 => CaseActionKind::Assign { to: "bob".into() },
                    2 => CaseActionKind::Review,
                    3 => CaseActionKind::Escalate,
                    _ => CaseActionKind::Close { disposition: Disposition::NoAction },
                };
                CaseAction { line: i as u64 + 1, ..action(case, t, kind, "alice", "because") }
            })
            .collect();
        let one = run_cases(1, alerts.clone(), actions.clone(), true);
        let many = run_cases(workers, alerts, actions, true);
        proptest::prop_assert_eq!(one, many);
    }
}

fn correction(of: &Alert, minute: u64, kind: crate::model::CorrectionKind, score: f64) -> Alert {
    Alert::builder("cancel_burst", minute * MINUTE)
        .instrument(of.instrument)
        .account(of.account)
        .score(score)
        .corrects(of, kind, "a later event")
        .build()
}

#[test]
fn a_case_nobody_touched_closes_as_withdrawn_when_its_alert_is_retracted() {
    use crate::model::CorrectionKind;
    let raised = alert("ACC1", 0, 75.0);
    let retracted = correction(&raised, 5, CorrectionKind::Retracted, 0.0);
    let reports = run_cases(2, vec![raised.clone(), retracted], vec![], true);
    let cases = versions(&reports);
    let steps: Vec<(CaseChange, CaseState, Option<Disposition>)> =
        cases.iter().map(|c| (c.change, c.state, c.disposition)).collect();
    assert_eq!(
        steps,
        vec![
            (CaseChange::Opened, CaseState::Open, None),
            (CaseChange::Withdrawn, CaseState::Closed, Some(Disposition::Withdrawn)),
        ]
    );
    assert!(cases[1].reason.contains("retracted: a later event"), "{}", cases[1].reason);
    // Closed: its deadline never escalates it.
    assert!(cases.iter().all(|c| c.change != CaseChange::Escalated));
}

#[test]
fn a_correction_of_a_case_someone_works_on_is_recorded_and_the_case_stays_theirs() {
    use crate::model::CorrectionKind;
    let raised = alert("ACC1", 0, 75.0);
    let ack = action(raised.id, 2, CaseActionKind::Ack, "alice", "");
    let downgraded = correction(&raised, 5, CorrectionKind::Downgraded, 56.0);
    let retracted = correction(&raised, 6, CorrectionKind::Retracted, 0.0);
    let reports = run_cases(1, vec![raised.clone(), downgraded, retracted], vec![ack], true);
    let cases = versions(&reports);
    let changes: Vec<CaseChange> = cases.iter().map(|c| c.change).collect();
    assert_eq!(
        changes,
        vec![CaseChange::Opened, CaseChange::Acknowledged, CaseChange::AlertCorrected, CaseChange::AlertCorrected]
    );
    assert!(cases.iter().skip(1).all(|c| c.state == CaseState::Assigned), "{cases:#?}");
    // An alert amended into a case-worthy tier opens a case like a new alert.
    let quiet = alert("ACC2", 0, 10.0);
    let amended = correction(&quiet, 3, CorrectionKind::Amended, 90.0);
    let reports = run_cases(1, vec![quiet.clone(), amended], vec![], false);
    let opened = versions(&reports);
    assert_eq!(opened.first().map(|c| (c.change, c.case)), Some((CaseChange::Opened, quiet.id)));
}
