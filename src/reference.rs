//! Reference data: instruments (price scale, identifiers) and accounts (beneficial owner, desk,
//! trader), as they change over event time. Loaded once and shared by every worker.
//!
//! A row of the instrument or account file with a `time` is a change from that event time on;
//! every lookup names the event time it is made for, so an event is enriched as of its own
//! time, whatever order or worker it is processed in (`docs/configuration.md`, `[reference]`).
//! Changes that arrive while a run goes on ([`ReferenceData::apply_live`], fed by
//! [`crate::live_reference`]) are kept beside the loaded versions and answer the same lookups.

use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::config::{Config, ReferenceConfig};
use crate::model::{Decimal, Event, IdMap, Price, Symbol, SymbolTable};

/// Why reference data could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    /// The file could not be read or parsed.
    #[error("reference data {path}, record {record}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based record number (0: the file itself).
        record: u64,
        /// What is wrong.
        message: String,
    },
    /// A setting that describes reference data is invalid.
    #[error("{0}")]
    Setting(String),
}

/// A record's versions over event time, sorted by the time each starts. Before the first
/// starts (when it starts after 0) the record is unknown.
#[derive(Debug, Clone)]
struct Versions<V> {
    versions: Vec<(u64, V)>,
}

impl<V> Versions<V> {
    fn new(time: u64, value: V) -> Versions<V> {
        Versions { versions: vec![(time, value)] }
    }

    /// The version in force at `time`.
    #[inline]
    fn at(&self, time: u64) -> Option<&V> {
        match self.versions.as_slice() {
            [(0, only)] => Some(only),
            all => all.partition_point(|(start, _)| *start <= time).checked_sub(1).map(|i| &all[i].1),
        }
    }

    /// The version in force at `time`, with the time it starts.
    #[inline]
    fn at_from(&self, time: u64) -> Option<(u64, &V)> {
        match self.versions.as_slice() {
            [(0, only)] => Some((0, only)),
            all => all.partition_point(|(start, _)| *start <= time).checked_sub(1).map(|i| (all[i].0, &all[i].1)),
        }
    }

    /// From when to when (exclusive) the lookup at `time` gives the same answer.
    fn span(&self, time: u64) -> (u64, u64) {
        let i = self.versions.partition_point(|(start, _)| *start <= time);
        let from = i.checked_sub(1).map_or(0, |i| self.versions[i].0);
        let until = self.versions.get(i).map_or(u64::MAX, |(start, _)| *start);
        (from, until)
    }

    /// Sets the version starting at `time`, replacing one that starts then.
    fn set(&mut self, time: u64, value: V) {
        match self.versions.binary_search_by_key(&time, |(start, _)| *start) {
            Ok(i) => self.versions[i].1 = value,
            Err(i) => self.versions.insert(i, (time, value)),
        }
    }

    fn iter(&self) -> impl Iterator<Item = &(u64, V)> {
        self.versions.iter()
    }
}

/// What surveil knows about an instrument.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Instrument {
    /// Decimal places of prices.
    pub price_scale: u8,
    /// Currency code.
    pub currency: String,
    /// ISIN, for reports.
    pub isin: String,
    /// CFI code (ISO 10962), for reports.
    pub cfi: String,
    /// A price to use before any quote or trade (price collar).
    pub reference_price: Option<Price>,
    /// The minimum price increment, in units of the price scale, when the file gives one.
    pub tick_size: Option<Price>,
    /// The instrument a derivative is written on (`NONE` for an underlying itself).
    pub underlying: Symbol,
    /// When its sessions close, local time in `sessions.timezone`, where it closes at a time
    /// of its own (a future at 15:15 beside equities at 16:00); [marking the
    /// close](crate::rules::MarkingClose) judges its closing window.
    pub closing_time: Option<chrono::NaiveTime>,
    /// Average daily volume, in units of its quantities, where the instrument master gives it
    /// ([order limits](crate::rules::OrderLimits) can cap an order at a share of it).
    pub average_daily_volume: Option<u64>,
    /// The trading unit (shares per round lot, contracts per lot), in units of its quantities,
    /// where the instrument master gives it ([order limits](crate::rules::OrderLimits) can cap
    /// an order at a number of lots).
    #[serde(default)]
    pub lot_size: Option<u64>,
}

impl Instrument {
    /// How a long position in the instrument moves with its underlying: -1 for a put option
    /// (CFI `OP`), 1 otherwise (the underlying itself, calls, futures).
    pub fn direction(&self) -> i8 {
        if self.cfi.starts_with("OP") { -1 } else { 1 }
    }
}

/// In what capacity an account trades (FINRA 5270, MiFIR RTS 22 field 29).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Capacity {
    /// Not stated.
    #[default]
    Unknown,
    /// A customer's account: its orders are what a front-runner would trade ahead of.
    Client,
    /// The firm's own account (dealing on own account, market making).
    Proprietary,
    /// An employee's personal account.
    Employee,
}

impl Capacity {
    /// Reads `client` (`customer`, `agency`), `proprietary` (`principal`, `prop`, `deal`) or
    /// `employee` (`personal`); empty is unknown.
    pub fn parse(text: &str) -> Option<Capacity> {
        Some(match text.trim().to_ascii_lowercase().as_str() {
            "" => Capacity::Unknown,
            "client" | "customer" | "agency" | "aotc" => Capacity::Client,
            "proprietary" | "principal" | "prop" | "deal" => Capacity::Proprietary,
            "employee" | "personal" => Capacity::Employee,
            _ => return None,
        })
    }

    /// The firm's own or its staff's account.
    pub fn is_firm_side(self) -> bool {
        matches!(self, Capacity::Proprietary | Capacity::Employee)
    }
}

/// How an instrument's minimum price increment is found (see [`ReferenceData::tick_size`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum TickRule {
    /// One increment at every price, in units of the price scale.
    Fixed(i64),
    /// SEC Rule 612: `cent` at or above a price of `one` (1.00), `hundredth_cent` below; in
    /// units of the price scale.
    Rule612 {
        /// 1.00 in units.
        one: i64,
        /// 0.01 in units (at least one).
        cent: i64,
        /// 0.0001 in units (at least one).
        hundredth_cent: i64,
    },
}

impl TickRule {
    /// The increment at `price`.
    #[inline]
    pub fn at(self, price: Price) -> i64 {
        match self {
            TickRule::Fixed(tick) => tick,
            TickRule::Rule612 { one, cent, hundredth_cent } => {
                if price.0 >= one {
                    cent
                } else {
                    hundredth_cent
                }
            }
        }
    }
}

/// What surveil knows about an account.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Account {
    /// Beneficial owner.
    pub owner: Symbol,
    /// Desk.
    pub desk: Symbol,
    /// Trader.
    pub trader: Symbol,
    /// In what capacity it trades.
    pub capacity: Capacity,
    /// The firm (member, broker-dealer) the account belongs to.
    #[serde(default)]
    pub firm: Symbol,
}

/// Instruments and accounts, by symbol, as they change over event time.
#[derive(Debug, Clone, Default)]
pub struct ReferenceData {
    instruments: IdMap<Symbol, Versions<Instrument>>,
    accounts: IdMap<Symbol, Versions<Account>>,
    default_price_scale: u8,
    /// The tick size of a venue's instruments that have none of their own.
    venue_ticks: IdMap<Symbol, Decimal>,
    /// Names of the symbols defined in the reference files.
    pub names: SymbolTable,
    /// Changes of ownership over event time, in file order.
    ownership: Vec<OwnershipChange>,
    /// `reference.link_share`, when set.
    link_share: Option<f64>,
    /// What each basket holds: a member's weight in the basket, over event time, by
    /// `(basket, member)`.
    baskets: IdMap<(Symbol, Symbol), Versions<f64>>,
    /// Instruments joined by a basket holding at least `basket_weight` of a member (at any
    /// time), each mapped to one instrument of its group: front running is keyed and routed by
    /// it, so that a basket and its members are read together.
    families: IdMap<Symbol, Symbol>,
    /// `reference.basket_weight`, when set.
    basket_weight: Option<f64>,
    /// Versions that came while the run goes on.
    live: LiveVersions,
}

/// Told of each account record a row sets: the account, the time it starts, the record, and
/// the record in force before.
type AccountChanged<'a> = dyn FnMut(Symbol, u64, &Account, Option<Account>) + 'a;

/// Which reference file's rows a live message holds ([`ReferenceData::read_live`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveKind {
    /// Instrument rows.
    Instruments,
    /// Account rows.
    Accounts,
}

/// A change of an instrument or an account that arrives while a run goes on: the whole record
/// from the time the change is applied at ([`ReferenceData::apply_live`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LiveChange {
    /// An instrument's record.
    Instrument {
        /// Unique among the changes of a run: a change given to every worker is kept once.
        id: u64,
        /// The instrument.
        symbol: Symbol,
        /// Its record from then on.
        record: Instrument,
    },
    /// An account's record.
    Account {
        /// Unique among the changes of a run.
        id: u64,
        /// The account.
        symbol: Symbol,
        /// Its record from then on.
        record: Account,
    },
}

