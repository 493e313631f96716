//! Tumbling and sliding event-time windows with per-key incremental aggregates.
//!
//! Records are routed by key, assigned to windows `[start, start + width)` by their event time
//! (starts are multiples of the slide, counted from time 0), and folded into one
//! [`Accumulator`] per key and window as they arrive, so the operator keeps one small state per
//! live `(key, window)` rather than the records.
//!
//! # When windows report
//!
//! The timely timestamp is event time and the input frontier is the watermark. Write `last` for
//! a window's largest time (`end - 1`), `L` for the allowed lateness, and `t` for the timely
//! time a record travels at (normally `t <= ` its event time). For each window of a record:
//!
//! * `t <= last`: the record is **on time**. The window holds a capability at `last` from its
//!   first record and reports `(value, +1)` at time `last` once the watermark passes `last`.
//! * `last < t <= last + L`: the record is **within the lateness**. Once the watermark passes
//!   `t`, the operator applies every such record that travelled at `t` and reports one
//!   correction per `(key, window)` at time `t`: `(old value, -1)` then `(new value, +1)`, or
//!   only `(new value, +1)` if the window had reported nothing for the key. Corrections that
//!   leave the value unchanged report nothing.
//! * `t > last + L`: the window can no longer change and the record **misses** it. A record that
//!   misses any of its windows goes to the `late` output at time `t` (for sliding windows it
//!   still counts in the windows it did not miss), so nothing is dropped silently.
//!
//! A window's state is freed once the watermark passes `last + L`. Empty windows report
//! nothing. Because every decision depends on the record's timely time rather than on when the
//! operator happens to be scheduled, the change stream (each change at its timestamp) is the
//! same for any number of workers and any interleaving, provided the accumulator's result does
//! not depend on the order of its inputs. All built-in accumulators over `i64` are exact and
//! order-independent; floating-point sums and Welford moments over `f64` can differ in the last
//! bits with the arrival order.
//!
//! # Accumulators
//!
//! [`Count`], [`Sum`], [`Min`], [`Max`], [`Mean`], [`Variance`] (population and sample),
//! [`Vwap`] (`Σ v·w / Σ w` over `(value, weight)` pairs), [`First`] and [`Last`] (by event time,
//! ties broken by a total order on the values), and [`Stats`], which gives all of them at once.
//! Tuples of accumulators are accumulators. Implement [`Accumulator`] to plug in your own.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
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

use crate::routing::route;

// ---------------------------------------------------------------------------------------------
// Accumulators
// ---------------------------------------------------------------------------------------------

/// Incremental state for one key in one window: values are added one at a time and the result
/// can be read at any point, so windows never buffer records.
pub trait Accumulator<V> {
    /// What a window reports for a key.
    type Output;

    /// Adds one value with its event time.
    fn add(&mut self, time: u64, value: &V);

    /// The current result. The window operator only reads accumulators that have seen at least
    /// one value.
    fn value(&self) -> Self::Output;
}

impl<V, A: Accumulator<V>, B: Accumulator<V>> Accumulator<V> for (A, B) {
    type Output = (A::Output, B::Output);
    #[inline]
    fn add(&mut self, time: u64, value: &V) {
        self.0.add(time, value);
        self.1.add(time, value);
    }
    fn value(&self) -> Self::Output {
        (self.0.value(), self.1.value())
    }
}

impl<V, A: Accumulator<V>, B: Accumulator<V>, C: Accumulator<V>> Accumulator<V> for (A, B, C) {
    type Output = (A::Output, B::Output, C::Output);
    #[inline]
    fn add(&mut self, time: u64, value: &V) {
        self.0.add(time, value);
        self.1.add(time, value);
        self.2.add(time, value);
    }
    fn value(&self) -> Self::Output {
        (self.0.value(), self.1.value(), self.2.value())
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for i64 {}
    impl Sealed for f64 {}
}

/// The value types the numeric built-in accumulators understand: `i64`, with exact integer
/// sums and moments that do not depend on arrival order, and `f64`.
pub trait Number: sealed::Sealed + Copy + PartialEq + Default + Debug + 'static {
    /// Running sums: `i128` for `i64` (exact), `f64` for `f64`.
    type Sum: Copy + PartialEq + Default + Debug + 'static;
    /// State for mean and variance: [`IntegerMoments`] for `i64`, [`Welford`] for `f64`.
    type Moments: Clone + Default + Debug + 'static;
    /// The weight of an unweighted value.
    const ONE: Self;

    /// The value in the sum type.
    fn widen(self) -> Self::Sum;
    /// `self * weight` in the sum type (exact for `i64`).
    fn weighted(self, weight: Self) -> Self::Sum;
    /// `sum + more`. Integer sums wrap past `±2^127`, identically in debug and release builds.
    fn add_sum(sum: Self::Sum, more: Self::Sum) -> Self::Sum;
    /// A sum as `f64`, for means and ratios.
    fn sum_to_f64(sum: Self::Sum) -> f64;
    /// A total order (`f64::total_cmp` for floats), so that min, max and tie-breaks are
    /// deterministic even with NaN.
    fn order(&self, other: &Self) -> Ordering;
    /// Adds a value to moments state.
    fn push_moment(moments: &mut Self::Moments, value: Self);
    /// Mean and variance from moments state.
    fn moments_value(moments: &Self::Moments) -> VarianceValue;
}

