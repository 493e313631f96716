//! The case workflow: what happens to an alert once a person must act on it.
//!
//! A group of alerts ([`crate::manager`]) whose tier reaches `cases.open_from` opens a case,
//! identified by the group's id (its first alert's id). A case is in one of the states
//! open → assigned → under review → escalated → closed ([`CaseState`]):
//!
//! - **Deadlines.** An open case must be acknowledged within its tier's deadline
//!   (`cases.deadlines`). When the deadline passes first, the case escalates: its tier goes up
//!   one step, the escalation is sent on the routes of the new tier, and the new tier's deadline
//!   starts. A critical case that misses its deadline escalates once more (to the critical
//!   routes again) and then waits.
//! - **Actions.** People act through [`CaseAction`]s: `ack`, `assign`, `review`, `escalate`,
//!   `close`. They are input records with an event time (a case-actions file for replays,
//!   a stream for the library), processed with the alerts in event-time order, so a replay of
//!   the same alerts and actions gives the same cases on any number of workers. An action the
//!   case's state does not allow (an unknown case, a closed one) is refused as a dead letter
//!   with the reason; a close without a reason is refused when read (MAR keeps the reasons for
//!   filing and for not filing alike).
//! - **Versions.** Every change is a [`CaseRecord`] (who, when, what changed, the prior state
//!   and tier, why), written to `cases.jsonl` and to the audit trail.
//!
//! Deadlines are event time: a deadline passes when the data passes it. On a finite input
//! (a recorded day) the workflow is told where the input ended ([`surveil_operators::LastTime`])
//! and a deadline after that end stays pending: the recording stopped, nobody missed it.
//!
//! A case-actions file holds one JSON object per line:
//!
//! ```json
//! {"time":"2024-03-01T15:02:00Z","case":"<32 hex digits>","action":"ack","by":"alice","reason":""}
//! {"time":"2024-03-01T15:40:00Z","case":"<32 hex digits>","action":"assign","to":"bob","by":"alice","reason":"spoofing desk"}
//! {"time":"2024-03-02T09:10:00Z","case":"<32 hex digits>","action":"close","disposition":"no_action","by":"bob","reason":"hedge of a client order"}
//! ```
//!
//! `time` is RFC 3339 or integer nanoseconds; `reason` may be empty except to close.

use std::collections::{BTreeSet, HashMap};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value as Json, json};
use surveil_operators::{Emitter, EndOfInput, ProcessInTimeOrder, TimeOrderedProcessor, route};
use timely::dataflow::Stream;
use timely::dataflow::operators::Concat;
use timely::dataflow::operators::vec::Map;

use crate::config::{CaseDeadlines, CasesConfig};
use crate::ingest::time::{format_time, parse_event_time};
use crate::manager::AlertPolicy;
use crate::model::{
    AlertId, CaseAction, CaseActionKind, CaseChange, CaseRecord, CaseState, DeadLetter, Disposition, RejectReason,
    Rejection, Report, Routes, Tier, TriagedAlert,
};

/// The case workflow's configuration, with the alert manager's routes for escalations.
#[derive(Clone, Debug)]
pub struct CasePolicy {
    open_from: Tier,
    deadlines: CaseDeadlines,
    alerts: Arc<AlertPolicy>,
}

impl CasePolicy {
    /// The policy of `config`; escalations are routed by `alerts`.
    pub fn new(config: &CasesConfig, alerts: Arc<AlertPolicy>) -> CasePolicy {
        CasePolicy { open_from: config.open_from.max(Tier::Low), deadlines: config.deadlines, alerts }
    }

    /// The lowest tier that opens a case.
    pub fn open_from(&self) -> Tier {
        self.open_from
    }

    /// How long a case of `tier` has to be acknowledged (ns).
    pub fn deadline(&self, tier: Tier) -> u64 {
        self.deadlines.of(tier)
    }
}

/// What the case workflow reads: alerts, people's actions, and where a finite input ended.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum CaseInput {
    /// An alert that may open a case or raise its tier.
    Alert(Box<TriagedAlert>),
    /// A person's action.
    Action(Box<CaseAction>),
    /// A worker's share of a finite input ended.
    End(EndOfInput),
}

