//! FIX 4.2 / 4.4 drop copies: tag=value messages, one per line, as FIX engines log them.
//!
//! A line may carry text before the message (an engine's timestamp); the message starts at
//! `8=FIX`. Fields are separated by SOH (0x01) or by `|`, as logs often show it. Every message
//! is checked as a FIX engine would: BeginString (8), BodyLength (9) and MsgType (35) first, in
//! that order; CheckSum (10) last; the body length and the checksum must match the bytes (the
//! checksum counts each separator as SOH, so a log that shows `|` still checks). A message that
//! fails is a dead letter with the reason (`fix_syntax`, `fix_body_length`, `fix_checksum`).
//!
//! Which messages become events depends on `ingest.fix.orders_from`:
//!
//! * `execution_reports` (the default: a drop copy is the venue's account of what happened):
//!   ExecutionReport (35=8) by ExecType (150): `0` new → a new order, `4` canceled → a cancel of
//!   what remains, `5` replaced → a replace, `F` (4.4) or `1`/`2` (4.2) → a fill. The order is
//!   the venue's OrderID (37), which stays the same across replaces (ClOrdID, 11, when 37 is
//!   absent). Requests (35=D, F, G) are read and checked, and make no events: their outcome is
//!   in the reports.
//! * `requests` (an order-entry log without the venue's acknowledgements): NewOrderSingle
//!   (35=D) → a new order, OrderCancelRequest (35=F) → a cancel of what remains,
//!   OrderCancelReplaceRequest (35=G) → a replace, and ExecutionReports make only the fills.
//!   Orders are named by the ClOrdID of their first request: later requests name the order by
//!   OrigClOrdID (41) and give it a new ClOrdID, which the parser follows through the file
//!   (so such a file is read as one partition).
//!
//! Other ExecTypes (pending states, rejects, restatements, expiry, done for day) and other
//! message types (heartbeats, logons) are checked and make no events.
//!
//! Fields: TransactTime (60), else SendingTime (52), UTC `YYYYMMDD-HH:MM:SS[.fff…]`; Symbol
//! (55); Account (1); SenderSubID (50) as the trader; LastMkt (30), ExDestination (100) or
//! SecurityExchange (207) as the venue; Side (54: 1 buy; 2, 5, 6 sell); OrdType (40: 1 market,
//! no price); Price (44); OrderQty (38); DisplayQty (1138), else MaxFloor (111), the shown part
//! of a reserve order; LastPx (31); LastQty (32); LastLiquidityInd (851: 1
//! added liquidity, 2 removed it, which says who the aggressor was); MsgSeqNum (34) as the
//! sequence number.

use std::collections::HashMap;

use chrono::NaiveDateTime;

use super::{Line, LineParser, ParseContext, RejectReason, Rejection, fields};
use crate::config::{FixConfig, FixOrders};
use crate::model::{Body, CancelReason, Event, Side, Symbol};

const SOH: u8 = 0x01;

/// Parses FIX drop-copy lines (see the [module documentation](self)).
pub struct FixParser {
    orders_from: FixOrders,
    /// In `requests` mode: the order each ClOrdID stands for (a replace or cancel request's new
    /// ClOrdID stands for the order of its OrigClOrdID).
    aliases: HashMap<Symbol, Symbol>,
    /// The message's fields (reused).
    fields: Vec<(u32, (usize, usize))>,
    /// ExecIDs read, so that a report sent again (PossDupFlag) is not a second execution.
    executions: std::collections::HashSet<u64>,
}

impl FixParser {
    /// A parser with the settings of `config`.
    pub fn new(config: &FixConfig) -> FixParser {
        FixParser {
            orders_from: config.orders_from,
            aliases: HashMap::new(),
            fields: Vec::with_capacity(48),
            executions: std::collections::HashSet::new(),
        }
    }
}

fn syntax(detail: impl Into<String>) -> Rejection {
    Rejection::new(RejectReason::FixSyntax, detail)
}

fn uncorrected(what: &str) -> Rejection {
    Rejection::new(
        RejectReason::FixTradeCorrection,
        format!("{what}: the fill it refers to is not taken back; correct the record by hand"),
    )
}

