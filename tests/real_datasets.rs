//! End-to-end runs on the real recorded data in the shared datasets folder.

mod common;

use std::io::Write;

use common::{alerts_by_rule, alerts_without_clock, data, read_jsonl, run};
use surveil::config::Config;

const AAPL: &str = "lobster/aapl_2012-06-21/AAPL_2012-06-21_34200000_37800000_message_50.csv";
const AMZN: &str = "lobster/amzn_2012-06-21_level1_modified/AMZN_2012-06-21_34200000_57600000_message_1.csv";

#[test]
fn amzn_day_has_no_off_market_executions() {
    let (summary, out) = run(&[data(AMZN)], Config::default(), 1);
    // 11,419 executions; the first precedes any order book, so 11,418 have a prior best bid
    // and offer to be compared with.
    assert_eq!(summary.events_by_kind["fill"], 11_419, "every execution is read");
    assert!(summary.events_by_kind["quote"] > 10_000, "the order book file supplies the best bid and offer");
    assert_eq!(summary.dead_letters, 0, "{:?}", summary.written.dead_letters_by_reason);
    assert_eq!(
        alerts_by_rule(out.path()).get("off_market_price"),
        None,
        "{:?}",
        read_jsonl(out.path(), "alerts.jsonl").first()
    );
}

#[test]
fn imc_self_trades_are_counted_exactly() {
    // The files hold a few trades of quantity 0 (2 and 13): a trade of nothing is a dead letter.
    for (file, expected, zero_quantity) in [
        ("imc_prosperity/p2_2024/trades_round_4_day_1_wn.csv", 499, 2),
        ("imc_prosperity/p3_2025/trades_round_5_day_2.csv", 1_350, 13),
    ] {
        for workers in [1, 2] {
            let (summary, out) = run(&[data(file)], Config::default(), workers);
            assert_eq!(summary.dead_letters, zero_quantity);
            assert_eq!(summary.written.dead_letters_by_reason.get("bad_quantity"), Some(&zero_quantity));
            assert_eq!(
                alerts_by_rule(out.path()).get("self_trade").copied(),
                Some(expected),
                "{file}, {workers} workers"
            );
        }
    }
}

/// RTS 9 ratios computed directly from the file, without the dataflow.
fn batch_order_to_trade(path: &std::path::Path) -> (u64, u64, u64, u64) {
    let text = std::fs::read_to_string(path).expect("read");
    let (mut messages, mut order_volume, mut transactions, mut transaction_volume) = (0, 0, 0, 0);
    for line in text.lines() {
        let f: Vec<&str> = line.split(',').collect();
        let (kind, size): (u32, u64) = (f[1].parse().expect("type"), f[3].parse().expect("size"));
        match kind {
            1..=3 => {
                messages += 1;
                order_volume += size;
            }
            4 | 5 => {
                transactions += 1;
                transaction_volume += size;
            }
            _ => {}
        }
    }
    (messages, order_volume, transactions, transaction_volume)
}

#[test]
fn aapl_order_to_trade_ratio_equals_the_batch_computation() {
    let path = data(AAPL);
    let (m, ov, t, tv) = batch_order_to_trade(&path);
    assert_eq!((m, t), (44_256 + 41_004 + 469, 4_067 + 2_201));
    for workers in [1, 2] {
        let (summary, out) = run(std::slice::from_ref(&path), Config::default(), workers);
        assert_eq!(summary.dead_letters, 0);
        let finals: Vec<_> =
            read_jsonl(out.path(), "order_to_trade.jsonl").into_iter().filter(|r| r["final"] == true).collect();
        assert_eq!(finals.len(), 1, "one anonymous member, one instrument, one session");
        let r = &finals[0];
        assert_eq!(r["instrument"], "AAPL");
        assert_eq!(r["session"], "2012-06-21");
        assert_eq!((r["messages"].as_u64(), r["order_volume"].as_u64()), (Some(m), Some(ov)));
        assert_eq!((r["transactions"].as_u64(), r["transaction_volume"].as_u64()), (Some(t), Some(tv)));
        let count_ratio = m as f64 / t as f64 - 1.0;
        let volume_ratio = ov as f64 / tv as f64 - 1.0;
        assert!((r["count_ratio"].as_f64().expect("ratio") - count_ratio).abs() < 1e-12);
        assert!((r["volume_ratio"].as_f64().expect("ratio") - volume_ratio).abs() < 1e-12);
    }
}

#[test]
fn a_corrupted_copy_gives_one_dead_letter_per_bad_line() {
    let original = std::fs::read_to_string(data(AAPL)).expect("read");
    let mut lines: Vec<String> = original.lines().map(String::from).collect();
    let total = lines.len();
    // (line index, replacement, expected reason)
    let corruptions = [
        (10, "34200.1,1,123,100,-5853300,1", "bad_price"),
        (500, "34200.2,1,124,-100,5853300,1", "bad_quantity"),
        (1_000, "34200.3,1,125,100,5853300", "column_count"),
        (5_000, "34201.0,9,126,100,5853300,1", "unknown_kind"),
        (20_000, "garbage", "column_count"),
        (30_000, "noon,1,127,100,5853300,1", "bad_time"),
        (40_000, "34300.0,1,128,100,NaN,1", "bad_price"),
        (50_000, "34400.0,1,129,100,5853300,2", "unknown_side"),
        (60_000, "34500.0,1,130,1.5,5853300,1", "bad_quantity"),
        (91_000, "", "blank lines are skipped, not counted"),
    ];
    for (i, text, _) in &corruptions {
        lines[*i] = text.to_string();
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("AAPL_2012-06-21_34200000_37800000_message_50.csv");
    let mut file = std::fs::File::create(&path).expect("create");
    for l in &lines {
        writeln!(file, "{l}").expect("write");
    }
    drop(file);
    let bad = corruptions.len() - 1;
    let mut config = Config::default();
    config.ingest.block_size = 256 << 10; // several blocks, read in parallel
    for workers in [1, 2] {
        let (summary, out) = run(std::slice::from_ref(&path), config.clone(), workers);
        let letters = read_jsonl(out.path(), "dead_letters.jsonl");
        assert_eq!(letters.len(), bad, "{workers} workers");
        assert_eq!(summary.dead_letters as usize, bad);
        assert_eq!(summary.events as usize, total - corruptions.len(), "every good line is processed");
        for (i, text, reason) in &corruptions[..bad] {
            let letter = letters
                .iter()
                .find(|l| l["line"].as_u64() == Some(*i as u64 + 1))
                .unwrap_or_else(|| panic!("line {}", i + 1));
            assert_eq!(letter["raw"], *text);
            assert_eq!(letter["reason"], *reason, "line {}: {letter}", i + 1);
        }
    }
}

#[test]
fn one_and_two_workers_give_the_same_alerts_on_real_data() {
    let paths = [data(AMZN), data("imc_prosperity/p3_2025/trades_round_5_day_2.csv")];
    let mut config = Config::default();
    config.ingest.block_size = 64 << 10;
    let (_, one) = run(&paths, config.clone(), 1);
    let (_, two) = run(&paths, config, 2);
    let (a, b) = (alerts_without_clock(one.path()), alerts_without_clock(two.path()));
    assert!(!a.is_empty());
    assert_eq!(a, b);
}
