//! The default surveillance job: read, validate, enrich, route by instrument, detect, write.
//!
//! ```text
//! partitions --(events)--> detect_by_instrument(rules + feature store) --(alerts)---------+
//!                                    --(side: ratios, rows, dead letters)--> anomalies --+
//!            --(late)------------------------------------------------------------------+--> worker 0: write_reports
//!            --(dead letters, dictionary)---------------------------------------------+
//! ```

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;
use surveil_operators::{LastTime, Partition, SourceOptions, SourceOutputs, Tap, partitioned_source};
use timely::dataflow::operators::core::OkErr;

use crate::anomaly::{AnomaliesExt, AnomalyModel, ModelError};
use crate::cases::{CaseActions, CasePolicy, WorkCases};
use crate::config::{AlertsConfig, AnomalyConfig, CasesConfig};
use crate::detect::{Detect, InstrumentRules};
use crate::features::{FeatureRecorder, FeatureRow};
use crate::links::LinkAccounts;
use crate::live_reference::FollowReference;
use crate::manager::{AlertPolicy, ManageAlerts};
use crate::output::{WriteReports, WriterSlot};
use crate::rules::{StreamRules, default_rules};
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::{Concat, Probe, ToStream};
use timely::dataflow::{ProbeHandle, Scope, Stream};

use crate::config::Config;
use crate::ingest::{InputError, InputSpec, LinePartition, ReadProgress, plan_partitions};
use crate::model::Report;
use crate::model::{Alert, Body, CaseAction, Event, EventKind};
use crate::output::{OutputFolder, Renderer, ReportWriter, WrittenCounts};
use crate::reference::{ReferenceData, ReferenceError};

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
    /// The run's outputs are written, but its archive is incomplete.
    #[error("the archive is incomplete ({0}); the run's other outputs are written")]
    Archive(String),
    /// Kafka cannot be read or written (brokers, topics, deliveries, commits).
    #[error("{0}")]
    Kafka(String),
    /// The processes of a cluster cannot connect, disagree, or one of them stopped.
    #[error("{0}")]
    Cluster(String),
    /// The checkpoint cannot be read, written or resumed.
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
}

/// What to run.
#[derive(Clone)]
pub struct RunOptions {
    /// Inputs, in order.
    pub inputs: Vec<InputSpec>,
    /// Configuration.
    pub config: Config,
    /// Worker threads (of this process, in a cluster).
    pub workers: usize,
    /// The cluster this process is part of, to run over several processes (timely's cluster
    /// mode); one process when `None`.
    pub cluster: Option<crate::cluster::Cluster>,
    /// Output folder.
    pub out_dir: PathBuf,
    /// Where the run counts what it reads (bytes, positions, lines), for a progress display
    /// that polls it from another thread; a fresh one when `None`.
    pub progress: Option<Arc<ReadProgress>>,
    /// A request to stop early (an interrupt): reading stops, what was read is processed and
    /// written, and the summary says where the run stopped.
    pub stop: Option<Stop>,
    /// Rules of one's own, run beside the built-in ones ([`RunOptions::with_rule`]).
    pub extra_rules: Vec<ExtraRule>,
    /// Live counters to keep current ([`crate::metrics`], served by `metrics::serve`).
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
}

/// A rule of one's own for the default job: builds, on each worker, the operators that turn the
/// job's events into alerts (`|events| events.detect(MyRule { .. })`).
pub type ExtraRule =
    Arc<dyn for<'scope> Fn(Stream<'scope, u64, Vec<Event>>) -> Stream<'scope, u64, Vec<Alert>> + Send + Sync>;

impl RunOptions {
    /// Runs `inputs` with `config` on one worker into `out`, without a progress bar.
    pub fn new(inputs: Vec<InputSpec>, config: Config) -> RunOptions {
        RunOptions {
            inputs,
            config,
            workers: 1,
            cluster: None,
            out_dir: PathBuf::from("out"),
            progress: None,
            stop: None,
            extra_rules: Vec::new(),
            metrics: None,
        }
    }

    /// Adds a rule of one's own to the job: `rule` builds its operators over the events on
    /// each worker, and its alerts are written with the others.
    ///
    /// ```no_run
    /// use surveil::config::Config;
    /// use surveil::detect::Detect;
    /// use surveil::pipeline::{RunOptions, inputs, run};
    /// use surveil::rules::SelfTrade;
    ///
    /// // A second self-trade check that ignores beneficial owners, beside the built-in rules.
    /// let strict = SelfTrade::new(&surveil::config::SelfTradeConfig { enabled: true, match_owner: false });
    /// let options = RunOptions::new(inputs(&["day.csv".into()], None), Config::default())
    ///     .with_rule(move |events| events.detect(strict.clone()));
    /// run(options).unwrap();
    /// ```
    pub fn with_rule<F>(mut self, rule: F) -> RunOptions
    where
        F: for<'scope> Fn(Stream<'scope, u64, Vec<Event>>) -> Stream<'scope, u64, Vec<Alert>> + Send + Sync + 'static,
    {
        self.extra_rules.push(Arc::new(rule));
        self
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
    /// Worker threads, over all processes.
    pub workers: usize,
    /// Processes the workers ran in.
    pub processes: usize,
    /// Events read, by kind.
    pub events_by_kind: std::collections::BTreeMap<String, u64>,
    /// Events read.
    pub events: u64,
    /// Events that named reference data the loaded files lack at the event's time (an
    /// instrument, an account, a trade's buyer or seller account), by input and field. They
    /// were processed all the same; each is counted once per field it lacks.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub incomplete_events: std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>>,
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
    /// What the run archived.
    #[cfg(feature = "archive")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive: Option<crate::archive::ArchiveCounts>,
    /// Refused Kafka messages the dead-letter topic acknowledged, and did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kafka_dead_letters: Option<crate::output::PublishCounts>,
    /// Checkpoints, when the run kept them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoints: Option<CheckpointSummary>,
}

/// What a run that keeps checkpoints did with them.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CheckpointSummary {
    /// Checkpoints this run wrote.
    pub written: u64,
    /// Times the job was resumed from a checkpoint before it finished.
    pub resumes: u64,
    /// The watermark of the checkpoint this run resumed from, if it resumed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumed_at_watermark: Option<u64>,
    /// The run stopped early and kept its checkpoint and partial outputs: the same command
    /// resumes it.
    pub resumable: bool,
}

/// A job's checkpoint settings, who it is, and the checkpoint it resumes from.
struct Checkpoints {
    config: crate::config::CheckpointConfig,
    identity: crate::checkpoint::JobIdentity,
    earlier: Option<crate::checkpoint::Checkpoint>,
    clock: Mutex<Option<Arc<crate::checkpoint::CheckpointClock>>>,
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
        let mut incomplete: std::collections::BTreeMap<&str, u64> = Default::default();
        for (field, n) in self.incomplete_events.values().flatten() {
            *incomplete.entry(field).or_default() += n;
        }
        for (field, n) in incomplete {
            row(&format!("  {field} not in reference"), n.to_string());
        }
        row("alerts", self.alerts.to_string());
        for (rule, n) in &self.written.alerts_by_rule {
            row(&format!("  {rule}"), n.to_string());
        }
        for tier in crate::model::Tier::ALL.iter().rev() {
            if let Some(n) = self.written.alerts_by_tier.get(tier.as_str()) {
                row(&format!("  tier {tier}"), n.to_string());
            }
        }
        if self.written.alert_groups > 0 {
            row("  groups of repeats", self.written.alert_groups.to_string());
        }
        for (kind, n) in &self.written.corrections_by_kind {
            row(&format!("  corrections {kind}"), n.to_string());
        }
        for (route, n) in &self.written.notices_by_route {
            row(&format!("  notices to {route}"), n.to_string());
        }
        if let Some(opened) = self.written.case_changes.get("opened") {
            row("cases opened", opened.to_string());
            for (change, n) in self.written.case_changes.iter().filter(|(c, _)| c.as_str() != "opened") {
                row(&format!("  {}", change.replace('_', " ")), n.to_string());
            }
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

/// A stream of reports for the writers.
type Reports<'scope> = Stream<'scope, u64, Vec<Report>>;

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

    /// Takes the feature rows out of the detectors' side records, adds the account rows and
    /// scores them: returns the side records (with the rows, when exported) and the anomaly
    /// alerts, when scoring is on.
    fn build<'scope>(
        &self,
        side: Stream<'scope, u64, Vec<Report>>,
    ) -> (Reports<'scope>, Option<Stream<'scope, u64, Vec<Alert>>>) {
        let (rows, mut reports) = side.ok_err::<Vec<FeatureRow>, _, Vec<Report>, _, _>(|report| match report {
            Report::Features(row) => Ok(*row),
            other => Err(other),
        });
        let rows = crate::features::with_account_rows(rows);
        let alerts = self
            .anomaly
            .as_ref()
            .map(|config| rows.clone().behavioural_anomalies(config, self.window_ns, self.model.clone()));
        if self.export {
            reports = reports.concat(rows.map(|r| Report::Features(Box::new(r))));
        }
        (reports, alerts)
    }
}

