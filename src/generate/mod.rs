//! A deterministic, seeded synthetic trading day with labelled compliance breaches.
//!
//! This is surveil's bundled default dataset and its benchmark input: a realistic day of
//! order-book activity (market makers, institutions, retail, HFT) on a price-time-priority
//! matching engine, with a known set of injected breaches written to `labels.csv` so detector
//! output can be scored. The background flow is built to stay clear of the detectors'
//! default thresholds, so every alert on it should match a label.
//!
//! Output is streamed: the day is never held in memory, so 10M events (~1 GB) are fine.

pub mod labels;
mod sim;
mod universe;
mod writer;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use chrono::{Datelike, NaiveDate, Weekday};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use sim::{Plan, Sim};
use writer::{EventWriter, KIND_NAMES, price_text};

/// What to generate; the same config (and seed) always produces byte-identical files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenerateConfig {
    /// Seed of every random choice, so datasets are reproducible.
    pub seed: u64,
    /// Approximate number of event rows; the session is stretched to fit them.
    pub events: u64,
    /// Number of accounts (at least 30) in `accounts.csv`.
    pub accounts: usize,
    /// Number of instruments (at least 4) in `instruments.csv`.
    pub instruments: usize,
    /// Trading date; the session is 09:30-16:00 New York time on it.
    pub date: NaiveDate,
    /// Write `events.csv.gz` instead of `events.csv`, to save disk.
    pub gzip: bool,
}

impl Default for GenerateConfig {
    fn default() -> Self {
        GenerateConfig {
            seed: 42,
            events: 2_000_000,
            accounts: 400,
            instruments: 40,
            date: NaiveDate::from_ymd_opt(2024, 3, 1).unwrap_or_default(),
            gzip: false,
        }
    }
}

/// What was written, so callers can report it without re-reading the files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenerateSummary {
    /// Event rows written (excluding the header).
    pub events: u64,
    /// Event rows per `kind`.
    pub events_by_kind: BTreeMap<String, u64>,
    /// Injected breaches, i.e. rows of `labels.csv`.
    pub labels: u64,
    /// Injected breaches per detector rule.
    pub labels_by_rule: BTreeMap<String, u64>,
    /// Where the events went (`events.csv` or `events.csv.gz`).
    pub events_path: PathBuf,
}

/// Why generation failed; I/O errors name the file involved.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// Reading or writing a file or directory failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Writing a CSV file failed.
    #[error("{}: {source}", path.display())]
    Csv {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: csv::Error,
    },
    /// The configuration cannot produce a meaningful day.
    #[error("invalid generate configuration: {0}")]
    InvalidConfig(String),
}

/// Whether US daylight saving time is in force at 09:30 New York time on `date`: from the
/// second Sunday of March to the first Sunday of November (rule in force since 2007; both
/// switches happen at 02:00 local time, before the open).
fn us_dst(date: NaiveDate) -> bool {
    let y = date.year();
    match (
        NaiveDate::from_weekday_of_month_opt(y, 3, Weekday::Sun, 2),
        NaiveDate::from_weekday_of_month_opt(y, 11, Weekday::Sun, 1),
    ) {
        (Some(start), Some(end)) => date >= start && date < end,
        _ => false,
    }
}

/// Session open and close (09:30 and 16:00 America/New_York) in ns since the epoch, UTC.
/// New York is UTC-5 in winter (EST) and UTC-4 in summer (EDT); 2024-03-01 is EST, so its
/// session is 14:30-21:00 UTC.
fn session_bounds(date: NaiveDate) -> Result<(u64, u64), GenerateError> {
    let offset_hours = if us_dst(date) { 4 } else { 5 };
    let ns = |h: u32, m: u32| -> Option<u64> {
        let local = date.and_hms_opt(h, m, 0)?;
        let utc = local + chrono::Duration::hours(offset_hours);
        u64::try_from(utc.and_utc().timestamp_nanos_opt()?).ok()
    };
    match (ns(9, 30), ns(16, 0)) {
        (Some(open), Some(close)) => Ok((open, close)),
        _ => Err(GenerateError::InvalidConfig(format!("date {date} is outside the representable range"))),
    }
}

fn csv_writer(path: &Path) -> Result<csv::Writer<fs::File>, GenerateError> {
    csv::Writer::from_path(path).map_err(|source| GenerateError::Csv { path: path.to_path_buf(), source })
}

