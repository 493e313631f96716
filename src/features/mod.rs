//! The feature store: per-key behavioural features over event-time windows, defined once and
//! read by every statistical detector and model.
//!
//! Every feature is a function of a small set of summable [`Counters`]. The counters of an
//! (account, instrument) pair are kept by [`FeatureRecorder`], a [`Detector`] that runs inside
//! the per-instrument, time-ordered surveillance operator (so it shares the order book state the
//! rules use and sees events in the same order on any number of workers). At each window end it
//! emits one [`FeatureRow`] per active (account, instrument) pair and one per instrument;
//! [`AccountRollup`] sums the pair rows of each account across instruments into account rows.
//! Because account and instrument rows are sums of the same counters, the derived features mean
//! the same thing at every scope, and a replay of recorded data yields exactly the rows a live run
//! produced (the rows depend only on event time, never on arrival or wall-clock time).
//!
//! The feature list, with units and definitions, is in `docs/features.md`; [`FEATURES`] is the
//! single source of the names used in exports, models and alert explanations.

pub mod export;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use surveil_operators::{Emitter, TimeOrderedProcessor};

use crate::detect::{Detector, OrderContext};
use crate::model::{Body, Event, Price, Side, Symbol};
use crate::reference::ReferenceData;
use crate::report::Report;

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
    /// The key within its scope: (account, instrument).
    pub fn key(&self) -> (Symbol, Symbol) {
        (self.account, self.instrument)
    }
}

/// Per-pair state that is not summable: the extreme prices of the pair's own executions.
#[derive(Clone, Debug, Default)]
struct PairWindow {
    counters: Counters,
    desk: Symbol,
    lowest: Option<(f64, u64)>,
    highest: Option<(f64, u64)>,
}

/// Per-instrument state of the current window.
#[derive(Clone, Debug, Default)]
struct InstrumentWindow {
    market_quantity: f64,
    low: f64,
    high: f64,
    last: f64,
    traded: bool,
}

/// Keeps the counters of every active (account, instrument) pair for the current window and
/// emits the rows when the window ends. Runs as a [`Detector`] inside the surveillance operator.
pub struct FeatureRecorder {
    width: u64,
    reference: Arc<ReferenceData>,
    current_end: Option<u64>,
    pairs: BTreeMap<(Symbol, Symbol), PairWindow>,
    instruments: BTreeMap<Symbol, InstrumentWindow>,
}

impl FeatureRecorder {
    /// A recorder with windows of `width` nanoseconds (aligned to multiples of `width`).
    pub fn new(width: u64, reference: Arc<ReferenceData>) -> FeatureRecorder {
        FeatureRecorder {
            width: width.max(1),
            reference,
            current_end: None,
            pairs: BTreeMap::new(),
            instruments: BTreeMap::new(),
        }
    }

    fn price(&self, instrument: Symbol, price: Price) -> f64 {
        price.0 as f64 / 10f64.powi(self.reference.price_scale(instrument) as i32)
    }

    fn pair(&mut self, account: Symbol, instrument: Symbol, desk: Symbol) -> &mut PairWindow {
        let pair = self.pairs.entry((account, instrument)).or_default();
        if pair.desk == Symbol::NONE {
            pair.desk = desk;
        }
        pair
    }

    fn fill(&mut self, event: &Event, account: Symbol, side: Side, price: f64, quantity: f64, aggressor: Option<Side>) {
        let desk = if account == event.account { event.desk } else { self.desk_of(account) };
        let pair = self.pair(account, event.instrument, desk);
        let c = &mut pair.counters;
        c.fills += 1;
        c.filled_quantity += quantity;
        c.notional += price * quantity;
        if aggressor == Some(side) {
            c.aggressive_fills += 1;
        }
        match side {
            Side::Buy => c.bought += quantity,
            Side::Sell => c.sold += quantity,
        }
        // Net cash of the window's executions; the position is marked at the window end.
        c.pnl += match side {
            Side::Buy => -price * quantity,
            Side::Sell => price * quantity,
        };
        let bump = |slot: &mut Option<(f64, u64)>, better: fn(f64, f64) -> bool| match slot {
            Some((p, n)) if *p == price => *n += 1,
            Some((p, _)) if !better(price, *p) => {}
            _ => *slot = Some((price, 1)),
        };
        bump(&mut pair.lowest, |a, b| a < b);
        bump(&mut pair.highest, |a, b| a > b);
        let market = self.instruments.entry(event.instrument).or_default();
        market.market_quantity += quantity;
        if !market.traded {
            (market.low, market.high) = (price, price);
            market.traded = true;
        }
        market.low = market.low.min(price);
        market.high = market.high.max(price);
        market.last = price;
    }

    fn desk_of(&self, account: Symbol) -> Symbol {
        self.reference.account(account).map(|a| a.desk).unwrap_or(Symbol::NONE)
    }

