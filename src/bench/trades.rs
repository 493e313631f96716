//! A trades-only CSV for comparing engines, and a partition that reads it.
//!
//! The canonical schema has 26 columns for every kind of event; the comparison job needs seven,
//! and every engine reads the same file, so the file holds only those:
//!
//! ```text
//! time_ns,account,counterparty,instrument,side,qty,price
//! 1709303400000419911,A00017,A04411,S042,B,300,101.25
//! ```
//!
//! Rows are in arrival order; event times lag arrival by up to `max_disorder` (most by under a
//! millisecond, one in ten by up to the bound), so an engine must tolerate that much disorder.

use std::cell::Cell;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use surveil_operators::{Partition, PartitionRead};

/// The header of a trades file.
pub const HEADER: &str = "time_ns,account,counterparty,instrument,side,qty,price";

/// What to generate; the same configuration always writes the same bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TradesConfig {
    /// Seed of every random choice.
    pub seed: u64,
    /// Rows.
    pub trades: u64,
    /// Accounts (`A00000`, ...), at most 10,000,000 so names fit the 8-byte keys.
    pub accounts: u32,
    /// Instruments (`S000`, ...).
    pub instruments: u32,
    /// Average arrival rate in event time, which sets the span: `trades / rate` seconds.
    pub trades_per_second: u64,
    /// Largest lag of an event time behind its arrival, ns.
    pub max_disorder_ns: u64,
    /// Arrival time of the first row, ns since the epoch.
    pub start_ns: u64,
    /// One trade in this many is a self-trade (account = counterparty).
    pub self_trade_every: u32,
}

impl Default for TradesConfig {
    fn default() -> Self {
        TradesConfig {
            seed: 7,
            trades: 2_000_000,
            accounts: 10_000,
            instruments: 100,
            trades_per_second: 2_000,
            max_disorder_ns: 2_000_000_000,
            // 2024-03-01 14:30:00 UTC, the open in New York.
            start_ns: 1_709_303_400_000_000_000,
            self_trade_every: 2_000,
        }
    }
}

/// Why a trades file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum TradesError {
    /// An I/O error on the named file.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The configuration cannot be generated.
    #[error("invalid trades configuration: {0}")]
    InvalidConfig(String),
}

/// Writes the trades file and returns the number of rows.
pub fn generate_trades(config: &TradesConfig, path: &Path) -> Result<u64, TradesError> {
    if config.accounts == 0 || config.accounts > 10_000_000 || config.instruments == 0 || config.trades_per_second == 0
    {
        return Err(TradesError::InvalidConfig(format!(
            "accounts = {}, instruments = {}, trades_per_second = {} (need 1..=10,000,000 accounts, at least one \
             instrument and a positive rate)",
            config.accounts, config.instruments, config.trades_per_second
        )));
    }
    let io = |source| TradesError::Io { path: path.to_path_buf(), source };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path).map_err(io)?);
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    // Activity is skewed, as in real flow: account k trades in proportion to 1 / (k + 1)^0.8.
    let mut cumulative = Vec::with_capacity(config.accounts as usize);
    let mut total = 0.0;
    for k in 0..config.accounts {
        total += 1.0 / f64::from(k + 1).powf(0.8);
        cumulative.push(total);
    }
    let mut prices: Vec<i64> = (0..config.instruments).map(|_| rng.random_range(2_000..50_000)).collect();
    let interval = 1e9 / config.trades_per_second as f64;
    writeln!(out, "{HEADER}").map_err(io)?;
    for i in 0..config.trades {
        let arrival = config.start_ns + (i as f64 * interval) as u64 + rng.random_range(0..interval.max(1.0) as u64);
        let lag = if rng.random_ratio(1, 10) {
            rng.random_range(0..config.max_disorder_ns.max(1))
        } else {
            rng.random_range(0..1_000_000u64.min(config.max_disorder_ns).max(1))
        };
        let time = arrival.saturating_sub(lag);
        let pick = rng.random::<f64>() * total;
        let account = (cumulative.partition_point(|c| *c < pick) as u32).min(config.accounts - 1);
        let counterparty = if config.self_trade_every > 0 && rng.random_ratio(1, config.self_trade_every) {
            account
        } else {
            rng.random_range(0..config.accounts)
        };
        let instrument = rng.random_range(0..config.instruments);
        let price = &mut prices[instrument as usize];
        *price = (*price + rng.random_range(-3..=3)).max(100);
        let qty: u64 = if rng.random_ratio(1, 1_000) {
            rng.random_range(100..500) * 100
        } else {
            100 * (1 + rng.random_range(0..10u64) * rng.random_range(0..3u64))
        };
        let side = if rng.random_bool(0.5) { 'B' } else { 'S' };
        writeln!(
            out,
            "{time},A{account:05},A{counterparty:05},S{instrument:03},{side},{qty},{}.{:02}",
            *price / 100,
            *price % 100
        )
        .map_err(io)?;
    }
    out.flush().map_err(io)?;
    Ok(config.trades)
}

