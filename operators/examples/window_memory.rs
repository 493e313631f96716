//! Peak memory of the tumbling window operator over a long input: state is freed as windows
//! close, so the high-water mark should not grow with the number of records.
//!
//! `cargo run --release -p surveil-operators --example window_memory -- [records] [workers] [count|stats|floor] [lateness_ns]`
//!
//! Prints the throughput and `VmHWM` from `/proc/self/status` (Linux). Not run in CI.

#[path = "../benches/common/mod.rs"]
mod common;

use common::{Event, SECOND_NS, TumblingCount, drive};
use surveil_operators::{Count, EventTimeWindows, Stats, WindowOptions};
use timely::dataflow::operators::Probe;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let records: u64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(100_000_000);
    let workers: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1);
    let kind = args.get(2).cloned().unwrap_or_else(|| "count".to_owned());
    let lateness: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(0);
    let options = WindowOptions { allowed_lateness: lateness };
    let started = std::time::Instant::now();
    match kind.as_str() {
        "floor" => drive(workers, records, |stream, probe| {
            stream.tumbling_count(SECOND_NS).probe_with(probe);
        }),
        "stats" => drive(workers, records, move |stream, probe| {
            let value = |e: &Event| e.2 as i64;
            let windows = stream.tumbling_window("Stats", SECOND_NS, key, time, value, Stats::<i64>::default, options);
            windows.output.probe_with(probe);
        }),
        _ => drive(workers, records, move |stream, probe| {
            let windows = stream.tumbling_window("Count", SECOND_NS, key, time, |_| (), Count::default, options);
            windows.output.probe_with(probe);
        }),
    }
    let elapsed = started.elapsed().as_secs_f64();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let peak = status.lines().find(|l| l.starts_with("VmHWM")).unwrap_or("VmHWM: unknown");
    println!(
        "{kind}: {records} records, {workers} worker(s), lateness {lateness} ns: {elapsed:.2} s, {:.1} M records/s, {}",
        records as f64 / elapsed / 1e6,
        peak.split_whitespace().skip(1).collect::<Vec<_>>().join(" "),
    );
}

fn key(e: &Event) -> u32 {
    e.1
}

fn time(e: &Event) -> u64 {
    e.0
}
