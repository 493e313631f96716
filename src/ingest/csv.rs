//! The canonical CSV format (`docs/schema.md`).
//!
//! Lines without a quote character, which is nearly all of them, are split with `memchr` on
//! the stack; a line with quotes goes through `csv-core`, which implements RFC 4180 quoting.

use std::path::Path;

use super::fields::{self, required};
use super::time::parse_event_time;
use super::{InputError, Line, LineParser, ParseContext, RejectReason, Rejection};
use crate::model::{Body, Event, EventKind, Level, Party, TradingStatus};

/// The most columns a line may have.
const MAX_FIELDS: usize = 64;

/// Column positions, found by name in the header.
#[derive(Clone, Debug, Default)]
struct Columns {
    count: usize,
    event_time: usize,
    kind: usize,
    instrument: usize,
    seq: Option<usize>,
    venue: Option<usize>,
    order_id: Option<usize>,
    account: Option<usize>,
    trader: Option<usize>,
    desk: Option<usize>,
    owner: Option<usize>,
    side: Option<usize>,
    price: Option<usize>,
    quantity: Option<usize>,
    aggressor: Option<usize>,
    hidden: Option<usize>,
    displayed_quantity: Option<usize>,
    cancel_reason: Option<usize>,
    buyer: Option<usize>,
    seller: Option<usize>,
    buyer_owner: Option<usize>,
    seller_owner: Option<usize>,
    buy_order: Option<usize>,
    sell_order: Option<usize>,
    bid_price: Option<usize>,
    bid_quantity: Option<usize>,
    ask_price: Option<usize>,
    ask_quantity: Option<usize>,
    status: Option<usize>,
}

/// Parser for canonical CSV.
#[derive(Clone, Debug)]
pub struct CsvParser {
    columns: Columns,
    header: Vec<u8>,
    quoted: Vec<u8>,
}

/// Bit `i` is set when `block[i]` is a comma (`block` holds at most 64 bytes).
#[inline]
fn comma_mask(block: &[u8]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8};
        if block.len() == 64 {
            let mut mask = 0u64;
            for lane in 0..4 {
                // SAFETY: SSE2 is part of the x86_64 baseline; the load reads 16 bytes at
                // `lane * 16`, inside the 64-byte block.
                let bits = unsafe {
                    let v = _mm_loadu_si128(block.as_ptr().add(lane * 16).cast());
                    _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b',' as i8))) as u32 as u64
                };
                mask |= bits << (lane * 16);
            }
            return mask;
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        // The tail of a line: pad it to a full block (zero bytes are not commas).
        let mut padded = [0u8; 64];
        padded[..block.len()].copy_from_slice(block);
        comma_mask(&padded)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let mut mask = 0u64;
        for (i, &b) in block.iter().enumerate() {
            mask |= ((b == b',') as u64) << i;
        }
        mask
    }
}

/// Splits a line into fields; `None` if it has more than [`MAX_FIELDS`] or bad quoting.
fn split<'a>(line: &'a [u8], scratch: &'a mut Vec<u8>, fields: &mut [&'a [u8]; MAX_FIELDS]) -> Option<usize> {
    if memchr::memchr(b'"', line).is_none() {
        // A bit mask of the commas of each 64-byte block, then one step per comma: no
        // mispredicted branch per byte, and no search restarted at every comma.
        let mut count = 0;
        let mut start = 0;
        let mut base = 0;
        while base < line.len() {
            let end = (base + 64).min(line.len());
            let mut mask = comma_mask(&line[base..end]);
            while mask != 0 {
                let i = base + mask.trailing_zeros() as usize;
                if count + 1 >= MAX_FIELDS {
                    return None;
                }
                fields[count] = &line[start..i];
                count += 1;
                start = i + 1;
                mask &= mask - 1;
            }
            base = end;
        }
        fields[count] = &line[start..];
        return Some(count + 1);
    }
    // Quoted fields: let csv-core unescape them into `scratch`.
    let mut reader = csv_core::Reader::new();
    scratch.clear();
    scratch.resize(line.len() + 1, 0);
    let mut ends = [0usize; MAX_FIELDS];
    let (result, _, written, n_ends) = reader.read_record(line, scratch, &mut ends);
    let (result, n_ends) = match result {
        csv_core::ReadRecordResult::InputEmpty => {
            let (r, _, _, more) = reader.read_record(&[], &mut scratch[written..], &mut ends[n_ends..]);
            (r, n_ends + more)
        }
        other => (other, n_ends),
    };
    if !matches!(result, csv_core::ReadRecordResult::Record | csv_core::ReadRecordResult::End) || n_ends == 0 {
        return None;
    }
    let scratch: &'a [u8] = scratch;
    let mut start = 0;
    for (i, &end) in ends[..n_ends].iter().enumerate() {
        fields[i] = &scratch[start..end];
        start = end;
    }
    Some(n_ends)
}

