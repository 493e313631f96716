//! The window operators' aggregates against polars computing the same thing on the whole input.
//!
//! Each case runs a tumbling or sliding window over random keyed trades `(key, event time,
//! price, quantity)` on 1 to 4 workers, applies the change stream (`+1` results and `-1`
//! retractions) to get the final value per `(key, window start)`, and compares it with a
//! polars query over the whole input as one DataFrame:
//!
//! * window membership: a record with event time `t` belongs to every window
//!   `[k·slide, k·slide + width)` that contains `t`; polars derives the candidate starts
//!   `t - t % slide - j·slide` and keeps those that contain `t`;
//! * lateness: a record sent (at timely time) `sent` counts in a window iff
//!   `sent <= start + width - 1 + lateness`, and goes to the late output iff it misses at least
//!   one of its windows;
//! * aggregates per `(key, start)`: count, sum, min, max, mean, population and sample variance,
//!   `Σ quantity`, `Σ price·quantity`, VWAP, and first and last by event time with ties broken
//!   by the least (first) or greatest (last) value, which polars expresses as a sort by
//!   `(time, price, quantity)`.
//!
//! Integer results must match exactly; floating-point results to a relative 1e-9.

use std::collections::BTreeMap;

use polars::prelude::*;
use proptest::prelude::*;
use surveil_operators::{
    Accumulator, Count, First, Last, Max, Mean, Min, Stats, StatsValue, Sum, Variance, VarianceValue, Vwap, VwapValue,
};

// The same harness as the operators' own window tests.
#[path = "../../operators/tests/support/window_run.rs"]
mod window_run;

use window_run::{Changes, Keyed, Shape, run};

/// (key, event time, price, quantity, id)
type Rec = (u64, u64, i64, i64, u64);
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

// ---------------------------------------------------------------------------------------------
// The operator side
// ---------------------------------------------------------------------------------------------

/// Feeds the price of a `(price, quantity)` pair to an accumulator of plain values, so that one
/// run checks the single-value accumulators beside the weighted ones.
#[derive(Clone, Debug)]
struct OnPrice<A>(A);

impl<V: Copy, A: Accumulator<V>> Accumulator<(V, V)> for OnPrice<A> {
    type Output = A::Output;
    fn add(&mut self, time: u64, value: &(V, V)) {
        self.0.add(time, &value.0);
    }
    fn value(&self) -> A::Output {
        self.0.value()
    }
}

type IntAggregates = (
    Stats<i64>,
    (OnPrice<(Count, Sum<i64>, Min<i64>)>, OnPrice<(Max<i64>, Mean<i64>, Variance<i64>)>),
    (Vwap<i64>, First<(i64, i64)>, Last<(i64, i64)>),
);
type IntOutput = (
    StatsValue<i64, i128>,
    ((u64, i128, i64), (i64, f64, VarianceValue)),
    (VwapValue<i128>, Option<(i64, i64)>, Option<(i64, i64)>),
);

fn int_aggregates() -> IntAggregates {
    (
        Stats::default(),
        (OnPrice(Default::default()), OnPrice(Default::default())),
        (Vwap::default(), First::default(), Last::default()),
    )
}

fn int_value(r: &Rec) -> (i64, i64) {
    (r.2, r.3)
}

type FloatAggregates = (
    Stats<f64>,
    (OnPrice<(Count, Sum<f64>, Min<f64>)>, OnPrice<(Max<f64>, Mean<f64>, Variance<f64>)>),
    (Vwap<f64>, OnPrice<First<f64>>, OnPrice<Last<f64>>),
);
type FloatOutput =
    (StatsValue<f64, f64>, ((u64, f64, f64), (f64, f64, VarianceValue)), (VwapValue<f64>, Option<f64>, Option<f64>));

fn float_aggregates() -> FloatAggregates {
    (
        Stats::default(),
        (OnPrice(Default::default()), OnPrice(Default::default())),
        (Vwap::default(), OnPrice(First::by(f64::total_cmp)), OnPrice(Last::by(f64::total_cmp))),
    )
}

/// Prices in hundredths and quantities in quarters, so that float sums round.
fn float_value(r: &Rec) -> (f64, f64) {
    (float_price(r.2), float_quantity(r.3))
}

fn float_price(price: i64) -> f64 {
    price as f64 / 100.0
}

fn float_quantity(quantity: i64) -> f64 {
    quantity as f64 / 4.0
}

