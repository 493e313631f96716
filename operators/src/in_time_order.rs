//! Keyed processing in event-time order: the building block for stateful rules.
//!
//! Timely delivers records in whatever order workers and channels produce them. Rules such as
//! "compare each execution with the best bid and offer that preceded it" need the records of a
//! key in event-time order, with a deterministic tie-break, so that the result does not depend
//! on the number of workers or on scheduling. This operator buffers each record until the
//! watermark (the input frontier) passes its time, then hands the ready records to a
//! [`TimeOrderedProcessor`] sorted by `(time, tie_break)`, interleaved with the processor's
//! event-time timers.

use timely::ExchangeData;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::Stream;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::{Capability, Operator};

/// Stateful logic that sees one worker's share of the keys in event-time order.
///
/// A processor keeps whatever per-key state it needs (the operator routes every record with the
/// same key to the same worker). Timers fire after every record with a smaller time and before
/// every record with an equal or larger time, so a timer at a session's end sees exactly the
/// session's records.
pub trait TimeOrderedProcessor<D> {
    /// What the processor emits.
    type Output;

    /// Handles one record; records arrive sorted by `(time, tie_break)`.
    fn on_record(&mut self, time: u64, record: D, output: &mut Emitter<'_, Self::Output>);

    /// The earliest pending timer, if any. Queried after every call.
    fn next_timer(&self) -> Option<u64> {
        None
    }

    /// Fires the timer at `time` (the value `next_timer` returned). The processor must remove
    /// or move that timer, or it fires again.
    fn on_timer(&mut self, time: u64, output: &mut Emitter<'_, Self::Output>) {
        let _ = (time, output);
    }
}

/// Collects a processor's output, stamped with event time.
pub struct Emitter<'a, O> {
    now: u64,
    buffer: &'a mut Vec<(u64, O)>,
}

impl<'a, O> Emitter<'a, O> {
    /// An emitter writing into `buffer` at time `now`: for running a processor outside a
    /// dataflow, as tests and batch replays do.
    pub fn new(now: u64, buffer: &'a mut Vec<(u64, O)>) -> Emitter<'a, O> {
        Emitter { now, buffer }
    }

    /// The event time being processed: the record's time or the timer's time.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Emits `item` at the current event time.
    pub fn emit(&mut self, item: O) {
        self.buffer.push((self.now, item));
    }

    /// Emits `item` at `time`; times earlier than [`now`](Self::now) are raised to it, since the
    /// operator cannot emit into the past.
    pub fn emit_at(&mut self, time: u64, item: O) {
        self.buffer.push((time.max(self.now), item));
    }
}

/// Extension trait: route records by key and process each worker's share in event-time order.
pub trait ProcessInTimeOrder<'scope, D: ExchangeData> {
    /// Routes each record to the worker that owns `key(record)`, waits until the watermark
    /// passes the record's time, and calls `processor` for the ready records in
    /// `order(record) = (time, tie_break)` order.
    ///
    /// A record's `time` must not be earlier than the timely time it travels at (sources send a
    /// record at or before its event time); a record that breaks this rule is processed as if
    /// its time were the message's time.
    ///
    /// # Examples
    /// ```
    /// use timely::dataflow::operators::{Capture, ToStream};
    /// use timely::dataflow::operators::capture::Extract;
    /// use surveil_operators::{Emitter, ProcessInTimeOrder, TimeOrderedProcessor};
    ///
    /// /// Emits, per key, the running count at each record.
    /// struct RunningCount(std::collections::HashMap<u64, u64>);
    /// impl TimeOrderedProcessor<(u64, u64)> for RunningCount {
    ///     type Output = (u64, u64, u64);
    ///     fn on_record(&mut self, time: u64, (_, key): (u64, u64), out: &mut Emitter<'_, Self::Output>) {
    ///         let count = self.0.entry(key).or_default();
    ///         *count += 1;
    ///         out.emit((time, key, *count));
    ///     }
    /// }
    ///
    /// let captured = timely::example(|scope| {
    ///     // (time, key), deliberately out of order
    ///     vec![(30u64, 1u64), (10, 1), (20, 2), (15, 1)]
    ///         .to_stream(scope)
    ///         .process_in_time_order("RunningCount", |r| r.1, |r| (r.0, 0), RunningCount(Default::default()))
    ///         .capture()
    /// });
    /// let mut out: Vec<_> = captured.extract().into_iter().flat_map(|(_, v)| v).collect();
    /// out.sort();
    /// assert_eq!(out, vec![(10, 1, 1), (15, 1, 2), (20, 2, 1), (30, 1, 3)]);
    /// ```
    fn process_in_time_order<P, K, O>(
        self,
        name: &str,
        key: K,
        order: O,
        processor: P,
    ) -> Stream<'scope, u64, Vec<P::Output>>
    where
        P: TimeOrderedProcessor<D> + 'static,
        P::Output: Clone + 'static,
        K: Fn(&D) -> u64 + 'static,
        O: Fn(&D) -> (u64, u64) + 'static;
}

