//! The `surveil` command line.

mod case;

#[cfg(all(feature = "jemalloc", unix, not(target_env = "musl")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use surveil::config::{ArchiveConfig, CheckpointConfig, Config};
use surveil::generate::{BackgroundConfig, EventMix, GenerateConfig, generate, generate_over_recording};
use surveil::ingest::{Format, InputSpec, ReadProgress};
use surveil::pipeline::{RunOptions, RunSummary, Stop, inputs, run};

/// Real-time trade surveillance: reads orders, cancels, fills, trades and quotes, raises alerts
/// with their evidence.
///
/// With no command, runs the default job on the bundled synthetic trading day (generating it
/// on first use) and prints the alert summary.
#[derive(Parser)]
#[command(name = "surveil", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum KafkaAction {
    /// Publish the events of recorded files to a topic, one message per event in the canonical
    /// JSON schema (or Avro with --avro), keyed by instrument: a replay source for
    /// `surveil run --kafka`.
    Produce {
        /// The topic; created with --partitions partitions when missing.
        #[arg(long)]
        topic: String,
        #[command(flatten)]
        target: KafkaTarget,
        /// Write Avro in the Confluent wire format with the bundled event schema, registered
        /// with --schema-registry under TOPIC-value, or named by --schema-id.
        #[arg(long)]
        avro: bool,
        /// The schema registry (Confluent REST API) the event schema is registered with.
        #[arg(long, requires = "avro")]
        schema_registry: Option<String>,
        /// The schema id every message names, without a registry (readers then need the same
        /// schema locally: `kafka.avro.schema_id`).
        #[arg(long, requires = "avro", conflicts_with = "schema_registry")]
        schema_id: Option<u32>,
        /// Input format; by default detected from each file's name.
        #[arg(long)]
        format: Option<Format>,
        /// Input files.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
    },
    /// Create a topic (a topic that exists is left as it is).
    CreateTopic {
        /// The topic.
        topic: String,
        #[command(flatten)]
        target: KafkaTarget,
    },
}

/// Where the Kafka tools connect, and the partitions of a topic they create.
#[derive(Args)]
struct KafkaTarget {
    /// Kafka brokers (host:port, comma-separated), instead of `kafka.brokers`.
    #[arg(long)]
    brokers: Option<String>,
    /// Partitions of the topic when it is created.
    #[arg(long, default_value_t = 4)]
    partitions: usize,
    /// Configuration file (`[kafka]`, and the reference data and input settings to read files
    /// with).
    #[arg(long)]
    config: Option<PathBuf>,
}

