//! Instruments and accounts that change while a run goes on.
//!
//! The reference files (and topics) read at the start give each instrument and account its
//! versions over event time. A live run also takes changes as they are published: a new
//! listing, a tick-size or closing-time change, an account moved to another desk. Each change
//! is a whole record ([`LiveChange`]) applied from a time: its own, or how far the events had
//! been read when it came, whichever is later, since events already read may have been judged
//! (a live feed cannot tell a change stamped earlier from one published late).
//!
//! The detectors read reference data directly from the shared [`ReferenceData`], so a change
//! must be in it before any event at or after its time is processed, and must not be seen by
//! an event before it. [`FollowReference::follow_reference`] does that with
//! [`surveil_operators::AfterChanges`]: every worker applies every change
//! ([`ReferenceData::apply_live`], kept per time, so an answer for an earlier time does not
//! change), in time order, and releases each event once the changes up to its time are in,
//! enriched again from the live accounts (an event read before a change came was enriched by
//! the reader from the older record). The changes are stamped once, on worker 0, so every
//! worker and every process applies them at the same times. Each process keeps one store for
//! its workers; across processes, what waits for the frontier (time-ordered processing,
//! timers) sees a time only once every process has applied the changes up to it, while an
//! operator that reads the store for an event as it arrives, before the frontier passes the
//! event, could run ahead of another process's store.
//!
//! The cost: while a change is pending, the events at or after its time wait until the events'
//! watermark reaches it (no earlier event may still come), so alerts just after a change come
//! later by up to the out-of-order bound. Without changes, events wait at most one poll of the
//! feed (1 ms) for its frontier.

use std::sync::Arc;

use surveil_operators::{AfterChanges, Feed, feed_source};
use timely::dataflow::operators::vec::Map;
use timely::dataflow::{ProbeHandle, Scope, Stream};

use crate::model::{Event, Report, Symbol};
use crate::reference::{LiveChange, OwnershipChange, ReferenceData};

/// What a feed of reference changes gives, each item with the time it applies from.
#[derive(Clone, Debug, PartialEq)]
pub enum LiveItem {
    /// A change of an instrument or an account.
    Change(LiveChange),
    /// The name of a symbol a change brings, for output.
    Name(Symbol, String),
    /// A change of ownership an account's record makes (its `owner`), for the linked
    /// accounts, with the id of the change that made it.
    Ownership(u64, OwnershipChange),
}

impl LiveItem {
    /// The items of the changes [`ReferenceData::read_live`] read, with the names they bring
    /// (as `known` has them) and the changes of ownership it gave: each at its own time.
    pub fn all(
        known: &ReferenceData,
        changes: Vec<(LiveChange, u64)>,
        ownership: Vec<(u64, OwnershipChange)>,
    ) -> Vec<(LiveItem, u64)> {
        let mut items = Vec::new();
        for (change, time) in changes {
            items
                .extend(known.names_in(&change).into_iter().map(|(symbol, name)| (LiveItem::Name(symbol, name), time)));
            items.push((LiveItem::Change(change), time));
        }
        items.extend(ownership.into_iter().map(|(id, change)| (LiveItem::Ownership(id, change), change.time)));
        items
    }
}

/// What a feed gives at a poll: items, and how far the events have been read
/// ([`surveil_operators::Feed`]).
pub type ReferenceFeed = Box<dyn FnMut() -> Feed<LiveItem>>;

/// A job whose instruments and accounts also change while it runs: every worker has one,
/// worker 0 with the feed (`KafkaSource::reference_feed` with the `kafka` feature, or a
/// library user's own).
pub struct LiveReference {
    /// This worker's feed (worker 0's).
    pub feed: Option<ReferenceFeed>,
}

/// The items of a live feed as streams, each at the time it applies from (all on worker 0).
pub struct LiveStreams<'scope> {
    /// The changes, for [`FollowReference::follow_reference`].
    pub changes: Stream<'scope, u64, Vec<LiveChange>>,
    /// The names they bring, as [`Report::Symbol`] records for the writer.
    pub names: Stream<'scope, u64, Vec<Report>>,
    /// The changes of ownership they make, with the ids of the changes that made them, for
    /// [`crate::links::linked_groups_fed`].
    pub ownership: Stream<'scope, u64, Vec<(u64, OwnershipChange)>>,
}

