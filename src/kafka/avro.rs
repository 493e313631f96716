//! Avro messages in the Confluent wire format: a zero byte, the writer schema's id (four bytes,
//! big-endian), then the Avro binary datum of one event (`docs/kafka.md`, "Avro").
//!
//! A message is decoded with the schema its id names, fetched from a schema registry (the
//! Confluent REST API, `GET /schemas/ids/{id}`) once per run and cached, or read from a local
//! schema file when there is no registry to ask. The decoded record is then validated exactly
//! as a JSON Lines event is: a record's fields are the canonical fields by name, whatever schema
//! wrote them, so a producer's own schema works as long as it names its fields the canonical way
//! (unknown fields are ignored, as unknown JSON fields are). [`EVENT_SCHEMA`] is the schema
//! `surveil kafka produce --avro` writes with.
//!
//! Each failure has one outcome: a message that is not in the wire format, names a schema the
//! registry does not know, or does not decode with its schema is a dead letter (`bad_avro`,
//! `unknown_schema`); a registry that cannot be reached stops the run without committing past
//! the message, because the message itself may be good.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apache_avro::Schema;
use apache_avro::types::Value;
use serde_json::{Map, Number, Value as Json};

use super::KafkaError;
use crate::config::AvroConfig;
use crate::model::{RejectReason, Rejection};

pub use crate::avro_json::EVENT_SCHEMA;
use crate::avro_json::decimal_text;

/// The first byte of a message in the Confluent wire format.
const MAGIC: u8 = 0;

/// How long an id the registry did not know is not asked for again (a schema registered just
/// now may not have reached the replica that answered).
const UNKNOWN_RETRY: Duration = Duration::from_secs(10);

/// Why a message could not be turned into an event's JSON.
#[derive(Debug)]
pub enum DecodeError {
    /// The message is at fault: a dead letter with this reason.
    Rejected(Rejection),
    /// The schema registry could not be asked: the message may be good, so the run stops
    /// rather than refuse it.
    Unavailable(KafkaError),
}

/// The schemas messages are read with, shared by every partition of a run.
pub struct Schemas {
    registry: Option<Registry>,
    /// The local schema, and the one id it is for (any id when `None`).
    local: Option<(Option<u32>, Arc<Readable>)>,
    known: Mutex<HashMap<u32, Known>>,
    /// How long the registry may take to answer, retries included.
    patience: Duration,
    /// The registry could not be reached once: the run is stopping, and no other partition
    /// waits for it again.
    unreachable: std::sync::atomic::AtomicBool,
}

/// A writer schema, with how its messages are decoded (worked out once per schema).
struct Readable {
    schema: Schema,
    /// Written straight as JSON text (`crate::avro_json`), with no tree of values.
    direct: bool,
    /// Names no type by reference, so `apache-avro` needs no resolving of names per message.
    self_contained: bool,
}

impl Readable {
    fn new(schema: Schema) -> Arc<Readable> {
        let direct = crate::avro_json::supported(&schema);
        let self_contained = self_contained(&schema);
        Arc::new(Readable { schema, direct, self_contained })
    }
}

#[derive(Clone)]
enum Known {
    Schema(Arc<Readable>),
    /// The registry did not know the id, asked at this instant.
    Unknown(Instant, String),
}

