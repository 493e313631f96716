//! Output: alerts, dead letters, late events and order-to-trade values as JSON Lines.
//!
//! All reports travel to worker 0, which writes each batch once the watermark has passed it,
//! after applying the dictionary entries of that batch, so every name can be shown. Alerts
//! are written in `(event time, id)` order, which makes `alerts.jsonl` identical (apart from
//! the `detected_at` wall-clock field) on any number of workers.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value as Json, json};

pub use crate::audit::AUDIT;
use crate::audit::AuditLog;

use crate::ingest::DeadLetter;
use crate::ingest::lines::{LineIndex, is_gzip};
use crate::ingest::time::format_time;
use crate::model::RatioReport;
use crate::model::Report;
use crate::model::alert::{Alert, Value};
use crate::model::{AlertGroup, Body, CaseRecord, Event, Symbol, SymbolTable, TriagedAlert};
use crate::reference::ReferenceData;

/// File names in the output folder.
pub const ALERTS: &str = "alerts.jsonl";
/// Dead letters.
pub const DEAD_LETTERS: &str = "dead_letters.jsonl";
/// Late events.
pub const LATE: &str = "late_events.jsonl";
/// Order-to-trade values.
pub const RATIOS: &str = "order_to_trade.jsonl";
/// Case versions.
pub const CASES: &str = "cases.jsonl";
/// Points the time-series database did not take (line protocol), when one is configured.
pub const TIMESERIES_UNWRITTEN: &str = "timeseries_unwritten.lp";
/// Run summary.
pub const SUMMARY: &str = "summary.json";

/// Shows events and values with names, prices at their scale and input file names.
pub struct Renderer {
    /// Symbol texts.
    pub names: SymbolTable,
    reference: Arc<ReferenceData>,
    sources: Vec<String>,
    /// Line numbers of plain input files, for the dead letters judged after routing (away from
    /// the file); `None` for an input that is not a plain file (gzip, or not a path at all).
    line_indexes: RefCell<HashMap<u32, Option<LineIndex>>>,
}

impl Renderer {
    /// A renderer for the given inputs (by index).
    pub fn new(reference: Arc<ReferenceData>, sources: Vec<String>) -> Renderer {
        let mut names = SymbolTable::default();
        // Names from the reference files, so that hashed names show even if unseen in data.
        names.clone_from(&reference.names);
        Renderer { names, reference, sources, line_indexes: RefCell::default() }
    }

    fn name(&self, symbol: Symbol) -> Json {
        if symbol.is_none() { Json::Null } else { Json::String(self.names.name(symbol).into_owned()) }
    }

    fn price(&self, instrument: Symbol, price: crate::model::Price) -> Json {
        Json::String(self.reference.price(instrument, price).to_string())
    }

    /// An event as a JSON object with the canonical field names plus its source and offset.
    pub fn event(&self, event: &Event) -> Json {
        let mut m = Map::new();
        m.insert("event_time".into(), json!(format_time(event.time)));
        m.insert("event_time_ns".into(), json!(event.time));
        m.insert("kind".into(), json!(event.kind().as_str()));
        m.insert("instrument".into(), self.name(event.instrument));
        let mut put = |key: &str, value: Json| {
            if !value.is_null() {
                m.insert(key.into(), value);
            }
        };
        put("venue", self.name(event.venue));
        put("account", self.name(event.account));
        put("trader", self.name(event.trader));
        put("desk", self.name(event.desk));
        put("owner", self.name(event.owner));
        if event.seq != 0 {
            put("seq", json!(event.seq));
        }
        let side = |s: Option<crate::model::Side>| s.map_or(Json::Null, |s| json!(s.as_str()));
        match event.body {
            Body::NewOrder { order, side: s, price, quantity, displayed } => {
                put("order_id", self.name(order));
                put("side", json!(s.as_str()));
                put("price", price.map_or(Json::Null, |p| self.price(event.instrument, p)));
                put("quantity", json!(quantity));
                if let Some(displayed) = displayed {
                    put("displayed_quantity", json!(displayed));
                }
            }
            Body::Replace { order, side: s, price, quantity, displayed } => {
                put("order_id", self.name(order));
                put("side", side(s));
                put("price", price.map_or(Json::Null, |p| self.price(event.instrument, p)));
                put("quantity", json!(quantity));
                if let Some(displayed) = displayed {
                    put("displayed_quantity", json!(displayed));
                }
            }
            Body::Cancel { order, side: s, price, quantity, reason } => {
                put("order_id", self.name(order));
                put("side", side(s));
                put("price", price.map_or(Json::Null, |p| self.price(event.instrument, p)));
                put("quantity", quantity.map_or(Json::Null, |q| json!(q)));
                if reason != crate::model::CancelReason::Member {
                    put("cancel_reason", json!(reason.as_str()));
                }
            }
            Body::Fill { order, side: s, price, quantity, aggressor, hidden } => {
                put("order_id", self.name(order));
                put("side", json!(s.as_str()));
                put("price", self.price(event.instrument, price));
                put("quantity", json!(quantity));
                put("aggressor", side(aggressor));
                if hidden {
                    put("hidden", json!(true));
                }
            }
            Body::Trade { buyer, seller, price, quantity, aggressor, .. } => {
                put("buyer", self.name(buyer.account));
                put("seller", self.name(seller.account));
                put("buyer_owner", self.name(buyer.owner));
                put("seller_owner", self.name(seller.owner));
                put("buy_order", self.name(buyer.order));
                put("sell_order", self.name(seller.order));
                put("price", self.price(event.instrument, price));
                put("quantity", json!(quantity));
                put("aggressor", side(aggressor));
            }
            Body::Quote { bid, ask } => {
                if let Some(b) = bid {
                    put("bid_price", self.price(event.instrument, b.price));
                    put("bid_quantity", json!(b.quantity));
                }
                if let Some(a) = ask {
                    put("ask_price", self.price(event.instrument, a.price));
                    put("ask_quantity", json!(a.quantity));
                }
            }
            Body::Status { status } => put("status", json!(status)),
        }
        put("source", self.source(event.origin.source()));
        put("offset", json!(event.origin.offset()));
        Json::Object(m)
    }

    fn source(&self, index: u32) -> Json {
        self.sources.get(index as usize).map_or(json!(index), |s| json!(s))
    }

    fn value(&self, value: &Value) -> Json {
        match value {
            Value::Count(n) => json!(n),
            Value::Decimal(d) => json!(d.to_string()),
            Value::Ratio(r) if r.is_finite() => json!(r),
            Value::Ratio(_) => Json::Null,
            Value::Text(t) => json!(t),
            Value::Name(s) => self.name(*s),
            Value::Features(list) => Json::Array(
                list.iter()
                    .map(|f| {
                        let number = |v: Option<f64>| v.filter(|v| v.is_finite()).map_or(Json::Null, |v| json!(v));
                        json!({
                            "feature": f.feature,
                            "value": number(Some(f.value)),
                            "z_own": number(f.z_own),
                            "own_mean": number(f.own_mean),
                            "z_peers": number(f.z_peers),
                            "peer_mean": number(f.peer_mean),
                            "forest_contribution": number(f.forest_contribution),
                        })
                    })
                    .collect(),
            ),
        }
    }

    /// A symbol's text, empty for none (for CSV).
    pub fn name_text(&self, symbol: Symbol) -> String {
        if symbol.is_none() { String::new() } else { self.names.name(symbol).into_owned() }
    }

    /// An alert as a JSON object.
    pub fn alert(&self, alert: &Alert) -> Json {
        let parameters: Map<String, Json> =
            alert.parameters.iter().map(|p| (p.name.clone(), self.value(&p.value))).collect();
        let mut json = json!({
            "id": alert.id.to_string(),
            "rule": alert.rule.as_str(),
            "severity": alert.severity.as_str(),
            "score": alert.score,
            "event_time": format_time(alert.time),
            "event_time_ns": alert.time,
            "detected_at": format_time(alert.detected_at),
            "instrument": self.name(alert.instrument),
            "account": self.name(alert.account),
            "explanation": alert.explanation,
            "parameters": parameters,
            "evidence": alert.evidence.iter().map(|e| self.event(e)).collect::<Vec<_>>(),
        });
        if let (Some(c), Json::Object(fields)) = (&alert.correction, &mut json) {
            fields.insert(
                "correction".into(),
                json!({
                    "kind": c.kind.as_str(),
                    "raised_at": format_time(c.raised_at),
                    "raised_at_ns": c.raised_at,
                    "raised_score": c.raised_score,
                    "reason": c.reason,
                }),
            );
        }
        json
    }

    /// A triaged alert: the alert with its tier, desk and group, and the names of the routes it
    /// was sent on.
    pub fn triaged(&self, triaged: &TriagedAlert, route_names: &[String]) -> Json {
        let mut json = self.alert(&triaged.alert);
        if let Json::Object(fields) = &mut json {
            fields.insert("tier".into(), Json::from(triaged.tier.as_str()));
            fields.insert("desk".into(), self.name(triaged.desk));
            if !triaged.firm.is_none() {
                fields.insert("firm".into(), self.name(triaged.firm));
            }
            fields.insert("group".into(), Json::from(triaged.group.to_string()));
            fields.insert("sent_to".into(), route_list(triaged.routes, route_names));
            if let Some(prior) = triaged.prior_tier {
                fields.insert("prior_tier".into(), Json::from(prior.as_str()));
            }
        }
        json
    }

    /// A group of repeats, with the names of the routes its summary was sent on.
    pub fn group(&self, group: &AlertGroup, route_names: &[String]) -> Json {
        let occurrences: Vec<Json> = group
            .occurrences
            .iter()
            .map(|o| {
                json!({
                    "id": o.id.to_string(),
                    "event_time": format_time(o.time),
                    "score": o.score,
                    "tier": o.tier.as_str(),
                    "retracted": o.retracted,
                })
            })
            .collect();
        json!({
            "group": group.id.to_string(),
            "rule": group.rule.as_str(),
            "tier": group.tier.as_str(),
            "max_score": group.max_score,
            "count": group.count,
            "instrument": self.name(group.instrument),
            "account": self.name(group.account),
            "desk": self.name(group.desk),
            "first_time": format_time(group.first_time),
            "last_time": format_time(group.last_time),
            "horizon_end": format_time(group.horizon_end),
            "occurrences": occurrences,
            "truncated": group.truncated,
            "corrections": group.corrections,
            "retracted": group.retracted,
            "sent_to": route_list(group.routes, route_names),
        })
    }