    /// Emits the rows of the window ending at `end` and clears it.
    fn flush(&mut self, end: u64, out: &mut Emitter<'_, Report>) {
        let mut totals: BTreeMap<Symbol, Counters> = BTreeMap::new();
        for ((account, instrument), pair) in std::mem::take(&mut self.pairs) {
            let mut counters = pair.counters;
            if let Some(market) = self.instruments.get(&instrument).filter(|m| m.traded) {
                counters.market_quantity = market.market_quantity;
                counters.pnl += (counters.bought - counters.sold) * market.last;
                counters.extreme_fills = if market.low == market.high {
                    counters.fills
                } else {
                    pair.lowest.filter(|(p, _)| *p == market.low).map_or(0, |(_, n)| n)
                        + pair.highest.filter(|(p, _)| *p == market.high).map_or(0, |(_, n)| n)
                };
            }
            totals.entry(instrument).or_default().merge(&counters);
            if account != Symbol::NONE {
                out.emit(Report::Features(Box::new(FeatureRow {
                    window_end: end,
                    scope: FeatureScope::AccountInstrument,
                    account,
                    instrument,
                    desk: pair.desk,
                    counters,
                })));
            }
        }
        for (instrument, mut counters) in totals {
            // Each execution has two sides in the market total; the instrument's own share is 1.
            counters.market_quantity = counters.filled_quantity;
            out.emit(Report::Features(Box::new(FeatureRow {
                window_end: end,
                scope: FeatureScope::Instrument,
                account: Symbol::NONE,
                instrument,
                desk: Symbol::NONE,
                counters,
            })));
        }
        self.instruments.clear();
        self.current_end = None;
    }
}

impl Detector for FeatureRecorder {
    fn name(&self) -> &'static str {
        "features"
    }

    fn on_event(&mut self, event: &Event, order: &OrderContext, _out: &mut Emitter<'_, Report>) {
        if self.current_end.is_none() {
            self.current_end = Some((event.time / self.width + 1) * self.width);
        }
        let instrument = event.instrument;
        match event.body {
            Body::NewOrder { quantity, .. } => {
                let c = &mut self.pair(event.account, instrument, event.desk).counters;
                c.orders += 1;
                c.order_quantity += quantity as f64;
                c.max_order_quantity = c.max_order_quantity.max(quantity as f64);
            }
            Body::Cancel { .. } => {
                let _ = order;
                self.pair(event.account, instrument, event.desk).counters.cancels += 1;
            }
            Body::Replace { .. } => self.pair(event.account, instrument, event.desk).counters.replaces += 1,
            Body::Fill { side, price, quantity, aggressor, .. } => {
                let price = self.price(instrument, price);
                self.fill(event, event.account, side, price, quantity as f64, aggressor);
            }
            Body::Trade { buyer, seller, price, quantity, aggressor } => {
                let price = self.price(instrument, price);
                self.fill(event, buyer.account, Side::Buy, price, quantity as f64, aggressor);
                self.fill(event, seller.account, Side::Sell, price, quantity as f64, aggressor);
            }
            _ => {}
        }
    }

    fn next_timer(&self) -> Option<u64> {
        self.current_end
    }

    fn on_timer(&mut self, time: u64, out: &mut Emitter<'_, Report>) {
        self.flush(time, out);
    }
}

/// Sums the (account, instrument) rows of each account and window into account rows. Run it
/// keyed by account, ordered by (instrument, account), so the sums are the same on any number of
/// workers. Rows of the window ending at `t` arrive at time `t`; the account rows leave at `t + 1`.
#[derive(Default)]
pub struct AccountRollup {
    pending: BTreeMap<Symbol, (Symbol, Counters)>,
    pending_end: Option<u64>,
}

impl TimeOrderedProcessor<FeatureRow> for AccountRollup {
    type Output = FeatureRow;

    fn on_record(&mut self, time: u64, row: FeatureRow, _out: &mut Emitter<'_, FeatureRow>) {
        self.pending_end = Some(time);
        let entry = self.pending.entry(row.account).or_insert((row.desk, Counters::default()));
        entry.1.merge(&row.counters);
        if entry.0 == Symbol::NONE {
            entry.0 = row.desk;
        }
    }

    fn next_timer(&self) -> Option<u64> {
        self.pending_end.map(|t| t + 1)
    }