impl Schemas {
    /// The schemas of `settings`: the registry's, the local file's, or, with neither, the
    /// bundled [`EVENT_SCHEMA`] for every id. `timeout` bounds each request to the registry.
    pub fn new(settings: &AvroConfig, timeout: Duration) -> Result<Schemas, KafkaError> {
        let registry = match &settings.registry {
            Some(url) => Some(Registry::new(url, timeout, settings.ca_file.as_deref())?),
            None => None,
        };
        let local = match (&settings.schema_file, &registry) {
            (Some(path), _) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| KafkaError::Config(format!("kafka.avro.schema_file {}: {e}", path.display())))?;
                let schema = Schema::parse_str(&text).map_err(|e| {
                    KafkaError::Config(format!("kafka.avro.schema_file {}: not an Avro schema: {e}", path.display()))
                })?;
                Some((settings.schema_id, Readable::new(schema)))
            }
            (None, None) => Some((settings.schema_id, Readable::new(event_schema()))),
            (None, Some(_)) => None,
        };
        Ok(Schemas {
            registry,
            local,
            known: Mutex::new(HashMap::new()),
            patience: timeout,
            unreachable: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Decodes one message into the JSON object of its event, written to `json`.
    pub fn decode(&self, payload: &[u8], json: &mut Vec<u8>) -> Result<(), DecodeError> {
        let bad = |detail: String| DecodeError::Rejected(Rejection::new(RejectReason::BadAvro, detail));
        let (id, mut datum) = match payload {
            [MAGIC, a, b, c, d, datum @ ..] => (u32::from_be_bytes([*a, *b, *c, *d]), datum),
            [] => return Err(bad("an empty message".into())),
            [first, ..] if *first != MAGIC => {
                return Err(bad(format!(
                    "not in the Confluent wire format: the first byte is {first:#04x}, not 0 (a schema id follows it)"
                )));
            }
            _ => return Err(bad(format!("{} bytes: too short for a schema id", payload.len()))),
        };
        let readable = self.schema(id)?;
        let schema = &readable.schema;
        json.clear();
        if readable.direct {
            crate::avro_json::write_record(schema, &mut datum, json)
                .map_err(|e| bad(format!("does not decode with schema {id}: {e}")))?;
        } else {
            // `from_avro_datum` resolves the schema's named types for every message (a tenth
            // of the decoding, measured); a schema that names none needs no resolving.
            let value = match readable.self_contained {
                true => apache_avro::from_avro_datum_schemata(schema, Vec::new(), &mut datum, None),
                false => apache_avro::from_avro_datum(schema, &mut datum, None),
            }
            .map_err(|e| bad(format!("does not decode with schema {id}: {e}")))?;
            let object = record_to_json(&value, schema).map_err(|detail| bad(format!("schema {id}: {detail}")))?;
            serde_json::to_writer(&mut *json, &object).map_err(|e| bad(e.to_string()))?;
        }
        if !datum.is_empty() {
            return Err(bad(format!("{} bytes left over after the record of schema {id}", datum.len())));
        }
        Ok(())
    }

    /// The schema of `id`: the local one, a cached one, or the registry's.
    fn schema(&self, id: u32) -> Result<Arc<Readable>, DecodeError> {
        if let Some((wanted, schema)) = &self.local
            && wanted.is_none_or(|wanted| wanted == id)
        {
            return Ok(schema.clone());
        }
        let unknown = |detail: String| DecodeError::Rejected(Rejection::new(RejectReason::UnknownSchema, detail));
        let cached = self.known.lock().ok().and_then(|known| known.get(&id).cloned());
        match cached {
            Some(Known::Schema(schema)) => return Ok(schema),
            Some(Known::Unknown(asked, detail)) if asked.elapsed() < UNKNOWN_RETRY => return Err(unknown(detail)),
            _ => {}
        }
        let Some(registry) = &self.registry else {
            let local =
                self.local.as_ref().and_then(|(wanted, _)| *wanted).map(|w| format!(" (the local schema is {w})"));
            return Err(unknown(format!(
                "schema id {id}: no schema registry is configured{}",
                local.unwrap_or_default()
            )));
        };
        if self.unreachable.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(DecodeError::Unavailable(
                registry.unavailable(format!("schema id {id}: not asked, the registry could not be reached before")),
            ));
        }
        let fetched = registry.fetch(id, self.patience).map_err(|error| {
            self.unreachable.store(true, std::sync::atomic::Ordering::Relaxed);
            DecodeError::Unavailable(error)
        })?;
        let entry = match fetched {
            Fetched::Schema(text) => match Schema::parse_str(&text) {
                Ok(schema) => Known::Schema(Readable::new(schema)),
                Err(e) => {
                    Known::Unknown(Instant::now(), format!("schema id {id}: the registry's schema is not Avro: {e}"))
                }
            },
            Fetched::NotAvro(kind) => {
                Known::Unknown(Instant::now(), format!("schema id {id} is a {kind} schema, not Avro"))
            }
            Fetched::Unknown(said) => {
                Known::Unknown(Instant::now(), format!("schema id {id} is not known to {}: {said}", registry.url))
            }
        };
        if let Ok(mut known) = self.known.lock() {
            known.insert(id, entry.clone());
        }
        match entry {
            Known::Schema(schema) => Ok(schema),
            Known::Unknown(_, detail) => Err(unknown(detail)),
        }
    }
}

