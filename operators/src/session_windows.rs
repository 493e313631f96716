//! Session windows: per-key runs of activity separated by an inactivity gap.
//!
//! A *session* of a key is a maximal set of the key's records in which, sorted by event time,
//! consecutive records are less than `gap` apart. A session therefore grows while records keep
//! arriving and closes once the watermark shows that no record within `gap` of its last record
//! can still arrive. Out-of-order records that fall between two open sessions of a key merge
//! them, exactly as a batch computation over the whole input would.
//!
//! # Semantics
//!
//! * A session covers the half-open event-time range `[start, end)` with
//!   `end = last + gap` (saturating), where `last` is the time of its latest record: the
//!   convention of Flink's session windows. It is complete, and emitted, once the watermark
//!   (the input frontier) passes `end - 1`, and it travels at a timely time no later than
//!   `end - 1`. Its state is freed when it is emitted; a key without open sessions holds no
//!   state at all.
//! * **Late records.** A record whose event time is earlier than the timely time of the message
//!   that carries it arrived behind the watermark its source promised. It goes, unchanged, to
//!   the `late` output (at the message's time) and affects no session. Such a record might
//!   belong to a session that is already emitted or to one that is still open; which of the two
//!   depends on scheduling (on how far the operator's frontier had moved when it ran), so the
//!   operator treats every record behind the watermark as late. The late output is thereby a
//!   function of the input alone: the same on any number of workers. Records in messages
//!   without a timestamp (an empty stamp) are late as well.
//! * **Accumulators.** The records of a session are folded into a
//!   [`SessionAccumulator`] in arrival order, and sessions bridged by a later record are merged.
//!   For results that do not depend on scheduling or on the number of workers, the accumulator
//!   must be insensitive to order (commutative and associative `add` and `merge`); values that
//!   depend on order, such as the first or last price, can compare the event times (and a
//!   tie-break) that `add` receives.
//! * Records are exchanged between workers by `route(&key(record))`, so all records of a key
//!   meet on one worker.

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

/// Folds the records of a session into a value.
///
/// `start` begins the state of a new session with its first record, `add` adds a record,
/// `merge` joins the state of a later session into an earlier one when a record bridges the
/// gap between them, and `finish` turns the state into the emitted value. See the
/// [module documentation](self) on order sensitivity.
pub trait SessionAccumulator<D> {
    /// Per-session state.
    type State;
    /// The value emitted with each closed session.
    type Output;

    /// The state of a session that starts with `record`, at event time `time`.
    fn start(&mut self, time: u64, record: D) -> Self::State;

    /// Adds `record`, at event time `time`, to a session's state.
    fn add(&mut self, state: &mut Self::State, time: u64, record: D);

    /// Merges the state of a session (`other`) into `state`: a record joined the two.
    fn merge(&mut self, state: &mut Self::State, other: Self::State);

    /// The value of a closed session.
    fn finish(&mut self, state: Self::State) -> Self::Output;
}

/// A closed session of one key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Session<K, V> {
    /// The key the session belongs to.
    pub key: K,
    /// Event time of the session's earliest record.
    pub start: u64,
    /// Event time of the session's latest record.
    pub last: u64,
    /// Exclusive end of the session: `last + gap` (saturating at `u64::MAX`). The session
    /// covers `[start, end)` and travels at a timely time no later than `end - 1`.
    pub end: u64,
    /// Number of records in the session.
    pub count: u64,
    /// The accumulator's value for the session.
    pub value: V,
}

/// The streams produced by [`SessionWindows::session_windows`].
pub struct SessionOutputs<'scope, K, V, D> {
    /// Closed sessions.
    pub sessions: Stream<'scope, u64, Vec<Session<K, V>>>,
    /// Records that arrived behind the watermark, unchanged.
    pub late: Stream<'scope, u64, Vec<D>>,
}

