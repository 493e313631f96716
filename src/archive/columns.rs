//! The archive's tables as Arrow columns: what a row of each holds, and the way back from a
//! row to the event or dead letter it was.
//!
//! Names (instruments, accounts, order ids) are written as text, never as the 64-bit ids the
//! dataflow uses, so that any Parquet reader can query the archive; a replay turns the text
//! back into the same ids. Prices are the integer in `10^-price_scale` units that the run
//! used, with the scale beside it: exact, and the same integer on replay.

use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, TimestampNanosecondBuilder, UInt8Builder,
    UInt32Builder, UInt64Builder,
};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampNanosecondType, UInt8Type, UInt32Type, UInt64Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::model::{
    Body, CancelReason, DeadLetter, Event, Level, Origin, Party, Price, RejectReason, Side, Symbol, SymbolTable,
    TradingStatus,
};
use crate::reference::ReferenceData;

fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

/// The columns of `events` and `late_events`, in order.
pub fn event_schema() -> SchemaRef {
    let text = |name: &str| Field::new(name, DataType::Utf8, true);
    Arc::new(Schema::new(vec![
        Field::new("time", timestamp(), false),
        Field::new("source", DataType::UInt32, false),
        Field::new("offset", DataType::UInt64, false),
        Field::new("seq", DataType::UInt64, false),
        Field::new("kind", DataType::Utf8, false),
        text("instrument"),
        text("venue"),
        text("account"),
        text("trader"),
        text("desk"),
        text("owner"),
        text("order"),
        text("side"),
        Field::new("price", DataType::Int64, true),
        Field::new("price_scale", DataType::UInt8, false),
        Field::new("quantity", DataType::UInt64, true),
        text("aggressor"),
        Field::new("hidden", DataType::Boolean, true),
        text("cancel_reason"),
        text("status"),
        text("buyer_account"),
        text("buyer_owner"),
        text("buyer_order"),
        text("seller_account"),
        text("seller_owner"),
        text("seller_order"),
        Field::new("bid_price", DataType::Int64, true),
        Field::new("bid_quantity", DataType::UInt64, true),
        Field::new("ask_price", DataType::Int64, true),
        Field::new("ask_quantity", DataType::UInt64, true),
        // Last, so that archives written before it read as they were (all shown).
        Field::new("displayed_quantity", DataType::UInt64, true),
    ]))
}

/// The columns of `dead_letters`: `time` is the watermark when the record was refused (a
/// record that could not be read has no event time of its own).
pub fn dead_letter_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("time", timestamp(), false),
        Field::new("source", DataType::UInt32, false),
        Field::new("line", DataType::UInt64, true),
        Field::new("offset", DataType::UInt64, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("detail", DataType::Utf8, false),
        Field::new("raw", DataType::Utf8, false),
    ]))
}

/// The columns of `alerts`: the fields people filter on, and the alert as `alerts.jsonl`
/// has it.
pub fn alert_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("time", timestamp(), false),
        Field::new("id", DataType::Utf8, false),
        Field::new("rule", DataType::Utf8, false),
        Field::new("instrument", DataType::Utf8, true),
        Field::new("account", DataType::Utf8, true),
        Field::new("tier", DataType::Utf8, true),
        Field::new("score", DataType::Float64, true),
        Field::new("json", DataType::Utf8, false),
    ]))
}

/// A dead letter and the watermark it was refused at.
#[derive(Clone, Debug, PartialEq)]
pub struct DeadLetterRow {
    /// The watermark (ns) when it was refused.
    pub time: u64,
    /// The letter.
    pub letter: DeadLetter,
}

/// An alert as the archive keeps it.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertRow {
    /// Event time of the alert (ns).
    pub time: u64,
    /// Its deterministic id.
    pub id: String,
    /// The rule that raised it.
    pub rule: String,
    /// Its instrument, if any.
    pub instrument: Option<String>,
    /// Its account, if any.
    pub account: Option<String>,
    /// The alert manager's tier, if it ran.
    pub tier: Option<String>,
    /// The score.
    pub score: Option<f64>,
    /// The alert as `alerts.jsonl` has it.
    pub json: String,
}

