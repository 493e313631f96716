//! The ensemble detector: several causal views of a series, calibrated against their own
//! history and reported once per event.

use std::collections::VecDeque;

use super::robust::SlidingOrder;
use super::{Scored, Scorer, gaussian_surprise};

/// Parameters of [`Ensemble`]. The defaults were tuned on the NAB subset in the shared datasets
/// (see `docs/detection.md`).
#[derive(Clone, Debug, PartialEq)]
pub struct EnsembleOptions {
    /// Values in the robust level baseline.
    pub level_window: usize,
    /// Residuals in the robust baselines of the seasonal and difference views.
    pub residual_window: usize,
    /// Values kept for the period search.
    pub history: usize,
    /// Smallest period considered.
    pub min_period: usize,
    /// Largest period considered.
    pub max_period: usize,
    /// Autocorrelation a period needs to be used.
    pub min_autocorrelation: f64,
    /// Values between period searches.
    pub period_every: usize,
    /// Values before anything is scored.
    pub warmup: usize,
    /// Surprises in the calibration baseline.
    pub calibration_window: usize,
    /// Values after a reported event during which only a larger surprise is reported again.
    pub refractory: usize,
    /// Lengths of the trailing means of the multi-scale view.
    pub scales: Vec<usize>,
    /// Means in each scale's robust baseline.
    pub scale_window: usize,
}

impl Default for EnsembleOptions {
    fn default() -> Self {
        EnsembleOptions {
            level_window: 2000,
            residual_window: 1000,
            history: 3000,
            min_period: 8,
            max_period: 1000,
            min_autocorrelation: 0.5,
            period_every: 250,
            warmup: 150,
            calibration_window: 3000,
            refractory: 400,
            scales: vec![8, 48],
            scale_window: 2000,
        }
    }
}

/// A robust z-score view over a sliding window.
#[derive(Clone, Debug)]
struct RobustView {
    order: SlidingOrder,
}

impl RobustView {
    fn new(window: usize) -> RobustView {
        RobustView { order: SlidingOrder::new(window) }
    }

    /// (z, centre, scale) of `value` against the window, then `value` joins it.
    fn observe(&mut self, value: f64, min_count: usize) -> Option<(f64, f64, f64)> {
        let result = if self.order.len() >= min_count {
            let center = self.order.median().unwrap_or(value);
            let mut scale = self.order.mad().unwrap_or(0.0) * 1.482_602_218_505_602;
            if scale <= 0.0 {
                // More than half the window is one value: the mean absolute deviation still
                // sees the rest (O(w), only in this case).
                let sum: f64 = self.order.sorted().iter().map(|v| (v - center).abs()).sum();
                scale = 1.253_314_137_315_500_3 * sum / self.order.len() as f64;
            }
            let scale = scale.max(1e-9 * center.abs()).max(1e-12);
            Some(((value - center) / scale, center, scale))
        } else {
            None
        };
        self.order.push(value);
        result
    }
}

/// Multi-view ensemble for univariate series, the default detector of the NAB example.
///
/// Each value is seen through several views, each a robust z-score (median and MAD of a
/// sliding window, falling back to the mean absolute deviation when the MAD is 0) of a
/// different residual:
///
/// * **level**: the value itself against the last `level_window` values (spikes, level shifts);
/// * **seasonal**: the value minus the mean of the same phase in the last three periods, when
///   an autocorrelation search over the recent history finds a period (broken daily or weekly
///   patterns);
/// * **difference**: the step from the previous value, for series without a period (sudden
///   jumps in smooth series; in periodic series the seasonal view already explains the
///   recurring steps);
/// * **multi-scale means**: the trailing means over each of `scales` values of the residual
///   (seasonal residual when periodic, else the value), each against its own history (changes
///   in density or level too small for any single value to stand out).
///
/// The largest two-sided tail surprise (`-log10 p`) of the views is then calibrated against the
/// series' own last `calibration_window` surprises: `-log10` of the fraction at least as large
/// (how rare it is here) plus `log2` of how far it beats the largest of them (how new it is).
/// A series that is always a little surprising therefore does not alert all the time, and the
/// scores of different series are comparable, which a corpus-wide threshold needs. Finally a
/// refractory period reports each event once: within `refractory` values of a reported event
/// only a value whose calibrated surprise beats the event's by 1 is reported again. The score is
/// `1 - exp(-calibrated / 4)`, in `[0, 1)`.
///
/// Cost per value: a few O(log w) order-statistic updates, plus an autocorrelation search of
/// O(history · max_period) every `period_every` values.
///
/// # Examples
/// ```
/// use surveil_operators::{Ensemble, Scorer};
///
/// let mut detector = Ensemble::default();
/// let mut state = 12345u64;
/// let mut scores = Vec::new();
/// for i in 0..3000 {
///     state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
///     let noise = (state >> 40) as f64 / (1u64 << 24) as f64;
///     let spike = if i == 2500 { 8.0 } else { 0.0 };
///     scores.push(detector.score(50.0 + noise + spike));
/// }
/// let top = (0..3000).max_by(|a, b| scores[*a].total_cmp(&scores[*b])).unwrap();
/// assert_eq!(top, 2500);
/// ```
#[derive(Clone, Debug)]
pub struct Ensemble {
    options: EnsembleOptions,
    count: usize,
    history: VecDeque<f64>,
    period: Option<usize>,
    level: RobustView,
    seasonal: RobustView,
    difference: RobustView,
    /// Residuals (seasonal when periodic, else the values) for the trailing means.
    residuals: VecDeque<f64>,
    /// Per scale: running sum of the trailing residuals and the robust baseline of the means.
    means: Vec<(f64, RobustView)>,
    calibration: SlidingOrder,
    last_event: Option<(usize, f64)>,
}