/// Up to 8 bytes of text packed into an integer (little-endian, zero-padded): a key that hashes
/// and compares fast and turns back into its text.
pub type Key = u64;

/// Packs `text` into a [`Key`]; `None` if it is empty or longer than 8 bytes.
pub fn key_of(text: &[u8]) -> Option<Key> {
    if text.is_empty() || text.len() > 8 {
        return None;
    }
    let mut bytes = [0u8; 8];
    bytes[..text.len()].copy_from_slice(text);
    Some(u64::from_le_bytes(bytes))
}

/// The text of a [`Key`].
pub fn key_text(key: Key) -> String {
    let bytes = key.to_le_bytes();
    let len = bytes.iter().position(|b| *b == 0).unwrap_or(8);
    String::from_utf8_lossy(&bytes[..len]).into_owned()
}

/// One row of a trades file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trade {
    /// Event time, ns since the epoch.
    pub time: u64,
    /// The reporting account.
    pub account: Key,
    /// The other side.
    pub counterparty: Key,
    /// The instrument.
    pub instrument: Key,
    /// Quantity.
    pub qty: i64,
    /// Price in hundredths.
    pub price: i64,
    /// The account bought.
    pub buy: bool,
}

fn parse_unsigned(field: &[u8]) -> Option<u64> {
    if field.is_empty() || field.len() > 19 {
        return None;
    }
    let mut n = 0u64;
    for b in field {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        n = n * 10 + u64::from(digit);
    }
    Some(n)
}

/// A price with at most two decimal places, in hundredths.
fn parse_price(field: &[u8]) -> Option<i64> {
    let (whole, fraction) = match memchr::memchr(b'.', field) {
        Some(dot) => (&field[..dot], &field[dot + 1..]),
        None => (field, &[][..]),
    };
    if whole.len() > 15 || fraction.len() > 2 {
        return None;
    }
    let cents = match fraction.len() {
        0 => 0,
        1 => parse_unsigned(fraction)? * 10,
        _ => parse_unsigned(fraction)?,
    };
    i64::try_from(parse_unsigned(whole)? * 100 + cents).ok()
}

/// Parses one line (without its line end); `None` for anything that is not a valid trade.
pub fn parse_trade(line: &[u8]) -> Option<Trade> {
    let mut fields = line.split(|b| *b == b',');
    let time = parse_unsigned(fields.next()?)?;
    let account = key_of(fields.next()?)?;
    let counterparty = key_of(fields.next()?)?;
    let instrument = key_of(fields.next()?)?;
    let buy = match fields.next()? {
        b"B" | b"buy" => true,
        b"S" | b"sell" => false,
        _ => return None,
    };
    let qty = i64::try_from(parse_unsigned(fields.next()?)?).ok().filter(|q| *q > 0)?;
    let price = parse_price(fields.next()?).filter(|p| *p > 0)?;
    if fields.next().is_some() {
        return None;
    }
    Some(Trade { time, account, counterparty, instrument, qty, price, buy })
}

/// Reads the lines that start inside `[start, end)` of a file.
struct LineCursor {
    reader: BufReader<File>,
    /// Offset of the next line.
    line_start: u64,
    end: u64,
    carry: Vec<u8>,
    done: bool,
}