/// What a table's rows need to become columns: the names of hashed symbols, the price scales.
pub struct RowContext<'a> {
    /// Names of symbols that need a dictionary.
    pub names: &'a SymbolTable,
    /// Price scales of instruments.
    pub reference: &'a ReferenceData,
}

/// A row type of the archive.
pub trait ArchiveRow: Clone + 'static {
    /// The table's columns.
    fn schema() -> SchemaRef;
    /// The rows as one batch of columns.
    fn batch(rows: &[Self], context: &RowContext<'_>) -> Result<RecordBatch, arrow_schema::ArrowError>;
}

struct Names<'a> {
    names: &'a SymbolTable,
    scratch: String,
}

impl Names<'_> {
    fn put(&mut self, builder: &mut StringBuilder, symbol: Symbol) {
        if symbol.is_none() {
            builder.append_null();
        } else {
            self.scratch.clear();
            self.names.write_name(symbol, &mut self.scratch);
            builder.append_value(&self.scratch);
        }
    }
}

/// The body's side, price, quantity, aggressor, hidden flag, cancel reason and status.
type BodyColumns =
    (Option<Side>, Option<Price>, Option<u64>, Option<Side>, Option<bool>, Option<CancelReason>, Option<TradingStatus>);

fn side_name(side: Option<Side>) -> Option<&'static str> {
    side.map(Side::as_str)
}

fn status_name(status: TradingStatus) -> &'static str {
    match status {
        TradingStatus::Halted => "halted",
        TradingStatus::QuotingOnly => "quoting_only",
        TradingStatus::Trading => "trading",
    }
}

fn parse_status(text: &str) -> Option<TradingStatus> {
    match text {
        "halted" => Some(TradingStatus::Halted),
        "quoting_only" => Some(TradingStatus::QuotingOnly),
        "trading" => Some(TradingStatus::Trading),
        _ => None,
    }
}

impl ArchiveRow for Event {
    fn schema() -> SchemaRef {
        event_schema()
    }

