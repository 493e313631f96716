//! Lookups as of event time: each record of a stream sees a changing reference collection as it
//! stood at the record's own event time.
//!
//! Reference data (who owns an account, which accounts are linked, an instrument's tick size)
//! changes while a stream runs, and a record must be judged by the reference data of its own
//! moment, not by whatever was loaded last: a trade made before two accounts were linked is not
//! a trade between linked accounts. The reference is a differential collection of `(key,
//! value)` pairs over event time (an insert at the time a fact starts to hold, a retraction when
//! it stops); a record at event time `t` sees, for a key, the values whose accumulated count
//! over updates at times `<= t` is positive.
//!
//! # Semantics
//!
//! * **Placement.** The reference's updates are broadcast to every worker (reference data is
//!   small next to the event stream), and the records stay on their worker: no exchange of the
//!   main stream.
//! * **Completeness.** A record at event time `t` is answered once the reference's frontier
//!   has passed `t` (every update at a time `<= t` has arrived); until then it waits, holding a
//!   capability at the time it was sent at (one per such time), and goes as soon as its own time
//!   has passed, whatever the others sent with it wait for. A reference that is fully loaded up front (its
//!   input closed) answers at once, and so does a reference whose frontier runs ahead.
//! * **Output.** One output per record, `logic(record, &as_of)`, at the time the record was
//!   sent at, so the operator adds no delay of its own beyond waiting for the reference.
//! * **State.** The reference's history is kept per key; updates at times that no record can
//!   still ask about (at or below both the stream's frontier and the times of the waiting
//!   records) are folded into one accumulated state per key.
//! * **Messages without a time** (an empty stamp, which makes no claim on progress) are
//!   answered at once, as of each record's time, without waiting for the reference.
//! * **Late records.** The crate-wide contract holds here too: a record's event time is not
//!   earlier than the time it travels at. A record sent later than its event time is answered
//!   as of its event time, except that updates already folded (at most up to the stream's
//!   frontier) are included.

use std::collections::BTreeMap;
use std::hash::Hash;

use differential_dataflow::{ExchangeData, VecCollection};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::Stream;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::{Capability, Operator};

use crate::hashing::{KeyMap, KeySet};

/// The history of one key's values: an accumulated base, and the updates after it.
struct History<V> {
    /// Values and their counts, accumulated over every folded update (counts never zero).
    base: Vec<(V, isize)>,
    /// Updates not folded yet, in arrival order.
    changes: Vec<(u64, V, isize)>,
}

impl<V> Default for History<V> {
    fn default() -> Self {
        History { base: Vec::new(), changes: Vec::new() }
    }
}

impl<V: Ord + Clone> History<V> {
    /// Folds the updates at times `<= bound` into the base.
    fn fold_to(&mut self, bound: u64) {
        let (now, later): (Vec<_>, Vec<_>) = self.changes.drain(..).partition(|(t, _, _)| *t <= bound);
        self.changes = later;
        if now.is_empty() {
            return;
        }
        let mut counts: BTreeMap<V, isize> = self.base.drain(..).collect();
        for (_, value, diff) in now {
            *counts.entry(value).or_default() += diff;
        }
        self.base = counts.into_iter().filter(|(_, c)| *c != 0).collect();
    }

    /// The values with a positive count over the updates at times `<= time`, ascending.
    fn values_at(&self, time: u64) -> Vec<&V> {
        if self.changes.iter().all(|(t, _, _)| *t > time) {
            return self.base.iter().filter(|(_, c)| *c > 0).map(|(v, _)| v).collect();
        }
        let mut counts: BTreeMap<&V, isize> = self.base.iter().map(|(v, c)| (v, *c)).collect();
        for (_, value, diff) in self.changes.iter().filter(|(t, _, _)| *t <= time) {
            *counts.entry(value).or_default() += diff;
        }
        counts.into_iter().filter(|(_, c)| *c > 0).map(|(v, _)| v).collect()
    }
}

/// Records sent at one time that wait for the reference: the capability at that time, the
/// least event time among them, and the records with their event times.
type Waiting<D> = (Capability<u64>, u64, Vec<(u64, D)>);

/// The reference collection as of one record's event time, handed to the lookup's logic.
pub struct AsOf<'a, K, V> {
    histories: &'a KeyMap<K, History<V>>,
    time: u64,
}

