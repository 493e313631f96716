//! The end-to-end benchmark harness: throughput, latency under an open-loop load, memory over a
//! long replay, and the job the side-by-side comparison with other engines runs.
//!
//! ```text
//! cargo run --release --example bench -- all [--long]     # e2e + stalls + latency (+ 100 M-event memory)
//! cargo run --release --example bench -- e2e [--events N] [--workers 1,2] [--repeat R] [--mix take=2,...]
//! cargo run --release --example bench -- latency [--rates 100000,1000000,5000000] [--seconds S] [--spin]
//! cargo run --release --example bench -- stalls [--seconds S]   # what the machine takes from busy threads
//! cargo run --release --example bench -- long [--events 100000000]
//! cargo run --release --example bench -- trades --out FILE [--trades N] [--accounts N]
//! cargo run --example bench -- gate [--record]   # the CI gate: default job against a floor, same process
//! cargo run --release --example bench -- job --input FILE [--job windows|self-trades|parse] [--workers N] [--out DIR]
//! ```
//!
//! `e2e`, `latency` and `long` read the generated day (`surveil generate`, made once into
//! `target/bench/day-N/`) or `--input FILE --config surveil.toml`, and write their results as
//! JSON into `--results` (default `target/bench-results/`), which `benches/peers/plot.py` turns
//! into the plots of `docs/benchmarks.md`. Throughput and memory cases each run in a child
//! process, so that peak memory is the case's own. `benches/peers/run.sh` runs the comparison
//! with Flink, Bytewax, Polars and DuckDB on the file `trades` writes.

/// The `surveil` command's allocator, so that what the harness measures is what the command
/// runs.
#[cfg(all(unix, not(target_env = "musl")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use serde::Serialize;
use serde_json::Value;
use surveil::bench::latency::{LatencyOptions, LatencyResult, load, run_latency};
use surveil::bench::stalls::{StallReport, measure_stalls};
use surveil::bench::trades::{TradesConfig, generate_trades};
use surveil::bench::window_job::{Job, JobOptions, run_job};
use surveil::config::Config;
use surveil::generate::{EventMix, GenerateConfig, generate};
use surveil::pipeline::{RunOptions, inputs, run};
use surveil::reference::ReferenceData;

