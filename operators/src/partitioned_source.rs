//! A source over partitions (file blocks, topic partitions) with a data-driven watermark.
//!
//! Each worker reads its own partitions. The watermark it promises is the least, over its
//! unfinished partitions, of `latest time seen - max_out_of_order` (or `first time -
//! max_out_of_order` for a partition not started yet), rounded down to the epoch. A record more
//! than `max_out_of_order` behind the latest time of *its own partition* is late: it goes to the
//! late output instead of being dropped. Because lateness is judged per partition and the
//! partitions do not depend on the number of workers, the same input yields the same late
//! records on one worker or many.
//!
//! The worker always reads from the partition that holds its watermark back the most, so
//! partitions that overlap in time are interleaved rather than read one after the other, and
//! downstream operators buffer little.
//!
//! # Idle partitions
//!
//! A live partition with nothing to read ([`PartitionRead::Idle`]) would hold the watermark at
//! its latest time for as long as it stays quiet. With [`SourceOptions::idle_timeout`], a
//! partition that has produced nothing for that long stops holding the watermark back: the
//! watermark follows the other partitions. (The idle clock starts at the first read that
//! returns `Idle` without producing anything, and restarts whenever a read produces records.)
//! If every unfinished partition of a worker is idle, the worker's watermark advances to the
//! most advanced of their watermarks, so that it does not depend on the order in which they
//! went quiet. When an idle partition produces records again it holds the watermark back
//! again, from where the watermark then is: its records behind the watermark go to the late
//! output. Without a timeout, an idle partition holds the watermark back until it produces data
//! or is exhausted.
//!
//! Idleness is judged per worker: a worker whose partitions are all idle still holds the
//! dataflow's watermark at the most advanced of its own partitions.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::{ProbeHandle, Scope, Stream};

/// What one call to [`Partition::read`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartitionRead {
    /// More records may be available right away.
    More,
    /// Nothing available now (a live partition with no new data); ask again later.
    Idle,
    /// The partition is finished.
    Exhausted,
}

/// One independently readable slice of the input.
pub trait Partition {
    /// The records this partition produces.
    type Record;
    /// Records that travel beside the data: dead letters, dictionary entries, diagnostics.
    type Side;

    /// The event time of a record.
    fn time(record: &Self::Record) -> u64;

    /// The time of the first record this partition will produce, or `None` if it will produce
    /// none. Until the partition starts, its watermark is this time minus the out-of-order
    /// bound. A live partition that cannot know returns the earliest time it may produce.
    fn first_time(&mut self) -> Option<u64>;

    /// Appends up to about `max_records` records (and any side records) in partition order.
    fn read(
        &mut self,
        max_records: usize,
        records: &mut Vec<Self::Record>,
        side: &mut Vec<Self::Side>,
    ) -> PartitionRead;

    /// Everything before `watermark` has been fully processed by the dataflow: a live
    /// partition can commit its position up to here.
    fn processed(&mut self, watermark: u64) {
        let _ = watermark;
    }

    /// Bytes consumed so far, for progress reporting.
    fn bytes_read(&self) -> u64 {
        0
    }
}

/// How the source batches, bounds and paces its reading.
#[derive(Clone, Debug)]
pub struct SourceOptions {
    /// Records may arrive up to this much behind the latest time of their partition (ns).
    pub max_out_of_order: u64,
    /// Granularity of the timely times the source sends at (ns). Coarser epochs mean fewer
    /// progress updates; records keep their exact event times.
    pub epoch: u64,
    /// Records requested from a partition per read.
    pub batch_records: usize,
    /// Reads per activation before yielding to the rest of the dataflow.
    pub reads_per_activation: usize,
    /// A partition that has been idle (reads returned [`PartitionRead::Idle`] and nothing else)
    /// this long stops holding the watermark back; see the [module documentation](self).
    pub idle_timeout: Option<Duration>,
    /// How soon to read again when every unfinished partition is idle. A live feed's records
    /// wait up to this long in the partition, so a latency-bound job polls more often; a
    /// shorter poll costs a wake-up each time and nothing else.
    pub idle_poll: Duration,
    /// Probe at the end of the dataflow: used to report processed watermarks to partitions and
    /// to pace reading.
    pub probe: Option<ProbeHandle<u64>>,
    /// With a probe, do not read while more than this many records sent by this worker are
    /// not yet complete (their time is not behind the probe's frontier): bounded buffering
    /// instead of unbounded queues, whatever the density of the data in event time.
    ///
    /// The bound only makes the source wait for records the dataflow *can* finish: records
    /// sent at the source's current time cannot complete until the source moves on, so a
    /// watermark step that holds more records than the bound is read whole (the bound is then
    /// exceeded by that step) rather than waited on forever.
    pub max_in_flight: Option<usize>,
    /// When set, the source stops reading: every partition is treated as finished, so what was
    /// already sent drains through the dataflow and it completes (a graceful interruption).
    pub stop: Option<Arc<AtomicBool>>,
    /// When set, kept equal to the sum over the workers sharing it of their records in
    /// flight (sent, not yet behind the probe's frontier): a gauge for live metrics.
    pub in_flight_gauge: Option<Arc<std::sync::atomic::AtomicI64>>,
}