impl LineCursor {
    fn open(path: &Path, start: u64, end: u64) -> std::io::Result<LineCursor> {
        let mut file = File::open(path)?;
        // A line belongs to the block it starts in: start one byte early and skip to the end
        // of that line, so a line starting exactly at `start` is kept.
        file.seek(SeekFrom::Start(start.saturating_sub(1)))?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut line_start = start;
        if start > 0 {
            let mut skipped = Vec::new();
            let n = reader.read_until(b'\n', &mut skipped)?;
            line_start = start - 1 + n as u64;
        }
        Ok(LineCursor { reader, line_start, end, carry: Vec::new(), done: false })
    }

    /// Calls `f` with the next line (without `\n` or `\r\n`) and its offset.
    fn next_line<R>(&mut self, mut f: impl FnMut(u64, &[u8]) -> R) -> std::io::Result<Option<R>> {
        if self.done || self.line_start >= self.end {
            return Ok(None);
        }
        let start = self.line_start;
        let trim = |line: &[u8]| line.strip_suffix(b"\r").unwrap_or(line).len();
        loop {
            let buf = self.reader.fill_buf()?;
            if buf.is_empty() {
                self.done = true;
                if self.carry.is_empty() {
                    return Ok(None);
                }
                let result = f(start, &self.carry[..trim(&self.carry)]);
                self.line_start += self.carry.len() as u64;
                self.carry.clear();
                return Ok(Some(result));
            }
            match memchr::memchr(b'\n', buf) {
                Some(i) => {
                    let carried = self.carry.len();
                    let result = if carried == 0 {
                        f(start, &buf[..trim(&buf[..i])])
                    } else {
                        self.carry.extend_from_slice(&buf[..i]);
                        f(start, &self.carry[..trim(&self.carry)])
                    };
                    self.line_start += (carried + i + 1) as u64;
                    self.carry.clear();
                    self.reader.consume(i + 1);
                    return Ok(Some(result));
                }
                None => {
                    let n = buf.len();
                    self.carry.extend_from_slice(buf);
                    self.reader.consume(n);
                }
            }
        }
    }
}

/// Counts shared by a worker's partitions.
#[derive(Clone, Debug, Default)]
pub struct ReadCounts {
    /// Valid rows read.
    pub trades: Rc<Cell<u64>>,
    /// Rows that are not valid trades (the header excluded), or an I/O error.
    pub rejected: Rc<Cell<u64>>,
}

/// A byte range of a trades file.
pub struct TradePartition {
    path: Arc<PathBuf>,
    start: u64,
    end: u64,
    cursor: Option<LineCursor>,
    finished: bool,
    counts: ReadCounts,
}

impl TradePartition {
    fn read_line(counts: &ReadCounts, offset: u64, line: &[u8]) -> Option<Trade> {
        if line.is_empty() || (offset == 0 && line.starts_with(b"time_ns")) {
            return None;
        }
        let trade = parse_trade(line);
        match trade {
            Some(_) => counts.trades.set(counts.trades.get() + 1),
            None => counts.rejected.set(counts.rejected.get() + 1),
        }
        trade
    }
}

impl Partition for TradePartition {
    type Record = Trade;
    type Side = ();

    #[inline]
    fn time(record: &Trade) -> u64 {
        record.time
    }

    fn first_time(&mut self) -> Option<u64> {
        let mut cursor = LineCursor::open(&self.path, self.start, self.end).ok()?;
        let counts = ReadCounts::default();
        while let Ok(Some(trade)) = cursor.next_line(|offset, line| Self::read_line(&counts, offset, line)) {
            if let Some(trade) = trade {
                return Some(trade.time);
            }
        }
        None
    }