/// Builds the default job in `scope` over any partitions of events, from the public pieces: a
/// [`partitioned_source`], the built-in rules keyed by instrument in one operator
/// ([`Detect::detect_by_instrument`], with the feature store when the job needs it), the
/// anomaly scoring of the feature rows, and the [`WriteReports`] sink on worker 0. `probe`
/// watches everything the sink receives, so its frontier passing a time means the reports of
/// that time have been handed to the writer. [`run`] builds this over file blocks; other
/// sources (paced replays, live feeds) plug in through [`surveil_operators::Partition`].
#[allow(clippy::too_many_arguments)]
pub fn default_dataflow<'scope, P>(
    scope: Scope<'scope, u64>,
    partitions: Vec<P>,
    options: SourceOptions,
    rules: InstrumentRules,
    reference: Arc<ReferenceData>,
    probe: &ProbeHandle<u64>,
    slot: WriterSlot,
    features: FeatureJob,
    alerts: &AlertsConfig,
    cases: Option<(&CasesConfig, &Arc<CaseActions>)>,
    extra_rules: &[ExtraRule],
    stream_rules: &StreamRules,
) where
    P: Partition<Record = Event, Side = Report> + 'static,
{
    let source = partitioned_source(scope, "Ingest", partitions, options);
    let reports = default_detection_with(
        source.records,
        rules,
        stream_rules,
        &reference,
        &features,
        alerts,
        cases,
        extra_rules,
        LiveFeeds::default(),
    );
    let late = source.late.map(|e| Report::Late(Box::new(e)));
    reports.concat(source.side).concat(late).probe_with(probe).write_reports(slot);
}

/// [`default_detection`] with the rules given.
#[allow(clippy::too_many_arguments)]
fn default_detection_with<'scope>(
    events: Stream<'scope, u64, Vec<Event>>,
    rules: InstrumentRules,
    stream_rules: &StreamRules,
    reference: &Arc<ReferenceData>,
    features: &FeatureJob,
    alerts: &AlertsConfig,
    cases: Option<(&CasesConfig, &Arc<CaseActions>)>,
    extra_rules: &[ExtraRule],
    live: LiveFeeds,
) -> Stream<'scope, u64, Vec<Report>> {
    let scope = events.scope();
    // Live feeds follow how far the events have been read.
    let read = ProbeHandle::new();
    let events = if live.ownership.is_some() || live.reference.is_some() { events.probe_with(&read) } else { events };
    // Instruments and accounts that change while the job runs are applied before the events
    // of their time go on.
    let (events, names, owners) = match live.reference {
        Some(feed) => {
            let streams = crate::live_reference::live_reference_streams(scope, &read, feed);
            (events.follow_reference(reference, streams.changes), Some(streams.names), Some(streams.ownership))
        }
        None => (events, None, None),
    };
    // Trades' parties get their group of linked accounts as of each trade, when the reference
    // data states any ownership, or changes of it (or of accounts' owners) come while the job
    // runs.
    let (events, groups) = match (live.ownership, owners) {
        (None, None) => (events, reference.has_ownership().then(|| crate::links::linked_groups(scope, reference))),
        (feed, owners) => {
            let feed = feed.unwrap_or(crate::links::LiveOwnership { feed: None });
            (events, Some(crate::links::linked_groups_fed(scope, reference, &read, feed, owners)))
        }
    };
    let events = match &groups {
        Some(groups) => events.link_accounts(groups.clone()),
        None => events,
    };
    // The case workflow learns where the (finite) input ended, so that deadlines beyond the
    // end stay pending. The events pass through, moved rather than copied.
    let (events, ends) = match cases {
        Some(_) => {
            let out = events.last_time(|e: &Event| e.time);
            (out.records, Some(out.ends))
        }
        None => (events, None),
    };
    // The stream rules read trade prints only: one copy of the trades serves them all, and
    // the event stream goes on uncopied.
    let (events, mut extra_alerts) = if stream_rules.is_empty() {
        (events, Vec::new())
    } else {
        let tapped = events.tap("Trades", |e: &Event| matches!(e.body, Body::Trade { .. }));
        (tapped.records, stream_rules.alerts(tapped.selected, groups))
    };
    extra_alerts.extend(extra_rules.iter().map(|rule| rule(events.clone())));
    let rules = if features.is_active() {
        rules.with(FeatureRecorder::new(features.window_ns, reference.clone()))
    } else {
        rules
    };
    let detected = events.detect_by_instrument(rules, true);
    let (side, anomalies) = if features.is_active() { features.build(detected.side) } else { (detected.side, None) };
    let side = match names {
        Some(names) => side.concat(names),
        None => side,
    };
    let all = extra_alerts.into_iter().chain(anomalies).fold(detected.alerts, |all, more| all.concat(more));
    let policy = Arc::new(AlertPolicy::new(alerts, reference.clone()));
    let managed = all.manage_alerts(policy.clone()).reports;
    let (Some((config, actions)), Some(ends)) = (cases, ends) else { return managed.concat(side) };
    // Worker 0 feeds the people's actions and the lines that were not actions.
    let first = scope.index() == 0;
    let mine = if first { actions.actions.clone() } else { Vec::new() };
    let refused: Vec<Report> = if first {
        actions.refused.iter().map(|letter| Report::DeadLetter(Box::new(letter.clone()))).collect()
    } else {
        Vec::new()
    };
    // The recorded events say where the input ends, one announcement from each worker; actions
    // dated later still apply, but no deadline fires past the events (a mistyped year in an
    // action must not escalate every case).
    let actions: Stream<'scope, u64, Vec<CaseAction>> = mine.to_stream(scope);
    let policy = Arc::new(CasePolicy::new(config, policy));
    let cases = managed.clone().work_cases(actions, Some(ends), scope.peers(), policy);
    managed.concat(cases).concat(refused.to_stream(scope)).concat(side)
}

/// Builds the default job on one worker over its `partitions`, with the configuration's source
/// settings as `adjust` leaves them. Worker 0 takes the report writer out of `writer`. Returns
/// the probe at the end of the job and the worker's writer slot, to drive the worker with and
/// finish the writer.
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
    let slot = WriterSlot::new(taken);
    let probe = ProbeHandle::new();
    let options = adjust(source_options(&config.ingest, &probe));
    let rules = default_rules(config, reference);
    let sink = slot.clone();
    worker.dataflow::<u64, _, _>(|scope| {
        default_dataflow(
            scope,
            partitions,
            options,
            rules,
            reference.clone(),
            &probe,
            sink,
            features,
            &config.alerts,
            config.cases.enabled.then_some((&config.cases, &Arc::default())),
            &[],
            &StreamRules::from_config(config),
        );
    });
    (probe, slot)
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

/// Checks that an input can be opened as a file and that its format fits (a header it needs,
/// a file name it reads dates from): a clear error before any worker starts. A file whose
/// content cannot be read (a truncated gzip stream) is not an error here: the run reads what
/// it can and reports the rest as an `io_error` dead letter.
fn check_input(input: &InputSpec, config: &Config) -> Result<u64, InputError> {
    if input.format == crate::ingest::Format::Archive {
        return if cfg!(feature = "archive") {
            Ok(0)
        } else {
            Err(InputError::Format {
                path: input.path.clone(),
                message: "an archive: replaying one needs surveil built with the `archive` feature".into(),
            })
        };
    }
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

/// A job over recorded files, set up once and shared by every worker: the checked inputs and
/// configuration, the reference data, and the output folder with its writer. Each worker asks
/// it for its share of the inputs as a source ([`Job::read_files`]) and for its writer slot
/// ([`Job::writer_slot`]); when the workers are done, [`Job::finish`] commits the files and the
/// summary. [`run`] is this with the default detectors; a job of one's own wires its own
/// operators in between (`examples/custom_pipeline.rs`).
pub struct Job {
    inputs: Vec<InputSpec>,
    config: Config,
    reference: Arc<ReferenceData>,
    /// The output folder, in the process that writes (process 0).
    folder: Option<OutputFolder>,
    writer: Mutex<Option<ReportWriter>>,
    /// Where this process sits in a cluster, when the job runs on several processes.
    cluster: Option<crate::cluster::Cluster>,
    /// Live counters, when someone shows them ([`Job::with_metrics`]).
    metrics: Option<Arc<crate::metrics::Metrics>>,
    files: Vec<String>,
    progress: Arc<ReadProgress>,
    stop: Stop,
    features: FeatureJob,
    case_actions: Arc<CaseActions>,
    started: Instant,
    /// The digests of the inputs, computed beside the run for its audit trail.
    input_digests: Mutex<InputDigests>,
    /// The archive the run writes.
    #[cfg(feature = "archive")]
    archive: Option<Arc<crate::archive::Archive>>,
    /// The archive the run replays: its input index, the source number of its own dead
    /// letters, and its reader.
    #[cfg(feature = "archive")]
    replays: Vec<(u32, u32, Arc<crate::archive::ArchiveReader>)>,
    /// The Kafka topic the run reads, when `kafka.topic` is set.
    #[cfg(feature = "kafka")]
    kafka: Option<Arc<crate::kafka::KafkaSource>>,
    /// Checkpoints, when the job keeps them.
    checkpoints: Option<Checkpoints>,
}

/// Who a job is, for its checkpoints and the processes of its cluster: the version, the
/// effective configuration (without the checkpoint settings), the inputs (paths, formats and
/// sizes) and the contents of the files the configuration names.
pub fn job_identity(config: &Config, inputs: &[InputSpec]) -> crate::checkpoint::JobIdentity {
    let inputs: Vec<String> = inputs
        .iter()
        .map(|i| {
            let bytes = std::fs::metadata(&i.path).map(|m| m.len()).unwrap_or_default();
            format!("{} ({:?}, {bytes} bytes)", i.path.display(), i.format)
        })
        .collect();
    // Files the configuration names change the dataflow and its results as much as the
    // inputs do: their contents.
    let named: Vec<String> = [&config.reference.instruments, &config.reference.accounts]
        .into_iter()
        .chain([&config.reference.ownership, &config.reference.baskets])
        .chain([&config.rules.anomaly.model])
        .flatten()
        .chain(&config.cases.actions)
        .map(|path| std::fs::read(path).map(|b| crate::audit::sha256_hex(&b)).unwrap_or_default())
        .collect();
    let mut results = config.clone();
    results.checkpoint = None;
    crate::checkpoint::JobIdentity {
        version: env!("CARGO_PKG_VERSION").into(),
        config_sha256: crate::audit::config_digest(&results),
        inputs,
        named_files_sha256: crate::audit::sha256_hex(named.join("\n").as_bytes()),
    }
}

/// Why checkpoints cannot be kept for this job, if they cannot: what a resumed run could not
/// reconcile yet. A run that writes or replays an archive resumes its inputs from their start (see
/// [`crate::checkpoint::Checkpointer::resuming_from_the_start`]), which a Kafka topic, whose
/// oldest messages the broker may have dropped, cannot promise.
fn checkpoints_refused(config: &Config) -> Option<&'static str> {
    if config.archive.is_some() && config.kafka.as_ref().is_some_and(|k| k.topic.is_some()) {
        Some("an archive of a Kafka topic")
    } else {
        None
    }
}

