//! Peak memory of the operators over a long input: state is freed as windows close, sessions
//! end, join candidates and partial matches expire, so the high-water mark should not grow with
//! the number of records.
//!
//! `cargo run --release -p surveil-operators --example window_memory -- [records] [workers] [count|stats|floor|sessions|suppress|join|sequence] [lateness_ns]`
//!
//! Prints the throughput and `VmHWM` from `/proc/self/status` (Linux). Not run in CI.

#[path = "../benches/common/mod.rs"]
mod common;

use common::{Event, KEYS, SECOND_NS, STEP_NS, TumblingCount, drive};
use surveil_operators::{
    Count, EventTimeWindows, Interval, IntervalJoin, MatchSequence, Pattern, SessionAccumulator, SessionWindows, Stats,
    Suppress, WindowOptions,
};
use timely::dataflow::operators::Probe;
use timely::dataflow::operators::vec::Filter;

const MS: u64 = 1_000_000;

/// Sums the values of a session.
struct SumValues;

impl SessionAccumulator<Event> for SumValues {
    type State = u64;
    type Output = u64;
    fn start(&mut self, _time: u64, e: Event) -> u64 {
        e.2
    }
    fn add(&mut self, sum: &mut u64, _time: u64, e: Event) {
        *sum += e.2;
    }
    fn merge(&mut self, sum: &mut u64, other: u64) {
        *sum += other;
    }
    fn finish(&mut self, sum: u64) -> u64 {
        sum
    }
}

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
        "sessions" => drive(workers, records, |stream, probe| {
            stream.session_windows("Sessions", 20 * MS, key, time, SumValues).sessions.probe_with(probe);
        }),
        "suppress" => drive(workers, records, |stream, probe| {
            let out = stream.suppress("Suppress", SECOND_NS, key, |e| (e.0, e.2));
            out.first.probe_with(probe);
            out.summaries.probe_with(probe);
        }),
        "join" => drive(workers, records, |stream, probe| {
            // A key's records alternate between the two sides, as in the `joins` bench.
            let side = |e: &Event| (e.0 / STEP_NS / KEYS).is_multiple_of(2);
            let left = stream.clone().filter(move |e| side(e));
            let right = stream.filter(move |e| !side(e));
            let key_time = |e: &Event| (e.1, e.0);
            let out = left.interval_join(right, "Join", Interval::symmetric(10 * MS), key_time, key_time, |a, b| {
                (a.0 / STEP_NS + b.0 / STEP_NS).is_multiple_of(100).then_some((a.0, b.0, a.1))
            });
            out.matches.probe_with(probe);
        }),
        "sequence" => drive(workers, records, |stream, probe| {
            let kind = |e: &Event| ((e.0 / STEP_NS).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) % 8;
            let pattern = Pattern::begin(move |e: &Event| kind(e) == 0)
                .followed_by(move |_, e| kind(e) == 1)
                .not_followed_by(move |_, e| kind(e) == 2)
                .followed_by(move |_, e| kind(e) == 3)
                .within(100 * MS);
            stream.match_sequence("Sequence", |e| e.1, |e| (e.0, e.2), pattern).matches.probe_with(probe);
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
