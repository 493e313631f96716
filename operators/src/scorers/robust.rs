//! Robust z-scores: median and MAD of a sliding window.

use std::collections::VecDeque;

use super::{Scored, Scorer, gaussian_score};

/// Consistency constant: `1.4826 * MAD` estimates the standard deviation of normal data.
const MAD_TO_STD: f64 = 1.482_602_218_505_602;

/// The last `capacity` values in arrival order and in sorted order, for order statistics of a
/// sliding window: median and quantiles in O(1), MAD in O(log w) (the k-th smallest of two
/// sorted distance sequences), ranks in O(log w). Insertion and eviction cost
/// a binary search plus one `memmove` of the sorted vector (a few kilobytes for windows of
/// thousands).
#[derive(Clone, Debug)]
pub struct SlidingOrder {
    capacity: usize,
    arrivals: VecDeque<f64>,
    sorted: Vec<f64>,
}

impl SlidingOrder {
    /// An empty window holding at most `capacity` (at least 1) values.
    pub fn new(capacity: usize) -> SlidingOrder {
        let capacity = capacity.max(1);
        SlidingOrder { capacity, arrivals: VecDeque::with_capacity(capacity), sorted: Vec::with_capacity(capacity) }
    }

    /// Number of values held.
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// Whether the window is empty.
    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// Whether the window holds `capacity` values.
    pub fn is_full(&self) -> bool {
        self.sorted.len() == self.capacity
    }

    /// Adds a finite value, evicting the oldest when full; returns the evicted value.
    pub fn push(&mut self, value: f64) -> Option<f64> {
        debug_assert!(value.is_finite());
        let evicted = if self.arrivals.len() == self.capacity {
            let old = self.arrivals.pop_front();
            if let Some(old) = old {
                let at = self.sorted.partition_point(|v| *v < old);
                self.sorted.remove(at);
            }
            old
        } else {
            None
        };
        self.arrivals.push_back(value);
        let at = self.sorted.partition_point(|v| *v < value);
        self.sorted.insert(at, value);
        evicted
    }

    /// The values in arrival order, oldest first.
    pub fn arrivals(&self) -> &VecDeque<f64> {
        &self.arrivals
    }

    /// The values sorted ascending.
    pub fn sorted(&self) -> &[f64] {
        &self.sorted
    }

    /// The median (mean of the two middle values for an even count); `None` when empty.
    pub fn median(&self) -> Option<f64> {
        let n = self.sorted.len();
        if n == 0 {
            return None;
        }
        Some(if n % 2 == 1 { self.sorted[n / 2] } else { (self.sorted[n / 2 - 1] + self.sorted[n / 2]) / 2.0 })
    }

    /// The `q`-quantile by linear interpolation between order statistics; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.sorted.len();
        if n == 0 {
            return None;
        }
        let position = q.clamp(0.0, 1.0) * (n - 1) as f64;
        let below = position.floor() as usize;
        let above = (below + 1).min(n - 1);
        let fraction = position - below as f64;
        Some(self.sorted[below] + (self.sorted[above] - self.sorted[below]) * fraction)
    }

    /// Fraction of held values strictly below `value` plus half of those equal to it (the
    /// mid-rank), in `[0, 1]`; `None` when empty.
    pub fn rank(&self, value: f64) -> Option<f64> {
        let n = self.sorted.len();
        if n == 0 {
            return None;
        }
        let below = self.sorted.partition_point(|v| *v < value);
        let not_above = self.sorted.partition_point(|v| *v <= value);
        Some((below as f64 + (not_above - below) as f64 / 2.0) / n as f64)
    }

    /// Median absolute deviation from the median; `None` when empty.
    pub fn mad(&self) -> Option<f64> {
        let median = self.median()?;
        let n = self.sorted.len();
        let split = self.sorted.partition_point(|v| *v < median);
        // Distances below the median, ascending: median - sorted[split - 1 - i].
        let left = |i: usize| median - self.sorted[split - 1 - i];
        let right = |i: usize| self.sorted[split + i] - median;
        let (nl, nr) = (split, n - split);
        let kth = |k: usize| kth_of_two(&left, nl, &right, nr, k);
        Some(if n % 2 == 1 { kth(n / 2) } else { (kth(n / 2 - 1) + kth(n / 2)) / 2.0 })
    }
}

/// The `k`-th smallest (0-based) of the union of two ascending sequences given by index.
fn kth_of_two(a: &dyn Fn(usize) -> f64, na: usize, b: &dyn Fn(usize) -> f64, nb: usize, k: usize) -> f64 {
    // Take i from `a` and k + 1 - i from `b`: the smallest i with b[k - i] <= a[i].
    let mut lo = (k + 1).saturating_sub(nb);
    let mut hi = (k + 1).min(na);
    while lo < hi {
        let i = lo + (hi - lo) / 2;
        if b(k - i) <= a(i) {
            hi = i;
        } else {
            lo = i + 1;
        }
    }
    let i = lo;
    let j = k + 1 - i;
    let from_a = if i > 0 { a(i - 1) } else { f64::NEG_INFINITY };
    let from_b = if j > 0 { b(j - 1) } else { f64::NEG_INFINITY };
    from_a.max(from_b)
}