    /// A version of a case, with the names of the routes it was sent on.
    pub fn case(&self, case: &CaseRecord, route_names: &[String]) -> Json {
        json!({
            "case": case.case.to_string(),
            "version": case.version,
            "time": format_time(case.time),
            "change": case.change.as_str(),
            "by": case.by,
            "reason": case.reason,
            "state": case.state.as_str(),
            "prior_state": case.prior_state.map(|s| s.as_str()),
            "tier": case.tier.as_str(),
            "prior_tier": case.prior_tier.map(|t| t.as_str()),
            "assignee": case.assignee,
            "disposition": case.disposition.map(|d| d.as_str()),
            "receipt": case.receipt.as_ref().map(|(receipt, _)| receipt),
            "report_sha256": case.receipt.as_ref().map(|(_, report)| report),
            "deadline": case.deadline.map(format_time),
            "escalations": case.escalations,
            "late": case.late,
            "alert": case.alert.to_string(),
            "rule": case.rule,
            "instrument": self.name(case.instrument),
            "account": self.name(case.account),
            "desk": self.name(case.desk),
            "sent_to": route_list(case.routes, route_names),
        })
    }

    /// The 1-based line of `offset` in input `source`, when the input is a plain file.
    fn line_of(&self, source: u32, offset: u64) -> Option<u64> {
        self.with_index(source, |index| index.line_at(offset).ok())
    }

    /// The line at `offset` of input `source` as it is in the file, when the input is a plain file.
    fn text_of(&self, source: u32, offset: u64) -> Option<String> {
        self.with_index(source, |index| {
            index.text_at(offset).ok().flatten().map(|text| String::from_utf8_lossy(text).into_owned())
        })
    }

    fn with_index<T>(&self, source: u32, f: impl FnOnce(&mut LineIndex) -> Option<T>) -> Option<T> {
        let mut indexes = self.line_indexes.borrow_mut();
        let index = indexes.entry(source).or_insert_with(|| {
            let path = Path::new(self.sources.get(source as usize)?);
            // Offsets of a gzipped input count decompressed bytes, which the file does not hold.
            (path.is_file() && matches!(is_gzip(path), Ok(false))).then(|| LineIndex::new(path))
        });
        f(index.as_mut()?)
    }

    /// A dead letter as a JSON object.
    pub fn dead_letter(&self, letter: &DeadLetter) -> Json {
        serde_json::to_value(self.dead_letter_line(letter)).unwrap_or(Json::Null)
    }

    /// A dead letter as its output line's fields. Letters judged away from the file
    /// (`unknown_order`) get their line here, from the byte offset, when the input is a plain
    /// file, and their raw text from the parsed event with its names.
    fn dead_letter_line<'a>(&'a self, letter: &'a DeadLetter) -> DeadLetterLine<'a> {
        let line = letter.line.or_else(|| self.line_of(letter.source, letter.offset));
        let (raw, detail) = match &letter.event {
            Some(event) if letter.raw.is_empty() => {
                // The line as it is in the file; a canonical CSV rewrite where the file cannot be
                // read at an offset (gzip).
                let raw = self
                    .text_of(letter.source, letter.offset)
                    .unwrap_or_else(|| crate::ingest::csv::write::line(event, &self.names, &self.reference));
                let detail = match memchr::memmem::find(
                    letter.detail.as_bytes(),
                    crate::model::dead_letter::ORDER_NAME.as_bytes(),
                ) {
                    Some(at) => {
                        let mut detail = String::with_capacity(letter.detail.len() + 16);
                        detail.push_str(&letter.detail[..at]);
                        if let Some(order) = event.order() {
                            self.names.write_name(order, &mut detail);
                        }
                        detail.push_str(&letter.detail[at + crate::model::dead_letter::ORDER_NAME.len()..]);
                        Cow::Owned(detail)
                    }
                    None => Cow::Borrowed(letter.detail.as_str()),
                };
                (Cow::Owned(raw), detail)
            }
            _ => (Cow::Borrowed(letter.raw.as_str()), Cow::Borrowed(letter.detail.as_str())),
        };
        let source = match self.sources.get(letter.source as usize) {
            Some(name) => SourceName::Name(name),
            None => SourceName::Index(letter.source),
        };
        DeadLetterLine { detail, line, offset: letter.offset, raw, reason: letter.reason.as_str(), source }
    }

    /// An order-to-trade value as a JSON object.
    pub fn ratio(&self, ratio: &RatioReport) -> Json {
        let c = &ratio.counts;
        json!({
            "account": self.name(ratio.account),
            "instrument": self.name(ratio.instrument),
            "session": ratio.session,
            "as_of": format_time(ratio.time),
            "final": ratio.r#final,
            "messages": c.messages,
            "transactions": c.transactions,
            "order_volume": c.order_volume,
            "transaction_volume": c.transaction_volume,
            "count_ratio": c.count_ratio(),
            "volume_ratio": c.volume_ratio(),
        })
    }
}

/// A dead letter's output line, fields in the file's (alphabetical) order, serialized
/// directly: a feed that goes bad writes many of these.
#[derive(serde::Serialize)]
struct DeadLetterLine<'a> {
    detail: Cow<'a, str>,
    line: Option<u64>,
    offset: u64,
    raw: Cow<'a, str>,
    reason: &'static str,
    source: SourceName<'a>,
}

/// An input's name, or its index when it has none.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum SourceName<'a> {
    Name(&'a str),
    Index(u32),
}

impl DeadLetterLine<'_> {
    /// The line as JSON with its line end, byte for byte what `serde_json` writes for it,
    /// without the serializer's per-byte escaping (a feed that goes bad writes millions).
    fn write_json(&self, out: &mut Vec<u8>) {
        let mut number = itoa::Buffer::new();
        out.extend_from_slice(b"{\"detail\":");
        write_json_str(out, &self.detail);
        out.extend_from_slice(b",\"line\":");
        match self.line {
            Some(line) => out.extend_from_slice(number.format(line).as_bytes()),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"offset\":");
        out.extend_from_slice(number.format(self.offset).as_bytes());
        out.extend_from_slice(b",\"raw\":");
        write_json_str(out, &self.raw);
        out.extend_from_slice(b",\"reason\":");
        write_json_str(out, self.reason);
        out.extend_from_slice(b",\"source\":");
        match self.source {
            SourceName::Name(name) => write_json_str(out, name),
            SourceName::Index(index) => out.extend_from_slice(number.format(index).as_bytes()),
        }
        out.extend_from_slice(b"}\n");
    }
}

/// Appends `text` as a JSON string, escaped as `serde_json` escapes it: runs of plain bytes
/// are copied whole.
fn write_json_str(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        // Eight bytes at a time while none needs escaping (SWAR: a byte below 0x20, a quote or
        // a backslash sets its high bit in `special`).
        if let Some(chunk) = bytes.get(i..i + 8) {
            let v = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
            const ONES: u64 = 0x0101_0101_0101_0101;
            const HIGH: u64 = 0x8080_8080_8080_8080;
            let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
            let special = (v.wrapping_sub(ONES * 0x20) & !v & HIGH)
                | zero(v ^ (ONES * b'"' as u64))
                | zero(v ^ (ONES * b'\\' as u64));
            if special == 0 {
                i += 8;
                continue;
            }
        }
        let b = bytes[i];
        i += 1;
        if b >= 0x20 && b != b'"' && b != b'\\' {
            continue;
        }
        let i = i - 1;
        out.extend_from_slice(&bytes[start..i]);
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 0xf) as usize]);
            }
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

fn route_list(routes: crate::model::Routes, names: &[String]) -> Json {
    Json::Array(routes.iter().filter_map(|i| names.get(i)).map(|n| Json::from(n.as_str())).collect())
}

/// The file of the route named `name`.
pub fn notice_file(name: &str) -> String {
    format!("{NOTICES_PREFIX}{name}.jsonl")
}

/// Route files are `notices_NAME.jsonl`.
pub const NOTICES_PREFIX: &str = "notices_";

/// A webhook route's outbox: every event with its delivery, `webhook_NAME.jsonl`.
pub const WEBHOOK_PREFIX: &str = "webhook_";

/// The outbox of the webhook of the route named `name`.
pub fn webhook_file(name: &str) -> String {
    format!("{WEBHOOK_PREFIX}{name}.jsonl")
}

/// Whether `name` is a file a run writes (a fixed name, a route's file or a webhook's outbox).
fn is_output_name(name: &str) -> bool {
    ALL_FILES.contains(&name)
        || ((name.starts_with(NOTICES_PREFIX) || name.starts_with(WEBHOOK_PREFIX)) && name.ends_with(".jsonl"))
}

/// What the writer counted.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct WrittenCounts {
    /// Alerts by rule name.
    pub alerts_by_rule: BTreeMap<String, u64>,
    /// Dead letters by reason.
    pub dead_letters_by_reason: BTreeMap<String, u64>,
    /// Late events.
    pub late_events: u64,
    /// Order-to-trade values written.
    pub ratio_values: u64,
    /// Feature rows written to `features.csv`.
    pub feature_rows: u64,
    /// Symbol hash collisions seen.
    pub symbol_collisions: u64,
    /// Alerts by rule and severity, for live metrics (the summary has them by rule).
    #[serde(skip)]
    pub alerts_by_rule_and_severity: BTreeMap<(String, String), u64>,
    /// Alerts by tier, when the alert manager ran.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub alerts_by_tier: BTreeMap<String, u64>,
    /// Summaries of groups of repeats written.
    #[serde(default)]
    pub alert_groups: u64,
    /// Corrections of alerts raised before, by kind (`retracted`, `downgraded`, `amended`);
    /// they are not counted as alerts.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub corrections_by_kind: BTreeMap<String, u64>,
    /// Notices (alerts sent at once and group summaries) by route.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub notices_by_route: BTreeMap<String, u64>,
    /// Points written to the time-series database, and kept unwritten, when one is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeseries: Option<TimeSeriesCounts>,
    /// Webhook events by route: delivered, and kept undelivered in the outbox.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub webhooks: BTreeMap<String, WebhookCounts>,
    /// Case versions written, by change (`opened`, `escalated`, `closed`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub case_changes: BTreeMap<String, u64>,
    /// The audit log's end, when one was kept: what `surveil audit verify` checks it against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditHead>,
    /// Alerts the Kafka alert topic acknowledged, and those it did not, when one is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka_alerts: Option<PublishCounts>,
    /// Per route with a Kafka topic, the notices it acknowledged and did not.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub kafka_routes: BTreeMap<String, PublishCounts>,
}

