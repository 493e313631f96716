//! LOBSTER message files (NASDAQ TotalView-ITCH reconstructions), optionally with the order
//! book file beside them.
//!
//! A message line is `time,type,order id,size,price,direction`: seconds after local midnight
//! (up to nanosecond decimals), the LOBSTER event type, the order reference, shares, dollars
//! x 10000 and `1` (buy) / `-1` (sell) for the *resting* order. The order book line read in
//! lockstep is the book after the message; only its best level is used, as a quote.

use std::path::{Path, PathBuf};

use chrono_tz::Tz;

use super::time::{SECOND, local_midnight, parse_date};
use super::{InputError, Line, LineParser, ParseContext, RejectReason, Rejection, fields};
use crate::config::LobsterConfig;
use crate::model::decimal::{DecimalError, parse_scaled, rescale};
use crate::model::{Body, Event, Level, Origin, Price, Side, Symbol, TradingStatus};

/// LOBSTER prices are dollars x 10000.
const LOBSTER_SCALE: u8 = 4;
/// LOBSTER's dummy price for an unoccupied book level (negative on the bid side).
const EMPTY_LEVEL_PRICE: i64 = 9_999_999_999;

/// The parts of a LOBSTER file name, `TICKER_YYYY-MM-DD_STARTMS_ENDMS_message_LEVEL.csv`:
/// LOBSTER files carry neither instrument nor date inside, so the name is where they come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LobsterFileName {
    /// Ticker, upper-case.
    pub ticker: String,
    /// Trading date, `YYYY-MM-DD`.
    pub date: String,
    /// Number of book levels requested from LOBSTER.
    pub level: u32,
}

/// Recognises a LOBSTER message file name (any letter case, optionally `.gz`), or `None`.
pub fn parse_file_name(name: &str) -> Option<LobsterFileName> {
    let lower = name.to_ascii_lowercase();
    let stem = lower.strip_suffix(".gz").unwrap_or(&lower);
    let stem = stem.strip_suffix(".csv")?;
    // From the right, so that a ticker may itself contain underscores.
    let mut parts = stem.rsplitn(6, '_');
    let level = parts.next()?;
    let message = parts.next()?;
    let end = parts.next()?;
    let start = parts.next()?;
    let date = parts.next()?;
    let ticker = parts.next()?;
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if message != "message" || !all_digits(level) || !all_digits(start) || !all_digits(end) || ticker.is_empty() {
        return None;
    }
    parse_date(date)?;
    Some(LobsterFileName { ticker: ticker.to_ascii_uppercase(), date: date.to_string(), level: level.parse().ok()? })
}

/// The order book file beside a message file (`..._orderbook_LEVEL.csv`, plain or `.gz`), when
/// it exists: it turns the message stream into a quote stream as well.
pub fn orderbook_path(message_path: &Path) -> Option<PathBuf> {
    let name = message_path.file_name()?.to_str()?;
    parse_file_name(name)?;
    // ASCII lower-casing keeps byte positions, so indices into `lower` are valid in `name`.
    let lower = name.to_ascii_lowercase();
    let at = lower.rfind("_message_")?;
    let word = &name[at + 1..at + 1 + "message".len()];
    let replacement = if word == "MESSAGE" { "ORDERBOOK" } else { "orderbook" };
    let book = format!("{}_{replacement}{}", &name[..at], &name[at + "_message".len()..]);
    let other = match book.len().checked_sub(3) {
        Some(cut) if book[cut..].eq_ignore_ascii_case(".gz") => book[..cut].to_string(),
        _ => format!("{book}.gz"),
    };
    let dir = message_path.parent().unwrap_or(Path::new(""));
    [book, other].into_iter().map(|n| dir.join(n)).find(|p| p.is_file())
}

/// Best bid and ask of the order book (`None`: empty side).
type TopOfBook = (Option<Level>, Option<Level>);

/// Parses LOBSTER message lines (and their order book lines) into order events and quotes.
///
/// Event time is local midnight of the trading date in `ingest.lobster.timezone` plus the
/// seconds after midnight of the line, read exactly as integer nanoseconds.
pub struct LobsterParser {
    ticker: Box<[u8]>,
    instrument: Symbol,
    venue_text: Box<[u8]>,
    venue: Symbol,
    midnight: u64,
    /// The last quote emitted, so that unchanged books emit nothing.
    last_quote: Option<TopOfBook>,
}

