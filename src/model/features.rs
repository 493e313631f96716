//! The feature store's vocabulary: which keys rows describe, the features, and a row's
//! counters. The store (`crate::features`) computes rows; the anomaly detector scores them.

use serde::{Deserialize, Serialize};

use super::Symbol;

/// Which kind of key a row describes.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureScope {
    /// One account in one instrument.
    AccountInstrument,
    /// One account across all instruments.
    Account,
    /// One instrument across all accounts.
    Instrument,
}

impl FeatureScope {
    /// All scopes, in a fixed order.
    pub const ALL: [FeatureScope; 3] =
        [FeatureScope::AccountInstrument, FeatureScope::Account, FeatureScope::Instrument];

    /// The stable name used in exports and models.
    pub fn as_str(self) -> &'static str {
        match self {
            FeatureScope::AccountInstrument => "account_instrument",
            FeatureScope::Account => "account",
            FeatureScope::Instrument => "instrument",
        }
    }

    /// Parses [`as_str`](FeatureScope::as_str).
    pub fn parse(text: &str) -> Option<FeatureScope> {
        FeatureScope::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// One feature: its name and how noisy it is allowed to look.
#[derive(Copy, Clone, Debug)]
pub struct FeatureDef {
    /// Stable name (export column, model field, explanation).
    pub name: &'static str,
    /// Unit, for people.
    pub unit: &'static str,
    /// Baselines see `sign(x) ln(1 + |x|)` instead of `x`: sizes, rates and money are heavy
    /// tailed, and a Gaussian z-score of the raw value would call every busy minute an anomaly.
    pub log_scale: bool,
    /// The smallest standard deviation a baseline may claim, on the baseline's scale: a key whose
    /// history is constant must not turn a tiny change into a huge z-score.
    pub min_std: f64,
}

impl FeatureDef {
    /// The value on the baseline's scale.
    pub fn to_baseline(&self, x: f64) -> f64 {
        if self.log_scale { x.signum() * x.abs().ln_1p() } else { x }
    }

    /// A baseline-scale value back on the feature's own scale (the typical value of a mean).
    pub fn from_baseline(&self, y: f64) -> f64 {
        if self.log_scale { y.signum() * y.abs().exp_m1() } else { y }
    }
}

/// A feature vector on the baselines' scale (see [`FeatureDef::log_scale`]).
pub fn to_baseline(x: &FeatureVector) -> FeatureVector {
    std::array::from_fn(|i| FEATURES[i].to_baseline(x[i]))
}

/// Number of features.
pub const FEATURE_COUNT: usize = 11;

/// A feature vector.
pub type FeatureVector = [f64; FEATURE_COUNT];

/// The features, in vector order. `docs/features.md` defines each.
pub const FEATURES: [FeatureDef; FEATURE_COUNT] = [
    FeatureDef { name: "order_rate", unit: "orders/s", log_scale: true, min_std: 0.1 },
    FeatureDef { name: "cancel_ratio", unit: "cancels per order", log_scale: false, min_std: 0.1 },
    FeatureDef { name: "order_to_trade", unit: "orders per fill", log_scale: true, min_std: 0.25 },
    FeatureDef { name: "avg_order_size", unit: "units", log_scale: true, min_std: 0.25 },
    FeatureDef { name: "max_order_size", unit: "units", log_scale: true, min_std: 0.25 },
    FeatureDef { name: "notional_traded", unit: "currency", log_scale: true, min_std: 0.25 },
    FeatureDef { name: "aggressiveness", unit: "share of fills", log_scale: false, min_std: 0.1 },
    FeatureDef { name: "share_of_volume", unit: "share", log_scale: false, min_std: 0.05 },
    FeatureDef { name: "position_change", unit: "units", log_scale: true, min_std: 0.25 },
    FeatureDef { name: "trades_at_extreme", unit: "share of fills", log_scale: false, min_std: 0.1 },
    FeatureDef { name: "profit_per_trade", unit: "currency per fill", log_scale: true, min_std: 0.25 },
];

/// Summable activity counts of a key in a window. Every feature is derived from these, so the
/// rows of a wider scope are plain sums of the rows of a narrower one.
#[derive(Copy, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    /// New orders.
    pub orders: u64,
    /// Sum of new orders' quantities.
    pub order_quantity: f64,
    /// Largest new order quantity.
    pub max_order_quantity: f64,
    /// Cancellations (full or partial).
    pub cancels: u64,
    /// Replaces.
    pub replaces: u64,
    /// Executions of the key's orders (one per side of a trade).
    pub fills: u64,
    /// Executed quantity.
    pub filled_quantity: f64,
    /// Executed notional.
    pub notional: f64,
    /// Executions where the key's order took liquidity.
    pub aggressive_fills: u64,
    /// Quantity bought.
    pub bought: f64,
    /// Quantity sold.
    pub sold: f64,
    /// Executions at the instrument's highest or lowest price of the window.
    pub extreme_fills: u64,
    /// Executed quantity of the whole market in the instruments the key traded (both sides).
    pub market_quantity: f64,
    /// Profit and loss of the window's executions, marked at each instrument's last price.
    pub pnl: f64,
}

