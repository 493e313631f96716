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
//!
//! # Live feeds: when to read, and a watermark that follows the clock
//!
//! A source whose partitions are all idle sleeps, and its worker with it, until it must look
//! again: after [`SourceOptions::idle_poll`] by default; until a partition wakes it
//! ([`Partition::set_waker`]: a consumer's callback when data arrives, from any thread); or
//! until a partition's next record is due ([`Partition::ready_at`]), but never sooner than a
//! poll, so that records due close together are read in batches.
//!
//! The watermark of a recorded feed moves only with its data: a record waits for later records
//! to pass it. A feed stamped on receipt knows better: nothing can arrive before its clock
//! ([`Partition::receipt_clock`]), so while records wait the watermark follows the clock, and
//! the source wakes at the clock's next epoch boundary to move it past them. A record then
//! completes about an epoch after it arrived, whatever the rate. The workers of a process share
//! a [`SharedClock`], so that the workers with nothing to send follow too.

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

    /// For a live partition that stamps its records on receipt: the stamp a record arriving now
    /// would get. No record before it can come any more, so the watermark follows this clock
    /// while the partition is quiet, and a record completes within an epoch of its arrival
    /// instead of waiting for the next record to move the watermark. It must not run ahead of
    /// records the partition holds but has not yet returned. `None` (the default): the times
    /// come from the data, and only the data moves the watermark.
    fn receipt_clock(&self) -> Option<u64> {
        None
    }

    /// Called once when the source is built. A live partition that can tell when data arrives
    /// (a consumer's callback, a channel's sender) keeps the waker, calls [`SourceWaker::wake`]
    /// from any thread when records arrive, and returns `true`: while it is idle the source then
    /// sleeps until woken instead of polling it every [`SourceOptions::idle_poll`]. The default
    /// keeps polling.
    fn set_waker(&mut self, waker: SourceWaker) -> bool {
        let _ = waker;
        false
    }

    /// For an idle partition that knows when it will next have records (a replay paced by the
    /// clock): that moment. The source reads it again then rather than at its next poll.
    fn ready_at(&self) -> Option<Instant> {
        None
    }
}

/// Wakes a [`partitioned_source`] from any thread (see [`Partition::set_waker`]): the worker,
/// if asleep, is unparked and reads the source's partitions at its next step.
#[derive(Clone, Debug)]
pub struct SourceWaker {
    activator: timely::scheduling::SyncActivator,
    /// Which source (the operator's worker and address) it wakes.
    source: Arc<(usize, Vec<usize>)>,
}

impl SourceWaker {
    fn same_source(&self, other: &SourceWaker) -> bool {
        self.source == other.source
    }

    /// Asks the source's worker to read the partitions again. Returns `false` once the
    /// dataflow has shut down (nothing is listening any more).
    pub fn wake(&self) -> bool {
        self.activator.activate().is_ok()
    }
}

/// The receipt clocks of the sources of several workers (of one process), moved together.
///
/// A record completes only when every worker's watermark has passed it, so a record that
/// waits for its own worker's receipt clock also waits for the other workers' clocks; a worker
/// whose feed is quiet would otherwise move its clock only at its next record or heartbeat.
/// Sources that share one `SharedClock` publish the latest time of the records they sent and
/// how far their watermark has moved. When one has moved past its own records, it wakes those
/// still behind them, which then move their clocks past them too. Under load every worker's
/// own records move its watermark and nobody is woken. Pass a clone to every worker's
/// [`SourceOptions::shared_clock`].
#[derive(Clone, Debug, Default)]
pub struct SharedClock {
    /// One past the latest time at which some worker sent records that wait for the clocks.
    waiting_until: Arc<std::sync::atomic::AtomicU64>,
    /// Each source's waker and its promised time (its watermark).
    members: Arc<std::sync::Mutex<Vec<ClockMember>>>,
}

/// A source sharing a clock: its waker and where it publishes its watermark.
type ClockMember = (SourceWaker, Arc<std::sync::atomic::AtomicU64>);