    fn batch(rows: &[Event], context: &RowContext<'_>) -> Result<RecordBatch, arrow_schema::ArrowError> {
        let n = rows.len();
        let mut names = Names { names: context.names, scratch: String::new() };
        let mut time = TimestampNanosecondBuilder::with_capacity(n).with_timezone("UTC");
        let mut source = UInt32Builder::with_capacity(n);
        let mut offset = UInt64Builder::with_capacity(n);
        let mut seq = UInt64Builder::with_capacity(n);
        let mut kind = StringBuilder::with_capacity(n, n * 6);
        let mut text: Vec<StringBuilder> = (0..7).map(|_| StringBuilder::with_capacity(n, n * 8)).collect();
        let mut side = StringBuilder::with_capacity(n, n * 4);
        let mut price = Int64Builder::with_capacity(n);
        let mut scale = UInt8Builder::with_capacity(n);
        let mut quantity = UInt64Builder::with_capacity(n);
        let mut aggressor = StringBuilder::new();
        let mut hidden = BooleanBuilder::with_capacity(n);
        let mut cancel_reason = StringBuilder::new();
        let mut status = StringBuilder::new();
        let mut parties: Vec<StringBuilder> = (0..6).map(|_| StringBuilder::new()).collect();
        let mut levels: Vec<(Int64Builder, UInt64Builder)> =
            (0..2).map(|_| (Int64Builder::with_capacity(n), UInt64Builder::with_capacity(n))).collect();
        let mut displayed_quantity = UInt64Builder::with_capacity(n);
        for event in rows {
            displayed_quantity.append_option(match event.body {
                Body::NewOrder { displayed, .. } | Body::Replace { displayed, .. } => displayed,
                _ => None,
            });
            time.append_value(i64::try_from(event.time).unwrap_or(i64::MAX));
            source.append_value(event.origin.source());
            offset.append_value(event.origin.offset());
            seq.append_value(event.seq);
            kind.append_value(event.kind().as_str());
            for (builder, symbol) in text.iter_mut().zip([
                event.instrument,
                event.venue,
                event.account,
                event.trader,
                event.desk,
                event.owner,
            ]) {
                names.put(builder, symbol);
            }
            match event.order() {
                Some(order) => names.put(&mut text[6], order),
                None => text[6].append_null(),
            }
            scale.append_value(context.reference.price_scale(event.instrument));
            let (s, p, q, a, h, r, st): BodyColumns = match event.body {
                Body::NewOrder { side, price, quantity, .. } => {
                    (Some(side), price, Some(quantity), None, None, None, None)
                }
                Body::Replace { side, price, quantity, .. } => (side, price, Some(quantity), None, None, None, None),
                Body::Cancel { side, price, quantity, reason, .. } => {
                    (side, price, quantity, None, None, Some(reason), None)
                }
                Body::Fill { side, price, quantity, aggressor, hidden, .. } => {
                    (Some(side), Some(price), Some(quantity), aggressor, Some(hidden), None, None)
                }
                Body::Trade { price, quantity, aggressor, .. } => {
                    (None, Some(price), Some(quantity), aggressor, None, None, None)
                }
                Body::Quote { .. } => (None, None, None, None, None, None, None),
                Body::Status { status } => (None, None, None, None, None, None, Some(status)),
            };
            side.append_option(side_name(s));
            price.append_option(p.map(|p| p.0));
            quantity.append_option(q);
            aggressor.append_option(side_name(a));
            hidden.append_option(h);
            cancel_reason.append_option(r.map(CancelReason::as_str));
            status.append_option(st.map(status_name));
            match event.body {
                Body::Trade { buyer, seller, .. } => {
                    for (builder, symbol) in parties.iter_mut().zip([
                        buyer.account,
                        buyer.owner,
                        buyer.order,
                        seller.account,
                        seller.owner,
                        seller.order,
                    ]) {
                        names.put(builder, symbol);
                    }
                }
                _ => parties.iter_mut().for_each(|b| b.append_null()),
            }
            let (bid, ask) = match event.body {
                Body::Quote { bid, ask } => (bid, ask),
                _ => (None, None),
            };
            for ((prices, quantities), level) in levels.iter_mut().zip([bid, ask]) {
                prices.append_option(level.map(|l| l.price.0));
                quantities.append_option(level.map(|l| l.quantity));
            }
        }
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(time.finish()),
            Arc::new(source.finish()),
            Arc::new(offset.finish()),
            Arc::new(seq.finish()),
            Arc::new(kind.finish()),
        ];
        columns.extend(text.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        columns.push(Arc::new(side.finish()));
        columns.push(Arc::new(price.finish()));
        columns.push(Arc::new(scale.finish()));
        columns.push(Arc::new(quantity.finish()));
        columns.push(Arc::new(aggressor.finish()));
        columns.push(Arc::new(hidden.finish()));
        columns.push(Arc::new(cancel_reason.finish()));
        columns.push(Arc::new(status.finish()));
        columns.extend(parties.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        for (prices, quantities) in levels.iter_mut() {
            columns.push(Arc::new(prices.finish()));
            columns.push(Arc::new(quantities.finish()));
        }
        columns.push(Arc::new(displayed_quantity.finish()));
        RecordBatch::try_new(event_schema(), columns)
    }
}

impl ArchiveRow for DeadLetterRow {
    fn schema() -> SchemaRef {
        dead_letter_schema()
    }

    fn batch(rows: &[DeadLetterRow], _: &RowContext<'_>) -> Result<RecordBatch, arrow_schema::ArrowError> {
        let mut time = TimestampNanosecondBuilder::with_capacity(rows.len()).with_timezone("UTC");
        let mut source = UInt32Builder::new();
        let mut line = UInt64Builder::new();
        let mut offset = UInt64Builder::new();
        let mut reason = StringBuilder::new();
        let mut detail = StringBuilder::new();
        let mut raw = StringBuilder::new();
        for row in rows {
            time.append_value(i64::try_from(row.time).unwrap_or(i64::MAX));
            source.append_value(row.letter.source);
            line.append_option(row.letter.line);
            offset.append_value(row.letter.offset);
            reason.append_value(row.letter.reason.as_str());
            detail.append_value(&row.letter.detail);
            raw.append_value(&row.letter.raw);
        }
        RecordBatch::try_new(
            dead_letter_schema(),
            vec![
                Arc::new(time.finish()),
                Arc::new(source.finish()),
                Arc::new(line.finish()),
                Arc::new(offset.finish()),
                Arc::new(reason.finish()),
                Arc::new(detail.finish()),
                Arc::new(raw.finish()),
            ],
        )
    }
}

impl ArchiveRow for AlertRow {
    fn schema() -> SchemaRef {
        alert_schema()
    }