impl Number for i64 {
    type Sum = i128;
    type Moments = IntegerMoments;
    const ONE: i64 = 1;
    #[inline]
    fn widen(self) -> i128 {
        i128::from(self)
    }
    #[inline]
    fn weighted(self, weight: i64) -> i128 {
        i128::from(self) * i128::from(weight)
    }
    #[inline]
    fn add_sum(sum: i128, more: i128) -> i128 {
        sum.wrapping_add(more)
    }
    #[inline]
    fn sum_to_f64(sum: i128) -> f64 {
        sum as f64
    }
    #[inline]
    fn order(&self, other: &i64) -> Ordering {
        self.cmp(other)
    }
    #[inline]
    fn push_moment(moments: &mut IntegerMoments, value: i64) {
        moments.push(value);
    }
    fn moments_value(moments: &IntegerMoments) -> VarianceValue {
        moments.value()
    }
}

impl Number for f64 {
    type Sum = f64;
    type Moments = Welford;
    const ONE: f64 = 1.0;
    #[inline]
    fn widen(self) -> f64 {
        self
    }
    #[inline]
    fn weighted(self, weight: f64) -> f64 {
        self * weight
    }
    #[inline]
    fn add_sum(sum: f64, more: f64) -> f64 {
        sum + more
    }
    #[inline]
    fn sum_to_f64(sum: f64) -> f64 {
        sum
    }
    #[inline]
    fn order(&self, other: &f64) -> Ordering {
        self.total_cmp(other)
    }
    #[inline]
    fn push_moment(moments: &mut Welford, value: f64) {
        moments.push(value);
    }
    fn moments_value(moments: &Welford) -> VarianceValue {
        moments.value()
    }
}

/// Mean and variance of a window's values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VarianceValue {
    /// Number of values.
    pub count: u64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Population variance `Σ (x - mean)² / n`.
    pub population: f64,
    /// Sample variance `Σ (x - mean)² / (n - 1)`; `None` below two values.
    pub sample: Option<f64>,
}

/// Welford's online mean and variance for `f64`: numerically stable in one pass.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Welford {
    count: u64,
    mean: f64,
    m2: f64,
}

impl Welford {
    /// Adds a value.
    #[inline]
    pub fn push(&mut self, x: f64) {
        self.count += 1;
        let delta = x - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (x - self.mean);
    }

    /// The mean and variances so far (zeros when empty).
    pub fn value(&self) -> VarianceValue {
        let n = self.count as f64;
        VarianceValue {
            count: self.count,
            mean: self.mean,
            population: if self.count > 0 { self.m2 / n } else { 0.0 },
            sample: (self.count > 1).then(|| self.m2 / (n - 1.0)),
        }
    }
}

/// Exact moments of `i64` values: the count, `Σx` in 128 bits and `Σx²` in 256 bits, so the
/// variance `(nΣx² - (Σx)²) / n²` is computed exactly before a final rounding, independent of
/// the order of the values (which keeps results identical for any number of workers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IntegerMoments {
    count: u64,
    sum: i128,
    /// `Σx²` as a 256-bit number (high, low).
    sum_sq: (u128, u128),
}

impl IntegerMoments {
    /// Adds a value.
    #[inline]
    pub fn push(&mut self, x: i64) {
        self.count += 1;
        self.sum += i128::from(x);
        let square = u128::from(x.unsigned_abs()) * u128::from(x.unsigned_abs());
        let (low, carry) = self.sum_sq.1.overflowing_add(square);
        self.sum_sq = (self.sum_sq.0 + u128::from(carry), low);
    }

    /// The mean and variances so far (zeros when empty).
    pub fn value(&self) -> VarianceValue {
        if self.count == 0 {
            return VarianceValue::default();
        }
        let n = self.count as f64;
        // n * Σx²: Σx² < 2^190, so the high part times n fits in 128 bits.
        let (carry, low) = mul_u128(self.sum_sq.1, u128::from(self.count));
        let scaled = (self.sum_sq.0 * u128::from(self.count) + carry, low);
        let square_of_sum = mul_u128(self.sum.unsigned_abs(), self.sum.unsigned_abs());
        // n·Σx² - (Σx)² >= 0 (Cauchy-Schwarz).
        let (low, borrow) = scaled.1.overflowing_sub(square_of_sum.1);
        let high = scaled.0 - square_of_sum.0 - u128::from(borrow);
        let spread = high as f64 * 2f64.powi(128) + low as f64;
        VarianceValue {
            count: self.count,
            mean: self.sum as f64 / n,
            population: spread / (n * n),
            sample: (self.count > 1).then(|| spread / (n * (n - 1.0))),
        }
    }
}

/// The 256-bit product of two 128-bit numbers, as (high, low).
fn mul_u128(a: u128, b: u128) -> (u128, u128) {
    const LOW: u128 = u64::MAX as u128;
    let (a0, a1, b0, b1) = (a & LOW, a >> 64, b & LOW, b >> 64);
    let (p00, p01, p10, p11) = (a0 * b0, a0 * b1, a1 * b0, a1 * b1);
    let middle = (p00 >> 64) + (p01 & LOW) + (p10 & LOW);
    ((p11 + (p01 >> 64) + (p10 >> 64) + (middle >> 64)), (p00 & LOW) | (middle << 64))
}

/// Counts the values of any type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Count(u64);

impl<V> Accumulator<V> for Count {
    type Output = u64;
    #[inline]
    fn add(&mut self, _time: u64, _value: &V) {
        self.0 += 1;
    }
    fn value(&self) -> u64 {
        self.0
    }
}

