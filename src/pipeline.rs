//! The default surveillance job: read, validate, enrich, route by instrument, detect, write.
//!
//! ```text
//! partitions --(records)--> exchange by instrument --> SurveillanceProcessor --(reports)--+
//!            --(late)----------------------------------------------------------------------+--> worker 0: ReportWriter
//!            --(dead letters, dictionary)-------------------------------------------------+
//! ```

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use surveil_operators::{Partition, ProcessInTimeOrder, SourceOptions, partitioned_source};
use timely::dataflow::operators::core::OkErr;
use timely::dataflow::operators::vec::Filter;

use crate::config::AnomalyConfig;
use crate::detect::anomaly::{AnomalyModel, AnomalyProcessor, ModelError, order_row, route_row};
use crate::features::{AccountRollup, FeatureRecorder, FeatureRow, FeatureScope};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::{Concat, Operator, Probe};
use timely::dataflow::{ProbeHandle, Scope, Stream};

use crate::config::Config;
use crate::detect::{Detector, SurveillanceProcessor, default_detectors};
use crate::ingest::{EventCounts, InputError, InputSpec, ReadProgress, plan_partitions};
use crate::model::{Event, EventKind};
use crate::output::{OutputFolder, Renderer, ReportWriter, WrittenCounts};
use crate::reference::{ReferenceData, ReferenceError};
use crate::report::Report;

/// Why a run failed before or while producing output.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// An input cannot be read.
    #[error(transparent)]
    Input(#[from] InputError),
    /// Reference data cannot be read.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// Output cannot be written.
    #[error("writing output to {path}")]
    Output {
        /// The folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The output folder cannot be used.
    #[error(transparent)]
    OutputFolder(#[from] crate::output::OutputError),
    /// The configuration cannot work.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A worker failed.
    #[error("dataflow failed: {0}")]
    Dataflow(String),
    /// The anomaly model file cannot be used.
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// What to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Inputs, in order.
    pub inputs: Vec<InputSpec>,
    /// Configuration.
    pub config: Config,
    /// Worker threads.
    pub workers: usize,
    /// Output folder.
    pub out_dir: PathBuf,
    /// Where the run counts what it reads (bytes, positions, lines), for a progress display
    /// that polls it from another thread; a fresh one when `None`.
    pub progress: Option<Arc<ReadProgress>>,
    /// A request to stop early (an interrupt): reading stops, what was read is processed and
    /// written, and the summary says where the run stopped.
    pub stop: Option<Stop>,
}

impl RunOptions {
    /// Runs `inputs` with `config` on one worker into `out`, without a progress bar.
    pub fn new(inputs: Vec<InputSpec>, config: Config) -> RunOptions {
        RunOptions { inputs, config, workers: 1, out_dir: PathBuf::from("out"), progress: None, stop: None }
    }
}

/// A request to stop a run early, shared with whatever raises it (a signal handler, a test).
#[derive(Clone, Debug, Default)]
pub struct Stop {
    flag: Arc<AtomicBool>,
    reason: Arc<Mutex<Option<String>>>,
}

impl Stop {
    /// Asks the run to stop reading; the first reason given is kept.
    pub fn request(&self, reason: &str) {
        if let Ok(mut r) = self.reason.lock()
            && r.is_none()
        {
            *r = Some(reason.into());
        }
        self.flag.store(true, Ordering::SeqCst);
    }

    /// True once a stop was requested.
    pub fn is_requested(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Why the run was asked to stop.
    pub fn reason(&self) -> Option<String> {
        self.reason.lock().ok().and_then(|r| r.clone())
    }

    /// The flag the sources watch.
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.flag.clone()
    }
}

/// Where an interrupted run stopped.
#[derive(Clone, Debug, Serialize)]
pub struct Interruption {
    /// Why reading stopped (for example `SIGINT`).
    pub reason: String,
    /// Per input, the byte ranges that were read and processed completely: every record in
    /// them was handled and its alerts, dead letters and late events are in the output; a
    /// rerun over the rest of each input completes the picture.
    pub read: Vec<InputRead>,
}

/// What an interrupted run read of one input.
#[derive(Clone, Debug, Serialize)]
pub struct InputRead {
    /// The input.
    pub input: String,
    /// `[start, end)` byte ranges read (of the decompressed stream for gzip).
    pub ranges: Vec<(u64, u64)>,
    /// The whole input was read.
    pub finished: bool,
}

/// Totals of a run, written to `summary.json`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RunSummary {
    /// True when every input was read to its end; false when the run was interrupted.
    pub complete: bool,
    /// Where an interrupted run stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<Interruption>,
    /// Inputs read.
    pub inputs: Vec<String>,
    /// Worker threads.
    pub workers: usize,
    /// Events read, by kind.
    pub events_by_kind: std::collections::BTreeMap<String, u64>,
    /// Events read.
    pub events: u64,
    /// Bytes read.
    pub bytes: u64,
    /// What became of every line read: `read = header + blank + accepted + rejected`, and
    /// every rejected line is a dead letter.
    pub lines: crate::ingest::LineCounts,
    /// Alerts, dead letters, late events, ratio values.
    #[serde(flatten)]
    pub written: WrittenCounts,
    /// Alerts in total.
    pub alerts: u64,
    /// Dead letters in total.
    pub dead_letters: u64,
    /// Wall-clock seconds.
    pub elapsed_seconds: f64,
    /// Events per second.
    pub events_per_second: f64,
    /// Peak resident memory of the process, bytes (Linux).
    pub peak_rss_bytes: Option<u64>,
}

impl RunSummary {
    /// A table for people.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let mut row = |k: &str, v: String| s.push_str(&format!("  {k:<28} {v:>14}\n"));
        row("events", self.events.to_string());
        for (kind, n) in &self.events_by_kind {
            row(&format!("  {kind}"), n.to_string());
        }
        row("alerts", self.alerts.to_string());
        for (rule, n) in &self.written.alerts_by_rule {
            row(&format!("  {rule}"), n.to_string());
        }
        row("dead letters", self.dead_letters.to_string());
        for (reason, n) in &self.written.dead_letters_by_reason {
            row(&format!("  {reason}"), n.to_string());
        }
        row("late events", self.written.late_events.to_string());
        row("order-to-trade values", self.written.ratio_values.to_string());
        row("elapsed", format!("{:.3} s", self.elapsed_seconds));
        row("throughput", format!("{:.0} ev/s", self.events_per_second));
        if let Some(rss) = self.peak_rss_bytes {
            row("peak memory", format!("{:.1} MiB", rss as f64 / (1 << 20) as f64));
        }
        s
    }
}