/// Extension trait: session windows per key.
pub trait SessionWindows<'scope, D: ExchangeData> {
    /// Groups each key's records into sessions separated by at least `gap` of event time
    /// without records, and emits each session once the watermark passes its end.
    ///
    /// `key` and `time` extract a record's key and event time; `accumulator` computes each
    /// session's value. A `gap` of 0 is treated as 1 (records at the same time always share a
    /// session). See the [module documentation](self) for lateness and determinism.
    ///
    /// # Examples
    /// ```
    /// use timely::dataflow::operators::capture::{Capture, Extract};
    /// use timely::dataflow::operators::ToStream;
    /// use surveil_operators::session_windows::{Session, SessionAccumulator, SessionWindows};
    ///
    /// /// Sums the quantities of a session.
    /// struct Quantity;
    /// impl SessionAccumulator<(u64, u32, u64)> for Quantity {
    ///     type State = u64;
    ///     type Output = u64;
    ///     fn start(&mut self, _time: u64, record: (u64, u32, u64)) -> u64 { record.2 }
    ///     fn add(&mut self, sum: &mut u64, _time: u64, record: (u64, u32, u64)) { *sum += record.2 }
    ///     fn merge(&mut self, sum: &mut u64, other: u64) { *sum += other }
    ///     fn finish(&mut self, sum: u64) -> u64 { sum }
    /// }
    ///
    /// let (sessions, late) = timely::example(|scope| {
    ///     // (time, account, quantity); 25 arrives last and joins the sessions at 20 and 30
    ///     let trades = vec![(10u64, 7u32, 1u64), (12, 7, 2), (20, 7, 3), (30, 7, 4), (25, 7, 5), (11, 8, 6)];
    ///     let out = trades.to_stream(scope).session_windows("Sessions", 6, |t| t.1, |t| t.0, Quantity);
    ///     (out.sessions.capture(), out.late.capture())
    /// });
    /// let mut sessions: Vec<_> = sessions.extract().into_iter().flat_map(|(_, v)| v).collect();
    /// sessions.sort();
    /// assert_eq!(sessions, vec![
    ///     Session { key: 7, start: 10, last: 12, end: 18, count: 2, value: 3 },
    ///     Session { key: 7, start: 20, last: 30, end: 36, count: 3, value: 12 },
    ///     Session { key: 8, start: 11, last: 11, end: 17, count: 1, value: 6 },
    /// ]);
    /// assert!(late.extract().is_empty());
    /// ```
    fn session_windows<K, KF, TF, A>(
        self,
        name: &str,
        gap: u64,
        key: KF,
        time: TF,
        accumulator: A,
    ) -> SessionOutputs<'scope, K, A::Output, D>
    where
        K: ExchangeData + Clone + Hash + Eq,
        KF: Fn(&D) -> K + 'static,
        TF: Fn(&D) -> u64 + 'static,
        A: SessionAccumulator<D> + 'static,
        A::Output: Clone + 'static;
}

/// An open session.
struct Open<S> {
    start: u64,
    last: u64,
    count: u64,
    state: S,
}

