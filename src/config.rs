//! Run configuration, read from TOML. Every field has a documented default, so an empty file
//! (or no file) is a valid configuration.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The TOML is invalid or has unknown keys.
    #[error("invalid configuration {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Reading and validating input.
    pub ingest: IngestConfig,
    /// Reference data files.
    pub reference: ReferenceConfig,
    /// Trading sessions.
    pub sessions: SessionConfig,
    /// Detector parameters.
    pub rules: RulesConfig,
    /// The feature store.
    pub features: FeaturesConfig,
    /// The alert manager: tiers, grouping of repeats, routes.
    pub alerts: AlertsConfig,
    /// Cases: which alerts open one, acknowledgement deadlines, the case-actions files.
    pub cases: CasesConfig,
    /// The audit trail.
    pub audit: AuditConfig,
    /// Who files suspicious transaction and order reports, for `surveil report stor`.
    pub stor: StorConfig,
    /// A time-series database that receives the alerts and case changes as points.
    pub timeseries: Option<TimeSeriesConfig>,
    /// Where finished reports are filed: a regulator's HTTPS endpoint or a file drop, for
    /// `surveil report submit`.
    pub submission: Option<SubmissionConfig>,
    /// The Parquet archive of events, late events, dead letters and alerts (built with the
    /// `archive` feature).
    pub archive: Option<ArchiveConfig>,
    /// Kafka: the topic the events are read from, and the topics alerts and dead letters are
    /// published to (built with the `kafka` feature).
    pub kafka: Option<KafkaConfig>,
    /// Checkpoints that let a killed run resume where it stopped (`docs/checkpoints.md`).
    pub checkpoint: Option<CheckpointConfig>,
}

/// Where and how often a run records how far it got, so that a restart of the same command
/// resumes instead of starting over (`docs/checkpoints.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointConfig {
    /// The folder that holds the checkpoint (`checkpoint.json`).
    pub dir: PathBuf,
    /// How often a checkpoint is written while the run goes on. Default 10 s.
    #[serde(default = "checkpoint_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// How much event time before the checkpoint's watermark a restart reads again, so that
    /// the detectors rebuild the state they hold (open orders, windows, the session's counts)
    /// and the resumed run ends with the same alerts. Default 24 h: the trading day.
    #[serde(default = "checkpoint_replay_horizon", with = "humantime_serde")]
    pub replay_horizon: Duration,
}

fn checkpoint_interval() -> Duration {
    Duration::from_secs(10)
}

fn checkpoint_replay_horizon() -> Duration {
    Duration::from_secs(24 * 3600)
}

impl CheckpointConfig {
    /// Checkpoints in `dir` with the default interval and replay horizon.
    pub fn new(dir: impl Into<PathBuf>) -> CheckpointConfig {
        CheckpointConfig {
            dir: dir.into(),
            interval: checkpoint_interval(),
            replay_horizon: checkpoint_replay_horizon(),
        }
    }
}

impl Config {
    /// Reads a TOML file; relative paths in it are resolved against the file's folder.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        let mut config = Config::parse(&text).map_err(|message| ConfigError::Invalid { path: path.into(), message })?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.reference.resolve(base);
        for key in [&mut config.audit.signing_key, &mut config.audit.encryption_key].into_iter().flatten() {
            if key.is_relative() {
                *key = base.join(&*key);
            }
        }
        if let Some(ca) = config.timeseries.as_mut().and_then(|t| t.ca_file.as_mut())
            && ca.is_relative()
        {
            *ca = base.join(&*ca);
        }
        for route in &mut config.alerts.routes {
            if let Some(ca) = route.webhook.as_mut().and_then(|w| w.ca_file.as_mut())
                && ca.is_relative()
            {
                *ca = base.join(&*ca);
            }
        }
        if let Some(submission) = &mut config.submission {
            if submission.ledger.is_relative() {
                submission.ledger = base.join(&submission.ledger);
            }
            for path in [&mut submission.ca_file, &mut submission.drop_dir].into_iter().flatten() {
                if path.is_relative() {
                    *path = base.join(&*path);
                }
            }
        }
        if let Some(archive) = &mut config.archive {
            archive.resolve(base);
        }
        if let Some(checkpoint) = &mut config.checkpoint
            && checkpoint.dir.is_relative()
        {
            checkpoint.dir = base.join(&checkpoint.dir);
        }
        for actions in &mut config.cases.actions {
            if actions.is_relative() {
                *actions = base.join(&*actions);
            }
        }
        if let Some(model) = &mut config.rules.anomaly.model
            && model.is_relative()
        {
            *model = base.join(&*model);
        }
        Ok(config)
    }

    /// Reads TOML text.
    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        config.validate()?;
        Ok(config)
    }

    /// Checks that every value can work (limits, time zones, windows); [`Config::parse`] and
    /// [`crate::pipeline::run`] call it, so a configuration built in code is checked too.
    pub fn validate(&self) -> Result<(), String> {
        let ingest = &self.ingest;
        if ingest.default_price_scale > crate::model::decimal::MAX_SCALE {
            return Err(format!("ingest.default_price_scale must be at most {}", crate::model::decimal::MAX_SCALE));
        }
        nanos("ingest.epoch", ingest.epoch, Duration::from_nanos(1), MAX_EPOCH)?;
        nanos("ingest.max_out_of_order", ingest.max_out_of_order, Duration::ZERO, MAX_OUT_OF_ORDER)?;
        nanos("features.window", self.features.window, Duration::from_nanos(1), MAX_WINDOW)?;
        if ingest.block_size < MIN_BLOCK_SIZE {
            return Err(format!("ingest.block_size must be at least {MIN_BLOCK_SIZE} bytes"));
        }
        if ingest.batch_records == 0 {
            return Err("ingest.batch_records must be at least 1".into());
        }
        if let Some(checkpoint) = &self.checkpoint {
            nanos("checkpoint.interval", checkpoint.interval, Duration::from_millis(1), Duration::from_secs(86_400))?;
            nanos(
                "checkpoint.replay_horizon",
                checkpoint.replay_horizon,
                Duration::ZERO,
                Duration::from_secs(365 * 86_400),
            )?;
        }
        let link_share = self.reference.link_share;
        if !(link_share > 0.0 && link_share <= 1.0) {
            return Err(format!("reference.link_share = {link_share} must be a share above 0 and at most 1"));
        }
        let basket_weight = self.reference.basket_weight;
        if !(basket_weight > 0.0 && basket_weight <= 1.0) {
            return Err(format!("reference.basket_weight = {basket_weight} must be a share above 0 and at most 1"));
        }
        if ingest.max_in_flight == 0 {
            return Err("ingest.max_in_flight must be at least 1: it bounds the records a worker keeps unfinished, \
                        and no record could be read with a bound of 0"
                .into());
        }
        if ingest.imc.tick.is_zero() || u64::try_from(ingest.imc.tick.as_nanos()).is_err() {
            return Err("ingest.imc.tick must be positive and below 584 years".into());
        }
        ingest.imc.price_tick()?;
        let anomaly = &self.rules.anomaly;
        if !(anomaly.z_threshold.is_finite()
            && anomaly.z_threshold > 0.0
            && anomaly.half_life.is_finite()
            && anomaly.half_life >= 1.0
            && (0.0..=1.0).contains(&anomaly.forest_threshold)
            && anomaly.evidence_prior.is_finite()
            && anomaly.evidence_prior >= 0.0)
        {
            return Err("rules.anomaly: z_threshold must be positive, half_life at least 1, forest_threshold in \
                        [0, 1], evidence_prior finite and not negative"
                .into());
        }
        self.alerts.validate()?;
        self.cases.validate()?;
        self.stor.validate()?;
        if let Some(submission) = &self.submission {
            submission.validate()?;
        }
        if let Some(kafka) = &self.kafka {
            kafka.validate()?;
        }
        for route in &self.alerts.routes {
            if let Some(topic) = &route.kafka_topic {
                let Some(kafka) = &self.kafka else {
                    return Err(format!(
                        "alerts.routes.{}.kafka_topic {topic:?}: no [kafka] section names the brokers",
                        route.name
                    ));
                };
                if !valid_topic(topic) || kafka.topic.as_ref() == Some(topic) {
                    return Err(format!(
                        "alerts.routes.{}.kafka_topic {topic:?}: a topic name (letters, digits, '.', '_', '-') \
                         other than the input topic",
                        route.name
                    ));
                }
            }
        }
        if let Some(timeseries) = &self.timeseries {
            timeseries.validate()?;
        }
        if let Some(archive) = &self.archive {
            archive.validate()?;
        }
        if self.audit.checkpoint_every == 0 {
            return Err("audit.checkpoint_every must be at least 1".into());
        }
        let limits = &self.rules.order_limits;
        quantity_limit("rules.order_limits.max_quantity", &limits.max_quantity)?;
        notional_limit("rules.order_limits.max_notional", &limits.max_notional)?;
        if let Some(share) = limits.max_adv_share
            && !(share.is_finite() && share > 0.0)
        {
            return Err(format!("rules.order_limits.max_adv_share = {share} must be a positive number"));
        }
        if limits.max_lots == Some(0) {
            return Err("rules.order_limits.max_lots must be at least 1".into());
        }
        for (name, o) in &limits.instruments {
            if let Some(limit) = &o.max_quantity {
                quantity_limit(&format!("rules.order_limits.instruments.{name}.max_quantity"), limit)?;
            }
            if let Some(limit) = &o.max_notional {
                notional_limit(&format!("rules.order_limits.instruments.{name}.max_notional"), limit)?;
            }
        }
        let collar = &self.rules.price_collar;
        ticks("rules.price_collar.max_deviation_ticks", collar.max_deviation_ticks)?;
        for (name, o) in &collar.instruments {
            ticks(&format!("rules.price_collar.instruments.{name}.max_deviation_ticks"), o.max_deviation_ticks)?;
        }
        let otr = &self.rules.order_to_trade;
        ratio("rules.order_to_trade.max_count_ratio", otr.max_count_ratio)?;
        ratio("rules.order_to_trade.max_volume_ratio", otr.max_volume_ratio)?;
        for (name, o) in &otr.instruments {
            if let Some(r) = o.max_count_ratio {
                ratio(&format!("rules.order_to_trade.instruments.{name}.max_count_ratio"), r)?;
            }
            if let Some(r) = o.max_volume_ratio {
                ratio(&format!("rules.order_to_trade.instruments.{name}.max_volume_ratio"), r)?;
            }
        }
        if let Some(interval) = otr.report_interval {
            nanos("rules.order_to_trade.report_interval", interval, Duration::from_nanos(1), MAX_WINDOW)?;
        }
        let insider = &self.rules.insider_like;
        if !(insider.band > 0.0 && insider.band <= 0.5) {
            return Err(format!("rules.insider_like.band = {} must be above 0 and at most 0.5", insider.band));
        }
        if insider.min_trades == 0 {
            return Err("rules.insider_like.min_trades must be at least 1".into());
        }
        if !(insider.min_lower_bound > 0.0 && insider.min_lower_bound <= 1.0) {
            return Err(format!(
                "rules.insider_like.min_lower_bound = {} must be above 0 and at most 1",
                insider.min_lower_bound
            ));
        }
        if !(insider.confidence_z.is_finite() && insider.confidence_z > 0.0) {
            return Err(format!("rules.insider_like.confidence_z = {} must be positive", insider.confidence_z));
        }
        let wash = &self.rules.linked_wash;
        nanos("rules.linked_wash.window", wash.window, Duration::ZERO, MAX_WINDOW)?;
        ratio("rules.linked_wash.price_tolerance_bps", wash.price_tolerance_bps)?;
        share("rules.linked_wash.quantity_tolerance", wash.quantity_tolerance)?;
        let cross = &self.rules.cross_trades;
        nanos("rules.cross_trades.window", cross.window, Duration::from_nanos(1), MAX_WINDOW)?;
        if cross.min_trades < 2 {
            return Err("rules.cross_trades.min_trades must be at least 2".into());
        }
        if !(cross.min_lift.is_finite() && cross.min_lift >= 1.0) {
            return Err(format!("rules.cross_trades.min_lift = {} must be at least 1", cross.min_lift));
        }
        if !(cross.significance > 0.0 && cross.significance < 1.0) {
            return Err(format!(
                "rules.cross_trades.significance = {} must be above 0 and below 1",
                cross.significance
            ));
        }
        let rings = &self.rules.collusion_rings;
        nanos("rules.collusion_rings.window", rings.window, Duration::ZERO, MAX_WINDOW)?;
        nanos("rules.collusion_rings.resolution", rings.resolution, Duration::from_nanos(1), MAX_WINDOW)?;
        if rings.min_members < 2 || rings.min_laps < 1 || rings.max_counterparties < 2 {
            return Err(
                "rules.collusion_rings.min_members and max_counterparties must be at least 2, min_laps at least 1"
                    .into(),
            );
        }
        if !(rings.net_tolerance >= 0.0 && rings.net_tolerance < 1.0) {
            return Err(format!(
                "rules.collusion_rings.net_tolerance = {} must be at least 0 and below 1",
                rings.net_tolerance
            ));
        }
        if rings.window.is_zero() && !rings.session {
            return Err("rules.collusion_rings needs a window or session = true (or enabled = false)".into());
        }
        let front = &self.rules.front_running;
        nanos("rules.front_running.lookback", front.lookback, Duration::from_nanos(1), MAX_WINDOW)?;
        nanos("rules.front_running.horizon", front.horizon, Duration::ZERO, MAX_WINDOW)?;
        if front.block_quantity == 0 || front.block_notional.is_nan() || front.block_notional <= 0.0 {
            return Err("rules.front_running.block_quantity and block_notional must be positive".into());
        }
        if front.min_blocks == 0 || !(front.significance > 0.0 && front.significance < 1.0) {
            return Err("rules.front_running.min_blocks must be at least 1 and significance above 0 and below 1".into());
        }
        let pattern = &self.rules.self_trade_pattern;
        if pattern.min_prints == 0 {
            return Err("rules.self_trade_pattern.min_prints must be at least 1".into());
        }
        if !(pattern.min_share > 0.0 && pattern.min_share <= 1.0) {
            return Err(format!(
                "rules.self_trade_pattern.min_share = {} must be above 0 and at most 1",
                pattern.min_share
            ));
        }
        let spoofing = &self.rules.spoofing;
        ratio("rules.spoofing.min_level_multiple", spoofing.min_level_multiple)?;
        ratio("rules.spoofing.min_size_ratio", spoofing.min_size_ratio)?;
        share("rules.spoofing.max_fill_share", spoofing.max_fill_share)?;
        nanos("rules.spoofing.max_lifetime", spoofing.max_lifetime, Duration::from_nanos(1), MAX_WINDOW)?;
        nanos("rules.spoofing.max_cancel_after_fill", spoofing.max_cancel_after_fill, Duration::ZERO, MAX_WINDOW)?;
        nanos("rules.spoofing.fill_grace", spoofing.fill_grace, Duration::ZERO, MAX_WINDOW)?;
        nanos("rules.spoofing.repeat_window", spoofing.repeat_window, Duration::ZERO, MAX_WINDOW)?;
        let layering = &self.rules.layering;
        if layering.min_layers == 0 || layering.levels == 0 {
            return Err("rules.layering.min_layers and rules.layering.levels must be at least 1".into());
        }
        share("rules.layering.min_depth_share", layering.min_depth_share)?;
        share("rules.layering.max_fill_share", layering.max_fill_share)?;
        share("rules.layering.max_executed_share", layering.max_executed_share)?;
        ratio("rules.layering.min_size_ratio", layering.min_size_ratio)?;
        nanos("rules.layering.window", layering.window, Duration::from_nanos(1), MAX_WINDOW)?;
        nanos("rules.layering.max_cancel_after_fill", layering.max_cancel_after_fill, Duration::ZERO, MAX_WINDOW)?;
        let stuffing = &self.rules.quote_stuffing;
        nanos("rules.quote_stuffing.burst_window", stuffing.burst_window, Duration::from_nanos(1), MAX_WINDOW)?;
        nanos("rules.quote_stuffing.message_window", stuffing.message_window, Duration::from_nanos(1), MAX_WINDOW)?;
        nanos(
            "rules.quote_stuffing.fishing_lifetime",
            stuffing.fishing_lifetime,
            Duration::ZERO,
            stuffing.burst_window,
        )?;
        if stuffing.max_book_changes == 0 || stuffing.max_messages == 0 {
            return Err("rules.quote_stuffing.max_book_changes and max_messages must be at least 1".into());
        }
        let close = &self.rules.marking_close;
        nanos("rules.marking_close.window", close.window, Duration::from_nanos(1), Duration::from_secs(86_400))?;
        share("rules.marking_close.min_window_share", close.min_window_share)?;
        share("rules.marking_close.min_price_move", close.min_price_move)?;
        share("rules.marking_close.min_concentration", close.min_concentration)?;
        let ignition = &self.rules.momentum_ignition;
        nanos(
            "rules.momentum_ignition.ignition_window",
            ignition.ignition_window,
            Duration::from_nanos(1),
            MAX_WINDOW,
        )?;
        nanos("rules.momentum_ignition.max_reversal_delay", ignition.max_reversal_delay, Duration::ZERO, MAX_WINDOW)?;
        if ignition.min_orders < 2 || ignition.min_price_levels < 2 {
            return Err("rules.momentum_ignition.min_orders and min_price_levels must be at least 2".into());
        }
        share("rules.momentum_ignition.min_reversal_share", ignition.min_reversal_share)?;
        self.sessions.close_time()?;
        self.sessions.timezone.parse::<chrono_tz::Tz>().map_err(|e| format!("sessions.timezone: {e}"))?;
        self.ingest.lobster.timezone.parse::<chrono_tz::Tz>().map_err(|e| format!("ingest.lobster.timezone: {e}"))?;
        Ok(())
    }
}

