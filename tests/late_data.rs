//! Out-of-order input: within the bound it is reordered, beyond it it goes to the late output,
//! the same way on any number of workers and block sizes.

mod common;

use std::fmt::Write;

use common::{read_jsonl, run};
use surveil::config::Config;
use surveil::ingest::csv::write::HEADER;

const MS: u64 = 1_000_000;

#[test]
fn records_beyond_the_bound_are_late_and_the_rest_are_reordered() {
    // One instrument, orders every 10 ms. Every 50th record is stamped 50 ms early (within the
    // 100 ms bound); every 97th is stamped 1 s early (beyond it).
    let base = 1_709_303_400_000_000_000u64;
    let mut text = format!("{HEADER}\n");
    let mut late = Vec::new();
    let mut max_time = 0;
    for i in 0..5_000u64 {
        let mut t = base + i * 10 * MS;
        if i % 97 == 96 {
            t -= 1_000 * MS;
        } else if i % 50 == 49 {
            t -= 50 * MS;
        }
        // Late: more than the bound behind the latest time seen before it.
        if max_time > t + 100 * MS {
            late.push(i);
        }
        max_time = max_time.max(t);
        // A 200,000-lot order is over the quantity limit: alerts show which orders were seen.
        let quantity = if i % 10 == 0 { 200_000 } else { 100 };
        writeln!(text, "{t},{i},new,X,ACME,O{i},ACC1,,,,buy,10.00,{quantity},,,,,,,,,,,,,").expect("write");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("late.csv");
    std::fs::write(&path, text).expect("write");
    assert_eq!(late.len(), 5_000 / 97);

    let mut reference = None;
    for (workers, block) in [(1, 8 << 20), (2, 16 << 10), (3, 16 << 10)] {
        let mut config = Config::default();
        config.ingest.block_size = block;
        let (summary, out) = run(std::slice::from_ref(&path), config, workers);
        let late_events = read_jsonl(out.path(), "late_events.jsonl");
        if block == 8 << 20 {
            assert_eq!(late_events.len(), late.len(), "one partition: lateness as computed over the file");
        }
        assert_eq!(summary.written.late_events as usize, late_events.len());
        let alerts: Vec<_> = read_jsonl(out.path(), "alerts.jsonl")
            .into_iter()
            .filter(|a| a["rule"] == "order_quantity_limit")
            .collect();
        // Alerts come out in event-time order, with each order's own time.
        let times: Vec<u64> = alerts.iter().map(|a| a["event_time_ns"].as_u64().expect("time")).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
        let late_ids: Vec<String> =
            late_events.iter().map(|e| e["order_id"].as_str().expect("id").to_string()).collect();
        for a in &alerts {
            let id = a["evidence"][0]["order_id"].as_str().expect("id");
            assert!(!late_ids.iter().any(|l| l == id), "a late order was checked: {id}");
        }
        assert_eq!(alerts.len() + late_events.iter().filter(|e| e["quantity"] == 200_000).count(), 500);
        // The same blocks give the same late records whatever the number of workers.
        if block == 16 << 10 {
            match &reference {
                None => reference = Some(late_ids),
                Some(r) => assert_eq!(r, &late_ids),
            }
        }
    }
}