/// The open sessions of one key, sorted by start and separated by at least `gap`, and the
/// earliest time a timer of the key is scheduled for.
struct KeySessions<S> {
    sessions: Vec<Open<S>>,
    timer: u64,
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

/// The last time at which a record could still extend a session ending at `last`: the session
/// is complete once the watermark is past it.
#[inline]
fn close_time(last: u64, gap: u64) -> u64 {
    last.saturating_add(gap - 1)
}

/// Adds a record at `time` to a key's sessions, creating or merging sessions as needed.
#[inline]
fn insert<D, A: SessionAccumulator<D>>(
    sessions: &mut Vec<Open<A::State>>,
    gap: u64,
    time: u64,
    record: D,
    accumulator: &mut A,
) {
    // In-order data extends the latest session.
    if let Some(latest) = sessions.last_mut()
        && time >= latest.start
        && time.saturating_sub(latest.last) < gap
    {
        latest.last = latest.last.max(time);
        latest.count += 1;
        accumulator.add(&mut latest.state, time, record);
        return;
    }
    // A new session after the latest: the other common case with many short sessions.
    if sessions.last().is_none_or(|latest| time > latest.last && time - latest.last >= gap) {
        let state = accumulator.start(time, record);
        sessions.push(Open { start: time, last: time, count: 1, state });
        return;
    }
    // The sessions the record touches form a contiguous run `lo..hi` (sessions are sorted by
    // start and by last).
    let lo = sessions.partition_point(|s| time.saturating_sub(s.last) >= gap);
    let hi = lo + sessions[lo..].partition_point(|s| s.start.saturating_sub(time) < gap);
    if lo == hi {
        let state = accumulator.start(time, record);
        sessions.insert(lo, Open { start: time, last: time, count: 1, state });
        return;
    }
    let mut first = sessions.remove(lo);
    for other in sessions.drain(lo..hi - 1) {
        first.last = first.last.max(other.last);
        first.count += other.count;
        accumulator.merge(&mut first.state, other.state);
    }
    first.start = first.start.min(time);
    first.last = first.last.max(time);
    first.count += 1;
    accumulator.add(&mut first.state, time, record);
    sessions.insert(lo, first);
}

impl<'scope, D: ExchangeData> SessionWindows<'scope, D> for Stream<'scope, u64, Vec<D>> {
    fn session_windows<K, KF, TF, A>(
        self,
        name: &str,
        gap: u64,
        key: KF,
        time: TF,
        mut accumulator: A,
    ) -> SessionOutputs<'scope, K, A::Output, D>
    where
        K: ExchangeData + Clone + Hash + Eq,
        KF: Fn(&D) -> K + 'static,
        TF: Fn(&D) -> u64 + 'static,
        A: SessionAccumulator<D> + 'static,
        A::Output: Clone + 'static,
    {
        let gap = gap.max(1);
        let key = Rc::new(key);
        let route_key = Rc::clone(&key);
        let mut builder = OperatorBuilder::new(name.to_owned(), self.scope());
        let mut input = builder.new_input(self, Exchange::new(move |record: &D| route(&route_key(record))));
        // Without capabilities the operator holds no state, and frontier changes mean nothing to it.
        builder.set_notify_for(0, FrontierInterest::IfCapability);
        let (sessions_out, sessions) = builder.new_output::<Vec<Session<K, A::Output>>>();
        let (late_out, late) = builder.new_output::<Vec<D>>();
        let mut sessions_out =
            OutputBuilder::<_, CapacityContainerBuilder<Vec<Session<K, A::Output>>>>::from(sessions_out);
        let mut late_out = OutputBuilder::<_, CapacityContainerBuilder<Vec<D>>>::from(late_out);

        builder.build(move |initial| {
            drop(initial);
            // Held at or before the earliest scheduled timer: every open session closes at or
            // after a timer of its key.
            let mut held: Option<Capability<u64>> = None;
            let mut keys: HashMap<K, KeySessions<A::State>> = HashMap::new();
            let mut timers: BinaryHeap<Timer<K>> = BinaryHeap::new();
            let mut late_batch: Vec<D> = Vec::new();
            let mut closed: Vec<Session<K, A::Output>> = Vec::new();

            move |frontiers| {
                let mut sessions_out = sessions_out.activate();
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
                    if held.as_ref().is_none_or(|h| at < *h.time()) {
                        held = Some(cap.delayed(&at, 0));
                    }
                    for batch in data {
                        for record in batch.drain(..) {
                            let t = time(&record);
                            if t < at {
                                late_batch.push(record);
                                continue;
                            }
                            match keys.entry(key(&record)) {
                                Entry::Occupied(mut entry) => {
                                    let state = entry.get_mut();
                                    insert(&mut state.sessions, gap, t, record, &mut accumulator);
                                    let close = state.sessions.first().map_or(u64::MAX, |s| close_time(s.last, gap));
                                    if close < state.timer {
                                        state.timer = close;
                                        timers.push(Timer { time: close, key: entry.key().clone() });
                                    }
                                }
                                Entry::Vacant(entry) => {
                                    let close = close_time(t, gap);
                                    timers.push(Timer { time: close, key: entry.key().clone() });
                                    let state = accumulator.start(t, record);
                                    entry.insert(KeySessions {
                                        sessions: vec![Open { start: t, last: t, count: 1, state }],
                                        timer: close,
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
                let mut first_close = None;
                while timers.peek().is_some_and(|timer| complete(timer.time)) {
                    let Some(Timer { time: fired, key }) = timers.pop() else { break };
                    let Some(state) = keys.get_mut(&key) else { continue };
                    if state.timer != fired {
                        continue; // superseded by an earlier timer of the key
                    }
                    first_close.get_or_insert(fired);
                    let done = state.sessions.iter().take_while(|s| complete(close_time(s.last, gap))).count();
                    for open in state.sessions.drain(..done) {
                        closed.push(Session {
                            key: key.clone(),
                            start: open.start,
                            last: open.last,
                            end: open.last.saturating_add(gap),
                            count: open.count,
                            value: accumulator.finish(open.state),
                        });
                    }
                    match state.sessions.first() {
                        Some(open) => {
                            state.timer = close_time(open.last, gap);
                            timers.push(Timer { time: state.timer, key });
                        }
                        None => {
                            keys.remove(&key);
                        }
                    }
                }
                if let Some(cap) = held.as_mut() {
                    if !closed.is_empty() {
                        // Every closed session ends after the first timer that fired.
                        let at = cap.delayed(&first_close.unwrap_or(*cap.time()).max(*cap.time()));
                        sessions_out.session(&at).give_container(&mut closed);
                        closed.clear();
                    }
                    match timers.peek() {
                        Some(timer) => {
                            let t = timer.time.max(*cap.time());
                            cap.downgrade(&t);
                        }
                        None => held = None,
                    }
                }
            }
        });

        SessionOutputs { sessions, late }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::{Arc, Mutex};
    use timely::dataflow::InputHandleVec;
    use timely::dataflow::operators::Probe;
    use timely::dataflow::operators::capture::{Capture, Extract};

    /// (event time, key, id)
    type Rec = (u64, u32, u64);

    /// Sum of ids and least id: order-insensitive.
    struct IdStats;
    impl SessionAccumulator<Rec> for IdStats {
        type State = (u64, u64);
        type Output = (u64, u64);
        fn start(&mut self, _time: u64, r: Rec) -> (u64, u64) {
            (r.2, r.2)
        }
        fn add(&mut self, s: &mut (u64, u64), _time: u64, r: Rec) {
            s.0 += r.2;
            s.1 = s.1.min(r.2);
        }
        fn merge(&mut self, s: &mut (u64, u64), o: (u64, u64)) {
            s.0 += o.0;
            s.1 = s.1.min(o.1);
        }
        fn finish(&mut self, s: (u64, u64)) -> (u64, u64) {
            s
        }
    }

    type Out = (Vec<Session<u32, (u64, u64)>>, Vec<Rec>);

    /// Runs the operator on `workers` workers. Each record is sent at its send time (records
    /// are spread over the workers by id); the input advances through the send times in order.
    fn run(workers: usize, gap: u64, sent: Vec<(u64, Rec)>) -> Out {
        let sent = Arc::new(sent);
        let (tx, rx) = std::sync::mpsc::channel();
        let (late_tx, late_rx) = std::sync::mpsc::channel();
        let (tx, late_tx) = (Mutex::new(tx), Mutex::new(late_tx));
        timely::execute(timely::Config::process(workers), move |worker| {
            let tx = tx.lock().map(|t| t.clone()).expect("lock");
            let late_tx = late_tx.lock().map(|t| t.clone()).expect("lock");
            let (index, peers) = (worker.index() as u64, worker.peers() as u64);
            let mut input = InputHandleVec::<u64, Rec>::new();
            let probe = worker.dataflow(|scope| {
                let out = input.to_stream(scope).session_windows("Sessions", gap, |r| r.1, |r| r.0, IdStats);
                out.late.capture_into(late_tx);
                let (probe, sessions) = out.sessions.probe();
                sessions.capture_into(tx);
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
                        worker.step_or_park(Some(std::time::Duration::from_millis(1)));
                    }
                }
            }
            input.close();
            while !probe.done() {
                worker.step_or_park(Some(std::time::Duration::from_millis(1)));
            }
        })
        .expect("timely runs");
        let mut sessions: Vec<_> = rx.extract().into_iter().flat_map(|(_, v)| v).collect();
        let mut late: Vec<_> = late_rx.extract().into_iter().flat_map(|(_, v)| v).collect();
        sessions.sort();
        late.sort();
        (sessions, late)
    }

    /// The batch answer over the whole input.
    fn oracle(gap: u64, sent: &[(u64, Rec)]) -> Out {
        let gap = gap.max(1);
        let mut late: Vec<Rec> = sent.iter().filter(|(s, r)| r.0 < *s).map(|(_, r)| *r).collect();
        late.sort();
        let mut by_key: std::collections::BTreeMap<u32, Vec<Rec>> = Default::default();
        for (_, r) in sent.iter().filter(|(s, r)| r.0 >= *s) {
            by_key.entry(r.1).or_default().push(*r);
        }
        let mut sessions = Vec::new();
        for (key, mut recs) in by_key {
            recs.sort();
            let mut run: Vec<Rec> = Vec::new();
            let mut flush = |run: &mut Vec<Rec>| {
                if let (Some(first), Some(last)) = (run.first(), run.last()) {
                    sessions.push(Session {
                        key,
                        start: first.0,
                        last: last.0,
                        end: last.0.saturating_add(gap),
                        count: run.len() as u64,
                        value: (run.iter().map(|r| r.2).sum(), run.iter().map(|r| r.2).min().unwrap_or(0)),
                    });
                }
                run.clear();
            };
            for r in recs {
                if run.last().is_some_and(|l| r.0 - l.0 >= gap) {
                    flush(&mut run);
                }
                run.push(r);
            }
            flush(&mut run);
        }
        sessions.sort();
        (sessions, late)
    }

    /// Records with send times: on time (sent up to `bound` before their event time) or,
    /// with probability 1/8, late (sent after their event time).
    fn input(max_keys: u32) -> impl Strategy<Value = (u64, Vec<(u64, Rec)>)> {
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
                    let sent = recs
                        .into_iter()
                        .enumerate()
                        .map(|(id, (t, k, back, late, late_by))| {
                            let s = if late { t + late_by } else { t.saturating_sub(back) };
                            (s, (t, k % keys, id as u64))
                        })
                        .collect();
                    (bound, sent)
                })
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
        #[test]
        fn matches_batch_oracle(workers in 1usize..=4, gap in 0u64..25, (_bound, sent) in input(20)) {
            let expected = oracle(gap, &sent);
            let got = run(workers, gap, sent);
            prop_assert_eq!(got, expected);
        }
    }

    #[test]
    fn a_late_record_bridges_nothing() {
        // Sessions [0, 5) and [9, 14) with gap 5; 4 arrives late (sent at 10) and would bridge.
        let sent = vec![(0, (0, 1, 0)), (9, (9, 1, 1)), (10, (4, 1, 2)), (10, (30, 1, 3))];
        let (sessions, late) = run(2, 5, sent.clone());
        assert_eq!((sessions.clone(), late.clone()), oracle(5, &sent));
        assert_eq!(late, vec![(4, 1, 2)]);
        assert_eq!(
            sessions.iter().map(|s| (s.start, s.end, s.count)).collect::<Vec<_>>(),
            vec![(0, 5, 1), (9, 14, 1), (30, 35, 1)]
        );
    }

    #[test]
    fn out_of_order_record_merges_three_sessions() {
        let sent = vec![(0, (10, 1, 0)), (0, (20, 1, 1)), (0, (30, 1, 2)), (5, (15, 1, 3)), (5, (25, 1, 4))];
        let (sessions, late) = run(1, 6, sent);
        assert!(late.is_empty());
        assert_eq!(sessions, vec![Session { key: 1, start: 10, last: 30, end: 36, count: 5, value: (10, 0) }]);
    }

    #[test]
    fn times_near_the_end_of_time() {
        let max = u64::MAX;
        let sent = vec![(max - 10, (max - 10, 1, 0)), (max - 10, (max - 1, 1, 1)), (max - 10, (max, 2, 2))];
        let (sessions, late) = run(2, 100, sent.clone());
        assert!(late.is_empty());
        assert_eq!((sessions.clone(), late), oracle(100, &sent));
        assert_eq!(sessions[0].end, max);
    }

    #[test]
    fn many_short_sessions_of_one_key() {
        // One key, a long stream of short sessions: the operator must not keep them.
        let sent: Vec<(u64, Rec)> = (0..2_000u64).map(|i| (i * 10, (i * 10, 1, i))).collect();
        let (sessions, late) = run(1, 3, sent);
        assert_eq!(sessions.len(), 2_000);
        assert!(late.is_empty());
    }
}
