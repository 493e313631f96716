//! Suppression (deduplication): at most one record per key per horizon of event time.
//!
//! Alert streams repeat themselves: the same account trips the same rule on every trade for an
//! hour. This operator lets the first record of a key through and suppresses the key's further
//! records for a horizon `H` of event time, then reports how many it suppressed.
//!
//! # Semantics
//!
//! The records of each key are considered in `(time, tie_break)` order, as a batch computation
//! over the whole input would sort them:
//!
//! * A record of a key without an open horizon *passes*: it is emitted unchanged on the
//!   `first` output and opens the horizon `[time, time + H)` (saturating at `u64::MAX`).
//! * A record of the key inside the open horizon is suppressed: it is counted and dropped.
//! * The first record at or after the horizon's end closes the horizon and opens a new one.
//! * When a horizon closes (the watermark passes `horizon_end - 1`, or a record opens the next
//!   horizon), the operator emits a [`Suppressed`] summary **only if it suppressed at least one
//!   record**: a key that fired once produces a single output. The summary travels at a timely
//!   time no later than `horizon_end - 1`, and the key's state is freed if nothing else of the
//!   key is pending.
//!
//! A passing record is emitted as soon as the watermark passes its time (earlier records of
//! the key could still arrive until then), at a timely time no later than its event time.
//! Records that provably fall inside an open horizon are counted on arrival and not buffered,
//! so memory is proportional to the keys with open horizons and the records that may open the
//! next one.
//!
//! **Determinism.** The outputs do not depend on scheduling or on the number of workers,
//! provided the `(time, tie_break)` pairs of a key's records are distinct; among records of a
//! key with equal time and tie-break, which one passes is unspecified.
//!
//! **Late records.** A record whose event time is earlier than the timely time of the message
//! carrying it arrived behind the watermark: it goes unchanged to the `late` output (at the
//! message's time) and neither passes nor counts, whether or not its horizon is still open
//! (which depends on scheduling). Records in messages without a timestamp (an empty stamp) are
//! late as well.
//!
//! Records are exchanged between workers by `route(&key(record))`. [`ProcessInTimeOrder`]
//! would buffer every record until the watermark passes it and has a single output, so this
//! operator is frontier-driven on its own.
//!
//! [`ProcessInTimeOrder`]: crate::ProcessInTimeOrder

use std::collections::hash_map::Entry;
use std::collections::{BinaryHeap, HashMap};
use std::hash::Hash;
use std::rc::Rc;

use serde::{Deserialize, Serialize};
use timely::ExchangeData;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::Stream;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::progress::operate::FrontierInterest;

use crate::routing::route;

/// The summary of a closed horizon in which records were suppressed.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Suppressed<K> {
    /// The key.
    pub key: K,
    /// Event time of the record that passed and opened the horizon.
    pub first_time: u64,
    /// Exclusive end of the horizon: `first_time + horizon`, saturating.
    pub horizon_end: u64,
    /// Number of records of the key suppressed in `[first_time, horizon_end)`; at least 1.
    pub suppressed: u64,
}

/// The streams produced by [`Suppress::suppress`].
pub struct SuppressOutputs<'scope, K, D> {
    /// The records that passed: the first of each key in each horizon.
    pub first: Stream<'scope, u64, Vec<D>>,
    /// One summary per horizon that suppressed records.
    pub summaries: Stream<'scope, u64, Vec<Suppressed<K>>>,
    /// Records that arrived behind the watermark, unchanged.
    pub late: Stream<'scope, u64, Vec<D>>,
}

