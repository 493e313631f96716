//! The end of a finite input, in event time.
//!
//! Event-time timers fire when the watermark passes them, and when an input ends its frontier
//! empties, which passes every timer at once. For a timer that stands for "nobody acted by
//! then" (a deadline), firing at the end of a recorded day would report something that never
//! happened: the recording simply stopped. This operator tells every worker where a finite
//! input ended, so that keyed logic downstream can tell a deadline the data passed from one the
//! data never reached.

use timely::container::CapacityContainerBuilder;
use timely::dataflow::Stream;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;

/// One worker's report that its share of an input has ended, addressed to one worker.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct EndOfInput {
    /// The worker this copy is for: an exchange keyed by it delivers one copy to every worker.
    pub to: usize,
    /// The latest event time the reporting worker saw, if it saw any record.
    pub last_time: Option<u64>,
}

/// The streams of [`LastTime::last_time`].
pub struct LastTimeOutputs<'scope, D> {
    /// The input, passed through unchanged (moved, not copied).
    pub records: Stream<'scope, u64, Vec<D>>,
    /// The announcements, when the input ends.
    pub ends: Stream<'scope, u64, Vec<EndOfInput>>,
}

/// Extension trait: announce where each worker's share of a finite input ended.
pub trait LastTime<'scope, D> {
    /// Passes the records through and, when the input is complete, emits on each worker one
    /// [`EndOfInput`] for every worker (`to` = 0..peers) carrying the latest `time_of(record)`
    /// this worker saw. The announcement travels at the last input frontier before the end:
    /// for a source whose watermark trails its data (as [`crate::partitioned_source`]'s does,
    /// by the out-of-order bound), that is no later than the latest time any worker saw, so a
    /// time-ordered consumer can order the announcement by its `last_time`.
    ///
    /// Downstream, a consumer that keys by `to` gets `peers` announcements per input; the
    /// maximum of their `last_time`s is where the input ended, the same on any number of
    /// workers. Use it on inputs that end (files, replays); on a live feed it only passes the
    /// records through.
    ///
    /// # Examples
    /// ```
    /// use timely::dataflow::operators::{Capture, ToStream};
    /// use timely::dataflow::operators::capture::Extract;
    /// use surveil_operators::{EndOfInput, LastTime};
    ///
    /// let (records, ends) = timely::example(|scope| {
    ///     let out = vec![(5u64, "a"), (42, "b"), (17, "c")].to_stream(scope).last_time(|r| r.0);
    ///     (out.records.capture(), out.ends.capture())
    /// });
    /// assert_eq!(records.extract().into_iter().flat_map(|(_, v)| v).count(), 3);
    /// let ends: Vec<EndOfInput> = ends.extract().into_iter().flat_map(|(_, v)| v).collect();
    /// assert_eq!(ends, vec![EndOfInput { to: 0, last_time: Some(42) }]);
    /// ```
    fn last_time<F>(self, time_of: F) -> LastTimeOutputs<'scope, D>
    where
        F: Fn(&D) -> u64 + 'static;
}

impl<'scope, D: 'static> LastTime<'scope, D> for Stream<'scope, u64, Vec<D>> {
    fn last_time<F>(self, time_of: F) -> LastTimeOutputs<'scope, D>
    where
        F: Fn(&D) -> u64 + 'static,
    {
        let peers = self.scope().peers();
        let mut builder = OperatorBuilder::new("LastTime".to_owned(), self.scope());
        let mut input = builder.new_input(self, Pipeline);
        let (records_out, records) = builder.new_output::<Vec<D>>();
        let (ends_out, ends) = builder.new_output::<Vec<EndOfInput>>();
        let mut records_out = OutputBuilder::<_, CapacityContainerBuilder<Vec<D>>>::from(records_out);
        let mut ends_out = OutputBuilder::<_, CapacityContainerBuilder<Vec<EndOfInput>>>::from(ends_out);
        builder.build(move |initial| {
            // Only the announcements' capability is kept; records go out under their own.
            let mut held: Option<Capability<u64>> = initial.into_iter().nth(1);
            let mut latest: Option<u64> = None;
            move |frontiers| {
                let mut records_out = records_out.activate();
                let mut ends_out = ends_out.activate();
                input.for_each(|cap, data| {
                    if let Some(t) = data.iter().map(&time_of).max() {
                        latest = Some(latest.map_or(t, |l| l.max(t)));
                    }
                    records_out.session(&cap).give_container(data);
                });
                let Some(cap) = held.as_mut() else { return };
                match frontiers[0].frontier().first() {
                    // Follow the input: holding the announcement back behind it would hold back
                    // everything downstream that waits for it, and a source paced by that
                    // (an in-flight bound) would wait forever.
                    Some(&watermark) => {
                        if watermark > *cap.time() {
                            cap.downgrade(&watermark);
                        }
                    }
                    None => {
                        let mut ends: Vec<EndOfInput> =
                            (0..peers).map(|to| EndOfInput { to, last_time: latest }).collect();
                        ends_out.session(&*cap).give_container(&mut ends);
                        held = None;
                    }
                }
            }
        });
        LastTimeOutputs { records, ends }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use timely::dataflow::InputHandleVec;
    use timely::dataflow::operators::Inspect;

    #[test]
    fn every_worker_hears_every_end_and_the_maximum_is_the_same_on_any_layout() {
        for workers in 1..=3 {
            let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let sink = seen.clone();
            timely::execute(timely::Config::process(workers), move |worker| {
                let sink = sink.clone();
                let index = worker.index();
                let mut input = InputHandleVec::<u64, u64>::new();
                worker.dataflow(|scope| {
                    input.to_stream(scope).last_time(|t| *t).ends.inspect_core(move |event| {
                        if let Ok((stamp, ends)) = event {
                            let time = stamp.iter().next().copied().unwrap_or_default();
                            for end in ends {
                                sink.lock().expect("sink").push((index, time, *end));
                            }
                        }
                    });
                });
                // Worker i sends times i*10 .. i*10+3 (worker 0 sends nothing on 3 workers).
                if !(workers == 3 && index == 0) {
                    for t in 0..4 {
                        input.advance_to(index as u64 * 10 + t);
                        input.send(index as u64 * 10 + t);
                    }
                }
            })
            .expect("timely");
            let seen = seen.lock().expect("seen").clone();
            assert_eq!(seen.len(), workers * workers, "one announcement per pair of workers");
            let max = seen.iter().filter_map(|(_, _, e)| e.last_time).max();
            assert_eq!(max, Some((workers as u64 - 1) * 10 + 3));
            for (_, time, _) in &seen {
                assert!(max.is_some_and(|m| *time <= m), "travels no later than the input's end");
            }
        }
    }
}