impl<'scope, D: ExchangeData> ProcessInTimeOrder<'scope, D> for Stream<'scope, u64, Vec<D>> {
    fn process_in_time_order<P, K, O>(
        self,
        name: &str,
        key: K,
        order: O,
        mut processor: P,
    ) -> Stream<'scope, u64, Vec<P::Output>>
    where
        P: TimeOrderedProcessor<D> + 'static,
        P::Output: Clone + 'static,
        K: Fn(&D) -> u64 + 'static,
        O: Fn(&D) -> (u64, u64) + 'static,
    {
        let exchange = Exchange::new(move |record: &D| key(record));
        self.unary_frontier::<CapacityContainerBuilder<Vec<P::Output>>, _, _, _>(
            exchange,
            name,
            move |initial, _info| {
                drop(initial);
                // The capability is held at the least time that can still produce output: the
                // earliest buffered record or the earliest timer.
                let mut held: Option<Capability<u64>> = None;
                let mut pending = PendingRecords::default();
                let mut ready: Vec<(u64, u64, D)> = Vec::new();
                let mut produced: Vec<(u64, P::Output)> = Vec::new();
                move |(input, frontier), output| {
                    input.for_each_stamp(|cap, data| {
                        let Some(&least) = cap.least() else { return };
                        if held.as_ref().is_none_or(|h| least < *h.time()) {
                            held = Some(cap.delayed(&least, 0));
                        }
                        for batch in data {
                            for record in batch.drain(..) {
                                let (time, tie_break) = order(&record);
                                pending.push(time.max(least), tie_break, record);
                            }
                        }
                    });

                    // Everything strictly before the watermark is complete.
                    let watermark = frontier.frontier().first().copied();
                    let complete = |time: u64| watermark.is_none_or(|w| time < w);
                    // Bucket by bucket: each record in its turn, each complete timer before the
                    // records at or after it; the timers after the last record once no bucket
                    // is left.
                    let mut taken = pending.take_next_complete(watermark, &mut ready);
                    loop {
                        // Looking at the next record in place: a peeked copy of each would move
                        // every record once more.
                        let mut records = ready.drain(..);
                        loop {
                            let timer = processor.next_timer().filter(|&t| complete(t));
                            let record_time = records.as_slice().first().map(|r| r.0);
                            match (timer, record_time) {
                                (Some(t), Some(r)) if t <= r => {
                                    processor.on_timer(t, &mut Emitter { now: t, buffer: &mut produced });
                                }
                                (Some(t), None) if taken != Taken::Bucket => {
                                    processor.on_timer(t, &mut Emitter { now: t, buffer: &mut produced });
                                }
                                (_, Some(_)) => {
                                    if let Some((time, _, record)) = records.next() {
                                        let mut emitter = Emitter { now: time, buffer: &mut produced };
                                        processor.on_record(time, record, &mut emitter);
                                    }
                                }
                                (_, None) => break,
                            }
                        }
                        drop(records);
                        if taken != Taken::Bucket {
                            break;
                        }
                        taken = pending.take_next_complete(watermark, &mut ready);
                    }
                    pending.adapt_width();
                    if ready.capacity() > KEPT_ROOM {
                        ready = Vec::new();
                    }

                    if let Some(cap) = held.as_mut() {
                        if !produced.is_empty() {
                            produced.sort_by_key(|(time, _)| *time);
                            // One pass over runs of equal times (draining each run from the
                            // front would move the rest of the buffer once per run).
                            // Each run goes out as one container of its own size: many runs
                            // of a few items (a dead letter per event of a feed gone bad) must
                            // not each allocate a full-size buffer.
                            let floor = *cap.time();
                            let mut items = produced.drain(..).peekable();
                            let mut run: Vec<P::Output> = Vec::new();
                            while let Some(&(first, _)) = items.peek() {
                                let time = first.max(floor);
                                run.extend(std::iter::from_fn(|| {
                                    items.next_if(|(t, _)| (*t).max(floor) == time).map(|(_, item)| item)
                                }));
                                output.session(&cap.delayed(&time)).give_container(&mut run);
                                run = Vec::new();
                            }
                        }
                        let next = match (pending.least_time(), processor.next_timer()) {
                            (Some(a), Some(b)) => Some(a.min(b)),
                            (a, b) => a.or(b),
                        };
                        match next {
                            Some(t) => {
                                let t = t.max(*cap.time());
                                cap.downgrade(&t);
                            }
                            None => held = None,
                        }
                    } else {
                        debug_assert!(produced.is_empty());
                        produced.clear();
                    }
                }
            },
        )
    }
}

