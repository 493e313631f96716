//! Idle-aware watermarks of `partitioned_source`: a live partition that goes quiet stops
//! holding the watermark back after `SourceOptions::idle_timeout`, and when it produces data
//! again, its records behind the watermark go to the late output.
//!
//! The partitions are scripted: they return `Idle` until the test opens a gate, then their
//! records. Real time passes (timeouts of a few milliseconds), but the only timing-related
//! assertions are "the watermark eventually reaches x", checked in loops with a generous
//! iteration cap; every other assertion follows from the data and the gates alone.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use surveil_operators::{Partition, PartitionRead, SourceOptions, partitioned_source};
use timely::dataflow::ProbeHandle;
use timely::dataflow::operators::{Inspect, Probe};

/// A switch the test flips between worker steps.
#[derive(Clone, Default)]
struct Gate(Rc<RefCell<bool>>);

impl Gate {
    fn open(&self) {
        *self.0.borrow_mut() = true;
    }
    fn is_open(&self) -> bool {
        *self.0.borrow()
    }
}

/// One step of a scripted partition.
enum Step {
    /// Return `Idle` (and nothing else) until the gate opens.
    IdleUntil(Gate),
    /// Return these event times with this status.
    Records(Vec<u64>, PartitionRead),
}

/// A live partition following a script; `Exhausted` once the script is done.
struct Scripted {
    first: Option<u64>,
    script: VecDeque<Step>,
    /// Reads that returned `Idle` without records.
    idle_polls: Rc<RefCell<usize>>,
    /// Whether the last `Records` step has been read.
    delivered: Rc<RefCell<usize>>,
}

impl Scripted {
    fn new(first: Option<u64>, script: Vec<Step>) -> Scripted {
        Scripted { first, script: script.into(), idle_polls: Default::default(), delivered: Default::default() }
    }
}

impl Partition for Scripted {
    type Record = u64;
    type Side = ();
    fn time(record: &u64) -> u64 {
        *record
    }
    fn first_time(&mut self) -> Option<u64> {
        self.first
    }
    fn read(&mut self, _max: usize, out: &mut Vec<u64>, _side: &mut Vec<()>) -> PartitionRead {
        loop {
            match self.script.front() {
                None => return PartitionRead::Exhausted,
                Some(Step::IdleUntil(gate)) if !gate.is_open() => {
                    *self.idle_polls.borrow_mut() += 1;
                    return PartitionRead::Idle;
                }
                Some(Step::IdleUntil(_)) => {
                    self.script.pop_front();
                }
                Some(Step::Records(..)) => {
                    let Some(Step::Records(times, status)) = self.script.pop_front() else { unreachable!() };
                    out.extend(times);
                    *self.delivered.borrow_mut() += 1;
                    return if self.script.is_empty() && status == PartitionRead::More {
                        PartitionRead::Exhausted
                    } else {
                        status
                    };
                }
            }
        }
    }
}

/// Generous: with 1 ms parks this is well over ten seconds of trying.
const MAX_STEPS: usize = 20_000;

/// Drives one worker over a source of `partitions`, with the test's `script` interleaved.
struct Harness<'w> {
    worker: &'w mut timely::worker::Worker,
    probe: ProbeHandle<u64>,
    on_time: Rc<RefCell<Vec<u64>>>,
    late: Rc<RefCell<Vec<u64>>>,
}

