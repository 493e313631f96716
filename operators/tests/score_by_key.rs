//! Property test of `ScoreByKey` against a batch oracle: per key, the scorer applied to the
//! values sorted by `(event time, tie_break)` must give exactly the streamed scores, for 1 to 4
//! workers and any arrival order.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::mpsc::channel;

use proptest::prelude::*;
use surveil_operators::{Ensemble, EwmaZ, RobustZ, ScoreByKey, Scored, Scorer, WindowedGaussian};
use timely::dataflow::InputHandleVec;
use timely::dataflow::operators::capture::{Capture, Event};
use timely::dataflow::operators::{Input, Probe};

/// (key, event time, id, value)
type Rec = (u64, u64, u64, f64);

fn scorer(kind: u8, key: u64) -> Box<dyn Scorer> {
    match kind {
        0 => Box::new(EwmaZ::new(0.1, 3)),
        1 => Box::new(RobustZ::new(5 + key as usize % 3, 2)),
        2 => Box::new(WindowedGaussian::new(8, 3)),
        _ => Box::new(Ensemble::default()),
    }
}

/// Streams `records` (each sent at `send` time <= its event time, in the given order) through
/// `score_by_key` on `workers` workers.
fn run(workers: usize, kind: u8, records: Vec<(u64, Rec)>) -> BTreeMap<u64, Scored> {
    let (tx, rx) = channel();
    let tx = Mutex::new(tx);
    let records = std::sync::Arc::new(records);
    timely::execute(timely::Config::process(workers), move |worker| {
        let tx = tx.lock().map(|t| t.clone()).expect("sender");
        let mut input = InputHandleVec::<u64, Rec>::new();
        let probe = worker.dataflow(|scope| {
            let scored = scope.input_from(&mut input).score_by_key(
                "Score",
                |r: &Rec| r.0,
                |r: &Rec| (r.1, r.2),
                |r: &Rec| r.3,
                move |key| scorer(kind, key),
            );
            scored.clone().capture_into(tx);
            scored.probe().0
        });
        // Every worker sends its share, in rounds of increasing send time.
        let mut rounds: BTreeMap<u64, Vec<Rec>> = BTreeMap::new();
        for (i, (send, rec)) in records.iter().enumerate() {
            if i % worker.peers() == worker.index() {
                rounds.entry(*send).or_default().push(*rec);
            }
        }
        for (send, recs) in rounds {
            input.advance_to(send);
            for r in recs {
                input.send(r);
            }
            worker.step();
        }
        drop(input);
        worker.step_while(|| !probe.done());
    })
    .expect("timely runs");
    let mut out = BTreeMap::new();
    for event in rx {
        if let Event::Messages(_, batch) = event {
            for (rec, scored) in batch {
                assert!(out.insert(rec.2, scored).is_none(), "record {} scored twice", rec.2);
            }
        }
    }
    out
}

fn oracle(kind: u8, records: &[(u64, Rec)]) -> BTreeMap<u64, Scored> {
    let mut by_key: BTreeMap<u64, Vec<Rec>> = BTreeMap::new();
    for (_, r) in records {
        by_key.entry(r.0).or_default().push(*r);
    }
    let mut out = BTreeMap::new();
    for (key, mut recs) in by_key {
        recs.sort_by_key(|r| (r.1, r.2));
        let mut s = scorer(kind, key);
        for r in recs {
            out.insert(r.2, s.observe(r.3));
        }
    }
    out
}

fn input() -> impl Strategy<Value = Vec<(u64, Rec)>> {
    proptest::collection::vec((0u64..4, 0u64..60, 0u64..30, -20i32..20), 0..80).prop_map(|raw| {
        raw.into_iter()
            .enumerate()
            .map(|(id, (key, time, lag, value))| {
                let spike = if id % 17 == 5 { 300.0 } else { 0.0 };
                (time.saturating_sub(lag), (key, time, id as u64, f64::from(value) + spike))
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn matches_batch_oracle(workers in 1usize..=4, kind in 0u8..4, records in input()) {
        let expected = oracle(kind, &records);
        let got = run(workers, kind, records);
        prop_assert_eq!(got, expected);
    }
}

#[test]
fn non_finite_values_are_scored_zero_and_skipped() {
    let records = vec![(0, (1, 1, 0, 1.0)), (0, (1, 2, 1, f64::NAN)), (0, (1, 3, 2, 2.0)), (0, (1, 4, 3, 1.5))];
    let got = run(2, 0, records.clone());
    assert_eq!(got[&1].score, 0.0);
    assert_eq!(got, oracle(0, &records));
}
