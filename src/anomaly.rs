//! Behavioural anomalies: a key's feature row far from its own history, or, while the key is
//! new, far from its peer group's.
//!
//! The detector reads the rows of the feature store ([`crate::features`]) keyed by peer group
//! (account × instrument rows by instrument, account rows by desk, instrument rows all together),
//! in event-time order, so each group's state lives on one worker and the scores are the same on
//! any number of workers, live or replayed. For every row it:
//!
//! 1. picks a baseline: the key's own exponentially weighted mean and variance once it has
//!    `min_history` windows, otherwise its peer group's (once the group has `min_peer_rows`),
//!    otherwise none, and then the row is not scored: nothing alerts before there is a baseline
//!    to compare with, so starting the system or opening an account raises no alert storm;
//! 2. computes each feature's z-score against that baseline (with a floor on the standard
//!    deviation per feature, see [`crate::features::FEATURES`]);
//! 3. when a model file holds an isolation forest for the row's scope, scores the z-vector with
//!    it and attributes the score to features by path length;
//! 4. raises a `behavioural_anomaly` alert when the largest |z| reaches `z_threshold` (and the
//!    forest, when there is one, agrees: its score reaches `forest_threshold`), explaining the
//!    features that drove it, their z-scores against the key's own and its peers' baselines, the
//!    forest's attribution, and the model version and seed;
//! 5. updates the key's baseline with the row, and the group's once the window's rows are all in.
//!
//! `surveil train` replays recorded feature rows through the same code and saves the final
//! baselines and a forest per scope ([`AnomalyModel`]); `surveil run --model FILE` starts from
//! them, so a trained system is warm from the first window.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use surveil_operators::isolation_forest::{ForestParams, IsolationForest};
use surveil_operators::reservoir::Reservoir;
use surveil_operators::scorers::ewma_update;
use surveil_operators::{Emitter, TimeOrderedProcessor};

use crate::config::AnomalyConfig;
use crate::features::{FEATURE_COUNT, FEATURES, FeatureRow, FeatureScope, FeatureVector, to_baseline};
use crate::model::Report;
use crate::model::Symbol;
use crate::model::alert::{FeatureEvidence, rules, score_from_excess};
use crate::model::{Alert, Severity};

/// Layout version of [`AnomalyModel`] files.
pub const MODEL_FORMAT: u32 = 1;

/// Exponentially weighted mean and variance of each feature, updated by the operators' rule
/// ([`ewma_update`], as in [`surveil_operators::EwmaZ`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// Rows seen.
    pub count: u64,
    /// Rows in which each feature was defined.
    pub counts: [u64; FEATURE_COUNT],
    /// Mean of each feature.
    pub mean: FeatureVector,
    /// Variance of each feature.
    pub variance: FeatureVector,
}

impl Default for Baseline {
    fn default() -> Self {
        Baseline { count: 0, counts: [0; FEATURE_COUNT], mean: [0.0; FEATURE_COUNT], variance: [0.0; FEATURE_COUNT] }
    }
}

impl Baseline {
    /// Adds a row; undefined (NaN) features are skipped. Until `1 / n` drops below `alpha` this
    /// is the plain mean and variance, so a young baseline is not dominated by its first rows.
    pub fn update(&mut self, x: &FeatureVector, alpha: f64) {
        self.count += 1;
        for (i, &value) in x.iter().enumerate() {
            if !value.is_finite() {
                continue;
            }
            self.counts[i] += 1;
            ewma_update(&mut self.mean[i], &mut self.variance[i], self.counts[i], alpha, value);
        }
    }

    /// The standard deviation of feature `i`, floored (see [`crate::features::FeatureDef::min_std`]).
    pub fn std(&self, i: usize) -> f64 {
        self.variance[i].max(0.0).sqrt().max(FEATURES[i].min_std)
    }

    /// The z-score of each feature of `x`: 0 where `x` is undefined or the baseline has seen the
    /// feature fewer than `min_count` times.
    pub fn z(&self, x: &FeatureVector, min_count: u64) -> FeatureVector {
        std::array::from_fn(|i| {
            if x[i].is_finite() && self.counts[i] >= min_count.max(1) {
                (x[i] - self.mean[i]) / self.std(i)
            } else {
                0.0
            }
        })
    }
}