#[derive(Parser)]
#[command(about = "surveil's end-to-end benchmark harness")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Throughput and latency (and, with --long, memory over a 100 M-event replay).
    All {
        #[command(flatten)]
        data: DataArgs,
        /// Also run the long memory replay.
        #[arg(long)]
        long: bool,
        /// Events of the long replay.
        #[arg(long, default_value_t = 100_000_000)]
        long_events: u64,
    },
    /// Events/s, peak RSS and alerts of the default job with 1 and 2 workers.
    E2e {
        #[command(flatten)]
        data: DataArgs,
    },
    /// Latency percentiles of the default job at each offered load.
    Latency {
        #[command(flatten)]
        data: DataArgs,
    },
    /// How long the machine takes the CPU from 1 and 2 threads that keep a core busy each: the
    /// floor under the latency figures of the same run.
    Stalls {
        /// Seconds per measurement.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Gaps shorter than this are not counted, µs.
        #[arg(long, default_value_t = 500)]
        threshold_us: u64,
        /// Where results (JSON) go.
        #[arg(long, default_value = "target/bench-results")]
        results: PathBuf,
    },
    /// Resident memory at the start, middle and end of a long run of the default job.
    Long {
        #[command(flatten)]
        data: DataArgs,
    },
    /// Writes the trades-only CSV of the engine comparison.
    Trades {
        /// The file to write.
        #[arg(long)]
        out: PathBuf,
        /// Rows.
        #[arg(long, default_value_t = 2_000_000)]
        trades: u64,
        /// Accounts.
        #[arg(long, default_value_t = 10_000)]
        accounts: u32,
        /// Instruments.
        #[arg(long, default_value_t = 100)]
        instruments: u32,
        /// Seed.
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
    /// Runs the comparison job on a trades file and prints its summary as JSON.
    Job {
        /// The trades file.
        #[arg(long)]
        input: PathBuf,
        /// Which job.
        #[arg(long, value_enum, default_value = "windows")]
        job: Job,
        /// Worker threads.
        #[arg(long, default_value_t = 1)]
        workers: usize,
        /// Folder for the part files (nothing is written without it).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Alert when a window's Σqty is above this.
        #[arg(long, default_value_t = 50_000)]
        threshold: i64,
        /// Out-of-order bound, ms.
        #[arg(long, default_value_t = 5_000)]
        max_out_of_order_ms: u64,
        /// Progress granularity, µs (any divisor of the 1 s width closes windows at the same moment).
        #[arg(long, default_value_t = 100_000)]
        epoch_us: u64,
    },
    /// The CI gate: the default job's speed relative to a floor (the same file read with the
    /// `csv` crate) in the same process, against the recorded baseline (`docs/benchmarks.md`).
    Gate {
        /// Events of the generated day it reads.
        #[arg(long, default_value_t = 300_000)]
        events: u64,
        /// Measurements of each (after one warm-up of each); the medians are compared.
        #[arg(long, default_value_t = 5)]
        repeat: usize,
        /// The recorded baseline.
        #[arg(long, default_value = "benches/gate-baseline.json")]
        baseline: PathBuf,
        /// Record this run's ratio as the new baseline instead of checking against it.
        #[arg(long)]
        record: bool,
        /// Where the generated day is kept.
        #[arg(long, default_value = "target/bench")]
        data: PathBuf,
    },
    /// One run of the default job (used by `e2e` and `long` in a child process).
    #[command(hide = true)]
    RunCase {
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        workers: usize,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Args, Clone)]
struct DataArgs {
    /// Events of the generated day.
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    /// Accounts of the generated day.
    #[arg(long, default_value_t = 400)]
    accounts: usize,
    /// Instruments of the generated day.
    #[arg(long, default_value_t = 40)]
    instruments: usize,
    /// Seed of the generated day.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Generate the day gzipped (a tenth of the disk; one worker reads it, the others detect).
    #[arg(long)]
    gzip: bool,
    /// Event mix of the generated day: weights of the background actions, e.g.
    /// `take=2,cancel=0.02` (see `surveil generate --help`).
    #[arg(long)]
    mix: Option<EventMix>,
    /// A recorded file instead of the generated day.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Configuration for --input.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Worker counts of the throughput cases.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    workers: Vec<usize>,
    /// Runs per throughput case (the median is reported).
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Offered loads of the latency runs, events/s.
    #[arg(long, value_delimiter = ',', default_value = "100000,1000000,5000000")]
    rates: Vec<f64>,
    /// Seconds per latency run (fewer if the recorded events run out).
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Workers of the latency runs.
    #[arg(long, default_value_t = 2)]
    latency_workers: usize,
    /// Progress granularity of the latency runs, µs of event time (`ingest.epoch`).
    #[arg(long, value_delimiter = ',', default_value = "1000")]
    epoch_us: Vec<u64>,
    /// Also measure with event times replaced by arrival times (a feed stamped on receipt).
    #[arg(long)]
    restamp: bool,
    /// How soon the latency source looks again for due events, µs (`SourceOptions::idle_poll`).
    #[arg(long, default_value_t = 100)]
    poll_us: u64,
    /// Latency workers spin when idle instead of sleeping.
    #[arg(long)]
    spin: bool,
    /// Where generated days go.
    #[arg(long, default_value = "target/bench")]
    work: PathBuf,
    /// Where results (JSON) go.
    #[arg(long, default_value = "target/bench-results")]
    results: PathBuf,
}

impl DataArgs {
    /// The input and its configuration, generating the day if needed.
    fn dataset(&self, events: u64) -> anyhow::Result<(PathBuf, Option<PathBuf>)> {
        if let Some(input) = &self.input {
            return Ok((input.clone(), self.config.clone()));
        }
        let defaults = GenerateConfig::default();
        let mix = self.mix.unwrap_or_default();
        let name = if (self.accounts, self.instruments, self.seed) == (defaults.accounts, defaults.instruments, 42) {
            format!("day-{events}")
        } else {
            format!("day-{events}-a{}-i{}-s{}", self.accounts, self.instruments, self.seed)
        };
        // A day of another mix gets its own folder, named by a stable hash of the mix.
        let name = if mix == defaults.mix { name } else { format!("{name}-mix{:08x}", stable_hash(&mix.to_string())) };
        let name = if self.gzip { format!("{name}-gz") } else { name };
        let dir = self.work.join(name);
        let path = dir.join(if self.gzip { "events.csv.gz" } else { "events.csv" });
        if !path.exists() {
            eprintln!("generating {events} events (mix {mix}) into {}", dir.display());
            let config = GenerateConfig {
                seed: self.seed,
                events,
                accounts: self.accounts,
                instruments: self.instruments,
                gzip: self.gzip,
                mix,
                ..defaults
            };
            generate(&config, &dir).with_context(|| format!("generating {}", dir.display()))?;
        }
        Ok((path, Some(dir.join("surveil.toml"))))
    }

