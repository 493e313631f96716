//! Determinism of streaming isolation-forest scoring: the same output, to the bit, on 1, 2 and 4
//! workers with records arriving out of order, and the same as a sequential batch replay of the
//! per-record logic over the records sorted by `(time, tie_break)`.

use std::sync::mpsc::channel;
use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use surveil_operators::forest_scoring::{
    DriftRule, ForestScore, ForestScorer, ForestScoring, ForestScoringOptions, model_seed,
};
use surveil_operators::isolation_forest::{ForestParams, IsolationForest};
use surveil_operators::{Emitter, TimeOrderedProcessor};
use timely::dataflow::operators::capture::{Capture, Event};

/// (event time, group, id, features)
type Rec = (u64, u64, u64, [f64; 3]);

/// Records of `groups` groups; each group's level shifts halfway through, so drift retrains
/// fire, and a few vectors are far out. Ids are unique, so `(time, id)` pairs are distinct.
fn records(count: usize, groups: u64, seed: u64) -> Vec<Rec> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..count)
        .map(|i| {
            let time = rng.random_range(0..1_200u64);
            let group = rng.random_range(0..groups);
            let shift = if time > 600 { 3.0 } else { 0.0 };
            let mut v = [rng.random::<f64>() + shift, rng.random::<f64>(), rng.random::<f64>() * 2.0];
            if rng.random_range(0..50) == 0 {
                v[rng.random_range(0..3)] += 10.0;
            }
            (time, group, i as u64, v)
        })
        .collect()
}

fn options(seed: u64) -> ForestScoringOptions {
    ForestScoringOptions {
        forest: ForestParams { trees: 20, sample_size: 32, seed, ..ForestParams::default() },
        reservoir_capacity: 64,
        recency_horizon: Some(128),
        min_training: 40,
        retrain_every: Some(90),
        retrain_interval: Some(400),
        drift: Some(DriftRule { window: 16, threshold: 0.04 }),
        explain_above: Some(0.55),
        initial_model: None,
    }
}

fn features(r: &Rec, out: &mut Vec<f64>) {
    out.extend_from_slice(&r.3);
}

/// Scores as bits, so that comparisons are exact.
type Row = (u64, u64, u64, Option<u64>, u64, u64, Vec<u64>);

fn canonical(mut scored: Vec<ForestScore<Rec>>) -> Vec<Row> {
    scored.sort_by_key(|s| (s.group, s.record.0, s.record.2));
    scored
        .into_iter()
        .map(|s| {
            let bits = s.contributions.iter().map(|c| c.to_bits()).collect();
            (s.group, s.record.0, s.record.2, s.score.map(f64::to_bits), s.model_version, s.model_seed, bits)
        })
        .collect()
}