    fn on_timer(&mut self, _time: u64, out: &mut Emitter<'_, FeatureRow>) {
        let Some(end) = self.pending_end.take() else { return };
        for (account, (desk, counters)) in std::mem::take(&mut self.pending) {
            out.emit(FeatureRow {
                window_end: end,
                scope: FeatureScope::Account,
                account,
                instrument: Symbol::NONE,
                desk,
                counters,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testing::{event, test_emitter};
    use crate::detect::{OrderTracker, SurveillanceProcessor};
    use crate::model::Party;

    const SECOND: u64 = 1_000_000_000;

    fn rows(events: Vec<Event>) -> Vec<FeatureRow> {
        let reference = Arc::new(ReferenceData::new(2));
        let recorder = FeatureRecorder::new(60 * SECOND, reference.clone());
        let mut processor = SurveillanceProcessor::new(vec![Box::new(recorder)]);
        crate::detect::testing::run(&mut processor, events)
            .into_iter()
            .filter_map(|r| match r {
                Report::Features(row) => Some(*row),
                _ => None,
            })
            .collect()
    }

    fn order(time: u64, account: &str, id: &str, side: Side, quantity: u64) -> Event {
        event(
            time,
            "XYZ",
            account,
            Body::NewOrder { order: Symbol::of(id.as_bytes()), side, price: Some(Price(1000)), quantity },
        )
    }

    fn trade(time: u64, buyer: &str, seller: &str, price: i64, quantity: u64, aggressor: Side) -> Event {
        let party = |a: &str| Party { account: Symbol::of(a.as_bytes()), ..Party::default() };
        event(
            time,
            "XYZ",
            buyer,
            Body::Trade {
                buyer: party(buyer),
                seller: party(seller),
                price: Price(price),
                quantity,
                aggressor: Some(aggressor),
            },
        )
    }

    #[test]
    fn counters_and_derived_features_of_a_window() {
        let a = "ACC1";
        let events = vec![
            order(SECOND, a, "o1", Side::Buy, 100),
            order(2 * SECOND, a, "o2", Side::Buy, 300),
            event(
                3 * SECOND,
                "XYZ",
                a,
                Body::Cancel { order: Symbol::of(b"o2"), side: None, price: None, quantity: None },
            ),
            trade(4 * SECOND, a, "ACC2", 1000, 50, Side::Buy),
            trade(5 * SECOND, "ACC2", a, 1100, 20, Side::Buy),
            trade(6 * SECOND, "ACC2", "ACC3", 1050, 10, Side::Sell),
            // Next window.
            order(61 * SECOND, a, "o3", Side::Sell, 7),
        ];
        let rows = rows(events);
        let row = |scope, account: &str, end| {
            rows.iter()
                .find(|r| r.scope == scope && r.account == Symbol::of(account.as_bytes()) && r.window_end == end)
                .cloned()
                .expect("row")
        };
        let mine = row(FeatureScope::AccountInstrument, a, 60 * SECOND);
        let c = mine.counters;
        assert_eq!((c.orders, c.cancels, c.fills, c.aggressive_fills), (2, 1, 2, 1));
        assert_eq!((c.bought, c.sold, c.filled_quantity), (50.0, 20.0, 70.0));
        // Two sides of three executions: 2 x (50 + 20 + 10).
        assert_eq!(c.market_quantity, 160.0);
        // Bought 50 at 10.00, sold 20 at 11.00, 30 left marked at the last price 10.50.
        assert!((c.pnl - (-500.0 + 220.0 + 30.0 * 10.5)).abs() < 1e-9);
        // Its buy at 10.00 is the window's low, its sell at 11.00 the high.
        assert_eq!(c.extreme_fills, 2);
        let f = c.features(60.0);
        assert_eq!(f[0], 2.0 / 60.0);
        assert_eq!(f[1], 0.5);
        assert_eq!(f[2], 1.0);
        assert_eq!(f[3], 200.0);
        assert_eq!(f[4], 300.0);
        assert_eq!(f[5], 500.0 + 220.0);
        assert_eq!(f[6], 0.5);
        assert_eq!(f[7], 70.0 / 160.0);
        assert_eq!(f[8], 30.0);
        assert_eq!(f[9], 1.0);
        let instrument = rows
            .iter()
            .find(|r| r.scope == FeatureScope::Instrument && r.window_end == 60 * SECOND)
            .expect("instrument row");
        assert_eq!(instrument.counters.fills, 6);
        assert_eq!(instrument.counters.features(60.0)[7], 1.0);
        let next = row(FeatureScope::AccountInstrument, a, 120 * SECOND);
        assert_eq!(next.counters.orders, 1);
        assert_eq!(rows.iter().filter(|r| r.window_end == 120 * SECOND).count(), 2);
    }

    #[test]
    fn account_rollup_sums_instruments() {
        let mut rollup = AccountRollup::default();
        let mut buffer = Vec::new();
        let counters = |orders| Counters { orders, ..Counters::default() };
        for (instrument, orders) in [("A", 2), ("B", 3)] {
            let row = FeatureRow {
                window_end: 10,
                scope: FeatureScope::AccountInstrument,
                account: Symbol::of(b"X"),
                instrument: Symbol::of(instrument.as_bytes()),
                desk: Symbol::of(b"D"),
                counters: counters(orders),
            };
            rollup.on_record(10, row, &mut test_emitter_rows(10, &mut buffer));
        }
        assert_eq!(rollup.next_timer(), Some(11));
        rollup.on_timer(11, &mut test_emitter_rows(11, &mut buffer));
        assert_eq!(buffer.len(), 1);
        let row = &buffer[0].1;
        assert_eq!(
            (row.scope, row.counters.orders, row.desk, row.window_end),
            (FeatureScope::Account, 5, Symbol::of(b"D"), 10)
        );
        assert_eq!(rollup.next_timer(), None);
        let _ = (OrderTracker::default(), test_emitter(0, &mut Vec::new()));
    }

    fn test_emitter_rows(now: u64, buffer: &mut Vec<(u64, FeatureRow)>) -> Emitter<'_, FeatureRow> {
        Emitter::new(now, buffer)
    }
}