impl LiveChange {
    /// The change's id.
    pub fn id(&self) -> u64 {
        match self {
            LiveChange::Instrument { id, .. } | LiveChange::Account { id, .. } => *id,
        }
    }
}

/// The versions of [`LiveChange`]s, beside the loaded ones. Workers add to them while others
/// look up: the records go to append-only stores (a lookup hands out references into them),
/// and an index under a lock says which record is in force when. A bit per bucket of symbols
/// says which may have live versions, so that looking up one that has none (most of them,
/// on every event) reads a word rather than taking the lock that the workers share.
struct LiveVersions {
    /// Set by the first change: until then a lookup does not take the lock.
    active: AtomicBool,
    /// Bits of the (kind, symbol) buckets that have live versions.
    touched: Box<[AtomicU64]>,
    /// Set when the run follows changes (whether or not any has come).
    followed: AtomicBool,
    instruments: boxcar::Vec<Instrument>,
    accounts: boxcar::Vec<Account>,
    index: RwLock<LiveIndex>,
}

#[derive(Default)]
struct LiveIndex {
    /// Per symbol, `(time, id, slot)` in order of time, then id: the last at or before a time
    /// is in force then.
    instruments: IdMap<Symbol, Vec<(u64, u64, usize)>>,
    accounts: IdMap<Symbol, Vec<(u64, u64, usize)>>,
    /// The ids of the changes applied.
    applied: IdMap<u64, ()>,
}

/// A field of an event that [`LiveVersions::refill`] may set, with the account field it is.
type Refilled<'a> = (&'a mut Symbol, fn(&Account) -> Symbol);

/// Words of [`LiveVersions::touched`]: 65,536 buckets.
const TOUCHED_WORDS: usize = 1024;

impl Default for LiveVersions {
    fn default() -> LiveVersions {
        LiveVersions {
            active: AtomicBool::new(false),
            touched: (0..TOUCHED_WORDS).map(|_| AtomicU64::new(0)).collect(),
            followed: AtomicBool::new(false),
            instruments: boxcar::Vec::new(),
            accounts: boxcar::Vec::new(),
            index: RwLock::default(),
        }
    }
}

impl LiveVersions {
    fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// The word and bit of a symbol's bucket (`kind` 0: instruments, 1: accounts).
    fn bucket(kind: u64, symbol: Symbol) -> (usize, u64) {
        let hash = (symbol.0 ^ kind.wrapping_mul(0xD6E8_FEB8_6659_FD93)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 48;
        ((hash as usize / 64) % TOUCHED_WORDS, 1 << (hash % 64))
    }

    /// False when `symbol` surely has no live versions of `kind`.
    #[inline]
    fn may_have(&self, kind: u64, symbol: Symbol) -> bool {
        let (word, bit) = Self::bucket(kind, symbol);
        self.touched[word].load(Ordering::Acquire) & bit != 0
    }

    fn apply(&self, time: u64, change: &LiveChange) {
        let Ok(mut index) = self.index.write() else { return };
        if index.applied.insert(change.id(), ()).is_some() {
            return;
        }
        let (entries, slot, (word, bit)) = match change {
            LiveChange::Instrument { symbol, record, .. } => (
                index.instruments.entry(*symbol).or_default(),
                self.instruments.push(record.clone()),
                Self::bucket(0, *symbol),
            ),
            LiveChange::Account { symbol, record, .. } => {
                (index.accounts.entry(*symbol).or_default(), self.accounts.push(*record), Self::bucket(1, *symbol))
            }
        };
        self.touched[word].fetch_or(bit, Ordering::Release);
        let key = (time, change.id());
        let at = entries.partition_point(|&(t, id, _)| (t, id) <= key);
        entries.insert(at, (time, change.id(), slot));
        self.active.store(true, Ordering::Release);
    }

    /// The slot in force at `time` and when it started, if a live version is then.
    fn find(entries: Option<&Vec<(u64, u64, usize)>>, time: u64) -> Option<(u64, usize)> {
        let entries = entries?;
        let at = entries.partition_point(|&(t, _, _)| t <= time).checked_sub(1)?;
        Some((entries[at].0, entries[at].2))
    }

    fn instrument(&self, symbol: Symbol, time: u64) -> Option<(u64, &Instrument)> {
        if !self.may_have(0, symbol) {
            return None;
        }
        let found = Self::find(self.index.read().ok()?.instruments.get(&symbol), time)?;
        self.instruments.get(found.1).map(|record| (found.0, record))
    }

    fn account(&self, symbol: Symbol, time: u64) -> Option<(u64, &Account)> {
        if !self.may_have(1, symbol) {
            return None;
        }
        let found = Self::find(self.index.read().ok()?.accounts.get(&symbol), time)?;
        self.accounts.get(found.1).map(|record| (found.0, record))
    }

    /// Sets each field from the live record of account `symbol` in force at `time` (when one
    /// is, and the loaded version in force then, `loaded`, does not start later), where the
    /// field is empty or holds what a reader may have filled it with: the loaded record's
    /// value, or a live record's that starts by then. A field the event gave itself is kept.
    /// One look at the index, under one read of the lock.
    fn refill<const N: usize>(
        &self,
        symbol: Symbol,
        time: u64,
        loaded: Option<(u64, &Account)>,
        fields: [Refilled<'_>; N],
    ) {
        if symbol.is_none() || !self.may_have(1, symbol) {
            return;
        }
        let Ok(index) = self.index.read() else { return };
        let Some(entries) = index.accounts.get(&symbol) else { return };
        let upto = entries.partition_point(|&(t, _, _)| t <= time);
        let Some(&(from, _, slot)) = upto.checked_sub(1).map(|i| &entries[i]) else { return };
        if loaded.is_some_and(|(start, _)| start > from) {
            return;
        }
        let Some(record) = self.accounts.get(slot) else { return };
        for (field, pick) in fields {
            let filled = field.is_none()
                || loaded.is_some_and(|(_, a)| pick(a) == *field)
                || entries[..upto].iter().any(|&(_, _, s)| self.accounts.get(s).is_some_and(|a| pick(a) == *field));
            if filled {
                *field = pick(record);
            }
        }
    }
}

impl Clone for LiveVersions {
    fn clone(&self) -> LiveVersions {
        let copy = LiveVersions::default();
        copy.followed.store(self.followed.load(Ordering::Acquire), Ordering::Release);
        if let Ok(index) = self.index.read() {
            for (&symbol, entries) in &index.instruments {
                for &(time, id, slot) in entries {
                    if let Some(record) = self.instruments.get(slot) {
                        copy.apply(time, &LiveChange::Instrument { id, symbol, record: record.clone() });
                    }
                }
            }
            for (&symbol, entries) in &index.accounts {
                for &(time, id, slot) in entries {
                    if let Some(&record) = self.accounts.get(slot) {
                        copy.apply(time, &LiveChange::Account { id, symbol, record });
                    }
                }
            }
        }
        copy
    }
}

impl std::fmt::Debug for LiveVersions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveVersions")
            .field("followed", &self.followed.load(Ordering::Relaxed))
            .field("instruments", &self.instruments.count())
            .field("accounts", &self.accounts.count())
            .finish()
    }
}

/// The reference data an event names that the reference files do not have at the event's
/// time ([`ReferenceData::enrich`]): the event is processed all the same, and counted as
/// incomplete per field.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Missing(u8);

/// Incomplete events by missing field (indexed as [`Missing::FIELDS`]).
pub type MissingCounts = [u64; Missing::FIELDS.len()];

impl Missing {
    /// The fields, as the event schema names them.
    pub const FIELDS: [&'static str; 4] = ["instrument", "account", "buyer_account", "seller_account"];

    fn with(self, field: usize) -> Missing {
        Missing(self.0 | 1 << field)
    }

    /// True when nothing is missing.
    #[inline]
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Adds one to the count of each missing field.
    #[inline]
    pub fn count(self, counts: &mut MissingCounts) {
        if self.0 != 0 {
            for (field, count) in counts.iter_mut().enumerate() {
                *count += u64::from(self.0 >> field & 1);
            }
        }
    }
}

/// An owner's share of an account from a time on ([`ReferenceData::ownership`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OwnershipChange {
    /// Event time from which the share holds (0: from the start).
    pub time: u64,
    /// The account (or entity) owned.
    pub account: Symbol,
    /// The owner (a person, an entity, or another account).
    pub owner: Symbol,
    /// The fraction of `account` that `owner` holds from `time` on; 0 ends the ownership.
    pub share: f64,
}

#[derive(Deserialize)]
struct OwnershipRow {
    #[serde(default)]
    time: Option<String>,
    account: String,
    owner: String,
    #[serde(default)]
    share: Option<String>,
}

#[derive(Deserialize)]
struct BasketRow {
    #[serde(default)]
    time: Option<String>,
    basket: String,
    member: String,
    weight: String,
}