fn write_rows<I, R>(path: &Path, header: &[&str], rows: I) -> Result<(), GenerateError>
where
    I: IntoIterator<Item = R>,
    R: IntoIterator,
    R::Item: AsRef<[u8]>,
{
    let err = |source| GenerateError::Csv { path: path.to_path_buf(), source };
    let mut w = csv_writer(path)?;
    w.write_record(header).map_err(err)?;
    for row in rows {
        w.write_record(row).map_err(err)?;
    }
    w.flush().map_err(|source| GenerateError::Io { path: path.to_path_buf(), source })
}

/// Generates the day into `dir` (created if missing): `events.csv[.gz]`, `instruments.csv`,
/// `accounts.csv`, `labels.csv` and a `surveil.toml` pointing at the reference data.
pub fn generate(config: &GenerateConfig, dir: &Path) -> Result<GenerateSummary, GenerateError> {
    if config.instruments < 4 {
        return Err(GenerateError::InvalidConfig(format!("instruments = {} (need at least 4)", config.instruments)));
    }
    if config.accounts < 30 {
        return Err(GenerateError::InvalidConfig(format!("accounts = {} (need at least 30)", config.accounts)));
    }
    let (open, close) = session_bounds(config.date)?;
    fs::create_dir_all(dir).map_err(|source| GenerateError::Io { path: dir.to_path_buf(), source })?;

    let mut plan = Plan::for_events(config.events);
    plan.storms = plan.storms.min(config.instruments - 1);
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let uni = universe::build(config.instruments, config.accounts, plan.storms, &mut rng);
    let sim_rng = ChaCha8Rng::seed_from_u64(rng.random::<u64>());

    write_rows(
        &dir.join("instruments.csv"),
        &["instrument", "price_scale", "currency", "isin", "reference_price"],
        uni.instruments
            .iter()
            .map(|i| [i.symbol.clone(), "2".to_string(), "USD".to_string(), i.isin.clone(), price_text(i.start_ticks)]),
    )?;
    write_rows(
        &dir.join("accounts.csv"),
        &["account", "owner", "desk", "trader"],
        uni.accounts
            .iter()
            .map(|a| [a.name.as_str(), uni.owners[a.owner as usize].as_str(), a.desk, a.trader.as_str()]),
    )?;
    let toml_path = dir.join("surveil.toml");
    let toml = "# Synthetic trading day written by `surveil generate`; paths are relative to this file.\n\
                [reference]\ninstruments = \"instruments.csv\"\naccounts = \"accounts.csv\"\n";
    fs::write(&toml_path, toml).map_err(|source| GenerateError::Io { path: toml_path.clone(), source })?;

    let name = if config.gzip { "events.csv.gz" } else { "events.csv" };
    let writer = EventWriter::create(dir.join(name), config.gzip)?;
    let outcome = Sim::new(&uni, sim_rng, writer, open, close, plan).run(config.events)?;
    let counts = outcome.writer.counts;
    let events_path = outcome.writer.finish()?;

    let mut labels = outcome.labels;
    labels.sort_by(|a, b| (a.time, a.rule).cmp(&(b.time, b.rule)));
    let session = config.date.to_string();
    let mut labels_by_rule = BTreeMap::new();
    for l in &labels {
        *labels_by_rule.entry(l.rule.to_string()).or_insert(0) += 1;
    }
    write_rows(
        &dir.join("labels.csv"),
        &["rule", "instrument", "account", "session", "event_time", "order_id", "detail"],
        labels.iter().map(|l| {
            [
                l.rule.to_string(),
                uni.instruments[l.instrument as usize].symbol.clone(),
                uni.accounts[l.account as usize].name.clone(),
                session.clone(),
                l.time.to_string(),
                l.order_id.map(|id| format!("O{id}")).unwrap_or_default(),
                l.detail.clone(),
            ]
        }),
    )?;

    Ok(GenerateSummary {
        events: counts.iter().sum(),
        events_by_kind: KIND_NAMES.iter().zip(counts).map(|(k, n)| (k.to_string(), n)).collect(),
        labels: labels.len() as u64,
        labels_by_rule,
        events_path,
    })
}

#[cfg(test)]
mod tests;
