//! A small complex-event-processing (CEP) sequence matcher per key.
//!
//! A [`Pattern`] is an ordered list of positive steps, each a predicate, with optional negated
//! steps between (or after) them and a `within` bound on event time. For example, "large order,
//! then an opposite-side fill by the same account with no amendment of the large order in
//! between, then a cancel of the large order, all within T":
//!
//! ```text
//! Pattern::begin(|e| is_large_order(e))
//!     .not_followed_by(|m, e| is_amend_of(e, &m[0]))
//!     .followed_by(|m, e| is_fill(e) && e.side != m[0].side)
//!     .followed_by(|m, e| is_cancel_of(e, &m[0]))
//!     .within(T)
//! ```
//!
//! # Semantics
//!
//! * **Order.** Records are routed by [`route`]`(&key)` and each key's records are processed in
//!   `(time, tie_break)` order once the watermark passes them, as
//!   [`ProcessInTimeOrder`](crate::ProcessInTimeOrder) would, with the pattern's expiries acting
//!   as its timers. Records of one key with equal `(time, tie_break)` are processed in an
//!   unspecified order: make the tie-break unique per key (a sequence number, an order id) for
//!   results that do not depend on the number of workers.
//! * **Runs.** Every record that satisfies the first step starts a new partial match (a *run*),
//!   so one record can start only one match, but overlapping runs are tracked independently.
//! * **Skip till next match** (FlinkCEP's relaxed contiguity `followedBy`, with no after-match
//!   skipping): a run waiting for step `j` binds the *first* later record that satisfies step
//!   `j`'s predicate; records that do not are skipped. A run never branches, so it yields at most
//!   one match, and the work per record is linear in the number of open runs of its key. One
//!   record can complete or extend several runs at once (e.g. one fill for two open orders).
//! * **Predicates** see the events bound so far (`m[0]` is the run's first event), so later
//!   steps can require "the same order" or "the opposite side".
//! * **Negation.** A negated step between positive steps `j-1` and `j` kills the run if a record
//!   satisfying it arrives after the record bound to `j-1` and before the one bound to `j`. A
//!   record that satisfies step `j` is bound, not treated as a negation, even if it satisfies
//!   both. Negated steps after the last positive step ("and no C within T of the start") make the
//!   run wait until `start + within`: it is emitted then, if no such record arrived by then.
//!   Negated steps before the first positive step cannot be written.
//! * **Within.** Every bound record satisfies `time <= start + within`, where `start` is the
//!   time of the run's first record. A run still open when the watermark passes
//!   `start + within` is dropped (or emitted, for trailing negations), so the state is bounded
//!   by the number of runs started within `within` behind the watermark.
//! * **Output.** A [`Match`] with the key, the bound records, and the times of the first and the
//!   last bound record. It is emitted at the time of its last record or, with trailing
//!   negations, at `start + within + 1`, the first time at which the absence is known (rounded
//!   down to [`Pattern::output_epoch`], if set).
//! * **Late data.** A record whose event time is before the time of the message carrying it
//!   arrived behind the watermark: it goes to [`SequenceOutputs::late`] and is not matched.
//!   Lateness depends only on the record and the time it was sent at, so it is the same on any
//!   number of workers. Messages without a timestamp (an empty stamp) are late too.
//!
//! The operator orders records per key rather than through `ProcessInTimeOrder`, which sorts
//! every worker's records globally at each watermark: the matcher only needs each key's order
//! (small, mostly sorted runs). On `benches/joins.rs` (1 worker) this runs at 22 M records/s,
//! against 10 M/s for a first version built on `ProcessInTimeOrder`.

use std::collections::VecDeque;
use std::collections::hash_map::Entry;
use std::hash::Hash;

use serde::{Deserialize, Serialize};
use timely::ExchangeData;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::Stream;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;

use crate::hashing::KeyMap;
use crate::routing::route;

/// A predicate of a step after the first: the events bound so far, and the candidate.
type StepPredicate<D> = Box<dyn Fn(&[D], &D) -> bool>;

/// A positive step and the negated steps that precede it.
struct Step<D> {
    negations: Vec<StepPredicate<D>>,
    predicate: StepPredicate<D>,
}

/// An ordered pattern of steps with negations and a `within` bound; see the [module
/// documentation](self) for the matching semantics.
pub struct Pattern<D> {
    first: Box<dyn Fn(&D) -> bool>,
    steps: Vec<Step<D>>,
    /// Negations after the last positive step so far; moved into the next positive step.
    trailing: Vec<StepPredicate<D>>,
    within: u64,
    epoch: u64,
}