impl KafkaTarget {
    /// The configuration and its Kafka settings; creates `topic` if it is missing.
    fn connect(self, topic: &str) -> Result<(Config, surveil::config::KafkaConfig)> {
        let mut config = match &self.config {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        let settings = kafka_settings(&mut config, self.brokers)?;
        surveil::kafka::create_topic(&settings, topic, self.partitions)?;
        Ok((config, settings))
    }
}

/// The `[kafka]` settings of `config`, with `brokers` from the command line when given.
fn kafka_settings(config: &mut Config, brokers: Option<String>) -> Result<surveil::config::KafkaConfig> {
    let mut settings = match (config.kafka.take(), brokers) {
        (Some(mut settings), Some(brokers)) => {
            settings.brokers = brokers;
            settings
        }
        (Some(settings), None) => settings,
        (None, Some(brokers)) => surveil::config::KafkaConfig::new(&brokers),
        (None, None) => bail!("no Kafka brokers: give --brokers or set kafka.brokers in the configuration"),
    };
    settings.brokers = settings.brokers.trim().to_string();
    config.kafka = Some(settings.clone());
    config.validate().map_err(|e| anyhow!("{e}"))?;
    Ok(settings)
}

fn kafka_tool(action: KafkaAction) -> Result<()> {
    match action {
        KafkaAction::Produce { topic, target, avro, schema_registry, schema_id, format, inputs: paths } => {
            let (config, settings) = target.connect(&topic)?;
            let encoding = match (avro, schema_registry) {
                (false, _) => surveil::kafka::Encoding::Json,
                (true, Some(url)) => {
                    if !surveil::config::encrypted_or_loopback(&url) {
                        bail!(
                            "--schema-registry {url:?}: give an https:// address (plain http:// is accepted on the loopback interface only)"
                        );
                    }
                    let subject = format!("{topic}-value");
                    let schema_id = surveil::kafka::avro::register_event_schema(&url, &subject, settings.timeout)?;
                    println!("the event schema is id {schema_id} ({subject} at {url})");
                    surveil::kafka::Encoding::Avro { schema_id }
                }
                (true, None) => surveil::kafka::Encoding::Avro { schema_id: schema_id.unwrap_or(1) },
            };
            let counts = surveil::kafka::produce_files(&inputs(&paths, format), &config, &settings, &topic, encoding)?;
            println!(
                "{} events published to {topic} ({} acknowledged); {} records were not events",
                counts.events, counts.delivery.delivered, counts.dead_letters
            );
            Ok(())
        }
        KafkaAction::CreateTopic { topic, target } => target.connect(&topic).map(|_| ()),
    }
}

#[derive(Subcommand)]
enum AuditAction {
    /// Check every record's hash, the sequence and the links, and that the log ends where its
    /// run's summary.json says; say where it was tampered with if not.
    Verify {
        /// The audit log, or the output folder that holds it.
        log: PathBuf,
        /// The head hash the log must end with (default: from summary.json beside the log).
        #[arg(long)]
        head: Option<String>,
        /// Accept a log whose head cannot be checked (no summary.json, no --head): only its
        /// records, links, first and last record are checked.
        #[arg(long, conflicts_with = "head")]
        no_head: bool,
        /// Also check the signed checkpoints against this public key (64 hex digits, or a file
        /// holding them): every checkpoint must be its signature and the log must end with one.
        #[arg(long)]
        public_key: Option<String>,
        /// The encryption key of an encrypted log (a file, as `keygen --encryption` writes);
        /// may be given more than once while keys rotate. Default: SURVEIL_ENCRYPTION_KEY.
        #[arg(long)]
        key: Vec<PathBuf>,
        /// Also check that the run's inputs are still the bytes it read (the digests of its
        /// run_finished record), and say where one changed.
        #[arg(long)]
        inputs: bool,
    },
    /// Encrypt a run's audit log again under a new key (key rotation): the log is opened with
    /// the old key, verified, sealed with the new one and put in place of the old file.
    Reseal {
        /// The audit log, or the output folder that holds it.
        log: PathBuf,
        /// The key it is encrypted with now (none for a plain log, which is then encrypted).
        #[arg(long)]
        key: Vec<PathBuf>,
        /// The new key's file.
        #[arg(long)]
        new_key: PathBuf,
    },
    /// Make a new signing key for the audit trail: its secret seed goes to FILE (readable by
    /// its owner only), its public key to standard output. With --encryption, a key that
    /// encrypts the log at rest instead: the key to FILE, its id to standard output.
    Keygen {
        /// File for the secret key; refused if it exists.
        #[arg(long)]
        out: PathBuf,
        /// An encryption key (`[audit] encryption_key`), not a signing key.
        #[arg(long)]
        encryption: bool,
    },
    /// Print every record about an alert or case id: the alert, the summary of its group of
    /// repeats and every version of the case its group opened.
    Show {
        /// The alert or case id.
        id: String,
        /// The audit log, or the output folder that holds it.
        log: PathBuf,
        /// The encryption key of an encrypted log (default: SURVEIL_ENCRYPTION_KEY).
        #[arg(long)]
        key: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ReportKind {
    /// The FINRA Rule 3110(d) quarterly report of internal investigations (the run's cases:
    /// opened, closed with their findings, pending) with the written reports owed for the
    /// violations found, and their due dates.
    #[command(name = "finra-3110")]
    Finra3110 {
        /// The run's output folder.
        run: PathBuf,
        /// The quarter (2024Q1); may be left out when the run's cases fall in one quarter.
        #[arg(long)]
        quarter: Option<String>,
        /// The time zone of the report's dates (an IANA name).
        #[arg(long, default_value = "America/New_York")]
        timezone: String,
        /// json, csv or html; by default from --out's extension, else json.
        #[arg(long)]
        format: Option<String>,
        /// File to write; standard output by default.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// A suspicious transaction and order report (MAR Article 16; Delegated Regulation (EU)
    /// 2016/957) drafted from a case of a run: its alerts and evidence, its history, the
    /// reference data and the submitter's details (`[stor]` in the configuration). Final for a
    /// case closed as stor_filed, a draft otherwise; what it cannot fill is listed as missing.
    Stor {
        /// The case id.
        case: String,
        /// The run's output folder.
        run: PathBuf,
        /// The configuration with the reference data and `[stor]`: the run's, normally.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Why the report comes late: required when it is made more than
        /// `stor.explain_delay_after` after the last suspicious activity.
        #[arg(long)]
        delay_reason: Option<String>,
        /// When the suspicion was formed (RFC 3339 or nanoseconds): the "without delay" clock.
        /// Without it, the case's closing as stor_filed stands in, and the field is listed as
        /// missing.
        #[arg(long)]
        suspicion_formed: Option<String>,
        /// When the report is prepared (RFC 3339 or nanoseconds); default now.
        #[arg(long)]
        at: Option<String>,
        /// json, xml or html; by default from --out's extension, else json.
        #[arg(long)]
        format: Option<String>,
        /// File to write; standard output by default.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// File a final report (a STOR in JSON or XML, as `surveil report stor` wrote it) at the
    /// configured destination (`[submission]`: a regulator's HTTPS endpoint, or a drop folder),
    /// with retries, once: a report the ledger shows filed is not sent again. The receipt goes
    /// to the ledger and, as a `filed` action, to the case-actions file.
    Submit {
        /// The report file.
        report: PathBuf,
        /// The configuration with `[submission]` (and `[audit]`'s signing key, which signs the
        /// ledger).
        #[arg(long)]
        config: PathBuf,
        /// Who files it.
        #[arg(long)]
        by: String,
        /// The submissions ledger (default: `submission.ledger` of the configuration).
        #[arg(long)]
        ledger: Option<PathBuf>,
        /// The case-actions file the receipt is recorded in (default: the first of
        /// `cases.actions`, else case_actions.jsonl).
        #[arg(long)]
        actions: Option<PathBuf>,
        /// When the filing is recorded on the case (RFC 3339 or nanoseconds); default now.
        #[arg(long)]
        at: Option<String>,
        /// The case has a report filed already and this one corrects or completes it.
        #[arg(long)]
        follow_up: bool,
        /// Drop the report into the folder again although an earlier drop was interrupted
        /// before its outcome was recorded (after checking the collecting system has not taken
        /// it).
        #[arg(long)]
        resend: bool,
    },
    /// The end-of-session order-to-trade report of MiFID II RTS 9: count and volume ratios per
    /// member and instrument, with the breaches marked, from a run's order_to_trade.jsonl.
    Otr {
        /// The run's output folder.
        run: PathBuf,
        /// The session (YYYY-MM-DD); may be left out when the run has one session.
        #[arg(long)]
        session: Option<String>,
        /// Who a row is about: account, desk or owner (desk and owner from the accounts file).
        #[arg(long, default_value = "account")]
        member: String,
        /// The configuration whose limits (and accounts file) apply: the run's, normally.
        #[arg(long)]
        config: Option<PathBuf>,
        /// json, csv or html; by default from --out's extension, else json.
        #[arg(long)]
        format: Option<String>,
        /// File to write; standard output by default.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

// Parsed once per process: the size of the largest command's arguments costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the surveillance job on recorded files, or on a Kafka topic (`--kafka`).
    ///
    /// Over several processes (timely's cluster mode), start the same command in every process
    /// with its own --process index: process 0 writes the output folder, the others write
    /// nothing. `-h` is the host file, as in timely; help is `--help`.
    #[command(disable_help_flag = true)]
    Run {
        #[command(flatten)]
        job: JobArgs,
        #[command(flatten)]
        cluster: ClusterArgs,
        /// Print help.
        #[arg(long, action = clap::ArgAction::Help)]
        help: Option<bool>,
        /// Serve live metrics in the Prometheus text format at http://ADDRESS/metrics while the
        /// run lasts (e.g. 127.0.0.1:9184).
        #[arg(long, value_name = "ADDRESS")]
        metrics: Option<String>,
        /// Keep checkpoints in DIR: a run that is killed or stopped resumes from its last
        /// checkpoint when the same command is run again, and ends with the outputs an
        /// uninterrupted run writes (docs/checkpoints.md). In a cluster, give it to every
        /// process: process 0 keeps the checkpoints of all.
        #[arg(long, value_name = "DIR")]
        checkpoint: Option<PathBuf>,
        /// How often a checkpoint is written (default 10s, or checkpoint.interval).
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, requires = "checkpoint")]
        checkpoint_interval: Option<Duration>,
        /// Output folder for alerts.jsonl, dead_letters.jsonl, late_events.jsonl,
        /// order_to_trade.jsonl, cases.jsonl, audit.jsonl, notices_ROUTE.jsonl and summary.json.
        #[arg(long, default_value = "out")]
        out: PathBuf,
        /// No progress bar and no summary table.
        #[arg(long, short)]
        quiet: bool,
        /// Score behavioural anomalies starting from this model (written by `surveil train`).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Score behavioural anomalies (with online baselines when no model is given).
        #[arg(long)]
        anomaly: bool,
        /// Write every feature row to features.csv in the output folder.
        #[arg(long)]
        export_features: bool,
        /// A case-actions file (JSON Lines, as `surveil case` writes) to replay with the
        /// alerts; may be given more than once, adds to `cases.actions`.
        #[arg(long)]
        case_actions: Vec<PathBuf>,
        /// Archive the events, late events, dead letters and alerts as Parquet in this folder
        /// or at s3://BUCKET/PREFIX (the `[archive]` section's other settings apply).
        #[arg(long)]
        archive: Option<String>,
        /// Read this Kafka topic, one input per partition (the `[kafka]` section's other
        /// settings apply); without --to-end the run follows the topic until stopped.
        #[arg(long)]
        kafka: Option<String>,
        /// Kafka brokers (host:port, comma-separated), instead of `kafka.brokers`.
        #[arg(long)]
        brokers: Option<String>,
        /// Read the topic up to the end it has when the run starts, then finish.
        #[arg(long, requires = "kafka")]
        to_end: bool,
        /// Publish every alert to this Kafka topic, keyed by its id.
        #[arg(long)]
        kafka_alerts: Option<String>,
        /// The consumer group the read positions are committed for, instead of `kafka.group`.
        #[arg(long, requires = "kafka")]
        kafka_group: Option<String>,
        /// Publish the outputs and commit the positions read in Kafka transactions under this
        /// id, instead of `kafka.transactional_id` (docs/kafka.md, "Transactions").
        #[arg(long, requires = "kafka")]
        kafka_transactional_id: Option<String>,
        /// How each message is read, instead of `kafka.format`: jsonl, fix or avro.
        #[arg(long, requires = "kafka")]
        kafka_format: Option<String>,
        /// The schema registry of Avro messages, instead of `kafka.avro.registry` (implies
        /// --kafka-format avro).
        #[arg(long, requires = "kafka")]
        schema_registry: Option<String>,
        /// Input files (plain or .gz), or archives written by `--archive` to replay.
        #[arg(required_unless_present = "kafka")]
        inputs: Vec<PathBuf>,
    },
    /// Kafka tools: publish recorded files to a topic, create a topic.
    Kafka {
        #[command(subcommand)]
        action: KafkaAction,
    },
    /// Train the anomaly model (baselines and forests) on recorded files.
    Train {
        #[command(flatten)]
        job: JobArgs,
        /// Model file to write.
        #[arg(long, default_value = "model.json")]
        out: PathBuf,
        /// Train on a features.csv exported earlier instead of running over inputs.
        #[arg(long, conflicts_with = "inputs")]
        features: Option<PathBuf>,
        /// Input files (plain or .gz).
        #[arg(required_unless_present = "features")]
        inputs: Vec<PathBuf>,
    },
    /// Make a regulatory report from a run's outputs.
    Report {
        #[command(subcommand)]
        kind: ReportKind,
    },
    /// Act on a case (ack, assign, review, escalate, close: appended to a case-actions file
    /// that runs replay), or read a run's cases (show, list).
    Case {
        #[command(subcommand)]
        command: case::CaseCommand,
    },
    /// Send again what a run's webhooks could not deliver (their outboxes, webhook_ROUTE.jsonl),
    /// with the configuration's webhook settings.
    Deliver {
        /// The run's output folder.
        run: PathBuf,
        /// The configuration whose routes have the webhooks: the run's, normally.
        #[arg(long)]
        config: PathBuf,
        /// Only this route.
        #[arg(long)]
        route: Option<String>,
    },
    /// Check or read a run's audit trail (audit.jsonl).
    Audit {
        #[command(subcommand)]
        action: AuditAction,
    },
    /// Score a run's alerts against labelled breaches: precision, recall and F1 per rule, and
    /// false alerts per hour of flow.
    Eval {
        /// The labels (`labels.csv` of `surveil generate`).
        #[arg(long)]
        labels: PathBuf,
        /// The run's `alerts.jsonl`.
        #[arg(long)]
        alerts: PathBuf,
        /// Hours of flow the run read; by default measured from `events.csv` (or `events.csv.gz`)
        /// beside the labels.
        #[arg(long)]
        hours: Option<f64>,
    },
    /// Write a synthetic trading day with labelled injected breaches.
    Generate {
        /// Output folder: events.csv, instruments.csv, accounts.csv, labels.csv, surveil.toml.
        #[arg(long, default_value = "datasets/generated/day")]
        out: PathBuf,
        /// Approximate number of events.
        #[arg(long, default_value_t = 2_000_000)]
        events: u64,
        /// Random seed: the same seed gives the same file.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Number of accounts; with `--background`, the synthetic accounts among which the
        /// recorded orders are shared out (500 by default then).
        #[arg(long)]
        accounts: Option<usize>,
        /// Number of instruments.
        #[arg(long, default_value_t = 40)]
        instruments: usize,
        /// Trading date (YYYY-MM-DD).
        #[arg(long, default_value = "2024-03-01")]
        date: String,
        /// Write events.csv.gz instead of events.csv.
        #[arg(long)]
        gzip: bool,
        /// Weights of the background actions, e.g. `take=2,cancel=0.02` (names: market_maker,
        /// passive, take, cancel, replace; the others keep their defaults).
        #[arg(long)]
        mix: Option<EventMix>,
        /// A recorded LOBSTER message file to use as the background flow instead of the
        /// simulated market: its orders get synthetic accounts (`--accounts`) and the
        /// order-book scenarios (spoofing, layering, quote stuffing, momentum ignition) are
        /// injected into it.
        /// `--events`, `--instruments`, `--date` and `--mix` do not apply.
        #[arg(long, value_name = "FILE")]
        background: Option<PathBuf>,
        /// With `--background`: write the recording with accounts only, no scenario, to
        /// measure false alerts on real flow.
        #[arg(long, requires = "background")]
        no_scenarios: bool,
    },
}

/// Where this process sits in a cluster of processes: timely's own flags (`-n -p -h`, with
/// `-w` for the threads of each process).
#[derive(Args)]
struct ClusterArgs {
    /// Processes in the cluster (timely's -n); every one runs the same command.
    #[arg(long, short = 'n', default_value_t = 1)]
    processes: usize,
    /// This process's index, from 0 (timely's -p). Process 0 writes the outputs.
    #[arg(long, short = 'p', default_value_t = 0)]
    process: usize,
    /// File of the processes' addresses, one host:port per line in process order (timely's
    /// -h); without it, 127.0.0.1 from port 2101 up.
    #[arg(long, short = 'h')]
    hostfile: Option<PathBuf>,
    /// How long a process waits for the others to connect before giving up.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    cluster_timeout: Duration,
}

impl ClusterArgs {
    /// The cluster, when there is more than one process.
    fn cluster(&self) -> Result<Option<surveil::cluster::Cluster>> {
        if self.processes == 0 {
            bail!("--processes must be at least 1");
        }
        if self.processes == 1 && self.process == 0 && self.hostfile.is_none() {
            return Ok(None);
        }
        let mut cluster = match &self.hostfile {
            Some(path) => surveil::cluster::Cluster::from_hostfile(path, self.processes, self.process)?,
            None => surveil::cluster::Cluster::local(self.processes, self.process, surveil::cluster::FIRST_PORT)?,
        };
        cluster.connect_timeout = self.cluster_timeout;
        Ok(Some(cluster))
    }
}

/// What `run` and `train` both take: the configuration, the input format and the workers.
#[derive(Args)]
struct JobArgs {
    /// Configuration file (TOML); defaults apply to everything it leaves out.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Input format (csv, jsonl, lobster, imc); by default detected from each file's name.
    #[arg(long)]
    format: Option<Format>,
    /// Worker threads.
    #[arg(long, short = 'w', default_value_t = 1)]
    workers: usize,
}

impl JobArgs {
    /// The configuration (defaults without a file), after checking the worker count.
    fn config(&self) -> Result<Config> {
        if self.workers == 0 {
            bail!("--workers must be at least 1");
        }
        Ok(match &self.config {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        })
    }
}

fn main() -> ExitCode {
    // Logs go to standard error at the level RUST_LOG asks for (warnings by default).
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match main_inner() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("surveil: error: {}", message(&error));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each said once: a cause that the message already quotes (many
/// errors print their cause themselves) is not repeated.
fn message(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

fn main_inner() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Run {
            job,
            cluster,
            help: _,
            metrics,
            checkpoint,
            checkpoint_interval,
            out,
            quiet,
            model,
            anomaly,
            export_features,
            case_actions,
            archive,
            kafka,
            brokers,
            to_end,
            kafka_alerts,
            kafka_group,
            kafka_transactional_id,
            kafka_format,
            schema_registry,
            inputs: paths,
        }) => {
            let mut config = job.config()?;
            if kafka.is_some() || kafka_alerts.is_some() || brokers.is_some() {
                let mut settings = kafka_settings(&mut config, brokers)?;
                if kafka.is_some() {
                    settings.topic = kafka;
                }
                settings.stop_at_end |= to_end;
                if kafka_alerts.is_some() {
                    settings.alerts_topic = kafka_alerts;
                }
                if let Some(group) = kafka_group {
                    settings.group = group;
                }
                if kafka_transactional_id.is_some() {
                    settings.transactional_id = kafka_transactional_id;
                }
                if let Some(format) = kafka_format {
                    settings.format = match format.as_str() {
                        "jsonl" => surveil::config::KafkaFormat::Jsonl,
                        "fix" => surveil::config::KafkaFormat::Fix,
                        "avro" => surveil::config::KafkaFormat::Avro,
                        other => bail!("--kafka-format {other:?}: give jsonl, fix or avro"),
                    };
                }
                if let Some(url) = schema_registry {
                    settings.format = surveil::config::KafkaFormat::Avro;
                    settings.avro.registry = Some(url);
                }
                config.kafka = Some(settings);
                config.validate().map_err(|e| anyhow!("{e}"))?;
            }
            if let Some(url) = archive {
                let mut settings = config.archive.take().unwrap_or_else(|| ArchiveConfig::local(Path::new(&url)));
                settings.url = url;
                config.archive = Some(settings);
                config.validate().map_err(|e| anyhow!("--archive: {e}"))?;
            }
            let (format, workers) = (job.format, job.workers);
            if model.is_some() || anomaly {
                config.rules.anomaly.enabled = true;
            }
            if model.is_some() {
                config.rules.anomaly.model = model;
            }
            config.features.export |= export_features;
            config.cases.actions.extend(case_actions);
            if let Some(dir) = checkpoint {
                let mut settings = config.checkpoint.take().unwrap_or_else(|| CheckpointConfig::new(&dir));
                settings.dir = dir;
                config.checkpoint = Some(settings);
            }
            if let (Some(interval), Some(settings)) = (checkpoint_interval, config.checkpoint.as_mut()) {
                settings.interval = interval;
            }
            config.validate().map_err(|e| anyhow!("{e}"))?;
            let cluster = cluster.cluster()?;
            // Only process 0 writes: the others say what they did and leave the summary to it.
            let writes = cluster.as_ref().is_none_or(|c| c.process == 0);
            // A process other than 0 of a cluster that keeps checkpoints stops the cluster: it
            // exits at once, and process 0 keeps the checkpoint the same commands resume from.
            let stop = match cluster.as_ref().filter(|_| !writes && config.checkpoint.is_some()) {
                Some(cluster) => exit_on_signals(cluster.process)?,
                None => stop_on_signals()?,
            };
            let inputs = inputs(&paths, format);
            let progress = (!quiet && writes).then(|| progress_bar(&inputs));
            let live = metrics.as_ref().map(|_| Arc::new(surveil::metrics::Metrics::default()));
            let server = match (&metrics, &live) {
                (Some(address), Some(live)) => {
                    let server = surveil::metrics::serve(address, live.clone())?;
                    if !quiet {
                        eprintln!("metrics: http://{}/metrics", server.address());
                    }
                    Some(server)
                }
                _ => None,
            };
            let summary = run(RunOptions {
                workers,
                cluster: cluster.clone(),
                metrics: live,
                out_dir: out.clone(),
                progress: progress.as_ref().map(|p| p.read.clone()),
                stop: Some(stop),
                ..RunOptions::new(inputs, config)
            });
            drop(progress);
            drop(server);
            let summary = summary?;
            if let Some(cluster) = cluster.filter(|_| !writes) {
                if !quiet {
                    eprintln!(
                        "process {} of {}: read {} events; process 0 writes the outputs",
                        cluster.process,
                        cluster.processes(),
                        summary.events
                    );
                }
                return interrupted(&summary);
            }
            if let Some(checkpoints) = summary.checkpoints.as_ref().filter(|c| c.resumable) {
                if !quiet {
                    eprintln!(
                        "surveil: stopped after {} events; the outputs stay partial and the checkpoint ({} written) resumes the run: run the same command again",
                        summary.events, checkpoints.written
                    );
                }
                let code = if summary.interrupted.as_ref().is_some_and(|i| i.reason == "SIGTERM") { 143 } else { 130 };
                std::process::exit(code);
            }
            if !quiet {
                print_summary(&summary, &out);
            }
            interrupted(&summary)
        }
        Some(Command::Kafka { action }) => kafka_tool(action),
        Some(Command::Train { job, out, features, inputs: paths }) => {
            let config = job.config()?;
            let (format, workers) = (job.format, job.workers);
            let window_ns = config.features.window.as_nanos().max(1) as u64;
            let model = match features {
                Some(file) => {
                    let (mut rows, window) = surveil::features::export::read_with_window(&file)?;
                    // The model's baselines are per window: train on the export's own width,
                    // and say so when the configuration disagrees.
                    if let Some(exported) = window
                        && exported != window_ns
                    {
                        bail!(
                            "{} holds {} windows but features.window is {}: train with a configuration \
                             whose features.window matches the export",
                            file.display(),
                            humantime::format_duration(Duration::from_nanos(exported)),
                            humantime::format_duration(Duration::from_nanos(window_ns))
                        );
                    }
                    surveil::anomaly::train(&mut rows, &config.rules.anomaly, window_ns)
                }
                None => {
                    let mut work = out.clone().into_os_string();
                    work.push(".run");
                    let work = PathBuf::from(work);
                    let (model, _) = surveil::pipeline::train_files(inputs(&paths, format), config, workers, &work)?;
                    eprintln!("features of the training run: {}", work.join("features.csv").display());
                    model
                }
            };
            model.save(&out)?;
            eprintln!(
                "wrote model {} to {}: {} rows, {} keys, {} peer groups, {} forests, seed {}",
                model.version,
                out.display(),
                model.trained_rows,
                model.keys.len(),
                model.peers.len(),
                model.forests.len(),
                model.seed
            );
            Ok(())
        }
        Some(Command::Generate { out, background: Some(recording), accounts, seed, gzip, no_scenarios, .. }) => {
            let config = BackgroundConfig {
                recording,
                seed,
                accounts: accounts.unwrap_or(BackgroundConfig::default().accounts),
                scenarios: !no_scenarios,
                gzip,
            };
            let summary =
                generate_over_recording(&config, &out).with_context(|| format!("generating into {}", out.display()))?;
            eprintln!(
                "wrote {} events ({} recorded messages, {} not as recorded) and {} labelled breaches to {}",
                summary.events,
                summary.recorded_messages,
                summary.displaced_messages,
                summary.labels,
                summary.events_path.display()
            );
            Ok(())
        }
        Some(Command::Generate { out, events, seed, accounts, instruments, date, gzip, mix, .. }) => {
            let accounts = accounts.unwrap_or(GenerateConfig::default().accounts);
            let date = surveil::ingest::time::parse_date(&date)
                .with_context(|| format!("--date {date:?} is not YYYY-MM-DD"))?;
            let config =
                GenerateConfig { seed, events, accounts, instruments, date, gzip, mix: mix.unwrap_or_default() };
            let summary = generate(&config, &out).with_context(|| format!("generating into {}", out.display()))?;
            eprintln!(
                "wrote {} events and {} labelled breaches to {}",
                summary.events,
                summary.labels,
                summary.events_path.display()
            );
            Ok(())
        }
        Some(Command::Eval { labels, alerts, hours }) => eval(&labels, &alerts, hours),
        Some(Command::Audit { action }) => audit(action),
        Some(Command::Case { command }) => case::case(command),
        Some(Command::Deliver { run, config, route }) => deliver(&run, &config, route.as_deref()),
        Some(Command::Report { kind }) => report(kind),
        None => run_default(),
    }
}

/// The bundled dataset's folder: `datasets/generated/default` under the project root.
fn default_dataset() -> PathBuf {
    let root = std::env::var_os("SURVEIL_HOME").map(PathBuf::from).unwrap_or_else(|| {
        let here = PathBuf::from("datasets");
        // The project root, one above this crate.
        if here.is_dir() { PathBuf::from(".") } else { Path::new(env!("CARGO_MANIFEST_DIR")).join("..") }
    });
    root.join("datasets").join("generated").join("default")
}

fn run_default() -> Result<()> {
    let dir = default_dataset();
    let events = dir.join("events.csv");
    if !events.exists() {
        eprintln!("generating the bundled trading day into {} (once)...", dir.display());
        generate(&GenerateConfig::default(), &dir).with_context(|| format!("generating into {}", dir.display()))?;
    }
    let config = Config::load(&dir.join("surveil.toml"))?;
    let out = PathBuf::from("out").join("default");
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(2));
    eprintln!(
        "surveil run --config {} --workers {workers} --out {} {}",
        dir.join("surveil.toml").display(),
        out.display(),
        events.display()
    );
    let stop = stop_on_signals()?;
    let inputs = inputs(&[events], None);
    let progress = progress_bar(&inputs);
    let summary = run(RunOptions {
        workers,
        out_dir: out.clone(),
        progress: Some(progress.read.clone()),
        stop: Some(stop),
        ..RunOptions::new(inputs, config)
    });
    drop(progress);
    let summary = summary?;
    print_summary(&summary, &out);
    if !summary.complete {
        return interrupted(&summary);
    }
    // The bundled day knows its injected breaches: say how many the detectors found.
    let labels = dir.join("labels.csv");
    if labels.exists() {
        let score = surveil::generate::labels::score(&labels, &out.join(surveil::output::ALERTS))?;
        eprintln!(
            "  injected breaches found {}/{}, {} missed, {} alerts not among them",
            score.found,
            score.labels,
            score.missed.len(),
            score.unexpected.len()
        );
    }
    Ok(())
}

/// A progress bar on standard error, when it is a terminal, fed from the run's read counters;
/// it is cleared when dropped.
struct Progress {
    read: Arc<ReadProgress>,
    done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn progress_bar(inputs: &[InputSpec]) -> Progress {
    let read = Arc::new(ReadProgress::default());
    let done = Arc::new(AtomicBool::new(false));
    let thread = std::io::stderr().is_terminal().then(|| {
        let total: u64 = inputs.iter().filter_map(|i| std::fs::metadata(&i.path).ok()).map(|m| m.len()).sum();
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let (read, done) = (read.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                bar.set_position(read.bytes());
                std::thread::sleep(Duration::from_millis(100));
            }
            bar.finish_and_clear();
        })
    });
    Progress { read, done, thread }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn print_summary(summary: &RunSummary, out: &Path) {
    eprintln!("{}", summary.table());
    if let Some(checkpoints) = summary.checkpoints.as_ref().filter(|c| c.resumes > 0) {
        eprintln!(
            "  resumed from a checkpoint ({} time(s)); this run continued from event time {}",
            checkpoints.resumes,
            checkpoints.resumed_at_watermark.map(surveil::ingest::time::format_time).unwrap_or_default()
        );
    }
    eprintln!("  output: {}", out.display());
}

/// The first SIGINT or SIGTERM asks the run to stop reading and finish its output; the
/// second exits at once (leaving only `.partial` files beside any earlier run's output).
fn stop_on_signals() -> Result<Stop> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let stop = Stop::default();
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]).context("installing signal handlers")?;
    let requested = stop.clone();
    std::thread::spawn(move || {
        for signal in signals.forever() {
            let name = if signal == SIGINT { "SIGINT" } else { "SIGTERM" };
            if requested.is_requested() {
                eprintln!("surveil: {name} again: exiting at once; the output folder keeps only .partial files");
                std::process::exit(128 + signal);
            }
            eprintln!("surveil: {name}: stopping; finishing what was read (again to exit at once)");
            requested.request(name);
        }
    });
    Ok(stop)
}

