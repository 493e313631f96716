//! Latency of the default job under an open-loop offered load.
//!
//! Events are read and parsed once into memory, then a [`PacedPartition`] per worker releases
//! them on a wall-clock schedule: event `i` (counted over all workers) is due at
//! `start + i / rate`, whether or not the dataflow keeps up. Its *arrival* is that scheduled
//! moment, so time spent queued behind a slow dataflow counts (no coordinated omission). It is
//! *emitted* when the probe at the end of the dataflow passes its event time: every alert,
//! late record and dead letter it can cause at that time has then been handed to the writer.
//! Each worker checks its probe after every step and records `emitted - arrival` in an
//! HdrHistogram; the workers' histograms are merged.
//!
//! Once a source has released every due event it reports itself idle and looks again after
//! [`LatencyOptions::poll`]; workers with nothing to do sleep until then (or until another worker
//! sends them data or progress), as in live operation. Workers that spin instead
//! ([`LatencyOptions::spin`]) keep every core busy, and on a machine whose cores all run
//! workers the system's own tasks then preempt them for milliseconds at a time.
//!
//! The replay keeps the recorded event times, so event time runs faster than the wall clock
//! (a 6.5-hour day replayed at 1 M events/s takes seconds): the out-of-order bound and the
//! epoch then cost almost no wall time, and the figures are processing latency. With
//! [`LatencyOptions::restamp`], event times are replaced by the arrival times, as for a live
//! feed stamped on receipt: the watermark then trails the clock by the out-of-order bound,
//! rounded to the epoch, and that is added to every event's latency.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::path::Path;
use std::rc::Rc;
use std::sync::{Arc, Barrier, Mutex, OnceLock};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use surveil_operators::{Partition, PartitionRead, SourceOptions};

use crate::config::Config;
use crate::ingest::{InputSpec, ReadProgress, plan_partitions};
use crate::model::Event;
use crate::model::Report;
use crate::output::{OutputFolder, Renderer, ReportWriter};
use crate::pipeline::{FeatureJob, RunError, build_default_job};
use crate::reference::ReferenceData;

/// Parsed events in file order, with the side records (names of hashed symbols, dead letters)
/// the writer needs.
pub struct Recorded {
    /// Valid events.
    pub events: Vec<Event>,
    /// Side records.
    pub side: Vec<Report>,
}

/// Reads up to `limit` events from the inputs with the job's own parsers.
pub fn load(
    inputs: &[InputSpec],
    config: &Config,
    reference: &Arc<ReferenceData>,
    limit: usize,
) -> Result<Recorded, RunError> {
    let progress = Arc::new(ReadProgress::default());
    let mut partitions = plan_partitions(inputs, config, reference, 0, 1, &progress)?;
    let mut recorded = Recorded { events: Vec::new(), side: Vec::new() };
    'read: for partition in partitions.iter_mut() {
        loop {
            let status = partition.read(4096, &mut recorded.events, &mut recorded.side);
            if recorded.events.len() >= limit {
                recorded.events.truncate(limit);
                break 'read;
            }
            if status == PartitionRead::Exhausted {
                break;
            }
        }
    }
    Ok(recorded)
}

/// Events released but not yet emitted, earliest event time first.
#[derive(Default)]
struct Pending {
    /// (event time, scheduled arrival in ns after the start), in event-time order. Events are
    /// released nearly in time order, so keeping them sorted costs a push at the back, and
    /// emitting them a pop at the front: a heap of the in-flight events cost the measuring worker
    /// more than the job did under overload.
    in_flight: VecDeque<(u64, u64)>,
    /// Greatest delay between an event's scheduled arrival and its release by the source.
    max_release_lag_ns: u64,
    /// When the last event was released, ns after the start.
    last_release_ns: u64,
}

impl Pending {
    /// Adds a released event, keeping event-time order.
    fn release(&mut self, time: u64, arrival: u64) {
        if self.in_flight.back().is_none_or(|&(last, _)| last <= time) {
            self.in_flight.push_back((time, arrival));
        } else {
            let at = self.in_flight.partition_point(|&(t, _)| t <= time);
            self.in_flight.insert(at, (time, arrival));
        }
    }

