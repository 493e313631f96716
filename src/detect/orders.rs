//! Order state: what each open order looks like before an event changes it.
//!
//! Cancels and executions often carry only an order id; the order-to-trade ratio needs the
//! cancelled volume and the price collar needs the side of a replaced order. The tracker
//! keeps every open order of the worker's instruments and removes it when it is filled or
//! cancelled, so its size follows the open order book, not the history.

use super::book::OrderBook;
use crate::ingest::{RejectReason, Rejection};
use crate::model::time::SessionCalendar;
use crate::model::{Body, Event, IdMap, Price, Quantity, Side, Symbol};

/// One open order.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct OrderState {
    /// Owning account.
    pub account: Symbol,
    /// Side.
    pub side: Side,
    /// Limit price (`None`: market).
    pub price: Option<Price>,
    /// Quantity still open.
    pub remaining: Quantity,
    /// Quantity filled so far: a replace gives the new total, of which this much is done.
    pub filled: Quantity,
    /// Most the book shows of it at once (a reserve order's peak); `None`: all of it.
    pub displayed: Option<Quantity>,
}

impl OrderState {
    /// What the book shows of the order: what remains, up to its displayed quantity (a venue
    /// refreshes a reserve order's peak from what is left as it fills).
    #[inline]
    pub fn visible(&self) -> Quantity {
        self.displayed.map_or(self.remaining, |shown| shown.min(self.remaining))
    }
}

/// What an event did to its order.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct OrderContext {
    /// The order before the event, if it was known.
    pub before: Option<OrderState>,
    /// Quantity removed from the book by a cancel or replace (old open quantity for a
    /// replace, cancelled quantity for a cancel).
    pub removed: Quantity,
    /// The order after the event, while it stays open (`None`: closed by the event, or never
    /// known).
    pub after: Option<OrderState>,
}

/// How an order left the book.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Closed {
    Filled,
    Cancelled,
}

/// Orders closed most recently, per instrument: enough to tell a cancel that raced a fill
/// ("it was filled") from one for an order never seen, in memory bounded per instrument. Kept
/// per instrument, so what is remembered does not depend on how instruments share workers.
const CLOSED_REMEMBERED: usize = 64;

/// Open orders by (instrument, order id), and optionally each instrument's order book.
#[derive(Default)]
pub struct OrderTracker {
    open: IdMap<(Symbol, Symbol), OrderState>,
    closed: IdMap<Symbol, std::collections::VecDeque<(Symbol, Closed, u64)>>,
    books: Option<IdMap<Symbol, OrderBook>>,
    /// When set, orders expire at the end of their session.
    sessions: Option<SessionCalendar>,
    /// Event time at which the current session ends (0: no event yet).
    session_end: u64,
}

impl OrderTracker {
    /// A tracker that also keeps each instrument's [`OrderBook`].
    pub fn with_books() -> OrderTracker {
        OrderTracker { books: Some(IdMap::default()), ..OrderTracker::default() }
    }

    /// Orders still open when a session of `calendar` ends expire then (day orders; see
    /// [`crate::config::SessionConfig::expire_orders`]): [`OrderTracker::expiry_due`] says
    /// when, and the caller applies a venue cancel of each of [`OrderTracker::expiring`] (the
    /// [`crate::detect::DetectorGroup`] does, so that its detectors see the orders leave). An
    /// event of a later session applied before that drops them all first, so that no order
    /// outlives its session whichever instruments share the tracker.
    pub fn expiring_at_session_end(mut self, calendar: SessionCalendar) -> OrderTracker {
        self.sessions = Some(calendar);
        self
    }

    /// The last instant of the current session, while orders are open and expire with it: when
    /// their expiry is due (see [`OrderTracker::expiring`]).
    pub fn expiry_due(&self) -> Option<u64> {
        self.sessions.as_ref()?;
        (self.session_end != 0 && !self.open.is_empty()).then(|| self.session_end - 1)
    }

    /// The open orders, in a fixed order (instrument, then order id): the ones expiring when
    /// [`OrderTracker::expiry_due`] comes. The caller applies their cancels, so that the
    /// detectors see each order leave.
    pub fn expiring(&self) -> Vec<(Symbol, Symbol, OrderState)> {
        let mut open: Vec<(Symbol, Symbol, OrderState)> = self.open.iter().map(|(&(i, o), s)| (i, o, *s)).collect();
        open.sort_unstable_by_key(|&(i, o, _)| (i, o));
        open
    }

