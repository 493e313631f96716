//! IMC Prosperity trade files: `timestamp;buyer;seller;symbol;currency;price;quantity`.

use std::path::Path;

use super::time::{DAY, parse_date};
use super::{InputError, Line, LineParser, ParseContext, RejectReason, Rejection, fields};
use crate::config::ImcConfig;
use crate::model::{Body, Event, Party, Symbol};

/// Parses IMC Prosperity trade lines into trades with both parties.
///
/// The files count time in simulation ticks within a numbered day, so event time is made up:
/// `ingest.imc.date` (midnight UTC) is day 1, the day number comes from the file name
/// (`trades_round_4_day_1_wn.csv` is day 1, `..._day_2...` the next calendar day, `_day_0` and
/// `_day_-1` the days before), and each tick lasts `ingest.imc.tick`:
///
/// `time = date + (day - 1) x 24 h + timestamp x tick`.
///
/// A file name without `_day_N` is day 1, and so is a day that would fall before 1970.
pub struct ImcParser {
    /// Event time of tick 0 of the file's day.
    day_start: u64,
    /// Nanoseconds per tick.
    tick: u64,
    venue_text: Box<[u8]>,
    venue: Symbol,
}

impl ImcParser {
    /// A parser for the trade file `path` (its name gives the day).
    pub fn new(path: &Path, config: &ImcConfig) -> Result<ImcParser, InputError> {
        let error = |message: String| InputError::Format { path: path.into(), message };
        let date = parse_date(&config.date)
            .ok_or_else(|| error(format!("ingest.imc.date {:?} is not YYYY-MM-DD", config.date)))?;
        let midnight = date.and_hms_opt(0, 0, 0).and_then(|t| t.and_utc().timestamp_nanos_opt()).map(i128::from);
        let midnight = midnight
            .filter(|&m| m >= 0)
            .ok_or_else(|| error(format!("ingest.imc.date {} is outside 1970-2262", config.date)))?;
        let day = path.file_name().and_then(|n| day_of(&n.to_string_lossy())).unwrap_or(1);
        let start_of = |day: i64| u64::try_from(midnight + (day as i128 - 1) * DAY as i128).ok();
        let day_start = start_of(day).or_else(|| start_of(1)).ok_or_else(|| error("day 1 is out of range".into()))?;
        let tick = u64::try_from(config.tick.as_nanos())
            .ok()
            .filter(|&t| t > 0)
            .ok_or_else(|| error(format!("ingest.imc.tick {:?} must be positive and below 584 years", config.tick)))?;
        Ok(ImcParser {
            day_start,
            tick,
            venue: Symbol::of(config.venue.as_bytes()),
            venue_text: config.venue.as_bytes().into(),
        })
    }
}

