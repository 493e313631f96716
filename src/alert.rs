//! Alerts: what a detector found, why, and the events that prove it.

use serde::{Deserialize, Serialize};

use crate::model::{Decimal, Event, Symbol, Timestamp};

/// The rule that raised an alert.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// An order above the maximum quantity.
    OrderQuantityLimit,
    /// An order above the maximum notional.
    OrderNotionalLimit,
    /// An order or execution priced too far from the reference price.
    OffMarketPrice,
    /// Too many orders per transaction in a session (RTS 9).
    OrderToTradeRatio,
    /// A trade with the same account or beneficial owner on both sides.
    SelfTrade,
    /// Behaviour far from the key's own or its peers' baseline (feature store).
    BehaviouralAnomaly,
}

impl Rule {
    /// All rules, in a fixed order.
    pub const ALL: [Rule; 6] = [
        Rule::OrderQuantityLimit,
        Rule::OrderNotionalLimit,
        Rule::OffMarketPrice,
        Rule::OrderToTradeRatio,
        Rule::SelfTrade,
        Rule::BehaviouralAnomaly,
    ];

    /// The stable name used in output and labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::OrderQuantityLimit => "order_quantity_limit",
            Rule::OrderNotionalLimit => "order_notional_limit",
            Rule::OffMarketPrice => "off_market_price",
            Rule::OrderToTradeRatio => "order_to_trade_ratio",
            Rule::SelfTrade => "self_trade",
            Rule::BehaviouralAnomaly => "behavioural_anomaly",
        }
    }
}

/// How urgently a person should look.
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

/// Builds a [`Parameter`].
pub fn param(name: &str, value: Value) -> Parameter {
    Parameter { name: name.into(), value }
}

/// A deterministic alert id: a 128-bit hash of the rule, instrument, account, time and the
/// origins of the evidence, so the same input gives the same ids on any number of workers.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AlertId(pub u128);

impl std::fmt::Display for AlertId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// One alert.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Deterministic id.
    pub id: AlertId,
    /// Rule.
    pub rule: Rule,
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
}

impl Alert {
    /// An alert with its id computed from its content.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        rule: Rule,
        severity: Severity,
        score: f64,
        time: Timestamp,
        instrument: Symbol,
        account: Symbol,
        explanation: String,
        parameters: Vec<Parameter>,
        evidence: Vec<Event>,
        discriminator: u64,
    ) -> Alert {
        let mut key = Vec::with_capacity(48 + 8 * evidence.len());
        key.extend_from_slice(rule.as_str().as_bytes());
        key.extend_from_slice(&instrument.0.to_le_bytes());
        key.extend_from_slice(&account.0.to_le_bytes());
        key.extend_from_slice(&time.to_le_bytes());
        key.extend_from_slice(&discriminator.to_le_bytes());
        for event in &evidence {
            key.extend_from_slice(&event.origin.0.to_le_bytes());
        }
        let id = AlertId(xxhash_rust::xxh3::xxh3_128(&key));
        let detected_at =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        Alert { id, rule, severity, score, time, detected_at, instrument, account, explanation, parameters, evidence }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let make = || {
            Alert::new(Rule::SelfTrade, Severity::High, 90.0, 5, Symbol(1), Symbol(2), "x".into(), vec![], vec![], 0)
        };
        assert_eq!(make().id, make().id);
        let other =
            Alert::new(Rule::SelfTrade, Severity::High, 90.0, 6, Symbol(1), Symbol(2), "x".into(), vec![], vec![], 0);
        assert_ne!(make().id, other.id);
    }
}
