//! Quote stuffing and message rates: flooding the venue with orders and cancels to slow others
//! down or to obscure the book (CME Rule 575 "disruptive practices"; MAR Annex II §I 4(a) and
//! (b); the maximum message limits a firm must set under MiFID II RTS 6 Art. 15).
//!
//! Per account and instrument, in event time:
//!
//! * **Book changes**: the best bid or the best offer (its price or the quantity resting there)
//!   changed by the account's own messages (its new orders, replaces and cancels; an execution
//!   is the aggressor's, and a fill event does not say who that was; a marketable order that
//!   crosses the book until its fills come changes nothing) more than `max_book_changes` times
//!   within `burst_window` on one side. KX's published detector: more
//!   than 60 changes to the best bid in 5 seconds (their real example had 60 in 0.12 s); bursts
//!   "usually last less than 10 seconds". A quote update at the touch is a change whether it
//!   moves the price or only the size: flickering a round lot on a one-tick market floods the
//!   feed as much as flickering a new price.
//! * **Message rate**: more than `max_messages` messages (new, replace, cancel by the member)
//!   within `message_window`: the RTS 6 maximum message limit, which each firm or venue sets.
//! * **Fishing orders**, orders the member cancelled within `fishing_lifetime` (KX: 1 ms) of
//!   their entry, are counted through the burst and weigh in the score; alone they prove
//!   nothing (real flow is full of fleeting orders).
//!
//! A burst starts when either limit is crossed and ends when a whole `burst_window` has passed
//! without crossing one; it is reported once, when it ends, with its peak counts, its totals
//! and its first messages that changed the book. Messages without an account (anonymous
//! market data) are attributed to nobody.

use std::collections::VecDeque;

use timely::dataflow::Stream;

use crate::config::{QuoteStuffingConfig, nanos_of};
use crate::detect::{AlertSink, Depth, Detect, Detector, Key};
use crate::model::alert::rules;
use crate::model::{Alert, Body, CancelReason, Event, IdMap, Price, Severity, Side, Symbol, Timestamp};

/// Messages that changed the book kept as an alert's evidence.
const MAX_EVIDENCE: usize = 20;

/// The quote-stuffing and message-rate rule.
#[derive(Clone)]
pub struct QuoteStuffing {
    config: QuoteStuffingConfig,
}

impl QuoteStuffing {
    /// Builds the rule.
    pub fn new(config: &QuoteStuffingConfig) -> QuoteStuffing {
        QuoteStuffing { config: *config }
    }
}

/// What one account did on an instrument lately.
#[derive(Default)]
struct Activity {
    /// Times of its messages that changed the best bid (0) and the best offer (1), within the
    /// burst window (the messages themselves are in `recent`).
    changes: [VecDeque<Timestamp>; 2],
    /// Times of its messages within the message window.
    messages: VecDeque<Timestamp>,
    /// Its messages within the burst window, so that a burst's totals start where it did.
    recent: VecDeque<Recent>,
    /// Time of its last message: when a whole window has passed since, every queued time has
    /// left the window, and the queues are emptied without reading their (long cold) entries.
    last: Timestamp,
    burst: Option<Burst>,
}

/// One message of an account.
#[derive(Clone, Copy)]
struct Recent {
    event: Event,
    new_order: bool,
    fishing: bool,
    /// Sides of the book whose best level it changed: bit 0 the bid, bit 1 the offer.
    sides: u8,
}

impl Activity {
    fn idle(&self) -> bool {
        self.burst.is_none() && self.recent.is_empty()
    }

    /// An idle activity, emptied for reuse with the room its queues had grown to.
    fn emptied(mut self) -> Activity {
        self.changes.iter_mut().for_each(VecDeque::clear);
        self.messages.clear();
        self.recent.clear();
        self.last = 0;
        self.burst = None;
        self
    }

    /// Empties the queues that a message at `now` finds wholly out of their windows, before
    /// it is queued: the same as [`Activity::forget_before`] would leave, without reading them.
    fn forget_all_if_quiet(&mut self, now: Timestamp, window: u64, message_window: u64) {
        let quiet = now.saturating_sub(self.last);
        if quiet >= window {
            self.recent.clear();
            self.changes.iter_mut().for_each(VecDeque::clear);
        }
        if quiet >= message_window {
            self.messages.clear();
        }
        self.last = now;
    }