    /// Records every pending event whose time the frontier has passed as emitted now.
    fn emit_before(&mut self, frontier: u64, now_ns: u64, histogram: &mut Histogram<u64>) {
        while let Some(&(time, arrival)) = self.in_flight.front() {
            if time >= frontier {
                break;
            }
            self.in_flight.pop_front();
            histogram.saturating_record(now_ns.saturating_sub(arrival).max(1));
        }
    }
}

/// Releases every `stride`-th recorded event, starting at `next`, on the wall-clock schedule.
pub struct PacedPartition {
    events: Arc<Vec<Event>>,
    side: Vec<Report>,
    next: usize,
    stride: usize,
    end: usize,
    /// Set once every worker has built its dataflow: nothing is due before.
    clock: Arc<OnceLock<Instant>>,
    ns_per_event: f64,
    restamp: Option<u64>,
    pending: Rc<RefCell<Pending>>,
}

impl PacedPartition {
    fn scheduled_ns(&self, index: usize) -> u64 {
        (index as f64 * self.ns_per_event) as u64
    }

    fn time_of(&self, index: usize) -> u64 {
        match self.restamp {
            Some(base) => base + self.scheduled_ns(index),
            None => self.events[index].time,
        }
    }
}

impl Partition for PacedPartition {
    type Record = Event;
    type Side = Report;

    fn receipt_clock(&self) -> Option<u64> {
        // Stamped on arrival: nothing can come before now, nor before the next event not yet
        // handed out (its stamp is its scheduled arrival).
        let base = self.restamp?;
        let Some(start) = self.clock.get() else { return Some(base) };
        let now_ns = Instant::now().saturating_duration_since(*start).as_nanos() as u64;
        let next = if self.next < self.end { self.scheduled_ns(self.next) } else { u64::MAX - base };
        Some(base + now_ns.min(next))
    }

    fn ready_at(&self) -> Option<Instant> {
        let start = self.clock.get()?;
        (self.next < self.end).then(|| *start + Duration::from_nanos(self.scheduled_ns(self.next)))
    }

    fn time(record: &Event) -> u64 {
        record.time
    }

    fn first_time(&mut self) -> Option<u64> {
        (self.next < self.end).then(|| self.time_of(self.next))
    }

    fn read(&mut self, max_records: usize, records: &mut Vec<Event>, side: &mut Vec<Report>) -> PartitionRead {
        side.append(&mut self.side);
        if self.next >= self.end {
            return PartitionRead::Exhausted;
        }
        let Some(start) = self.clock.get() else {
            return PartitionRead::Idle;
        };
        let now_ns = Instant::now().saturating_duration_since(*start).as_nanos() as u64;
        let mut pending = self.pending.borrow_mut();
        let mut released = 0;
        while self.next < self.end && released < max_records {
            let scheduled = self.scheduled_ns(self.next);
            if scheduled > now_ns {
                break;
            }
            let time = self.time_of(self.next);
            let mut event = self.events[self.next];
            event.time = time;
            records.push(event);
            pending.release(time, scheduled);
            pending.max_release_lag_ns = pending.max_release_lag_ns.max(now_ns - scheduled);
            self.next += self.stride;
            released += 1;
            pending.last_release_ns = now_ns;
        }
        if self.next >= self.end {
            PartitionRead::Exhausted
        } else if released == max_records {
            PartitionRead::More
        } else {
            // Nothing more is due: the source asks again after its idle poll, and the worker
            // sleeps in between, as between the messages of a live feed.
            PartitionRead::Idle
        }
    }
}

/// How to run one latency measurement.
#[derive(Clone, Debug)]
pub struct LatencyOptions {
    /// Offered load, events per second over all workers.
    pub rate: f64,
    /// Events to release (at most the recorded ones).
    pub events: usize,
    /// Worker threads.
    pub workers: usize,
    /// Progress granularity in event time, ns (`ingest.epoch`).
    pub epoch_ns: u64,
    /// Replace event times by arrival times, as a feed stamped on receipt; the value is the
    /// event time of the first arrival.
    pub restamp: Option<u64>,
    /// How soon the source looks again for due events once it has released all of them
    /// ([`SourceOptions::idle_poll`]): the most an event waits before it is read.
    pub poll: Duration,
    /// Workers spin instead of sleeping when they have nothing to do.
    pub spin: bool,
}

