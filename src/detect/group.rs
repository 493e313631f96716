//! Running several detectors in one operator: one routing, one ordering, one order book state.

use std::collections::BTreeSet;
use std::rc::Rc;
use std::sync::Arc;

use surveil_operators::{Emitter, TimeOrderedProcessor};
use timely::dataflow::Stream;

use super::{Detector, Key, Keyed, OrderTracker, Output, RunDetector};
use crate::model::time::SessionCalendar;
use crate::model::{Alert, Body, CancelReason, DeadLetter, Event, IdMap, Origin, Report, Timestamp};
use crate::reference::ReferenceData;

/// Dead letters found by the order state are emitted on a grid of this many nanoseconds
/// (a power of two, about a millisecond): a feed gone bad then costs one timely time per
/// millisecond, not one per letter (each distinct time is a message and a progress update).
const DEAD_LETTER_GRID: u64 = 1 << 20;

/// Detectors run together over the events of the keys routed to one worker, in event-time
/// order: the [`TimeOrderedProcessor`] behind the [`crate::detect::Detect`] operators.
///
/// With order tracking on, the group keeps every open order of its instruments (the events
/// must then be routed by instrument), hands each instrument-keyed detector the state of the
/// event's order before it, and turns an event whose meaning depends on an order it does not
/// know (a replace, or a cancel without a quantity) into an `unknown_order` dead letter instead
/// of showing it to the detectors.
pub struct DetectorGroup {
    detectors: Vec<Box<dyn RunDetector>>,
    /// Which detectors read order state.
    wants_orders: Vec<bool>,
    /// Which detectors read the order book.
    wants_book: Vec<bool>,
    orders: Option<OrderTracker>,
    tracking: Tracking,
    dead_letters: bool,
    /// The dense slot of each key seen, where every detector keeps that key's state.
    slots: IdMap<Key, usize>,
    /// Timers asked for: time, detector, key and its slot.
    timers: BTreeSet<(Timestamp, usize, Key, usize)>,
    out: Output,
}

/// Which events the order book state sees.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Tracking {
    /// None: no detector needs it.
    Off,
    /// Every event: the group's events are routed by instrument.
    AllEvents,
    /// The order events of the instruments a detector that asks for order state keys by (a
    /// single detector, routed by its keys, with its instruments' other order events routed
    /// the same way, see [`crate::detect::Detect::detect_all`]).
    InstrumentKeys,
}

impl DetectorGroup {
    /// A group over `detectors`, keeping the order book state for the events `tracking` says;
    /// `dead_letters` reports the events it cannot interpret.
    pub fn new(detectors: Vec<Box<dyn RunDetector>>, tracking: Tracking, dead_letters: bool) -> DetectorGroup {
        DetectorGroup {
            wants_orders: detectors.iter().map(|d| d.needs_order_state()).collect(),
            wants_book: detectors.iter().map(|d| d.needs_book()).collect(),
            orders: (tracking != Tracking::Off).then(|| {
                if detectors.iter().any(|d| d.needs_book()) {
                    OrderTracker::with_books()
                } else {
                    OrderTracker::default()
                }
            }),
            detectors,
            tracking,
            dead_letters,
            slots: IdMap::default(),
            timers: BTreeSet::new(),
            out: Output::default(),
        }
    }

    /// Orders expire at the end of each session of `calendar` (see
    /// [`OrderTracker::expiring_at_session_end`]), when the group tracks orders.
    pub fn expiring_orders(mut self, calendar: Option<SessionCalendar>) -> DetectorGroup {
        if let Some(calendar) = calendar {
            self.orders = self.orders.take().map(|tracker| tracker.expiring_at_session_end(calendar));
        }
        self
    }

    /// Open orders being tracked.
    pub fn open_orders(&self) -> usize {
        self.orders.as_ref().map_or(0, |o| o.len())
    }

    /// Emits what the detectors reported, in the order they reported it.
    #[inline]
    fn emit(&mut self, out: &mut Emitter<'_, Report>) {
        if !self.out.reports.is_empty() {
            for (time, report) in self.out.reports.drain(..) {
                out.emit_at(time, report);
            }
        }
    }
}

impl TimeOrderedProcessor<Event> for DetectorGroup {
    type Output = Report;

