//! Records held until a side stream of changes has been applied up to their own event time.
//!
//! Some state cannot travel with the records as a collection: reference data that many
//! operators read directly (an instrument's tick size, an account's desk), kept in a store
//! shared by the operators of a worker. When it changes while the stream runs, each change
//! must be in that store before any record of its time or later is processed, and no record
//! before it may see it, whichever worker and whatever interleaving. This operator gives that
//! order: it applies the changes (broadcast to every worker) in time order, and releases each
//! record once exactly the changes at or before its time have been applied.
//!
//! # Semantics
//!
//! * **Placement.** The changes are broadcast: every worker applies every change (an
//!   application shared between the workers of a process must tolerate being made once per
//!   worker). The records stay on their worker.
//! * **Application.** A change at time `c` is applied once the changes' frontier has passed
//!   `c` and the records' frontier has reached it (no record earlier than `c` can still come),
//!   after every record earlier than `c` has been released; changes in order of time (those of
//!   one time in no promised order: give them ids where it matters). A change without a time
//!   (an empty stamp) is applied as it comes, at time 0.
//! * **Release.** A record at event time `t` goes once the changes' frontier has passed `t`
//!   and every change at a time `<= t` has been applied, at the time it was sent at; `release`
//!   sees it then, with exactly those changes applied. Operators downstream run later, when
//!   more changes may have been applied: what they read of the state must be kept per time
//!   (as of the record's time). A record that needs no wait goes at once, so a change stream
//!   that has finished costs one comparison per message.
//! * **Frontier.** The output's frontier stays at the first time whose changes are not all
//!   applied: operators downstream that wait for the frontier (timers, time-ordered
//!   processing, on any worker or process) see a time only once every worker has applied the
//!   changes up to it.
//! * **Event time.** As everywhere in this crate, a record's event time is not earlier than the
//!   time it was sent at: the records' frontier reaching `c` is taken to mean that no record
//!   earlier than `c` can come.
//! * **Messages without a time** make no claim on progress and go at once.

use std::collections::BTreeMap;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::Stream;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::{Capability, Operator};

/// Extension trait: release records after the changes that precede them have been applied.
pub trait AfterChanges<'scope, D> {
    /// Each record of the stream, given to `release` once every change of `changes` at a
    /// time `<= time(&record)`, and none later, has been given to `apply` (with its time, in
    /// time order).
    ///
    /// # Examples
    /// ```
    /// use std::cell::{Cell, RefCell};
    /// use std::rc::Rc;
    ///
    /// use surveil_operators::AfterChanges;
    /// use timely::container::CapacityContainerBuilder;
    /// use timely::dataflow::InputHandle;
    /// use timely::dataflow::operators::{Input, Inspect, Probe};
    ///
    /// let breaches = timely::execute_directly(|worker| {
    ///     let mut limits = InputHandle::<u64, CapacityContainerBuilder<Vec<u64>>>::new();
    ///     let mut prices = InputHandle::<u64, CapacityContainerBuilder<Vec<(u64, u64, bool)>>>::new();
    ///     let seen = Rc::new(RefCell::new(Vec::new()));
    ///     let out = seen.clone();
    ///     let probe = worker.dataflow(|scope| {
    ///         // A price limit that changes while prices stream: (time, price, breach).
    ///         let limit = Rc::new(Cell::new(100u64));
    ///         let applied = limit.clone();
    ///         scope
    ///             .input_from(&mut prices)
    ///             .after_changes(
    ///                 "Limits",
    ///                 scope.input_from(&mut limits),
    ///                 |p| p.0,
    ///                 move |_time, l| applied.set(l),
    ///                 move |p| p.2 = p.1 > limit.get(),
    ///             )
    ///             .inspect(move |p| out.borrow_mut().push((p.0, p.2)))
    ///             .probe()
    ///             .0
    ///     });
    ///     // Prices at 10 and 60 arrive before the limit changes to 120 from time 50.
    ///     prices.send((10, 110, false));
    ///     prices.advance_to(60);
    ///     prices.send((60, 110, false));
    ///     limits.advance_to(50);
    ///     limits.send(120);
    ///     drop((limits, prices));
    ///     worker.step_while(|| !probe.done());
    ///     seen.take()
    /// });
    /// // 110 breaches the limit of 100 in force at 10, not the limit of 120 in force at 60.
    /// assert_eq!(breaches, vec![(10, true), (60, false)]);
    /// ```
    fn after_changes<S, TF, A, R>(
        self,
        name: &str,
        changes: Stream<'scope, u64, Vec<S>>,
        time: TF,
        apply: A,
        release: R,
    ) -> Stream<'scope, u64, Vec<D>>
    where
        S: timely::ExchangeData + Clone,
        TF: Fn(&D) -> u64 + 'static,
        A: FnMut(u64, S) + 'static,
        R: FnMut(&mut D) + 'static;
}