/// The smallest block plain files are split into.
pub const MIN_BLOCK_SIZE: u64 = 4096;
/// The largest out-of-order bound: a bound holds that much event time of every partition in
/// memory before anything is complete, and data more than a day out of order is not a stream.
pub const MAX_OUT_OF_ORDER: Duration = Duration::from_secs(86_400);
/// The coarsest progress epoch.
pub const MAX_EPOCH: Duration = Duration::from_secs(3_600);
/// The longest window or reporting interval.
pub const MAX_WINDOW: Duration = Duration::from_secs(366 * 86_400);

/// A duration in event-time nanoseconds, `u64::MAX` when it does not fit (about 584 years):
/// how every parameter given as a duration meets timestamps.
pub fn nanos_of(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A duration between `min` and `max` (which fits in nanoseconds).
fn nanos(key: &str, value: Duration, min: Duration, max: Duration) -> Result<(), String> {
    if value < min || value > max {
        let show = |d: Duration| humantime::format_duration(d).to_string();
        return Err(format!("{key} = {} is outside {} to {}", show(value), show(min), show(max)));
    }
    Ok(())
}

fn quantity_limit(key: &str, limit: &Limit<u64>) -> Result<(), String> {
    match limit {
        Limit::Max(0) => Err(format!("{key} must be at least 1 (or \"off\")")),
        _ => Ok(()),
    }
}

fn notional_limit(key: &str, limit: &Limit<String>) -> Result<(), String> {
    let Limit::Max(text) = limit else { return Ok(()) };
    let value = crate::model::Decimal::parse(text).map_err(|e| format!("{key} {text:?}: {e}"))?;
    if value.mantissa <= 0 {
        return Err(format!("{key} {text:?} must be positive (or \"off\")"));
    }
    Ok(())
}

fn ticks(key: &str, ticks: Option<i64>) -> Result<(), String> {
    match ticks {
        Some(t) if t < 0 => Err(format!("{key} = {t} must not be negative")),
        _ => Ok(()),
    }
}

fn share(key: &str, value: f64) -> Result<(), String> {
    if (0.0..=1.0).contains(&value) { Ok(()) } else { Err(format!("{key} = {value} must be a share from 0 to 1")) }
}

fn ratio(key: &str, value: f64) -> Result<(), String> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(format!("{key} = {value} must be a finite number, not negative"))
    }
}

/// Reading and validating input.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// How far behind the latest time of its partition a record may arrive and still be on
    /// time. Later records go to the late output. Default 100 ms.
    #[serde(with = "humantime_serde")]
    pub max_out_of_order: Duration,
    /// Granularity of progress tracking (event time). Default 1 ms.
    #[serde(with = "humantime_serde")]
    pub epoch: Duration,
    /// Plain files are split into blocks of this many bytes, read in parallel. Default 8 MiB.
    pub block_size: u64,
    /// Records per read. Default 256 (small batches stay in the allocator's reused memory).
    pub batch_records: usize,
    /// Decimal places of prices for instruments missing from the reference data. Default 4.
    pub default_price_scale: u8,
    /// Each worker stops reading while this many of the records it sent are not yet fully
    /// processed, which bounds buffering. Default 250,000.
    pub max_in_flight: usize,
    /// LOBSTER files.
    pub lobster: LobsterConfig,
    /// IMC Prosperity trade files.
    pub imc: ImcConfig,
    /// FIX drop copies.
    pub fix: FixConfig,
}

/// FIX drop copies (`docs/schema.md`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FixConfig {
    /// Which messages make the order events. Default `execution_reports`.
    pub orders_from: FixOrders,
}

/// Where a FIX log's order events come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FixOrders {
    /// The venue's ExecutionReports (new, canceled, replaced, fills); requests make no events.
    #[default]
    ExecutionReports,
    /// The requests (NewOrderSingle, OrderCancelRequest, OrderCancelReplaceRequest); reports
    /// make only the fills.
    Requests,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_out_of_order: Duration::from_millis(100),
            epoch: Duration::from_millis(1),
            block_size: 8 << 20,
            batch_records: 256,
            default_price_scale: 4,
            max_in_flight: 250_000,
            lobster: LobsterConfig::default(),
            imc: ImcConfig::default(),
            fix: FixConfig::default(),
        }
    }
}

/// LOBSTER message files: times are seconds after midnight, local to the exchange.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LobsterConfig {
    /// Ticker; default: from the file name (`TICKER_YYYY-MM-DD_..._message_N.csv`).
    pub instrument: Option<String>,
    /// Trading date `YYYY-MM-DD`; default: from the file name.
    pub date: Option<String>,
    /// Time zone of the exchange clock. Default `America/New_York` (NASDAQ).
    pub timezone: String,
    /// Venue code. Default `XNAS`.
    pub venue: String,
    /// Read the `_orderbook_N.csv` file beside a message file, when present, as best bid and
    /// offer after each message. Default true.
    pub orderbook: bool,
}

impl Default for LobsterConfig {
    fn default() -> Self {
        LobsterConfig {
            instrument: None,
            date: None,
            timezone: "America/New_York".into(),
            venue: "XNAS".into(),
            orderbook: true,
        }
    }
}

/// IMC Prosperity trade files (`timestamp;buyer;seller;symbol;currency;price;quantity`).
///
/// Their timestamps are simulation ticks (0 to 999,900 in steps of 100 per day). Event time is
/// `date + (day - 1) days + timestamp x tick`, where `day` comes from the file name
/// (`..._day_N...`, default 1).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImcConfig {
    /// The calendar date of day 1, `YYYY-MM-DD`. Default `2000-01-01`.
    pub date: String,
    /// Duration of one tick. Default 1 ms, so a day spans 1,000 s.
    #[serde(with = "humantime_serde")]
    pub tick: Duration,
    /// Venue code. Default `IMC`.
    pub venue: String,
    /// The venue's minimum price increment, for instruments the reference data gives none.
    /// Default `"1"`: the simulation trades whole seashells (every price in its files).
    pub price_tick: String,
}

impl ImcConfig {
    /// The price tick as a decimal; an error names the setting.
    pub fn price_tick(&self) -> Result<crate::model::Decimal, String> {
        match crate::model::Decimal::parse(&self.price_tick) {
            Ok(tick) if tick.mantissa > 0 => Ok(tick),
            Ok(_) => Err(format!("ingest.imc.price_tick {:?} must be positive", self.price_tick)),
            Err(e) => Err(format!("ingest.imc.price_tick {:?}: {e}", self.price_tick)),
        }
    }
}

impl Default for ImcConfig {
    fn default() -> Self {
        ImcConfig {
            date: "2000-01-01".into(),
            tick: Duration::from_millis(1),
            venue: "IMC".into(),
            price_tick: "1".into(),
        }
    }
}

/// Reference data files (CSV; see `docs/schema.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReferenceConfig {
    /// `instrument,price_scale,currency,isin,reference_price`.
    pub instruments: Option<PathBuf>,
    /// `account,owner,desk,trader`.
    pub accounts: Option<PathBuf>,
    /// `time,account,owner,share`: changes of ownership over event time (see
    /// [`crate::links`]).
    pub ownership: Option<PathBuf>,
    /// The share of an account an owner must hold for the owner's accounts to be linked: 10 %,
    /// the CFTC's aggregation standard (17 CFR 150.4). A fraction in (0, 1].
    pub link_share: f64,
    /// `[time,]basket,member,weight`: what each basket (an exchange-traded fund, an index
    /// product) holds, over event time.
    pub baskets: Option<PathBuf>,
    /// The weight a member must have in a basket for the two to be related instruments (front
    /// running reads trading in either ahead of a block in the other): 5 %, the most a
    /// diversified fund may hold of one issuer in 75 % of its assets (Investment Company Act
    /// §5(b)(1)), so a larger holding is one the fund's value materially depends on. A fraction
    /// in (0, 1].
    pub basket_weight: f64,
}