/// For a process other than 0 of a cluster that keeps checkpoints: SIGINT or SIGTERM exits at
/// once, which stops the cluster (timely is fail-stop); process 0 keeps its last checkpoint.
fn exit_on_signals(process: usize) -> Result<Stop> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]).context("installing signal handlers")?;
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            let name = if signal == SIGINT { "SIGINT" } else { "SIGTERM" };
            eprintln!(
                "surveil: {name}: process {process} exits at once, which stops the cluster; process 0 keeps its \
                 checkpoint: run the same commands again to resume"
            );
            std::process::exit(128 + signal);
        }
    });
    Ok(Stop::default())
}

/// An interrupted run is an error for the caller (exit code 130 for SIGINT, 143 for SIGTERM),
/// with its output whole up to where it stopped.
fn interrupted(summary: &RunSummary) -> Result<()> {
    match &summary.interrupted {
        None => Ok(()),
        Some(stop) => {
            eprintln!("surveil: interrupted ({}): summary.json says up to where each input was read", stop.reason);
            let code = if stop.reason == "SIGTERM" { 143 } else { 130 };
            std::process::exit(code);
        }
    }
}

/// Writes `text` to standard output; a reader that stops early (`| head`) is not an error.
fn write_stdout(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write to standard output"),
    }
}