/// Sums the values: exactly, in `i128`, for `i64` values.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Sum<V: Number>(V::Sum);

impl<V: Number> Accumulator<V> for Sum<V> {
    type Output = V::Sum;
    #[inline]
    fn add(&mut self, _time: u64, value: &V) {
        self.0 = V::add_sum(self.0, value.widen());
    }
    fn value(&self) -> V::Sum {
        self.0
    }
}

/// The least value (by [`Number::order`]); the default value when empty.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Min<V>(Option<V>);

impl<V: Number> Accumulator<V> for Min<V> {
    type Output = V;
    #[inline]
    fn add(&mut self, _time: u64, value: &V) {
        if self.0.is_none_or(|m| value.order(&m) == Ordering::Less) {
            self.0 = Some(*value);
        }
    }
    fn value(&self) -> V {
        self.0.unwrap_or_default()
    }
}

/// The greatest value (by [`Number::order`]); the default value when empty.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Max<V>(Option<V>);

impl<V: Number> Accumulator<V> for Max<V> {
    type Output = V;
    #[inline]
    fn add(&mut self, _time: u64, value: &V) {
        if self.0.is_none_or(|m| value.order(&m) == Ordering::Greater) {
            self.0 = Some(*value);
        }
    }
    fn value(&self) -> V {
        self.0.unwrap_or_default()
    }
}

/// The arithmetic mean `Σx / n` (exact sum for `i64`); 0 when empty.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Mean<V: Number> {
    count: u64,
    sum: V::Sum,
}

impl<V: Number> Accumulator<V> for Mean<V> {
    type Output = f64;
    #[inline]
    fn add(&mut self, _time: u64, value: &V) {
        self.count += 1;
        self.sum = V::add_sum(self.sum, value.widen());
    }
    fn value(&self) -> f64 {
        if self.count == 0 { 0.0 } else { V::sum_to_f64(self.sum) / self.count as f64 }
    }
}

/// Mean with population and sample variance: exact integer moments for `i64`, Welford's
/// algorithm for `f64`.
#[derive(Clone, Debug, Default)]
pub struct Variance<V: Number>(V::Moments);

impl<V: Number> Accumulator<V> for Variance<V> {
    type Output = VarianceValue;
    #[inline]
    fn add(&mut self, _time: u64, value: &V) {
        V::push_moment(&mut self.0, *value);
    }
    fn value(&self) -> VarianceValue {
        V::moments_value(&self.0)
    }
}

/// A weighted mean, kept as its exact numerator and denominator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct VwapValue<S> {
    /// `Σ v·w` (notional, for prices and quantities).
    pub weighted_sum: S,
    /// `Σ w` (quantity).
    pub weight: S,
}

impl<S: Copy> VwapValue<S> {
    /// `Σ v·w / Σ w`, or `None` when the weights sum to zero.
    pub fn mean<V: Number<Sum = S>>(&self) -> Option<f64> {
        let weight = V::sum_to_f64(self.weight);
        (weight != 0.0).then(|| V::sum_to_f64(self.weighted_sum) / weight)
    }
}

/// Volume-weighted average over `(value, weight)` pairs, e.g. `(price, quantity)`: reports the
/// exact sums `Σ v·w` and `Σ w` (in `i128` for `i64`), so integer inputs give exact results.
///
/// # Examples
/// ```
/// use surveil_operators::{Accumulator, Vwap};
/// let mut vwap = Vwap::<i64>::default();
/// vwap.add(1, &(100, 3));
/// vwap.add(2, &(104, 1));
/// assert_eq!(vwap.value().weighted_sum, 404);
/// assert_eq!(vwap.value().mean::<i64>(), Some(101.0));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Vwap<V: Number>(VwapValue<V::Sum>);

impl<V: Number> Accumulator<(V, V)> for Vwap<V> {
    type Output = VwapValue<V::Sum>;
    #[inline]
    fn add(&mut self, _time: u64, &(value, weight): &(V, V)) {
        self.0.weighted_sum = V::add_sum(self.0.weighted_sum, value.weighted(weight));
        self.0.weight = V::add_sum(self.0.weight, weight.widen());
    }
    fn value(&self) -> VwapValue<V::Sum> {
        self.0
    }
}

/// How [`First`] and [`Last`] order values with equal event times.
pub type TieBreak<V> = fn(&V, &V) -> Ordering;

/// The value with the earliest event time; among equal times, the least value by the
/// tie-break, so the result does not depend on arrival order.
///
/// # Examples
/// ```
/// use surveil_operators::{Accumulator, First};
/// let mut first = First::by(f64::total_cmp);
/// first.add(5, &2.5);
/// first.add(3, &9.0);
/// first.add(3, &7.0);
/// assert_eq!(first.value(), Some(7.0));
/// ```
#[derive(Clone, Debug)]
pub struct First<V> {
    best: Option<(u64, V)>,
    tie_break: TieBreak<V>,
}

impl<V> First<V> {
    /// Breaks ties between equal times with `tie_break` (the least value wins).
    pub fn by(tie_break: TieBreak<V>) -> Self {
        First { best: None, tie_break }
    }
}

impl<V: Ord> Default for First<V> {
    fn default() -> Self {
        First::by(V::cmp)
    }
}