impl<D> Pattern<D> {
    /// A pattern whose first step is a record satisfying `first`. Without
    /// [`within`](Self::within) a run stays open until the input ends.
    ///
    /// # Examples
    /// ```
    /// use surveil_operators::Pattern;
    /// let pattern = Pattern::begin(|e: &(u64, char)| e.1 == 'A');
    /// assert_eq!(pattern.len(), 1);
    /// ```
    pub fn begin(first: impl Fn(&D) -> bool + 'static) -> Pattern<D> {
        Pattern { first: Box::new(first), steps: Vec::new(), trailing: Vec::new(), within: u64::MAX, epoch: 1 }
    }

    /// Appends a positive step: the first later record for which `predicate(bound, record)`
    /// holds, where `bound` are the records bound to the previous positive steps.
    ///
    /// # Examples
    /// ```
    /// use surveil_operators::Pattern;
    /// // A, then a B with the same id as the A
    /// let pattern = Pattern::begin(|e: &(char, u32)| e.0 == 'A').followed_by(|m, e| e.0 == 'B' && e.1 == m[0].1);
    /// assert_eq!(pattern.len(), 2);
    /// ```
    pub fn followed_by(mut self, predicate: impl Fn(&[D], &D) -> bool + 'static) -> Pattern<D> {
        let negations = std::mem::take(&mut self.trailing);
        self.steps.push(Step { negations, predicate: Box::new(predicate) });
        self
    }

    /// Appends a negated step: the run dies if a record for which `predicate(bound, record)`
    /// holds arrives before the next positive step is bound (or, at the end of the pattern,
    /// before `start + within`).
    ///
    /// # Examples
    /// ```
    /// use surveil_operators::Pattern;
    /// // A, then B, with no C in between
    /// let pattern = Pattern::begin(|e: &char| *e == 'A').not_followed_by(|_, e| *e == 'C').followed_by(|_, e| *e == 'B');
    /// assert_eq!(pattern.len(), 2);
    /// ```
    pub fn not_followed_by(mut self, predicate: impl Fn(&[D], &D) -> bool + 'static) -> Pattern<D> {
        self.trailing.push(Box::new(predicate));
        self
    }

    /// Bounds the whole match: every bound record has `time <= start + within`.
    ///
    /// # Examples
    /// ```
    /// use surveil_operators::Pattern;
    /// let pattern = Pattern::begin(|e: &char| *e == 'A').followed_by(|_, e| *e == 'B').within(1_000);
    /// assert_eq!(pattern.within_bound(), 1_000);
    /// ```
    pub fn within(mut self, within: u64) -> Pattern<D> {
        self.within = within;
        self
    }

    /// Emits each match at its time (see the [module documentation](self)) rounded down to a
    /// multiple of `epoch`, instead of exactly at it (`epoch` 1, the default; 0 counts as 1).
    /// Every distinct output time costs a message and a progress update; when many matches
    /// are found, a coarser epoch batches them (on `benches/joins.rs`, 3 matches per 100
    /// records: 22 M records/s exact, 25 M/s with 1 ms epochs). The output times stay
    /// deterministic and never after the match's time; the output frontier then lags the input
    /// frontier by up to `epoch`.
    ///
    /// # Examples
    /// ```
    /// use surveil_operators::Pattern;
    /// let pattern = Pattern::begin(|e: &char| *e == 'A').output_epoch(1_000_000);
    /// assert_eq!(pattern.output_epoch_bound(), 1_000_000);
    /// ```
    pub fn output_epoch(mut self, epoch: u64) -> Pattern<D> {
        self.epoch = epoch.max(1);
        self
    }

    /// The output epoch (1: exact times).
    ///
    /// # Examples
    /// ```
    /// use surveil_operators::Pattern;
    /// assert_eq!(Pattern::begin(|_: &u8| true).output_epoch_bound(), 1);
    /// ```
    pub fn output_epoch_bound(&self) -> u64 {
        self.epoch
    }

    /// The `within` bound (`u64::MAX` if unbounded).
    ///
    /// # Examples
    /// ```
    /// use surveil_operators::Pattern;
    /// assert_eq!(Pattern::begin(|_: &u8| true).within_bound(), u64::MAX);
    /// ```
    pub fn within_bound(&self) -> u64 {
        self.within
    }

