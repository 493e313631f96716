//! The canonical JSON Lines format (`docs/schema.md`): one object per line with the field
//! names of the canonical CSV, validated the same way.
//!
//! Every field is captured as raw JSON text, so a number such as `101.25` is read from its
//! digits by the exact decimal parser and never passes through a binary float.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::fields::{self, required};
use super::time::parse_event_time;
use super::{Line, LineParser, ParseContext, RejectReason, Rejection};
use crate::model::{Body, Event, EventKind, Level, Party, TradingStatus};

/// Parser for canonical JSON Lines. It keeps no state: every line stands alone.
#[derive(Clone, Debug, Default)]
pub struct JsonlParser {}

impl JsonlParser {
    /// A parser (JSON Lines needs no header or configuration).
    pub fn new() -> JsonlParser {
        JsonlParser {}
    }
}

/// One line, every field as borrowed raw JSON. Unknown fields are ignored, like unknown CSV
/// columns; `null` is the same as absent.
#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow)]
    event_time: Option<&'a RawValue>,
    #[serde(borrow)]
    seq: Option<&'a RawValue>,
    #[serde(borrow)]
    kind: Option<&'a RawValue>,
    #[serde(borrow)]
    venue: Option<&'a RawValue>,
    #[serde(borrow)]
    instrument: Option<&'a RawValue>,
    #[serde(borrow)]
    order_id: Option<&'a RawValue>,
    #[serde(borrow)]
    account: Option<&'a RawValue>,
    #[serde(borrow)]
    trader: Option<&'a RawValue>,
    #[serde(borrow)]
    desk: Option<&'a RawValue>,
    #[serde(borrow)]
    owner: Option<&'a RawValue>,
    #[serde(borrow)]
    side: Option<&'a RawValue>,
    #[serde(borrow)]
    price: Option<&'a RawValue>,
    #[serde(borrow)]
    quantity: Option<&'a RawValue>,
    #[serde(borrow)]
    aggressor: Option<&'a RawValue>,
    #[serde(borrow)]
    hidden: Option<&'a RawValue>,
    #[serde(borrow)]
    displayed_quantity: Option<&'a RawValue>,
    #[serde(borrow)]
    cancel_reason: Option<&'a RawValue>,
    #[serde(borrow)]
    buyer: Option<&'a RawValue>,
    #[serde(borrow)]
    seller: Option<&'a RawValue>,
    #[serde(borrow)]
    buyer_owner: Option<&'a RawValue>,
    #[serde(borrow)]
    seller_owner: Option<&'a RawValue>,
    #[serde(borrow)]
    buy_order: Option<&'a RawValue>,
    #[serde(borrow)]
    sell_order: Option<&'a RawValue>,
    #[serde(borrow)]
    bid_price: Option<&'a RawValue>,
    #[serde(borrow)]
    bid_quantity: Option<&'a RawValue>,
    #[serde(borrow)]
    ask_price: Option<&'a RawValue>,
    #[serde(borrow)]
    ask_quantity: Option<&'a RawValue>,
    #[serde(borrow)]
    status: Option<&'a RawValue>,
}

/// The text of a field: a string's contents (unescaped, borrowed unless it has escapes), or a
/// number's or boolean's literal. Absent, `null` and `""` are all empty, like an empty CSV field.
#[inline]
fn text<'a>(raw: Option<&'a RawValue>, field: &str) -> Result<Cow<'a, [u8]>, Rejection> {
    let Some(raw) = raw else {
        return Ok(Cow::Borrowed(&[]));
    };
    let json = raw.get().trim_ascii();
    match json.as_bytes().first() {
        Some(b'"') => match json.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
            Some(inner) if memchr::memchr(b'\\', inner.as_bytes()).is_none() => Ok(Cow::Borrowed(inner.as_bytes())),
            _ => serde_json::from_str::<String>(json)
                .map(|s| Cow::Owned(s.into_bytes()))
                .map_err(|e| Rejection::new(RejectReason::BadJson, format!("{field}: {e}"))),
        },
        Some(b'{' | b'[') => Err(Rejection::new(
            RejectReason::BadJson,
            format!("{field} is an {}, not a string or number", if json.starts_with('{') { "object" } else { "array" }),
        )),
        Some(b'n') if json == "null" => Ok(Cow::Borrowed(&[])),
        _ => Ok(Cow::Borrowed(json.as_bytes())),
    }
}

