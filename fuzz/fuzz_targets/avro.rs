#![no_main]
//! The Avro decoder of the Kafka source (`surveil::avro_json`): arbitrary bytes read with the
//! bundled event schema, or with a schema of every type the decoder reads (the first byte
//! picks). An error or a JSON object, never a panic; an event's object is then read by the JSON
//! Lines parser, as a topic's message is.

mod common;

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use surveil::avro_json::{EVENT_SCHEMA, Schema, supported, write_record};
use surveil::ingest::jsonl::JsonlParser;

const EVERY_TYPE: &str = r#"{
  "type": "record", "name": "Every", "fields": [
    {"name": "null", "type": "null"},
    {"name": "boolean", "type": "boolean"},
    {"name": "int", "type": "int"},
    {"name": "long", "type": "long"},
    {"name": "float", "type": "float"},
    {"name": "double", "type": "double"},
    {"name": "bytes", "type": "bytes"},
    {"name": "string", "type": "string"},
    {"name": "enum", "type": {"type": "enum", "name": "Side", "symbols": ["buy", "sell"]}},
    {"name": "fixed", "type": {"type": "fixed", "name": "Four", "size": 4}},
    {"name": "array", "type": {"type": "array", "items": "long"}},
    {"name": "map", "type": {"type": "map", "values": ["null", "string"]}},
    {"name": "union", "type": ["null", "string", "long", "double"]},
    {"name": "decimal", "type": {"type": "bytes", "logicalType": "decimal", "precision": 20, "scale": 4}},
    {"name": "fixed_decimal", "type": {"type": "fixed", "name": "Dec8", "size": 8, "logicalType": "decimal", "precision": 18, "scale": 2}},
    {"name": "date", "type": {"type": "int", "logicalType": "date"}},
    {"name": "time_millis", "type": {"type": "int", "logicalType": "time-millis"}},
    {"name": "time_micros", "type": {"type": "long", "logicalType": "time-micros"}},
    {"name": "ts_millis", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "ts_micros", "type": {"type": "long", "logicalType": "timestamp-micros"}},
    {"name": "ts_nanos", "type": {"type": "long", "logicalType": "timestamp-nanos"}},
    {"name": "local", "type": {"type": "long", "logicalType": "local-timestamp-micros"}},
    {"name": "nested", "type": {"type": "record", "name": "Inner", "fields": [
      {"name": "items", "type": {"type": "array", "items": {"type": "map", "values": "int"}}}
    ]}}
  ]
}"#;

static SCHEMAS: LazyLock<[Schema; 2]> = LazyLock::new(|| {
    [EVENT_SCHEMA, EVERY_TYPE].map(|text| {
        let schema = Schema::parse_str(text).expect("the target's schemas parse");
        assert!(supported(&schema), "the decoder reads every type of the target's schemas");
        schema
    })
});

fuzz_target!(|data: &[u8]| {
    let Some((&pick, mut datum)) = data.split_first() else { return };
    let event = pick & 1 == 0;
    let schema = &SCHEMAS[usize::from(!event)];
    let mut json = Vec::new();
    if write_record(schema, &mut datum, &mut json).is_ok() {
        let value: serde_json::Value = serde_json::from_slice(&json).expect("the decoder writes valid JSON");
        assert!(value.is_object(), "a record is an object");
        if event {
            common::parse_lines(&mut JsonlParser::new(), &json, None);
        }
    }
});