impl Default for ReferenceConfig {
    fn default() -> ReferenceConfig {
        ReferenceConfig {
            instruments: None,
            accounts: None,
            ownership: None,
            link_share: 0.10,
            baskets: None,
            basket_weight: 0.05,
        }
    }
}

impl ReferenceConfig {
    fn resolve(&mut self, base: &Path) {
        for path in
            [&mut self.instruments, &mut self.accounts, &mut self.ownership, &mut self.baskets].into_iter().flatten()
        {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
    }
}

/// Trading sessions: a session is a calendar day in `timezone`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    /// IANA time zone of the session calendar. Default `UTC`.
    pub timezone: String,
    /// The close of each session, local time (`HH:MM` or `HH:MM:SS`), after midnight. Not set
    /// by default: marking the close runs only where it is set.
    pub close: Option<String>,
    /// Orders still open when a session ends (local midnight) expire: they leave the order
    /// state and the book. Day orders, the default time in force on equity venues, expire at
    /// the close; the event model has no time in force, so without this an unfilled order of an
    /// earlier day would rest in the book for good. Set `false` where orders stay open across
    /// sessions (good-till-cancelled). Default `true`.
    pub expire_orders: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig { timezone: "UTC".into(), close: None, expire_orders: true }
    }
}

impl SessionConfig {
    /// The close as a local time of day, when set.
    pub fn close_time(&self) -> Result<Option<chrono::NaiveTime>, String> {
        let Some(close) = &self.close else { return Ok(None) };
        SessionConfig::parse_close(close).map(Some)
    }

    /// A close as a local time of day (`HH:MM` or `HH:MM:SS`), after midnight.
    pub fn parse_close(close: &str) -> Result<chrono::NaiveTime, String> {
        let time = chrono::NaiveTime::parse_from_str(close, "%H:%M:%S")
            .or_else(|_| chrono::NaiveTime::parse_from_str(close, "%H:%M"))
            .map_err(|_| format!("sessions.close = {close:?} is not a time of day (HH:MM or HH:MM:SS)"))?;
        if time == chrono::NaiveTime::MIN {
            return Err("sessions.close = \"00:00\" would end each session as it starts".into());
        }
        Ok(time)
    }
}

/// Detector parameters.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RulesConfig {
    /// Maximum order quantity and notional (MiFID II RTS 6 Art. 15).
    pub order_limits: OrderLimitsConfig,
    /// Off-market prices.
    pub price_collar: PriceCollarConfig,
    /// Order-to-trade ratio (RTS 9).
    pub order_to_trade: OrderToTradeConfig,
    /// Self-trades.
    pub self_trade: SelfTradeConfig,
    /// Spoofing: a large order cancelled around the fill of an opposite-side order.
    pub spoofing: SpoofingConfig,
    /// Layering: orders on several levels of one side around an opposite-side execution.
    pub layering: LayeringConfig,
    /// Behavioural anomalies over the feature store.
    pub anomaly: AnomalyConfig,
    /// Accounts trading at the session's price extremes.
    pub insider_like: InsiderLikeConfig,
    /// Opposite executions of linked accounts in separate prints.
    pub linked_wash: LinkedWashConfig,
    /// Bursts of messages and of changes to the best prices by one account.
    pub quote_stuffing: QuoteStuffingConfig,
    /// An account's trading in the closing window that moves the closing price its way.
    pub marking_close: MarkingCloseConfig,
    /// Aggressive executions through several levels, then the position turned round.
    pub momentum_ignition: MomentumIgnitionConfig,
    /// Pairs of accounts trading with each other far more often than their activity explains.
    pub cross_trades: CrossTradesConfig,
    /// Desks or algorithms whose self-trades are a large share of their volume (FINRA 5210).
    pub self_trade_pattern: SelfTradePatternConfig,
    /// The firm's own or employees' accounts trading ahead of clients' blocks (FINRA 5270).
    pub front_running: FrontRunningConfig,
    /// Accounts passing one quantity of a security round a closed loop (circular trading).
    pub collusion_rings: CollusionRingsConfig,
}

/// Collusion rings ([`crate::rules::collusion_rings`]).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CollusionRingsConfig {
    /// Whether the rule runs. Default false: it costs more than the rest of the default job
    /// together on a busy day (docs/benchmarks.md), so it is turned on where it is wanted.
    pub enabled: bool,
    /// The tumbling window rings are looked for in, from the epoch; 0 for none. Default 1 h
    /// (Victor & Weintraud's shortest).
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Whether rings are also looked for over each session (local calendar day). Default true.
    pub session: bool,
    /// Fewest accounts in a ring. Default 3 (two accounts trading back and forth are the cross
    /// trades rule's).
    pub min_members: usize,
    /// Fewest times the quantity must have gone round (the ring's prints over its members)
    /// before the ring is alerted. Default 2: a single lap is what chance makes on a busy day.
    pub min_laps: u64,
    /// Most distinct counterparties (buyers and sellers counted apart) an account may have in
    /// the ring's quantity within the window and still be a member: above it, the account is
    /// the market's hub in that quantity (a market maker trading a round lot with everyone),
    /// not a party passing it round a closed group. Default 10.
    pub max_counterparties: usize,
    /// How far a member's purchases and sales of the ring's quantity may differ in number, as a
    /// share of the larger. Default 0.01 (Victor & Weintraud's 1 %).
    pub net_tolerance: f64,
    /// The step of event time at which the rings are brought up to date: prints within one step
    /// are judged together. Default 1 s.
    #[serde(with = "humantime_serde")]
    pub resolution: Duration,
    /// Prints listed as evidence. Default 20.
    pub max_evidence: usize,
}

impl Default for CollusionRingsConfig {
    fn default() -> Self {
        CollusionRingsConfig {
            enabled: false,
            window: Duration::from_secs(3_600),
            session: true,
            min_members: 3,
            min_laps: 2,
            max_counterparties: 10,
            net_tolerance: 0.01,
            resolution: Duration::from_secs(1),
            max_evidence: 20,
        }
    }
}

/// The front-running rule ([`crate::rules::front_running`]).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FrontRunningConfig {
    /// Whether the rule runs (it needs account capacities in the reference data). Default true.
    pub enabled: bool,
    /// A client order of this many units or more is a block. Default 10,000 (NYSE Rule 127.10).
    pub block_quantity: u64,
    /// A client order worth this much or more at its limit price is a block, in the
    /// instrument's currency. Default 200,000.
    pub block_notional: f64,
    /// How long before the block's execution firm-side trading counts. Default 5 min.
    #[serde(with = "humantime_serde")]
    pub lookback: Duration,
    /// How long after the block's execution the profit is measured. Default 5 min.
    #[serde(with = "humantime_serde")]
    pub horizon: Duration,
    /// Alert only when the trading ahead made money by the horizon. Default true.
    pub require_profit: bool,
    /// Blocks a proprietary account must be ahead of in a session to be judged. Default 5.
    pub min_blocks: u64,
    /// Family-wise significance of the session's sign test over the proprietary accounts,
    /// divided by the number judged (Bonferroni). Default 0.01.
    pub significance: f64,
    /// Events listed as evidence of a session alert. Default 20.
    pub max_evidence: usize,
}

impl Default for FrontRunningConfig {
    fn default() -> Self {
        FrontRunningConfig {
            enabled: true,
            block_quantity: 10_000,
            block_notional: 200_000.0,
            lookback: Duration::from_secs(300),
            horizon: Duration::from_secs(300),
            require_profit: true,
            min_blocks: 5,
            significance: 0.01,
            max_evidence: 20,
        }
    }
}

/// What the self-trade pattern rule groups accounts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PatternBy {
    /// The account's desk.
    Desk,
    /// The account's trader (or algorithm).
    Trader,
}

/// The self-trade pattern rule ([`crate::rules::self_trade_pattern`]).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SelfTradePatternConfig {
    /// Whether the rule runs (it needs desks or traders in the account reference data). Default
    /// true.
    pub enabled: bool,
    /// Group accounts by `"desk"` or by `"trader"` (an algorithm id). Default desk.
    pub by: PatternBy,
    /// Self-trades of the desk in the instrument and session before it is judged. Default 5.
    pub min_prints: u64,
    /// Least share of the desk's executed volume that is self-matched. Default 0.05.
    pub min_share: f64,
    /// Self-trades listed as evidence. Default 20.
    pub max_evidence: usize,
}

impl Default for SelfTradePatternConfig {
    fn default() -> Self {
        SelfTradePatternConfig { enabled: true, by: PatternBy::Desk, min_prints: 5, min_share: 0.05, max_evidence: 20 }
    }
}

/// Cross trades ([`crate::rules::cross_trades`]).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CrossTradesConfig {
    /// Whether the rule runs. Default true.
    pub enabled: bool,
    /// The rolling window the pairs are tested over at each of their prints. Default 1 h.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Meetings between the two accounts before they are tested. Default 5.
    pub min_trades: u64,
    /// Least ratio of their meetings to what their activity explains. Default 3.
    pub min_lift: f64,
    /// Family-wise significance of the test, divided by the number of pairs that met and, for
    /// the rolling test, by the number of windows in a day (a Bonferroni correction). Default
    /// 0.01.
    pub significance: f64,
    /// Prints listed as evidence. Default 20.
    pub max_evidence: usize,
}

impl Default for CrossTradesConfig {
    fn default() -> Self {
        CrossTradesConfig {
            enabled: true,
            window: Duration::from_secs(3_600),
            min_trades: 5,
            min_lift: 3.0,
            significance: 0.01,
            max_evidence: 20,
        }
    }
}

/// Momentum ignition ([`crate::rules::momentum_ignition`]).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MomentumIgnitionConfig {
    /// Whether the rule runs. Default true.
    pub enabled: bool,
    /// The short time frame of the ignition's aggressive executions. Default 10 s (bursts of
    /// seconds: the crypto-venue example in the published models; quote bursts under 10 s).
    #[serde(with = "humantime_serde")]
    pub ignition_window: Duration,
    /// Distinct aggressive orders in the ignition. Default 3 ("multiple aggressive orders").
    pub min_orders: u32,
    /// Distinct prices of the ignition's executions. Default 3 ("fills at multiple price
    /// levels").
    pub min_price_levels: u32,
    /// Longest time from the ignition's last execution to the opposite execution that takes
    /// the profit. Default 30 s.
    #[serde(with = "humantime_serde")]
    pub max_reversal_delay: Duration,
    /// Smallest share of the ignition's quantity turned round within the delay. Default 0.25.
    pub min_reversal_share: f64,
}

impl Default for MomentumIgnitionConfig {
    fn default() -> Self {
        MomentumIgnitionConfig {
            enabled: true,
            ignition_window: Duration::from_secs(10),
            min_orders: 3,
            min_price_levels: 3,
            max_reversal_delay: Duration::from_secs(30),
            min_reversal_share: 0.25,
        }
    }
}

/// Quote stuffing and message rates ([`crate::rules::quote_stuffing`]).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuoteStuffingConfig {
    /// Whether the rule runs. Default true.
    pub enabled: bool,
    /// Window over which an account's changes to the best bid or offer count. Default 5 s
    /// (KX's quote-stuffing detector).
    #[serde(with = "humantime_serde")]
    pub burst_window: Duration,
    /// Most changes to one side's best level (price or quantity) by one account's messages
    /// within the burst window; more make a burst. Default 60 (KX: more than 60 changes to the
    /// best bid in 5 s).
    pub max_book_changes: u32,
    /// Window of the message limit. Default 1 s.
    #[serde(with = "humantime_serde")]
    pub message_window: Duration,
    /// Most messages (new, replace, cancel) of one account on one instrument within the
    /// message window: the maximum message limit of RTS 6 Art. 15, which each firm or venue
    /// sets. Default 100, twice the pace at which KX classes an account as high-frequency
    /// (most gaps between its messages under 20 ms).
    pub max_messages: u32,
    /// An order the member cancels within this time of its entry is a fishing order.
    /// Default 1 ms (KX).
    #[serde(with = "humantime_serde")]
    pub fishing_lifetime: Duration,
}

impl Default for QuoteStuffingConfig {
    fn default() -> Self {
        QuoteStuffingConfig {
            enabled: true,
            burst_window: Duration::from_secs(5),
            max_book_changes: 60,
            message_window: Duration::from_secs(1),
            max_messages: 100,
            fishing_lifetime: Duration::from_millis(1),
        }
    }
}

