//! Throughput of the tumbling window operator against the hand-written `unary_frontier` floor,
//! measured in the same run: 10 M in-memory records, 1,000 keys, 1 s windows, 1 and 2 workers.
//!
//! `cargo bench -p surveil-operators --bench windows -- --warm-up-time 1 --measurement-time 5`

mod common;

use common::{Event, RECORDS_DEFAULT, SECOND_NS, TumblingCount, drive};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use surveil_operators::{Count, EventTimeWindows, Stats, WindowOptions};
use timely::dataflow::operators::Probe;

fn tumbling(c: &mut Criterion) {
    let records = std::env::var("WINDOW_BENCH_RECORDS").ok().and_then(|s| s.parse().ok()).unwrap_or(RECORDS_DEFAULT);
    let mut group = c.benchmark_group("tumbling_1s_1000_keys");
    group.throughput(Throughput::Elements(records));
    group.sample_size(10);
    let lateness = WindowOptions { allowed_lateness: SECOND_NS };
    for workers in [1usize, 2] {
        group.bench_function(BenchmarkId::new("floor_unary_frontier_count", workers), |b| {
            b.iter(|| {
                drive(workers, records, |stream, probe| {
                    stream.tumbling_count(SECOND_NS).probe_with(probe);
                })
            })
        });
        group.bench_function(BenchmarkId::new("window_count", workers), |b| {
            b.iter(|| {
                drive(workers, records, |stream, probe| {
                    let count = Count::default;
                    let windows =
                        stream.tumbling_window("Count", SECOND_NS, key, time, |_| (), count, Default::default());
                    windows.output.probe_with(probe);
                })
            })
        });
        group.bench_function(BenchmarkId::new("window_count_lateness_1s", workers), |b| {
            b.iter(|| {
                drive(workers, records, move |stream, probe| {
                    let windows =
                        stream.tumbling_window("Count", SECOND_NS, key, time, |_| (), Count::default, lateness);
                    windows.output.probe_with(probe);
                })
            })
        });
        group.bench_function(BenchmarkId::new("window_stats", workers), |b| {
            b.iter(|| {
                drive(workers, records, |stream, probe| {
                    let value = |e: &Event| e.2 as i64;
                    let stats = Stats::<i64>::default;
                    let windows =
                        stream.tumbling_window("Stats", SECOND_NS, key, time, value, stats, Default::default());
                    windows.output.probe_with(probe);
                })
            })
        });
    }
    group.finish();
}

fn key(e: &Event) -> u32 {
    e.1
}

fn time(e: &Event) -> u64 {
    e.0
}

criterion_group!(benches, tumbling);
criterion_main!(benches);
