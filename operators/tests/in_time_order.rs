//! `process_in_time_order` against a batch oracle: on 1 to 4 workers, every key sees its records
//! in `(time, tie-break)` order, and its timers interleaved where they belong (a timer at `t`
//! fires after every record before `t` and before every record at or after `t`), whatever the
//! order the records arrive in and however the watermark advances.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use surveil_operators::{Emitter, ProcessInTimeOrder, TimeOrderedProcessor};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::InputHandle;
use timely::dataflow::operators::{Inspect, Probe};

/// A record: key, event time, tie-break (unique), and how long after it its key's timer fires.
type Record = (u64, u64, u64, u64);

/// What a key saw, in order: records by tie-break, timers by time.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Seen {
    Record(u64),
    Timer(u64),
}

/// Logs what each key sees and sets, for each record, a timer of its key at `time + delay`.
#[derive(Default)]
struct Logger {
    timers: BTreeSet<(u64, u64)>, // (time, key)
}

impl TimeOrderedProcessor<Record> for Logger {
    type Output = (u64, Seen);

    fn on_record(&mut self, time: u64, (key, _, tie, delay): Record, out: &mut Emitter<'_, (u64, Seen)>) {
        out.emit((key, Seen::Record(tie)));
        self.timers.insert((time + delay, key));
    }

    fn next_timer(&self) -> Option<u64> {
        self.timers.first().map(|(t, _)| *t)
    }

    fn on_timer(&mut self, time: u64, out: &mut Emitter<'_, (u64, Seen)>) {
        while let Some(&(t, key)) = self.timers.first() {
            if t != time {
                break;
            }
            self.timers.pop_first();
            out.emit((key, Seen::Timer(time)));
        }
    }
}

/// The batch oracle: per key, records sorted by (time, tie) with the timers they set, a timer
/// at `t` placed before the first record at or after `t` (timers of one time once each).
fn oracle(records: &[Record]) -> BTreeMap<u64, Vec<Seen>> {
    let mut by_key: BTreeMap<u64, Vec<Record>> = BTreeMap::new();
    for r in records {
        by_key.entry(r.0).or_default().push(*r);
    }
    let mut out = BTreeMap::new();
    for (key, mut rs) in by_key {
        rs.sort_by_key(|r| (r.1, r.2));
        let mut timers: BTreeSet<u64> = BTreeSet::new();
        let mut seen = Vec::new();
        for r in rs {
            while let Some(&t) = timers.first().filter(|&&t| t <= r.1) {
                timers.pop_first();
                seen.push(Seen::Timer(t));
            }
            seen.push(Seen::Record(r.2));
            timers.insert(r.1 + r.3);
        }
        seen.extend(timers.into_iter().map(Seen::Timer));
        out.insert(key, seen);
    }
    out
}

/// Runs the operator on `workers` workers; each feeds its share of `records` in the order given,
/// advancing its input (the watermark) by `step` after every `batch` records.
fn run(records: Vec<Record>, workers: usize, batch: usize) -> BTreeMap<u64, Vec<Seen>> {
    let seen = Arc::new(Mutex::new(BTreeMap::<u64, Vec<Seen>>::new()));
    let shared = seen.clone();
    let records = Arc::new(records);
    timely::execute(timely::Config::process(workers), move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let mut input = InputHandle::<u64, CapacityContainerBuilder<Vec<Record>>>::new();
        let probe = timely::dataflow::ProbeHandle::new();
        let log = shared.clone();
        worker.dataflow::<u64, _, _>(|scope| {
            use timely::dataflow::operators::Input;
            scope
                .input_from(&mut input)
                .process_in_time_order("Logged", |r: &Record| r.0, |r: &Record| (r.1, r.2), Logger::default())
                .inspect(move |(key, s): &(u64, Seen)| {
                    log.lock().expect("lock").entry(*key).or_default().push(s.clone())
                })
                .probe_with(&probe);
        });
        // Records arrive in any order, but never before the input's time: the input stays at the
        // least time this worker has still to send.
        let mine: Vec<Record> = records.iter().skip(index).step_by(peers).copied().collect();
        for (i, chunk) in mine.chunks(batch.max(1)).enumerate() {
            let floor = mine[i * batch.max(1)..].iter().map(|r| r.1).min().unwrap_or(0);
            if floor > *input.time() {
                input.advance_to(floor);
            }
            for r in chunk {
                input.send(*r);
            }
            worker.step();
        }
        input.close();
        worker.step_while(|| !probe.done());
    })
    .expect("timely runs");
    std::mem::take(&mut *seen.lock().expect("lock"))
}

/// Up to `count` records of six keys at times `0..times`, each time and delay multiplied by a
/// `scale` drawn from `scales`.
fn records_at(times: u64, count: usize, scales: impl Strategy<Value = u64>) -> impl Strategy<Value = Vec<Record>> {
    (proptest::collection::vec((0..6u64, 0..times, 0..8u64), 0..count), scales).prop_map(|(rs, scale)| {
        rs.into_iter().enumerate().map(|(i, (key, time, delay))| (key, time * scale, i as u64, delay * scale)).collect()
    })
}

fn records() -> impl Strategy<Value = Vec<Record>> {
    records_at(60, 120, Just(1))
}

/// Records spread over many of the operator's time buckets (about a millisecond wide at first,
/// re-sized as the data's density asks), so that whole buckets complete, others split, emptied
/// ones are reused, and the width changes mid-stream.
fn spread_records() -> impl Strategy<Value = Vec<Record>> {
    records_at(400, 600, prop_oneof![Just(1u64 << 14), Just(1u64 << 19), Just(1u64 << 23)])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn records_over_many_buckets_are_seen_as_the_batch_oracle_says(
        records in spread_records(),
        workers in 1..=3usize,
        batch in 1..40usize,
    ) {
        let expected = oracle(&records);
        let got = run(records, workers, batch);
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn each_key_sees_its_records_and_timers_as_the_batch_oracle_says(
        records in records(),
        workers in 1..=4usize,
        batch in 1..20usize,
    ) {
        let expected = oracle(&records);
        let got = run(records, workers, batch);
        prop_assert_eq!(got, expected);
    }
}

#[test]
fn equal_times_are_ordered_by_tie_break_and_timers_come_first() {
    // Key 1: a record at 5 sets a timer at 7; records at 7 come after the timer, by tie-break,
    // and both set the same timer at 8, which fires once.
    let records = vec![(1, 7, 30, 1), (1, 5, 20, 2), (1, 7, 10, 1)];
    let expected = vec![Seen::Record(20), Seen::Timer(7), Seen::Record(10), Seen::Record(30), Seen::Timer(8)];
    assert_eq!(oracle(&records)[&1], expected);
    for workers in 1..=4 {
        assert_eq!(run(records.clone(), workers, 1)[&1], expected, "{workers} workers");
    }
}