    /// The book of `instrument` after the events applied so far, when books are kept.
    pub fn book(&self, instrument: Symbol) -> Option<&OrderBook> {
        self.books.as_ref()?.get(&instrument)
    }

    /// The book of `instrument` to change directly (a restatement from a venue snapshot), when
    /// books are kept.
    pub fn book_mut(&mut self, instrument: Symbol) -> Option<&mut OrderBook> {
        Some(self.books.as_mut()?.entry(instrument).or_default())
    }

    /// The open order `order` of `instrument`, if it is open.
    pub fn get(&self, instrument: Symbol, order: Symbol) -> Option<&OrderState> {
        self.open.get(&(instrument, order))
    }

    /// Number of open orders.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    /// True when no order is open.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// Every open order expires at once, without a cancel applied for each: what
    /// [`OrderTracker::apply`] does when an event of a later session comes first, and what a
    /// caller does with the orders it did not cancel at [`OrderTracker::expiry_due`].
    #[cold]
    pub fn expire_all(&mut self) {
        self.open.clear();
        if let Some(books) = self.books.as_mut() {
            books.clear();
        }
    }

    fn close(&mut self, instrument: Symbol, order: Symbol, how: Closed, time: u64) {
        self.open.remove(&(instrument, order));
        let recent = self.closed.entry(instrument).or_default();
        if recent.len() == CLOSED_REMEMBERED {
            recent.pop_front();
        }
        recent.push_back((order, how, time));
    }

    /// Why `order` is not open, for a dead letter's detail.
    #[cold]
    fn unknown(&self, instrument: Symbol, order: Symbol, what: &str) -> Rejection {
        let closed = self.closed.get(&instrument).and_then(|recent| recent.iter().rev().find(|(o, ..)| *o == order));
        let mut detail = String::with_capacity(120);
        detail.push_str(what);
        detail.push_str(" of order ");
        detail.push_str(ORDER_NAME);
        match closed {
            Some((_, how, time)) => {
                detail.push_str(match how {
                    Closed::Filled => ", which was filled completely at ",
                    Closed::Cancelled => ", which was cancelled at ",
                });
                crate::ingest::time::write_time(*time, &mut detail);
            }
            None => detail.push_str(
                ", which is not open (not seen in this input, closed long before, or expired at the end of an earlier \
                 session)",
            ),
        }
        Rejection::new(RejectReason::UnknownOrder, detail)
    }

    /// Applies an event. Fails when the event refers to an unknown order and its meaning
    /// depends on that order: a replace, or a cancel that does not say how much it cancels.
    pub fn apply(&mut self, event: &Event) -> Result<OrderContext, Rejection> {
        if event.time >= self.session_end
            && let Some(sessions) = &self.sessions
        {
            let (_, end) = sessions.session_of(event.time);
            if self.session_end != 0 {
                self.expire_all();
            }
            self.session_end = end;
        }
        let context = self.apply_to_orders(event)?;
        if let Some(books) = self.books.as_mut()
            && (context.before.is_some() || context.after.is_some())
        {
            books.entry(event.instrument).or_default().apply(context.before.as_ref(), context.after.as_ref());
        }
        Ok(context)
    }