impl Default for Ensemble {
    fn default() -> Self {
        Ensemble::new(EnsembleOptions::default())
    }
}

impl Ensemble {
    /// A detector with the given options.
    pub fn new(options: EnsembleOptions) -> Ensemble {
        Ensemble {
            count: 0,
            history: VecDeque::with_capacity(options.history + 1),
            period: None,
            level: RobustView::new(options.level_window),
            seasonal: RobustView::new(options.residual_window),
            difference: RobustView::new(options.residual_window),
            residuals: VecDeque::new(),
            means: options.scales.iter().map(|_| (0.0, RobustView::new(options.scale_window))).collect(),
            calibration: SlidingOrder::new(options.calibration_window),
            last_event: None,
            options,
        }
    }

    /// The period in use, if the history is periodic.
    pub fn period(&self) -> Option<usize> {
        self.period
    }

    fn search_period(&mut self) {
        let n = self.history.len();
        let max_lag = self.options.max_period.min(n / 3);
        if max_lag <= self.options.min_period {
            return;
        }
        let mean = self.history.iter().sum::<f64>() / n as f64;
        let centred: Vec<f64> = self.history.iter().map(|v| v - mean).collect();
        let energy: f64 = centred.iter().map(|v| v * v).sum();
        if energy <= 0.0 {
            self.period = None;
            return;
        }
        let acf = |lag: usize| {
            let mut s = 0.0;
            for i in lag..n {
                s += centred[i] * centred[i - lag];
            }
            s / energy * n as f64 / (n - lag) as f64
        };
        let mut best: Option<(usize, f64)> = None;
        let (mut before, mut here) = (acf(self.options.min_period - 1), acf(self.options.min_period));
        for lag in self.options.min_period..max_lag {
            let after = acf(lag + 1);
            if here >= before && here >= after && best.is_none_or(|(_, b)| here > b) {
                best = Some((lag, here));
            }
            (before, here) = (here, after);
        }
        let found = best.filter(|(_, r)| *r >= self.options.min_autocorrelation).map(|(lag, _)| lag);
        if found != self.period {
            self.period = found;
            self.seasonal = RobustView::new(self.options.residual_window);
            self.residuals.clear();
            self.means =
                self.options.scales.iter().map(|_| (0.0, RobustView::new(self.options.scale_window))).collect();
        }
    }

    fn seasonal_prediction(&self) -> Option<f64> {
        let p = self.period?;
        let n = self.history.len();
        let mut sum = 0.0;
        let mut k = 0;
        for m in 1..=3 {
            if n >= m * p {
                sum += self.history[n - m * p];
                k += 1;
            }
        }
        (k > 0).then(|| sum / k as f64)
    }
}

impl Scorer for Ensemble {
    fn observe(&mut self, value: f64) -> Scored {
        if !value.is_finite() {
            return Scored::default();
        }
        let min_count = self.options.warmup.min(self.options.level_window);
        let level = self.level.observe(value, min_count);
        let previous = self.history.back().copied();
        let prediction = self.seasonal_prediction();
        let seasonal = prediction.and_then(|p| self.seasonal.observe(value - p, min_count));
        let difference = match prediction {
            None => previous.and_then(|p| self.difference.observe(value - p, min_count)),
            Some(_) => None,
        };
        let residual = match (self.period, prediction) {
            (Some(_), Some(p)) => Some(value - p),
            (Some(_), None) => None,
            (None, _) => Some(value),
        };
        let mut scale_views = Vec::new();
        if let Some(r) = residual {
            self.residuals.push_back(r);
            let longest = self.options.scales.iter().copied().max().unwrap_or(0);
            for (k, (sum, view)) in self.options.scales.iter().zip(self.means.iter_mut()) {
                *sum += r;
                if self.residuals.len() > *k {
                    *sum -= self.residuals[self.residuals.len() - 1 - k];
                }
                if self.residuals.len() >= *k {
                    scale_views.push(view.observe(*sum / *k as f64, min_count));
                }
            }
            while self.residuals.len() > longest {
                self.residuals.pop_front();
            }
        }

        self.history.push_back(value);
        if self.history.len() > self.options.history {
            self.history.pop_front();
        }
        self.count += 1;
        if self.count.is_multiple_of(self.options.period_every.max(1)) {
            self.search_period();
        }

        let Some((z, center, scale)) = level else {
            return Scored { score: 0.0, z: 0.0, center: value, scale: 0.0 };
        };
        let mut surprise = gaussian_surprise(z);
        for view in [seasonal, difference].into_iter().chain(scale_views).flatten() {
            surprise = surprise.max(gaussian_surprise(view.0));
        }

        // Calibrate against the series' own surprises: how rare is one this large, and by
        // how much does it beat the largest of the window.
        let calibrated = if self.calibration.len() >= min_count {
            let sorted = self.calibration.sorted();
            let n = sorted.len();
            let at_least = n - sorted.partition_point(|s| *s < surprise);
            let rarity = -((at_least + 1) as f64 / (n + 1) as f64).log10();
            let record = sorted[n - 1].max(1.0);
            rarity + (surprise / record).max(1.0).log2()
        } else {
            0.0
        };
        self.calibration.push(surprise);

        // Report each event once.
        let reported = match self.last_event {
            Some((at, size)) if self.count - at <= self.options.refractory && calibrated <= size + 1.0 => 0.0,
            _ => calibrated,
        };
        if reported > 1.0 {
            self.last_event = Some((self.count, reported));
        }
        let score = 1.0 - (-reported / 4.0).exp();
        Scored { score, z, center, scale }
    }
}