impl Default for SourceOptions {
    fn default() -> Self {
        SourceOptions {
            max_out_of_order: 0,
            epoch: 1_000_000,
            batch_records: 1024,
            reads_per_activation: 64,
            idle_timeout: None,
            idle_poll: Duration::from_millis(1),
            probe: None,
            max_in_flight: None,
            stop: None,
            in_flight_gauge: None,
        }
    }
}

/// The streams a [`partitioned_source`] produces.
pub struct SourceOutputs<'scope, R, S> {
    /// On-time records, each sent at a timely time at or before its event time.
    pub records: Stream<'scope, u64, Vec<R>>,
    /// Records that arrived more than the out-of-order bound behind their partition.
    pub late: Stream<'scope, u64, Vec<R>>,
    /// Side records from the partitions.
    pub side: Stream<'scope, u64, Vec<S>>,
}

struct PartitionState<P> {
    partition: P,
    /// Latest event time read so far; `None` before the first record.
    latest: Option<u64>,
    first: Option<u64>,
    finished: bool,
    idle_since: Option<Instant>,
}

impl<P: Partition> PartitionState<P> {
    /// The least time this partition may still send on time, or `None` if it no longer holds
    /// the watermark back.
    fn low_watermark(&self, bound: u64, idle_timeout: Option<Duration>, now: Instant) -> Option<u64> {
        if self.finished {
            return None;
        }
        if let (Some(since), Some(timeout)) = (self.idle_since, idle_timeout)
            && now.duration_since(since) >= timeout
        {
            return None;
        }
        match (self.latest, self.first) {
            (Some(latest), _) => Some(latest.saturating_sub(bound)),
            (None, Some(first)) => Some(first.saturating_sub(bound)),
            (None, None) => None,
        }
    }

    /// Records the outcome of a read at `now`; `produced` says whether it returned anything.
    fn note_read(&mut self, status: PartitionRead, produced: bool, now: Instant) {
        match status {
            PartitionRead::More => self.idle_since = None,
            // Active just now, with nothing more for the moment: the idle clock starts afresh.
            PartitionRead::Idle if produced => self.idle_since = Some(now),
            PartitionRead::Idle => {
                self.idle_since.get_or_insert(now);
            }
            PartitionRead::Exhausted => self.finished = true,
        }
    }
}

/// The watermark a worker can promise: the least over the partitions that hold it back, or, if
/// every unfinished partition has been idle past the timeout, the greatest of theirs.
fn source_watermark<P: Partition>(
    states: &[PartitionState<P>],
    bound: u64,
    idle_timeout: Option<Duration>,
    now: Instant,
) -> Option<u64> {
    states.iter().filter_map(|s| s.low_watermark(bound, idle_timeout, now)).min().or_else(|| {
        idle_timeout?;
        states.iter().filter_map(|s| s.low_watermark(bound, None, now)).max()
    })
}