    /// The number of positive steps, that is, of records in a match.
    ///
    /// # Examples
    /// ```
    /// use surveil_operators::Pattern;
    /// let pattern = Pattern::begin(|e: &char| *e == 'A').not_followed_by(|_, e| *e == 'C');
    /// assert_eq!(pattern.len(), 1);
    /// ```
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        1 + self.steps.len()
    }

    /// Time after which a run started at `start` can no longer change: `start + within + 1`.
    fn expiry(&self, start: u64) -> u64 {
        start.saturating_add(self.within).saturating_add(1)
    }
}

/// A complete match of a [`Pattern`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Match<K, D> {
    /// The key shared by the records.
    pub key: K,
    /// Event time of the first record.
    pub start: u64,
    /// Event time of the last record.
    pub end: u64,
    /// The records bound to the positive steps, in step order.
    pub events: Vec<D>,
}

/// The streams a [`MatchSequence::match_sequence`] produces.
pub struct SequenceOutputs<'scope, K, D> {
    /// Complete matches; see the [module documentation](self) for when each is emitted.
    pub matches: Stream<'scope, u64, Vec<Match<K, D>>>,
    /// Records that arrived behind the watermark (never matched), at the time they were sent.
    pub late: Stream<'scope, u64, Vec<D>>,
}

/// Extension trait: match a [`Pattern`] per key, in event-time order.
pub trait MatchSequence<'scope, D: ExchangeData> {
    /// Matches `pattern` against the records of each key (`key(record)`), processed in
    /// `order(record) = (event time, tie_break)` order. See the [module documentation](self).
    ///
    /// # Examples
    /// ```
    /// use timely::dataflow::operators::{Capture, ToStream};
    /// use timely::dataflow::operators::capture::Extract;
    /// use surveil_operators::{MatchSequence, Pattern};
    ///
    /// // (time, account, kind)
    /// let captured = timely::example(|scope| {
    ///     let events = vec![(1u64, 7u32, 'A'), (2, 7, 'C'), (3, 7, 'B'), (4, 7, 'A'), (6, 7, 'B'), (5, 8, 'B')];
    ///     let pattern = Pattern::begin(|e: &(u64, u32, char)| e.2 == 'A')
    ///         .not_followed_by(|_, e| e.2 == 'C')
    ///         .followed_by(|_, e| e.2 == 'B')
    ///         .within(10);
    ///     events.to_stream(scope).match_sequence("AB", |e| e.1, |e| (e.0, 0), pattern).matches.capture()
    /// });
    /// let matches: Vec<_> = captured.extract().into_iter().flat_map(|(_, v)| v).collect();
    /// // The A at 1 is killed by the C at 2; the A at 4 matches the B at 6.
    /// assert_eq!(matches.len(), 1);
    /// assert_eq!((matches[0].key, matches[0].start, matches[0].end), (7, 4, 6));
    /// assert_eq!(matches[0].events, vec![(4, 7, 'A'), (6, 7, 'B')]);
    /// ```
    fn match_sequence<K, KF, OF>(
        self,
        name: &str,
        key: KF,
        order: OF,
        pattern: Pattern<D>,
    ) -> SequenceOutputs<'scope, K, D>
    where
        K: Hash + Eq + Clone + 'static,
        KF: Fn(&D) -> K + Clone + 'static,
        OF: Fn(&D) -> (u64, u64) + Clone + 'static;
}