/// The format asked for: `--format`, else `--out`'s extension when it is one of `known`.
fn report_format(format: Option<String>, out: &Option<PathBuf>, known: &[&str]) -> String {
    let extension = out
        .as_ref()
        .and_then(|p| p.extension())
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .filter(|e| known.contains(&e.as_str()));
    format.or(extension).unwrap_or_else(|| "json".into())
}

/// Writes a report to `out`, or to standard output.
fn write_report(out: &Option<PathBuf>, text: &str) -> Result<()> {
    match out {
        Some(path) => std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display())),
        None => write_stdout(text),
    }
}

fn finra_3110(
    run: &Path,
    quarter: Option<&str>,
    zone: chrono_tz::Tz,
    format: Option<String>,
    out: Option<PathBuf>,
) -> Result<()> {
    use surveil::reports::finra::{Quarter, finra_3110_report, quarters};
    let quarter = match quarter {
        Some(text) => Quarter::parse(text).with_context(|| format!("--quarter {text:?}: a quarter such as 2024Q1"))?,
        None => match quarters(run, zone)?.as_slice() {
            [one] => *one,
            [] => bail!("the run in {} has no cases", run.display()),
            many => bail!(
                "the run in {} has cases in {}: choose one with --quarter",
                run.display(),
                many.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            ),
        },
    };
    let report = finra_3110_report(run, quarter, zone)?;
    let text = match report_format(format, &out, &["json", "csv", "html", "htm"]).as_str() {
        "json" => serde_json::to_string_pretty(&report)? + "\n",
        "csv" => report.to_csv(),
        "html" | "htm" => report.to_html(),
        other => bail!("unknown report format {other}: use json, csv or html"),
    };
    write_report(&out, &text)?;
    eprintln!(
        "{}: {} opened, {} closed ({} with a violation found), {} pending; due {}",
        report.quarter, report.opened, report.closed, report.violations_found, report.pending, report.due
    );
    for v in &report.violation_reports {
        eprintln!("written report of the violation in case {} due {}", v.case, v.due);
    }
    Ok(())
}