/// Spreads symbol ids (packed text ends in zero bits) evenly over workers.
#[inline]
pub fn route(symbol: crate::model::Symbol) -> u64 {
    let mut x = symbol.0;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x
}

/// Extension trait: run a detector (or several) over a stream of events, keyed by instrument
/// and in event-time order. This is how a single rule runs as its own operator.
pub trait Detect<'scope> {
    /// Runs `detectors` and returns their reports.
    fn detect(self, detectors: Vec<Box<dyn Detector>>) -> Stream<'scope, u64, Vec<Report>>;
}

impl<'scope> Detect<'scope> for Stream<'scope, u64, Vec<Event>> {
    fn detect(self, detectors: Vec<Box<dyn Detector>>) -> Stream<'scope, u64, Vec<Report>> {
        self.process_in_time_order(
            "Detect",
            |e: &Event| route(e.instrument),
            |e: &Event| e.order_key(),
            SurveillanceProcessor::new(detectors),
        )
    }
}

/// Runs a single detector as its own operator (see [`Detect`]).
pub fn detect<'scope>(
    events: Stream<'scope, u64, Vec<Event>>,
    detector: Box<dyn Detector>,
) -> Stream<'scope, u64, Vec<Report>> {
    events.detect(vec![detector])
}

/// What the job does with the feature store: nothing, export its rows, score them, or both.
#[derive(Clone, Debug, Default)]
pub struct FeatureJob {
    /// Feature window (ns).
    pub window_ns: u64,
    /// Write the rows to `features.csv`.
    pub export: bool,
    /// Score the rows for behavioural anomalies.
    pub anomaly: Option<AnomalyConfig>,
    /// Trained baselines and forests to start from.
    pub model: Option<Arc<AnomalyModel>>,
}

