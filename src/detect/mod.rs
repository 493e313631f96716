//! Detectors: rules written once and run as dataflow operators.
//!
//! A rule implements [`Detector`]: which events it looks at and grouped by which [`Key`]
//! (instrument, account, beneficial owner, desk, trader, or everything), the state it keeps per
//! key, and what it does with each event and each timer it asked for. The operators in
//! [`Detect`] route the events by key, hand each key's events to the rule in `(time, origin)`
//! order, keep the state, and fire the timers as the watermark passes them; so a rule gets
//! the same alerts, with the same ids, on one worker or many, live or replayed. The built-in
//! rules (`crate::rules`) are written exactly this way.
//!
//! ```
//! use std::collections::VecDeque;
//! use surveil::detect::{AlertSink, Detector, Key};
//! use surveil::model::{Body, Event, Severity};
//!
//! /// More than `limit` cancels by one account within `window` nanoseconds.
//! #[derive(Clone)]
//! struct CancelBurst { window: u64, limit: usize }
//!
//! impl Detector for CancelBurst {
//!     type State = VecDeque<u64>; // per account, created on first use
//!     fn name(&self) -> &str { "cancel_burst" }
//!     fn key(&self, e: &Event) -> Option<Key> {
//!         matches!(e.body, Body::Cancel { .. }).then(|| Key::Account(e.account))
//!     }
//!     fn on_event(&self, seen: &mut VecDeque<u64>, e: &Event, out: &mut AlertSink<'_>) {
//!         seen.push_back(e.time);
//!         while seen.front().is_some_and(|t| e.time - t > self.window) { seen.pop_front(); }
//!         if seen.len() > self.limit {
//!             out.alert(e).severity(Severity::Medium).param("cancels", seen.len())
//!                 .explain(format!("{} cancels within {} ns", seen.len(), self.window));
//!         }
//!     }
//! }
//!
//! let cancels = (0..4).map(|i| surveil::testing::cancel("ACME", &format!("O{i}"), "ACC1").at_ms(i));
//! let alerts = surveil::testing::run(CancelBurst { window: 1_000_000_000, limit: 3 }, cancels);
//! assert_eq!(alerts.len(), 1);
//! assert_eq!(alerts[0].rule, "cancel_burst");
//! ```
//!
//! Rules keyed by instrument can also see each event's order as it was before the event
//! ([`AlertSink::order`]) by asking for it ([`Detector::needs_order_state`]): the detector
//! operators then keep every open order of their instruments.

pub mod book;
mod group;
mod key;
mod operator;
pub mod orders;
mod sink;

pub use book::{Depth, OrderBook};
pub use group::{DetectorGroup, InstrumentRules, Tracking};
pub use key::Key;
pub use operator::{Detect, Detected};
pub use orders::{OrderContext, OrderTracker};
pub use sink::{AlertSink, PendingAlert};

use crate::model::{Event, Report, Timestamp};

/// A rule over events grouped by key. See the [module documentation](self) for an example.
///
/// Methods take `&self`: what changes lives in the per-key [`Detector::State`], which the
/// operator creates (with `Default`) on a key's first event, keeps and hands back; the detector
/// itself holds only its parameters.
pub trait Detector: 'static {
    /// What the rule remembers about one key.
    type State: Default + 'static;

    /// The rule's name, as alerts carry it (`"self_trade"`). Alert ids are computed from it.
    fn name(&self) -> &str;

    /// The key of an event, or `None` for events the rule does not look at (they are not even
    /// routed to it).
    fn key(&self, event: &Event) -> Option<Key>;

    /// True when the rule reads the state of each event's order before the event
    /// ([`AlertSink::order`]). The rule must then key the events it looks at by their
    /// instrument; the operator routes every order event of those instruments to it and keeps
    /// their open orders. Off by default: a rule that does not ask and runs alone pays nothing
    /// for it.
    ///
    /// Where orders are tracked (a rule that asks; the default job's group, which always
    /// tracks), an event whose meaning depends on an order never seen (a replace, or a cancel
    /// without a quantity) is an `unknown_order` dead letter and reaches no rule of the
    /// operator; a rule that does not ask and runs alone sees such events.
    fn needs_order_state(&self) -> bool {
        false
    }

    /// True when the rule reads its instrument's order book ([`AlertSink::book`]): the resting
    /// quantity per price level after the event. Implies [`Detector::needs_order_state`].
    fn needs_book(&self) -> bool {
        false
    }

    /// Sees one event of a key, in `(time, origin)` order within the key.
    fn on_event(&self, state: &mut Self::State, event: &Event, out: &mut AlertSink<'_>);

    /// A timer this key asked for with [`AlertSink::timer`] has come: every event before
    /// `time` has been seen. [`AlertSink::key`] tells which key.
    fn on_timer(&self, state: &mut Self::State, time: Timestamp, out: &mut AlertSink<'_>) {
        let _ = (state, time, out);
    }
}