impl CaseInput {
    /// The worker key: the case, or the addressee of an end.
    fn key(&self) -> u64 {
        match self {
            CaseInput::Alert(t) => route(&t.group),
            CaseInput::Action(a) => route(&a.case),
            CaseInput::End(end) => end.to as u64,
        }
    }

    /// `(time, tie_break)`: at equal times alerts come before actions (an alert and the action
    /// on it can share a timestamp only if the action refers to it), and ends come last.
    fn order(&self) -> (u64, u64) {
        match self {
            CaseInput::Alert(t) => (t.alert.time, t.alert.order_key() >> 2),
            CaseInput::Action(a) => (a.time, (1 << 62) | (u64::from(a.source) << 40) | (a.line & ((1 << 40) - 1))),
            CaseInput::End(end) => (end.last_time.unwrap_or(0), u64::MAX),
        }
    }
}

/// The workflow's per-worker state: a [`TimeOrderedProcessor`] of [`CaseInput`]s.
pub struct CaseDesk {
    policy: Arc<CasePolicy>,
    cases: HashMap<AlertId, CaseRecord>,
    /// Alerts of each case at a case-worthy tier that no correction has retracted.
    live: HashMap<AlertId, u32>,
    /// Pending deadlines; a case's record holds the one that counts.
    deadlines: BTreeSet<(u64, AlertId)>,
    /// End announcements expected, seen so far, and the latest time they announced.
    ends_expected: usize,
    ends_seen: usize,
    end_time: Option<u64>,
}

impl CaseDesk {
    /// A desk applying `policy`, told that the input ended after `ends_expected`
    /// [`EndOfInput`]s (0 for an input that never ends).
    pub fn new(policy: Arc<CasePolicy>, ends_expected: usize) -> CaseDesk {
        CaseDesk {
            policy,
            cases: HashMap::new(),
            live: HashMap::new(),
            deadlines: BTreeSet::new(),
            ends_expected,
            ends_seen: 0,
            end_time: None,
        }
    }

    /// Where the input ended, once every announcement has arrived.
    fn ended_at(&self) -> Option<u64> {
        (self.ends_expected > 0 && self.ends_seen >= self.ends_expected).then(|| self.end_time.unwrap_or(0))
    }

    fn on_alert(&mut self, time: u64, triaged: TriagedAlert, out: &mut Emitter<'_, Report>) {
        if triaged.alert.correction.is_some() {
            self.on_correction(time, triaged, out);
            return;
        }
        if triaged.tier < self.policy.open_from {
            return;
        }
        *self.live.entry(triaged.group).or_default() += 1;
        match self.cases.get(&triaged.group) {
            None => {
                let deadline = time.saturating_add(self.policy.deadline(triaged.tier));
                let alert = &triaged.alert;
                let record = CaseRecord {
                    case: triaged.group,
                    version: 1,
                    time,
                    change: CaseChange::Opened,
                    by: String::new(),
                    reason: format!("{} alert at tier {}", alert.rule, triaged.tier),
                    state: CaseState::Open,
                    prior_state: None,
                    tier: triaged.tier,
                    prior_tier: None,
                    assignee: None,
                    disposition: None,
                    receipt: None,
                    deadline: Some(deadline),
                    escalations: 0,
                    late: false,
                    alert: alert.id,
                    rule: alert.rule.clone(),
                    instrument: alert.instrument,
                    account: alert.account,
                    desk: triaged.desk,
                    routes: Routes::default(),
                };
                self.deadlines.insert((deadline, record.case));
                out.emit(Report::Case(Box::new(record.clone())));
                self.cases.insert(record.case, record);
            }
            Some(case) if case.state != CaseState::Closed && triaged.tier > case.tier => {
                let mut next = self.next_version(case, time, CaseChange::TierRaised, "", "");
                next.reason = format!("a repeat of {} reached tier {}", next.rule, triaged.tier);
                next.alert = triaged.alert.id;
                next.tier = triaged.tier;
                // A running clock shortens to the new tier's deadline; an acknowledged case
                // must be acknowledged again at the new tier, within its deadline.
                let new_deadline = time.saturating_add(self.policy.deadline(triaged.tier));
                next.deadline = Some(next.deadline.map_or(new_deadline, |d| d.min(new_deadline)));
                self.commit(next, out);
            }
            Some(case) if case.state == CaseState::Closed && !triaged.routes.is_empty() => {
                // The manager sent it (a group's first alert at a new tier): the decision was
                // taken without it.
                let mut next = self.next_version(case, time, CaseChange::AlertAfterClose, "", "");
                next.reason = format!("a {} alert at tier {} after the case was closed", next.rule, triaged.tier);
                next.alert = triaged.alert.id;
                next.routes = self.policy.alerts.routes(&next.rule, triaged.tier, next.desk);
                self.commit(next, out);
            }
            Some(_) => {}
        }
    }