/// The archive among a run's inputs: its input index, the reader, and the names of the
/// sources its events are numbered by (the inputs of the run that archived them, as
/// `ARCHIVE (INPUT)`, when the archive holds one run; else the archive alone).
#[cfg(feature = "archive")]
type Replay = Option<(u32, Arc<crate::archive::ArchiveReader>, Vec<String>)>;

/// Opens the archive among `inputs`, if there is one. An archive is replayed on its own: its
/// events keep the input numbers of the run that wrote them, which other inputs would share.
#[cfg(feature = "archive")]
fn open_replay(config: &Config, inputs: &[InputSpec]) -> Result<Replay, RunError> {
    let archives: Vec<&InputSpec> = inputs.iter().filter(|i| i.format == crate::ingest::Format::Archive).collect();
    let Some(input) = archives.first() else { return Ok(None) };
    if inputs.len() > 1 {
        return Err(RunError::Config(format!(
            "{} is an archive: replay it on its own (its events keep the input numbers of the run that \
             archived them, which other inputs would share)",
            input.path.display()
        )));
    }
    let url = input.path.display().to_string();
    let same = |a: &str, b: &str| {
        let canonical = |p: &str| std::fs::canonicalize(p).map(|p| p.display().to_string()).unwrap_or(p.to_string());
        canonical(a.trim_end_matches('/')) == canonical(b.trim_end_matches('/'))
    };
    if config.archive.as_ref().is_some_and(|a| same(&a.url, &url)) {
        return Err(RunError::Config(format!(
            "{url} is both an input and the run's archive: a replay would read what it writes"
        )));
    }
    let mut settings = config.archive.clone().unwrap_or_else(|| crate::config::ArchiveConfig::local(&input.path));
    settings.url = url;
    let unreadable = |e: crate::archive::ArchiveError| {
        RunError::Input(InputError::Format { path: input.path.clone(), message: e.to_string() })
    };
    let reader = crate::archive::ArchiveReader::open(&settings, crate::encryption::keys_for_reading(config))
        .map_err(unreadable)?;
    let mut runs = std::collections::BTreeSet::new();
    let mut replayable = 0;
    for table in [crate::archive::EVENTS, crate::archive::LATE_EVENTS, crate::archive::DEAD_LETTERS] {
        for key in reader.files(table).map_err(unreadable)? {
            replayable += 1;
            if let Some(run) =
                key.rsplit('/').next().and_then(|name| name.strip_prefix("part-")).and_then(|r| r.split('-').next())
            {
                runs.insert(run.to_string());
            }
        }
    }
    // Labels, not paths: the evidence says where an event came from, and the output writer
    // does not read lines again from files that may have changed since.
    let original = reader.inputs().map_err(unreadable)?;
    let sources = if runs.len() == 1 && !original.is_empty() {
        original.iter().map(|name| format!("{} ({name})", input.path.display())).collect()
    } else {
        vec![input.path.display().to_string()]
    };
    if replayable == 0 {
        return Err(RunError::Input(InputError::Format {
            path: input.path.clone(),
            message: "an archive with no events and no dead letters: nothing to replay".into(),
        }));
    }
    Ok(Some((input.index, Arc::new(reader), sources)))
}

/// Opens the archive the run writes (`config.archive`), if any.
#[cfg(feature = "archive")]
fn open_archive(
    config: &Config,
    inputs: &[InputSpec],
    sources: Option<&[String]>,
    staging: &Path,
) -> Result<Option<Arc<crate::archive::Archive>>, RunError> {
    let Some(settings) = &config.archive else { return Ok(None) };
    let key = crate::encryption::key_for_writing(config).map_err(RunError::Config)?;
    let identity: Vec<(String, u64)> = inputs
        .iter()
        .map(|input| {
            let path = std::fs::canonicalize(&input.path).unwrap_or_else(|_| input.path.clone());
            (path.display().to_string(), std::fs::metadata(&input.path).map_or(0, |m| m.len()))
        })
        .collect();
    let run = crate::archive::run_id(&identity);
    let names: Vec<String> = inputs.iter().map(|i| i.path.display().to_string()).collect();
    let names = sources.map(<[String]>::to_vec).unwrap_or(names);
    let opened = crate::archive::Archive::open(settings, &run, &names, staging, key.as_ref())
        .map_err(|e| RunError::Config(format!("archive {}: {e}", settings.url)))?;
    Ok(Some(Arc::new(opened)))
}

/// The thread digesting the inputs, then what it found.
type InputDigests = (Option<std::thread::JoinHandle<Vec<serde_json::Value>>>, Vec<serde_json::Value>);

/// Starts digesting `inputs` (and the LOBSTER order books read with them) on a thread of its
/// own (the run reads them meanwhile, so they are in the page cache): one entry per file, its
/// [`crate::audit::InputDigest`] under its absolute path, or why not. Each file is digested up
/// to the size it has now, when the run starts reading it.
fn digest_inputs(
    inputs: &[InputSpec],
    config: &Config,
    stop: &Stop,
) -> Option<std::thread::JoinHandle<Vec<serde_json::Value>>> {
    let mut paths: Vec<(PathBuf, u64)> = Vec::new();
    for input in inputs.iter().filter(|i| i.format != crate::ingest::Format::Archive) {
        for path in std::iter::once(input.path.clone()).chain(crate::ingest::companion_of(input, config)) {
            let size = std::fs::metadata(&path).map_or(0, |m| m.len());
            paths.push((std::fs::canonicalize(&path).unwrap_or(path), size));
        }
    }
    let flag = stop.flag();
    std::thread::Builder::new()
        .name("input-digests".into())
        .spawn(move || {
            let stopped = || flag.load(Ordering::Relaxed);
            paths
                .iter()
                .map(|(path, size)| {
                    let not = |why: String| serde_json::json!({"path": path.display().to_string(), "not_hashed": why});
                    match crate::audit::digest_input(path, crate::audit::DIGEST_BLOCK, *size, &stopped) {
                        Ok(Some(digest)) => serde_json::to_value(digest).unwrap_or_default(),
                        Ok(None) => not("the run was stopped first".into()),
                        Err(e) => not(e.to_string()),
                    }
                })
                .collect()
        })
        .ok()
}

/// The audit trail's first record: what ran, with which settings, over which files.
fn run_started(config: &Config, inputs: &[InputSpec]) -> serde_json::Value {
    let files: Vec<serde_json::Value> = inputs
        .iter()
        .map(|input| {
            let meta = std::fs::metadata(&input.path).ok();
            let modified = meta
                .as_ref()
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_nanos() as u64);
            serde_json::json!({
                "path": input.path.display().to_string(),
                "bytes": meta.as_ref().map(|m| m.len()),
                "modified_ns": modified,
            })
        })
        .collect();
    // Reference data, models and case actions change the outputs as much as the inputs do:
    // their content digests.
    let reference: Vec<serde_json::Value> = [&config.reference.instruments, &config.reference.accounts]
        .into_iter()
        .chain([&config.rules.anomaly.model])
        .flatten()
        .chain(&config.cases.actions)
        .map(|path| {
            let digest = std::fs::read(path).ok().map(|bytes| crate::audit::sha256_hex(&bytes));
            serde_json::json!({"path": path.display().to_string(), "sha256": digest})
        })
        .collect();
    serde_json::json!({
        "surveil": env!("CARGO_PKG_VERSION"),
        // The effective configuration, every default included, as this version renders it.
        "config_sha256": crate::audit::config_digest(config),
        "order_to_trade_sha256": crate::audit::order_to_trade_digest(config),
        "inputs": files,
        "reference": reference,
    })
}

