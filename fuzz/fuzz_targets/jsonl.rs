#![no_main]
//! The JSON Lines parser.

mod common;

use libfuzzer_sys::fuzz_target;
use surveil::ingest::jsonl::JsonlParser;

fuzz_target!(|data: &[u8]| {
    common::parse_lines(&mut JsonlParser::new(), data, None);
});
