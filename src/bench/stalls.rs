//! How often the machine takes the CPU away from busy threads: the floor under any latency
//! figure measured on it.
//!
//! Each of `threads` threads does nothing but read the clock in a loop for the given time, and
//! records every gap between two consecutive readings longer than a threshold. A gap is time
//! the thread did not run: the kernel ran something else on its core (the system's own tasks,
//! interrupts), or the hypervisor ran something else on the virtual CPU. A dataflow worker that
//! keeps a core busy is stalled the same way, and workers that wait on each other's progress
//! are stalled by the union of their stalls.

use std::time::{Duration, Instant};

use serde::Serialize;

/// What one clock-reading thread saw.
#[derive(Clone, Debug, Serialize)]
pub struct ThreadStalls {
    /// Gaps longer than the threshold.
    pub gaps: u64,
    /// Their total, microseconds.
    pub total_us: f64,
    /// The longest, microseconds.
    pub max_us: f64,
    /// Share of the run spent in these gaps.
    pub share: f64,
}

/// One measurement with a number of busy threads.
#[derive(Clone, Debug, Serialize)]
pub struct StallReport {
    /// Busy threads, each keeping one core busy.
    pub threads: usize,
    /// Length of the run, seconds.
    pub seconds: f64,
    /// Gaps shorter than this are not counted, microseconds.
    pub threshold_us: f64,
    /// Per thread.
    pub per_thread: Vec<ThreadStalls>,
}

/// Keeps `threads` threads reading the clock for `run` and reports their gaps over `threshold`.
pub fn measure_stalls(threads: usize, run: Duration, threshold: Duration) -> StallReport {
    let handles: Vec<_> = (0..threads.max(1))
        .map(|_| {
            std::thread::spawn(move || {
                let start = Instant::now();
                let (mut last, mut gaps, mut total, mut max) = (start, 0u64, Duration::ZERO, Duration::ZERO);
                loop {
                    let now = Instant::now();
                    let gap = now - last;
                    if gap > threshold {
                        gaps += 1;
                        total += gap;
                        max = max.max(gap);
                    }
                    last = now;
                    if now - start >= run {
                        break;
                    }
                }
                let elapsed = last.duration_since(start).as_secs_f64().max(1e-9);
                ThreadStalls {
                    gaps,
                    total_us: total.as_secs_f64() * 1e6,
                    max_us: max.as_secs_f64() * 1e6,
                    share: total.as_secs_f64() / elapsed,
                }
            })
        })
        .collect();
    let per_thread = handles
        .into_iter()
        .map(|h| h.join().unwrap_or(ThreadStalls { gaps: 0, total_us: f64::NAN, max_us: f64::NAN, share: f64::NAN }))
        .collect();
    StallReport {
        threads: threads.max(1),
        seconds: run.as_secs_f64(),
        threshold_us: threshold.as_secs_f64() * 1e6,
        per_thread,
    }
}
