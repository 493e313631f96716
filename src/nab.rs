//! The Numenta Anomaly Benchmark (NAB): corpus reader, detectors and a scorer that reproduces
//! NAB's own.
//!
//! A NAB corpus is a folder of CSV series (`<category>/<file>.csv`, columns `timestamp,value`),
//! a JSON file of labelled anomaly windows per series, and a JSON file of scoring profiles. The
//! scorer follows NAB's sweeper and optimiser:
//!
//! * the first `min(floor(0.15 n), 750)` rows of a series are probation and never count;
//! * a detection is a row whose score is at least the threshold;
//! * inside a window only the earliest detection counts, worth `tp * S(y) / S(-1)` where
//!   `S(y) = 2 / (1 + e^(5y)) - 1` and `y = -(right - i + 1) / width` is the row's position
//!   (-1 at the left edge, towards 0 at the right edge); a window without detection costs `fn`;
//! * a detection outside windows costs `fp * S(d)` with `d = (i - right) / (width - 1)`
//!   relative to the previous window, or the full `fp` before the first window (`S(d) = -1`
//!   for `d >= 3`);
//! * the threshold is optimised per detector and profile over the whole corpus (every distinct
//!   score is tried, as NAB's sweep does), and the raw total is normalised to
//!   `100 * (raw - null) / (perfect - null)`, with `null = -fn * windows` (nothing detected) and
//!   `perfect = tp * windows`.
//!
//! [`row_contributions`] gives the per-row `S(t)` columns in the layout of NAB's published
//! result files (a window's worth on its first row, false positives on their rows), which is
//! how the scorer is checked against NAB's golden `windowedGaussian` rows.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::NaiveDateTime;
use serde::Deserialize;
use surveil_operators::{Ensemble, EwmaZ, RobustZ, ScoreByKey, Scorer, WindowedGaussian};

/// Why a NAB file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum NabError {
    /// A file or folder could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file's content is not what NAB prescribes.
    #[error("{path}, line {line}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line (0: the file as a whole).
        line: u64,
        /// What is wrong.
        message: String,
    },
}

impl NabError {
    fn invalid(path: &Path, line: u64, message: impl Into<String>) -> NabError {
        NabError::Invalid { path: path.to_path_buf(), line, message: message.into() }
    }
}

/// One series of the corpus.
#[derive(Debug, Clone)]
pub struct Series {
    /// Path relative to the data folder with `/` separators, e.g. `realKnownCause/nyc_taxi.csv`:
    /// the key of the labels file.
    pub name: String,
    /// Timestamps as written in the file.
    pub timestamps: Vec<String>,
    /// Values as written in the file (results files repeat them verbatim).
    pub raw_values: Vec<String>,
    /// Parsed values.
    pub values: Vec<f64>,
}

impl Series {
    /// The category folder, e.g. `realKnownCause`.
    pub fn category(&self) -> &str {
        self.name.rsplit_once('/').map_or("", |(category, _)| category)
    }

    /// The file name, e.g. `nyc_taxi.csv`.
    pub fn file_name(&self) -> &str {
        self.name.rsplit_once('/').map_or(&self.name, |(_, file)| file)
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether the series has no rows.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// A labelled anomaly window as inclusive row indices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// First row in the window.
    pub first: usize,
    /// Last row in the window.
    pub last: usize,
}

/// Series with their windows.
#[derive(Debug, Clone, Default)]
pub struct Corpus {
    /// Series sorted by name.
    pub series: Vec<Series>,
    /// Windows of each series, parallel to `series`.
    pub windows: Vec<Vec<Window>>,
}

impl Corpus {
    /// Number of windows with at least one row after probation: the windows that count.
    pub fn scorable_windows(&self) -> usize {
        self.series
            .iter()
            .zip(&self.windows)
            .map(|(s, w)| w.iter().filter(|w| w.last >= probation_length(s.len())).count())
            .sum()
    }
}

/// Reads one series CSV (`timestamp,value` with a header).
pub fn read_series(path: &Path, name: &str) -> Result<Series, NabError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_path(path)
        .map_err(|e| NabError::invalid(path, 0, e.to_string()))?;
    let headers = reader.headers().map_err(|e| NabError::invalid(path, 1, e.to_string()))?.clone();
    let column = |wanted: &str| headers.iter().position(|h| h.trim() == wanted);
    let (Some(t), Some(v)) = (column("timestamp"), column("value")) else {
        return Err(NabError::invalid(path, 1, "expected the columns timestamp and value"));
    };
    let mut series =
        Series { name: name.to_string(), timestamps: Vec::new(), raw_values: Vec::new(), values: Vec::new() };
    for (row, record) in reader.records().enumerate() {
        let line = row as u64 + 2;
        let record = record.map_err(|e| NabError::invalid(path, line, e.to_string()))?;
        let (Some(time), Some(raw)) = (record.get(t), record.get(v)) else {
            return Err(NabError::invalid(path, line, "missing field"));
        };
        let value: f64 =
            raw.trim().parse().map_err(|_| NabError::invalid(path, line, format!("value {raw:?} is not a number")))?;
        series.timestamps.push(time.to_string());
        series.raw_values.push(raw.to_string());
        series.values.push(value);
    }
    Ok(series)
}

