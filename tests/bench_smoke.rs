//! A short run of the benchmark harness on tiny inputs, so that it never rots: the comparison
//! job agrees with a batch computation on 1 and 2 workers, and the paced latency run emits
//! every event and the same alerts as a plain run; the stall probe reports consistent figures.
//! No timing is checked.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use surveil::bench::latency::{LatencyOptions, load, run_latency};
use surveil::bench::stalls::measure_stalls;
use surveil::bench::trades::{TradesConfig, generate_trades, parse_trade};
use surveil::bench::window_job::{Job, JobOptions, run_job};
use surveil::config::Config;
use surveil::generate::{GenerateConfig, generate};
use surveil::pipeline::{inputs, run_files};
use surveil::reference::ReferenceData;

const SECOND: u64 = 1_000_000_000;
const THRESHOLD: i64 = 2_000;

/// The rows of every part file named `{name}-*.csv` in `dir`, without headers.
fn rows(dir: &Path, name: &str) -> Vec<String> {
    let mut rows = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read output folder") {
        let path = entry.expect("entry").path();
        let file = path.file_name().expect("name").to_string_lossy().into_owned();
        if file.starts_with(&format!("{name}-")) && file.ends_with(".csv") {
            let text = std::fs::read_to_string(&path).expect("read part");
            rows.extend(text.lines().skip(1).map(str::to_owned));
        }
    }
    rows.sort();
    rows
}

/// (account, window start) -> (count, Σqty, Σ price·qty) computed directly from the file.
fn batch_windows(path: &Path) -> BTreeMap<(String, u64), (u64, i64, i128)> {
    let text = std::fs::read_to_string(path).expect("read trades");
    let mut windows = BTreeMap::new();
    for line in text.lines().skip(1) {
        let trade = parse_trade(line.as_bytes()).expect("generated rows are valid");
        let account = line.split(',').nth(1).expect("account").to_owned();
        let entry = windows.entry((account, trade.time / SECOND * SECOND)).or_insert((0, 0, 0));
        entry.0 += 1;
        entry.1 += trade.qty;
        entry.2 += i128::from(trade.qty) * i128::from(trade.price);
    }
    windows
}

#[test]
fn the_comparison_job_matches_a_batch_computation_on_one_and_two_workers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("trades.csv");
    let config = TradesConfig { trades: 20_000, accounts: 200, trades_per_second: 1_000, ..TradesConfig::default() };
    generate_trades(&config, &input).expect("generate trades");
    let expected = batch_windows(&input);
    let expected_alerts: BTreeSet<(String, u64, i64)> =
        expected.iter().filter(|(_, v)| v.1 > THRESHOLD).map(|((a, s), v)| (a.clone(), *s, v.1)).collect();
    assert!(!expected_alerts.is_empty(), "the threshold should produce alerts");

    for workers in [1, 2] {
        let out = dir.path().join(format!("windows-{workers}"));
        let options = JobOptions { workers, threshold: THRESHOLD, out_dir: Some(out.clone()), ..JobOptions::default() };
        let summary = run_job(&input, &options).expect("windows job");
        assert_eq!((summary.trades, summary.rejected, summary.late), (20_000, 0, 0), "{workers} workers");
        assert_eq!(summary.windows as usize, expected.len());

        let windows = rows(&out, "windows");
        assert_eq!(windows.len(), expected.len());
        for row in &windows {
            let fields: Vec<&str> = row.split(',').collect();
            assert_eq!(fields.len(), 5, "{row}");
            let start: u64 = fields[1].parse().expect("start");
            let (count, qty, notional) = expected[&(fields[0].to_owned(), start)];
            assert_eq!(fields[2].parse::<u64>().expect("count"), count, "{row}");
            assert_eq!(fields[3].parse::<i64>().expect("qty"), qty, "{row}");
            let vwap: f64 = fields[4].parse().expect("vwap");
            let exact = notional as f64 / qty as f64 / 100.0;
            assert!((vwap - exact).abs() <= 1e-9 * exact, "{row}: vwap {exact}");
        }
        let alerts: BTreeSet<(String, u64, i64)> = rows(&out, "alerts")
            .iter()
            .map(|r| {
                let f: Vec<&str> = r.split(',').collect();
                (f[0].to_owned(), f[1].parse().expect("start"), f[2].parse().expect("qty"))
            })
            .collect();
        assert_eq!(alerts, expected_alerts, "{workers} workers");
        assert_eq!(summary.alerts as usize, expected_alerts.len());

        let out = dir.path().join(format!("self-{workers}"));
        let options = JobOptions { job: Job::SelfTrades, workers, out_dir: Some(out.clone()), ..JobOptions::default() };
        let summary = run_job(&input, &options).expect("self-trade job");
        let text = std::fs::read_to_string(&input).expect("read trades");
        let expected_self = text
            .lines()
            .skip(1)
            .filter(|l| {
                let f: Vec<&str> = l.split(',').collect();
                f[1] == f[2]
            })
            .count();
        assert!(expected_self > 0);
        assert_eq!(summary.self_trades as usize, expected_self);
        assert_eq!(rows(&out, "self_trades").len(), expected_self);

        let summary =
            run_job(&input, &JobOptions { job: Job::Parse, workers, ..JobOptions::default() }).expect("parse");
        assert_eq!(summary.trades, 20_000);
    }
}

