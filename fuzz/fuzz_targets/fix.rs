#![no_main]
//! The FIX drop-copy parser, in both modes.

mod common;

use libfuzzer_sys::fuzz_target;
use surveil::config::{FixConfig, FixOrders};
use surveil::ingest::fix::FixParser;

fuzz_target!(|data: &[u8]| {
    for orders_from in [FixOrders::ExecutionReports, FixOrders::Requests] {
        let mut parser = FixParser::new(&FixConfig { orders_from });
        common::parse_lines(&mut parser, data, None);
    }
});
