//! Shared pieces of the operator benchmarks: the synthetic input, the driver, and the
//! hand-written `unary_frontier` tumbling count from the timely notes, which is the floor the
//! library operators are compared with in the same run.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::{Capability, Operator};
use timely::dataflow::{InputHandleVec, ProbeHandle, Stream};

/// (ts_ns, key, value)
pub type Event = (u64, u32, u64);
/// (window_end, key, count)
pub type WindowCount = (u64, u32, u64);

pub const SECOND_NS: u64 = 1_000_000_000;
/// Event-time spacing of the synthetic records: 10 M records span 100 s.
pub const STEP_NS: u64 = 10_000;
/// Distinct keys.
pub const KEYS: u64 = 1_000;
/// Records per benchmark iteration.
pub const RECORDS_DEFAULT: u64 = 10_000_000;
/// Records per input advance (per round, over all workers).
pub const ROUND: u64 = 10_000;
/// Rounds a worker may run ahead of the probe.
pub const LAG: u64 = 4;

/// The `i`-th synthetic record: in event-time order, keys spread over `KEYS`.
#[inline]
pub fn record(i: u64) -> Event {
    (i * STEP_NS, (i.wrapping_mul(7_919) % KEYS) as u32, i % 1_000)
}

/// Runs `records` synthetic records through the dataflow `build` makes on `workers` workers:
/// each worker generates its share, advances its input every `ROUND` records, and stays at
/// most `LAG` rounds ahead of `probe`.
pub fn drive<F>(workers: usize, records: u64, build: F)
where
    F: for<'s> Fn(Stream<'s, u64, Vec<Event>>, &ProbeHandle<u64>) + Send + Sync + 'static,
{
    timely::execute(timely::Config::process(workers), move |worker| {
        let (index, peers) = (worker.index() as u64, worker.peers() as u64);
        let mut input = InputHandleVec::<u64, Event>::new();
        let probe = ProbeHandle::new();
        worker.dataflow::<u64, _, _>(|scope| build(input.to_stream(scope), &probe));
        let rounds = records.div_ceil(ROUND);
        for r in 0..rounds {
            let (lo, hi) = (r * ROUND, ((r + 1) * ROUND).min(records));
            let first = lo + (index + peers - lo % peers) % peers;
            for i in (first..hi).step_by(peers as usize) {
                input.send(record(i));
            }
            input.advance_to(hi * STEP_NS);
            worker.step();
            if r >= LAG {
                let bound = (r + 1 - LAG) * ROUND * STEP_NS;
                worker.step_while(|| probe.less_than(&bound));
            }
        }
        drop(input);
        worker.step_while(|| !probe.done());
    })
    .expect("timely runs");
}

/// The hand-written tumbling count of the timely notes (section a.1).
pub trait TumblingCount<'scope> {
    fn tumbling_count(self, width_ns: u64) -> Stream<'scope, u64, Vec<WindowCount>>;
}

impl<'scope> TumblingCount<'scope> for Stream<'scope, u64, Vec<Event>> {
    fn tumbling_count(self, width_ns: u64) -> Stream<'scope, u64, Vec<WindowCount>> {
        self.unary_frontier::<CapacityContainerBuilder<Vec<WindowCount>>, _, _, _>(
            Exchange::new(|e: &Event| e.1 as u64),
            "TumblingCount",
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
}
