//! Streaming isolation-forest scoring: every feature vector scored as it arrives, by a forest
//! trained on a reservoir sample of the vectors before it and retrained on a schedule or on drift.
//!
//! # Semantics
//!
//! Records are partitioned into *groups* by `group(record)` (one model per group; use a
//! constant for one model over the stream). Each group is owned by one worker and sees its
//! records in `(event time, tie_break)` order, through [`ProcessInTimeOrder`]. For each record:
//!
//! 1. `features(record, &mut buffer)` writes its feature vector. The first vector fixes the
//!    group's dimension; a vector of another length, or holding NaN or an infinity, is emitted
//!    with `score: None` and otherwise ignored.
//! 2. The vector is scored by the group's current model (`None` before the first model) and
//!    emitted as a [`ForestScore`] with the model's version and seed; when the score reaches
//!    [`explain_above`](ForestScoringOptions::explain_above), with per-feature contributions
//!    ([`IsolationForest::explain`]). Scoring comes first, so a vector never scores against a
//!    model that has seen it.
//! 3. The vector is offered to the group's reservoir: Algorithm R with ChaCha8, where the
//!    replacement probability `capacity / min(seen, recency_horizon)` stops falling once the
//!    horizon is reached, so each stored vector is replaced after about `recency_horizon` newer
//!    vectors and the sample stays recent (without a horizon it is uniform over all history).
//! 4. A model is trained on the reservoir when there is none and the reservoir holds
//!    `min_training` vectors, and retrained when `retrain_every` vectors or `retrain_interval`
//!    of event time have passed since the last training, or on drift: after each block of
//!    `drift.window` scored vectors, if the block's mean score differs from the model's
//!    baseline (the mean score of its own training reservoir, or of the first block for a
//!    model given in the options) by more than `drift.threshold`. The new model scores from the
//!    next record on; versions count the models trained in the group (0: the initial model, or
//!    none yet).
//!
//! # Determinism
//!
//! A group's output depends only on its records in `(time, tie_break)` order and the options:
//! the reservoir's generator is seeded from `(seed, group)` and the forest of version `v` from
//! `(seed, group, v)`. Records of a group must have distinct `(time, tie_break)` pairs. The
//! output is therefore the same on 1 or many workers and the same as running a
//! [`ForestScorer`] over the sorted records outside a dataflow (a batch replay).
//!
//! State per group: the reservoir (`capacity × dims` floats) and one model.
//!
//! [`ProcessInTimeOrder`]: crate::ProcessInTimeOrder

use std::collections::HashMap;
use std::sync::Arc;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use timely::ExchangeData;
use timely::dataflow::Stream;

use crate::in_time_order::{Emitter, ProcessInTimeOrder, TimeOrderedProcessor};
use crate::isolation_forest::{ForestParams, IsolationForest};
use crate::reservoir::Reservoir;
use crate::routing::route;

/// A scored record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ForestScore<D> {
    /// The record, unchanged.
    pub record: D,
    /// Its group.
    pub group: u64,
    /// The anomaly score in `(0, 1]`; `None` before the group's first model or for an invalid
    /// vector.
    pub score: Option<f64>,
    /// Models trained in the group before this record (0: the initial model, or none yet).
    pub model_version: u64,
    /// Seed of the model that scored the record (0 when unscored).
    pub model_seed: u64,
    /// Per-feature contributions (they sum to `1 + log2(score)`), when the score reached
    /// [`ForestScoringOptions::explain_above`]; empty otherwise.
    pub contributions: Vec<f64>,
}

/// Retraining on drift of the mean score.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct DriftRule {
    /// Scored vectors per block compared with the baseline.
    pub window: usize,
    /// Largest tolerated difference between a block's mean score and the baseline.
    pub threshold: f64,
}

/// Options of [`ForestScoring::score_with_forest`].
#[derive(Clone, Debug)]
pub struct ForestScoringOptions {
    /// Forest parameters; `forest.seed` is the base seed of every group's draws.
    pub forest: ForestParams,
    /// Vectors kept per group for training.
    pub reservoir_capacity: usize,
    /// Bounds the age of the reservoir's vectors (see the [module documentation](self));
    /// `None` samples uniformly from the whole history. Values below the capacity count as the
    /// capacity.
    pub recency_horizon: Option<u64>,
    /// Vectors needed in the reservoir before the first training (at least 2).
    pub min_training: usize,
    /// Retrain after this many vectors since the last training.
    pub retrain_every: Option<u64>,
    /// Retrain after this much event time since the last training.
    pub retrain_interval: Option<u64>,
    /// Retrain when the mean score drifts.
    pub drift: Option<DriftRule>,
    /// Attach contributions to records scoring at least this much.
    pub explain_above: Option<f64>,
    /// A model to score with from the first record (for example, loaded from a file); it must
    /// have the groups' dimension, or its scores are `None` until the first training.
    pub initial_model: Option<Arc<IsolationForest>>,
}

