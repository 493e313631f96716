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

use surveil_operators::{Emitter, TimeOrderedProcessor};

use crate::detect::{AlertSink, Detector, Key};
use crate::model::{Body, Event, Price, Report, Side, Symbol};
use crate::reference::ReferenceData;

pub use crate::model::features::*;

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

/// Keeps the counters of every active (account, instrument) pair of an instrument for the
/// current window and emits the rows when the window ends: a [`Detector`] keyed by instrument
/// whose rows go to the side output.
#[derive(Clone)]
pub struct FeatureRecorder {
    width: u64,
    reference: Arc<ReferenceData>,
}

/// The current window of one instrument.
#[derive(Clone, Debug, Default)]
pub struct InstrumentFeatures {
    current_end: Option<u64>,
    pairs: BTreeMap<Symbol, PairWindow>,
    market: InstrumentWindow,
}

impl FeatureRecorder {
    /// A recorder with windows of `width` nanoseconds (aligned to multiples of `width`).
    pub fn new(width: u64, reference: Arc<ReferenceData>) -> FeatureRecorder {
        FeatureRecorder { width: width.max(1), reference }
    }

    fn price(&self, instrument: Symbol, price: Price) -> f64 {
        price.0 as f64 / 10f64.powi(self.reference.price_scale(instrument) as i32)
    }

    fn pair(state: &mut InstrumentFeatures, account: Symbol, desk: Symbol) -> &mut PairWindow {
        let pair = state.pairs.entry(account).or_default();
        if pair.desk == Symbol::NONE {
            pair.desk = desk;
        }
        pair
    }

    #[allow(clippy::too_many_arguments)]
    fn fill(
        &self,
        state: &mut InstrumentFeatures,
        event: &Event,
        account: Symbol,
        side: Side,
        price: f64,
        quantity: f64,
        aggressor: Option<Side>,
    ) {
        let desk = if account == event.account { event.desk } else { self.desk_of(account, event.time) };
        let pair = Self::pair(state, account, desk);
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
        let market = &mut state.market;
        market.market_quantity += quantity;
        if !market.traded {
            (market.low, market.high) = (price, price);
            market.traded = true;
        }
        market.low = market.low.min(price);
        market.high = market.high.max(price);
        market.last = price;
    }

    fn desk_of(&self, account: Symbol, time: u64) -> Symbol {
        self.reference.account(account, time).map(|a| a.desk).unwrap_or(Symbol::NONE)
    }
}

impl Detector for FeatureRecorder {
    type State = InstrumentFeatures;

    fn name(&self) -> &str {
        "features"
    }

    /// The recorder reads no order, but asks for the order state so that, run alone, it
    /// skips the events the order state cannot interpret, as it does in the default job.
    fn needs_order_state(&self) -> bool {
        true
    }

    fn key(&self, event: &Event) -> Option<Key> {
        Some(Key::Instrument(event.instrument))
    }

    fn on_event(&self, state: &mut InstrumentFeatures, event: &Event, out: &mut AlertSink<'_>) {
        if state.current_end.is_none() {
            let end = (event.time / self.width + 1) * self.width;
            state.current_end = Some(end);
            out.timer(end);
        }
        let instrument = event.instrument;
        match event.body {
            Body::NewOrder { quantity, .. } => {
                let c = &mut Self::pair(state, event.account, event.desk).counters;
                c.orders += 1;
                c.order_quantity += quantity as f64;
                c.max_order_quantity = c.max_order_quantity.max(quantity as f64);
            }
            Body::Cancel { .. } => Self::pair(state, event.account, event.desk).counters.cancels += 1,
            Body::Replace { .. } => Self::pair(state, event.account, event.desk).counters.replaces += 1,
            Body::Fill { side, price, quantity, aggressor, .. } => {
                let price = self.price(instrument, price);
                self.fill(state, event, event.account, side, price, quantity as f64, aggressor);
            }
            Body::Trade { buyer, seller, price, quantity, aggressor, .. } => {
                let price = self.price(instrument, price);
                self.fill(state, event, buyer.account, Side::Buy, price, quantity as f64, aggressor);
                self.fill(state, event, seller.account, Side::Sell, price, quantity as f64, aggressor);
            }
            _ => {}
        }
    }

