//! Dead letters judged after routing (`unknown_order`) still point at their line in a plain
//! file, on any number of workers and blocks; a gzipped input has no byte offsets to count
//! lines from, so there the line stays empty.

mod common;

use std::io::Write;

use common::{read_jsonl, run};
use surveil::config::Config;
use surveil::ingest::csv::write::HEADER;

const MS: u64 = 1_000_000;

/// A canonical CSV row with the given leading fields and the rest empty.
fn row(fields: &[&str]) -> String {
    let columns = HEADER.split(',').count();
    let mut all: Vec<&str> = fields.to_vec();
    all.resize(columns, "");
    all.join(",")
}

/// 3,000 orders on one instrument, with a cancel and a replace of orders never entered. Returns
/// the file's text and the 1-based lines of the two bad records (the header is line 1).
fn day() -> (String, Vec<u64>) {
    let base = 1_709_303_400_000_000_000u64;
    let mut lines = vec![HEADER.to_string()];
    let mut bad = Vec::new();
    for i in 0..3_000u64 {
        let (time, seq) = ((base + i * 10 * MS).to_string(), i.to_string());
        let id = format!("O{i}");
        lines.push(row(&[&time, &seq, "new", "X", "ACME", &id, "ACC1", "", "", "", "buy", "10.00", "100"]));
        if i == 3 || i == 2_500 {
            let kind = if i == 3 { "cancel" } else { "replace" };
            let fields = [&time, &seq, kind, "X", "ACME", "O999999", "ACC1", "", "", "", "buy", "10.00", "50"];
            let fields: &[&str] = if kind == "cancel" { &fields[..7] } else { &fields };
            lines.push(row(fields));
            bad.push(lines.len() as u64);
        }
    }
    (lines.join("\n") + "\n", bad)
}

#[test]
fn unknown_orders_carry_their_line_in_a_plain_file() {
    let (text, bad_lines) = day();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("day.csv");
    std::fs::write(&path, &text).expect("write");
    let file_lines: Vec<&str> = text.lines().collect();
    // Small blocks put the second bad record in a block read by another worker.
    for (workers, block) in [(1, 8 << 20), (2, 16 << 10), (3, 16 << 10)] {
        let mut config = Config::default();
        config.ingest.block_size = block;
        let (_, out) = run(std::slice::from_ref(&path), config, workers);
        let letters = read_jsonl(out.path(), "dead_letters.jsonl");
        let unknown: Vec<_> = letters.iter().filter(|d| d["reason"] == "unknown_order").collect();
        assert_eq!(unknown.len(), 2, "{workers} workers, {block}-byte blocks: {letters:?}");
        let lines: Vec<u64> = unknown.iter().map(|d| d["line"].as_u64().expect("a line number")).collect();
        assert_eq!(lines, bad_lines, "{workers} workers, {block}-byte blocks");
        for (letter, line) in unknown.iter().zip(&bad_lines) {
            // The line and the byte offset name the same record.
            let offset = letter["offset"].as_u64().expect("offset") as usize;
            let at_offset = text[offset..].lines().next().expect("a line at the offset");
            assert_eq!(at_offset, file_lines[*line as usize - 1]);
            assert!(at_offset.contains("O999999"));
            // `raw` is the line as it is in the file.
            assert_eq!(letter["raw"].as_str(), Some(at_offset));
        }
    }
}

#[test]
fn unknown_orders_in_a_gzipped_file_have_no_line() {
    let (text, _) = day();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("day.csv.gz");
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(text.as_bytes()).expect("compress");
    std::fs::write(&path, encoder.finish().expect("finish")).expect("write");
    let (_, out) = run(std::slice::from_ref(&path), Config::default(), 2);
    let letters = read_jsonl(out.path(), "dead_letters.jsonl");
    let unknown: Vec<_> = letters.iter().filter(|d| d["reason"] == "unknown_order").collect();
    assert_eq!(unknown.len(), 2);
    assert!(unknown.iter().all(|d| d["line"].is_null() && d["offset"].as_u64().is_some()));
    // No file offset to read back from: the event is rewritten as canonical CSV.
    assert!(unknown.iter().all(|d| d["raw"].as_str().is_some_and(|r| r.contains(",ACME,O999999,ACC1"))));
}