/// A topic the writer also publishes records to, keyed by id: the alerts topic, a route's
/// topic (`surveil::kafka::AlertPublisher` with the `kafka` feature).
pub trait Publisher: Send + Sync {
    /// Queues a record under `key`.
    fn publish(&self, key: &str, record: &[u8]);
    /// Every record before `watermark` has been queued.
    fn written_through(&self, watermark: u64);
    /// Waits up to `timeout` for every queued record to be delivered: what was delivered, and
    /// an error when some record was not.
    fn finish(&self, timeout: std::time::Duration) -> (PublishCounts, Result<(), String>);
}

/// Records published to a topic: acknowledged, and not delivered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PublishCounts {
    /// Records the broker acknowledged.
    pub delivered: u64,
    /// Records that could not be delivered (after the producer's own retries).
    pub failed: u64,
}

/// What became of the points for the time-series database.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TimeSeriesCounts {
    /// Points the database accepted.
    pub written: u64,
    /// Points it did not: in `timeseries_unwritten.lp`.
    pub unwritten: u64,
}

/// What became of a webhook route's events.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WebhookCounts {
    /// Accepted by the endpoint.
    pub delivered: u64,
    /// Not accepted by the end of the run (or held behind an undelivered event of the same
    /// incident): in the outbox for `surveil deliver`.
    pub undelivered: u64,
    /// Not to be sent: triggers for incidents already resolved.
    #[serde(default)]
    pub skipped: u64,
}

/// Where an audit log ends.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditHead {
    /// Records in the log.
    pub records: u64,
    /// The hash of the last record.
    pub head: String,
    /// The id of the key the log is sealed with, when it is encrypted: a plain log in its
    /// place was put there by someone else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_key_id: Option<String>,
}

/// Writes reports into JSON Lines files in a folder, under their partial names (see
/// [`OutputFolder`]) until the run commits them.
pub struct ReportWriter {
    renderer: Renderer,
    alerts: BufWriter<File>,
    dead_letters: BufWriter<File>,
    late: BufWriter<File>,
    ratios: BufWriter<File>,
    features: Option<(BufWriter<File>, u64)>,
    cases: Option<BufWriter<File>>,
    audit: Option<AuditLog<AuditFile>>,
    /// When the audit log was last flushed, and the id of the key it is sealed with.
    audit_flushed: std::time::Instant,
    audit_key_id: Option<String>,
    /// The routes' names and files, by route index.
    route_names: Vec<String>,
    routes: Vec<BufWriter<File>>,
    /// The routes' webhooks, by route index: routing key, delivery thread and outbox.
    #[cfg(feature = "http")]
    webhooks: Vec<Option<crate::webhook::WebhookSender>>,
    /// The outboxes continued from stopped attempts (by route index), put in order at the end.
    #[cfg(feature = "http")]
    outboxes_to_compact: Vec<(usize, PathBuf)>,
    /// The time-series database's writer and the file for what it does not take.
    #[cfg(feature = "http")]
    timeseries: Option<crate::timeseries::TimeSeriesSender>,
    /// The archive, its `alerts` table (`None` once writing it failed), and the day before
    /// which its partitions are published.
    #[cfg(feature = "archive")]
    archive: Option<(Arc<crate::archive::Archive>, Option<crate::archive::TableWriter<crate::archive::AlertRow>>, i64)>,
    /// The Kafka topic the alerts are published to, and how long the end of the run waits
    /// for their delivery.
    alert_publisher: Option<(Arc<dyn Publisher>, std::time::Duration)>,
    /// The routes' Kafka topics, by route index.
    route_publishers: Vec<Option<Arc<dyn Publisher>>>,
    /// How long the end of the run waits for the routes' notices to be delivered.
    route_publishers_timeout: std::time::Duration,
    /// How the run ended, for the audit trail (see [`WriterSlot::set_run_end`]).
    pub run_end: Option<Json>,
    /// Counts so far.
    pub counts: WrittenCounts,
    error: Option<std::io::Error>,
    /// A line being rendered (reused).
    line: Vec<u8>,
    /// What a resumed run had written before its checkpoint, which it does not write again.
    resumed: Option<ResumeFilter>,
    /// Writes checkpoints as the watermark advances, when the run keeps them.
    checkpoints: Option<Box<dyn CheckpointHook>>,
    /// The dead letters (input, offset) and late events (origin) written since the oldest
    /// position a restart may read again from: a resumed run does not write them twice.
    written_side: Option<WrittenSide>,
}

/// Dead letters (input, offset) and late events (origin) written.
type WrittenSide = (Vec<(u32, u64)>, Vec<u64>);

/// What a checkpoint records of the writer: everything written before `watermark`.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct WriterState {
    /// Every report of an earlier time is written.
    pub watermark: u64,
    /// The partial files' lengths.
    pub outputs: BTreeMap<String, u64>,
    /// The counts so far.
    pub counts: WrittenCounts,
    /// Alerts by rule and severity (not part of the summary's counts).
    pub alerts_by_rule_and_severity: Vec<(String, String, u64)>,
    /// Where the audit trail's chain stands.
    pub audit: Option<crate::audit::AuditPosition>,
    /// The id of the key the audit trail is sealed with, when it is.
    #[serde(default)]
    pub audit_key_id: Option<String>,
    /// The time-series sink's points not settled yet, and its counts.
    #[cfg(feature = "http")]
    #[serde(default)]
    pub timeseries: Option<crate::timeseries::TimeSeriesCheckpoint>,
    /// Each webhook route's last settled event and the events queued after it.
    #[cfg(feature = "http")]
    #[serde(default)]
    pub webhooks: BTreeMap<String, crate::webhook::WebhookCheckpoint>,
    /// The symbol texts learnt from the inputs.
    pub names: Vec<(u64, String)>,
    /// Dead letters written (input, offset) that a restart may read again.
    pub dead_letters: Vec<(u32, u64)>,
    /// Late events written (by origin) that a restart may read again.
    pub late_events: Vec<u64>,
}

/// What a resumed run skips: reports of times before the checkpoint's watermark, and the dead
/// letters and late events already written (these are sent at the time they are read, which
/// depends on how the reading interleaved, so they are known by their position instead).
struct ResumeFilter {
    watermark: u64,
    dead_letters: HashMap<(u32, u64), u32>,
    late_events: HashMap<u64, u32>,
    audit: Option<crate::audit::AuditPosition>,
    audit_key_id: Option<String>,
    #[cfg(feature = "http")]
    timeseries: Option<crate::timeseries::TimeSeriesCheckpoint>,
    #[cfg(feature = "http")]
    webhooks: BTreeMap<String, crate::webhook::WebhookCheckpoint>,
}

impl ResumeFilter {
    /// True when `report`, sent at `time`, was written before the checkpoint.
    fn written(&mut self, time: u64, report: &Report) -> bool {
        fn take<K: std::hash::Hash + Eq>(counts: &mut HashMap<K, u32>, key: K) -> bool {
            match counts.get_mut(&key) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    true
                }
                _ => false,
            }
        }
        match report {
            Report::Symbol(..) => false,
            Report::DeadLetter(letter) if read_by_source(letter) => {
                take(&mut self.dead_letters, (letter.source, letter.offset))
            }
            Report::Late(event) => take(&mut self.late_events, event.origin.0),
            _ => time < self.watermark,
        }
    }
}

/// True for a dead letter the source sent as it read (a line it could not read): it is sent
/// at the source's watermark, which depends on how the reading interleaved. Dead letters the
/// operators make (an order they do not know, a refused case action) have the time of the event
/// that caused them.
fn read_by_source(letter: &DeadLetter) -> bool {
    letter.event.is_none() && letter.reason != crate::model::RejectReason::CaseActionRefused
}

/// Called by the writer as the watermark advances; a checkpoint store implements it
/// (`surveil::checkpoint`).
pub trait CheckpointHook: Send {
    /// True when a checkpoint at `watermark` is due.
    fn due(&mut self, watermark: u64) -> bool;
    /// Records `state` durably. Returns, per input, the least offset a restart may read
    /// again from: side records before it are forgotten.
    fn save(&mut self, state: WriterState) -> std::io::Result<BTreeMap<u32, u64>>;
}

impl ReportWriter {
    /// Creates (truncates) the output files of `folder`, under their partial names.
    pub fn create(folder: &OutputFolder, renderer: Renderer) -> std::io::Result<ReportWriter> {
        let open = |name: &str| -> std::io::Result<BufWriter<File>> {
            Ok(BufWriter::with_capacity(1 << 16, folder.open(name)?))
        };
        Ok(ReportWriter {
            renderer,
            alerts: open(ALERTS)?,
            dead_letters: open(DEAD_LETTERS)?,
            late: open(LATE)?,
            ratios: open(RATIOS)?,
            features: None,
            cases: None,
            audit: None,
            audit_flushed: std::time::Instant::now(),
            audit_key_id: None,
            route_names: Vec::new(),
            routes: Vec::new(),
            #[cfg(feature = "http")]
            webhooks: Vec::new(),
            #[cfg(feature = "http")]
            outboxes_to_compact: Vec::new(),
            #[cfg(feature = "http")]
            timeseries: None,
            #[cfg(feature = "archive")]
            archive: None,
            alert_publisher: None,
            route_publishers: Vec::new(),
            route_publishers_timeout: std::time::Duration::ZERO,
            run_end: None,
            counts: WrittenCounts::default(),
            error: None,
            line: Vec::with_capacity(512),
            resumed: None,
            checkpoints: None,
            written_side: None,
        })
    }

