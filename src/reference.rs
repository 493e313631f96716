//! Reference data: instruments (price scale, identifiers) and accounts (beneficial owner, desk,
//! trader). Loaded once and shared read-only by every worker.

use std::path::{Path, PathBuf};

use serde::Deserialize;

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

/// What surveil knows about an instrument.
#[derive(Debug, Clone, Default)]
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
}

impl Instrument {
    /// How a long position in the instrument moves with its underlying: -1 for a put option
    /// (CFI `OP`), 1 otherwise (the underlying itself, calls, futures).
    pub fn direction(&self) -> i8 {
        if self.cfi.starts_with("OP") { -1 } else { 1 }
    }
}

/// In what capacity an account trades (FINRA 5270, MiFIR RTS 22 field 29).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
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
#[derive(Debug, Clone, Copy, Default)]
pub struct Account {
    /// Beneficial owner.
    pub owner: Symbol,
    /// Desk.
    pub desk: Symbol,
    /// Trader.
    pub trader: Symbol,
    /// In what capacity it trades.
    pub capacity: Capacity,
}

/// Instruments and accounts, by symbol.
#[derive(Debug, Clone, Default)]
pub struct ReferenceData {
    instruments: IdMap<Symbol, Instrument>,
    accounts: IdMap<Symbol, Account>,
    default_price_scale: u8,
    /// The tick size of a venue's instruments that have none of their own.
    venue_ticks: IdMap<Symbol, Decimal>,
    /// Names of the symbols defined in the reference files.
    pub names: SymbolTable,
    /// Changes of ownership over event time, in file order.
    ownership: Vec<OwnershipChange>,
    /// `reference.link_share`, when set.
    link_share: Option<f64>,
}

/// An owner's share of an account from a time on ([`ReferenceData::ownership`]).
#[derive(Debug, Clone, Copy, PartialEq)]
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
struct InstrumentRow {
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
}

#[derive(Deserialize)]
struct AccountRow {
    account: String,
    #[serde(default)]
    owner: Option<String>,
    #[serde(default)]
    desk: Option<String>,
    #[serde(default)]
    trader: Option<String>,
    #[serde(default)]
    capacity: Option<String>,
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
        let ReferenceConfig { instruments, accounts, ownership, link_share } = &config.reference;
        data.link_share = Some(*link_share);
        if let Some(path) = instruments {
            data.load_instruments(path)?;
        }
        if let Some(path) = accounts {
            data.load_accounts(path)?;
        }
        if let Some(path) = ownership {
            data.load_ownership(path)?;
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

    /// Loads `instrument,price_scale,currency,isin,cfi,reference_price,tick_size` (every column
    /// but `instrument` optional).
    pub fn load_instruments(&mut self, path: &Path) -> Result<(), ReferenceError> {
        self.read_instruments(Self::open(path)?, path)
    }

    /// [`ReferenceData::load_instruments`] from CSV text (a header and rows) that came from
    /// `origin` (named in errors): a message of a reference topic, say.
    pub fn read_instruments(&mut self, source: impl std::io::Read, origin: &Path) -> Result<(), ReferenceError> {
        let path = origin;
        let mut reader = Self::reader(source);
        for (i, row) in reader.deserialize::<InstrumentRow>().enumerate() {
            let invalid =
                |message: String| ReferenceError::Invalid { path: path.into(), record: i as u64 + 1, message };
            let row = row.map_err(|e| invalid(e.to_string()))?;
            let scale = row.price_scale.unwrap_or(self.default_price_scale);
            if scale > crate::model::decimal::MAX_SCALE {
                return Err(invalid(format!("price_scale {scale} is too large")));
            }
            let reference_price = match row.reference_price.as_deref().filter(|s| !s.is_empty()) {
                Some(text) => Some(Price(
                    crate::model::decimal::parse_scaled(text.as_bytes(), scale)
                        .map_err(|e| invalid(format!("reference_price {text:?}: {e}")))?,
                )),
                None => None,
            };
            let tick_size = match row.tick_size.as_deref().filter(|s| !s.is_empty()) {
                Some(text) => {
                    let units = crate::model::decimal::parse_scaled(text.as_bytes(), scale)
                        .map_err(|e| invalid(format!("tick_size {text:?}: {e}")))?;
                    if units <= 0 {
                        return Err(invalid(format!(
                            "tick_size {text:?} must be positive at the instrument's {scale} decimal places"
                        )));
                    }
                    Some(Price(units))
                }
                None => None,
            };
            let (symbol, _) = self.names.intern(row.instrument.as_bytes());
            let underlying = match row.underlying.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
                Some(name) if name == row.instrument => {
                    return Err(invalid("underlying is the instrument itself".into()));
                }
                Some(name) => self.names.intern(name.as_bytes()).0,
                None => Symbol::NONE,
            };
            self.instruments.insert(
                symbol,
                Instrument {
                    price_scale: scale,
                    currency: row.currency.unwrap_or_default(),
                    isin: row.isin.unwrap_or_default(),
                    cfi: row.cfi.unwrap_or_default(),
                    reference_price,
                    tick_size,
                    underlying,
                },
            );
        }
        Ok(())
    }

