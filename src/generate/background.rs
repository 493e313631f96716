//! Recorded flow as the background of a generated dataset: a LOBSTER message file read into
//! order messages, onto which `surveil generate --background` injects labelled scenarios.
//!
//! Real flow is what the detectors must not mistake for abuse: fleeting orders, large orders
//! cancelled unfilled, bursts around news. The recording names no accounts, so each real order
//! is given one of N synthetic accounts at random (seeded), which makes chance coincidences of
//! one account's orders as frequent as they would be among N unrelated participants.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use chrono::NaiveDate;

use super::GenerateError;
use super::writer::Side;
use crate::ingest::lobster::{parse_file_name, seconds_to_nanos};
use crate::model::time::local_midnight;

/// LOBSTER prices are dollars times 10,000; the generated files write cents.
const LOBSTER_PER_CENT: i64 = 100;

/// The shallowest recording accepted: its book is rebuilt from its messages.
const MIN_LEVELS: u32 = 10;

/// What a LOBSTER message does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MessageKind {
    /// Type 1: a new limit order.
    Submit,
    /// Type 2: part of an order cancelled.
    PartialCancel,
    /// Type 3: an order deleted.
    Delete,
    /// Type 4: a visible order executed.
    Execute,
    /// Type 5: hidden liquidity executed.
    HiddenExecute,
}

/// One message of the recording.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Message {
    /// Event time, nanoseconds since the epoch.
    pub(crate) time: u64,
    pub(crate) kind: MessageKind,
    pub(crate) order: u64,
    pub(crate) size: u64,
    /// Price in cents.
    pub(crate) price: i64,
    pub(crate) side: Side,
}

/// A recording read for use as background.
pub(crate) struct Recording {
    pub(crate) ticker: String,
    pub(crate) date: NaiveDate,
    pub(crate) messages: Vec<Message>,
    /// Trading halts, auction crosses and sub-cent prices, which a generated file does not
    /// carry.
    pub(crate) skipped: u64,
}

fn invalid(path: &Path, message: impl std::fmt::Display) -> GenerateError {
    GenerateError::InvalidConfig(format!("background {}: {message}", path.display()))
}

/// Reads a LOBSTER message file (`TICKER_DATE_START_END_message_LEVEL.csv`, plain or `.gz`):
/// the ticker and the date come from its name, times are seconds after New York midnight.
pub(crate) fn read(path: &Path) -> Result<Recording, GenerateError> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let parsed = parse_file_name(name).ok_or_else(|| {
        invalid(path, "not a LOBSTER message file name (TICKER_YYYY-MM-DD_START_END_message_LEVEL.csv)")
    })?;
    // A message file holds only the messages of the levels it was requested for: an order that
    // moves out of them is never deleted, and a book rebuilt from a shallow file fills with such
    // orders until it crosses.
    if parsed.level < MIN_LEVELS {
        return Err(invalid(
            path,
            format!(
                "a LOBSTER file of {} level(s) carries only the messages of the best {0}, so its book cannot be \
                 rebuilt; use a file of {MIN_LEVELS} levels or more",
                parsed.level
            ),
        ));
    }
    let date = NaiveDate::parse_from_str(&parsed.date, "%Y-%m-%d").map_err(|e| invalid(path, e))?;
    let midnight = local_midnight(date, chrono_tz::America::New_York)
        .ok_or_else(|| invalid(path, "its date has no New York midnight"))?;
    let file = std::fs::File::open(path).map_err(|source| GenerateError::Io { path: path.to_path_buf(), source })?;
    let reader: Box<dyn Read> = if name.to_ascii_lowercase().ends_with(".gz") {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut messages = Vec::new();
    let mut skipped = 0;
    for (n, line) in BufReader::new(reader).lines().enumerate() {
        let line = line.map_err(|source| GenerateError::Io { path: path.to_path_buf(), source })?;
        let line = line.trim();
        if line.is_empty() || (n == 0 && !line.starts_with(|c: char| c.is_ascii_digit())) {
            continue;
        }
        let bad = |what: &str| invalid(path, format!("line {}: {what}: {line:?}", n + 1));
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() < 6 {
            return Err(bad("expected 6 fields (time, type, order id, size, price, direction)"));
        }
        let seconds = seconds_to_nanos(fields[0].as_bytes()).ok_or_else(|| bad("bad time"))?;
        let kind = match fields[1] {
            "1" => MessageKind::Submit,
            "2" => MessageKind::PartialCancel,
            "3" => MessageKind::Delete,
            "4" => MessageKind::Execute,
            "5" => MessageKind::HiddenExecute,
            "6" | "7" => {
                skipped += 1;
                continue;
            }
            _ => return Err(bad("unknown message type")),
        };
        let number = |i: usize, what: &str| fields[i].parse::<i64>().map_err(|_| bad(what));
        let order = u64::try_from(number(2, "bad order id")?).map_err(|_| bad("negative order id"))?;
        let size = u64::try_from(number(3, "bad size")?).map_err(|_| bad("negative size"))?;
        let raw_price = number(4, "bad price")?;
        let side = match fields[5] {
            "1" => Side::Buy,
            "-1" => Side::Sell,
            _ => return Err(bad("direction is not 1 or -1")),
        };
        if size == 0 || raw_price <= 0 || raw_price % LOBSTER_PER_CENT != 0 {
            skipped += 1;
            continue;
        }
        messages.push(Message {
            time: midnight + seconds,
            kind,
            order,
            size,
            price: raw_price / LOBSTER_PER_CENT,
            side,
        });
    }
    if messages.is_empty() {
        return Err(invalid(path, "no order messages"));
    }
    // LOBSTER files are in time order; a stable sort keeps ties in file order if one is not.
    messages.sort_by_key(|m| m.time);
    Ok(Recording { ticker: parsed.ticker, date, messages, skipped })
}