impl Default for ForestScoringOptions {
    /// 100 trees of 256, a 2,048-vector reservoir with a 20,480-vector horizon, first training
    /// at 256 vectors, retraining every 2,048 vectors or when a 256-vector block's mean score
    /// moves by 0.05; explanations above 0.6.
    fn default() -> Self {
        ForestScoringOptions {
            forest: ForestParams::default(),
            reservoir_capacity: 2048,
            recency_horizon: Some(20_480),
            min_training: 256,
            retrain_every: Some(2048),
            retrain_interval: None,
            drift: Some(DriftRule { window: 256, threshold: 0.05 }),
            explain_above: Some(0.6),
            initial_model: None,
        }
    }
}

/// SplitMix64's finaliser: spreads seeds so that nearby inputs give unrelated streams.
fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The seed of version `version` of group `group`'s forest.
pub fn model_seed(base_seed: u64, group: u64, version: u64) -> u64 {
    mix(mix(base_seed, group), version)
}

/// One group's reservoir, model and retraining clocks.
struct Group {
    dims: Option<usize>,
    reservoir: Reservoir,
    rng: ChaCha8Rng,
    model: Option<Arc<IsolationForest>>,
    version: u64,
    trained_seen: u64,
    trained_time: u64,
    baseline: Option<f64>,
    block_sum: f64,
    block_len: usize,
}

/// The per-record logic of [`ForestScoring::score_with_forest`] as a [`TimeOrderedProcessor`],
/// public so that a batch replay can run it over sorted records outside a dataflow.
pub struct ForestScorer<G, F> {
    options: ForestScoringOptions,
    group: G,
    features: F,
    groups: HashMap<u64, Group>,
    buffer: Vec<f64>,
}

impl<G, F> ForestScorer<G, F> {
    /// A scorer with no state yet; see [`ForestScoring::score_with_forest`] for the arguments.
    pub fn new(options: ForestScoringOptions, group: G, features: F) -> Self {
        ForestScorer { options, group, features, groups: HashMap::new(), buffer: Vec::new() }
    }

    /// The model currently scoring `group`, if any.
    pub fn model(&self, group: u64) -> Option<&Arc<IsolationForest>> {
        self.groups.get(&group).and_then(|g| g.model.as_ref())
    }
}

impl ForestScoringOptions {
    fn new_group(&self, group: u64) -> Group {
        let mut rng = ChaCha8Rng::seed_from_u64(mix(self.forest.seed, group));
        rng.set_stream(u64::MAX);
        Group {
            dims: self.initial_model.as_ref().map(|m| m.dims()),
            reservoir: Reservoir::new(self.reservoir_capacity.max(2), self.recency_horizon),
            rng,
            model: self.initial_model.clone(),
            version: 0,
            trained_seen: 0,
            trained_time: 0,
            baseline: None,
            block_sum: 0.0,
            block_len: 0,
        }
    }
}

impl Group {
    /// Fits the next version on the reservoir; on failure (cannot happen with finite vectors
    /// and at least two of them) the current model stays.
    fn train(&mut self, group: u64, time: u64, options: &ForestScoringOptions, dims: usize) {
        let version = self.version + 1;
        let params = ForestParams { seed: model_seed(options.forest.seed, group, version), ..options.forest };
        if let Ok(model) = IsolationForest::fit(self.reservoir.vectors(), dims, params) {
            let scores = model.score_batch(self.reservoir.vectors()).unwrap_or_default();
            self.baseline = (!scores.is_empty()).then(|| scores.iter().sum::<f64>() / scores.len() as f64);
            self.model = Some(Arc::new(model));
            self.version = version;
        }
        self.trained_seen = self.reservoir.seen();
        self.trained_time = time;
        self.block_sum = 0.0;
        self.block_len = 0;
    }
}