/// Marking the close ([`crate::rules::marking_close`]); the close itself is
/// [`SessionConfig::close`].
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MarkingCloseConfig {
    /// Whether the rule runs. Default true.
    pub enabled: bool,
    /// The closing window before the close. Default 30 min (RedDeer's default).
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Smallest share of the window's executed volume the account took part in. Default 0.25.
    pub min_window_share: f64,
    /// Smallest move of the closing price from the last price before the window, in the
    /// direction of the account's net trading in the window, as a fraction. Default 0.005.
    pub min_price_move: f64,
    /// Smallest share of the account's executed volume of the session on the instrument that
    /// falls in the window: trading concentrated at the close rather than all day. Default 0.5.
    pub min_concentration: f64,
    /// The account must be a party to the last execution of the session (Trillium: "the last
    /// round-lot execution of the day"). Default true.
    pub require_last_print: bool,
}

impl Default for MarkingCloseConfig {
    fn default() -> Self {
        MarkingCloseConfig {
            enabled: true,
            window: Duration::from_secs(30 * 60),
            min_window_share: 0.25,
            min_price_move: 0.005,
            min_concentration: 0.5,
            require_last_print: true,
        }
    }
}

/// The linked-wash rule ([`crate::rules::linked_wash`]).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LinkedWashConfig {
    /// Whether the rule runs (it needs ownership in the reference data). Default true.
    pub enabled: bool,
    /// Longest time between the two executions. Default 1 s.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Largest price difference, in basis points of the higher price. Default 0 (the same
    /// price).
    pub price_tolerance_bps: f64,
    /// Largest quantity difference, as a share of the larger quantity. Default 0.1.
    pub quantity_tolerance: f64,
}

impl Default for LinkedWashConfig {
    fn default() -> Self {
        LinkedWashConfig {
            enabled: true,
            window: Duration::from_secs(1),
            price_tolerance_bps: 0.0,
            quantity_tolerance: 0.1,
        }
    }
}

/// The insider-like rule ([`crate::rules::insider_like`]).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InsiderLikeConfig {
    /// Whether the rule runs. Default true.
    pub enabled: bool,
    /// The favourable end of the session's range that counts as its extreme, as a share of the
    /// range. Default 0.05.
    pub band: f64,
    /// Executions an account needs in a session to be judged. Default 5.
    pub min_trades: u64,
    /// The least Wilson lower bound of the share at the extreme that raises an alert. Default
    /// 0.25 (five times the 5 % band).
    pub min_lower_bound: f64,
    /// The normal quantile of the Wilson interval. Default 1.96 (95 %).
    pub confidence_z: f64,
}

impl Default for InsiderLikeConfig {
    fn default() -> Self {
        InsiderLikeConfig { enabled: true, band: 0.05, min_trades: 5, min_lower_bound: 0.25, confidence_z: 1.96 }
    }
}

/// The feature store (`docs/features.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeaturesConfig {
    /// Width of the tumbling event-time windows features are computed over. Default 1 minute.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Write every feature row to `features.csv`. Default false.
    pub export: bool,
}

impl Default for FeaturesConfig {
    fn default() -> Self {
        FeaturesConfig { window: Duration::from_secs(60), export: false }
    }
}

/// Behavioural anomalies: feature rows far from the key's own or its peers' baseline
/// (`docs/detection.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnomalyConfig {
    /// Run the detector. Default false: it needs history (a model file or a warm-up) to be useful.
    pub enabled: bool,
    /// Largest |z| of a row's features that raises an alert. Default 6.
    pub z_threshold: f64,
    /// Windows of its own before a key is scored against itself; until then it is scored
    /// against its peer group. Default 20.
    pub min_history: u64,
    /// Rows a peer group needs before it scores newcomers; no row is scored before. Default 100.
    pub min_peer_rows: u64,
    /// Half-life of the baselines, in rows of the key (or group). Default 60.
    pub half_life: f64,
    /// Orders, cancels, replaces and fills a row needs before it can alert. Default 10.
    pub min_activity: u64,
    /// When a model has a forest for the scope, the forest score an alert also needs. Default 0.55.
    pub forest_threshold: f64,
    /// Observations that halve a feature's weight: each z-score is multiplied by
    /// `sqrt(n / (n + evidence_prior))`, `n` being the orders or fills the feature rests on.
    /// Default 10.
    pub evidence_prior: f64,
    /// Features listed in an alert's explanation. Default 3.
    pub top_features: usize,
    /// Scopes scored. Default all three.
    pub scopes: Vec<crate::model::FeatureScope>,
    /// Seed of the training sample and forests. Default 7.
    pub seed: u64,
    /// A model file written by `surveil train`, to start from trained baselines and forests.
    /// Relative to the configuration file. Default none.
    pub model: Option<std::path::PathBuf>,
}

impl Default for AnomalyConfig {
    fn default() -> Self {
        AnomalyConfig {
            enabled: false,
            z_threshold: 6.0,
            min_history: 20,
            min_peer_rows: 100,
            half_life: 60.0,
            min_activity: 10,
            forest_threshold: 0.55,
            evidence_prior: 10.0,
            top_features: 3,
            scopes: crate::model::FeatureScope::ALL.to_vec(),
            seed: 7,
            model: None,
        }
    }
}

/// Maximum order quantity and notional.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrderLimitsConfig {
    /// Run the rule. Default true.
    pub enabled: bool,
    /// Largest allowed order quantity, or `"off"`. Default 100,000.
    pub max_quantity: Limit<u64>,
    /// Largest allowed order notional (price x quantity) in the instrument's currency, as a
    /// decimal string, or `"off"`. Default "5000000".
    pub max_notional: Limit<String>,
    /// Largest allowed order quantity as a share of the instrument's average daily volume (the
    /// instrument master's `average_daily_volume`, as of the order's time); unset: none.
    /// Where both apply, the smaller quantity limit holds.
    pub max_adv_share: Option<f64>,
    /// Largest allowed order quantity in lots of the instrument (the instrument master's
    /// `lot_size`, as of the order's time; instruments without one have no such limit); unset:
    /// none. Where several quantity limits apply, the smallest holds.
    pub max_lots: Option<u64>,
    /// Per-instrument overrides.
    pub instruments: BTreeMap<String, OrderLimitsOverride>,
}

impl Default for OrderLimitsConfig {
    fn default() -> Self {
        OrderLimitsConfig {
            enabled: true,
            max_quantity: Limit::Max(100_000),
            max_notional: Limit::Max("5000000".into()),
            max_adv_share: None,
            max_lots: None,
            instruments: BTreeMap::new(),
        }
    }
}

/// Per-instrument order limits.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrderLimitsOverride {
    /// Largest allowed order quantity, or `"off"`; `None` keeps the rule's.
    pub max_quantity: Option<Limit<u64>>,
    /// Largest allowed order notional, or `"off"`; `None` keeps the rule's.
    pub max_notional: Option<Limit<String>>,
}

/// A limit that can be switched off on its own: a maximum, or the word `"off"` in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Limit<T> {
    /// Values above this break the limit.
    Max(T),
    /// Not checked.
    Off,
}

impl<T> Limit<T> {
    /// The maximum, unless the limit is off.
    pub fn max(&self) -> Option<&T> {
        match self {
            Limit::Max(max) => Some(max),
            Limit::Off => None,
        }
    }
}

/// Reads an integer limit: a non-negative integer or `"off"`.
impl<'de> Deserialize<'de> for Limit<u64> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Limit<u64>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a non-negative integer or \"off\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Limit<u64>, E> {
                Ok(Limit::Max(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Limit<u64>, E> {
                u64::try_from(v).map(Limit::Max).map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Limit<u64>, E> {
                if v == "off" { Ok(Limit::Off) } else { Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)) }
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// Reads a decimal limit: a decimal string (checked when the configuration is validated) or
/// `"off"`.
impl<'de> Deserialize<'de> for Limit<String> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok(if text == "off" { Limit::Off } else { Limit::Max(text) })
    }
}

/// Off-market prices: an order or execution priced too far from the reference price.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PriceCollarConfig {
    /// Run the rule. Default true.
    pub enabled: bool,
    /// Allowed distance beyond the best bid/offer (or from the last trade when there is no
    /// quote), in basis points of the reference price. Default 500 (5 %).
    pub max_deviation_bps: u32,
    /// Allowed distance in ticks of the price scale; when set, it replaces the percentage.
    pub max_deviation_ticks: Option<i64>,
    /// The allowance is never less than this many of the instrument's minimum price increments
    /// (see [`crate::reference::ReferenceData::tick_size`]): a print one or two ticks through
    /// the touch of a cheap instrument is the market's granularity, not an off-market price.
    /// Default 2.
    pub min_deviation_ticks: u32,
    /// Check new and replaced orders on their aggressive side. Default true.
    pub check_orders: bool,
    /// Check executions and trades on both sides. Default true.
    pub check_executions: bool,
    /// Per-instrument overrides.
    pub instruments: BTreeMap<String, PriceCollarOverride>,
}

impl Default for PriceCollarConfig {
    fn default() -> Self {
        PriceCollarConfig {
            enabled: true,
            max_deviation_bps: 500,
            max_deviation_ticks: None,
            min_deviation_ticks: 2,
            check_orders: true,
            check_executions: true,
            instruments: BTreeMap::new(),
        }
    }
}

/// Per-instrument collar.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PriceCollarOverride {
    /// Basis points.
    pub max_deviation_bps: Option<u32>,
    /// Ticks.
    pub max_deviation_ticks: Option<i64>,
    /// Minimum distance in minimum price increments.
    pub min_deviation_ticks: Option<u32>,
}

/// Order-to-trade ratio per (account, instrument, session), RTS 9 method.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrderToTradeConfig {
    /// Run the rule. Default true.
    pub enabled: bool,
    /// Alert when orders / transactions - 1 exceeds this. Default 100.
    pub max_count_ratio: f64,
    /// Alert when order volume / transaction volume - 1 exceeds this. Default 500.
    pub max_volume_ratio: f64,
    /// Ignore keys with fewer counted messages than this in the session. Default 500.
    pub min_messages: u64,
    /// Messages counted for a modification (RTS 9 Annex: a modify counts as a cancel and a new
    /// insert). Default 2.
    pub replace_weight: u64,
    /// Also report running values every interval of event time; unset means session end only.
    #[serde(with = "humantime_serde")]
    pub report_interval: Option<Duration>,
    /// Per-instrument overrides.
    pub instruments: BTreeMap<String, OrderToTradeOverride>,
}

impl Default for OrderToTradeConfig {
    fn default() -> Self {
        OrderToTradeConfig {
            enabled: true,
            max_count_ratio: 100.0,
            max_volume_ratio: 500.0,
            min_messages: 500,
            replace_weight: 2,
            report_interval: None,
            instruments: BTreeMap::new(),
        }
    }
}

/// Per-instrument ratio limits.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrderToTradeOverride {
    /// Count ratio limit.
    pub max_count_ratio: Option<f64>,
    /// Volume ratio limit.
    pub max_volume_ratio: Option<f64>,
}

/// Self-trades: same account on both sides, or the same beneficial owner.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SelfTradeConfig {
    /// Run the rule. Default true.
    pub enabled: bool,
    /// Also flag different accounts of the same beneficial owner. Default true.
    pub match_owner: bool,
}

impl Default for SelfTradeConfig {
    fn default() -> Self {
        SelfTradeConfig { enabled: true, match_owner: true }
    }
}

/// Spoofing (`docs/detection.md`): the published basis of each default is in the rule's own
/// documentation ([`crate::rules::spoofing`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpoofingConfig {
    /// Run the rule. Default true.
    pub enabled: bool,
    /// How many occupied price levels may be ahead of a spoof order: 0 is at or better than the
    /// touch. Default 2 (the three ticks of the Coscia case).
    pub max_levels_ahead: u32,
    /// A spoof order is at least this multiple of the depth resting at its price before it.
    /// Default 1.0: it at least doubles its level (the Oystacher case).
    pub min_level_multiple: f64,
    /// The spoof orders of an episode are at least this multiple of the genuine orders that
    /// filled. Default 10 (CFTC: spoof orders 10-50 times larger than the genuine ones).
    pub min_size_ratio: f64,
    /// A spoof order is filled at most this share of its size. Default 0.1 (CFTC: spoof orders
    /// filled 2 % of the time, genuine ones 89 %).
    pub max_fill_share: f64,
    /// Longest life of a spoof order. Default 60 s (CFTC: spoofs cancelled after 11.8 s on
    /// average, genuine orders after 55.4 s).
    #[serde(with = "humantime_serde")]
    pub max_lifetime: Duration,
    /// Longest time from the genuine fill to the cancel. Default 5 s (CFTC: 2.3 s once the
    /// genuine order filled).
    #[serde(with = "humantime_serde")]
    pub max_cancel_after_fill: Duration,
    /// How long after a cancel the genuine fill may still come (a spoof pulled just before the
    /// fill, Trillium's step 5). Default 1 s.
    #[serde(with = "humantime_serde")]
    pub fill_grace: Duration,
    /// Only fills of resting orders count as genuine: a spoof draws others to trade against a
    /// resting order; an order that takes liquidity needs nobody drawn (moving the price, then
    /// trading the other way, is the layering rule's). Fills that do not say which side was the
    /// aggressor count. Default true.
    pub genuine_must_rest: bool,
    /// Episodes of one account within [`SpoofingConfig::repeat_window`] needed for an alert:
    /// one coincidence of a large cancel and an opposite fill is not a pattern. Default 2.
    pub min_episodes: u32,
    /// Window over which episodes count as repeated. Default 30 min (RedDeer's spoofing window).
    #[serde(with = "humantime_serde")]
    pub repeat_window: Duration,
}

