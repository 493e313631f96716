//! The job every engine runs in the side-by-side comparison, as a streaming dataflow.
//!
//! ```text
//! trades file blocks -> partitioned_source (watermark: max_out_of_order behind the data)
//!   windows:     -> tumbling_window(1 s, key = account, (Count, Vwap(price, qty)))
//!                   -> windows-W.csv (account, window_start_ns, count, sum_qty, vwap)
//!                   -> Σqty > threshold -> alerts-W.csv (account, window_start_ns, sum_qty)
//!   self_trades: -> account = counterparty -> self_trades-W.csv
//!   parse:       -> (dropped): reading and parsing alone
//! ```
//!
//! `Vwap` reports its exact sums `Σ price·qty` and `Σ qty`, so Σqty needs no accumulator of its
//! own. Each worker writes its own part files (`W` is the worker index), as a parallel sink does.

use std::cell::RefCell;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use serde::Serialize;
use surveil_operators::{Count, EventTimeWindows, SourceOptions, Vwap, WindowOptions, partitioned_source};
use timely::dataflow::ProbeHandle;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::vec::Filter;
use timely::dataflow::operators::{Operator, Probe};

use super::trades::{ReadCounts, Trade, key_text, plan_trade_partitions};

/// Which job to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Job {
    /// Read and parse only.
    Parse,
    /// Per-account tumbling windows with count, Σqty and VWAP, and alerts on Σqty.
    Windows,
    /// Trades whose account is also the counterparty.
    SelfTrades,
}

/// How to run a [`Job`].
#[derive(Clone, Debug)]
pub struct JobOptions {
    /// The job.
    pub job: Job,
    /// Worker threads.
    pub workers: usize,
    /// Window width, ns.
    pub width_ns: u64,
    /// An alert when a window's Σqty is above this.
    pub threshold: i64,
    /// Event times may lag the latest seen by this much (ns); later rows go to the late count.
    pub max_out_of_order_ns: u64,
    /// Granularity of progress (ns). Any divisor of the width closes windows at the same moment.
    pub epoch_ns: u64,
    /// Bytes per file block.
    pub block_size: u64,
    /// Folder for the part files; `None` writes nothing.
    pub out_dir: Option<PathBuf>,
}

impl Default for JobOptions {
    fn default() -> Self {
        JobOptions {
            job: Job::Windows,
            workers: 1,
            width_ns: 1_000_000_000,
            threshold: 50_000,
            max_out_of_order_ns: 5_000_000_000,
            epoch_ns: 100_000_000,
            block_size: 8 << 20,
            out_dir: None,
        }
    }
}

/// What a job did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct JobSummary {
    /// The job.
    pub job: Option<Job>,
    /// Worker threads.
    pub workers: usize,
    /// Valid rows read.
    pub trades: u64,
    /// Rows that are not valid trades.
    pub rejected: u64,
    /// Rows later than the out-of-order bound.
    pub late: u64,
    /// `(account, window)` results written.
    pub windows: u64,
    /// Windows over the threshold.
    pub alerts: u64,
    /// Self-trades found.
    pub self_trades: u64,
    /// Wall-clock seconds from the start of the dataflow to the last output.
    pub elapsed_seconds: f64,
    /// Rows per second.
    pub trades_per_second: f64,
    /// Peak resident memory of the process, bytes.
    pub peak_rss_bytes: Option<u64>,
}

/// Why a job failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The input could not be planned.
    #[error(transparent)]
    Input(#[from] super::trades::TradesError),
    /// A part file could not be written.
    #[error("{}: {source}", path.display())]
    Output {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A worker failed.
    #[error("dataflow failed: {0}")]
    Dataflow(String),
}

#[derive(Default)]
struct WorkerTotals {
    trades: u64,
    rejected: u64,
    late: u64,
    windows: u64,
    alerts: u64,
    self_trades: u64,
}

type Part = Rc<RefCell<Option<BufWriter<File>>>>;

fn part(out_dir: Option<&Path>, name: &str, index: usize, header: &str) -> Result<Part, String> {
    let Some(dir) = out_dir else { return Ok(Rc::new(RefCell::new(None))) };
    let path = dir.join(format!("{name}-{index}.csv"));
    let mut file = File::create(&path)
        .map(|f| BufWriter::with_capacity(1 << 20, f))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    writeln!(file, "{header}").map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Rc::new(RefCell::new(Some(file))))
}

fn finish(part: &Part) -> Result<(), String> {
    match part.borrow_mut().as_mut() {
        Some(file) => file.flush().map_err(|e| e.to_string()),
        None => Ok(()),
    }
}

