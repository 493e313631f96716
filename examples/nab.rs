//! Runs a detector over a Numenta Anomaly Benchmark corpus, writes NAB's results layout and
//! prints the NAB scores with thresholds optimised over the corpus.
//!
//! ```text
//! cargo run --release --example nab -- DATA_DIR OUT_DIR [--detector NAME] [--workers N]
//! cargo run --release --example nab -- ../shared/datasets/nab/data /tmp/nab-results
//! cargo run --release --example nab -- ../shared/datasets/nab/data /tmp/nab-results --detector windowed-gaussian
//! ```
//!
//! For every series `DATA_DIR/<category>/<file>.csv` it writes
//! `OUT_DIR/<detector>/<category>/<detector>_<file>.csv` with the columns
//! `timestamp,value,anomaly_score,label`, one row per input row, scores computed causally, so
//! NAB's own scorer can rank the detector. The windows and profiles are read from NAB's usual
//! places beside the data folder (`../labels/combined_windows.json`,
//! `../config/profiles.json`) unless given. `--detector all` runs every detector in turn.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use surveil::nab::{Detector, optimise_threshold, read_corpus, read_profiles, score_corpus, write_results};

#[derive(Parser)]
#[command(about = "Score a NAB corpus with a surveil detector")]
struct Args {
    /// NAB data folder (`<category>/<file>.csv`).
    data_dir: PathBuf,
    /// Where to write the results layout.
    out_dir: PathBuf,
    /// Detector to run, or `all`.
    #[arg(long, default_value = "ensemble")]
    detector: String,
    /// Labelled windows (default: DATA_DIR/../labels/combined_windows.json).
    #[arg(long)]
    windows: Option<PathBuf>,
    /// Scoring profiles (default: DATA_DIR/../config/profiles.json).
    #[arg(long)]
    profiles: Option<PathBuf>,
    /// Worker threads of the dataflow.
    #[arg(long, default_value_t = 1)]
    workers: usize,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("nab: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    use clap::ValueEnum;
    let detectors: Vec<Detector> = if args.detector == "all" {
        Detector::ALL.to_vec()
    } else {
        vec![Detector::from_str(&args.detector, true).map_err(|_| {
            let names: Vec<String> = Detector::value_variants()
                .iter()
                .filter_map(|d| d.to_possible_value())
                .map(|v| v.get_name().to_string())
                .collect();
            format!("unknown detector {:?}; expected one of {} or all", args.detector, names.join(", "))
        })?]
    };
    let root = args.data_dir.join("..");
    let windows = args.windows.unwrap_or_else(|| root.join("labels/combined_windows.json"));
    let profiles = args.profiles.unwrap_or_else(|| root.join("config/profiles.json"));
    let corpus = read_corpus(&args.data_dir, &windows).map_err(|e| e.to_string())?;
    let profiles = read_profiles(&profiles).map_err(|e| e.to_string())?;
    if corpus.series.is_empty() {
        return Err(format!("no series under {}", args.data_dir.display()));
    }
    println!(
        "{} series, {} rows, {} windows",
        corpus.series.len(),
        corpus.series.iter().map(|s| s.len()).sum::<usize>(),
        corpus.scorable_windows()
    );
    for detector in detectors {
        let scores = score_corpus(&corpus, detector, args.workers).map_err(|e| e.to_string())?;
        for ((series, windows), scores) in corpus.series.iter().zip(&corpus.windows).zip(&scores) {
            write_results(&args.out_dir, detector.nab_name(), series, windows, scores).map_err(|e| e.to_string())?;
        }
        for profile in &profiles {
            let best = optimise_threshold(&corpus, &scores, profile.cost);
            println!(
                "{:<18} {:<20} score {:>7.2}  threshold {:.6}  raw {:>8.3}  windows {}/{}  false positives {}",
                detector.nab_name(),
                profile.name,
                best.normalised,
                best.threshold,
                best.raw,
                best.detected_windows,
                best.windows,
                best.false_positives
            );
        }
    }
    Ok(())
}
