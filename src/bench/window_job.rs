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
use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use serde::Serialize;
use surveil_operators::{Count, EventTimeWindows, SourceOptions, Vwap, WindowOptions, partitioned_source};
use timely::dataflow::ProbeHandle;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::vec::Filter;
use timely::dataflow::operators::{Operator, Probe};

use super::trades::{Key, ReadCounts, Trade, plan_trade_partitions};

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

/// A part file: rows are formatted straight into a byte buffer that goes to the file in large
/// writes. `write!` through `fmt` cost a quarter of the windows job (1.28 M rows); `itoa` and
/// `ryu` into one reused buffer do the same work several times faster.
struct PartFile {
    file: File,
    path: PathBuf,
    buffer: Vec<u8>,
    integers: itoa::Buffer,
    floats: ryu::Buffer,
    /// The first write error; reported when the part is finished.
    error: Option<std::io::Error>,
}

/// Bytes gathered before a write to the file.
const PART_CHUNK: usize = 4 << 20;

impl PartFile {
    fn create(path: PathBuf, header: &str) -> Result<PartFile, String> {
        let file = File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut buffer = Vec::with_capacity(PART_CHUNK + 4096);
        buffer.extend_from_slice(header.as_bytes());
        buffer.push(b'\n');
        Ok(PartFile { file, path, buffer, integers: itoa::Buffer::new(), floats: ryu::Buffer::new(), error: None })
    }

    #[inline]
    fn integer(&mut self, value: impl itoa::Integer) -> &mut Self {
        self.buffer.extend_from_slice(self.integers.format(value).as_bytes());
        self
    }

    #[inline]
    fn float(&mut self, value: f64) -> &mut Self {
        self.buffer.extend_from_slice(self.floats.format(value).as_bytes());
        self
    }

    /// The text of a packed key (its bytes up to the first zero).
    #[inline]
    fn key(&mut self, key: Key) -> &mut Self {
        let bytes = key.to_le_bytes();
        let len = bytes.iter().position(|b| *b == 0).unwrap_or(8);
        self.buffer.extend_from_slice(&bytes[..len]);
        self
    }

    #[inline]
    fn byte(&mut self, byte: u8) -> &mut Self {
        self.buffer.push(byte);
        self
    }

    /// Ends a row, writing the buffer out once it holds a chunk.
    #[inline]
    fn end_row(&mut self) {
        self.buffer.push(b'\n');
        if self.buffer.len() >= PART_CHUNK {
            self.write_buffer();
        }
    }

    fn write_buffer(&mut self) {
        if self.error.is_none()
            && let Err(e) = self.file.write_all(&self.buffer)
        {
            self.error = Some(e);
        }
        self.buffer.clear();
    }

    fn finish(&mut self) -> Result<(), String> {
        self.write_buffer();
        match self.error.take() {
            Some(e) => Err(format!("{}: {e}", self.path.display())),
            None => Ok(()),
        }
    }
}

type Part = Rc<RefCell<Option<PartFile>>>;

fn part(out_dir: Option<&Path>, name: &str, index: usize, header: &str) -> Result<Part, String> {
    let Some(dir) = out_dir else { return Ok(Rc::new(RefCell::new(None))) };
    Ok(Rc::new(RefCell::new(Some(PartFile::create(dir.join(format!("{name}-{index}.csv")), header)?))))
}

fn finish(part: &Part) -> Result<(), String> {
    match part.borrow_mut().as_mut() {
        Some(file) => file.finish(),
        None => Ok(()),
    }
}

/// An exact `i128` sum as `f64`: through `i64` when it fits (one instruction, where the `i128`
/// conversion is a library call); both round to nearest, so the result is the same. The
/// `black_box` keeps the compiler from folding the two branches back into the library call.
#[inline]
fn sum_to_f64(sum: i128) -> f64 {
    match i64::try_from(sum) {
        Ok(small) => std::hint::black_box(small) as f64,
        Err(_) => sum as f64,
    }
}

/// Σqty as an integer: `i64` when it fits, for the cheaper formatting.
#[inline]
fn write_sum(file: &mut PartFile, sum: i128) -> &mut PartFile {
    match i64::try_from(sum) {
        Ok(small) => file.integer(small),
        Err(_) => file.integer(sum),
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
            probe: Some(probe.clone()),
            max_in_flight: Some(1 << 20),
            ..SourceOptions::default()
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
                                        file.integer(t.time).byte(b',').key(t.account).byte(b',');
                                        file.key(t.instrument).byte(b',').integer(t.qty).byte(b',');
                                        file.integer(t.price / 100).byte(b'.');
                                        let cents = t.price % 100;
                                        file.byte(b'0' + (cents / 10) as u8).byte(b'0' + (cents % 10) as u8).end_row();
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
                    // Alerts are written by the same sink: a second operator would copy every
                    // window record to filter a few hundred.
                    let window_totals = totals.clone();
                    let threshold = i128::from(threshold);
                    windows.output.probe_with(&probe).sink(Pipeline, "WriteWindows", move |(input, _)| {
                        let mut windows_file = windows_out.borrow_mut();
                        let mut alerts_file = alerts_out.borrow_mut();
                        let mut totals = window_totals.borrow_mut();
                        input.for_each(|_, data| {
                            totals.windows += data.len() as u64;
                            for w in data.drain(..) {
                                let (count, vwap) = w.value;
                                if vwap.weight > threshold {
                                    totals.alerts += 1;
                                    if let Some(file) = alerts_file.as_mut() {
                                        file.key(w.key).byte(b',').integer(w.start).byte(b',');
                                        write_sum(file, vwap.weight).end_row();
                                    }
                                }
                                if let Some(file) = windows_file.as_mut() {
                                    // The same arithmetic as `VwapValue::mean`, then hundredths to units.
                                    let weight = sum_to_f64(vwap.weight);
                                    let mean = if weight != 0.0 { sum_to_f64(vwap.weighted_sum) / weight } else { 0.0 };
                                    let mean = mean / 100.0;
                                    file.key(w.key).byte(b',').integer(w.start).byte(b',').integer(count).byte(b',');
                                    write_sum(file, vwap.weight).byte(b',').float(mean).end_row();
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