/// The peer group of a row.
pub fn peer_group(row: &FeatureRow) -> Symbol {
    match row.scope {
        FeatureScope::AccountInstrument => row.instrument,
        FeatureScope::Account => row.desk,
        FeatureScope::Instrument => Symbol::NONE,
    }
}

/// Routing key of a row: its scope and peer group.
pub fn route_row(row: &FeatureRow) -> u64 {
    surveil_operators::route(&(row.scope, peer_group(row).0))
}

/// Order of a row among rows of the same time (see [`FeatureRow::order_key`]).
pub fn order_row(row: &FeatureRow) -> (u64, u64) {
    row.order_key()
}

/// A trained forest for one scope.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScopeForest {
    /// Scope whose z-vectors it was trained on.
    pub scope: FeatureScope,
    /// The forest.
    pub forest: IsolationForest,
}

/// What `surveil train` saves and `surveil run --model` loads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnomalyModel {
    /// Layout version ([`MODEL_FORMAT`]).
    pub format: u32,
    /// Content hash: names the model in alerts.
    pub version: String,
    /// Seed of the forests and the reservoir sample.
    pub seed: u64,
    /// Feature window the baselines were built with (ns).
    pub window_ns: u64,
    /// Feature names, in vector order.
    pub features: Vec<String>,
    /// Feature rows the model was trained on.
    pub trained_rows: u64,
    /// Each key's own baseline: (scope, account, instrument, baseline).
    pub keys: Vec<(FeatureScope, Symbol, Symbol, Baseline)>,
    /// Each peer group's baseline: (scope, group, baseline).
    pub peers: Vec<(FeatureScope, Symbol, Baseline)>,
    /// Forests by scope.
    pub forests: Vec<ScopeForest>,
}

/// Why a model file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: std::path::PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Not a model file.
    #[error("{path}: not a surveil model: {source}")]
    Parse {
        /// File.
        path: std::path::PathBuf,
        /// Cause.
        source: serde_json::Error,
    },
    /// A model made with other settings.
    #[error("{path}: {reason}")]
    Incompatible {
        /// File.
        path: std::path::PathBuf,
        /// What differs.
        reason: String,
    },
}

impl AnomalyModel {
    /// Reads a model file and checks it matches the feature definitions and `window_ns`.
    pub fn load(path: &std::path::Path, window_ns: u64) -> Result<AnomalyModel, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io { path: path.into(), source })?;
        let model: AnomalyModel =
            serde_json::from_str(&text).map_err(|source| ModelError::Parse { path: path.into(), source })?;
        let incompatible = |reason: String| ModelError::Incompatible { path: path.into(), reason };
        if model.format != MODEL_FORMAT {
            return Err(incompatible(format!("model format {} (this build reads {MODEL_FORMAT})", model.format)));
        }
        let names: Vec<&str> = FEATURES.iter().map(|f| f.name).collect();
        if model.features != names {
            return Err(incompatible(format!("features {:?} differ from this build's {:?}", model.features, names)));
        }
        if let Some(forest) = model.forests.iter().find(|f| f.forest.dims() != FEATURE_COUNT) {
            return Err(incompatible(format!(
                "the {} forest scores {} features, this build computes {FEATURE_COUNT}",
                forest.scope.as_str(),
                forest.forest.dims()
            )));
        }
        if model.window_ns != window_ns {
            return Err(incompatible(format!(
                "trained on {} ns feature windows, configured {} ns",
                model.window_ns, window_ns
            )));
        }
        Ok(model)
    }

    /// Writes the model as JSON.
    pub fn save(&self, path: &std::path::Path) -> Result<(), ModelError> {
        let text = serde_json::to_string(self).map_err(|source| ModelError::Parse { path: path.into(), source })?;
        std::fs::write(path, text + "\n").map_err(|source| ModelError::Io { path: path.into(), source })
    }
}

type KeyId = (FeatureScope, Symbol, Symbol);
type GroupId = (FeatureScope, Symbol);

/// Which baseline scored a row.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Basis {
    /// The key's own history.
    Own,
    /// The key's peer group (the key is new).
    Peers,
}

/// The outcome of scoring one row.
#[derive(Clone, Debug, PartialEq)]
pub struct RowScore {
    /// The baseline used.
    pub basis: Basis,
    /// z-scores against it.
    pub z: FeatureVector,
    /// Largest |z| and its feature.
    pub max_z: (f64, usize),
    /// Forest score and attribution, when a forest exists for the scope.
    pub forest: Option<(f64, Vec<f64>)>,
    /// The key's own baseline before the row, when mature.
    pub own: Option<Baseline>,
    /// The peer group's baseline before the row, when mature.
    pub peers: Option<Baseline>,
}