/// The key that encrypts the audit trail at rest ([`crate::encryption::key_for_writing`]).
pub fn audit_encryption_key(config: &Config) -> Result<Option<crate::encryption::EncryptionKey>, RunError> {
    crate::encryption::key_for_writing(config).map_err(RunError::Config)
}

/// The audit trail's signing key and checkpoint interval ([`audit_signing_key`]).
fn audit_signer(config: &Config) -> Result<Option<(crate::audit::SigningKey, u64)>, RunError> {
    Ok(audit_signing_key(config)?.map(|key| (key, config.audit.checkpoint_every)))
}

/// The audit trail's signing key: from `audit.signing_key`, else from the environment variable
/// [`crate::config::AUDIT_KEY_VARIABLE`], else none. It also signs the submissions ledger.
pub fn audit_signing_key(config: &Config) -> Result<Option<crate::audit::SigningKey>, RunError> {
    use crate::config::AUDIT_KEY_VARIABLE;
    let (text, from) = match &config.audit.signing_key {
        Some(path) => (
            std::fs::read_to_string(path)
                .map_err(|e| RunError::Config(format!("audit.signing_key {}: {e}", path.display())))?,
            format!("audit.signing_key {}", path.display()),
        ),
        None => match std::env::var(AUDIT_KEY_VARIABLE) {
            Ok(text) => (text, AUDIT_KEY_VARIABLE.to_string()),
            Err(std::env::VarError::NotPresent) => return Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(RunError::Config(format!("{AUDIT_KEY_VARIABLE} is set but is not text")));
            }
        },
    };
    let key = crate::audit::signing_key_from_hex(&text).ok_or_else(|| {
        RunError::Config(format!("{from}: not an audit signing key (64 hex digits, as `surveil audit keygen` writes)"))
    })?;
    Ok(Some(key))
}

impl Job {
    /// Checks the configuration and the inputs, loads the reference data and prepares the
    /// output folder (refusing one that would overwrite an input). Errors here are the clear,
    /// early kind: nothing has been written.
    pub fn new(inputs: Vec<InputSpec>, config: Config, out_dir: &Path) -> Result<Job, RunError> {
        Job::build(inputs, config, out_dir, None)
    }

    /// The job as one process of a cluster ([`crate::cluster`]) runs it: process 0 prepares the
    /// output folder and writes everything; the others read their share of the inputs, detect,
    /// and send their reports to it, and write nothing. Every process is given the same
    /// inputs and configuration (checked when the cluster starts). Kafka topics and archives
    /// are read and written by one process only, and are refused here.
    pub fn in_cluster(
        inputs: Vec<InputSpec>,
        config: Config,
        out_dir: &Path,
        cluster: &crate::cluster::Cluster,
    ) -> Result<Job, RunError> {
        if cluster.processes() > 1 {
            if config.kafka.as_ref().is_some_and(|k| k.topic.is_some()) {
                return Err(RunError::Config(
                    "a Kafka topic is read by one process: run it with --workers, not --processes".into(),
                ));
            }
            if config.archive.is_some() || inputs.iter().any(|i| i.format == crate::ingest::Format::Archive) {
                return Err(RunError::Config(
                    "archives are written and replayed by one process: run with --workers, not --processes".into(),
                ));
            }
        }
        Job::build(inputs, config, out_dir, Some(cluster.clone()))
    }