/// Extension trait: suppress repeated records of a key within a horizon of event time.
pub trait Suppress<'scope, D: ExchangeData> {
    /// Passes the first record of each key and suppresses the key's records for the next
    /// `horizon` of event time; see the [module documentation](self).
    ///
    /// `key` extracts the key; `order` extracts `(event time, tie_break)`. A `horizon` of 0 is
    /// treated as 1 (only records at the same time suppress each other).
    ///
    /// # Examples
    /// ```
    /// use timely::dataflow::operators::capture::{Capture, Extract};
    /// use timely::dataflow::operators::ToStream;
    /// use surveil_operators::suppress::{Suppress, Suppressed};
    ///
    /// let (first, summaries) = timely::example(|scope| {
    ///     // (time, account, alert id), out of order
    ///     let alerts = vec![(12u64, 7u32, 2u64), (10, 7, 1), (15, 7, 3), (25, 7, 4), (11, 8, 5)];
    ///     let out = alerts.to_stream(scope).suppress("Dedup", 10, |a| a.1, |a| (a.0, a.2));
    ///     (out.first.capture(), out.summaries.capture())
    /// });
    /// let mut first: Vec<_> = first.extract().into_iter().flat_map(|(_, v)| v).collect();
    /// first.sort();
    /// assert_eq!(first, vec![(10, 7, 1), (11, 8, 5), (25, 7, 4)]);
    /// let summaries: Vec<_> = summaries.extract().into_iter().flat_map(|(_, v)| v).collect();
    /// assert_eq!(summaries, vec![Suppressed { key: 7, first_time: 10, horizon_end: 20, suppressed: 2 }]);
    /// ```
    fn suppress<K, KF, OF>(self, name: &str, horizon: u64, key: KF, order: OF) -> SuppressOutputs<'scope, K, D>
    where
        K: ExchangeData + Clone + Hash + Eq,
        KF: Fn(&D) -> K + 'static,
        OF: Fn(&D) -> (u64, u64) + 'static;
}

/// An open horizon.
struct Horizon {
    first_time: u64,
    end: u64,
    suppressed: u64,
}

/// The state of a key: its open horizon and the records that may open the next one.
struct KeyState<D> {
    horizon: Option<Horizon>,
    /// `(time, tie_break, record)`, unsorted.
    pending: Vec<(u64, u64, D)>,
    /// The earliest time a timer of the key is scheduled for.
    timer: u64,
}

impl<D> KeyState<D> {
    /// When the key needs attention next: its earliest pending record or its horizon's close.
    fn next_time(&self) -> Option<u64> {
        let pending = self.pending.iter().map(|p| p.0).min();
        let close = self.horizon.as_ref().map(|h| h.end - 1);
        match (pending, close) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// A scheduled check of a key: a min-heap entry ordered by time only.
struct Timer<K> {
    time: u64,
    key: K,
}

impl<K> PartialEq for Timer<K> {
    fn eq(&self, other: &Self) -> bool {
        self.time == other.time
    }
}
impl<K> Eq for Timer<K> {}
impl<K> PartialOrd for Timer<K> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<K> Ord for Timer<K> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.time.cmp(&self.time)
    }
}

/// The outputs of one activation: passing records and summaries, each with its least time.
struct Emitted<K, D> {
    first: Vec<D>,
    first_time: u64,
    summaries: Vec<Suppressed<K>>,
    summary_time: u64,
}

impl<K: Clone, D> Emitted<K, D> {
    fn close(&mut self, key: &K, horizon: Horizon) {
        if horizon.suppressed > 0 {
            self.summary_time = self.summary_time.min(horizon.end - 1);
            self.summaries.push(Suppressed {
                key: key.clone(),
                first_time: horizon.first_time,
                horizon_end: horizon.end,
                suppressed: horizon.suppressed,
            });
        }
    }
}