impl CsvParser {
    /// A parser for a file with this header line.
    pub fn from_header(path: &Path, header: &str) -> Result<CsvParser, InputError> {
        let bad = |message: String| InputError::Format { path: path.into(), message };
        let mut scratch = Vec::new();
        let mut fields = [&[][..]; MAX_FIELDS];
        let header_bytes = header.trim_end_matches('\r').as_bytes();
        let count =
            split(header_bytes, &mut scratch, &mut fields).ok_or_else(|| bad("unreadable CSV header".into()))?;
        let names: Vec<String> =
            fields[..count].iter().map(|f| String::from_utf8_lossy(f).trim().to_ascii_lowercase()).collect();
        for (i, name) in names.iter().enumerate() {
            if !name.is_empty() && names[..i].contains(name) {
                return Err(bad(format!(
                    "the CSV header names the column `{name}` twice (header: {header:?}; see docs/schema.md)"
                )));
            }
        }
        let find = |name: &str| names.iter().position(|n| n == name);
        let need = |name: &str| {
            find(name).ok_or_else(|| {
                bad(format!("the CSV header has no `{name}` column (header: {header:?}; see docs/schema.md)"))
            })
        };
        let columns = Columns {
            count,
            event_time: need("event_time")?,
            kind: need("kind")?,
            instrument: need("instrument")?,
            seq: find("seq"),
            venue: find("venue"),
            order_id: find("order_id"),
            account: find("account"),
            trader: find("trader"),
            desk: find("desk"),
            owner: find("owner"),
            side: find("side"),
            price: find("price"),
            quantity: find("quantity"),
            aggressor: find("aggressor"),
            hidden: find("hidden"),
            displayed_quantity: find("displayed_quantity"),
            cancel_reason: find("cancel_reason"),
            buyer: find("buyer"),
            seller: find("seller"),
            buyer_owner: find("buyer_owner"),
            seller_owner: find("seller_owner"),
            buy_order: find("buy_order"),
            sell_order: find("sell_order"),
            bid_price: find("bid_price"),
            bid_quantity: find("bid_quantity"),
            ask_price: find("ask_price"),
            ask_quantity: find("ask_quantity"),
            status: find("status"),
        };
        Ok(CsvParser { columns, header: header_bytes.to_vec(), quoted: Vec::new() })
    }
}

#[inline]
fn get<'a>(fields: &[&'a [u8]], column: Option<usize>) -> &'a [u8] {
    match column {
        Some(i) => fields[i],
        None => &[],
    }
}

impl LineParser for CsvParser {
    fn is_header(&self, first_line: &[u8]) -> bool {
        let line = first_line.strip_suffix(b"\r").unwrap_or(first_line);
        line == self.header.as_slice()
    }

