//! Property tests for the event-time window operators against a batch oracle.
//!
//! The oracle sees the whole input at once and derives, for every `(key, window)`, the change
//! stream the semantics prescribe: the on-time records reported at the window's last time, then
//! one correction per later arrival time within the lateness, and the records that missed a
//! window on the late output. The streaming operator must produce exactly that, each change at
//! its timestamp, for 1 to 4 workers and any scheduling.

use std::collections::BTreeMap;

use proptest::prelude::*;
use surveil_operators::{
    Accumulator, Count, EventTimeWindows, First, Last, Max, Mean, Min, Stats, StatsValue, Sum, Variance, Vwap,
    WindowChange, WindowOptions,
};
use timely::dataflow::operators::capture::Capture;

#[path = "support/window_run.rs"]
mod window_run;

use window_run::{Changes, Keyed, Shape, run};

/// (key, event time, value, id)
type Rec = (u64, u64, i64, u64);
/// (time sent at, record)
type Sent = (u64, Rec);

impl Keyed for Rec {
    fn key(&self) -> u64 {
        self.0
    }
    fn time(&self) -> u64 {
        self.1
    }
}

fn starts(time: u64, shape: Shape) -> Vec<u64> {
    (0..=time / shape.slide).map(|k| k * shape.slide).filter(|s| *s <= time && time < s + shape.width).collect()
}

/// The changes and late records the semantics prescribe, from the whole input.
fn oracle<V, A>(
    records: &[Sent],
    shape: Shape,
    factory: fn() -> A,
    value: fn(&Rec) -> V,
) -> (Changes<A::Output>, Vec<Sent>)
where
    A: Accumulator<V>,
    A::Output: Clone + PartialEq,
{
    let mut late = Vec::new();
    let mut groups: BTreeMap<(u64, u64), Vec<Sent>> = BTreeMap::new();
    for &(sent, record) in records {
        let mut missed = false;
        for start in starts(record.1, shape) {
            let last = start + shape.width - 1;
            if sent <= last + shape.lateness {
                groups.entry((record.0, start)).or_default().push((sent, record));
            } else {
                missed = true;
            }
        }
        if missed {
            late.push((sent, record));
        }
    }
    let mut changes = Vec::new();
    for ((key, start), mut group) in groups {
        let (end, last) = (start + shape.width, start + shape.width - 1);
        let change = |value, diff| WindowChange { key, start, end, value, diff };
        group.sort_by_key(|g| g.0);
        let mut acc = factory();
        let mut reported: Option<A::Output> = None;
        let on_time: Vec<_> = group.iter().filter(|g| g.0 <= last).collect();
        if !on_time.is_empty() {
            for (_, r) in on_time {
                acc.add(r.1, &value(r));
            }
            reported = Some(acc.value());
            changes.push((last, change(acc.value(), 1)));
        }
        let mut corrections: BTreeMap<u64, Vec<Rec>> = BTreeMap::new();
        for (sent, r) in group.iter().filter(|g| g.0 > last) {
            corrections.entry(*sent).or_default().push(*r);
        }
        for (sent, rs) in corrections {
            for r in &rs {
                acc.add(r.1, &value(r));
            }
            let new = acc.value();
            if reported.as_ref() == Some(&new) {
                continue;
            }
            if let Some(old) = reported.take() {
                changes.push((sent, change(old, -1)));
            }
            changes.push((sent, change(new.clone(), 1)));
            reported = Some(new);
        }
    }
    (changes, late)
}

fn sort_changes<O>(changes: &mut Changes<O>) {
    changes.sort_by_key(|(t, c)| (*t, c.key, c.start, c.diff));
}

/// Walks each window's changes in time order: every retraction must cancel the value inserted
/// last, and there is at most one live value. Returns the consolidated value per window.
fn consolidate<O: Clone + PartialEq + std::fmt::Debug>(changes: &Changes<O>) -> BTreeMap<(u64, u64), O> {
    let mut live: BTreeMap<(u64, u64), O> = BTreeMap::new();
    let mut sorted: Vec<_> = changes.iter().collect();
    sorted.sort_by_key(|(t, c)| (*t, c.key, c.start, c.diff));
    for (t, c) in sorted {
        let slot = (c.key, c.start);
        match c.diff {
            -1 => {
                let previous = live.remove(&slot);
                assert_eq!(previous.as_ref(), Some(&c.value), "retraction at {t} must cancel an insertion: {c:?}");
            }
            1 => assert!(live.insert(slot, c.value.clone()).is_none(), "two live values at {t}: {c:?}"),
            d => panic!("diff {d}"),
        }
    }
    live
}