impl<'w> Harness<'w> {
    fn new(
        worker: &'w mut timely::worker::Worker,
        partitions: Vec<Scripted>,
        idle_timeout: Option<Duration>,
    ) -> Harness<'w> {
        let probe = ProbeHandle::new();
        let (on_time, late) = (Rc::new(RefCell::new(Vec::new())), Rc::new(RefCell::new(Vec::new())));
        let options = SourceOptions { max_out_of_order: 0, epoch: 1, idle_timeout, ..Default::default() };
        let (on_time_in, late_in) = (on_time.clone(), late.clone());
        worker.dataflow::<u64, _, _>(|scope| {
            let out = partitioned_source(scope, "Scripted", partitions, options);
            out.late.inspect(move |t| late_in.borrow_mut().push(*t)).probe_with(&probe);
            out.records.inspect(move |t| on_time_in.borrow_mut().push(*t)).probe_with(&probe);
        });
        Harness { worker, probe, on_time, late }
    }

    /// The watermark the dataflow has reached (`None` once done).
    fn watermark(&self) -> Option<u64> {
        self.probe.with_frontier(|f| f.first().copied())
    }

    /// Steps until `done()` holds; false if it never did within the cap.
    fn step_until(&mut self, mut done: impl FnMut(&Self) -> bool) -> bool {
        for _ in 0..MAX_STEPS {
            if done(self) {
                return true;
            }
            self.worker.step_or_park(Some(Duration::from_millis(1)));
        }
        done(self)
    }

    fn finish(mut self) -> (Vec<u64>, Vec<u64>) {
        assert!(self.step_until(|h| h.probe.done()), "the source finishes");
        let mut on_time = self.on_time.borrow().clone();
        let mut late = self.late.borrow().clone();
        on_time.sort();
        late.sort();
        (on_time, late)
    }
}

fn tens(range: std::ops::RangeInclusive<u64>) -> Vec<u64> {
    range.map(|i| i * 10).collect()
}

#[test]
fn an_idle_partition_stops_holding_the_watermark_back() {
    timely::execute_directly(|worker| {
        let (release, done) = (Gate::default(), Gate::default());
        // `active` has data up to 100, then stays quiet until the end.
        let active = Scripted::new(
            Some(0),
            vec![Step::Records(tens(0..=10), PartitionRead::Idle), Step::IdleUntil(done.clone())],
        );
        // `quiet` says it starts at 0 but says nothing until released.
        let quiet = Scripted::new(
            Some(0),
            vec![Step::IdleUntil(release.clone()), Step::Records(vec![50, 150], PartitionRead::Exhausted)],
        );
        let mut harness = Harness::new(worker, vec![active, quiet], Some(Duration::from_millis(5)));
        assert!(
            harness.step_until(|h| h.watermark().is_some_and(|w| w >= 100)),
            "the watermark moves past the quiet partition"
        );
        // No partition vouches for anything beyond 100.
        assert_eq!(harness.watermark(), Some(100));
        release.open();
        done.open();
        let (on_time, late) = harness.finish();
        let mut expected = tens(0..=10);
        expected.push(150);
        assert_eq!(on_time, expected);
        assert_eq!(late, vec![50], "the resumed partition's record behind the watermark is late");
    });
}

#[test]
fn without_a_timeout_an_idle_partition_holds_the_watermark() {
    timely::execute_directly(|worker| {
        let (release, done) = (Gate::default(), Gate::default());
        let active = Scripted::new(
            Some(0),
            vec![Step::Records(tens(0..=10), PartitionRead::Idle), Step::IdleUntil(done.clone())],
        );
        let quiet_polls;
        let quiet = {
            let quiet = Scripted::new(
                Some(0),
                vec![Step::IdleUntil(release.clone()), Step::Records(vec![50, 150], PartitionRead::Exhausted)],
            );
            quiet_polls = quiet.idle_polls.clone();
            quiet
        };
        let mut harness = Harness::new(worker, vec![active, quiet], None);
        // Let the quiet partition be polled a good many times: it still holds the watermark.
        assert!(harness.step_until(|_| *quiet_polls.borrow() >= 20));
        assert_eq!(harness.watermark(), Some(0));
        release.open();
        done.open();
        let (on_time, late) = harness.finish();
        let mut expected = tens(0..=10);
        expected.extend([50, 150]);
        expected.sort();
        assert_eq!(on_time, expected);
        assert!(late.is_empty());
    });
}