impl<D, G, F> TimeOrderedProcessor<D> for ForestScorer<G, F>
where
    G: Fn(&D) -> u64,
    F: Fn(&D, &mut Vec<f64>),
{
    type Output = ForestScore<D>;

    fn on_record(&mut self, time: u64, record: D, output: &mut Emitter<'_, Self::Output>) {
        let options = &self.options;
        let group_id = (self.group)(&record);
        self.buffer.clear();
        (self.features)(&record, &mut self.buffer);
        let vector = &self.buffer[..];
        let group = self.groups.entry(group_id).or_insert_with(|| options.new_group(group_id));
        let dims = *group.dims.get_or_insert(vector.len());
        let valid = vector.len() == dims && dims > 0 && vector.iter().all(|v| v.is_finite());

        let model = group.model.as_ref().filter(|m| valid && m.dims() == dims);
        let score = model.map(|m| m.score(vector));
        let contributions = match (model, score, options.explain_above) {
            (Some(m), Some(s), Some(above)) if s >= above => m.explain(vector),
            _ => Vec::new(),
        };
        output.emit(ForestScore {
            record,
            group: group_id,
            score,
            model_version: group.version,
            model_seed: model.map_or(0, |m| m.params().seed),
            contributions,
        });
        if !valid {
            return;
        }

        let mut drifted = false;
        if let (Some(rule), Some(score)) = (options.drift, score) {
            group.block_sum += score;
            group.block_len += 1;
            if group.block_len >= rule.window.max(1) {
                let mean = group.block_sum / group.block_len as f64;
                match group.baseline {
                    Some(baseline) => drifted = (mean - baseline).abs() > rule.threshold,
                    None => group.baseline = Some(mean),
                }
                group.block_sum = 0.0;
                group.block_len = 0;
            }
        }

        group.reservoir.offer(vector, &mut group.rng);

        if group.reservoir.len() < options.min_training.max(2) {
            return;
        }
        let due = group.model.is_none()
            || drifted
            || options.retrain_every.is_some_and(|every| group.reservoir.seen() - group.trained_seen >= every)
            || options.retrain_interval.is_some_and(|interval| time.saturating_sub(group.trained_time) >= interval);
        if due {
            group.train(group_id, time, options, dims);
        }
    }
}

/// Extension trait: score a stream of feature vectors with per-group isolation forests.
pub trait ForestScoring<'scope, D: ExchangeData> {
    /// Scores every record with its group's forest, trained and retrained on a reservoir of
    /// the group's earlier vectors; see the [module documentation](self).
    ///
    /// `group` picks the model, `order` gives `(event time, tie_break)`, and `features` writes
    /// the record's feature vector into the buffer it is handed (cleared before each call).
    ///
    /// # Examples
    /// ```
    /// use timely::dataflow::operators::capture::{Capture, Event};
    /// use timely::dataflow::operators::ToStream;
    /// use surveil_operators::forest_scoring::{ForestScoring, ForestScoringOptions};
    /// use surveil_operators::isolation_forest::ForestParams;
    ///
    /// // (time, group, features): a regular pattern, then one vector far off it.
    /// let mut records: Vec<(u64, u64, [f64; 2])> =
    ///     (0..500).map(|t| (t, 1, [(t % 10 + t % 7 + t % 3) as f64, (t % 5 + t % 4 + t % 9) as f64])).collect();
    /// records.push((500, 1, [40.0, 6.0]));
    /// let options = ForestScoringOptions {
    ///     forest: ForestParams { trees: 50, sample_size: 128, seed: 1, ..ForestParams::default() },
    ///     min_training: 250,
    ///     ..ForestScoringOptions::default()
    /// };
    /// let captured = timely::example(move |scope| {
    ///     records
    ///         .to_stream(scope)
    ///         .score_with_forest("Forest", |r| r.1, |r| (r.0, 0), |r, out| out.extend_from_slice(&r.2), options)
    ///         .capture()
    /// });
    /// let events = captured.iter().filter_map(|e| if let Event::Messages(_, v) = e { Some(v) } else { None });
    /// let mut scored: Vec<_> = events.flatten().collect();
    /// scored.sort_by_key(|s| s.record.0);
    /// // Nothing is scored before the first 250 vectors have trained version 1.
    /// assert!(scored[..250].iter().all(|s| s.score.is_none() && s.model_version == 0));
    /// let last = scored.last().expect("scored");
    /// assert_eq!(last.model_version, 1);
    /// assert!(last.score.is_some_and(|s| s > 0.6));
    /// // The first feature drove the alert.
    /// assert!(last.contributions[0] > 0.3 && last.contributions[1] < 0.0);
    /// ```
    fn score_with_forest<G, O, F>(
        self,
        name: &str,
        group: G,
        order: O,
        features: F,
        options: ForestScoringOptions,
    ) -> Stream<'scope, u64, Vec<ForestScore<D>>>
    where
        G: Fn(&D) -> u64 + 'static,
        O: Fn(&D) -> (u64, u64) + 'static,
        F: Fn(&D, &mut Vec<f64>) + 'static;
}

impl<'scope, D: ExchangeData + Clone> ForestScoring<'scope, D> for Stream<'scope, u64, Vec<D>> {
    fn score_with_forest<G, O, F>(
        self,
        name: &str,
        group: G,
        order: O,
        features: F,
        options: ForestScoringOptions,
    ) -> Stream<'scope, u64, Vec<ForestScore<D>>>
    where
        G: Fn(&D) -> u64 + 'static,
        O: Fn(&D) -> (u64, u64) + 'static,
        F: Fn(&D, &mut Vec<f64>) + 'static,
    {
        let group = std::rc::Rc::new(group);
        let route_group = std::rc::Rc::clone(&group);
        let scorer = ForestScorer::new(options, move |r: &D| group(r), features);
        self.process_in_time_order(name, move |r| route(&route_group(r)), order, scorer)
    }
}