#[derive(Deserialize)]
struct InstrumentRow {
    #[serde(default)]
    time: Option<String>,
    instrument: String,
    #[serde(default)]
    price_scale: Option<u8>,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default)]
    isin: Option<String>,
    #[serde(default)]
    cfi: Option<String>,
    #[serde(default)]
    reference_price: Option<String>,
    #[serde(default)]
    tick_size: Option<String>,
    #[serde(default)]
    underlying: Option<String>,
    #[serde(default)]
    closing_time: Option<String>,
    #[serde(default)]
    average_daily_volume: Option<String>,
    #[serde(default)]
    lot_size: Option<String>,
}

#[derive(Deserialize)]
struct AccountRow {
    #[serde(default)]
    time: Option<String>,
    account: String,
    #[serde(default)]
    owner: Option<String>,
    #[serde(default)]
    desk: Option<String>,
    #[serde(default)]
    trader: Option<String>,
    #[serde(default)]
    capacity: Option<String>,
    #[serde(default)]
    firm: Option<String>,
}

impl ReferenceData {
    /// Empty reference data with the given default price scale.
    pub fn new(default_price_scale: u8) -> ReferenceData {
        ReferenceData { default_price_scale, ..Default::default() }
    }

    /// Loads the files named in the configuration.
    pub fn load(config: &Config) -> Result<ReferenceData, ReferenceError> {
        let mut data = ReferenceData::new(config.ingest.default_price_scale);
        let imc = &config.ingest.imc;
        let tick = imc.price_tick().map_err(ReferenceError::Setting)?;
        data.set_venue_tick(Symbol::of(imc.venue.as_bytes()), tick);
        let ReferenceConfig { instruments, accounts, ownership, link_share, baskets, basket_weight } =
            &config.reference;
        data.link_share = Some(*link_share);
        data.basket_weight = Some(*basket_weight);
        if let Some(path) = instruments {
            data.load_instruments(path)?;
        }
        if let Some(path) = accounts {
            data.load_accounts(path)?;
        }
        if let Some(path) = ownership {
            data.load_ownership(path)?;
        }
        if let Some(path) = baskets {
            data.load_baskets(path)?;
        }
        tracing::info!(instruments = data.instruments.len(), accounts = data.accounts.len(), "reference data loaded");
        Ok(data)
    }

    fn open(path: &Path) -> Result<std::fs::File, ReferenceError> {
        std::fs::File::open(path).map_err(|e| ReferenceError::Invalid {
            path: path.into(),
            record: 0,
            message: e.to_string(),
        })
    }

    fn reader<R: std::io::Read>(source: R) -> csv::Reader<R> {
        csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(source)
    }

    /// Loads `instrument,price_scale,currency,isin,cfi,reference_price,tick_size,underlying`
    /// (every column but `instrument` optional), and an optional `time`: a row with a time is a
    /// change from that event time on, whose empty cells keep the values in force then.
    pub fn load_instruments(&mut self, path: &Path) -> Result<(), ReferenceError> {
        self.read_instruments(Self::open(path)?, path)
    }

    /// [`ReferenceData::load_instruments`] from CSV text (a header and rows) that came from
    /// `origin` (named in errors): a message of a reference topic, say.
    pub fn read_instruments(&mut self, source: impl std::io::Read, origin: &Path) -> Result<(), ReferenceError> {
        self.read_instrument_rows(source, origin, None, &mut |_, _, _| {})
    }

    /// Reads instrument rows; with `live`, as changes that came while a run goes on when the
    /// events had been read up to that time (each applies from its own time or from then,
    /// whichever is later). Each record set is given to `changed` with the time it starts.
    fn read_instrument_rows(
        &mut self,
        source: impl std::io::Read,
        origin: &Path,
        live: Option<u64>,
        changed: &mut dyn FnMut(Symbol, u64, &Instrument),
    ) -> Result<(), ReferenceError> {
        let path = origin;
        let mut reader = Self::reader(source);
        for (i, row) in reader.deserialize::<InstrumentRow>().enumerate() {
            let invalid =
                |message: String| ReferenceError::Invalid { path: path.into(), record: i as u64 + 1, message };
            let row = row.map_err(|e| invalid(e.to_string()))?;
            let time = change_time(row.time.as_deref()).map_err(invalid)?;
            let (symbol, _) = self.names.intern(row.instrument.as_bytes());
            let known = self.instruments.get(&symbol);
            let start = time.unwrap_or(0).max(live.unwrap_or(0));
            // A change starts from the version in force at its time; a row without a time is
            // the whole record from the start.
            let base = match (time, known) {
                (Some(_), Some(versions)) => versions.at(start).cloned(),
                _ => None,
            };
            let current_underlying = known.and_then(|v| v.at(start)).map(|i| i.underlying);
            if live.is_some() && known.is_none() && row.price_scale.is_some_and(|s| s != self.default_price_scale) {
                return Err(invalid(format!(
                    "price_scale of a new instrument that comes while running must be the default {} (events \
                     already read were parsed at it); give the instrument in the instruments file or topic at \
                     the start",
                    self.default_price_scale
                )));
            }
            let fixed_scale = known.and_then(|v| v.iter().next()).map(|(_, i)| i.price_scale);
            let scale = row.price_scale.or(fixed_scale).unwrap_or(self.default_price_scale);
            if scale > crate::model::decimal::MAX_SCALE {
                return Err(invalid(format!("price_scale {scale} is too large")));
            }
            if let Some(fixed) = fixed_scale.filter(|&fixed| fixed != scale) {
                return Err(invalid(format!(
                    "price_scale {scale} differs from the {fixed} given before: an instrument's prices keep one scale \
                     (a change of scale is a new instrument)"
                )));
            }
            let text =
                |cell: &Option<String>| cell.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
            let units = |cell: &Option<String>, what: &str| -> Result<Option<Price>, ReferenceError> {
                match text(cell) {
                    Some(text) => crate::model::decimal::parse_scaled(text.as_bytes(), scale)
                        .map(|units| Some(Price(units)))
                        .map_err(|e| invalid(format!("{what} {text:?}: {e}"))),
                    None => Ok(None),
                }
            };
            let reference_price = units(&row.reference_price, "reference_price")?;
            let tick_size = units(&row.tick_size, "tick_size")?;
            if let Some(Price(tick)) = tick_size.filter(|t| t.0 <= 0) {
                let text = text(&row.tick_size).unwrap_or_default();
                return Err(invalid(format!(
                    "tick_size {text:?} must be positive at the instrument's {scale} decimal places ({tick} units)"
                )));
            }
            let underlying = match text(&row.underlying) {
                Some(name) if name == row.instrument => {
                    return Err(invalid("underlying is the instrument itself".into()));
                }
                Some(name) => Some(self.names.intern(name.as_bytes()).0),
                None => None,
            };

            let closing_time = match text(&row.closing_time) {
                Some(close) => Some(
                    crate::config::SessionConfig::parse_close(&close)
                        .map_err(|e| invalid(e.replace("sessions.close", "closing_time")))?,
                ),
                None => None,
            };
            let average_daily_volume = match text(&row.average_daily_volume) {
                Some(adv) => Some(adv.parse::<u64>().ok().filter(|&v| v > 0).ok_or_else(|| {
                    invalid(format!("average_daily_volume {adv:?} is not a positive whole quantity"))
                })?),
                None => None,
            };
            let lot_size = match text(&row.lot_size) {
                Some(lot) => Some(
                    lot.parse::<u64>()
                        .ok()
                        .filter(|&v| v > 0)
                        .ok_or_else(|| invalid(format!("lot_size {lot:?} is not a positive whole quantity")))?,
                ),
                None => None,
            };
            let base = base.unwrap_or_default();
            let instrument = Instrument {
                price_scale: scale,
                currency: text(&row.currency).unwrap_or(base.currency),
                isin: text(&row.isin).unwrap_or(base.isin),
                cfi: text(&row.cfi).unwrap_or(base.cfi),
                reference_price: reference_price.or(base.reference_price),
                tick_size: tick_size.or(base.tick_size),
                underlying: underlying.unwrap_or(base.underlying),
                closing_time: closing_time.or(base.closing_time),
                average_daily_volume: average_daily_volume.or(base.average_daily_volume),
                lot_size: lot_size.or(base.lot_size),
            };
            if live.is_some() && current_underlying.is_some_and(|now| now != instrument.underlying) {
                return Err(invalid(
                    "the underlying of a known instrument cannot change while running (events are routed by it); \
                     restart with the change in the instruments file"
                        .into(),
                ));
            }
            changed(symbol, start, &instrument);
            self.set_instrument(symbol, start, instrument);
        }
        Ok(())
    }

    fn set_instrument(&mut self, symbol: Symbol, time: u64, instrument: Instrument) {
        match self.instruments.get_mut(&symbol) {
            Some(versions) => versions.set(time, instrument),
            None => {
                self.instruments.insert(symbol, Versions::new(time, instrument));
            }
        }
    }

    fn set_account_version(&mut self, symbol: Symbol, time: u64, account: Account) {
        match self.accounts.get_mut(&symbol) {
            Some(versions) => versions.set(time, account),
            None => {
                self.accounts.insert(symbol, Versions::new(time, account));
            }
        }
    }

