//! The isolation forest on ODDS outlier-detection benchmarks, by PyOD's published protocol.
//!
//! ```text
//! cargo run --release --example odds -- ../shared/datasets/odds/{cardio,glass,ionosphere,pima,wbc}.csv
//! cargo run --release --example odds -- --time FILE.csv...
//! ```
//!
//! Each CSV holds the features, then a 0/1 `label` column (1 = outlier). For each of 10 seeds
//! the rows are shuffled and split 60/40 (not stratified, `ceil(0.4 n)` test rows, as
//! scikit-learn's `train_test_split(test_size=0.4)`), both parts are standardised with the
//! training part's mean and population standard deviation (a constant feature is only
//! centred), a forest of 100 trees of 256 rows is trained on the training part with the same
//! seed, and the test part's scores give a ROC-AUC. A seed whose test part holds a single class
//! (where scikit-learn's `roc_auc_score` raises) is skipped and the next one is taken. The example prints the mean and standard
//! deviation over the seeds per file, next to the IForest column of `pyod_published_roc.csv`
//! (looked up beside the first file, or given with `--published`).
//!
//! `--time` instead trains on all rows of each file and scores all of them, and prints the
//! best of `--repeats` wall-clock times, single-threaded: the Rust side of
//! `benches/iforest_sklearn.sh`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Parser;
use surveil_operators::isolation_forest::{ForestParams, IsolationForest};

/// Command line of the example.
#[derive(Parser)]
#[command(about = "Isolation-forest ROC-AUC on ODDS datasets (PyOD protocol), or timings")]
struct Args {
    /// CSV files: feature columns, then a 0/1 `label` column.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Seeds (splits and forests) to average over.
    #[arg(long, default_value_t = 10)]
    seeds: u32,
    /// Forests per split, averaged (1: the published protocol; more: the forest's expected
    /// ROC-AUC on the same splits, without the noise of a single forest draw).
    #[arg(long, default_value_t = 1)]
    forests: u32,
    /// The published table; default: pyod_published_roc.csv beside the first file.
    #[arg(long)]
    published: Option<PathBuf>,
    /// Time training and scoring on all rows instead of evaluating.
    #[arg(long)]
    time: bool,
    /// Timed repetitions per file (the best is printed).
    #[arg(long, default_value_t = 5)]
    repeats: usize,
}

/// A labelled data set, row-major.
pub struct Dataset {
    /// Feature values, `dims` per row.
    pub rows: Vec<f64>,
    /// Features per row.
    pub dims: usize,
    /// `true` for outliers.
    pub labels: Vec<bool>,
}

/// Reads a CSV with a header, feature columns and a `label` column of 0/1.
pub fn read_odds(path: &Path) -> anyhow::Result<Dataset> {
    let mut reader = csv::Reader::from_path(path).with_context(|| format!("cannot open {}", path.display()))?;
    let header = reader.headers().with_context(|| format!("{}: no header", path.display()))?.clone();
    let Some(label_column) = header.iter().position(|h| h == "label") else {
        bail!("{}: no `label` column", path.display());
    };
    let dims = header.len() - 1;
    if dims == 0 {
        bail!("{}: no feature columns", path.display());
    }
    let (mut rows, mut labels) = (Vec::new(), Vec::new());
    for (line, record) in reader.records().enumerate() {
        let record = record.with_context(|| format!("{}: row {}", path.display(), line + 2))?;
        if record.len() != header.len() {
            bail!("{}: row {} has {} fields, expected {}", path.display(), line + 2, record.len(), header.len());
        }
        for (column, field) in record.iter().enumerate() {
            let value: f64 = field
                .trim()
                .parse()
                .with_context(|| format!("{}: row {}, column {}: `{field}`", path.display(), line + 2, column + 1))?;
            if column == label_column {
                labels.push(value != 0.0);
            } else if value.is_finite() {
                rows.push(value);
            } else {
                bail!("{}: row {}, column {}: not a finite number", path.display(), line + 2, column + 1);
            }
        }
    }
    Ok(Dataset { rows, dims, labels })
}