/// `surveil report stor`'s arguments.
struct StorArgs {
    case: String,
    run: PathBuf,
    config: Option<PathBuf>,
    delay_reason: Option<String>,
    suspicion_formed: Option<String>,
    at: Option<String>,
    format: Option<String>,
    out: Option<PathBuf>,
}

/// A time given on the command line (RFC 3339 or nanoseconds), or now.
fn time_arg(flag: &str, text: Option<&str>) -> Result<u64> {
    match text {
        Some(text) => surveil::ingest::time::parse_event_time(text.as_bytes())
            .with_context(|| format!("{flag} {text:?}: neither RFC 3339 nor nanoseconds since 1970")),
        None => {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).context("the clock")?;
            u64::try_from(now.as_nanos()).context("the clock is past 2554")
        }
    }
}

fn stor(args: StorArgs) -> Result<()> {
    let StorArgs { case, run, config, delay_reason, suspicion_formed, at, format, out } = args;
    let config = match &config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let prepared_at = time_arg("--at", at.as_deref())?;
    let formed = match &suspicion_formed {
        Some(text) => Some(time_arg("--suspicion-formed", Some(text))?),
        None => None,
    };
    let report =
        surveil::reports::stor::stor_report_for(&run, &case, &config, prepared_at, formed, delay_reason.as_deref())?;
    let text = match report_format(format, &out, &["json", "xml", "html", "htm"]).as_str() {
        "json" => serde_json::to_string_pretty(&report)? + "\n",
        "xml" => report.to_xml(),
        "html" | "htm" => report.to_html(),
        other => bail!("unknown report format {other}: use json, xml or html"),
    };
    write_report(&out, &text)?;
    for missing in &report.missing {
        eprintln!("to complete: {missing}");
    }
    eprintln!(
        "case {}: {} STOR, {} order(s) and transaction(s), {} alert(s), {} field(s) to complete",
        report.case,
        report.status,
        report.orders_and_transactions.len(),
        report.suspicion.alerts.len(),
        report.missing.len()
    );
    Ok(())
}