    fn config(&self, config: &Option<PathBuf>) -> anyhow::Result<Config> {
        Ok(match config {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        })
    }
}

/// FNV-1a: the same text gives the same folder name on every run and build.
fn stable_hash(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5u32, |hash, byte| (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193))
}

fn write_json(dir: &Path, name: &str, value: &impl Serialize) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_string_pretty(value)? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// Resident memory of a process, bytes.
fn rss_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

/// A run of the default job in a child process: its summary, wall time and RSS samples.
struct Case {
    summary: Value,
    wall_seconds: f64,
    /// (seconds since start, RSS bytes)
    rss: Vec<(f64, u64)>,
}

fn run_case(input: &Path, config: &Option<PathBuf>, workers: usize, out: &Path) -> anyhow::Result<Case> {
    let exe = std::env::current_exe()?;
    let mut command = Command::new(exe);
    command.args(["run-case", "--workers", &workers.to_string(), "--out"]).arg(out).arg("--input").arg(input);
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    let started = Instant::now();
    let mut child = command.stdout(Stdio::piped()).spawn()?;
    let mut rss = Vec::new();
    while child.try_wait()?.is_none() {
        if let Some(bytes) = rss_of(child.id()) {
            rss.push((started.elapsed().as_secs_f64(), bytes));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let wall_seconds = started.elapsed().as_secs_f64();
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!("run-case failed ({})", output.status);
    }
    let summary: Value = serde_json::from_slice(&output.stdout).context("run-case output")?;
    Ok(Case { summary, wall_seconds, rss })
}

#[derive(Serialize)]
struct ThroughputRow {
    input: String,
    workers: usize,
    events: u64,
    alerts: u64,
    seconds: f64,
    events_per_second: f64,
    peak_rss_bytes: u64,
    runs: usize,
}

fn e2e(data: &DataArgs) -> anyhow::Result<Vec<ThroughputRow>> {
    let (input, config) = data.dataset(data.events)?;
    let mut rows = Vec::new();
    println!(
        "{:<40} {:>7} {:>11} {:>8} {:>9} {:>12} {:>9}",
        "input", "workers", "events", "alerts", "seconds", "events/s", "peak MiB"
    );
    for &workers in &data.workers {
        let mut cases = Vec::new();
        for _ in 0..data.repeat.max(1) {
            cases.push(run_case(&input, &config, workers, &data.work.join("out"))?);
        }
        cases.sort_by(|a, b| {
            a.summary["elapsed_seconds"]
                .as_f64()
                .partial_cmp(&b.summary["elapsed_seconds"].as_f64())
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        let median = &cases[cases.len() / 2].summary;
        let row = ThroughputRow {
            input: input.display().to_string(),
            workers,
            events: median["events"].as_u64().unwrap_or(0),
            alerts: median["alerts"].as_u64().unwrap_or(0),
            seconds: median["elapsed_seconds"].as_f64().unwrap_or(0.0),
            events_per_second: median["events_per_second"].as_f64().unwrap_or(0.0),
            peak_rss_bytes: median["peak_rss_bytes"].as_u64().unwrap_or(0),
            runs: cases.len(),
        };
        println!(
            "{:<40} {:>7} {:>11} {:>8} {:>9.3} {:>11.2}M {:>9}",
            input.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            workers,
            row.events,
            row.alerts,
            row.seconds,
            row.events_per_second / 1e6,
            row.peak_rss_bytes >> 20
        );
        rows.push(row);
    }
    write_json(&data.results, "e2e.json", &rows)?;
    Ok(rows)
}

fn latency(data: &DataArgs) -> anyhow::Result<Vec<LatencyResult>> {
    let (input, config_path) = data.dataset(data.events)?;
    let config = data.config(&config_path)?;
    let reference = Arc::new(ReferenceData::load(&config)?);
    let needed = data.rates.iter().map(|r| (r * data.seconds) as usize).max().unwrap_or(0);
    let started = Instant::now();
    let recorded = load(&inputs(std::slice::from_ref(&input), None), &config, &reference, needed)?;
    eprintln!("loaded {} events in {:.1} s", recorded.events.len(), started.elapsed().as_secs_f64());
    let events = Arc::new(recorded.events);
    let mut results = Vec::new();
    println!(
        "{:>10} {:>7} {:>8} {:>10} {:>11} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10} {:>6}",
        "offered/s",
        "workers",
        "epoch",
        "restamped",
        "events",
        "p50 µs",
        "p99 µs",
        "p99.9 µs",
        "max µs",
        "achieved",
        "alerts",
        "cores"
    );
    let restamps: &[bool] = if data.restamp { &[false, true] } else { &[false] };
    for &restamp in restamps {
        for &epoch_us in &data.epoch_us {
            for &rate in &data.rates {
                let options = LatencyOptions {
                    rate,
                    events: ((rate * data.seconds) as usize).min(events.len()),
                    workers: data.latency_workers,
                    epoch_ns: epoch_us.max(1) * 1_000,
                    restamp: restamp.then(|| events.first().map_or(0, |e| e.time)),
                    poll: Duration::from_micros(data.poll_us),
                    spin: data.spin,
                };
                let out = data.work.join("out-latency");
                let result = run_latency(&events, &recorded.side, &config, &reference, &options, &out)?;
                println!(
                    "{:>10.0} {:>7} {:>6}µs {:>10} {:>11} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>8.2}M {:>10} {:>6.2}",
                    rate,
                    result.workers,
                    epoch_us,
                    restamp,
                    result.events,
                    result.p50_us,
                    result.p99_us,
                    result.p999_us,
                    result.max_us,
                    result.achieved_per_second / 1e6,
                    result.alerts,
                    result.cpu_cores
                );
                results.push(result);
            }
        }
    }
    write_json(&data.results, "latency.json", &results)?;
    Ok(results)
}

#[derive(Serialize)]
struct MemoryResult {
    input: String,
    workers: usize,
    events: u64,
    seconds: f64,
    events_per_second: f64,
    rss_start_bytes: u64,
    rss_middle_bytes: u64,
    rss_end_bytes: u64,
    peak_rss_bytes: u64,
    /// (seconds, RSS bytes), every 50 ms.
    samples: Vec<(f64, u64)>,
}

fn long(data: &DataArgs, events: u64) -> anyhow::Result<MemoryResult> {
    let (input, config) = data.dataset(events)?;
    let workers = data.workers.iter().copied().max().unwrap_or(2);
    let case = run_case(&input, &config, workers, &data.work.join("out-long"))?;
    // Start, middle and end: the samples nearest 10 %, 50 % and 100 % of the run.
    let at = |fraction: f64| {
        let target = case.wall_seconds * fraction;
        case.rss
            .iter()
            .min_by(|a, b| (a.0 - target).abs().partial_cmp(&(b.0 - target).abs()).unwrap_or(std::cmp::Ordering::Equal))
            .map_or(0, |s| s.1)
    };
    let result = MemoryResult {
        input: input.display().to_string(),
        workers,
        events: case.summary["events"].as_u64().unwrap_or(0),
        seconds: case.summary["elapsed_seconds"].as_f64().unwrap_or(0.0),
        events_per_second: case.summary["events_per_second"].as_f64().unwrap_or(0.0),
        rss_start_bytes: at(0.1),
        rss_middle_bytes: at(0.5),
        rss_end_bytes: at(1.0),
        peak_rss_bytes: case.summary["peak_rss_bytes"].as_u64().unwrap_or(0),
        samples: case.rss,
    };
    println!(
        "long replay: {} events, {} workers, {:.1} s, {:.2} M events/s; RSS start {} MiB, middle {} MiB, end {} MiB, peak {} MiB",
        result.events,
        workers,
        result.seconds,
        result.events_per_second / 1e6,
        result.rss_start_bytes >> 20,
        result.rss_middle_bytes >> 20,
        result.rss_end_bytes >> 20,
        result.peak_rss_bytes >> 20
    );
    write_json(&data.results, "memory.json", &result)?;
    Ok(result)
}

fn stalls(seconds: f64, threshold_us: u64, results: &Path) -> anyhow::Result<Vec<StallReport>> {
    println!("{:>7} {:>8} {:>7} {:>12} {:>10} {:>9}", "threads", "thread", "gaps", "stalled ms", "max ms", "share");
    let mut reports = Vec::new();
    for threads in [1, 2] {
        let report =
            measure_stalls(threads, Duration::from_secs_f64(seconds.max(0.001)), Duration::from_micros(threshold_us));
        for (index, thread) in report.per_thread.iter().enumerate() {
            println!(
                "{:>7} {:>8} {:>7} {:>12.1} {:>10.2} {:>8.2}%",
                threads,
                index,
                thread.gaps,
                thread.total_us / 1e3,
                thread.max_us / 1e3,
                thread.share * 100.0
            );
        }
        reports.push(report);
    }
    write_json(results, "stalls.json", &reports)?;
    Ok(reports)
}

/// What the gate compares against: the default job's speed relative to the floor, as
/// recorded on the machine and build profile that CI uses.
#[derive(Serialize, serde::Deserialize)]
struct GateBaseline {
    /// Events of the generated day.
    events: u64,
    /// `dev` or `release`: a baseline holds for the profile it was recorded with.
    profile: String,
    /// Floor seconds / default-job seconds (medians): higher is faster.
    relative_speed: f64,
    /// The gate fails below `relative_speed * (1 - tolerance)`.
    tolerance: f64,
    /// When it was recorded (UTC date).
    recorded: String,
}

/// The floor: the same file read with the `csv` crate, every field touched and the event time
/// parsed. It moves with the machine (its speed, its load, the page cache) but not with
/// surveil's code, so the ratio of the two catches a slowdown in surveil on any machine.
fn gate_floor(input: &Path) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut reader = csv::ReaderBuilder::new().has_headers(true).flexible(true).from_path(input)?;
    let mut record = csv::ByteRecord::new();
    let mut sum = 0u64;
    while reader.read_byte_record(&mut record)? {
        for field in record.iter() {
            sum = sum.wrapping_add(field.len() as u64);
        }
        let time = record.get(0).and_then(|t| std::str::from_utf8(t).ok()).and_then(|t| t.parse::<u64>().ok());
        sum = sum.wrapping_add(time.unwrap_or(0));
    }
    std::hint::black_box(sum);
    Ok(started.elapsed().as_secs_f64())
}

/// The default job on one worker, writing its outputs: wall seconds.
fn gate_job(input: &Path, config: &Config, out: &Path) -> anyhow::Result<f64> {
    let started = Instant::now();
    let summary = run(RunOptions {
        workers: 1,
        out_dir: out.into(),
        ..RunOptions::new(inputs(&[input.into()], None), config.clone())
    })?;
    let seconds = started.elapsed().as_secs_f64();
    if !summary.complete || summary.events == 0 {
        bail!("the gate's run did not read its input");
    }
    Ok(seconds)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The CI gate (`docs/benchmarks.md`, "The CI gate").
fn gate(events: u64, repeat: usize, baseline: &Path, record: bool, data: &Path) -> anyhow::Result<()> {
    let day = data.join(format!("gate-{events}"));
    if !day.join("events.csv").exists() {
        generate(&GenerateConfig { events, ..GenerateConfig::default() }, &day)?;
    }
    let input = day.join("events.csv");
    let config = Config::load(&day.join("surveil.toml"))?;
    let out = day.join("out");
    let profile = if cfg!(debug_assertions) { "dev" } else { "release" };
    let measure = || -> anyhow::Result<f64> {
        // One of each first: the page cache, the allocator and the lazily built tables warm up.
        gate_floor(&input)?;
        gate_job(&input, &config, &out)?;
        // Interleaved, so that a change in the machine's load falls on both.
        let (mut floors, mut jobs) = (Vec::new(), Vec::new());
        for _ in 0..repeat {
            floors.push(gate_floor(&input)?);
            jobs.push(gate_job(&input, &config, &out)?);
        }
        let (floor, job) = (median(floors), median(jobs));
        let relative_speed = floor / job;
        println!(
            "gate: {events} events; default job {job:.3} s ({:.2} M events/s), csv floor {floor:.3} s; relative speed {relative_speed:.4} ({profile})",
            events as f64 / job / 1e6
        );
        Ok(relative_speed)
    };
    let mut relative_speed = measure()?;
    if record {
        let recorded = chrono::Utc::now().format("%Y-%m-%d").to_string();
        let baseline_value =
            GateBaseline { events, profile: profile.into(), relative_speed, tolerance: 0.25, recorded };
        std::fs::write(baseline, serde_json::to_string_pretty(&baseline_value)? + "\n")
            .with_context(|| format!("writing {}", baseline.display()))?;
        println!("gate: recorded as the baseline in {}", baseline.display());
        return Ok(());
    }
    let text =
        std::fs::read_to_string(baseline).with_context(|| format!("reading the baseline {}", baseline.display()))?;
    let expected: GateBaseline = serde_json::from_str(&text).with_context(|| format!("{}", baseline.display()))?;
    if expected.profile != profile || expected.events != events {
        bail!(
            "the baseline was recorded with the {} profile on {} events; this run is {profile} on {events}: \
             run the gate as the baseline was recorded, or record a new one (--record)",
            expected.profile,
            expected.events
        );
    }
    let least = expected.relative_speed * (1.0 - expected.tolerance);
    if relative_speed < least {
        // A burst of load on a shared machine falls unevenly on the two: measure once more
        // before failing.
        println!("gate: below {least:.4}; measuring again");
        relative_speed = relative_speed.max(measure()?);
    }
    if relative_speed < least {
        bail!(
            "the default job is slower than its baseline: relative speed {relative_speed:.4} is below {least:.4} \
             ({:.0} % of the {:.4} recorded on {}); find the change that slowed it, or, if the slowdown is \
             meant, record a new baseline (docs/benchmarks.md)",
            100.0 * relative_speed / expected.relative_speed,
            expected.relative_speed,
            expected.recorded
        );
    }
    println!(
        "gate: ok, {:.0} % of the baseline {:.4} recorded on {} (fails below {least:.4})",
        100.0 * relative_speed / expected.relative_speed,
        expected.relative_speed,
        expected.recorded
    );
    if relative_speed > expected.relative_speed * (1.0 + expected.tolerance) {
        println!(
            "gate: faster than the baseline by more than the tolerance: record a new baseline to keep the gate tight"
        );
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Task::All { data, long: with_long, long_events } => {
            e2e(&data)?;
            stalls(data.seconds, 500, &data.results)?;
            latency(&data)?;
            if with_long {
                long(&data, long_events)?;
            }
        }
        Task::E2e { data } => {
            e2e(&data)?;
        }
        Task::Latency { data } => {
            latency(&data)?;
        }
        Task::Long { data } => {
            long(&data, data.events)?;
        }
        Task::Stalls { seconds, threshold_us, results } => {
            stalls(seconds, threshold_us, &results)?;
        }
        Task::Trades { out, trades, accounts, instruments, seed } => {
            let config = TradesConfig { seed, trades, accounts, instruments, ..TradesConfig::default() };
            let started = Instant::now();
            generate_trades(&config, &out)?;
            eprintln!("wrote {trades} trades to {} in {:.1} s", out.display(), started.elapsed().as_secs_f64());
        }
        Task::Job { input, job, workers, out, threshold, max_out_of_order_ms, epoch_us } => {
            let options = JobOptions {
                job,
                workers,
                threshold,
                max_out_of_order_ns: max_out_of_order_ms * 1_000_000,
                epoch_ns: epoch_us.max(1) * 1_000,
                out_dir: out,
                ..JobOptions::default()
            };
            let summary = run_job(&input, &options)?;
            println!("{}", serde_json::to_string(&summary)?);
        }
        Task::Gate { events, repeat, baseline, record, data } => {
            gate(events, repeat.max(1), &baseline, record, &data)?;
        }
        Task::RunCase { input, config, workers, out } => {
            let config = match config {
                Some(path) => Config::load(&path)?,
                None => Config::default(),
            };
            let summary = run(RunOptions { workers, out_dir: out, ..RunOptions::new(inputs(&[input], None), config) })?;
            println!("{}", serde_json::to_string(&summary)?);
        }
    }
    Ok(())
}