    /// Continues from a checkpoint's `state`: its counts and names, and, until the run has
    /// passed it, nothing it had written. Call before [`ReportWriter::keep_audit_log`], which
    /// then continues the audit trail's chain.
    pub fn resume_from(&mut self, state: &WriterState) {
        self.counts = state.counts.clone();
        self.counts.alerts_by_rule_and_severity = state
            .alerts_by_rule_and_severity
            .iter()
            .map(|(rule, severity, n)| ((rule.clone(), severity.clone()), *n))
            .collect();
        for (symbol, text) in &state.names {
            self.renderer.names.insert(Symbol(*symbol), text);
        }
        let mut filter = ResumeFilter {
            watermark: state.watermark,
            dead_letters: HashMap::new(),
            late_events: HashMap::new(),
            audit: state.audit.clone(),
            audit_key_id: state.audit_key_id.clone(),
            #[cfg(feature = "http")]
            timeseries: state.timeseries.clone(),
            #[cfg(feature = "http")]
            webhooks: state.webhooks.clone(),
        };
        for key in &state.dead_letters {
            *filter.dead_letters.entry(*key).or_default() += 1;
        }
        for key in &state.late_events {
            *filter.late_events.entry(*key).or_default() += 1;
        }
        if let Some((dead, late)) = &mut self.written_side {
            dead.extend(&state.dead_letters);
            late.extend(&state.late_events);
        }
        self.resumed = Some(filter);
    }

    /// Writes checkpoints through `hook` as the watermark advances.
    pub fn keep_checkpoints(&mut self, hook: Box<dyn CheckpointHook>) {
        let side = match &self.resumed {
            Some(filter) => (
                filter.dead_letters.iter().flat_map(|(k, n)| std::iter::repeat_n(*k, *n as usize)).collect(),
                filter.late_events.iter().flat_map(|(k, n)| std::iter::repeat_n(*k, *n as usize)).collect(),
            ),
            None => (Vec::new(), Vec::new()),
        };
        self.written_side = Some(side);
        self.checkpoints = Some(hook);
    }

    /// Flushes and syncs every file, and returns what a checkpoint at `watermark` records.
    fn state(&mut self, watermark: u64) -> std::io::Result<WriterState> {
        let mut outputs = BTreeMap::new();
        let mut keep = |name: &str, file: &mut BufWriter<File>| -> std::io::Result<()> {
            file.flush()?;
            file.get_ref().sync_data()?;
            outputs.insert(name.to_string(), file.get_ref().metadata()?.len());
            Ok(())
        };
        keep(ALERTS, &mut self.alerts)?;
        keep(DEAD_LETTERS, &mut self.dead_letters)?;
        keep(LATE, &mut self.late)?;
        keep(RATIOS, &mut self.ratios)?;
        if let Some((file, _)) = &mut self.features {
            keep(FEATURES, file)?;
        }
        if let Some(file) = &mut self.cases {
            keep(CASES, file)?;
        }
        for (name, file) in self.route_names.iter().zip(&mut self.routes) {
            keep(&notice_file(name), file)?;
        }
        let audit = match &mut self.audit {
            Some(log) => {
                let position = log.position();
                match log.get_mut() {
                    AuditFile::Plain(file) => keep(AUDIT, file)?,
                    AuditFile::Sealed(file) => {
                        // Flushing seals what is buffered as a whole chunk: the file can be cut
                        // back to here and continued ([`crate::encryption`]).
                        file.flush()?;
                        let file = file.get_ref().get_ref();
                        file.sync_data()?;
                        outputs.insert(AUDIT.to_string(), file.metadata()?.len());
                    }
                }
                Some(position)
            }
            None => None,
        };
        #[cfg(feature = "http")]
        let timeseries = match &mut self.timeseries {
            Some(sender) => {
                let (state, length) = sender.checkpoint()?;
                outputs.insert(TIMESERIES_UNWRITTEN.to_string(), length);
                Some(state)
            }
            None => None,
        };
        #[cfg(feature = "http")]
        let mut webhooks = BTreeMap::new();
        #[cfg(feature = "http")]
        for (name, sender) in self.route_names.iter().zip(&mut self.webhooks) {
            if let Some(sender) = sender {
                let (state, length) = sender.checkpoint()?;
                outputs.insert(webhook_file(name), length);
                webhooks.insert(name.clone(), state);
            }
        }
        let mut counts = self.counts.clone();
        counts.symbol_collisions = self.renderer.names.collisions();
        let (dead_letters, late_events) = self.written_side.clone().unwrap_or_default();
        Ok(WriterState {
            watermark,
            outputs,
            alerts_by_rule_and_severity: counts
                .alerts_by_rule_and_severity
                .iter()
                .map(|((rule, severity), n)| (rule.clone(), severity.clone(), *n))
                .collect(),
            counts,
            audit,
            audit_key_id: self.audit_key_id.clone(),
            #[cfg(feature = "http")]
            timeseries,
            #[cfg(feature = "http")]
            webhooks,
            names: self.renderer.names.iter().map(|(symbol, text)| (symbol.0, text.to_string())).collect(),
            dead_letters,
            late_events,
        })
    }

    /// Writes a checkpoint at `watermark` if one is due; a failure fails the run.
    fn checkpoint(&mut self, watermark: u64) {
        let Some(mut hook) = self.checkpoints.take() else { return };
        if self.error.is_none() && hook.due(watermark) {
            match self.state(watermark).and_then(|state| hook.save(state)) {
                Ok(oldest) => {
                    if let Some((dead, late)) = &mut self.written_side {
                        let kept = |source: u32, offset: u64| oldest.get(&source).is_none_or(|o| offset >= *o);
                        dead.retain(|(source, offset)| kept(*source, *offset));
                        late.retain(|origin| {
                            kept(crate::model::Origin(*origin).source(), crate::model::Origin(*origin).offset())
                        });
                    }
                }
                Err(e) => self.error = Some(e),
            }
        }
        self.checkpoints = Some(hook);
    }

    /// Also writes feature rows (windows of `window_ns`) to `features.csv` in `folder`.
    pub fn export_features(&mut self, folder: &OutputFolder, window_ns: u64) -> std::io::Result<()> {
        let mut file = BufWriter::new(folder.open(FEATURES)?);
        if !folder.is_resumed(FEATURES) {
            writeln!(file, "{}", crate::features::export::header())?;
        }
        self.features = Some((file, window_ns));
        Ok(())
    }

    /// Also writes case versions to `cases.jsonl` in `folder`.
    pub fn keep_cases(&mut self, folder: &OutputFolder) -> std::io::Result<()> {
        self.cases = Some(BufWriter::new(folder.open(CASES)?));
        Ok(())
    }

    /// Also keeps the audit trail (`audit.jsonl`, see [`crate::audit`]) in `folder`, opening
    /// it with a `run_started` record of `start`; every alert written is recorded in it. With
    /// a `signer` (key, records between checkpoints) the log carries signed checkpoints and
    /// ends with one; with an `encryption` key it is sealed at rest ([`crate::encryption`]).
    pub fn keep_audit_log(
        &mut self,
        folder: &OutputFolder,
        start: &Json,
        signer: Option<(crate::audit::SigningKey, u64)>,
        encryption: Option<&crate::encryption::EncryptionKey>,
    ) -> std::io::Result<()> {
        let key_id = encryption.map(|key| key.id_hex());
        // A resumed run continues the chain where the checkpoint left it.
        let resumed = self.resumed.as_ref().filter(|_| folder.is_resumed(AUDIT));
        if let Some(filter) = resumed
            && filter.audit_key_id != key_id
        {
            let sealing = |id: &Option<String>| match id {
                Some(id) => format!("sealed with key {id}"),
                None => "plain".to_string(),
            };
            return Err(std::io::Error::other(format!(
                "cannot resume: the checkpoint's audit trail is {} but this run's would be {}; give the run the key it \
                 was started with, or remove the checkpoint to start over",
                sealing(&filter.audit_key_id),
                sealing(&key_id)
            )));
        }
        let resumed = resumed.and_then(|r| r.audit.clone());
        let file = folder.open(AUDIT)?;
        let file = match encryption {
            Some(key) => {
                let writer = if resumed.is_some() {
                    // The file is cut back to the checkpoint's whole chunks: continue it.
                    let before = std::io::BufReader::new(File::open(folder.partial(AUDIT))?);
                    crate::encryption::SealedWriter::continuing(file, key, before)?
                } else {
                    crate::encryption::SealedWriter::new(file, key)?
                };
                AuditFile::Sealed(BufWriter::with_capacity(1 << 16, writer))
            }
            None => AuditFile::Plain(BufWriter::with_capacity(1 << 16, file)),
        };
        self.audit_key_id = key_id;
        let mut log = match &resumed {
            Some(position) => AuditLog::resume_at(file, position),
            None => AuditLog::new(file),
        };
        if let Some((key, every)) = signer {
            log = log.signed(key, every);
        }
        log.append(if resumed.is_some() { "run_resumed" } else { "run_started" }, start)?;
        self.audit = Some(log);
        Ok(())
    }

    /// Also writes the notices of each route (by index, as the alert manager numbers them) to
    /// `notices_NAME.jsonl` in `folder`.
    pub fn send_notices(&mut self, folder: &OutputFolder, route_names: &[String]) -> std::io::Result<()> {
        self.routes = route_names
            .iter()
            .map(|name| Ok(BufWriter::new(folder.open(&notice_file(name))?)))
            .collect::<std::io::Result<_>>()?;
        self.route_names = route_names.to_vec();
        Ok(())
    }