impl<V: Clone> Accumulator<V> for First<V> {
    type Output = Option<V>;
    #[inline]
    fn add(&mut self, time: u64, value: &V) {
        let replace = match &self.best {
            None => true,
            Some((t, v)) => time < *t || (time == *t && (self.tie_break)(value, v) == Ordering::Less),
        };
        if replace {
            self.best = Some((time, value.clone()));
        }
    }
    fn value(&self) -> Option<V> {
        self.best.as_ref().map(|(_, v)| v.clone())
    }
}

/// The value with the latest event time; among equal times, the greatest value by the
/// tie-break, so the result does not depend on arrival order.
///
/// # Examples
/// ```
/// use surveil_operators::{Accumulator, Last};
/// let mut last = Last::<i64>::default();
/// last.add(3, &9);
/// last.add(5, &1);
/// last.add(5, &4);
/// assert_eq!(last.value(), Some(4));
/// ```
#[derive(Clone, Debug)]
pub struct Last<V> {
    best: Option<(u64, V)>,
    tie_break: TieBreak<V>,
}

impl<V> Last<V> {
    /// Breaks ties between equal times with `tie_break` (the greatest value wins).
    pub fn by(tie_break: TieBreak<V>) -> Self {
        Last { best: None, tie_break }
    }
}

impl<V: Ord> Default for Last<V> {
    fn default() -> Self {
        Last::by(V::cmp)
    }
}

impl<V: Clone> Accumulator<V> for Last<V> {
    type Output = Option<V>;
    #[inline]
    fn add(&mut self, time: u64, value: &V) {
        let replace = match &self.best {
            None => true,
            Some((t, v)) => time > *t || (time == *t && (self.tie_break)(value, v) == Ordering::Greater),
        };
        if replace {
            self.best = Some((time, value.clone()));
        }
    }
    fn value(&self) -> Option<V> {
        self.best.as_ref().map(|(_, v)| v.clone())
    }
}

/// Everything [`Stats`] reports for a window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StatsValue<V, S> {
    /// Number of values.
    pub count: u64,
    /// `Σx` (exact for `i64`).
    pub sum: S,
    /// Least value.
    pub min: V,
    /// Greatest value.
    pub max: V,
    /// `Σx / n`.
    pub mean: f64,
    /// Population variance.
    pub population_variance: f64,
    /// Sample variance; `None` below two values.
    pub sample_variance: Option<f64>,
    /// Value at the earliest event time (least value among ties).
    pub first: V,
    /// Value at the latest event time (greatest value among ties).
    pub last: V,
    /// `Σw` (the count when values carry no weight).
    pub weight: S,
    /// `Σ x·w` (the sum when values carry no weight).
    pub weighted_sum: S,
}

impl<V: Number> StatsValue<V, V::Sum> {
    /// The weighted mean `Σ x·w / Σ w` (VWAP for prices weighted by quantities), or `None` when
    /// the weights sum to zero.
    pub fn weighted_mean(&self) -> Option<f64> {
        VwapValue { weighted_sum: self.weighted_sum, weight: self.weight }.mean::<V>()
    }
}

/// Count, sum, min, max, mean, variances, first, last and the weighted mean in one pass.
///
/// Accepts plain values `V` (weight 1) or `(value, weight)` pairs; the weight only enters
/// `weight`, `weighted_sum` and [`StatsValue::weighted_mean`]. For `i64` every field is exact
/// or computed from exact integers, so results do not depend on arrival order.
///
/// # Examples
/// ```
/// use surveil_operators::{Accumulator, Stats};
/// let mut stats = Stats::<i64>::default();
/// for (time, price, quantity) in [(1, 10, 2), (2, 14, 1), (3, 12, 1)] {
///     stats.add(time, &(price, quantity));
/// }
/// let v = stats.value();
/// assert_eq!((v.count, v.sum, v.min, v.max, v.first, v.last), (3, 36, 10, 14, 10, 12));
/// assert_eq!(v.mean, 12.0);
/// assert_eq!(v.sample_variance, Some(4.0));
/// assert_eq!(v.weighted_mean(), Some(11.5));
/// ```
#[derive(Clone, Debug, Default)]
pub struct Stats<V: Number> {
    count: u64,
    sum: V::Sum,
    min: V,
    max: V,
    moments: V::Moments,
    first: (u64, V),
    last: (u64, V),
    weight: V::Sum,
    weighted_sum: V::Sum,
}

impl<V: Number> Stats<V> {
    #[inline]
    fn observe(&mut self, time: u64, value: V) {
        if self.count == 0 {
            self.min = value;
            self.max = value;
            self.first = (time, value);
            self.last = (time, value);
        } else {
            if value.order(&self.min) == Ordering::Less {
                self.min = value;
            }
            if value.order(&self.max) == Ordering::Greater {
                self.max = value;
            }
            if time < self.first.0 || (time == self.first.0 && value.order(&self.first.1) == Ordering::Less) {
                self.first = (time, value);
            }
            if time > self.last.0 || (time == self.last.0 && value.order(&self.last.1) == Ordering::Greater) {
                self.last = (time, value);
            }
        }
        self.count += 1;
        self.sum = V::add_sum(self.sum, value.widen());
        V::push_moment(&mut self.moments, value);
    }

