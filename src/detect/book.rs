//! The order book of one instrument: resting visible quantity per price level, built from the
//! order events, for rules that judge an order against the book around it (spoofing,
//! layering).
//!
//! The book is kept by the [`crate::detect::OrderTracker`] beside the open orders, from each
//! order's state before and after every event, so it follows the same lifecycle rules (a
//! replace gives the new total of which the fills are done; a cancel removes what is open).
//! Market orders do not rest and are not in it; of a reserve (iceberg) order only its displayed
//! peak is.

use std::collections::BTreeMap;

use super::orders::OrderState;
use crate::model::{Price, Quantity, Side};

/// Resting visible quantity at one price.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Depth {
    /// Quantity resting at the price.
    pub quantity: Quantity,
    /// Number of orders resting at the price (orders the book learned of from a restatement
    /// are not counted).
    pub orders: u32,
}

/// Price levels of both sides of one instrument.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OrderBook {
    bids: BTreeMap<Price, Depth>,
    asks: BTreeMap<Price, Depth>,
}

impl OrderBook {
    /// An empty book.
    pub fn new() -> OrderBook {
        OrderBook::default()
    }

    fn side(&self, side: Side) -> &BTreeMap<Price, Depth> {
        match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        }
    }

    fn side_mut(&mut self, side: Side) -> &mut BTreeMap<Price, Depth> {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }

    /// The best level of `side` (highest bid, lowest ask) and its depth.
    pub fn best(&self, side: Side) -> Option<(Price, Depth)> {
        let levels = self.side(side);
        let best = match side {
            Side::Buy => levels.last_key_value(),
            Side::Sell => levels.first_key_value(),
        };
        best.map(|(p, d)| (*p, *d))
    }

    /// The mid price (in price units), when both sides hold orders: the reference for how far
    /// the market moved while an order rested.
    pub fn mid(&self) -> Option<f64> {
        let (bid, ask) = (self.best(Side::Buy)?.0, self.best(Side::Sell)?.0);
        Some((bid.0 as f64 + ask.0 as f64) / 2.0)
    }

    /// How far the mid moved from `from` to `to`, in basis points, signed the way orders on
    /// `side` push it: down for sell orders, up for buy orders.
    pub fn move_bps(from: f64, to: f64, side: Side) -> Option<f64> {
        if from <= 0.0 {
            return None;
        }
        let moved = (to - from) / from * 10_000.0;
        let signed = if side == Side::Sell { -moved } else { moved };
        // No move reads 0, not -0.
        Some(if signed == 0.0 { 0.0 } else { signed })
    }

    /// The levels of `side`, best first.
    pub fn levels(&self, side: Side) -> Box<dyn Iterator<Item = (Price, Depth)> + '_> {
        let levels = self.side(side).iter().map(|(p, d)| (*p, *d));
        match side {
            Side::Buy => Box::new(levels.rev()),
            Side::Sell => Box::new(levels),
        }
    }

    /// Resting quantity at `price` on `side`.
    pub fn depth_at(&self, side: Side, price: Price) -> Quantity {
        self.side(side).get(&price).map_or(0, |d| d.quantity)
    }

    /// How many occupied levels of `side` are strictly better than `price` (0: `price` is at or
    /// better than the touch).
    pub fn levels_ahead(&self, side: Side, price: Price) -> usize {
        let levels = self.side(side);
        match side {
            Side::Buy => levels.range((std::ops::Bound::Excluded(price), std::ops::Bound::Unbounded)).count(),
            Side::Sell => levels.range(..price).count(),
        }
    }

    /// [`OrderBook::levels_ahead`], counting no further than `cap`: what a rule comparing with a
    /// small limit needs, without walking a deep book.
    pub fn levels_ahead_up_to(&self, side: Side, price: Price, cap: usize) -> usize {
        let levels = self.side(side);
        match side {
            Side::Buy => levels.range((std::ops::Bound::Excluded(price), std::ops::Bound::Unbounded)).take(cap).count(),
            Side::Sell => levels.range(..price).take(cap).count(),
        }
    }

    /// Resting quantity of the best `count` levels of `side`.
    pub fn visible_depth(&self, side: Side, count: usize) -> Quantity {
        self.levels(side).take(count).map(|(_, d)| d.quantity).sum()
    }

    /// Adds `quantity` resting at `price` on `side` (one more order there when `new_order`).
    pub fn add(&mut self, side: Side, price: Price, quantity: Quantity, new_order: bool) {
        if quantity == 0 {
            return;
        }
        let depth = self.side_mut(side).entry(price).or_default();
        depth.quantity = depth.quantity.saturating_add(quantity);
        depth.orders += u32::from(new_order);
    }

    /// Removes `quantity` resting at `price` on `side` (one order fewer there when
    /// `order_gone`); a level left empty goes. The book never holds less than nothing: a removal
    /// larger than the level empties it.
    pub fn remove(&mut self, side: Side, price: Price, quantity: Quantity, order_gone: bool) {
        let levels = self.side_mut(side);
        if let Some(depth) = levels.get_mut(&price) {
            depth.quantity = depth.quantity.saturating_sub(quantity);
            depth.orders = depth.orders.saturating_sub(u32::from(order_gone));
            if depth.quantity == 0 {
                levels.remove(&price);
            }
        }
    }

    /// Moves an order from its state before an event to its state after (either may be `None`:
    /// not yet open, or closed).
    pub fn apply(&mut self, before: Option<&OrderState>, after: Option<&OrderState>) {
        // What the book shows: a reserve order's peak, not its hidden rest; an order that
        // shows nothing is not on the book.
        let resting =
            |s: Option<&OrderState>| s.and_then(|s| s.price.map(|p| (s.side, p, s.visible()))).filter(|r| r.2 > 0);
        match (resting(before), resting(after)) {
            (Some(b), Some(a)) if (b.0, b.1) == (a.0, a.1) => {
                if a.2 >= b.2 {
                    self.add(a.0, a.1, a.2 - b.2, false);
                } else {
                    self.remove(a.0, a.1, b.2 - a.2, false);
                }
            }
            (b, a) => {
                if let Some((side, price, quantity)) = b {
                    self.remove(side, price, quantity, true);
                }
                if let Some((side, price, quantity)) = a {
                    self.add(side, price, quantity, true);
                }
            }
        }
    }

    /// Makes `price` the best level of `side` with `quantity` resting, as a venue's snapshot
    /// says: better levels go, and the level's quantity is set. For books that start from a
    /// snapshot, or feeds that only carry the messages of the top levels, where orders came
    /// and went unseen.
    pub fn restate_best(&mut self, side: Side, price: Price, quantity: Quantity) {
        let levels = self.side_mut(side);
        match side {
            Side::Buy => drop(levels.split_off(&Price(price.0.saturating_add(1)))),
            Side::Sell => {
                let rest = levels.split_off(&price);
                *levels = rest;
            }
        }
        if quantity == 0 {
            levels.remove(&price);
        } else {
            levels.entry(price).or_default().quantity = quantity;
        }
    }

    /// True when no order rests on either side.
    pub fn is_empty(&self) -> bool {
        self.bids.is_empty() && self.asks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Symbol;

    fn order(side: Side, price: i64, remaining: Quantity) -> OrderState {
        OrderState { account: Symbol::NONE, side, price: Some(Price(price)), remaining, filled: 0, displayed: None }
    }

    #[test]
    fn the_mid_and_its_move_the_way_of_a_side() {
        let mut book = OrderBook::new();
        assert_eq!(book.mid(), None, "one side empty");
        book.apply(None, Some(&order(Side::Buy, 1_000, 10)));
        assert_eq!(book.mid(), None);
        book.apply(None, Some(&order(Side::Sell, 1_002, 10)));
        assert_eq!(book.mid(), Some(1_001.0));
        // Down 10 bp: the way sell orders push, against buy orders.
        let down = 1_001.0 * (1.0 - 0.001);
        let sell = OrderBook::move_bps(1_001.0, down, Side::Sell).expect("a move");
        assert!((sell - 10.0).abs() < 1e-9, "{sell}");
        assert_eq!(OrderBook::move_bps(1_001.0, down, Side::Buy).map(|m| m.round()), Some(-10.0));
        assert_eq!(OrderBook::move_bps(1_001.0, 1_001.0, Side::Sell).map(f64::to_bits), Some(0.0f64.to_bits()));
        assert_eq!(OrderBook::move_bps(0.0, 1.0, Side::Buy), None);
    }

    #[test]
    fn follows_orders_across_levels_and_sides() {
        let mut book = OrderBook::new();
        let a = order(Side::Buy, 100, 10);
        let b = order(Side::Buy, 101, 5);
        let c = order(Side::Sell, 103, 7);
        book.apply(None, Some(&a));
        book.apply(None, Some(&b));
        book.apply(None, Some(&c));
        assert_eq!(book.best(Side::Buy), Some((Price(101), Depth { quantity: 5, orders: 1 })));
        assert_eq!(book.best(Side::Sell), Some((Price(103), Depth { quantity: 7, orders: 1 })));
        assert_eq!(book.levels_ahead(Side::Buy, Price(100)), 1);
        assert_eq!(book.levels_ahead(Side::Sell, Price(104)), 1);
        assert_eq!(book.levels_ahead_up_to(Side::Sell, Price(104), 0), 0);
        assert_eq!(book.levels_ahead_up_to(Side::Buy, Price(99), 5), 2);
        assert_eq!(book.visible_depth(Side::Buy, 2), 15);
        // Partly filled, then moved to another price, then cancelled.
        let b2 = order(Side::Buy, 101, 2);
        book.apply(Some(&b), Some(&b2));
        assert_eq!(book.depth_at(Side::Buy, Price(101)), 2);
        let b3 = order(Side::Buy, 100, 2);
        book.apply(Some(&b2), Some(&b3));
        assert_eq!(book.best(Side::Buy), Some((Price(100), Depth { quantity: 12, orders: 2 })));
        book.apply(Some(&b3), None);
        book.apply(Some(&a), None);
        // A market order never rests.
        book.apply(None, Some(&OrderState { price: None, ..a }));
        assert_eq!(book.best(Side::Buy), None);
        // A restatement drops better levels and sets the quantity.
        book.apply(None, Some(&order(Side::Sell, 102, 3)));
        book.restate_best(Side::Sell, Price(103), 9);
        assert_eq!(book.best(Side::Sell), Some((Price(103), Depth { quantity: 9, orders: 1 })));
        book.apply(None, Some(&order(Side::Buy, 99, 3)));
        book.apply(None, Some(&order(Side::Buy, 98, 3)));
        book.restate_best(Side::Buy, Price(98), 4);
        assert_eq!(book.best(Side::Buy), Some((Price(98), Depth { quantity: 4, orders: 1 })));
        book.restate_best(Side::Buy, Price(98), 0);
        book.restate_best(Side::Sell, Price(110), 0);
        assert!(book.is_empty());
    }

    #[test]
    fn a_reserve_order_shows_its_peak_and_a_hidden_one_nothing() {
        let mut book = OrderBook::new();
        let iceberg = OrderState { displayed: Some(100), ..order(Side::Sell, 105, 1_000) };
        book.apply(None, Some(&iceberg));
        assert_eq!(book.best(Side::Sell), Some((Price(105), Depth { quantity: 100, orders: 1 })));
        // A fill of 60 leaves 940, of which the venue shows a fresh peak of 100.
        let filled = OrderState { remaining: 940, filled: 60, ..iceberg };
        book.apply(Some(&iceberg), Some(&filled));
        assert_eq!(book.depth_at(Side::Sell, Price(105)), 100);
        // The last 40 show as 40.
        let last = OrderState { remaining: 40, filled: 960, ..iceberg };
        book.apply(Some(&filled), Some(&last));
        assert_eq!(book.depth_at(Side::Sell, Price(105)), 40);
        book.apply(Some(&last), None);
        assert!(book.is_empty());
        // Fully hidden: not on the book, and its cancel takes nothing off it.
        let hidden = OrderState { displayed: Some(0), ..order(Side::Buy, 100, 500) };
        book.apply(None, Some(&order(Side::Buy, 100, 200)));
        book.apply(None, Some(&hidden));
        assert_eq!(book.best(Side::Buy), Some((Price(100), Depth { quantity: 200, orders: 1 })));
        book.apply(Some(&hidden), None);
        assert_eq!(book.best(Side::Buy), Some((Price(100), Depth { quantity: 200, orders: 1 })));
    }
}