impl SharedClock {
    /// Adds a source; returns where it publishes its watermark.
    fn join(&self, waker: SourceWaker) -> Arc<std::sync::atomic::AtomicU64> {
        let promised = Arc::new(std::sync::atomic::AtomicU64::new(0));
        if let Ok(mut members) = self.members.lock() {
            members.push((waker, promised.clone()));
        }
        promised
    }

    /// A record at `time` was sent: every source's watermark must pass it.
    fn sent(&self, time: u64) {
        self.waiting_until.fetch_max(time.saturating_add(1), Ordering::AcqRel);
    }

    /// The source `own` has moved past its records at `time`: wakes the others still at or
    /// before it.
    fn passed(&self, time: u64, own: &SourceWaker) {
        if let Ok(members) = self.members.lock() {
            for (waker, promised) in members.iter() {
                if !waker.same_source(own) && promised.load(Ordering::Acquire) <= time {
                    waker.wake();
                }
            }
        }
    }

    /// Whether some worker's records at or after `promised` wait for the clocks.
    fn waiting(&self, promised: u64) -> bool {
        self.waiting_until.load(Ordering::Acquire) > promised
    }
}

/// How long a source whose idle partitions all wake it themselves sleeps before looking again
/// anyway: a safety net for a wake-up lost by the feed, not a poll.
const WOKEN_IDLE_CHECK: Duration = Duration::from_millis(50);

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
    /// With partitions that stamp on receipt, the clock shared with the other workers' sources
    /// (see [`SharedClock`]).
    pub shared_clock: Option<SharedClock>,
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
            shared_clock: None,
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
    /// The partition wakes the source when it has data: no need to poll it.
    wakes: bool,
}