    /// The current result (the same as [`Accumulator::value`], without naming the input type).
    pub fn value(&self) -> StatsValue<V, V::Sum> {
        let moments = V::moments_value(&self.moments);
        StatsValue {
            count: self.count,
            sum: self.sum,
            min: self.min,
            max: self.max,
            mean: if self.count == 0 { 0.0 } else { V::sum_to_f64(self.sum) / self.count as f64 },
            population_variance: moments.population,
            sample_variance: moments.sample,
            first: self.first.1,
            last: self.last.1,
            weight: self.weight,
            weighted_sum: self.weighted_sum,
        }
    }
}

impl<V: Number> Accumulator<V> for Stats<V> {
    type Output = StatsValue<V, V::Sum>;
    #[inline]
    fn add(&mut self, time: u64, value: &V) {
        self.observe(time, *value);
        self.weight = V::add_sum(self.weight, V::ONE.widen());
        self.weighted_sum = V::add_sum(self.weighted_sum, value.widen());
    }
    fn value(&self) -> Self::Output {
        Stats::value(self)
    }
}

impl<V: Number> Accumulator<(V, V)> for Stats<V> {
    type Output = StatsValue<V, V::Sum>;
    #[inline]
    fn add(&mut self, time: u64, &(value, weight): &(V, V)) {
        self.observe(time, value);
        self.weight = V::add_sum(self.weight, weight.widen());
        self.weighted_sum = V::add_sum(self.weighted_sum, value.weighted(weight));
    }
    fn value(&self) -> Self::Output {
        Stats::value(self)
    }
}

// ---------------------------------------------------------------------------------------------
// The operator
// ---------------------------------------------------------------------------------------------

/// One change to a window's result: `diff` is `+1` for a new value and `-1` for the retraction
/// of a value reported earlier, so the sum of diffs per `(key, start)` is the current result.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WindowChange<K, O> {
    /// The key.
    pub key: K,
    /// First time in the window.
    pub start: u64,
    /// First time after the window (`start + width`, saturating).
    pub end: u64,
    /// The accumulator's result.
    pub value: O,
    /// `+1` (insertion) or `-1` (retraction).
    pub diff: i64,
}

/// Options shared by the window operators.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WindowOptions {
    /// How long after a window's end (in event time) records still correct it; later records
    /// go to the `late` output. The window's state is kept this long.
    pub allowed_lateness: u64,
}

/// The streams a window operator produces.
pub struct WindowStreams<'scope, K, O, D> {
    /// Window results and corrections.
    pub output: Stream<'scope, u64, Vec<WindowChange<K, O>>>,
    /// Records that missed at least one of their windows, at the time they arrived.
    pub late: Stream<'scope, u64, Vec<D>>,
}

/// Extension trait: per-key aggregates over tumbling or sliding event-time windows.
pub trait EventTimeWindows<'scope, D: ExchangeData + Clone> {
    /// Aggregates each key's values over consecutive windows `[k·width, (k+1)·width)`.
    ///
    /// `key`, `time` and `value` extract a record's key, event time and the value given to
    /// the accumulator; `accumulator` makes the empty state of a `(key, window)`. See the
    /// [module documentation](crate::windows) for when results and corrections are reported.
    ///
    /// # Examples
    /// ```
    /// use std::sync::mpsc::channel;
    /// use timely::dataflow::operators::capture::{Capture, Extract};
    /// use surveil_operators::{Count, EventTimeWindows, WindowChange, WindowOptions};
    ///
    /// let (out_tx, out_rx) = channel();
    /// let (late_tx, late_rx) = channel();
    /// timely::execute_directly(move |worker| {
    ///     // (event time, key)
    ///     let mut input = timely::dataflow::InputHandleVec::<u64, (u64, u64)>::new();
    ///     worker.dataflow(|scope| {
    ///         let options = WindowOptions { allowed_lateness: 10 };
    ///         let windows = input.to_stream(scope)
    ///             .tumbling_window("Count", 10, |r| r.1, |r| r.0, |_| (), Count::default, options);
    ///         windows.output.capture_into(out_tx);
    ///         windows.late.capture_into(late_tx);
    ///     });
    ///     input.send((3, 1));
    ///     input.send((5, 1));
    ///     input.advance_to(12); // window [0, 10) reports 2 at time 9
    ///     input.send((8, 1)); // after the window, within the lateness: a correction at 12
    ///     input.advance_to(25);
    ///     input.send((7, 1)); // 25 > 9 + 10: late
    /// });
    /// let change = |value, diff| WindowChange { key: 1, start: 0, end: 10, value, diff };
    /// assert_eq!(
    ///     out_rx.extract(),
    ///     vec![(9, vec![change(2, 1)]), (12, vec![change(2, -1), change(3, 1)])]
    /// );
    /// assert_eq!(late_rx.extract(), vec![(25, vec![(7, 1)])]);
    /// ```
    #[allow(clippy::too_many_arguments)]
    fn tumbling_window<K, V, A, FK, FT, FV, FA>(
        self,
        name: &str,
        width: u64,
        key: FK,
        time: FT,
        value: FV,
        accumulator: FA,
        options: WindowOptions,
    ) -> WindowStreams<'scope, K, A::Output, D>
    where
        K: Hash + Eq + Clone + 'static,
        V: 'static,
        A: Accumulator<V> + 'static,
        A::Output: Clone + PartialEq + 'static,
        FK: Fn(&D) -> K + 'static,
        FT: Fn(&D) -> u64 + 'static,
        FV: Fn(&D) -> V + 'static,
        FA: Fn() -> A + 'static;

    /// Aggregates each key's values over windows `[k·slide, k·slide + width)`, for every
    /// `k >= 0`: a record belongs to every window that contains its time, `width / slide` of
    /// them when the slide divides the width (which it need not; with `slide > width`, records
    /// between windows belong to none).
    ///
    /// # Panics
    /// If `width` or `slide` is zero.
    ///
    /// # Examples
    /// ```
    /// use timely::dataflow::operators::ToStream;
    /// use timely::dataflow::operators::capture::{Capture, Extract};
    /// use surveil_operators::{EventTimeWindows, Sum, WindowOptions};
    ///
    /// let captured = timely::example(|scope| {
    ///     // (event time, key, value)
    ///     vec![(1u64, 0u64, 10i64), (6, 0, 1), (12, 0, 100)]
    ///         .to_stream(scope)
    ///         .sliding_window("Sum", 10, 5, |r| r.1, |r| r.0, |r| r.2, Sum::default, WindowOptions::default())
    ///         .output
    ///         .capture()
    /// });
    /// let sums: Vec<_> = captured.extract().into_iter().flat_map(|(_, v)| v)
    ///     .map(|c| (c.start, c.end, c.value)).collect();
    /// assert_eq!(sums, vec![(0, 10, 11), (5, 15, 101), (10, 20, 100)]);
    /// ```
    #[allow(clippy::too_many_arguments)]
    fn sliding_window<K, V, A, FK, FT, FV, FA>(
        self,
        name: &str,
        width: u64,
        slide: u64,
        key: FK,
        time: FT,
        value: FV,
        accumulator: FA,
        options: WindowOptions,
    ) -> WindowStreams<'scope, K, A::Output, D>
    where
        K: Hash + Eq + Clone + 'static,
        V: 'static,
        A: Accumulator<V> + 'static,
        A::Output: Clone + PartialEq + 'static,
        FK: Fn(&D) -> K + 'static,
        FT: Fn(&D) -> u64 + 'static,
        FV: Fn(&D) -> V + 'static,
        FA: Fn() -> A + 'static;
}

