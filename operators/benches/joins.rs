//! Throughput of the interval join and the sequence matcher against the hand-written
//! `unary_frontier` tumbling count (the floor), measured in the same run: 10 M in-memory
//! records, 1,000 keys, 1 and 2 workers, records/s including generation.
//!
//! The synthetic records of `common` give each key one record every 10 ms of event time. For
//! the join, a key's records alternate between the left and the right input (the driver below
//! mirrors `common::drive` with two inputs), so with `Interval::symmetric(10 ms)` every record
//! has two candidates on the other side. `join_selective` keeps 1 % of the pairs (the shape of
//! a wash-trade rule: many candidates, few alerts); `join_all_pairs` emits every pair (one result
//! per input record, each at its own time; `join_all_pairs_epoch_1ms` emits them at times rounded
//! down to the millisecond). The sequence matcher runs "kind 0, then kind 1, then
//! kind 3 with no kind 2 before it, within 100 ms", kinds being pseudo-random per record
//! (2.9 matches per 100 records; `sequence_epoch_1ms` emits them at times rounded down to the
//! millisecond).
//!
//! `floor_unary_frontier_count` is `common`'s floor; `floor_count_routed` is the same operator
//! exchanged by `route` as the operators here are (see [`tumbling_count_routed`]), the fair
//! floor at 2 workers.
//!
//! `cargo bench -p surveil-operators --bench joins -- --warm-up-time 1 --measurement-time 5`
//! (`JOIN_BENCH_RECORDS` overrides the record count).

mod common;

use std::collections::{BTreeMap, HashMap};

use common::{Event, KEYS, LAG, RECORDS_DEFAULT, ROUND, SECOND_NS, STEP_NS, TumblingCount, WindowCount, drive, record};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use surveil_operators::{Interval, IntervalJoin, JoinOptions, MatchSequence, Pattern, route};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::{Capability, Operator, Probe};
use timely::dataflow::{InputHandleVec, ProbeHandle, Stream};

const MS: u64 = 1_000_000;

/// Like `common::drive`, with the records of each key alternating between two inputs.
fn drive_two<F>(workers: usize, records: u64, build: F)
where
    F: for<'s> Fn(Stream<'s, u64, Vec<Event>>, Stream<'s, u64, Vec<Event>>, &ProbeHandle<u64>) + Send + Sync + 'static,
{
    timely::execute(timely::Config::process(workers), move |worker| {
        let (index, peers) = (worker.index() as u64, worker.peers() as u64);
        let mut left = InputHandleVec::<u64, Event>::new();
        let mut right = InputHandleVec::<u64, Event>::new();
        let probe = ProbeHandle::new();
        worker.dataflow::<u64, _, _>(|scope| build(left.to_stream(scope), right.to_stream(scope), &probe));
        let rounds = records.div_ceil(ROUND);
        for r in 0..rounds {
            let (lo, hi) = (r * ROUND, ((r + 1) * ROUND).min(records));
            let first = lo + (index + peers - lo % peers) % peers;
            for i in (first..hi).step_by(peers as usize) {
                if (i / KEYS).is_multiple_of(2) {
                    left.send(record(i));
                } else {
                    right.send(record(i));
                }
            }
            left.advance_to(hi * STEP_NS);
            right.advance_to(hi * STEP_NS);
            worker.step();
            if r >= LAG {
                let bound = (r + 1 - LAG) * ROUND * STEP_NS;
                worker.step_while(|| probe.less_than(&bound));
            }
        }
        drop((left, right));
        worker.step_while(|| !probe.done());
    })
    .expect("timely runs");
}