    /// Also delivers the notices of the routes that have a webhook (by index, as
    /// [`ReportWriter::send_notices`] numbers them), keeping each route's outbox in `folder`.
    #[cfg(feature = "http")]
    pub fn deliver_to_webhooks(
        &mut self,
        folder: &OutputFolder,
        routes: &[crate::config::RouteConfig],
    ) -> Result<(), crate::webhook::WebhookError> {
        self.webhooks = Vec::with_capacity(routes.len());
        for (index, route) in routes.iter().enumerate() {
            let Some(config) = &route.webhook else {
                self.webhooks.push(None);
                continue;
            };
            let name = webhook_file(&route.name);
            let path = folder.partial(&name);
            let io = |source| crate::webhook::WebhookError::Outbox { path: path.clone(), source };
            // A resumed run continues the outbox the stopped attempts appended to: what was
            // settled up to the checkpoint, what was queued then, and what they delivered after
            // it. The outbox is appended to, not cut back, so that an attempt stopped again
            // before it reaches what an earlier one delivered does not lose it.
            let (resumed, outbox) = if folder.is_resumed(&name) {
                let checkpoint =
                    self.resumed.as_ref().and_then(|r| r.webhooks.get(&route.name).cloned()).unwrap_or_default();
                let mut kept = std::fs::read(&path).map_err(io)?;
                let whole = kept.iter().rposition(|b| *b == b'\n').map_or(0, |at| at + 1);
                kept.truncate(whole);
                let resumed = crate::webhook::ResumedDeliveries::read(&kept, checkpoint).map_err(io)?;
                let mut file = std::fs::OpenOptions::new().write(true).open(&path).map_err(io)?;
                file.set_len(whole as u64).map_err(io)?;
                std::io::Seek::seek(&mut file, std::io::SeekFrom::End(0)).map_err(io)?;
                self.outboxes_to_compact.push((index, path.clone()));
                (Some(resumed), file)
            } else {
                (None, folder.open(&name).map_err(io)?)
            };
            self.webhooks.push(Some(crate::webhook::WebhookSender::start(&route.name, config, outbox, resumed)?));
        }
        Ok(())
    }

    /// Also writes the alerts and case changes to a time-series database
    /// ([`crate::timeseries`]), keeping what it does not take in `timeseries_unwritten.lp` in
    /// `folder`.
    #[cfg(feature = "http")]
    pub fn write_timeseries(
        &mut self,
        folder: &OutputFolder,
        config: &crate::config::TimeSeriesConfig,
    ) -> Result<(), crate::webhook::WebhookError> {
        let path = folder.partial(TIMESERIES_UNWRITTEN);
        let file = folder
            .open(TIMESERIES_UNWRITTEN)
            .map_err(|source| crate::webhook::WebhookError::Outbox { path, source })?;
        // A resumed run sends first what its checkpoint had not settled.
        let resumed = self
            .resumed
            .as_ref()
            .and_then(|r| r.timeseries.as_ref())
            .filter(|_| folder.is_resumed(TIMESERIES_UNWRITTEN));
        self.timeseries = Some(crate::timeseries::TimeSeriesSender::start(config, file, resumed)?);
        Ok(())
    }

    /// Also publishes every alert (its JSON, as `alerts.jsonl` holds it) to `publisher` (a
    /// Kafka topic with the `kafka` feature), keyed by its id; the end of the run waits up to
    /// `timeout` for their delivery. Its counts are `kafka_alerts` in the summary.
    pub fn publish_alerts(&mut self, publisher: Arc<dyn Publisher>, timeout: std::time::Duration) {
        self.alert_publisher = Some((publisher, timeout));
    }

    /// Also publishes each route's notices to its Kafka topic (by route index; `None` for a
    /// route without one), keyed by the alert, group or case id; the end of the run waits up
    /// to `timeout` for their delivery.
    pub fn publish_routes(&mut self, publishers: Vec<Option<Arc<dyn Publisher>>>, timeout: std::time::Duration) {
        self.route_publishers = publishers;
        self.route_publishers_timeout = timeout;
    }

    /// Every report before `watermark` has been written (the sinks that gate the commit of
    /// input positions learn it here).
    pub fn written_through(&mut self, watermark: u64) {
        for publisher in self.alert_publisher.iter().map(|(p, _)| p).chain(self.route_publishers.iter().flatten()) {
            publisher.written_through(watermark);
        }
        // The end of the input is not a checkpoint: the run commits its outputs instead.
        if watermark < u64::MAX {
            self.checkpoint(watermark);
        }
    }

    /// Also archives the alerts in the `alerts` table of `archive` ([`crate::archive`]).
    #[cfg(feature = "archive")]
    pub fn archive_alerts(&mut self, archive: Arc<crate::archive::Archive>) {
        let table = crate::archive::TableWriter::new(crate::archive::ALERTS, archive.clone());
        self.archive = Some((archive, Some(table), 0));
    }

    /// Adds an alert to the archive's `alerts` table, when one is kept.
    #[cfg(feature = "archive")]
    fn archive_alert(&mut self, alert: &Alert, tier: Option<&str>, json: &Json) {
        let Some((_, Some(table), _)) = &mut self.archive else { return };
        let name = |symbol: Symbol| (!symbol.is_none()).then(|| self.renderer.name_text(symbol));
        let instrument = name(alert.instrument);
        let row = crate::archive::AlertRow {
            time: alert.time,
            id: alert.id.to_string(),
            rule: alert.rule.clone(),
            instrument: instrument.clone(),
            account: name(alert.account),
            tier: tier.map(str::to_string),
            score: alert.score.is_finite().then_some(alert.score),
            json: json.to_string(),
        };
        table.push(crate::archive::PartitionKey::at(alert.time, instrument), row);
    }

    /// Adds an alert that a resumed run does not write again (the output folder has it) to the
    /// archive's `alerts` table all the same: with an archive, a resumed run reads its inputs
    /// from the start and writes every archive file whole
    /// ([`crate::checkpoint::Checkpointer::resuming_from_the_start`]).
    #[cfg(feature = "archive")]
    fn archive_written_alert(&mut self, report: &Report) {
        if !matches!(self.archive, Some((_, Some(_), _))) {
            return;
        }
        match report {
            Report::Alert(alert) => {
                let json = self.renderer.alert(alert);
                self.archive_alert(alert, None, &json);
            }
            Report::Triaged(triaged) => {
                let json = self.renderer.triaged(triaged, &self.route_names);
                self.archive_alert(&triaged.alert, Some(triaged.tier.as_str()), &json);
            }
            _ => {}
        }
    }

    /// Writes the archive's full row groups, and publishes the alerts of days that ended a
    /// day before `time` (an alert may be raised a while after the events it is about).
    #[cfg(feature = "archive")]
    fn archive_progress(&mut self, time: Option<u64>) {
        let Some((archive, Some(table), closed)) = &mut self.archive else { return };
        let context = crate::archive::RowContext { names: &self.renderer.names, reference: &self.renderer.reference };
        let result = match time {
            Some(time) => table.write_full_groups(&context).and_then(|_| {
                let before = crate::archive::day_of(time) - 1;
                if before > *closed {
                    *closed = before;
                    table.close_days_before(before, &context)
                } else {
                    Ok(Vec::new())
                }
            }),
            None => table.finish(&context),
        };
        if let Err(error) = result {
            archive.fail(&error);
            if let Some(kept) = &mut self.archive {
                kept.1 = None;
            }
        }
    }

    /// What it has written so far.
    pub fn counts(&self) -> &WrittenCounts {
        &self.counts
    }

    /// The files this writer produces.
    pub fn files(&self) -> Vec<String> {
        let mut files = vec![ALERTS, DEAD_LETTERS, LATE, RATIOS];
        if self.features.is_some() {
            files.push(FEATURES);
        }
        if self.cases.is_some() {
            files.push(CASES);
        }
        #[cfg(feature = "http")]
        if self.timeseries.is_some() {
            files.push(TIMESERIES_UNWRITTEN);
        }
        if self.audit.is_some() {
            files.push(AUDIT);
        }
        let mut files: Vec<String> = files.into_iter().map(String::from).collect();
        files.extend(self.route_names.iter().map(|n| notice_file(n)));
        #[cfg(feature = "http")]
        for (name, webhook) in self.route_names.iter().zip(&self.webhooks) {
            if webhook.is_some() {
                files.push(webhook_file(name));
            }
        }
        files
    }

    /// Counts an alert by rule and severity, or a correction by kind.
    fn count_alert(&mut self, alert: &Alert) {
        if let Some(c) = &alert.correction {
            count(&mut self.counts.corrections_by_kind, c.kind.as_str());
            return;
        }
        count(&mut self.counts.alerts_by_rule, alert.rule.as_str());
        *self
            .counts
            .alerts_by_rule_and_severity
            .entry((alert.rule.as_str().to_string(), alert.severity.as_str().to_string()))
            .or_default() += 1;
    }

    /// Writes one completed batch: dictionary entries first, then everything else in a
    /// deterministic order.
    pub fn write_batch(&mut self, batch: &mut Vec<(u64, Report)>) {
        for (_, report) in batch.iter() {
            if let Report::Symbol(symbol, text) = report
                && !self.renderer.names.insert(*symbol, text)
            {
                self.counts.symbol_collisions = self.renderer.names.collisions();
            }
        }
        batch.sort_by_key(|(t, r)| order_key(*t, r));
        #[cfg(feature = "archive")]
        let batch_time = batch.first().map(|(t, _)| *t);
        for (time, report) in batch.drain(..) {
            if let Some(filter) = &mut self.resumed
                && filter.written(time, &report)
            {
                // Its point was sent before the checkpoint; the points after it still move
                // past it.
                #[cfg(feature = "http")]
                match &report {
                    Report::Triaged(triaged) => self.point_of_alert(triaged, false),
                    Report::Case(case) => self.point_of_case(case, false),
                    _ => {}
                }
                #[cfg(feature = "archive")]
                self.archive_written_alert(&report);
                continue;
            }
            if let Some((dead, late)) = &mut self.written_side {
                match &report {
                    Report::DeadLetter(letter) if read_by_source(letter) => dead.push((letter.source, letter.offset)),
                    Report::Late(event) => late.push(event.origin.0),
                    _ => {}
                }
            }
            let result = match &report {
                Report::Symbol(..) => Ok(()),
                Report::Alert(alert) => {
                    self.count_alert(alert);
                    let json = self.renderer.alert(alert);
                    #[cfg(feature = "archive")]
                    self.archive_alert(alert, None, &json);
                    self.keep_alert(&json)
                }
                Report::Triaged(triaged) => {
                    #[cfg(feature = "http")]
                    self.point_of_alert(triaged, true);
                    self.count_alert(&triaged.alert);
                    if triaged.alert.correction.is_none() {
                        count(&mut self.counts.alerts_by_tier, triaged.tier.as_str());
                    }
                    let mut json = self.renderer.triaged(triaged, &self.route_names);
                    let notified = self.notify(triaged.routes, "alert", &mut json);
                    #[cfg(feature = "archive")]
                    self.archive_alert(&triaged.alert, Some(triaged.tier.as_str()), &json);
                    notified.and_then(|()| self.keep_alert(&json))
                }
                Report::Group(group) => {
                    self.counts.alert_groups += 1;
                    let mut json = self.renderer.group(group, &self.route_names);
                    self.notify(group.routes, "group", &mut json).and_then(|()| self.audit("alert_group", &json))
                }
                Report::Case(case) => {
                    #[cfg(feature = "http")]
                    self.point_of_case(case, true);
                    count(&mut self.counts.case_changes, case.change.as_str());
                    let mut json = self.renderer.case(case, &self.route_names);
                    let kind = if case.change == crate::model::CaseChange::Escalated { "escalation" } else { "case" };
                    self.notify(case.routes, kind, &mut json).and_then(|()| self.audit("case", &json)).and_then(|()| {
                        match &mut self.cases {
                            Some(file) => writeln!(file, "{json}"),
                            None => Ok(()),
                        }
                    })
                }
                Report::DeadLetter(letter) => {
                    count(&mut self.counts.dead_letters_by_reason, letter.reason.as_str());
                    self.line.clear();
                    self.renderer.dead_letter_line(letter).write_json(&mut self.line);
                    self.dead_letters.write_all(&self.line)
                }
                Report::Late(event) => {
                    self.counts.late_events += 1;
                    writeln!(self.late, "{}", self.renderer.event(event))
                }
                Report::Ratio(ratio) => {
                    self.counts.ratio_values += 1;
                    writeln!(self.ratios, "{}", self.renderer.ratio(ratio))
                }
                Report::Features(row) => match &mut self.features {
                    Some((file, window_ns)) => {
                        self.counts.feature_rows += 1;
                        let renderer = &self.renderer;
                        crate::features::export::write_row(file, row, *window_ns, |s| renderer.name_text(s))
                    }
                    None => Ok(()),
                },
            };
            if let Err(e) = result
                && self.error.is_none()
            {
                self.error = Some(e);
            }
        }
        #[cfg(feature = "archive")]
        if batch_time.is_some() {
            self.archive_progress(batch_time);
        }
    }