impl<'scope, D: ExchangeData + Clone> EventTimeWindows<'scope, D> for Stream<'scope, u64, Vec<D>> {
    fn tumbling_window<K, V, A, FK, FT, FV, FA>(
        self,
        name: &str,
        width: u64,
        key: FK,
        time: FT,
        value: FV,
        accumulator: FA,
        options: WindowOptions,
    ) -> WindowStreams<'scope, K, A::Output, D>
    where
        K: Hash + Eq + Clone + 'static,
        V: 'static,
        A: Accumulator<V> + 'static,
        A::Output: Clone + PartialEq + 'static,
        FK: Fn(&D) -> K + 'static,
        FT: Fn(&D) -> u64 + 'static,
        FV: Fn(&D) -> V + 'static,
        FA: Fn() -> A + 'static,
    {
        window_operator(self, name, Assigner::new(width, width), key, time, value, accumulator, options)
    }

    fn sliding_window<K, V, A, FK, FT, FV, FA>(
        self,
        name: &str,
        width: u64,
        slide: u64,
        key: FK,
        time: FT,
        value: FV,
        accumulator: FA,
        options: WindowOptions,
    ) -> WindowStreams<'scope, K, A::Output, D>
    where
        K: Hash + Eq + Clone + 'static,
        V: 'static,
        A: Accumulator<V> + 'static,
        A::Output: Clone + PartialEq + 'static,
        FK: Fn(&D) -> K + 'static,
        FT: Fn(&D) -> u64 + 'static,
        FV: Fn(&D) -> V + 'static,
        FA: Fn() -> A + 'static,
    {
        window_operator(self, name, Assigner::new(width, slide), key, time, value, accumulator, options)
    }
}

/// Which windows a time belongs to.
#[derive(Clone, Copy, Debug)]
struct Assigner {
    width: u64,
    slide: u64,
}

impl Assigner {
    fn new(width: u64, slide: u64) -> Assigner {
        assert!(width > 0 && slide > 0, "window width and slide must be positive (width {width}, slide {slide})");
        Assigner { width, slide }
    }

    /// The starts of the windows containing `time`, ascending, as `(first, last, step)`;
    /// empty when `first > last`.
    #[inline]
    fn starts(&self, time: u64) -> Starts {
        let latest = time - time % self.slide;
        if self.slide == self.width {
            return Starts { next: latest, latest, slide: self.slide, done: false };
        }
        let earliest = match time.checked_sub(self.width - 1) {
            None | Some(0) => 0,
            Some(lowest) => match lowest.div_ceil(self.slide).checked_mul(self.slide) {
                Some(start) => start,
                None => return Starts { next: 0, latest: 0, slide: self.slide, done: true },
            },
        };
        Starts { next: earliest, latest, slide: self.slide, done: earliest > latest }
    }

    /// The last time of the window starting at `start`.
    #[inline]
    fn last(&self, start: u64) -> u64 {
        start.saturating_add(self.width - 1)
    }

    #[inline]
    fn end(&self, start: u64) -> u64 {
        start.saturating_add(self.width)
    }
}

/// Iterator over window starts.
struct Starts {
    next: u64,
    latest: u64,
    slide: u64,
    done: bool,
}

impl Iterator for Starts {
    type Item = u64;
    #[inline]
    fn next(&mut self) -> Option<u64> {
        if self.done {
            return None;
        }
        let start = self.next;
        match start.checked_add(self.slide) {
            Some(next) if next <= self.latest => self.next = next,
            _ => self.done = true,
        }
        Some(start)
    }
}

