//! A source fed from outside the dataflow while it runs (a live topic of reference changes, a
//! control channel), whose progress is set by the feeder.
//!
//! Reference data that changes during a live run cannot promise its event times the way a
//! recorded input does: a change may arrive at any moment, about any time. What the feeder can
//! say is how far the stream it belongs to has been read: no change read from now on will be
//! applied before that point. This source holds its capability there (`ahead`, raised at every
//! poll), emits each item at its own time or at `ahead` if that is later, and finishes when the
//! stream it follows (`leader`, probed) has finished. A consumer that waits for the source's
//! frontier to pass a record's time before answering it (as
//! [`crate::LookupAsOf::lookup_as_of`] does) then answers every record read so far at once and
//! never waits on the feed for longer than one poll.

use std::time::Duration;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::{ProbeHandle, Scope, Stream};

/// What the feeder has at one poll.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Feed<D> {
    /// New items, each with the time it applies from.
    pub items: Vec<(D, u64)>,
    /// No item given from now on applies before this time (it is raised to at least here).
    pub ahead: u64,
}

/// A source on every worker that polls `next` every `poll`, moves its frontier to the poll's
/// `ahead` or to `leader`'s frontier, whichever is later (never backwards), and emits each `(item, time)` at `time`, or at the frontier when
/// the item's own time is behind it; it finishes once `leader`'s frontier is empty. Every
/// worker must build it; on workers without a feeder (`next` is `None`) it holds nothing back
/// and emits nothing.
///
/// ```
/// use surveil_operators::feed_source::{Feed, feed_source};
/// use timely::dataflow::operators::capture::{Capture, Extract};
/// use timely::dataflow::operators::{Probe, ToStream};
/// use timely::dataflow::{ProbeHandle, Stream};
///
/// let out = timely::example(|scope| {
///     // The stream the feed follows: recorded events at times 5 and 20.
///     let leader = ProbeHandle::new();
///     let events: Stream<'_, u64, Vec<u64>> = vec![5u64, 20].to_stream(scope);
///     events.probe_with(&leader);
///     // One change about time 3, given when the stream has been read to time 10: it applies
///     // from 10, since records before 10 may have been answered already.
///     let mut polls = vec![Feed { items: vec![("link", 3)], ahead: 10 }].into_iter();
///     let next = move || polls.next().unwrap_or(Feed { items: Vec::new(), ahead: 10 });
///     feed_source(scope, "Changes", &leader, std::time::Duration::from_millis(1), Some(next))
///     .capture()
/// });
/// let items: Vec<(&str, u64)> = out.extract().into_iter().flat_map(|(_, items)| items).collect();
/// assert_eq!(items, vec![("link", 10)]);
/// ```
pub fn feed_source<'scope, D, F>(
    scope: Scope<'scope, u64>,
    name: &str,
    leader: &ProbeHandle<u64>,
    poll: Duration,
    next: Option<F>,
) -> Stream<'scope, u64, Vec<(D, u64)>>
where
    D: Clone + 'static,
    F: FnMut() -> Feed<D> + 'static,
{
    let mut builder = OperatorBuilder::new(name.to_owned(), scope);
    let info = builder.operator_info();
    let activator = scope.activator_for(info.address.clone());
    let (output, stream) = builder.new_output::<Vec<(D, u64)>>();
    let mut output = OutputBuilder::<_, CapacityContainerBuilder<Vec<(D, u64)>>>::from(output);
    let leader = leader.clone();
    builder.build(move |mut capabilities| {
        let mut capability = capabilities.pop().filter(|_| next.is_some());
        let mut next = next;
        move |_frontiers| {
            let (Some(held), Some(next)) = (capability.as_mut(), next.as_mut()) else { return };
            let Feed { items, ahead } = next();
            // Never behind the stream it follows: its records up to its frontier are complete.
            let ahead = leader.with_frontier(|f| f.first().copied()).map_or(ahead, |led| ahead.max(led));
            if ahead > *held.time() {
                held.downgrade(&ahead);
            }
            if !items.is_empty() {
                let mut handle = output.activate();
                for (item, time) in items {
                    let at = time.max(*held.time());
                    handle.session(&held.delayed(&at)).give((item, at));
                }
            }
            if leader.done() {
                // What it follows has finished: nothing more can be applied to it.
                capability = None;
                return;
            }
            activator.activate_after(poll);
        }
    });
    stream
}

#[cfg(test)]
mod tests {
    use timely::dataflow::InputHandle;
    use timely::dataflow::operators::Input;
    use timely::dataflow::operators::Probe;
    use timely::dataflow::operators::capture::{Capture, Extract};

    use super::*;

    #[test]
    fn the_frontier_follows_ahead_and_ends_with_the_leader() {
        let (items, frontiers) = timely::execute_directly(|worker| {
            let leader = ProbeHandle::new();
            let feed_probe = ProbeHandle::new();
            let mut input = InputHandle::<u64, CapacityContainerBuilder<Vec<u64>>>::new();
            let polls = std::rc::Rc::new(std::cell::RefCell::new(vec![
                Feed { items: vec![(1u32, 50u64)], ahead: 20 },
                Feed { items: vec![(2, 5)], ahead: 30 },
            ]));
            let feeder = polls.clone();
            let captured = worker.dataflow::<u64, _, _>(|scope| {
                scope.input_from(&mut input).probe_with(&leader);
                let next = move || {
                    let mut polls = feeder.borrow_mut();
                    if polls.is_empty() { Feed { items: Vec::new(), ahead: 30 } } else { polls.remove(0) }
                };
                feed_source(scope, "Feed", &leader, Duration::from_millis(1), Some(next))
                    .probe_with(&feed_probe)
                    .capture()
            });
            let mut frontiers = Vec::new();
            input.send(0u64);
            let started = std::time::Instant::now();
            while feed_probe.less_than(&30) && started.elapsed() < Duration::from_secs(10) {
                worker.step_or_park(Some(Duration::from_millis(1)));
            }
            frontiers.push(feed_probe.with_frontier(|f| f.to_vec()));
            input.advance_to(40);
            drop(input);
            while !feed_probe.done() {
                worker.step();
            }
            frontiers.push(feed_probe.with_frontier(|f| f.to_vec()));
            (captured, frontiers)
        });
        let mut got: Vec<(u32, u64)> = items.extract().into_iter().flat_map(|(_, items)| items).collect();
        got.sort();
        // The item about 5 came with the poll that put the feed ahead at 30: it applies from 30.
        assert_eq!(got, vec![(1, 50), (2, 30)]);
        assert_eq!(frontiers, vec![vec![30], vec![]]);
    }
}