    /// Records an alert in the audit trail (when kept), then in `alerts.jsonl`.
    fn keep_alert(&mut self, json: &Json) -> std::io::Result<()> {
        self.audit("alert", json)?;
        if let Some((publisher, _)) = &self.alert_publisher {
            let id = json.get("id").and_then(Json::as_str).unwrap_or_default();
            publisher.publish(id, json.to_string().as_bytes());
        }
        writeln!(self.alerts, "{json}")
    }

    /// Appends a record to the audit trail, when one is kept.
    fn audit(&mut self, kind: &str, json: &Json) -> std::io::Result<()> {
        let Some(log) = &mut self.audit else { return Ok(()) };
        log.append(kind, json)?;
        // At most a second's records are only in memory: a killed run leaves the rest readable
        // (a sealed log's buffer is sealed as a chunk of its own).
        if self.audit_flushed.elapsed() >= std::time::Duration::from_secs(1) {
            log.get_mut().flush()?;
            self.audit_flushed = std::time::Instant::now();
        }
        Ok(())
    }

    /// Writes a notice of `kind` (`alert`, `group` or `escalation`) to each route in `routes`.
    fn notify(&mut self, routes: crate::model::Routes, kind: &str, json: &mut Json) -> std::io::Result<()> {
        if routes.is_empty() {
            return Ok(());
        }
        // One rendering for every route: the notice is the record with its kind added.
        let Json::Object(fields) = json else { return Ok(()) };
        fields.insert("notice".into(), Json::from(kind));
        self.line.clear();
        let rendered = serde_json::to_writer(&mut self.line, &*fields);
        fields.remove("notice");
        rendered?;
        self.line.push(b'\n');
        #[cfg(feature = "http")]
        let mut notice: Option<Json> = None;
        let key =
            ["id", "case", "group"].iter().find_map(|k| fields.get(*k).and_then(Json::as_str)).unwrap_or_default();
        for index in routes.iter() {
            if let (Some(file), Some(name)) = (self.routes.get_mut(index), self.route_names.get(index)) {
                file.write_all(&self.line)?;
                count(&mut self.counts.notices_by_route, name);
            }
            if let Some(Some(publisher)) = self.route_publishers.get(index) {
                publisher.publish(key, self.line.strip_suffix(b"\n").unwrap_or(&self.line));
            }
            #[cfg(feature = "http")]
            if let Some(Some(sender)) = self.webhooks.get_mut(index) {
                let notice = notice.get_or_insert_with(|| {
                    let mut with_kind = fields.clone();
                    with_kind.insert("notice".into(), Json::from(kind));
                    Json::Object(with_kind)
                });
                if let Some(event) = crate::webhook::pagerduty_event(notice) {
                    sender.send(event);
                }
            }
        }
        Ok(())
    }

    /// Sends an alert's point to the time-series database, if one is configured.
    #[cfg(feature = "http")]
    fn point_of_alert(&mut self, triaged: &TriagedAlert, send: bool) {
        use crate::timeseries::FieldValue;
        let Some(sender) = &mut self.timeseries else { return };
        let alert = &triaged.alert;
        let instrument = self.renderer.name_text(alert.instrument);
        let tags =
            [("rule", alert.rule.as_str()), ("instrument", instrument.as_str()), ("tier", triaged.tier.as_str())];
        if !send {
            sender.reserve("surveil_alerts", &tags, alert.time);
            return;
        }
        let (account, id) = (self.renderer.name_text(alert.account), alert.id.to_string());
        // A retraction takes its alert back out of the sum of `count`; other corrections leave it.
        let (count, correction) = match &alert.correction {
            None => (1, ""),
            Some(c) => (if c.kind == crate::model::CorrectionKind::Retracted { -1 } else { 0 }, c.kind.as_str()),
        };
        let mut fields = vec![
            ("score", FieldValue::Float(alert.score)),
            ("count", FieldValue::Integer(count)),
            ("account", FieldValue::Text(&account)),
            ("id", FieldValue::Text(&id)),
        ];
        if !correction.is_empty() {
            fields.push(("correction", FieldValue::Text(correction)));
        }
        sender.send("surveil_alerts", &tags, &fields, alert.time);
    }

    /// Sends a case change's point to the time-series database, if one is configured (or, with
    /// `send` false, only takes its time: see [`ReportWriter::point_of_alert`]).
    #[cfg(feature = "http")]
    fn point_of_case(&mut self, case: &CaseRecord, send: bool) {
        use crate::timeseries::FieldValue;
        let Some(sender) = &mut self.timeseries else { return };
        let instrument = self.renderer.name_text(case.instrument);
        let tags = [
            ("rule", case.rule.as_str()),
            ("instrument", instrument.as_str()),
            ("tier", case.tier.as_str()),
            ("change", case.change.as_str()),
        ];
        if !send {
            sender.reserve("surveil_cases", &tags, case.time);
            return;
        }
        let id = case.case.to_string();
        sender.send(
            "surveil_cases",
            &tags,
            &[
                ("count", FieldValue::Integer(1)),
                ("case", FieldValue::Text(&id)),
                ("escalations", FieldValue::Integer(i64::from(case.escalations))),
            ],
            case.time,
        );
    }

    /// Waits for the last points and keeps what the database did not take.
    #[cfg(feature = "http")]
    fn finish_timeseries(&mut self) -> std::io::Result<()> {
        let Some(sender) = self.timeseries.take() else { return Ok(()) };
        let outcome = sender.finish()?;
        if let Some(error) = &outcome.error {
            tracing::warn!(unwritten = outcome.unwritten, %error, "time-series points not written: kept in timeseries_unwritten.lp");
        }
        self.counts.timeseries = Some(TimeSeriesCounts { written: outcome.written, unwritten: outcome.unwritten });
        Ok(())
    }

    /// Waits for the webhooks' last deliveries (their outboxes are written as they go).
    #[cfg(feature = "http")]
    fn finish_webhooks(&mut self) -> std::io::Result<()> {
        let compact = std::mem::take(&mut self.outboxes_to_compact);
        for (index, (name, webhook)) in
            self.route_names.clone().iter().zip(std::mem::take(&mut self.webhooks)).enumerate()
        {
            let Some(sender) = webhook else { continue };
            let done = sender.finish()?;
            if let Some((_, path)) = compact.iter().find(|(i, _)| *i == index) {
                crate::webhook::compact_outbox(path, done.delivered + done.undelivered + done.skipped)?;
            }
            if done.undelivered > 0 {
                tracing::warn!(route = %name, undelivered = done.undelivered, "webhook events not delivered: `surveil deliver` sends them");
            }
            self.counts.webhooks.insert(
                name.clone(),
                WebhookCounts { delivered: done.delivered, undelivered: done.undelivered, skipped: done.skipped },
            );
        }
        Ok(())
    }

    /// Stops every HTTP sink from taking more, so that their drain timeouts run together.
    #[cfg(feature = "http")]
    fn stop_http_sinks(&mut self) {
        for sender in self.webhooks.iter_mut().flatten() {
            sender.stop();
        }
        if let Some(sender) = &mut self.timeseries {
            sender.stop();
        }
    }

