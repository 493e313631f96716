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
    Some(text.iter().rev().fold(0, |key, b| key << 8 | u64::from(*b)))
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

/// Eight ASCII digits (the first in the lowest byte) as their value; `None` if any byte is not a
/// digit. Eight digits at a time instead of one: the 19-digit timestamps were the bulk of the
/// parser's digit work.
#[inline]
fn eight_digits(chunk: [u8; 8]) -> Option<u64> {
    let v = u64::from_le_bytes(chunk);
    // Every byte is 0x30..=0x39: high nibble 3, and adding 6 keeps it 3.
    if (v & 0xF0F0_F0F0_F0F0_F0F0) | ((v.wrapping_add(0x0606_0606_0606_0606) & 0xF0F0_F0F0_F0F0_F0F0) >> 4)
        != 0x3333_3333_3333_3333
    {
        return None;
    }
    let v = v - 0x3030_3030_3030_3030;
    // Pairs, then fours, then the eight: each step multiplies the higher-order half in.
    let v = v.wrapping_mul(10).wrapping_add(v >> 8);
    let mask = 0x0000_00FF_0000_00FF;
    let v = ((v & mask).wrapping_mul(100 + (1_000_000 << 32)))
        .wrapping_add(((v >> 16) & mask).wrapping_mul(1 + (10_000 << 32)))
        >> 32;
    Some(v & 0xFFFF_FFFF)
}

/// A decimal of 1 to 19 digits (so it cannot overflow `u64`).
#[inline]
fn parse_unsigned(field: &[u8]) -> Option<u64> {
    if field.is_empty() || field.len() > 19 {
        return None;
    }
    let mut n = 0u64;
    let mut chunks = field.chunks_exact(8);
    for chunk in &mut chunks {
        n = n * 100_000_000 + eight_digits(chunk.try_into().ok()?)?;
    }
    for b in chunks.remainder() {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        n = n * 10 + u64::from(digit);
    }
    Some(n)
}

/// A price with at most two decimal places, in hundredths.
#[inline]
fn parse_price(field: &[u8]) -> Option<i64> {
    let digit = |b: u8| b.is_ascii_digit().then(|| u64::from(b - b'0'));
    let (whole, cents) = match field {
        [whole @ .., b'.', tenths, hundredths] => (whole, digit(*tenths)? * 10 + digit(*hundredths)?),
        [whole @ .., b'.', tenths] => (whole, digit(*tenths)? * 10),
        [whole @ .., b'.'] => (whole, 0),
        whole => (whole, 0),
    };
    if whole.len() > 15 {
        return None;
    }
    i64::try_from(parse_unsigned(whole)? * 100 + cents).ok()
}

/// The field of `line` that starts at `*at`, up to the next comma; moves `*at` past the comma.
/// A plain scan: fields are a few bytes long, shorter than `memchr` needs to pay off.
#[inline]
fn next_field<'a>(line: &'a [u8], at: &mut usize) -> Option<&'a [u8]> {
    let rest = line.get(*at..)?;
    let end = rest.iter().position(|b| *b == b',')?;
    *at += end + 1;
    Some(&rest[..end])
}

/// The key field of `line` that starts at `*at` (1 to 8 bytes, then a comma); moves `*at` past
/// the comma. Where eight bytes are left in the line it reads them as one word, finds the comma
/// in it with a bit trick and masks the rest off: copying a short field into a zeroed array
/// (`key_of`) took half of the parser's time.
#[inline]
fn next_key(line: &[u8], at: &mut usize) -> Option<Key> {
    let start = *at;
    let Some(eight) = line.get(start..start + 8) else { return key_of(next_field(line, at)?) };
    let word = u64::from_le_bytes(eight.try_into().ok()?);
    // Zero bytes of `word ^ ",,,,,,,,"` are commas; the lowest flagged byte is always a real one.
    let x = word ^ 0x2C2C_2C2C_2C2C_2C2C;
    let commas = x.wrapping_sub(0x0101_0101_0101_0101) & !x & 0x8080_8080_8080_8080;
    let len = if commas != 0 {
        (commas.trailing_zeros() / 8) as usize
    } else if line.get(start + 8) == Some(&b',') {
        8
    } else {
        return None;
    };
    if len == 0 {
        return None;
    }
    *at = start + len + 1;
    Some(word & (u64::MAX >> (64 - 8 * len)))
}