    fn forget_before(&mut self, now: Timestamp, window: u64, message_window: u64) {
        while self.messages.front().is_some_and(|t| now.saturating_sub(*t) >= message_window) {
            self.messages.pop_front();
        }
        while self.recent.front().is_some_and(|r| now.saturating_sub(r.event.time) >= window) {
            self.recent.pop_front();
        }
        for changes in &mut self.changes {
            while changes.front().is_some_and(|t| now.saturating_sub(*t) >= window) {
                changes.pop_front();
            }
        }
    }
}

/// A burst of an account, from the first crossing of a limit until a quiet burst window.
struct Burst {
    start: Timestamp,
    last_breach: Timestamp,
    /// Most book changes on one side within a burst window, and which side.
    peak_changes: usize,
    peak_side: Side,
    /// Most messages within a message window.
    peak_messages: usize,
    /// Totals since the start.
    messages: u64,
    changes: u64,
    new_orders: u64,
    fishing: u64,
    evidence: Vec<Event>,
}

impl Burst {
    fn count(&mut self, message: &Recent) {
        self.messages += 1;
        self.changes += u64::from(message.sides.count_ones());
        self.new_orders += u64::from(message.new_order);
        self.fishing += u64::from(message.fishing);
    }
}

/// What the rule remembers of an instrument.
#[derive(Default)]
pub struct QuoteStuffingState {
    /// Best bid and offer (price and depth) after the last event.
    best: [Option<(Price, Depth)>; 2],
    accounts: IdMap<Symbol, Activity>,
    /// Entry times of orders entered within the fishing lifetime, oldest first, and by order.
    entries: VecDeque<(Timestamp, Symbol)>,
    entered: IdMap<Symbol, Timestamp>,
    /// When idle accounts were last swept out.
    swept: Timestamp,
    /// Activities of accounts swept out, kept for the next accounts that come: an account
    /// comes and goes many times a day, and growing its queues again each time cost more than
    /// the rule's own counting.
    spare: Vec<Activity>,
}

/// Most emptied activities kept for reuse per instrument.
const MAX_SPARE: usize = 64;

/// Idle accounts are swept out every this many burst windows: often enough to keep memory to
/// the accounts of the last minute or so, rarely enough that sweeping costs little.
const SWEEP_EVERY_WINDOWS: u64 = 12;

impl Detector for QuoteStuffing {
    type State = QuoteStuffingState;

    fn name(&self) -> &str {
        rules::QUOTE_STUFFING
    }

    fn key(&self, event: &Event) -> Option<Key> {
        matches!(event.body, Body::NewOrder { .. } | Body::Replace { .. } | Body::Cancel { .. } | Body::Fill { .. })
            .then_some(Key::Instrument(event.instrument))
    }

    fn needs_book(&self) -> bool {
        true
    }