    /// Loads `account,owner,desk,trader,capacity,firm` (all but `account` optional), and an
    /// optional `time`: a row with a time is a change from that event time on, whose empty
    /// cells keep the values in force then.
    pub fn load_accounts(&mut self, path: &Path) -> Result<(), ReferenceError> {
        self.read_accounts(Self::open(path)?, path)
    }

    /// [`ReferenceData::load_accounts`] from CSV text that came from `origin`.
    pub fn read_accounts(&mut self, source: impl std::io::Read, origin: &Path) -> Result<(), ReferenceError> {
        self.read_account_rows(source, origin, None, &mut |_, _, _, _| {})
    }

    /// Reads account rows; `live` and `changed` as for instruments (`changed` also gets the
    /// record in force before).
    fn read_account_rows(
        &mut self,
        source: impl std::io::Read,
        origin: &Path,
        live: Option<u64>,
        changed: &mut AccountChanged<'_>,
    ) -> Result<(), ReferenceError> {
        let path = origin;
        let mut reader = Self::reader(source);
        for (i, row) in reader.deserialize::<AccountRow>().enumerate() {
            let invalid =
                |message: String| ReferenceError::Invalid { path: path.into(), record: i as u64 + 1, message };
            let row = row.map_err(|e| invalid(e.to_string()))?;
            let time = change_time(row.time.as_deref()).map_err(invalid)?;
            let text = row.capacity.unwrap_or_default();
            let capacity = Capacity::parse(&text).ok_or_else(|| {
                invalid(format!("capacity {text:?} is not client, proprietary or employee (or empty)"))
            })?;
            let mut intern = |text: Option<String>| {
                let text = text.unwrap_or_default();
                (!text.is_empty()).then(|| self.names.intern(text.as_bytes()).0)
            };
            let Some(account) = intern(Some(row.account)) else {
                return Err(invalid("account must not be empty".into()));
            };
            let (owner, desk, trader, firm) =
                (intern(row.owner), intern(row.desk), intern(row.trader), intern(row.firm));
            let start = time.unwrap_or(0).max(live.unwrap_or(0));
            let base = match time {
                Some(_) => self.accounts.get(&account).and_then(|v| v.at(start)).copied().unwrap_or_default(),
                None => Account::default(),
            };
            let record = Account {
                owner: owner.unwrap_or(base.owner),
                desk: desk.unwrap_or(base.desk),
                trader: trader.unwrap_or(base.trader),
                capacity: if capacity == Capacity::Unknown { base.capacity } else { capacity },
                firm: firm.unwrap_or(base.firm),
            };
            let previous = self.accounts.get(&account).and_then(|v| v.at(start)).copied();
            changed(account, start, &record, previous);
            self.set_account_version(account, start, record);
        }
        Ok(())
    }

    /// Reads a message of changes that came while a run goes on: CSV rows of `kind` (as in
    /// its reference file), each applying from its own `time` or from `ahead` (how far the
    /// events had been read when it came), whichever is later. A row with a time keeps the
    /// cells it leaves empty from the version in force then, as in the files. Returns each
    /// change with the time it applies from, numbered from `next_id` on, and the names it
    /// brings (for output); these reference data (the feed's own copy) take the changes too,
    /// so the next message starts from them. A new instrument's price scale must be the
    /// default one, and a known instrument's underlying cannot change (events are routed by
    /// it). An account whose owner changes also changes ownership, as the accounts file's
    /// `owner` column does ([`ReferenceData::ownership`]): those changes go to `ownership`, for
    /// the linked accounts, each with the id of the change that made it.
    pub fn read_live(
        &mut self,
        kind: LiveKind,
        source: impl std::io::Read,
        origin: &Path,
        ahead: u64,
        next_id: &mut u64,
        ownership: &mut Vec<(u64, OwnershipChange)>,
    ) -> Result<Vec<(LiveChange, u64)>, ReferenceError> {
        let mut changes = Vec::new();
        match kind {
            LiveKind::Instruments => {
                self.read_instrument_rows(source, origin, Some(ahead), &mut |symbol, time, record| {
                    *next_id += 1;
                    changes.push((LiveChange::Instrument { id: *next_id, symbol, record: record.clone() }, time));
                })?
            }
            LiveKind::Accounts => {
                self.read_account_rows(source, origin, Some(ahead), &mut |account, time, record, previous| {
                    *next_id += 1;
                    changes.push((LiveChange::Account { id: *next_id, symbol: account, record: *record }, time));
                    let before = previous.map_or(Symbol::NONE, |p| p.owner);
                    if before != record.owner {
                        let holds = |owner: Symbol| !owner.is_none() && owner != account;
                        if holds(before) {
                            ownership.push((*next_id, OwnershipChange { time, account, owner: before, share: 0.0 }));
                        }
                        if holds(record.owner) {
                            let change = OwnershipChange { time, account, owner: record.owner, share: 1.0 };
                            ownership.push((*next_id, change));
                        }
                    }
                })?
            }
        }
        Ok(changes)
    }

    /// The names of the symbols a change mentions, as these reference data know them.
    pub fn names_in(&self, change: &LiveChange) -> Vec<(Symbol, String)> {
        let symbols = match change {
            LiveChange::Instrument { symbol, record, .. } => vec![*symbol, record.underlying],
            LiveChange::Account { symbol, record, .. } => {
                vec![*symbol, record.owner, record.desk, record.trader, record.firm]
            }
        };
        symbols.into_iter().filter(|s| s.needs_dictionary()).map(|s| (s, self.names.name(s).into_owned())).collect()
    }

    /// Loads `time,account,owner,share`: from `time` (integer nanoseconds or RFC 3339; empty:
    /// from the start) `owner` holds `share` of `account` (a fraction such as `0.25`, or a
    /// percentage such as `25%`; empty: all of it; `0`: no longer any).
    pub fn load_ownership(&mut self, path: &Path) -> Result<(), ReferenceError> {
        self.read_ownership(Self::open(path)?, path)
    }

    /// [`ReferenceData::load_ownership`] from CSV text that came from `origin`.
    pub fn read_ownership(&mut self, source: impl std::io::Read, origin: &Path) -> Result<(), ReferenceError> {
        let path = origin;
        let mut reader = Self::reader(source);
        for (i, row) in reader.deserialize::<OwnershipRow>().enumerate() {
            let invalid =
                |message: String| ReferenceError::Invalid { path: path.into(), record: i as u64 + 1, message };
            let row = row.map_err(|e| invalid(e.to_string()))?;
            let time = change_time(row.time.as_deref()).map_err(invalid)?.unwrap_or(0);
            let share = match row.share.as_deref().filter(|s| !s.is_empty()) {
                None => 1.0,
                Some(text) => parse_share(text).ok_or_else(|| {
                    invalid(format!("share {text:?} is not a fraction in [0, 1] or a percentage in [0%, 100%]"))
                })?,
            };
            if row.account.is_empty() || row.owner.is_empty() {
                return Err(invalid("account and owner must not be empty".into()));
            }
            let (account, _) = self.names.intern(row.account.as_bytes());
            let (owner, _) = self.names.intern(row.owner.as_bytes());
            self.ownership.push(OwnershipChange { time, account, owner, share });
        }
        Ok(())
    }

    /// Loads `time,basket,member,weight`: from `time` (integer nanoseconds or RFC 3339; empty
    /// or no column: from the start) `basket` (an exchange-traded fund, an index product) holds
    /// `member` at `weight` of its value (a fraction such as `0.07`, or a percentage such as
    /// `7%`; `0`: no longer).
    pub fn load_baskets(&mut self, path: &Path) -> Result<(), ReferenceError> {
        self.read_baskets(Self::open(path)?, path)
    }

    /// [`ReferenceData::load_baskets`] from CSV text that came from `origin`.
    pub fn read_baskets(&mut self, source: impl std::io::Read, origin: &Path) -> Result<(), ReferenceError> {
        let mut reader = Self::reader(source);
        for (i, row) in reader.deserialize::<BasketRow>().enumerate() {
            let invalid =
                |message: String| ReferenceError::Invalid { path: origin.into(), record: i as u64 + 1, message };
            let row = row.map_err(|e| invalid(e.to_string()))?;
            let time = change_time(row.time.as_deref()).map_err(invalid)?.unwrap_or(0);
            let weight = parse_share(&row.weight).ok_or_else(|| {
                invalid(format!("weight {:?} is not a fraction in [0, 1] or a percentage in [0%, 100%]", row.weight))
            })?;
            if row.basket.is_empty() || row.member.is_empty() {
                return Err(invalid("basket and member must not be empty".into()));
            }
            if row.basket == row.member {
                return Err(invalid(format!("basket {} holds itself", row.basket)));
            }
            // Relatedness goes through underlyings: a derivative named here would never match.
            for name in [&row.basket, &row.member] {
                if let Some(underlying) = self.underlying_named(name, time) {
                    return Err(invalid(format!(
                        "{name} is written on {underlying}: a basket and its members are named by their underlyings"
                    )));
                }
            }
            self.set_weight(time, &row.basket, &row.member, weight);
        }
        self.join_families();
        Ok(())
    }