impl FeatureJob {
    /// The feature work the configuration asks for, with the model file (if any) loaded.
    pub fn from_config(config: &Config) -> Result<FeatureJob, ModelError> {
        let window_ns = config.features.window.as_nanos().max(1) as u64;
        let anomaly = &config.rules.anomaly;
        let model = match (&anomaly.model, anomaly.enabled) {
            (Some(path), true) => Some(Arc::new(AnomalyModel::load(path, window_ns)?)),
            _ => None,
        };
        Ok(FeatureJob {
            window_ns,
            export: config.features.export,
            anomaly: anomaly.enabled.then(|| anomaly.clone()),
            model,
        })
    }

    /// True when feature rows are needed.
    pub fn is_active(&self) -> bool {
        self.export || self.anomaly.is_some()
    }

    /// Takes the feature rows out of the detectors' reports, adds the account rows, scores them,
    /// and returns the reports with the anomaly alerts (and the rows, when exported).
    fn build<'scope>(&self, reports: Stream<'scope, u64, Vec<Report>>) -> Stream<'scope, u64, Vec<Report>> {
        let (rows, reports) = reports.ok_err::<Vec<FeatureRow>, _, Vec<Report>, _, _>(|report| match report {
            Report::Features(row) => Ok(*row),
            other => Err(other),
        });
        let account_rows = rows.clone().filter(|r| r.scope == FeatureScope::AccountInstrument).process_in_time_order(
            "AccountFeatures",
            |r: &FeatureRow| route(r.account),
            order_row,
            AccountRollup::default(),
        );
        let rows = rows.concat(account_rows);
        let mut reports = reports;
        if let Some(config) = &self.anomaly {
            let processor = AnomalyProcessor::new(config, self.window_ns, self.model.as_deref());
            reports = reports.concat(rows.clone().process_in_time_order("Anomaly", route_row, order_row, processor));
        }
        if self.export {
            reports = reports.concat(rows.map(|r| Report::Features(Box::new(r))));
        }
        reports
    }
}

/// Builds the default job in `scope` over any partitions of events: detection keyed by
/// instrument, late events and side records beside it, and a sink on worker 0 that writes each
/// batch with `writer` once the watermark has passed it. `probe` watches everything the writer
/// receives, so its frontier passing a time means the reports of that time have been handed to
/// the writer. [`run`] builds this over file blocks; other sources (paced replays, live feeds)
/// plug in through [`surveil_operators::Partition`].
#[allow(clippy::too_many_arguments)]
pub fn default_dataflow<'scope, P>(
    scope: Scope<'scope, u64>,
    partitions: Vec<P>,
    options: SourceOptions,
    detectors: Vec<Box<dyn Detector>>,
    reference: Arc<ReferenceData>,
    probe: &ProbeHandle<u64>,
    slot: WriterSlot,
    features: FeatureJob,
) where
    P: Partition<Record = Event, Side = Report> + 'static,
{
    let WriterSlot { writer, flushed } = slot;
    // Reports waiting for the watermark, by time: only the ready prefix is touched per activation.
    let mut pending: std::collections::BTreeMap<u64, Vec<Report>> = std::collections::BTreeMap::new();
    let source = partitioned_source(scope, "Ingest", partitions, options);
    let mut detectors = detectors;
    if features.is_active() {
        detectors.push(Box::new(FeatureRecorder::new(features.window_ns, reference.clone())));
    }
    let reports = source.records.detect(detectors);
    let reports = if features.is_active() { features.build(reports) } else { reports };
    let late = source.late.map(|e| Report::Late(Box::new(e)));
    reports.concat(source.side).concat(late).probe_with(probe).sink(
        Exchange::new(|_: &Report| 0),
        "WriteReports",
        move |(input, frontier)| {
            if frontier.is_empty() {
                // Everything has arrived; written below, before the worker is told.
                flushed.set(true);
            }
            let mut guard = writer.borrow_mut();
            let Some(writer) = guard.as_mut() else {
                input.for_each(|_, _| {});
                return;
            };
            input.for_each_stamp(|cap, data| {
                let time = cap.stamp().iter().copied().min().unwrap_or(0);
                for batch in data {
                    pending.entry(time).or_default().append(batch);
                }
            });
            // Write what the watermark has passed: later reports cannot precede it.
            let watermark = frontier.frontier().first().copied();
            let ready = match watermark {
                Some(w) => {
                    let later = pending.split_off(&w);
                    std::mem::replace(&mut pending, later)
                }
                None => std::mem::take(&mut pending),
            };
            if !ready.is_empty() {
                let mut ready: Vec<(u64, Report)> =
                    ready.into_iter().flat_map(|(t, reports)| reports.into_iter().map(move |r| (t, r))).collect();
                writer.write_batch(&mut ready);
            }
        },
    );
}