impl<'scope, D: ExchangeData + Clone> MatchSequence<'scope, D> for Stream<'scope, u64, Vec<D>> {
    fn match_sequence<K, KF, OF>(
        self,
        name: &str,
        key: KF,
        order: OF,
        pattern: Pattern<D>,
    ) -> SequenceOutputs<'scope, K, D>
    where
        K: Hash + Eq + Clone + 'static,
        KF: Fn(&D) -> K + Clone + 'static,
        OF: Fn(&D) -> (u64, u64) + Clone + 'static,
    {
        let mut builder = OperatorBuilder::new(name.to_owned(), self.scope());
        let route_key = key.clone();
        let mut input = builder.new_input(self, Exchange::new(move |d: &D| route(&route_key(d))));
        let (matches_out, matches) = builder.new_output::<Vec<Match<K, D>>>();
        let (late_out, late) = builder.new_output::<Vec<D>>();
        let mut matches_out = OutputBuilder::<_, CapacityContainerBuilder<Vec<Match<K, D>>>>::from(matches_out);
        let mut late_out = OutputBuilder::<_, CapacityContainerBuilder<Vec<D>>>::from(late_out);

        builder.build(move |mut initial| {
            // Late records are sent with the capability of their message. Matches are emitted at
            // or after the watermark of the previous activation (the time of every record still
            // to be processed, and before the expiry of every open run), where `held` stays.
            initial.truncate(1);
            // With an output epoch, `held` stays at the watermark rounded down to the epoch, so
            // that every match time rounded down is at or after it.
            let mut held: Option<Capability<u64>> = initial.pop();
            let epoch = pattern.epoch;
            let mut matcher = Matcher::<K, D>::new(pattern);
            let mut produced: Vec<(u64, Match<K, D>)> = Vec::new();
            let mut late_batch: Vec<D> = Vec::new();
            move |frontiers| {
                let mut matches_out = matches_out.activate();
                let mut late_out = late_out.activate();
                input.for_each_stamp(|cap, data| {
                    let Some(&sent) = cap.least() else {
                        late_out.session(&cap).give_containers(data);
                        return;
                    };
                    for batch in data {
                        for record in batch.drain(..) {
                            let (time, tie_break) = order(&record);
                            if time < sent {
                                late_batch.push(record);
                            } else {
                                matcher.arrive(key(&record), Pending { time, tie_break, record });
                            }
                        }
                    }
                    if !late_batch.is_empty() {
                        late_out.session(&cap).give_container(&mut late_batch);
                        late_batch.clear();
                    }
                });

                let watermark = frontiers[0].frontier().first().copied();
                matcher.advance(watermark, &mut produced);
                if let Some(cap) = held.as_mut() {
                    if !produced.is_empty() {
                        if epoch > 1 {
                            for (time, _) in produced.iter_mut() {
                                *time = *time / epoch * epoch;
                            }
                        }
                        produced.sort_by_key(|(time, _)| *time);
                        let mut rest = produced.drain(..).peekable();
                        while let Some(&(first, _)) = rest.peek() {
                            // Never earlier than the capability (it cannot be, see above).
                            let at = cap.delayed(&first.max(*cap.time()));
                            let mut session = matches_out.session(&at);
                            while let Some((_, m)) = rest.next_if(|(t, _)| *t == first) {
                                session.give(m);
                            }
                        }
                    }
                    match watermark {
                        Some(w) if w / epoch * epoch > *cap.time() => cap.downgrade(&(w / epoch * epoch)),
                        Some(_) => {}
                        None => held = None,
                    }
                }
                produced.clear();
            }
        });

        SequenceOutputs { matches, late }
    }
}

/// A record waiting for the watermark.
struct Pending<D> {
    time: u64,
    tie_break: u64,
    record: D,
}

/// An open partial match.
struct Run<D> {
    start: u64,
    end: u64,
    events: Vec<D>,
}

/// What one key holds: records not yet processed and open runs, oldest first.
struct KeyState<D> {
    pending: Vec<Pending<D>>,
    runs: VecDeque<Run<D>>,
    /// Whether the key is in [`Matcher::dirty`].
    dirty: bool,
}

/// Per-worker matcher state.
struct Matcher<K, D> {
    pattern: Pattern<D>,
    keys: KeyMap<K, KeyState<D>>,
    /// Keys with pending records.
    dirty: Vec<K>,
    /// `(expiry, key)` per run started, in expiry order.
    expiries: VecDeque<(u64, K)>,
    /// Runs started in this activation, appended to `expiries` at its end: they start at or
    /// after the previous watermark, hence expire after every run started before.
    fresh: Vec<(u64, K)>,
    /// Records processed since idle keys were last removed. Idle keys keep their allocations
    /// until then, so that a key seen again soon does not allocate again.
    processed_since_sweep: usize,
}

impl<K: Hash + Eq + Clone, D: Clone> Matcher<K, D> {
    fn new(pattern: Pattern<D>) -> Self {
        Matcher {
            pattern,
            keys: KeyMap::default(),
            dirty: Vec::new(),
            expiries: VecDeque::new(),
            fresh: Vec::new(),
            processed_since_sweep: 0,
        }
    }

    fn arrive(&mut self, key: K, pending: Pending<D>) {
        match self.keys.entry(key) {
            Entry::Occupied(entry) => {
                if !entry.get().dirty {
                    self.dirty.push(entry.key().clone());
                }
                let state = entry.into_mut();
                state.dirty = true;
                state.pending.push(pending);
            }
            Entry::Vacant(entry) => {
                self.dirty.push(entry.key().clone());
                entry.insert(KeyState { pending: vec![pending], runs: VecDeque::new(), dirty: true });
            }
        }
    }