/// `surveil eval`: one line per rule, then the totals.
fn eval(labels: &Path, alerts: &Path, hours: Option<f64>) -> Result<()> {
    use surveil::generate::labels::{evaluate, flow_hours};
    let scores = evaluate(labels, alerts)?;
    let hours = match hours {
        Some(h) if h > 0.0 && h.is_finite() => h,
        Some(h) => bail!("--hours {h}: give a positive number of hours"),
        None => {
            let plain = labels.with_file_name("events.csv");
            let events = if plain.exists() { plain } else { labels.with_file_name("events.csv.gz") };
            flow_hours(&events)
                .with_context(|| format!("measuring the hours of flow from {} (or give --hours)", events.display()))?
        }
    };
    println!(
        "{:<24} {:>7} {:>7} {:>7} {:>9} {:>7} {:>7} {:>13}",
        "rule", "labels", "alerts", "found", "precision", "recall", "f1", "false alerts/h"
    );
    for s in &scores {
        println!(
            "{:<24} {:>7} {:>7} {:>7} {:>9.3} {:>7.3} {:>7.3} {:>13.2}",
            s.rule,
            s.labels,
            s.alerts,
            s.found,
            s.precision(),
            s.recall(),
            s.f1(),
            s.false_alerts as f64 / hours
        );
    }
    let (labelled, found, false_alerts) =
        scores.iter().fold((0, 0, 0), |(l, f, x), s| (l + s.labels, f + s.found, x + s.false_alerts));
    println!("{hours:.2} hours of flow; {found}/{labelled} labels found; {false_alerts} false alerts");
    Ok(())
}

fn report(kind: ReportKind) -> Result<()> {
    use surveil::reports::otr::{Member, otr_report_for, sessions};
    let (run, session, member, config, format, out) = match kind {
        ReportKind::Stor { case, run, config, delay_reason, suspicion_formed, at, format, out } => {
            return stor(StorArgs { case, run, config, delay_reason, suspicion_formed, at, format, out });
        }
        ReportKind::Submit { report, config, by, ledger, actions, at, follow_up, resend } => {
            let flags = SubmitFlags { follow_up, resend };
            return submit(&report, &config, &by, ledger, actions, at.as_deref(), flags);
        }
        ReportKind::Otr { run, session, member, config, format, out } => (run, session, member, config, format, out),
        ReportKind::Finra3110 { run, quarter, timezone, format, out } => {
            let zone: chrono_tz::Tz =
                timezone.parse().map_err(|_| anyhow::anyhow!("--timezone {timezone:?} is not an IANA time zone"))?;
            return finra_3110(&run, quarter.as_deref(), zone, format, out);
        }
    };
    let member = Member::parse(&member).with_context(|| format!("--member {member}: use account, desk or owner"))?;
    let config = match &config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let session = match session {
        Some(session) => session,
        None => match sessions(&run)?.as_slice() {
            [one] => one.clone(),
            [] => bail!("the run in {} has no order-to-trade values", run.display()),
            many => bail!("the run in {} has sessions {}: choose one with --session", run.display(), many.join(", ")),
        },
    };
    let report = otr_report_for(&run, &session, member, &config)?;
    let text = match report_format(format, &out, &["json", "csv", "html", "htm"]).as_str() {
        "json" => serde_json::to_string_pretty(&report)? + "\n",
        "csv" => report.to_csv(),
        "html" | "htm" => report.to_html(),
        other => bail!("unknown report format {other}: use json, csv or html"),
    };
    write_report(&out, &text)?;
    if report.limits_match_run() == Some(false) {
        eprintln!(
            "warning: the run used other order-to-trade limits or sessions than this configuration's \
             (digest {} in the run, {} here): give the run's configuration with --config",
            report.source.run_limits_sha256.as_deref().unwrap_or("?"),
            report.source.report_limits_sha256
        );
    }
    if report.limits_match_run().is_none() {
        eprintln!(
            "warning: the run's limits could not be read from its audit log (missing, or encrypted without its key \
             here: give [audit] encryption_key or SURVEIL_ENCRYPTION_KEY): the limits applied are this \
             configuration's, unchecked against the run's"
        );
    }
    if !report.source.run.complete {
        eprintln!("warning: the run did not read all its input: the report is partial");
    }
    eprintln!("session {}: {} breach(es) in {} rows", report.session, report.breaches, report.rows.len());
    Ok(())
}

/// `surveil report submit`'s switches.
struct SubmitFlags {
    follow_up: bool,
    resend: bool,
}