impl Counters {
    /// Adds another key's counters (a wider scope is the sum of narrower ones).
    pub fn merge(&mut self, other: &Counters) {
        self.orders += other.orders;
        self.order_quantity += other.order_quantity;
        self.max_order_quantity = self.max_order_quantity.max(other.max_order_quantity);
        self.cancels += other.cancels;
        self.replaces += other.replaces;
        self.fills += other.fills;
        self.filled_quantity += other.filled_quantity;
        self.notional += other.notional;
        self.aggressive_fills += other.aggressive_fills;
        self.bought += other.bought;
        self.sold += other.sold;
        self.extreme_fills += other.extreme_fills;
        self.market_quantity += other.market_quantity;
        self.pnl += other.pnl;
    }

    /// Events counted (orders, cancels, replaces, fills): a measure of how much evidence a row holds.
    pub fn activity(&self) -> u64 {
        self.orders + self.cancels + self.replaces + self.fills
    }

    /// How many observations each feature rests on: orders for per-order features, fills for
    /// per-fill ones, all activity for the rest. A share computed from two fills is weak evidence.
    pub fn support(&self) -> [u64; FEATURE_COUNT] {
        let (orders, fills, all) = (self.orders, self.fills, self.activity());
        [all, orders, all, orders, orders, fills, fills, fills, fills, fills, fills]
    }

    /// The feature vector, for a window of `window_seconds`. A feature whose denominator is
    /// zero (the share of aggressive fills of a key that did not trade) is NaN: undefined, not
    /// zero, so baselines skip it instead of learning a false zero.
    pub fn features(&self, window_seconds: f64) -> FeatureVector {
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
        let (orders, fills) = (self.orders as f64, self.fills as f64);
        let per_order = |v: f64| if self.orders > 0 { v } else { f64::NAN };
        [
            orders / window_seconds.max(f64::MIN_POSITIVE),
            ratio(self.cancels as f64, orders),
            if self.orders + self.fills > 0 { orders / fills.max(1.0) } else { f64::NAN },
            ratio(self.order_quantity, orders),
            per_order(self.max_order_quantity),
            self.notional,
            ratio(self.aggressive_fills as f64, fills),
            ratio(self.filled_quantity, self.market_quantity),
            self.bought - self.sold,
            ratio(self.extreme_fills as f64, fills),
            ratio(self.pnl, fills),
        ]
    }
}

/// The features of one key in one window `[window_end - width, window_end)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeatureRow {
    /// End of the window (exclusive), in event time.
    pub window_end: u64,
    /// Which kind of key this is.
    pub scope: FeatureScope,
    /// The account (NONE for instrument rows).
    pub account: Symbol,
    /// The instrument (NONE for account rows).
    pub instrument: Symbol,
    /// The account's desk, when reference data names one (peer group of account rows).
    pub desk: Symbol,
    /// The counts the features derive from.
    pub counters: Counters,
}

impl FeatureRow {
    /// `(window end, a stable hash of scope and key)`: the order of rows everywhere (ordered
    /// processing, the export), the same on any number of workers.
    pub fn order_key(&self) -> (u64, u64) {
        let mut key = [0u8; 17];
        key[0] = self.scope as u8;
        key[1..9].copy_from_slice(&self.account.0.to_le_bytes());
        key[9..17].copy_from_slice(&self.instrument.0.to_le_bytes());
        (self.window_end, xxhash_rust::xxh3::xxh3_64(&key))
    }

    /// The key within its scope: (account, instrument).
    pub fn key(&self) -> (Symbol, Symbol) {
        (self.account, self.instrument)
    }
}