/// Builds the default job on one worker over its `partitions`, with the configuration's source
/// settings as `adjust` leaves them. Worker 0 takes the report writer out of `writer`. Returns
/// the probe at the end of the job and the worker's writer slot, to finish the writer with.
pub fn build_default_job<P>(
    worker: &mut timely::worker::Worker,
    partitions: Vec<P>,
    adjust: impl FnOnce(SourceOptions) -> SourceOptions,
    config: &Config,
    reference: &Arc<ReferenceData>,
    writer: &Mutex<Option<ReportWriter>>,
    features: FeatureJob,
) -> (ProbeHandle<u64>, WriterSlot)
where
    P: Partition<Record = Event, Side = Report> + 'static,
{
    let taken = if worker.index() == 0 { writer.lock().ok().and_then(|mut w| w.take()) } else { None };
    let slot = WriterSlot { writer: Rc::new(RefCell::new(taken)), flushed: Rc::default() };
    let probe = ProbeHandle::new();
    let options = adjust(source_options(&config.ingest, &probe));
    let detectors = default_detectors(config, reference);
    let sink = slot.clone();
    worker.dataflow::<u64, _, _>(|scope| {
        default_dataflow(scope, partitions, options, detectors, reference.clone(), &probe, sink, features);
    });
    (probe, slot)
}

/// A worker's report writer (worker 0 holds the real one) and whether the sink has seen
/// everything: the sink sets `flushed` once its input is complete.
#[derive(Clone, Default)]
pub struct WriterSlot {
    /// The writer, on worker 0.
    pub writer: Rc<RefCell<Option<ReportWriter>>>,
    /// True once the sink has written everything it will ever receive.
    pub flushed: Rc<std::cell::Cell<bool>>,
}

impl WriterSlot {
    /// Steps `worker` until the sink has seen its complete input: every report has been handed
    /// to the writer. Parks while idle, waking at least every 100 ms.
    pub fn drive(&self, worker: &mut timely::worker::Worker) {
        while !self.flushed.get() {
            worker.step_or_park(Some(Duration::from_millis(100)));
        }
    }
}

/// The source settings of the default job: lateness, epoch, batching and back-pressure from the
/// configuration, with `probe` watching what the job has finished.
pub fn source_options(ingest: &crate::config::IngestConfig, probe: &ProbeHandle<u64>) -> SourceOptions {
    SourceOptions {
        max_out_of_order: ingest.max_out_of_order.as_nanos() as u64,
        epoch: ingest.epoch.as_nanos().max(1) as u64,
        batch_records: ingest.batch_records.max(1),
        reads_per_activation: 32,
        probe: Some(probe.clone()),
        max_in_flight: Some(ingest.max_in_flight),
        ..SourceOptions::default()
    }
}

fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

struct WorkerResult {
    counts: EventCounts,
    written: Option<WrittenCounts>,
    files: Vec<&'static str>,
    error: Option<String>,
}