    fn on_record(&mut self, _time: u64, event: Event, out: &mut Emitter<'_, Report>) {
        let tracked =
            match self.tracking {
                Tracking::Off => false,
                Tracking::AllEvents => true,
                Tracking::InstrumentKeys => self.detectors.iter().zip(&self.wants_orders).any(|(d, &wants)| {
                    wants && d.key(&event).is_none_or(|key| key == Key::Instrument(event.instrument))
                }),
            };
        let tracker = if tracked { self.orders.as_mut() } else { None };
        let order = match tracker.map(|tracker| tracker.apply(&event)) {
            None => None,
            Some(Ok(context)) => Some(context),
            Some(Err(rejection)) => {
                if self.dead_letters {
                    let at = event.time | (DEAD_LETTER_GRID - 1);
                    let letter = DeadLetter {
                        source: event.origin.source(),
                        line: None,
                        offset: event.origin.offset(),
                        raw: String::new(),
                        reason: rejection.reason,
                        detail: rejection.detail,
                        event: Some(Box::new(event)),
                    };
                    out.emit_at(at, Report::DeadLetter(Box::new(letter)));
                }
                return;
            }
        };
        // Detectors of a group mostly share the event's key: one slot lookup serves them all.
        let mut last: Option<(Key, usize)> = None;
        let book = match (&order, &self.orders) {
            (Some(_), Some(tracker)) => tracker.book(event.instrument),
            _ => None,
        };
        for index in 0..self.detectors.len() {
            let Some(key) = self.detectors[index].key(&event) else { continue };
            let slot = match last {
                Some((seen, slot)) if seen == key => slot,
                _ => {
                    let next = self.slots.len();
                    let slot = *self.slots.entry(key).or_insert(next);
                    last = Some((key, slot));
                    slot
                }
            };
            // The order state belongs to the event's instrument, for the rules that asked.
            let own = key == Key::Instrument(event.instrument);
            let order = order.as_ref().filter(|_| self.wants_orders[index] && own);
            let book = book.filter(|_| self.wants_book[index] && own);
            self.detectors[index].on_event(key, slot, &event, order, book, &mut self.out);
            take_timers(&mut self.out, &mut self.slots, &mut self.timers, index);
        }
        self.emit(out);
    }

    fn next_timer(&self) -> Option<u64> {
        let expiry = self.orders.as_ref().and_then(OrderTracker::expiry_due);
        match (self.timers.first().map(|(time, ..)| *time), expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn on_timer(&mut self, time: u64, out: &mut Emitter<'_, Report>) {
        // The session ends: what is still open expires, as the venue's cancels at the last
        // instant of the session, so that every detector sees its orders leave (a venue cancel
        // shows no intent), in a fixed order at a fixed time whatever the layout of workers.
        if self.orders.as_ref().and_then(OrderTracker::expiry_due) == Some(time) {
            let expired = self.orders.as_ref().map(OrderTracker::expiring).unwrap_or_default();
            for (instrument, order, state) in expired {
                let body = Body::Cancel {
                    order,
                    side: Some(state.side),
                    price: state.price,
                    quantity: None,
                    reason: CancelReason::Expired,
                };
                let cancel = Event::new(time, Origin::default(), instrument, body).with_account(state.account);
                self.on_record(time, cancel, out);
            }
            // Orders whose cancels the tracker did not take (no detector here keys by their
            // instrument) expire all the same: the expiry is never due again at this time.
            if let Some(tracker) = self.orders.as_mut()
                && tracker.expiry_due() == Some(time)
            {
                tracker.expire_all();
            }
        }
        while let Some(&(t, index, key, slot)) = self.timers.first() {
            if t != time {
                break;
            }
            self.timers.pop_first();
            self.detectors[index].on_timer(key, slot, time, &mut self.out);
            take_timers(&mut self.out, &mut self.slots, &mut self.timers, index);
            self.emit(out);
        }
    }
}

/// Files the timers detector `index` asked for, each under its own key's slot (given on the
/// key's first sight).
#[inline]
fn take_timers(
    out: &mut Output,
    slots: &mut IdMap<Key, usize>,
    timers: &mut BTreeSet<(Timestamp, usize, Key, usize)>,
    index: usize,
) {
    for &(time, key) in &out.timers {
        let next = slots.len();
        let slot = *slots.entry(key).or_insert(next);
        timers.insert((time, index, key, slot));
    }
    out.timers.clear();
}

/// Rules keyed by instrument, run in one operator over one order book state: how the default
/// job runs its rules, and the cheapest way to run several (the events are routed and sorted
/// once). Each rule's [`Detector::key`] must be the event's instrument (or `None`); with
/// [`InstrumentRules::routed_by_underlying`], it may also be the instrument's root (its
/// underlying, see [`ReferenceData::root`]), for rules that read a derivative's trading
/// against its underlying.
///
/// ```
/// use std::sync::Arc;
/// use surveil::config::Config;
/// use surveil::detect::InstrumentRules;
/// use surveil::reference::ReferenceData;
/// use surveil::rules::{OrderLimits, SelfTrade};
///
/// let config = Config::default();
/// let reference = Arc::new(ReferenceData::new(4));
/// let rules = InstrumentRules::new()
///     .with(OrderLimits::new(&config.rules.order_limits, reference.clone()))
///     .with(SelfTrade::new(&config.rules.self_trade));
/// assert_eq!(rules.names(), ["order_limits", "self_trade"]);
/// ```
#[derive(Default)]
pub struct InstrumentRules {
    detectors: Vec<Box<dyn RunDetector>>,
    sessions: Option<SessionCalendar>,
    roots: Option<Arc<ReferenceData>>,
    apart: Vec<OwnOperator>,
}

/// A rule that runs as an operator of its own beside the group, on the same events.
type OwnOperator = Box<dyn for<'scope> FnOnce(Stream<'scope, u64, Vec<Event>>) -> Stream<'scope, u64, Vec<Alert>>>;

impl InstrumentRules {
    /// No rules yet.
    pub fn new() -> InstrumentRules {
        InstrumentRules::default()
    }