    fn parse(&mut self, line: &Line<'_>, ctx: &mut ParseContext<'_>, out: &mut Vec<Event>) -> Result<(), Rejection> {
        let bytes = line.bytes.strip_suffix(b"\r").unwrap_or(line.bytes);
        let c = &self.columns;
        let mut fields = [&[][..]; MAX_FIELDS];
        let count = split(bytes, &mut self.quoted, &mut fields)
            .ok_or_else(|| Rejection::new(RejectReason::ColumnCount, "unreadable quoting or too many fields"))?;
        if count != c.count {
            return Err(Rejection::new(
                RejectReason::ColumnCount,
                format!("{count} fields where the header has {}", c.count),
            ));
        }
        let f = &fields[..count];
        let time = parse_event_time(f[c.event_time])
            .ok_or_else(|| Rejection::new(RejectReason::BadTime, super::time::event_time_error(f[c.event_time])))?;
        let kind = EventKind::parse(f[c.kind]).ok_or_else(|| {
            Rejection::new(RejectReason::UnknownKind, format!("kind {:?}", String::from_utf8_lossy(f[c.kind])))
        })?;
        let instrument = ctx.intern(required(f[c.instrument], "instrument")?);
        let scale = ctx.price_scale(instrument);
        let seq_text = get(f, c.seq);
        let seq = if seq_text.is_empty() { 0 } else { fields::quantity_or_zero(seq_text, "seq")? };

        let order_text = get(f, c.order_id);
        let price_text = get(f, c.price);
        let quantity_text = get(f, c.quantity);
        let optional_price = |text: &[u8]| {
            if text.is_empty() { Ok(None) } else { fields::price(text, scale, "price").map(Some) }
        };
        let body = match kind {
            EventKind::New => {
                required(get(f, c.account), "account")?;
                let quantity = fields::quantity(quantity_text, "quantity")?;
                Body::NewOrder {
                    order: ctx.intern(required(order_text, "order_id")?),
                    side: fields::side(get(f, c.side), "side")?,
                    price: optional_price(price_text)?,
                    quantity,
                    displayed: fields::displayed_quantity(get(f, c.displayed_quantity), quantity)?,
                }
            }
            EventKind::Replace => {
                required(get(f, c.account), "account")?;
                let quantity = fields::quantity(quantity_text, "quantity")?;
                Body::Replace {
                    order: ctx.intern(required(order_text, "order_id")?),
                    side: fields::optional_side(get(f, c.side), "side")?,
                    price: optional_price(price_text)?,
                    quantity,
                    displayed: fields::displayed_quantity(get(f, c.displayed_quantity), quantity)?,
                }
            }
            EventKind::Cancel => {
                required(get(f, c.account), "account")?;
                Body::Cancel {
                    order: ctx.intern(required(order_text, "order_id")?),
                    side: fields::optional_side(get(f, c.side), "side")?,
                    price: optional_price(price_text)?,
                    quantity: if quantity_text.is_empty() {
                        None
                    } else {
                        Some(fields::quantity(quantity_text, "quantity")?)
                    },
                    reason: fields::cancel_reason(get(f, c.cancel_reason))?,
                }
            }
            EventKind::Fill => {
                let hidden = match get(f, c.hidden) {
                    b"" | b"false" | b"0" => false,
                    b"true" | b"1" => true,
                    other => {
                        return Err(Rejection::new(
                            RejectReason::MissingField,
                            format!("hidden {:?} is not true or false", String::from_utf8_lossy(other)),
                        ));
                    }
                };
                // An execution against hidden liquidity may name no account: the feed does not
                // know whose it was.
                if !hidden {
                    required(get(f, c.account), "account")?;
                }
                Body::Fill {
                    order: ctx.intern(order_text),
                    side: fields::side(get(f, c.side), "side")?,
                    price: fields::price(price_text, scale, "price")?,
                    quantity: fields::quantity(quantity_text, "quantity")?,
                    aggressor: fields::optional_side(get(f, c.aggressor), "aggressor")?,
                    hidden,
                }
            }
            EventKind::Trade => Body::Trade {
                buyer: Party {
                    account: ctx.intern(required(get(f, c.buyer), "buyer")?),
                    owner: ctx.intern(get(f, c.buyer_owner)),
                    order: ctx.intern(get(f, c.buy_order)),
                },
                seller: Party {
                    account: ctx.intern(required(get(f, c.seller), "seller")?),
                    owner: ctx.intern(get(f, c.seller_owner)),
                    order: ctx.intern(get(f, c.sell_order)),
                },
                price: fields::price(price_text, scale, "price")?,
                quantity: fields::quantity(quantity_text, "quantity")?,
                aggressor: fields::optional_side(get(f, c.aggressor), "aggressor")?,
                linked: None,
            },
            EventKind::Quote => {
                let level = |price: &[u8], quantity: &[u8], names: [&str; 2]| -> Result<Option<Level>, Rejection> {
                    match (price.is_empty(), quantity.is_empty()) {
                        (true, true) => Ok(None),
                        (false, false) => Ok(Some(Level {
                            price: fields::price(price, scale, names[0])?,
                            quantity: fields::quantity_or_zero(quantity, names[1])?,
                        })),
                        _ => Err(Rejection::new(
                            RejectReason::MissingField,
                            format!("{} and {} must be given together", names[0], names[1]),
                        )),
                    }
                };
                let bid = level(get(f, c.bid_price), get(f, c.bid_quantity), ["bid_price", "bid_quantity"])?;
                let ask = level(get(f, c.ask_price), get(f, c.ask_quantity), ["ask_price", "ask_quantity"])?;
                if bid.is_none() && ask.is_none() {
                    return Err(Rejection::new(RejectReason::MissingField, "a quote needs a bid or an ask"));
                }
                Body::Quote { bid, ask }
            }
            EventKind::Status => Body::Status {
                status: match required(get(f, c.status), "status")? {
                    b"halted" => TradingStatus::Halted,
                    b"quoting_only" => TradingStatus::QuotingOnly,
                    b"trading" => TradingStatus::Trading,
                    other => {
                        return Err(Rejection::new(
                            RejectReason::UnknownStatus,
                            format!("status {:?}", String::from_utf8_lossy(other)),
                        ));
                    }
                },
            },
        };
        out.push(Event {
            time,
            origin: line.origin,
            seq,
            instrument,
            venue: ctx.intern(get(f, c.venue)),
            account: ctx.intern(get(f, c.account)),
            trader: ctx.intern(get(f, c.trader)),
            desk: ctx.intern(get(f, c.desk)),
            owner: ctx.intern(get(f, c.owner)),
            body,
        });
        Ok(())
    }
}

