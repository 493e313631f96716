//! Cases: what people do about an alert, and what the workflow does when nobody does.
//!
//! A case opens when a group of alerts reaches a tier worth a person's time. People act on it
//! through [`CaseAction`]s (acknowledge, assign, review, escalate, close), which are input
//! records with an event time, so a replay of the same alerts and actions gives the same cases.
//! Every change is a [`CaseRecord`]: a version of the case with who changed it, when, what the
//! state and tier were before, and why.

use serde::{Deserialize, Serialize};

use super::{AlertId, Routes, Symbol, Tier, Timestamp};

/// Where a case stands.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseState {
    /// Opened, nobody has acted yet.
    Open,
    /// Someone owns it.
    Assigned,
    /// Its owner is investigating.
    UnderReview,
    /// Handed to the next tier: by its deadline passing unacknowledged, or by a person.
    Escalated,
    /// Decided, with a disposition and a reason. Final.
    Closed,
}

impl CaseState {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            CaseState::Open => "open",
            CaseState::Assigned => "assigned",
            CaseState::UnderReview => "under_review",
            CaseState::Escalated => "escalated",
            CaseState::Closed => "closed",
        }
    }
}

/// How a case was decided. MAR Article 16 asks for the reasons for filing a STOR and for not
/// filing one alike, so every disposition comes with a reason.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    /// A suspicious transaction and order report was filed.
    StorFiled,
    /// Reviewed; no report is warranted.
    NoAction,
    /// Closed without a person: the detectors retracted every alert of the case before anyone
    /// acted on it.
    Withdrawn,
}

impl Disposition {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::StorFiled => "stor_filed",
            Disposition::NoAction => "no_action",
            Disposition::Withdrawn => "withdrawn",
        }
    }

    /// The disposition named `name`.
    pub fn parse(name: &str) -> Option<Disposition> {
        match name {
            "stor_filed" | "stor" => Some(Disposition::StorFiled),
            "no_action" => Some(Disposition::NoAction),
            _ => None,
        }
    }
}

/// What a person does to a case.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseActionKind {
    /// "I have seen it": stops the deadline clock; an open or escalated case is assigned to
    /// the person who acknowledged it.
    Ack,
    /// Gives the case to `to` (acknowledges it too).
    Assign {
        /// Who owns the case now.
        to: String,
    },
    /// Starts the investigation (acknowledges it too).
    Review,
    /// Hands the case to the next tier now, which must acknowledge it within its deadline.
    Escalate,
    /// Decides the case.
    Close {
        /// The decision.
        disposition: Disposition,
    },
    /// Records that the case's report reached the regulator: a case closed as `stor_filed`
    /// keeps the receipt (`surveil report submit` appends this action).
    Filed {
        /// The receipt the regulator's endpoint (or the file drop) gave.
        receipt: String,
        /// The SHA-256 of the report as filed, in hex.
        report: String,
    },
}

impl CaseActionKind {
    /// Lower-case name.
    pub fn as_str(&self) -> &'static str {
        match self {
            CaseActionKind::Ack => "ack",
            CaseActionKind::Assign { .. } => "assign",
            CaseActionKind::Review => "review",
            CaseActionKind::Escalate => "escalate",
            CaseActionKind::Close { .. } => "close",
            CaseActionKind::Filed { .. } => "filed",
        }
    }
}

/// A person's action on a case. A case-actions file holds one per line
/// ([`crate::cases::parse_action`]):
///
/// ```json
/// {"time":"2024-03-01T15:02:00Z","case":"5f0c…","action":"close","disposition":"no_action","by":"alice","reason":"hedge of a client order"}
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CaseAction {
    /// When the person acted (event time, nanoseconds since the epoch).
    pub time: Timestamp,
    /// The case: its group's id (the id of the group's first alert).
    pub case: AlertId,
    /// What they did.
    pub kind: CaseActionKind,
    /// Who acted.
    pub by: String,
    /// Why; required to close a case.
    pub reason: String,
    /// Where the action came from: its input's index, 1-based line and byte offset, so a
    /// refused action points at its line.
    pub source: u32,
    /// See `source`.
    pub line: u64,
    /// See `source`.
    pub offset: u64,
}

/// What changed in a version of a case.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseChange {
    /// The case opened, from the alert that reached a case-worthy tier.
    Opened,
    /// A repeat of the case's alert raised its tier.
    TierRaised,
    /// A person acknowledged it.
    Acknowledged,
    /// A person assigned it.
    Assigned,
    /// A person started reviewing it.
    ReviewStarted,
    /// Its deadline passed unacknowledged (`by` is empty) or a person escalated it.
    Escalated,
    /// A person closed it.
    Closed,
    /// An alert of the case's group was sent after the case was closed (the case stays closed;
    /// the new information is for the people who decided it).
    AlertAfterClose,
    /// The case's report was filed with the regulator, who gave a receipt.
    ReportFiled,
    /// A detector corrected (amended, downgraded or retracted) one of the case's alerts.
    AlertCorrected,
    /// Every alert of a case nobody had acted on was retracted: closed as withdrawn.
    Withdrawn,
}

impl CaseChange {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            CaseChange::Opened => "opened",
            CaseChange::TierRaised => "tier_raised",
            CaseChange::Acknowledged => "acknowledged",
            CaseChange::Assigned => "assigned",
            CaseChange::ReviewStarted => "review_started",
            CaseChange::Escalated => "escalated",
            CaseChange::Closed => "closed",
            CaseChange::AlertAfterClose => "alert_after_close",
            CaseChange::ReportFiled => "report_filed",
            CaseChange::AlertCorrected => "alert_corrected",
            CaseChange::Withdrawn => "withdrawn",
        }
    }
}

/// One version of a case: the case as it stands after a change, with the change, who made it
/// and the prior values.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CaseRecord {
    /// The case: its group's id (the id of the group's first alert).
    pub case: AlertId,
    /// 1 for the opening, then one more per change.
    pub version: u32,
    /// When the change happened (event time).
    pub time: Timestamp,
    /// What changed.
    pub change: CaseChange,
    /// Who changed it; empty for the workflow itself (an opening, a missed deadline).
    pub by: String,
    /// Why.
    pub reason: String,
    /// The state after the change.
    pub state: CaseState,
    /// The state before it (none for the opening).
    pub prior_state: Option<CaseState>,
    /// The tier after the change.
    pub tier: Tier,
    /// The tier before it (none for the opening).
    pub prior_tier: Option<Tier>,
    /// Who owns the case.
    pub assignee: Option<String>,
    /// The decision, once closed.
    pub disposition: Option<Disposition>,
    /// The regulator's receipt for the last report filed on the case, and the report's SHA-256.
    pub receipt: Option<(String, String)>,
    /// When the case escalates unless acknowledged first; none once acknowledged or closed.
    pub deadline: Option<Timestamp>,
    /// Escalations so far.
    pub escalations: u32,
    /// The action came after the deadline then running, which had not escalated because the
    /// recorded data ended before it (a replay with actions taken later).
    pub late: bool,
    /// The alert that opened the case or raised its tier (the case id otherwise).
    pub alert: AlertId,
    /// The rule of the case's alerts.
    pub rule: String,
    /// Their instrument.
    pub instrument: Symbol,
    /// Their account.
    pub account: Symbol,
    /// The account's desk.
    pub desk: Symbol,
    /// Where the change is sent: an escalation goes to the routes of its new tier; the first
    /// acknowledgement and the closing to the routes of the case's tier.
    pub routes: Routes,
}