impl<P: Partition> PartitionState<P> {
    /// The least time this partition may still send on time, or `None` if it no longer holds
    /// the watermark back.
    /// With `clock`, a partition's [`Partition::receipt_clock`] counts too.
    fn low_watermark(&self, bound: u64, idle_timeout: Option<Duration>, now: Instant, clock: bool) -> Option<u64> {
        if self.finished {
            return None;
        }
        if let (Some(since), Some(timeout)) = (self.idle_since, idle_timeout)
            && now.duration_since(since) >= timeout
        {
            return None;
        }
        let from_data = match (self.latest, self.first) {
            (Some(latest), _) => Some(latest.saturating_sub(bound)),
            (None, Some(first)) => Some(first.saturating_sub(bound)),
            (None, None) => None,
        };
        match (from_data, if clock { self.partition.receipt_clock() } else { None }) {
            (Some(data), Some(clock)) => Some(data.max(clock)),
            (data, clock) => data.or(clock),
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
    clock: bool,
) -> Option<u64> {
    states.iter().filter_map(|s| s.low_watermark(bound, idle_timeout, now, clock)).min().or_else(|| {
        idle_timeout?;
        states.iter().filter_map(|s| s.low_watermark(bound, None, now, clock)).max()
    })
}

/// How long a source whose unfinished partitions are all idle may sleep before it must look
/// again: until the next poll, or (when every idle partition wakes it itself) the safety net;
/// no later than a partition's own `ready_at` (but not sooner than a poll) or the end of an idle timeout; and, when records
/// sent at `sent_at` wait for a receipt clock to pass them, no later than the clock's next
/// epoch boundary.
fn idle_wait<P: Partition>(
    states: &[PartitionState<P>],
    options: &SourceOptions,
    waiting_at: Option<u64>,
    epoch: u64,
    now: Instant,
) -> Duration {
    let idle: Vec<&PartitionState<P>> = states.iter().filter(|s| !s.finished).collect();
    let told = |s: &&PartitionState<P>| s.wakes || s.partition.ready_at().is_some();
    let mut wait = if idle.iter().all(told) { WOKEN_IDLE_CHECK.max(options.idle_poll) } else { options.idle_poll };
    for state in &idle {
        if let Some(at) = state.partition.ready_at() {
            // Never sooner than a poll: records due closer together than that are read in
            // batches, one round of progress each, rather than one round per record.
            wait = wait.min(at.saturating_duration_since(now).max(options.idle_poll));
        }
        if let (Some(since), Some(timeout)) = (state.idle_since, options.idle_timeout) {
            let left = timeout.saturating_sub(now.duration_since(since));
            if !left.is_zero() {
                wait = wait.min(left);
            }
        }
        if let Some(clock) = state.partition.receipt_clock() {
            let ready = state.partition.ready_at().map(|at| at.saturating_duration_since(now));
            wait = wait.min(match waiting_at {
                Some(sent_at) => {
                    // Receipt stamps run with the wall clock: the next boundary is this far
                    // away. If the next record comes within a poll of it anyway, its reading
                    // moves the watermark: one round of progress instead of two.
                    let boundary =
                        Duration::from_nanos(((sent_at.max(clock) / epoch + 1) * epoch).saturating_sub(clock));
                    match ready {
                        Some(ready) if ready <= boundary + options.idle_poll => ready.max(boundary),
                        _ => boundary,
                    }
                }
                None => CLOCK_HEARTBEAT,
            });
        }
    }
    wait
}

/// How often a receipt clock moves the watermark of a quiet partition with no records waiting
/// for it: often enough for time-driven operators (windows, timeouts) to fire, rarely enough
/// that an idle feed does not cost a round of progress messages every poll.
const CLOCK_HEARTBEAT: Duration = Duration::from_millis(10);

/// Whether receipt clocks may move the watermark now: when records sent at `last_sent_at` wait
/// for it to pass them, or once per [`CLOCK_HEARTBEAT`] otherwise.
fn clock_moves(
    last_sent_at: &Option<u64>,
    shared: Option<&SharedClock>,
    promised: &u64,
    last_move: &mut Instant,
    now: Instant,
) -> bool {
    let waiting = last_sent_at.is_some_and(|t| t >= *promised) || shared.is_some_and(|s| s.waiting(*promised));
    if waiting || now.saturating_duration_since(*last_move) >= CLOCK_HEARTBEAT {
        *last_move = now;
        true
    } else {
        false
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
    let waker = SourceWaker {
        activator: scope.worker().sync_activator_for(info.address.to_vec()),
        source: Arc::new((scope.worker().index(), info.address.to_vec())),
    };
    let published = options.shared_clock.as_ref().map(|shared| shared.join(waker.clone()));
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
                let wakes = partition.set_waker(waker.clone());
                let first = partition.first_time();
                PartitionState { partition, latest: None, first, finished: false, idle_since: None, wakes }
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
        // The latest time of the records sent: until the watermark passes it they wait for it.
        let mut last_sent_at: Option<u64> = None;
        let mut batch_latest: Option<u64> = None;
        let mut last_clock_move = Instant::now();
        // The latest time of own records for which the workers behind were woken.
        let mut woken_for: Option<u64> = None;
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
            let clock = clock_moves(
                &last_sent_at,
                options.shared_clock.as_ref(),
                all_caps[0].time(),
                &mut last_clock_move,
                now,
            );
            if let Some(w) = source_watermark(&states, bound, options.idle_timeout, now, clock) {
                let w = w / epoch * epoch;
                if w > *all_caps[0].time() {
                    for cap in all_caps.iter_mut() {
                        cap.downgrade(&w);
                    }
                }
            }
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
                            .map(|(i, s)| (s.low_watermark(bound, None, now, false), i))
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
                    // The last batch went downstream with its buffer: room for this one at once,
                    // rather than growing (and copying) it record by record.
                    batch.reserve(options.batch_records);
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
                            batch_latest = batch_latest.max(Some(time));
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
                    last_sent_at = last_sent_at.max(batch_latest);
                    if let (Some(shared), Some(time)) = (&options.shared_clock, batch_latest) {
                        shared.sent(time);
                    }
                    in_flight_total += batch.len();
                    match in_flight.back_mut() {
                        Some((t, n)) if *t == sent_at => *n += batch.len(),
                        _ => in_flight.push_back((sent_at, batch.len())),
                    }
                    records_session.session(&*records_cap).give_container(&mut batch);
                    batch.clear();
                    batch_latest = None;
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
                if let Some(w) = source_watermark(
                    &states,
                    bound,
                    options.idle_timeout,
                    now,
                    clock_moves(
                        &last_sent_at,
                        options.shared_clock.as_ref(),
                        records_cap.time(),
                        &mut last_clock_move,
                        now,
                    ),
                ) {
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
            if let (Some(shared), Some(published)) = (&options.shared_clock, &published) {
                let promised = *records_cap.time();
                published.store(promised, Ordering::Release);
                // Past its own records: the workers still behind them are woken, once.
                if let Some(time) = last_sent_at.filter(|&t| t < promised && woken_for != Some(t)) {
                    shared.passed(time, &waker);
                    woken_for = Some(time);
                }
            }
            if states.iter().all(|s| s.finished) {
                if let Some(published) = &published {
                    published.store(u64::MAX, Ordering::Release);
                }
                caps = None;
            } else if states.iter().all(|s| s.finished || s.idle_since.is_some()) {
                // Records sent at the current time complete only when it moves on.
                let promised = *records_cap.time();
                let waiting_at = last_sent_at
                    .filter(|&t| t >= promised)
                    .or_else(|| options.shared_clock.as_ref().is_some_and(|s| s.waiting(promised)).then_some(promised));
                activator.activate_after(idle_wait(&states, &options, waiting_at, epoch, Instant::now()));
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

    use super::clock_tests::Hinted;

    fn state(latest: Option<u64>, first: Option<u64>) -> PartitionState<Hinted> {
        let partition = Hinted { clock: None, ready: None };
        PartitionState { partition, latest, first, finished: false, idle_since: None, wakes: false }
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
        assert_eq!(s.low_watermark(0, timeout, t0 + 9 * MS, false), Some(100));
        assert_eq!(s.low_watermark(0, timeout, t0 + 10 * MS, false), None);
        // Data again, with nothing more for now: it holds the watermark back again.
        s.note_read(PartitionRead::Idle, true, t0 + 20 * MS);
        assert_eq!(s.low_watermark(0, timeout, t0 + 21 * MS, false), Some(100));
        assert_eq!(s.low_watermark(0, timeout, t0 + 30 * MS, false), None);
        s.note_read(PartitionRead::More, true, t0 + 31 * MS);
        assert_eq!(s.idle_since, None);
        assert_eq!(s.low_watermark(0, timeout, t0 + 100 * MS, false), Some(100));
        s.note_read(PartitionRead::Exhausted, false, t0 + 101 * MS);
        assert_eq!(s.low_watermark(0, timeout, t0 + 101 * MS, false), None);
    }

    #[test]
    fn idle_partitions_leave_the_watermark_to_the_others() {
        let t0 = Instant::now();
        let timeout = Some(10 * MS);
        let mut states = vec![state(Some(100), None), state(Some(50), None), state(None, Some(70))];
        assert_eq!(source_watermark(&states, 5, timeout, t0, false), Some(45));
        states[1].note_read(PartitionRead::Idle, false, t0);
        assert_eq!(source_watermark(&states, 5, timeout, t0 + 9 * MS, false), Some(45));
        assert_eq!(source_watermark(&states, 5, timeout, t0 + 10 * MS, false), Some(65));
        // Without a timeout, idleness changes nothing.
        assert_eq!(source_watermark(&states, 5, None, t0 + 1000 * MS, false), Some(45));
    }

    #[test]
    fn when_every_partition_is_idle_the_most_advanced_one_sets_the_watermark() {
        let t0 = Instant::now();
        let timeout = Some(10 * MS);
        let mut states = vec![state(Some(100), None), state(Some(50), None), state(None, None)];
        states[0].note_read(PartitionRead::Idle, false, t0);
        states[1].note_read(PartitionRead::Idle, false, t0);
        assert_eq!(source_watermark(&states, 0, timeout, t0 + 10 * MS, false), Some(100));
        states[0].finished = true;
        assert_eq!(source_watermark(&states, 0, timeout, t0 + 10 * MS, false), Some(50));
        states[1].finished = true;
        assert_eq!(source_watermark(&states, 0, timeout, t0 + 10 * MS, false), None);
    }
}

#[cfg(test)]
mod clock_tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;
    use timely::dataflow::operators::Probe;

    /// A feed stamped on receipt: record `i` arrives `gap * (i + 1)` after `start` and is
    /// stamped with its arrival (ns since `origin`).
    struct Stamped {
        start: Instant,
        origin: Instant,
        gap: Duration,
        next: u64,
        count: u64,
    }

    impl Stamped {
        fn due(&self, index: u64) -> Instant {
            self.start + self.gap * (index as u32 + 1)
        }
        fn now_ns(&self) -> u64 {
            Instant::now().saturating_duration_since(self.origin).as_nanos() as u64
        }
    }

    impl Partition for Stamped {
        type Record = u64;
        type Side = ();
        fn time(record: &u64) -> u64 {
            *record
        }
        fn first_time(&mut self) -> Option<u64> {
            Some(0)
        }
        fn read(&mut self, _: usize, out: &mut Vec<u64>, _: &mut Vec<()>) -> PartitionRead {
            while self.next < self.count && self.due(self.next) <= Instant::now() {
                out.push(self.due(self.next).duration_since(self.origin).as_nanos() as u64);
                self.next += 1;
            }
            if self.next == self.count { PartitionRead::Exhausted } else { PartitionRead::Idle }
        }
        fn receipt_clock(&self) -> Option<u64> {
            let next = if self.next < self.count { self.due(self.next) - self.origin } else { Duration::MAX };
            Some(self.now_ns().min(next.as_nanos() as u64))
        }
        fn ready_at(&self) -> Option<Instant> {
            (self.next < self.count).then(|| self.due(self.next))
        }
    }

    /// A partition that is never read, with given hints: only the source's bookkeeping is
    /// under test.
    pub(super) struct Hinted {
        pub(super) clock: Option<u64>,
        pub(super) ready: Option<Instant>,
    }
    impl Partition for Hinted {
        type Record = u64;
        type Side = ();
        fn time(record: &u64) -> u64 {
            *record
        }
        fn first_time(&mut self) -> Option<u64> {
            None
        }
        fn read(&mut self, _: usize, _: &mut Vec<u64>, _: &mut Vec<()>) -> PartitionRead {
            PartitionRead::Idle
        }
        fn receipt_clock(&self) -> Option<u64> {
            self.clock
        }
        fn ready_at(&self) -> Option<Instant> {
            self.ready
        }
    }

    fn hinted(clock: Option<u64>, ready: Option<Instant>, wakes: bool, now: Instant) -> PartitionState<Hinted> {
        let partition = Hinted { clock, ready };
        PartitionState { partition, latest: Some(0), first: None, finished: false, idle_since: Some(now), wakes }
    }

    #[test]
    fn an_idle_source_sleeps_until_data_is_due_or_a_record_waits_for_the_clock() {
        let now = Instant::now();
        let options = SourceOptions { idle_poll: Duration::from_micros(100), ..Default::default() };
        let us = Duration::from_micros;
        // A partition that cannot tell when data comes is polled.
        assert_eq!(idle_wait(&[hinted(None, None, false, now)], &options, None, 1, now), us(100));
        // One that wakes the source is not (only the safety net) ...
        assert_eq!(idle_wait(&[hinted(None, None, true, now)], &options, None, 1, now), WOKEN_IDLE_CHECK);
        // ... unless another cannot.
        let mixed = [hinted(None, None, true, now), hinted(None, None, false, now)];
        assert_eq!(idle_wait(&mixed, &options, None, 1, now), us(100));
        // Data due in 3 ms: read then; due sooner than a poll: read at the poll, in a batch.
        let due = |after| [hinted(None, Some(now + after), false, now)];
        assert_eq!(idle_wait(&due(us(3000)), &options, None, 1, now), us(3000));
        assert_eq!(idle_wait(&due(us(10)), &options, None, 1, now), us(100));
        // A record at 1,020 µs waits for a receipt clock at 1,030 µs with epochs of 100 µs: the
        // clock reaches the next boundary (1,100 µs) in 70 µs.
        let clocked = [hinted(Some(1_030_000), Some(now + us(3000)), false, now)];
        assert_eq!(idle_wait(&clocked, &options, Some(1_020_000), 100_000, now), us(70));
        // Nothing waits: the clock moves at its heartbeat, or sooner if data is due.
        assert_eq!(idle_wait(&clocked, &options, None, 100_000, now), us(3000).min(CLOCK_HEARTBEAT));
        // An idle timeout ends in 4 ms: look again then.
        let options = SourceOptions { idle_timeout: Some(Duration::from_millis(5)), ..options };
        let quiet = [hinted(None, None, true, now - Duration::from_millis(1))];
        assert_eq!(idle_wait(&quiet, &options, None, 1, now), Duration::from_millis(4));
    }

    #[test]
    fn a_receipt_clock_moves_the_watermark_past_the_data() {
        let now = Instant::now();
        let mut state = hinted(Some(500), None, false, now);
        state.latest = Some(300);
        state.idle_since = None;
        assert_eq!(state.low_watermark(100, None, now, false), Some(200));
        assert_eq!(state.low_watermark(100, None, now, true), Some(500));
        // The clock moves it only when records wait for it, or at the heartbeat.
        let mut last_move = now;
        assert!(clock_moves(&Some(250), None, &250, &mut last_move, now));
        assert!(!clock_moves(&Some(249), None, &250, &mut last_move, now));
        let shared = SharedClock::default();
        shared.waiting_until.store(251, Ordering::Release);
        assert!(clock_moves(&None, Some(&shared), &250, &mut last_move, now));
        assert!(!clock_moves(&None, Some(&shared), &251, &mut last_move, now));
        assert!(clock_moves(&None, Some(&shared), &251, &mut last_move, now + CLOCK_HEARTBEAT));
    }

    /// Latencies of worker 0's records, each from its arrival until the probe passed it, with a
    /// stamped feed on each of `workers` workers: worker 0's records 40 ms apart, the others'
    /// 20 ms after each of them (so that a worker without a shared clock would hold worker 0's
    /// records until its own next record or its heartbeat).
    fn stamped_latencies(workers: usize, share: bool) -> Vec<Duration> {
        const RECORDS: u64 = 6;
        let gap = Duration::from_millis(40);
        let start = Instant::now() + Duration::from_millis(20);
        let shared = share.then(SharedClock::default);
        let guards = timely::execute(timely::Config::process(workers), move |worker| {
            let offset = if worker.index() == 0 { Duration::ZERO } else { gap / 2 };
            let probe = ProbeHandle::new();
            let options = SourceOptions {
                epoch: 1_000_000,
                probe: Some(probe.clone()),
                shared_clock: shared.clone(),
                ..Default::default()
            };
            let partition = Stamped { start: start + offset, origin: start, gap, next: 0, count: RECORDS };
            worker.dataflow::<u64, _, _>(|scope| {
                partitioned_source(scope, "Stamped", vec![partition], options).records.probe_with(&probe);
            });
            let latencies = Rc::new(RefCell::new(Vec::new()));
            let mut index = 0u32;
            while !probe.done() {
                worker.step_or_park(None);
                let frontier = probe.with_frontier(|f| f.first().copied().unwrap_or(u64::MAX));
                while u64::from(index) < RECORDS && ((gap * (index + 1)).as_nanos() as u64) < frontier {
                    latencies.borrow_mut().push(start.elapsed().saturating_sub(gap * (index + 1)));
                    index += 1;
                }
            }
            latencies.take()
        })
        .expect("the dataflow runs");
        guards.join().into_iter().next().and_then(Result::ok).unwrap_or_default()
    }

    /// Whether most of the latencies (all but two, so that stalls of the machine do not fail
    /// the test) are under 4 ms: an epoch of 1 ms and a wake-up, not a 10 ms heartbeat nor the
    /// next record 20 or 40 ms later.
    fn mostly_prompt(latencies: &[Duration]) -> bool {
        let mut sorted = latencies.to_vec();
        sorted.sort();
        sorted.len() > 2 && sorted[sorted.len() - 3] < Duration::from_millis(4)
    }

    #[test]
    fn a_record_stamped_on_receipt_completes_within_an_epoch_not_at_the_next_record() {
        let latencies = stamped_latencies(1, false);
        assert_eq!(latencies.len(), 6);
        assert!(mostly_prompt(&latencies), "{latencies:?}");
    }

    #[test]
    fn workers_sharing_a_clock_complete_each_others_records_promptly() {
        let latencies = stamped_latencies(2, true);
        assert_eq!(latencies.len(), 6);
        assert!(mostly_prompt(&latencies), "{latencies:?}");
    }
}