/// The published IForest ROC-AUC per data set name, from PyOD's `roc.csv`.
pub fn published_iforest(path: &Path) -> anyhow::Result<HashMap<String, f64>> {
    let mut reader = csv::Reader::from_path(path).with_context(|| format!("cannot open {}", path.display()))?;
    let header = reader.headers()?.clone();
    let Some(column) = header.iter().position(|h| h.trim() == "IForest") else {
        bail!("{}: no IForest column", path.display());
    };
    let mut table = HashMap::new();
    for record in reader.records() {
        let record = record?;
        if let (Some(name), Some(auc)) = (record.get(0), record.get(column).and_then(|v| v.trim().parse().ok())) {
            table.insert(name.trim().to_string(), auc);
        }
    }
    Ok(table)
}

/// ROC-AUC of `scores` (higher = more anomalous) against `labels`: the Mann–Whitney statistic
/// with tied scores sharing their mean rank. `None` without both classes.
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let (mut rank_sum, mut positives) = (0.0, 0usize);
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && scores[order[end]] == scores[order[start]] {
            end += 1;
        }
        // 1-based ranks start+1 ..= end share their mean.
        let mean_rank = (start + 1 + end) as f64 / 2.0;
        for &i in &order[start..end] {
            if labels[i] {
                rank_sum += mean_rank;
                positives += 1;
            }
        }
        start = end;
    }
    let negatives = scores.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let (p, n) = (positives as f64, negatives as f64);
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * n))
}

/// The 60/40 split of `n` row indices that scikit-learn's `train_test_split(test_size=0.4,
/// random_state=np.random.RandomState(seed))` makes: `(train, test)`, test first in numpy's
/// permutation, `ceil(0.4 n)` rows.
pub fn split(n: usize, seed: u32) -> (Vec<usize>, Vec<usize>) {
    let mut order = numpy_permutation(n, seed);
    let train = order.split_off((n * 2).div_ceil(5));
    (train, order)
}

/// numpy's legacy `RandomState(seed).permutation(n)`: MT19937 seeded by `init_genrand`, and a
/// Fisher–Yates shuffle from the end drawing each index by masked rejection sampling.
pub fn numpy_permutation(n: usize, seed: u32) -> Vec<usize> {
    let mut mt = rand_mt::Mt::new(seed);
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let max = i as u64;
        let mask = u64::MAX >> max.leading_zeros();
        let j = loop {
            let draw = if max <= u64::from(u32::MAX) { u64::from(mt.next_u32()) } else { mt.next_u64() };
            if draw & mask <= max {
                break draw & mask;
            }
        };
        order.swap(i, j as usize);
    }
    order
}

/// The rows at `indices`, standardised with `mean` and `scale`.
fn gather(data: &Dataset, indices: &[usize], mean: &[f64], scale: &[f64]) -> Vec<f64> {
    let mut out = Vec::with_capacity(indices.len() * data.dims);
    for &i in indices {
        let row = &data.rows[i * data.dims..(i + 1) * data.dims];
        out.extend(row.iter().zip(mean.iter().zip(scale)).map(|(v, (m, s))| (v - m) / s));
    }
    out
}

/// Training-set mean and population standard deviation per feature (1 where it is 0).
fn moments(data: &Dataset, train: &[usize]) -> (Vec<f64>, Vec<f64>) {
    let d = data.dims;
    let n = train.len() as f64;
    let mut mean = vec![0.0; d];
    for &i in train {
        mean.iter_mut().zip(&data.rows[i * d..(i + 1) * d]).for_each(|(m, v)| *m += v);
    }
    mean.iter_mut().for_each(|m| *m /= n);
    let mut var = vec![0.0; d];
    for &i in train {
        var.iter_mut().zip(data.rows[i * d..(i + 1) * d].iter().zip(&mean)).for_each(|(s, (v, m))| {
            *s += (v - m) * (v - m);
        });
    }
    let scale = var.iter().map(|s| (s / n).sqrt()).map(|s| if s > 0.0 { s } else { 1.0 }).collect();
    (mean, scale)
}