    /// The underlying's name of the instrument called `name` at `time`, when it has one.
    fn underlying_named(&self, name: &str, time: u64) -> Option<String> {
        let underlying = self.instrument(Symbol::of(name.as_bytes()), time)?.underlying;
        (!underlying.is_none()).then(|| self.names.name(underlying).into_owned())
    }

    /// From `time` on, `basket` holds `member` at `weight` of its value (tests, the library).
    pub fn add_basket_member(&mut self, time: u64, basket: &str, member: &str, weight: f64) {
        self.set_weight(time, basket, member, weight);
        self.join_families();
    }

    fn set_weight(&mut self, time: u64, basket: &str, member: &str, weight: f64) {
        let (basket, _) = self.names.intern(basket.as_bytes());
        let (member, _) = self.names.intern(member.as_bytes());
        match self.baskets.get_mut(&(basket, member)) {
            Some(versions) => versions.set(time, weight),
            None => {
                self.baskets.insert((basket, member), Versions::new(time, weight));
            }
        }
    }

    /// Groups the instruments that baskets relate (a member held at `basket_weight` or more at
    /// any time): each maps to the least symbol of its group, whatever order the rows came in.
    fn join_families(&mut self) {
        let threshold = self.basket_weight();
        let mut parent: IdMap<Symbol, Symbol> = IdMap::default();
        fn find(parent: &mut IdMap<Symbol, Symbol>, mut x: Symbol) -> Symbol {
            while let Some(&p) = parent.get(&x) {
                if p == x {
                    break;
                }
                x = p;
            }
            x
        }
        let mut edges: Vec<(Symbol, Symbol)> = self
            .baskets
            .iter()
            .filter(|(_, versions)| versions.iter().any(|(_, weight)| *weight >= threshold))
            .map(|(&pair, _)| pair)
            .collect();
        edges.sort_unstable();
        for (basket, member) in edges {
            for s in [basket, member] {
                parent.entry(s).or_insert(s);
            }
            let (a, b) = (find(&mut parent, basket), find(&mut parent, member));
            let (low, high) = if a < b { (a, b) } else { (b, a) };
            parent.insert(high, low);
        }
        let symbols: Vec<Symbol> = parent.keys().copied().collect();
        self.families = symbols.into_iter().map(|s| (s, find(&mut parent, s))).collect();
    }

    /// The weight `member` has in `basket` at event time `time` (0 when it holds none).
    pub fn basket_weight_of(&self, basket: Symbol, member: Symbol, time: u64) -> f64 {
        self.baskets.get(&(basket, member)).and_then(|v| v.at(time)).copied().unwrap_or(0.0)
    }

    /// The weight a member must have in a basket for the two to be related
    /// (`reference.basket_weight`, 5 % by default).
    pub fn basket_weight(&self) -> f64 {
        self.basket_weight.unwrap_or(0.05)
    }

    /// Sets [`ReferenceData::basket_weight`].
    pub fn set_basket_weight(&mut self, weight: f64) {
        self.basket_weight = Some(weight);
        self.join_families();
    }

    /// Whether the reference data has baskets.
    pub fn has_baskets(&self) -> bool {
        !self.baskets.is_empty()
    }

    /// The instrument that stands for `instrument`'s group at `time`: its underlying (or
    /// itself), joined with the baskets holding it or held by it at [`basket_weight`] or more.
    /// Trading anywhere in a group can be trading on a block elsewhere in it.
    ///
    /// [`basket_weight`]: ReferenceData::basket_weight
    pub fn family(&self, instrument: Symbol, time: u64) -> Symbol {
        let root = self.root(instrument, time);
        if self.families.is_empty() {
            return root;
        }
        self.families.get(&root).copied().unwrap_or(root)
    }

    /// Whether trading `a` at `time` is trading on `b` (FINRA 5270's related financial
    /// instrument): the same underlying, or one a basket holding the other's underlying at
    /// [`basket_weight`] or more then.
    ///
    /// ```
    /// use surveil::model::Symbol;
    /// use surveil::reference::ReferenceData;
    ///
    /// let mut reference = ReferenceData::new(2);
    /// reference.add_basket_member(0, "XLK", "AAPL", 0.22);
    /// reference.add_basket_member(0, "XLK", "TINY", 0.001);
    /// let [xlk, aapl, tiny] = [b"XLK" as &[u8], b"AAPL", b"TINY"].map(Symbol::of);
    /// assert!(reference.related(xlk, aapl, 0) && reference.related(aapl, xlk, 0));
    /// assert!(!reference.related(xlk, tiny, 0), "0.1 % of the fund is not material");
    /// assert!(!reference.related(aapl, tiny, 0), "two members are not related to each other");
    /// ```
    ///
    /// [`basket_weight`]: ReferenceData::basket_weight
    pub fn related(&self, a: Symbol, b: Symbol, time: u64) -> bool {
        let (a, b) = (self.root(a, time), self.root(b, time));
        if a == b {
            return true;
        }
        let threshold = self.basket_weight();
        self.basket_weight_of(a, b, time) >= threshold || self.basket_weight_of(b, a, time) >= threshold
    }

    /// Adds a change of ownership (tests, generators).
    pub fn add_ownership(&mut self, time: u64, account: &str, owner: &str, share: f64) {
        let (account, _) = self.names.intern(account.as_bytes());
        let (owner, _) = self.names.intern(owner.as_bytes());
        self.ownership.push(OwnershipChange { time, account, owner, share });
    }

    /// Every ownership the reference data states, as changes over event time: each account's
    /// `owner` in the accounts file holds all of it while the account names it (from the
    /// start, or from the row's time), followed by the ownership file's changes in file order.
    pub fn ownership(&self) -> Vec<OwnershipChange> {
        let mut accounts: Vec<(&Symbol, &Versions<Account>)> = self.accounts.iter().collect();
        accounts.sort_by_key(|(account, _)| **account);
        let mut all = Vec::new();
        for (&account, versions) in accounts {
            let holds = |owner: Symbol| !owner.is_none() && owner != account;
            let mut previous = Symbol::NONE;
            for (time, a) in versions.iter() {
                if a.owner == previous {
                    continue;
                }
                if holds(previous) {
                    all.push(OwnershipChange { time: *time, account, owner: previous, share: 0.0 });
                }
                if holds(a.owner) {
                    all.push(OwnershipChange { time: *time, account, owner: a.owner, share: 1.0 });
                }
                previous = a.owner;
            }
        }
        all.sort_by_key(|c| (c.time, c.account, c.owner));
        all.extend(self.ownership.iter().copied());
        all
    }

    /// Whether the reference data states any ownership (so that accounts may be linked).
    pub fn has_ownership(&self) -> bool {
        !self.ownership.is_empty() || self.accounts.values().flat_map(Versions::iter).any(|(_, a)| !a.owner.is_none())
    }

    /// The share an owner must hold for accounts to be linked (`reference.link_share`, 10 % by
    /// default).
    pub fn link_share(&self) -> f64 {
        self.link_share.unwrap_or(0.10)
    }

    /// Sets [`ReferenceData::link_share`].
    pub fn set_link_share(&mut self, share: f64) {
        self.link_share = Some(share);
    }

    /// Adds an instrument (tests, generators).
    pub fn add_instrument(&mut self, name: &str, instrument: Instrument) {
        let (symbol, _) = self.names.intern(name.as_bytes());
        self.instruments.insert(symbol, Versions::new(0, instrument));
    }

    /// Changes an instrument from event time `time` on (tests, generators). Its price scale
    /// is the one it was added with.
    pub fn change_instrument(&mut self, time: u64, name: &str, mut instrument: Instrument) {
        let (symbol, _) = self.names.intern(name.as_bytes());
        instrument.price_scale = self.price_scale(symbol);
        self.set_instrument(symbol, time, instrument);
    }

    /// Adds an account (tests, generators).
    pub fn add_account(&mut self, name: &str, owner: &str) {
        let (account, _) = self.names.intern(name.as_bytes());
        let (owner, _) = self.names.intern(owner.as_bytes());
        self.accounts.insert(account, Versions::new(0, Account { owner, ..Default::default() }));
    }

    /// Adds an account with its desk and trader (tests, generators); an empty name is none.
    pub fn set_account(&mut self, name: &str, owner: &str, desk: &str, trader: &str) {
        let mut intern = |text: &str| if text.is_empty() { Symbol::NONE } else { self.names.intern(text.as_bytes()).0 };
        let (account, owner, desk, trader) = (intern(name), intern(owner), intern(desk), intern(trader));
        self.accounts.insert(account, Versions::new(0, Account { owner, desk, trader, ..Account::default() }));
    }