/// Writes events as canonical CSV: the inverse of [`CsvParser`], used by tests and tools.
pub mod write {
    use crate::model::{Body, Event, Symbol, SymbolTable};
    use crate::reference::ReferenceData;

    /// The canonical header.
    pub const HEADER: &str = "event_time,seq,kind,venue,instrument,order_id,account,trader,desk,owner,side,price,quantity,aggressor,hidden,buyer,seller,buyer_owner,seller_owner,buy_order,sell_order,bid_price,bid_quantity,ask_price,ask_quantity,status";

    /// One event as a CSV line (without the line end).
    pub fn line(event: &Event, names: &SymbolTable, reference: &ReferenceData) -> String {
        let mut line = String::with_capacity(128);
        let mut column = 0;
        // Moves to column `to` (0-based), writing the commas in between.
        let mut at = |line: &mut String, to: usize| {
            while column < to {
                line.push(',');
                column += 1;
            }
        };
        let name = |line: &mut String, s: Symbol| {
            let start = line.len();
            names.write_name(s, line);
            if line.as_bytes()[start..].iter().any(|&b| b == b',' || b == b'"') {
                // RFC 4180: quote the field, doubling its quotes.
                let text = line.split_off(start);
                line.push('"');
                line.push_str(&text.replace('"', "\"\""));
                line.push('"');
            }
        };
        let price = |line: &mut String, p: crate::model::Price| {
            use std::fmt::Write;
            let _ = write!(line, "{}", reference.price(event.instrument, p));
        };
        let number = |line: &mut String, n: u64| line.push_str(itoa::Buffer::new().format(n));
        let side = |line: &mut String, s: Option<crate::model::Side>| {
            if let Some(s) = s {
                line.push_str(s.as_str());
            }
        };
        number(&mut line, event.time);
        at(&mut line, 1);
        if event.seq != 0 {
            number(&mut line, event.seq);
        }
        at(&mut line, 2);
        line.push_str(event.kind().as_str());
        at(&mut line, 3);
        name(&mut line, event.venue);
        at(&mut line, 4);
        name(&mut line, event.instrument);
        let order = event.order();
        at(&mut line, 5);
        if let Some(order) = order {
            name(&mut line, order);
        }
        at(&mut line, 6);
        name(&mut line, event.account);
        at(&mut line, 7);
        name(&mut line, event.trader);
        at(&mut line, 8);
        name(&mut line, event.desk);
        at(&mut line, 9);
        name(&mut line, event.owner);
        match event.body {
            Body::NewOrder { side: s, price: p, quantity, .. } => {
                at(&mut line, 10);
                side(&mut line, Some(s));
                at(&mut line, 11);
                if let Some(p) = p {
                    price(&mut line, p);
                }
                at(&mut line, 12);
                number(&mut line, quantity);
            }
            Body::Replace { side: s, price: p, quantity, .. } => {
                at(&mut line, 10);
                side(&mut line, s);
                at(&mut line, 11);
                if let Some(p) = p {
                    price(&mut line, p);
                }
                at(&mut line, 12);
                number(&mut line, quantity);
            }
            Body::Cancel { side: s, price: p, quantity, .. } => {
                at(&mut line, 10);
                side(&mut line, s);
                at(&mut line, 11);
                if let Some(p) = p {
                    price(&mut line, p);
                }
                at(&mut line, 12);
                if let Some(q) = quantity {
                    number(&mut line, q);
                }
            }
            Body::Fill { side: s, price: p, quantity, aggressor, hidden, .. } => {
                at(&mut line, 10);
                side(&mut line, Some(s));
                at(&mut line, 11);
                price(&mut line, p);
                at(&mut line, 12);
                number(&mut line, quantity);
                at(&mut line, 13);
                side(&mut line, aggressor);
                at(&mut line, 14);
                if hidden {
                    line.push_str("true");
                }
            }
            Body::Trade { buyer, seller, price: p, quantity, aggressor, .. } => {
                at(&mut line, 11);
                price(&mut line, p);
                at(&mut line, 12);
                number(&mut line, quantity);
                at(&mut line, 13);
                side(&mut line, aggressor);
                at(&mut line, 15);
                name(&mut line, buyer.account);
                at(&mut line, 16);
                name(&mut line, seller.account);
                at(&mut line, 17);
                name(&mut line, buyer.owner);
                at(&mut line, 18);
                name(&mut line, seller.owner);
                at(&mut line, 19);
                name(&mut line, buyer.order);
                at(&mut line, 20);
                name(&mut line, seller.order);
            }
            Body::Quote { bid, ask } => {
                if let Some(b) = bid {
                    at(&mut line, 21);
                    price(&mut line, b.price);
                    at(&mut line, 22);
                    number(&mut line, b.quantity);
                }
                if let Some(a) = ask {
                    at(&mut line, 23);
                    price(&mut line, a.price);
                    at(&mut line, 24);
                    number(&mut line, a.quantity);
                }
            }
            Body::Status { status } => {
                at(&mut line, 25);
                line.push_str(match status {
                    crate::model::TradingStatus::Halted => "halted",
                    crate::model::TradingStatus::QuotingOnly => "quoting_only",
                    crate::model::TradingStatus::Trading => "trading",
                });
            }
        }
        at(&mut line, 25);
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Report;
    use crate::model::{IdMap, Origin, Price, Side, Symbol, SymbolTable};
    use crate::reference::ReferenceData;

    fn parse_all(lines: &[&str]) -> (Vec<Event>, Vec<Rejection>, Vec<Report>) {
        parse_all_with(write::HEADER, lines)
    }

    fn parse_all_with(parser_header: &str, lines: &[&str]) -> (Vec<Event>, Vec<Rejection>, Vec<Report>) {
        let mut parser = CsvParser::from_header(Path::new("t.csv"), parser_header).expect("header");
        let mut reference = ReferenceData::new(4);
        reference.add_instrument("CENTS", crate::reference::Instrument { price_scale: 2, ..Default::default() });
        let mut side = Vec::new();
        let mut announced = IdMap::default();
        let mut events = Vec::new();
        let mut rejections = Vec::new();
        for (i, text) in lines.iter().enumerate() {
            let mut ctx = ParseContext::new(&reference, &mut side, &mut announced);
            let line = Line { bytes: text.as_bytes(), origin: Origin::new(0, i as u64), companion: None };
            if let Err(r) = parser.parse(&line, &mut ctx, &mut events) {
                rejections.push(r);
            }
        }
        (events, rejections, side)
    }

    const GOOD: &[&str] = &[
        "1709303400000000000,1,new,XSVL,ACME,O1,ACC001,T1,D1,,buy,101.25,500,,,,,,,,,,,,,",
        "2024-03-01T14:30:00.000000001Z,2,replace,XSVL,ACME,O1,ACC001,,,,,101.50,400,,,,,,,,,,,,,",
        "1709303400000000002,3,cancel,XSVL,ACME,O1,ACC001,,,,,,100,,,,,,,,,,,,,",
        "1709303400000000003,4,fill,XSVL,ACME,O2,ACC002,,,,sell,101.25,50,buy,true,,,,,,,,,,,",
        "1709303400000000004,5,trade,XSVL,ACME,,,,,,,101.25,50,buy,,ACC001,\"ACC-002, Ltd\",,OWN9,O1,O2,,,,,",
        "1709303400000000005,6,quote,XSVL,ACME,,,,,,,,,,,,,,,,,101.20,300,101.30,0,",
        "1709303400000000006,7,status,XSVL,ACME,,,,,,,,,,,,,,,,,,,,,halted",
        "1709303400000000007,,new,,CENTS,O3,ACC001,,,,sell,,10,,,,,,,,,,,,,",
    ];

    #[test]
    fn reads_the_displayed_quantity_of_reserve_orders() {
        let header = "event_time,kind,instrument,order_id,account,side,price,quantity,displayed_quantity";
        let (events, rejections, _) = parse_all_with(
            header,
            &[
                "1,new,ACME,O1,A,buy,10,1000,100",
                "2,replace,ACME,O1,A,,10,800,0",
                "3,new,ACME,O2,A,sell,11,500,",
                "4,new,ACME,O3,A,sell,11,500,600",
                "5,new,ACME,O4,A,sell,11,500,many",
            ],
        );
        let displayed: Vec<Option<u64>> = events
            .iter()
            .map(|e| match e.body {
                Body::NewOrder { displayed, .. } | Body::Replace { displayed, .. } => displayed,
                _ => None,
            })
            .collect();
        assert_eq!(displayed, [Some(100), Some(0), None]);
        let reasons: Vec<RejectReason> = rejections.iter().map(|r| r.reason).collect();
        assert_eq!(reasons, [RejectReason::BadQuantity, RejectReason::BadQuantity], "{rejections:?}");
        assert!(rejections[0].detail.contains("more than the order's quantity 500"), "{}", rejections[0].detail);
    }

    #[test]
    fn reads_every_kind() {
        let (events, rejections, side) = parse_all(GOOD);
        assert!(rejections.is_empty(), "{rejections:?}");
        assert_eq!(events.len(), GOOD.len());
        assert_eq!(
            events[0].body,
            Body::NewOrder {
                order: Symbol::of(b"O1"),
                side: Side::Buy,
                price: Some(Price(1_012_500)),
                quantity: 500,
                displayed: None
            }
        );
        assert_eq!(events[1].time, 1_709_303_400_000_000_001);
        assert!(matches!(events[2].body, Body::Cancel { quantity: Some(100), .. }));
        assert!(matches!(events[3].body, Body::Fill { hidden: true, aggressor: Some(Side::Buy), .. }));
        let (anonymous, rejected, _) =
            parse_all(&["1709303400000000003,4,fill,XSVL,ACME,,,,,,sell,101.25,50,buy,true,,,,,,,,,,,"]);
        assert!(rejected.is_empty(), "{rejected:?}");
        assert!(matches!(anonymous[0].body, Body::Fill { hidden: true, order: Symbol::NONE, .. }));
        assert_eq!(anonymous[0].account, Symbol::NONE);
        match events[4].body {
            Body::Trade { seller, .. } => {
                let mut names = SymbolTable::default();
                for r in &side {
                    if let Report::Symbol(s, t) = r {
                        names.insert(*s, t);
                    }
                }
                assert_eq!(names.name(seller.account), "ACC-002, Ltd");
                assert_eq!(seller.owner, Symbol::of(b"OWN9"));
            }
            ref other => panic!("{other:?}"),
        }
        assert!(matches!(events[5].body, Body::Quote { ask: Some(Level { quantity: 0, .. }), .. }));
        assert!(matches!(events[7].body, Body::NewOrder { price: None, .. }));
    }

    #[test]
    fn rejects_bad_lines_with_the_right_reason() {
        let cases = [
            ("1,1,new,X,ACME,O1,A,,,,buy,1,5", RejectReason::ColumnCount),
            ("soon,1,new,X,ACME,O1,A,,,,buy,1,5,,,,,,,,,,,,,", RejectReason::BadTime),
            ("1,1,amend,X,ACME,O1,A,,,,buy,1,5,,,,,,,,,,,,,", RejectReason::UnknownKind),
            ("1,1,new,X,ACME,,A,,,,buy,1,5,,,,,,,,,,,,,", RejectReason::MissingField),
            // A fill needs its account, unless it executed hidden liquidity of unknown owner.
            ("1,1,fill,X,ACME,O1,,,,,buy,1,5,,false,,,,,,,,,,,", RejectReason::MissingField),
            ("1,1,new,X,ACME,O1,A,,,,up,1,5,,,,,,,,,,,,,", RejectReason::UnknownSide),
            ("1,1,new,X,ACME,O1,A,,,,buy,1,-5,,,,,,,,,,,,,", RejectReason::BadQuantity),
            ("1,1,new,X,ACME,O1,A,,,,buy,NaN,5,,,,,,,,,,,,,", RejectReason::BadPrice),
            ("1,1,new,X,ACME,O1,A,,,,buy,-1,5,,,,,,,,,,,,,", RejectReason::BadPrice),
            ("1,1,new,X,CENTS,O1,A,,,,buy,1.001,5,,,,,,,,,,,,,", RejectReason::BadPrice),
            ("1,1,status,X,ACME,,,,,,,,,,,,,,,,,,,,,open", RejectReason::UnknownStatus),
            ("1,1,quote,X,ACME,,,,,,,,,,,,,,,,,1.0,,,,", RejectReason::MissingField),
            ("1,1,trade,X,ACME,,,,,,,1,5,,,,B,,,,,,,,,", RejectReason::MissingField),
        ];
        for (line, reason) in cases {
            let (events, rejections, _) = parse_all(&[line]);
            assert!(events.is_empty(), "{line}");
            assert_eq!(rejections.first().map(|r| r.reason), Some(reason), "{line}: {rejections:?}");
        }
    }

    #[test]
    fn a_cancel_says_who_cancelled_it_in_the_cancel_reason_column() {
        let header = format!("{},cancel_reason", write::HEADER);
        let mut parser = CsvParser::from_header(Path::new("t.csv"), &header).expect("header");
        let reference = ReferenceData::new(4);
        let (mut side, mut announced, mut events) = (Vec::new(), IdMap::default(), Vec::new());
        let mut reasons = Vec::new();
        for (i, reason) in ["", "member", "uncross", "connectivity", "kill_switch", "venue"].iter().enumerate() {
            let text = format!("1,1,cancel,X,ACME,O{i},A,,,,,,,,,,,,,,,,,,,,{reason}");
            let mut ctx = ParseContext::new(&reference, &mut side, &mut announced);
            let line = Line { bytes: text.as_bytes(), origin: Origin::new(0, i as u64), companion: None };
            events.clear();
            reasons.push(parser.parse(&line, &mut ctx, &mut events).map(|()| match events[0].body {
                Body::Cancel { reason, .. } => reason.as_str(),
                _ => "not a cancel",
            }));
        }
        let reasons: Vec<Result<&str, RejectReason>> = reasons.into_iter().map(|r| r.map_err(|e| e.reason)).collect();
        assert_eq!(
            reasons,
            [
                Ok("member"),
                Ok("member"),
                Ok("uncross"),
                Ok("connectivity"),
                Ok("kill_switch"),
                Err(RejectReason::UnknownCancelReason)
            ]
        );
    }

    #[test]
    fn writing_and_reading_round_trip() {
        let (events, _, side) = parse_all(GOOD);
        let mut names = SymbolTable::default();
        for r in &side {
            if let Report::Symbol(s, t) = r {
                names.insert(*s, t);
            }
        }
        let mut reference = ReferenceData::new(4);
        reference.add_instrument("CENTS", crate::reference::Instrument { price_scale: 2, ..Default::default() });
        let lines: Vec<String> = events.iter().map(|e| write::line(e, &names, &reference)).collect();
        let refs: Vec<&str> = lines.iter().map(|s| s.as_str()).collect();
        let (again, rejections, _) = parse_all(&refs);
        assert!(rejections.is_empty(), "{rejections:?}");
        for (a, b) in events.iter().zip(&again) {
            assert_eq!(a.body, b.body);
            assert_eq!((a.time, a.instrument, a.account), (b.time, b.instrument, b.account));
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        /// Any bytes, including quotes, commas and invalid UTF-8: a result, never a panic.
        #[test]
        fn arbitrary_lines_never_panic(line in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let mut parser = CsvParser::from_header(Path::new("t.csv"), write::HEADER).expect("header");
            let reference = ReferenceData::new(4);
            let (mut side, mut announced, mut events) = (Vec::new(), IdMap::default(), Vec::new());
            let mut ctx = ParseContext::new(&reference, &mut side, &mut announced);
            let line = Line { bytes: &line, origin: Origin::new(0, 0), companion: None };
            let _ = parser.parse(&line, &mut ctx, &mut events);
        }

        /// Lines of the right shape with random field contents: a result, never a panic.
        #[test]
        fn arbitrary_fields_never_panic(fields in proptest::collection::vec("[-0-9a-z.,\"]{0,12}", 26)) {
            let text = fields.join(",");
            let mut parser = CsvParser::from_header(Path::new("t.csv"), write::HEADER).expect("header");
            let reference = ReferenceData::new(4);
            let (mut side, mut announced, mut events) = (Vec::new(), IdMap::default(), Vec::new());
            let mut ctx = ParseContext::new(&reference, &mut side, &mut announced);
            let line = Line { bytes: text.as_bytes(), origin: Origin::new(0, 0), companion: None };
            let _ = parser.parse(&line, &mut ctx, &mut events);
        }
    }

    #[test]
    fn a_missing_required_column_is_an_input_error() {
        assert!(CsvParser::from_header(Path::new("x.csv"), "time,kind,instrument").is_err());
        let twice = CsvParser::from_header(Path::new("x.csv"), "event_time,kind,instrument,price,Price").err();
        assert!(twice.is_some_and(|e| e.to_string().contains("`price` twice")));
        let parser = CsvParser::from_header(Path::new("x.csv"), "kind,instrument,event_time").expect("any order");
        assert!(parser.is_header(b"kind,instrument,event_time\r"));
    }
}