/// `surveil report submit`.
fn submit(
    report: &Path,
    config_path: &Path,
    by: &str,
    ledger: Option<PathBuf>,
    actions: Option<PathBuf>,
    at: Option<&str>,
    flags: SubmitFlags,
) -> Result<()> {
    use surveil::model::{CaseAction, CaseActionKind};
    use surveil::submission::{Ledger, ReportDocument, Submitted, Submitter};
    let config = Config::load(config_path)?;
    let Some(submission) = &config.submission else {
        bail!("the configuration has no [submission] section: say where reports are filed (url or drop_dir)");
    };
    if by.trim().is_empty() {
        bail!("--by is empty: say who files the report");
    }
    let bytes = std::fs::read(report).with_context(|| format!("cannot read the report {}", report.display()))?;
    let document = ReportDocument::read(bytes).with_context(|| report.display().to_string())?;
    let time = time_arg("--at", at)?;
    let ledger_path = ledger.unwrap_or_else(|| submission.ledger.clone());
    let actions = actions
        .or_else(|| config.cases.actions.first().cloned())
        .unwrap_or_else(|| PathBuf::from("case_actions.jsonl"));
    let submitter = Submitter::new(submission)?;
    let mut ledger = Ledger::open(&ledger_path, surveil::pipeline::audit_signing_key(&config)?)?;
    if let Some((first, last)) = ledger.recovered() {
        eprintln!(
            "warning: records {first} to {last} of the ledger {} were not signed (a submission was interrupted, or \
             the ledger had no signing key): recorded as recovered and signed now",
            ledger_path.display()
        );
    }
    // Read under the ledger's lock, from every case-actions file the runs replay: a filing
    // recorded on the case but not in the ledger means the ledger lost its end.
    let mut files = config.cases.actions.clone();
    if !files.contains(&actions) {
        files.push(actions.clone());
    }
    let mut recorded: Vec<CaseAction> = Vec::new();
    for file in files.iter().filter(|f| f.exists()) {
        let (read, _) = surveil::cases::read_actions(file, 0)
            .with_context(|| format!("cannot read the case-actions file {}", file.display()))?;
        recorded.extend(read);
    }
    let recorded_receipt = |digest: &str| {
        recorded.iter().find_map(|action| match &action.kind {
            CaseActionKind::Filed { receipt, report } if report == digest => Some(receipt.clone()),
            _ => None,
        })
    };
    if ledger.filed(document.sha256()).is_none()
        && let Some(receipt) = recorded_receipt(document.sha256())
    {
        bail!(
            "the case actions record this report as filed (receipt {receipt}) but the ledger {} does not: the \
             ledger lost records from its end; it is not filed again",
            ledger_path.display()
        );
    }
    let filing = match submitter.submit(&document, &mut ledger, by, flags.follow_up, flags.resend)? {
        Submitted::Filed(filing) => {
            eprintln!(
                "case {}: report {} filed at {} in {} attempt(s): receipt {}",
                filing.case, filing.report_sha256, filing.destination, filing.attempts, filing.receipt
            );
            filing
        }
        Submitted::AlreadyFiled(filing) => {
            eprintln!(
                "case {}: this report was filed at {} on {} (receipt {}): not sent again",
                filing.case, filing.destination, filing.at, filing.receipt
            );
            filing
        }
    };
    // The receipt on the case (again, if an earlier submission stopped before recording it).
    if recorded_receipt(document.sha256()).is_none() {
        let case = surveil::model::AlertId::parse(&filing.case).context("the report's case id")?;
        let action = CaseAction {
            time,
            case,
            kind: CaseActionKind::Filed { receipt: filing.receipt.clone(), report: filing.report_sha256.clone() },
            by: filing.by.clone(),
            reason: format!("report filed at {}", filing.destination),
            source: 0,
            line: 0,
            offset: 0,
        };
        surveil::cases::append_action(&actions, &action)
            .with_context(|| format!("cannot record the receipt in {}", actions.display()))?;
        eprintln!(
            "recorded the receipt on case {} in {} (replayed by `surveil run --case-actions {}`)",
            filing.case,
            actions.display(),
            actions.display()
        );
    }
    drop(ledger);
    write_stdout(&format!("{}\n", filing.receipt))
}

/// `surveil deliver`: the undelivered events of each webhook route's outbox, sent again.
fn deliver(run: &Path, config: &Path, only: Option<&str>) -> Result<()> {
    let config = Config::load(config)?;
    let mut undelivered_total = 0;
    let mut routes = 0;
    for route in &config.alerts.routes {
        let Some(webhook) = &route.webhook else { continue };
        if only.is_some_and(|name| name != route.name) {
            continue;
        }
        let outbox = run.join(surveil::output::webhook_file(&route.name));
        if !outbox.exists() {
            eprintln!("route {}: no outbox {} in the run", route.name, outbox.display());
            continue;
        }
        routes += 1;
        let (delivered, undelivered) = surveil::webhook::redeliver(&outbox, webhook)?;
        eprintln!("route {}: {delivered} delivered now, {undelivered} still undelivered", route.name);
        undelivered_total += undelivered;
    }
    if routes == 0 {
        bail!("no webhook route of the configuration has an outbox in {}", run.display());
    }
    if undelivered_total > 0 {
        bail!("{undelivered_total} event(s) still undelivered: they stay in the outbox for the next try");
    }
    Ok(())
}

/// The text of the audit log at `path` for `verify`: a plain file is refused when keys were
/// given (the log is expected sealed), and a sealed log cut short has its readable records
/// checked, to say how much of it is intact.
fn read_checked(path: &Path, keys: &[PathBuf]) -> Result<String> {
    use surveil::audit::ReadLogError;
    use surveil::encryption::SealedError;
    let opened = encryption_keys(keys)?;
    match surveil::audit::read_log(path, &opened) {
        Ok(text) => {
            let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            if !keys.is_empty() && !surveil::encryption::is_sealed(&bytes) {
                bail!("{} is plain text, but --key says it is sealed: it is not the log the run wrote", path.display());
            }
            Ok(text)
        }
        Err(ReadLogError::Sealed { source: SealedError::Unfinished { chunks, plaintext, .. }, .. }) => {
            let text = String::from_utf8_lossy(&plaintext);
            // The records up to the last whole line.
            let whole = text.rfind('\n').map_or("", |end| &text[..=end]);
            let intact = match surveil::audit::verify(whole, None) {
                Ok(verified) => format!("its first {} records verify", verified.records),
                Err(e) => format!("its readable records do not verify: {e}"),
            };
            bail!(
                "{} ends after {chunks} sealed chunk(s) without its last one: the run was killed or the file was cut; \
                 {intact}",
                path.display()
            )
        }
        Err(e) => Err(e.into()),
    }
}

/// The keys of `--key` files, else those of the environment.
fn encryption_keys(files: &[PathBuf]) -> Result<Vec<surveil::encryption::EncryptionKey>> {
    if files.is_empty() {
        return surveil::encryption::keys_from_environment().map_err(|e| anyhow::anyhow!(e));
    }
    files
        .iter()
        .map(|path| surveil::encryption::EncryptionKey::from_file(path).map_err(|e| anyhow::anyhow!("--key {e}")))
        .collect()
}

/// `surveil audit reseal`: the log opened with its key and verified against its run's head,
/// sealed with the new key beside it, read back and verified again, then renamed over it (with
/// the old file's permissions) and the folder synced.
fn reseal(log: &Path, keys: &[PathBuf], new_key: &Path) -> Result<()> {
    let text = surveil::audit::read_log(log, &encryption_keys(keys)?)?;
    let summary = log.with_file_name(surveil::output::SUMMARY);
    let head = std::fs::read_to_string(&summary)
        .ok()
        .and_then(|json| serde_json::from_str::<serde_json::Value>(&json).ok())
        .and_then(|s| s["audit"]["head"].as_str().map(String::from))
        .with_context(|| {
            format!("no audit head in {}: the log cannot be checked before it is sealed again", summary.display())
        })?;
    let verified = surveil::audit::verify_run(&text, Some(&head))
        .with_context(|| format!("{} does not verify: it is not sealed again", log.display()))?;
    let key = encryption_keys(&[new_key.to_path_buf()])?.remove(0);
    let partial = log.with_extension("jsonl.resealing");
    let write = || -> Result<()> {
        let mut writer = surveil::encryption::SealedWriter::new(std::fs::File::create(&partial)?, &key)?;
        std::io::Write::write_all(&mut writer, text.as_bytes())?;
        writer.finish()?.sync_all()?;
        // Read back with the new key before the old file goes.
        let again = surveil::audit::read_log(&partial, std::slice::from_ref(&key))?;
        surveil::audit::verify_run(&again, Some(&head)).context("the resealed log does not verify")?;
        std::fs::set_permissions(&partial, std::fs::metadata(log)?.permissions())?;
        std::fs::rename(&partial, log)?;
        if let Some(folder) = log.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::File::open(folder)?.sync_all()?;
        }
        Ok(())
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&partial);
        return Err(e.context(format!("{} is unchanged", log.display())));
    }
    // The summary names the key the log is sealed with now.
    let update = || -> Result<()> {
        let mut parsed: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&summary)?)?;
        parsed["audit"]["encryption_key_id"] = serde_json::Value::from(key.id_hex());
        let partial = summary.with_extension("json.resealing");
        std::fs::write(&partial, serde_json::to_string_pretty(&parsed)? + "\n")?;
        std::fs::File::open(&partial)?.sync_all()?;
        std::fs::rename(&partial, &summary)?;
        Ok(())
    };
    update().with_context(|| {
        format!("the log is sealed with the new key, but {} still names the old one", summary.display())
    })?;
    eprintln!(
        "{}: {} records sealed with key {} (head {})",
        log.display(),
        verified.records,
        key.id_hex(),
        verified.head
    );
    Ok(())
}