/// The tumbling count of `common` (the notes' floor), exchanged by `surveil_operators::route`
/// like the operators measured here. `common`'s floor routes by `key % workers`, which with its
/// generator (worker `w` makes records `i % workers == w`, whose keys have the parity of `i`)
/// keeps every record on the worker that made it at 2 workers: no data crosses threads. This
/// variant pays the same routing hash and cross-thread traffic as the joins.
fn tumbling_count_routed<'s>(stream: Stream<'s, u64, Vec<Event>>, width_ns: u64) -> Stream<'s, u64, Vec<WindowCount>> {
    stream.unary_frontier::<CapacityContainerBuilder<Vec<WindowCount>>, _, _, _>(
        Exchange::new(|e: &Event| route(&e.1)),
        "TumblingCountRouted",
        move |_initial, _info| {
            let mut open: BTreeMap<u64, (Capability<u64>, HashMap<u32, u64>)> = BTreeMap::new();
            move |(input, frontier), output| {
                let port = output.output_index();
                input.for_each_stamp(|cap, data| {
                    for batch in data {
                        for (ts, key, _v) in batch.drain(..) {
                            let last = (ts / width_ns + 1) * width_ns - 1;
                            let (_, counts) =
                                open.entry(last).or_insert_with(|| (cap.delayed(&last, port), HashMap::new()));
                            *counts.entry(key).or_insert(0) += 1;
                        }
                    }
                });
                while let Some(e) = open.first_entry() {
                    if frontier.less_equal(e.key()) {
                        break;
                    }
                    let (last, (cap, counts)) = e.remove_entry();
                    output.session(&cap).give_iterator(counts.into_iter().map(|(k, c)| (last + 1, k, c)));
                }
            }
        },
    )
}

fn key_time(e: &Event) -> (u32, u64) {
    (e.1, e.0)
}

/// A pseudo-random kind in `0..8` per record.
fn kind(e: &Event) -> u64 {
    ((e.0 / STEP_NS).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) % 8
}

fn joins(c: &mut Criterion) {
    let records = std::env::var("JOIN_BENCH_RECORDS").ok().and_then(|s| s.parse().ok()).unwrap_or(RECORDS_DEFAULT);
    let mut group = c.benchmark_group("joins_1000_keys");
    group.throughput(Throughput::Elements(records));
    group.sample_size(10);
    for workers in [1usize, 2] {
        group.bench_function(BenchmarkId::new("floor_unary_frontier_count", workers), |b| {
            b.iter(|| {
                drive(workers, records, |stream, probe| {
                    stream.tumbling_count(SECOND_NS).probe_with(probe);
                })
            })
        });
        group.bench_function(BenchmarkId::new("floor_count_routed", workers), |b| {
            b.iter(|| {
                drive(workers, records, |stream, probe| {
                    tumbling_count_routed(stream, SECOND_NS).probe_with(probe);
                })
            })
        });
        group.bench_function(BenchmarkId::new("join_selective", workers), |b| {
            b.iter(|| {
                drive_two(workers, records, |left, right, probe| {
                    let out =
                        left.interval_join(right, "Join", Interval::symmetric(10 * MS), key_time, key_time, |a, b| {
                            (a.0 / STEP_NS + b.0 / STEP_NS).is_multiple_of(100).then_some((a.0, b.0, a.1))
                        });
                    out.matches.probe_with(probe);
                })
            })
        });
        group.bench_function(BenchmarkId::new("join_all_pairs", workers), |b| {
            b.iter(|| {
                drive_two(workers, records, |left, right, probe| {
                    let out =
                        left.interval_join(right, "Join", Interval::symmetric(10 * MS), key_time, key_time, |a, b| {
                            Some((a.0, b.0, a.1))
                        });
                    out.matches.probe_with(probe);
                })
            })
        });
        group.bench_function(BenchmarkId::new("join_all_pairs_epoch_1ms", workers), |b| {
            b.iter(|| {
                drive_two(workers, records, |left, right, probe| {
                    let out = left.interval_join(
                        right,
                        "Join",
                        JoinOptions::new(Interval::symmetric(10 * MS)).output_epoch(MS),
                        key_time,
                        key_time,
                        |a, b| Some((a.0, b.0, a.1)),
                    );
                    out.matches.probe_with(probe);
                })
            })
        });
        for (name, epoch) in [("sequence", 1), ("sequence_epoch_1ms", MS)] {
            group.bench_function(BenchmarkId::new(name, workers), |b| {
                b.iter(|| {
                    drive(workers, records, move |stream, probe| {
                        let pattern = Pattern::begin(|e: &Event| kind(e) == 0)
                            .followed_by(|_, e| kind(e) == 1)
                            .not_followed_by(|_, e| kind(e) == 2)
                            .followed_by(|_, e| kind(e) == 3)
                            .within(100 * MS)
                            .output_epoch(epoch);
                        let out = stream.match_sequence("Sequence", |e| e.1, |e| (e.0, e.2), pattern);
                        out.matches.probe_with(probe);
                    })
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, joins);
criterion_main!(benches);
