//! A deterministic, seeded synthetic trading day with labelled compliance breaches.
//!
//! This is surveil's bundled default dataset and its benchmark input: a realistic day of
//! order-book activity (market makers, institutions, retail, HFT) on a price-time-priority
//! matching engine, with a known set of injected breaches written to `labels.csv` so detector
//! output can be scored. The background flow is built to stay clear of the detectors'
//! default thresholds, so every alert on it should match a label.
//!
//! Output is streamed: the day is never held in memory, so 10M events (~1 GB) are fine.

mod background;
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

use sim::{BackgroundAccounts, BackgroundPlan, Plan, Sim};
use writer::{EventWriter, KIND_NAMES, price_text};

/// What to generate; the same config (and seed) always produces byte-identical files.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerateConfig {
    /// Seed of every random choice, so datasets are reproducible.
    pub seed: u64,
    /// Approximate number of event rows; the session is stretched to fit them.
    pub events: u64,
    /// Number of accounts (at least 30) in `accounts.csv`, besides two employees' personal
    /// accounts (`EMP01`, `EMP02`).
    pub accounts: usize,
    /// Number of instruments (at least 4) in `instruments.csv`.
    pub instruments: usize,
    /// Trading date; the session is 09:30-16:00 New York time on it.
    pub date: NaiveDate,
    /// Write `events.csv.gz` instead of `events.csv`, to save disk.
    pub gzip: bool,
    /// Relative frequency of the background actions: how many quotes, resting orders,
    /// aggressive orders (and so fills and trades), cancels and replaces the day holds.
    pub mix: EventMix,
}

/// Weights of the background actions the simulation draws from at each step.
///
/// At each step one action is drawn with probability proportional to its weight. `cancel` and
/// `replace` are hazards per resting background order, so their share grows with the depth of
/// the books: raising `cancel` empties the books and so does little past a point, while lowering
/// it turns resting orders over less. The defaults give the bundled day's mix (about 41 % new
/// orders, 31 % cancels, 4 % replaces, 8 % fills, 4 % trades and 11 % quotes); `take=3` gives 24 %
/// fills and 12 % trades, `replace=0.05` 19 % replaces. A mix far from the defaults may let the
/// background flow itself cross detector thresholds, so alerts beyond the labelled breaches can
/// appear.
///
/// Written as `name=weight` pairs separated by commas, any subset of them, e.g.
/// `take=2,cancel=0.02`:
///
/// ```
/// use surveil::generate::EventMix;
///
/// let mix: EventMix = "take=2,cancel=0.02".parse().expect("a valid mix");
/// assert_eq!((mix.take, mix.cancel), (2.0, 0.02));
/// assert_eq!(mix.passive, EventMix::default().passive);
/// assert!("take=-1".parse::<EventMix>().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EventMix {
    /// A market maker re-centres, replaces or cancels one of its quotes.
    pub market_maker: f64,
    /// A new resting order inside or near the spread.
    pub passive: f64,
    /// A new aggressive order that trades against the book.
    pub take: f64,
    /// Per resting background order: one of them is cancelled (in full or in part).
    pub cancel: f64,
    /// Per resting background order: one of them is replaced (new price or quantity).
    pub replace: f64,
}

impl Default for EventMix {
    fn default() -> Self {
        EventMix { market_maker: 3.4, passive: 4.0, take: 0.52, cancel: 0.05, replace: 0.006 }
    }
}

impl EventMix {
    /// The names accepted by [`FromStr`](std::str::FromStr), in field order.
    pub const NAMES: [&'static str; 5] = ["market_maker", "passive", "take", "cancel", "replace"];

    fn weights_mut(&mut self) -> [&mut f64; 5] {
        [&mut self.market_maker, &mut self.passive, &mut self.take, &mut self.cancel, &mut self.replace]
    }

    /// Checks that every weight is finite and not negative, and that new orders can happen.
    pub fn validate(&self) -> Result<(), GenerateError> {
        let mut copy = *self;
        for (name, weight) in Self::NAMES.iter().zip(copy.weights_mut()) {
            if !weight.is_finite() || *weight < 0.0 {
                return Err(GenerateError::InvalidConfig(format!("mix {name} = {weight} (need a finite weight >= 0)")));
            }
        }
        if self.market_maker + self.passive + self.take <= 0.0 {
            return Err(GenerateError::InvalidConfig(
                "mix: market_maker, passive and take are all 0, so no order is ever entered".into(),
            ));
        }
        Ok(())
    }
}

impl std::str::FromStr for EventMix {
    type Err = GenerateError;