/// The detector's state: baselines by key and by peer group, and forests by scope. Runs as a
/// [`TimeOrderedProcessor`] over feature rows routed by [`route_row`] and ordered by [`order_row`].
pub struct AnomalyProcessor {
    config: AnomalyConfig,
    alpha: f64,
    window_ns: u64,
    own: HashMap<KeyId, Baseline>,
    peers: HashMap<GroupId, Baseline>,
    pending_peers: Vec<(GroupId, FeatureVector)>,
    pending_time: u64,
    forests: BTreeMap<FeatureScope, Arc<IsolationForest>>,
    model_version: Option<String>,
    seed: u64,
    /// Rows scored, for summaries.
    pub scored: u64,
}

impl AnomalyProcessor {
    /// A detector with empty baselines, or warmed from `model`.
    pub fn new(config: &AnomalyConfig, window_ns: u64, model: Option<&AnomalyModel>) -> AnomalyProcessor {
        let mut processor = AnomalyProcessor {
            config: config.clone(),
            alpha: 1.0 - 0.5f64.powf(1.0 / config.half_life.max(1.0)),
            window_ns,
            own: HashMap::new(),
            peers: HashMap::new(),
            pending_peers: Vec::new(),
            pending_time: 0,
            forests: BTreeMap::new(),
            model_version: None,
            seed: config.seed,
            scored: 0,
        };
        if let Some(model) = model {
            processor.own = model.keys.iter().map(|(s, a, i, b)| ((*s, *a, *i), b.clone())).collect();
            processor.peers = model.peers.iter().map(|(s, g, b)| ((*s, *g), b.clone())).collect();
            processor.forests = model.forests.iter().map(|f| (f.scope, Arc::new(f.forest.clone()))).collect();
            processor.model_version = Some(model.version.clone());
            processor.seed = model.seed;
        }
        processor
    }

    /// Shrinks each z-score by the evidence the row holds for its feature: `sqrt(n / (n + prior))`
    /// with `n` the orders or fills behind it, so a share computed from two fills cannot alert.
    fn weigh(&self, row: &FeatureRow, mut z: FeatureVector) -> FeatureVector {
        let prior = self.config.evidence_prior.max(0.0);
        for (z, n) in z.iter_mut().zip(row.counters.support()) {
            *z *= (n as f64 / (n as f64 + prior)).sqrt();
        }
        z
    }

    /// Observations of a feature a baseline needs before the feature is scored against it.
    fn min_count(&self, basis: Basis) -> u64 {
        match basis {
            Basis::Own => self.config.min_history / 2,
            Basis::Peers => self.config.min_peer_rows / 4,
        }
    }

    fn apply_pending(&mut self, time: u64) {
        if time > self.pending_time {
            for (group, x) in self.pending_peers.drain(..) {
                self.peers.entry(group).or_default().update(&x, self.alpha);
            }
            self.pending_time = time;
        }
    }

    /// Scores a row against the state before it (None while there is no baseline), then learns it.
    pub fn score_and_learn(&mut self, row: &FeatureRow) -> Option<RowScore> {
        self.apply_pending(row.window_end);
        let x = to_baseline(&row.counters.features(self.window_ns as f64 / 1e9));
        let key = (row.scope, row.account, row.instrument);
        let group = (row.scope, peer_group(row));
        let own = self.own.get(&key).filter(|b| b.count >= self.config.min_history);
        let peer = self.peers.get(&group).filter(|b| b.count >= self.config.min_peer_rows);
        let (basis, baseline) = match (own, peer) {
            (Some(b), _) => (Basis::Own, b),
            (None, Some(b)) => (Basis::Peers, b),
            (None, None) => (Basis::Own, &Baseline::default()),
        };
        let score = (own.is_some() || peer.is_some()).then(|| {
            let z = self.weigh(row, baseline.z(&x, self.min_count(basis)));
            let max_z =
                z.iter().enumerate().fold((0.0f64, 0usize), |m, (i, v)| if v.abs() > m.0 { (v.abs(), i) } else { m });
            let forest = self.forests.get(&row.scope).map(|f| (f.score(&z), f.explain(&z)));
            RowScore { basis, z, max_z, forest, own: own.cloned(), peers: peer.cloned() }
        });
        self.own.entry(key).or_default().update(&x, self.alpha);
        self.pending_peers.push((group, x));
        if score.is_some() {
            self.scored += 1;
        }
        score
    }

