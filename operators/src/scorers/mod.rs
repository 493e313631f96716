//! Causal univariate anomaly scorers: each value is scored against a baseline built from the
//! values before it, then joins that baseline.
//!
//! * [`WindowedGaussian`]: the Numenta Anomaly Benchmark's `windowedGaussian` detector, exactly
//!   (window 6,400, step 100, score `1 - Q(|z|)`).
//! * [`EwmaZ`]: z-score against an exponentially weighted mean and variance; O(1) per value.
//! * [`RobustZ`]: z-score against the median and MAD of a sliding window; O(log w) comparisons
//!   plus one O(w) memory move per value.
//! * [`Ensemble`]: multi-scale robust, seasonal and distributional scores combined into one
//!   calibrated score; the default detector of the NAB example.
//!
//! All scorers are deterministic (no clock, no unseeded randomness) and return scores in
//! `[0, 1]`. A non-finite value scores 0 and leaves the baseline unchanged, so one bad reading
//! cannot poison the statistics. [`ScoreByKey`](crate::ScoreByKey) runs one scorer per key in a
//! dataflow.

mod ensemble;
mod ewma;
mod robust;
mod windowed_gaussian;

pub use ensemble::{Ensemble, EnsembleOptions};
pub use ewma::{EwmaZ, ewma_update};
pub use robust::{RobustZ, SlidingOrder};
pub use windowed_gaussian::WindowedGaussian;

use serde::{Deserialize, Serialize};

/// What a scorer reports for one value: the score and the baseline it was measured against,
/// so that an alert can say "3.2 standard deviations above a mean of 104".
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Scored {
    /// Anomaly score in `[0, 1]`; larger is more anomalous.
    pub score: f64,
    /// Signed deviation `(value - center) / scale`; 0 while there is no baseline.
    pub z: f64,
    /// The baseline's centre (mean or median) before the value joined it.
    pub center: f64,
    /// The baseline's spread (standard deviation or scaled MAD) before the value joined it.
    pub scale: f64,
}

/// A causal scorer for one univariate series.
pub trait Scorer {
    /// Scores `value` against the values seen so far, then adds it to the baseline.
    fn observe(&mut self, value: f64) -> Scored;

    /// [`observe`](Self::observe), keeping only the score.
    fn score(&mut self, value: f64) -> f64 {
        self.observe(value).score
    }
}

impl<S: Scorer + ?Sized> Scorer for Box<S> {
    fn observe(&mut self, value: f64) -> Scored {
        (**self).observe(value)
    }
}

/// `1 - Q(|z|)` with `Q` the standard normal upper tail: NAB's two-sided Gaussian score, in
/// `[0.5, 1]` for any finite `z` (0.5 at the centre).
pub fn gaussian_score(z: f64) -> f64 {
    if z.is_nan() {
        return 0.0;
    }
    1.0 - 0.5 * libm::erfc(z.abs() / std::f64::consts::SQRT_2)
}

/// `-log10` of the two-sided normal tail probability `2 Q(|z|)`: a surprise in decades that
/// stays resolvable far beyond where `1 - Q` rounds to 1.
pub fn gaussian_surprise(z: f64) -> f64 {
    let z = z.abs();
    if z.is_nan() {
        return 0.0;
    }
    let tail = libm::erfc(z / std::f64::consts::SQRT_2);
    if tail > 1e-300 {
        -tail.log10()
    } else {
        // log10 of the asymptotic tail exp(-z²/2) / (z sqrt(pi/2)).
        (z * z / 2.0) / std::f64::consts::LN_10 + (z * (std::f64::consts::PI / 2.0).sqrt()).log10()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaussian_score_is_half_at_the_centre_and_symmetric() {
        assert_eq!(gaussian_score(0.0), 0.5);
        assert!((gaussian_score(1.96) - 0.975).abs() < 1e-3);
        assert_eq!(gaussian_score(-2.5), gaussian_score(2.5));
        assert_eq!(gaussian_score(f64::NAN), 0.0);
    }

    #[test]
    fn surprise_is_continuous_where_the_tail_underflows() {
        assert!((gaussian_surprise(1.96) - 1.30103).abs() < 1e-3);
        let below = gaussian_surprise(37.5);
        let above = gaussian_surprise(38.5);
        assert!(below > 300.0 && above > below && above < 330.0, "{below} {above}");
    }
}