fn parse_time(text: &str) -> Option<NaiveDateTime> {
    NaiveDateTime::parse_from_str(text.trim(), "%Y-%m-%d %H:%M:%S%.f").ok()
}

/// Reads every `<category>/<file>.csv` under `data_dir` and the windows of each from NAB's
/// `combined_windows.json`. Windows of series absent from `data_dir` are ignored (a subset of
/// the corpus is a corpus); a series without an entry in the labels is an error.
pub fn read_corpus(data_dir: &Path, windows_path: &Path) -> Result<Corpus, NabError> {
    let text =
        std::fs::read_to_string(windows_path).map_err(|source| NabError::Io { path: windows_path.into(), source })?;
    let labels: BTreeMap<String, Vec<(String, String)>> =
        serde_json::from_str(&text).map_err(|e| NabError::invalid(windows_path, e.line() as u64, e.to_string()))?;

    let mut names = Vec::new();
    let read_dir = |dir: &Path| std::fs::read_dir(dir).map_err(|source| NabError::Io { path: dir.into(), source });
    for category in read_dir(data_dir)? {
        let category = category.map_err(|source| NabError::Io { path: data_dir.into(), source })?.path();
        if !category.is_dir() {
            continue;
        }
        for file in read_dir(&category)? {
            let file = file.map_err(|source| NabError::Io { path: category.clone(), source })?.path();
            if file.extension().is_some_and(|e| e == "csv") {
                let (Some(c), Some(f)) = (category.file_name(), file.file_name()) else { continue };
                names.push((format!("{}/{}", c.to_string_lossy(), f.to_string_lossy()), file));
            }
        }
    }
    names.sort();

    let mut corpus = Corpus::default();
    for (name, path) in names {
        let series = read_series(&path, &name)?;
        let Some(limits) = labels.get(&name) else {
            return Err(NabError::invalid(windows_path, 0, format!("no windows for {name}")));
        };
        let times: Vec<Option<NaiveDateTime>> = series.timestamps.iter().map(|t| parse_time(t)).collect();
        if let Some(row) = times.iter().position(Option::is_none) {
            return Err(NabError::invalid(&path, row as u64 + 2, "timestamp is not YYYY-MM-DD HH:MM:SS"));
        }
        let times: Vec<NaiveDateTime> = times.into_iter().flatten().collect();
        let mut windows = Vec::new();
        for (start, end) in limits {
            let (Some(start), Some(end)) = (parse_time(start), parse_time(end)) else {
                return Err(NabError::invalid(windows_path, 0, format!("bad window limits for {name}")));
            };
            // Rows with start <= t <= end, as NAB's window selection.
            let first = times.partition_point(|t| *t < start);
            let after = times.partition_point(|t| *t <= end);
            if first < after {
                windows.push(Window { first, last: after - 1 });
            }
        }
        corpus.series.push(series);
        corpus.windows.push(windows);
    }
    Ok(corpus)
}