/// The test ROC-AUC of split `seed` of the protocol, averaged over `forests` forests seeded
/// `seed + k·2³²` (`k < forests`; one forest gives the published protocol, where the forest
/// seed is the split's); `None` when the test part holds one class.
pub fn evaluate_seed(data: &Dataset, seed: u32, forests: u32) -> anyhow::Result<Option<f64>> {
    let (train, test) = split(data.labels.len(), seed);
    let (mean, scale) = moments(data, &train);
    let train_rows = gather(data, &train, &mean, &scale);
    let test_rows = gather(data, &test, &mean, &scale);
    let labels: Vec<bool> = test.iter().map(|&i| data.labels[i]).collect();
    let mut total = 0.0;
    for k in 0..forests.max(1) {
        let params = ForestParams { seed: (u64::from(k) << 32) | u64::from(seed), ..ForestParams::default() };
        let forest = IsolationForest::fit(&train_rows, data.dims, params)?;
        match roc_auc(&forest.score_batch(&test_rows)?, &labels) {
            Some(auc) => total += auc,
            None => return Ok(None),
        }
    }
    Ok(Some(total / f64::from(forests.max(1))))
}

/// ROC-AUC of the first `seeds` splits (from seed 0) whose test part holds both classes, each
/// averaged over `forests` forests, and the number of splits skipped because it did not.
pub fn evaluate(data: &Dataset, seeds: u32, forests: u32) -> anyhow::Result<(Vec<f64>, u32)> {
    let (mut aucs, mut skipped) = (Vec::new(), 0);
    let mut seed = 0;
    while aucs.len() < seeds as usize {
        match evaluate_seed(data, seed, forests)? {
            Some(auc) => aucs.push(auc),
            None if skipped > seeds => bail!("the data set has too few rows of one class to split"),
            None => skipped += 1,
        }
        seed += 1;
    }
    Ok((aucs, skipped))
}

/// Mean and population standard deviation.
pub fn mean_sd(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    (mean, (values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n).sqrt())
}

/// The data set name of a file: its stem.
pub fn name_of(path: &Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

fn time(args: &Args) -> anyhow::Result<()> {
    println!("{:<28} {:>8} {:>5} {:>10} {:>10} {:>10}", "file", "rows", "dims", "fit_s", "score_s", "total_s");
    for path in &args.files {
        let data = read_odds(path)?;
        let mut best = (f64::INFINITY, 0.0, 0.0);
        for _ in 0..args.repeats.max(1) {
            let start = Instant::now();
            let forest = IsolationForest::fit(&data.rows, data.dims, ForestParams::default())?;
            let fitted = start.elapsed().as_secs_f64();
            let scores = forest.score_batch(&data.rows)?;
            let total = start.elapsed().as_secs_f64();
            std::hint::black_box(scores);
            if total < best.0 {
                best = (total, fitted, total - fitted);
            }
        }
        let rows = data.labels.len();
        println!("{:<28} {rows:>8} {:>5} {:>10.6} {:>10.6} {:>10.6}", name_of(path), data.dims, best.1, best.2, best.0);
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.time {
        return time(&args);
    }
    if args.seeds == 0 {
        bail!("--seeds must be at least 1");
    }
    let published_path = match &args.published {
        Some(path) => Some(path.clone()),
        None => args.files[0].parent().map(|dir| dir.join("pyod_published_roc.csv")).filter(|p| p.exists()),
    };
    let published = match &published_path {
        Some(path) => published_iforest(path)?,
        None => HashMap::new(),
    };
    println!(
        "{:<14} {:>6} {:>5} {:>9} {:>8} {:>7} {:>10} {:>7}",
        "data", "rows", "dims", "outliers", "AUC", "sd", "published", "diff"
    );
    for path in &args.files {
        let data = read_odds(path)?;
        let (aucs, skipped) = evaluate(&data, args.seeds, args.forests)?;
        let (mean, sd) = mean_sd(&aucs);
        let name = name_of(path);
        let outliers = data.labels.iter().filter(|&&l| l).count() as f64 / data.labels.len() as f64;
        let (reference, diff) = match published.get(&name) {
            Some(p) => (format!("{p:.4}"), format!("{:+.4}", mean - p)),
            None => ("-".into(), "-".into()),
        };
        println!(
            "{name:<14} {:>6} {:>5} {:>8.2}% {mean:>8.4} {sd:>7.4} {reference:>10} {diff:>7}",
            data.labels.len(),
            data.dims,
            outliers * 100.0
        );
        if skipped > 0 {
            println!("  ({skipped} seeds skipped: their test part held a single class)");
        }
    }
    Ok(())
}
