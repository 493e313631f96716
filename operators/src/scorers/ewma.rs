//! Exponentially weighted z-scores.

use super::{Scored, Scorer, gaussian_score};

/// One step of the exponentially weighted mean and variance that [`EwmaZ`] keeps: adds `value`
/// as the `count`-th value (counting it) with weight `max(alpha, 1 / count)`. Public so that
/// state kept elsewhere (a vector of features, say) follows exactly the same rule.
///
/// ```
/// let (mut mean, mut variance) = (0.0, 0.0);
/// for (n, value) in [1.0, 2.0, 3.0].into_iter().enumerate() {
///     surveil_operators::scorers::ewma_update(&mut mean, &mut variance, n as u64 + 1, 0.01, value);
/// }
/// assert!((mean - 2.0).abs() < 1e-12 && (variance - 2.0 / 3.0).abs() < 1e-12);
/// ```
#[inline]
pub fn ewma_update(mean: &mut f64, variance: &mut f64, count: u64, alpha: f64, value: f64) {
    let weight = alpha.max(1.0 / count as f64);
    let delta = value - *mean;
    *mean += weight * delta;
    *variance = (1.0 - weight) * (*variance + weight * delta * delta);
}

/// z-score against an exponentially weighted mean and variance, scored `1 - Q(|z|)` like
/// [`WindowedGaussian`](super::WindowedGaussian). O(1) time and memory per value.
///
/// The weight of the newest value is `max(alpha, 1 / n)` for the `n`-th value, so the first
/// values give the plain running mean and population variance instead of a baseline dominated
/// by the first reading. Values before `min_count` score 0. A deviation of 0 counts as 1e-6,
/// as in NAB.
///
/// # Examples
/// ```
/// use surveil_operators::{EwmaZ, Scorer};
///
/// let mut scorer = EwmaZ::new(0.01, 10);
/// for i in 0..200 {
///     scorer.score(100.0 + (i % 5) as f64);
/// }
/// let spike = scorer.observe(140.0);
/// assert!(spike.z > 10.0 && spike.score > 0.999);
/// ```
#[derive(Clone, Debug)]
pub struct EwmaZ {
    alpha: f64,
    min_count: u64,
    count: u64,
    mean: f64,
    variance: f64,
}

impl EwmaZ {
    /// A scorer with smoothing factor `alpha` in `(0, 1]` (an effective memory of about `2 / alpha - 1` values
    /// memory) that starts scoring after `min_count` values.
    pub fn new(alpha: f64, min_count: u64) -> EwmaZ {
        let alpha = if alpha.is_finite() { alpha.clamp(1e-9, 1.0) } else { 0.01 };
        EwmaZ { alpha, min_count: min_count.max(1), count: 0, mean: 0.0, variance: 0.0 }
    }

    /// The current weighted mean.
    pub fn mean(&self) -> f64 {
        self.mean
    }

    /// The current weighted standard deviation (1e-6 when it is 0).
    pub fn std(&self) -> f64 {
        let std = self.variance.sqrt();
        if std > 0.0 { std } else { 1e-6 }
    }
}

impl Scorer for EwmaZ {
    fn observe(&mut self, value: f64) -> Scored {
        if !value.is_finite() {
            return Scored { score: 0.0, z: 0.0, center: self.mean, scale: self.std() };
        }
        let scored = if self.count >= self.min_count {
            let z = (value - self.mean) / self.std();
            Scored { score: gaussian_score(z), z, center: self.mean, scale: self.std() }
        } else {
            Scored { score: 0.0, z: 0.0, center: self.mean, scale: self.std() }
        };
        self.count += 1;
        ewma_update(&mut self.mean, &mut self.variance, self.count, self.alpha, value);
        scored
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_as_the_plain_mean_and_variance() {
        let mut s = EwmaZ::new(0.001, 1);
        for v in [1.0, 2.0, 3.0, 4.0] {
            s.observe(v);
        }
        assert!((s.mean() - 2.5).abs() < 1e-12);
        assert!((s.std() - 1.25f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn nothing_is_scored_before_min_count() {
        let mut s = EwmaZ::new(0.1, 3);
        assert_eq!(s.score(1.0), 0.0);
        assert_eq!(s.score(100.0), 0.0);
        assert_eq!(s.score(1.0), 0.0);
        assert!(s.score(1000.0) > 0.5);
    }
}