/// The weights of one scoring profile.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct CostMatrix {
    /// Worth of a window detected at its left edge.
    #[serde(rename = "tpWeight")]
    pub tp: f64,
    /// Cost of a detection far from any window.
    #[serde(rename = "fpWeight")]
    pub fp: f64,
    /// Cost of a missed window.
    #[serde(rename = "fnWeight")]
    pub fn_: f64,
}

/// A named scoring profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// NAB's name: `standard`, `reward_low_FP_rate`, `reward_low_FN_rate`.
    pub name: String,
    /// Its weights.
    pub cost: CostMatrix,
}

/// Reads NAB's `profiles.json`; profiles come out as `standard` first, then by name.
pub fn read_profiles(path: &Path) -> Result<Vec<Profile>, NabError> {
    #[derive(Deserialize)]
    struct Entry {
        #[serde(rename = "CostMatrix")]
        cost: CostMatrix,
    }
    let text = std::fs::read_to_string(path).map_err(|source| NabError::Io { path: path.into(), source })?;
    let entries: BTreeMap<String, Entry> =
        serde_json::from_str(&text).map_err(|e| NabError::invalid(path, e.line() as u64, e.to_string()))?;
    let mut profiles: Vec<Profile> = entries.into_iter().map(|(name, e)| Profile { name, cost: e.cost }).collect();
    profiles.sort_by_key(|p| (p.name != "standard", p.name.clone()));
    Ok(profiles)
}

/// Rows at the start of a series that are never scored.
pub fn probation_length(rows: usize) -> usize {
    ((0.15 * rows as f64).floor() as usize).min(750)
}

/// NAB's scaled sigmoid: `2 / (1 + e^(5x)) - 1`, and -1 from `x >= 3`.
pub fn scaled_sigmoid(x: f64) -> f64 {
    if x >= 3.0 { -1.0 } else { 2.0 / (1.0 + (5.0 * x).exp()) - 1.0 }
}

/// What a row is worth if detected, and to which window it belongs.
#[derive(Debug, Clone, Copy)]
struct Weighted {
    score: f64,
    worth: f64,
    window: Option<usize>,
}

/// The scorable rows of one series with their worth if detected (window ids offset by `base`).
fn weigh(scores: &[f64], windows: &[Window], cost: CostMatrix, base: usize, out: &mut Vec<Weighted>) {
    let probation = probation_length(scores.len());
    let max_tp = scaled_sigmoid(-1.0);
    let mut next = 0;
    let mut previous: Option<Window> = None;
    for (i, &score) in scores.iter().enumerate() {
        while next < windows.len() && windows[next].last < i {
            previous = Some(windows[next]);
            next += 1;
        }
        if i < probation {
            continue;
        }
        let score = if score.is_finite() { score } else { 0.0 };
        let inside = next < windows.len() && windows[next].first <= i;
        let weighted = if inside {
            let w = windows[next];
            let width = (w.last - w.first + 1) as f64;
            let position = -((w.last - i + 1) as f64) / width;
            Weighted { score, worth: scaled_sigmoid(position) * cost.tp / max_tp, window: Some(base + next) }
        } else {
            let unweighted = match previous {
                None => -1.0,
                Some(w) if w.last == w.first => -1.0,
                Some(w) => scaled_sigmoid((i - w.last) as f64 / (w.last - w.first) as f64),
            };
            Weighted { score, worth: unweighted * cost.fp, window: None }
        };
        out.push(weighted);
    }
}

/// A detector's result on a corpus at one threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThresholdScore {
    /// Detections are scores at or above this.
    pub threshold: f64,
    /// Raw NAB score: window worths, minus missed windows, minus false positives.
    pub raw: f64,
    /// `100 * (raw - null) / (perfect - null)`.
    pub normalised: f64,
    /// Windows with a detection.
    pub detected_windows: usize,
    /// Windows that count (some row after probation).
    pub windows: usize,
    /// Detections outside windows.
    pub false_positives: usize,
}

fn normalise(raw: f64, windows: usize, cost: CostMatrix) -> f64 {
    let null = -cost.fn_ * windows as f64;
    let perfect = cost.tp * windows as f64;
    if perfect > null { 100.0 * (raw - null) / (perfect - null) } else { 0.0 }
}