    /// The alert for a scored row, when it is anomalous enough.
    pub fn alert(&self, row: &FeatureRow, score: &RowScore) -> Option<Alert> {
        // Written as "not at least", so that a NaN never passes a gate.
        let at_least = |value: f64, threshold: f64| value.partial_cmp(&threshold).is_some_and(|o| o.is_ge());
        if row.counters.activity() < self.config.min_activity || !at_least(score.max_z.0, self.config.z_threshold) {
            return None;
        }
        if let Some((forest_score, _)) = &score.forest
            && !at_least(*forest_score, self.config.forest_threshold)
        {
            return None;
        }
        let raw = row.counters.features(self.window_ns as f64 / 1e9);
        let x = to_baseline(&raw);
        let (own, peer) = (score.own.as_ref(), score.peers.as_ref());
        let mut order: Vec<usize> = (0..FEATURE_COUNT).collect();
        order.sort_by(|&a, &b| score.z[b].abs().total_cmp(&score.z[a].abs()).then(a.cmp(&b)));
        let evidence: Vec<FeatureEvidence> = order
            .into_iter()
            .take(self.config.top_features.max(1))
            .map(|i| FeatureEvidence {
                feature: FEATURES[i].name.into(),
                value: raw[i],
                z_own: own.map(|b| self.weigh(row, b.z(&x, self.min_count(Basis::Own)))[i]),
                own_mean: own.as_ref().map(|b| FEATURES[i].from_baseline(b.mean[i])),
                z_peers: peer.map(|b| self.weigh(row, b.z(&x, self.min_count(Basis::Peers)))[i]),
                peer_mean: peer.map(|b| FEATURES[i].from_baseline(b.mean[i])),
                forest_contribution: score.forest.as_ref().and_then(|(_, c)| c.get(i).copied()),
            })
            .collect();
        let (max_z, top) = score.max_z;
        let excess = max_z / self.config.z_threshold;
        let what = match row.scope {
            FeatureScope::AccountInstrument => "account in instrument",
            FeatureScope::Account => "account",
            FeatureScope::Instrument => "instrument",
        };
        let basis = match score.basis {
            Basis::Own => "its own history",
            Basis::Peers => "its peer group (too little own history)",
        };
        let explanation = format!(
            "{what} behaved unlike {basis}: {} = {:.4} is {:.1} standard deviations from the baseline",
            FEATURES[top].name, raw[top], score.z[top]
        );
        let mut alert = Alert::builder(rules::BEHAVIOURAL_ANOMALY, row.window_end);
        alert
            .instrument(row.instrument)
            .account(row.account)
            .severity(Severity::from_excess(excess).min(Severity::High))
            .score(score_from_excess(excess))
            .explain(explanation)
            .discriminator(row.scope as u64)
            .param("scope", row.scope.as_str())
            .param("baseline", if score.basis == Basis::Own { "own" } else { "peers" })
            .param("window_start", row.window_end.saturating_sub(self.window_ns))
            .param("window_end", row.window_end)
            .param("max_abs_z", max_z)
            .param("z_threshold", self.config.z_threshold)
            .param("features", evidence)
            .param("model_version", self.model_version.clone().unwrap_or_else(|| "online".into()))
            .param("seed", self.seed);
        if let Some((forest_score, _)) = &score.forest {
            alert.param("forest_score", *forest_score);
        }
        if row.scope == FeatureScope::Account {
            alert.param("desk", row.desk);
        }
        Some(alert.build())
    }

