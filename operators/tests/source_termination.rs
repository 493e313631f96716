//! `partitioned_source` always terminates: partitions that never yield an on-time record (only
//! side records, or nothing at all) are still read to the end, a watermark step holding more
//! records than the in-flight bound is read whole instead of waited on, and a stop flag ends the
//! source with everything already sent drained through the dataflow.
//!
//! Each scenario runs in a thread with a generous watchdog: a hang fails the test instead of
//! blocking the suite.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use surveil_operators::{Partition, PartitionRead, SourceOptions, partitioned_source};
use timely::dataflow::ProbeHandle;
use timely::dataflow::operators::{Inspect, Probe};

/// A partition over a list of lines: numbers are records (their value is the event time),
/// anything else is a side record. `first_time` reports the first number, like a file block.
struct Lines {
    lines: Vec<String>,
    next: usize,
}

impl Lines {
    fn new(lines: &[&str]) -> Lines {
        Lines { lines: lines.iter().map(|l| l.to_string()).collect(), next: 0 }
    }
}

impl Partition for Lines {
    type Record = u64;
    type Side = String;
    fn time(record: &u64) -> u64 {
        *record
    }
    fn first_time(&mut self) -> Option<u64> {
        self.lines.iter().find_map(|l| l.parse().ok())
    }
    fn read(&mut self, max: usize, out: &mut Vec<u64>, side: &mut Vec<String>) -> PartitionRead {
        for line in self.lines.iter().skip(self.next).take(max.max(1)) {
            match line.parse() {
                Ok(t) => out.push(t),
                Err(_) => side.push(line.clone()),
            }
            self.next += 1;
        }
        if self.next >= self.lines.len() { PartitionRead::Exhausted } else { PartitionRead::More }
    }
}

/// What a run produced: records and side records, sorted.
#[derive(Debug, Default, PartialEq)]
struct Outcome {
    records: Vec<u64>,
    side: Vec<String>,
}

/// Runs `partitions(worker, peers)` on `workers` threads with at most `max_in_flight` records
/// in flight, failing after 60 s.
fn run(
    workers: usize,
    max_in_flight: Option<usize>,
    partitions: impl Fn(usize, usize) -> Vec<Lines> + Send + Sync + 'static,
) -> Outcome {
    let outcome = Arc::new(Mutex::new(Outcome::default()));
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let shared = outcome.clone();
    std::thread::spawn(move || {
        let result = timely::execute(timely::Config::process(workers), move |worker| {
            let probe = ProbeHandle::new();
            let options = SourceOptions { probe: Some(probe.clone()), max_in_flight, ..options() };
            let parts = partitions(worker.index(), worker.peers());
            let (records, side) = (shared.clone(), shared.clone());
            worker.dataflow::<u64, _, _>(|scope| {
                let out = partitioned_source(scope, "Lines", parts, options);
                out.records.inspect(move |t| records.lock().expect("lock").records.push(*t)).probe_with(&probe);
                out.side.inspect(move |s| side.lock().expect("lock").side.push(s.clone())).probe_with(&probe);
            });
            while !probe.done() {
                worker.step();
            }
        });
        let _ = done_tx.send(result.map(|guards| guards.join().into_iter().all(|r| r.is_ok())));
    });
    match done_rx.recv_timeout(Duration::from_secs(60)) {
        Ok(Ok(true)) => {}
        Ok(other) => panic!("the dataflow failed: {other:?}"),
        Err(_) => panic!("the source did not terminate within 60 s"),
    }
    let mut outcome = std::mem::take(&mut *outcome.lock().expect("lock"));
    outcome.records.sort();
    outcome.side.sort();
    outcome
}

fn options() -> SourceOptions {
    SourceOptions { epoch: 1, batch_records: 2, reads_per_activation: 1, ..Default::default() }
}