/// The scores of every series of a corpus, parallel to [`Corpus::series`].
pub type CorpusScores = [Vec<f64>];

fn weigh_corpus(corpus: &Corpus, scores: &CorpusScores, cost: CostMatrix) -> (Vec<Weighted>, usize) {
    let mut rows = Vec::new();
    let mut base = 0;
    for (s, windows) in scores.iter().zip(&corpus.windows) {
        weigh(s, windows, cost, base, &mut rows);
        base += windows.len();
    }
    (rows, base)
}

/// The score at `threshold`.
pub fn score_at(corpus: &Corpus, scores: &CorpusScores, cost: CostMatrix, threshold: f64) -> ThresholdScore {
    let (rows, window_count) = weigh_corpus(corpus, scores, cost);
    let mut best: Vec<Option<f64>> = vec![None; window_count];
    let mut scorable = vec![false; window_count];
    let (mut fp_total, mut false_positives) = (0.0, 0);
    for row in &rows {
        match row.window {
            Some(w) => {
                scorable[w] = true;
                if row.score >= threshold && best[w].is_none() {
                    // Rows come in time order: the first detection is the earliest.
                    best[w] = Some(row.worth);
                }
            }
            None if row.score >= threshold => {
                fp_total += row.worth;
                false_positives += 1;
            }
            None => {}
        }
    }
    let windows = scorable.iter().filter(|s| **s).count();
    let detected: f64 = best.iter().flatten().sum();
    let detected_windows = best.iter().flatten().count();
    let raw = detected - cost.fn_ * (windows - detected_windows) as f64 + fp_total;
    ThresholdScore {
        threshold,
        raw,
        normalised: normalise(raw, windows, cost),
        detected_windows,
        windows,
        false_positives,
    }
}

/// The best threshold over the corpus: every distinct score is tried, highest first, and the
/// highest threshold among equal best totals wins. "Detect nothing" (threshold 1.1, or above the
/// largest score) is a candidate.
pub fn optimise_threshold(corpus: &Corpus, scores: &CorpusScores, cost: CostMatrix) -> ThresholdScore {
    let (mut rows, window_count) = weigh_corpus(corpus, scores, cost);
    let mut scorable = vec![false; window_count];
    for row in &rows {
        if let Some(w) = row.window {
            scorable[w] = true;
        }
    }
    let windows = scorable.iter().filter(|s| **s).count();
    rows.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut parts: Vec<Option<f64>> = vec![None; window_count];
    let mut raw = -cost.fn_ * windows as f64;
    let (mut detected_windows, mut false_positives) = (0, 0);
    let top = rows.first().map_or(1.0, |r| r.score);
    let start = if top < 1.1 { 1.1 } else { top.next_up() };
    let mut best = ThresholdScore {
        threshold: start,
        raw,
        normalised: normalise(raw, windows, cost),
        detected_windows,
        windows,
        false_positives,
    };
    let mut i = 0;
    while i < rows.len() {
        let threshold = rows[i].score;
        while i < rows.len() && rows[i].score == threshold {
            let row = rows[i];
            match row.window {
                Some(w) => match parts[w] {
                    None => {
                        raw += row.worth + cost.fn_;
                        parts[w] = Some(row.worth);
                        detected_windows += 1;
                    }
                    Some(old) if row.worth > old => {
                        raw += row.worth - old;
                        parts[w] = Some(row.worth);
                    }
                    Some(_) => {}
                },
                None => {
                    raw += row.worth;
                    false_positives += 1;
                }
            }
            i += 1;
        }
        if raw > best.raw {
            best = ThresholdScore {
                threshold,
                raw,
                normalised: normalise(raw, windows, cost),
                detected_windows,
                windows,
                false_positives,
            };
        }
    }
    best
}