    fn apply_to_orders(&mut self, event: &Event) -> Result<OrderContext, Rejection> {
        let instrument = event.instrument;
        match event.body {
            Body::NewOrder { order, side, price, quantity, displayed } => {
                let after =
                    OrderState { account: event.account, side, price, remaining: quantity, filled: 0, displayed };
                let before = self.open.insert((instrument, order), after);
                Ok(OrderContext { before, removed: 0, after: Some(after) })
            }
            Body::Replace { order, side, price, quantity, displayed } => {
                match self.open.get_mut(&(instrument, order)) {
                    Some(state) => {
                        let before = *state;
                        state.price = price.or(state.price);
                        state.side = side.unwrap_or(state.side);
                        // A replace restates the order: without a displayed quantity it is shown whole.
                        state.displayed = displayed;
                        // The new total includes what was already filled (FIX OrderQty, the
                        // canonical `replace` quantity): only the rest is open.
                        state.remaining = quantity.saturating_sub(state.filled);
                        let after = *state;
                        if state.remaining == 0 {
                            self.close(instrument, order, Closed::Filled, event.time);
                        }
                        Ok(OrderContext { before: Some(before), removed: before.remaining, after: open(after) })
                    }
                    None => Err(self.unknown(instrument, order, "replace")),
                }
            }
            Body::Cancel { order, quantity, .. } => match self.open.get_mut(&(instrument, order)) {
                Some(state) => {
                    let before = *state;
                    // The volume is what the message says it cancels; the book cannot lose
                    // more than is open.
                    let cancelled = quantity.unwrap_or(state.remaining);
                    state.remaining -= cancelled.min(state.remaining);
                    let after = *state;
                    if state.remaining == 0 {
                        self.close(instrument, order, Closed::Cancelled, event.time);
                    }
                    Ok(OrderContext { before: Some(before), removed: cancelled, after: open(after) })
                }
                None => match quantity {
                    // The order predates the data (a recording that starts mid-session): the
                    // message says all there is to know.
                    Some(q) => Ok(OrderContext { before: None, removed: q, after: None }),
                    None => Err(self.unknown(instrument, order, "cancel without a quantity")),
                },
            },
            Body::Fill { order, quantity, .. } => match self.open.get_mut(&(instrument, order)) {
                Some(state) => {
                    let before = *state;
                    state.remaining = state.remaining.saturating_sub(quantity);
                    state.filled = state.filled.saturating_add(quantity);
                    let after = *state;
                    if state.remaining == 0 {
                        self.close(instrument, order, Closed::Filled, event.time);
                    }
                    Ok(OrderContext { before: Some(before), removed: 0, after: open(after) })
                }
                None => Ok(OrderContext::default()),
            },
            _ => Ok(OrderContext::default()),
        }
    }
}

/// The state, while something of the order is open.
#[inline]
fn open(state: OrderState) -> Option<OrderState> {
    (state.remaining > 0).then_some(state)
}

pub use crate::model::dead_letter::ORDER_NAME;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::event;

    #[test]
    fn tracks_the_lifecycle_and_rejects_what_it_cannot_interpret() {
        let mut t = OrderTracker::default();
        let o = Symbol::of(b"O1");
        let new = Body::NewOrder { order: o, side: Side::Buy, price: Some(Price(100)), quantity: 10, displayed: None };
        assert_eq!(t.apply(&event(1, "X", "A", new)).map(|c| c.before), Ok(None));
        let replace = Body::Replace { order: o, side: None, price: None, quantity: 8, displayed: None };
        assert_eq!(t.apply(&event(2, "X", "A", replace)).map(|c| c.removed), Ok(10));
        let fill =
            Body::Fill { order: o, side: Side::Buy, price: Price(100), quantity: 3, aggressor: None, hidden: false };
        assert!(t.apply(&event(3, "X", "A", fill)).is_ok());
        let cancel = Body::cancel_rest(o);
        assert_eq!(t.apply(&event(4, "X", "A", cancel)).map(|c| c.removed), Ok(5));
        assert!(t.is_empty());
        let rejection = t.apply(&event(5, "X", "A", cancel)).expect_err("closed");
        assert_eq!(rejection.reason, RejectReason::UnknownOrder);
        assert!(rejection.detail.contains("cancelled at"), "{}", rejection.detail);
        let partial = Body::Cancel {
            order: o,
            side: None,
            price: None,
            quantity: Some(4),
            reason: crate::model::CancelReason::Member,
        };
        assert_eq!(t.apply(&event(6, "X", "A", partial)).map(|c| c.removed), Ok(4));
        assert_eq!(t.apply(&event(7, "X", "A", replace)).map_err(|r| r.reason), Err(RejectReason::UnknownOrder));
    }
}

#[cfg(test)]
mod expiry_tests {
    use super::*;
    use crate::testing::event;

    const HOUR: u64 = 3_600_000_000_000;