    /// Adds a rule.
    pub fn with<D: Detector>(mut self, detector: D) -> InstrumentRules {
        self.detectors.push(Box::new(Keyed::new(Rc::new(detector))));
        self
    }

    /// Adds a rule that is already type-erased.
    pub fn with_boxed(mut self, detector: Box<dyn RunDetector>) -> InstrumentRules {
        self.detectors.push(detector);
        self
    }

    /// Orders still open at the end of a session of `calendar` expire from the rules' order
    /// state and books (day orders), as the default rules do unless
    /// [`crate::config::SessionConfig::expire_orders`] is off.
    pub fn expiring_orders_at_session_end(mut self, calendar: SessionCalendar) -> InstrumentRules {
        self.sessions = Some(calendar);
        self
    }

    /// Routes each event by its instrument's root in `reference` (the underlying of an option
    /// or a future, else the instrument) rather than by the instrument: all the instruments
    /// on one underlying meet on one worker, so a rule keyed by the underlying runs in the
    /// group instead of routing and ordering the events again in an operator of its own.
    /// Without underlyings in `reference` the routing is the same as by instrument.
    pub fn routed_by_underlying(mut self, reference: Arc<ReferenceData>) -> InstrumentRules {
        self.roots = Some(reference);
        self
    }

    /// Adds a rule that runs as an operator of its own beside the group (`|events|
    /// events.detect(rule)`), on the same events: for a rule whose key would put many
    /// instruments on one worker, which in the group would take every other rule's work there
    /// too (front running over baskets, [`crate::rules::FrontRunning::join`]). Its alerts join
    /// the group's.
    pub fn with_own_operator<F>(mut self, rule: F) -> InstrumentRules
    where
        F: for<'scope> FnOnce(Stream<'scope, u64, Vec<Event>>) -> Stream<'scope, u64, Vec<Alert>> + 'static,
    {
        self.apart.push(Box::new(rule));
        self
    }

    /// The rules' names, in order.
    pub fn names(&self) -> Vec<&str> {
        self.detectors.iter().map(|d| d.name()).collect()
    }

    /// True when there is no rule.
    pub fn is_empty(&self) -> bool {
        self.detectors.is_empty()
    }

    /// The reference data whose roots the events are routed by, if not by instrument.
    pub(crate) fn roots(&self) -> Option<Arc<ReferenceData>> {
        self.roots.clone()
    }

    pub(crate) fn into_parts(self) -> (Vec<Box<dyn RunDetector>>, Option<SessionCalendar>, Vec<OwnOperator>) {
        (self.detectors, self.sessions, self.apart)
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use surveil_operators::{Emitter, TimeOrderedProcessor};

    use super::*;
    use crate::detect::AlertSink;
    use crate::model::time::SessionCalendar;
    use crate::testing::new_order;

    /// Keys new orders by instrument and cancels by account: the group's order state sees the
    /// orders enter but not the venue's cancels of them.
    struct SplitKeys;

    impl Detector for SplitKeys {
        type State = ();

        fn name(&self) -> &str {
            "split_keys"
        }

        fn key(&self, event: &Event) -> Option<Key> {
            match event.body {
                Body::NewOrder { .. } => Some(Key::Instrument(event.instrument)),
                _ => Some(Key::Account(event.account)),
            }
        }

        fn needs_order_state(&self) -> bool {
            true
        }

        fn on_event(&self, _: &mut (), _: &Event, _: &mut AlertSink<'_>) {}
    }

    #[test]
    fn an_expiry_the_detectors_do_not_take_is_still_done_once() {
        let detectors: Vec<Box<dyn RunDetector>> = vec![Box::new(Keyed::new(Rc::new(SplitKeys)))];
        let mut group = DetectorGroup::new(detectors, Tracking::InstrumentKeys, false)
            .expiring_orders(Some(SessionCalendar::new(chrono_tz::UTC)));
        let mut buffer = Vec::new();
        let open = 1_709_280_000_000_000_000 + 3_600_000_000_000; // 2024-03-01T09:00Z
        let order = new_order("X", "O1", "A", crate::model::Side::Buy, "1.00", 10).at(open);
        group.on_record(open, order, &mut Emitter::new(open, &mut buffer));
        assert_eq!(group.open_orders(), 1);
        let due = group.next_timer().expect("the expiry is due at the end of the day");
        assert_eq!(due, 1_709_337_600_000_000_000 - 1); // 2024-03-02T00:00Z, less 1 ns
        group.on_timer(due, &mut Emitter::new(due, &mut buffer));
        // The venue's cancel went to an account key, which keeps no order state; the order
        // expired all the same, and nothing is due any more (no timer fired forever).
        assert_eq!(group.open_orders(), 0);
        assert_eq!(group.next_timer(), None);
    }
}