/// Per-row `S(t)` at `threshold`, laid out as NAB's published result files: a window's worth
/// (or `-fn` when missed) on the window's first row, a false positive's cost on its row, 0
/// elsewhere. Their sum is the series' raw score.
pub fn row_contributions(scores: &[f64], windows: &[Window], cost: CostMatrix, threshold: f64) -> Vec<f64> {
    let mut rows = Vec::new();
    weigh(scores, windows, cost, 0, &mut rows);
    let probation = probation_length(scores.len());
    let mut out = vec![0.0; scores.len()];
    let mut detected = vec![false; windows.len()];
    for (offset, row) in rows.iter().enumerate() {
        let i = probation + offset;
        match row.window {
            Some(w) => {
                let first = windows[w].first.max(probation);
                if !detected[w] && row.score >= threshold {
                    detected[w] = true;
                    out[first] = row.worth;
                } else if !detected[w] && i == windows[w].last {
                    out[first] = -cost.fn_;
                }
            }
            None if row.score >= threshold => out[i] = row.worth,
            None => {}
        }
    }
    out
}

/// The detectors the NAB example can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Detector {
    /// [`Ensemble`]: the default and best.
    Ensemble,
    /// NAB's windowedGaussian, exactly.
    WindowedGaussian,
    /// [`EwmaZ`] with alpha 0.005 (about 400 values of memory).
    Ewma,
    /// [`RobustZ`] over the last 1,000 values.
    RobustZ,
}

impl Detector {
    /// Every detector, the default first.
    pub const ALL: [Detector; 4] = [Detector::Ensemble, Detector::WindowedGaussian, Detector::Ewma, Detector::RobustZ];

    /// The name used in NAB's results layout (`<name>/<category>/<name>_<file>.csv`).
    pub fn nab_name(self) -> &'static str {
        match self {
            Detector::Ensemble => "surveilEnsemble",
            Detector::WindowedGaussian => "windowedGaussian",
            Detector::Ewma => "ewmaZ",
            Detector::RobustZ => "robustZ",
        }
    }

    /// A fresh scorer for one series.
    pub fn scorer(self) -> Box<dyn Scorer + Send> {
        match self {
            Detector::Ensemble => Box::new(Ensemble::default()),
            Detector::WindowedGaussian => Box::new(WindowedGaussian::nab()),
            Detector::Ewma => Box::new(EwmaZ::new(0.005, 50)),
            Detector::RobustZ => Box::new(RobustZ::new(1000, 50)),
        }
    }

    /// Scores a whole series in order.
    pub fn score_series(self, values: &[f64]) -> Vec<f64> {
        let mut scorer = self.scorer();
        values.iter().map(|v| scorer.score(*v)).collect()
    }
}

/// Scores every series of `corpus` with `detector` in a timely dataflow on `workers` threads:
/// one [`ScoreByKey`] operator keyed by series, event time = row number. The scores are the
/// same as [`Detector::score_series`] on each series, for any number of workers.
pub fn score_corpus(corpus: &Corpus, detector: Detector, workers: usize) -> Result<Vec<Vec<f64>>, NabError> {
    use timely::dataflow::operators::capture::{Capture, Event};
    use timely::dataflow::operators::{Input, Probe};

    type Row = (u64, u64, f64);
    let rows: Vec<Row> = corpus
        .series
        .iter()
        .enumerate()
        .flat_map(|(k, s)| s.values.iter().enumerate().map(move |(i, v)| (k as u64, i as u64, *v)))
        .collect();
    let rows = std::sync::Arc::new(rows);
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let result = timely::execute(timely::Config::process(workers.max(1)), move |worker| {
        let Ok(tx) = tx.lock().map(|t| t.clone()) else { return };
        let rows = std::sync::Arc::clone(&rows);
        let (mut input, probe) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, stream) = scope.new_input::<Vec<Row>>();
            let scored = stream.score_by_key(
                "ScoreSeries",
                |r: &Row| r.0,
                |r: &Row| (r.1, 0),
                |r: &Row| r.2,
                move |_key| detector.scorer(),
            );
            scored.clone().capture_into(tx);
            (input, scored.probe().0)
        });
        if worker.index() == 0 {
            for row in rows.iter() {
                input.send(*row);
            }
        }
        drop(input);
        worker.step_while(|| !probe.done());
    });
    result.map_err(|e| NabError::Io { path: PathBuf::new(), source: std::io::Error::other(e) })?;
    let mut scores: Vec<Vec<f64>> = corpus.series.iter().map(|s| vec![0.0; s.len()]).collect();
    for event in rx {
        if let Event::Messages(_, batch) = event {
            for ((k, i, _), scored) in batch {
                scores[k as usize][i as usize] = scored.score;
            }
        }
    }
    Ok(scores)
}

