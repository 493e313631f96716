//! The benchmark harness behind `cargo run --release --example bench`.
//!
//! * [`trades`]: a seeded trades-only CSV (the input every engine of the side-by-side
//!   comparison reads) and a partition that reads it.
//! * [`window_job`]: the comparison job as a streaming dataflow: per-account 1-second tumbling
//!   event-time windows with count, Σqty and VWAP, an alert when Σqty exceeds a threshold, and a
//!   self-trade filter.
//! * [`latency`]: the default surveillance job fed by an open-loop source paced by the wall
//!   clock, with the latency of every event recorded in an HdrHistogram.
//! * [`stalls`]: how long the machine takes the CPU away from threads that keep a core busy.
//!
//! Everything here measures; nothing here is timed in tests.

pub mod latency;
pub mod stalls;
pub mod trades;
pub mod window_job;

/// A line of `/proc/self/status` in bytes (Linux), e.g. `VmRSS` or `VmHWM`.
fn proc_status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Resident memory of this process now, bytes (Linux).
pub fn current_rss() -> Option<u64> {
    proc_status_bytes("VmRSS:")
}

/// Peak resident memory of this process, bytes (Linux).
pub fn peak_rss() -> Option<u64> {
    proc_status_bytes("VmHWM:")
}