/// Records waiting for the watermark, bucketed by time so that each advance of the
/// watermark touches only the buckets it completes and the one it splits, however many records
/// wait behind it. The bucket width adapts to the density of the data: sparse buckets cost an
/// allocation per record, crowded ones a long scan per advance.
///
/// Emptied buckets are kept (a few) for the next ones: a bucket grown from nothing reallocates
/// and copies its records a dozen times, and on two workers the fresh pages of those growths
/// and the frees of the old ones cost more kernel time than the sort.
struct PendingRecords<D> {
    buckets: std::collections::BTreeMap<u64, Vec<(u64, u64, D)>>,
    len: usize,
    shift: u32,
    /// Records and buckets taken since the width was last reconsidered.
    taken: (usize, usize),
    /// Emptied buckets, with their room, for the next buckets to open.
    spare: Vec<Vec<(u64, u64, D)>>,
}

/// How many emptied buckets are kept: enough for the buckets a watermark advance opens while
/// it closes as many; each holds at most a bucket's worth of room.
const SPARE_BUCKETS: usize = 2;

/// The most room, in records, a kept buffer may hold: twice the largest bucket aimed for. A
/// buffer grown past it (the whole backlog completed at once, at the end of the input) is
/// given back.
const KEPT_ROOM: usize = 2 * TARGET_PER_BUCKET.1;

/// Bucket width bounds: about a microsecond to about 18 minutes of nanosecond time.
const MIN_SHIFT: u32 = 10;
const MAX_SHIFT: u32 = 40;
const TARGET_PER_BUCKET: (usize, usize) = (256, 8192);

impl<D> Default for PendingRecords<D> {
    fn default() -> Self {
        PendingRecords {
            buckets: std::collections::BTreeMap::new(),
            len: 0,
            shift: 20,
            taken: (0, 0),
            spare: Vec::new(),
        }
    }
}

impl<D> PendingRecords<D> {
    fn push(&mut self, time: u64, tie_break: u64, record: D) {
        let spare = &mut self.spare;
        self.buckets
            .entry(time >> self.shift)
            .or_insert_with(|| spare.pop().unwrap_or_default())
            .push((time, tie_break, record));
        self.len += 1;
    }

    /// Keeps an emptied bucket's room for a later bucket, up to [`SPARE_BUCKETS`] of them.
    fn recycle(&mut self, mut bucket: Vec<(u64, u64, D)>) {
        bucket.clear();
        if self.spare.len() < SPARE_BUCKETS && (1..=KEPT_ROOM).contains(&bucket.capacity()) {
            self.spare.push(bucket);
        }
    }

    fn least_time(&self) -> Option<u64> {
        self.buckets.first_key_value().and_then(|(_, records)| records.iter().map(|r| r.0).min())
    }

    /// Re-buckets everything at a new width.
    fn rebucket(&mut self, shift: u32) {
        let old = std::mem::take(&mut self.buckets);
        self.shift = shift;
        for (_, records) in old {
            for r in records {
                self.buckets.entry(r.0 >> shift).or_default().push(r);
            }
        }
    }

    /// Moves the records of the earliest bucket with time before `watermark` (all of them
    /// for `None`) into `ready`, which is empty, sorted by `(time, tie_break)`. A whole bucket
    /// is handed over with its buffer, not copied: buckets are disjoint in time, so taking them
    /// one by one gives every complete record in order.
    fn take_next_complete(&mut self, watermark: Option<u64>, ready: &mut Vec<(u64, u64, D)>) -> Taken {
        debug_assert!(ready.is_empty());
        let boundary = watermark.map(|w| w >> self.shift);
        let Some(entry) = self.buckets.first_entry() else { return Taken::Nothing };
        let bucket = *entry.key();
        let taken = match boundary {
            Some(b) if bucket > b => return Taken::Nothing,
            Some(b) if bucket == b => {
                let w = watermark.unwrap_or(u64::MAX);
                // Split in arrival order, which is nearly time order, so the sort below
                // stays cheap.
                let records = entry.into_mut();
                ready.extend(records.extract_if(.., |r| r.0 < w));
                if records.is_empty()
                    && let Some((_, emptied)) = self.buckets.pop_first()
                {
                    self.recycle(emptied);
                }
                Taken::Last
            }
            _ => {
                let mut records = entry.remove();
                self.taken.1 += 1;
                std::mem::swap(ready, &mut records);
                self.recycle(records);
                Taken::Bucket
            }
        };
        self.len -= ready.len();
        self.taken.0 += ready.len();
        ready.sort_unstable_by_key(|r| (r.0, r.1));
        taken
    }