    /// A detector's correction of an alert: recorded on the alert's case; a case nobody has
    /// acted on closes as withdrawn when its last live alert is retracted; an alert amended
    /// into a case-worthy tier opens one like a new alert.
    fn on_correction(&mut self, time: u64, triaged: TriagedAlert, out: &mut Emitter<'_, Report>) {
        let open_from = self.policy.open_from;
        let Some(correction) = triaged.alert.correction.clone() else { return };
        let retracted = correction.kind == crate::model::CorrectionKind::Retracted;
        let counted = triaged.prior_tier.is_some_and(|t| t >= open_from);
        let counts = !retracted && triaged.tier >= open_from;
        let Some(case) = self.cases.get(&triaged.group) else {
            if counts {
                let mut opening = triaged;
                opening.alert.correction = None;
                self.on_alert(time, opening, out);
            }
            return;
        };
        let live = self.live.entry(triaged.group).or_default();
        *live = (*live + u32::from(counts)).saturating_sub(u32::from(counted));
        if case.state == CaseState::Closed {
            return;
        }
        let untouched = *live == 0 && case.state == CaseState::Open;
        let mut next = self.next_version(case, time, CaseChange::AlertCorrected, "", "");
        next.reason = format!(
            "{} alert {} {}: {}",
            triaged.alert.rule,
            triaged.alert.id,
            correction.kind.as_str(),
            correction.reason
        );
        next.alert = triaged.alert.id;
        if untouched {
            next.change = CaseChange::Withdrawn;
            next.state = CaseState::Closed;
            next.disposition = Some(Disposition::Withdrawn);
            next.deadline = None;
            next.routes = triaged.routes;
        }
        self.commit(next, out);
    }

    /// The case's next version: the current one with the change, who and why, and no routes.
    fn next_version(&self, case: &CaseRecord, time: u64, change: CaseChange, by: &str, reason: &str) -> CaseRecord {
        let mut next = case.clone();
        next.version += 1;
        next.time = time;
        next.change = change;
        next.by = by.to_string();
        next.reason = reason.to_string();
        next.prior_state = Some(case.state);
        next.prior_tier = Some(case.tier);
        next.routes = Routes::default();
        next.alert = case.case;
        next.late = false;
        next
    }

    /// Keeps `record` as its case's current version, schedules its deadline and emits it.
    fn commit(&mut self, record: CaseRecord, out: &mut Emitter<'_, Report>) {
        if let Some(deadline) = record.deadline {
            self.deadlines.insert((deadline, record.case));
        }
        out.emit(Report::Case(Box::new(record.clone())));
        self.cases.insert(record.case, record);
    }

    /// Escalates `case` one tier (a critical case stays critical) and routes it to that tier.
    fn escalate(&self, case: &CaseRecord, time: u64, by: &str, reason: String) -> CaseRecord {
        let mut next = self.next_version(case, time, CaseChange::Escalated, by, &reason);
        let tier = Tier::ALL[(case.tier as usize + 1).min(Tier::ALL.len() - 1)];
        next.tier = tier;
        next.state = CaseState::Escalated;
        next.escalations += 1;
        // A critical case that missed its deadline has nowhere higher to go: it waits.
        let again = by.is_empty() && case.tier == Tier::Critical;
        next.deadline = (!again).then(|| time.saturating_add(self.policy.deadline(tier)));
        next.routes = self.policy.alerts.routes(&case.rule, tier, case.desk);
        next
    }