/// One latency measurement.
#[derive(Clone, Debug, Serialize)]
pub struct LatencyResult {
    /// Offered load, events per second.
    pub offered_per_second: f64,
    /// Events released.
    pub events: u64,
    /// Events released per second of the run, as achieved.
    pub achieved_per_second: f64,
    /// Worker threads.
    pub workers: usize,
    /// Progress granularity, ns.
    pub epoch_ns: u64,
    /// Out-of-order bound, ns.
    pub max_out_of_order_ns: u64,
    /// Event times replaced by arrival times.
    pub restamped: bool,
    /// Alerts written.
    pub alerts: u64,
    /// Latency percentiles, microseconds.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest.
    pub max_us: f64,
    /// Mean.
    pub mean_us: f64,
    /// Latencies recorded (equals `events` when every event was emitted).
    pub recorded: u64,
    /// Idle poll of the source, microseconds.
    pub poll_us: f64,
    /// Workers spun instead of sleeping when idle.
    pub spin: bool,
    /// CPU time of the process during the run over its wall time: cores kept busy.
    pub cpu_cores: f64,
    /// Greatest delay of a release behind its schedule, microseconds: large values mean the
    /// source could not keep the offered pace.
    pub max_release_lag_us: f64,
    /// (percentile, microseconds) for plots.
    pub distribution: Vec<(f64, f64)>,
}