/// The number field of `line` that starts at `*at` (1 to 19 digits, then a comma); moves `*at`
/// past the comma. Digits are read eight at a time while they last, so finding the comma and
/// converting are one pass.
#[inline]
fn next_unsigned(line: &[u8], at: &mut usize) -> Option<u64> {
    let start = *at;
    let mut i = start;
    let mut n = 0u64;
    while i - start <= 8 {
        let Some(digits) = line.get(i..i + 8).and_then(|chunk| eight_digits(chunk.try_into().ok()?)) else { break };
        n = n * 100_000_000 + digits;
        i += 8;
    }
    loop {
        match line.get(i)? {
            b',' => break,
            b if b.is_ascii_digit() && i - start < 19 => n = n * 10 + u64::from(b - b'0'),
            _ => return None,
        }
        i += 1;
    }
    if i == start {
        return None;
    }
    *at = i + 1;
    Some(n)
}

/// Parses one line (without its line end); `None` for anything that is not a valid trade.
pub fn parse_trade(line: &[u8]) -> Option<Trade> {
    let mut at = 0;
    let time = next_unsigned(line, &mut at)?;
    let account = next_key(line, &mut at)?;
    let counterparty = next_key(line, &mut at)?;
    let instrument = next_key(line, &mut at)?;
    let buy = match next_field(line, &mut at)? {
        b"B" | b"buy" => true,
        b"S" | b"sell" => false,
        _ => return None,
    };
    let qty = i64::try_from(next_unsigned(line, &mut at)?).ok().filter(|q| *q > 0)?;
    // The last field runs to the end of the line: a further comma fails as a non-digit.
    let price = parse_price(line.get(at..)?).filter(|p| *p > 0)?;
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
            b"1,A,B,S,B,1,1,",
            b",A,B,S,B,1,1",
            b"1,,B,S,B,1,1",
            b"1,A,B,,B,1,1",
            b"1,A,B,S,,1,1",
            b"1,A,B,S,B,,1",
            b"1,A,B,S,B,1,",
            b"12345678901234567890,A,B,S,B,1,1",
            b"1,A,B,S,B,12345678901234567890,1",
            b"1,A,B,S,B,1,1 ",
            b"1,A,B,S,B,1,1\r",
            b"17093034000004199/1,A,B,S,B,1,1",
            b"17093034000004199:1,A,B,S,B,1,1",
            b"1709303400\xff00419911,A,B,S,B,1,1",
            b"1,A,B,S,B,1,1.5.5",
            b"1,A,B,S,B,1,.5",
            b",,,,,,",
            b"1",
            b"",
        ] {
            assert_eq!(parse_trade(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    /// The plain parser the fast one replaced: split on commas, digits one at a time.
    fn reference_parse(line: &[u8]) -> Option<Trade> {
        let number = |f: &[u8]| -> Option<u64> {
            if f.is_empty() || f.len() > 19 || !f.iter().all(u8::is_ascii_digit) {
                return None;
            }
            std::str::from_utf8(f).ok()?.parse().ok()
        };
        let mut fields = line.split(|b| *b == b',');
        let time = number(fields.next()?)?;
        let account = key_of(fields.next()?)?;
        let counterparty = key_of(fields.next()?)?;
        let instrument = key_of(fields.next()?)?;
        let buy = match fields.next()? {
            b"B" | b"buy" => true,
            b"S" | b"sell" => false,
            _ => return None,
        };
        let qty = i64::try_from(number(fields.next()?)?).ok().filter(|q| *q > 0)?;
        let price_field = fields.next()?;
        let (whole, fraction) = match price_field.iter().position(|b| *b == b'.') {
            Some(dot) => (&price_field[..dot], &price_field[dot + 1..]),
            None => (price_field, &[][..]),
        };
        if whole.len() > 15 || fraction.len() > 2 || fields.next().is_some() {
            return None;
        }
        let cents = match fraction.len() {
            0 => 0,
            1 => number(fraction)? * 10,
            _ => number(fraction)?,
        };
        let price = i64::try_from(number(whole)? * 100 + cents).ok().filter(|p| *p > 0)?;
        Some(Trade { time, account, counterparty, instrument, qty, price, buy })
    }

    #[test]
    fn numbers_parse_eight_digits_at_a_time_and_reject_every_non_digit() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for len in 1..=19 {
            for _ in 0..200 {
                let text: String = (0..len).map(|_| char::from(b'0' + rng.random_range(0..10u8))).collect();
                assert_eq!(parse_unsigned(text.as_bytes()), text.parse().ok(), "{text}");
                for at in 0..len {
                    for byte in [0u8, b'/', b':', b'.', b',', b' ', b'a', 0x80, 0xB0, 0xFF, 0xFA, 0x36] {
                        let mut bad = text.clone().into_bytes();
                        bad[at] = byte;
                        if !byte.is_ascii_digit() {
                            assert_eq!(parse_unsigned(&bad), None, "{bad:?}");
                        }
                    }
                }
            }
        }
        assert_eq!(parse_unsigned(b"9999999999999999999"), Some(9_999_999_999_999_999_999));
        assert_eq!(parse_unsigned(b"00000000000000000000"), None, "20 digits");
        assert_eq!(parse_unsigned(b""), None);
    }

    #[test]
    fn keys_read_as_words_match_the_packed_text() {
        for len in 0..=10 {
            let text: Vec<u8> = (0..len).map(|i| b'A' + i as u8).collect();
            for tail in [&b",B,1,1"[..], b",", b""] {
                let mut line = b"1,".to_vec();
                line.extend_from_slice(&text);
                line.extend_from_slice(tail);
                let mut at = 2;
                let expected = if tail.is_empty() { None } else { key_of(&text) };
                assert_eq!(next_key(&line, &mut at), expected, "{}", String::from_utf8_lossy(&line));
                if let Some(key) = expected {
                    assert_eq!(at, 2 + len + 1);
                    assert_eq!(key_text(key).as_bytes(), &text[..]);
                }
            }
        }
    }

    #[test]
    fn prices_have_at_most_two_decimals() {
        for (text, cents) in [
            (&b"101.25"[..], Some(10_125)),
            (b"5", Some(500)),
            (b"5.", Some(500)),
            (b"5.5", Some(550)),
            (b"0.07", Some(7)),
            (b"123456789012345.99", Some(12_345_678_901_234_599)),
            (b"1234567890123456", None),
            (b".5", None),
            (b"1.2.3", None),
            (b"1..5", None),
            (b"1.a", None),
            (b"1.5a", None),
            (b"1.-5", None),
            (b"-1", None),
            (b"+1", None),
            (b"1,5", None),
            (b"", None),
            (b".", None),
        ] {
            assert_eq!(parse_price(text), cents, "{}", String::from_utf8_lossy(text));
        }
    }

    #[test]
    fn mutated_rows_parse_as_the_plain_parser_does_and_never_panic() {
        let valid = b"1709303400000419911,A00017,A04411,S042,B,300,101.25";
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let alphabet = b"0123456789,.-+ABS\r\n \xff\x00";
        for _ in 0..100_000 {
            let mut line = valid.to_vec();
            for _ in 0..rng.random_range(1..4) {
                let at = rng.random_range(0..line.len());
                match rng.random_range(0..3) {
                    0 => line[at] = alphabet[rng.random_range(0..alphabet.len())],
                    1 => {
                        line.remove(at);
                    }
                    _ => line.insert(at, alphabet[rng.random_range(0..alphabet.len())]),
                }
                if line.is_empty() {
                    break;
                }
            }
            assert_eq!(parse_trade(&line), reference_parse(&line), "{}", String::from_utf8_lossy(&line));
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