impl<'scope, D: ExchangeData> Suppress<'scope, D> for Stream<'scope, u64, Vec<D>> {
    fn suppress<K, KF, OF>(self, name: &str, horizon: u64, key: KF, order: OF) -> SuppressOutputs<'scope, K, D>
    where
        K: ExchangeData + Clone + Hash + Eq,
        KF: Fn(&D) -> K + 'static,
        OF: Fn(&D) -> (u64, u64) + 'static,
    {
        let horizon = horizon.max(1);
        let key = Rc::new(key);
        let route_key = Rc::clone(&key);
        let mut builder = OperatorBuilder::new(name.to_owned(), self.scope());
        let mut input = builder.new_input(self, Exchange::new(move |record: &D| route(&route_key(record))));
        // Without capabilities the operator holds no state, and frontier changes mean nothing to it.
        builder.set_notify_for(0, FrontierInterest::IfCapability);
        let (first_out, first) = builder.new_output::<Vec<D>>();
        let (summaries_out, summaries) = builder.new_output::<Vec<Suppressed<K>>>();
        let (late_out, late) = builder.new_output::<Vec<D>>();
        let mut first_out = OutputBuilder::<_, CapacityContainerBuilder<Vec<D>>>::from(first_out);
        let mut summaries_out = OutputBuilder::<_, CapacityContainerBuilder<Vec<Suppressed<K>>>>::from(summaries_out);
        let mut late_out = OutputBuilder::<_, CapacityContainerBuilder<Vec<D>>>::from(late_out);

        builder.build(move |initial| {
            drop(initial);
            // Capabilities for the `first` and `summaries` outputs, held at or before the
            // earliest scheduled timer.
            let mut held: Option<[Capability<u64>; 2]> = None;
            let mut keys: HashMap<K, KeyState<D>> = HashMap::new();
            let mut timers: BinaryHeap<Timer<K>> = BinaryHeap::new();
            let mut late_batch: Vec<D> = Vec::new();
            let mut ready: Vec<(u64, u64, D)> = Vec::new();
            let mut emitted =
                Emitted { first: Vec::new(), first_time: u64::MAX, summaries: Vec::new(), summary_time: u64::MAX };

            move |frontiers| {
                let mut first_out = first_out.activate();
                let mut summaries_out = summaries_out.activate();
                let mut late_out = late_out.activate();
                input.for_each_stamp(|cap, data| {
                    let Some(&at) = cap.least() else {
                        // No time to judge these records against: late.
                        for batch in data {
                            late_batch.append(batch);
                        }
                        late_out.session(&cap).give_container(&mut late_batch);
                        late_batch.clear();
                        return;
                    };
                    if held.as_ref().is_none_or(|h| at < *h[0].time()) {
                        held = Some([cap.delayed(&at, 0), cap.delayed(&at, 1)]);
                    }
                    for batch in data {
                        for record in batch.drain(..) {
                            let (t, tie_break) = order(&record);
                            if t < at {
                                late_batch.push(record);
                                continue;
                            }
                            match keys.entry(key(&record)) {
                                Entry::Occupied(mut entry) => {
                                    let state = entry.get_mut();
                                    // Every record of the key before `at` has been processed, and
                                    // `t >= at`: a record inside the open horizon is suppressed
                                    // whatever else arrives.
                                    if let Some(h) = state.horizon.as_mut()
                                        && t < h.end
                                        && t >= h.first_time
                                    {
                                        h.suppressed += 1;
                                        continue;
                                    }
                                    state.pending.push((t, tie_break, record));
                                    if t < state.timer {
                                        state.timer = t;
                                        timers.push(Timer { time: t, key: entry.key().clone() });
                                    }
                                }
                                Entry::Vacant(entry) => {
                                    timers.push(Timer { time: t, key: entry.key().clone() });
                                    entry.insert(KeyState {
                                        horizon: None,
                                        pending: vec![(t, tie_break, record)],
                                        timer: t,
                                    });
                                }
                            }
                        }
                    }
                    if !late_batch.is_empty() {
                        late_out.session(&cap).give_container(&mut late_batch);
                        late_batch.clear();
                    }
                });

                // Everything strictly before the watermark is complete.
                let watermark = frontiers[0].frontier().first().copied();
                let complete = |t: u64| watermark.is_none_or(|w| t < w);
                while timers.peek().is_some_and(|timer| complete(timer.time)) {
                    let Some(Timer { time: fired, key }) = timers.pop() else { break };
                    let Some(state) = keys.get_mut(&key) else { continue };
                    if state.timer != fired {
                        continue; // superseded by an earlier timer of the key
                    }
                    // The key's complete records, in (time, tie_break) order.
                    let mut i = 0;
                    while i < state.pending.len() {
                        if complete(state.pending[i].0) {
                            ready.push(state.pending.swap_remove(i));
                        } else {
                            i += 1;
                        }
                    }
                    ready.sort_unstable_by_key(|r| (r.0, r.1));
                    for (t, _, record) in ready.drain(..) {
                        match state.horizon.as_mut() {
                            Some(h) if t < h.end => h.suppressed += 1,
                            _ => {
                                if let Some(h) = state.horizon.take() {
                                    emitted.close(&key, h);
                                }
                                state.horizon =
                                    Some(Horizon { first_time: t, end: t.saturating_add(horizon), suppressed: 0 });
                                emitted.first_time = emitted.first_time.min(t);
                                emitted.first.push(record);
                            }
                        }
                    }
                    if state.horizon.as_ref().is_some_and(|h| complete(h.end - 1))
                        && let Some(h) = state.horizon.take()
                    {
                        emitted.close(&key, h);
                    }
                    match state.next_time() {
                        Some(t) => {
                            state.timer = t;
                            timers.push(Timer { time: t, key });
                        }
                        None => {
                            keys.remove(&key);
                        }
                    }
                }
                if let Some([first_cap, summary_cap]) = held.as_mut() {
                    if !emitted.first.is_empty() {
                        let at = first_cap.delayed(&emitted.first_time.max(*first_cap.time()));
                        first_out.session(&at).give_container(&mut emitted.first);
                        emitted.first.clear();
                    }
                    if !emitted.summaries.is_empty() {
                        let at = summary_cap.delayed(&emitted.summary_time.max(*summary_cap.time()));
                        summaries_out.session(&at).give_container(&mut emitted.summaries);
                        emitted.summaries.clear();
                    }
                    emitted.first_time = u64::MAX;
                    emitted.summary_time = u64::MAX;
                    match timers.peek() {
                        Some(timer) => {
                            let t = timer.time.max(*first_cap.time());
                            first_cap.downgrade(&t);
                            summary_cap.downgrade(&t);
                        }
                        None => held = None,
                    }
                }
            }
        });

        SuppressOutputs { first, summaries, late }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use timely::dataflow::InputHandleVec;
    use timely::dataflow::operators::Probe;
    use timely::dataflow::operators::capture::{Capture, Extract};

    /// (event time, key, id); the id is the tie-break.
    type Rec = (u64, u32, u64);
    type Out = (Vec<Rec>, Vec<Suppressed<u32>>, Vec<Rec>);

    /// Runs the operator on `workers` workers. Each record is sent at its send time (records
    /// are spread over the workers by id); the input advances through the send times in order.
    fn run(workers: usize, horizon: u64, sent: Vec<(u64, Rec)>) -> Out {
        let sent = Arc::new(sent);
        let (first_tx, first_rx) = std::sync::mpsc::channel();
        let (summary_tx, summary_rx) = std::sync::mpsc::channel();
        let (late_tx, late_rx) = std::sync::mpsc::channel();
        let senders = Mutex::new((first_tx, summary_tx, late_tx));
        timely::execute(timely::Config::process(workers), move |worker| {
            let (first_tx, summary_tx, late_tx) = senders.lock().map(|s| s.clone()).expect("lock");
            let (index, peers) = (worker.index() as u64, worker.peers() as u64);
            let mut input = InputHandleVec::<u64, Rec>::new();
            let probe = worker.dataflow(|scope| {
                let out = input.to_stream(scope).suppress("Suppress", horizon, |r| r.1, |r| (r.0, r.2));
                out.late.capture_into(late_tx);
                out.first.capture_into(first_tx);
                let (probe, summaries) = out.summaries.probe();
                summaries.capture_into(summary_tx);
                probe
            });
            let mut times: Vec<u64> = sent.iter().map(|(s, _)| *s).collect();
            times.sort();
            times.dedup();
            for (round, at) in times.into_iter().enumerate() {
                input.advance_to(at);
                for (_, r) in sent.iter().filter(|(s, r)| *s == at && r.2 % peers == index) {
                    input.send(*r);
                }
                worker.step();
                if round % 7 == 0 {
                    while probe.less_than(input.time()) {
                        worker.step_or_park(Some(Duration::from_millis(1)));
                    }
                }
            }
            input.close();
            while !probe.done() {
                worker.step_or_park(Some(Duration::from_millis(1)));
            }
        })
        .expect("timely runs");
        let mut first: Vec<_> = first_rx.extract().into_iter().flat_map(|(_, v)| v).collect();
        let mut summaries: Vec<_> = summary_rx.extract().into_iter().flat_map(|(_, v)| v).collect();
        let mut late: Vec<_> = late_rx.extract().into_iter().flat_map(|(_, v)| v).collect();
        first.sort();
        summaries.sort();
        late.sort();
        (first, summaries, late)
    }

    /// The batch answer over the whole input.
    fn oracle(horizon: u64, sent: &[(u64, Rec)]) -> Out {
        let horizon = horizon.max(1);
        let mut late: Vec<Rec> = sent.iter().filter(|(s, r)| r.0 < *s).map(|(_, r)| *r).collect();
        late.sort();
        let mut by_key: std::collections::BTreeMap<u32, Vec<Rec>> = Default::default();
        for (_, r) in sent.iter().filter(|(s, r)| r.0 >= *s) {
            by_key.entry(r.1).or_default().push(*r);
        }
        let (mut first, mut summaries) = (Vec::new(), Vec::new());
        for (key, mut recs) in by_key {
            recs.sort_by_key(|r| (r.0, r.2));
            let mut open: Option<Suppressed<u32>> = None;
            for r in recs {
                match open.as_mut() {
                    Some(h) if r.0 < h.horizon_end => h.suppressed += 1,
                    _ => {
                        summaries.extend(open.take().filter(|h| h.suppressed > 0));
                        first.push(r);
                        open = Some(Suppressed {
                            key,
                            first_time: r.0,
                            horizon_end: r.0.saturating_add(horizon),
                            suppressed: 0,
                        });
                    }
                }
            }
            summaries.extend(open.take().filter(|h| h.suppressed > 0));
        }
        first.sort();
        summaries.sort();
        (first, summaries, late)
    }

    /// Records with send times: on time (sent up to a bound before their event time) or,
    /// with probability 1/8, late (sent after their event time). Ids are unique.
    fn input(max_keys: u32) -> impl Strategy<Value = Vec<(u64, Rec)>> {
        (0u64..12).prop_flat_map(move |bound| {
            let keys = prop_oneof![Just(1u32), 2u32..=max_keys];
            (
                keys,
                prop::collection::vec(
                    (0u64..200, any::<u32>(), 0u64..=bound, prop::bool::weighted(0.125), 1u64..30),
                    0..300,
                ),
            )
                .prop_map(move |(keys, recs)| {
                    recs.into_iter()
                        .enumerate()
                        .map(|(id, (t, k, back, late, late_by))| {
                            let s = if late { t + late_by } else { t.saturating_sub(back) };
                            (s, (t, k % keys, id as u64))
                        })
                        .collect()
                })
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
        #[test]
        fn matches_batch_oracle(workers in 1usize..=4, horizon in 0u64..40, sent in input(20)) {
            let expected = oracle(horizon, &sent);
            let got = run(workers, horizon, sent);
            prop_assert_eq!(got, expected);
        }
    }

    #[test]
    fn equal_times_are_ordered_by_tie_break() {
        // Three alerts at time 5, arriving in reverse tie-break order on different rounds.
        let sent = vec![(5, (5, 1, 3)), (5, (5, 1, 2)), (0, (5, 1, 1)), (3, (9, 1, 4))];
        let got = run(3, 10, sent.clone());
        assert_eq!(got, oracle(10, &sent));
        assert_eq!(got.0, vec![(5, 1, 1)]);
        assert_eq!(got.1, vec![Suppressed { key: 1, first_time: 5, horizon_end: 15, suppressed: 3 }]);
    }

    #[test]
    fn a_horizon_without_repeats_has_no_summary() {
        let sent = vec![(0, (0, 1, 0)), (0, (10, 1, 1)), (0, (19, 1, 2)), (20, (20, 1, 3)), (25, (21, 1, 4))];
        let got = run(2, 10, sent.clone());
        assert_eq!(got, oracle(10, &sent));
        assert_eq!(got.0, vec![(0, 1, 0), (10, 1, 1), (20, 1, 3)]);
        assert_eq!(got.1, vec![Suppressed { key: 1, first_time: 10, horizon_end: 20, suppressed: 1 }]);
        assert_eq!(got.2, vec![(21, 1, 4)]);
    }

    #[test]
    fn horizons_near_the_end_of_time() {
        let max = u64::MAX;
        let sent = vec![(max - 10, (max - 10, 1, 0)), (max - 10, (max - 1, 1, 1)), (max - 10, (max - 5, 2, 2))];
        let got = run(2, 100, sent.clone());
        assert_eq!(got, oracle(100, &sent));
        assert_eq!(got.1, vec![Suppressed { key: 1, first_time: max - 10, horizon_end: max, suppressed: 1 }]);
    }
}