    fn on_action(&mut self, time: u64, action: CaseAction, out: &mut Emitter<'_, Report>) {
        let refuse = |detail: String, out: &mut Emitter<'_, Report>| {
            out.emit(Report::DeadLetter(Box::new(DeadLetter {
                source: action.source,
                line: Some(action.line),
                offset: action.offset,
                raw: action_line(&action),
                reason: RejectReason::CaseActionRefused,
                detail,
                event: None,
            })));
        };
        let Some(case) = self.cases.get(&action.case) else {
            return refuse(
                format!(
                    "no case {} at {}: no alert had opened one by then (a case's id is its first alert's id)",
                    action.case,
                    format_time(time)
                ),
                out,
            );
        };
        if let CaseActionKind::Filed { receipt, report } = &action.kind {
            // A report is filed for a case decided as stor_filed, after the decision.
            if case.disposition != Some(Disposition::StorFiled) {
                return refuse(
                    format!(
                        "case {} is {} at {}: a report's receipt is recorded on a case closed as stor_filed",
                        action.case,
                        case.disposition.map_or(case.state.as_str(), Disposition::as_str),
                        format_time(time)
                    ),
                    out,
                );
            }
            let mut next = self.next_version(case, time, CaseChange::ReportFiled, &action.by, &action.reason);
            next.receipt = Some((receipt.clone(), report.clone()));
            next.routes = self.policy.alerts.routes(&next.rule, next.tier, next.desk);
            return self.commit(next, out);
        }
        if case.state == CaseState::Closed {
            return refuse(
                format!(
                    "case {} was closed at {} ({}); a closed case takes no further actions",
                    action.case,
                    format_time(case.time),
                    case.disposition.map_or("", Disposition::as_str)
                ),
                out,
            );
        }
        let (by, reason) = (action.by.as_str(), action.reason.as_str());
        let next = match &action.kind {
            CaseActionKind::Ack => {
                let mut next = self.next_version(case, time, CaseChange::Acknowledged, by, reason);
                match case.state {
                    // Whoever acknowledges an escalated case takes it from its earlier owner.
                    CaseState::Escalated => {
                        next.state = CaseState::Assigned;
                        next.assignee = Some(by.to_string());
                    }
                    CaseState::Open => {
                        next.state = CaseState::Assigned;
                        next.assignee.get_or_insert_with(|| by.to_string());
                    }
                    _ => {}
                }
                next.deadline = None;
                next
            }
            CaseActionKind::Assign { to } => {
                let mut next = self.next_version(case, time, CaseChange::Assigned, by, reason);
                next.state = CaseState::Assigned;
                next.assignee = Some(to.clone());
                next.deadline = None;
                next
            }
            CaseActionKind::Review => {
                let mut next = self.next_version(case, time, CaseChange::ReviewStarted, by, reason);
                next.state = CaseState::UnderReview;
                next.assignee.get_or_insert_with(|| by.to_string());
                next.deadline = None;
                next
            }
            CaseActionKind::Escalate => self.escalate(case, time, by, action.reason.clone()),
            CaseActionKind::Close { disposition } => {
                let mut next = self.next_version(case, time, CaseChange::Closed, by, reason);
                next.state = CaseState::Closed;
                next.disposition = Some(*disposition);
                next.deadline = None;
                next
            }
            // Taken above: a receipt is recorded on a closed case only.
            CaseActionKind::Filed { .. } => return,
        };
        // The first acknowledgement and the closing go to the routes of the case's tier, so
        // that whoever was told of the case learns it is in hand or decided.
        let mut next = next;
        // An action after a deadline that never fired: the recorded data ended before it.
        next.late = case.deadline.is_some_and(|deadline| time > deadline);
        let first_acknowledgement = case.deadline.is_some() && next.deadline.is_none();
        if next.change == CaseChange::Closed || (first_acknowledgement && next.change != CaseChange::Escalated) {
            next.routes = self.policy.alerts.routes(&next.rule, next.tier, next.desk);
        }
        self.commit(next, out);
    }
}

impl TimeOrderedProcessor<CaseInput> for CaseDesk {
    type Output = Report;

    fn on_record(&mut self, time: u64, input: CaseInput, out: &mut Emitter<'_, Report>) {
        match input {
            CaseInput::Alert(triaged) => self.on_alert(time, *triaged, out),
            CaseInput::Action(action) => self.on_action(time, *action, out),
            CaseInput::End(end) => {
                self.ends_seen += 1;
                if let Some(t) = end.last_time {
                    self.end_time = Some(self.end_time.map_or(t, |e| e.max(t)));
                }
            }
        }
    }

    fn next_timer(&self) -> Option<u64> {
        let ended = self.ended_at();
        self.deadlines.first().map(|(t, _)| *t).filter(|t| ended.is_none_or(|end| *t <= end))
    }