/// Runs `options.job` over a trades file.
pub fn run_job(input: &Path, options: &JobOptions) -> Result<JobSummary, JobError> {
    // A missing file is an error before any worker starts.
    std::fs::metadata(input).map_err(|source| super::trades::TradesError::Io { path: input.into(), source })?;
    if let Some(dir) = &options.out_dir {
        std::fs::create_dir_all(dir).map_err(|source| JobError::Output { path: dir.clone(), source })?;
    }
    let started = Instant::now();
    let input = input.to_path_buf();
    let job_options = options.clone();
    let guards = timely::execute(timely::Config::process(options.workers.max(1)), move |worker| {
        let options = &job_options;
        let (index, peers) = (worker.index(), worker.peers());
        let counts = ReadCounts::default();
        let partitions =
            plan_trade_partitions(&input, options.block_size, index, peers, &counts).map_err(|e| e.to_string())?;
        let out_dir = options.out_dir.as_deref();
        let windows_file = part(
            out_dir.filter(|_| options.job == Job::Windows),
            "windows",
            index,
            "account,window_start_ns,count,sum_qty,vwap",
        )?;
        let alerts_file =
            part(out_dir.filter(|_| options.job == Job::Windows), "alerts", index, "account,window_start_ns,sum_qty")?;
        let self_trades_file = part(
            out_dir.filter(|_| options.job == Job::SelfTrades),
            "self_trades",
            index,
            "time_ns,account,instrument,qty,price",
        )?;
        let totals = Rc::new(RefCell::new(WorkerTotals::default()));
        let probe = ProbeHandle::new();
        let source_options = SourceOptions {
            max_out_of_order: options.max_out_of_order_ns,
            epoch: options.epoch_ns.max(1),
            batch_records: 1024,
            reads_per_activation: 32,
            idle_timeout: None,
            probe: Some(probe.clone()),
            max_in_flight: Some(1 << 20),
        };
        let (job, width, threshold) = (options.job, options.width_ns.max(1), options.threshold);
        let (windows_out, alerts_out, self_out) = (windows_file.clone(), alerts_file.clone(), self_trades_file.clone());
        worker.dataflow::<u64, _, _>(|scope| {
            let source = partitioned_source(scope, "Trades", partitions, source_options);
            let late_totals = totals.clone();
            source.late.sink(Pipeline, "CountLate", move |(input, _)| {
                input.for_each(|_, data| late_totals.borrow_mut().late += data.len() as u64);
            });
            match job {
                Job::Parse => {
                    source.records.probe_with(&probe).sink(Pipeline, "Drop", |(input, _)| {
                        input.for_each(|_, data| data.clear());
                    });
                }
                Job::SelfTrades => {
                    let totals = totals.clone();
                    source.records.filter(|t: &Trade| t.account == t.counterparty).probe_with(&probe).sink(
                        Pipeline,
                        "WriteSelfTrades",
                        move |(input, _)| {
                            let mut file = self_out.borrow_mut();
                            let mut totals = totals.borrow_mut();
                            input.for_each(|_, data| {
                                totals.self_trades += data.len() as u64;
                                if let Some(file) = file.as_mut() {
                                    for t in data.drain(..) {
                                        let _ = writeln!(
                                            file,
                                            "{},{},{},{},{}.{:02}",
                                            t.time,
                                            key_text(t.account),
                                            key_text(t.instrument),
                                            t.qty,
                                            t.price / 100,
                                            t.price % 100
                                        );
                                    }
                                }
                            });
                        },
                    );
                }
                Job::Windows => {
                    let windows = source.records.tumbling_window(
                        "Windows",
                        width,
                        |t: &Trade| t.account,
                        |t: &Trade| t.time,
                        |t: &Trade| (t.price, t.qty),
                        || (Count::default(), Vwap::<i64>::default()),
                        WindowOptions::default(),
                    );
                    let alerts = windows.output.clone().filter(move |w| w.value.1.weight > i128::from(threshold));
                    let window_totals = totals.clone();
                    windows.output.probe_with(&probe).sink(Pipeline, "WriteWindows", move |(input, _)| {
                        let mut file = windows_out.borrow_mut();
                        let mut totals = window_totals.borrow_mut();
                        input.for_each(|_, data| {
                            totals.windows += data.len() as u64;
                            if let Some(file) = file.as_mut() {
                                for w in data.drain(..) {
                                    let (count, vwap) = w.value;
                                    let mean = vwap.mean::<i64>().unwrap_or(0.0) / 100.0;
                                    let _ = writeln!(
                                        file,
                                        "{},{},{count},{},{mean}",
                                        key_text(w.key),
                                        w.start,
                                        vwap.weight
                                    );
                                }
                            }
                        });
                    });
                    let alert_totals = totals.clone();
                    alerts.probe_with(&probe).sink(Pipeline, "WriteAlerts", move |(input, _)| {
                        let mut file = alerts_out.borrow_mut();
                        let mut totals = alert_totals.borrow_mut();
                        input.for_each(|_, data| {
                            totals.alerts += data.len() as u64;
                            if let Some(file) = file.as_mut() {
                                for w in data.drain(..) {
                                    let _ = writeln!(file, "{},{},{}", key_text(w.key), w.start, w.value.1.weight);
                                }
                            }
                        });
                    });
                }
            }
        });
        while !probe.done() {
            worker.step();
        }
        for _ in 0..4 {
            worker.step();
        }
        for file in [&windows_file, &alerts_file, &self_trades_file] {
            finish(file)?;
        }
        let mut totals = std::mem::take(&mut *totals.borrow_mut());
        totals.trades = counts.trades.get();
        totals.rejected = counts.rejected.get();
        Ok::<WorkerTotals, String>(totals)
    })
    .map_err(JobError::Dataflow)?;
    let mut summary = JobSummary { job: Some(options.job), workers: options.workers.max(1), ..Default::default() };
    for result in guards.join() {
        let totals = result.map_err(JobError::Dataflow)?.map_err(JobError::Dataflow)?;
        summary.trades += totals.trades;
        summary.rejected += totals.rejected;
        summary.late += totals.late;
        summary.windows += totals.windows;
        summary.alerts += totals.alerts;
        summary.self_trades += totals.self_trades;
    }
    summary.elapsed_seconds = started.elapsed().as_secs_f64();
    summary.trades_per_second = summary.trades as f64 / summary.elapsed_seconds.max(1e-9);
    summary.peak_rss_bytes = super::peak_rss();
    Ok(summary)
}