impl Default for SpoofingConfig {
    fn default() -> Self {
        SpoofingConfig {
            enabled: true,
            max_levels_ahead: 2,
            min_level_multiple: 1.0,
            min_size_ratio: 10.0,
            max_fill_share: 0.1,
            max_lifetime: Duration::from_secs(60),
            max_cancel_after_fill: Duration::from_secs(5),
            fill_grace: Duration::from_secs(1),
            genuine_must_rest: true,
            min_episodes: 2,
            repeat_window: Duration::from_secs(30 * 60),
        }
    }
}

/// Layering (`docs/detection.md`): the published basis of each default is in the rule's own
/// documentation ([`crate::rules::layering`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LayeringConfig {
    /// Run the rule. Default true.
    pub enabled: bool,
    /// Distinct price levels one account must hold on one side. Default 3.
    pub min_layers: u32,
    /// Occupied levels that must be ahead of a layer: layers rest behind the touch, where they
    /// show depth while staying unlikely to execute (the Sarao complaint: orders kept several
    /// levels from the best ask). Default 1; an order at the touch is the spoofing rule's.
    pub min_levels_ahead: u32,
    /// The best levels of the side the share is measured over. Default 5.
    pub levels: u32,
    /// Share of the visible quantity of those levels the account's layers hold. Default 0.2
    /// (Sarao's orders were over 20 % of the visible E-mini sell orders).
    pub min_depth_share: f64,
    /// The layers total at least this multiple of the account's own interest on the other
    /// side at the execution (what it executed plus what it still has resting there): a market
    /// maker quoting both sides is not layering. Default 5 (the CFTC cases: 10-50 times, halved
    /// since the layered volume is measured at the execution, before a wall grows).
    pub min_size_ratio: f64,
    /// A layer is filled at most this share of its size. Default 0.1.
    pub max_fill_share: f64,
    /// Once the account has traded on the other side, its layers may together execute at most
    /// this share of their quantity: the layers must stay mostly unexecuted (Sarao's were
    /// almost never executed). Executions lower the score in proportion; beyond this share the
    /// episode is no layering, and an alert already raised is retracted. Default 0.5.
    pub max_executed_share: f64,
    /// Raise the alert once enough layers were cancelled and no later cancel can count, while
    /// other layers still rest, and correct it (amend, downgrade or retract, with the same id)
    /// when the episode ends; when false, the episode is judged once, when its last layer is
    /// gone or its window ends (up to `window` after the trade). Default true.
    pub early_alerts: bool,
    /// Longest time from the opposite-side execution to the last layer's cancel. Default 20 min
    /// (RedDeer's layering window).
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Longest time from the account's latest execution on the other side to a layer's cancel
    /// for the layer to count: layers pulled once the trade is done. Default 5 s (CFTC: spoof
    /// orders cancelled 2.3 s after the genuine fill on average).
    #[serde(with = "humantime_serde")]
    pub max_cancel_after_fill: Duration,
}

impl Default for LayeringConfig {
    fn default() -> Self {
        LayeringConfig {
            enabled: true,
            min_layers: 3,
            min_levels_ahead: 1,
            levels: 5,
            min_depth_share: 0.2,
            min_size_ratio: 5.0,
            max_fill_share: 0.1,
            max_executed_share: 0.5,
            early_alerts: true,
            window: Duration::from_secs(20 * 60),
            max_cancel_after_fill: Duration::from_secs(5),
        }
    }
}

/// Score cut-offs of the tiers: an alert is in the highest tier whose cut-off its score
/// reaches, and `info` below `low`.
///
/// The defaults are the scores the built-in rules give at 1, 1.5, 3 and 10 times their limit
/// ([`crate::model::alert::score_from_excess`], rounded down), so that a limit breach's tier
/// matches its severity unless the cut-offs are changed.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TierCutoffs {
    /// Lowest score of `low`. Default 50.
    pub low: f64,
    /// Lowest score of `medium`. Default 57.
    pub medium: f64,
    /// Lowest score of `high`. Default 69.
    pub high: f64,
    /// Lowest score of `critical`. Default 90.
    pub critical: f64,
}

impl Default for TierCutoffs {
    fn default() -> Self {
        TierCutoffs { low: 50.0, medium: 57.0, high: 69.0, critical: 90.0 }
    }
}

impl TierCutoffs {
    /// The tier of `score`.
    pub fn tier(&self, score: f64) -> crate::model::Tier {
        use crate::model::Tier;
        if score >= self.critical {
            Tier::Critical
        } else if score >= self.high {
            Tier::High
        } else if score >= self.medium {
            Tier::Medium
        } else if score >= self.low {
            Tier::Low
        } else {
            Tier::Info
        }
    }

    fn validate(&self, name: &str) -> Result<(), String> {
        let cuts = [self.low, self.medium, self.high, self.critical];
        if cuts.iter().any(|c| !c.is_finite()) || cuts.windows(2).any(|w| w[0] > w[1]) {
            return Err(format!("{name}: the cut-offs must be numbers with low <= medium <= high <= critical"));
        }
        Ok(())
    }
}

/// What an override of the alert manager's defaults may change, per rule or per desk.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertPolicyOverride {
    /// Tier cut-offs.
    pub tiers: Option<TierCutoffs>,
    /// Grouping horizon.
    #[serde(with = "humantime_serde")]
    pub group_horizon: Option<Duration>,
}

/// Where notices go: the first alert of each group and each group's summary, when they match.
/// An empty list matches everything.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The route's name: its file is `notices_NAME.jsonl` in the output folder.
    pub name: String,
    /// Tiers sent on the route. Default: every tier but `info`.
    #[serde(default = "notified_tiers")]
    pub tiers: Vec<String>,
    /// Rules sent on the route.
    #[serde(default)]
    pub rules: Vec<String>,
    /// Desks sent on the route.
    #[serde(default)]
    pub desks: Vec<String>,
    /// Also deliver the route's notices to a webhook, as PagerDuty Events API v2 events.
    #[serde(default)]
    pub webhook: Option<WebhookConfig>,
    /// Also publish the route's notices to this Kafka topic (on `kafka.brokers`), keyed by
    /// the alert, group or case id.
    #[serde(default)]
    pub kafka_topic: Option<String>,
}

/// A webhook that receives a route's notices as PagerDuty Events API v2 events
/// (`docs/alerts.md`), with retries and an outbox.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The endpoint: `https://` (or `http://` on the loopback interface only, for tests and
    /// local relays).
    pub url: String,
    /// The integration's routing key.
    pub routing_key: String,
    /// PEM file of the certificate authorities to trust instead of the bundled Mozilla roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// How long one request may take. Default 10 s.
    #[serde(default = "webhook_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Attempts per event before it is given up on for this run (it stays in the outbox).
    /// Default 8.
    #[serde(default = "webhook_attempts")]
    pub max_attempts: u32,
    /// The first wait between attempts, doubled after each failure up to 30 s. Default 500 ms.
    #[serde(default = "webhook_backoff", with = "humantime_serde")]
    pub backoff: Duration,
    /// How long the end of a run waits for undelivered events. Default 60 s.
    #[serde(default = "webhook_drain", with = "humantime_serde")]
    pub drain_timeout: Duration,
}

fn webhook_timeout() -> Duration {
    Duration::from_secs(10)
}

fn webhook_attempts() -> u32 {
    8
}

fn webhook_backoff() -> Duration {
    Duration::from_millis(500)
}

fn webhook_drain() -> Duration {
    Duration::from_secs(60)
}

/// Whether `url` is encrypted (`https://`), or plain `http://` to the loopback interface: a
/// host that is an address in 127.0.0.0/8, `[::1]` or `localhost` (a name such as
/// `127.0.0.1.example.com` is not).
pub fn encrypted_or_loopback(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("https://") {
        return true;
    }
    let Some(rest) = lower.strip_prefix("http://") else { return false };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return false;
    }
    let host = if authority.starts_with('[') {
        authority.split(']').next().map(|h| format!("{h}]")).unwrap_or_default()
    } else {
        authority.split(':').next().unwrap_or("").to_string()
    };
    host == "localhost" || host == "[::1]" || host.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

/// Where live events come from and alerts go to on Kafka (`docs/kafka.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// The brokers to bootstrap from, `host:port` separated by commas.
    pub brokers: String,
    /// The topic the events are read from (each partition is an input of its own).
    #[serde(default)]
    pub topic: Option<String>,
    /// How each message is read: `jsonl` (one event in the canonical JSON schema), `fix`
    /// (one FIX drop-copy message) or `avro` (one event in Avro, Confluent wire format; see
    /// `[kafka.avro]`). Default `jsonl`.
    #[serde(default = "kafka_format")]
    pub format: KafkaFormat,
    /// Where the schemas of Avro messages come from (`format = "avro"`).
    #[serde(default)]
    pub avro: AvroConfig,
    /// Topics of reference data, read to their ends when the run starts and added after the
    /// reference files.
    #[serde(default)]
    pub reference: ReferenceTopics,
    /// The consumer group the read positions are committed for. Default `surveil`.
    #[serde(default = "kafka_group")]
    pub group: String,
    /// Read each partition up to the end it has when the run starts, then finish (a replay of
    /// what the topic holds); otherwise the run follows the topic until it is stopped.
    #[serde(default)]
    pub stop_at_end: bool,
    /// A partition with nothing new for this long stops holding the watermark back (live
    /// runs only; a run that stops at the end waits for every partition). Default 5 s.
    #[serde(default = "kafka_idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// How far behind the processed watermark committed positions stay, so that a restart
    /// replays the state the detectors hold (open orders, windows, the session's counts) and
    /// ends with the same alerts. Default 24 h: a restart replays the trading day.
    #[serde(default = "kafka_replay_horizon", with = "humantime_serde")]
    pub replay_horizon: Duration,
    /// How often read positions are committed during a run. Default 5 s.
    #[serde(default = "kafka_commit_interval", with = "humantime_serde")]
    pub commit_interval: Duration,
    /// How long a broker may take to answer (metadata, commits, flushes) before the run fails
    /// with an error instead of waiting on. Default 30 s.
    #[serde(default = "kafka_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// The topic every alert is published to, keyed by its id (idempotent producer; a
    /// compacted topic keeps one record per alert).
    #[serde(default)]
    pub alerts_topic: Option<String>,
    /// The topic every message that cannot be read is published to, with the reason and its
    /// source topic, partition and offset in headers.
    #[serde(default)]
    pub dead_letter_topic: Option<String>,
    /// A topic of case actions (the JSON of a case-actions file line per message), read to
    /// its end when the run starts, like `cases.actions` files.
    #[serde(default)]
    pub case_actions_topic: Option<String>,
    /// Publish the alerts, the routes' notices and the dead letters, and commit the positions
    /// read, in Kafka transactions under this id (KIP-98): a `read_committed` consumer of the
    /// output topics sees a run's records only together with the positions they were read up
    /// to, and never what a killed run published after its last commit. Off by default (the
    /// idempotent producers and the alert ids as keys give the exactly-once effect). Needs
    /// `topic`; one id per running job (a second run with the same id fences the first).
    #[serde(default)]
    pub transactional_id: Option<String>,
    /// librdkafka properties passed through as they are (`security.protocol`,
    /// `ssl.ca.location`, `sasl.mechanisms`, ...), for the consumer and the producers.
    #[serde(default)]
    pub properties: std::collections::BTreeMap<String, String>,
}