    fn build(
        inputs: Vec<InputSpec>,
        config: Config,
        out_dir: &Path,
        cluster: Option<crate::cluster::Cluster>,
    ) -> Result<Job, RunError> {
        let started = Instant::now();
        config.validate().map_err(RunError::Config)?;
        // A key that is not a key stops the run before the output folder is touched; so does a
        // webhook's certificate file that holds no certificate.
        let signer = audit_signer(&config)?;
        let encryption = audit_encryption_key(&config)?;
        #[cfg(feature = "http")]
        for webhook in config.alerts.routes.iter().filter_map(|r| r.webhook.as_ref()) {
            crate::webhook::agent(webhook).map_err(|e| RunError::Config(e.to_string()))?;
        }
        #[cfg(feature = "http")]
        if let Some(timeseries) = &config.timeseries {
            crate::webhook::http_agent(timeseries.timeout, timeseries.ca_file.as_deref())
                .map_err(|e| RunError::Config(e.to_string()))?;
        }
        #[allow(unused_mut)]
        let mut reference = ReferenceData::load(&config)?;
        // Reference topics add to the files, before any worker starts.
        #[cfg(feature = "kafka")]
        let reference_read = match &config.kafka {
            Some(settings) => crate::kafka::read_reference_topics(settings, &mut reference)
                .map_err(|e| RunError::Kafka(e.to_string()))?,
            None => Default::default(),
        };
        let reference = Arc::new(reference);
        let mut total_bytes = 0;
        for input in &inputs {
            total_bytes += check_input(input, &config)?;
        }
        let features = FeatureJob::from_config(&config)?;
        // Case actions are inputs numbered after the event inputs, so a refused line names its file.
        if !config.cases.enabled && !config.cases.actions.is_empty() {
            return Err(RunError::Config(
                "case actions were given but cases.enabled is false: they would be ignored".into(),
            ));
        }
        // A replay's events are numbered as the inputs of the run that archived them.
        #[cfg(feature = "archive")]
        let replay = open_replay(&config, &inputs)?;
        #[cfg(feature = "archive")]
        let event_sources: Vec<String> = match &replay {
            // Then the archive itself, for what the replay finds unreadable in it.
            Some((_, _, labels)) => labels.iter().cloned().chain([inputs[0].path.display().to_string()]).collect(),
            None => inputs.iter().map(|i| i.path.display().to_string()).collect(),
        };
        #[cfg(not(feature = "archive"))]
        let event_sources: Vec<String> = inputs.iter().map(|i| i.path.display().to_string()).collect();
        // The partitions of a Kafka topic are inputs numbered after the files.
        #[cfg(feature = "kafka")]
        let (kafka, event_sources) = {
            let mut event_sources = event_sources;
            let kafka = match config.kafka.as_ref().filter(|k| k.topic.is_some()) {
                Some(settings) => {
                    if inputs.iter().any(|i| i.format == crate::ingest::Format::Archive) {
                        return Err(RunError::Config(
                            "an archive is replayed on its own, not together with a Kafka topic".into(),
                        ));
                    }
                    let mut source = crate::kafka::KafkaSource::connect(settings, event_sources.len() as u32)
                        .map_err(|e| RunError::Kafka(e.to_string()))?;
                    source
                        .follow_ownership(&reference_read.ownership_ends)
                        .map_err(|e| RunError::Kafka(e.to_string()))?;
                    source
                        .follow_reference(&reference_read.instruments_ends, &reference_read.accounts_ends)
                        .map_err(|e| RunError::Kafka(e.to_string()))?;
                    event_sources.extend(source.source_names());
                    Some(source)
                }
                None => None,
            };
            (kafka, event_sources)
        };
        #[cfg(not(feature = "kafka"))]
        if config.kafka.is_some() {
            return Err(RunError::Config("kafka: this surveil is built without the `kafka` feature".into()));
        }
        if inputs.is_empty() && event_sources.is_empty() {
            return Err(RunError::Config("nothing to read: give input files or a Kafka topic (kafka.topic)".into()));
        }
        #[allow(unused_mut)]
        let mut case_actions = match config.cases.enabled {
            true => CaseActions::read(&config.cases.actions, event_sources.len().max(inputs.len()) as u32)
                .map_err(|(path, e)| RunError::Config(format!("cases.actions {}: {e}", path.display())))?,
            false => CaseActions::default(),
        };
        let mut sources = event_sources;
        sources.resize(sources.len().max(inputs.len()), String::new());
        sources.extend(case_actions.files.iter().map(|p| p.display().to_string()));
        // A topic of case actions is the input after the files of actions.
        #[cfg(feature = "kafka")]
        if let Some(settings) = &config.kafka
            && let Some(topic) = &settings.case_actions_topic
        {
            if !config.cases.enabled {
                return Err(RunError::Config(
                    "kafka.case_actions_topic is set but cases.enabled is false: its actions would be ignored".into(),
                ));
            }
            let (actions, refused) = crate::kafka::read_case_actions(settings, topic, sources.len() as u32)
                .map_err(|e| RunError::Kafka(e.to_string()))?;
            case_actions.actions.extend(actions);
            case_actions.refused.extend(refused);
            sources.push(format!("kafka:{topic}"));
        }
        // Nothing the run writes may be something it reads.
        let mut protected: Vec<PathBuf> = inputs.iter().map(|i| i.path.clone()).collect();
        protected.extend(config.reference.instruments.iter().cloned());
        protected.extend(config.reference.accounts.iter().cloned());
        protected.extend(config.rules.anomaly.model.iter().cloned());
        protected.extend(config.audit.signing_key.iter().cloned());
        protected.extend(config.audit.encryption_key.iter().cloned());
        protected.extend(config.cases.actions.iter().cloned());
        if config.checkpoint.is_some()
            && let Some(what) = checkpoints_refused(&config)
        {
            return Err(RunError::Config(format!(
                "checkpoints are not kept for {what} yet (docs/checkpoints.md): run it without --checkpoint"
            )));
        }
        // A process other than the first reads and detects; the first writes.
        if cluster.as_ref().is_some_and(|c| c.process != 0) {
            tracing::info!(inputs = inputs.len(), bytes = total_bytes, "job ready; process 0 writes the outputs");
            return Ok(Job {
                #[cfg(feature = "archive")]
                archive: None,
                #[cfg(feature = "archive")]
                replays: Vec::new(),
                #[cfg(feature = "kafka")]
                kafka: None,
                checkpoints: None,
                files: Vec::new(),
                inputs,
                config,
                reference,
                folder: None,
                writer: Mutex::new(None),
                cluster,
                metrics: None,
                progress: Arc::default(),
                stop: Stop::default(),
                features,
                case_actions: Arc::new(case_actions),
                started,
                input_digests: Mutex::new((None, Vec::new())),
            });
        }
        let checkpoints = match &config.checkpoint {
            Some(settings) => {
                let identity = job_identity(&config, &inputs);
                let earlier = crate::checkpoint::Checkpoint::load(&settings.dir)?;
                if let Some(earlier) = &earlier {
                    earlier.check(&settings.dir, &identity, out_dir)?;
                }
                Some(Checkpoints { config: settings.clone(), identity, earlier, clock: Mutex::new(None) })
            }
            None => None,
        };
        let earlier = checkpoints.as_ref().and_then(|c| c.earlier.as_ref());
        let folder = match earlier {
            Some(earlier) => OutputFolder::resume(out_dir, &protected, earlier.writer.outputs.clone())?,
            // Killed before its first checkpoint, a run with checkpoints starts over, but its
            // webhooks do not deliver again what they delivered (their outboxes are kept).
            None if checkpoints.is_some() => {
                let outboxes: std::collections::BTreeMap<String, u64> = config
                    .alerts
                    .routes
                    .iter()
                    .filter(|route| route.webhook.is_some())
                    .map(|route| crate::output::webhook_file(&route.name))
                    .filter(|name| out_dir.join(format!("{name}{}", crate::output::PARTIAL_SUFFIX)).is_file())
                    .map(|name| (name, 0))
                    .collect();
                OutputFolder::resume(out_dir, &protected, outboxes)?
            }
            None => OutputFolder::prepare(out_dir, &protected)?,
        };
        let output = |source| RunError::Output { path: out_dir.into(), source };
        let mut writer = ReportWriter::create(&folder, Renderer::new(reference.clone(), sources)).map_err(output)?;
        if let Some(earlier) = earlier {
            writer.resume_from(&earlier.writer);
        }
        if features.export {
            writer.export_features(&folder, features.window_ns).map_err(output)?;
        }
        let mut start = run_started(&config, &inputs);
        if let (Some((key, _)), Some(fields)) = (&signer, start.as_object_mut()) {
            fields.insert("signing_public_key".into(), crate::audit::public_key_hex(key).into());
        }
        if config.cases.enabled {
            writer.keep_cases(&folder).map_err(output)?;
        }
        if let (Some(key), Some(fields)) = (&encryption, start.as_object_mut()) {
            fields.insert("encryption_key_id".into(), key.id_hex().into());
        }
        // A resumed run says where it resumed from.
        if let (Some(earlier), Some(fields)) = (earlier, start.as_object_mut()) {
            fields.insert(
                "resumed_from".into(),
                serde_json::json!({
                    "checkpoint_sequence": earlier.sequence,
                    "watermark": earlier.writer.watermark,
                    "written_unix_ms": earlier.written_unix_ms,
                }),
            );
        }
        writer.keep_audit_log(&folder, &start, signer, encryption.as_ref()).map_err(output)?;
        let routes: Vec<String> = config.alerts.routes.iter().map(|r| r.name.clone()).collect();
        writer.send_notices(&folder, &routes).map_err(output)?;
        #[cfg(feature = "http")]
        writer.deliver_to_webhooks(&folder, &config.alerts.routes).map_err(|e| RunError::Config(e.to_string()))?;
        #[cfg(feature = "http")]
        if let Some(timeseries) = &config.timeseries {
            writer.write_timeseries(&folder, timeseries).map_err(|e| RunError::Config(e.to_string()))?;
        }
        #[cfg(feature = "archive")]
        let archive = open_archive(
            &config,
            &inputs,
            replay.as_ref().map(|(_, _, labels)| labels.as_slice()),
            &folder.dir().join(".archive-staging"),
        )?;
        #[cfg(feature = "archive")]
        let replays: Vec<(u32, u32, Arc<crate::archive::ArchiveReader>)> =
            replay.into_iter().map(|(index, reader, labels)| (index, labels.len() as u32, reader)).collect();
        #[cfg(feature = "archive")]
        if let Some(archive) = &archive {
            writer.archive_alerts(archive.clone());
        }
        #[cfg(not(feature = "archive"))]
        if config.archive.is_some() {
            return Err(RunError::Config("archive: this surveil is built without the `archive` feature".into()));
        }
        // Alerts to a Kafka topic; with a Kafka input, its positions are committed only as far
        // as these are delivered.
        #[cfg(feature = "kafka")]
        let kafka = {
            let mut kafka = kafka;
            if let Some(settings) = &config.kafka {
                // With `kafka.transactional_id`, every publisher sends in the source's transactions.
                let transactions = kafka.as_ref().and_then(|k| k.transactions().cloned());
                let publisher = |topic: &String| {
                    crate::kafka::AlertPublisher::new(settings, topic, transactions.as_ref())
                        .map(Arc::new)
                        .map_err(|e| RunError::Kafka(e.to_string()))
                };
                if let Some(topic) = &settings.alerts_topic {
                    let alerts = publisher(topic)?;
                    writer.publish_alerts(alerts.clone() as Arc<dyn crate::output::Publisher>, settings.timeout);
                    if let Some(source) = &mut kafka {
                        source.gate_commits_on(alerts);
                    }
                }
                let mut routes = Vec::new();
                for route in &config.alerts.routes {
                    let notices = route.kafka_topic.as_ref().map(publisher).transpose()?;
                    if let (Some(source), Some(notices)) = (&mut kafka, &notices) {
                        source.gate_commits_on(notices.clone());
                    }
                    routes.push(notices.map(|n| n as Arc<dyn crate::output::Publisher>));
                }
                if routes.iter().any(Option::is_some) {
                    writer.publish_routes(routes, settings.timeout);
                }
            }
            kafka.map(Arc::new)
        };
        tracing::info!(inputs = inputs.len(), bytes = total_bytes, "job ready");
        Ok(Job {
            #[cfg(feature = "archive")]
            archive,
            #[cfg(feature = "archive")]
            replays,
            #[cfg(feature = "kafka")]
            kafka,
            checkpoints,
            files: writer.files(),
            inputs,
            config,
            reference,
            folder: Some(folder),
            writer: Mutex::new(Some(writer)),
            cluster,
            metrics: None,
            progress: Arc::default(),
            stop: Stop::default(),
            features,
            case_actions: Arc::new(case_actions),
            started,
            input_digests: Mutex::new((None, Vec::new())),
        })
    }

    /// Counts reads into `progress` (for a progress display) instead of a counter of its own.
    pub fn with_progress(mut self, progress: Arc<ReadProgress>) -> Job {
        self.progress = progress;
        self
    }

    /// Keeps `metrics` up to date while the job runs: what is read, written and alerted, the
    /// watermark, records in flight and the time each operator takes ([`crate::metrics`]).
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Job {
        self.metrics = Some(metrics);
        self
    }