    fn on_event(&self, state: &mut QuoteStuffingState, event: &Event, out: &mut AlertSink<'_>) {
        let now = event.time;
        let lifetime = nanos_of(self.config.fishing_lifetime);
        while let Some(&(t, order)) = state.entries.front()
            && now.saturating_sub(t) > lifetime
        {
            state.entries.pop_front();
            if state.entered.get(&order) == Some(&t) {
                state.entered.remove(&order);
            }
        }
        let best = out.book().map_or([None, None], |book| [book.best(Side::Buy), book.best(Side::Sell)]);
        // A marketable order rests at its limit, crossing the book, until its fills come: it
        // changes nothing that anyone quotes, and the fills put the same levels back. (A book
        // crossed for other reasons, a locked market or one firm's own flow, still counts.)
        let crossed = matches!((best[0], best[1]), (Some((bid, _)), Some((ask, _))) if bid >= ask);
        let marketable = crossed && matches!(event.body, Body::NewOrder { .. } | Body::Replace { .. });
        let changed = if marketable { [false, false] } else { [best[0] != state.best[0], best[1] != state.best[1]] };
        if !marketable {
            state.best = best;
        }
        let message = match event.body {
            Body::NewOrder { order, .. } => {
                state.entries.push_back((now, order));
                state.entered.insert(order, now);
                Some((true, false))
            }
            Body::Replace { .. } => Some((false, false)),
            Body::Cancel { order, reason: CancelReason::Member, .. } => {
                let gone = out.order().is_some_and(|c| c.after.is_none() && c.before.is_some());
                let fishing = gone && state.entered.get(&order).is_some_and(|t| now.saturating_sub(*t) <= lifetime);
                Some((false, fishing))
            }
            _ => None,
        };
        let Some((new_order, fishing)) = message else { return };
        if event.account.is_none() {
            return;
        }
        let (window, message_window) = (nanos_of(self.config.burst_window), nanos_of(self.config.message_window));
        let spare = &mut state.spare;
        let activity = state.accounts.entry(event.account).or_insert_with(|| spare.pop().unwrap_or_default());
        let recent =
            Recent { event: *event, new_order, fishing, sides: u8::from(changed[0]) | u8::from(changed[1]) << 1 };
        activity.forget_all_if_quiet(now, window, message_window);
        activity.messages.push_back(now);
        activity.recent.push_back(recent);
        for (i, changes) in activity.changes.iter_mut().enumerate() {
            if changed[i] {
                changes.push_back(now);
            }
        }
        activity.forget_before(now, window, message_window);
        let (side, peak) = if activity.changes[0].len() >= activity.changes[1].len() {
            (Side::Buy, activity.changes[0].len())
        } else {
            (Side::Sell, activity.changes[1].len())
        };
        let breach =
            peak > self.config.max_book_changes as usize || activity.messages.len() > self.config.max_messages as usize;
        if breach && activity.burst.is_none() {
            // The burst's evidence starts with the changes that crossed the limit (a message
            // that changed both sides once), or its messages when the rate crossed it.
            let by_changes = peak > self.config.max_book_changes as usize;
            let mut evidence: Vec<Event> =
                activity.recent.iter().filter(|r| !by_changes || r.sides != 0).map(|r| r.event).collect();
            evidence.sort_by_key(Event::order_key);
            evidence.dedup_by_key(|e| e.order_key());
            evidence.truncate(MAX_EVIDENCE);
            // Its totals start with the messages of the burst window that led to it; the
            // current one is counted below.
            let earlier = activity.recent.iter().take(activity.recent.len().saturating_sub(1));
            let mut burst = Burst {
                start: activity.recent.front().map_or(now, |r| r.event.time),
                last_breach: now,
                peak_changes: 0,
                peak_side: side,
                peak_messages: 0,
                messages: 0,
                changes: 0,
                new_orders: 0,
                fishing: 0,
                evidence,
            };
            for r in earlier {
                burst.count(r);
            }
            activity.burst = Some(burst);
            out.timer(now.saturating_add(window));
        }
        if let Some(burst) = activity.burst.as_mut() {
            if breach {
                burst.last_breach = now;
            }
            if peak > burst.peak_changes {
                (burst.peak_changes, burst.peak_side) = (peak, side);
            }
            burst.peak_messages = burst.peak_messages.max(activity.messages.len());
            burst.count(&recent);
            let by_changes = burst.peak_changes > self.config.max_book_changes as usize;
            let changes_shown = by_changes && recent.sides != 0;
            let messages_shown = !by_changes;
            if burst.evidence.len() < MAX_EVIDENCE
                && (changes_shown || messages_shown)
                && !burst.evidence.contains(event)
            {
                burst.evidence.push(*event);
            }
        }
        // Accounts that went quiet keep nothing. Swept every few burst windows, not per event
        // (what an account keeps is trimmed to the windows whenever it is used).
        if now.saturating_sub(state.swept) > window.saturating_mul(SWEEP_EVERY_WINDOWS) {
            state.swept = now;
            let quiet = state.accounts.extract_if(|_, a| {
                a.forget_before(now, window, message_window);
                a.idle()
            });
            for (_, activity) in quiet {
                if state.spare.len() < MAX_SPARE {
                    state.spare.push(activity.emptied());
                }
            }
        }
    }

