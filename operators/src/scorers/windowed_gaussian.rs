//! NAB's `windowedGaussian` detector.

use std::collections::VecDeque;

use super::{Scored, Scorer, gaussian_score};

/// The Numenta Anomaly Benchmark's `windowedGaussian` detector, reproduced to the last bits
/// that matter (the NAB golden rows agree to about 1e-12).
///
/// A value is scored with `1 - Q(|v - mean| / std)` from the mean and population standard
/// deviation of the window *before* the value joins it (a standard deviation of 0 counts as
/// 1e-6; the first value scores 0). The window grows one value at a time up to `window`
/// values, with mean and deviation recomputed after each; after that new values wait in a
/// buffer and every `step` values the oldest `step` leave, the buffer joins, and the statistics
/// are recomputed.
///
/// Cost: the statistics are recomputed with NAB's two-pass sequential sums, which is what makes
/// near-constant windows (deviation rounding to 0 or not) agree with the reference. That is
/// O(n) per value while the window grows and O(window / step) per value afterwards (64 for the
/// defaults). Use [`EwmaZ`](super::EwmaZ) where exactness with NAB does not matter.
///
/// # Examples
/// ```
/// use surveil_operators::{Scorer, WindowedGaussian};
///
/// let mut detector = WindowedGaussian::nab();
/// assert_eq!(detector.score(10.0), 0.0); // no baseline yet
/// for v in [11.0, 9.0, 10.0, 10.5] {
///     detector.score(v);
/// }
/// assert!(detector.score(30.0) > 0.999);
/// ```
#[derive(Clone, Debug)]
pub struct WindowedGaussian {
    window_size: usize,
    step_size: usize,
    window: VecDeque<f64>,
    step_buffer: Vec<f64>,
    mean: f64,
    std: f64,
}

impl WindowedGaussian {
    /// NAB's parameters: window 6,400, step 100.
    pub fn nab() -> WindowedGaussian {
        WindowedGaussian::new(6400, 100)
    }

    /// A detector with the given window and step (both at least 1).
    pub fn new(window_size: usize, step_size: usize) -> WindowedGaussian {
        let window_size = window_size.max(1);
        WindowedGaussian {
            window_size,
            step_size: step_size.clamp(1, window_size),
            window: VecDeque::with_capacity(window_size),
            step_buffer: Vec::new(),
            mean: 0.0,
            std: 1.0,
        }
    }

    /// The current mean of the window.
    pub fn mean(&self) -> f64 {
        self.mean
    }

    /// The current population standard deviation of the window (1e-6 when it is 0).
    pub fn std(&self) -> f64 {
        self.std
    }

    fn recompute(&mut self) {
        let n = self.window.len() as f64;
        let mut sum = 0.0;
        for v in &self.window {
            sum += v;
        }
        self.mean = sum / n;
        let mut squares = 0.0;
        for v in &self.window {
            let d = v - self.mean;
            squares += d * d;
        }
        self.std = (squares / n).sqrt();
        if self.std == 0.0 {
            self.std = 1e-6;
        }
    }
}

impl Scorer for WindowedGaussian {
    fn observe(&mut self, value: f64) -> Scored {
        if !value.is_finite() {
            return Scored { score: 0.0, z: 0.0, center: self.mean, scale: self.std };
        }
        let scored = if self.window.is_empty() {
            Scored { score: 0.0, z: 0.0, center: value, scale: self.std }
        } else {
            let z = (value - self.mean) / self.std;
            Scored { score: gaussian_score(z), z, center: self.mean, scale: self.std }
        };
        if self.window.len() < self.window_size {
            self.window.push_back(value);
            self.recompute();
        } else {
            self.step_buffer.push(value);
            if self.step_buffer.len() == self.step_size {
                self.window.drain(..self.step_size);
                self.window.extend(self.step_buffer.drain(..));
                self.recompute();
            }
        }
        scored
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slides_by_whole_steps() {
        let mut d = WindowedGaussian::new(4, 2);
        for v in [1.0, 2.0, 3.0, 4.0] {
            d.observe(v);
        }
        assert_eq!(d.mean(), 2.5);
        d.observe(100.0);
        assert_eq!(d.mean(), 2.5, "one value waits in the step buffer");
        d.observe(200.0);
        assert_eq!(d.mean(), (3.0 + 4.0 + 100.0 + 200.0) / 4.0);
    }

    #[test]
    fn constant_window_uses_the_tiny_deviation() {
        let mut d = WindowedGaussian::nab();
        d.observe(5.0);
        d.observe(5.0);
        assert_eq!(d.std(), 1e-6);
        assert_eq!(d.observe(5.0).score, 0.5);
        assert_eq!(d.observe(f64::NAN).score, 0.0);
    }
}