    /// Reconsiders the bucket width every few thousand records taken.
    fn adapt_width(&mut self) {
        if self.taken.1 >= 64 {
            let per_bucket = self.taken.0 / self.taken.1;
            if per_bucket < TARGET_PER_BUCKET.0 && self.shift < MAX_SHIFT {
                self.rebucket((self.shift + 2).min(MAX_SHIFT));
            } else if per_bucket > TARGET_PER_BUCKET.1 && self.shift > MIN_SHIFT {
                self.rebucket((self.shift - 2).max(MIN_SHIFT));
            }
            self.taken = (0, 0);
        }
    }
}

/// What [`PendingRecords::take_next_complete`] took.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Taken {
    /// A whole bucket: more may follow.
    Bucket,
    /// The complete part of the bucket the watermark splits: the last before it.
    Last,
    /// Nothing is complete.
    Nothing,
}

#[cfg(test)]
mod tests {
    use super::*;
    use timely::dataflow::operators::capture::Extract;
    use timely::dataflow::operators::{Capture, Probe};

    /// Emits the per-key sequence of times and, at each multiple of 100, a marker per key seen.
    struct Recorder {
        seen: std::collections::BTreeMap<u64, Vec<u64>>,
        next_tick: Option<u64>,
    }

    impl TimeOrderedProcessor<(u64, u64, u64)> for Recorder {
        type Output = (u64, u64, u64);
        fn on_record(&mut self, time: u64, r: (u64, u64, u64), out: &mut Emitter<'_, Self::Output>) {
            self.seen.entry(r.1).or_default().push(time);
            out.emit((time, r.1, r.2));
            let tick = (time / 100 + 1) * 100;
            if self.next_tick.is_none_or(|t| tick < t) {
                self.next_tick = Some(tick);
            }
        }
        fn next_timer(&self) -> Option<u64> {
            self.next_tick
        }
        fn on_timer(&mut self, time: u64, out: &mut Emitter<'_, Self::Output>) {
            out.emit((time, u64::MAX, self.seen.values().map(|v| v.len() as u64).sum()));
            self.next_tick = None;
        }
    }

    #[test]
    fn records_arrive_sorted_and_timers_interleave() {
        for workers in 1..=3 {
            let (tx, rx) = std::sync::mpsc::channel();
            let tx = std::sync::Mutex::new(tx);
            timely::execute(timely::Config::process(workers), move |worker| {
                let tx = tx.lock().map(|t| t.clone()).expect("lock");
                let mut input = timely::dataflow::InputHandleVec::<u64, (u64, u64, u64)>::new();
                let probe = worker.dataflow(|scope| {
                    let out = input.to_stream(scope).process_in_time_order(
                        "Recorder",
                        |r| r.1,
                        |r| (r.0, r.2),
                        Recorder { seen: Default::default(), next_tick: None },
                    );
                    out.clone().capture_into(tx);
                    out.probe().0
                });
                if worker.index() == 0 {
                    // out of order within each round, ties broken by the third field
                    for (round, times) in [[5u64, 3, 3, 50], [120, 101, 199, 150]].iter().enumerate() {
                        for (i, t) in times.iter().enumerate() {
                            input.send((*t, (i % 2) as u64, (10 - i) as u64));
                        }
                        input.advance_to((round as u64 + 1) * 100);
                        worker.step_while(|| probe.less_than(input.time()));
                    }
                }
            })
            .expect("timely runs");
            let mut got: Vec<_> = rx.extract().into_iter().flat_map(|(_, v)| v).collect();
            got.sort();
            let records: Vec<_> = got.iter().filter(|r| r.1 != u64::MAX).collect();
            assert_eq!(records.len(), 8, "workers {workers}");
            let markers: Vec<_> = got.iter().filter(|r| r.1 == u64::MAX).map(|r| r.0).collect();
            // One timer per worker that saw a key; the tick at 100 sees the first round only.
            assert!(markers.contains(&100), "workers {workers}: {markers:?}");
        }
    }
}