/// One window's state on this worker.
struct Window<K, A> {
    start: u64,
    /// Held at the window's last time until it reports; `None` once it has.
    cap: Option<Capability<u64>>,
    keys: KeyMap<K, A>,
}

/// Per-window key maps: one lookup per record per window, so the hash is on the hot path.
type KeyMap<K, A> = crate::hashing::KeyMap<K, A>;

#[allow(clippy::too_many_arguments)]
fn window_operator<'scope, D, K, V, A, FK, FT, FV, FA>(
    stream: Stream<'scope, u64, Vec<D>>,
    name: &str,
    assigner: Assigner,
    key: FK,
    time: FT,
    value: FV,
    factory: FA,
    options: WindowOptions,
) -> WindowStreams<'scope, K, A::Output, D>
where
    D: ExchangeData + Clone,
    K: Hash + Eq + Clone + 'static,
    V: 'static,
    A: Accumulator<V> + 'static,
    A::Output: Clone + PartialEq + 'static,
    FK: Fn(&D) -> K + 'static,
    FT: Fn(&D) -> u64 + 'static,
    FV: Fn(&D) -> V + 'static,
    FA: Fn() -> A + 'static,
{
    let key = Rc::new(key);
    let route_key = Rc::clone(&key);
    let lateness = options.allowed_lateness;

    let mut builder = OperatorBuilder::new(name.to_owned(), stream.scope());
    let mut input = builder.new_input(stream, Exchange::new(move |record: &D| route(&route_key(record))));
    let (changes_out, output) = builder.new_output::<Vec<WindowChange<K, A::Output>>>();
    let (late_out, late) = builder.new_output::<Vec<D>>();
    let mut changes_out =
        OutputBuilder::<_, CapacityContainerBuilder<Vec<WindowChange<K, A::Output>>>>::from(changes_out);
    let mut late_out = OutputBuilder::<_, CapacityContainerBuilder<Vec<D>>>::from(late_out);

    builder.build(move |capabilities| {
        drop(capabilities);
        // Windows by last time. Those with `last < fired_below` have reported; they stay until
        // the watermark passes `last + lateness`.
        let mut windows: BTreeMap<u64, Window<K, A>> = BTreeMap::new();
        let mut fired_below = 0u64;
        // Records within the lateness, by the time they travelled at, with a capability there.
        let mut pending: BTreeMap<u64, (Capability<u64>, Vec<D>)> = BTreeMap::new();
        // Per (window last, key) touched by a correction: the value reported before it.
        let mut touched: HashMap<(u64, K), Option<A::Output>> = HashMap::new();
        let mut late_batch: Vec<D> = Vec::new();

        move |frontiers| {
            let mut changes_out = changes_out.activate();
            let mut late_out = late_out.activate();

            input.for_each_stamp(|cap, data| {
                // Timely's inputs never send without a capability; such a message could
                // arrive after its windows were freed, so there is nothing sound to do with it.
                let Some(&arrived) = cap.least() else { return };
                for batch in data {
                    for record in batch.drain(..) {
                        let event_time = time(&record);
                        let k = key(&record);
                        let v = value(&record);
                        let (mut correct, mut missed) = (false, false);
                        for start in assigner.starts(event_time) {
                            let last = assigner.last(start);
                            if arrived <= last {
                                let window = windows.entry(last).or_insert_with(|| Window {
                                    start,
                                    cap: Some(cap.delayed(&last, 0)),
                                    keys: KeyMap::default(),
                                });
                                match window.keys.get_mut(&k) {
                                    Some(acc) => acc.add(event_time, &v),
                                    None => {
                                        let mut acc = factory();
                                        acc.add(event_time, &v);
                                        window.keys.insert(k.clone(), acc);
                                    }
                                }
                            } else if arrived <= last.saturating_add(lateness) {
                                correct = true;
                            } else {
                                missed = true;
                            }
                        }
                        match (correct, missed) {
                            (false, false) => {}
                            (true, false) => pending_entry(&mut pending, arrived, &cap).push(record),
                            (false, true) => late_batch.push(record),
                            (true, true) => {
                                pending_entry(&mut pending, arrived, &cap).push(record.clone());
                                late_batch.push(record);
                            }
                        }
                    }
                }
                if !late_batch.is_empty() {
                    late_out.session(&cap).give_container(&mut late_batch);
                    late_batch.clear();
                }
            });

            let watermark = frontiers[0].frontier().first().copied();
            let complete = |t: u64| watermark.is_none_or(|w| t < w);

            // Report the windows the watermark has passed.
            if lateness == 0 {
                while let Some(entry) = windows.first_entry() {
                    if !complete(*entry.key()) {
                        break;
                    }
                    let window = entry.remove();
                    if let Some(cap) = window.cap {
                        let (start, end) = (window.start, assigner.end(window.start));
                        changes_out.session(&cap).give_iterator(
                            window.keys.into_iter().map(|(key, acc)| WindowChange {
                                key,
                                start,
                                end,
                                value: acc.value(),
                                diff: 1,
                            }),
                        );
                    }
                }
            } else {
                for (&last, window) in windows.range_mut(fired_below..) {
                    if !complete(last) {
                        break;
                    }
                    if let Some(cap) = window.cap.take() {
                        let (start, end) = (window.start, assigner.end(window.start));
                        changes_out.session(&cap).give_iterator(window.keys.iter().map(|(key, acc)| WindowChange {
                            key: key.clone(),
                            start,
                            end,
                            value: acc.value(),
                            diff: 1,
                        }));
                    }
                }
                fired_below = watermark.unwrap_or(u64::MAX);

                // Apply the corrections of every complete time, one time after another.
                while let Some(entry) = pending.first_entry() {
                    let arrived = *entry.key();
                    if !complete(arrived) {
                        break;
                    }
                    let (cap, records) = entry.remove();
                    for record in records {
                        let event_time = time(&record);
                        let k = key(&record);
                        let v = value(&record);
                        for start in assigner.starts(event_time) {
                            let last = assigner.last(start);
                            if !(last < arrived && arrived <= last.saturating_add(lateness)) {
                                continue;
                            }
                            let window = windows.entry(last).or_insert_with(|| Window {
                                start,
                                cap: None,
                                keys: KeyMap::default(),
                            });
                            match window.keys.get_mut(&k) {
                                Some(acc) => {
                                    touched.entry((last, k.clone())).or_insert_with(|| Some(acc.value()));
                                    acc.add(event_time, &v);
                                }
                                None => {
                                    touched.entry((last, k.clone())).or_insert(None);
                                    let mut acc = factory();
                                    acc.add(event_time, &v);
                                    window.keys.insert(k.clone(), acc);
                                }
                            }
                        }
                    }
                    let mut session = changes_out.session(&cap);
                    for ((last, k), old) in touched.drain() {
                        let Some(window) = windows.get(&last) else { continue };
                        let Some(acc) = window.keys.get(&k) else { continue };
                        let new = acc.value();
                        if old.as_ref() == Some(&new) {
                            continue;
                        }
                        let (start, end) = (window.start, assigner.end(window.start));
                        if let Some(old) = old {
                            session.give(WindowChange { key: k.clone(), start, end, value: old, diff: -1 });
                        }
                        session.give(WindowChange { key: k, start, end, value: new, diff: 1 });
                    }
                }

                // Free the windows that can no longer change.
                while let Some(entry) = windows.first_entry() {
                    if entry.get().cap.is_some() || !complete(entry.key().saturating_add(lateness)) {
                        break;
                    }
                    entry.remove();
                }
            }
        }
    });

    WindowStreams { output, late }
}

