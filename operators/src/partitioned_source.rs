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
    /// A partition that has been idle this long stops holding the watermark back.
    pub idle_timeout: Option<Duration>,
    /// Probe at the end of the dataflow: used to report processed watermarks to partitions and
    /// to pace reading.
    pub probe: Option<ProbeHandle<u64>>,
    /// With a probe, do not read while more than this many records sent by this worker are
    /// not yet complete (their time is not behind the probe's frontier): bounded buffering
    /// instead of unbounded queues, whatever the density of the data in event time.
    pub max_in_flight: Option<usize>,
}

impl Default for SourceOptions {
    fn default() -> Self {
        SourceOptions {
            max_out_of_order: 0,
            epoch: 1_000_000,
            batch_records: 1024,
            reads_per_activation: 64,
            idle_timeout: None,
            probe: None,
            max_in_flight: None,
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
                let watermark = states.iter().filter_map(|s| s.low_watermark(bound, options.idle_timeout, now)).min();
                if let Some(w) = watermark {
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
                        let next = states
                            .iter()
                            .enumerate()
                            .filter(|(_, s)| s.idle_since.is_none())
                            .filter_map(|(i, s)| s.low_watermark(bound, None, now).map(|w| (w, i)))
                            .min();
                        let Some((_, index)) = next else { break };
                        if options.probe.is_some() && options.max_in_flight.is_some_and(|max| in_flight_total >= max) {
                            // Far ahead of what the dataflow has finished: let it catch up.
                            break;
                        }
                        vec![index]
                    }
                };
                for index in chosen {
                    reads += 1;
                    let state = &mut states[index];
                    let status = state.partition.read(options.batch_records, &mut batch, &mut side_batch);
                    let promised = *records_cap.time();
                    // Move late records out; on-time records stay in place (no copy).
                    let mut latest = state.latest;
                    let mut kept = 0;
                    for i in 0..batch.len() {
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
                    match status {
                        PartitionRead::More => state.idle_since = None,
                        PartitionRead::Idle => {
                            state.idle_since.get_or_insert(now);
                        }
                        PartitionRead::Exhausted => state.finished = true,
                    }
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
                let watermark = states.iter().filter_map(|s| s.low_watermark(bound, options.idle_timeout, now)).min();
                if let Some(w) = watermark {
                    let w = w / epoch * epoch;
                    if w > *records_cap.time() {
                        records_cap.downgrade(&w);
                        late_cap.downgrade(&w);
                        side_cap.downgrade(&w);
                    }
                }
            }
            drop((records_session, late_session, side_session));
            if states.iter().all(|s| s.finished) {
                caps = None;
            } else if states.iter().all(|s| s.finished || s.idle_since.is_some()) {
                activator.activate_after(Duration::from_millis(1));
            } else {
                activator.activate();
            }
        }
    });

    SourceOutputs { records, late, side }
}