impl LobsterParser {
    /// A parser for the message file `path`; instrument and date come from the configuration
    /// or else from the file name.
    pub fn new(path: &Path, config: &LobsterConfig) -> Result<LobsterParser, InputError> {
        let error = |message: String| InputError::Format { path: path.into(), message };
        let from_name = path.file_name().and_then(|n| parse_file_name(&n.to_string_lossy()));
        let configured =
            |value: &Option<String>| value.as_ref().map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        const NAMING: &str = "or name the file TICKER_YYYY-MM-DD_STARTMS_ENDMS_message_LEVEL.csv";
        let ticker = configured(&config.instrument)
            .or_else(|| from_name.as_ref().map(|n| n.ticker.clone()))
            .ok_or_else(|| error(format!("no instrument: set ingest.lobster.instrument {NAMING}")))?;
        let date_text = configured(&config.date)
            .or_else(|| from_name.as_ref().map(|n| n.date.clone()))
            .ok_or_else(|| error(format!("no trading date: set ingest.lobster.date {NAMING}")))?;
        let date =
            parse_date(&date_text).ok_or_else(|| error(format!("trading date {date_text:?} is not YYYY-MM-DD")))?;
        let zone: Tz = config
            .timezone
            .parse()
            .map_err(|e| error(format!("ingest.lobster.timezone {:?}: {e}", config.timezone)))?;
        let midnight = local_midnight(date, zone).ok_or_else(|| {
            error(format!("midnight of {date_text} in {} is not a representable time", config.timezone))
        })?;
        Ok(LobsterParser {
            instrument: Symbol::of(ticker.as_bytes()),
            ticker: ticker.into_bytes().into(),
            venue: Symbol::of(config.venue.as_bytes()),
            venue_text: config.venue.as_bytes().into(),
            midnight,
            last_quote: None,
        })
    }

    /// A LOBSTER price (dollars x 10000) at the instrument's scale.
    fn price(raw: i64, scale: u8, field: &str) -> Result<Price, Rejection> {
        if raw <= 0 {
            return Err(Rejection::new(RejectReason::BadPrice, format!("{field} {raw} is not positive")));
        }
        rescale(raw, LOBSTER_SCALE, scale).map(Price).map_err(|e| {
            Rejection::new(
                RejectReason::BadPrice,
                format!("{field} {raw} (x10^-4) does not fit price scale {scale}: {e}"),
            )
        })
    }

    /// The best level of an order book line, or `None` for its header.
    fn top_of_book(book: &[u8], scale: u8) -> Result<Option<TopOfBook>, Rejection> {
        let book = strip_line(book);
        let mut f = [&b""[..]; 4];
        let n = split(book, b',', &mut f);
        if !is_number(f[0].trim_ascii()) {
            return Ok(None);
        }
        if n < 4 || n % 4 != 0 {
            return Err(Rejection::new(
                RejectReason::ColumnCount,
                format!(
                    "order book line has {n} fields, expected 4 per level (ask price, ask size, bid price, bid size)"
                ),
            ));
        }
        // Field names are literals: a good line allocates nothing.
        let level = |price: &[u8], size: &[u8], price_name: &'static str, size_name: &'static str| {
            let price = price.trim_ascii();
            let raw = parse_scaled(price, 0).map_err(|e| {
                Rejection::new(
                    RejectReason::BadPrice,
                    format!("{price_name} {:?}: {e}", String::from_utf8_lossy(price)),
                )
            })?;
            let quantity = fields::quantity_or_zero(size.trim_ascii(), size_name)?;
            if raw.abs() == EMPTY_LEVEL_PRICE || quantity == 0 {
                return Ok(None);
            }
            Ok(Some(Level { price: Self::price(raw, scale, price_name)?, quantity }))
        };
        let ask = level(f[0], f[1], "order book ask price", "order book ask size")?;
        let bid = level(f[2], f[3], "order book bid price", "order book bid size")?;
        Ok(Some((bid, ask)))
    }

    #[inline]
    fn symbols(&self, ctx: &mut ParseContext<'_>) -> (Symbol, Symbol) {
        let instrument = if self.instrument.needs_dictionary() { ctx.intern(&self.ticker) } else { self.instrument };
        let venue = if self.venue.needs_dictionary() { ctx.intern(&self.venue_text) } else { self.venue };
        (instrument, venue)
    }
}

impl LineParser for LobsterParser {
    fn is_header(&self, first_line: &[u8]) -> bool {
        let line = strip_line(first_line);
        let first = line.split(|&b| b == b',').next().unwrap_or_default();
        !is_number(first.trim_ascii())
    }