/// A detector with its per-key states, behind a type-erased face so that rules of different
/// types run in one operator ([`DetectorGroup`]).
///
/// Keys come with a dense slot number given by the group (the same key has the same slot for
/// every detector of the group), so a group of rules finds a key's state with one table lookup
/// per event rather than one per rule.
pub trait RunDetector {
    /// The rule's name.
    fn name(&self) -> &str;
    /// The key of an event, if the rule looks at it.
    fn key(&self, event: &Event) -> Option<Key>;
    /// See [`Detector::needs_order_state`] (true also when the rule needs the book).
    fn needs_order_state(&self) -> bool;
    /// See [`Detector::needs_book`].
    fn needs_book(&self) -> bool;
    /// Runs [`Detector::on_event`] with the state of `key`, kept at `slot`, and the event's
    /// order and book where the rule asked for them.
    fn on_event(
        &mut self,
        key: Key,
        slot: usize,
        event: &Event,
        order: Option<&OrderContext>,
        book: Option<&OrderBook>,
        out: &mut Output,
    );
    /// Runs [`Detector::on_timer`] with the state of `key`, kept at `slot`.
    fn on_timer(&mut self, key: Key, slot: usize, time: Timestamp, out: &mut Output);
}

/// What a [`RunDetector`] call produced: reports at their times, and timers asked for.
#[derive(Default)]
pub struct Output {
    /// Reports (alerts and side records) with the event time they are emitted at.
    pub reports: Vec<(Timestamp, Report)>,
    /// Timers asked for.
    pub timers: Vec<(Timestamp, Key)>,
}

/// A [`Detector`] and its state per key slot.
pub struct Keyed<D: Detector> {
    detector: std::rc::Rc<D>,
    states: Vec<D::State>,
    /// The one state of a stateless rule (`State` of size zero), kept once instead of per key.
    shared: D::State,
}

impl<D: Detector> Keyed<D> {
    /// Runs `detector`, sharing it with whoever else needs it on this worker (the routing).
    pub fn new(detector: std::rc::Rc<D>) -> Keyed<D> {
        Keyed { detector, states: Vec::new(), shared: D::State::default() }
    }
}

/// The state at `slot`: a stateless rule's one shared state, or the key's own.
#[inline]
fn state_at<'s, S: Default>(states: &'s mut Vec<S>, shared: &'s mut S, slot: usize) -> &'s mut S {
    if std::mem::size_of::<S>() == 0 {
        return shared;
    }
    if slot >= states.len() {
        states.resize_with(slot + 1, S::default);
    }
    &mut states[slot]
}

impl<D: Detector> RunDetector for Keyed<D> {
    fn name(&self) -> &str {
        self.detector.name()
    }

    #[inline]
    fn key(&self, event: &Event) -> Option<Key> {
        self.detector.key(event)
    }

    fn needs_order_state(&self) -> bool {
        self.detector.needs_order_state() || self.detector.needs_book()
    }

    fn needs_book(&self) -> bool {
        self.detector.needs_book()
    }

    #[inline]
    fn on_event(
        &mut self,
        key: Key,
        slot: usize,
        event: &Event,
        order: Option<&OrderContext>,
        book: Option<&OrderBook>,
        out: &mut Output,
    ) {
        let state = state_at(&mut self.states, &mut self.shared, slot);
        let detector = &*self.detector;
        let mut sink =
            AlertSink::new(detector.name(), key, event.time, order, &mut out.reports, &mut out.timers).with_book(book);
        detector.on_event(state, event, &mut sink);
    }

    fn on_timer(&mut self, key: Key, slot: usize, time: Timestamp, out: &mut Output) {
        let state = state_at(&mut self.states, &mut self.shared, slot);
        let detector = &*self.detector;
        let mut sink = AlertSink::new(detector.name(), key, time, None, &mut out.reports, &mut out.timers);
        detector.on_timer(state, time, &mut sink);
    }
}