/// The items of a live feed as streams. The feed is polled every millisecond and follows
/// `events` (probed where they are read): it finishes with them.
pub fn live_reference_streams<'scope>(
    scope: Scope<'scope, u64>,
    events: &ProbeHandle<u64>,
    live: LiveReference,
) -> LiveStreams<'scope> {
    let items = feed_source(scope, "ReferenceFeed", events, std::time::Duration::from_millis(1), live.feed);
    let names = items.clone().flat_map(|(item, _)| match item {
        LiveItem::Name(symbol, name) => Some(Report::Symbol(symbol, name.into())),
        _ => None,
    });
    let ownership = items.clone().flat_map(|(item, _)| match item {
        LiveItem::Ownership(id, change) => Some((id, change)),
        _ => None,
    });
    let changes = items.flat_map(|(item, _)| match item {
        LiveItem::Change(change) => Some(change),
        _ => None,
    });
    LiveStreams { changes, names, ownership }
}

/// Extension trait: events processed with the reference data changes up to their time.
pub trait FollowReference<'scope> {
    /// Applies `changes` (each at its timely time: the time it applies from) to `reference`
    /// on every worker, and passes each event on once every change up to its event time is
    /// applied and none after, with its owner, desk and trader (and a trade's parties'
    /// owners) taken again from a live account record in force then.
    ///
    /// ```
    /// use std::sync::Arc;
    ///
    /// use surveil::live_reference::FollowReference;
    /// use surveil::model::{Side, Symbol};
    /// use surveil::reference::{Account, LiveChange, ReferenceData};
    /// use timely::container::CapacityContainerBuilder;
    /// use timely::dataflow::InputHandle;
    /// use timely::dataflow::operators::{Input, Inspect, Probe};
    ///
    /// let mut loaded = ReferenceData::new(2);
    /// loaded.set_account("ACC1", "ANN", "EQUITIES", "ann");
    /// let reference = Arc::new(loaded);
    /// let rates = Account { desk: Symbol::of(b"RATES"), ..*reference.account(Symbol::of(b"ACC1"), 0).unwrap() };
    /// let desks = timely::execute_directly(move |worker| {
    ///     let mut changes = InputHandle::<u64, CapacityContainerBuilder<Vec<LiveChange>>>::new();
    ///     let mut events = InputHandle::<u64, CapacityContainerBuilder<Vec<surveil::model::Event>>>::new();
    ///     let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    ///     let out = seen.clone();
    ///     let probe = worker.dataflow(|scope| {
    ///         let changes = scope.input_from(&mut changes);
    ///         scope
    ///             .input_from(&mut events)
    ///             .follow_reference(&reference, changes)
    ///             .inspect(move |e| out.borrow_mut().push((e.time, e.desk)))
    ///             .probe()
    ///             .0
    ///     });
    ///     // Orders read at 500 and 1,500 (enriched by the reader from the loaded record), and
    ///     // ACC1 moved to the rates desk from 1,000, published after both were read.
    ///     for time in [500, 1_500] {
    ///         let mut order = surveil::testing::new_order("X", "O1", "ACC1", Side::Buy, "1.00", 1).at(time);
    ///         reference.enrich(&mut order);
    ///         events.send(order);
    ///     }
    ///     changes.advance_to(1_000);
    ///     changes.send(LiveChange::Account { id: 1, symbol: Symbol::of(b"ACC1"), record: rates });
    ///     drop((changes, events));
    ///     worker.step_while(|| !probe.done());
    ///     seen.take()
    /// });
    /// assert_eq!(desks, vec![(500, Symbol::of(b"EQUITIES")), (1_500, Symbol::of(b"RATES"))]);
    /// ```
    fn follow_reference(
        self,
        reference: &Arc<ReferenceData>,
        changes: Stream<'scope, u64, Vec<LiveChange>>,
    ) -> Stream<'scope, u64, Vec<Event>>;
}

impl<'scope> FollowReference<'scope> for Stream<'scope, u64, Vec<Event>> {
    fn follow_reference(
        self,
        reference: &Arc<ReferenceData>,
        changes: Stream<'scope, u64, Vec<LiveChange>>,
    ) -> Stream<'scope, u64, Vec<Event>> {
        reference.follow_live_changes();
        let (applied, enriched) = (reference.clone(), reference.clone());
        self.after_changes(
            "FollowReference",
            changes,
            |event: &Event| event.time,
            move |time, change| applied.apply_live(time, &change),
            move |event| enriched.enrich_live(event),
        )
    }
}