    /// Stops reading when `stop` is requested.
    pub fn with_stop(mut self, stop: Stop) -> Job {
        self.stop = stop;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The reference data.
    pub fn reference(&self) -> &Arc<ReferenceData> {
        &self.reference
    }

    /// The feature work the configuration asks for.
    pub fn features(&self) -> &FeatureJob {
        &self.features
    }

    /// The case actions the job replays (`cases.actions`).
    pub fn case_actions(&self) -> &Arc<CaseActions> {
        &self.case_actions
    }

    /// Worker `worker`'s part of the ownership changes that come while the job runs (a live
    /// Kafka run with `kafka.reference.ownership`), for [`default_detection`].
    pub fn ownership_feed(&self, worker: usize) -> Option<crate::links::LiveOwnership> {
        #[cfg(feature = "kafka")]
        if let Some(kafka) = &self.kafka {
            return kafka.ownership_feed(worker, Some(self.stop.flag()));
        }
        let _ = worker;
        None
    }

    /// Worker `worker`'s part of the instrument and account changes that come while the job
    /// runs (a live Kafka run with `kafka.reference.instruments` or `accounts`).
    pub fn reference_feed(&self, worker: usize) -> Option<crate::live_reference::LiveReference> {
        #[cfg(feature = "kafka")]
        if let Some(kafka) = &self.kafka {
            return kafka.reference_feed(worker, &self.reference, Some(self.stop.flag()));
        }
        let _ = worker;
        None
    }

    /// Worker `worker`'s part of everything that changes while the job runs.
    pub fn live_feeds(&self, worker: usize) -> LiveFeeds {
        LiveFeeds { ownership: self.ownership_feed(worker), reference: self.reference_feed(worker) }
    }

    /// This worker's share of the inputs, planned in blocks and dealt round-robin.
    pub fn partitions(&self, worker: usize, peers: usize) -> Result<Vec<LinePartition>, RunError> {
        Ok(plan_partitions(&self.inputs, &self.config, &self.reference, worker, peers, &self.progress)?)
    }

    /// Reads this worker's share of the inputs: events (on time for their timely time), late
    /// events, and side records (dead letters, names). `probe` watches the end of the dataflow
    /// and paces the reading (`ingest.max_in_flight`).
    pub fn read_files<'scope>(
        &self,
        scope: Scope<'scope, u64>,
        probe: &ProbeHandle<u64>,
    ) -> Result<SourceOutputs<'scope, Event, Report>, RunError> {
        let partitions = self.partitions(scope.index(), scope.peers())?;
        let files = partitioned_source(scope, "ReadFiles", partitions, self.source_options(probe));
        #[cfg(feature = "kafka")]
        if let (Some(kafka), Some(settings)) = (&self.kafka, &self.config.kafka) {
            let mine = kafka
                .partitions(
                    scope.index(),
                    scope.peers(),
                    &self.config,
                    &self.reference,
                    &self.progress,
                    Some(self.stop.flag()),
                )
                .map_err(|e| RunError::Kafka(e.to_string()))?;
            // A live topic's quiet partitions stop holding the watermark back; a replay to the
            // end waits for every partition, so that it gives the same alerts every time.
            let options = SourceOptions {
                idle_timeout: (!settings.stop_at_end).then_some(settings.idle_timeout),
                idle_poll: std::time::Duration::from_millis(5),
                ..self.source_options(probe)
            };
            let topic = partitioned_source(scope, "ReadKafka", mine, options);
            return Ok(SourceOutputs {
                records: files.records.concat(topic.records),
                late: files.late.concat(topic.late),
                side: files.side.concat(topic.side),
            });
        }
        #[cfg(feature = "archive")]
        if !self.replays.is_empty() {
            let mut mine = Vec::new();
            for (index, letters, reader) in &self.replays {
                let planned = reader
                    .partitions(*index, *letters, scope.index(), scope.peers(), &self.progress, &self.reference)
                    .map_err(|e| {
                        RunError::Input(InputError::Format { path: reader.describe().into(), message: e.to_string() })
                    })?;
                mine.extend(planned);
            }
            let replay = partitioned_source(scope, "ReplayArchive", mine, self.source_options(probe));
            return Ok(SourceOutputs {
                records: files.records.concat(replay.records),
                late: files.late.concat(replay.late),
                side: files.side.concat(replay.side),
            });
        }
        Ok(files)
    }

    /// The archive the run writes, if any.
    #[cfg(feature = "archive")]
    pub fn archive(&self) -> Option<&Arc<crate::archive::Archive>> {
        self.archive.as_ref()
    }

    /// The names of the inputs read: the files, and the partitions of the Kafka topic.
    fn source_names(&self) -> Vec<String> {
        #[allow(unused_mut)]
        let mut sources: Vec<String> = self.inputs.iter().map(|i| i.path.display().to_string()).collect();
        #[cfg(feature = "kafka")]
        if let Some(kafka) = &self.kafka {
            sources.extend(kafka.source_names());
        }
        sources
    }

    /// Inputs read: the files, and the partitions of the Kafka topic.
    fn input_count(&self) -> usize {
        #[cfg(feature = "kafka")]
        if let Some(kafka) = &self.kafka {
            return self.inputs.len() + kafka.partition_count();
        }
        self.inputs.len()
    }

    /// The source settings of the job.
    pub fn source_options(&self, probe: &ProbeHandle<u64>) -> SourceOptions {
        SourceOptions {
            stop: (!self.reads_to_the_end()).then(|| self.stop.flag()),
            in_flight_gauge: self.metrics.as_ref().map(|m| m.in_flight_gauge()),
            ..source_options(&self.config.ingest, probe)
        }
    }

    /// A process other than 0 of a cluster that keeps checkpoints does not stop reading when
    /// asked to: process 0 could not tell the watermark its reading stopped at from one its
    /// inputs reached, and would checkpoint past events never read. Such a process is stopped
    /// by stopping the cluster (`docs/checkpoints.md`).
    fn reads_to_the_end(&self) -> bool {
        self.config.checkpoint.is_some() && self.cluster.as_ref().is_some_and(|c| c.process != 0)
    }

    /// The writer slot of a worker: worker 0 holds the writer; the others send it their reports.
    pub fn writer_slot(&self, worker: usize) -> WriterSlot {
        let writer = if worker == 0 { self.writer.lock().ok().and_then(|mut w| w.take()) } else { None };
        WriterSlot::new(writer)
    }

    /// How the run ended, as the audit trail records it: whether every input was read to its
    /// end, the events read, and why the run stopped early.
    fn run_end(&self) -> serde_json::Value {
        let positions = self.progress.positions();
        let complete = positions.iter().all(|p| p.finished) && positions.len() == self.input_count();
        let events: u64 = self.progress.events().iter().sum();
        // Every worker asks; the first waits for the digests, and they stay for the others.
        let digests = match self.input_digests.lock() {
            Ok(mut state) => {
                if let Some(handle) = state.0.take() {
                    state.1 = handle.join().unwrap_or_else(|_| {
                        vec![serde_json::json!({"path": "", "not_hashed": "the digest thread failed"})]
                    });
                }
                state.1.clone()
            }
            Err(_) => Vec::new(),
        };
        serde_json::json!({
            "complete": complete,
            "events": events,
            "interrupted": (!complete).then(|| self.stop.reason().unwrap_or_else(|| "stopped".into())),
            "input_digests": digests,
        })
    }

    /// Commits the output folder once every worker is done: `written` is what the writer of
    /// worker 0 counted ([`WriterSlot::finish`]). Writes `summary.json` last and returns it.
    pub fn finish(self, written: WrittenCounts, workers: usize) -> Result<RunSummary, RunError> {
        let sources = self.source_names();
        let mut summary =
            RunSummary { inputs: sources.clone(), workers: workers.max(1), written, ..Default::default() };
        summary.processes = self.cluster.as_ref().map_or(1, |c| c.processes());
        let events_by_kind = self.progress.events();
        for kind in EventKind::ALL {
            summary.events_by_kind.insert(kind.as_str().into(), events_by_kind[kind.index()]);
        }
        let positions = self.progress.positions();
        // A process of a cluster other than the first reads a share of the inputs only.
        let share_only = self.cluster.as_ref().is_some_and(|c| c.process != 0);
        summary.complete =
            positions.iter().all(|p| p.finished) && (share_only || positions.len() == self.input_count());
        if !summary.complete {
            summary.interrupted = Some(Interruption {
                reason: self.stop.reason().unwrap_or_else(|| "stopped".into()),
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
        for (source, counts) in self.progress.incomplete_by_source() {
            let fields = crate::reference::Missing::FIELDS.iter().zip(counts).filter(|(_, n)| *n > 0);
            summary.incomplete_events.insert(
                sources.get(source as usize).cloned().unwrap_or_else(|| source.to_string()),
                fields.map(|(field, n)| (field.to_string(), n)).collect(),
            );
        }
        summary.bytes = self.progress.bytes();
        summary.lines = self.progress.lines();
        summary.alerts = summary.written.alerts_by_rule.values().sum();
        summary.dead_letters = summary.written.dead_letters_by_reason.values().sum();
        summary.elapsed_seconds = self.started.elapsed().as_secs_f64();
        summary.events_per_second = summary.events as f64 / summary.elapsed_seconds.max(1e-9);
        summary.peak_rss_bytes = peak_rss();
        // The dead-letter topic has everything before the summary says what it got.
        #[cfg(feature = "kafka")]
        let dead_letter_topic = match &self.kafka {
            Some(kafka) => {
                let delivered = kafka.flush_dead_letters();
                summary.kafka_dead_letters = kafka.dead_letter_counts();
                delivered
            }
            None => Ok(()),
        };
        #[cfg(feature = "archive")]
        let archive_error = {
            // A complete run's files replace an earlier run's over the same inputs entirely.
            if let Some(archive) = &self.archive
                && summary.complete
                && archive.counts().error.is_none()
                && let Err(error) = archive.remove_stale()
            {
                archive.fail(&error);
            }
            summary.archive = self.archive.as_ref().map(|a| a.counts());
            if let Some(folder) = &self.folder {
                let _ = std::fs::remove_dir_all(folder.dir().join(".archive-staging"));
            }
            summary.archive.as_ref().and_then(|a| a.error.clone())
        };
        if let Some(checkpoints) = &self.checkpoints {
            let earlier = checkpoints.earlier.as_ref();
            let written = checkpoints.clock.lock().ok().and_then(|c| c.as_ref().map(|c| c.count())).unwrap_or(0);
            // Stopped before any checkpoint: nothing to resume from, so it commits what it
            // read like a run without checkpoints.
            let resumable = !summary.complete && (written > 0 || earlier.is_some());
            summary.checkpoints = Some(CheckpointSummary {
                written,
                resumes: earlier.map_or(0, |e| e.resumed + 1),
                resumed_at_watermark: earlier.map(|e| e.writer.watermark),
                resumable,
            });
            if resumable {
                // The partial outputs and the checkpoint stay: the same command resumes.
                tracing::info!(checkpoint = %checkpoints.config.dir.display(), "run stopped early; its checkpoint resumes it");
                return Ok(summary);
            }
            // Gone before the outputs are committed: a crash in between starts the run over
            // rather than resuming into a committed folder.
            if earlier.is_some() || written > 0 {
                crate::checkpoint::Checkpoint::remove(&checkpoints.config.dir)?;
            }
        }
        let text = serde_json::to_string_pretty(&summary).map_err(|e| RunError::Dataflow(e.to_string()))? + "\n";
        // Only the process that writes has a folder to commit.
        if let Some(folder) = self.folder {
            let dir = folder.dir().to_path_buf();
            folder.commit(&self.files, text.as_bytes()).map_err(|source| RunError::Output { path: dir, source })?;
        }
        // The outputs are complete: the positions read can be committed.
        #[cfg(feature = "kafka")]
        if let Some(kafka) = &self.kafka {
            dead_letter_topic.map_err(|e| RunError::Kafka(e.to_string()))?;
            kafka.commit_final(summary.complete).map_err(|e| RunError::Kafka(e.to_string()))?;
        }
        if let Some(interruption) = &summary.interrupted {
            tracing::info!(reason = %interruption.reason, events = summary.events, "job interrupted before the end of its inputs");
        }
        if summary.dead_letters > 0 {
            tracing::info!(dead_letters = summary.dead_letters, by_reason = ?summary.written.dead_letters_by_reason, "records refused");
        }
        tracing::info!(events = summary.events, alerts = summary.alerts, seconds = summary.elapsed_seconds, "job done");
        #[cfg(feature = "archive")]
        if let Some(error) = archive_error {
            return Err(RunError::Archive(error));
        }
        Ok(summary)
    }
}

impl Job {
    /// Runs the job on the workers `timely` describes: on each worker, reads its share of the
    /// inputs, hands the events to `build` for the operators in between, and writes what
    /// `build` returns (alerts and side records), the dead letters and the late events, in
    /// watermark order; drives every worker until its sink has seen everything, then commits
    /// the output folder with the summary.
    ///
    /// ```no_run
    /// use surveil::config::Config;
    /// use surveil::model::Report;
    /// use surveil::pipeline::{Job, inputs};
    /// use surveil::rules::SelfTradesExt;
    /// use timely::dataflow::operators::vec::Map;
    ///
    /// let job = Job::new(inputs(&["day.csv".into()], None), Config::default(), "out".as_ref()).unwrap();
    /// let summary = job
    ///     .execute(timely::Config::process(2), |job, _scope, events| {
    ///         events.self_trades(&job.config().rules.self_trade).map(Report::from)
    ///     })
    ///     .unwrap();
    /// println!("{} alerts", summary.alerts);
    /// ```
    pub fn execute<F>(self, timely: timely::Config, build: F) -> Result<RunSummary, RunError>
    where
        F: for<'scope> Fn(
                &Job,
                Scope<'scope, u64>,
                Stream<'scope, u64, Vec<Event>>,
            ) -> Stream<'scope, u64, Vec<Report>>
            + Send
            + Sync
            + 'static,
    {
        let layout = crate::cluster::Layout::of(&timely);
        let process = self.cluster.as_ref().map_or(0, |c| c.process);
        let processes = self.cluster.as_ref().map_or(1, |c| c.processes());
        if (layout.process, layout.processes) != (process, processes) {
            return Err(RunError::Config(format!(
                "the job was set up as process {process} of {processes} but timely runs process {} of {}: \
                 set the job up with Job::in_cluster and the same cluster",
                layout.process, layout.processes
            )));
        }
        // Only the writer records the inputs' digests.
        if process == 0
            && let Ok(mut digests) = self.input_digests.lock()
        {
            digests.0 = digest_inputs(&self.inputs, &self.config, &self.stop);
        }
        let fingerprint = self.fingerprint(layout.threads);
        if let Some(metrics) = &self.metrics {
            metrics.watch_inputs(self.progress.clone(), self.source_names());
        }
        self.start_checkpoints()?;
        let connect_timeout = self.cluster.as_ref().map(|c| c.connect_timeout);
        if processes > 1 {
            crate::cluster::watch_connections();
            crate::cluster::reset_connections();
        }
        let job = Arc::new(self);
        let shared = job.clone();
        let (connected, on_connect) = std::sync::mpsc::channel::<()>();
        let work = move || {
            timely::execute(timely, move |worker| {
                let _ = connected.send(());
                let job = &shared;
                if let Some(metrics) = &job.metrics {
                    crate::metrics::log_operator_time(worker, metrics.clone());
                }
                // Every process must run the same job, or the outputs would mix two jobs.
                if layout.processes > 1 {
                    crate::cluster::agree(worker, layout, &fingerprint)?;
                }
                // Process 0 keeps the checkpoints of the whole cluster: it tells the others where
                // their partitions resume, and they send it the points they could resume from.
                let mut shipper = None;
                if layout.processes > 1 && job.config.checkpoint.is_some() {
                    let earlier = job.checkpoints.as_ref().and_then(|c| c.earlier.as_ref());
                    let points = (worker.index() == 0).then(|| earlier.map(|e| e.resume.clone()).unwrap_or_default());
                    let points = crate::cluster::share_resume_points(worker, points);
                    if layout.process != 0 {
                        job.progress.sample_resume_points();
                        job.progress.resume_from(&points);
                    }
                    shipper = Some(crate::cluster::SampleShipper::new(worker, layout, job.progress.clone()));
                }
                let mut tick = || {
                    if let Some(shipper) = shipper.as_mut() {
                        shipper.tick();
                    }
                };
                let slot = job.writer_slot(worker.index());
                let probe = ProbeHandle::new();
                let sink = slot.clone();
                let planned = worker.dataflow::<u64, _, _>(|scope| -> Result<(), RunError> {
                    let input = job.read_files(scope, &probe)?;
                    // The archive is part of the run: the run is done when it is written too.
                    #[cfg(feature = "archive")]
                    if let Some(archive) = &job.archive {
                        use crate::archive::ArchiveInput;
                        input.archive_input(archive, &job.reference).probe_with(&probe);
                    }
                    let reports = build(job, scope, input.records);
                    let late = input.late.map(|e| Report::Late(Box::new(e)));
                    reports.concat(input.side).concat(late).probe_with(&probe).write_reports(sink);
                    Ok(())
                });
                if let Err(error) = planned {
                    // In a cluster the other processes would wait for this worker's operators
                    // for ever: a panic is timely's fail-stop, which stops them too.
                    if layout.processes > 1 {
                        panic!("{error}");
                    }
                    return Err(error.to_string());
                }
                // Drive the worker until the sink has seen its complete input, so the writer has
                // written everything it was sent. Park when nothing is active (a live feed between
                // messages) instead of spinning: a spinning worker takes the core from the system's
                // own work, which then preempts it.
                match &job.metrics {
                    Some(metrics) => drive_with_metrics(worker, &slot, &probe, metrics, layout, &mut tick),
                    None => {
                        while !slot.flushed.get() {
                            worker.step_or_park(Some(std::time::Duration::from_millis(100)));
                            tick();
                        }
                    }
                }
                if let Some(shipper) = shipper.as_mut() {
                    shipper.close();
                }
                // The archive is written beside the sink: wait for it too (the probe's frontier
                // covers every worker's archive), so that the audit trail records all of it.
                #[cfg(feature = "archive")]
                if job.archive.is_some() {
                    while !probe.done() {
                        worker.step_or_park(Some(std::time::Duration::from_millis(100)));
                    }
                }
                // The summary and the audit trail count what every process read.
                if layout.processes > 1 {
                    let peer_stopped =
                        crate::cluster::gather_progress(worker, layout, &job.progress, job.stop.reason());
                    if let Some(reason) = peer_stopped
                        && !job.stop.is_requested()
                    {
                        job.stop.request(&reason);
                    }
                }
                slot.set_run_end(job.run_end());
                slot.finish().transpose().map_err(|e| e.to_string())
            })
            .map(|guards| guards.join())
        };
        let results = match connect_timeout {
            // Timely waits for every process to connect, retrying for ever: bound the wait.
            Some(timeout) if processes > 1 => {
                let (done, result) = std::sync::mpsc::channel();
                let thread = std::thread::Builder::new()
                    .name("surveil:cluster".into())
                    .spawn(move || {
                        // Timely's network threads panic when a connection fails, and joining
                        // them panics in turn: that is a failed run, not a crash.
                        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
                        let _ = done.send(outcome.unwrap_or_else(|_| Err("the cluster's connections failed".into())));
                    })
                    .map_err(|e| RunError::Dataflow(e.to_string()))?;
                let waited = on_connect.recv_timeout(timeout);
                // No worker started because timely failed first (an address in use, a name
                // that does not resolve): its error, not a timeout.
                if let Err(std::sync::mpsc::RecvTimeoutError::Disconnected) = waited {
                    let failed = result.recv().unwrap_or_else(|_| Err("the cluster thread failed".into()));
                    let _ = thread.join();
                    if let Err(error) = failed {
                        return Err(RunError::Cluster(format!("process {process} cannot start its cluster: {error}")));
                    }
                    return Err(RunError::Dataflow("the cluster started no worker".into()));
                }
                if waited.is_err() {
                    return Err(RunError::Cluster(format!(
                        "process {process} could not connect to the other processes of the cluster \
                         within {} (addresses {}): start every process, with the same --processes and \
                         addresses",
                        humantime::format_duration(timeout),
                        job.cluster.as_ref().map(|c| c.addresses.join(", ")).unwrap_or_default()
                    )));
                }
                let results = result.recv().unwrap_or_else(|_| Err("the cluster thread failed".into()));
                let _ = thread.join();
                results
            }
            _ => work(),
        };
        let mut written = None;
        let mut failed = None;
        match results {
            Ok(results) => {
                for result in results {
                    match result {
                        Ok(Ok(Some(counts))) => written = Some(counts),
                        Ok(Ok(None)) => {}
                        Ok(Err(e)) | Err(e) => {
                            // A worker's own error before the symptom of another's failure
                            // (timely poisons the queues of the workers that did not fail).
                            let symptom = e.contains("MergeQueue poisoned");
                            if failed.as_ref().is_none_or(|(was_symptom, _)| *was_symptom && !symptom) {
                                failed = Some((symptom, e));
                            }
                        }
                    }
                }
            }
            Err(e) => failed = Some((true, e)),
        }
        if let Some((symptom, error)) = failed {
            // A lost process makes every worker here fail: name the process whose connection
            // failed rather than the workers' own symptoms.
            if symptom
                && processes > 1
                && let Some(lost) = crate::cluster::communication_failure()
            {
                return Err(RunError::Cluster(format!(
                    "process {process} stops: {lost}; that process stopped or cannot be reached, and a \
                     cluster stops when one of its processes does"
                )));
            }
            return Err(RunError::Dataflow(error));
        }
        let job = Arc::try_unwrap(job).map_err(|_| RunError::Dataflow("a worker kept the job".into()))?;
        job.finish(written.unwrap_or_default(), layout.workers())
    }

    /// What every process of a cluster must agree on: the version, the effective
    /// configuration, the inputs (paths, formats and sizes), the files the configuration names
    /// ([`job_identity`]) and the threads per process.
    fn fingerprint(&self, threads: usize) -> String {
        let identity = job_identity(&self.config, &self.inputs);
        crate::audit::sha256_hex(
            format!(
                "{}\n{}\n{}\n{}\n{threads}\n{}",
                identity.version,
                crate::audit::config_digest(&self.config),
                identity.inputs.join("\n"),
                identity.named_files_sha256,
                self.config.checkpoint.is_some()
            )
            .as_bytes(),
        )
    }

    /// Hands the writer its checkpoint store and points the partitions at the checkpoint the
    /// run resumes from. Done here rather than when the job is built, since the read progress
    /// may be replaced until then ([`Job::with_progress`]).
    fn start_checkpoints(&self) -> Result<(), RunError> {
        let (Some(checkpoints), Some(folder)) = (&self.checkpoints, &self.folder) else { return Ok(()) };
        if let Some(earlier) = &checkpoints.earlier {
            self.progress.resume_from(&earlier.resume);
        }
        let ingest = &self.config.ingest;
        let nanos = |d: std::time::Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        // Resume positions stay far enough behind the watermark that every event the detectors
        // may still need, and every event that could arrive out of order, is read again.
        let behind = nanos(checkpoints.config.replay_horizon)
            .saturating_add(nanos(ingest.max_out_of_order))
            .saturating_add(nanos(ingest.epoch));
        let checkpointer = crate::checkpoint::Checkpointer::new(
            &checkpoints.config.dir,
            checkpoints.config.interval,
            behind,
            checkpoints.identity.clone(),
            folder.dir(),
            self.progress.clone(),
            checkpoints.earlier.as_ref(),
        )
        .stopping_with(self.stop.flag())
        // A partition is known by its points, which in a cluster come from other processes
        // while the run reads: the plan says which partitions there are.
        .covering(crate::ingest::partition_starts(&self.inputs, &self.config)?);
        // An archive's files are whole days: a resumed run writes them all again. The replay of
        // an archive records no positions in it: a resumed replay reads it again.
        #[cfg(feature = "archive")]
        let checkpointer = if self.archive.is_some() || !self.replays.is_empty() {
            checkpointer.resuming_from_the_start()
        } else {
            checkpointer
        };
        if let Ok(mut clock) = checkpoints.clock.lock() {
            *clock = Some(checkpointer.clock());
        }
        if let Some(metrics) = &self.metrics {
            metrics.watch_checkpoints(checkpointer.clock());
        }
        let mut writer = self.writer.lock().map_err(|_| RunError::Dataflow("the writer's lock failed".into()))?;
        if let Some(writer) = writer.as_mut() {
            writer.keep_checkpoints(Box::new(checkpointer));
        }
        Ok(())
    }
}

/// [`WriterSlot::drive`], keeping `metrics` current: worker 0 copies the writer's counts, and
/// the first worker of each process its watermark, a few times a second.
fn drive_with_metrics(
    worker: &mut timely::worker::Worker,
    slot: &WriterSlot,
    probe: &ProbeHandle<u64>,
    metrics: &crate::metrics::Metrics,
    layout: crate::cluster::Layout,
    tick: &mut dyn FnMut(),
) {
    let reports = worker.index().is_multiple_of(layout.threads.max(1));
    let update = |slot: &WriterSlot| {
        if let Some(writer) = slot.writer.borrow().as_ref() {
            metrics.set_written(writer.counts());
        }
        if reports {
            metrics.set_watermark(probe.with_frontier(|f| f.first().copied()));
        }
    };
    let mut updated = Instant::now();
    while !slot.flushed.get() {
        worker.step_or_park(Some(std::time::Duration::from_millis(100)));
        tick();
        if updated.elapsed() >= std::time::Duration::from_millis(250) {
            update(slot);
            updated = Instant::now();
        }
    }
    update(slot);
}

/// The built-in detection of the default job over `events`: the rules the configuration
/// enables and the feature store (when the job needs it) keyed by instrument in one operator,
/// the anomaly scoring of the feature rows, and `extra_rules`, with every alert passed through
/// the alert manager ([`crate::manager`]) and, when `cases.enabled`, the case workflow
/// ([`crate::cases`]) with the people's `actions`. Returns the triaged alerts, group summaries,
/// case versions and side records.
pub fn default_detection<'scope>(
    events: Stream<'scope, u64, Vec<Event>>,
    config: &Config,
    reference: &Arc<ReferenceData>,
    features: &FeatureJob,
    actions: &Arc<CaseActions>,
    extra_rules: &[ExtraRule],
    live: LiveFeeds,
) -> Stream<'scope, u64, Vec<Report>> {
    let cases = config.cases.enabled.then_some((&config.cases, actions));
    default_detection_with(
        events,
        default_rules(config, reference),
        &StreamRules::from_config(config),
        reference,
        features,
        &config.alerts,
        cases,
        extra_rules,
        live,
    )
}