    /// Changes an account from event time `time` on: the library's way to give reference
    /// data that changes over time (the files' rows with a `time` do the same).
    ///
    /// ```
    /// use surveil::model::{Side, Symbol};
    /// use surveil::reference::{Account, ReferenceData};
    ///
    /// let mut reference = ReferenceData::new(2);
    /// reference.set_account("ACC1", "FUND", "EQUITIES", "ann");
    /// let rates = Account { desk: Symbol::of(b"RATES"), ..*reference.account(Symbol::of(b"ACC1"), 0).unwrap() };
    /// reference.change_account(1_000, "ACC1", rates);
    /// let desk_at = |time| {
    ///     let mut order = surveil::testing::new_order("X", "O1", "ACC1", Side::Buy, "1.00", 1).at(time);
    ///     reference.enrich(&mut order);
    ///     reference.names.name(order.desk).into_owned()
    /// };
    /// assert_eq!((desk_at(999), desk_at(1_000)), ("EQUITIES".to_string(), "RATES".to_string()));
    /// ```
    pub fn change_account(&mut self, time: u64, name: &str, account: Account) {
        let (symbol, _) = self.names.intern(name.as_bytes());
        self.set_account_version(symbol, time, account);
    }

    /// Sets the capacity an account trades in (tests, generators); the account is added if new.
    pub fn set_capacity(&mut self, name: &str, capacity: Capacity) {
        let (account, _) = self.names.intern(name.as_bytes());
        let versions = self.accounts.entry(account).or_insert_with(|| Versions::new(0, Account::default()));
        for (_, a) in versions.versions.iter_mut() {
            a.capacity = capacity;
        }
    }

    /// The instrument a derivative is written on at `time`, or the instrument itself: what
    /// trading in one instrument says about another.
    pub fn root(&self, instrument: Symbol, time: u64) -> Symbol {
        match self.instrument(instrument, time) {
            Some(i) if !i.underlying.is_none() => i.underlying,
            _ => instrument,
        }
    }

    /// The instrument as it is at event time `time`, if known then.
    #[inline]
    pub fn instrument(&self, symbol: Symbol, time: u64) -> Option<&Instrument> {
        let loaded = self.instruments.get(&symbol).and_then(|v| v.at_from(time));
        if !self.live.is_active() {
            return loaded.map(|(_, record)| record);
        }
        latest(loaded, self.live.instrument(symbol, time))
    }

    /// From when to when (exclusive) the instrument's reference data stays as it is at `time`:
    /// how long an answer derived from it may be kept. While the run follows live changes, a
    /// change may come at any time after `time`, so the answer holds for `time` only.
    pub fn instrument_span(&self, symbol: Symbol, time: u64) -> (u64, u64) {
        if self.live.followed.load(Ordering::Acquire) {
            let from = self.instrument_from(symbol, time).unwrap_or(0);
            return (from, time.saturating_add(1));
        }
        self.instruments.get(&symbol).map_or((0, u64::MAX), |v| v.span(time))
    }

    fn instrument_from(&self, symbol: Symbol, time: u64) -> Option<u64> {
        let loaded = self.instruments.get(&symbol).and_then(|v| v.at_from(time)).map(|(from, _)| from);
        let live = self.live.is_active().then(|| self.live.instrument(symbol, time).map(|(from, _)| from)).flatten();
        loaded.max(live)
    }

    /// The run follows changes of instruments and accounts that arrive while it goes on
    /// ([`ReferenceData::apply_live`]): answers derived from an instrument's record are not
    /// kept beyond the time they were asked for ([`ReferenceData::instrument_span`]). Set
    /// before the dataflow is built.
    pub fn follow_live_changes(&self) {
        self.live.followed.store(true, Ordering::Release);
    }

    /// Whether the run follows live changes ([`ReferenceData::follow_live_changes`]).
    pub fn follows_live_changes(&self) -> bool {
        self.live.followed.load(Ordering::Acquire)
    }

    /// Adds a change that came while the run goes on, in force from `time` (after any
    /// version, loaded or live, that starts earlier or at the same time with a smaller id).
    /// Every worker of a process may apply the same change: it is kept once, by its id.
    /// Lookups at times before `time` are not affected, so applying a change before every
    /// event earlier than it has been processed is safe;
    /// [`crate::live_reference::FollowReference`] applies each before any event at or after
    /// its time is processed.
    pub fn apply_live(&self, time: u64, change: &LiveChange) {
        self.live.apply(time, change);
    }

    /// Sets the owner, desk and trader of an event (and the owners of a trade's parties) from
    /// a live change in force at the event's time, replacing what the loaded records gave:
    /// an event read before a change came is enriched again once the change is applied.
    pub fn enrich_live(&self, event: &mut Event) {
        if !self.live.is_active() {
            return;
        }
        let time = event.time;
        let loaded = |symbol: Symbol| self.accounts.get(&symbol).and_then(|v| v.at_from(time));
        let account = event.account;
        self.live.refill(
            account,
            time,
            loaded(account),
            [(&mut event.owner, |a| a.owner), (&mut event.desk, |a| a.desk), (&mut event.trader, |a| a.trader)],
        );
        if let crate::model::Body::Trade { buyer, seller, .. } = &mut event.body {
            for party in [buyer, seller] {
                self.live.refill(party.account, time, loaded(party.account), [(&mut party.owner, |a| a.owner)]);
            }
        }
    }

    /// True when some instrument closes at a time of its own, at some time.
    pub fn has_closing_times(&self) -> bool {
        self.instruments.values().flat_map(Versions::iter).any(|(_, i)| i.closing_time.is_some())
    }

    /// Decimal places of the instrument's prices (one scale for all of its versions).
    #[inline]
    pub fn price_scale(&self, instrument: Symbol) -> u8 {
        self.instruments
            .get(&instrument)
            .and_then(|v| v.iter().next())
            .map_or(self.default_price_scale, |(_, i)| i.price_scale)
    }

    /// Sets the tick size of `venue`'s instruments that have none in the instrument file.
    pub fn set_venue_tick(&mut self, venue: Symbol, tick: Decimal) {
        self.venue_ticks.insert(venue, tick);
    }

    /// The minimum price increment of `instrument` traded on `venue` near `price`, in units of
    /// its price scale (at least one): the instrument file's `tick_size`, else the venue's
    /// (the IMC simulation trades whole seashells), else the SEC Rule 612 minimum pricing
    /// increment for US equities ($0.01 at or above $1.00, $0.0001 below).
    pub fn tick_size(&self, instrument: Symbol, venue: Symbol, price: Price, time: u64) -> i64 {
        self.tick_rule(instrument, venue, time).at(price)
    }

    /// What [`ReferenceData::tick_size`] depends on at `time`, looked up once: keep it per
    /// instrument over its [`ReferenceData::instrument_span`] and ask it for each price.
    pub fn tick_rule(&self, instrument: Symbol, venue: Symbol, time: u64) -> TickRule {
        let scale = self.price_scale(instrument);
        if let Some(tick) = self.instrument(instrument, time).and_then(|i| i.tick_size) {
            return TickRule::Fixed(tick.0.max(1));
        }
        // In units of the price scale: trailing zeros do not count ("2.0" is 2), and a tick
        // finer than the scale (which no price of the instrument could show) is one unit.
        let units = |mut tick: Decimal| {
            while tick.scale > 0 && tick.mantissa % 10 == 0 {
                tick = Decimal { mantissa: tick.mantissa / 10, scale: tick.scale - 1 };
            }
            tick.at_scale(scale).and_then(|u| i64::try_from(u).ok()).unwrap_or(1).max(1)
        };
        if let Some(&tick) = self.venue_ticks.get(&venue) {
            return TickRule::Fixed(units(tick));
        }
        TickRule::Rule612 {
            one: i64::try_from(10i128.pow(scale as u32)).unwrap_or(i64::MAX),
            cent: units(Decimal { mantissa: 1, scale: 2 }),
            hundredth_cent: units(Decimal { mantissa: 1, scale: 4 }),
        }
    }

    /// A price as an exact decimal.
    pub fn price(&self, instrument: Symbol, price: Price) -> Decimal {
        Decimal::price(price, self.price_scale(instrument))
    }

    /// The account as it is at event time `time`, if known then.
    #[inline]
    pub fn account(&self, symbol: Symbol, time: u64) -> Option<&Account> {
        let loaded = self.accounts.get(&symbol).and_then(|v| v.at_from(time));
        if !self.live.is_active() {
            return loaded.map(|(_, record)| record);
        }
        latest(loaded, self.live.account(symbol, time))
    }

    /// True when some account has a stated capacity (client, proprietary or employee) at
    /// some time.
    pub fn has_capacities(&self) -> bool {
        self.accounts.values().flat_map(Versions::iter).any(|(_, a)| a.capacity != Capacity::Unknown)
    }

    /// The number of accounts.
    pub fn account_count(&self) -> usize {
        self.accounts.len()
    }