/// A number of ASCII digits only (no sign, no spaces), as FIX writes them.
fn digits(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 19 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(text.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')))
}

/// Tags the parser reads, sorted: given twice, a message is refused.
const READ_TAGS: [u32; 30] = [
    1, 8, 9, 10, 11, 17, 20, 30, 31, 32, 34, 35, 37, 38, 40, 41, 43, 44, 50, 52, 54, 55, 57, 60, 100, 111, 122, 150,
    851, 1138,
];

/// The time of a FIX UTCTimestamp, in ns since the epoch.
fn fix_time(text: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(text).ok()?;
    let time = NaiveDateTime::parse_from_str(text, "%Y%m%d-%H:%M:%S%.f").ok()?;
    u64::try_from(time.and_utc().timestamp_nanos_opt()?).ok()
}

/// A FIX side: 1 buy; 2 sell, 5 sell short, 6 sell short exempt.
fn fix_side(text: &[u8]) -> Result<Side, Rejection> {
    match text {
        b"1" | b"3" => Ok(Side::Buy),
        b"2" | b"4" | b"5" | b"6" => Ok(Side::Sell),
        b"" => Err(Rejection::new(RejectReason::MissingField, "Side (54) is missing")),
        _ => Err(Rejection::new(
            RejectReason::UnknownSide,
            format!("Side (54) {:?} is not 1 to 6", String::from_utf8_lossy(text)),
        )),
    }
}

impl LineParser for FixParser {
    fn is_header(&self, _first_line: &[u8]) -> bool {
        false
    }

    fn parse(
        &mut self,
        line: &Line<'_>,
        context: &mut ParseContext<'_>,
        out: &mut Vec<Event>,
    ) -> Result<(), Rejection> {
        let bytes = line.bytes.strip_suffix(b"\r").unwrap_or(line.bytes);
        // The message starts at the first `8=FIX...` that is a field of its own (not preceded by
        // a digit) and is followed by BodyLength; text before it is the log's.
        let start = memchr::memmem::find_iter(bytes, b"8=FIX")
            .find(|&at| {
                let own_field = at == 0 || !bytes[at - 1].is_ascii_digit();
                let rest = &bytes[at..];
                let separator = rest.iter().position(|&b| b == SOH || b == b'|');
                own_field
                    && separator.is_some_and(|i| {
                        !rest[..i].iter().any(u8::is_ascii_whitespace) && rest[i + 1..].starts_with(b"9=")
                    })
            })
            .ok_or_else(|| syntax("no FIX message in the line (8=FIX... followed by 9=)"))?;
        let message = &bytes[start..];
        let separator = *message
            .iter()
            .find(|&&b| b == SOH || b == b'|')
            .ok_or_else(|| syntax("no field separator (SOH or |) after BeginString"))?;
        // Split into fields, up to and including CheckSum.
        self.fields.clear();
        let mut at = 0usize;
        let mut checksum_at = None;
        while at < message.len() {
            let end = memchr::memchr(separator, &message[at..]).map_or(message.len(), |i| at + i);
            let field = &message[at..end];
            if field.is_empty() {
                if end == message.len() {
                    break;
                }
                return Err(syntax(format!("an empty field at byte {}", start + at)));
            }
            let equals = memchr::memchr(b'=', field)
                .ok_or_else(|| syntax(format!("a field without '=' at byte {}", start + at)))?;
            if equals + 1 == field.len() {
                return Err(syntax(format!(
                    "tag {} has no value (at byte {})",
                    String::from_utf8_lossy(&field[..equals]),
                    start + at
                )));
            }
            let tag =
                digits(&field[..equals]).and_then(|t| u32::try_from(t).ok()).filter(|&t| t > 0).ok_or_else(|| {
                    syntax(format!("{:?} is not a tag number", String::from_utf8_lossy(&field[..equals])))
                })?;
            self.fields.push((tag, (at + equals + 1, end)));
            if tag == 10 {
                checksum_at = Some(at);
                at = end + 1;
                break;
            }
            at = end + 1;
        }
        if message.get(at.min(message.len())..).is_some_and(|rest| rest.iter().any(|b| !b.is_ascii_whitespace())) {
            return Err(syntax("text after CheckSum (10)"));
        }
        let value = |fields: &[(u32, (usize, usize))], i: usize| -> &[u8] {
            let (a, b) = fields[i].1;
            &message[a..b]
        };
        let order: Vec<u32> = self.fields.iter().take(3).map(|f| f.0).collect();
        if order != [8, 9, 35] {
            return Err(syntax("the message must begin with BeginString (8), BodyLength (9), MsgType (35)"));
        }
        let version = value(&self.fields, 0);
        if !matches!(version, b"FIX.4.2" | b"FIX.4.3" | b"FIX.4.4") {
            return Err(syntax(format!(
                "BeginString (8) {:?}: FIX.4.2 to FIX.4.4 are read",
                String::from_utf8_lossy(version)
            )));
        }
        // A tag read here given twice is ambiguous, and an engine refuses it.
        let mut seen = 0u32;
        for &(tag, _) in &self.fields {
            if let Ok(index) = READ_TAGS.binary_search(&tag) {
                if seen & (1 << index) != 0 {
                    return Err(syntax(format!("tag {tag} appears more than once")));
                }
                seen |= 1 << index;
            }
        }
        let checksum_at = checksum_at.ok_or_else(|| syntax("no CheckSum (10) at the end"))?;
        // BodyLength: from after the separator ending tag 9 up to and including the separator
        // before tag 10.
        let body_start = self.fields[1].1.1 + 1;
        let declared = digits(value(&self.fields, 1)).and_then(|n| usize::try_from(n).ok());
        let actual = checksum_at - body_start;
        if declared != Some(actual) {
            return Err(Rejection::new(
                RejectReason::FixBodyLength,
                format!(
                    "BodyLength (9) says {:?}, the body has {actual} bytes",
                    String::from_utf8_lossy(value(&self.fields, 1))
                ),
            ));
        }
        let sum =
            message[..checksum_at].iter().fold(0u8, |sum, &b| sum.wrapping_add(if b == separator { SOH } else { b }));
        let checksum = value(&self.fields, self.fields.len() - 1);
        let stated = (checksum.len() == 3).then(|| digits(checksum)).flatten();
        if stated != Some(u64::from(sum)) {
            return Err(Rejection::new(
                RejectReason::FixChecksum,
                format!("CheckSum (10) says {:?}, the bytes sum to {sum:03}", String::from_utf8_lossy(checksum)),
            ));
        }

        let get = |tag: u32| -> &[u8] {
            self.fields.iter().find(|f| f.0 == tag).map_or(&[][..], |&(_, (a, b))| &message[a..b])
        };
        let msg_type = get(35);
        let exec_type = get(150);
        enum Kind {
            New,
            Cancel,
            Replace,
            Fill,
        }
        if msg_type == b"8" {
            // FIX 4.2 says in ExecTransType (20) whether a report is new (0), cancels (1) or
            // corrects (2) an earlier one, or only states status (3); FIX 4.4 busts and corrects
            // trades with ExecType H and G. A bust or correction is not applied to what was
            // filled: it is a dead letter, so that it is seen.
            match get(20) {
                b"" | b"0" => {}
                b"3" => return Ok(()),
                b"1" | b"2" => return Err(uncorrected("ExecTransType (20) cancel or correct")),
                other => return Err(syntax(format!("ExecTransType (20) {:?}", String::from_utf8_lossy(other)))),
            }
            if matches!(exec_type, b"H" | b"G") {
                return Err(uncorrected("ExecType (150) trade cancel or correct"));
            }
            // A report sent again (PossDupFlag) whose execution was already read.
            let exec_id = get(17);
            if !exec_id.is_empty() {
                let id = xxhash_rust::xxh3::xxh3_64(exec_id);
                if !self.executions.insert(id) && get(43) == b"Y" {
                    return Ok(());
                }
            }
        }
        let kind = match (self.orders_from, msg_type) {
            (FixOrders::ExecutionReports, b"8") => match exec_type {
                b"0" => Kind::New,
                b"4" | b"C" | b"3" => Kind::Cancel,
                b"5" => Kind::Replace,
                b"F" | b"1" | b"2" => Kind::Fill,
                _ => return Ok(()),
            },
            (FixOrders::Requests, b"8") => match exec_type {
                b"F" | b"1" | b"2" => Kind::Fill,
                // What the venue ended on its own (no OrigClOrdID: not an answer to a request).
                b"4" | b"C" | b"3" if get(41).is_empty() => Kind::Cancel,
                _ => return Ok(()),
            },
            (FixOrders::Requests, b"D") => Kind::New,
            (FixOrders::Requests, b"F") => Kind::Cancel,
            (FixOrders::Requests, b"G") => Kind::Replace,
            _ => return Ok(()),
        };

        // A message sent again carries the original sending time in OrigSendingTime (122).
        let time_field = if !get(60).is_empty() {
            60
        } else if get(43) == b"Y" && !get(122).is_empty() {
            122
        } else {
            52
        };
        let time_text = get(time_field);
        if time_text.is_empty() {
            return Err(Rejection::new(RejectReason::BadTime, "neither TransactTime (60) nor SendingTime (52)"));
        }
        let time = fix_time(time_text).ok_or_else(|| {
            Rejection::new(
                RejectReason::BadTime,
                format!(
                    "{} ({time_field}) {:?} is not a UTC timestamp YYYYMMDD-HH:MM:SS[.fff]",
                    match time_field {
                        60 => "TransactTime",
                        122 => "OrigSendingTime",
                        _ => "SendingTime",
                    },
                    String::from_utf8_lossy(time_text)
                ),
            )
        })?;
        let symbol = get(55);
        if symbol.is_empty() {
            return Err(Rejection::new(RejectReason::MissingField, "Symbol (55) is missing"));
        }
        let instrument = context.intern(symbol);
        let scale = context.price_scale(instrument);
        let side = fix_side(get(54))?;
        let venue = [30, 100, 207].into_iter().map(get).find(|v| !v.is_empty()).unwrap_or(&[]);
        let seq = match get(34) {
            b"" => 0,
            text => digits(text)
                .ok_or_else(|| syntax(format!("MsgSeqNum (34) {:?} is not a number", String::from_utf8_lossy(text))))?,
        };
        let id = |tag: u32| -> Result<&[u8], Rejection> {
            let text = get(tag);
            if text.is_empty() {
                return Err(Rejection::new(
                    RejectReason::MissingField,
                    format!("tag {tag} (the order's id) is missing"),
                ));
            }
            Ok(text)
        };
        let order_id = match self.orders_from {
            FixOrders::ExecutionReports => {
                if get(37).is_empty() {
                    id(11)?
                } else {
                    get(37)
                }
            }
            // A report names the order by the ClOrdID of the request it answers.
            FixOrders::Requests if msg_type == b"8" => id(11)?,
            FixOrders::Requests => match kind {
                Kind::Cancel | Kind::Replace => id(41)?,
                _ => id(11)?,
            },
        };
        let mut order = context.intern(order_id);
        if self.orders_from == FixOrders::Requests {
            if matches!(kind, Kind::New) {
                // A new order starts a chain of its own, even under a ClOrdID used before.
                self.aliases.remove(&order);
            } else {
                order = self.aliases.get(&order).copied().unwrap_or(order);
            }
            if matches!(kind, Kind::Cancel | Kind::Replace) && msg_type != b"8" && !get(11).is_empty() {
                let new_id = context.intern(get(11));
                self.aliases.insert(new_id, order);
            }
        }
        // Who ended the order: the member's request, or the venue (an expiry, the end of the
        // day, an IOC's remainder, a cancel no request asked for: no OrigClOrdID).
        let cancel_reason = if msg_type == b"8" && (exec_type != b"4" || get(41).is_empty()) {
            CancelReason::Expired
        } else {
            CancelReason::Member
        };
        let limit_price = || -> Result<Option<crate::model::Price>, Rejection> {
            // Limit, stop limit, limit or better, limit with or without, previously indicated.
            let limit = matches!(get(40), b"2" | b"4" | b"7" | b"B" | b"F");
            if !limit && get(44).is_empty() {
                return Ok(None);
            }
            if get(40) == b"1" {
                return Ok(None);
            }
            fields::price(get(44), scale, "Price (44)").map(Some)
        };
        // A reserve order's shown quantity: DisplayQty (1138), else MaxFloor (111, FIX 4.2).
        let displayed = |quantity| {
            let text = if get(1138).is_empty() { get(111) } else { get(1138) };
            fields::displayed_quantity(text, quantity)
        };
        let body = match kind {
            Kind::New => {
                let quantity = fields::quantity(get(38), "OrderQty (38)")?;
                Body::NewOrder { order, side, price: limit_price()?, quantity, displayed: displayed(quantity)? }
            }
            Kind::Replace => {
                let quantity = fields::quantity(get(38), "OrderQty (38)")?;
                Body::Replace {
                    order,
                    side: Some(side),
                    price: limit_price()?,
                    quantity,
                    displayed: displayed(quantity)?,
                }
            }
            Kind::Cancel => {
                Body::Cancel { order, side: Some(side), price: None, quantity: None, reason: cancel_reason }
            }
            Kind::Fill => Body::Fill {
                order,
                side,
                price: fields::price(get(31), scale, "LastPx (31)")?,
                quantity: fields::quantity(get(32), "LastQty (32)")?,
                aggressor: match get(851) {
                    b"1" => Some(side.opposite()),
                    b"2" => Some(side),
                    _ => None,
                },
                hidden: false,
            },
        };
        let account = context.intern(get(1));
        // The trader: the sender's sub-id on a request; a report comes from the venue, and
        // names the firm's trader as the target's sub-id.
        let trader = context.intern(if msg_type == b"8" { get(57) } else { get(50) });
        let venue = context.intern(venue);
        out.push(Event {
            time,
            origin: line.origin,
            seq,
            instrument,
            venue,
            account,
            trader,
            desk: Symbol::NONE,
            owner: Symbol::NONE,
            body,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests;