    /// Flushes the files to disk (fsync); reports the first write error, if any.
    pub fn finish(&mut self) -> std::io::Result<WrittenCounts> {
        // The HTTP sinks first, whatever happened to the files: their threads finish and their
        // outboxes are complete.
        #[cfg(feature = "http")]
        {
            self.stop_http_sinks();
            let webhooks = self.finish_webhooks();
            let timeseries = self.finish_timeseries();
            webhooks.and(timeseries)?;
        }
        if let Some((publisher, timeout)) = self.alert_publisher.take() {
            let (counts, delivered) = publisher.finish(timeout);
            self.counts.kafka_alerts = Some(counts);
            delivered.map_err(std::io::Error::other)?;
        }
        let mut undelivered = Ok(());
        for (name, publisher) in self.route_names.clone().iter().zip(std::mem::take(&mut self.route_publishers)) {
            let Some(publisher) = publisher else { continue };
            let (counts, delivered) = publisher.finish(self.route_publishers_timeout);
            self.counts.kafka_routes.insert(name.clone(), counts);
            undelivered = undelivered.and(delivered);
        }
        undelivered.map_err(std::io::Error::other)?;
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        for w in [&mut self.alerts, &mut self.dead_letters, &mut self.late, &mut self.ratios]
            .into_iter()
            .chain(&mut self.routes)
        {
            w.flush()?;
            w.get_ref().sync_all()?;
        }
        if let Some((file, _)) = &mut self.features {
            file.flush()?;
            file.get_ref().sync_all()?;
        }
        if let Some(file) = &mut self.cases {
            file.flush()?;
            file.get_ref().sync_all()?;
        }
        self.counts.symbol_collisions = self.renderer.names.collisions();
        #[cfg(feature = "archive")]
        let archived = self.archive.as_ref().map(|(archive, _, _)| archive.clone());
        #[cfg(feature = "archive")]
        self.archive_progress(None);
        if let Some(mut log) = self.audit.take() {
            let c = &self.counts;
            let mut end = json!({
                "alerts_by_rule": c.alerts_by_rule,
                "alerts_by_tier": c.alerts_by_tier,
                "alert_groups": c.alert_groups,
                "notices_by_route": c.notices_by_route,
                "case_changes": c.case_changes,
                "webhooks": c.webhooks,
                "timeseries": c.timeseries,
                "kafka_alerts": c.kafka_alerts,
                "kafka_routes": c.kafka_routes,
                "dead_letters_by_reason": c.dead_letters_by_reason,
                "late_events": c.late_events,
                "ratio_values": c.ratio_values,
                "feature_rows": c.feature_rows,
            });
            if let (Some(Json::Object(facts)), Json::Object(end)) = (self.run_end.take(), &mut end) {
                end.extend(facts);
            }
            // What the archive holds of this run, for the record: its id, files and rows.
            #[cfg(feature = "archive")]
            if let (Some(archive), Json::Object(end)) = (&archived, &mut end) {
                end.insert("archive".into(), serde_json::to_value(archive.counts()).unwrap_or_default());
            }
            log.append("run_finished", &end)?;
            log.checkpoint()?;
            self.counts.audit = Some(AuditHead {
                records: log.records(),
                head: log.head(),
                encryption_key_id: self.audit_key_id.clone(),
            });
            log.into_inner().finish()?;
        }
        Ok(self.counts.clone())
    }
}

/// The audit trail's file: plain text, or sealed at rest.
pub enum AuditFile {
    /// JSON Lines.
    Plain(BufWriter<File>),
    /// Encrypted ([`crate::encryption::SealedWriter`]).
    Sealed(BufWriter<crate::encryption::SealedWriter<File>>),
}

impl AuditFile {
    /// Writes what is buffered, seals the last chunk of a sealed file, and syncs the file.
    pub fn finish(self) -> std::io::Result<()> {
        match self {
            AuditFile::Plain(mut file) => {
                file.flush()?;
                file.get_ref().sync_all()
            }
            AuditFile::Sealed(file) => {
                let sealed = file.into_inner().map_err(|e| e.into_error())?;
                sealed.finish()?.sync_all()
            }
        }
    }
}

impl Write for AuditFile {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        match self {
            AuditFile::Plain(file) => file.write(bytes),
            AuditFile::Sealed(file) => file.write(bytes),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            AuditFile::Plain(file) => file.flush(),
            AuditFile::Sealed(file) => file.flush(),
        }
    }
}

/// Adds one to `key`'s count, allocating the key only the first time.
fn count(counts: &mut BTreeMap<String, u64>, key: &str) {
    match counts.get_mut(key) {
        Some(n) => *n += 1,
        None => {
            counts.insert(key.into(), 1);
        }
    }
}

/// Feature rows (when exported).
pub const FEATURES: &str = crate::features::export::FEATURES_FILE;

/// Every file a run may write, the summary last.
pub const ALL_FILES: [&str; 9] =
    [ALERTS, DEAD_LETTERS, LATE, RATIOS, FEATURES, CASES, TIMESERIES_UNWRITTEN, AUDIT, SUMMARY];

/// The suffix of a file being written: a file under this name is never a finished output.
pub const PARTIAL_SUFFIX: &str = ".partial";

/// Why an output folder cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The folder cannot be created or written.
    #[error("output folder {path}")]
    Io {
        /// The folder or file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The path names something that is not a folder.
    #[error("output folder {0} is not a folder")]
    NotAFolder(PathBuf),
    /// A partial file is shorter than the checkpoint the run resumes from says it was.
    #[error(
        "cannot resume: {path} holds {found} bytes but the checkpoint recorded {length}; the output folder is not the one the checkpoint was written for (remove the checkpoint to start over)"
    )]
    ShorterThanCheckpoint {
        /// The partial file.
        path: PathBuf,
        /// Its length at the checkpoint.
        length: u64,
        /// Its length now.
        found: u64,
    },
    /// Writing the outputs would overwrite an input.
    #[error("refusing to write {output}: it is the input {input} (choose another output folder)")]
    WouldOverwriteInput {
        /// The output file.
        output: PathBuf,
        /// The input it is.
        input: PathBuf,
    },
}

/// An output folder whose files are whole or clearly partial: a run writes each file under
/// `NAME.partial`, and [`OutputFolder::commit`] moves them into place, removes files of an
/// earlier run that this run did not write, and writes `summary.json` last. A folder with a
/// `summary.json` therefore holds the complete set of one run; a run that is killed leaves only
/// `.partial` files beside the earlier run's, and the next run removes them.
#[derive(Debug)]
pub struct OutputFolder {
    dir: PathBuf,
    /// The partial files a resumed run continues, and the lengths it keeps of them.
    resumed: BTreeMap<String, u64>,
}

/// Identity of a file: device and inode on Unix, the canonical path elsewhere.
fn identity(path: &Path) -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).ok()?;
        Some((meta.dev(), meta.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

impl OutputFolder {
    /// Creates `dir` if needed and checks that no file the run may write (final or partial)
    /// is one of `inputs` (by file identity, and by canonical path for files not there yet).
    /// Removes partial files left by an interrupted earlier run.
    pub fn prepare(dir: &Path, inputs: &[PathBuf]) -> Result<OutputFolder, OutputError> {
        OutputFolder::prepare_keeping(dir, inputs, BTreeMap::new())
    }

    /// [`OutputFolder::prepare`] for a run that resumes from a checkpoint: the partial files in
    /// `lengths` are kept, cut back to their lengths at the checkpoint, and continued; other
    /// partial files are removed. A kept file that is missing or shorter than its length is an
    /// error: the folder is not the one the checkpoint was written for.
    pub fn resume(dir: &Path, inputs: &[PathBuf], lengths: BTreeMap<String, u64>) -> Result<OutputFolder, OutputError> {
        for (name, length) in &lengths {
            let path = dir.join(format!("{name}{PARTIAL_SUFFIX}"));
            let found = std::fs::metadata(&path)
                .map(|m| m.len())
                .map_err(|source| OutputError::Io { path: path.clone(), source })?;
            if found < *length {
                return Err(OutputError::ShorterThanCheckpoint { path, length: *length, found });
            }
        }
        OutputFolder::prepare_keeping(dir, inputs, lengths)
    }

    fn prepare_keeping(
        dir: &Path,
        inputs: &[PathBuf],
        resumed: BTreeMap<String, u64>,
    ) -> Result<OutputFolder, OutputError> {
        if dir.exists() && !dir.is_dir() {
            return Err(OutputError::NotAFolder(dir.into()));
        }
        std::fs::create_dir_all(dir).map_err(|source| OutputError::Io { path: dir.into(), source })?;
        let canonical_dir = dir.canonicalize().map_err(|source| OutputError::Io { path: dir.into(), source })?;
        /// An input as given, canonical, and its file identity.
        type Known = (PathBuf, Option<PathBuf>, Option<(u64, u64)>);
        let inputs: Vec<Known> = inputs.iter().map(|p| (p.clone(), p.canonicalize().ok(), identity(p))).collect();
        for name in ALL_FILES {
            for file in [name.to_string(), format!("{name}{PARTIAL_SUFFIX}")] {
                let path = canonical_dir.join(&file);
                let id = identity(&path);
                for (input, canonical, input_id) in &inputs {
                    let same_file = id.is_some() && id == *input_id;
                    let same_path = canonical.as_deref() == Some(path.as_path());
                    if same_file || same_path {
                        return Err(OutputError::WouldOverwriteInput { output: dir.join(&file), input: input.clone() });
                    }
                }
            }
        }
        for (input, canonical, _) in &inputs {
            let in_folder = canonical.as_deref().and_then(Path::parent) == Some(canonical_dir.as_path());
            // The name the file has in the folder (an input may be a link to it).
            let name = canonical.as_deref().and_then(Path::file_name).and_then(|n| n.to_str()).unwrap_or_default();
            if in_folder && is_output_name(name.strip_suffix(PARTIAL_SUFFIX).unwrap_or(name)) {
                return Err(OutputError::WouldOverwriteInput { output: dir.join(name), input: input.clone() });
            }
        }
        for name in output_names(dir) {
            let partial = dir.join(format!("{name}{PARTIAL_SUFFIX}"));
            if partial.exists() && !resumed.contains_key(&name) {
                std::fs::remove_file(&partial).map_err(|source| OutputError::Io { path: partial, source })?;
            }
        }
        Ok(OutputFolder { dir: dir.into(), resumed })
    }

    /// Opens `name` under its partial name for writing: a new, empty file, or, in a resumed
    /// run, the file kept from before the checkpoint, cut back to its length there.
    pub fn open(&self, name: &str) -> std::io::Result<File> {
        let path = self.partial(name);
        match self.resumed.get(name) {
            Some(length) => {
                let mut file = std::fs::OpenOptions::new().write(true).open(&path)?;
                file.set_len(*length)?;
                std::io::Seek::seek(&mut file, std::io::SeekFrom::End(0))?;
                Ok(file)
            }
            None => File::create(path),
        }
    }

    /// The length a resumed run keeps of `name`, when it continues it from a checkpoint.
    pub fn resumed_length(&self, name: &str) -> Option<u64> {
        self.resumed.get(name).copied()
    }

    /// True when the run continues `name` from a checkpoint.
    pub fn is_resumed(&self, name: &str) -> bool {
        self.resumed.contains_key(name)
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where `name` is written until the run commits.
    pub fn partial(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}{PARTIAL_SUFFIX}"))
    }

    /// Moves the written files into place and writes the summary: the earlier summary goes
    /// first (so no summary describes a mix), then each written file replaces its earlier
    /// version, files of an earlier run this run did not write are removed, and the new
    /// summary is written, synced and renamed into place last.
    pub fn commit<S: AsRef<str>>(&self, written: &[S], summary: &[u8]) -> std::io::Result<()> {
        let written: Vec<&str> = written.iter().map(AsRef::as_ref).collect();
        let remove = |path: &Path| match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
        remove(&self.dir.join(SUMMARY))?;
        let mut names = output_names(&self.dir);
        names.extend(written.iter().map(|n| n.to_string()));
        names.sort();
        names.dedup();
        for name in names.iter().filter(|n| *n != SUMMARY) {
            if written.contains(&name.as_str()) {
                std::fs::rename(self.partial(name), self.dir.join(name))?;
            } else {
                remove(&self.dir.join(name))?;
            }
        }
        let partial = self.partial(SUMMARY);
        {
            let mut file = File::create(&partial)?;
            file.write_all(summary)?;
            file.sync_all()?;
        }
        std::fs::rename(&partial, self.dir.join(SUMMARY))?;
        // The renames themselves reach the disk with the folder.
        if let Ok(dir) = File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        tracing::debug!(folder = %self.dir.display(), files = ?written, "outputs committed");
        Ok(())
    }
}

/// Sort key within a batch: kind of report, then time and a unique id. Alerts sort by the
/// dataflow time they were emitted at first (a batch holds every report of the times below the
/// watermark, so ordering by it first makes the file independent of where batches split), then
/// by their event time and id. For rules the two times agree; an account's anomaly alert is
/// emitted just after its window's end, which is its event time. Alerts, group summaries and
/// case versions share a kind, since the audit trail interleaves them by time; at equal times
/// and ids the last field puts an alert before its group and case, and a case's versions in
/// order. Feature rows likewise go by emission time first (an account's row, made from its pair
/// rows, follows them), then window end and key.
fn order_key(time: u64, report: &Report) -> (u8, u64, u64, u128, u32) {
    match report {
        Report::Symbol(s, _) => (0, 0, 0, s.0 as u128, 0),
        Report::Alert(a) => (1, time, a.time, a.id.0, 0),
        Report::Triaged(t) => (1, time, t.alert.time, t.alert.id.0, 0),
        // A group closes before an alert at its horizon's end (which may open the key's next
        // group); its id is its first alert's.
        Report::Group(g) => (1, time, g.horizon_end.saturating_sub(1), g.id.0, 1),
        Report::Case(c) => (1, time, c.time, c.case.0, 1 + c.version),
        Report::DeadLetter(d) => (2, ((d.source as u64) << 44) | d.offset, 0, 0, 0),
        Report::Late(e) => (3, e.origin.0, 0, 0, 0),
        Report::Ratio(r) => (4, time, 0, ((r.account.0 as u128) << 64) | r.instrument.0 as u128, 0),
        Report::Features(r) => (5, time, r.window_end, r.order_key().1 as u128, 0),
    }
}

/// The names of the files a run may have written in `dir`: the fixed names and the route files
/// found there (finished or partial).
fn output_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = ALL_FILES.iter().map(|n| n.to_string()).collect();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let file = entry.file_name();
            let Some(file) = file.to_str() else { continue };
            let name = file.strip_suffix(PARTIAL_SUFFIX).unwrap_or(file);
            if is_output_name(name) && !names.iter().any(|n| n == name) {
                names.push(name.to_string());
            }
        }
    }
    names
}

