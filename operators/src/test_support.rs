//! What the operators' own tests share.

use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::capture::{Capture, Event as CaptureEvent};
use timely::dataflow::operators::{Input, Probe};
use timely::dataflow::{InputHandle, Stream};

/// A test record: (sent, offset, value), sent at `sent`, with a time of its own at
/// `sent + offset`.
pub(crate) type Record = (u64, u64, u8);

/// Sends each of `records` at its round (0 to 49), advancing the input after each round, through
/// the operator `build` puts on the stream, and returns what came out: each message with its time.
pub(crate) fn messages_in_rounds<O, F>(records: &[Record], build: F) -> Vec<(u64, Vec<O>)>
where
    O: Clone + Send + 'static,
    F: for<'scope> FnOnce(Stream<'scope, u64, Vec<Record>>) -> Stream<'scope, u64, Vec<O>> + Send + Sync + 'static,
{
    let records = records.to_vec();
    let out = timely::execute_directly(move |worker| {
        let mut input = InputHandle::<u64, CapacityContainerBuilder<Vec<Record>>>::new();
        let (probe, out) = worker.dataflow::<u64, _, _>(|scope| {
            let (probe, stream) = build(scope.input_from(&mut input)).probe();
            (probe, stream.capture())
        });
        for round in 0..50u64 {
            for r in records.iter().filter(|r| r.0 == round) {
                input.send(*r);
            }
            input.advance_to(round + 1);
            worker.step();
        }
        drop(input);
        while !probe.done() {
            worker.step();
        }
        out
    });
    out.try_iter()
        .filter_map(|event| match event {
            CaptureEvent::Messages(stamp, data) => Some((*stamp.expect_singleton(), data)),
            CaptureEvent::Progress(_) => None,
        })
        .collect()
}