impl<'a, K: Hash + Eq, V: Ord + Clone> AsOf<'a, K, V> {
    /// The event time the lookups are made as of.
    pub fn time(&self) -> u64 {
        self.time
    }

    /// The values of `key` at this time, ascending (empty when the key has none).
    pub fn values(&self, key: &K) -> Vec<&'a V> {
        self.histories.get(key).map(|h| h.values_at(self.time)).unwrap_or_default()
    }

    /// The least value of `key` at this time, for references that hold one value per key.
    pub fn first(&self, key: &K) -> Option<&'a V> {
        self.values(key).into_iter().next()
    }

    /// The reference as of another time. Exact for times not earlier than the time the record
    /// was sent at (history before the stream's frontier may have been folded) and not later
    /// than the time the lookup was made as of (later updates may not have arrived): a lookup
    /// that needs a span of time looks up as of the span's end and reads earlier times here.
    pub fn at(&self, time: u64) -> AsOf<'a, K, V> {
        AsOf { histories: self.histories, time }
    }

    /// The times in `(from, to]` at which the values of `key` change, ascending (with the
    /// same exactness as [`AsOf::at`]).
    pub fn change_times(&self, key: &K, from: u64, to: u64) -> Vec<u64> {
        let mut times: Vec<u64> = self
            .histories
            .get(key)
            .map(|h| h.changes.iter().map(|c| c.0).filter(|t| from < *t && *t <= to).collect())
            .unwrap_or_default();
        times.sort_unstable();
        times.dedup();
        times
    }
}

/// Extension trait: look records up in a changing reference collection as of their event time.
pub trait LookupAsOf<'scope, D> {
    /// For each record, `logic(record, &as_of)` where `as_of` shows `reference` as it stood at
    /// the record's event time `time(&record)`. See the [module documentation](self).
    ///
    /// # Examples
    /// ```
    /// use differential_dataflow::AsCollection;
    /// use surveil_operators::LookupAsOf;
    /// use timely::dataflow::operators::capture::{Capture, Extract};
    /// use timely::dataflow::operators::ToStream;
    ///
    /// let out = timely::example(|scope| {
    ///     // Account 7 belongs to group 1 from time 0, to group 2 from time 100.
    ///     let groups = vec![((7u32, 1u32), 0u64, 1isize), ((7, 1), 100, -1), ((7, 2), 100, 1)]
    ///         .to_stream(scope)
    ///         .as_collection();
    ///     // (event time, account)
    ///     let trades = vec![(50u64, 7u32), (150, 7), (60, 8)].to_stream(scope);
    ///     trades
    ///         .lookup_as_of("Groups", groups, |t| t.0, |t, as_of| (t.0, as_of.first(&t.1).copied()))
    ///         .capture()
    /// });
    /// let mut seen: Vec<_> = out.extract().into_iter().flat_map(|(_, d)| d).collect();
    /// seen.sort();
    /// assert_eq!(seen, vec![(50, Some(1)), (60, None), (150, Some(2))]);
    /// ```
    fn lookup_as_of<K, V, O, TF, L>(
        self,
        name: &str,
        reference: VecCollection<'scope, u64, (K, V), isize>,
        time: TF,
        logic: L,
    ) -> Stream<'scope, u64, Vec<O>>
    where
        K: ExchangeData + Hash,
        V: ExchangeData,
        O: Clone + 'static,
        TF: Fn(&D) -> u64 + 'static,
        L: FnMut(D, &AsOf<'_, K, V>) -> O + 'static;

    /// [`LookupAsOf::lookup_as_of`] for logic that updates each record in place (enrichment):
    /// a message whose records can all be answered at once (a reference loaded up front, or
    /// one whose frontier runs ahead) passes on in its own container, not copied record by
    /// record. The answers are the same.
    ///
    /// # Examples
    /// ```
    /// use differential_dataflow::AsCollection;
    /// use surveil_operators::LookupAsOf;
    /// use timely::dataflow::operators::capture::{Capture, Extract};
    /// use timely::dataflow::operators::ToStream;
    ///
    /// let out = timely::example(|scope| {
    ///     let groups = vec![((7u32, 1u32), 0u64, 1isize), ((7, 1), 100, -1), ((7, 2), 100, 1)]
    ///         .to_stream(scope)
    ///         .as_collection();
    ///     // (event time, account, its group)
    ///     let trades = vec![(50u64, 7u32, None), (150, 7, None), (60, 8, None)].to_stream(scope);
    ///     trades
    ///         .update_as_of("Groups", groups, |t| t.0, |t, as_of| t.2 = as_of.first(&t.1).copied())
    ///         .capture()
    /// });
    /// let mut seen: Vec<_> = out.extract().into_iter().flat_map(|(_, d)| d).collect();
    /// seen.sort();
    /// assert_eq!(seen, vec![(50, 7, Some(1)), (60, 8, None), (150, 7, Some(2))]);
    /// ```
    fn update_as_of<K, V, TF, L>(
        self,
        name: &str,
        reference: VecCollection<'scope, u64, (K, V), isize>,
        time: TF,
        logic: L,
    ) -> Stream<'scope, u64, Vec<D>>
    where
        K: ExchangeData + Hash,
        V: ExchangeData,
        TF: Fn(&D) -> u64 + 'static,
        L: FnMut(&mut D, &AsOf<'_, K, V>) + 'static;
}

/// How the operator answers records: one at a time into new records, or (when the records are
/// their own answers) a whole message in place.
trait Answer<D, K, V> {
    type Out: Clone + 'static;
    /// The answer to one record.
    fn one(&mut self, record: D, as_of: &AsOf<'_, K, V>) -> Self::Out;
    /// Answers every record of `batch` in place and hands it back as the output, when this
    /// kind of answer can (the caller has checked that every record can be answered now).
    fn whole<'b>(
        &mut self,
        _batch: &'b mut Vec<D>,
        _histories: &KeyMap<K, History<V>>,
        _time: &dyn Fn(&D) -> u64,
    ) -> Option<&'b mut Vec<Self::Out>> {
        None
    }
}