    fn read(&mut self, max_records: usize, records: &mut Vec<Trade>, _side: &mut Vec<()>) -> PartitionRead {
        if self.finished {
            return PartitionRead::Exhausted;
        }
        if self.cursor.is_none() {
            match LineCursor::open(&self.path, self.start, self.end) {
                Ok(cursor) => self.cursor = Some(cursor),
                Err(_) => {
                    self.counts.rejected.set(self.counts.rejected.get() + 1);
                    self.finished = true;
                    return PartitionRead::Exhausted;
                }
            }
        }
        let Some(cursor) = self.cursor.as_mut() else { return PartitionRead::Exhausted };
        let counts = &self.counts;
        for _ in 0..max_records {
            match cursor.next_line(|offset, line| Self::read_line(counts, offset, line)) {
                Ok(Some(Some(trade))) => records.push(trade),
                Ok(Some(None)) => {}
                Ok(None) => {
                    self.finished = true;
                    break;
                }
                Err(_) => {
                    counts.rejected.set(counts.rejected.get() + 1);
                    self.finished = true;
                    break;
                }
            }
        }
        if self.finished { PartitionRead::Exhausted } else { PartitionRead::More }
    }
}

/// Splits a trades file into blocks of `block_size` bytes dealt round-robin to `peers`
/// workers, and returns the share of `worker`.
pub fn plan_trade_partitions(
    path: &Path,
    block_size: u64,
    worker: usize,
    peers: usize,
    counts: &ReadCounts,
) -> Result<Vec<TradePartition>, TradesError> {
    let size = std::fs::metadata(path).map_err(|source| TradesError::Io { path: path.to_path_buf(), source })?.len();
    let block = block_size.max(4096);
    let shared = Arc::new(path.to_path_buf());
    Ok((0..size.div_ceil(block).max(1))
        .filter(|b| *b as usize % peers.max(1) == worker)
        .map(|b| TradePartition {
            path: shared.clone(),
            start: b * block,
            end: ((b + 1) * block).min(size),
            cursor: None,
            finished: false,
            counts: counts.clone(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_parse_and_bad_rows_do_not() {
        let t = parse_trade(b"1709303400000419911,A00017,A04411,S042,B,300,101.25").expect("valid");
        assert_eq!((t.time, t.qty, t.price, t.buy), (1_709_303_400_000_419_911, 300, 10_125, true));
        assert_eq!(key_text(t.account), "A00017");
        assert_eq!(parse_trade(b"1,A,B,S,S,1,2.5").map(|t| t.price), Some(250));
        for bad in [
            &b"x,A,B,S,B,1,1"[..],
            b"1,A,B,S,X,1,1",
            b"1,A,B,S,B,-1,1",
            b"1,A,B,S,B,0,1",
            b"1,A,B,S,B,1,1.234",
            b"1,A,B,S,B,1,0",
            b"1,ACCOUNT_TOO_LONG,B,S,B,1,1",
            b"1,A,B,S,B,1",
            b"1,A,B,S,B,1,1,extra",
            b"",
        ] {
            assert_eq!(parse_trade(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn every_row_is_read_once_whatever_the_blocks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("trades.csv");
        // More than the 1 MiB read buffer, so lines straddle buffer refills inside blocks.
        let config = TradesConfig { trades: 40_000, accounts: 50, ..TradesConfig::default() };
        generate_trades(&config, &path).expect("generate");
        let mut text = std::fs::read_to_string(&path).expect("read");
        text.push_str("not,a,trade\n1709303400000000000,A00001,A00002,S001,B,100,10.00"); // no final newline
        std::fs::write(&path, &text).expect("write");
        for (block, peers) in [(4096, 1), (1 << 20, 2), (5000, 3), (1 << 30, 1)] {
            let mut times = Vec::new();
            let mut rejected = 0;
            for worker in 0..peers {
                let counts = ReadCounts::default();
                for mut p in plan_trade_partitions(&path, block, worker, peers, &counts).expect("plan") {
                    let mut records = Vec::new();
                    while p.read(100, &mut records, &mut Vec::new()) == PartitionRead::More {}
                    times.extend(records.iter().map(|t| t.time));
                }
                rejected += counts.rejected.get();
            }
            assert_eq!(times.len(), 40_001, "block {block} peers {peers}");
            assert_eq!(rejected, 1);
        }
    }
}