    fn on_timer(&mut self, time: u64, out: &mut Emitter<'_, Report>) {
        while let Some(&(due, id)) = self.deadlines.first()
            && due == time
        {
            self.deadlines.pop_first();
            let Some(case) = self.cases.get(&id) else { continue };
            // Superseded (acknowledged, closed, shortened or restarted) deadlines do nothing.
            if case.deadline != Some(time) || case.state == CaseState::Closed {
                continue;
            }
            let allowed = self.policy.deadline(case.tier);
            let reason = format!(
                "not acknowledged within the {} deadline of {}",
                case.tier,
                humantime::format_duration(std::time::Duration::from_nanos(allowed))
            );
            let next = self.escalate(case, time, "", reason);
            self.commit(next, out);
        }
    }
}

/// Extension trait: the case workflow on the alert manager's output.
pub trait WorkCases<'scope> {
    /// Opens, escalates and updates cases from the triaged alerts in `self` (other reports
    /// are ignored) and the people's `actions`. For a finite input, `ends` announces where it
    /// ended ([`surveil_operators::LastTime`] on the events; `ends_expected` announcements in
    /// all, one per worker), so deadlines beyond the end stay pending; pass `None` for a live
    /// input. The announcements must travel no later than the end they announce, as those of
    /// a source whose frontier trails its data do (`partitioned_source`): one that travels
    /// later lets the deadlines before it fire. Returns the case versions and the refused
    /// actions (dead letters).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use timely::dataflow::operators::capture::{Event, Capture};
    /// use timely::dataflow::operators::ToStream;
    /// use surveil::cases::{CasePolicy, WorkCases};
    /// use surveil::config::{AlertsConfig, CasesConfig};
    /// use surveil::manager::{AlertPolicy, ManageAlerts};
    /// use surveil::model::{Alert, CaseAction, CaseActionKind, CaseChange, Report, Symbol};
    /// use surveil::reference::ReferenceData;
    ///
    /// let alerts_policy = Arc::new(AlertPolicy::new(&AlertsConfig::default(), Arc::new(ReferenceData::new(1))));
    /// let policy = Arc::new(CasePolicy::new(&CasesConfig::default(), alerts_policy.clone()));
    /// let hour = 3_600_000_000_000u64;
    /// // A high alert (score 75): one hour to acknowledge it.
    /// let alert = Alert::builder("cancel_burst", hour).account(Symbol::of(b"ACC1")).score(75.0).build();
    /// let case = alert.id;
    /// // Nobody acknowledges it: at 2h it escalates to critical (15 minutes), at 2h15 once more;
    /// // at 3h someone closes it.
    /// let close = CaseAction {
    ///     time: 3 * hour,
    ///     case,
    ///     kind: CaseActionKind::Close { disposition: surveil::model::Disposition::NoAction },
    ///     by: "alice".into(),
    ///     reason: "market maker's quote refresh".into(),
    ///     source: 0,
    ///     line: 1,
    ///     offset: 0,
    /// };
    /// let captured = timely::example(move |scope| {
    ///     let reports = vec![alert].to_stream(scope).manage_alerts(alerts_policy).reports;
    ///     reports.work_cases(vec![close].to_stream(scope), None, 0, policy).capture()
    /// });
    /// let changes: Vec<CaseChange> = captured
    ///     .try_iter()
    ///     .flat_map(|e| if let Event::Messages(_, r) = e { r } else { Vec::new() })
    ///     .filter_map(|r| if let Report::Case(c) = r { Some(c.change) } else { None })
    ///     .collect();
    /// use CaseChange::*;
    /// assert_eq!(changes, vec![Opened, Escalated, Escalated, Closed]);
    /// ```
    fn work_cases(
        self,
        actions: Stream<'scope, u64, Vec<CaseAction>>,
        ends: Option<Stream<'scope, u64, Vec<EndOfInput>>>,
        ends_expected: usize,
        policy: Arc<CasePolicy>,
    ) -> Stream<'scope, u64, Vec<Report>>;
}