/// Applies every change to a multiset per `(key, start)`: each window must end with exactly
/// one live value, which is its result.
fn final_values<O: Clone + PartialEq + std::fmt::Debug>(changes: &Changes<O>, shape: Shape) -> BTreeMap<(u64, u64), O> {
    let mut live: BTreeMap<(u64, u64), Vec<(O, i64)>> = BTreeMap::new();
    for (time, change) in changes {
        assert_eq!(change.end, change.start + shape.width, "window end at {time}: {change:?}");
        let values = live.entry((change.key, change.start)).or_default();
        match values.iter_mut().find(|(v, _)| *v == change.value) {
            Some((_, diff)) => *diff += change.diff,
            None => values.push((change.value.clone(), change.diff)),
        }
    }
    live.into_iter()
        .filter_map(|(slot, mut values)| {
            values.retain(|(_, diff)| *diff != 0);
            match values.as_slice() {
                [] => None,
                [(value, 1)] => Some((slot, value.clone())),
                other => panic!("window {slot:?} does not consolidate to one value: {other:?}"),
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The polars side
// ---------------------------------------------------------------------------------------------

/// What polars computes for one `(key, window start)`, prices and quantities as `T`.
#[derive(Clone, Debug, PartialEq)]
struct Expected<T> {
    count: u64,
    sum: T,
    min: T,
    max: T,
    mean: f64,
    population_variance: f64,
    sample_variance: Option<f64>,
    weight: T,
    weighted_sum: T,
    vwap: Option<f64>,
    first: T,
    first_quantity: T,
    last: T,
    last_quantity: T,
}

/// Reading a polars column of prices or quantities.
trait Native: Sized + Copy {
    /// Whether the input frame holds prices and quantities as `Float64` (else `Int64`).
    const FLOAT: bool;
    fn read(frame: &DataFrame, name: &str) -> Vec<Self>;
}

impl Native for i64 {
    const FLOAT: bool = false;
    fn read(frame: &DataFrame, name: &str) -> Vec<i64> {
        let column = frame.column(name).expect("column").i64().expect("Int64 column");
        column.iter().map(|v| v.expect("no nulls")).collect()
    }
}

impl Native for f64 {
    const FLOAT: bool = true;
    fn read(frame: &DataFrame, name: &str) -> Vec<f64> {
        let column = frame.column(name).expect("column").f64().expect("Float64 column");
        column.iter().map(|v| v.expect("no nulls")).collect()
    }
}

fn read_u64(frame: &DataFrame, name: &str) -> Vec<u64> {
    let column = frame.column(name).expect("column").u64().expect("UInt64 column");
    column.iter().map(|v| v.expect("no nulls")).collect()
}

fn read_optional_f64(frame: &DataFrame, name: &str) -> Vec<Option<f64>> {
    frame.column(name).expect("column").f64().expect("Float64 column").to_vec()
}

/// The input as a DataFrame, prices and quantities as `Int64` or `Float64`.
fn input_frame(records: &[Sent], float: bool) -> DataFrame {
    let column = |f: fn(&Sent) -> u64| records.iter().map(f).collect::<Vec<u64>>();
    let as_i64 =
        |values: Vec<u64>| values.into_iter().map(|v| i64::try_from(v).expect("small times")).collect::<Vec<_>>();
    let prices: Vec<i64> = records.iter().map(|r| r.1.2).collect();
    let quantities: Vec<i64> = records.iter().map(|r| r.1.3).collect();
    let mut frame = df!(
        "key" => column(|r| r.1.0),
        "time" => as_i64(column(|r| r.1.1)),
        "sent" => as_i64(column(|r| r.0)),
        "id" => column(|r| r.1.4),
    )
    .expect("frame");
    let (price, quantity) = if float {
        (
            Column::new("price".into(), prices.into_iter().map(float_price).collect::<Vec<_>>()),
            Column::new("quantity".into(), quantities.into_iter().map(float_quantity).collect::<Vec<_>>()),
        )
    } else {
        (Column::new("price".into(), prices), Column::new("quantity".into(), quantities))
    };
    frame.with_column(price).expect("price");
    frame.with_column(quantity).expect("quantity");
    frame
}

/// Every `(record, window)` membership, with whether the window still accepted the record.
fn memberships(records: &[Sent], shape: Shape, float: bool) -> LazyFrame {
    let slide = i64::try_from(shape.slide).expect("small slide");
    let width = i64::try_from(shape.width).expect("small width");
    let lateness = i64::try_from(shape.lateness).expect("small lateness");
    let frame = input_frame(records, float).lazy();
    // The latest start not after `t` is `t - t % slide`; earlier candidates step back by the
    // slide for as long as a window that starts there could still reach `t`.
    let candidates: Vec<LazyFrame> = (0..=(width - 1) / slide)
        .map(|j| frame.clone().with_column((col("time") - col("time") % lit(slide) - lit(j * slide)).alias("start")))
        .collect();
    concat(candidates, UnionArgs::default())
        .expect("union")
        .filter(col("start").gt_eq(lit(0i64)).and(col("time").lt(col("start") + lit(width))))
        .with_column(col("sent").lt_eq(col("start") + lit(width - 1 + lateness)).alias("accepted"))
}

/// The records that missed at least one of their windows, as (time sent at, id).
fn polars_late(records: &[Sent], shape: Shape) -> Vec<(u64, u64)> {
    let missed = memberships(records, shape, false)
        .filter(col("accepted").not())
        .select([col("sent"), col("id")])
        .collect()
        .expect("late query");
    let sent = i64::read(&missed, "sent");
    let mut late: Vec<(u64, u64)> = sent
        .into_iter()
        .zip(read_u64(&missed, "id"))
        .map(|(s, id)| (u64::try_from(s).expect("non-negative"), id))
        .collect();
    late.sort();
    late.dedup();
    late
}

/// The aggregates per `(key, window start)` over the records each window accepted.
fn polars_windows<T: Native>(records: &[Sent], shape: Shape) -> BTreeMap<(u64, u64), Expected<T>> {
    let by_time = [col("time"), col("price"), col("quantity")];
    let ordered = |name: &str| col(name).sort_by(by_time.clone(), SortMultipleOptions::default());
    let notional = col("price") * col("quantity");
    let result = memberships(records, shape, T::FLOAT)
        .filter(col("accepted"))
        .group_by([col("key"), col("start")])
        .agg([
            len().cast(DataType::UInt64).alias("count"),
            col("price").sum().alias("sum"),
            col("price").min().alias("min"),
            col("price").max().alias("max"),
            col("price").mean().alias("mean"),
            col("price").var(0).alias("population_variance"),
            col("price").var(1).alias("sample_variance"),
            col("quantity").sum().alias("weight"),
            notional.clone().sum().alias("weighted_sum"),
            (notional.sum().cast(DataType::Float64) / col("quantity").sum().cast(DataType::Float64)).alias("vwap"),
            ordered("price").first().alias("first"),
            ordered("quantity").first().alias("first_quantity"),
            ordered("price").last().alias("last"),
            ordered("quantity").last().alias("last_quantity"),
        ])
        .with_column(col("start").cast(DataType::UInt64))
        .collect()
        .expect("window query");
    let keys = read_u64(&result, "key");
    let starts = read_u64(&result, "start");
    let counts = read_u64(&result, "count");
    let [sums, mins, maxs, weights, weighted_sums, firsts, first_quantities, lasts, last_quantities] =
        ["sum", "min", "max", "weight", "weighted_sum", "first", "first_quantity", "last", "last_quantity"]
            .map(|name| T::read(&result, name));
    let [means, populations, samples, vwaps] =
        ["mean", "population_variance", "sample_variance", "vwap"].map(|name| read_optional_f64(&result, name));
    (0..result.height())
        .map(|i| {
            let expected = Expected {
                count: counts[i],
                sum: sums[i],
                min: mins[i],
                max: maxs[i],
                mean: means[i].expect("mean of a non-empty window"),
                population_variance: populations[i].expect("population variance of a non-empty window"),
                sample_variance: samples[i],
                weight: weights[i],
                weighted_sum: weighted_sums[i],
                vwap: vwaps[i],
                first: firsts[i],
                first_quantity: first_quantities[i],
                last: lasts[i],
                last_quantity: last_quantities[i],
            };
            ((keys[i], starts[i]), expected)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Comparison
// ---------------------------------------------------------------------------------------------

/// Equal to a relative 1e-9 (absolute near zero).
fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

fn close_option(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => close(a, b),
        (None, None) => true,
        _ => false,
    }
}

fn assert_same_windows<O, T>(got: &BTreeMap<(u64, u64), O>, want: &BTreeMap<(u64, u64), Expected<T>>, context: &str) {
    let (got_slots, want_slots): (Vec<_>, Vec<_>) = (got.keys().collect(), want.keys().collect());
    assert_eq!(got_slots, want_slots, "(key, start) windows, operator vs polars, {context}");
}

fn compare_int(got: &BTreeMap<(u64, u64), IntOutput>, want: &BTreeMap<(u64, u64), Expected<i64>>, context: &str) {
    assert_same_windows(got, want, context);
    for (slot, w) in want {
        let (stats, ((count, sum, min), (max, mean, variance)), (vwap, first, last)) = &got[slot];
        let at = || format!("window {slot:?}, {context}: operator {:?}, polars {w:?}", got[slot]);
        assert_eq!((stats.count, *count, variance.count), (w.count, w.count, w.count), "count: {}", at());
        assert_eq!((stats.sum, *sum), (i128::from(w.sum), i128::from(w.sum)), "sum: {}", at());
        assert_eq!((stats.min, *min, stats.max, *max), (w.min, w.min, w.max, w.max), "min, max: {}", at());
        assert_eq!((stats.first, stats.last), (w.first, w.last), "Stats first, last: {}", at());
        assert_eq!(*first, Some((w.first, w.first_quantity)), "First: {}", at());
        assert_eq!(*last, Some((w.last, w.last_quantity)), "Last: {}", at());
        assert_eq!((stats.weight, stats.weighted_sum), (i128::from(w.weight), i128::from(w.weighted_sum)), "{}", at());
        assert_eq!((vwap.weight, vwap.weighted_sum), (i128::from(w.weight), i128::from(w.weighted_sum)), "{}", at());
        assert!(close(stats.mean, w.mean) && close(*mean, w.mean) && close(variance.mean, w.mean), "mean: {}", at());
        let populations = [stats.population_variance, variance.population];
        assert!(populations.iter().all(|p| close(*p, w.population_variance)), "population variance: {}", at());
        let samples = [stats.sample_variance, variance.sample];
        assert!(samples.iter().all(|s| close_option(*s, w.sample_variance)), "sample variance: {}", at());
        let vwaps = [stats.weighted_mean(), vwap.mean::<i64>()];
        assert!(vwaps.iter().all(|v| close_option(*v, w.vwap)), "vwap: {}", at());
    }
}

fn compare_float(got: &BTreeMap<(u64, u64), FloatOutput>, want: &BTreeMap<(u64, u64), Expected<f64>>, context: &str) {
    assert_same_windows(got, want, context);
    for (slot, w) in want {
        let (stats, ((count, sum, min), (max, mean, variance)), (vwap, first, last)) = &got[slot];
        let at = || format!("window {slot:?}, {context}: operator {:?}, polars {w:?}", got[slot]);
        assert_eq!((stats.count, *count, variance.count), (w.count, w.count, w.count), "count: {}", at());
        // Min, max, first and last select an input value, so they are exact.
        assert_eq!((stats.min, *min, stats.max, *max), (w.min, w.min, w.max, w.max), "min, max: {}", at());
        assert_eq!((stats.first, stats.last), (w.first, w.last), "Stats first, last: {}", at());
        assert_eq!((*first, *last), (Some(w.first), Some(w.last)), "First, Last: {}", at());
        assert!(close(stats.sum, w.sum) && close(*sum, w.sum), "sum: {}", at());
        assert!(close(stats.weight, w.weight) && close(vwap.weight, w.weight), "weight: {}", at());
        let notionals = [stats.weighted_sum, vwap.weighted_sum];
        assert!(notionals.iter().all(|n| close(*n, w.weighted_sum)), "notional: {}", at());
        assert!(close(stats.mean, w.mean) && close(*mean, w.mean) && close(variance.mean, w.mean), "mean: {}", at());
        let populations = [stats.population_variance, variance.population];
        assert!(populations.iter().all(|p| close(*p, w.population_variance)), "population variance: {}", at());
        let samples = [stats.sample_variance, variance.sample];
        assert!(samples.iter().all(|s| close_option(*s, w.sample_variance)), "sample variance: {}", at());
        let vwaps = [stats.weighted_mean(), vwap.mean::<f64>()];
        assert!(vwaps.iter().all(|v| close_option(*v, w.vwap)), "vwap: {}", at());
    }
}

/// Runs the integer and the floating-point aggregates and compares both with polars, and the
/// late output with the records polars finds late.
fn check(workers: usize, steps: usize, records: &[Sent], shape: Shape) {
    let context = format!("{workers} workers, {shape:?}");
    let want_late = polars_late(records, shape);

    let (changes, late) = run(workers, steps, records, shape, int_aggregates, int_value);
    let mut got_late: Vec<(u64, u64)> = late.iter().map(|(time, r)| (*time, r.4)).collect();
    got_late.sort();
    assert_eq!(got_late, want_late, "late records (time, id), operator vs polars, {context}");
    compare_int(&final_values(&changes, shape), &polars_windows::<i64>(records, shape), &context);

    let (changes, _) = run(workers, steps, records, shape, float_aggregates, float_value);
    compare_float(&final_values(&changes, shape), &polars_windows::<f64>(records, shape), &context);
}

// ---------------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------------

/// Trades with keys below `keys`, event times below `horizon` (a small horizon makes many equal
/// timestamps), prices in `-price_range..=price_range` (a small range makes equal prices at
/// equal times), and quantities in 1..100. Most are sent up to `bound` before their event time
/// (out of order within the watermark bound); about one in `late_one_in` is sent 1 to 80 after
/// it, within or beyond the allowed lateness.
fn trades(keys: u64, horizon: u64, price_range: i64, bound: u64, late_one_in: u32) -> impl Strategy<Value = Vec<Sent>> {
    let trade = (0..keys, 0..horizon, -price_range..=price_range, 1i64..100, 0..=bound, 0..late_one_in, 1u64..80);
    prop::collection::vec(trade, 0..200).prop_map(|trades| {
        trades
            .into_iter()
            .enumerate()
            .map(|(id, (key, time, price, quantity, early, late, after))| {
                let sent = if late == 0 { time + after } else { time.saturating_sub(early) };
                (sent, (key, time, price, quantity, id as u64))
            })
            .collect()
    })
}

/// One key, a few keys, or many (most windows then hold a single trade).
fn keys() -> impl Strategy<Value = u64> {
    prop_oneof![Just(1u64), 2u64..12, 100u64..400]
}

fn inputs() -> impl Strategy<Value = Vec<Sent>> {
    (keys(), prop_oneof![Just(12u64), Just(300u64)], prop_oneof![Just(2i64), Just(1000i64)], 0u64..25)
        .prop_flat_map(|(keys, horizon, price_range, bound)| trades(keys, horizon, price_range, bound, 8))
}

fn lateness() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0u64), 1u64..60]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn tumbling_windows_match_polars(
        records in inputs(), width in 1u64..40, lateness in lateness(), workers in 1usize..=4, steps in 0usize..3
    ) {
        check(workers, steps, &records, Shape { width, slide: width, lateness });
    }

    #[test]
    fn sliding_windows_match_polars(
        records in inputs(),
        (width, slide) in (1u64..6, 1u64..12, 0u64..3).prop_map(|(per, slide, kind)| {
            // The width a multiple of the slide, not a multiple, or smaller (gaps between windows).
            let width = match kind { 0 => slide * per, 1 => slide * per + slide / 2 + 1, _ => (slide / 2).max(1) };
            (width, slide)
        }),
        lateness in lateness(),
        workers in 1usize..=4,
        steps in 0usize..3,
    ) {
        check(workers, steps, &records, Shape { width, slide, lateness });
    }
}

#[test]
fn empty_input() {
    for shape in [Shape { width: 10, slide: 10, lateness: 0 }, Shape { width: 10, slide: 3, lateness: 5 }] {
        assert!(polars_windows::<i64>(&[], shape).is_empty());
        check(2, 1, &[], shape);
    }
}

/// One key, trades at every time, out of order by up to 5 and a few within the lateness.
#[test]
fn single_key() {
    let records: Vec<Sent> = (0..120u64)
        .map(|i| {
            let time = (i * 7) % 120;
            let sent = if i % 11 == 0 { time + 3 } else { time.saturating_sub(i % 6) };
            (sent, (42, time, (i as i64 * 37) % 201 - 100, (i as i64 % 9) + 1, i))
        })
        .collect();
    for workers in [1, 3] {
        check(workers, 1, &records, Shape { width: 10, slide: 10, lateness: 4 });
        check(workers, 1, &records, Shape { width: 10, slide: 4, lateness: 4 });
    }
}

/// A thousand keys, three trades each.
#[test]
fn many_keys() {
    let records: Vec<Sent> = (0..3000u64)
        .map(|i| {
            let (key, time) = (i % 1000, (i * 13) % 50);
            (time.saturating_sub(i % 4), (key, time, (i as i64 * 7919) % 2001 - 1000, (i as i64 % 50) + 1, i))
        })
        .collect();
    check(4, 1, &records, Shape { width: 20, slide: 20, lateness: 0 });
    check(2, 1, &records, Shape { width: 20, slide: 5, lateness: 3 });
}

/// Many trades at one event time with equal prices: first and last fall back to the
/// tie-break, (price, quantity) least for first and greatest for last.
#[test]
fn equal_timestamps() {
    let mut records: Vec<Sent> = Vec::new();
    for (i, (price, quantity)) in [(5, 3), (5, 1), (-2, 8), (-2, 4), (9, 2), (9, 7), (0, 1)].into_iter().enumerate() {
        for key in 0..3u64 {
            records.push((3, (key, 6, price, quantity, records.len() as u64)));
        }
        records.push((4, (9, 6 + (i as u64 % 2), price, quantity, records.len() as u64)));
    }
    let shape = Shape { width: 10, slide: 10, lateness: 0 };
    let want = polars_windows::<i64>(&records, shape);
    let key0 = &want[&(0, 0)];
    assert_eq!((key0.first, key0.first_quantity, key0.last, key0.last_quantity), (-2, 4, 9, 7));
    for workers in 1..=4 {
        check(workers, 1, &records, shape);
    }
}

/// Records sent after their window's last time plus the lateness miss it: both sides leave
/// them out (their extreme prices would show in min and max) and the operator reports them late.
#[test]
fn late_beyond_the_lateness() {
    let shape = Shape { width: 10, slide: 10, lateness: 5 };
    let mut records: Vec<Sent> = (0..40u64).map(|i| (i, (i % 3, i, i as i64, 1, i))).collect();
    // Window [0, 10) closes for corrections after 9 + 5 = 14.
    records.push((14, (0, 3, 500, 2, 100))); // within the lateness: counts
    records.push((15, (0, 4, 1_000_000, 2, 101))); // beyond: late
    records.push((15, (1, 9, -1_000_000, 2, 102))); // beyond: late
    records.push((30, (2, 25, 7, 1, 103))); // after [20, 30) ends, within 29 + 5: counts
    records.push((40, (2, 22, 1_000_000, 1, 104))); // 40 > 34: late
    records.push((13, (1, 8, 77, 3, 105))); // 13 <= 14: counts
    records.sort_by_key(|r| r.0);
    assert_eq!(polars_late(&records, shape), vec![(15, 101), (15, 102), (40, 104)]);
    let want = polars_windows::<i64>(&records, shape);
    assert_eq!((want[&(0, 0)].max, want[&(1, 0)].min, want[&(2, 20)].max), (500, 1, 29));
    for workers in 1..=4 {
        check(workers, 1, &records, shape);
    }
    // Sliding: the late record still counts in the windows it did not miss.
    let sliding = Shape { width: 10, slide: 5, lateness: 2 };
    // Trade 105 (time 8) misses [0, 10), closed after 9 + 2, and is on time for [5, 15).
    assert_eq!(polars_late(&records, sliding), vec![(13, 105), (14, 100), (15, 101), (15, 102), (40, 104)]);
    assert_eq!(polars_windows::<i64>(&records, sliding)[&(1, 5)].max, 77);
    check(2, 1, &records, sliding);
}

/// Overlapping windows (width a multiple of the slide and not) and windows with gaps.
#[test]
fn sliding_windows() {
    let records: Vec<Sent> = (0..200u64)
        .map(|i| {
            let time = (i * 31) % 97;
            let sent = if i % 13 == 0 { time + 8 } else { time.saturating_sub(i % 5) };
            (sent, (i % 5, time, (i as i64 * 53) % 301 - 150, (i as i64 % 11) + 1, i))
        })
        .collect();
    for (width, slide) in [(10, 5), (10, 3), (7, 2), (3, 10), (1, 1), (30, 1)] {
        for lateness in [0, 6] {
            check(3, 1, &records, Shape { width, slide, lateness });
        }
    }
    let want = polars_windows::<i64>(&records, Shape { width: 10, slide: 3, lateness: 0 });
    assert!(want.keys().any(|(_, start)| start % 3 == 0 && start % 10 != 0));
}
