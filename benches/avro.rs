//! Criterion benchmarks of what a Kafka source does per message before its events reach the
//! dataflow: the canonical JSON parsed as it is, against an Avro message (Confluent wire format,
//! the bundled event schema) decoded into that JSON first and then parsed. No broker: the cost
//! of the decoding alone. Run with `cargo bench --features tools,kafka --bench avro`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use surveil::config::AvroConfig;
use surveil::generate::{GenerateConfig, generate};
use surveil::ingest::csv::CsvParser;
use surveil::ingest::jsonl::JsonlParser;
use surveil::ingest::{Line, LineParser, ParseContext};
use surveil::kafka::avro::{EventEncoder, Schemas};
use surveil::model::{IdMap, Origin};
use surveil::output::Renderer;
use surveil::reference::ReferenceData;

/// The events of a generated day as canonical JSON lines and as Avro messages.
fn messages() -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = GenerateConfig { events: 20_000, accounts: 100, instruments: 10, ..Default::default() };
    let summary = generate(&config, dir.path()).expect("generate");
    let text = std::fs::read_to_string(summary.events_path).expect("read");
    let mut lines = text.lines();
    let header = lines.next().expect("header");
    let mut parser = CsvParser::from_header(std::path::Path::new("day.csv"), header).expect("header");
    let reference = Arc::new(ReferenceData::new(2));
    let (mut events, mut side, mut announced) = (Vec::new(), Vec::new(), IdMap::default());
    for (i, line) in lines.enumerate() {
        let mut ctx = ParseContext::new(&reference, &mut side, &mut announced);
        let line = Line { bytes: line.as_bytes(), origin: Origin::new(0, i as u64), companion: None };
        let _ = parser.parse(&line, &mut ctx, &mut events);
    }
    let renderer = Renderer::new(reference, vec!["day.csv".into()]);
    let encoder = EventEncoder::new(1);
    let mut json = Vec::with_capacity(events.len());
    let mut avro = Vec::with_capacity(events.len());
    for event in &events {
        let object = renderer.event(event);
        json.push(serde_json::to_vec(&object).expect("json"));
        let mut message = Vec::new();
        encoder.encode(&object, &mut message).expect("avro");
        avro.push(message);
    }
    (json, avro)
}

fn decode(c: &mut Criterion) {
    let (json, avro) = messages();
    let reference = ReferenceData::new(2);
    let schemas = Schemas::new(&AvroConfig::default(), Duration::from_secs(1)).expect("schemas");
    let mut group = c.benchmark_group("kafka_message");
    group.throughput(Throughput::Elements(json.len() as u64));
    let mut parser = JsonlParser::new();
    group.bench_function("json", |b| {
        let (mut events, mut side, mut announced) = (Vec::with_capacity(json.len()), Vec::new(), IdMap::default());
        b.iter(|| {
            events.clear();
            for (i, message) in json.iter().enumerate() {
                let mut ctx = ParseContext::new(&reference, &mut side, &mut announced);
                let line = Line { bytes: message, origin: Origin::new(0, i as u64), companion: None };
                let _ = parser.parse(&line, &mut ctx, &mut events);
            }
            black_box(events.len())
        })
    });
    group.bench_function("avro", |b| {
        let (mut events, mut side, mut announced) = (Vec::with_capacity(avro.len()), Vec::new(), IdMap::default());
        let mut decoded = Vec::new();
        b.iter(|| {
            events.clear();
            for (i, message) in avro.iter().enumerate() {
                if schemas.decode(message, &mut decoded).is_err() {
                    continue;
                }
                let mut ctx = ParseContext::new(&reference, &mut side, &mut announced);
                let line = Line { bytes: &decoded, origin: Origin::new(0, i as u64), companion: None };
                let _ = parser.parse(&line, &mut ctx, &mut events);
            }
            black_box(events.len())
        })
    });
    group.finish();
    // Both paths give the same events.
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let (mut side, mut announced) = (Vec::new(), IdMap::default());
    let mut decoded = Vec::new();
    for (i, (j, m)) in json.iter().zip(&avro).enumerate() {
        let mut ctx = ParseContext::new(&reference, &mut side, &mut announced);
        let _ = parser.parse(&Line { bytes: j, origin: Origin::new(0, i as u64), companion: None }, &mut ctx, &mut a);
        schemas.decode(m, &mut decoded).expect("decodes");
        let mut ctx = ParseContext::new(&reference, &mut side, &mut announced);
        let _ = parser.parse(
            &Line { bytes: &decoded, origin: Origin::new(0, i as u64), companion: None },
            &mut ctx,
            &mut b,
        );
    }
    assert_eq!(a.len(), json.len());
    assert!(a == b, "the Avro path gives other events than the JSON path");
}

criterion_group!(benches, decode);
criterion_main!(benches);