/// Whether `topic` can name a Kafka topic: 1 to 249 letters, digits, '.', '_' or '-'.
fn valid_topic(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= 249
        && topic.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// How a Kafka message is read.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KafkaFormat {
    /// One event in the canonical JSON schema.
    Jsonl,
    /// One FIX 4.2/4.4 drop-copy message.
    Fix,
    /// One event in Avro, in the Confluent wire format (a zero byte, the schema id, the datum).
    Avro,
}

/// Topics of reference data (`[kafka.reference]`): each message is CSV text in the format of
/// the kind's reference file, a header and one or more rows.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceTopics {
    /// Instruments, as rows of `reference.instruments`.
    #[serde(default)]
    pub instruments: Option<String>,
    /// Accounts, as rows of `reference.accounts`.
    #[serde(default)]
    pub accounts: Option<String>,
    /// Ownership changes over event time, as rows of `reference.ownership`.
    #[serde(default)]
    pub ownership: Option<String>,
    /// What baskets (ETFs, index funds) hold over event time, as rows of `reference.baskets`:
    /// read at the start of a run only (front running is routed by the families they make).
    #[serde(default)]
    pub baskets: Option<String>,
}

/// Where the writer schemas of Avro messages come from: a schema registry, a local file, or,
/// with neither, the bundled event schema (`surveil::kafka::avro::EVENT_SCHEMA`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AvroConfig {
    /// A schema registry speaking the Confluent REST API (`https://…`, or `http://` on the
    /// loopback interface); each schema id is asked for once per run.
    #[serde(default)]
    pub registry: Option<String>,
    /// Certificate authorities (PEM) to trust for an `https://` registry instead of the
    /// bundled Mozilla roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// A local Avro schema (`.avsc`), the offline alternative to a registry.
    #[serde(default)]
    pub schema_file: Option<PathBuf>,
    /// The one schema id the local (or bundled) schema is for; other ids go to the registry,
    /// or are refused without one. Without it the local schema reads every id.
    #[serde(default)]
    pub schema_id: Option<u32>,
}

fn kafka_format() -> KafkaFormat {
    KafkaFormat::Jsonl
}

fn kafka_group() -> String {
    "surveil".into()
}

fn kafka_idle_timeout() -> Duration {
    Duration::from_secs(5)
}

fn kafka_replay_horizon() -> Duration {
    Duration::from_secs(24 * 3600)
}

fn kafka_commit_interval() -> Duration {
    Duration::from_secs(5)
}

fn kafka_timeout() -> Duration {
    Duration::from_secs(30)
}

impl KafkaConfig {
    /// Settings for `brokers` with every default.
    pub fn new(brokers: &str) -> KafkaConfig {
        KafkaConfig {
            brokers: brokers.into(),
            topic: None,
            format: kafka_format(),
            group: kafka_group(),
            stop_at_end: false,
            idle_timeout: kafka_idle_timeout(),
            replay_horizon: kafka_replay_horizon(),
            commit_interval: kafka_commit_interval(),
            timeout: kafka_timeout(),
            alerts_topic: None,
            dead_letter_topic: None,
            case_actions_topic: None,
            transactional_id: None,
            properties: Default::default(),
            avro: AvroConfig::default(),
            reference: ReferenceTopics::default(),
        }
    }

    /// Whether the connection is encrypted (`security.protocol` ssl or sasl_ssl).
    pub fn is_encrypted(&self) -> bool {
        self.properties
            .get("security.protocol")
            .is_some_and(|p| matches!(p.to_ascii_lowercase().as_str(), "ssl" | "sasl_ssl"))
    }

    fn validate(&self) -> Result<(), String> {
        let brokers: Vec<&str> = self.brokers.split(',').map(str::trim).filter(|b| !b.is_empty()).collect();
        if brokers.is_empty() {
            return Err("kafka.brokers is empty: give host:port of at least one broker".into());
        }
        if !self.is_encrypted()
            && let Some(remote) = brokers.iter().find(|b| !encrypted_or_loopback(&format!("http://{b}")))
        {
            return Err(format!(
                "kafka.brokers {remote:?}: trading data leaves the machine only encrypted; set \
                 kafka.properties.\"security.protocol\" to \"ssl\" or \"sasl_ssl\" (plain connections are \
                 accepted on the loopback interface only)"
            ));
        }
        for (name, topic) in [
            ("topic", &self.topic),
            ("alerts_topic", &self.alerts_topic),
            ("dead_letter_topic", &self.dead_letter_topic),
            ("case_actions_topic", &self.case_actions_topic),
            ("reference.instruments", &self.reference.instruments),
            ("reference.accounts", &self.reference.accounts),
            ("reference.ownership", &self.reference.ownership),
        ] {
            if let Some(topic) = topic
                && !valid_topic(topic)
            {
                return Err(format!(
                    "kafka.{name} {topic:?}: a topic name is 1 to 249 letters, digits, '.', '_' or '-'"
                ));
            }
        }
        let reference = [&self.reference.instruments, &self.reference.accounts, &self.reference.ownership];
        if self.topic.is_some() && reference.contains(&&self.topic) {
            return Err("kafka.topic is also a kafka.reference topic: a topic holds events or reference data".into());
        }
        if self.topic.is_some() && (self.topic == self.alerts_topic || self.topic == self.dead_letter_topic) {
            return Err("kafka.topic is also an output topic: the run would read what it writes".into());
        }
        if self.group.trim().is_empty() {
            return Err("kafka.group is empty".into());
        }
        if self.timeout.is_zero() || self.commit_interval.is_zero() {
            return Err("kafka.timeout and kafka.commit_interval must be positive".into());
        }
        if let Some(url) = &self.avro.registry
            && !encrypted_or_loopback(url)
        {
            return Err(format!(
                "kafka.avro.registry {url:?}: give an https:// address (plain http:// is accepted on the loopback \
                 interface only)"
            ));
        }
        if self.avro.registry.is_some() && self.avro.schema_file.is_some() && self.avro.schema_id.is_none() {
            return Err("kafka.avro: with both a registry and a schema_file, schema_id says which id the file \
                        is for"
                .into());
        }
        for reserved in
            ["bootstrap.servers", "group.id", "enable.auto.commit", "enable.auto.offset.store", "transactional.id"]
        {
            if self.properties.contains_key(reserved) {
                return Err(format!(
                    "kafka.properties.{reserved} is set by surveil itself (kafka.brokers, kafka.group, \
                     kafka.transactional_id, and commits only after the alerts are written)"
                ));
            }
        }
        if let Some(id) = &self.transactional_id {
            if id.trim().is_empty() {
                return Err("kafka.transactional_id is empty".into());
            }
            if self.topic.is_none() {
                return Err("kafka.transactional_id needs kafka.topic: a transaction commits the positions read \
                            with what was published from them"
                    .into());
            }
        }
        Ok(())
    }
}

impl WebhookConfig {
    fn validate(&self, route: &str) -> Result<(), String> {
        if !encrypted_or_loopback(&self.url) {
            return Err(format!(
                "alerts.routes.{route}.webhook.url {:?}: alerts leave the machine only encrypted (https://); \
                 plain http:// is accepted on the loopback interface only",
                self.url
            ));
        }
        if self.routing_key.trim().is_empty() {
            return Err(format!("alerts.routes.{route}.webhook.routing_key is empty"));
        }
        if self.max_attempts == 0 {
            return Err(format!("alerts.routes.{route}.webhook.max_attempts must be at least 1"));
        }
        Ok(())
    }
}

fn notified_tiers() -> Vec<String> {
    ["low", "medium", "high", "critical"].map(String::from).to_vec()
}

/// The alert manager: every alert gets a tier from its score, repeats of a rule on one key
/// (rule, instrument, account) within a horizon fold into one notice, and notices are routed.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    /// Tier cut-offs.
    pub tiers: TierCutoffs,
    /// Repeats within this horizon after a key's first alert fold into its group; 0 turns
    /// grouping off. Default 15 min.
    #[serde(with = "humantime_serde")]
    pub group_horizon: Duration,
    /// Occurrences listed in a group's summary (the count is always exact). Default 1000.
    pub max_listed: usize,
    /// How long (event time) the manager remembers an alert's group, tier and routes, so that
    /// a detector's later correction of it (same id) joins the same group and case and reaches
    /// the people the alert reached. A later correction goes to the routes of the tier the
    /// alert had. Default 1 h (layering corrects within its 20 min window).
    #[serde(with = "humantime_serde")]
    pub correction_horizon: Duration,
    /// Overrides per rule name.
    pub rules: BTreeMap<String, AlertPolicyOverride>,
    /// Overrides per desk: a setting a desk sets wins over the rule's.
    pub desks: BTreeMap<String, AlertPolicyOverride>,
    /// Routes; by default one route, `all`, with every tier but `info`.
    pub routes: Vec<RouteConfig>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            tiers: TierCutoffs::default(),
            group_horizon: Duration::from_secs(15 * 60),
            max_listed: 1000,
            correction_horizon: Duration::from_secs(60 * 60),
            rules: BTreeMap::new(),
            desks: BTreeMap::new(),
            routes: vec![RouteConfig {
                name: "all".into(),
                tiers: notified_tiers(),
                rules: vec![],
                desks: vec![],
                webhook: None,
                kafka_topic: None,
            }],
        }
    }
}