/// Checks that an input can be opened as a file and that its format fits (a header it needs,
/// a file name it reads dates from): a clear error before any worker starts. A file whose
/// content cannot be read (a truncated gzip stream) is not an error here: the run reads what
/// it can and reports the rest as an `io_error` dead letter.
fn check_input(input: &InputSpec, config: &Config) -> Result<u64, InputError> {
    let io = |source| InputError::Io { path: input.path.clone(), source };
    let meta = std::fs::metadata(&input.path).map_err(io)?;
    if meta.is_dir() {
        return Err(InputError::Format { path: input.path.clone(), message: "is a folder, not a file".into() });
    }
    std::fs::File::open(&input.path).map_err(io)?;
    match crate::ingest::parser_for(input, config) {
        Ok(_) | Err(InputError::Io { .. }) => Ok(meta.len()),
        Err(format) => Err(format),
    }
}

/// Runs the default job and writes `alerts.jsonl`, `dead_letters.jsonl`, `late_events.jsonl`,
/// `order_to_trade.jsonl` and `summary.json` into the output folder (see [`OutputFolder`] for
/// how a run's files replace an earlier run's).
pub fn run(options: RunOptions) -> Result<RunSummary, RunError> {
    let started = Instant::now();
    let RunOptions { inputs, config, workers, out_dir, progress, stop } = options;
    config.validate().map_err(RunError::Config)?;
    let reference = Arc::new(ReferenceData::load(&config)?);
    // Validate every input before starting workers: a missing file or a bad header is a
    // clear error, not a hang.
    let mut total_bytes = 0;
    for input in &inputs {
        total_bytes += check_input(input, &config)?;
    }
    let sources: Vec<String> = inputs.iter().map(|i| i.path.display().to_string()).collect();
    let feature_job = FeatureJob::from_config(&config)?;
    // Nothing the run writes may be something it reads.
    let mut protected: Vec<PathBuf> = inputs.iter().map(|i| i.path.clone()).collect();
    protected.extend(config.reference.instruments.iter().cloned());
    protected.extend(config.reference.accounts.iter().cloned());
    protected.extend(config.rules.anomaly.model.iter().cloned());
    let folder = OutputFolder::prepare(&out_dir, &protected)?;
    let mut writer = ReportWriter::create(&folder, Renderer::new(reference.clone(), sources.clone()))
        .map_err(|source| RunError::Output { path: out_dir.clone(), source })?;
    if feature_job.export {
        writer
            .export_features(&folder, feature_job.window_ns)
            .map_err(|source| RunError::Output { path: out_dir.clone(), source })?;
    }
    let writer = Arc::new(Mutex::new(Some(writer)));
    let read_progress = progress.unwrap_or_default();
    let stop = stop.unwrap_or_default();
    tracing::info!(inputs = inputs.len(), bytes = total_bytes, workers, "run starts");

    let timely_config = timely::Config::process(workers.max(1));
    let job_inputs = inputs.clone();
    let job_config = config.clone();
    let job_reference = reference.clone();
    let job_writer = writer.clone();
    let job_progress = read_progress.clone();
    let job_features = feature_job.clone();
    let job_stop = stop.flag();
    let guards = timely::execute(timely_config, move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let counts = Rc::new(RefCell::new(EventCounts::default()));
        let (partitions, error) =
            match plan_partitions(&job_inputs, &job_config, &job_reference, index, peers, &job_progress, &counts) {
                Ok(p) => (p, None),
                Err(e) => (Vec::new(), Some(e.to_string())),
            };
        let (_probe, slot) = build_default_job(
            worker,
            partitions,
            |options| SourceOptions { stop: Some(job_stop.clone()), ..options },
            &job_config,
            &job_reference,
            &job_writer,
            job_features.clone(),
        );
        // Drive the worker until the sink has seen its complete input, so the writer has
        // written everything it was sent. Park when nothing is active (a live feed between
        // messages) instead of spinning: a spinning worker takes the core from the system's
        // own work, which then preempts it.
        slot.drive(worker);
        let counts = *counts.borrow();
        let mut writer = slot.writer.borrow_mut();
        let files = writer.as_ref().map(|w| w.files()).unwrap_or_default();
        let written = writer.as_mut().map(|w| w.finish().map_err(|e| e.to_string()));
        let (written, write_error) = match written {
            Some(Ok(c)) => (Some(c), None),
            Some(Err(e)) => (None, Some(e)),
            None => (None, None),
        };
        WorkerResult { counts, written, files, error: error.or(write_error) }
    })
    .map_err(RunError::Dataflow)?;

    let results = guards.join();
    let mut summary = RunSummary { inputs: sources.clone(), workers: workers.max(1), ..Default::default() };
    let mut events_by_kind = EventCounts::default();
    let mut files = Vec::new();
    for result in results {
        let result = result.map_err(RunError::Dataflow)?;
        if let Some(error) = result.error {
            return Err(RunError::Dataflow(error));
        }
        for (total, n) in events_by_kind.iter_mut().zip(result.counts) {
            *total += n;
        }
        if let Some(written) = result.written {
            summary.written = written;
            files = result.files;
        }
    }
    for kind in EventKind::ALL {
        summary.events_by_kind.insert(kind.as_str().into(), events_by_kind[kind.index()]);
    }
    let positions = read_progress.positions();
    summary.complete = positions.iter().all(|p| p.finished) && positions.len() == inputs.len();
    if !summary.complete {
        summary.interrupted = Some(Interruption {
            reason: stop.reason().unwrap_or_else(|| "stopped".into()),
            read: positions
                .into_iter()
                .map(|p| InputRead {
                    input: sources.get(p.source as usize).cloned().unwrap_or_default(),
                    ranges: p.ranges,
                    finished: p.finished,
                })
                .collect(),
        });
    }
    summary.events = events_by_kind.iter().sum();
    summary.bytes = read_progress.bytes();
    summary.lines = read_progress.lines();
    summary.alerts = summary.written.alerts_by_rule.values().sum();
    summary.dead_letters = summary.written.dead_letters_by_reason.values().sum();
    summary.elapsed_seconds = started.elapsed().as_secs_f64();
    summary.events_per_second = summary.events as f64 / summary.elapsed_seconds.max(1e-9);
    summary.peak_rss_bytes = peak_rss();
    let text = serde_json::to_string_pretty(&summary).map_err(|e| RunError::Dataflow(e.to_string()))? + "\n";
    folder.commit(&files, text.as_bytes()).map_err(|source| RunError::Output { path: out_dir.clone(), source })?;
    Ok(summary)
}