    /// Processes every pending record before `watermark` (all of them for `None`) and every
    /// expiry before it, appending `(time, match)` to `produced`.
    fn advance(&mut self, watermark: Option<u64>, produced: &mut Vec<(u64, Match<K, D>)>) {
        let Matcher { pattern, keys, dirty, expiries, fresh, processed_since_sweep } = self;
        let complete = |time: u64| watermark.is_none_or(|w| time < w);
        let waiting = std::mem::take(dirty);
        for key in waiting {
            let Some(state) = keys.get_mut(&key) else { continue };
            // Records of a key mostly arrive in order.
            if !state.pending.is_sorted_by_key(|p| (p.time, p.tie_break)) {
                state.pending.sort_by_key(|p| (p.time, p.tie_break));
            }
            let ready = state.pending.partition_point(|p| complete(p.time));
            *processed_since_sweep += ready;
            for Pending { time, record, .. } in state.pending.drain(..ready) {
                // Runs that expire at or before `time` end before it is seen.
                expire(pattern, &key, &mut state.runs, time, produced);
                if let Some(expiry) = step(pattern, &key, &mut state.runs, time, record, produced) {
                    fresh.push((expiry, key.clone()));
                }
            }
            if state.pending.is_empty() {
                state.dirty = false;
            } else {
                dirty.push(key);
            }
        }
        fresh.sort_by_key(|(expiry, _)| *expiry);
        let in_order = match (expiries.back(), fresh.first()) {
            (Some(last), Some(first)) => last.0 <= first.0,
            _ => true,
        };
        expiries.extend(fresh.drain(..));
        if !in_order {
            // Not expected (see `fresh`); stay correct anyway.
            expiries.make_contiguous().sort_by_key(|(expiry, _)| *expiry);
        }
        while expiries.front().is_some_and(|(expiry, _)| complete(*expiry)) {
            let Some((time, key)) = expiries.pop_front() else { break };
            if let Some(state) = keys.get_mut(&key) {
                expire(pattern, &key, &mut state.runs, time, produced);
            }
        }
        // Remove idle keys once enough records went by to pay for the scan, or at the end.
        if *processed_since_sweep >= keys.len() || watermark.is_none() {
            keys.retain(|_, state| state.dirty || !state.runs.is_empty());
            *processed_since_sweep = 0;
        }
    }
}

/// Ends the runs that expire at or before `time`: those complete but waiting out trailing
/// negations are emitted at their expiry, the others dropped.
fn expire<K: Clone, D>(
    pattern: &Pattern<D>,
    key: &K,
    runs: &mut VecDeque<Run<D>>,
    time: u64,
    produced: &mut Vec<(u64, Match<K, D>)>,
) {
    while runs.front().is_some_and(|run| pattern.expiry(run.start) <= time) {
        let Some(run) = runs.pop_front() else { break };
        if run.events.len() == pattern.len() {
            let expiry = pattern.expiry(run.start);
            produced.push((expiry, Match { key: key.clone(), start: run.start, end: run.end, events: run.events }));
        }
    }
}