impl AlertsConfig {
    fn validate(&self) -> Result<(), String> {
        self.tiers.validate("alerts.tiers")?;
        nanos("alerts.group_horizon", self.group_horizon, Duration::ZERO, MAX_GROUP_HORIZON)?;
        nanos("alerts.correction_horizon", self.correction_horizon, Duration::ZERO, MAX_WINDOW)?;
        for (kind, map) in [("rules", &self.rules), ("desks", &self.desks)] {
            for (name, o) in map {
                if let Some(t) = &o.tiers {
                    t.validate(&format!("alerts.{kind}.{name}.tiers"))?;
                }
                if let Some(h) = o.group_horizon {
                    nanos(&format!("alerts.{kind}.{name}.group_horizon"), h, Duration::ZERO, MAX_GROUP_HORIZON)?;
                }
            }
        }
        if self.routes.len() > 64 {
            return Err("alerts.routes: at most 64 routes".into());
        }
        let mut names = std::collections::BTreeSet::new();
        for route in &self.routes {
            let valid =
                !route.name.is_empty() && route.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !valid {
                return Err(format!(
                    "alerts.routes: route name {:?} must be letters, digits, '_' or '-' (it names a file)",
                    route.name
                ));
            }
            if !names.insert(route.name.to_ascii_lowercase()) {
                return Err(format!(
                    "alerts.routes: two routes are named {:?} (names that differ only in case name one file on some file systems)",
                    route.name
                ));
            }
            if let Some(webhook) = &route.webhook {
                webhook.validate(&route.name)?;
            }
            for tier in &route.tiers {
                if crate::model::Tier::parse(tier).is_none() {
                    return Err(format!(
                        "alerts.routes.{}: unknown tier {tier:?} (info, low, medium, high, critical)",
                        route.name
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Cases: a group of alerts that reaches `open_from` opens a case, which escalates one tier
/// each time its tier's deadline passes before anyone acknowledges it.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CasesConfig {
    /// Whether cases are kept at all. Default true.
    pub enabled: bool,
    /// The lowest tier that opens a case. Default `low` (an `info` alert is recorded, nobody
    /// is told, so it opens none).
    pub open_from: crate::model::Tier,
    /// How long each tier has to be acknowledged.
    pub deadlines: CaseDeadlines,
    /// Case-actions files (JSON Lines, see [`crate::cases`]) replayed with the run.
    pub actions: Vec<PathBuf>,
}

impl Default for CasesConfig {
    fn default() -> Self {
        CasesConfig {
            enabled: true,
            open_from: crate::model::Tier::Low,
            deadlines: CaseDeadlines::default(),
            actions: Vec::new(),
        }
    }
}

impl CasesConfig {
    fn validate(&self) -> Result<(), String> {
        if self.open_from == crate::model::Tier::Info {
            return Err("cases.open_from: info alerts are recorded and nobody is told, so they cannot open cases \
                        (low, medium, high or critical)"
                .into());
        }
        let d = &self.deadlines;
        for (name, deadline) in [("low", d.low), ("medium", d.medium), ("high", d.high), ("critical", d.critical)] {
            nanos(&format!("cases.deadlines.{name}"), deadline, Duration::from_secs(1), MAX_CASE_DEADLINE)?;
        }
        Ok(())
    }
}

/// Acknowledgement deadlines by tier.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CaseDeadlines {
    /// Default 1 day.
    #[serde(with = "humantime_serde")]
    pub low: Duration,
    /// Default 4 hours.
    #[serde(with = "humantime_serde")]
    pub medium: Duration,
    /// Default 1 hour.
    #[serde(with = "humantime_serde")]
    pub high: Duration,
    /// Default 15 minutes.
    #[serde(with = "humantime_serde")]
    pub critical: Duration,
}

impl Default for CaseDeadlines {
    fn default() -> Self {
        CaseDeadlines {
            low: Duration::from_secs(24 * 3600),
            medium: Duration::from_secs(4 * 3600),
            high: Duration::from_secs(3600),
            critical: Duration::from_secs(15 * 60),
        }
    }
}

impl CaseDeadlines {
    /// The deadline of `tier` in nanoseconds (`info` has the `low` deadline).
    pub fn of(&self, tier: crate::model::Tier) -> u64 {
        use crate::model::Tier;
        let d = match tier {
            Tier::Info | Tier::Low => self.low,
            Tier::Medium => self.medium,
            Tier::High => self.high,
            Tier::Critical => self.critical,
        };
        nanos_of(d)
    }
}

/// The longest acknowledgement deadline: 30 days.
const MAX_CASE_DEADLINE: Duration = Duration::from_secs(30 * 24 * 3600);

/// The Parquet archive (`docs/archive.md`): a folder, or S3-compatible object storage.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveConfig {
    /// A folder, or `s3://BUCKET[/PREFIX]`.
    pub url: String,
    /// The S3 endpoint of a store other than AWS (MinIO, Ceph...): `https://`, or `http://` on
    /// the loopback interface only. Credentials come from the usual `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY` environment variables.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The S3 region. Default `us-east-1`.
    #[serde(default = "archive_region")]
    pub region: String,
    /// PEM file of the certificate authorities to trust instead of the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// How long one request may take. Default 30 s.
    #[serde(default = "archive_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Attempts per request. Default 8.
    #[serde(default = "webhook_attempts")]
    pub max_attempts: u32,
    /// The first wait between attempts, doubled after each failure up to 30 s. Default 500 ms.
    #[serde(default = "webhook_backoff", with = "humantime_serde")]
    pub backoff: Duration,
    /// Rows per row group. Default 65536.
    #[serde(default = "archive_row_group")]
    pub row_group_rows: usize,
    /// Rows per file, at most; a partition with more rows gets more files. Default 4194304.
    #[serde(default = "archive_file_rows")]
    pub file_rows: usize,
    /// Rows that may wait for their row group on one worker (per table): past it, the
    /// partitions with the most waiting rows are written as smaller row groups. Default
    /// 262144 (about 40 MB of events).
    #[serde(default = "archive_buffered_rows")]
    pub max_buffered_rows: usize,
}

fn archive_buffered_rows() -> usize {
    1 << 18
}

fn archive_region() -> String {
    "us-east-1".into()
}

fn archive_timeout() -> Duration {
    Duration::from_secs(30)
}

fn archive_row_group() -> usize {
    65_536
}

fn archive_file_rows() -> usize {
    4 << 20
}

impl ArchiveConfig {
    /// An archive in the folder `dir`, with the default settings.
    pub fn local(dir: &Path) -> ArchiveConfig {
        ArchiveConfig {
            url: dir.display().to_string(),
            endpoint: None,
            region: archive_region(),
            ca_file: None,
            timeout: archive_timeout(),
            max_attempts: webhook_attempts(),
            backoff: webhook_backoff(),
            row_group_rows: archive_row_group(),
            file_rows: archive_file_rows(),
            max_buffered_rows: archive_buffered_rows(),
        }
    }

    /// Whether the archive is in object storage.
    pub fn is_object_store(&self) -> bool {
        self.url.starts_with("s3://")
    }

    fn resolve(&mut self, base: &Path) {
        if !self.is_object_store() && Path::new(&self.url).is_relative() {
            self.url = base.join(&self.url).display().to_string();
        }
        if let Some(ca) = &mut self.ca_file
            && ca.is_relative()
        {
            *ca = base.join(&*ca);
        }
    }

    fn validate(&self) -> Result<(), String> {
        if self.url.is_empty() {
            return Err("archive.url: a folder or s3://BUCKET[/PREFIX]".into());
        }
        if self.url.contains("://") && !self.is_object_store() {
            return Err(format!("archive.url {:?}: a folder or s3://BUCKET[/PREFIX]", self.url));
        }
        if let Some(endpoint) = &self.endpoint
            && !encrypted_or_loopback(endpoint)
        {
            return Err(format!(
                "archive.endpoint {endpoint:?}: trading data leaves the machine only encrypted (https://); plain \
                 http:// is accepted on the loopback interface only"
            ));
        }
        if self.row_group_rows == 0 || self.file_rows < self.row_group_rows {
            return Err("archive: row_group_rows must be at least 1 and file_rows at least row_group_rows".into());
        }
        if self.max_attempts == 0 || self.timeout.is_zero() {
            return Err("archive: max_attempts and timeout must be positive".into());
        }
        Ok(())
    }
}

/// A time-series database speaking the InfluxDB 1.x line protocol over HTTP (InfluxDB, or
/// VictoriaMetrics): the alerts and case changes as points (`docs/alerts.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeSeriesConfig {
    /// The server: `https://`, or `http://` on the loopback interface only.
    pub url: String,
    /// The database.
    pub database: String,
    /// User name, if the server checks.
    #[serde(default)]
    pub username: Option<String>,
    /// Password, if the server checks.
    #[serde(default)]
    pub password: Option<String>,
    /// PEM file of the certificate authorities to trust instead of the bundled Mozilla roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Points per write. Default 5000.
    #[serde(default = "timeseries_batch")]
    pub batch_points: usize,
    /// How long one request may take. Default 10 s.
    #[serde(default = "webhook_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Attempts per write before its points are set aside for this run. Default 8.
    #[serde(default = "webhook_attempts")]
    pub max_attempts: u32,
    /// The first wait between attempts, doubled after each failure up to 30 s. Default 500 ms.
    #[serde(default = "webhook_backoff", with = "humantime_serde")]
    pub backoff: Duration,
    /// How long the end of a run waits for unwritten points. Default 60 s.
    #[serde(default = "webhook_drain", with = "humantime_serde")]
    pub drain_timeout: Duration,
}

fn timeseries_batch() -> usize {
    5000
}

impl TimeSeriesConfig {
    fn validate(&self) -> Result<(), String> {
        if !encrypted_or_loopback(&self.url) {
            return Err(format!(
                "timeseries.url {:?}: trading data leaves the machine only encrypted (https://); plain \
                 http:// is accepted on the loopback interface only",
                self.url
            ));
        }
        if self.database.trim().is_empty() {
            return Err("timeseries.database is empty".into());
        }
        if self.batch_points == 0 || self.max_attempts == 0 {
            return Err("timeseries.batch_points and timeseries.max_attempts must be at least 1".into());
        }
        Ok(())
    }
}

/// Where `surveil report submit` files a finished report: a regulator's endpoint over HTTPS,
/// or a folder another system collects from (`docs/reports.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmissionConfig {
    /// The endpoint the report is posted to: `https://` (or `http://` on the loopback
    /// interface only).
    #[serde(default)]
    pub url: Option<String>,
    /// Or a folder the report is written to (atomically, under a name made of the case and the
    /// report's digest).
    #[serde(default)]
    pub drop_dir: Option<PathBuf>,
    /// PEM file of the certificate authorities to trust instead of the bundled Mozilla roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The ledger of submissions, relative to the configuration's folder. Default
    /// `submissions.jsonl`.
    #[serde(default = "ledger_file")]
    pub ledger: PathBuf,
    /// The environment variable holding the bearer token sent as `Authorization`, if the
    /// endpoint needs one (the token itself is never in the configuration).
    #[serde(default)]
    pub token_variable: Option<String>,
    /// The field of the endpoint's JSON answer that holds the receipt. Default `receipt`.
    #[serde(default = "receipt_field")]
    pub receipt_field: String,
    /// How long one request may take. Default 30 s.
    #[serde(default = "submission_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Attempts before the submission is given up on (it can be run again: the same report
    /// carries the same idempotency key). Default 5.
    #[serde(default = "submission_attempts")]
    pub max_attempts: u32,
    /// The first wait between attempts, doubled after each failure up to 30 s. Default 1 s.
    #[serde(default = "submission_backoff", with = "humantime_serde")]
    pub backoff: Duration,
}

fn ledger_file() -> PathBuf {
    PathBuf::from("submissions.jsonl")
}

fn receipt_field() -> String {
    "receipt".into()
}

fn submission_timeout() -> Duration {
    Duration::from_secs(30)
}

fn submission_attempts() -> u32 {
    5
}

fn submission_backoff() -> Duration {
    Duration::from_secs(1)
}

impl SubmissionConfig {
    fn validate(&self) -> Result<(), String> {
        match (&self.url, &self.drop_dir) {
            (Some(_), Some(_)) | (None, None) => {
                return Err("submission: give either url (an endpoint) or drop_dir (a folder), one of them".into());
            }
            (Some(url), None) if !encrypted_or_loopback(url) => {
                return Err(format!(
                    "submission.url {url:?}: reports leave the machine only encrypted (https://); plain http:// \
                     is accepted on the loopback interface only"
                ));
            }
            _ => {}
        }
        if self.max_attempts == 0 {
            return Err("submission.max_attempts must be at least 1".into());
        }
        if self.receipt_field.trim().is_empty() {
            return Err("submission.receipt_field is empty".into());
        }
        Ok(())
    }
}

/// Section 1 of a STOR (Delegated Regulation (EU) 2016/957, Annex): who reports, for
/// `surveil report stor`. What is left empty is listed as missing in every report.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct StorConfig {
    /// The natural person submitting: name.
    pub person_name: String,
    /// Their position.
    pub person_position: String,
    /// The reporting entity's name.
    pub entity_name: String,
    /// Its legal form.
    pub legal_form: String,
    /// Its Legal Entity Identifier (ISO 17442: 20 characters with check digits).
    pub lei: String,
    /// Its address.
    pub address: String,
    /// The capacity it acts in: executing orders on behalf of clients, dealing on own account,
    /// operating a trading venue, systematic internaliser, ...
    pub acting_capacity: String,
    /// The type of trading activity and instruments it deals in.
    pub trading_activity: String,
    /// Its relationship with the person reported (client, employee, none, ...).
    pub relationship_with_subject: String,
    /// Contact for further requests: name.
    pub contact_name: String,
    /// Their position.
    pub contact_position: String,
    /// Their professional e-mail.
    pub contact_email: String,
    /// A STOR filed longer than this after the suspicious activity must explain the delay
    /// (Delegated Regulation (EU) 2016/957, Article 6(2)). Default 1 day.
    #[serde(with = "humantime_serde", skip_serializing)]
    pub explain_delay_after: Option<Duration>,
    /// How much of the market before the first and after the last suspicious order or
    /// transaction the report's chart shows (read again from the run's inputs). Default 5
    /// minutes; 0 shows the activity alone.
    #[serde(with = "humantime_serde", skip_serializing)]
    pub market_window: Option<Duration>,
}

impl StorConfig {
    fn validate(&self) -> Result<(), String> {
        if !self.lei.is_empty() && !valid_lei(&self.lei) {
            return Err(format!(
                "stor.lei {:?} is not a Legal Entity Identifier (ISO 17442: 18 letters or digits and two check digits)",
                self.lei
            ));
        }
        Ok(())
    }
}

/// Whether `lei` is an ISO 17442 Legal Entity Identifier: 20 upper-case letters and digits
/// whose ISO 7064 MOD 97-10 check holds (letters count as 10 to 35; the number mod 97 is 1).
pub fn valid_lei(lei: &str) -> bool {
    if lei.len() != 20 || !lei.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()) {
        return false;
    }
    let mut remainder = 0u32;
    for b in lei.bytes() {
        let value = if b.is_ascii_digit() { u32::from(b - b'0') } else { u32::from(b - b'A') + 10 };
        remainder = if value >= 10 { (remainder * 100 + value) % 97 } else { (remainder * 10 + value) % 97 };
    }
    remainder == 1
}

/// The audit trail's signatures.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// A file holding the Ed25519 signing key's 32-byte seed in hex (`surveil audit keygen`);
    /// without it, the key in the environment variable `SURVEIL_AUDIT_KEY`, if set. With a key,
    /// the log carries signed checkpoints.
    pub signing_key: Option<PathBuf>,
    /// Records between signed checkpoints (the log's end is always signed). Default 10000.
    pub checkpoint_every: u64,
    /// A file holding the 256-bit key (64 hex digits, `surveil audit keygen --encryption`) that
    /// encrypts the audit trail at rest; without it, the key in the environment variable
    /// `SURVEIL_ENCRYPTION_KEY`, if set. Without either, the log is plain text.
    pub encryption_key: Option<PathBuf>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig { signing_key: None, checkpoint_every: 10_000, encryption_key: None }
    }
}

