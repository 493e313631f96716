//! Criterion benchmarks of the ingest hot path: parsing canonical CSV lines into events, and
//! interning names. Run with `cargo bench --bench ingest`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use surveil::generate::{GenerateConfig, generate};
use surveil::ingest::csv::CsvParser;
use surveil::ingest::{Line, LineParser, ParseContext};
use surveil::model::{IdMap, Origin, Symbol};
use surveil::reference::{LiveChange, ReferenceData};

fn lines() -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = GenerateConfig { events: 50_000, accounts: 100, instruments: 10, ..Default::default() };
    let summary = generate(&config, dir.path()).expect("generate");
    let text = std::fs::read_to_string(summary.events_path).expect("read");
    text.lines().map(String::from).collect()
}

fn parse_csv(c: &mut Criterion) {
    let lines = lines();
    let header = &lines[0];
    let body = &lines[1..];
    let mut parser = CsvParser::from_header(std::path::Path::new("bench.csv"), header).expect("header");
    let reference = ReferenceData::new(2);
    let bytes: usize = body.iter().map(|l| l.len() + 1).sum();
    let mut group = c.benchmark_group("parse");
    // The same work, reported per line and per byte.
    for (name, throughput) in [
        ("canonical_csv_lines", Throughput::Elements(body.len() as u64)),
        ("canonical_csv_bytes", Throughput::Bytes(bytes as u64)),
    ] {
        group.throughput(throughput);
        group.bench_function(name, |b| {
            let mut events = Vec::with_capacity(body.len());
            let mut side = Vec::new();
            let mut announced = IdMap::default();
            b.iter(|| {
                events.clear();
                for (i, line) in body.iter().enumerate() {
                    let mut ctx = ParseContext::new(&reference, &mut side, &mut announced);
                    let line = Line { bytes: line.as_bytes(), origin: Origin::new(0, i as u64), companion: None };
                    let _ = parser.parse(&line, &mut ctx, &mut events);
                }
                black_box(events.len())
            })
        });
    }
    group.finish();
}

fn intern(c: &mut Criterion) {
    let names = ["AAPL", "ACC0123", "O1234567", "MM-EQ1", "VOLCANIC_ROCK_VOUCHER_10000", "16113575"];
    let mut group = c.benchmark_group("symbol");
    group.throughput(Throughput::Elements(names.len() as u64));
    group.bench_function("of", |b| {
        b.iter(|| names.iter().fold(0u64, |acc, n| acc ^ Symbol::of(black_box(n.as_bytes())).0))
    });
    group.finish();
}

/// Enriching events from the reference data: loaded records only; a run that follows live
/// changes where none touched the events' accounts (each lookup reads one word more); and one
/// where every account has a live record (each lookup takes the shared lock).
fn enrich(c: &mut Criterion) {
    let lines = lines();
    let mut parser = CsvParser::from_header(std::path::Path::new("bench.csv"), &lines[0]).expect("header");
    let empty = ReferenceData::new(2);
    let (mut events, mut side, mut announced) = (Vec::new(), Vec::new(), IdMap::default());
    for (i, line) in lines[1..].iter().enumerate() {
        let mut ctx = ParseContext::new(&empty, &mut side, &mut announced);
        let line = Line { bytes: line.as_bytes(), origin: Origin::new(0, i as u64), companion: None };
        let _ = parser.parse(&line, &mut ctx, &mut events);
    }
    let accounts: std::collections::BTreeSet<Symbol> =
        events.iter().map(|e| e.account).filter(|a| !a.is_none()).collect();
    // Their names: hashed ones from what the parser announced.
    let mut names = surveil::model::SymbolTable::default();
    for report in &side {
        if let surveil::model::Report::Symbol(symbol, text) = report {
            names.insert(*symbol, text);
        }
    }
    let mut loaded = ReferenceData::new(2);
    for account in &accounts {
        loaded.set_account(&names.name(*account), "OWNER_OF_IT", "EQUITIES_DESK", "TRADER_ONE");
    }
    let record = surveil::reference::Account { desk: Symbol::of(b"RATES_DESK"), ..Default::default() };
    let followed = loaded.clone();
    followed.follow_live_changes();
    followed.apply_live(1, &LiveChange::Account { id: 1, symbol: Symbol::of(b"NOT_TRADING"), record });
    let touched = loaded.clone();
    touched.follow_live_changes();
    for (id, &symbol) in accounts.iter().enumerate() {
        touched.apply_live(1, &LiveChange::Account { id: id as u64 + 1, symbol, record });
    }
    let mut group = c.benchmark_group("enrich");
    group.throughput(Throughput::Elements(events.len() as u64));
    for (name, data) in [("loaded", &loaded), ("live_untouched", &followed), ("live_every_account", &touched)] {
        group.bench_function(name, |b| {
            let mut copy = events.clone();
            b.iter(|| {
                for event in copy.iter_mut() {
                    black_box(data.enrich(event));
                    data.enrich_live(event);
                }
                black_box(copy.len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, parse_csv, intern, enrich);
criterion_main!(benches);