/// Runs the default job over `recorded` at the offered load and measures every event's latency.
/// Output (alerts and the rest) goes to `out_dir`.
pub fn run_latency(
    recorded: &Arc<Vec<Event>>,
    side: &[Report],
    config: &Config,
    reference: &Arc<ReferenceData>,
    options: &LatencyOptions,
    out_dir: &Path,
) -> Result<LatencyResult, RunError> {
    let folder = OutputFolder::prepare(out_dir, &[])?;
    let mut writer = ReportWriter::create(&folder, Renderer::new(reference.clone(), vec!["replay".into()]))
        .map_err(|source| RunError::Output { path: out_dir.into(), source })?;
    let routes: Vec<String> = config.alerts.routes.iter().map(|r| r.name.clone()).collect();
    writer.send_notices(&folder, &routes).map_err(|source| RunError::Output { path: out_dir.into(), source })?;
    let files = writer.files();
    let writer = Arc::new(Mutex::new(Some(writer)));
    let workers = options.workers.max(1);
    let total = options.events.min(recorded.len());
    let ns_per_event = 1e9 / options.rate.max(1.0);
    // The clock starts once every worker has built its dataflow and stepped through it, so
    // that building and first scheduling are not counted as latency.
    let clock: Arc<OnceLock<Instant>> = Arc::new(OnceLock::new());
    let built = Arc::new(Barrier::new(workers));
    let (events, side, job_config, job_reference, job_writer) =
        (recorded.clone(), side.to_vec(), config.clone(), reference.clone(), writer.clone());
    let features = FeatureJob::from_config(config)?;
    let restamp = options.restamp;
    let epoch = options.epoch_ns.max(1);
    let (poll, spin) = (options.poll, options.spin);
    // Stamped on receipt, every worker's watermark follows the clock, together.
    let shared_clock = restamp.map(|_| surveil_operators::SharedClock::default());
    let cpu_before = process_cpu_seconds();
    let wall_before = Instant::now();
    let guards = timely::execute(timely::Config::process(workers), move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let pending = Rc::new(RefCell::new(Pending::default()));
        let partition = PacedPartition {
            events: events.clone(),
            side: if index == 0 { side.clone() } else { Vec::new() },
            next: index,
            stride: peers,
            end: total,
            clock: clock.clone(),
            ns_per_event,
            restamp,
            pending: pending.clone(),
        };
        let (probe, slot) = build_default_job(
            worker,
            vec![partition],
            |options| SourceOptions { epoch, idle_poll: poll, shared_clock: shared_clock.clone(), ..options },
            &job_config,
            &job_reference,
            &job_writer,
            features.clone(),
        );
        for _ in 0..4 {
            worker.step();
        }
        built.wait();
        let start = *clock.get_or_init(|| Instant::now() + Duration::from_millis(1));
        let mut histogram = Histogram::<u64>::new_with_bounds(1, 600_000_000_000, 3).map_err(|e| e.to_string())?;
        while !probe.done() {
            if spin {
                worker.step();
            } else {
                worker.step_or_park(None);
            }
            let frontier = probe.with_frontier(|f| f.first().copied().unwrap_or(u64::MAX));
            let now_ns = Instant::now().saturating_duration_since(start).as_nanos() as u64;
            pending.borrow_mut().emit_before(frontier, now_ns, &mut histogram);
        }
        let now_ns = Instant::now().saturating_duration_since(start).as_nanos() as u64;
        pending.borrow_mut().emit_before(u64::MAX, now_ns, &mut histogram);
        // Until the sink has seen everything.
        slot.drive(worker);
        let alerts = match slot.writer.borrow_mut().as_mut() {
            Some(w) => w.finish().map_err(|e| e.to_string())?.alerts_by_rule.values().sum(),
            None => 0,
        };
        let (lag, last_release) = (pending.borrow().max_release_lag_ns, pending.borrow().last_release_ns);
        Ok::<_, String>((histogram, alerts, lag, last_release))
    })
    .map_err(RunError::Dataflow)?;
    let joined: Vec<_> = guards.join();
    let cpu_cores = match (cpu_before, process_cpu_seconds()) {
        (Some(before), Some(after)) => (after - before) / wall_before.elapsed().as_secs_f64().max(1e-9),
        _ => f64::NAN,
    };
    let mut merged =
        Histogram::<u64>::new_with_bounds(1, 600_000_000_000, 3).map_err(|e| RunError::Dataflow(e.to_string()))?;
    let (mut alerts, mut lag, mut last_release_ns) = (0, 0, 0u64);
    for result in joined {
        let (histogram, worker_alerts, worker_lag, worker_last_release) =
            result.map_err(RunError::Dataflow)?.map_err(RunError::Dataflow)?;
        merged.add(&histogram).map_err(|e| RunError::Dataflow(e.to_string()))?;
        alerts += worker_alerts;
        lag = lag.max(worker_lag);
        last_release_ns = last_release_ns.max(worker_last_release);
    }
    let summary = serde_json::json!({ "complete": true, "replayed_events": total, "alerts": alerts });
    folder
        .commit(&files, format!("{summary:#}\n").as_bytes())
        .map_err(|source| RunError::Output { path: out_dir.into(), source })?;
    let us = |ns: u64| ns as f64 / 1e3;
    let distribution = [0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.999, 100.0]
        .iter()
        .map(|q| (*q, us(merged.value_at_percentile(*q))))
        .collect();
    Ok(LatencyResult {
        offered_per_second: options.rate,
        events: total as u64,
        achieved_per_second: total as f64 / (last_release_ns as f64 / 1e9).max(1e-9),
        workers,
        epoch_ns: epoch,
        max_out_of_order_ns: config.ingest.max_out_of_order.as_nanos() as u64,
        restamped: restamp.is_some(),
        alerts,
        p50_us: us(merged.value_at_quantile(0.5)),
        p90_us: us(merged.value_at_quantile(0.9)),
        p99_us: us(merged.value_at_quantile(0.99)),
        p999_us: us(merged.value_at_quantile(0.999)),
        max_us: us(merged.max()),
        mean_us: merged.mean() / 1e3,
        recorded: merged.len(),
        poll_us: poll.as_secs_f64() * 1e6,
        spin,
        cpu_cores,
        max_release_lag_us: us(lag),
        distribution,
    })
}

/// User plus system CPU time of this process so far, from `/proc/self/stat` (Linux only).
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces; the fields after it are space separated.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // USER_HZ is 100 on every Linux architecture this runs on.
    Some(ticks / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_events_are_emitted_in_event_time_order_whatever_the_release_order() {
        let mut pending = Pending::default();
        for (time, arrival) in [(10, 0), (30, 1), (20, 2), (5, 3), (30, 4), (40, 5)] {
            pending.release(time, arrival);
        }
        let times: Vec<u64> = pending.in_flight.iter().map(|&(time, _)| time).collect();
        assert_eq!(times, [5, 10, 20, 30, 30, 40]);
        let mut histogram = Histogram::<u64>::new_with_bounds(1, 1_000_000, 3).expect("histogram");
        // The frontier at 30 completes the events before 30: arrivals 3, 0 and 2.
        pending.emit_before(30, 100, &mut histogram);
        assert_eq!(histogram.len(), 3);
        assert_eq!((histogram.min(), histogram.max()), (97, 100));
        assert_eq!(pending.in_flight.len(), 3);
        pending.emit_before(u64::MAX, 200, &mut histogram);
        assert_eq!(histogram.len(), 6);
        assert!(pending.in_flight.is_empty());
    }
}