/// The folder's files, for messages.
pub fn describe(dir: &Path) -> Vec<PathBuf> {
    ALL_FILES.iter().map(|f| dir.join(f)).collect()
}

#[cfg(test)]
mod json_tests {
    use super::*;

    proptest::proptest! {
        /// The hand-written dead-letter line is byte for byte what serde_json writes.
        #[test]
        fn dead_letter_lines_match_serde_json(
            detail in ".{0,40}",
            raw in proptest::collection::vec(proptest::prelude::any::<char>(), 0..60),
            line in proptest::option::of(proptest::prelude::any::<u64>()),
            offset in proptest::prelude::any::<u64>(),
            named in proptest::prelude::any::<bool>(),
        ) {
            let raw: String = raw.into_iter().collect();
            let letter = DeadLetterLine {
                detail: Cow::Owned(detail),
                line,
                offset,
                raw: Cow::Owned(raw),
                reason: "bad_price",
                source: if named { SourceName::Name("a \"b\"\\c\u{1}.csv") } else { SourceName::Index(7) },
            };
            let mut ours = Vec::new();
            letter.write_json(&mut ours);
            let mut theirs = serde_json::to_vec(&letter).expect("serialize");
            theirs.push(b'\n');
            proptest::prop_assert_eq!(String::from_utf8_lossy(&ours), String::from_utf8_lossy(&theirs));
        }
    }
}

/// A worker's report writer (worker 0 holds the real one) and whether the sink has seen
/// everything: the sink sets `flushed` once its input is complete.
#[derive(Clone, Default)]
pub struct WriterSlot {
    /// The writer, on worker 0.
    pub writer: std::rc::Rc<RefCell<Option<ReportWriter>>>,
    /// True once the sink has written everything it will ever receive.
    pub flushed: std::rc::Rc<std::cell::Cell<bool>>,
}

impl WriterSlot {
    /// A slot holding `writer` (`None` on the workers that do not write).
    pub fn new(writer: Option<ReportWriter>) -> WriterSlot {
        WriterSlot { writer: std::rc::Rc::new(RefCell::new(writer)), flushed: Default::default() }
    }

    /// Steps `worker` until the sink has seen its complete input: every report has been handed
    /// to the writer. Parks while idle, waking at least every 100 ms.
    pub fn drive(&self, worker: &mut timely::worker::Worker) {
        while !self.flushed.get() {
            worker.step_or_park(Some(std::time::Duration::from_millis(100)));
        }
    }

    /// Facts about how the run ended (whether it read everything, why it stopped) for the
    /// audit trail's `run_finished` record, if this worker holds the writer.
    pub fn set_run_end(&self, facts: Json) {
        if let Some(writer) = self.writer.borrow_mut().as_mut() {
            writer.run_end = Some(facts);
        }
    }

    /// Flushes and syncs the writer, if this worker holds it, and returns what it wrote.
    pub fn finish(&self) -> Option<std::io::Result<WrittenCounts>> {
        self.writer.borrow_mut().as_mut().map(|w| w.finish())
    }
}

/// Extension trait: the sink that writes reports into an output folder in watermark order.
pub trait WriteReports<'scope> {
    /// Sends every report to worker 0, which writes each time's reports once the watermark has
    /// passed that time (later reports cannot precede them), in a deterministic order within the
    /// batch; so the files are the same on any number of workers. The slot's `flushed` turns
    /// true when the input is complete and everything has been written.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use surveil::model::{Alert, Report};
    /// use surveil::output::{OutputFolder, Renderer, ReportWriter, WriteReports, WriterSlot};
    /// use surveil::reference::ReferenceData;
    /// use timely::dataflow::operators::ToStream;
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let folder = OutputFolder::prepare(dir.path(), &[]).unwrap();
    /// let counts = timely::execute_directly(move |worker| {
    ///     let renderer = Renderer::new(Arc::new(ReferenceData::new(4)), vec![]);
    ///     let slot = WriterSlot::new(Some(ReportWriter::create(&folder, renderer).unwrap()));
    ///     let sink = slot.clone();
    ///     worker.dataflow::<u64, _, _>(|scope| {
    ///         let alert = Alert::builder("demo", 5).explain("an alert").build();
    ///         vec![Report::Alert(Box::new(alert))].to_stream(scope).write_reports(sink);
    ///     });
    ///     slot.drive(worker);
    ///     let counts = slot.finish().unwrap().unwrap();
    ///     folder.commit(&["alerts.jsonl", "dead_letters.jsonl", "late_events.jsonl", "order_to_trade.jsonl"], b"{}").unwrap();
    ///     counts
    /// });
    /// assert_eq!(counts.alerts_by_rule["demo"], 1);
    /// assert!(std::fs::read_to_string(dir.path().join("alerts.jsonl")).unwrap().contains("an alert"));
    /// ```
    fn write_reports(self, slot: WriterSlot);
}

impl<'scope> WriteReports<'scope> for timely::dataflow::Stream<'scope, u64, Vec<Report>> {
    fn write_reports(self, slot: WriterSlot) {
        use timely::dataflow::channels::pact::Exchange;
        use timely::dataflow::operators::Operator;
        let WriterSlot { writer, flushed } = slot;
        // Reports waiting for the watermark, by time: only the ready prefix is touched per activation.
        let mut pending: BTreeMap<u64, Vec<Report>> = BTreeMap::new();
        self.sink(Exchange::new(|_: &Report| 0), "WriteReports", move |(input, frontier)| {
            let mut guard = writer.borrow_mut();
            match guard.as_mut() {
                None => input.for_each(|_, _| {}),
                Some(writer) => {
                    input.for_each_stamp(|cap, data| {
                        let time = cap.stamp().iter().copied().min().unwrap_or(0);
                        for batch in data {
                            pending.entry(time).or_default().append(batch);
                        }
                    });
                    // Write what the watermark has passed: later reports cannot precede it.
                    let ready = match frontier.frontier().first().copied() {
                        Some(w) => {
                            let later = pending.split_off(&w);
                            std::mem::replace(&mut pending, later)
                        }
                        None => std::mem::take(&mut pending),
                    };
                    if !ready.is_empty() {
                        let mut ready: Vec<(u64, Report)> = ready
                            .into_iter()
                            .flat_map(|(t, reports)| reports.into_iter().map(move |r| (t, r)))
                            .collect();
                        writer.write_batch(&mut ready);
                    }
                    writer.written_through(frontier.frontier().first().copied().unwrap_or(u64::MAX));
                }
            }
            if frontier.is_empty() {
                // Everything has arrived and is written.
                flushed.set(true);
            }
        });
    }
}
