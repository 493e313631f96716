//! Output: alerts, dead letters, late events and order-to-trade values as JSON Lines.
//!
//! All reports travel to worker 0, which writes each batch once the watermark has passed it,
//! after applying the dictionary entries of that batch, so every name can be shown. Alerts
//! are written in `(event time, id)` order, which makes `alerts.jsonl` identical (apart from
//! the `detected_at` wall-clock field) on any number of workers.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value as Json, json};

use crate::alert::{Alert, Value};
use crate::detect::order_to_trade::RatioReport;
use crate::ingest::DeadLetter;
use crate::ingest::lines::{LineIndex, is_gzip};
use crate::ingest::time::format_time;
use crate::model::{Body, Event, Symbol, SymbolTable};
use crate::reference::ReferenceData;
use crate::report::Report;

/// File names in the output folder.
pub const ALERTS: &str = "alerts.jsonl";
/// Dead letters.
pub const DEAD_LETTERS: &str = "dead_letters.jsonl";
/// Late events.
pub const LATE: &str = "late_events.jsonl";
/// Order-to-trade values.
pub const RATIOS: &str = "order_to_trade.jsonl";
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
            Body::NewOrder { order, side: s, price, quantity } => {
                put("order_id", self.name(order));
                put("side", json!(s.as_str()));
                put("price", price.map_or(Json::Null, |p| self.price(event.instrument, p)));
                put("quantity", json!(quantity));
            }
            Body::Replace { order, side: s, price, quantity } => {
                put("order_id", self.name(order));
                put("side", side(s));
                put("price", price.map_or(Json::Null, |p| self.price(event.instrument, p)));
                put("quantity", json!(quantity));
            }
            Body::Cancel { order, side: s, price, quantity } => {
                put("order_id", self.name(order));
                put("side", side(s));
                put("price", price.map_or(Json::Null, |p| self.price(event.instrument, p)));
                put("quantity", quantity.map_or(Json::Null, |q| json!(q)));
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
            Body::Trade { buyer, seller, price, quantity, aggressor } => {
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
        json!({
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
        })
    }

    /// The 1-based line of `offset` in input `source`, when the input is a plain file.
    fn line_of(&self, source: u32, offset: u64) -> Option<u64> {
        let mut indexes = self.line_indexes.borrow_mut();
        let index = indexes.entry(source).or_insert_with(|| {
            let path = Path::new(self.sources.get(source as usize)?);
            // Offsets of a gzipped input count decompressed bytes, which the file does not hold.
            (path.is_file() && matches!(is_gzip(path), Ok(false))).then(|| LineIndex::new(path))
        });
        index.as_mut()?.line_at(offset).ok()
    }

    /// A dead letter as a JSON object. Letters judged away from the file (`unknown_order`)
    /// get their line here, from the byte offset, when the input is a plain file.
    pub fn dead_letter(&self, letter: &DeadLetter) -> Json {
        let line = letter.line.or_else(|| self.line_of(letter.source, letter.offset));
        json!({
            "source": self.source(letter.source),
            "line": line,
            "offset": letter.offset,
            "raw": letter.raw,
            "reason": letter.reason.as_str(),
            "detail": letter.detail,
        })
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
}

/// Writes reports into JSON Lines files in a folder.
pub struct ReportWriter {
    renderer: Renderer,
    alerts: BufWriter<File>,
    dead_letters: BufWriter<File>,
    late: BufWriter<File>,
    ratios: BufWriter<File>,
    features: Option<(BufWriter<File>, u64)>,
    /// Counts so far.
    pub counts: WrittenCounts,
    error: Option<std::io::Error>,
}

impl ReportWriter {
    /// Creates (truncates) the output files in `dir`.
    pub fn create(dir: &Path, renderer: Renderer) -> std::io::Result<ReportWriter> {
        std::fs::create_dir_all(dir)?;
        let open =
            |name: &str| -> std::io::Result<BufWriter<File>> { Ok(BufWriter::new(File::create(dir.join(name))?)) };
        Ok(ReportWriter {
            renderer,
            alerts: open(ALERTS)?,
            dead_letters: open(DEAD_LETTERS)?,
            late: open(LATE)?,
            ratios: open(RATIOS)?,
            features: None,
            counts: WrittenCounts::default(),
            error: None,
        })
    }

    /// Also writes feature rows (windows of `window_ns`) to `features.csv` in `dir`.
    pub fn export_features(&mut self, dir: &Path, window_ns: u64) -> std::io::Result<()> {
        let mut file = BufWriter::new(File::create(dir.join(crate::features::export::FEATURES_FILE))?);
        writeln!(file, "{}", crate::features::export::header())?;
        self.features = Some((file, window_ns));
        Ok(())
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
        for (_, report) in batch.drain(..) {
            let result = match &report {
                Report::Symbol(..) => Ok(()),
                Report::Alert(alert) => {
                    *self.counts.alerts_by_rule.entry(alert.rule.as_str().into()).or_default() += 1;
                    writeln!(self.alerts, "{}", self.renderer.alert(alert))
                }
                Report::DeadLetter(letter) => {
                    *self.counts.dead_letters_by_reason.entry(letter.reason.as_str().into()).or_default() += 1;
                    writeln!(self.dead_letters, "{}", self.renderer.dead_letter(letter))
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
    }

    /// Flushes the files; reports the first write error, if any.
    pub fn finish(&mut self) -> std::io::Result<WrittenCounts> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        for w in [&mut self.alerts, &mut self.dead_letters, &mut self.late, &mut self.ratios] {
            w.flush()?;
        }
        if let Some((file, _)) = &mut self.features {
            file.flush()?;
        }
        self.counts.symbol_collisions = self.renderer.names.collisions();
        Ok(self.counts.clone())
    }
}

/// Sort key within a batch: kind of report, then time and a unique id. Alerts sort by the
/// dataflow time they were emitted at first (a batch holds every report of the times below the
/// watermark, so ordering by it first makes the file independent of where batches split), then
/// by their event time and id. For rules the two times agree; an account's anomaly alert is
/// emitted just after its window's end, which is its event time.
fn order_key(time: u64, report: &Report) -> (u8, u64, u64, u128) {
    match report {
        Report::Symbol(s, _) => (0, 0, 0, s.0 as u128),
        Report::Alert(a) => (1, time, a.time, a.id.0),
        Report::DeadLetter(d) => (2, ((d.source as u64) << 44) | d.offset, 0, 0),
        Report::Late(e) => (3, e.origin.0, 0, 0),
        Report::Ratio(r) => (4, time, 0, ((r.account.0 as u128) << 64) | r.instrument.0 as u128),
        Report::Features(r) => (5, r.window_end, 0, crate::detect::anomaly::order_row(r).1 as u128),
    }
}

/// The folder's files, for messages.
pub fn describe(dir: &Path) -> Vec<PathBuf> {
    [ALERTS, DEAD_LETTERS, LATE, RATIOS, SUMMARY].iter().map(|f| dir.join(f)).collect()
}
