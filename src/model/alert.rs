//! Alerts: what a detector found, why, and the events that prove it.

use serde::{Deserialize, Serialize};

use crate::model::{Decimal, Event, Symbol, Timestamp};

/// The names of the built-in rules, as alerts and labels carry them.
pub mod rules {
    /// An order above the maximum quantity.
    pub const ORDER_QUANTITY_LIMIT: &str = "order_quantity_limit";
    /// An order above the maximum notional.
    pub const ORDER_NOTIONAL_LIMIT: &str = "order_notional_limit";
    /// An order or execution priced too far from the reference price.
    pub const OFF_MARKET_PRICE: &str = "off_market_price";
    /// Too many orders per transaction in a session (RTS 9).
    pub const ORDER_TO_TRADE_RATIO: &str = "order_to_trade_ratio";
    /// A trade with the same account or beneficial owner on both sides.
    pub const SELF_TRADE: &str = "self_trade";
    /// Behaviour far from the key's own or its peers' baseline (feature store).
    pub const BEHAVIOURAL_ANOMALY: &str = "behavioural_anomaly";
    /// Large orders cancelled around the fill of the same account's opposite-side order.
    pub const SPOOFING: &str = "spoofing";
    /// Orders on several levels of one side around an opposite-side execution, then cancelled.
    pub const LAYERING: &str = "layering";
    /// An account whose trades sit systematically at the session's price extremes.
    pub const INSIDER_LIKE: &str = "insider_like";
    /// Opposite executions of linked accounts in separate prints, at one price and size.
    pub const LINKED_WASH: &str = "linked_wash";
    /// Bursts of messages or of changes to the best prices by one account.
    pub const QUOTE_STUFFING: &str = "quote_stuffing";
    /// An account's closing-window trading that moves the closing price its way.
    pub const MARKING_CLOSE: &str = "marking_close";
    /// Aggressive executions through several levels, then the position turned round.
    pub const MOMENTUM_IGNITION: &str = "momentum_ignition";
    /// Two accounts trading with each other far more often than their activity explains.
    pub const CROSS_TRADES: &str = "cross_trades";
    /// A desk's or algorithm's self-trades making up a large share of its volume in a session.
    pub const SELF_TRADE_PATTERN: &str = "self_trade_pattern";
    /// The firm's own or an employee's account trading ahead of a client's block.
    pub const FRONT_RUNNING: &str = "front_running";
    /// Accounts passing one quantity of a security round a closed loop.
    pub const COLLUSION_RINGS: &str = "collusion_rings";
    /// Every built-in rule name, in a fixed order.
    pub const ALL: [&str; 17] = [
        ORDER_QUANTITY_LIMIT,
        ORDER_NOTIONAL_LIMIT,
        OFF_MARKET_PRICE,
        ORDER_TO_TRADE_RATIO,
        SELF_TRADE,
        BEHAVIOURAL_ANOMALY,
        SPOOFING,
        LAYERING,
        INSIDER_LIKE,
        LINKED_WASH,
        QUOTE_STUFFING,
        MARKING_CLOSE,
        MOMENTUM_IGNITION,
        CROSS_TRADES,
        SELF_TRADE_PATTERN,
        FRONT_RUNNING,
        COLLUSION_RINGS,
    ];
}

/// How urgently a person should look.
#[non_exhaustive]
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth a look.
    Low,
    /// Review today.
    Medium,
    /// Review now.
    High,
    /// Escalate.
    Critical,
}

impl Severity {
    /// Severity of a 0-100 score: high from `high`, medium from `medium`, low below.
    ///
    /// ```
    /// use surveil::model::Severity;
    /// assert_eq!(Severity::from_score(72.0, 40.0, 70.0), Severity::High);
    /// assert_eq!(Severity::from_score(39.9, 40.0, 70.0), Severity::Low);
    /// ```
    pub fn from_score(score: f64, medium: f64, high: f64) -> Severity {
        if score >= high {
            Severity::High
        } else if score >= medium {
            Severity::Medium
        } else {
            Severity::Low
        }
    }