/// The environment variable that may hold the audit signing key.
pub const AUDIT_KEY_VARIABLE: &str = "SURVEIL_AUDIT_KEY";

/// The longest grouping horizon: a week, past any trading session.
const MAX_GROUP_HORIZON: Duration = Duration::from_secs(7 * 24 * 3600);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_complete_example_in_the_docs_parses() {
        let docs = include_str!("../docs/configuration.md");
        let example = docs.split("## A complete example").nth(1).expect("section");
        let toml = example.split("```toml").nth(1).and_then(|t| t.split("```").next()).expect("toml block");
        let config = Config::parse(toml).expect("the documented example is valid");
        let defaults = Config::default();
        assert_eq!(config.rules.anomaly.z_threshold, defaults.rules.anomaly.z_threshold);
        assert_eq!(config.rules.anomaly.scopes, defaults.rules.anomaly.scopes);
        assert_eq!(config.features.window, defaults.features.window);
        assert_eq!(config.alerts.tiers, defaults.alerts.tiers);
        assert_eq!(config.alerts.group_horizon, defaults.alerts.group_horizon);
        assert_eq!(config.alerts.routes.len(), 1);
        assert_eq!(config.cases.deadlines.of(crate::model::Tier::High), 3_600_000_000_000);
        assert_eq!(config.stor.lei, "5493001KJTIIGC8Y1R12");
    }

    #[test]
    fn avro_schemas_come_from_a_reachable_registry_or_a_file_with_its_id() {
        let parse =
            |avro: &str| Config::parse(&format!("[kafka]\nbrokers = \"127.0.0.1:9092\"\nformat = \"avro\"\n{avro}"));
        let config = parse("[kafka.avro]\nregistry = \"http://127.0.0.1:8081\"").expect("a loopback registry");
        let kafka = config.kafka.expect("kafka");
        assert_eq!((kafka.format, kafka.avro.registry.as_deref()), (KafkaFormat::Avro, Some("http://127.0.0.1:8081")));
        assert!(parse("").is_ok(), "the bundled schema, without a registry");
        let remote =
            parse("[kafka.avro]\nregistry = \"http://registry.example.com\"").expect_err("plain text off the machine");
        assert!(remote.to_string().contains("kafka.avro.registry"), "{remote}");
        assert!(parse("[kafka.avro]\nregistry = \"https://registry.example.com\"").is_ok());
        let both = parse("[kafka.avro]\nregistry = \"http://127.0.0.1:8081\"\nschema_file = \"e.avsc\"")
            .expect_err("which id is the file's?");
        assert!(both.to_string().contains("schema_id"), "{both}");
        assert!(
            parse("[kafka.avro]\nregistry = \"http://127.0.0.1:8081\"\nschema_file = \"e.avsc\"\nschema_id = 4")
                .is_ok()
        );
    }

    #[test]
    fn transactions_need_a_topic_and_an_id_of_surveil_s_own() {
        let parse = |kafka: &str| Config::parse(&format!("[kafka]\nbrokers = \"127.0.0.1:9092\"\n{kafka}"));
        let config = parse("topic = \"events\"\ntransactional_id = \"job-1\"").expect("a transactional job");
        assert_eq!(config.kafka.and_then(|k| k.transactional_id).as_deref(), Some("job-1"));
        let no_topic = parse("transactional_id = \"job-1\"").expect_err("no positions to commit");
        assert!(no_topic.to_string().contains("needs kafka.topic"), "{no_topic}");
        let empty = parse("topic = \"events\"\ntransactional_id = \" \"").expect_err("an empty id");
        assert!(empty.to_string().contains("transactional_id is empty"), "{empty}");
        let passed = parse("topic = \"events\"\n[kafka.properties]\n\"transactional.id\" = \"x\"")
            .expect_err("set through transactional_id");
        assert!(passed.to_string().contains("transactional.id"), "{passed}");
    }

    #[test]
    fn plain_http_only_reaches_the_loopback() {
        for url in [
            "https://events.example.com/v2",
            "http://127.0.0.1:8086",
            "http://127.1.2.3/x",
            "http://localhost/x",
            "http://[::1]:80/",
        ] {
            assert!(encrypted_or_loopback(url), "{url}");
        }
        for url in [
            "http://127.0.0.1.evil.example/",
            "http://localhost.evil.example/",
            "http://example.com/?x=http://127.0.0.1",
            "http://user@127.0.0.1.evil.example/",
            "http://127.0.0.1@evil.example/",
            "ftp://127.0.0.1/",
            "http://10.0.0.1/",
        ] {
            assert!(!encrypted_or_loopback(url), "{url}");
        }
    }

    #[test]
    fn lei_check_digits_and_case_settings_are_checked() {
        assert!(valid_lei("5493001KJTIIGC8Y1R12"));
        assert!(valid_lei("529900T8BM49AURSDO55"));
        assert!(!valid_lei("5493001KJTIIGC8Y1R13"), "a wrong check digit");
        assert!(!valid_lei("5493001kjtiigc8y1r12"), "lower case");
        assert!(!valid_lei("5493001KJTIIGC8Y1R1"), "19 characters");
        let error = Config::parse("[stor]\nlei = \"5493001KJTIIGC8Y1R13\"").expect_err("a bad LEI");
        assert!(error.contains("stor.lei"), "{error}");
        assert!(Config::parse("[cases]\nopen_from = \"info\"").is_err());
        let error = Config::parse("[cases.deadlines]\nhigh = \"0s\"").expect_err("no deadline");
        assert!(error.contains("cases.deadlines.high"), "{error}");
        assert!(Config::parse("[cases.deadlines]\ncritical = \"31d\"").is_err());
        let config = Config::parse("[cases]\nopen_from = \"high\"\n[cases.deadlines]\nlow = \"2d\"").expect("valid");
        assert_eq!(config.cases.open_from, crate::model::Tier::High);
        assert_eq!(config.cases.deadlines.of(crate::model::Tier::Info), 2 * 86_400_000_000_000);
    }

    #[test]
    fn every_example_in_the_configuration_docs_parses() {
        let docs = include_str!("../docs/configuration.md");
        let blocks: Vec<&str> = docs.split("```toml").skip(1).filter_map(|block| block.split("```").next()).collect();
        assert!(blocks.len() >= 3, "the docs hold examples");
        for block in blocks {
            if let Err(error) = Config::parse(block) {
                panic!("a documented example does not parse: {error}\n{block}");
            }
        }
    }

    #[test]
    fn empty_text_gives_defaults() {
        let c = Config::parse("").expect("valid");
        assert_eq!(c.rules.order_limits.max_quantity, Limit::Max(100_000));
        assert_eq!(c.ingest.epoch, Duration::from_millis(1));
    }

    #[test]
    fn overrides_and_durations_parse() {
        let c = Config::parse(
            r#"
            [ingest]
            max_out_of_order = "250ms"
            [rules.order_limits]
            max_quantity = 10
            [rules.order_limits.instruments.AAPL]
            max_notional = "1000.50"
            [rules.order_to_trade]
            report_interval = "5m"
            "#,
        )
        .expect("valid");
        assert_eq!(c.ingest.max_out_of_order, Duration::from_millis(250));
        assert_eq!(c.rules.order_limits.instruments["AAPL"].max_notional, Some(Limit::Max("1000.50".into())));
        assert_eq!(c.rules.order_to_trade.report_interval, Some(Duration::from_secs(300)));
    }

    #[test]
    fn each_order_limit_can_be_switched_off_alone() {
        let c = Config::parse(
            r#"
            [rules.order_limits]
            max_notional = "off"
            [rules.order_limits.instruments.PENNY]
            max_quantity = "off"
            [rules.order_limits.instruments.BIG]
            max_notional = "250000"
            "#,
        )
        .expect("valid");
        let limits = &c.rules.order_limits;
        assert_eq!((&limits.max_quantity, &limits.max_notional), (&Limit::Max(100_000), &Limit::Off));
        assert_eq!(limits.instruments["PENNY"].max_quantity, Some(Limit::Off));
        assert_eq!(limits.instruments["PENNY"].max_notional, None);
        assert_eq!(limits.instruments["BIG"].max_notional, Some(Limit::Max("250000".into())));
    }

    #[test]
    fn mistakes_are_reported() {
        assert!(Config::parse("[rules.order_limits]\nmax_quantty = 3").is_err());
        assert!(Config::parse("[rules.order_limits]\nmax_notional = \"1e6\"").is_err());
        assert!(Config::parse("[rules.order_limits]\nmax_quantity = \"none\"").is_err());
        assert!(Config::parse("[rules.order_limits]\nmax_quantity = -1").is_err());
        assert!(Config::parse("[rules.order_limits]\nmax_notional = 5000000").is_err());
        assert!(Config::parse("[sessions]\ntimezone = \"Mars/Olympus\"").is_err());
    }

    #[test]
    fn limits_that_cannot_work_are_refused_with_the_key() {
        for (text, key) in [
            ("[rules.order_limits]\nmax_notional = \"-1\"", "max_notional"),
            ("[rules.order_limits]\nmax_notional = \"0\"", "max_notional"),
            ("[rules.order_limits]\nmax_quantity = 0", "max_quantity"),
            ("[rules.order_limits]\nmax_adv_share = 0.0", "rules.order_limits.max_adv_share"),
            ("[rules.order_limits]\nmax_adv_share = nan", "rules.order_limits.max_adv_share"),
            ("[rules.order_limits.instruments.X]\nmax_notional = \"-5\"", "instruments.X.max_notional"),
            ("[rules.order_to_trade]\nmax_count_ratio = nan", "max_count_ratio"),
            ("[rules.order_to_trade]\nmax_count_ratio = -1.0", "max_count_ratio"),
            ("[rules.order_to_trade]\nmax_volume_ratio = inf", "max_volume_ratio"),
            ("[rules.order_to_trade.instruments.X]\nmax_count_ratio = -2.0", "instruments.X.max_count_ratio"),
            ("[ingest]\nmax_out_of_order = \"600000000000d\"", "max_out_of_order"),
            ("[ingest]\nmax_out_of_order = \"2days\"", "max_out_of_order"),
            ("[ingest]\nmax_in_flight = 0", "max_in_flight"),
            ("[ingest]\nblock_size = 100", "block_size"),
            ("[ingest]\nbatch_records = 0", "batch_records"),
            ("[ingest]\nepoch = \"0s\"", "epoch"),
            ("[features]\nwindow = \"0s\"", "features.window"),
            ("[rules.price_collar]\nmax_deviation_ticks = -1", "max_deviation_ticks"),
            ("[ingest.imc]\nprice_tick = \"0\"", "price_tick"),
            ("[ingest.imc]\nprice_tick = \"one\"", "price_tick"),
            ("[rules.anomaly]\nz_threshold = nan", "z_threshold"),
            ("[rules.order_to_trade]\nreport_interval = \"0s\"", "report_interval"),
            ("[rules.spoofing]\nmax_fill_share = 1.5", "rules.spoofing.max_fill_share"),
            ("[rules.quote_stuffing]\nmax_book_changes = 0", "rules.quote_stuffing.max_book_changes"),
            ("[rules.quote_stuffing]\nburst_window = \"0s\"", "rules.quote_stuffing.burst_window"),
            ("[rules.marking_close]\nmin_window_share = 2", "rules.marking_close.min_window_share"),
            (
                "[rules.momentum_ignition]\nmin_price_levels = 1",
                "rules.momentum_ignition.min_orders and min_price_levels",
            ),
            ("[sessions]\nclose = \"4pm\"", "sessions.close"),
            ("[sessions]\nclose = \"00:00\"", "sessions.close"),
            ("[rules.spoofing]\nmin_size_ratio = nan", "rules.spoofing.min_size_ratio"),
            ("[rules.spoofing]\nmax_lifetime = \"0s\"", "rules.spoofing.max_lifetime"),
            ("[rules.layering]\nmin_layers = 0", "rules.layering.min_layers"),
            ("[rules.layering]\nmin_depth_share = -0.1", "rules.layering.min_depth_share"),
        ] {
            match Config::parse(text) {
                Ok(_) => panic!("accepted: {text}"),
                Err(message) => assert!(message.contains(key), "{text}: {message}"),
            }
        }
        // The same checks for a configuration built in code.
        let mut config = Config::default();
        config.ingest.max_in_flight = 0;
        assert!(config.validate().is_err());
        // Edges that can work are accepted.
        for text in [
            "[ingest]\nmax_in_flight = 1",
            "[ingest]\nmax_out_of_order = \"1day\"",
            "[rules.order_to_trade]\nmax_count_ratio = 0.0",
            "[rules.order_limits]\nmax_notional = \"0.01\"",
        ] {
            assert!(Config::parse(text).is_ok(), "{text}");
        }
    }
}
