//! Throughput of session windows and suppression against the hand-written `unary_frontier`
//! tumbling count (the floor, from `common`), measured in the same run: 10 M in-memory records,
//! 1,000 keys, 1 and 2 workers, records/s including generation. After criterion's report, the
//! bench prints each operator's median throughput and its ratio to the floor.
//!
//! The synthetic input (`common::record`) has every key recur exactly every 10 ms of event time,
//! so the benchmarks vary the event time and the gap to get realistic sessions:
//!
//! * `sessions_jitter_gap_12ms`: event time = record time + a pseudo-random 0, 4, 8 or 12 ms
//!   (so records arrive out of order, up to 12 ms), gap 12 ms: sessions of about 10 records
//!   (1 M sessions), built out of order, often by merging.
//! * `sessions_gap_5ms`: event time = record time, gap 5 ms: every record is a session of its
//!   own (10 M sessions), the worst case.
//! * `sessions_gap_20ms`: event time = record time, gap 20 ms: one session per key for the
//!   whole run (the cheapest path: every record extends the key's open session).
//! * `suppress_1s`: one record per key per second passes; the rest are counted.
//!
//! `cargo bench -p surveil-operators --bench sessions -- --warm-up-time 1 --measurement-time 5`
//! (`SESSION_BENCH_RECORDS=n` to change the size).

mod common;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{Event, RECORDS_DEFAULT, SECOND_NS, STEP_NS, TumblingCount, drive};
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use surveil_operators::{SessionAccumulator, SessionWindows, Suppress};
use timely::dataflow::operators::Probe;

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

fn key(e: &Event) -> u32 {
    e.1
}

fn time(e: &Event) -> u64 {
    e.0
}

/// The record's time plus 0, 4, 8 or 12 ms, pseudo-randomly: never before the time it is sent
/// at, so every record is on time.
fn jittered(e: &Event) -> u64 {
    let i = e.0 / STEP_NS;
    e.0 + (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 62) * 4 * MS
}

/// Median seconds per iteration, by (benchmark, workers).
static MEDIANS: Mutex<BTreeMap<(String, usize), Vec<Duration>>> = Mutex::new(BTreeMap::new());

fn timed(name: &str, workers: usize, iters: u64, mut run: impl FnMut()) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let start = Instant::now();
        run();
        let took = start.elapsed();
        total += took;
        if let Ok(mut medians) = MEDIANS.lock() {
            medians.entry((name.to_owned(), workers)).or_default().push(took);
        }
    }
    total
}

fn sessions(c: &mut Criterion, records: u64) {
    let mut group = c.benchmark_group("sessions_1000_keys");
    group.throughput(Throughput::Elements(records));
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    for workers in [1usize, 2] {
        group.bench_function(BenchmarkId::new("floor_unary_frontier_count", workers), |b| {
            b.iter_custom(|iters| {
                timed("floor_unary_frontier_count", workers, iters, || {
                    drive(workers, records, |stream, probe| {
                        stream.tumbling_count(SECOND_NS).probe_with(probe);
                    })
                })
            })
        });
        group.bench_function(BenchmarkId::new("sessions_jitter_gap_12ms", workers), |b| {
            b.iter_custom(|iters| {
                timed("sessions_jitter_gap_12ms", workers, iters, || {
                    drive(workers, records, |stream, probe| {
                        stream
                            .session_windows("Sessions", 12 * MS, key, jittered, SumValues)
                            .sessions
                            .probe_with(probe);
                    })
                })
            })
        });
        group.bench_function(BenchmarkId::new("sessions_gap_5ms", workers), |b| {
            b.iter_custom(|iters| {
                timed("sessions_gap_5ms", workers, iters, || {
                    drive(workers, records, |stream, probe| {
                        stream.session_windows("Sessions", 5 * MS, key, time, SumValues).sessions.probe_with(probe);
                    })
                })
            })
        });
        group.bench_function(BenchmarkId::new("sessions_gap_20ms", workers), |b| {
            b.iter_custom(|iters| {
                timed("sessions_gap_20ms", workers, iters, || {
                    drive(workers, records, |stream, probe| {
                        stream.session_windows("Sessions", 20 * MS, key, time, SumValues).sessions.probe_with(probe);
                    })
                })
            })
        });
        group.bench_function(BenchmarkId::new("suppress_1s", workers), |b| {
            b.iter_custom(|iters| {
                timed("suppress_1s", workers, iters, || {
                    drive(workers, records, |stream, probe| {
                        let out = stream.suppress("Suppress", SECOND_NS, key, |e| (e.0, e.2));
                        out.first.probe_with(probe);
                        out.summaries.probe_with(probe);
                    })
                })
            })
        });
    }
    group.finish();
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times.get(times.len() / 2).copied().unwrap_or_default()
}

fn main() {
    let records = std::env::var("SESSION_BENCH_RECORDS").ok().and_then(|s| s.parse().ok()).unwrap_or(RECORDS_DEFAULT);
    let mut criterion = Criterion::default().configure_from_args();
    sessions(&mut criterion, records);
    criterion.final_summary();

    let Ok(mut medians) = MEDIANS.lock() else { return };
    if medians.is_empty() {
        return;
    }
    println!("\nmedian throughput ({records} records, including generation), ratio to the floor:");
    let rates: BTreeMap<(String, usize), f64> = medians
        .iter_mut()
        .map(|(k, times)| (k.clone(), records as f64 / median(times).as_secs_f64().max(f64::MIN_POSITIVE)))
        .collect();
    for ((name, workers), rate) in &rates {
        let floor = rates.get(&("floor_unary_frontier_count".to_owned(), *workers));
        let ratio = floor.map_or(String::from("-"), |f| format!("{:.0} %", 100.0 * rate / f));
        println!("  {name:<28} {workers} worker(s): {:>7.1} M records/s  {ratio:>6}", rate / 1e6);
    }
}
