//! The NAB subset in the shared datasets: windowedGaussian reproduced row by row, the scorer
//! reproducing NAB's per-row scores of the golden rows, and the ensemble's quality floor.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;

use surveil::nab::{
    Corpus, Detector, Profile, optimise_threshold, read_corpus, read_profiles, read_series, row_contributions,
    score_at, score_corpus,
};

fn nab_dir() -> PathBuf {
    common::data_dir().join("nab")
}

fn corpus() -> Corpus {
    let nab = nab_dir();
    let corpus = read_corpus(&nab.join("data"), &nab.join("labels/combined_windows.json")).expect("NAB corpus");
    assert_eq!(corpus.series.len(), 13, "the NAB subset has 13 series");
    corpus
}

fn profiles() -> Vec<Profile> {
    let profiles = read_profiles(&nab_dir().join("config/profiles.json")).expect("profiles");
    assert_eq!(profiles.len(), 3);
    profiles
}

/// A golden results file: every column of NAB's output, parsed.
struct Golden {
    scores: Vec<f64>,
    labels: Vec<u8>,
    /// (profile name, S(t) column)
    contributions: Vec<(String, Vec<f64>)>,
}

fn golden(name: &str) -> Golden {
    let (category, file) = name.split_once('/').unwrap();
    let path = nab_dir().join(format!("results/windowedGaussian/{category}/windowedGaussian_{file}"));
    let mut reader = csv::Reader::from_path(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let headers = reader.headers().unwrap().clone();
    let column = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (score, label) = (column("anomaly_score"), column("label"));
    let s_columns: Vec<(String, usize)> =
        headers.iter().enumerate().filter_map(|(i, h)| h.strip_prefix("S(t)_").map(|p| (p.to_string(), i))).collect();
    let mut g = Golden {
        scores: Vec::new(),
        labels: Vec::new(),
        contributions: s_columns.iter().map(|(p, _)| (p.clone(), Vec::new())).collect(),
    };
    for record in reader.records() {
        let record = record.unwrap();
        g.scores.push(record[score].parse().unwrap());
        g.labels.push(record[label].parse().unwrap());
        for ((_, i), (_, column)) in s_columns.iter().zip(g.contributions.iter_mut()) {
            column.push(record[*i].parse().unwrap());
        }
    }
    g
}

#[test]
fn windowed_gaussian_reproduces_nab_on_every_row() {
    let corpus = corpus();
    for series in &corpus.series {
        let reread = read_series(&nab_dir().join("data").join(&series.name), &series.name).unwrap();
        assert_eq!(reread.values, series.values);
        let ours = Detector::WindowedGaussian.score_series(&series.values);
        let golden = golden(&series.name);
        assert_eq!(ours.len(), golden.scores.len(), "{}", series.name);
        for (row, (a, b)) in ours.iter().zip(&golden.scores).enumerate() {
            assert!((a - b).abs() <= 1e-9, "{} row {row}: ours {a}, NAB {b}", series.name);
        }
    }
}

#[test]
fn windows_match_the_golden_labels() {
    let corpus = corpus();
    for (series, windows) in corpus.series.iter().zip(&corpus.windows) {
        let golden = golden(&series.name);
        for (i, label) in golden.labels.iter().enumerate() {
            let inside = windows.iter().any(|w| w.first <= i && i <= w.last);
            assert_eq!(u8::from(inside), *label, "{} row {i}", series.name);
        }
    }
}

/// NAB wrote the golden rows' `S(t)` columns at threshold 1.0 for every profile (the
/// windowedGaussian threshold of NAB's `thresholds.json`). Scoring the golden scores at that
/// threshold must give the same value on every row.
#[test]
fn scorer_reproduces_nab_row_scores_of_the_golden_rows() {
    let corpus = corpus();
    let goldens: Vec<Golden> = corpus.series.iter().map(|s| golden(&s.name)).collect();
    for profile in profiles() {
        let mut total = (0.0, 0.0);
        for ((series, windows), golden) in corpus.series.iter().zip(&corpus.windows).zip(&goldens) {
            let (_, expected) = golden.contributions.iter().find(|(p, _)| *p == profile.name).unwrap();
            let ours = row_contributions(&golden.scores, windows, profile.cost, 1.0);
            for (row, (a, b)) in ours.iter().zip(expected).enumerate() {
                assert!((a - b).abs() <= 1e-9, "{} {} row {row}: ours {a}, NAB {b}", profile.name, series.name);
            }
            total.0 += ours.iter().sum::<f64>();
            total.1 += expected.iter().sum::<f64>();
        }
        let scores: Vec<Vec<f64>> = goldens.iter().map(|g| g.scores.clone()).collect();
        let at_one = score_at(&corpus, &scores, profile.cost, 1.0);
        assert!((at_one.raw - total.1).abs() < 1e-9, "{}: {} vs NAB {}", profile.name, at_one.raw, total.1);
        // The optimiser finds at least as good a threshold, and its total is the direct one.
        let best = optimise_threshold(&corpus, &scores, profile.cost);
        assert!(best.raw >= at_one.raw - 1e-12);
        let direct = score_at(&corpus, &scores, profile.cost, best.threshold);
        assert!((direct.raw - best.raw).abs() < 1e-9, "{}: sweep {} vs direct {}", profile.name, best.raw, direct.raw);
        println!("{} golden windowedGaussian: at 1.0 {:.3}; optimised {best:?}", profile.name, at_one.normalised);
    }
}

#[test]
fn ensemble_beats_windowed_gaussian_on_the_subset() {
    let corpus = corpus();
    let standard = profiles().into_iter().find(|p| p.name == "standard").unwrap();
    let baseline: Vec<Vec<f64>> =
        corpus.series.iter().map(|s| Detector::WindowedGaussian.score_series(&s.values)).collect();
    let ensemble = score_corpus(&corpus, Detector::Ensemble, 2).unwrap();
    // The dataflow on two workers gives the sequential scores.
    for (series, scores) in corpus.series.iter().zip(&ensemble) {
        assert_eq!(&Detector::Ensemble.score_series(&series.values), scores, "{}", series.name);
    }
    let ours = optimise_threshold(&corpus, &ensemble, standard.cost);
    let theirs = optimise_threshold(&corpus, &baseline, standard.cost);
    println!("standard: ensemble {ours:?}, windowedGaussian {theirs:?}");
    assert!(ours.normalised > theirs.normalised + 10.0, "ensemble {ours:?} vs windowedGaussian {theirs:?}");
}
