//! A copy of the few records a side branch needs, without copying the stream.
//!
//! A timely stream read by two operators hands each a copy of every message: a rule that needs
//! the trades of an event stream (a few percent of it) and connects to the stream pays for a
//! copy of all of it, only to drop most. [`Tap`] reads the stream once, passes every message on
//! as it came (moved, not copied) and clones only the records its predicate selects onto a
//! second stream, which any number of side operators can then share.

use timely::container::CapacityContainerBuilder;
use timely::dataflow::Stream;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;

/// The streams of [`Tap::tap`].
pub struct TapOutputs<'scope, D> {
    /// The input, passed through unchanged (moved, not copied).
    pub records: Stream<'scope, u64, Vec<D>>,
    /// A copy of the records the predicate selected, at their own times.
    pub selected: Stream<'scope, u64, Vec<D>>,
}

/// Extension trait: pass a stream on and copy out the records a side branch needs.
pub trait Tap<'scope, D> {
    /// Passes the records through and copies those for which `select` is true onto
    /// [`TapOutputs::selected`], in the same messages' times and order.
    ///
    /// Equivalent to reading the stream twice, once with a filter, at the cost of copying only
    /// the selected records.
    ///
    /// # Examples
    /// ```
    /// use timely::dataflow::operators::{Capture, ToStream};
    /// use timely::dataflow::operators::capture::Extract;
    /// use surveil_operators::Tap;
    ///
    /// let (all, even) = timely::example(|scope| {
    ///     let out = (0..10u64).to_stream(scope).tap("Even", |x| x % 2 == 0);
    ///     (out.records.capture(), out.selected.capture())
    /// });
    /// let all: Vec<u64> = all.extract().into_iter().flat_map(|(_, v)| v).collect();
    /// let even: Vec<u64> = even.extract().into_iter().flat_map(|(_, v)| v).collect();
    /// assert_eq!(all, (0..10).collect::<Vec<_>>());
    /// assert_eq!(even, vec![0, 2, 4, 6, 8]);
    /// ```
    fn tap<F>(self, name: &str, select: F) -> TapOutputs<'scope, D>
    where
        F: Fn(&D) -> bool + 'static;
}

impl<'scope, D: Clone + 'static> Tap<'scope, D> for Stream<'scope, u64, Vec<D>> {
    fn tap<F>(self, name: &str, select: F) -> TapOutputs<'scope, D>
    where
        F: Fn(&D) -> bool + 'static,
    {
        let mut builder = OperatorBuilder::new(name.to_owned(), self.scope());
        let mut input = builder.new_input(self, Pipeline);
        let (records_out, records) = builder.new_output::<Vec<D>>();
        let (selected_out, selected) = builder.new_output::<Vec<D>>();
        let mut records_out = OutputBuilder::<_, CapacityContainerBuilder<Vec<D>>>::from(records_out);
        let mut selected_out = OutputBuilder::<_, CapacityContainerBuilder<Vec<D>>>::from(selected_out);
        builder.build(move |_initial| {
            // Capabilities come with the input's messages; nothing is held.
            let mut chosen: Vec<D> = Vec::new();
            move |_frontiers| {
                let mut records_out = records_out.activate();
                let mut selected_out = selected_out.activate();
                input.for_each(|cap, data| {
                    chosen.extend(data.iter().filter(|r| select(r)).cloned());
                    if !chosen.is_empty() {
                        selected_out.session(&cap).give_container(&mut chosen);
                        chosen.clear();
                    }
                    records_out.session(&cap).give_container(data);
                });
            }
        });
        TapOutputs { records, selected }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use proptest::prelude::*;
    use timely::dataflow::InputHandleVec;
    use timely::dataflow::operators::Inspect;

    use super::*;

    /// Records with the times they came out at.
    type Stamped = Vec<(u64, u32)>;

    /// Runs `batches` (time, records; in time order) through a tap selecting multiples of three
    /// on `workers` workers (each worker sends every batch whose index is its own modulo the
    /// peers) and
    /// returns what came out of each output, as (time, record), sorted.
    fn run(batches: Vec<(u64, Vec<u32>)>, workers: usize) -> (Stamped, Stamped) {
        let all = Arc::new(Mutex::new(Vec::new()));
        let chosen = Arc::new(Mutex::new(Vec::new()));
        let (all_sink, chosen_sink) = (all.clone(), chosen.clone());
        timely::execute(timely::Config::process(workers), move |worker| {
            let (all_sink, chosen_sink) = (all_sink.clone(), chosen_sink.clone());
            let (index, peers) = (worker.index(), worker.peers());
            let mut input = InputHandleVec::<u64, u32>::new();
            worker.dataflow(|scope| {
                let out = input.to_stream(scope).tap("Threes", |x| x % 3 == 0);
                out.records.inspect_core(move |event| {
                    if let Ok((stamp, records)) = event {
                        let time = stamp.iter().next().copied().unwrap_or_default();
                        all_sink.lock().expect("sink").extend(records.iter().map(|r| (time, *r)));
                    }
                });
                out.selected.inspect_core(move |event| {
                    if let Ok((stamp, records)) = event {
                        let time = stamp.iter().next().copied().unwrap_or_default();
                        chosen_sink.lock().expect("sink").extend(records.iter().map(|r| (time, *r)));
                    }
                });
            });
            for (k, (time, records)) in batches.iter().enumerate() {
                if k % peers == index {
                    input.advance_to(*time);
                    for r in records {
                        input.send(*r);
                    }
                }
            }
        })
        .expect("timely");
        let mut all = all.lock().expect("all").clone();
        let mut chosen = chosen.lock().expect("chosen").clone();
        all.sort_unstable();
        chosen.sort_unstable();
        (all, chosen)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// Against the batch answer: every record once on the pass-through, and exactly the
        /// selected ones, at their own times, on the side, on one worker and on three.
        #[test]
        fn passes_everything_and_copies_exactly_the_selected(
            batches in proptest::collection::vec((0u64..50, proptest::collection::vec(0u32..100, 0..20)), 0..20),
            workers in 1usize..=3,
        ) {
            let mut batches = batches;
            batches.sort_by_key(|(t, _)| *t);
            let mut expected: Vec<(u64, u32)> =
                batches.iter().flat_map(|(time, records)| records.iter().map(move |r| (*time, *r))).collect();
            expected.sort_unstable();
            let threes: Vec<(u64, u32)> = expected.iter().copied().filter(|(_, r)| r % 3 == 0).collect();
            let (all, chosen) = run(batches, workers);
            prop_assert_eq!(all, expected);
            prop_assert_eq!(chosen, threes);
        }
    }
}