/// The pending corrections at `arrived`, holding a capability there for their output.
fn pending_entry<'a, D>(
    pending: &'a mut BTreeMap<u64, (Capability<u64>, Vec<D>)>,
    arrived: u64,
    cap: &timely::dataflow::operators::InputCapability<u64>,
) -> &'a mut Vec<D> {
    &mut pending.entry(arrived).or_insert_with(|| (cap.delayed(&arrived, 0), Vec::new())).1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_multiplication() {
        assert_eq!(mul_u128(u128::MAX, u128::MAX), (u128::MAX - 1, 1));
        assert_eq!(mul_u128(1 << 64, 1 << 64), (1, 0));
        assert_eq!(mul_u128(12345, 678), (0, 12345 * 678));
    }

    /// `nΣx² - (Σx)²` is exactly invariant under shifts, so huge values give bit-identical
    /// variances to small ones, whatever their order.
    #[test]
    fn integer_moments_are_exact_for_extreme_values() {
        let small = [3i64, -7, 11, 0, 5, 5, -2];
        let mut reference = IntegerMoments::default();
        small.iter().for_each(|x| reference.push(*x));
        for shift in [i64::MAX - 20, i64::MIN + 20, 1 << 62] {
            let mut forward = IntegerMoments::default();
            let mut backward = IntegerMoments::default();
            small.iter().for_each(|x| forward.push(x + shift));
            small.iter().rev().for_each(|x| backward.push(x + shift));
            let (f, b, r) = (forward.value(), backward.value(), reference.value());
            assert_eq!(f, b);
            assert_eq!((f.population, f.sample), (r.population, r.sample), "shift {shift}");
        }
        let mut welford = Welford::default();
        small.iter().for_each(|x| welford.push(*x as f64));
        assert!((welford.value().population - reference.value().population).abs() < 1e-12);
        assert_eq!(IntegerMoments::default().value(), VarianceValue::default());
    }

    #[test]
    fn window_starts_match_the_definition() {
        for (width, slide) in [(1, 1), (10, 10), (10, 5), (10, 3), (3, 10), (7, 2)] {
            let assigner = Assigner::new(width, slide);
            for time in 0..100u64 {
                let want: Vec<u64> =
                    (0..=time / slide).map(|k| k * slide).filter(|s| *s <= time && time < s + width).collect();
                assert_eq!(assigner.starts(time).collect::<Vec<_>>(), want, "width {width} slide {slide} time {time}");
            }
        }
        let assigner = Assigner::new(10, 4);
        assert_eq!(assigner.starts(u64::MAX).count(), 2);
        assert_eq!(assigner.last(u64::MAX - 3), u64::MAX);
    }

    #[test]
    fn first_and_last_break_ties_by_value() {
        let mut stats = Stats::<f64>::default();
        for (t, v) in [(5, 2.0), (5, -1.0), (9, 3.0), (9, 8.0), (9, 4.0)] {
            Accumulator::<f64>::add(&mut stats, t, &v);
        }
        let v = stats.value();
        assert_eq!((v.first, v.last, v.min, v.max, v.count), (-1.0, 8.0, -1.0, 8.0, 5));
        assert_eq!(v.weighted_mean(), Some(16.0 / 5.0));
    }
}