    /// Loads `account,owner,desk,trader,capacity` (all but `account` optional).
    pub fn load_accounts(&mut self, path: &Path) -> Result<(), ReferenceError> {
        self.read_accounts(Self::open(path)?, path)
    }

    /// [`ReferenceData::load_accounts`] from CSV text that came from `origin`.
    pub fn read_accounts(&mut self, source: impl std::io::Read, origin: &Path) -> Result<(), ReferenceError> {
        let path = origin;
        let mut reader = Self::reader(source);
        for (i, row) in reader.deserialize::<AccountRow>().enumerate() {
            let invalid =
                |message: String| ReferenceError::Invalid { path: path.into(), record: i as u64 + 1, message };
            let row = row.map_err(|e| invalid(e.to_string()))?;
            let text = row.capacity.unwrap_or_default();
            let capacity = Capacity::parse(&text).ok_or_else(|| {
                invalid(format!("capacity {text:?} is not client, proprietary or employee (or empty)"))
            })?;
            let mut intern = |text: Option<String>| self.names.intern(text.unwrap_or_default().as_bytes()).0;
            let account = intern(Some(row.account));
            let owner = intern(row.owner);
            let desk = intern(row.desk);
            let trader = intern(row.trader);
            self.accounts.insert(account, Account { owner, desk, trader, capacity });
        }
        Ok(())
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
            let time = match row.time.as_deref().filter(|t| !t.is_empty()) {
                None => 0,
                Some(text) => crate::model::time::parse_event_time(text.as_bytes()).ok_or_else(|| {
                    invalid(format!("time {text:?}: {}", crate::model::time::event_time_error(text.as_bytes())))
                })?,
            };
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

    /// Adds a change of ownership (tests, generators).
    pub fn add_ownership(&mut self, time: u64, account: &str, owner: &str, share: f64) {
        let (account, _) = self.names.intern(account.as_bytes());
        let (owner, _) = self.names.intern(owner.as_bytes());
        self.ownership.push(OwnershipChange { time, account, owner, share });
    }

    /// Every ownership the reference data states, as changes over event time: each account's
    /// `owner` in the accounts file holds all of it from the start, followed by the ownership
    /// file's changes in file order.
    pub fn ownership(&self) -> Vec<OwnershipChange> {
        let mut all: Vec<OwnershipChange> = self
            .accounts
            .iter()
            .filter(|(account, a)| !a.owner.is_none() && a.owner != **account)
            .map(|(&account, a)| OwnershipChange { time: 0, account, owner: a.owner, share: 1.0 })
            .collect();
        all.sort_by_key(|c| (c.account, c.owner));
        all.extend(self.ownership.iter().copied());
        all
    }

    /// Whether the reference data states any ownership (so that accounts may be linked).
    pub fn has_ownership(&self) -> bool {
        !self.ownership.is_empty() || self.accounts.values().any(|a| !a.owner.is_none())
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
        self.instruments.insert(symbol, instrument);
    }

    /// Adds an account (tests, generators).
    pub fn add_account(&mut self, name: &str, owner: &str) {
        let (account, _) = self.names.intern(name.as_bytes());
        let (owner, _) = self.names.intern(owner.as_bytes());
        self.accounts.insert(account, Account { owner, ..Default::default() });
    }

    /// Adds an account with its desk and trader (tests, generators); an empty name is none.
    pub fn set_account(&mut self, name: &str, owner: &str, desk: &str, trader: &str) {
        let mut intern = |text: &str| if text.is_empty() { Symbol::NONE } else { self.names.intern(text.as_bytes()).0 };
        let (account, owner, desk, trader) = (intern(name), intern(owner), intern(desk), intern(trader));
        self.accounts.insert(account, Account { owner, desk, trader, capacity: Capacity::Unknown });
    }

    /// Sets the capacity an account trades in (tests, generators); the account is added if new.
    pub fn set_capacity(&mut self, name: &str, capacity: Capacity) {
        let (account, _) = self.names.intern(name.as_bytes());
        self.accounts.entry(account).or_default().capacity = capacity;
    }

    /// The instrument a derivative is written on, or the instrument itself: what trading in
    /// one instrument says about another.
    pub fn root(&self, instrument: Symbol) -> Symbol {
        match self.instruments.get(&instrument) {
            Some(i) if !i.underlying.is_none() => i.underlying,
            _ => instrument,
        }
    }

    /// The instrument, if known.
    pub fn instrument(&self, symbol: Symbol) -> Option<&Instrument> {
        self.instruments.get(&symbol)
    }

    /// Decimal places of the instrument's prices.
    #[inline]
    pub fn price_scale(&self, instrument: Symbol) -> u8 {
        self.instruments.get(&instrument).map_or(self.default_price_scale, |i| i.price_scale)
    }

    /// Sets the tick size of `venue`'s instruments that have none in the instrument file.
    pub fn set_venue_tick(&mut self, venue: Symbol, tick: Decimal) {
        self.venue_ticks.insert(venue, tick);
    }

    /// The minimum price increment of `instrument` traded on `venue` near `price`, in units of
    /// its price scale (at least one): the instrument file's `tick_size`, else the venue's
    /// (the IMC simulation trades whole seashells), else the SEC Rule 612 minimum pricing
    /// increment for US equities ($0.01 at or above $1.00, $0.0001 below).
    pub fn tick_size(&self, instrument: Symbol, venue: Symbol, price: Price) -> i64 {
        self.tick_rule(instrument, venue).at(price)
    }

    /// What [`ReferenceData::tick_size`] depends on, looked up once: keep it per instrument
    /// and ask it for each price.
    pub fn tick_rule(&self, instrument: Symbol, venue: Symbol) -> TickRule {
        let scale = self.price_scale(instrument);
        if let Some(tick) = self.instrument(instrument).and_then(|i| i.tick_size) {
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

    /// The account, if known.
    #[inline]
    pub fn account(&self, symbol: Symbol) -> Option<&Account> {
        self.accounts.get(&symbol)
    }

    /// True when some account has a stated capacity (client, proprietary or employee).
    pub fn has_capacities(&self) -> bool {
        self.accounts.values().any(|a| a.capacity != Capacity::Unknown)
    }

    /// The number of accounts.
    pub fn account_count(&self) -> usize {
        self.accounts.len()
    }

    /// Fills the owner, desk and trader of an event (and of both parties of a trade) from the
    /// account reference data, where the event leaves them empty.
    #[inline]
    pub fn enrich(&self, event: &mut Event) {
        if self.accounts.is_empty() {
            return;
        }
        if let Some(account) = self.accounts.get(&event.account) {
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
            for party in [buyer, seller] {
                if party.owner.is_none()
                    && let Some(account) = self.accounts.get(&party.account)
                {
                    party.owner = account.owner;
                }
            }
        }
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
        assert_eq!(data.tick_size(eux, venue, Price(10_000)), 5);
        // Rule 612: a cent at or above one dollar, a hundredth of a cent below.
        assert_eq!(data.tick_size(usd4, venue, Price(200_000)), 100);
        assert_eq!(data.tick_size(usd4, venue, Price(10_000)), 100);
        assert_eq!(data.tick_size(usd4, venue, Price(9_999)), 1);
        // Never finer than the price scale.
        assert_eq!(data.tick_size(whole, venue, Price(3)), 1);
        data.set_venue_tick(venue, Decimal::parse("1").expect("decimal"));
        assert_eq!(data.tick_size(usd4, venue, Price(9_999)), 10_000);
        data.set_venue_tick(venue, Decimal::parse("2.0").expect("decimal"));
        assert_eq!(data.tick_size(whole, venue, Price(3)), 2, "trailing zeros do not make a tick finer");
        assert_eq!(data.tick_size(eux, venue, Price(10_000)), 5, "the instrument's own tick wins");
    }

    #[test]
    fn a_tick_size_finer_than_the_price_scale_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("instruments.csv");
        std::fs::write(&path, "instrument,price_scale,tick_size\nX,2,0.001\n").expect("write");
        let error = ReferenceData::new(4).load_instruments(&path).expect_err("refused");
        assert!(error.to_string().contains("tick_size"), "{error}");
    }
}