impl LineParser for JsonlParser {
    fn is_header(&self, _first_line: &[u8]) -> bool {
        false
    }

    fn parse(&mut self, line: &Line<'_>, ctx: &mut ParseContext<'_>, out: &mut Vec<Event>) -> Result<(), Rejection> {
        let bytes = line.bytes.strip_suffix(b"\r").unwrap_or(line.bytes);
        let json =
            std::str::from_utf8(bytes).map_err(|e| Rejection::new(RejectReason::BadUtf8, format!("not UTF-8: {e}")))?;
        let json = json.strip_prefix('\u{feff}').unwrap_or(json);
        // Checked first: serde would also accept an array as a struct, field by position.
        match json.trim_ascii_start().as_bytes().first() {
            Some(b'{') => {}
            None => return Err(Rejection::new(RejectReason::BadJson, "empty line")),
            Some(_) => return Err(Rejection::new(RejectReason::BadJson, "not a JSON object")),
        }
        let r: Record<'_> = serde_json::from_str(json)
            .map_err(|e| Rejection::new(RejectReason::BadJson, format!("invalid JSON: {e}")))?;

        let time_text = text(r.event_time, "event_time")?;
        let time = parse_event_time(&time_text)
            .ok_or_else(|| Rejection::new(RejectReason::BadTime, super::time::event_time_error(&time_text)))?;
        let kind_text = text(r.kind, "kind")?;
        let kind = EventKind::parse(&kind_text).ok_or_else(|| {
            Rejection::new(RejectReason::UnknownKind, format!("kind {:?}", String::from_utf8_lossy(&kind_text)))
        })?;
        let instrument = ctx.intern(required(&text(r.instrument, "instrument")?, "instrument")?);
        let scale = ctx.price_scale(instrument);
        let seq_text = text(r.seq, "seq")?;
        let seq = if seq_text.is_empty() { 0 } else { fields::quantity_or_zero(&seq_text, "seq")? };
        let account = text(r.account, "account")?;

        let price_text = text(r.price, "price")?;
        let quantity_text = text(r.quantity, "quantity")?;
        let optional_price = |text: &[u8]| {
            if text.is_empty() { Ok(None) } else { fields::price(text, scale, "price").map(Some) }
        };
        let body = match kind {
            EventKind::New => {
                required(&account, "account")?;
                let quantity = fields::quantity(&quantity_text, "quantity")?;
                Body::NewOrder {
                    order: ctx.intern(required(&text(r.order_id, "order_id")?, "order_id")?),
                    side: fields::side(&text(r.side, "side")?, "side")?,
                    price: optional_price(&price_text)?,
                    quantity,
                    displayed: fields::displayed_quantity(
                        &text(r.displayed_quantity, "displayed_quantity")?,
                        quantity,
                    )?,
                }
            }
            EventKind::Replace => {
                required(&account, "account")?;
                let quantity = fields::quantity(&quantity_text, "quantity")?;
                Body::Replace {
                    order: ctx.intern(required(&text(r.order_id, "order_id")?, "order_id")?),
                    side: fields::optional_side(&text(r.side, "side")?, "side")?,
                    price: optional_price(&price_text)?,
                    quantity,
                    displayed: fields::displayed_quantity(
                        &text(r.displayed_quantity, "displayed_quantity")?,
                        quantity,
                    )?,
                }
            }
            EventKind::Cancel => {
                required(&account, "account")?;
                Body::Cancel {
                    order: ctx.intern(required(&text(r.order_id, "order_id")?, "order_id")?),
                    side: fields::optional_side(&text(r.side, "side")?, "side")?,
                    price: optional_price(&price_text)?,
                    quantity: if quantity_text.is_empty() {
                        None
                    } else {
                        Some(fields::quantity(&quantity_text, "quantity")?)
                    },
                    reason: fields::cancel_reason(&text(r.cancel_reason, "cancel_reason")?)?,
                }
            }
            EventKind::Fill => {
                // Same reason as the canonical CSV gives for an unreadable `hidden`.
                let hidden = match &*text(r.hidden, "hidden")? {
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
                    required(&account, "account")?;
                }
                Body::Fill {
                    order: ctx.intern(&text(r.order_id, "order_id")?),
                    side: fields::side(&text(r.side, "side")?, "side")?,
                    price: fields::price(&price_text, scale, "price")?,
                    quantity: fields::quantity(&quantity_text, "quantity")?,
                    aggressor: fields::optional_side(&text(r.aggressor, "aggressor")?, "aggressor")?,
                    hidden,
                }
            }
            EventKind::Trade => Body::Trade {
                buyer: Party {
                    account: ctx.intern(required(&text(r.buyer, "buyer")?, "buyer")?),
                    owner: ctx.intern(&text(r.buyer_owner, "buyer_owner")?),
                    order: ctx.intern(&text(r.buy_order, "buy_order")?),
                },
                seller: Party {
                    account: ctx.intern(required(&text(r.seller, "seller")?, "seller")?),
                    owner: ctx.intern(&text(r.seller_owner, "seller_owner")?),
                    order: ctx.intern(&text(r.sell_order, "sell_order")?),
                },
                price: fields::price(&price_text, scale, "price")?,
                quantity: fields::quantity(&quantity_text, "quantity")?,
                aggressor: fields::optional_side(&text(r.aggressor, "aggressor")?, "aggressor")?,
                linked: None,
            },
            EventKind::Quote => {
                // Field names are literals: a good line allocates nothing.
                let level =
                    |price: &[u8], quantity: &[u8], price_name: &'static str, quantity_name: &'static str| match (
                        price.is_empty(),
                        quantity.is_empty(),
                    ) {
                        (true, true) => Ok(None),
                        (false, false) => Ok(Some(Level {
                            price: fields::price(price, scale, price_name)?,
                            quantity: fields::quantity_or_zero(quantity, quantity_name)?,
                        })),
                        _ => Err(Rejection::new(
                            RejectReason::MissingField,
                            format!("{price_name} and {quantity_name} must be given together"),
                        )),
                    };
                let bid = level(
                    &text(r.bid_price, "bid_price")?,
                    &text(r.bid_quantity, "bid_quantity")?,
                    "bid_price",
                    "bid_quantity",
                )?;
                let ask = level(
                    &text(r.ask_price, "ask_price")?,
                    &text(r.ask_quantity, "ask_quantity")?,
                    "ask_price",
                    "ask_quantity",
                )?;
                if bid.is_none() && ask.is_none() {
                    return Err(Rejection::new(RejectReason::MissingField, "a quote needs a bid or an ask"));
                }
                Body::Quote { bid, ask }
            }
            EventKind::Status => Body::Status {
                status: match required(&text(r.status, "status")?, "status")? {
                    b"halted" => TradingStatus::Halted,
                    b"quoting_only" => TradingStatus::QuotingOnly,
                    b"trading" => TradingStatus::Trading,
                    other => {
                        return Err(Rejection::new(
                            RejectReason::UnknownStatus,
                            format!(
                                "status {:?} is not halted, quoting_only or trading",
                                String::from_utf8_lossy(other)
                            ),
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
            venue: ctx.intern(&text(r.venue, "venue")?),
            account: ctx.intern(&account),
            trader: ctx.intern(&text(r.trader, "trader")?),
            desk: ctx.intern(&text(r.desk, "desk")?),
            owner: ctx.intern(&text(r.owner, "owner")?),
            body,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::time::format_time;
    use crate::model::Report;
    use crate::model::{IdMap, Origin, Price, Side, Symbol};
    use crate::reference::ReferenceData;

    fn parse_with_scale(line: &str, scale: u8) -> (Result<Event, Rejection>, Vec<Report>) {
        let reference = ReferenceData::new(scale);
        let mut side: Vec<Report> = Vec::new();
        let mut announced = IdMap::default();
        let mut ctx = ParseContext::new(&reference, &mut side, &mut announced);
        let mut out = Vec::new();
        let mut parser = JsonlParser::new();
        let line = Line { bytes: line.as_bytes(), origin: Origin::new(2, 77), companion: None };
        let result = parser.parse(&line, &mut ctx, &mut out).map(|()| {
            assert_eq!(out.len(), 1);
            out[0]
        });
        (result, side)
    }

    fn parse(line: &str) -> Result<Event, Rejection> {
        parse_with_scale(line, 4).0
    }

    fn body(line: &str) -> Body {
        match parse(line) {
            Ok(e) => e.body,
            Err(r) => panic!("{line}: {r:?}"),
        }
    }

    fn reason(line: &str) -> RejectReason {
        match parse(line) {
            Err(r) => {
                assert!(!r.detail.is_empty());
                r.reason
            }
            Ok(e) => panic!("{line} was accepted as {e:?}"),
        }
    }

    const T: &str = r#""event_time":"2024-03-01T14:30:00.000000100Z","instrument":"ACME""#;

    #[test]
    fn new_order_from_the_schema_example() {
        let (e, side) = parse_with_scale(
            r#"{"event_time":"2024-03-01T14:30:00.000000100Z","kind":"new","instrument":"ACME","order_id":"O1","account":"ACC001","side":"buy","price":"101.25","quantity":500}"#,
            4,
        );
        let e = e.expect("parsed");
        assert!(side.is_empty());
        assert_eq!(format_time(e.time), "2024-03-01T14:30:00.000000100Z");
        assert_eq!(e.origin, Origin::new(2, 77));
        assert_eq!((e.instrument, e.account, e.seq), (Symbol::of(b"ACME"), Symbol::of(b"ACC001"), 0));
        assert_eq!((e.venue, e.trader, e.desk, e.owner), (Symbol::NONE, Symbol::NONE, Symbol::NONE, Symbol::NONE));
        assert_eq!(
            e.body,
            Body::NewOrder {
                order: Symbol::of(b"O1"),
                side: Side::Buy,
                price: Some(Price(1_012_500)),
                quantity: 500,
                displayed: None
            }
        );
    }

    #[test]
    fn optional_fields_and_interning() {
        let (e, side) = parse_with_scale(
            &format!(
                r#"{{{T},"kind":"new","order_id":7,"account":"ACC-001","side":"S","quantity":"500","seq":12,"venue":"XNAS","trader":"T1","desk":"Equity Desk","owner":"O","price":null,"extra":{{"ignored":[1,2]}}}}"#
            ),
            4,
        );
        let e = e.expect("parsed");
        assert_eq!(e.seq, 12);
        assert_eq!(
            (e.venue, e.trader, e.desk, e.owner),
            (Symbol::of(b"XNAS"), Symbol::of(b"T1"), Symbol::of(b"Equity Desk"), Symbol::of(b"O"))
        );
        assert_eq!(
            e.body,
            Body::NewOrder { order: Symbol::of(b"7"), side: Side::Sell, price: None, quantity: 500, displayed: None }
        );
        // Hashed names are announced for the writers.
        let announced: Vec<&str> =
            side.iter().filter_map(|r| if let Report::Symbol(_, t) = r { Some(&**t) } else { None }).collect();
        assert_eq!(announced, ["Equity Desk"]);
        let e =
            parse(r#"{"event_time":1709303400000000123,"kind":"status","instrument":"A\u0043ME","status":"halted"}"#)
                .expect("escapes");
        assert_eq!((e.time, e.instrument), (1_709_303_400_000_000_123, Symbol::of(b"ACME")));
        let e =
            parse(&format!("  {{{T},\"kind\":\"status\",\"status\":\"trading\"}} \r")).expect("whitespace and CRLF");
        assert_eq!(e.body, Body::Status { status: TradingStatus::Trading });
    }

    #[test]
    fn one_line_per_kind() {
        assert_eq!(
            body(&format!(r#"{{{T},"kind":"replace","order_id":"O1","account":"A","quantity":300,"price":101.5}}"#)),
            Body::Replace {
                order: Symbol::of(b"O1"),
                side: None,
                price: Some(Price(1_015_000)),
                quantity: 300,
                displayed: None
            }
        );
        assert_eq!(
            body(&format!(r#"{{{T},"kind":"cancel","order_id":"O1","account":"A"}}"#)),
            Body::cancel_rest(Symbol::of(b"O1"))
        );
        assert_eq!(
            body(&format!(
                r#"{{{T},"kind":"cancel","order_id":"O1","account":"A","quantity":100,"side":"sell","price":"99"}}"#
            )),
            Body::Cancel {
                order: Symbol::of(b"O1"),
                side: Some(Side::Sell),
                price: Some(Price(990_000)),
                quantity: Some(100),
                reason: crate::model::CancelReason::Member
            }
        );
        assert!(matches!(
            body(&format!(r#"{{{T},"kind":"cancel","order_id":"O1","account":"A","cancel_reason":"kill_switch"}}"#)),
            Body::Cancel { reason: crate::model::CancelReason::KillSwitch, .. }
        ));
        assert_eq!(
            reason(&format!(r#"{{{T},"kind":"cancel","order_id":"O1","account":"A","cancel_reason":"venue"}}"#)),
            RejectReason::UnknownCancelReason
        );
        assert_eq!(
            body(&format!(
                r#"{{{T},"kind":"fill","order_id":"O1","account":"A","side":"buy","price":101.25,"quantity":200,"aggressor":"sell","hidden":true}}"#
            )),
            Body::Fill {
                order: Symbol::of(b"O1"),
                side: Side::Buy,
                price: Price(1_012_500),
                quantity: 200,
                aggressor: Some(Side::Sell),
                hidden: true
            }
        );
        assert!(matches!(
            body(&format!(
                r#"{{{T},"kind":"new","order_id":"O1","account":"A","side":"buy","price":1,"quantity":900,"displayed_quantity":100}}"#
            )),
            Body::NewOrder { quantity: 900, displayed: Some(100), .. }
        ));
        assert_eq!(
            reason(&format!(
                r#"{{{T},"kind":"replace","order_id":"O1","account":"A","quantity":90,"displayed_quantity":100}}"#
            )),
            RejectReason::BadQuantity
        );
        // Hidden liquidity of unknown owner: no account needed.
        assert!(matches!(
            body(&format!(r#"{{{T},"kind":"fill","side":"sell","price":1,"quantity":1,"hidden":true}}"#)),
            Body::Fill { hidden: true, .. }
        ));
        assert_eq!(
            reason(&format!(r#"{{{T},"kind":"fill","side":"sell","price":1,"quantity":1,"hidden":false}}"#)),
            RejectReason::MissingField
        );
        assert_eq!(
            body(&format!(
                r#"{{{T},"kind":"fill","account":"A","side":-1,"price":"101.25","quantity":1,"hidden":"0"}}"#
            )),
            Body::Fill {
                order: Symbol::NONE,
                side: Side::Sell,
                price: Price(1_012_500),
                quantity: 1,
                aggressor: None,
                hidden: false
            }
        );
        assert_eq!(
            body(&format!(
                r#"{{{T},"kind":"trade","buyer":"A","seller":"B","buyer_owner":"X","seller_owner":"X","buy_order":"O1","sell_order":"O2","price":"101.25","quantity":500,"aggressor":"buy"}}"#
            )),
            Body::Trade {
                buyer: Party { account: Symbol::of(b"A"), owner: Symbol::of(b"X"), order: Symbol::of(b"O1") },
                seller: Party { account: Symbol::of(b"B"), owner: Symbol::of(b"X"), order: Symbol::of(b"O2") },
                price: Price(1_012_500),
                quantity: 500,
                aggressor: Some(Side::Buy),
                linked: None,
            }
        );
        assert_eq!(
            body(&format!(r#"{{{T},"kind":"trade","buyer":"A","seller":"A","price":1,"quantity":1}}"#)),
            Body::Trade {
                buyer: Party { account: Symbol::of(b"A"), ..Party::default() },
                seller: Party { account: Symbol::of(b"A"), ..Party::default() },
                price: Price(10_000),
                quantity: 1,
                aggressor: None,
                linked: None,
            }
        );
        assert_eq!(
            body(&format!(
                r#"{{{T},"kind":"quote","bid_price":"101.2","bid_quantity":300,"ask_price":101.3,"ask_quantity":0}}"#
            )),
            Body::Quote {
                bid: Some(Level { price: Price(1_012_000), quantity: 300 }),
                ask: Some(Level { price: Price(1_013_000), quantity: 0 }),
            }
        );
        assert_eq!(
            body(&format!(r#"{{{T},"kind":"quote","ask_price":"101.3","ask_quantity":5,"bid_price":null}}"#)),
            Body::Quote { bid: None, ask: Some(Level { price: Price(1_013_000), quantity: 5 }) }
        );
        for (text, status) in [
            ("halted", TradingStatus::Halted),
            ("quoting_only", TradingStatus::QuotingOnly),
            ("trading", TradingStatus::Trading),
        ] {
            assert_eq!(body(&format!(r#"{{{T},"kind":"status","status":"{text}"}}"#)), Body::Status { status });
        }
        let e = parse(&format!(
            r#"{{{T},"kind":"trade","account":"ACC","buyer":"A","seller":"B","price":1,"quantity":1}}"#
        ))
        .expect("trade");
        assert_eq!(e.account, Symbol::of(b"ACC"), "like the CSV, an account given on a trade is kept");
    }

    #[test]
    fn prices_are_read_from_their_digits() {
        let number = format!(r#"{{{T},"kind":"fill","account":"A","side":"buy","quantity":1,"price":101.25}}"#);
        let string = format!(r#"{{{T},"kind":"fill","account":"A","side":"buy","quantity":1,"price":"101.25"}}"#);
        for line in [&number, &string] {
            assert!(matches!(body(line), Body::Fill { price: Price(1_012_500), .. }), "{line}");
            // At scale 2 both are exact too; at scale 1 neither may be rounded.
            assert!(matches!(
                parse_with_scale(line, 2).0,
                Ok(Event { body: Body::Fill { price: Price(10_125), .. }, .. })
            ));
            assert_eq!(parse_with_scale(line, 1).0.map_err(|r| r.reason).err(), Some(RejectReason::BadPrice));
        }
        // A float would turn this into 0.30000000000000004 or round it; the digits are kept.
        let exact = format!(r#"{{{T},"kind":"fill","account":"A","side":"buy","quantity":1,"price":0.300000000001}}"#);
        assert!(matches!(
            parse_with_scale(&exact, 12).0,
            Ok(Event { body: Body::Fill { price: Price(300_000_000_001), .. }, .. })
        ));
        let big = format!(r#"{{{T},"kind":"fill","account":"A","side":"buy","quantity":9007199254740993,"price":1}}"#);
        assert!(matches!(body(&big), Body::Fill { quantity: 9_007_199_254_740_993, .. }), "beyond f64's integers");
    }

    #[test]
    fn rejections() {
        let new = |fields: &str| {
            format!(
                r#"{{{T},"kind":"new","order_id":"O1","account":"A","side":"buy","price":"1","quantity":1{fields}}}"#
            )
        };
        assert_eq!(reason("not json"), RejectReason::BadJson);
        assert_eq!(reason(""), RejectReason::BadJson);
        assert_eq!(reason("[1,2,3]"), RejectReason::BadJson);
        assert_eq!(reason("42"), RejectReason::BadJson);
        assert_eq!(reason(r#"{"event_time":1,"kind":"new""#), RejectReason::BadJson);
        assert_eq!(reason(&format!("{} trailing", new(""))), RejectReason::BadJson);
        assert_eq!(reason(&new(r#","account":"B""#)), RejectReason::BadJson, "duplicate field");
        assert_eq!(reason(&new(r#","trader":{"id":1}"#)), RejectReason::BadJson);
        assert_eq!(reason(&new(r#","desk":["a"]"#)), RejectReason::BadJson);
        assert!(parse(&new("")).is_ok());
        let mut invalid = new("").into_bytes();
        invalid[30] = 0xFF;
        let reference = ReferenceData::new(4);
        let (mut side, mut announced, mut out) = (Vec::new(), IdMap::default(), Vec::new());
        let mut ctx = ParseContext::new(&reference, &mut side, &mut announced);
        let line = Line { bytes: &invalid, origin: Origin::default(), companion: None };
        let rejection = JsonlParser::new().parse(&line, &mut ctx, &mut out).expect_err("not UTF-8");
        assert_eq!(rejection.reason, RejectReason::BadUtf8);

        let kind = |kind: &str, rest: &str| format!(r#"{{{T},"kind":"{kind}"{rest}}}"#);
        assert_eq!(
            reason(r#"{"kind":"new","instrument":"ACME","order_id":"O1","account":"A","side":"buy","quantity":1}"#),
            RejectReason::BadTime
        );
        assert_eq!(
            reason(r#"{"event_time":"yesterday","kind":"status","instrument":"X","status":"halted"}"#),
            RejectReason::BadTime
        );
        assert_eq!(
            reason(r#"{"event_time":-5,"kind":"status","instrument":"X","status":"halted"}"#),
            RejectReason::BadTime
        );
        assert_eq!(reason(&kind("amend", "")), RejectReason::UnknownKind);
        assert_eq!(reason(&format!("{{{T}}}")), RejectReason::UnknownKind);
        assert_eq!(reason(r#"{"event_time":1,"kind":"status","status":"halted"}"#), RejectReason::MissingField);
        assert_eq!(
            reason(r#"{"event_time":1,"kind":"status","instrument":"","status":"halted"}"#),
            RejectReason::MissingField
        );
        assert_eq!(reason(&kind("new", r#","account":"A","side":"buy","quantity":1"#)), RejectReason::MissingField);
        assert_eq!(reason(&kind("new", r#","order_id":"O1","side":"buy","quantity":1"#)), RejectReason::MissingField);
        assert_eq!(reason(&kind("new", r#","order_id":"O1","account":"A","quantity":1"#)), RejectReason::MissingField);
        assert_eq!(reason(&kind("new", r#","order_id":"O1","account":"A","side":"buy""#)), RejectReason::MissingField);
        assert_eq!(reason(&kind("replace", r#","order_id":"O1","account":"A""#)), RejectReason::MissingField);
        assert_eq!(reason(&kind("cancel", r#","order_id":"O1""#)), RejectReason::MissingField);
        assert_eq!(reason(&kind("fill", r#","account":"A","side":"buy","quantity":1"#)), RejectReason::MissingField);
        assert_eq!(reason(&kind("fill", r#","side":"buy","quantity":1,"price":1"#)), RejectReason::MissingField);
        assert_eq!(
            reason(&kind("fill", r#","account":"A","side":"buy","quantity":1,"price":1,"hidden":"maybe""#)),
            RejectReason::MissingField
        );
        assert_eq!(reason(&kind("trade", r#","seller":"B","price":1,"quantity":1"#)), RejectReason::MissingField);
        assert_eq!(
            reason(&kind("trade", r#","buyer":"A","seller":null,"price":1,"quantity":1"#)),
            RejectReason::MissingField
        );
        assert_eq!(reason(&kind("quote", "")), RejectReason::MissingField);
        assert_eq!(reason(&kind("quote", r#","bid_price":1"#)), RejectReason::MissingField);
        assert_eq!(reason(&kind("status", "")), RejectReason::MissingField);
        assert_eq!(reason(&new(r#","seq":-1"#)), RejectReason::BadQuantity);
        assert_eq!(
            reason(&kind("new", r#","order_id":"O1","account":"A","side":"up","quantity":1"#)),
            RejectReason::UnknownSide
        );
        assert_eq!(
            reason(&kind("fill", r#","account":"A","side":"buy","quantity":1,"price":1,"aggressor":"x""#)),
            RejectReason::UnknownSide
        );
        assert_eq!(reason(&kind("status", r#","status":"closed""#)), RejectReason::UnknownStatus);
        for (quantity, expected) in [
            ("0", RejectReason::BadQuantity),
            ("-5", RejectReason::BadQuantity),
            ("1.5", RejectReason::BadQuantity),
            ("\"ten\"", RejectReason::BadQuantity),
            ("1e3", RejectReason::BadQuantity),
            ("true", RejectReason::BadQuantity),
        ] {
            let line = kind("new", &format!(r#","order_id":"O1","account":"A","side":"buy","quantity":{quantity}"#));
            assert_eq!(reason(&line), expected, "{line}");
        }
        assert_eq!(
            reason(&kind("cancel", r#","order_id":"O1","account":"A","quantity":0"#)),
            RejectReason::BadQuantity
        );
        assert_eq!(reason(&kind("quote", r#","bid_price":1,"bid_quantity":-1"#)), RejectReason::BadQuantity);
        for price in ["0", "-1", "1.00001", "1e2", "\"NaN\"", "\"\\u0031x\"", "false"] {
            let line =
                kind("new", &format!(r#","order_id":"O1","account":"A","side":"buy","quantity":1,"price":{price}"#));
            assert_eq!(reason(&line), RejectReason::BadPrice, "{line}");
        }
        assert_eq!(reason(&kind("quote", r#","ask_price":0,"ask_quantity":1"#)), RejectReason::BadPrice);
        assert_eq!(
            reason(&kind("trade", r#","buyer":"A","seller":"B","price":"1.2.3","quantity":1"#)),
            RejectReason::BadPrice
        );
    }

    #[test]
    fn arbitrary_input_never_panics() {
        for junk in [
            "{",
            "}",
            "{}",
            "{\"",
            "{\"kind\":",
            "{\"price\":\"\\u00",
            "\u{feff}{}",
            "{\"kind\":\"new\\u0000\"}",
            "\u{0}",
            "{\"a\":1e999999}",
        ] {
            assert!(parse(junk).is_err(), "{junk:?}");
        }
        assert!(!JsonlParser::default().is_header(b"{\"kind\":\"new\"}"));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_lines_never_panic(
            line in r#"\{("(event_time|kind|instrument|price|quantity|side|account|order_id|status|bid_price|bid_quantity|hidden|seq|buyer|seller|aggressor)":("[^"]{0,8}"|-?[0-9.e]{1,8}|null|true|\[\]|\{\}|"(new|fill|trade|quote|status|cancel|replace|buy|halted)"),?){0,10}\}?"#,
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80),
        ) {
            let _ = parse(&line);
            let reference = ReferenceData::new(4);
            let (mut side, mut announced, mut out) = (Vec::new(), IdMap::default(), Vec::new());
            let mut ctx = ParseContext::new(&reference, &mut side, &mut announced);
            let line = Line { bytes: &bytes, origin: Origin::default(), companion: None };
            let _ = JsonlParser::new().parse(&line, &mut ctx, &mut out);
        }
    }
}