    /// Severity from how far a measured value exceeds its limit (`ratio = value / limit`).
    pub fn from_excess(ratio: f64) -> Severity {
        if ratio >= 10.0 {
            Severity::Critical
        } else if ratio >= 3.0 {
            Severity::High
        } else if ratio >= 1.5 {
            Severity::Medium
        } else {
            Severity::Low
        }
    }

    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// A score in [0, 100] from `ratio = value / limit` (1 at the limit): 50 at the limit, rising
/// towards 100 logarithmically, so a 10x breach scores about 90.
pub fn score_from_excess(ratio: f64) -> f64 {
    if !ratio.is_finite() {
        return 100.0;
    }
    let s = 50.0 + 40.0 * ratio.max(1.0).log10();
    (s.clamp(0.0, 100.0) * 100.0).round() / 100.0
}

/// A value that explains an alert: a limit, a measured quantity, a price.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Value {
    /// A count or quantity.
    Count(u64),
    /// An exact decimal (prices, notionals).
    Decimal(Decimal),
    /// A ratio or percentage (not money).
    Ratio(f64),
    /// Text.
    Text(String),
    /// A name, shown through the symbol dictionary.
    Name(Symbol),
    /// The features that drove an anomaly score.
    Features(Vec<FeatureEvidence>),
}

/// One feature's part in an anomaly alert.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeatureEvidence {
    /// Feature name (`docs/features.md`).
    pub feature: String,
    /// Its value in the window (NaN, shown as null, when undefined: a fill ratio without fills).
    pub value: f64,
    /// z-score against the key's own baseline, when the key has enough history.
    pub z_own: Option<f64>,
    /// Mean of the key's own baseline.
    pub own_mean: Option<f64>,
    /// z-score against the peer group's baseline, when the group has enough rows.
    pub z_peers: Option<f64>,
    /// Mean of the peer group's baseline.
    pub peer_mean: Option<f64>,
    /// Share of the forest score attributed to the feature (path-length attribution), when a
    /// forest scored the row.
    pub forest_contribution: Option<f64>,
}

/// A named value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Parameter {
    /// Name, e.g. `max_quantity`.
    pub name: String,
    /// Value.
    pub value: Value,
}

/// A deterministic alert id: a 128-bit hash of the rule, instrument, account, time and the
/// origins of the evidence, so the same input gives the same ids on any number of workers.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AlertId(pub u128);

impl AlertId {
    /// The id written as 32 hexadecimal digits, as output files show it.
    pub fn parse(text: &str) -> Option<AlertId> {
        if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u128::from_str_radix(text, 16).ok().map(AlertId)
    }
}

impl std::fmt::Display for AlertId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// One alert.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Deterministic id.
    pub id: AlertId,
    /// The rule's name (`"self_trade"`, or a user rule's own name).
    pub rule: String,
    /// Severity.
    pub severity: Severity,
    /// Score in [0, 100].
    pub score: f64,
    /// Event time of the breach.
    pub time: Timestamp,
    /// Wall-clock time of detection (ns since the epoch).
    pub detected_at: u64,
    /// Instrument.
    pub instrument: Symbol,
    /// Account (NONE when not attributable).
    pub account: Symbol,
    /// One line for a person.
    pub explanation: String,
    /// The limits and measured values that fired.
    pub parameters: Vec<Parameter>,
    /// The events involved.
    pub evidence: Vec<Event>,
    /// Set on a correction: a later version of an alert raised before, with the same id, that
    /// retracts, downgrades or amends it. The alert stream is a change stream: the last version
    /// of an id is the detector's verdict.
    #[serde(default)]
    pub correction: Option<Correction>,
}

impl Alert {
    /// Whether this version withdraws the alert.
    pub fn is_retracted(&self) -> bool {
        self.correction.as_ref().is_some_and(|c| c.kind == CorrectionKind::Retracted)
    }

    /// Where the alert goes among alerts of the same event time, for everything that must
    /// take them in one order (the alert manager, the case workflow).
    ///
    /// Unlike the id, which hashes where the evidence was read, this hashes only what the
    /// alert says (rule, keys, time, score and the evidence's contents, in any order), so a day
    /// read from a file, from a topic or resumed from a checkpoint puts two alerts of one time
    /// in the same order and so opens the same cases at the same tiers. Alerts that say the
    /// same (a record given twice) are ordered by their ids, in the low 16 bits, so that one
    /// input gives one order on any number of workers. A correction comes after the alerts of
    /// its time.
    ///
    /// ```
    /// use surveil::model::{Alert, Symbol};
    ///
    /// let first = Alert::builder("spoofing", 7).account(Symbol::of(b"ACC1")).score(70.0).build();
    /// let again = Alert::builder("spoofing", 7).account(Symbol::of(b"ACC1")).score(70.0).build();
    /// assert_eq!(first.order_key(), again.order_key());
    /// ```
    pub fn order_key(&self) -> u64 {
        let mut evidence: Vec<u64> = self
            .evidence
            .iter()
            .map(|e| surveil_operators::route(&(e.time, e.seq, e.instrument, e.account, e.body)))
            .collect();
        evidence.sort_unstable();
        let content = surveil_operators::route(&(
            self.rule.as_str(),
            self.instrument,
            self.account,
            self.time,
            self.score.to_bits(),
            evidence,
        ));
        (u64::from(self.correction.is_some()) << 63) | (content >> 17) << 16 | (self.id.0 as u64 & 0xffff)
    }
}