    fn on_timer(&self, state: &mut QuoteStuffingState, time: Timestamp, out: &mut AlertSink<'_>) {
        let window = nanos_of(self.config.burst_window);
        let mut ended: Vec<(Symbol, Burst)> = Vec::new();
        for (account, activity) in state.accounts.iter_mut() {
            let Some(burst) = &activity.burst else { continue };
            let due = burst.last_breach.saturating_add(window);
            if due <= time {
                if let Some(burst) = activity.burst.take() {
                    ended.push((*account, burst));
                }
            } else if due > time {
                out.timer(due);
            }
        }
        // The same order whatever the map's layout.
        ended.sort_by_key(|(account, burst)| (burst.start, account.0));
        for (account, burst) in ended {
            self.alert(account, &burst, out);
        }
    }
}

impl QuoteStuffing {
    fn alert(&self, account: Symbol, burst: &Burst, out: &mut AlertSink<'_>) {
        let config = &self.config;
        let changes = (burst.peak_changes as f64 / (2.0 * f64::from(config.max_book_changes.max(1)))).clamp(0.0, 1.0);
        let messages = (burst.peak_messages as f64 / (2.0 * f64::from(config.max_messages.max(1)))).clamp(0.0, 1.0);
        let fishing_share = if burst.new_orders == 0 { 0.0 } else { burst.fishing as f64 / burst.new_orders as f64 };
        let score = 100.0 * (0.5 * changes + 0.3 * messages + 0.2 * fishing_share.clamp(0.0, 1.0));
        let severity = Severity::from_score(score, 40.0, 70.0);
        let seconds = burst.last_breach.saturating_sub(burst.start) as f64 / 1e9;
        let book_side = if burst.peak_side == Side::Buy { "bid" } else { "offer" };
        let changes_text = if burst.peak_changes == 0 {
            "no change of the best bid or offer".to_string()
        } else {
            format!(
                "up to {} changes of the best {book_side} within {} (limit {})",
                burst.peak_changes,
                humantime::format_duration(config.burst_window),
                config.max_book_changes
            )
        };
        let mut alert = out.alert_now();
        alert
            .account(account)
            .severity(severity)
            .score(score)
            .explain(format!(
                "{} messages in {seconds:.2} s: {changes_text}, up to {} messages within {} (limit {}), {} of {} new orders cancelled within {}",
                burst.messages,
                burst.peak_messages,
                humantime::format_duration(config.message_window),
                config.max_messages,
                burst.fishing,
                burst.new_orders,
                humantime::format_duration(config.fishing_lifetime),
            ))
            .param("messages", burst.messages)
            .param("book_changes", burst.changes)
            .param("peak_book_changes", burst.peak_changes)
            .param("peak_side", burst.peak_side.as_str())
            .param("max_book_changes", u64::from(config.max_book_changes))
            .param("burst_window_s", config.burst_window.as_secs_f64())
            .param("peak_messages", burst.peak_messages)
            .param("max_messages", u64::from(config.max_messages))
            .param("message_window_s", config.message_window.as_secs_f64())
            .param("new_orders", burst.new_orders)
            .param("fishing_orders", burst.fishing)
            .param("fishing_share", fishing_share)
            .param("burst_s", seconds);
        for e in &burst.evidence {
            alert.evidence(e);
        }
        alert.discriminator(burst.start);
    }
}

/// Extension trait: the quote-stuffing rule as an operator on a stream of events.
pub trait QuoteStuffingExt<'scope> {
    /// Quote-stuffing and message-rate alerts: see the [module documentation](self).
    ///
    /// ```
    /// use surveil::config::QuoteStuffingConfig;
    /// use surveil::rules::QuoteStuffingExt;
    /// use timely::dataflow::operators::capture::Capture;
    /// use timely::dataflow::operators::ToStream;
    ///
    /// let alerts = timely::example(move |scope| {
    ///     Vec::<surveil::model::Event>::new().to_stream(scope).quote_stuffing(&QuoteStuffingConfig::default()).capture()
    /// });
    /// assert!(surveil::testing::captured(alerts).is_empty());
    /// ```
    fn quote_stuffing(self, config: &QuoteStuffingConfig) -> Stream<'scope, u64, Vec<Alert>>;
}

