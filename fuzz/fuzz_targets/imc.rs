#![no_main]
//! The IMC Prosperity trades parser.

mod common;

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use surveil::config::ImcConfig;
use surveil::ingest::imc::ImcParser;

fuzz_target!(|data: &[u8]| {
    let Ok(mut parser) = ImcParser::new(Path::new("trades_round_1_day_2.csv"), &ImcConfig::default()) else { return };
    common::parse_lines(&mut parser, data, None);
});