    fn parse(&mut self, line: &Line<'_>, ctx: &mut ParseContext<'_>, out: &mut Vec<Event>) -> Result<(), Rejection> {
        let bytes = strip_line(line.bytes);
        let mut f = [&b""[..]; 6];
        let n = split(bytes, b',', &mut f);
        if n != 6 {
            return Err(Rejection::new(
                RejectReason::ColumnCount,
                format!("{n} fields, expected 6 (time,type,order id,size,price,direction)"),
            ));
        }
        let [time, kind, order, size, price, direction] = f.map(<[u8]>::trim_ascii);
        let time = seconds_to_nanos(time).and_then(|t| self.midnight.checked_add(t)).ok_or_else(|| {
            Rejection::new(
                RejectReason::BadTime,
                format!("time {:?} is not seconds after midnight", String::from_utf8_lossy(time)),
            )
        })?;
        let kind = match kind {
            b"1" | b"2" | b"3" | b"4" | b"5" | b"7" => kind[0],
            _ => {
                return Err(Rejection::new(
                    RejectReason::UnknownKind,
                    format!("message type {:?} is not 1, 2, 3, 4, 5 or 7", String::from_utf8_lossy(kind)),
                ));
            }
        };
        let size = fields::quantity_or_zero(size, "size")?;
        let raw_price = parse_scaled(price, 0).map_err(|e| match e {
            DecimalError::Empty => Rejection::new(RejectReason::MissingField, "price is empty"),
            e => Rejection::new(RejectReason::BadPrice, format!("price {:?}: {e}", String::from_utf8_lossy(price))),
        })?;
        let side = match direction {
            b"1" => Side::Buy,
            b"-1" => Side::Sell,
            _ => {
                return Err(Rejection::new(
                    RejectReason::UnknownSide,
                    format!("direction {:?} is not 1 or -1", String::from_utf8_lossy(direction)),
                ));
            }
        };
        let (instrument, venue) = self.symbols(ctx);
        let scale = ctx.price_scale(instrument);
        let body = if kind == b'7' {
            let status = match raw_price {
                -1 => TradingStatus::Halted,
                0 => TradingStatus::QuotingOnly,
                1 => TradingStatus::Trading,
                _ => {
                    return Err(Rejection::new(
                        RejectReason::UnknownStatus,
                        format!("trading halt message with price {raw_price}, expected -1, 0 or 1"),
                    ));
                }
            };
            Body::Status { status }
        } else {
            if size == 0 {
                return Err(Rejection::new(RejectReason::BadQuantity, "size is zero"));
            }
            let price = Self::price(raw_price, scale, "price")?;
            let order = ctx.intern(fields::required(order, "order id")?);
            match kind {
                b'1' => Body::NewOrder { order, side, price: Some(price), quantity: size, displayed: None },
                b'2' | b'3' => Body::Cancel {
                    order,
                    side: Some(side),
                    price: Some(price),
                    quantity: Some(size),
                    reason: crate::model::CancelReason::Member,
                },
                _ => Body::Fill {
                    order,
                    side,
                    price,
                    quantity: size,
                    aggressor: Some(side.opposite()),
                    hidden: kind == b'5',
                },
            }
        };
        let quote = match line.companion {
            Some(book) => Self::top_of_book(book, scale)?,
            None => None,
        };
        let mut event = Event::new(time, line.origin, instrument, body);
        event.venue = venue;
        out.push(event);
        if let Some(top) = quote
            && self.last_quote != Some(top)
        {
            self.last_quote = Some(top);
            let (bid, ask) = top;
            let mut event = Event::new(time, Origin(line.origin.0 + 1), instrument, Body::Quote { bid, ask });
            event.venue = venue;
            out.push(event);
        }
        Ok(())
    }
}