    #[test]
    fn orders_open_at_the_end_of_a_session_expire_from_the_orders_and_the_book() {
        let new = |order: &str, side, price| Body::NewOrder {
            order: Symbol::of(order.as_bytes()),
            side,
            price: Some(Price(price)),
            quantity: 100,
            displayed: None,
        };
        // New York sessions: 2024-03-01 14:30Z (09:30 local) and the next day's; UTC midnight is
        // not the end of a session there.
        let open = 1_709_303_400_000_000_000;
        let mut t =
            OrderTracker::with_books().expiring_at_session_end(SessionCalendar::new(chrono_tz::America::New_York));
        t.apply(&event(open, "X", "A", new("O1", Side::Buy, 100))).expect("new");
        t.apply(&event(open + HOUR, "Y", "A", new("O2", Side::Sell, 105))).expect("new");
        t.apply(&event(open + 10 * HOUR, "X", "A", new("O3", Side::Buy, 99))).expect("new, 00:30Z, same session");
        assert_eq!(t.len(), 3);
        // The next session's first event, on either instrument: every earlier order is gone.
        let next = open + 24 * HOUR;
        let rejection = t.apply(&event(next, "X", "A", Body::cancel_rest(Symbol::of(b"O1")))).expect_err("expired");
        assert!(rejection.detail.contains("expired at the end of an earlier session"), "{}", rejection.detail);
        assert!(t.is_empty());
        assert!(t.book(Symbol::of(b"X")).is_none_or(OrderBook::is_empty));
        assert!(t.book(Symbol::of(b"Y")).is_none_or(OrderBook::is_empty));
        t.apply(&event(next + 1, "Y", "A", new("O2", Side::Sell, 106))).expect("an id of yesterday, again");
        assert_eq!(
            t.book(Symbol::of(b"Y")).and_then(|b| b.best(Side::Sell)).map(|(p, d)| (p, d.orders)),
            Some((Price(106), 1))
        );
        // Without a calendar orders stay open across sessions.
        let mut kept = OrderTracker::default();
        kept.apply(&event(open, "X", "A", new("O1", Side::Buy, 100))).expect("new");
        kept.apply(&event(next, "X", "A", Body::cancel_rest(Symbol::of(b"O1")))).expect("still open");
    }
}

#[cfg(test)]
mod closed_tests {
    use super::*;
    use crate::testing::event;

    #[test]
    fn a_replace_gives_the_new_total_of_which_the_fills_are_done() {
        let mut t = OrderTracker::default();
        let o = Symbol::of(b"O1");
        let new = Body::NewOrder { order: o, side: Side::Buy, price: None, quantity: 10, displayed: None };
        t.apply(&event(1, "X", "A", new)).expect("new");
        let fill =
            Body::Fill { order: o, side: Side::Buy, price: Price(1), quantity: 4, aggressor: None, hidden: false };
        t.apply(&event(2, "X", "A", fill)).expect("fill");
        let replace = Body::Replace { order: o, side: None, price: None, quantity: 8, displayed: None };
        t.apply(&event(3, "X", "A", replace)).expect("replace");
        // 8 in all, 4 of them filled: 4 open, which a cancel of the rest removes.
        let cancel = Body::cancel_rest(o);
        assert_eq!(t.apply(&event(4, "X", "A", cancel)).map(|c| c.removed), Ok(4));
    }

    #[test]
    fn a_cancel_after_the_fill_says_the_order_was_filled() {
        let mut t = OrderTracker::default();
        let o = Symbol::of(b"F1");
        t.apply(&event(
            1,
            "X",
            "A",
            Body::NewOrder { order: o, side: Side::Buy, price: None, quantity: 100, displayed: None },
        ))
        .expect("new");
        let fill =
            Body::Fill { order: o, side: Side::Buy, price: Price(100), quantity: 100, aggressor: None, hidden: false };
        t.apply(&event(2, "X", "A", fill)).expect("fill");
        let cancel = Body::cancel_rest(o);
        let rejection = t.apply(&event(3, "X", "A", cancel)).expect_err("not open");
        assert!(rejection.detail.contains("filled completely"), "{}", rejection.detail);
        assert!(!rejection.detail.contains("never seen"), "{}", rejection.detail);
        // Another instrument's order of the same id was never seen there.
        let rejection = t.apply(&event(4, "Y", "A", cancel)).expect_err("unknown");
        assert!(rejection.detail.contains("not open"), "{}", rejection.detail);
        // Memory is bounded per instrument.
        for i in 0..1000u64 {
            let order = Symbol::of_integer(i);
            t.apply(&event(
                10 + i,
                "X",
                "A",
                Body::NewOrder { order, side: Side::Buy, price: None, quantity: 1, displayed: None },
            ))
            .expect("new");
            t.apply(&event(10 + i, "X", "A", Body::cancel_rest(order))).expect("cancel");
        }
        assert!(t.closed.values().all(|r| r.len() <= CLOSED_REMEMBERED));
    }
}