    fn from_str(text: &str) -> Result<EventMix, GenerateError> {
        let mut mix = EventMix::default();
        for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let invalid = |why: &str| GenerateError::InvalidConfig(format!("mix {pair:?}: {why}"));
            let (name, value) = pair.split_once('=').ok_or_else(|| invalid("expected name=weight"))?;
            let value: f64 = value.trim().parse().map_err(|_| invalid("the weight is not a number"))?;
            let position = Self::NAMES
                .iter()
                .position(|n| *n == name.trim())
                .ok_or_else(|| invalid(&format!("unknown name; expected one of {}", Self::NAMES.join(", "))))?;
            *mix.weights_mut()[position] = value;
        }
        mix.validate()?;
        Ok(mix)
    }
}

impl std::fmt::Display for EventMix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut copy = *self;
        let pairs: Vec<String> =
            Self::NAMES.iter().zip(copy.weights_mut()).map(|(name, weight)| format!("{name}={weight}")).collect();
        f.write_str(&pairs.join(","))
    }
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
            mix: EventMix::default(),
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
    /// Messages of the recording read, over a recording (0 for a simulated day).
    pub recorded_messages: u64,
    /// Of those, the ones not written as recorded: halts, auction crosses and executions at
    /// sub-cent prices (hidden midpoint executions), which the generated file does not carry,
    /// and messages of orders an injected taker had traded with (cut short or dropped).
    pub displaced_messages: u64,
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
    config.mix.validate()?;
    let (open, close) = session_bounds(config.date)?;
    fs::create_dir_all(dir).map_err(|source| GenerateError::Io { path: dir.to_path_buf(), source })?;

    let mut plan = Plan::for_events(config.events);
    plan.storms = plan.storms.min(config.instruments - 1);
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let uni = universe::build(config.instruments, config.accounts, plan.storms, &mut rng);
    let sim_rng = ChaCha8Rng::seed_from_u64(rng.random::<u64>());

    write_reference(dir, &uni)?;

    let name = if config.gzip { "events.csv.gz" } else { "events.csv" };
    let writer = EventWriter::create(dir.join(name), config.gzip)?;
    let outcome = Sim::new(&uni, sim_rng, writer, open, close, plan, config.mix).run(config.events)?;
    finish(dir, &uni, outcome, config.date, (0, 0))
}

/// Closes the events file, writes `labels.csv` and sums up what was written; `recorded` is
/// (messages read, messages not written as recorded) of a recording.
fn finish(
    dir: &Path,
    uni: &universe::Universe,
    outcome: sim::Outcome,
    date: NaiveDate,
    recorded: (u64, u64),
) -> Result<GenerateSummary, GenerateError> {
    let counts = outcome.writer.counts;
    let events_path = outcome.writer.finish()?;
    let labels_by_rule = write_labels(dir, uni, outcome.labels, date)?;
    Ok(GenerateSummary {
        events: counts.iter().sum(),
        events_by_kind: KIND_NAMES.iter().zip(counts).map(|(k, n)| (k.to_string(), n)).collect(),
        labels: labels_by_rule.values().sum(),
        labels_by_rule,
        events_path,
        recorded_messages: recorded.0,
        displaced_messages: recorded.1,
    })
}

/// Writes `labels.csv`, in time order; the labels per rule.
fn write_labels(
    dir: &Path,
    uni: &universe::Universe,
    mut labels: Vec<sim::Label>,
    date: NaiveDate,
) -> Result<BTreeMap<String, u64>, GenerateError> {
    labels.sort_by(|a, b| (a.time, a.rule).cmp(&(b.time, b.rule)));
    let session = date.to_string();
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
    Ok(labels_by_rule)
}

fn write_reference(dir: &Path, uni: &universe::Universe) -> Result<(), GenerateError> {
    write_rows(
        &dir.join("instruments.csv"),
        &["instrument", "price_scale", "currency", "isin", "reference_price"],
        uni.instruments
            .iter()
            .map(|i| [i.symbol.clone(), "2".to_string(), "USD".to_string(), i.isin.clone(), price_text(i.start_ticks)]),
    )?;
    write_rows(
        &dir.join("accounts.csv"),
        &["account", "owner", "desk", "trader", "capacity"],
        uni.accounts.iter().map(|a| {
            let capacity = match a.role {
                universe::Role::Institutional | universe::Role::Retail => "client",
                universe::Role::MarketMaker | universe::Role::Hft | universe::Role::Storm => "proprietary",
                universe::Role::Employee => "employee",
            };
            [a.name.as_str(), uni.owners[a.owner as usize].as_str(), a.desk, a.trader.as_str(), capacity]
        }),
    )?;
    let toml_path = dir.join("surveil.toml");
    let toml = "# Trading data written by `surveil generate`; paths are relative to this file.\n\
                [reference]\ninstruments = \"instruments.csv\"\naccounts = \"accounts.csv\"\n\n\
                [sessions]\ntimezone = \"America/New_York\"\nclose = \"16:00\"\n";
    fs::write(&toml_path, toml).map_err(|source| GenerateError::Io { path: toml_path.clone(), source })
}