    /// The state as a model, with forests trained on `samples` (z-vectors by scope).
    fn into_model(self, samples: BTreeMap<FeatureScope, Vec<f64>>, trained_rows: u64) -> AnomalyModel {
        let mut keys: Vec<_> = self.own.into_iter().map(|((s, a, i), b)| (s, a, i, b)).collect();
        keys.sort_by_key(|(s, a, i, _)| (*s, *a, *i));
        let mut peers = self.peers;
        for (group, x) in self.pending_peers {
            peers.entry(group).or_default().update(&x, self.alpha);
        }
        let mut peers: Vec<_> = peers.into_iter().map(|((s, g), b)| (s, g, b)).collect();
        peers.sort_by_key(|(s, g, _)| (*s, *g));
        let forests = samples
            .into_iter()
            .filter_map(|(scope, rows)| {
                let params = ForestParams { seed: self.seed, ..ForestParams::default() };
                IsolationForest::fit(&rows, FEATURE_COUNT, params).ok().map(|forest| ScopeForest { scope, forest })
            })
            .collect();
        let mut model = AnomalyModel {
            format: MODEL_FORMAT,
            version: String::new(),
            seed: self.seed,
            window_ns: self.window_ns,
            features: FEATURES.iter().map(|f| f.name.into()).collect(),
            trained_rows,
            keys,
            peers,
            forests,
        };
        let content = serde_json::to_vec(&model).unwrap_or_default();
        model.version = format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&content));
        model
    }
}

impl TimeOrderedProcessor<FeatureRow> for AnomalyProcessor {
    type Output = Report;

    fn on_record(&mut self, _time: u64, row: FeatureRow, out: &mut Emitter<'_, Report>) {
        if !self.config.scopes.contains(&row.scope) {
            return;
        }
        if let Some(score) = self.score_and_learn(&row)
            && let Some(alert) = self.alert(&row, &score)
        {
            out.emit(Report::Alert(Box::new(alert)));
        }
    }
}

/// Rows kept per scope for training a forest.
const RESERVOIR: usize = 4096;

/// Trains a model on recorded feature rows: replays them in event-time order through the
/// detector (the live code), keeps a seeded reservoir sample of the scored rows' z-vectors per
/// scope, and fits a forest per scope on it.
pub fn train(rows: &mut [FeatureRow], config: &AnomalyConfig, window_ns: u64) -> AnomalyModel {
    rows.sort_by_key(order_row);
    let mut processor = AnomalyProcessor::new(config, window_ns, None);
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut samples: BTreeMap<FeatureScope, Reservoir> = BTreeMap::new();
    let mut trained = 0;
    for row in rows.iter() {
        if !config.scopes.contains(&row.scope) {
            continue;
        }
        trained += 1;
        let Some(score) = processor.score_and_learn(row) else { continue };
        if row.counters.activity() < config.min_activity {
            continue;
        }
        // Every scored row has the same chance to be in the sample.
        samples.entry(row.scope).or_insert_with(|| Reservoir::new(RESERVOIR, None)).offer(&score.z, &mut rng);
    }
    let samples = samples.into_iter().map(|(scope, sample)| (scope, sample.vectors().to_vec())).collect();
    processor.into_model(samples, trained)
}

/// Extension trait: behavioural anomalies as an operator on a stream of feature rows.
pub trait AnomaliesExt<'scope> {
    /// Scores each row against its key's own baseline (or its peer group's, while the key is
    /// new) and the model's forests, and alerts on rows far from them. Rows are routed by peer
    /// group and scored in `(window end, key)` order, so the scores are the same on any number
    /// of workers.
    fn behavioural_anomalies(
        self,
        config: &AnomalyConfig,
        window_ns: u64,
        model: Option<Arc<AnomalyModel>>,
    ) -> timely::dataflow::Stream<'scope, u64, Vec<Alert>>;
}