/// `surveil audit verify --inputs`: each input against the digest its run recorded.
fn verify_inputs(text: &str) -> Result<()> {
    use surveil::audit::InputCheck;
    let checks = surveil::audit::check_inputs(text);
    if checks.is_empty() {
        bail!("the log records no input digests (a run of an older surveil, or one without inputs)");
    }
    let mut out = String::new();
    let mut differ = 0;
    for check in &checks {
        let line = match check {
            InputCheck::Unchanged { path } => format!("  {path}: unchanged since the run"),
            InputCheck::Changed { path, from, recorded_bytes, bytes } => {
                differ += 1;
                format!(
                    "  {path}: CHANGED since the run, from byte {from} on ({recorded_bytes} bytes then, {bytes} now)"
                )
            }
            InputCheck::Unreadable { path, error } => {
                differ += 1;
                format!("  {path}: cannot be read now ({error})")
            }
            InputCheck::NotRecorded { path, why } => format!("  {path}: no digest recorded ({why})"),
        };
        out.push_str(&line);
        out.push('\n');
    }
    write_stdout(&out)?;
    if differ > 0 {
        bail!("{differ} input(s) are not the bytes the run read");
    }
    Ok(())
}

/// `--public-key`: 64 hex digits, or a file holding them.
fn public_key_arg(given: Option<&str>) -> Result<Option<surveil::audit::VerifyingKey>> {
    let Some(given) = given else { return Ok(None) };
    let text = if Path::new(given).is_file() {
        std::fs::read_to_string(given).with_context(|| format!("cannot read {given}"))?
    } else {
        given.to_string()
    };
    let key = surveil::audit::public_key_from_hex(&text)
        .with_context(|| format!("--public-key {given}: not an Ed25519 public key (64 hex digits)"))?;
    Ok(Some(key))
}

/// `surveil audit verify` of a submissions ledger: its end is checked against `--head` only
/// (a ledger grows over time; record its head where it cannot be rewritten).
fn verify_ledger(log: &Path, text: &str, head: Option<&str>, public_key: Option<&str>) -> Result<()> {
    let key = public_key_arg(public_key)?;
    let verified = surveil::audit::verify_ledger(text, head, key.as_ref())
        .with_context(|| format!("the submissions ledger {} does not verify", log.display()))?;
    let filed = text.lines().filter(|l| l.contains("\"kind\":\"filed\"")).count();
    let end = if head.is_some() { "as --head says" } else { "(give --head to check the end)" };
    let signed = if key.is_some() { ", every record signed by the given key" } else { "" };
    write_stdout(&format!(
        "{}: submissions ledger, {} records ({filed} filing(s)), intact, ending at {} {end}{signed}\n",
        log.display(),
        verified.records,
        verified.head
    ))
}

/// `surveil audit verify|show`.
fn audit(action: AuditAction) -> Result<()> {
    let resolve = |path: PathBuf| if path.is_dir() { path.join(surveil::audit::AUDIT) } else { path };
    let read = |path: &std::path::Path, keys: &[PathBuf]| -> Result<String> {
        Ok(surveil::audit::read_log(path, &encryption_keys(keys)?)?)
    };
    match action {
        AuditAction::Keygen { out, encryption } => {
            let (secret, public) = if encryption {
                let key = surveil::encryption::EncryptionKey::generate_hex();
                let id = surveil::encryption::EncryptionKey::from_hex(&key).map(|k| k.id_hex()).unwrap_or_default();
                (key, format!("encryption key {id}"))
            } else {
                surveil::audit::new_signing_key()
            };
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file =
                options.open(&out).with_context(|| format!("cannot create the key file {}", out.display()))?;
            std::io::Write::write_all(&mut file, format!("{secret}\n").as_bytes())
                .with_context(|| format!("cannot write {}", out.display()))?;
            write_stdout(&format!("{public}\n"))
        }
        AuditAction::Verify { log, head, no_head, public_key, key, inputs: check_inputs } => {
            let log = resolve(log);
            let text = read_checked(&log, &key)?;
            // A run's log is never taken for a ledger, whatever its first record says.
            if surveil::audit::is_ledger(&text)
                && log.file_name().is_some_and(|name| name != std::ffi::OsStr::new(surveil::audit::AUDIT))
            {
                return verify_ledger(&log, &text, head.as_deref(), public_key.as_deref());
            }
            let summary = log.with_file_name(surveil::output::SUMMARY);
            let (expected, from) = match head {
                Some(head) => (Some(head), "--head".to_string()),
                None if no_head => (None, String::new()),
                None => {
                    let json = std::fs::read_to_string(&summary).with_context(|| {
                        format!(
                            "no {} to check the log's end against: give --head HASH, or --no-head to check \
                             everything but the end",
                            summary.display()
                        )
                    })?;
                    let parsed: serde_json::Value = serde_json::from_str(&json)
                        .with_context(|| format!("{} is not a run summary", summary.display()))?;
                    let Some(head) = parsed["audit"]["head"].as_str() else {
                        bail!("{} records no audit head: the log cannot be checked against it", summary.display());
                    };
                    // A log the run sealed must still be sealed: a plain one was put in its place.
                    if let Some(id) = parsed["audit"]["encryption_key_id"].as_str() {
                        let bytes = std::fs::read(&log).with_context(|| format!("cannot read {}", log.display()))?;
                        if !surveil::encryption::is_sealed(&bytes) {
                            bail!(
                                "{} says the run sealed its audit log with key {id}, but {} is plain text: it was \
                                 replaced",
                                summary.display(),
                                log.display()
                            );
                        }
                    }
                    (Some(head.to_string()), summary.display().to_string())
                }
            };
            let key = public_key_arg(public_key.as_deref())?;
            let verified = match &key {
                Some(key) => surveil::audit::verify_signed(&text, expected.as_deref(), key),
                None => surveil::audit::verify_run(&text, expected.as_deref()),
            }
            .with_context(|| format!("the audit log {} does not verify", log.display()))?;
            let signed = if key.is_some() { ", every record signed by the given key" } else { "" };
            let end = match expected {
                Some(_) => format!("as {from} records"),
                None => "(--no-head: the end was not checked against a head)".to_string(),
            };
            // Which run the log is of: a whole log of another run would verify too.
            let started: serde_json::Value =
                text.lines().next().and_then(|l| serde_json::from_str(l).ok()).unwrap_or_default();
            let inputs: Vec<String> = started["data"]["inputs"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|i| format!("  input {} ({} bytes)", i["path"].as_str().unwrap_or("?"), i["bytes"]))
                .collect();
            write_stdout(&format!(
                "{}: {} records, intact, ending at {} {end}{signed}\n  run of surveil {}\n{}\n",
                log.display(),
                verified.records,
                verified.head,
                started["data"]["surveil"].as_str().unwrap_or("?"),
                inputs.join("\n")
            ))?;
            if check_inputs { verify_inputs(&text) } else { Ok(()) }
        }
        AuditAction::Reseal { log, key, new_key } => reseal(&resolve(log), &key, &new_key),
        AuditAction::Show { id, log, key } => {
            let log = resolve(log);
            let text = read(&log, &key)?;
            let records = surveil::audit::records_about(&text, &id);
            if records.is_empty() {
                bail!("no record about {id} in {}", log.display());
            }
            let text: String = records.iter().map(|r| format!("{r}\n")).collect();
            write_stdout(&text)
        }
    }
}