/// What a correction does to the alert it corrects.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CorrectionKind {
    /// A later event showed there was no breach: the alert is withdrawn.
    Retracted,
    /// The breach stands with a lower score.
    Downgraded,
    /// The breach stands, with more evidence or a higher score.
    Amended,
}

impl CorrectionKind {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            CorrectionKind::Retracted => "retracted",
            CorrectionKind::Downgraded => "downgraded",
            CorrectionKind::Amended => "amended",
        }
    }
}

/// Why and how an alert was corrected.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Correction {
    /// What it does.
    pub kind: CorrectionKind,
    /// Event time of the version it corrects.
    pub raised_at: Timestamp,
    /// Score of the version it corrects.
    pub raised_score: f64,
    /// What changed the verdict, for a person.
    pub reason: String,
}

impl Alert {
    /// An alert of `rule` at event time `time`, to be filled in: severity medium and score 50
    /// unless set.
    ///
    /// ```
    /// use surveil::model::{Alert, Severity, Symbol};
    /// let alert = Alert::builder("cancel_burst", 1_000)
    ///     .account(Symbol::of(b"ACC1"))
    ///     .severity(Severity::High)
    ///     .score(80.0)
    ///     .param("cancels", 51u64)
    ///     .explain("51 cancels in 1 s")
    ///     .build();
    /// assert_eq!(alert.rule, "cancel_burst");
    /// assert_eq!(alert.id, Alert::builder("cancel_burst", 1_000).account(Symbol::of(b"ACC1")).build().id);
    /// ```
    pub fn builder(rule: impl Into<String>, time: Timestamp) -> AlertBuilder {
        AlertBuilder {
            rule: rule.into(),
            severity: Severity::Medium,
            score: 50.0,
            time,
            instrument: Symbol::NONE,
            account: Symbol::NONE,
            explanation: String::new(),
            parameters: Vec::new(),
            evidence: Vec::new(),
            discriminator: 0,
            corrects: None,
        }
    }
}

/// Builds an [`Alert`]; its id is computed from the content when it is built.
#[derive(Clone, Debug)]
pub struct AlertBuilder {
    rule: String,
    severity: Severity,
    score: f64,
    time: Timestamp,
    instrument: Symbol,
    account: Symbol,
    explanation: String,
    parameters: Vec<Parameter>,
    evidence: Vec<Event>,
    discriminator: u64,
    corrects: Option<(AlertId, Correction)>,
}

impl AlertBuilder {
    /// The rule's name, when one detector raises alerts of several rules (the order limits
    /// raise `order_quantity_limit` and `order_notional_limit`).
    pub fn rule(&mut self, rule: &str) -> &mut Self {
        rule.clone_into(&mut self.rule);
        self
    }

    /// How urgent.
    pub fn severity(&mut self, severity: Severity) -> &mut Self {
        self.severity = severity;
        self
    }

    /// A score in [0, 100] (clamped; NaN becomes 0).
    pub fn score(&mut self, score: f64) -> &mut Self {
        self.score = if score.is_nan() { 0.0 } else { score.clamp(0.0, 100.0) };
        self
    }

    /// The instrument.
    pub fn instrument(&mut self, instrument: Symbol) -> &mut Self {
        self.instrument = instrument;
        self
    }

    /// The account.
    pub fn account(&mut self, account: Symbol) -> &mut Self {
        self.account = account;
        self
    }

    /// One line for a person.
    pub fn explain(&mut self, explanation: impl Into<String>) -> &mut Self {
        self.explanation = explanation.into();
        self
    }

    /// A named value: a limit, a measured quantity, a price.
    pub fn param(&mut self, name: &str, value: impl Into<Value>) -> &mut Self {
        self.parameters.push(Parameter { name: name.into(), value: value.into() });
        self
    }

    /// An event that proves the alert (its origin also makes the id unique).
    pub fn evidence(&mut self, event: &Event) -> &mut Self {
        self.evidence.push(*event);
        self
    }

    /// Drops the evidence gathered so far (an alert about a period rather than an event).
    pub fn no_evidence(&mut self) -> &mut Self {
        self.evidence.clear();
        self
    }

    /// Tells apart two alerts of the same rule, key and time that share their evidence (the
    /// order id of a limit breach, say); 0 by default.
    pub fn discriminator(&mut self, discriminator: u64) -> &mut Self {
        self.discriminator = discriminator;
        self
    }