/// The `N` of the last `_day_N` in a file name (`N` may be negative).
fn day_of(name: &str) -> Option<i64> {
    let lower = name.to_ascii_lowercase();
    let rest = &lower[lower.rfind("_day_")? + "_day_".len()..];
    let (negative, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let digits = &rest[..rest.bytes().take_while(u8::is_ascii_digit).count()];
    if digits.is_empty() || digits.len() > 9 {
        return None;
    }
    let n: i64 = digits.parse().ok()?;
    Some(if negative { -n } else { n })
}

impl LineParser for ImcParser {
    fn is_header(&self, first_line: &[u8]) -> bool {
        let line = strip_line(first_line);
        let first = line.split(|&b| b == b';').next().unwrap_or_default();
        first.trim_ascii().eq_ignore_ascii_case(b"timestamp")
    }

    fn parse(&mut self, line: &Line<'_>, ctx: &mut ParseContext<'_>, out: &mut Vec<Event>) -> Result<(), Rejection> {
        let bytes = strip_line(line.bytes);
        let mut f = [&b""[..]; 7];
        let n = split(bytes, b';', &mut f);
        if n != 7 {
            return Err(Rejection::new(
                RejectReason::ColumnCount,
                format!("{n} fields, expected 7 (timestamp;buyer;seller;symbol;currency;price;quantity)"),
            ));
        }
        let [timestamp, buyer, seller, symbol, _currency, price, quantity] = f.map(<[u8]>::trim_ascii);
        let time = ticks(timestamp)
            .and_then(|t| t.checked_mul(self.tick))
            .and_then(|t| t.checked_add(self.day_start))
            .ok_or_else(|| {
                Rejection::new(
                    RejectReason::BadTime,
                    format!("timestamp {:?} is not a tick count", String::from_utf8_lossy(timestamp)),
                )
            })?;
        let instrument = ctx.intern(fields::required(symbol, "symbol")?);
        let price = fields::price(price, ctx.price_scale(instrument), "price")?;
        let quantity = fields::quantity(quantity, "quantity")?;
        let buyer = Party { account: ctx.intern(buyer), ..Party::default() };
        let seller = Party { account: ctx.intern(seller), ..Party::default() };
        let mut event = Event::new(
            time,
            line.origin,
            instrument,
            Body::Trade { buyer, seller, price, quantity, aggressor: None, linked: None },
        );
        event.venue = if self.venue.needs_dictionary() { ctx.intern(&self.venue_text) } else { self.venue };
        out.push(event);
        Ok(())
    }
}

/// An unsigned integer tick count.
#[inline]
fn ticks(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 19 {
        return None;
    }
    let mut n = 0u64;
    for &b in text {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(d as u64)?;
    }
    Some(n)
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::ingest::time::format_time;
    use crate::model::Report;
    use crate::model::{IdMap, Origin, Price};
    use crate::reference::ReferenceData;

    fn parser(name: &str) -> ImcParser {
        ImcParser::new(Path::new(name), &ImcConfig::default()).expect("parser")
    }

    fn run(parser: &mut ImcParser, lines: &[&str]) -> (Vec<Result<Event, Rejection>>, Vec<Report>) {
        let reference = ReferenceData::new(4);
        let mut side: Vec<Report> = Vec::new();
        let mut announced = IdMap::default();
        let mut ctx = ParseContext::new(&reference, &mut side, &mut announced);
        let results = lines
            .iter()
            .enumerate()
            .map(|(i, text)| {
                let line = Line { bytes: text.as_bytes(), origin: Origin::new(1, i as u64), companion: None };
                let mut out = Vec::new();
                parser.parse(&line, &mut ctx, &mut out).map(|()| {
                    assert_eq!(out.len(), 1);
                    out[0]
                })
            })
            .collect();
        (results, side)
    }

    fn one(line: &str) -> Result<Event, Rejection> {
        run(&mut parser("trades_round_4_day_1_wn.csv"), &[line]).0.remove(0)
    }

    fn reason(line: &str) -> RejectReason {
        let rejection = one(line).expect_err(line);
        assert!(!rejection.detail.is_empty());
        rejection.reason
    }

    #[test]
    fn a_trade() {
        let (results, side) = run(
            &mut parser("trades_round_4_day_1_wn.csv"),
            &["800;Valentina;Vinnie;COCONUT_COUPON;SEASHELLS;636.0;5\r"],
        );
        let e = results[0].as_ref().expect("parsed");
        assert_eq!(format_time(e.time), "2000-01-01T00:00:00.800000000Z");
        assert_eq!(e.origin, Origin::new(1, 0));
        assert_eq!(e.instrument, Symbol::of(b"COCONUT_COUPON"));
        assert_eq!(
            (e.venue, e.account, e.owner, e.desk, e.trader),
            (Symbol::of(b"IMC"), Symbol::NONE, Symbol::NONE, Symbol::NONE, Symbol::NONE)
        );
        assert_eq!(
            e.body,
            Body::Trade {
                buyer: Party { account: Symbol::of(b"Valentina"), ..Party::default() },
                seller: Party { account: Symbol::of(b"Vinnie"), ..Party::default() },
                price: Price(6_360_000),
                quantity: 5,
                aggressor: None,
                linked: None,
            }
        );
        // The long instrument name is announced for the writers.
        assert!(matches!(&side[..], [Report::Symbol(s, text)] if *s == e.instrument && &**text == "COCONUT_COUPON"));
        let e = one("0;;;KELP;SEASHELLS;2047.5;1").expect("anonymous parties");
        assert!(
            matches!(e.body, Body::Trade { buyer, seller, .. } if buyer.account.is_none() && seller.account.is_none())
        );
    }

    #[test]
    fn days_and_ticks() {
        let time = |name: &str, config: &ImcConfig| {
            let mut p = ImcParser::new(Path::new(name), config).expect("parser");
            format_time(run(&mut p, &["999900;A;B;X;S;1;1"]).0.remove(0).expect("parsed").time)
        };
        let config = ImcConfig::default();
        assert_eq!(time("trades_round_4_day_1_wn.csv", &config), "2000-01-01T00:16:39.900000000Z");
        assert_eq!(time("/x/trades_round_5_day_2.csv", &config), "2000-01-02T00:16:39.900000000Z");
        assert_eq!(time("TRADES_ROUND_1_DAY_0.CSV", &config), "1999-12-31T00:16:39.900000000Z");
        assert_eq!(time("trades_round_1_day_-1.csv", &config), "1999-12-30T00:16:39.900000000Z");
        assert_eq!(time("trades.csv", &config), "2000-01-01T00:16:39.900000000Z");
        let config = ImcConfig {
            date: "1970-01-01".into(),
            tick: Duration::from_micros(10),
            venue: "PROSPERITY3".into(),
            ..ImcConfig::default()
        };
        assert_eq!(time("trades_round_1_day_-1.csv", &config), "1970-01-01T00:00:09.999000000Z", "before 1970: day 1");
        assert_eq!(time("trades_round_1_day_3.csv", &config), "1970-01-03T00:00:09.999000000Z");
        assert!(
            ImcParser::new(Path::new("t.csv"), &ImcConfig { date: "yesterday".into(), ..ImcConfig::default() })
                .is_err()
        );
        assert!(
            ImcParser::new(Path::new("t.csv"), &ImcConfig { tick: Duration::ZERO, ..ImcConfig::default() }).is_err()
        );
    }

    #[test]
    fn headers() {
        let p = parser("trades_round_4_day_1_wn.csv");
        assert!(p.is_header(b"timestamp;buyer;seller;symbol;currency;price;quantity"));
        assert!(p.is_header(b"\xEF\xBB\xBFtimestamp;buyer;seller;symbol;currency;price;quantity\r"));
        assert!(!p.is_header(b"800;Valentina;Valentina;COCONUT_COUPON;SEASHELLS;636.0;5"));
    }

    #[test]
    fn bad_lines() {
        assert_eq!(reason("800;A;B;X;S;636.0"), RejectReason::ColumnCount);
        assert_eq!(reason("800;A;B;X;S;636.0;5;7"), RejectReason::ColumnCount);
        assert_eq!(reason("800,A,B,X,S,636.0,5"), RejectReason::ColumnCount);
        assert_eq!(reason(""), RejectReason::ColumnCount);
        assert_eq!(reason("timestamp;buyer;seller;symbol;currency;price;quantity"), RejectReason::BadTime);
        assert_eq!(reason("-800;A;B;X;S;636.0;5"), RejectReason::BadTime);
        assert_eq!(reason("800.5;A;B;X;S;636.0;5"), RejectReason::BadTime);
        assert_eq!(reason(";A;B;X;S;636.0;5"), RejectReason::BadTime);
        assert_eq!(reason("99999999999999999999;A;B;X;S;636.0;5"), RejectReason::BadTime);
        assert_eq!(reason("800;A;B;;S;636.0;5"), RejectReason::MissingField);
        assert_eq!(reason("800;A;B;X;S;;5"), RejectReason::MissingField);
        assert_eq!(reason("800;A;B;X;S;0.0;5"), RejectReason::BadPrice);
        assert_eq!(reason("800;A;B;X;S;-636.0;5"), RejectReason::BadPrice);
        assert_eq!(reason("800;A;B;X;S;636.00001;5"), RejectReason::BadPrice);
        assert_eq!(reason("800;A;B;X;S;nan;5"), RejectReason::BadPrice);
        assert_eq!(reason("800;A;B;X;S;636.0;0"), RejectReason::BadQuantity);
        assert_eq!(reason("800;A;B;X;S;636.0;-5"), RejectReason::BadQuantity);
        assert_eq!(reason("800;A;B;X;S;636.0;2.5"), RejectReason::BadQuantity);
        assert_eq!(reason("800;A;B;X;S;636.0;"), RejectReason::MissingField);
        for junk in [";;;;;;", "\u{0};\u{0};\u{0};\u{0};\u{0};\u{0};\u{0}", "ü;ü;ü;ü;ü;ü;ü"] {
            assert!(one(junk).is_err(), "{junk:?}");
        }
    }

    /// The folder with the shared datasets: `$SURVEIL_DATA` or `../shared/datasets`.
    fn data_dir() -> PathBuf {
        std::env::var_os("SURVEIL_DATA")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/datasets"))
    }

    /// Parses a real file: (trades, self-trades, rejections).
    fn parse_file(relative: &str) -> (usize, usize, Vec<(String, Rejection)>) {
        let path = data_dir().join("imc_prosperity").join(relative);
        let data = std::fs::read(&path).unwrap_or_else(|e| {
            panic!("cannot read {}: {e} (set SURVEIL_DATA to the datasets folder)", path.display())
        });
        let mut p = ImcParser::new(&path, &ImcConfig::default()).expect("parser");
        let reference = ReferenceData::new(4);
        let mut side: Vec<Report> = Vec::new();
        let mut announced = IdMap::default();
        let mut ctx = ParseContext::new(&reference, &mut side, &mut announced);
        let mut lines = data.split(|&b| b == b'\n').filter(|l| !l.is_empty());
        let header = lines.next().expect("a header line");
        assert!(p.is_header(header));
        let (mut trades, mut self_trades, mut rejections, mut out) = (0, 0, Vec::new(), Vec::new());
        for bytes in lines {
            out.clear();
            match p.parse(&Line { bytes, origin: Origin::default(), companion: None }, &mut ctx, &mut out) {
                Ok(()) => {
                    trades += 1;
                    if let Body::Trade { buyer, seller, .. } = out[0].body
                        && !buyer.account.is_none()
                        && buyer.account == seller.account
                    {
                        self_trades += 1;
                    }
                }
                Err(r) => rejections.push((String::from_utf8_lossy(bytes).into_owned(), r)),
            }
        }
        (trades, self_trades, rejections)
    }

    /// Every line parses except the few trades of zero quantity that IMC's files contain: a
    /// trade of nothing is not a transaction, so they are rejected like in any other format.
    #[test]
    fn real_prosperity_files() {
        for (file, lines, zero_quantity, self_trades) in [
            ("p2_2024/trades_round_4_day_1_wn.csv", 1_716, 2, 499),
            ("p3_2025/trades_round_5_day_2.csv", 18_248, 13, 1_350),
        ] {
            let (trades, selfs, rejections) = parse_file(file);
            assert_eq!(rejections.len(), zero_quantity, "{file}: {rejections:?}");
            for (line, r) in &rejections {
                assert_eq!(r.reason, RejectReason::BadQuantity, "{line}");
                assert!(line.ends_with(";0"), "{line}");
            }
            assert_eq!(trades + rejections.len(), lines, "{file}");
            assert_eq!(selfs, self_trades, "{file}");
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_lines_never_panic(
            line in "[0-9;.\\-\r aA]{0,60}",
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80),
        ) {
            let mut p = parser("trades_round_1_day_2.csv");
            let text = String::from_utf8_lossy(&bytes);
            let _ = run(&mut p, &[&line, &text]);
            let _ = p.is_header(&bytes);
            let _ = day_of(&text);
        }
    }
}