/// Scenarios injected into recorded flow rather than into a simulated market.
#[derive(Clone, Debug, PartialEq)]
pub struct BackgroundConfig {
    /// A LOBSTER message file (`TICKER_DATE_START_END_message_LEVEL.csv`, plain or `.gz`).
    pub recording: PathBuf,
    /// Seed of every random choice: the accounts given to the recorded orders, and the
    /// scenarios' times, sizes and levels.
    pub seed: u64,
    /// Synthetic accounts among which the recorded orders are shared out (one per order).
    pub accounts: usize,
    /// Inject the labelled scenarios (spoofing, layering, quote stuffing, momentum ignition);
    /// without them the file is the recording alone, with accounts, for measuring false alerts.
    pub scenarios: bool,
    /// Write `events.csv.gz` instead of `events.csv`.
    pub gzip: bool,
}

impl Default for BackgroundConfig {
    fn default() -> Self {
        BackgroundConfig { recording: PathBuf::new(), seed: 42, accounts: 500, scenarios: true, gzip: false }
    }
}

/// Injected order-book scenarios per hour of recorded flow: on one instrument, each by its own
/// account, about as many as a simulated day puts on one of its busiest instruments.
const BACKGROUND_PLAN: BackgroundPlan = BackgroundPlan { spoofers: 4.0, walls: 6.0, stuffers: 4.0, igniters: 4.0 };

/// Scenario actors of a generated-over-recording dataset; the recorded orders' accounts
/// come on top of them.
const SCENARIO_ACCOUNTS: usize = 400;

/// Writes the recorded flow of `config.recording` with labelled order-book scenarios injected
/// (spoofing cycles, layered walls, quote-stuffing bursts, momentum ignitions), into `dir` as
/// [`generate`] does: `events.csv[.gz]`, `instruments.csv`, `accounts.csv` (the scenario actors
/// `ACC....` and the recorded orders' accounts `BG....`), `labels.csv` and `surveil.toml`.
///
/// The recording is replayed as it happened, order by order; the scenarios run against its book
/// (its touch, its depth), and their counterparties trade with whatever rests in front of them,
/// real orders included.
pub fn generate_over_recording(config: &BackgroundConfig, dir: &Path) -> Result<GenerateSummary, GenerateError> {
    if config.accounts == 0 {
        return Err(GenerateError::InvalidConfig("accounts = 0 (the recorded orders need accounts)".into()));
    }
    let recording = background::read(&config.recording)?;
    fs::create_dir_all(dir).map_err(|source| GenerateError::Io { path: dir.to_path_buf(), source })?;
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut uni = universe::build(4, SCENARIO_ACCOUNTS, 0, &mut rng);
    let sim_rng = ChaCha8Rng::seed_from_u64(rng.random::<u64>());
    // One instrument, the recording's; every proprietary account may act on it.
    uni.instruments.truncate(1);
    uni.coverage.truncate(1);
    let first_price = recording.messages.iter().find(|m| m.kind != background::MessageKind::HiddenExecute);
    if let Some(instrument) = uni.instruments.first_mut() {
        instrument.symbol = recording.ticker.clone();
        instrument.isin = String::new();
        instrument.start_ticks = first_price.map_or(instrument.start_ticks, |m| m.price);
        instrument.weight = 1.0;
    }
    let hft: Vec<u32> =
        (0..uni.accounts.len() as u32).filter(|&a| uni.accounts[a as usize].role == universe::Role::Hft).collect();
    if let Some(coverage) = uni.coverage.first_mut() {
        coverage.hft = hft;
    }
    let first = uni.accounts.len() as u32;
    for k in 0..config.accounts {
        uni.owners.push(format!("OWNBG{:04}", k + 1));
        uni.accounts.push(universe::Account {
            name: format!("BG{:04}", k + 1),
            owner: (uni.owners.len() - 1) as u32,
            desk: "RECORDED",
            trader: "TBG".to_string(),
            role: universe::Role::Institutional,
        });
    }
    write_reference(dir, &uni)?;

    let name = if config.gzip { "events.csv.gz" } else { "events.csv" };
    let writer = EventWriter::create(dir.join(name), config.gzip)?;
    let plan = Plan::for_events(0);
    let per_hour = if config.scenarios {
        BACKGROUND_PLAN
    } else {
        BackgroundPlan { spoofers: 0.0, walls: 0.0, stuffers: 0.0, igniters: 0.0 }
    };
    let accounts = BackgroundAccounts { first, count: config.accounts as u32, seed: config.seed };
    let (start, end) =
        (recording.messages.first().map_or(0, |m| m.time), recording.messages.last().map_or(0, |m| m.time));
    let sim = Sim::new(&uni, sim_rng, writer, start, end.max(start + 1), plan, EventMix::default());
    let (outcome, replay) = sim.run_recording(&recording, accounts, &per_hour)?;
    let read = replay.replayed + replay.displaced + recording.skipped;
    finish(dir, &uni, outcome, recording.date, (read, replay.displaced + recording.skipped))
}

#[cfg(test)]
mod tests;