/// What changes while a job runs beside its events: ownership (linked accounts) and
/// instruments and accounts, each fed on worker 0 (every worker passes its part).
#[derive(Default)]
pub struct LiveFeeds {
    /// Changes of ownership ([`crate::links::linked_groups_fed`]).
    pub ownership: Option<crate::links::LiveOwnership>,
    /// Changes of instruments and accounts ([`crate::live_reference`]).
    pub reference: Option<crate::live_reference::LiveReference>,
}

/// Runs the default job and writes `alerts.jsonl`, `dead_letters.jsonl`, `late_events.jsonl`,
/// `order_to_trade.jsonl`, `audit.jsonl`, the route files `notices_NAME.jsonl` and
/// `summary.json` into the output folder (see [`OutputFolder`] for how a run's files replace
/// an earlier run's).
pub fn run(options: RunOptions) -> Result<RunSummary, RunError> {
    let RunOptions { inputs, config, workers, cluster, out_dir, progress, stop, extra_rules, metrics } = options;
    let (mut job, timely) = match &cluster {
        Some(cluster) => (Job::in_cluster(inputs, config, &out_dir, cluster)?, cluster.timely(workers)),
        None => (Job::new(inputs, config, &out_dir)?, timely::Config::process(workers.max(1))),
    };
    if let Some(progress) = progress {
        job = job.with_progress(progress);
    }
    if let Some(stop) = stop {
        job = job.with_stop(stop);
    }
    if let Some(metrics) = metrics {
        job = job.with_metrics(metrics);
    }
    job.execute(timely, move |job, scope, events| {
        let live = job.live_feeds(scope.index());
        default_detection(events, job.config(), job.reference(), job.features(), job.case_actions(), &extra_rules, live)
    })
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
/// through [`crate::anomaly::train`]. The anomaly detector itself is off during the run.
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
    Ok((crate::anomaly::train(&mut rows, &anomaly, window_ns), summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_are_refused_only_where_a_resume_could_not_end_as_an_uninterrupted_run() {
        let mut config = Config::default();
        assert_eq!(checkpoints_refused(&config), None);
        // An archive of files: resumed from the start of the inputs.
        config.archive = Some(crate::config::ArchiveConfig::local(Path::new("archive")));
        assert_eq!(checkpoints_refused(&config), None);
        // An archive of a topic: the broker may no longer hold its start.
        let mut kafka = crate::config::KafkaConfig::new("127.0.0.1:9092");
        kafka.topic = Some("events".into());
        config.kafka = Some(kafka);
        assert_eq!(checkpoints_refused(&config), Some("an archive of a Kafka topic"));
        // A topic without an archive.
        config.archive = None;
        assert_eq!(checkpoints_refused(&config), None);
    }
}