/// The line without a UTF-8 byte order mark and `\r` line end.
#[inline]
fn strip_line(line: &[u8]) -> &[u8] {
    let line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Splits `line` at `sep`, storing the first `N` fields, and returns the number of fields.
#[inline]
fn split<'a, const N: usize>(line: &'a [u8], sep: u8, out: &mut [&'a [u8]; N]) -> usize {
    let mut count = 0;
    let mut start = 0;
    for end in memchr::memchr_iter(sep, line) {
        if count < N {
            out[count] = &line[start..end];
        }
        count += 1;
        start = end + 1;
    }
    if count < N {
        out[count] = &line[start..];
    }
    count + 1
}

/// True for an unsigned decimal number (the time column), as opposed to a header name.
fn is_number(text: &[u8]) -> bool {
    seconds_to_nanos(text).is_some() || parse_scaled(text, 0).is_ok()
}

/// Reads seconds with up to nanosecond decimals (`34200.004241176`) as exact nanoseconds.
/// Digits beyond the ninth decimal are dropped: LOBSTER's own files contain times such as
/// `35821.088778456004`, float-printing noise below its nanosecond clock.
#[inline]
pub(crate) fn seconds_to_nanos(text: &[u8]) -> Option<u64> {
    let (int, fraction) = match memchr::memchr(b'.', text) {
        Some(dot) => (&text[..dot], Some(&text[dot + 1..])),
        None => (text, None),
    };
    if int.is_empty() || int.len() > 12 || !int.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let seconds = int.iter().fold(0u64, |n, &b| n * 10 + (b - b'0') as u64);
    let mut nanos = 0u64;
    if let Some(fraction) = fraction {
        if fraction.is_empty() || !fraction.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let kept = &fraction[..fraction.len().min(9)];
        nanos = kept.iter().fold(0u64, |n, &b| n * 10 + (b - b'0') as u64);
        for _ in kept.len()..9 {
            nanos *= 10;
        }
    }
    seconds.checked_mul(SECOND)?.checked_add(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::time::format_time;
    use crate::model::IdMap;
    use crate::model::Report;
    use crate::reference::ReferenceData;

    fn config() -> LobsterConfig {
        LobsterConfig::default()
    }

    fn parser() -> LobsterParser {
        LobsterParser::new(Path::new("/data/AAPL_2012-06-21_34200000_37800000_message_50.csv"), &config())
            .expect("parser")
    }

    /// Parses `(message, book)` pairs with one context, returning each line's result.
    fn run(
        parser: &mut LobsterParser,
        scale: u8,
        lines: &[(&str, Option<&str>)],
    ) -> Vec<Result<Vec<Event>, Rejection>> {
        let reference = ReferenceData::new(scale);
        let mut side: Vec<Report> = Vec::new();
        let mut announced = IdMap::default();
        let mut ctx = ParseContext::new(&reference, &mut side, &mut announced);
        lines
            .iter()
            .enumerate()
            .map(|(i, (message, book))| {
                let line = Line {
                    bytes: message.as_bytes(),
                    origin: Origin::new(0, i as u64 * 100),
                    companion: book.map(str::as_bytes),
                };
                let mut out = Vec::new();
                parser.parse(&line, &mut ctx, &mut out).map(|()| out)
            })
            .collect()
    }

    fn one(line: &str) -> Result<Event, Rejection> {
        let mut results = run(&mut parser(), 4, &[(line, None)]);
        results.pop().expect("one result").map(|mut events| {
            assert_eq!(events.len(), 1);
            events.pop().expect("one event")
        })
    }

    fn reason(line: &str) -> RejectReason {
        match one(line) {
            Err(r) => {
                assert!(!r.detail.is_empty());
                r.reason
            }
            Ok(e) => panic!("{line:?} was accepted as {e:?}"),
        }
    }

    #[test]
    fn file_names() {
        let n = parse_file_name("AAPL_2012-06-21_34200000_37800000_message_50.csv").expect("name");
        assert_eq!(n, LobsterFileName { ticker: "AAPL".into(), date: "2012-06-21".into(), level: 50 });
        let n = parse_file_name("amzn_2012-06-21_34200000_57600000_message_1.csv").expect("lower-case name");
        assert_eq!((n.ticker.as_str(), n.level), ("AMZN", 1));
        let n = parse_file_name("BRK_A_2012-06-21_34200000_57600000_message_10.csv.gz").expect("gz");
        assert_eq!(n.ticker, "BRK_A");
        for bad in [
            "AAPL_2012-06-21_34200000_37800000_orderbook_50.csv",
            "AAPL_2012-13-21_34200000_37800000_message_50.csv",
            "AAPL_2012-06-21_34200000_message_50.csv",
            "_2012-06-21_34200000_37800000_message_50.csv",
            "AAPL_2012-06-21_34200000_37800000_message_x.csv",
            "AAPL_2012-06-21_34200000_37800000_message_50.txt",
            "trades.csv",
            "",
        ] {
            assert_eq!(parse_file_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn finds_the_order_book_beside_the_messages() {
        let dir = tempfile::tempdir().expect("temp dir");
        let message = dir.path().join("AMZN_2012-06-21_34200000_57600000_message_1.csv");
        std::fs::write(&message, "").expect("write");
        assert_eq!(orderbook_path(&message), None);
        let book = dir.path().join("AMZN_2012-06-21_34200000_57600000_orderbook_1.csv.gz");
        std::fs::write(&book, "").expect("write");
        assert_eq!(orderbook_path(&message), Some(book));
        assert_eq!(orderbook_path(&dir.path().join("other.csv")), None);
    }

    #[test]
    fn instrument_and_date_come_from_config_or_name() {
        let unnamed = Path::new("/data/messages.csv");
        match LobsterParser::new(unnamed, &config()) {
            Err(InputError::Format { message, .. }) => {
                assert!(message.contains("instrument"), "{message}")
            }
            _ => panic!("a file without ticker and date must be refused"),
        }
        let mut c = config();
        c.instrument = Some("MSFT".into());
        assert!(LobsterParser::new(unnamed, &c).is_err(), "still no date");
        c.date = Some("2012-06-21".into());
        let mut p = LobsterParser::new(unnamed, &c).expect("configured");
        let event = run(&mut p, 4, &[("34200,1,1,1,100,1", None)]).remove(0).expect("parsed").remove(0);
        assert_eq!(event.instrument, Symbol::of(b"MSFT"));
        assert_eq!(event.venue, Symbol::of(b"XNAS"));
        c.timezone = "Mars/Olympus".into();
        assert!(LobsterParser::new(unnamed, &c).is_err());
    }

    #[test]
    fn time_is_exact_local_nanoseconds() {
        let e = one("34200.004241176,1,16113575,18,5853300,1").expect("parsed");
        assert_eq!(format_time(e.time), "2012-06-21T13:30:00.004241176Z");
        assert_eq!(e.time, 1_340_285_400_004_241_176);
        let e = one("34200.1,1,16113575,18,5853300,1").expect("short decimals");
        assert_eq!(format_time(e.time), "2012-06-21T13:30:00.100000000Z");
        let e = one("35821.088778456004,3,44276101,100,5851500,1").expect("noise below nanoseconds");
        assert_eq!(format_time(e.time), "2012-06-21T13:57:01.088778456Z");
        let e = one("34200,7,0,0,-1,-1").expect("whole seconds");
        assert_eq!(format_time(e.time), "2012-06-21T13:30:00.000000000Z");
        let mut c = config();
        c.timezone = "Europe/London".into();
        let mut p = LobsterParser::new(Path::new("X_2012-01-10_0_1_message_1.csv"), &c).expect("parser");
        let e = run(&mut p, 4, &[("3600.5,1,1,1,100,1", None)]).remove(0).expect("parsed").remove(0);
        assert_eq!(format_time(e.time), "2012-01-10T01:00:00.500000000Z");
    }

    #[test]
    fn every_message_type() {
        let order = Symbol::of(b"16113575");
        let e = one("34200.004241176,1,16113575,18,5853300,1").expect("new");
        assert_eq!(
            e.body,
            Body::NewOrder { order, side: Side::Buy, price: Some(Price(5_853_300)), quantity: 18, displayed: None }
        );
        assert_eq!(
            (e.origin, e.instrument, e.venue, e.account, e.owner, e.desk, e.trader, e.seq),
            (
                Origin::new(0, 0),
                Symbol::of(b"AAPL"),
                Symbol::of(b"XNAS"),
                Symbol::NONE,
                Symbol::NONE,
                Symbol::NONE,
                Symbol::NONE,
                0
            )
        );
        let e = one("34200.1,2,16113575,5,5853300,-1").expect("partial cancel");
        assert_eq!(
            e.body,
            Body::Cancel {
                order,
                side: Some(Side::Sell),
                price: Some(Price(5_853_300)),
                quantity: Some(5),
                reason: crate::model::CancelReason::Member
            }
        );
        let e = one("34200.1,3,16113575,13,5853300,1").expect("deletion");
        assert_eq!(
            e.body,
            Body::Cancel {
                order,
                side: Some(Side::Buy),
                price: Some(Price(5_853_300)),
                quantity: Some(13),
                reason: crate::model::CancelReason::Member
            }
        );
        let e = one("34200.1,4,16113575,13,5853300,-1").expect("visible execution");
        assert_eq!(
            e.body,
            Body::Fill {
                order,
                side: Side::Sell,
                price: Price(5_853_300),
                quantity: 13,
                aggressor: Some(Side::Buy),
                hidden: false
            }
        );
        let e = one("34200.1,5,0,100,5857900,-1").expect("hidden execution");
        assert_eq!(
            e.body,
            Body::Fill {
                order: Symbol::of(b"0"),
                side: Side::Sell,
                price: Price(5_857_900),
                quantity: 100,
                aggressor: Some(Side::Buy),
                hidden: true
            }
        );
        assert!(!Symbol::of(b"0").is_none());
        for (price, status) in
            [("-1", TradingStatus::Halted), ("0", TradingStatus::QuotingOnly), ("1", TradingStatus::Trading)]
        {
            let e = one(&format!("36023,7,0,0,{price},-1")).expect("halt");
            assert_eq!(e.body, Body::Status { status });
        }
        let e = one("34200.1,1,16113575,18,5853300,1\r").expect("CRLF");
        assert_eq!(e.kind(), crate::model::EventKind::New);
    }

    #[test]
    fn prices_move_to_the_instrument_scale() {
        let mut p = parser();
        let results = run(&mut p, 2, &[("34200,1,1,18,5853300,1", None), ("34200,1,2,18,5853301,1", None)]);
        assert!(matches!(
            results[0].as_ref().expect("exact")[0].body,
            Body::NewOrder { price: Some(Price(58_533)), .. }
        ));
        let rejection = results[1].as_ref().expect_err("would lose digits");
        assert_eq!(rejection.reason, RejectReason::BadPrice);
    }

    #[test]
    fn headers() {
        let p = parser();
        assert!(p.is_header(b"Time,Type,OrderId,Size,Price,Direction\r"));
        assert!(p.is_header(b"\xEF\xBB\xBFTime,Type,OrderId,Size,Price,Direction"));
        assert!(!p.is_header(b"34200.004241176,1,16113575,18,5853300,1"));
        assert!(!p.is_header(b"34200.01746,5,0,1,2238200,-1\r"));
        assert!(!p.is_header(b"34200,5,0,1,2238200,-1"));
    }

    #[test]
    fn bad_lines() {
        assert_eq!(reason("34200.1,1,16113575,18,5853300"), RejectReason::ColumnCount);
        assert_eq!(reason("34200.1,1,16113575,18,5853300,1,9"), RejectReason::ColumnCount);
        assert_eq!(reason(""), RejectReason::ColumnCount);
        assert_eq!(reason("Time,Type,OrderId,Size,Price,Direction"), RejectReason::BadTime);
        assert_eq!(reason("-34200.1,1,16113575,18,5853300,1"), RejectReason::BadTime);
        assert_eq!(reason("34200.,1,16113575,18,5853300,1"), RejectReason::BadTime);
        assert_eq!(reason("3.42e4,1,16113575,18,5853300,1"), RejectReason::BadTime);
        assert_eq!(reason("99999999999999999,1,16113575,18,5853300,1"), RejectReason::BadTime);
        assert_eq!(reason("34200.1,6,16113575,18,5853300,1"), RejectReason::UnknownKind);
        assert_eq!(reason("34200.1,x,16113575,18,5853300,1"), RejectReason::UnknownKind);
        assert_eq!(reason("34200.1,1,16113575,-18,5853300,1"), RejectReason::BadQuantity);
        assert_eq!(reason("34200.1,1,16113575,1.5,5853300,1"), RejectReason::BadQuantity);
        assert_eq!(reason("34200.1,4,16113575,0,5853300,1"), RejectReason::BadQuantity);
        assert_eq!(reason("34200.1,1,16113575,18,0,1"), RejectReason::BadPrice);
        assert_eq!(reason("34200.1,1,16113575,18,-5853300,1"), RejectReason::BadPrice);
        assert_eq!(reason("34200.1,1,16113575,18,58533.5,1"), RejectReason::BadPrice);
        assert_eq!(reason("34200.1,1,16113575,18,abc,1"), RejectReason::BadPrice);
        assert_eq!(reason("34200.1,1,16113575,18,5853300,0"), RejectReason::UnknownSide);
        assert_eq!(reason("34200.1,1,16113575,18,5853300,buy"), RejectReason::UnknownSide);
        assert_eq!(reason("34200.1,7,0,0,2,-1"), RejectReason::UnknownStatus);
        assert_eq!(reason("34200.1,1,,18,5853300,1"), RejectReason::MissingField);
        assert_eq!(reason("34200.1,1,1,,5853300,1"), RejectReason::MissingField);
        // Arbitrary bytes never panic.
        for junk in ["\u{0},\u{0},\u{0},\u{0},\u{0},\u{0}", ",,,,,", "ü,ü,ü,ü,ü,ü", ".,.,.,.,.,."] {
            assert!(one(junk).is_err(), "{junk:?}");
        }
    }

    #[test]
    fn quotes_only_when_the_top_of_book_changes() {
        let mut p = parser();
        let results = run(
            &mut p,
            4,
            &[
                ("34200.1,1,1,21,2238100,1", Some("2239500,100,2238100,21")),
                ("34200.2,1,2,5,2230000,1", Some("2239500,100,2238100,21\r")),
                ("34200.3,1,3,5,2239500,-1", Some("2239500,105,2238100,21,2240000,7,2238000,3")),
                ("34200.4,3,1,21,2238100,1", Some("2239500,105,-9999999999,0")),
                ("34200.5,4,3,105,2239500,-1", Some("9999999999,0,-9999999999,0")),
                ("34200.6,7,0,0,-1,-1", Some("9999999999,0,-9999999999,0")),
            ],
        );
        let events: Vec<Vec<Event>> = results.into_iter().map(|r| r.expect("parsed")).collect();
        let level = |price, quantity| Some(Level { price: Price(price), quantity });
        let quote = |events: &[Event]| {
            assert_eq!(events[1].time, events[0].time);
            assert_eq!(events[1].origin, Origin(events[0].origin.0 + 1));
            assert_eq!(events[1].instrument, events[0].instrument);
            events[1].body
        };
        assert_eq!(quote(&events[0]), Body::Quote { bid: level(2_238_100, 21), ask: level(2_239_500, 100) });
        assert_eq!(events[1].len(), 1, "unchanged book: no quote");
        assert_eq!(quote(&events[2]), Body::Quote { bid: level(2_238_100, 21), ask: level(2_239_500, 105) });
        assert_eq!(quote(&events[3]), Body::Quote { bid: None, ask: level(2_239_500, 105) });
        assert_eq!(quote(&events[4]), Body::Quote { bid: None, ask: None });
        assert_eq!(events[5].len(), 1, "a halt repeats the book");
    }

    #[test]
    fn book_headers_are_ignored_and_bad_books_reject_the_pair() {
        let mut p = parser();
        let results = run(
            &mut p,
            4,
            &[
                ("34200.1,1,1,21,2238100,1", Some("BestAsk,BestAskVolume,BestBid,BestBidVolume")),
                ("34200.1,1,1,21,2238100,1", Some("2239500,100,2238100")),
                ("34200.1,1,1,21,2238100,1", Some("2239500,100,2238100,21,1")),
                ("34200.1,1,1,21,2238100,1", Some("2239500,100,223810.5,21")),
                ("34200.1,1,1,21,2238100,1", Some("2239500,100,0,21")),
                ("34200.1,1,1,21,2238100,1", Some("2239500,-100,2238100,21")),
                ("34200.1,1,1,21,2238100,1", Some("2239500,100,2238100,21")),
            ],
        );
        assert_eq!(results[0].as_ref().expect("header").len(), 1);
        for (i, expected) in [
            (1, RejectReason::ColumnCount),
            (2, RejectReason::ColumnCount),
            (3, RejectReason::BadPrice),
            (4, RejectReason::BadPrice),
            (5, RejectReason::BadQuantity),
        ] {
            let rejection = results[i].as_ref().expect_err("bad book");
            assert_eq!(rejection.reason, expected, "{i}");
            assert!(rejection.detail.contains("order book"), "{}", rejection.detail);
        }
        assert_eq!(results[6].as_ref().expect("good").len(), 2, "the first good book emits a quote");
    }

    /// The folder with the shared datasets: `$SURVEIL_DATA` or `../shared/datasets`.
    fn data_dir() -> PathBuf {
        std::env::var_os("SURVEIL_DATA")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/datasets"))
    }

    fn read(path: &Path) -> Vec<u8> {
        std::fs::read(path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e} (set SURVEIL_DATA to the datasets folder)", path.display()))
    }

    /// Lines of a file with their offsets, without the `\n`.
    fn lines_of(data: &[u8]) -> Vec<(u64, &[u8])> {
        let mut offset = 0;
        let mut lines = Vec::new();
        for line in data.split(|&b| b == b'\n') {
            lines.push((offset, line));
            offset += line.len() as u64 + 1;
        }
        if lines.last().is_some_and(|(_, l)| l.is_empty()) {
            lines.pop();
        }
        lines
    }

    /// Parses a whole message file (and order book) and counts events by kind.
    fn parse_file(
        message: &Path,
        book: Option<&Path>,
    ) -> (usize, std::collections::BTreeMap<&'static str, usize>, Vec<Rejection>) {
        let mut p = LobsterParser::new(message, &config()).expect("parser");
        let reference = ReferenceData::new(4);
        let mut side: Vec<Report> = Vec::new();
        let mut announced = IdMap::default();
        let mut ctx = ParseContext::new(&reference, &mut side, &mut announced);
        let data = read(message);
        let mut lines = lines_of(&data);
        let book_data = book.map(read);
        let mut book_lines = book_data.as_deref().map(lines_of);
        if let Some(b) = &book_lines {
            assert_eq!(b.len(), lines.len(), "order book and messages have different lengths");
        }
        if lines.first().is_some_and(|(_, l)| p.is_header(l)) {
            lines.remove(0);
            if let Some(b) = &mut book_lines {
                b.remove(0);
            }
        }
        let mut counts = std::collections::BTreeMap::new();
        let mut rejections = Vec::new();
        let mut out = Vec::new();
        let mut last_time = 0;
        for (i, &(offset, bytes)) in lines.iter().enumerate() {
            let line = Line { bytes, origin: Origin::new(0, offset), companion: book_lines.as_ref().map(|b| b[i].1) };
            out.clear();
            match p.parse(&line, &mut ctx, &mut out) {
                Ok(()) => {
                    for e in &out {
                        assert!(e.time >= last_time, "time goes backwards at line {}", i + 1);
                        last_time = e.time;
                        let key = match e.body {
                            Body::NewOrder { .. } => "new",
                            Body::Cancel { .. } => "cancel",
                            Body::Fill { hidden: false, .. } => "visible",
                            Body::Fill { hidden: true, .. } => "hidden",
                            Body::Quote { .. } => "quote",
                            Body::Status { .. } => "status",
                            _ => "other",
                        };
                        *counts.entry(key).or_default() += 1;
                    }
                }
                Err(r) => rejections.push(r),
            }
        }
        (lines.len(), counts, rejections)
    }

    #[test]
    fn real_aapl_sample_matches_published_counts() {
        let path = data_dir().join("lobster/aapl_2012-06-21/AAPL_2012-06-21_34200000_37800000_message_50.csv");
        let mut p = LobsterParser::new(&path, &config()).expect("parser");
        let reference = ReferenceData::new(4);
        let mut side: Vec<Report> = Vec::new();
        let mut announced = IdMap::default();
        let mut ctx = ParseContext::new(&reference, &mut side, &mut announced);
        let data = read(&path);
        let lines = lines_of(&data);
        assert!(!p.is_header(lines[0].1));
        let (mut new, mut deleted, mut partial, mut visible, mut hidden) = (0, 0, 0, 0, 0);
        let mut rejections = Vec::new();
        let mut out = Vec::new();
        for &(offset, bytes) in &lines {
            out.clear();
            let line = Line { bytes, origin: Origin::new(0, offset), companion: None };
            match p.parse(&line, &mut ctx, &mut out) {
                Ok(()) => {
                    assert_eq!(out.len(), 1);
                    // Deletions and partial cancels differ only in the LOBSTER type column.
                    let deletion = bytes.split(|&b| b == b',').nth(1) == Some(b"3");
                    match out[0].body {
                        Body::NewOrder { .. } => new += 1,
                        Body::Cancel { .. } if deletion => deleted += 1,
                        Body::Cancel { .. } => partial += 1,
                        Body::Fill { hidden: false, .. } => visible += 1,
                        Body::Fill { hidden: true, .. } => hidden += 1,
                        ref other => panic!("unexpected {other:?}"),
                    }
                }
                Err(r) => rejections.push((offset, r)),
            }
        }
        assert_eq!(rejections, vec![], "no line of the sample may be rejected");
        assert_eq!((new, deleted, partial, visible, hidden), (44_256, 41_004, 469, 4_067, 2_201));
        assert!(side.is_empty(), "integer order ids and short tickers need no dictionary");
        let (n, counts, rejections) = parse_file(&path, None);
        assert_eq!((n, rejections.len(), counts.get("quote")), (91_997, 0, None));
    }

    #[test]
    fn real_amzn_sample_with_order_book() {
        let dir = data_dir().join("lobster/amzn_2012-06-21_level1_modified");
        let message = dir.join("AMZN_2012-06-21_34200000_57600000_message_1.csv");
        let book = orderbook_path(&message).expect("the order book file is beside the messages");
        let (n, counts, rejections) = parse_file(&message, Some(&book));
        assert_eq!(rejections, vec![]);
        // SOURCES.md says 57,514 events, but the last row has no line end, so `wc -l` missed it.
        assert_eq!(n, 57_515);
        assert_eq!(counts["new"], 27_845);
        assert_eq!(counts["cancel"], 18_235 + 16);
        assert_eq!(counts["visible"], 8_974);
        assert_eq!(counts["hidden"], 2_445);
        assert!(counts["quote"] > 0 && counts["quote"] < n, "{counts:?}");
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_lines_never_panic(
            message in "[0-9,.\\-\r e]{0,60}",
            book in proptest::option::of("[0-9,.\\-\r BestAsk]{0,60}"),
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80),
        ) {
            let mut p = parser();
            let _ = run(&mut p, 4, &[(&message, book.as_deref()), (&message, None)]);
            let _ = p.is_header(message.as_bytes());
            let text = String::from_utf8_lossy(&bytes);
            let _ = run(&mut p, 2, &[(&text, Some(&text))]);
            let _ = parse_file_name(&text);
        }
    }
}