/// Records waiting, sent at one time: its capability, and the records with their event times.
type Waiting<D> = (Capability<u64>, Vec<(u64, D)>);

impl<'scope, D: Clone + 'static> AfterChanges<'scope, D> for Stream<'scope, u64, Vec<D>> {
    fn after_changes<S, TF, A, R>(
        self,
        name: &str,
        changes: Stream<'scope, u64, Vec<S>>,
        time: TF,
        mut apply: A,
        mut release: R,
    ) -> Stream<'scope, u64, Vec<D>>
    where
        S: timely::ExchangeData + Clone,
        TF: Fn(&D) -> u64 + 'static,
        A: FnMut(u64, S) + 'static,
        R: FnMut(&mut D) + 'static,
    {
        let changes = changes.broadcast();
        self.binary_frontier::<_, CapacityContainerBuilder<Vec<D>>, _, _, _, _>(
            changes,
            Pipeline,
            Pipeline,
            name,
            move |initial, _info| {
                // Holds the output back at the first time whose changes are not all applied,
                // so that nothing downstream takes the frontier for a sign that they are.
                let mut held = Some(initial);
                // Changes not applied yet, by time.
                let mut pending: BTreeMap<u64, Vec<S>> = BTreeMap::new();
                // Records waiting, by the time they were sent at: its capability and the
                // records with their event times.
                let mut waiting: BTreeMap<u64, Waiting<D>> = BTreeMap::new();
                move |(records, records_frontier), (incoming, changes_frontier), output| {
                    incoming.for_each_stamp(|cap, data| match cap.least().copied() {
                        Some(at) => {
                            let slot = pending.entry(at).or_default();
                            for batch in data {
                                slot.append(batch);
                            }
                        }
                        // No claim on time: applied as it comes, from time 0.
                        None => data.flat_map(|batch| batch.drain(..)).for_each(|change| apply(0, change)),
                    });
                    // Records before this time (all, when none) have every change before them
                    // applied, and none after.
                    let bound = |pending: &BTreeMap<u64, Vec<S>>| {
                        let known = changes_frontier.frontier().first().copied();
                        match (pending.keys().next().copied(), known) {
                            (Some(first), Some(known)) => Some(first.min(known)),
                            (first, known) => first.or(known),
                        }
                    };
                    let goes = |at: u64, bound: Option<u64>| bound.is_none_or(|b| at < b);
                    let port = output.output_index();
                    let until = bound(&pending);
                    records.for_each_stamp(|cap, data| {
                        let mut session = output.session(&cap);
                        let Some(&sent) = cap.least() else {
                            for batch in data {
                                batch.iter_mut().for_each(&mut release);
                                session.give_container(batch);
                            }
                            return;
                        };
                        for batch in data {
                            if batch.iter().all(|r| goes(time(r), until)) {
                                batch.iter_mut().for_each(&mut release);
                                session.give_container(batch);
                                continue;
                            }
                            for mut record in batch.drain(..) {
                                let at = time(&record);
                                if goes(at, until) {
                                    release(&mut record);
                                    session.give(record);
                                } else {
                                    let entry =
                                        waiting.entry(sent).or_insert_with(|| (cap.delayed(&sent, port), Vec::new()));
                                    entry.1.push((at, record));
                                }
                            }
                        }
                    });
                    loop {
                        // Release what precedes every change not applied yet.
                        let until = bound(&pending);
                        waiting.retain(|_, (cap, batch)| {
                            if !batch.iter().any(|(at, _)| goes(*at, until)) {
                                return true;
                            }
                            let mut session = output.session(&*cap);
                            batch.retain_mut(|(at, record)| {
                                if !goes(*at, until) {
                                    return true;
                                }
                                release(record);
                                session.give(record.clone());
                                false
                            });
                            !batch.is_empty()
                        });
                        // Then the first change, when every change and record before it is in.
                        let Some(entry) = pending.first_entry() else { break };
                        let at = *entry.key();
                        if changes_frontier.less_equal(&at) || records_frontier.less_than(&at) {
                            break;
                        }
                        for change in entry.remove() {
                            apply(at, change);
                        }
                    }
                    match bound(&pending) {
                        None => held = None,
                        Some(until) => {
                            if let Some(cap) = held.as_mut()
                                && *cap.time() < until
                            {
                                cap.downgrade(&until);
                            }
                        }
                    }
                }
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use timely::container::CapacityContainerBuilder;
    use timely::dataflow::InputHandle;
    use timely::dataflow::operators::{Input, Inspect, Probe};

    use super::*;

    /// On 1 and 2 workers, with the changes and records fed in any interleaving (or the
    /// changes all first), records whose event times run ahead of the times they are sent at,
    /// and two changes at each change time, each record sees exactly the changes at or before
    /// its event time: the batch answer.
    #[test]
    fn every_record_sees_the_changes_before_it_and_none_after() {
        for workers in [1, 2] {
            for (stagger, changes_first) in [(0u64, false), (1, false), (3, false), (17, false), (0, true), (5, true)] {
                let seen = Arc::new(Mutex::new(Vec::new()));
                let record = seen.clone();
                timely::execute(timely::Config::process(workers), move |worker| {
                    let index = worker.index() as u64;
                    let mut changes = InputHandle::<u64, CapacityContainerBuilder<Vec<u64>>>::new();
                    let mut records = InputHandle::<u64, CapacityContainerBuilder<Vec<(u64, u64)>>>::new();
                    let record = record.clone();
                    let probe = worker.dataflow::<u64, _, _>(|scope| {
                        // Each worker keeps the sum of the changes applied so far.
                        let sum = std::rc::Rc::new(std::cell::Cell::new(0u64));
                        let applied = sum.clone();
                        let out = scope
                            .input_from(&mut records)
                            .after_changes(
                                "Sum",
                                scope.input_from(&mut changes),
                                |r| r.0,
                                move |_, v| applied.set(applied.get() + v),
                                move |r| r.1 = sum.get(),
                            )
                            .inspect(move |seen| record.lock().expect("lock").push(*seen));
                        out.probe().0
                    });
                    // Worker 0 changes by `c` and by 1 at times c = 0, 10, 20, ...
                    let change_at = |t: u64, changes: &mut InputHandle<u64, _>| {
                        if t.is_multiple_of(10) {
                            changes.advance_to(t);
                            if index == 0 {
                                changes.send(t);
                                changes.send(1);
                            }
                        }
                    };
                    if changes_first {
                        for t in 0..100u64 {
                            change_at(t, &mut changes);
                        }
                        changes.advance_to(100);
                        for _ in 0..stagger {
                            worker.step();
                        }
                    }
                    // Records at every time, their event times up to 3 after it.
                    for t in 0..100u64 {
                        if !changes_first {
                            change_at(t, &mut changes);
                        }
                        if t % 2 == index % 2 || workers == 1 {
                            records.send((t + t % 4, 0));
                        }
                        records.advance_to(t + 1);
                        if stagger > 0 && t % stagger == 0 {
                            for _ in 0..3 {
                                worker.step();
                            }
                        }
                    }
                    drop((changes, records));
                    worker.step_while(|| !probe.done());
                })
                .expect("timely");
                let mut got = seen.lock().expect("lock").clone();
                got.sort();
                let sum_to = |e: u64| (0..100u64).filter(|c| c % 10 == 0 && *c <= e).map(|c| c + 1).sum::<u64>();
                let mut expected: Vec<(u64, u64)> = (0..100u64).map(|t| t + t % 4).map(|e| (e, sum_to(e))).collect();
                expected.sort();
                assert_eq!(got, expected, "{workers} workers, stagger {stagger}, changes first {changes_first}");
            }
        }
    }

    /// Downstream, the frontier passes a time only once the changes up to it are applied.
    #[test]
    fn the_frontier_waits_for_the_changes() {
        timely::execute_directly(|worker| {
            let mut changes = InputHandle::<u64, CapacityContainerBuilder<Vec<u64>>>::new();
            let mut records = InputHandle::<u64, CapacityContainerBuilder<Vec<u64>>>::new();
            let applied = std::rc::Rc::new(std::cell::Cell::new(false));
            let flag = applied.clone();
            let probe = worker.dataflow::<u64, _, _>(|scope| {
                scope
                    .input_from(&mut records)
                    .after_changes("Gate", scope.input_from(&mut changes), |t| *t, move |_, _| flag.set(true), |_| {})
                    .probe()
                    .0
            });
            // A change at 50 while no record waits: the records' input moves past it first.
            changes.advance_to(50);
            changes.send(7);
            records.advance_to(80);
            for _ in 0..10 {
                worker.step();
            }
            // The change cannot be applied (its stream may still bring more at 50), and the
            // frontier downstream stays before it.
            assert!(!applied.get());
            assert!(probe.less_than(&51), "the frontier passed 50 before the change was applied");
            changes.advance_to(60);
            worker.step_while(|| probe.less_than(&60));
            assert!(applied.get());
            drop((changes, records));
            worker.step_while(|| !probe.done());
        });
    }
}
