//! Folding records into one accumulator per time of their own, handed on once the watermark has
//! passed that time.
//!
//! Some consumers need a time's records only in summary: a session's low and high price, counts
//! per price level. Holding every record until its time (as [`crate::ReleaseAt`] does) costs
//! memory in proportion to the records; folding each into its time's accumulator as it arrives
//! costs only the summary's size, however long the session. The summary goes out in one message
//! at its time, so a differential arrangement downstream receives one batch per time.
//!
//! A record whose time is earlier than the time it was sent at is folded at the time it was sent
//! at (a capability cannot go back).

use std::collections::BTreeMap;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::Stream;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::{Capability, Operator};

/// Extension trait: fold records into an accumulator per time of their own, and hand each
/// accumulator's output on once the input frontier has passed its time.
pub trait FoldAt<'scope, D> {
    /// Folds each record into the accumulator of time `at(&record)` (or the time it was sent
    /// at, if later) with `fold`; once the input frontier has passed a time, `finish` turns its
    /// accumulator into records, sent in one message at that time.
    ///
    /// # Examples
    /// ```
    /// use surveil_operators::FoldAt;
    /// use timely::dataflow::operators::capture::{Capture, Extract};
    /// use timely::dataflow::operators::ToStream;
    ///
    /// // (session end, price): each session's low and high, at the session's end.
    /// let out = timely::example(|scope| {
    ///     vec![(100u64, 7i64), (200, 3), (100, 9), (100, 8)]
    ///         .to_stream(scope)
    ///         .fold_at(
    ///             "Range",
    ///             |r| r.0,
    ///             |range: &mut Option<(i64, i64)>, (_, price)| {
    ///                 *range = Some(range.map_or((price, price), |(lo, hi)| (lo.min(price), hi.max(price))));
    ///             },
    ///             |range, out| out.extend(range),
    ///         )
    ///         .capture()
    /// });
    /// assert_eq!(out.extract(), vec![(100, vec![(7, 9)]), (200, vec![(3, 3)])]);
    /// ```
    fn fold_at<A, O, F, G, H>(self, name: &str, at: F, fold: G, finish: H) -> Stream<'scope, u64, Vec<O>>
    where
        A: Default + 'static,
        O: Clone + 'static,
        F: Fn(&D) -> u64 + 'static,
        G: FnMut(&mut A, D) + 'static,
        H: FnMut(A, &mut Vec<O>) + 'static;
}

impl<'scope, D: 'static> FoldAt<'scope, D> for Stream<'scope, u64, Vec<D>> {
    fn fold_at<A, O, F, G, H>(self, name: &str, at: F, mut fold: G, mut finish: H) -> Stream<'scope, u64, Vec<O>>
    where
        A: Default + 'static,
        O: Clone + 'static,
        F: Fn(&D) -> u64 + 'static,
        G: FnMut(&mut A, D) + 'static,
        H: FnMut(A, &mut Vec<O>) + 'static,
    {
        self.unary_frontier::<CapacityContainerBuilder<Vec<O>>, _, _, _>(Pipeline, name, move |_initial, _info| {
            let mut held: BTreeMap<u64, (Capability<u64>, A)> = BTreeMap::new();
            let mut finished: Vec<O> = Vec::new();
            move |(input, frontier), output| {
                let port = output.output_index();
                input.for_each_stamp(|cap, data| {
                    // A message without a time makes no claim: its records are folded and
                    // handed on with it.
                    let Some(&sent) = cap.least() else {
                        let mut accumulator = A::default();
                        for batch in data {
                            for record in batch.drain(..) {
                                fold(&mut accumulator, record);
                            }
                        }
                        finish(accumulator, &mut finished);
                        if !finished.is_empty() {
                            output.session(&cap).give_container(&mut finished);
                        }
                        finished.clear();
                        return;
                    };
                    for batch in data {
                        for record in batch.drain(..) {
                            let time = at(&record).max(sent);
                            let (_, accumulator) =
                                held.entry(time).or_insert_with(|| (cap.delayed(&time, port), A::default()));
                            fold(accumulator, record);
                        }
                    }
                });
                while let Some(entry) = held.first_entry() {
                    if frontier.less_equal(entry.key()) {
                        break;
                    }
                    let (cap, accumulator) = entry.remove();
                    finish(accumulator, &mut finished);
                    if !finished.is_empty() {
                        output.session(&cap).give_container(&mut finished);
                    }
                    finished.clear();
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::test_support::{Record, messages_in_rounds};

    /// A time's fold: (time, sum of values, records).
    type Folded = (u64, u64, u64);

    fn fold(acc: &mut Folded, r: Record) {
        *acc = (r.0 + r.1, acc.1 + u64::from(r.2), acc.2 + 1);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Fed in rounds behind a watermark, each time's sum and count come out once, at that
        /// time, equal to a batch fold of the same records.
        #[test]
        fn each_time_folds_once_like_a_batch(records in prop::collection::vec((0u64..50, 0u64..40, any::<u8>()), 0..60)) {
            let messages = messages_in_rounds(&records, |stream| {
                stream.fold_at("Test", |r: &Record| r.0 + r.1, fold, |acc, out| out.push(acc))
            });
            // The batch oracle: every record folded at its own time.
            let mut expected: BTreeMap<u64, Folded> = BTreeMap::new();
            for r in &records {
                fold(expected.entry(r.0 + r.1).or_default(), *r);
            }
            let mut seen: Vec<(u64, Folded)> =
                messages.iter().flat_map(|(t, d)| d.iter().map(move |r| (*t, *r))).collect();
            seen.sort();
            prop_assert_eq!(seen, expected.into_iter().collect::<Vec<_>>());
        }
    }
}