#[test]
fn a_paced_replay_emits_every_event_and_the_alerts_of_a_plain_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let day = dir.path().join("day");
    let generated =
        generate(&GenerateConfig { events: 20_000, ..GenerateConfig::default() }, &day).expect("generate day");
    let config = Config::load(&day.join("surveil.toml")).expect("config");
    let plain = run_files(std::slice::from_ref(&generated.events_path), config.clone(), 1, &dir.path().join("plain"))
        .expect("plain run");
    assert!(plain.alerts > 0, "the generated day has injected breaches");

    let reference = Arc::new(ReferenceData::load(&config).expect("reference"));
    let recorded = load(&inputs(&[generated.events_path], None), &config, &reference, usize::MAX).expect("load");
    assert_eq!(recorded.events.len() as u64, plain.events - plain.dead_letters);
    let events = Arc::new(recorded.events);
    // Sleeping and spinning workers must see the same events and alerts.
    for (workers, spin) in [(1, false), (2, false), (2, true)] {
        let options = LatencyOptions {
            rate: 2_000_000.0,
            events: events.len(),
            workers,
            epoch_ns: 1_000_000,
            restamp: None,
            poll: std::time::Duration::from_micros(100),
            spin,
        };
        let out = dir.path().join(format!("paced-{workers}-{spin}"));
        let result = run_latency(&events, &recorded.side, &config, &reference, &options, &out).expect("paced run");
        assert_eq!(result.events, events.len() as u64);
        assert_eq!(result.recorded, result.events, "every event is emitted once");
        assert!(result.p50_us <= result.p99_us && result.p99_us <= result.p999_us && result.p999_us <= result.max_us);
        assert!(result.distribution.windows(2).all(|w| w[0].1 <= w[1].1));
        assert_eq!(result.alerts, plain.alerts, "{workers} workers");
        assert!(result.cpu_cores > 0.0, "the run's CPU time is measured");
        let written = std::fs::read_to_string(out.join("alerts.jsonl")).expect("alerts file");
        assert_eq!(written.lines().count() as u64, result.alerts);
    }
}

#[test]
fn the_stall_probe_reports_one_consistent_row_per_thread() {
    for threads in [1, 2] {
        let report = measure_stalls(threads, std::time::Duration::from_millis(20), std::time::Duration::from_micros(1));
        assert_eq!(report.threads, threads);
        assert_eq!(report.per_thread.len(), threads);
        for thread in &report.per_thread {
            assert!((0.0..=1.0).contains(&thread.share), "share {}", thread.share);
            assert!(thread.max_us <= thread.total_us + 1e-9);
            assert_eq!(thread.gaps == 0, thread.total_us == 0.0);
        }
    }
}