/// Runs the operator on `workers` workers. Records are sent in rounds of 100 time units, each
/// round shuffled and dealt round-robin to the workers, at the round's start time.
fn run(workers: usize, records: &[Rec], options: ForestScoringOptions) -> Vec<Row> {
    let mut rounds: Vec<Vec<Rec>> = vec![Vec::new(); 12];
    for r in records {
        rounds[(r.0 / 100) as usize].push(*r);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(workers as u64);
    for round in &mut rounds {
        for i in (1..round.len()).rev() {
            round.swap(i, rng.random_range(0..=i));
        }
    }
    let rounds = Arc::new(rounds);
    let (tx, rx) = channel();
    let tx = Mutex::new(tx);
    timely::execute(timely::Config::process(workers), move |worker| {
        let tx = tx.lock().map(|t| t.clone()).expect("lock");
        let mut input = timely::dataflow::InputHandleVec::<u64, Rec>::new();
        let options = options.clone();
        worker.dataflow(|scope| {
            input
                .to_stream(scope)
                .score_with_forest("Forest", |r: &Rec| r.1, |r: &Rec| (r.0, r.2), features, options)
                .capture_into(tx);
        });
        let (index, peers) = (worker.index(), worker.peers());
        for (round, batch) in rounds.iter().enumerate() {
            input.advance_to(round as u64 * 100);
            for (i, r) in batch.iter().enumerate() {
                if i % peers == index {
                    input.send(*r);
                }
            }
            worker.step();
        }
    })
    .expect("timely runs");
    let events = rx.iter().filter_map(|e| if let Event::Messages(_, v) = e { Some(v) } else { None });
    canonical(events.flatten().collect())
}

/// The batch replay: the same per-record logic over all records sorted by `(time, id)`.
fn replay(records: &[Rec], options: ForestScoringOptions) -> Vec<Row> {
    let mut sorted = records.to_vec();
    sorted.sort_by_key(|r| (r.0, r.2));
    let mut scorer = ForestScorer::new(options, |r: &Rec| r.1, features);
    let mut out = Vec::new();
    for r in sorted {
        scorer.on_record(r.0, r, &mut Emitter::new(r.0, &mut out));
    }
    canonical(out.into_iter().map(|(_, s)| s).collect())
}

#[test]
fn same_output_on_1_2_4_workers_and_in_batch_replay() {
    let records = records(3000, 4, 11);
    let expected = replay(&records, options(5));
    assert_eq!(expected.len(), records.len());
    for workers in [1, 2, 4] {
        assert!(run(workers, &records, options(5)) == expected, "{workers} workers differ from the replay");
    }
    // The schedule, the interval and drift all retrained: several versions per group, each
    // with the seed derived for it, and explanations on high scores.
    for group in 0..4 {
        let versions: Vec<u64> = expected.iter().filter(|r| r.0 == group).map(|r| r.4).collect();
        assert!(versions.windows(2).all(|w| w[0] <= w[1]));
        assert!(*versions.last().expect("records") >= 4, "group {group}: {:?}", versions.last());
    }
    for row in &expected {
        match row.3 {
            None => assert_eq!((row.4, row.5), (0, 0)),
            Some(bits) => {
                assert_eq!(row.5, model_seed(5, row.0, row.4));
                assert_eq!(!row.6.is_empty(), f64::from_bits(bits) >= 0.55);
            }
        }
    }
}

#[test]
fn drift_retrains_sooner_than_the_schedule() {
    let records = records(3000, 1, 12);
    let scheduled = ForestScoringOptions { drift: None, retrain_interval: None, ..options(5) };
    let with_drift = ForestScoringOptions { retrain_interval: None, ..options(5) };
    let last_version = |rows: Vec<Row>| rows.last().map_or(0, |r| r.4);
    assert!(last_version(replay(&records, with_drift)) > last_version(replay(&records, scheduled)));
}

#[test]
fn initial_model_scores_from_the_first_record_and_invalid_vectors_pass_unscored() {
    let train: Vec<f64> = records(500, 1, 13).iter().flat_map(|r| r.3).collect();
    let model =
        IsolationForest::fit(&train, 3, ForestParams { trees: 20, seed: 77, ..ForestParams::default() }).expect("fit");
    let loaded: IsolationForest =
        serde_json::from_str(&serde_json::to_string(&model).expect("serialise")).expect("deserialise");
    let options = ForestScoringOptions {
        initial_model: Some(Arc::new(loaded)),
        retrain_every: None,
        retrain_interval: None,
        drift: None,
        ..options(5)
    };
    let mut scorer = ForestScorer::new(
        options,
        |_: &(u64, Vec<f64>)| 0,
        |r: &(u64, Vec<f64>), out: &mut Vec<f64>| out.extend_from_slice(&r.1),
    );
    let mut out = Vec::new();
    let inputs = [(0u64, vec![0.5, 0.5, 1.0]), (1, vec![0.5, 0.5]), (2, vec![f64::NAN, 0.5, 1.0]), (3, vec![9.0; 3])];
    for r in inputs {
        scorer.on_record(r.0, r.clone(), &mut Emitter::new(r.0, &mut out));
    }
    let scores: Vec<_> = out.iter().map(|(_, s)| s.score).collect();
    assert_eq!(scores[0].map(f64::to_bits), Some(model.score(&[0.5, 0.5, 1.0]).to_bits()));
    assert_eq!(&scores[1..3], &[None, None]);
    assert!(scores[3].is_some_and(|s| s > 0.6));
    assert!(out.iter().all(|(_, s)| s.model_version == 0));
    assert_eq!(out[0].1.model_seed, 77);
}

#[test]
fn saved_models_score_to_the_same_bits() {
    let rows: Vec<f64> = records(800, 1, 14).iter().flat_map(|r| r.3).collect();
    let model = IsolationForest::fit(&rows, 3, ForestParams { seed: 3, ..ForestParams::default() }).expect("fit");
    let json = serde_json::to_string(&model).expect("serialise");
    assert!(json.contains("\"format_version\":1"));
    let loaded: IsolationForest = serde_json::from_str(&json).expect("deserialise");
    assert_eq!(loaded, model);
    let before = model.score_batch(&rows).expect("scores");
    let after = loaded.score_batch(&rows).expect("scores");
    assert!(before.iter().zip(&after).all(|(a, b)| a.to_bits() == b.to_bits()));
    assert!(
        serde_json::from_str::<IsolationForest>(&json.replace("\"format_version\":1", "\"format_version\":2")).is_err()
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    /// Any data, seed and worker count: the dataflow equals the replay.
    #[test]
    fn dataflow_equals_replay(seed in 0u64..1_000, groups in 1u64..4, count in 50usize..600, workers in 1usize..4) {
        let records = records(count, groups, seed);
        prop_assert!(run(workers, &records, options(seed)) == replay(&records, options(seed)));
    }
}