#[test]
fn a_partition_that_resumes_is_on_time_from_the_watermark_on() {
    timely::execute_directly(|worker| {
        let (release, more, done) = (Gate::default(), Gate::default(), Gate::default());
        let active = Scripted::new(
            Some(0),
            vec![
                Step::Records(tens(0..=10), PartitionRead::Idle),
                Step::IdleUntil(more.clone()),
                Step::Records(vec![300], PartitionRead::Idle),
                Step::IdleUntil(done.clone()),
            ],
        );
        let quiet = Scripted::new(
            Some(0),
            vec![
                Step::IdleUntil(release.clone()),
                // Records and `Idle` in one read: active now, nothing more for the moment.
                Step::Records(vec![50, 100, 120], PartitionRead::Idle),
                Step::IdleUntil(done.clone()),
            ],
        );
        let delivered = quiet.delivered.clone();
        let mut harness = Harness::new(worker, vec![active, quiet], Some(Duration::from_millis(5)));
        assert!(harness.step_until(|h| h.watermark().is_some_and(|w| w >= 100)));
        assert_eq!(harness.watermark(), Some(100));
        release.open();
        assert!(harness.step_until(|_| *delivered.borrow() == 1), "the quiet partition is polled again");
        more.open();
        // Both partitions go quiet again: the watermark eventually follows the most advanced.
        assert!(harness.step_until(|h| h.watermark().is_some_and(|w| w >= 300)), "the watermark progresses");
        done.open();
        let (on_time, late) = harness.finish();
        let mut expected = tens(0..=10);
        expected.extend([100, 120, 300]);
        expected.sort();
        assert_eq!(on_time, expected);
        assert_eq!(late, vec![50]);
    });
}

#[test]
fn a_partition_with_no_data_yet_times_out_too() {
    timely::execute_directly(|worker| {
        let (release, done) = (Gate::default(), Gate::default());
        let active = Scripted::new(
            Some(1_000),
            vec![Step::Records(vec![1_000, 1_010], PartitionRead::Idle), Step::IdleUntil(done.clone())],
        );
        // Not started, and unable to say when it will: it holds the watermark at 0.
        let silent = Scripted::new(
            Some(0),
            vec![Step::IdleUntil(release.clone()), Step::Records(vec![999, 2_000], PartitionRead::Exhausted)],
        );
        let mut harness = Harness::new(worker, vec![silent, active], Some(Duration::from_millis(3)));
        assert!(harness.step_until(|h| h.watermark().is_some_and(|w| w >= 1_010)), "the watermark progresses");
        release.open();
        done.open();
        let (on_time, late) = harness.finish();
        assert_eq!(on_time, vec![1_000, 1_010, 2_000]);
        assert_eq!(late, vec![999]);
    });
}

#[test]
fn idle_partitions_that_resume_together_are_judged_separately() {
    // No timeout: the watermark stays at 0 until both partitions have produced data, and both
    // are idle when the gate opens, so they are polled in the same round.
    timely::execute_directly(|worker| {
        let release = Gate::default();
        let ahead = Scripted::new(
            Some(0),
            vec![Step::IdleUntil(release.clone()), Step::Records(vec![1_000], PartitionRead::Exhausted)],
        );
        let behind = Scripted::new(
            Some(0),
            vec![Step::IdleUntil(release.clone()), Step::Records(vec![100], PartitionRead::Exhausted)],
        );
        let polls = (ahead.idle_polls.clone(), behind.idle_polls.clone());
        let mut harness = Harness::new(worker, vec![ahead, behind], None);
        assert!(harness.step_until(|_| *polls.0.borrow() >= 2 && *polls.1.borrow() >= 2));
        release.open();
        let (on_time, late) = harness.finish();
        // 100 is behind the other partition's latest time, but on time for its own partition.
        assert_eq!(on_time, vec![100, 1_000]);
        assert!(late.is_empty());
    });
}