/// Whether `schema` refers to no named type by name (a reference needs the schema's names
/// resolved before decoding).
fn self_contained(schema: &Schema) -> bool {
    match schema {
        Schema::Ref { .. } => false,
        Schema::Record(record) => record.fields.iter().all(|f| self_contained(&f.schema)),
        Schema::Union(union) => union.variants().iter().all(self_contained),
        Schema::Array(array) => self_contained(&array.items),
        Schema::Map(map) => self_contained(&map.types),
        Schema::Decimal(decimal) => self_contained(&decimal.inner),
        _ => true,
    }
}

/// The bundled event schema, parsed.
pub fn event_schema() -> Schema {
    // The bundled text is a valid schema: the unit tests parse it.
    Schema::parse_str(EVENT_SCHEMA).unwrap_or(Schema::Null)
}

/// What the registry said about an id.
enum Fetched {
    Schema(String),
    /// A schema of another type (`PROTOBUF`, `JSON`).
    NotAvro(String),
    Unknown(String),
}

/// A schema registry speaking the Confluent REST API.
struct Registry {
    url: String,
    agent: ureq::Agent,
}

impl Registry {
    fn new(url: &str, timeout: Duration, ca_file: Option<&std::path::Path>) -> Result<Registry, KafkaError> {
        let agent = crate::webhook::http_agent(timeout, ca_file)
            .map_err(|e| KafkaError::Config(format!("kafka.avro.registry: {e}")))?;
        Ok(Registry { url: url.trim_end_matches('/').to_string(), agent })
    }

    fn unavailable(&self, message: String) -> KafkaError {
        KafkaError::Registry { url: self.url.clone(), message }
    }

    /// Asks for the schema of `id`, retrying what may pass (connection errors, 5xx) for up to
    /// `patience`.
    fn fetch(&self, id: u32, patience: Duration) -> Result<Fetched, KafkaError> {
        let url = format!("{}/schemas/ids/{id}", self.url);
        let deadline = Instant::now() + patience;
        let (_, outcome) =
            crate::webhook::with_retries(patience, Duration::from_millis(200), u32::MAX, &|| Some(deadline), |limit| {
                let request = self.agent.get(&url).config().timeout_global(Some(limit)).build();
                crate::webhook::fetch(request.header("Accept", "application/vnd.schemaregistry.v1+json"))
            });
        let answer = match outcome {
            Ok((_, answer)) => answer,
            // 404 with error code 40403: no schema of this id.
            Err(Some(failure)) if failure.status == Some(404) => return Ok(Fetched::Unknown(failure.error)),
            Err(Some(failure)) => return Err(self.unavailable(format!("schema id {id}: {}", failure.error))),
            Err(None) => return Err(self.unavailable(format!("schema id {id}: no answer within {patience:?}"))),
        };
        let body: Json = serde_json::from_str(&answer)
            .map_err(|e| self.unavailable(format!("schema id {id}: the answer is not JSON: {e}")))?;
        match body.get("schemaType").and_then(Json::as_str) {
            Some(kind) if !kind.eq_ignore_ascii_case("AVRO") => return Ok(Fetched::NotAvro(kind.to_string())),
            _ => {}
        }
        match body.get("schema").and_then(Json::as_str) {
            Some(schema) => Ok(Fetched::Schema(schema.to_string())),
            None => Err(self.unavailable(format!("schema id {id}: the answer has no \"schema\": {answer}"))),
        }
    }

    /// Registers `schema` under `subject` (or finds it registered) and returns its id.
    fn register(&self, subject: &str, schema: &str, patience: Duration) -> Result<u32, KafkaError> {
        let url = format!("{}/subjects/{subject}/versions", self.url);
        let body = serde_json::json!({ "schema": schema }).to_string();
        let deadline = Instant::now() + patience;
        let (_, outcome) =
            crate::webhook::with_retries(patience, Duration::from_millis(200), u32::MAX, &|| Some(deadline), |limit| {
                let request = self.agent.post(&url).config().timeout_global(Some(limit)).build();
                crate::webhook::exchange(
                    request.header("Content-Type", "application/vnd.schemaregistry.v1+json"),
                    body.as_bytes(),
                )
            });
        let answer = match outcome {
            Ok((_, answer)) => answer,
            Err(Some(failure)) => return Err(self.unavailable(format!("registering {subject}: {}", failure.error))),
            Err(None) => return Err(self.unavailable(format!("registering {subject}: no answer within {patience:?}"))),
        };
        serde_json::from_str::<Json>(&answer)
            .ok()
            .and_then(|body| body.get("id").and_then(Json::as_u64))
            .and_then(|id| u32::try_from(id).ok())
            .ok_or_else(|| self.unavailable(format!("registering {subject}: the answer has no id: {answer}")))
    }
}

