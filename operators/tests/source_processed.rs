//! The source tells each partition how far the whole dataflow has processed: the hook a live
//! source uses to commit its position (at-least-once delivery).

use std::cell::RefCell;
use std::rc::Rc;

use surveil_operators::{Partition, PartitionRead, SourceOptions, partitioned_source};
use timely::dataflow::ProbeHandle;
use timely::dataflow::operators::{Inspect, Probe};

/// Reads `times` a few at a time and remembers every processed watermark it is told.
struct Recorded {
    times: Vec<u64>,
    next: usize,
    processed: Rc<RefCell<Vec<u64>>>,
}

impl Partition for Recorded {
    type Record = u64;
    type Side = ();
    fn time(record: &u64) -> u64 {
        *record
    }
    fn first_time(&mut self) -> Option<u64> {
        self.times.first().copied()
    }
    fn read(&mut self, max: usize, out: &mut Vec<u64>, _: &mut Vec<()>) -> PartitionRead {
        let end = (self.next + max.min(3)).min(self.times.len());
        out.extend_from_slice(&self.times[self.next..end]);
        self.next = end;
        if end == self.times.len() { PartitionRead::Exhausted } else { PartitionRead::More }
    }
    fn processed(&mut self, watermark: u64) {
        self.processed.borrow_mut().push(watermark);
    }
}

#[test]
fn processed_watermarks_only_grow_and_never_pass_unfinished_records() {
    timely::execute(timely::Config::thread(), |worker| {
        let processed = Rc::new(RefCell::new(Vec::new()));
        let seen = Rc::new(RefCell::new(Vec::new()));
        let probe = ProbeHandle::new();
        let times: Vec<u64> = (0..200).map(|i| i * 10).collect();
        let partition = Recorded { times: times.clone(), next: 0, processed: processed.clone() };
        let options = SourceOptions {
            epoch: 10,
            batch_records: 3,
            reads_per_activation: 1,
            probe: Some(probe.clone()),
            ..Default::default()
        };
        let seen_in = seen.clone();
        worker.dataflow::<u64, _, _>(|scope| {
            partitioned_source(scope, "Recorded", vec![partition], options)
                .records
                .inspect(move |t| seen_in.borrow_mut().push(*t))
                .probe_with(&probe);
        });
        while !probe.done() {
            worker.step();
            // Whatever a partition is told is processed must really have gone through.
            if let Some(&w) = processed.borrow().last() {
                assert!(seen.borrow().iter().filter(|&&t| t < w).count() == times.iter().filter(|&&t| t < w).count());
            }
        }
        let calls = processed.borrow();
        assert!(calls.len() > 10, "the hook is called as the dataflow advances: {calls:?}");
        assert!(calls.windows(2).all(|w| w[0] < w[1]), "{calls:?}");
        assert!(*calls.last().unwrap_or(&0) >= 1_900, "{calls:?}");
        assert_eq!(*seen.borrow(), times);
    })
    .expect("timely runs");
}