    /// Fills the owner, desk and trader of an event (and the owners of both parties of a
    /// trade) from the account reference data as of the event's time, where the event leaves
    /// them empty. Says what the event names that the loaded files do not know at its time
    /// (nothing is checked against a kind of file that is not loaded).
    #[inline]
    pub fn enrich(&self, event: &mut Event) -> Missing {
        let time = event.time;
        let mut missing = Missing::default();
        if !self.instruments.is_empty() && self.instrument(event.instrument, time).is_none() {
            missing = missing.with(0);
        }
        if self.accounts.is_empty() {
            return missing;
        }
        let account = self.account(event.account, time);
        if account.is_none() && !event.account.is_none() {
            missing = missing.with(1);
        }
        if let Some(account) = account {
            if event.owner.is_none() {
                event.owner = account.owner;
            }
            if event.desk.is_none() {
                event.desk = account.desk;
            }
            if event.trader.is_none() {
                event.trader = account.trader;
            }
        }
        if let crate::model::Body::Trade { buyer, seller, .. } = &mut event.body {
            for (field, party) in [(2, buyer), (3, seller)] {
                match self.account(party.account, time) {
                    Some(account) if party.owner.is_none() => party.owner = account.owner,
                    Some(_) => {}
                    None if !party.account.is_none() => missing = missing.with(field),
                    None => {}
                }
            }
        }
        missing
    }
}

/// Of a loaded and a live version in force, the one that started later (the live one when
/// both started together: it came after the files).
#[inline]
fn latest<'a, V>(loaded: Option<(u64, &'a V)>, live: Option<(u64, &'a V)>) -> Option<&'a V> {
    match (loaded, live) {
        (Some((from, record)), Some((live_from, _))) if from > live_from => Some(record),
        (_, Some((_, record))) | (Some((_, record)), None) => Some(record),
        (None, None) => None,
    }
}

/// The time of a change row: none for a row without one (the record from the start).
fn change_time(text: Option<&str>) -> Result<Option<u64>, String> {
    match text.map(str::trim).filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(text) => crate::model::time::parse_event_time(text.as_bytes())
            .map(Some)
            .ok_or_else(|| format!("time {text:?}: {}", crate::model::time::event_time_error(text.as_bytes()))),
    }
}