/// z-score against the median and `1.4826 * MAD` of the last `window` values, scored
/// `1 - Q(|z|)`. Resistant to the outliers it is looking for: a burst of spikes moves a mean
/// and inflates a standard deviation, but barely moves a median.
///
/// When the MAD is 0 (more than half the window is one value) the scale falls back to the
/// window's standard deviation, then to 1e-6. Per value: O(log w) comparisons and one O(w)
/// memory move (see [`SlidingOrder`]); the fallback deviation comes from running sums that are
/// recomputed exactly every `window` values.
///
/// # Examples
/// ```
/// use surveil_operators::{RobustZ, Scorer};
///
/// let mut scorer = RobustZ::new(100, 10);
/// for i in 0..100 {
///     scorer.score(if i % 10 == 0 { 500.0 } else { 10.0 + (i % 3) as f64 });
/// }
/// // Spikes in the history do not mask the next one.
/// assert!(scorer.score(60.0) > 0.999);
/// ```
#[derive(Clone, Debug)]
pub struct RobustZ {
    order: SlidingOrder,
    min_count: usize,
    sum: f64,
    sum_squares: f64,
    since_exact: usize,
}

impl RobustZ {
    /// A scorer over the last `window` values that starts scoring after `min_count` values.
    pub fn new(window: usize, min_count: usize) -> RobustZ {
        RobustZ {
            order: SlidingOrder::new(window),
            min_count: min_count.max(1),
            sum: 0.0,
            sum_squares: 0.0,
            since_exact: 0,
        }
    }

    /// The window's median, if any value was seen.
    pub fn median(&self) -> Option<f64> {
        self.order.median()
    }

    /// The scale the next value is measured with: `1.4826 * MAD`, or the fallbacks.
    pub fn scale(&self) -> f64 {
        let mad = self.order.mad().unwrap_or(0.0) * MAD_TO_STD;
        if mad > 0.0 {
            return mad;
        }
        let n = self.order.len() as f64;
        if n > 0.0 {
            let mean = self.sum / n;
            let std = (self.sum_squares / n - mean * mean).max(0.0).sqrt();
            if std > 1e-9 * mean.abs().max(1.0) {
                return std;
            }
        }
        1e-6
    }
}

impl Scorer for RobustZ {
    fn observe(&mut self, value: f64) -> Scored {
        let center = self.order.median().unwrap_or(value);
        let scale = self.scale();
        if !value.is_finite() {
            return Scored { score: 0.0, z: 0.0, center, scale };
        }
        let scored = if self.order.len() >= self.min_count {
            let z = (value - center) / scale;
            Scored { score: gaussian_score(z), z, center, scale }
        } else {
            Scored { score: 0.0, z: 0.0, center, scale }
        };
        if let Some(old) = self.order.push(value) {
            self.sum -= old;
            self.sum_squares -= old * old;
        }
        self.sum += value;
        self.sum_squares += value * value;
        self.since_exact += 1;
        if self.since_exact >= self.order.capacity {
            self.since_exact = 0;
            self.sum = self.order.sorted().iter().sum();
            self.sum_squares = self.order.sorted().iter().map(|v| v * v).sum();
        }
        scored
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn naive_median(v: &mut [f64]) -> f64 {
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
    }

    proptest! {
        #[test]
        fn order_statistics_match_a_sort(values in proptest::collection::vec(-50i32..50, 1..200), cap in 1usize..40) {
            let mut order = SlidingOrder::new(cap);
            for (i, v) in values.iter().enumerate() {
                order.push(f64::from(*v) / 4.0);
                let start = (i + 1).saturating_sub(cap);
                let mut window: Vec<f64> = values[start..=i].iter().map(|v| f64::from(*v) / 4.0).collect();
                let median = naive_median(&mut window);
                prop_assert_eq!(order.median(), Some(median));
                let mut distances: Vec<f64> = window.iter().map(|v| (v - median).abs()).collect();
                prop_assert_eq!(order.mad(), Some(naive_median(&mut distances)));
            }
        }
    }

    #[test]
    fn constant_window_falls_back_to_the_deviation() {
        let mut s = RobustZ::new(10, 1);
        for v in [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 3.0, 3.0] {
            s.observe(v);
        }
        // Six 1s and two 3s: MAD 0, population deviation sqrt(0.75).
        assert!((s.scale() - 0.75f64.sqrt()).abs() < 1e-12);
    }
}