/// Builds a source that reads `partitions` (this worker's share) into a stream.
///
/// # Examples
/// ```
/// use timely::dataflow::operators::capture::{Capture, Extract};
/// use surveil_operators::{Partition, PartitionRead, SourceOptions, partitioned_source};
///
/// /// A partition over an in-memory list of event times.
/// struct Times(Vec<u64>, usize);
/// impl Partition for Times {
///     type Record = u64;
///     type Side = ();
///     fn time(record: &u64) -> u64 { *record }
///     fn first_time(&mut self) -> Option<u64> { self.0.first().copied() }
///     fn read(&mut self, max: usize, out: &mut Vec<u64>, _: &mut Vec<()>) -> PartitionRead {
///         let end = (self.1 + max).min(self.0.len());
///         out.extend_from_slice(&self.0[self.1..end]);
///         self.1 = end;
///         if end == self.0.len() { PartitionRead::Exhausted } else { PartitionRead::More }
///     }
/// }
///
/// let (on_time, late) = timely::example(|scope| {
///     let options = SourceOptions { max_out_of_order: 5, epoch: 1, ..Default::default() };
///     // 3 is 7 behind 10: later than the bound of 5
///     let partitions = vec![Times(vec![1, 10, 8, 3, 12], 0)];
///     let out = partitioned_source(scope, "Times", partitions, options);
///     (out.records.capture(), out.late.capture())
/// });
/// let mut on_time: Vec<u64> = on_time.extract().into_iter().flat_map(|(_, v)| v).collect();
/// on_time.sort();
/// let late: Vec<u64> = late.extract().into_iter().flat_map(|(_, v)| v).collect();
/// assert_eq!(on_time, vec![1, 8, 10, 12]);
/// assert_eq!(late, vec![3]);
/// ```
pub fn partitioned_source<'scope, P>(
    scope: Scope<'scope, u64>,
    name: &str,
    partitions: Vec<P>,
    options: SourceOptions,
) -> SourceOutputs<'scope, P::Record, P::Side>
where
    P: Partition + 'static,
    P::Record: Clone + 'static,
    P::Side: Clone + 'static,
{
    let mut builder = OperatorBuilder::new(name.to_owned(), scope);
    let info = builder.operator_info();
    let activator = scope.activator_for(info.address.clone());
    let (records_out, records) = builder.new_output::<Vec<P::Record>>();
    let (late_out, late) = builder.new_output::<Vec<P::Record>>();
    let (side_out, side) = builder.new_output::<Vec<P::Side>>();
    let mut records_out = OutputBuilder::<_, CapacityContainerBuilder<Vec<P::Record>>>::from(records_out);
    let mut late_out = OutputBuilder::<_, CapacityContainerBuilder<Vec<P::Record>>>::from(late_out);
    let mut side_out = OutputBuilder::<_, CapacityContainerBuilder<Vec<P::Side>>>::from(side_out);

    builder.build(move |mut capabilities| {
        let side_cap = capabilities.pop();
        let late_cap = capabilities.pop();
        let records_cap = capabilities.pop();
        let mut caps: Option<[Capability<u64>; 3]> = match (records_cap, late_cap, side_cap) {
            (Some(r), Some(l), Some(s)) => Some([r, l, s]),
            _ => None,
        };
        let mut states: Vec<PartitionState<P>> = partitions
            .into_iter()
            .map(|mut partition| {
                let first = partition.first_time();
                PartitionState { partition, latest: None, first, finished: false, idle_since: None }
            })
            .collect();
        let bound = options.max_out_of_order;
        let epoch = options.epoch.max(1);
        let mut batch: Vec<P::Record> = Vec::with_capacity(options.batch_records);
        // (time sent at, records) not yet known to be complete, oldest first.
        let mut in_flight: std::collections::VecDeque<(u64, usize)> = std::collections::VecDeque::new();
        let mut in_flight_total = 0usize;
        let mut late_batch: Vec<P::Record> = Vec::new();
        let mut side_batch: Vec<P::Side> = Vec::new();
        let mut reported_watermark = 0u64;
        let mut gauged = 0i64;

        move |_frontiers| {
            let now = Instant::now();
            // Report fully processed watermarks to the partitions.
            if let Some(probe) = &options.probe {
                let done = probe.with_frontier(|f| f.first().copied().unwrap_or(u64::MAX));
                while in_flight.front().is_some_and(|(t, _)| *t < done) {
                    if let Some((_, n)) = in_flight.pop_front() {
                        in_flight_total -= n;
                    }
                }
                if done > reported_watermark {
                    reported_watermark = done;
                    for state in states.iter_mut() {
                        state.partition.processed(done);
                    }
                }
            }
            // Promise the watermark before reading: a source that waits for the dataflow to
            // catch up must first let it advance to where the partitions start.
            let promise = |states: &[PartitionState<P>], caps: &mut [Capability<u64>; 3]| {
                if let Some(w) = source_watermark(states, bound, options.idle_timeout, now) {
                    let w = w / epoch * epoch;
                    if w > *caps[0].time() {
                        for cap in caps.iter_mut() {
                            cap.downgrade(&w);
                        }
                    }
                }
            };
            let Some(all_caps) = caps.as_mut() else {
                return;
            };
            if options.stop.as_ref().is_some_and(|stop| stop.load(Ordering::Relaxed)) {
                // Interrupted: read nothing more; what was sent drains and the dataflow ends.
                for state in states.iter_mut() {
                    state.finished = true;
                }
                caps = None;
                if let Some(gauge) = &options.in_flight_gauge {
                    gauge.fetch_add(-gauged, std::sync::atomic::Ordering::Relaxed);
                    gauged = 0;
                }
                return;
            }
            promise(&states, all_caps);
            let [records_cap, late_cap, side_cap] = all_caps;

            let mut records_session = records_out.activate();
            let mut late_session = late_out.activate();
            let mut side_session = side_out.activate();
            let mut reads = 0;
            let mut polled_idle = false;
            while reads < options.reads_per_activation.max(1) {
                // Poll idle partitions once per activation; otherwise read from the partition
                // that holds the watermark back the most.
                let idle = if polled_idle {
                    None
                } else {
                    polled_idle = true;
                    Some(
                        states
                            .iter()
                            .enumerate()
                            .filter(|(_, s)| s.idle_since.is_some() && !s.finished)
                            .map(|(i, _)| i)
                            .collect::<Vec<_>>(),
                    )
                };
                let chosen: Vec<usize> = match idle {
                    Some(idle) if !idle.is_empty() => idle,
                    _ => {
                        // A partition that holds no watermark (nothing on time seen or
                        // expected yet, such as a block of bad lines) still has to be read to
                        // finish: it sorts first (`None` < `Some`).
                        let next = states
                            .iter()
                            .enumerate()
                            .filter(|(_, s)| s.idle_since.is_none() && !s.finished)
                            .map(|(i, s)| (s.low_watermark(bound, None, now), i))
                            .min();
                        let Some((_, index)) = next else { break };
                        // Far ahead of what the dataflow has finished: let it catch up, but only
                        // while some of it can finish (sent before the current time).
                        let can_finish = in_flight.front().is_some_and(|(t, _)| *t < *records_cap.time());
                        if options.probe.is_some()
                            && can_finish
                            && options.max_in_flight.is_some_and(|max| in_flight_total >= max)
                        {
                            break;
                        }
                        vec![index]
                    }
                };
                for index in chosen {
                    reads += 1;
                    let state = &mut states[index];
                    // `batch` may already hold the records of other idle partitions polled in
                    // this round: judge only this partition's records against its own latest.
                    let (start, side_before) = (batch.len(), side_batch.len());
                    let status = state.partition.read(options.batch_records, &mut batch, &mut side_batch);
                    let produced = batch.len() > start || side_batch.len() > side_before;
                    let promised = *records_cap.time();
                    // Move late records out; on-time records stay in place (no copy).
                    let mut latest = state.latest;
                    let mut kept = start;
                    for i in start..batch.len() {
                        let time = P::time(&batch[i]);
                        let behind_partition = latest.is_some_and(|l| time < l.saturating_sub(bound));
                        // A partition that resumes after idling may be behind the watermark.
                        if behind_partition || time < promised {
                            late_batch.push(batch[i].clone());
                        } else {
                            latest = Some(latest.map_or(time, |l| l.max(time)));
                            if kept != i {
                                batch.swap(kept, i);
                            }
                            kept += 1;
                        }
                    }
                    batch.truncate(kept);
                    state.latest = latest;
                    state.note_read(status, produced, now);
                }
                if !batch.is_empty() {
                    let sent_at = *records_cap.time();
                    in_flight_total += batch.len();
                    match in_flight.back_mut() {
                        Some((t, n)) if *t == sent_at => *n += batch.len(),
                        _ => in_flight.push_back((sent_at, batch.len())),
                    }
                    records_session.session(&*records_cap).give_container(&mut batch);
                    batch.clear();
                }
                if !late_batch.is_empty() {
                    late_session.session(&*late_cap).give_container(&mut late_batch);
                    late_batch.clear();
                }
                if !side_batch.is_empty() {
                    side_session.session(&*side_cap).give_container(&mut side_batch);
                    side_batch.clear();
                }
                // Promise the new watermark, so that downstream can make progress.
                if let Some(w) = source_watermark(&states, bound, options.idle_timeout, now) {
                    let w = w / epoch * epoch;
                    if w > *records_cap.time() {
                        records_cap.downgrade(&w);
                        late_cap.downgrade(&w);
                        side_cap.downgrade(&w);
                    }
                }
            }
            drop((records_session, late_session, side_session));
            if let Some(gauge) = &options.in_flight_gauge {
                // A finished source's records are the dataflow's, not in flight from it.
                let now = if states.iter().all(|s| s.finished) { 0 } else { in_flight_total as i64 };
                gauge.fetch_add(now - gauged, std::sync::atomic::Ordering::Relaxed);
                gauged = now;
            }
            if states.iter().all(|s| s.finished) {
                caps = None;
            } else if states.iter().all(|s| s.finished || s.idle_since.is_some()) {
                activator.activate_after(options.idle_poll);
            } else {
                activator.activate();
            }
        }
    });

    SourceOutputs { records, late, side }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A partition that is never read: only its bookkeeping is under test.
    struct Unread;
    impl Partition for Unread {
        type Record = u64;
        type Side = ();
        fn time(record: &u64) -> u64 {
            *record
        }
        fn first_time(&mut self) -> Option<u64> {
            None
        }
        fn read(&mut self, _: usize, _: &mut Vec<u64>, _: &mut Vec<()>) -> PartitionRead {
            PartitionRead::Exhausted
        }
    }

    fn state(latest: Option<u64>, first: Option<u64>) -> PartitionState<Unread> {
        PartitionState { partition: Unread, latest, first, finished: false, idle_since: None }
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_idle_clock_starts_at_the_first_empty_read_and_restarts_with_data() {
        let t0 = Instant::now();
        let timeout = Some(10 * MS);
        let mut s = state(Some(100), None);
        s.note_read(PartitionRead::Idle, false, t0);
        s.note_read(PartitionRead::Idle, false, t0 + 5 * MS);
        assert_eq!(s.idle_since, Some(t0), "repeated empty reads keep the original start");
        assert_eq!(s.low_watermark(0, timeout, t0 + 9 * MS), Some(100));
        assert_eq!(s.low_watermark(0, timeout, t0 + 10 * MS), None);
        // Data again, with nothing more for now: it holds the watermark back again.
        s.note_read(PartitionRead::Idle, true, t0 + 20 * MS);
        assert_eq!(s.low_watermark(0, timeout, t0 + 21 * MS), Some(100));
        assert_eq!(s.low_watermark(0, timeout, t0 + 30 * MS), None);
        s.note_read(PartitionRead::More, true, t0 + 31 * MS);
        assert_eq!(s.idle_since, None);
        assert_eq!(s.low_watermark(0, timeout, t0 + 100 * MS), Some(100));
        s.note_read(PartitionRead::Exhausted, false, t0 + 101 * MS);
        assert_eq!(s.low_watermark(0, timeout, t0 + 101 * MS), None);
    }

    #[test]
    fn idle_partitions_leave_the_watermark_to_the_others() {
        let t0 = Instant::now();
        let timeout = Some(10 * MS);
        let mut states = vec![state(Some(100), None), state(Some(50), None), state(None, Some(70))];
        assert_eq!(source_watermark(&states, 5, timeout, t0), Some(45));
        states[1].note_read(PartitionRead::Idle, false, t0);
        assert_eq!(source_watermark(&states, 5, timeout, t0 + 9 * MS), Some(45));
        assert_eq!(source_watermark(&states, 5, timeout, t0 + 10 * MS), Some(65));
        // Without a timeout, idleness changes nothing.
        assert_eq!(source_watermark(&states, 5, None, t0 + 1000 * MS), Some(45));
    }

    #[test]
    fn when_every_partition_is_idle_the_most_advanced_one_sets_the_watermark() {
        let t0 = Instant::now();
        let timeout = Some(10 * MS);
        let mut states = vec![state(Some(100), None), state(Some(50), None), state(None, None)];
        states[0].note_read(PartitionRead::Idle, false, t0);
        states[1].note_read(PartitionRead::Idle, false, t0);
        assert_eq!(source_watermark(&states, 0, timeout, t0 + 10 * MS), Some(100));
        states[0].finished = true;
        assert_eq!(source_watermark(&states, 0, timeout, t0 + 10 * MS), Some(50));
        states[1].finished = true;
        assert_eq!(source_watermark(&states, 0, timeout, t0 + 10 * MS), None);
    }
}