/// Input specs for paths, with the format given or detected per file.
pub fn inputs(paths: &[PathBuf], format: Option<crate::ingest::Format>) -> Vec<InputSpec> {
    paths
        .iter()
        .enumerate()
        .map(|(i, path)| InputSpec {
            index: i as u32,
            path: path.clone(),
            format: format.unwrap_or_else(|| crate::ingest::Format::detect(path)),
        })
        .collect()
}

/// Convenience for tests and examples: run with defaults on files, writing into `out_dir`.
pub fn run_files(paths: &[PathBuf], config: Config, workers: usize, out_dir: &Path) -> Result<RunSummary, RunError> {
    run(RunOptions { workers, out_dir: out_dir.into(), ..RunOptions::new(inputs(paths, None), config) })
}

/// Trains an anomaly model on recorded files: runs the job with the feature export on into
/// `work_dir` (which keeps `features.csv` and the run's other outputs), then replays the rows
/// through [`crate::detect::anomaly::train`]. The anomaly detector itself is off during the run.
pub fn train_files(
    inputs: Vec<InputSpec>,
    mut config: Config,
    workers: usize,
    work_dir: &Path,
) -> Result<(AnomalyModel, RunSummary), RunError> {
    config.features.export = true;
    let anomaly = config.rules.anomaly.clone();
    config.rules.anomaly.enabled = false;
    let summary = run(RunOptions { workers, out_dir: work_dir.into(), ..RunOptions::new(inputs, config.clone()) })?;
    let path = work_dir.join(crate::features::export::FEATURES_FILE);
    let mut rows = crate::features::export::read(&path).map_err(|e| RunError::Dataflow(e.to_string()))?;
    let window_ns = config.features.window.as_nanos().max(1) as u64;
    Ok((crate::detect::anomaly::train(&mut rows, &anomaly, window_ns), summary))
}