/// Writes one series' results file in NAB's layout (`timestamp,value,anomaly_score,label`,
/// label 1 inside windows) under `out_dir/<detector>/<category>/<detector>_<file>`.
pub fn write_results(
    out_dir: &Path,
    detector: &str,
    series: &Series,
    windows: &[Window],
    scores: &[f64],
) -> Result<PathBuf, NabError> {
    use std::io::Write;
    let dir = out_dir.join(detector).join(series.category());
    std::fs::create_dir_all(&dir).map_err(|source| NabError::Io { path: dir.clone(), source })?;
    let path = dir.join(format!("{detector}_{}", series.file_name()));
    let io = |source| NabError::Io { path: path.clone(), source };
    let file = std::fs::File::create(&path).map_err(io)?;
    let mut out = std::io::BufWriter::new(file);
    writeln!(out, "timestamp,value,anomaly_score,label").map_err(io)?;
    for (i, ((time, value), score)) in series.timestamps.iter().zip(&series.raw_values).zip(scores).enumerate() {
        let label = u8::from(windows.iter().any(|w| w.first <= i && i <= w.last));
        writeln!(out, "{time},{value},{score},{label}").map_err(io)?;
    }
    out.flush().map_err(io)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STANDARD: CostMatrix = CostMatrix { tp: 1.0, fp: 0.11, fn_: 1.0 };

    fn corpus(rows: usize, windows: Vec<Window>) -> Corpus {
        let series = Series {
            name: "cat/file.csv".into(),
            timestamps: vec![String::new(); rows],
            raw_values: vec![String::new(); rows],
            values: vec![0.0; rows],
        };
        Corpus { series: vec![series], windows: vec![windows] }
    }

    #[test]
    fn probation_is_fifteen_percent_up_to_750() {
        assert_eq!(probation_length(4032), 604);
        assert_eq!(probation_length(10320), 750);
    }

    #[test]
    fn left_edge_detection_is_worth_the_full_weight() {
        let c = corpus(200, vec![Window { first: 100, last: 119 }]);
        let mut scores = vec![0.0; 200];
        scores[100] = 1.0;
        let s = score_at(&c, &[scores.clone()], STANDARD, 0.5);
        assert!((s.raw - 1.0).abs() < 1e-12);
        assert_eq!(s.normalised, 100.0);
        let best = optimise_threshold(&c, &[scores], STANDARD);
        assert_eq!((best.threshold, best.raw), (1.0, s.raw));
    }

    #[test]
    fn false_positives_before_any_window_cost_the_full_weight() {
        let c = corpus(200, vec![Window { first: 150, last: 159 }]);
        let mut scores = vec![0.0; 200];
        scores[50] = 1.0;
        scores[10] = 1.0; // probation
        let s = score_at(&c, &[scores.clone()], STANDARD, 1.0);
        assert!((s.raw - (-1.0 - 0.11)).abs() < 1e-12);
        assert_eq!(s.false_positives, 1);
        let parts = row_contributions(&scores, &c.windows[0], STANDARD, 1.0);
        assert!((parts.iter().sum::<f64>() - s.raw).abs() < 1e-12);
        assert_eq!(parts[150], -1.0);
    }

    #[test]
    fn sweep_agrees_with_direct_scoring() {
        let c = corpus(300, vec![Window { first: 100, last: 139 }, Window { first: 200, last: 219 }]);
        let scores: Vec<f64> = (0..300u64).map(|i| ((i * 7919) % 101) as f64 / 100.0).collect();
        let best = optimise_threshold(&c, std::slice::from_ref(&scores), STANDARD);
        let direct = score_at(&c, &[scores], STANDARD, best.threshold);
        assert!((best.raw - direct.raw).abs() < 1e-9);
        assert_eq!(best.detected_windows, direct.detected_windows);
    }
}