/// The batch aggregate per window over the records the window accepted (on time or within
/// the lateness).
fn batch<V, A: Accumulator<V>>(
    records: &[Sent],
    shape: Shape,
    factory: fn() -> A,
    value: fn(&Rec) -> V,
) -> BTreeMap<(u64, u64), A::Output> {
    let mut accs: BTreeMap<(u64, u64), A> = BTreeMap::new();
    for &(sent, r) in records {
        for start in starts(r.1, shape) {
            if sent <= start + shape.width - 1 + shape.lateness {
                accs.entry((r.0, start)).or_insert_with(factory).add(r.1, &value(&r));
            }
        }
    }
    accs.into_iter().map(|(k, a)| (k, a.value())).collect()
}

/// Records with keys below `keys`, event times below 300, mostly sent up to `bound` before
/// their event time and sometimes (about one in `late_one_in`) up to 80 after it.
fn records(keys: u64, bound: u64, late_one_in: u32) -> impl Strategy<Value = Vec<Sent>> {
    let record = (0..keys, 0u64..300, -1000i64..1000, 0..bound + 1, 0..late_one_in, 1u64..80);
    prop::collection::vec(record, 0..250).prop_map(|rs| {
        rs.into_iter()
            .enumerate()
            .map(|(id, (key, time, value, early, late, after))| {
                let sent = if late == 0 { time + after } else { time.saturating_sub(early) };
                (sent, (key, time, value, id as u64))
            })
            .collect()
    })
}

fn keys() -> impl Strategy<Value = u64> {
    prop_oneof![Just(1u64), 2u64..40]
}

fn lateness() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0u64), 1u64..60]
}

// Every built-in over `i64` is exact, so the whole change stream must match the oracle.
type WeightedAggregates = ((Count, Stats<i64>, Vwap<i64>), (First<(i64, i64)>, Last<(i64, i64)>));
type PlainAggregates = ((Sum<i64>, Min<i64>, Max<i64>), (Mean<i64>, Variance<i64>, Stats<i64>));

fn weighted_aggregates() -> WeightedAggregates {
    Default::default()
}

fn plain_aggregates() -> PlainAggregates {
    Default::default()
}

fn int_value(r: &Rec) -> i64 {
    r.2
}

fn weighted_value(r: &Rec) -> (i64, i64) {
    (r.2, (r.3 % 7) as i64 + 1)
}

fn check<V, A>(workers: usize, steps: usize, records: &[Sent], shape: Shape, factory: fn() -> A, value: fn(&Rec) -> V)
where
    V: 'static,
    A: Accumulator<V> + 'static,
    A::Output: Clone + PartialEq + Send + std::fmt::Debug + 'static,
{
    let (mut got, mut got_late) = run(workers, steps, records, shape, factory, value);
    let (mut want, mut want_late) = oracle(records, shape, factory, value);
    sort_changes(&mut got);
    sort_changes(&mut want);
    assert_eq!(got, want, "changes, {workers} workers, {shape:?}");
    got_late.sort();
    want_late.sort();
    assert_eq!(got_late, want_late, "late records, {workers} workers, {shape:?}");
    let consolidated = consolidate(&got);
    assert_eq!(consolidated, batch(records, shape, factory, value), "consolidated, {shape:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn tumbling_matches_the_oracle(
        (records, width, lateness, workers, steps) in keys().prop_flat_map(|keys| {
            (0u64..25).prop_flat_map(move |bound| {
                (records(keys, bound, 8), 1u64..40, lateness(), 1usize..=4, 0usize..3)
            })
        })
    ) {
        let shape = Shape { width, slide: width, lateness };
        check(workers, steps, &records, shape, weighted_aggregates, weighted_value);
    }

    #[test]
    fn sliding_matches_the_oracle(
        (records, width, slide, lateness, workers, steps) in keys().prop_flat_map(|keys| {
            (1u64..6, 1u64..12, 0u64..3).prop_flat_map(move |(per, slide, shape)| {
                // width a multiple of the slide, not a multiple, or smaller (gaps)
                let width = match shape { 0 => slide * per, 1 => slide * per + slide / 2 + 1, _ => (slide / 2).max(1) };
                (records(keys, 15, 6), Just(width), Just(slide), lateness(), 1usize..=4, 0usize..3)
            })
        })
    ) {
        let shape = Shape { width, slide, lateness };
        check(workers, steps, &records, shape, plain_aggregates, int_value);
    }

    /// Floating-point moments depend on arrival order in their last bits: check the structure
    /// of the change stream exactly and the consolidated values against the batch aggregate
    /// within a tolerance.
    #[test]
    fn float_stats_consolidate_to_the_batch_aggregate(
        (records, width, lateness, workers) in keys().prop_flat_map(|keys| {
            (records(keys, 10, 5), 1u64..30, lateness(), 1usize..=4)
        })
    ) {
        let shape = Shape { width, slide: width, lateness };
        let value = |r: &Rec| (r.2 as f64 / 8.0, (r.3 % 5) as f64 + 0.5);
        let (got, mut got_late) = run(workers, 1, &records, shape, Stats::<f64>::default, value);
        let consolidated = consolidate(&got);
        let want = batch(&records, shape, Stats::<f64>::default, value);
        prop_assert_eq!(consolidated.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>());
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()));
        for (slot, w) in &want {
            let g: &StatsValue<f64, f64> = &consolidated[slot];
            prop_assert_eq!((g.count, g.min, g.max, g.first, g.last), (w.count, w.min, w.max, w.first, w.last));
            prop_assert!(close(g.sum, w.sum) && close(g.mean, w.mean) && close(g.weighted_sum, w.weighted_sum));
            prop_assert!(close(g.population_variance, w.population_variance), "{:?} vs {:?}", g, w);
            prop_assert_eq!(g.sample_variance.is_some(), w.sample_variance.is_some());
            if let (Some(a), Some(b)) = (g.sample_variance, w.sample_variance) {
                prop_assert!(close(a, b));
            }
        }
        let (_, mut want_late) = oracle(&records, shape, Count::default, value);
        got_late.sort();
        want_late.sort();
        prop_assert_eq!(got_late, want_late);
    }
}