#[test]
fn partitions_without_records_are_read_to_the_end() {
    for workers in [1, 2] {
        // Only side records; nothing at all; and both beside a good partition, in either order.
        let layouts: Vec<Vec<Vec<&'static str>>> = vec![
            vec![vec!["bad", "worse"]],
            vec![vec![]],
            vec![vec!["bad"], vec!["5", "7", "9"]],
            vec![vec!["5", "7", "9"], vec!["bad", "x", "y"], vec![]],
        ];
        for layout in layouts {
            let expected_records: usize = layout.iter().flatten().filter(|l| l.parse::<u64>().is_ok()).count();
            let expected_side: usize = layout.iter().flatten().count() - expected_records;
            let shared = layout.clone();
            let outcome = run(workers, None, move |worker, peers| {
                shared.iter().enumerate().filter(|(i, _)| i % peers == worker).map(|(_, l)| Lines::new(l)).collect()
            });
            assert_eq!(outcome.records.len(), expected_records, "{layout:?} on {workers} workers");
            assert_eq!(outcome.side.len(), expected_side, "{layout:?} on {workers} workers");
        }
    }
}

#[test]
fn a_watermark_step_larger_than_the_in_flight_bound_is_read_whole() {
    // 1,000 records at one time, then a later one, with at most 10 in flight.
    let mut lines: Vec<String> = vec!["100".into(); 1000];
    lines.push("200".into());
    for workers in [1, 2] {
        let shared = lines.clone();
        let outcome = run(workers, Some(10), move |worker, _| {
            let refs: Vec<&str> = shared.iter().map(|s| s.as_str()).collect();
            if worker == 0 { vec![Lines::new(&refs)] } else { Vec::new() }
        });
        assert_eq!(outcome.records.len(), 1001, "{workers} workers");
    }
    // A bound of zero only serialises the steps.
    let outcome = run(1, Some(0), |_, _| vec![Lines::new(&["1", "1", "2", "3", "3", "3"])]);
    assert_eq!(outcome.records, vec![1, 1, 2, 3, 3, 3]);
}

#[test]
fn a_stop_flag_ends_the_source_and_drains_what_was_sent() {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    // A partition that raises the flag itself after its 100th record: the run must end with
    // exactly the records read before the stop was seen, never more than were read.
    struct Stopping {
        next: u64,
        flag: Arc<AtomicBool>,
        read: Arc<Mutex<u64>>,
    }
    impl Partition for Stopping {
        type Record = u64;
        type Side = String;
        fn time(record: &u64) -> u64 {
            *record
        }
        fn first_time(&mut self) -> Option<u64> {
            Some(0)
        }
        fn read(&mut self, max: usize, out: &mut Vec<u64>, _: &mut Vec<String>) -> PartitionRead {
            for _ in 0..max {
                out.push(self.next);
                self.next += 1;
            }
            *self.read.lock().expect("lock") = self.next;
            if self.next >= 100 {
                self.flag.store(true, Ordering::Relaxed);
            }
            PartitionRead::More // endless without the stop
        }
    }
    let read = Arc::new(Mutex::new(0u64));
    let seen = Arc::new(Mutex::new(0u64));
    let (tx, rx) = std::sync::mpsc::channel();
    let (read2, seen2) = (read.clone(), seen.clone());
    std::thread::spawn(move || {
        let result = timely::execute(timely::Config::thread(), move |worker| {
            let probe = ProbeHandle::new();
            let options = SourceOptions { stop: Some(flag.clone()), probe: Some(probe.clone()), ..options() };
            let part = Stopping { next: 0, flag: flag.clone(), read: read2.clone() };
            let seen = seen2.clone();
            worker.dataflow::<u64, _, _>(|scope| {
                partitioned_source(scope, "Endless", vec![part], options)
                    .records
                    .inspect(move |_| *seen.lock().expect("lock") += 1)
                    .probe_with(&probe);
            });
            while !probe.done() {
                worker.step();
            }
        });
        let _ = tx.send(result.map(|guards| guards.join().into_iter().all(|r| r.is_ok())));
    });
    assert_eq!(rx.recv_timeout(Duration::from_secs(60)), Ok(Ok(true)), "the stopped source ends");
    let (read, seen) = (*read.lock().expect("lock"), *seen.lock().expect("lock"));
    assert!(read >= 100, "{read}");
    assert_eq!(seen, read, "every record read before the stop reaches the end of the dataflow");
}
