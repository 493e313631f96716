//! What the alert manager decides about alerts: a tier for each, the group it folds into, the
//! routes it is sent on, and the summary of a group of repeats.

use serde::{Deserialize, Serialize};

use super::{Alert, AlertId, CorrectionKind, Symbol, Timestamp};

/// How urgently a person must act, from the alert's score and the configured cut-offs.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Recorded, nobody is told.
    Info,
    /// Worth a look.
    Low,
    /// Review today.
    Medium,
    /// Review now.
    High,
    /// Escalate.
    Critical,
}

impl Tier {
    /// Every tier, lowest first.
    pub const ALL: [Tier; 5] = [Tier::Info, Tier::Low, Tier::Medium, Tier::High, Tier::Critical];

    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Info => "info",
            Tier::Low => "low",
            Tier::Medium => "medium",
            Tier::High => "high",
            Tier::Critical => "critical",
        }
    }

    /// The tier named `name` (lower case).
    pub fn parse(name: &str) -> Option<Tier> {
        Tier::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// The tier's bit in a set of tiers.
    pub fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl std::fmt::Display for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of routes, by their index in the configuration (at most 64).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Routes(pub u64);

impl Routes {
    /// The indices in the set, ascending.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        (0..64).filter(move |i| self.0 & (1 << i) != 0)
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// An alert with the manager's decisions.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TriagedAlert {
    /// The alert as the detector raised it.
    pub alert: Alert,
    /// Its tier.
    pub tier: Tier,
    /// The desk of its account, from the reference data (NONE when unknown).
    pub desk: Symbol,
    /// The id of the first alert of its group: its own id when it opened the group.
    pub group: AlertId,
    /// The routes it was sent on: none when it folded into an open group.
    pub routes: Routes,
    /// For a correction, the tier of the version it corrects.
    #[serde(default)]
    pub prior_tier: Option<Tier>,
    /// The firm of its account, from the reference data (NONE when unknown).
    #[serde(default)]
    pub firm: Symbol,
}

impl TriagedAlert {
    /// A triaged alert (for tests and processors of one's own).
    pub fn new(alert: Alert, tier: Tier, desk: Symbol, group: AlertId, routes: Routes) -> TriagedAlert {
        TriagedAlert { alert, tier, desk, group, routes, prior_tier: None, firm: Symbol::NONE }
    }

    /// The same, of the account's firm `firm`.
    pub fn with_firm(mut self, firm: Symbol) -> TriagedAlert {
        self.firm = firm;
        self
    }

    /// The same, correcting a version that had `tier`.
    pub fn correcting(mut self, tier: Tier) -> TriagedAlert {
        self.prior_tier = Some(tier);
        self
    }

    /// Whether it opened its group (and so was sent at once).
    pub fn opened_group(&self) -> bool {
        self.group == self.alert.id
    }
}

/// One repeat in a group.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Occurrence {
    /// The alert's id.
    pub id: AlertId,
    /// Its event time.
    pub time: Timestamp,
    /// Its score.
    pub score: f64,
    /// Its tier.
    pub tier: Tier,
    /// Whether a correction withdrew it.
    #[serde(default)]
    pub retracted: bool,
}

/// The repeats of one rule on one key within a horizon, folded into one notice when the
/// horizon closes. Only groups with more than one alert produce a summary.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertGroup {
    /// The id of the group's first alert (sent at once when it was raised).
    pub id: AlertId,
    /// The rule.
    pub rule: String,
    /// The instrument.
    pub instrument: Symbol,
    /// The account.
    pub account: Symbol,
    /// The account's desk.
    pub desk: Symbol,
    /// Event time of the first alert.
    pub first_time: Timestamp,
    /// Event time of the last alert.
    pub last_time: Timestamp,
    /// Exclusive end of the horizon.
    pub horizon_end: Timestamp,
    /// Alerts in the group, the first included.
    pub count: u64,
    /// The highest score.
    pub max_score: f64,
    /// The tier of the highest score.
    pub tier: Tier,
    /// Every alert of the group in event-time order, up to the configured maximum.
    pub occurrences: Vec<Occurrence>,
    /// Whether occurrences beyond the maximum were counted but not listed.
    pub truncated: bool,
    /// The routes the summary is sent on (those matching its tier).
    pub routes: Routes,
    /// Corrections of its alerts.
    pub corrections: u64,
    /// Its alerts a correction withdrew.
    pub retracted: u64,
}

impl AlertGroup {
    /// A group opened by `first`.
    pub fn open(first: &TriagedAlert, horizon_end: Timestamp) -> AlertGroup {
        AlertGroup {
            id: first.alert.id,
            rule: first.alert.rule.clone(),
            instrument: first.alert.instrument,
            account: first.alert.account,
            desk: first.desk,
            first_time: first.alert.time,
            last_time: first.alert.time,
            horizon_end,
            count: 1,
            max_score: first.alert.score,
            tier: first.tier,
            occurrences: vec![Occurrence {
                id: first.alert.id,
                time: first.alert.time,
                score: first.alert.score,
                tier: first.tier,
                retracted: false,
            }],
            truncated: false,
            routes: Routes::default(),
            corrections: 0,
            retracted: 0,
        }
    }

    /// Adds a repeat, listing it while the list holds fewer than `max_listed`.
    pub fn add(&mut self, repeat: &TriagedAlert, max_listed: usize) {
        self.count += 1;
        self.last_time = self.last_time.max(repeat.alert.time);
        if repeat.alert.score > self.max_score {
            self.max_score = repeat.alert.score;
        }
        self.tier = self.tier.max(repeat.tier);
        if self.occurrences.len() < max_listed {
            self.occurrences.push(Occurrence {
                id: repeat.alert.id,
                time: repeat.alert.time,
                score: repeat.alert.score,
                tier: repeat.tier,
                retracted: false,
            });
        } else {
            self.truncated = true;
        }
    }

    /// Applies a correction of one of its alerts: the occurrence takes the new score and tier
    /// (a retracted one is marked), and the highest score and tier are taken again over the
    /// listed occurrences (when none were left out).
    pub fn correct(&mut self, correction: &TriagedAlert) {
        self.corrections += 1;
        let retracted = correction.alert.correction.as_ref().is_some_and(|c| c.kind == CorrectionKind::Retracted);
        if let Some(o) = self.occurrences.iter_mut().find(|o| o.id == correction.alert.id) {
            o.score = if retracted { 0.0 } else { correction.alert.score };
            o.tier = correction.tier;
            o.retracted = retracted;
        }
        if retracted {
            self.retracted += 1;
        }
        if !self.truncated {
            let live = self.occurrences.iter().filter(|o| !o.retracted);
            self.max_score = live.clone().map(|o| o.score).fold(0.0, f64::max);
            self.tier = live.map(|o| o.tier).max().unwrap_or(Tier::Info);
        } else if correction.alert.score > self.max_score {
            self.max_score = correction.alert.score;
            self.tier = self.tier.max(correction.tier);
        }
    }
}