impl<'scope> WorkCases<'scope> for Stream<'scope, u64, Vec<Report>> {
    fn work_cases(
        self,
        actions: Stream<'scope, u64, Vec<CaseAction>>,
        ends: Option<Stream<'scope, u64, Vec<EndOfInput>>>,
        ends_expected: usize,
        policy: Arc<CasePolicy>,
    ) -> Stream<'scope, u64, Vec<Report>> {
        let open_from = policy.open_from;
        let alerts = self.flat_map(move |report| match report {
            Report::Triaged(t) if t.tier >= open_from || t.alert.correction.is_some() => Some(CaseInput::Alert(t)),
            _ => None,
        });
        let mut inputs = alerts.concat(actions.map(|a| CaseInput::Action(Box::new(a))));
        let ends_expected = match ends {
            Some(ends) => {
                inputs = inputs.concat(ends.map(CaseInput::End));
                ends_expected
            }
            None => 0,
        };
        inputs.process_in_time_order("Cases", CaseInput::key, CaseInput::order, CaseDesk::new(policy, ends_expected))
    }
}

/// The case actions a job replays, read before it starts: worker 0 feeds them in.
#[derive(Clone, Debug, Default)]
pub struct CaseActions {
    /// The actions, in file order.
    pub actions: Vec<CaseAction>,
    /// A dead letter for each line that is not an action.
    pub refused: Vec<DeadLetter>,
    /// The files read.
    pub files: Vec<PathBuf>,
}

impl CaseActions {
    /// Reads the case-actions files `paths`, numbering them as inputs from `first_source` (so
    /// a refused line names its file). Returns the unreadable file with the error.
    pub fn read(paths: &[PathBuf], first_source: u32) -> Result<CaseActions, (PathBuf, std::io::Error)> {
        let mut all = CaseActions { files: paths.to_vec(), ..CaseActions::default() };
        for (i, path) in paths.iter().enumerate() {
            let (actions, refused) = read_actions(path, first_source + i as u32).map_err(|e| (path.clone(), e))?;
            all.actions.extend(actions);
            all.refused.extend(refused);
        }
        Ok(all)
    }
}

/// Appends `action` to the case-actions file `path` (created if missing) and syncs it, after
/// the checks a replay makes when it reads the line ([`parse_action`]): the refusal's reason
/// comes back as an error of kind `InvalidInput`.
pub fn append_action(path: &Path, action: &CaseAction) -> std::io::Result<()> {
    use std::io::Write;
    let line = action_line(action);
    parse_action(&line).map_err(|rejection| std::io::Error::new(std::io::ErrorKind::InvalidInput, rejection.detail))?;
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    file.write_all(format!("{line}\n").as_bytes())?;
    file.sync_all()
}

/// The line of a case-actions file that says `action` (without its source position).
pub fn action_line(action: &CaseAction) -> String {
    let mut line = json!({
        "time": format_time(action.time),
        "case": action.case.to_string(),
        "action": action.kind.as_str(),
    });
    if let Json::Object(fields) = &mut line {
        match &action.kind {
            CaseActionKind::Assign { to } => {
                fields.insert("to".into(), Json::from(to.as_str()));
            }
            CaseActionKind::Close { disposition } => {
                fields.insert("disposition".into(), Json::from(disposition.as_str()));
            }
            CaseActionKind::Filed { receipt, report } => {
                fields.insert("receipt".into(), Json::from(receipt.as_str()));
                fields.insert("report".into(), Json::from(report.as_str()));
            }
            _ => {}
        }
        fields.insert("by".into(), Json::from(action.by.as_str()));
        fields.insert("reason".into(), Json::from(action.reason.as_str()));
    }
    line.to_string()
}

