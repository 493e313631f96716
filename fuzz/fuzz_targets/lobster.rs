#![no_main]
//! The LOBSTER message parser, with and without an order book line beside each message.

mod common;

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use surveil::config::LobsterConfig;
use surveil::ingest::lobster::LobsterParser;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("ACME_2024-03-01_34200000_57600000_message_1.csv");
    let Ok(mut parser) = LobsterParser::new(path, &LobsterConfig::default()) else { return };
    match data.split_first() {
        // An order book line (the input's first line) beside every message.
        Some((flag, rest)) if flag & 1 == 1 => {
            let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            let (book, body) = (&rest[..end], &rest[(end + 1).min(rest.len())..]);
            common::parse_lines(&mut parser, body, Some(book));
        }
        Some((_, rest)) => common::parse_lines(&mut parser, rest, None),
        None => {}
    }
});