/// Registers the bundled [`EVENT_SCHEMA`] with the registry at `url` under `subject` (the
/// Confluent default for a topic's values is `TOPIC-value`) and returns its id.
pub fn register_event_schema(url: &str, subject: &str, timeout: Duration) -> Result<u32, KafkaError> {
    Registry::new(url, timeout, None)?.register(subject, EVENT_SCHEMA, timeout)
}

/// Encodes an event's canonical JSON object (as [`crate::output::Renderer::event`] gives it)
/// with [`EVENT_SCHEMA`] in the wire format under `schema_id`.
pub struct EventEncoder {
    schema: Schema,
    header: [u8; 5],
}

impl EventEncoder {
    /// An encoder that names `schema_id` in every message.
    pub fn new(schema_id: u32) -> EventEncoder {
        let [a, b, c, d] = schema_id.to_be_bytes();
        EventEncoder { schema: event_schema(), header: [MAGIC, a, b, c, d] }
    }

    /// Appends the message of `event` (a JSON object with `event_time_ns`) to `out`.
    pub fn encode(&self, event: &Json, out: &mut Vec<u8>) -> Result<(), KafkaError> {
        let bad = |message: String| KafkaError::Config(format!("an event cannot be written in Avro: {message}"));
        let Schema::Record(record) = &self.schema else { return Err(bad("the bundled schema is not a record".into())) };
        let mut fields = Vec::with_capacity(record.fields.len());
        for field in &record.fields {
            let json = match field.name.as_str() {
                "event_time" => event.get("event_time_ns"),
                name => event.get(name),
            };
            let value = json_to_avro(json.unwrap_or(&Json::Null), &field.schema)
                .map_err(|e| bad(format!("{}: {e}", field.name)))?;
            fields.push((field.name.clone(), value));
        }
        out.extend_from_slice(&self.header);
        let datum = apache_avro::to_avro_datum(&self.schema, Value::Record(fields)).map_err(|e| bad(e.to_string()))?;
        out.extend_from_slice(&datum);
        Ok(())
    }
}

/// A JSON value as the Avro value of `schema` (the types of the bundled schema).
fn json_to_avro(json: &Json, schema: &Schema) -> Result<Value, String> {
    Ok(match (schema, json) {
        (Schema::Union(union), json) => {
            let variants = union.variants();
            if json.is_null()
                && let Some(index) = variants.iter().position(|v| matches!(v, Schema::Null))
            {
                return Ok(Value::Union(index as u32, Box::new(Value::Null)));
            }
            let (index, variant) = variants
                .iter()
                .enumerate()
                .find(|(_, v)| !matches!(v, Schema::Null))
                .ok_or_else(|| "a union of null alone".to_string())?;
            Value::Union(index as u32, Box::new(json_to_avro(json, variant)?))
        }
        (Schema::Null, Json::Null) => Value::Null,
        (Schema::String, Json::String(text)) => Value::String(text.clone()),
        (Schema::String, Json::Number(number)) => Value::String(number.to_string()),
        (Schema::String, Json::Bool(flag)) => Value::String(flag.to_string()),
        (Schema::Boolean, Json::Bool(flag)) => Value::Boolean(*flag),
        (Schema::Long | Schema::TimestampNanos, json) => {
            let number = match json {
                Json::Number(n) => n.as_i64(),
                Json::String(s) => s.parse().ok(),
                _ => None,
            }
            .ok_or_else(|| format!("{json} is not a 64-bit integer"))?;
            match schema {
                Schema::TimestampNanos => Value::TimestampNanos(number),
                _ => Value::Long(number),
            }
        }
        (schema, json) => return Err(format!("{json} does not fit {schema:?}")),
    })
}