/// Feeds one record to the open runs of its key, in order, and starts a run if it satisfies
/// the first step; returns the expiry of the run started, if any.
fn step<K: Clone, D: Clone>(
    pattern: &Pattern<D>,
    key: &K,
    runs: &mut VecDeque<Run<D>>,
    time: u64,
    record: D,
    produced: &mut Vec<(u64, Match<K, D>)>,
) -> Option<u64> {
    let length = pattern.len();
    let waits_at_end = !pattern.trailing.is_empty();
    runs.retain_mut(|run| {
        let bound = run.events.len();
        if bound == length {
            // Complete, waiting out the trailing negations.
            return !pattern.trailing.iter().any(|negation| negation(&run.events, &record));
        }
        let step = &pattern.steps[bound - 1];
        if (step.predicate)(&run.events, &record) {
            run.events.push(record.clone());
            run.end = time;
            if run.events.len() == length && !waits_at_end {
                let events = std::mem::take(&mut run.events);
                produced.push((time, Match { key: key.clone(), start: run.start, end: run.end, events }));
                return false;
            }
            return true;
        }
        !step.negations.iter().any(|negation| negation(&run.events, &record))
    });
    if !(pattern.first)(&record) {
        return None;
    }
    if length == 1 && !waits_at_end {
        produced.push((time, Match { key: key.clone(), start: time, end: time, events: vec![record] }));
        return None;
    }
    let mut events = Vec::with_capacity(length);
    events.push(record);
    runs.push_back(Run { start: time, end: time, events });
    Some(pattern.expiry(time))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::{Mutex, mpsc};
    use timely::dataflow::InputHandleVec;
    use timely::dataflow::operators::Probe;
    use timely::dataflow::operators::capture::{Capture, Event, Extract};

    /// (event time, key, kind, side, order, id); the id is unique and breaks ties.
    type Ev = (u64, u8, u8, u8, u8, u32);
    type Predicate = fn(&[Ev], &Ev) -> bool;
    /// (emission time, match) and late ids, sorted.
    type Outcome = (Vec<(u64, Match<u8, Ev>)>, Vec<u32>);

    /// A pattern as plain data, for building both the operator's [`Pattern`] and the oracle.
    struct Spec {
        first: fn(&Ev) -> bool,
        /// (negations before, positive step)
        steps: Vec<(Vec<Predicate>, Predicate)>,
        trailing: Vec<Predicate>,
        within: u64,
    }

    impl Spec {
        fn pattern(&self) -> Pattern<Ev> {
            let mut pattern = Pattern::begin(self.first);
            for (negations, step) in &self.steps {
                for n in negations {
                    pattern = pattern.not_followed_by(*n);
                }
                pattern = pattern.followed_by(*step);
            }
            for n in &self.trailing {
                pattern = pattern.not_followed_by(*n);
            }
            pattern.within(self.within)
        }
    }

    /// Kinds: 0 large order, 1 fill, 2 amend, 3 cancel.
    fn spec(which: u8, within: u64) -> Spec {
        let large: fn(&Ev) -> bool = |e| e.2 == 0;
        let opposite_fill: Predicate = |m, e| e.2 == 1 && e.3 != m[0].3;
        let amend_of_first: Predicate = |m, e| e.2 == 2 && e.4 == m[0].4;
        let cancel_of_first: Predicate = |m, e| e.2 == 3 && e.4 == m[0].4;
        let any_amend: Predicate = |_, e| e.2 == 2;
        match which {
            // large order, no amend of it, opposite fill, (no amend at all,) cancel of it
            0 => Spec {
                first: large,
                steps: vec![(vec![amend_of_first], opposite_fill), (vec![any_amend], cancel_of_first)],
                trailing: vec![],
                within,
            },
            // large order, opposite fill, and no cancel of the order until start + within
            1 => Spec { first: large, steps: vec![(vec![], opposite_fill)], trailing: vec![cancel_of_first], within },
            // a single step
            2 => Spec { first: large, steps: vec![], trailing: vec![], within },
            // a single step with trailing negations
            _ => Spec { first: large, steps: vec![], trailing: vec![amend_of_first, cancel_of_first], within },
        }
    }

    /// Skip-till-next-match, by recursion over the key's events in (time, id) order: `bound`
    /// holds the indices bound so far; returns the completed indices.
    fn extend(events: &[Ev], spec: &Spec, bound: &mut Vec<usize>) -> bool {
        let start = events[bound[0]].0;
        let last = bound[bound.len() - 1];
        let matched: Vec<Ev> = bound.iter().map(|&i| events[i]).collect();
        let step = bound.len() - 1;
        if step == spec.steps.len() {
            let killed = events[last + 1..]
                .iter()
                .filter(|e| e.0 <= start + spec.within)
                .any(|e| spec.trailing.iter().any(|n| n(&matched, e)));
            return !killed;
        }
        let (negations, positive) = &spec.steps[step];
        for (k, e) in events.iter().enumerate().skip(last + 1) {
            if e.0 > start + spec.within {
                return false;
            }
            if positive(&matched, e) {
                bound.push(k);
                return extend(events, spec, bound);
            }
            if negations.iter().any(|n| n(&matched, e)) {
                return false;
            }
        }
        false
    }

    /// (emission time, match) for every match in the whole input.
    fn oracle(input: &[Sent], spec: &Spec) -> Outcome {
        let mut matches = Vec::new();
        let mut keys: Vec<u8> = input.iter().map(|s| s.ev.1).collect();
        keys.sort();
        keys.dedup();
        for key in keys {
            let mut events: Vec<Ev> = input.iter().filter(|s| s.at <= s.ev.0 && s.ev.1 == key).map(|s| s.ev).collect();
            events.sort_by_key(|e| (e.0, e.5));
            for i in 0..events.len() {
                if !(spec.first)(&events[i]) {
                    continue;
                }
                let mut bound = vec![i];
                if extend(&events, spec, &mut bound) {
                    let (start, end) = (events[i].0, events[bound[bound.len() - 1]].0);
                    let at = if spec.trailing.is_empty() { end } else { start + spec.within + 1 };
                    let events = bound.iter().map(|&k| events[k]).collect();
                    matches.push((at, Match { key, start, end, events }));
                }
            }
        }
        matches.sort();
        let mut late: Vec<u32> = input.iter().filter(|s| s.at > s.ev.0).map(|s| s.ev.5).collect();
        late.sort();
        (matches, late)
    }

    const ROUND: u64 = 4;

    #[derive(Clone, Debug)]
    struct Sent {
        ev: Ev,
        at: u64,
    }

    fn run(workers: usize, sync: bool, input: Vec<Sent>, which: u8, within: u64, epoch: u64) -> Outcome {
        let (matches_tx, matches_rx) = mpsc::channel();
        let (late_tx, late_rx): (_, mpsc::Receiver<Event<u64, Vec<Ev>>>) = mpsc::channel();
        let senders = Mutex::new((matches_tx, late_tx));
        let last_round = input.iter().map(|s| s.at).max().unwrap_or(0);
        timely::execute(timely::Config::process(workers), move |worker| {
            let (matches_tx, late_tx) = senders.lock().map(|s| s.clone()).expect("lock");
            let (index, peers) = (worker.index(), worker.peers());
            let mut events = InputHandleVec::<u64, Ev>::new();
            let probe = worker.dataflow(|scope| {
                let out = events.to_stream(scope).match_sequence(
                    "Seq",
                    |e| e.1,
                    |e| (e.0, u64::from(e.5)),
                    spec(which, within).pattern().output_epoch(epoch),
                );
                let (probe, matches) = out.matches.probe();
                matches.capture_into(matches_tx);
                out.late.capture_into(late_tx);
                probe
            });
            for round in (0..=last_round).step_by(ROUND as usize) {
                events.advance_to(round);
                for s in input.iter().filter(|s| s.at == round && s.ev.5 as usize % peers == index) {
                    events.send(s.ev);
                }
                if sync {
                    // With an output epoch the output frontier stays at the watermark rounded down.
                    let reached = *events.time() / epoch.max(1) * epoch.max(1);
                    while probe.less_than(&reached) {
                        worker.step_or_park(None);
                    }
                } else {
                    worker.step();
                }
            }
        })
        .expect("timely runs");
        let mut matches: Vec<_> =
            matches_rx.extract().into_iter().flat_map(|(t, v)| v.into_iter().map(move |m| (t, m))).collect();
        matches.sort();
        let mut late: Vec<u32> = late_rx.extract().into_iter().flat_map(|(_, v)| v).map(|e| e.5).collect();
        late.sort();
        (matches, late)
    }

    fn inputs() -> impl Strategy<Value = Vec<Sent>> {
        (prop_oneof![Just(1u8), Just(3u8)], prop_oneof![Just(200u64), Just(20u64)], 0u64..=20).prop_flat_map(
            |(keys, horizon, bound)| {
                let event =
                    (0..horizon, any::<bool>(), 0..keys, 0u8..4, 0u8..2, 0u8..3, 0..=bound, prop::bool::weighted(0.1));
                prop::collection::vec(event, 0..60).prop_map(|v| {
                    v.into_iter()
                        .enumerate()
                        .map(|(i, (time, snap, key, kind, side, order, delay, late))| {
                            // Times on round boundaries exercise the edges of the watermark.
                            let time = if snap { time / ROUND * ROUND } else { time };
                            let delay = if snap { delay / ROUND * ROUND } else { delay };
                            let at = if late {
                                (time / ROUND + 1 + delay % 3) * ROUND
                            } else {
                                time.saturating_sub(delay) / ROUND * ROUND
                            };
                            Sent { ev: (time, key, kind, side, order, i as u32), at }
                        })
                        .collect()
                })
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn matches_the_recursive_matcher(
            input in inputs(),
            which in 0u8..4,
            within in 0u64..80,
            workers in 1usize..=4,
            sync in any::<bool>(),
            epoch in prop_oneof![3 => Just(1u64), 1 => 0u64..12],
        ) {
            let (mut expected, late) = oracle(&input, &spec(which, within));
            let epoch = epoch.max(1);
            for (time, _) in expected.iter_mut() {
                *time = *time / epoch * epoch;
            }
            expected.sort();
            let got = run(workers, sync, input, which, within, epoch);
            let expected = (expected, late);
            prop_assert_eq!(got, expected);
        }
    }

    #[test]
    fn state_is_released_after_within() {
        let pattern = Pattern::begin(|e: &(u64, u8)| e.1 == 0).followed_by(|_, e| e.1 == 1).within(10);
        let mut matcher = Matcher::<u8, (u64, u8)>::new(pattern);
        let mut produced = Vec::new();
        for (time, kind) in [(0, 0), (3, 2), (20, 0), (25, 1)] {
            matcher.arrive(7, Pending { time, tie_break: 0, record: (time, kind) });
        }
        matcher.advance(Some(5), &mut produced);
        assert_eq!((matcher.keys[&7].runs.len(), matcher.keys[&7].pending.len()), (1, 2));
        // The run from 0 expired at 11, unmatched; the run from 20 matched at 25.
        matcher.advance(Some(26), &mut produced);
        assert_eq!(produced.len(), 1);
        assert!(matcher.keys.is_empty());
        // The expiry of the matched run is dropped when its time comes.
        assert_eq!(matcher.expiries.len(), 1);
        matcher.advance(Some(32), &mut produced);
        assert!(matcher.expiries.is_empty() && matcher.keys.is_empty());
        assert_eq!(produced.len(), 1);
    }

    #[test]
    fn empty_input_produces_nothing() {
        assert_eq!(run(3, true, Vec::new(), 0, 10, 1), (Vec::new(), Vec::new()));
    }

    /// The surveillance example with named types: a large order, an opposite-side fill by the
    /// same account, then the cancel of the large order, within T.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
    enum Kind {
        Order { large: bool },
        Fill,
        Cancel,
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
    struct Action {
        time: u64,
        seq: u64,
        account: u32,
        order: u32,
        buy: bool,
        kind: Kind,
    }

    #[test]
    fn large_order_opposite_fill_then_cancel() {
        const T: u64 = 1_000;
        let act = |time, seq, account, order, buy, kind| Action { time, seq, account, order, buy, kind };
        let input = vec![
            // account 1: spoofing-like sequence, matches
            act(100, 1, 1, 10, true, Kind::Order { large: true }),
            act(300, 2, 1, 11, false, Kind::Fill),
            act(500, 3, 1, 10, true, Kind::Cancel),
            // account 2: the fill is on the same side, no match
            act(100, 4, 2, 20, true, Kind::Order { large: true }),
            act(200, 5, 2, 21, true, Kind::Fill),
            act(300, 6, 2, 20, true, Kind::Cancel),
            // account 3: cancel too late, no match
            act(100, 7, 3, 30, false, Kind::Order { large: true }),
            act(150, 8, 3, 31, true, Kind::Fill),
            act(1_101, 9, 3, 30, false, Kind::Cancel),
            // account 4: cancels another order, then the large one exactly at T: match
            act(0, 10, 4, 40, false, Kind::Order { large: true }),
            act(10, 11, 4, 41, true, Kind::Fill),
            act(20, 12, 4, 42, false, Kind::Cancel),
            act(1_000, 13, 4, 40, false, Kind::Cancel),
        ];
        for workers in 1..=2 {
            let (tx, rx) = mpsc::channel();
            let tx = Mutex::new(tx);
            let input = input.clone();
            timely::execute(timely::Config::process(workers), move |worker| {
                let tx = tx.lock().map(|t| t.clone()).expect("lock");
                let mut actions = InputHandleVec::<u64, Action>::new();
                worker.dataflow(|scope| {
                    let pattern = Pattern::begin(|a: &Action| a.kind == Kind::Order { large: true })
                        .followed_by(|m, a| a.kind == Kind::Fill && a.buy != m[0].buy)
                        .followed_by(|m, a| a.kind == Kind::Cancel && a.order == m[0].order)
                        .within(T);
                    let out =
                        actions.to_stream(scope).match_sequence("Spoof", |a| a.account, |a| (a.time, a.seq), pattern);
                    out.matches.capture_into(tx);
                });
                if worker.index() == 0 {
                    for a in &input {
                        actions.send(*a);
                    }
                }
            })
            .expect("timely runs");
            let mut got: Vec<(u32, u64, u64, Vec<u64>)> = rx
                .extract()
                .into_iter()
                .flat_map(|(_, v)| v)
                .map(|m| (m.key, m.start, m.end, m.events.iter().map(|a| a.seq).collect()))
                .collect();
            got.sort();
            assert_eq!(got, vec![(1, 100, 500, vec![1, 2, 3]), (4, 0, 1_000, vec![10, 11, 13])], "workers {workers}");
        }
    }
}
