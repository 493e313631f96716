//! Holding records back until the watermark passes a time of their own, then releasing them
//! together, at that time.
//!
//! A differential-dataflow collection whose updates carry a time far ahead of the stream (all
//! of a session's executions at the session's last nanosecond, say) is expensive to feed as it
//! streams: each arrangement's batcher keeps the future updates and sorts them again every time
//! the frontier moves, so the cost grows with the square of what is pending. Holding them in a
//! plain buffer and releasing each time's records in one message when the watermark has passed
//! it gives the arrangement one batch per time instead.
//!
//! A record whose time is earlier than the time it was sent at is released at the time it was
//! sent at (a capability cannot go back); within the crate-wide contract (event time not
//! earlier than the time sent), every record is released at exactly its own time.

use timely::dataflow::Stream;

use crate::FoldAt;

/// Extension trait: release records at a time of their own once the watermark has passed it.
pub trait ReleaseAt<'scope, D> {
    /// Each record at time `at(&record)` (or the time it was sent at, if later), in one message
    /// per time, once the input frontier has passed that time.
    ///
    /// # Examples
    /// ```
    /// use surveil_operators::ReleaseAt;
    /// use timely::dataflow::operators::capture::{Capture, Extract};
    /// use timely::dataflow::operators::ToStream;
    ///
    /// let out = timely::example(|scope| {
    ///     // (release time, value): everything goes out at 100 or 200.
    ///     vec![(100u64, 'a'), (200, 'b'), (100, 'c')].to_stream(scope).release_at("Sessions", |r| r.0).capture()
    /// });
    /// let released = out.extract();
    /// assert_eq!(released, vec![(100, vec![(100, 'a'), (100, 'c')]), (200, vec![(200, 'b')])]);
    /// ```
    fn release_at<F>(self, name: &str, at: F) -> Stream<'scope, u64, Vec<D>>
    where
        F: Fn(&D) -> u64 + 'static;
}

impl<'scope, D: Clone + 'static> ReleaseAt<'scope, D> for Stream<'scope, u64, Vec<D>> {
    fn release_at<F>(self, name: &str, at: F) -> Stream<'scope, u64, Vec<D>>
    where
        F: Fn(&D) -> u64 + 'static,
    {
        // Holding is folding into a list: the records go out as they were held.
        self.fold_at(name, at, |held: &mut Vec<D>, record| held.push(record), |held, out| *out = held)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::test_support::{Record, messages_in_rounds};

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Fed in rounds behind a watermark, every record comes out once, at its own time, and
        /// all of a time's records in one message.
        #[test]
        fn every_record_once_at_its_time(records in prop::collection::vec((0u64..50, 0u64..40, any::<u8>()), 0..60)) {
            let messages = messages_in_rounds(&records, |stream| stream.release_at("Test", |r: &Record| r.0 + r.1));
            let mut seen: Vec<(u64, Record)> =
                messages.iter().flat_map(|(t, d)| d.iter().map(move |r| (*t, *r))).collect();
            seen.sort();
            let mut expected: Vec<(u64, Record)> = records.iter().map(|r| (r.0 + r.1, *r)).collect();
            expected.sort();
            prop_assert_eq!(seen, expected);
            let mut times: Vec<u64> = messages.iter().filter(|(_, d)| !d.is_empty()).map(|(t, _)| *t).collect();
            times.sort();
            let mut distinct = times.clone();
            distinct.dedup();
            prop_assert_eq!(times, distinct, "one message per time");
        }
    }
}