/// A decoded record as the JSON object of its fields.
fn record_to_json(value: &Value, schema: &Schema) -> Result<Json, String> {
    let (Value::Record(fields), Schema::Record(record)) = (value, schema) else {
        return Err("the message is not an Avro record".into());
    };
    let mut object = Map::with_capacity(fields.len());
    for (name, value) in fields {
        let field_schema = record.lookup.get(name).and_then(|&i| record.fields.get(i)).map(|f| &f.schema);
        object.insert(name.clone(), to_json(value, field_schema).map_err(|e| format!("field {name}: {e}"))?);
    }
    Ok(Json::Object(object))
}

/// An Avro value as JSON the canonical parser reads: times as nanoseconds, decimals as exact
/// text, enums and UUIDs as text, unions as the value they hold. `schema` is the value's
/// schema where known (a decimal's scale is in it).
fn to_json(value: &Value, schema: Option<&Schema>) -> Result<Json, String> {
    let nanos = |value: i64, per: i64| {
        value.checked_mul(per).map(Json::from).ok_or_else(|| format!("time {value} is out of range"))
    };
    Ok(match value {
        Value::Null => Json::Null,
        Value::Boolean(flag) => Json::Bool(*flag),
        Value::Int(n) | Value::Date(n) | Value::TimeMillis(n) => Json::from(*n),
        Value::Long(n) | Value::TimeMicros(n) => Json::from(*n),
        Value::Float(x) => float(f64::from(*x)),
        Value::Double(x) => float(*x),
        Value::String(text) | Value::Enum(_, text) => Json::String(text.clone()),
        Value::Uuid(uuid) => Json::String(uuid.to_string()),
        Value::TimestampMillis(t) => nanos(*t, 1_000_000)?,
        Value::TimestampMicros(t) => nanos(*t, 1_000)?,
        Value::TimestampNanos(t) => Json::from(*t),
        Value::LocalTimestampMillis(_) | Value::LocalTimestampMicros(_) | Value::LocalTimestampNanos(_) => {
            // A local timestamp has no zone: which instant it names is unknown.
            Json::String("a local timestamp (no time zone)".into())
        }
        Value::Union(index, inner) => {
            let variant = match schema {
                Some(Schema::Union(union)) => union.variants().get(*index as usize),
                _ => None,
            };
            to_json(inner, variant)?
        }
        Value::Decimal(decimal) => {
            let Some(Schema::Decimal(decimal_schema)) = schema else {
                return Err("a decimal whose scale is unknown (a named type defined elsewhere)".into());
            };
            let bytes = <Vec<u8>>::try_from(decimal).map_err(|e| e.to_string())?;
            Json::String(decimal_text(&bytes, decimal_schema.scale)?)
        }
        Value::BigDecimal(decimal) => Json::String(decimal.to_string()),
        Value::Bytes(bytes) | Value::Fixed(_, bytes) => Json::Array(bytes.iter().map(|&b| Json::from(b)).collect()),
        Value::Array(items) => {
            let item = match schema {
                Some(Schema::Array(array)) => Some(array.items.as_ref()),
                _ => None,
            };
            Json::Array(items.iter().map(|v| to_json(v, item)).collect::<Result<_, _>>()?)
        }
        Value::Map(entries) => {
            let item = match schema {
                Some(Schema::Map(map)) => Some(map.types.as_ref()),
                _ => None,
            };
            let mut object = Map::new();
            for (key, value) in entries {
                object.insert(key.clone(), to_json(value, item)?);
            }
            Json::Object(object)
        }
        Value::Record(_) => match schema {
            Some(schema @ Schema::Record(_)) => record_to_json(value, schema)?,
            _ => return Err("a record of a named type defined elsewhere".into()),
        },
        Value::Duration(duration) => Json::String(format!("{duration:?}")),
    })
}

