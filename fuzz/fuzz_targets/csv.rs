#![no_main]
//! The canonical CSV parser: the first line is the header, the rest are records.

mod common;

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use surveil::ingest::csv::{CsvParser, write::HEADER};

fuzz_target!(|data: &[u8]| {
    // Half the time the canonical header, so that records are reached; otherwise the input's own.
    let (header, body) = match data.split_first() {
        Some((flag, rest)) if flag & 1 == 0 => (HEADER.to_string(), rest),
        Some((_, rest)) => {
            let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            (String::from_utf8_lossy(&rest[..end]).into_owned(), &rest[(end + 1).min(rest.len())..])
        }
        None => return,
    };
    let Ok(mut parser) = CsvParser::from_header(Path::new("fuzz.csv"), &header) else { return };
    common::parse_lines(&mut parser, body, None);
});