    /// Makes the alert a correction of `original`: it keeps the original's id, whatever its
    /// content, and says what changed and why.
    ///
    /// ```
    /// use surveil::model::{Alert, CorrectionKind};
    /// let raised = Alert::builder("layering", 1_000).score(80.0).build();
    /// let retraction = Alert::builder("layering", 5_000)
    ///     .score(0.0)
    ///     .corrects(&raised, CorrectionKind::Retracted, "the layers traded")
    ///     .build();
    /// assert_eq!(retraction.id, raised.id);
    /// assert!(retraction.is_retracted());
    /// ```
    pub fn corrects(&mut self, original: &Alert, kind: CorrectionKind, reason: impl Into<String>) -> &mut Self {
        let correction =
            Correction { kind, raised_at: original.time, raised_score: original.score, reason: reason.into() };
        self.corrects = Some((original.id, correction));
        self
    }

    /// The alert, with its deterministic id: a 128-bit hash of the rule, instrument, account,
    /// time, discriminator and the origins of the evidence, so the same input gives the same
    /// ids on any number of workers.
    pub fn build(&mut self) -> Alert {
        let mut key = Vec::with_capacity(48 + 8 * self.evidence.len());
        key.extend_from_slice(self.rule.as_bytes());
        key.extend_from_slice(&self.instrument.0.to_le_bytes());
        key.extend_from_slice(&self.account.0.to_le_bytes());
        key.extend_from_slice(&self.time.to_le_bytes());
        key.extend_from_slice(&self.discriminator.to_le_bytes());
        for event in &self.evidence {
            key.extend_from_slice(&event.origin.0.to_le_bytes());
        }
        let (id, correction) = match self.corrects.take() {
            Some((id, correction)) => (id, Some(correction)),
            None => (AlertId(xxhash_rust::xxh3::xxh3_128(&key)), None),
        };
        let detected_at =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        Alert {
            id,
            rule: std::mem::take(&mut self.rule),
            severity: self.severity,
            score: self.score,
            time: self.time,
            detected_at,
            instrument: self.instrument,
            account: self.account,
            explanation: std::mem::take(&mut self.explanation),
            parameters: std::mem::take(&mut self.parameters),
            evidence: std::mem::take(&mut self.evidence),
            correction,
        }
    }
}

impl From<u64> for Value {
    fn from(n: u64) -> Value {
        Value::Count(n)
    }
}

impl From<usize> for Value {
    fn from(n: usize) -> Value {
        Value::Count(n as u64)
    }
}

impl From<u32> for Value {
    fn from(n: u32) -> Value {
        Value::Count(n.into())
    }
}

impl From<f64> for Value {
    fn from(r: f64) -> Value {
        Value::Ratio(r)
    }
}

impl From<Decimal> for Value {
    fn from(d: Decimal) -> Value {
        Value::Decimal(d)
    }
}

impl From<Symbol> for Value {
    fn from(s: Symbol) -> Value {
        Value::Name(s)
    }
}

impl From<&str> for Value {
    fn from(t: &str) -> Value {
        Value::Text(t.into())
    }
}

impl From<String> for Value {
    fn from(t: String) -> Value {
        Value::Text(t)
    }
}

impl From<std::time::Duration> for Value {
    fn from(d: std::time::Duration) -> Value {
        Value::Text(humantime::format_duration(d).to_string())
    }
}

impl From<Vec<FeatureEvidence>> for Value {
    fn from(f: Vec<FeatureEvidence>) -> Value {
        Value::Features(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Body, Origin, TradingStatus};

    #[test]
    fn scores_and_severities_grow_with_the_excess() {
        assert_eq!(score_from_excess(1.0), 50.0);
        assert!(score_from_excess(10.0) > 89.0 && score_from_excess(10.0) <= 90.0);
        assert_eq!(score_from_excess(f64::INFINITY), 100.0);
        assert_eq!(Severity::from_excess(1.1), Severity::Low);
        assert_eq!(Severity::from_excess(12.0), Severity::Critical);
    }

    #[test]
    fn ids_depend_on_content_only() {
        let make = |time| Alert::builder(rules::SELF_TRADE, time).instrument(Symbol(1)).account(Symbol(2)).build();
        assert_eq!(make(5).id, make(5).id);
        assert_ne!(make(5).id, make(6).id);
        let with_evidence = Alert::builder("x", 5)
            .evidence(&Event::new(5, Origin(7), Symbol(1), Body::Status { status: TradingStatus::Halted }))
            .build();
        assert_ne!(with_evidence.id, Alert::builder("x", 5).build().id);
        assert_eq!(Alert::builder("x", 5).score(f64::NAN).build().score, 0.0);
    }
}
