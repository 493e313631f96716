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
//!   after every record earlier than `c` has been released; changes in order of time, those
//!   of one time in the order they arrived (one sender's order is kept).
//! * **Release.** A record at event time `t` goes once the changes' frontier has passed `t`
//!   and every change at a time `<= t` has been applied, at the time it was sent at; `release`
//!   sees it then, with exactly those changes applied. Operators downstream run later, when
//!   more changes may have been applied: what they read of the state must be kept per time
//!   (as of the record's time). A record that needs no wait goes at once, so a change stream
//!   that has finished costs one comparison per message.
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
            move |_initial, _info| {
                // Changes not applied yet, by time, in arrival order within a time.
                let mut pending: BTreeMap<u64, Vec<S>> = BTreeMap::new();
                // Records waiting, by the time they were sent at: its capability and the
                // records with their event times.
                let mut waiting: BTreeMap<u64, Waiting<D>> = BTreeMap::new();
                move |(records, records_frontier), (incoming, changes_frontier), output| {
                    incoming.for_each_stamp(|cap, data| {
                        let at = cap.least().copied().unwrap_or(0);
                        let slot = pending.entry(at).or_default();
                        for batch in data {
                            slot.append(batch);
                        }
                    });
                    // Records before this time have every change before them applied, and
                    // none after.
                    let open = |pending: &BTreeMap<u64, Vec<S>>| {
                        let known = changes_frontier.frontier().first().copied().unwrap_or(u64::MAX);
                        pending.keys().next().map_or(known, |&first| first.min(known))
                    };
                    let port = output.output_index();
                    let until = open(&pending);
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
                            if batch.iter().all(|r| time(r) < until) {
                                batch.iter_mut().for_each(&mut release);
                                session.give_container(batch);
                                continue;
                            }
                            for mut record in batch.drain(..) {
                                let at = time(&record);
                                if at < until {
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
                        let until = open(&pending);
                        waiting.retain(|_, (cap, batch)| {
                            if batch.iter().all(|(at, _)| *at >= until) {
                                return true;
                            }
                            let mut session = output.session(&*cap);
                            batch.retain_mut(|(at, record)| {
                                if *at >= until {
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
    use timely::dataflow::operators::vec::Map;
    use timely::dataflow::operators::{Input, Inspect, Probe};

    use super::*;

    /// On 1 and 2 workers, with the changes and records fed in any interleaving, each record
    /// sees exactly the changes at or before its time: the batch answer.
    #[test]
    fn every_record_sees_the_changes_before_it_and_none_after() {
        for workers in [1, 2] {
            for stagger in [0u64, 1, 3, 17] {
                let seen = Arc::new(Mutex::new(Vec::new()));
                let record = seen.clone();
                timely::execute(timely::Config::process(workers), move |worker| {
                    let index = worker.index() as u64;
                    let mut changes = InputHandle::<u64, CapacityContainerBuilder<Vec<u64>>>::new();
                    let mut records = InputHandle::<u64, CapacityContainerBuilder<Vec<u64>>>::new();
                    let record = record.clone();
                    let probe = worker.dataflow::<u64, _, _>(|scope| {
                        // Each worker keeps the sum of the changes applied so far.
                        let sum = std::rc::Rc::new(std::cell::Cell::new(0u64));
                        let applied = sum.clone();
                        let out = scope
                            .input_from(&mut records)
                            .map(|t| (t, 0))
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
                    // Worker 0 changes by its time at times 10, 20, ...; records at every time.
                    // The changes' input moves only at those times, so records wait for it.
                    for t in 0..100u64 {
                        if t % 10 == 0 {
                            changes.advance_to(t);
                            if index == 0 {
                                changes.send(t);
                            }
                        }
                        if t % 2 == index % 2 || workers == 1 {
                            records.send(t);
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
                let expected: Vec<(u64, u64)> =
                    (0..100u64).map(|t| (t, (0..=t).filter(|c| c % 10 == 0).sum())).collect();
                assert_eq!(got, expected, "{workers} workers, stagger {stagger}");
            }
        }
    }
}
