//! Runs the window operators over recorded input on several workers and collects what they
//! emit. Shared by the property tests of the window operators: the batch oracle in
//! `operators/tests/windows.rs` and the polars oracle in `oracles/tests/window_aggregates.rs`.

use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};

use surveil_operators::{Accumulator, EventTimeWindows, WindowChange, WindowOptions};
use timely::ExchangeData;
use timely::dataflow::operators::capture::{Capture, Event};

/// A test record: keyed, with an event time.
pub trait Keyed: ExchangeData + Copy + Sync {
    /// The window key.
    fn key(&self) -> u64;
    /// The event time.
    fn time(&self) -> u64;
}

/// Width, slide and allowed lateness of the windows under test (`slide == width`: tumbling).
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub width: u64,
    pub slide: u64,
    pub lateness: u64,
}

/// Window changes with the timestamp each was emitted at.
pub type Changes<O> = Vec<(u64, WindowChange<u64, O>)>;

/// Everything captured on `rx`, each item with its timestamp.
pub fn collect<C: IntoIterator>(rx: Receiver<Event<u64, C>>) -> Vec<(u64, C::Item)> {
    let mut out = Vec::new();
    for event in rx {
        if let Event::Messages(stamp, data) = event {
            let time = *stamp.expect_singleton();
            out.extend(data.into_iter().map(|d| (time, d)));
        }
    }
    out
}

/// Runs the operator on `workers` workers: the records `(send time, record)` go in in send-time
/// order, each worker sending every `workers`-th one, with `steps` worker steps after each
/// advance of the input. Returns the changes and the late records.
pub fn run<R, V, A>(
    workers: usize,
    steps: usize,
    records: &[(u64, R)],
    shape: Shape,
    factory: fn() -> A,
    value: fn(&R) -> V,
) -> (Changes<A::Output>, Vec<(u64, R)>)
where
    R: Keyed,
    V: 'static,
    A: Accumulator<V> + 'static,
    A::Output: Clone + PartialEq + Send + 'static,
{
    let mut records = records.to_vec();
    records.sort_by_key(|r| r.0);
    let records = Arc::new(records);
    let (tx, rx) = channel();
    let (late_tx, late_rx) = channel();
    let (tx, late_tx) = (Mutex::new(tx), Mutex::new(late_tx));
    timely::execute(timely::Config::process(workers), move |worker| {
        let tx = tx.lock().map(|t| t.clone()).expect("lock");
        let late_tx = late_tx.lock().map(|t| t.clone()).expect("lock");
        let mut input = timely::dataflow::InputHandleVec::<u64, R>::new();
        worker.dataflow(|scope| {
            let stream = input.to_stream(scope);
            let options = WindowOptions { allowed_lateness: shape.lateness };
            let key = |r: &R| r.key();
            let time = |r: &R| r.time();
            let windows = if shape.slide == shape.width {
                stream.tumbling_window("Tumbling", shape.width, key, time, value, factory, options)
            } else {
                stream.sliding_window("Sliding", shape.width, shape.slide, key, time, value, factory, options)
            };
            windows.output.capture_into(tx);
            windows.late.capture_into(late_tx);
        });
        let (index, peers) = (worker.index(), worker.peers());
        for (i, (sent, record)) in records.iter().enumerate() {
            if *sent > *input.time() {
                input.advance_to(*sent);
                for _ in 0..steps {
                    worker.step();
                }
            }
            if i % peers == index {
                input.send(*record);
            }
        }
    })
    .expect("timely runs");
    (collect(rx), collect(late_rx))
}