/// Records mapped to answers of another type.
struct Mapped<L>(L);

impl<D, K, V, O: Clone + 'static, L: FnMut(D, &AsOf<'_, K, V>) -> O> Answer<D, K, V> for Mapped<L> {
    type Out = O;
    fn one(&mut self, record: D, as_of: &AsOf<'_, K, V>) -> O {
        (self.0)(record, as_of)
    }
}

/// Records updated in place.
struct InPlace<L>(L);

impl<D: Clone + 'static, K, V, L: FnMut(&mut D, &AsOf<'_, K, V>)> Answer<D, K, V> for InPlace<L> {
    type Out = D;
    fn one(&mut self, mut record: D, as_of: &AsOf<'_, K, V>) -> D {
        (self.0)(&mut record, as_of);
        record
    }
    fn whole<'b>(
        &mut self,
        batch: &'b mut Vec<D>,
        histories: &KeyMap<K, History<V>>,
        time: &dyn Fn(&D) -> u64,
    ) -> Option<&'b mut Vec<D>> {
        for record in batch.iter_mut() {
            let as_of = AsOf { histories, time: time(record) };
            (self.0)(record, &as_of);
        }
        Some(batch)
    }
}

impl<'scope, D: Clone + 'static> LookupAsOf<'scope, D> for Stream<'scope, u64, Vec<D>> {
    fn lookup_as_of<K, V, O, TF, L>(
        self,
        name: &str,
        reference: VecCollection<'scope, u64, (K, V), isize>,
        time: TF,
        logic: L,
    ) -> Stream<'scope, u64, Vec<O>>
    where
        K: ExchangeData + Hash,
        V: ExchangeData,
        O: Clone + 'static,
        TF: Fn(&D) -> u64 + 'static,
        L: FnMut(D, &AsOf<'_, K, V>) -> O + 'static,
    {
        as_of_operator(self, name, reference, time, Mapped(logic))
    }

    fn update_as_of<K, V, TF, L>(
        self,
        name: &str,
        reference: VecCollection<'scope, u64, (K, V), isize>,
        time: TF,
        logic: L,
    ) -> Stream<'scope, u64, Vec<D>>
    where
        K: ExchangeData + Hash,
        V: ExchangeData,
        TF: Fn(&D) -> u64 + 'static,
        L: FnMut(&mut D, &AsOf<'_, K, V>) + 'static,
    {
        as_of_operator(self, name, reference, time, InPlace(logic))
    }
}

/// The operator behind both lookups.
fn as_of_operator<'scope, D, K, V, TF, A>(
    stream: Stream<'scope, u64, Vec<D>>,
    name: &str,
    reference: VecCollection<'scope, u64, (K, V), isize>,
    time: TF,
    mut answer: A,
) -> Stream<'scope, u64, Vec<A::Out>>
where
    D: Clone + 'static,
    K: ExchangeData + Hash,
    V: ExchangeData,
    TF: Fn(&D) -> u64 + 'static,
    A: Answer<D, K, V> + 'static,
{
    let updates = reference.inner.broadcast();
    stream.binary_frontier::<_, CapacityContainerBuilder<Vec<A::Out>>, _, _, _, _>(
        updates,
        Pipeline,
        Pipeline,
        name,
        move |_initial, _info| {
            let mut histories: KeyMap<K, History<V>> = KeyMap::default();
            // Keys with updates not folded yet.
            let mut changed: KeySet<K> = KeySet::default();
            // Records waiting for the reference, by the time they were sent at: the
            // capability, the least event time among them, the records with their times.
            // Each record goes as soon as the reference has passed its own time.
            let mut waiting: BTreeMap<u64, Waiting<D>> = BTreeMap::new();
            let mut folded_to: Option<u64> = None;
            move |(records, records_frontier), (updates, reference_frontier), output| {
                updates.for_each_stamp(|_cap, data| {
                    for batch in data {
                        for ((key, value), t, diff) in batch.drain(..) {
                            changed.insert(key.clone());
                            histories.entry(key).or_default().changes.push((t, value, diff));
                        }
                    }
                });
                let port = output.output_index();
                records.for_each_stamp(|cap, data| {
                    let Some(&sent) = cap.least() else {
                        // No claims on time: answer at once as of each record's time.
                        let mut session = output.session(&cap);
                        for batch in data {
                            for record in batch.drain(..) {
                                let as_of = AsOf { histories: &histories, time: time(&record) };
                                session.give(answer.one(record, &as_of));
                            }
                        }
                        return;
                    };
                    // One session for the records answered at once (a session per record
                    // would make a message of each).
                    let mut session = output.session(&cap);
                    for batch in data {
                        // A message answered all at once, in place when the answer allows.
                        if !batch.iter().any(|r| reference_frontier.less_equal(&time(r)))
                            && let Some(answered) = answer.whole(batch, &histories, &time)
                        {
                            session.give_container(answered);
                            continue;
                        }
                        for record in batch.drain(..) {
                            let at = time(&record);
                            if reference_frontier.less_equal(&at) {
                                let entry =
                                    waiting.entry(sent).or_insert_with(|| (cap.delayed(&sent, port), at, Vec::new()));
                                entry.1 = entry.1.min(at);
                                entry.2.push((at, record));
                            } else {
                                let as_of = AsOf { histories: &histories, time: at };
                                session.give(answer.one(record, &as_of));
                            }
                        }
                    }
                });
                let mut emptied = Vec::new();
                for (sent, (cap, earliest, batch)) in waiting.iter_mut() {
                    if reference_frontier.less_equal(earliest) {
                        continue;
                    }
                    let mut session = output.session(&*cap);
                    let mut rest = Vec::new();
                    for (at, record) in batch.drain(..) {
                        if reference_frontier.less_equal(&at) {
                            rest.push((at, record));
                        } else {
                            session.give(answer.one(record, &AsOf { histories: &histories, time: at }));
                        }
                    }
                    *earliest = rest.iter().map(|(at, _)| *at).min().unwrap_or(u64::MAX);
                    *batch = rest;
                    if batch.is_empty() {
                        emptied.push(*sent);
                    }
                }
                for sent in emptied {
                    waiting.remove(&sent);
                }
                // Fold what no record can still ask about.
                let mut bound = records_frontier.frontier().first().copied().unwrap_or(u64::MAX);
                if let Some(&first_waiting) = waiting.keys().next() {
                    bound = bound.min(first_waiting);
                }
                if folded_to.is_none_or(|f| f < bound) && !changed.is_empty() {
                    changed.retain(|key| {
                        let Some(history) = histories.get_mut(key) else { return false };
                        history.fold_to(bound);
                        if history.base.is_empty() && history.changes.is_empty() {
                            histories.remove(key);
                            return false;
                        }
                        !history.changes.is_empty()
                    });
                    folded_to = Some(bound);
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use differential_dataflow::AsCollection;
    use proptest::prelude::*;
    use timely::container::CapacityContainerBuilder;
    use timely::dataflow::InputHandle;
    use timely::dataflow::operators::capture::{Capture, Extract};
    use timely::dataflow::operators::vec::Map;
    use timely::dataflow::operators::{Concat, Input, Probe};

    use super::*;

    /// Batch oracle: the values of `key` over the updates at times `<= time`.
    fn oracle(updates: &[((u8, u8), u64, isize)], key: u8, time: u64) -> Vec<u8> {
        let mut counts: BTreeMap<u8, isize> = BTreeMap::new();
        for ((k, v), t, d) in updates {
            if *k == key && *t <= time {
                *counts.entry(*v).or_default() += d;
            }
        }
        counts.into_iter().filter(|(_, c)| *c > 0).map(|(v, _)| v).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Records fed in rounds behind a watermark, and reference updates fed through a live
        /// input that runs behind, ahead of or level with the records, give the batch answer.
        #[test]
        fn matches_batch_oracle(
            updates in prop::collection::vec(((0u8..4, 0u8..4), 0u64..60, prop::sample::select(vec![1isize, -1, 1])), 0..30),
            records in prop::collection::vec((0u64..60, 0u8..4), 0..40),
            reference_lag in 0u64..20,
            reference_lead in 0u64..20,
        ) {
            let expected: Vec<(u64, u8, Vec<u8>)> = {
                let mut e: Vec<_> = records.iter().map(|&(t, k)| (t, k, oracle(&updates, k, t))).collect();
                e.sort();
                e
            };
            let (records2, updates2) = (records.clone(), updates.clone());
            let captured = timely::execute_directly(move |worker| {
                let mut events = InputHandle::<u64, CapacityContainerBuilder<Vec<(u64, u8)>>>::new();
                let mut reference = InputHandle::<u64, CapacityContainerBuilder<Vec<((u8, u8), u64, isize)>>>::new();
                let (probe, captured, in_place) = worker.dataflow::<u64, _, _>(|scope| {
                    let collection = scope.input_from(&mut reference).as_collection();
                    let records = scope.input_from(&mut events);
                    // The same lookup updating records in place.
                    let in_place = records
                        .clone()
                        .map(|r: (u64, u8)| (r.0, r.1, Vec::new()))
                        .update_as_of("InPlace", collection.clone(), |r: &(u64, u8, Vec<u8>)| r.0, |r, as_of| {
                            r.2 = as_of.values(&r.1).into_iter().copied().collect();
                        });
                    let (probe, out) = records
                        .lookup_as_of("Oracle", collection, |r: &(u64, u8)| r.0, |r, as_of| {
                            (r.0, r.1, as_of.values(&r.1).into_iter().copied().collect::<Vec<u8>>())
                        })
                        .concat(in_place.clone())
                        .probe();
                    (probe, out.capture(), in_place.capture())
                });
                // Rounds of 10 time units; the reference's input moves `reference_lead` ahead
                // of the records' watermark minus `reference_lag`.
                for round in 0..8u64 {
                    let (from, to) = (round * 10, round * 10 + 10);
                    for r in records2.iter().filter(|r| r.0 >= from && r.0 < to) {
                        events.send(*r);
                    }
                    let reference_to = (to + reference_lead).saturating_sub(reference_lag).max(*reference.time());
                    let now = *reference.time();
                    for u in updates2.iter().filter(|u| u.1 >= now && u.1 < reference_to) {
                        reference.send(*u);
                    }
                    reference.advance_to(reference_to);
                    events.advance_to(to);
                    for _ in 0..3 {
                        worker.step();
                    }
                }
                let now = *reference.time();
                for u in updates2.iter().filter(|u| u.1 >= now) {
                    reference.send(*u);
                }
                drop((events, reference));
                while !probe.done() {
                    worker.step();
                }
                (captured, in_place)
            });
            let mut in_place: Vec<(u64, u8, Vec<u8>)> = captured.1.extract().into_iter().flat_map(|(_, d)| d).collect();
            in_place.sort();
            let mut both: Vec<(u64, u8, Vec<u8>)> = captured.0.extract().into_iter().flat_map(|(_, d)| d).collect();
            both.sort();
            let mut twice: Vec<(u64, u8, Vec<u8>)> = expected.iter().flat_map(|e| [e.clone(), e.clone()]).collect();
            twice.sort();
            prop_assert_eq!(&in_place, &expected);
            prop_assert_eq!(both, twice);
        }
    }
}