/// A share as a fraction in [0, 1]: `0.25` or `25%`.
fn parse_share(text: &str) -> Option<f64> {
    let share = match text.strip_suffix('%') {
        Some(percent) => percent.trim().parse::<f64>().ok()? / 100.0,
        None => text.parse::<f64>().ok()?,
    };
    (0.0..=1.0).contains(&share).then_some(share)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baskets_relate_a_fund_to_what_it_materially_holds_over_time() {
        let mut data = ReferenceData::new(2);
        data.read_instruments("instrument,underlying\nACME,\nACME_C,ACME\n".as_bytes(), Path::new("i.csv"))
            .expect("instruments");
        let text = "time,basket,member,weight\n,FUND,ACME,20%\n,FUND,BIG,0.3\n,FUND,TINY,0.01\n,OTHER,BIG,6%\n\
                    1000,FUND,ACME,0\n";
        data.read_baskets(text.as_bytes(), Path::new("b.csv")).expect("baskets");
        let s = |name: &str| Symbol::of(name.as_bytes());
        assert!(data.related(s("FUND"), s("ACME"), 999) && data.related(s("ACME_C"), s("FUND"), 0), "options follow");
        assert!(!data.related(s("FUND"), s("ACME"), 1000), "sold out of it at 1000");
        assert!(!data.related(s("FUND"), s("TINY"), 0) && !data.related(s("ACME"), s("BIG"), 0));
        // One family through BIG, whatever the time (routing must not move with it); TINY is
        // below the weight.
        let family = data.family(s("FUND"), 0);
        for name in ["ACME", "ACME_C", "BIG", "OTHER"] {
            assert_eq!(data.family(s(name), 5_000), family, "{name}");
        }
        assert_eq!(data.family(s("TINY"), 0), s("TINY"));
        // The rows' order does not matter.
        let mut reversed = ReferenceData::new(2);
        let rows: Vec<&str> = text.lines().skip(1).collect();
        let text =
            format!("time,basket,member,weight\n{}\n", rows.iter().rev().copied().collect::<Vec<_>>().join("\n"));
        reversed.read_baskets(text.as_bytes(), Path::new("b.csv")).expect("baskets");
        assert_eq!(reversed.family(s("ACME"), 0), data.family(s("ACME"), 0));
        for (bad, why) in [
            ("basket,member,weight\nFUND,ACME,lots\n", "weight"),
            ("basket,member,weight\nFUND,FUND,0.2\n", "holds itself"),
            ("basket,member,weight\nFUND,ACME_C,0.2\n", "written on ACME"),
        ] {
            let error = data.read_baskets(bad.as_bytes(), Path::new("b.csv")).expect_err(bad).to_string();
            assert!(error.contains(why) && error.contains("b.csv"), "{error}");
        }
    }

    fn instruments(text: &str) -> ReferenceData {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("instruments.csv");
        std::fs::write(&path, text).expect("write");
        let mut data = ReferenceData::new(4);
        data.load_instruments(&path).expect("load");
        data
    }

    #[test]
    fn tick_size_comes_from_the_file_then_the_venue_then_rule_612() {
        let mut data = instruments("instrument,price_scale,tick_size\nEUX,3,0.005\nUSD4,4,\nWHOLE,0,\n");
        let (eux, usd4, whole) = (Symbol::of(b"EUX"), Symbol::of(b"USD4"), Symbol::of(b"WHOLE"));
        let venue = Symbol::of(b"SIM");
        assert_eq!(data.tick_size(eux, venue, Price(10_000), 0), 5);
        // Rule 612: a cent at or above one dollar, a hundredth of a cent below.
        assert_eq!(data.tick_size(usd4, venue, Price(200_000), 0), 100);
        assert_eq!(data.tick_size(usd4, venue, Price(10_000), 0), 100);
        assert_eq!(data.tick_size(usd4, venue, Price(9_999), 0), 1);
        // Never finer than the price scale.
        assert_eq!(data.tick_size(whole, venue, Price(3), 0), 1);
        data.set_venue_tick(venue, Decimal::parse("1").expect("decimal"));
        assert_eq!(data.tick_size(usd4, venue, Price(9_999), 0), 10_000);
        data.set_venue_tick(venue, Decimal::parse("2.0").expect("decimal"));
        assert_eq!(data.tick_size(whole, venue, Price(3), 0), 2, "trailing zeros do not make a tick finer");
        assert_eq!(data.tick_size(eux, venue, Price(10_000), 0), 5, "the instrument's own tick wins");
    }

    #[test]
    fn a_tick_size_finer_than_the_price_scale_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("instruments.csv");
        std::fs::write(&path, "instrument,price_scale,tick_size\nX,2,0.001\n").expect("write");
        let error = ReferenceData::new(4).load_instruments(&path).expect_err("refused");
        assert!(error.to_string().contains("tick_size"), "{error}");
    }

    fn load(kind: &str, text: &str) -> Result<ReferenceData, ReferenceError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(format!("{kind}.csv"));
        std::fs::write(&path, text).expect("write");
        let mut data = ReferenceData::new(4);
        match kind {
            "instruments" => data.load_instruments(&path)?,
            _ => data.load_accounts(&path)?,
        }
        Ok(data)
    }

    #[test]
    fn a_timed_instrument_row_applies_from_its_time_and_keeps_the_cells_it_leaves_empty() {
        let data = load(
            "instruments",
            "time,instrument,price_scale,currency,tick_size,underlying\n\
             ,OPT,2,USD,0.05,AAA\n\
             2000,OPT,,,0.01,\n\
             3000,NEW,3,EUR,,\n",
        )
        .expect("load");
        let (opt, new, venue) = (Symbol::of(b"OPT"), Symbol::of(b"NEW"), Symbol::of(b"SIM"));
        assert_eq!(data.tick_size(opt, venue, Price(100), 1999), 5);
        assert_eq!(data.tick_size(opt, venue, Price(100), 2000), 1);
        let later = data.instrument(opt, 5000).expect("known");
        assert_eq!((later.currency.as_str(), later.underlying), ("USD", Symbol::of(b"AAA")), "empty cells kept");
        assert_eq!(data.root(opt, 0), Symbol::of(b"AAA"));
        assert_eq!(data.instrument_span(opt, 0), (0, 2000));
        assert_eq!(data.instrument_span(opt, 2500), (2000, u64::MAX));
        // An instrument that first appears at a time is unknown before it, but its prices
        // have its scale throughout.
        assert!(data.instrument(new, 2999).is_none());
        assert_eq!(data.instrument(new, 3000).map(|i| i.currency.as_str()), Some("EUR"));
        assert_eq!(data.price_scale(new), 3);
    }

    #[test]
    fn a_change_of_price_scale_is_refused() {
        let error = load("instruments", "time,instrument,price_scale\n,X,2\n2000,X,4\n").expect_err("refused");
        assert!(error.to_string().contains("record 2") && error.to_string().contains("one scale"), "{error}");
        let error = load("instruments", "time,instrument\nsoon,X\n").expect_err("refused");
        assert!(error.to_string().contains("time \"soon\""), "{error}");
    }

    #[test]
    fn an_account_change_enriches_events_as_of_their_time_and_moves_its_ownership() {
        let data = load(
            "accounts",
            "time,account,owner,desk,trader,capacity\n\
             ,ACC1,FUND,EQ,ann,proprietary\n\
             2000,ACC1,,RATES,,\n\
             4000,ACC1,OTHER,,,client\n",
        )
        .expect("load");
        let event = |time: u64| {
            let mut e = crate::testing::new_order("X", "o1", "ACC1", crate::model::Side::Buy, "1.00", 1);
            e.time = time;
            data.enrich(&mut e);
            (
                data.names.name(e.owner).into_owned(),
                data.names.name(e.desk).into_owned(),
                data.names.name(e.trader).into_owned(),
            )
        };
        assert_eq!(event(1999), ("FUND".into(), "EQ".into(), "ann".into()));
        assert_eq!(event(2000), ("FUND".into(), "RATES".into(), "ann".into()));
        assert_eq!(event(4000), ("OTHER".into(), "RATES".into(), "ann".into()));
        let account = Symbol::of(b"ACC1");
        assert_eq!(data.account(account, 3999).map(|a| a.capacity), Some(Capacity::Proprietary));
        assert_eq!(data.account(account, 4000).map(|a| a.capacity), Some(Capacity::Client));
        let (fund, other) = (Symbol::of(b"FUND"), Symbol::of(b"OTHER"));
        let change = |time, owner, share| OwnershipChange { time, account, owner, share };
        assert_eq!(data.ownership(), vec![change(0, fund, 1.0), change(4000, fund, 0.0), change(4000, other, 1.0)]);
    }

    #[test]
    fn closing_times_are_read_as_local_times_of_day() {
        let data = load("instruments", "instrument,closing_time\nFUT,15:15\nEQ,\n").expect("load");
        let close = |name: &[u8]| data.instrument(Symbol::of(name), 0).and_then(|i| i.closing_time);
        assert_eq!(close(b"FUT"), chrono::NaiveTime::from_hms_opt(15, 15, 0));
        assert_eq!(close(b"EQ"), None);
        assert!(data.has_closing_times());
        let error = load("instruments", "instrument,closing_time\nFUT,3pm\n").expect_err("refused");
        assert!(error.to_string().contains("closing_time = \"3pm\""), "{error}");
    }

    #[test]
    fn live_changes_answer_lookups_from_their_time_beside_the_loaded_versions() {
        let mut data = ReferenceData::new(2);
        data.read_instruments("instrument,tick_size\nACME,0.01\n".as_bytes(), Path::new("i.csv")).expect("instruments");
        data.read_accounts("account,owner,desk\nACC1,ANN,EQ\n".as_bytes(), Path::new("a.csv")).expect("accounts");
        let shared = data.clone();
        let (acme, acc1) = (Symbol::of(b"ACME"), Symbol::of(b"ACC1"));
        let tick = |d: &ReferenceData, t| d.instrument(acme, t).and_then(|i| i.tick_size).map(|p| p.0);
        // The feed's copy reads a change at 2,000 (its own time) and one stamped at 1,000
        // that came when the events had been read to 3,000: it applies from 3,000.
        let mut known = data.clone();
        let (mut next_id, mut owned) = (0, Vec::new());
        let text = "time,instrument,tick_size\n2000,ACME,0.05\n";
        let first =
            known.read_live(LiveKind::Instruments, text.as_bytes(), Path::new("t"), 500, &mut next_id, &mut owned);
        let first = first.expect("read");
        assert_eq!(first.iter().map(|(c, t)| (c.id(), *t)).collect::<Vec<_>>(), vec![(1, 2000)]);
        let text = "time,account,desk\n1000,ACC1,FIXED_INCOME\n";
        let second =
            known.read_live(LiveKind::Accounts, text.as_bytes(), Path::new("t"), 3000, &mut next_id, &mut owned);
        let second = second.expect("read");
        assert_eq!(second.iter().map(|(c, t)| (c.id(), *t)).collect::<Vec<_>>(), vec![(2, 3000)]);
        // The row's empty cells keep what was in force: the owner stays ANN.
        let LiveChange::Account { record, .. } = &second[0].0 else { panic!("an account") };
        assert!(owned.is_empty(), "the owner did not change");
        let text = "time,account,owner\n,ACC1,BOB\n";
        let moved =
            known.read_live(LiveKind::Accounts, text.as_bytes(), Path::new("t"), 3000, &mut next_id, &mut owned);
        assert_eq!(moved.expect("read").len(), 1);
        let acc = |owner: &[u8], share| OwnershipChange { time: 3000, account: acc1, owner: Symbol::of(owner), share };
        assert_eq!(owned, vec![(3, acc(b"ANN", 0.0)), (3, acc(b"BOB", 1.0))]);
        assert_eq!((record.owner, record.desk), (Symbol::of(b"ANN"), Symbol::of(b"FIXED_INCOME")));
        assert_eq!(
            known.names_in(&second[0].0).iter().find(|(s, _)| *s == record.desk).map(|(_, n)| n.as_str()),
            Some("FIXED_INCOME")
        );
        // Every worker applies every change, in any order: each is kept once.
        for (change, time) in second.iter().chain(&first).chain(&first) {
            shared.apply_live(*time, change);
        }
        assert_eq!((tick(&shared, 1999), tick(&shared, 2000)), (Some(1), Some(5)));
        let desk = |t| shared.account(acc1, t).map(|a| a.desk);
        assert_eq!((desk(2999), desk(3000)), (Some(Symbol::of(b"EQ")), Some(Symbol::of(b"FIXED_INCOME"))));
        // An event read before the change came is enriched again from it; one before its time is not.
        let mut late = crate::testing::new_order("ACME", "O1", "ACC1", crate::model::Side::Buy, "1.00", 1).at(3500);
        data.enrich(&mut late);
        assert_eq!(late.desk, Symbol::of(b"EQ"), "the loaded record");
        shared.enrich_live(&mut late);
        assert_eq!(late.desk, Symbol::of(b"FIXED_INCOME"));
        // A desk the event gave itself is kept.
        let mut own = crate::testing::new_order("ACME", "O3", "ACC1", crate::model::Side::Buy, "1.00", 1).at(3500);
        own.desk = Symbol::of(b"ITS_OWN_DESK");
        shared.enrich_live(&mut own);
        assert_eq!((own.desk, own.owner), (Symbol::of(b"ITS_OWN_DESK"), Symbol::of(b"ANN")));
        let mut early = crate::testing::new_order("ACME", "O2", "ACC1", crate::model::Side::Buy, "1.00", 1).at(2500);
        shared.enrich(&mut early);
        shared.enrich_live(&mut early);
        assert_eq!(early.desk, Symbol::of(b"EQ"));
        // A loaded version that starts later than a live one wins from its own time.
        let mut loaded_later = data.clone();
        loaded_later.change_account(4000, "ACC1", Account { desk: Symbol::of(b"FX"), ..Account::default() });
        loaded_later.apply_live(3000, &second[0].0);
        let desk = |t| loaded_later.account(acc1, t).map(|a| a.desk);
        assert_eq!((desk(3500), desk(4000)), (Some(Symbol::of(b"FIXED_INCOME")), Some(Symbol::of(b"FX"))));
        // Two changes of one time: the later id is in force, whichever was applied first.
        let other =
            LiveChange::Account { id: 9, symbol: acc1, record: Account { desk: Symbol::of(b"OPS"), ..*record } };
        let copy = data.clone();
        copy.apply_live(3000, &other);
        copy.apply_live(3000, &second[0].0);
        assert_eq!(copy.account(acc1, 3000).map(|a| a.desk), Some(Symbol::of(b"OPS")));
        // While live changes are followed, an instrument's answer is kept for its time only.
        assert_eq!(shared.instrument_span(acme, 2500).1, u64::MAX);
        shared.follow_live_changes();
        assert_eq!(shared.instrument_span(acme, 2500), (2000, 2501));
    }

    #[test]
    fn a_live_change_cannot_rescale_or_reroute_an_instrument() {
        let mut data = ReferenceData::new(2);
        data.read_instruments("instrument,underlying\nACME,\nACME_C,ACME\nOTHER,\n".as_bytes(), Path::new("i.csv"))
            .expect("instruments");
        let (mut next_id, mut owned) = (0, Vec::new());
        let mut read = |text: &str| {
            data.read_live(LiveKind::Instruments, text.as_bytes(), Path::new("t"), 10, &mut next_id, &mut owned)
        };
        let error = read("instrument,price_scale\nNEW,4\n").expect_err("a new scale");
        assert!(error.to_string().contains("default 2"), "{error}");
        let error = read("instrument,underlying\nACME_C,OTHER\n").expect_err("another underlying");
        assert!(error.to_string().contains("cannot change while running"), "{error}");
        // A whole record (no time) that leaves the underlying out would also take it away.
        let error = read("instrument,tick_size\nACME_C,0.05\n").expect_err("no underlying");
        assert!(error.to_string().contains("cannot change while running"), "{error}");
        // A new listing at the default scale, with an underlying, and a known underlying
        // given again, are fine.
        let listed = read("instrument,price_scale,underlying\nNEW_C,2,ACME\n").expect("a new option");
        assert_eq!(listed.len(), 1);
        read("instrument,underlying,tick_size\nACME_C,ACME,0.05\n").expect("the same underlying");
        read("time,instrument,tick_size\n20,ACME_C,0.01\n").expect("a change that keeps it");
    }
}