    /// Emits the rows of the window ending at `end` and clears it.
    fn on_timer(&self, state: &mut InstrumentFeatures, end: u64, out: &mut AlertSink<'_>) {
        let instrument = out.key().symbol();
        state.current_end = None;
        let market = std::mem::take(&mut state.market);
        if state.pairs.is_empty() {
            return; // quotes and status changes only: no row
        }
        let mut total = Counters::default();
        for (account, pair) in std::mem::take(&mut state.pairs) {
            let mut counters = pair.counters;
            if market.traded {
                counters.market_quantity = market.market_quantity;
                counters.pnl += (counters.bought - counters.sold) * market.last;
                counters.extreme_fills = if market.low == market.high {
                    counters.fills
                } else {
                    pair.lowest.filter(|(p, _)| *p == market.low).map_or(0, |(_, n)| n)
                        + pair.highest.filter(|(p, _)| *p == market.high).map_or(0, |(_, n)| n)
                };
            }
            total.merge(&counters);
            if account != Symbol::NONE {
                out.side(Report::Features(Box::new(FeatureRow {
                    window_end: end,
                    scope: FeatureScope::AccountInstrument,
                    account,
                    instrument,
                    desk: pair.desk,
                    counters,
                })));
            }
        }
        // Each execution has two sides in the market total; the instrument's own share is 1.
        total.market_quantity = total.filled_quantity;
        out.side(Report::Features(Box::new(FeatureRow {
            window_end: end,
            scope: FeatureScope::Instrument,
            account: Symbol::NONE,
            instrument,
            desk: Symbol::NONE,
            counters: total,
        })));
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

/// Extension trait: the feature store as an operator.
pub trait FeatureStoreExt<'scope> {
    /// Feature rows of every window of `window_ns` nanoseconds: one per (account, instrument)
    /// pair and per instrument active in the window, and one per account summing its
    /// instruments ([`with_account_rows`]).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use surveil::features::FeatureStoreExt;
    /// use surveil::model::{FeatureScope, Side};
    /// use surveil::reference::ReferenceData;
    /// use surveil::testing::new_order;
    /// use timely::dataflow::operators::capture::Capture;
    /// use timely::dataflow::operators::ToStream;
    ///
    /// let orders = vec![new_order("ACME", "O1", "ACC1", Side::Buy, "10", 5).at_ms(1)];
    /// let rows = timely::example(move |scope| {
    ///     orders.to_stream(scope).feature_rows(60_000_000_000, &Arc::new(ReferenceData::new(4))).capture()
    /// });
    /// let mut scopes: Vec<_> = surveil::testing::captured(rows).into_iter().map(|r| r.scope).collect();
    /// scopes.sort();
    /// assert_eq!(scopes, [FeatureScope::AccountInstrument, FeatureScope::Account, FeatureScope::Instrument]);
    /// ```
    fn feature_rows(
        self,
        window_ns: u64,
        reference: &Arc<ReferenceData>,
    ) -> timely::dataflow::Stream<'scope, u64, Vec<FeatureRow>>;
}

impl<'scope> FeatureStoreExt<'scope> for timely::dataflow::Stream<'scope, u64, Vec<Event>> {
    fn feature_rows(
        self,
        window_ns: u64,
        reference: &Arc<ReferenceData>,
    ) -> timely::dataflow::Stream<'scope, u64, Vec<FeatureRow>> {
        use crate::detect::Detect;
        use timely::dataflow::operators::vec::Map;
        let side = self.detect_all(FeatureRecorder::new(window_ns, reference.clone())).side;
        with_account_rows(side.flat_map(|report| match report {
            Report::Features(row) => Some(*row),
            _ => None,
        }))
    }
}

/// Adds to (account, instrument) rows the account rows that sum them per window: rows routed
/// by account, summed in `(window end, key)` order, so the sums are the same on any number of
/// workers.
pub fn with_account_rows<'scope>(
    rows: timely::dataflow::Stream<'scope, u64, Vec<FeatureRow>>,
) -> timely::dataflow::Stream<'scope, u64, Vec<FeatureRow>> {
    use surveil_operators::ProcessInTimeOrder;
    use timely::dataflow::operators::Concat;
    use timely::dataflow::operators::vec::Filter;
    let account_rows = rows.clone().filter(|r| r.scope == FeatureScope::AccountInstrument).process_in_time_order(
        "AccountFeatures",
        |r: &FeatureRow| Key::Account(r.account).route(),
        FeatureRow::order_key,
        AccountRollup::default(),
    );
    rows.concat(account_rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Party;
    use crate::testing::{event, outputs_on};

    const SECOND: u64 = 1_000_000_000;

    fn rows(events: Vec<Event>) -> Vec<FeatureRow> {
        let reference = Arc::new(ReferenceData::new(2));
        let recorder = FeatureRecorder::new(60 * SECOND, reference.clone());
        outputs_on(1, recorder, events)
            .1
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
            Body::NewOrder {
                order: Symbol::of(id.as_bytes()),
                side,
                price: Some(Price(1000)),
                quantity,
                displayed: None,
            },
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
                linked: None,
            },
        )
    }

    #[test]
    fn counters_and_derived_features_of_a_window() {
        let a = "ACC1";
        let events = vec![
            order(SECOND, a, "o1", Side::Buy, 100),
            order(2 * SECOND, a, "o2", Side::Buy, 300),
            event(3 * SECOND, "XYZ", a, Body::cancel_rest(Symbol::of(b"o2"))),
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
    }

    fn test_emitter_rows(now: u64, buffer: &mut Vec<(u64, FeatureRow)>) -> Emitter<'_, FeatureRow> {
        Emitter::new(now, buffer)
    }
}