/// A float as a JSON number of its shortest text (the canonical parser reads the digits, so
/// `101.25` stays 101.25); not a number is text, which the parser refuses.
fn float(x: f64) -> Json {
    Number::from_f64(x).map_or_else(|| Json::String(x.to_string()), Json::Number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_schema_parses_and_round_trips_an_event() {
        assert!(matches!(event_schema(), Schema::Record(_)));
        let encoder = EventEncoder::new(7);
        let event = serde_json::json!({
            "event_time": "2024-03-01T14:30:00.000000100Z", "event_time_ns": 1_709_303_400_000_000_100u64,
            "kind": "new", "instrument": "ACME", "order_id": "O1", "account": "ACC001", "side": "buy",
            "price": "101.25", "quantity": 500, "hidden": false,
        });
        let mut message = Vec::new();
        encoder.encode(&event, &mut message).expect("encodes");
        assert_eq!(&message[..5], &[0, 0, 0, 0, 7]);
        let schemas = Schemas::new(&AvroConfig::default(), Duration::from_secs(1)).expect("schemas");
        let mut json = Vec::new();
        schemas.decode(&message, &mut json).expect("decodes");
        let decoded: Json = serde_json::from_slice(&json).expect("json");
        assert_eq!(decoded["event_time"], Json::from(1_709_303_400_000_000_100u64));
        assert_eq!(decoded["price"], "101.25");
        assert_eq!(decoded["quantity"], 500);
        assert_eq!(decoded["account"], "ACC001");
        assert_eq!(decoded["hidden"], false);
        assert_eq!(decoded["trader"], Json::Null);
    }

    #[test]
    fn messages_not_in_the_wire_format_are_refused_with_the_reason() {
        let schemas = Schemas::new(&AvroConfig::default(), Duration::from_secs(1)).expect("schemas");
        let reason = |payload: &[u8]| match schemas.decode(payload, &mut Vec::new()) {
            Err(DecodeError::Rejected(rejection)) => (rejection.reason, rejection.detail),
            other => panic!("{other:?}"),
        };
        assert_eq!(reason(b"").0, RejectReason::BadAvro);
        assert!(reason(b"{\"kind\":\"new\"}").1.contains("first byte is 0x7b"));
        assert!(reason(&[0, 0, 1]).1.contains("too short"));
        // A datum cut short within its required fields, and one with bytes after the record.
        // (The Avro decoder reads a union cut off at the very end as null: a message is whole
        // or absent on Kafka, so only the required fields are checked here.)
        let mut message = Vec::new();
        let event = serde_json::json!({"event_time_ns": 1, "kind": "new", "instrument": "X"});
        EventEncoder::new(1).encode(&event, &mut message).expect("encodes");
        assert!(reason(&message[..9]).1.contains("does not decode"));
        message.push(0);
        assert!(reason(&message).1.contains("left over"));
    }

    #[test]
    fn a_local_schema_for_one_id_refuses_the_others_without_a_registry() {
        let settings = AvroConfig { schema_id: Some(3), ..AvroConfig::default() };
        let schemas = Schemas::new(&settings, Duration::from_secs(1)).expect("schemas");
        let mut message = Vec::new();
        let event = serde_json::json!({"event_time_ns": 1, "kind": "new", "instrument": "X"});
        EventEncoder::new(4).encode(&event, &mut message).expect("encodes");
        match schemas.decode(&message, &mut Vec::new()) {
            Err(DecodeError::Rejected(rejection)) => {
                assert_eq!(rejection.reason, RejectReason::UnknownSchema);
                assert!(rejection.detail.contains("schema id 4"), "{}", rejection.detail);
            }
            other => panic!("{other:?}"),
        }
        message.clear();
        EventEncoder::new(3).encode(&event, &mut message).expect("encodes");
        assert!(schemas.decode(&message, &mut Vec::new()).is_ok());
    }

    #[test]
    fn decimals_times_and_enums_of_other_schemas_read_as_the_canonical_text() {
        assert_eq!(decimal_text(&[0x27, 0x8d], 2).as_deref(), Ok("101.25"));
        assert_eq!(decimal_text(&[0x05], 3).as_deref(), Ok("0.005"));
        assert_eq!(decimal_text(&[0xff, 0x9c], 2).as_deref(), Ok("-1.00"));
        assert_eq!(decimal_text(&[0x07], 0).as_deref(), Ok("7"));
        assert!(decimal_text(&[1; 17], 2).is_err());
        let schema = Schema::parse_str(
            r#"{"type":"record","name":"Order","fields":[
                {"name":"event_time","type":{"type":"long","logicalType":"timestamp-micros"}},
                {"name":"kind","type":{"type":"enum","name":"Kind","symbols":["new","cancel"]}},
                {"name":"instrument","type":"string"},
                {"name":"price","type":["null",{"type":"bytes","logicalType":"decimal","precision":9,"scale":2}]},
                {"name":"quantity","type":"int"},
                {"name":"note","type":{"type":"map","values":"double"}}]}"#,
        )
        .expect("schema");
        let record = Value::Record(vec![
            ("event_time".into(), Value::TimestampMicros(1_000_001)),
            ("kind".into(), Value::Enum(0, "new".into())),
            ("instrument".into(), Value::String("ACME".into())),
            ("price".into(), Value::Union(1, Box::new(Value::Decimal(vec![0x27, 0x8d].into())))),
            ("quantity".into(), Value::Int(300)),
            ("note".into(), Value::Map([("x".to_string(), Value::Double(0.5))].into())),
        ]);
        let json = record_to_json(&record, &schema).expect("json");
        assert_eq!(json["event_time"], 1_000_001_000i64);
        assert_eq!(json["kind"], "new");
        assert_eq!(json["price"], "101.25");
        assert_eq!(json["quantity"], 300);
        assert_eq!(json["note"]["x"], 0.5);
    }

    /// The JSON of a datum by both decoders: straight to text, and through `apache-avro`'s
    /// values.
    fn both_ways(schema: &Schema, datum: &[u8]) -> (Result<Json, String>, Result<Json, String>) {
        let mut rest = datum;
        let mut text = Vec::new();
        let direct = crate::avro_json::write_record(schema, &mut rest, &mut text)
            .and_then(|()| if rest.is_empty() { Ok(()) } else { Err("left over".into()) })
            .map(|()| serde_json::from_slice::<Json>(&text).expect("valid JSON"));
        let mut rest = datum;
        let general = apache_avro::from_avro_datum(schema, &mut rest, None)
            .map_err(|e| e.to_string())
            .and_then(|value| if rest.is_empty() { Ok(value) } else { Err("left over".into()) })
            .and_then(|value| record_to_json(&value, schema));
        (direct, general)
    }

    #[test]
    fn the_direct_decoder_writes_the_json_of_the_general_one() {
        let schema = Schema::parse_str(
            r#"{"type":"record","name":"All","fields":[
                {"name":"flag","type":"boolean"},
                {"name":"small","type":"int"},
                {"name":"big","type":"long"},
                {"name":"ratio","type":"float"},
                {"name":"exact","type":"double"},
                {"name":"text","type":"string"},
                {"name":"raw","type":"bytes"},
                {"name":"id","type":{"type":"fixed","name":"Id","size":3}},
                {"name":"day","type":{"type":"int","logicalType":"date"}},
                {"name":"ms","type":{"type":"long","logicalType":"timestamp-millis"}},
                {"name":"us","type":{"type":"long","logicalType":"timestamp-micros"}},
                {"name":"ns","type":{"type":"long","logicalType":"timestamp-nanos"}},
                {"name":"kind","type":{"type":"enum","name":"Kind","symbols":["new","cancel","fill"]}},
                {"name":"price","type":["null",{"type":"bytes","logicalType":"decimal","precision":9,"scale":2}]},
                {"name":"fixed_price","type":{"type":"fixed","name":"P","size":4,"logicalType":"decimal","precision":9,"scale":3}},
                {"name":"tags","type":{"type":"array","items":"string"}},
                {"name":"note","type":{"type":"map","values":["null","double"]}},
                {"name":"party","type":["null",{"type":"record","name":"Party","fields":[
                    {"name":"account","type":"string"},{"name":"share","type":"double"}]}]}]}"#,
        )
        .expect("schema");
        assert!(crate::avro_json::supported(&schema));
        // Seeded values over the whole range of each type, edge values first.
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let texts = ["", "ACME", "é \" \\ \n \u{1F600}", "x".repeat(300).leak()];
        let mut both_read = 0;
        for round in 0..500u64 {
            let r = next();
            let long = match round {
                0 => i64::MIN,
                1 => i64::MAX,
                2 => 0,
                3 => -1,
                _ => r as i64 >> (r % 60),
            };
            let int = (long >> 32) as i32;
            let float = f32::from_bits(next() as u32);
            let double = if round == 4 { f64::NAN } else { f64::from_bits(next()) };
            let text = texts[(r % 4) as usize].to_string();
            let bytes: Vec<u8> = (0..r % 5).map(|i| (r >> (8 * i)) as u8).collect();
            let tags: Vec<Value> = (0..r % 4).map(|i| Value::String(format!("t{i}"))).collect();
            let note: std::collections::HashMap<String, Value> = (0..r % 3)
                .map(|i| {
                    (
                        format!("k{i}"),
                        if i == 0 {
                            Value::Union(0, Box::new(Value::Null))
                        } else {
                            Value::Union(1, Box::new(Value::Double(i as f64 / 3.0)))
                        },
                    )
                })
                .collect();
            let party = match r % 2 {
                0 => Value::Union(0, Box::new(Value::Null)),
                _ => Value::Union(
                    1,
                    Box::new(Value::Record(vec![
                        ("account".into(), Value::String(text.clone())),
                        ("share".into(), Value::Double(0.25)),
                    ])),
                ),
            };
            let record = Value::Record(vec![
                ("flag".into(), Value::Boolean(r % 2 == 0)),
                ("small".into(), Value::Int(int)),
                ("big".into(), Value::Long(long)),
                ("ratio".into(), Value::Float(float)),
                ("exact".into(), Value::Double(double)),
                ("text".into(), Value::String(text.clone())),
                ("raw".into(), Value::Bytes(bytes)),
                ("id".into(), Value::Fixed(3, vec![1, 2, (r % 256) as u8])),
                ("day".into(), Value::Date(int)),
                ("ms".into(), Value::TimestampMillis(long / 1_000_000)),
                ("us".into(), Value::TimestampMicros(long / 1_000)),
                ("ns".into(), Value::TimestampNanos(long)),
                ("kind".into(), Value::Enum((r % 3) as u32, ["new", "cancel", "fill"][(r % 3) as usize].into())),
                (
                    "price".into(),
                    match r % 3 {
                        0 => Value::Union(0, Box::new(Value::Null)),
                        _ => Value::Union(
                            1,
                            Box::new(Value::Decimal(((long >> 20) as i32).to_be_bytes().to_vec().into())),
                        ),
                    },
                ),
                ("fixed_price".into(), Value::Decimal(int.to_be_bytes().to_vec().into())),
                ("tags".into(), Value::Array(tags)),
                ("note".into(), Value::Map(note)),
                ("party".into(), party),
            ]);
            let datum = apache_avro::to_avro_datum(&schema, record).expect("encodes");
            let (direct, general) = both_ways(&schema, &datum);
            assert_eq!(direct, general, "round {round}");
            assert!(direct.is_ok(), "round {round}");
            // Every cut of the message is refused by the direct decoder, never a panic.
            for cut in 0..datum.len() {
                assert!(both_ways(&schema, &datum[..cut]).0.is_err(), "round {round}, cut at {cut}");
            }
            // Damaged copies: one to three bytes changed. Neither decoder may panic, and where
            // both read the damaged record they read the same JSON.
            for copy in 0..40 {
                let mut damaged = datum.clone();
                for _ in 0..1 + copy % 3 {
                    let r = next();
                    let at = (r % damaged.len() as u64) as usize;
                    damaged[at] = (r >> 32) as u8;
                }
                if let (Ok(direct), Ok(general)) = both_ways(&schema, &damaged) {
                    assert_eq!(direct, general, "round {round}, damaged copy {copy}: {damaged:?}");
                    both_read += 1;
                }
            }
        }
        assert!(both_read > 2_000, "only {both_read} damaged records read by both");
    }

    #[test]
    fn the_direct_decoder_reads_blocks_with_sizes_and_refuses_forged_counts() {
        let schema = Schema::parse_str(
            r#"{"type":"record","name":"R","fields":[{"name":"xs","type":{"type":"array","items":"long"}},
                {"name":"nothing","type":{"type":"array","items":"null"}}]}"#,
        )
        .expect("schema");
        // Two blocks of longs, the first with a negative count and its size in bytes, then an
        // empty array of nulls: [1, -2, 3].
        let datum = [3, 4, 2, 3, 2, 6, 0, 0];
        let (direct, general) = both_ways(&schema, &datum);
        assert_eq!(direct, general);
        assert_eq!(direct.expect("decodes")["xs"], serde_json::json!([1, -2, 3]));
        // A block of 2^62 nulls in a message of a few bytes.
        let mut forged = vec![0];
        let mut count = (1u64 << 62) << 1; // zigzag
        while count >= 0x80 {
            forged.push((count as u8) | 0x80);
            count >>= 7;
        }
        forged.push(count as u8);
        forged.push(0);
        let error = both_ways(&schema, &forged).0.expect_err("refused");
        assert!(error.contains("items in"), "{error}");
    }
}