/// All records of many keys at one time, then one late record per key: equal timestamps,
/// a correction per key, and nothing late.
#[test]
fn equal_timestamps_and_corrections_on_every_key() {
    let mut records: Vec<Sent> =
        (0..100u64).flat_map(|k| (0..5).map(move |i| (0, (k, 7, i, k * 10 + i as u64)))).collect();
    records.extend((0..100u64).map(|k| (12, (k, 9, 100, 10_000 + k))));
    let shape = Shape { width: 10, slide: 10, lateness: 5 };
    for workers in 1..=3 {
        let (got, late) = run(workers, 1, &records, shape, Count::default, |_| ());
        assert!(late.is_empty());
        assert_eq!(got.iter().filter(|(t, c)| *t == 9 && c.value == 5 && c.diff == 1).count(), 100);
        assert_eq!(got.iter().filter(|(t, c)| *t == 12 && c.value == 5 && c.diff == -1).count(), 100);
        assert_eq!(got.iter().filter(|(t, c)| *t == 12 && c.value == 6 && c.diff == 1).count(), 100);
        assert_eq!(got.len(), 300);
    }
}

/// No input at all: nothing reported, and the dataflow completes.
#[test]
fn empty_input_reports_nothing() {
    let (got, late) = run(2, 1, &[] as &[Sent], Shape { width: 5, slide: 1, lateness: 3 }, Count::default, |_| ());
    assert!(got.is_empty() && late.is_empty());
}

/// Keys of any hashable type: strings go through the byte path of the key hasher.
#[test]
fn string_keys() {
    let words = ["ask", "bid", "a-much-longer-key-than-eight-bytes", "", "bid"];
    let captured = timely::example(move |scope| {
        use timely::dataflow::operators::ToStream;
        let records: Vec<(String, u64)> = words.iter().enumerate().map(|(i, w)| (w.to_string(), i as u64)).collect();
        let windows = records.to_stream(scope).tumbling_window(
            "Words",
            100,
            |r| r.0.clone(),
            |r| r.1,
            |_| (),
            Count::default,
            WindowOptions::default(),
        );
        windows.output.capture()
    });
    let mut counts: Vec<(String, u64)> = timely::dataflow::operators::capture::Extract::extract(captured)
        .into_iter()
        .flat_map(|(_, v)| v)
        .map(|c| (c.key, c.value))
        .collect();
    counts.sort();
    let expected = [("", 1), ("a-much-longer-key-than-eight-bytes", 1), ("ask", 1), ("bid", 2)];
    assert_eq!(counts, expected.iter().map(|(k, c)| (k.to_string(), *c)).collect::<Vec<_>>());
}