impl<'scope> AnomaliesExt<'scope> for timely::dataflow::Stream<'scope, u64, Vec<FeatureRow>> {
    fn behavioural_anomalies(
        self,
        config: &AnomalyConfig,
        window_ns: u64,
        model: Option<Arc<AnomalyModel>>,
    ) -> timely::dataflow::Stream<'scope, u64, Vec<Alert>> {
        use surveil_operators::ProcessInTimeOrder;
        use timely::dataflow::operators::vec::Map;
        let processor = AnomalyProcessor::new(config, window_ns, model.as_deref());
        self.process_in_time_order("Anomaly", route_row, order_row, processor).flat_map(|report| match report {
            Report::Alert(alert) => Some(*alert),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::Counters;

    fn row(end: u64, account: &str, orders: u64, fills: u64) -> FeatureRow {
        FeatureRow {
            window_end: end,
            scope: FeatureScope::AccountInstrument,
            account: Symbol::of(account.as_bytes()),
            instrument: Symbol::of(b"XYZ"),
            desk: Symbol::NONE,
            counters: Counters { orders, fills, order_quantity: orders as f64 * 100.0, ..Counters::default() },
        }
    }

    fn config() -> AnomalyConfig {
        AnomalyConfig { enabled: true, min_history: 10, min_peer_rows: 20, ..AnomalyConfig::default() }
    }

    #[test]
    fn baseline_matches_plain_statistics_while_young() {
        let mut b = Baseline::default();
        let xs = [1.0, 2.0, 4.0];
        for x in xs {
            b.update(&[x; FEATURE_COUNT], 0.01);
        }
        let mean = 7.0 / 3.0;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / 3.0;
        assert!((b.mean[0] - mean).abs() < 1e-12);
        assert!((b.variance[0] - var).abs() < 1e-12);
    }

    #[test]
    fn no_scores_before_any_baseline_then_peers_then_own() {
        let mut p = AnomalyProcessor::new(&config(), 60_000_000_000, None);
        let mut bases = Vec::new();
        for w in 1..=40u64 {
            for a in 0..3 {
                let r = row(w * 60_000_000_000, &format!("A{a}"), 10 + (w + a) % 3, 5);
                bases.push(p.score_and_learn(&r).map(|s| s.basis));
            }
        }
        // 20 peer rows are needed: windows 1-7 (21 rows by the end of window 7) have no basis.
        assert!(bases[..21].iter().all(Option::is_none));
        // A newcomer in window 8 is scored against its peers.
        assert_eq!(bases[21], Some(Basis::Peers));
        // After 10 windows of its own, a key is scored against itself.
        assert_eq!(bases[3 * 10], Some(Basis::Own));
        assert!(bases[3 * 10..].iter().all(|b| *b == Some(Basis::Own)));
    }

    #[test]
    fn a_burst_alerts_with_an_explanation_and_steady_keys_do_not() {
        let mut p = AnomalyProcessor::new(&config(), 60_000_000_000, None);
        let mut alerts = Vec::new();
        for w in 1..=60u64 {
            for a in 0..5 {
                let orders = if a == 2 && w == 50 { 400 } else { 10 + (w * 7 + a) % 4 };
                let r = row(w * 60_000_000_000, &format!("A{a}"), orders, 5);
                if let Some(s) = p.score_and_learn(&r) {
                    alerts.extend(p.alert(&r, &s));
                }
            }
        }
        assert_eq!(alerts.len(), 1, "{alerts:#?}");
        let alert = &alerts[0];
        assert_eq!(alert.account, Symbol::of(b"A2"));
        assert_eq!(alert.rule, rules::BEHAVIOURAL_ANOMALY);
        let features = alert
            .parameters
            .iter()
            .find_map(|p| match &p.value {
                crate::model::Value::Features(f) => Some(f.clone()),
                _ => None,
            })
            .expect("feature evidence");
        let names: Vec<&str> = features.iter().map(|f| f.feature.as_str()).collect();
        assert!(names.contains(&"order_rate") && names.contains(&"order_to_trade"), "{names:?}");
        let rate = features.iter().find(|f| f.feature == "order_rate").expect("order rate");
        assert!(rate.z_own.expect("own z") > 10.0 && rate.z_peers.expect("peer z") > 10.0, "{rate:?}");
        assert!((rate.own_mean.expect("own mean") - 11.5 / 60.0).abs() < 0.02);
    }

    #[test]
    fn a_trained_model_is_deterministic_and_warms_a_new_detector() {
        let mut rows = Vec::new();
        for w in 1..=50u64 {
            for a in 0..40 {
                rows.push(row(w * 60_000_000_000, &format!("A{a}"), 10 + (w * 13 + a * 7) % 9, 1 + (w + a) % 5));
            }
        }
        let config = config();
        let one = train(&mut rows.clone(), &config, 60_000_000_000);
        let two = train(&mut rows.iter().rev().cloned().collect::<Vec<_>>(), &config, 60_000_000_000);
        assert_eq!(one, two);
        assert_eq!(one.forests.len(), 1);
        assert_eq!(one.trained_rows, 2000);
        let mut warm = AnomalyProcessor::new(&config, 60_000_000_000, Some(&one));
        let next = row(51 * 60_000_000_000, "A3", 12, 3);
        let score = warm.score_and_learn(&next).expect("scored from the first row");
        assert_eq!(score.basis, Basis::Own);
        let (forest_score, contributions) = score.forest.expect("forest");
        assert!((0.0..=1.0).contains(&forest_score));
        assert_eq!(contributions.len(), FEATURE_COUNT);
    }
}