impl<'scope> QuoteStuffingExt<'scope> for Stream<'scope, u64, Vec<Event>> {
    fn quote_stuffing(self, config: &QuoteStuffingConfig) -> Stream<'scope, u64, Vec<Alert>> {
        self.detect(QuoteStuffing::new(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{cancel, new_order, run, run_on};

    const MS: u64 = 1_000_000;

    fn count(alert: &Alert, name: &str) -> Option<u64> {
        alert.parameters.iter().find(|p| p.name == name).and_then(|p| match p.value {
            crate::model::alert::Value::Count(n) => Some(n),
            _ => None,
        })
    }

    /// A book of another account (bid 10.00, ask 10.10), then `cycles` cycles of `account`
    /// every `gap` ms: a bid at 10.01 (a new best bid) cancelled `life` us later.
    fn stuffing(account: &str, cycles: u64, gap: u64, life: u64) -> Vec<Event> {
        let mut events = vec![
            new_order("ACME", "B0", "MM", Side::Buy, "10.00", 500).at(0),
            new_order("ACME", "A0", "MM", Side::Sell, "10.10", 500).at(1),
        ];
        for c in 0..cycles {
            let t = MS + c * gap * MS;
            let id = format!("{account}-{c}");
            events.push(new_order("ACME", &id, account, Side::Buy, "10.01", 100).at(t));
            events.push(cancel("ACME", &id, account).at(t + life * 1_000));
        }
        events.sort_by_key(|e| e.time);
        for (i, e) in events.iter_mut().enumerate() {
            e.origin = crate::model::Origin::new(0, i as u64);
        }
        events
    }

    #[test]
    fn emptying_a_quiet_accounts_queues_keeps_what_forgetting_entry_by_entry_keeps() {
        let (window, message_window) = (5 * MS, MS);
        let (mut fast, mut slow) = (Activity::default(), Activity::default());
        let template = new_order("ACME", "O", "A", Side::Buy, "10.00", 100);
        let (mut now, mut seed) = (0u64, 7u64);
        let mut emptied = 0;
        for _ in 0..5_000 {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            // Gaps from nothing to 8 ms: within both windows, between them, beyond both.
            now += (seed >> 33) % (8 * MS);
            let sides = ((seed >> 20) % 4) as u8;
            let before = fast.recent.len();
            fast.forget_all_if_quiet(now, window, message_window);
            emptied += usize::from(before > 0 && fast.recent.is_empty());
            for activity in [&mut fast, &mut slow] {
                let recent = Recent { event: template.at(now), new_order: true, fishing: false, sides };
                activity.messages.push_back(now);
                activity.recent.push_back(recent);
                for (side, changes) in activity.changes.iter_mut().enumerate() {
                    if sides & (1 << side) != 0 {
                        changes.push_back(now);
                    }
                }
                activity.forget_before(now, window, message_window);
            }
            assert_eq!(fast.messages, slow.messages);
            assert_eq!(fast.changes, slow.changes);
            let times = |a: &Activity| a.recent.iter().map(|r| r.event.time).collect::<Vec<_>>();
            assert_eq!(times(&fast), times(&slow));
        }
        assert!(emptied > 100, "the quiet path was taken {emptied} times");
    }

    #[test]
    fn a_burst_of_book_changes_is_one_alert_with_its_counts() {
        // 40 cycles 50 ms apart: 80 changes of the best bid in 2 s, each order cancelled 500 us
        // after entry (fishing).
        let events = stuffing("STUFFER", 40, 50, 500);
        for workers in [1, 2] {
            let alerts = run_on(workers, QuoteStuffing::new(&QuoteStuffingConfig::default()), events.clone());
            assert_eq!(alerts.len(), 1, "{alerts:#?}");
            let a = &alerts[0];
            assert_eq!(a.rule, rules::QUOTE_STUFFING);
            assert_eq!(a.account, Symbol::of(b"STUFFER"));
            assert_eq!(count(a, "messages"), Some(80));
            assert_eq!(count(a, "book_changes"), Some(80));
            assert_eq!(count(a, "new_orders"), Some(40));
            assert_eq!(count(a, "peak_book_changes"), Some(80));
            assert_eq!(count(a, "fishing_orders"), Some(40));
            assert_eq!(a.evidence.len(), MAX_EVIDENCE);
            // Reported when a quiet burst window has passed after the last crossing.
            let last = events.last().map_or(0, |e| e.time);
            assert_eq!(a.time, last + 5_000 * MS);
        }
    }

    #[test]
    fn slow_changes_or_another_accounts_messages_are_not_a_burst() {
        // 100 cycles 200 ms apart: 200 changes, at most 50 within any 5 s.
        assert!(run(QuoteStuffing::new(&QuoteStuffingConfig::default()), stuffing("SLOW", 100, 200, 500)).is_empty());
        // 30 cycles 50 ms apart: exactly 60 changes, the limit, not more.
        assert!(run(QuoteStuffing::new(&QuoteStuffingConfig::default()), stuffing("SIXTY", 30, 50, 500)).is_empty());
        // Marketable orders crossing the touch until their fills come change nothing quoted.
        let mut taking = stuffing("X", 0, 0, 0);
        for c in 0..100u64 {
            let (id, t) = (format!("T{c}"), 10 * MS + c * 20 * MS);
            taking.push(new_order("ACME", &id, "TAKER", Side::Buy, "10.10", 1).at(t));
            taking.push(crate::testing::fill("ACME", &id, "TAKER", Side::Buy, "10.10", 1).at(t));
            taking.push(crate::testing::fill("ACME", "A0", "MM", Side::Sell, "10.10", 1).at(t));
        }
        for (i, e) in taking.iter_mut().enumerate() {
            e.origin = crate::model::Origin::new(0, i as u64);
        }
        assert!(run(QuoteStuffing::new(&QuoteStuffingConfig::default()), taking).is_empty());
        // Changes not at the touch: a bid below the best changes nothing.
        let mut events = stuffing("X", 0, 0, 0);
        for c in 0..100u64 {
            let id = format!("D{c}");
            events.push(new_order("ACME", &id, "DEEP", Side::Buy, "9.90", 100).at(10 * MS + c * 25 * MS));
            events.push(cancel("ACME", &id, "DEEP").at(10 * MS + c * 25 * MS + 1_000));
        }
        for (i, e) in events.iter_mut().enumerate() {
            e.origin = crate::model::Origin::new(0, i as u64);
        }
        assert!(run(QuoteStuffing::new(&QuoteStuffingConfig::default()), events).is_empty());
    }

    #[test]
    fn a_message_rate_above_the_limit_is_a_burst_even_away_from_the_touch() {
        let mut events = stuffing("X", 0, 0, 0);
        for c in 0..60u64 {
            let id = format!("D{c}");
            events.push(new_order("ACME", &id, "DEEP", Side::Buy, "9.90", 100).at(10 * MS + c * 5 * MS));
            events.push(cancel("ACME", &id, "DEEP").at(10 * MS + c * 5 * MS + 2 * MS));
        }
        events.sort_by_key(|e| e.time);
        for (i, e) in events.iter_mut().enumerate() {
            e.origin = crate::model::Origin::new(0, i as u64);
        }
        let config = QuoteStuffingConfig::default();
        let alerts = run(QuoteStuffing::new(&config), events);
        assert_eq!(alerts.len(), 1, "{alerts:#?}");
        assert_eq!(count(&alerts[0], "peak_book_changes"), Some(0));
        assert_eq!(count(&alerts[0], "peak_messages"), Some(120));
        assert_eq!(count(&alerts[0], "fishing_orders"), Some(0));
        // Its evidence is its first messages; no book side is named.
        assert_eq!(alerts[0].evidence.len(), MAX_EVIDENCE);
        assert!(alerts[0].explanation.contains("no change of the best bid or offer"), "{}", alerts[0].explanation);
        // Two bursts a quiet window apart are two alerts.
        let mut twice = stuffing("STUFFER", 40, 50, 500);
        let later: Vec<Event> = stuffing("STUFFER", 40, 50, 500)
            .into_iter()
            .skip(2)
            .map(|mut e| {
                e.time += 60_000 * MS;
                if let Body::NewOrder { order, .. } | Body::Cancel { order, .. } = &mut e.body {
                    *order = Symbol::of(format!("L{}", order.0).as_bytes());
                }
                e
            })
            .collect();
        twice.extend(later);
        for (i, e) in twice.iter_mut().enumerate() {
            e.origin = crate::model::Origin::new(0, i as u64);
        }
        assert_eq!(run(QuoteStuffing::new(&config), twice).len(), 2);
    }
}