    fn batch(rows: &[AlertRow], _: &RowContext<'_>) -> Result<RecordBatch, arrow_schema::ArrowError> {
        let mut time = TimestampNanosecondBuilder::with_capacity(rows.len()).with_timezone("UTC");
        let mut id = StringBuilder::new();
        let mut rule = StringBuilder::new();
        let mut instrument = StringBuilder::new();
        let mut account = StringBuilder::new();
        let mut tier = StringBuilder::new();
        let mut score = Float64Builder::new();
        let mut json = StringBuilder::new();
        for row in rows {
            time.append_value(i64::try_from(row.time).unwrap_or(i64::MAX));
            id.append_value(&row.id);
            rule.append_value(&row.rule);
            instrument.append_option(row.instrument.as_deref());
            account.append_option(row.account.as_deref());
            tier.append_option(row.tier.as_deref());
            score.append_option(row.score);
            json.append_value(&row.json);
        }
        RecordBatch::try_new(
            alert_schema(),
            vec![
                Arc::new(time.finish()),
                Arc::new(id.finish()),
                Arc::new(rule.finish()),
                Arc::new(instrument.finish()),
                Arc::new(account.finish()),
                Arc::new(tier.finish()),
                Arc::new(score.finish()),
                Arc::new(json.finish()),
            ],
        )
    }
}

/// Why a stored row cannot be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("row {row}: {message}")]
pub struct RowError {
    /// The row in its batch.
    pub row: usize,
    /// What is wrong.
    pub message: String,
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef, RowError> {
    batch
        .column_by_name(name)
        .ok_or_else(|| RowError { row: 0, message: format!("no column {name:?}: not a surveil archive table") })
}

fn wrong_type(name: &str) -> RowError {
    RowError { row: 0, message: format!("column {name:?} has the wrong type") }
}

macro_rules! typed {
    ($batch:expr, $name:expr, $method:ident) => {
        column($batch, $name)?.$method().ok_or_else(|| wrong_type($name))?
    };
    ($batch:expr, $name:expr, $method:ident :: <$t:ty>) => {
        column($batch, $name)?.$method::<$t>().ok_or_else(|| wrong_type($name))?
    };
}

/// Reads the events of a batch of `events` or `late_events`, appending them to `out`; names
/// that need a dictionary are also appended to `names` (as a replay announces them). With
/// `reference`, a row whose `price_scale` is not the scale the reference data gives its
/// instrument is an error: its prices would be read wrong by a power of ten.
pub fn events_of(
    batch: &RecordBatch,
    out: &mut Vec<Event>,
    names: &mut Vec<(Symbol, String)>,
    reference: Option<&ReferenceData>,
) -> Result<(), RowError> {
    let time = typed!(batch, "time", as_primitive_opt::<TimestampNanosecondType>);
    let source = typed!(batch, "source", as_primitive_opt::<UInt32Type>);
    let offset = typed!(batch, "offset", as_primitive_opt::<UInt64Type>);
    let seq = typed!(batch, "seq", as_primitive_opt::<UInt64Type>);
    let kind = typed!(batch, "kind", as_string_opt::<i32>);
    let text = |name: &str| -> Result<_, RowError> { Ok(typed!(batch, name, as_string_opt::<i32>)) };
    let [instrument, venue, account, trader, desk, owner, order, side, aggressor, cancel_reason, status] = [
        "instrument",
        "venue",
        "account",
        "trader",
        "desk",
        "owner",
        "order",
        "side",
        "aggressor",
        "cancel_reason",
        "status",
    ]
    .map(text);
    let [buyer_account, buyer_owner, buyer_order, seller_account, seller_owner, seller_order] =
        ["buyer_account", "buyer_owner", "buyer_order", "seller_account", "seller_owner", "seller_order"].map(text);
    let (instrument, venue, account, trader, desk, owner, order, side, aggressor, cancel_reason, status) =
        (instrument?, venue?, account?, trader?, desk?, owner?, order?, side?, aggressor?, cancel_reason?, status?);
    let parties = [buyer_account?, buyer_owner?, buyer_order?, seller_account?, seller_owner?, seller_order?];
    let price = typed!(batch, "price", as_primitive_opt::<Int64Type>);
    let quantity = typed!(batch, "quantity", as_primitive_opt::<UInt64Type>);
    let hidden = typed!(batch, "hidden", as_boolean_opt);
    let bid_price = typed!(batch, "bid_price", as_primitive_opt::<Int64Type>);
    let bid_quantity = typed!(batch, "bid_quantity", as_primitive_opt::<UInt64Type>);
    let ask_price = typed!(batch, "ask_price", as_primitive_opt::<Int64Type>);
    let ask_quantity = typed!(batch, "ask_quantity", as_primitive_opt::<UInt64Type>);
    let price_scale = typed!(batch, "price_scale", as_primitive_opt::<UInt8Type>);
    // Absent from archives written before reserve orders were kept.
    let displayed_quantity = match batch.column_by_name("displayed_quantity") {
        Some(column) => Some(column.as_primitive_opt::<UInt64Type>().ok_or_else(|| wrong_type("displayed_quantity"))?),
        None => None,
    };
    let mut symbol = |column: &arrow_array::StringArray, row: usize| -> Symbol {
        if column.is_null(row) {
            return Symbol::NONE;
        }
        let text = column.value(row);
        let symbol = Symbol::of(text.as_bytes());
        if symbol.needs_dictionary() {
            names.push((symbol, text.to_string()));
        }
        symbol
    };
    for row in 0..batch.num_rows() {
        let fail = |message: String| RowError { row, message };
        let opt_side = |column: &arrow_array::StringArray| -> Result<Option<Side>, RowError> {
            if column.is_null(row) {
                return Ok(None);
            }
            Side::parse(column.value(row).as_bytes())
                .map(Some)
                .ok_or_else(|| fail(format!("side {:?}", column.value(row))))
        };
        let opt_price = |column: &arrow_array::Int64Array| (!column.is_null(row)).then(|| Price(column.value(row)));
        let opt_u64 = |column: &arrow_array::UInt64Array| (!column.is_null(row)).then(|| column.value(row));
        let time_value = u64::try_from(time.value(row)).map_err(|_| fail("a time before 1970".into()))?;
        let order_symbol = symbol(order, row);
        let kind_text = kind.value(row);
        let body = match kind_text {
            "new" => Body::NewOrder {
                order: order_symbol,
                side: opt_side(side)?.ok_or_else(|| fail("a new order without a side".into()))?,
                price: opt_price(price),
                quantity: opt_u64(quantity).ok_or_else(|| fail("a new order without a quantity".into()))?,
                displayed: displayed_quantity.and_then(opt_u64),
            },
            "replace" => Body::Replace {
                order: order_symbol,
                side: opt_side(side)?,
                price: opt_price(price),
                quantity: opt_u64(quantity).ok_or_else(|| fail("a replace without a quantity".into()))?,
                displayed: displayed_quantity.and_then(opt_u64),
            },
            "cancel" => Body::Cancel {
                order: order_symbol,
                side: opt_side(side)?,
                price: opt_price(price),
                quantity: opt_u64(quantity),
                reason: if cancel_reason.is_null(row) {
                    CancelReason::Member
                } else {
                    CancelReason::parse(cancel_reason.value(row).as_bytes())
                        .ok_or_else(|| fail(format!("cancel_reason {:?}", cancel_reason.value(row))))?
                },
            },
            "fill" => Body::Fill {
                order: order_symbol,
                side: opt_side(side)?.ok_or_else(|| fail("a fill without a side".into()))?,
                price: opt_price(price).ok_or_else(|| fail("a fill without a price".into()))?,
                quantity: opt_u64(quantity).ok_or_else(|| fail("a fill without a quantity".into()))?,
                aggressor: opt_side(aggressor)?,
                hidden: !hidden.is_null(row) && hidden.value(row),
            },
            "trade" => {
                let [ba, bo, bord, sa, so, sord] = [0, 1, 2, 3, 4, 5].map(|i| symbol(parties[i], row));
                Body::Trade {
                    buyer: Party { account: ba, owner: bo, order: bord },
                    seller: Party { account: sa, owner: so, order: sord },
                    price: opt_price(price).ok_or_else(|| fail("a trade without a price".into()))?,
                    quantity: opt_u64(quantity).ok_or_else(|| fail("a trade without a quantity".into()))?,
                    aggressor: opt_side(aggressor)?,
                    linked: None,
                }
            }
            "quote" => {
                let level = |p: &arrow_array::Int64Array, q: &arrow_array::UInt64Array| {
                    (!p.is_null(row) && !q.is_null(row))
                        .then(|| Level { price: Price(p.value(row)), quantity: q.value(row) })
                };
                Body::Quote { bid: level(bid_price, bid_quantity), ask: level(ask_price, ask_quantity) }
            }
            "status" => Body::Status {
                status: (!status.is_null(row))
                    .then(|| parse_status(status.value(row)))
                    .flatten()
                    .ok_or_else(|| fail("a status event without a known status".into()))?,
            },
            other => return Err(fail(format!("kind {other:?}"))),
        };
        let instrument = symbol(instrument, row);
        if let Some(reference) = reference {
            let (archived, now) = (price_scale.value(row), reference.price_scale(instrument));
            if archived != now {
                return Err(fail(format!(
                    "prices were archived at scale {archived} and the reference data now gives scale {now}: \
                     replay with the reference data the archive was written with"
                )));
            }
        }
        out.push(Event {
            time: time_value,
            origin: Origin::new(source.value(row), offset.value(row)),
            seq: seq.value(row),
            instrument,
            venue: symbol(venue, row),
            account: symbol(account, row),
            trader: symbol(trader, row),
            desk: symbol(desk, row),
            owner: symbol(owner, row),
            body,
        });
    }
    Ok(())
}

/// Reads the dead letters of a batch of `dead_letters`.
pub fn dead_letters_of(batch: &RecordBatch, out: &mut Vec<DeadLetterRow>) -> Result<(), RowError> {
    let time = typed!(batch, "time", as_primitive_opt::<TimestampNanosecondType>);
    let source = typed!(batch, "source", as_primitive_opt::<UInt32Type>);
    let line = typed!(batch, "line", as_primitive_opt::<UInt64Type>);
    let offset = typed!(batch, "offset", as_primitive_opt::<UInt64Type>);
    let reason = typed!(batch, "reason", as_string_opt::<i32>);
    let detail = typed!(batch, "detail", as_string_opt::<i32>);
    let raw = typed!(batch, "raw", as_string_opt::<i32>);
    for row in 0..batch.num_rows() {
        let reason_text = reason.value(row);
        let reason = RejectReason::parse(reason_text)
            .ok_or_else(|| RowError { row, message: format!("reason {reason_text:?}") })?;
        out.push(DeadLetterRow {
            time: u64::try_from(time.value(row)).unwrap_or(0),
            letter: DeadLetter {
                source: source.value(row),
                line: (!line.is_null(row)).then(|| line.value(row)),
                offset: offset.value(row),
                raw: raw.value(row).to_string(),
                reason,
                detail: detail.value(row).to_string(),
                event: None,
            },
        });
    }
    Ok(())
}

/// Reads the alerts of a batch of `alerts`.
pub fn alerts_of(batch: &RecordBatch, out: &mut Vec<AlertRow>) -> Result<(), RowError> {
    let time = typed!(batch, "time", as_primitive_opt::<TimestampNanosecondType>);
    let id = typed!(batch, "id", as_string_opt::<i32>);
    let rule = typed!(batch, "rule", as_string_opt::<i32>);
    let instrument = typed!(batch, "instrument", as_string_opt::<i32>);
    let account = typed!(batch, "account", as_string_opt::<i32>);
    let tier = typed!(batch, "tier", as_string_opt::<i32>);
    let score = typed!(batch, "score", as_primitive_opt::<Float64Type>);
    let json = typed!(batch, "json", as_string_opt::<i32>);
    let text =
        |column: &arrow_array::StringArray, row: usize| (!column.is_null(row)).then(|| column.value(row).to_string());
    for row in 0..batch.num_rows() {
        out.push(AlertRow {
            time: u64::try_from(time.value(row)).unwrap_or(0),
            id: id.value(row).to_string(),
            rule: rule.value(row).to_string(),
            instrument: text(instrument, row),
            account: text(account, row),
            tier: text(tier, row),
            score: (!score.is_null(row)).then(|| score.value(row)),
            json: json.value(row).to_string(),
        });
    }
    Ok(())
}