/// Reads one line of a case-actions file: the action, or why it is refused.
pub fn parse_action(text: &str) -> Result<CaseAction, Rejection> {
    let bad = |detail: String| Rejection::new(RejectReason::BadJson, detail);
    let missing = |field: &str| Rejection::new(RejectReason::MissingField, format!("{field} is missing or empty"));
    let value: Json = serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let Json::Object(fields) = value else { return Err(bad("not a JSON object".into())) };
    const KNOWN: [&str; 9] = ["time", "case", "action", "by", "reason", "to", "disposition", "receipt", "report"];
    if let Some(unknown) = fields.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(bad(format!("unknown field {unknown:?} (fields: {})", KNOWN.join(", "))));
    }
    let text_of = |field: &str| -> Result<Option<&str>, Rejection> {
        match fields.get(field) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::String(s)) => Ok(Some(s.as_str()).filter(|s| !s.trim().is_empty())),
            Some(other) => Err(bad(format!("{field} must be text, not {other}"))),
        }
    };
    let time = match fields.get("time") {
        Some(Json::Number(n)) => n.as_u64(),
        Some(Json::String(s)) => parse_event_time(s.as_bytes()),
        _ => return Err(missing("time")),
    }
    .ok_or_else(|| Rejection::new(RejectReason::BadTime, "time is neither RFC 3339 text nor nanoseconds since 1970"))?;
    let case_text = text_of("case")?.ok_or_else(|| missing("case"))?;
    let case = AlertId::parse(case_text)
        .ok_or_else(|| bad(format!("case {case_text:?} is not an alert id (32 hexadecimal digits)")))?;
    let by = text_of("by")?.ok_or_else(|| missing("by (who acted)"))?.to_string();
    let reason = text_of("reason")?.unwrap_or_default().to_string();
    let action = text_of("action")?.ok_or_else(|| missing("action"))?;
    let kind = match action {
        "ack" => CaseActionKind::Ack,
        "assign" => CaseActionKind::Assign { to: text_of("to")?.ok_or_else(|| missing("to (the assignee)"))?.into() },
        "review" => CaseActionKind::Review,
        "escalate" => CaseActionKind::Escalate,
        "close" => {
            let name = text_of("disposition")?.ok_or_else(|| missing("disposition (stor_filed or no_action)"))?;
            let disposition = Disposition::parse(name)
                .ok_or_else(|| bad(format!("disposition {name:?} is neither stor_filed nor no_action")))?;
            if reason.is_empty() {
                return Err(missing("reason (a case is closed with the reason for filing or for not filing)"));
            }
            CaseActionKind::Close { disposition }
        }
        "filed" => {
            let report = text_of("report")?.ok_or_else(|| missing("report (the SHA-256 of the report as filed)"))?;
            if report.len() != 64 || !report.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad(format!("report {report:?} is not a SHA-256 in hex (64 digits)")));
            }
            let receipt = text_of("receipt")?.ok_or_else(|| missing("receipt (the regulator's receipt)"))?;
            CaseActionKind::Filed { receipt: receipt.to_string(), report: report.to_ascii_lowercase() }
        }
        other => {
            return Err(Rejection::new(
                RejectReason::UnknownKind,
                format!("action {other:?} is not one of ack, assign, review, escalate, close, filed"),
            ));
        }
    };
    for (field, owner) in [("to", "assign"), ("disposition", "close"), ("receipt", "filed"), ("report", "filed")] {
        if fields.get(field).is_some_and(|v| !v.is_null()) && action != owner {
            return Err(bad(format!("{field} belongs to a {owner} action, not to {action}")));
        }
    }
    Ok(CaseAction { time, case, kind, by, reason, source: 0, line: 0, offset: 0 })
}

/// The actions of a case-actions file (input index `source`), and a dead letter for each line
/// that is not one. Blank lines are skipped.
pub fn read_actions(path: &Path, source: u32) -> std::io::Result<(Vec<CaseAction>, Vec<DeadLetter>)> {
    let file = std::fs::File::open(path)?;
    let mut reader = std::io::BufReader::new(file);
    let (mut actions, mut letters) = (Vec::new(), Vec::new());
    let (mut buffer, mut offset, mut line) = (Vec::new(), 0u64, 0u64);
    loop {
        buffer.clear();
        let read = reader.read_until(b'\n', &mut buffer)?;
        if read == 0 {
            break;
        }
        line += 1;
        let at = offset;
        offset += read as u64;
        let text = String::from_utf8_lossy(&buffer);
        let text = text.trim_end_matches(['\n', '\r']);
        if text.trim().is_empty() {
            continue;
        }
        let parsed = match std::str::from_utf8(&buffer) {
            Ok(_) => parse_action(text),
            Err(_) => Err(Rejection::new(RejectReason::BadUtf8, "the line is not UTF-8 text")),
        };
        match parsed {
            Ok(mut action) => {
                (action.source, action.line, action.offset) = (source, line, at);
                actions.push(action);
            }
            Err(rejection) => letters.push(DeadLetter {
                source,
                line: Some(line),
                offset: at,
                raw: text.to_string(),
                reason: rejection.reason,
                detail: rejection.detail,
                event: None,
            }),
        }
    }
    Ok((actions, letters))
}

#[cfg(test)]
mod tests;
