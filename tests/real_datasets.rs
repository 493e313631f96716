//! End-to-end runs on the real recorded data in the shared datasets folder.

mod common;

use std::io::Write;

use common::{alerts_by_rule, alerts_without_clock, data, read_jsonl, run};
use surveil::config::Config;

const AAPL: &str = "lobster/aapl_2012-06-21/AAPL_2012-06-21_34200000_37800000_message_50.csv";
const AMZN: &str = "lobster/amzn_2012-06-21_level1_modified/AMZN_2012-06-21_34200000_57600000_message_1.csv";

/// The LOBSTER message file and its order book file, as (type, size, price, time text) per message
/// and (ask, bid) after it; header lines skipped, empty levels `None`.
type LobsterDay = Vec<((u32, u64, i64, String), (Option<i64>, Option<i64>))>;

fn lobster_day(message: &std::path::Path) -> LobsterDay {
    let book = message.to_string_lossy().replace("_message_", "_orderbook_");
    let messages = std::fs::read_to_string(message).expect("messages");
    let books = std::fs::read_to_string(book).expect("order book");
    let numeric = |l: &&str| l.split(',').next().is_some_and(|f| f.trim().parse::<f64>().is_ok());
    let level = |price: &str, size: &str| {
        let (p, q): (i64, u64) = (price.trim().parse().expect("price"), size.trim().parse().expect("size"));
        (p.abs() != 9_999_999_999 && q > 0).then_some(p)
    };
    messages
        .lines()
        .filter(numeric)
        .zip(books.lines().filter(numeric))
        .map(|(m, b)| {
            let f: Vec<&str> = m.split(',').collect();
            let g: Vec<&str> = b.split(',').collect();
            let message = (
                f[1].parse().expect("type"),
                f[3].parse().expect("size"),
                f[4].parse().expect("price"),
                f[0].to_string(),
            );
            (message, (level(g[0], g[1]), level(g[2], g[3])))
        })
        .collect()
}

/// The price collar at `bps` computed directly from the files: each execution against the best
/// bid and offer after the message before it (or the last execution where a side is empty), one
/// alert per print. Returns (executions read, executions compared, breaches).
fn batch_collar(day: &LobsterDay, bps: i64) -> (u64, u64, u64) {
    let (mut executions, mut compared, mut breaches) = (0, 0, 0);
    let mut book: (Option<i64>, Option<i64>) = (None, None);
    let mut last: Option<i64> = None;
    let mut alerted: Option<(String, i64, u64)> = None;
    for ((kind, size, price, time), after) in day {
        if *kind == 4 || *kind == 5 {
            executions += 1;
            let allowance = |reference: i64| reference * bps / 10_000;
            let lower = book.1.or(last).map(|b| b - allowance(b));
            let upper = book.0.or(last).map(|a| a + allowance(a));
            if lower.is_some() || upper.is_some() {
                compared += 1;
            }
            let print = (time.clone(), *price, *size);
            let breach = lower.is_some_and(|l| *price < l) || upper.is_some_and(|u| *price > u);
            if breach && alerted.as_ref() != Some(&print) {
                breaches += 1;
                alerted = Some(print);
            }
            last = Some(*price);
        }
        book = *after;
    }
    (executions, compared, breaches)
}

#[test]
fn amzn_executions_are_inside_the_market_at_five_percent_and_at_zero_tolerance() {
    let path = data(AMZN);
    let day = lobster_day(&path);
    for bps in [500u32, 0] {
        let (executions, compared, breaches) = batch_collar(&day, bps as i64);
        assert!(compared + 1 >= executions && compared > 10_000, "{compared} of {executions} executions compared");
        let mut config = Config::default();
        config.rules.price_collar.max_deviation_bps = bps;
        config.rules.price_collar.min_deviation_ticks = 0;
        let (summary, out) = run(std::slice::from_ref(&path), config, 1);
        assert_eq!(summary.events_by_kind["fill"], executions, "every execution is read");
        assert!(summary.events_by_kind["quote"] > 10_000, "the order book file supplies the best bid and offer");
        assert_eq!(summary.dead_letters, 0, "{:?}", summary.written.dead_letters_by_reason);
        let alerts = alerts_by_rule(out.path()).get("off_market_price").copied().unwrap_or(0);
        assert_eq!(alerts as u64, breaches, "{bps} bps: {:?}", read_jsonl(out.path(), "alerts.jsonl").first());
    }
}

#[test]
fn an_off_market_print_injected_into_amzn_is_found() {
    let path = data(AMZN);
    let book = path.to_string_lossy().replace("_message_", "_orderbook_");
    let dir = tempfile::tempdir().expect("tempdir");
    let name = |p: &str| std::path::Path::new(p).file_name().expect("name").to_owned();
    let copy = dir.path().join(name(&path.to_string_lossy()));
    std::fs::copy(&book, dir.path().join(name(&book))).expect("copy the order book");
    // The 5,000th execution printed at twice its price: far above the best offer.
    let text = std::fs::read_to_string(&path).expect("read");
    let mut executions = 0;
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            if matches!(f.get(1), Some(&"4") | Some(&"5")) {
                executions += 1;
                if executions == 5_000 {
                    let doubled = f[4].parse::<i64>().expect("price") * 2;
                    return format!("{},{},{},{},{doubled},{}", f[0], f[1], f[2], f[3], f[5]);
                }
            }
            line.to_string()
        })
        .collect();
    std::fs::write(&copy, lines.join("\n") + "\n").expect("write");
    let (_, out) = run(std::slice::from_ref(&copy), Config::default(), 2);
    let alerts = read_jsonl(out.path(), "alerts.jsonl");
    let off: Vec<_> = alerts.iter().filter(|a| a["rule"] == "off_market_price").collect();
    assert_eq!(off.len(), 1, "{off:?}");
    assert!(off[0]["explanation"].as_str().unwrap_or_default().contains("above the best ask"), "{}", off[0]);
}

/// Self-trades (the same name buying and selling) and trades of quantity 0 in an IMC file,
/// counted directly.
fn batch_imc(path: &std::path::Path) -> (usize, u64) {
    let text = std::fs::read_to_string(path).expect("read");
    let (mut self_trades, mut zero) = (0, 0);
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(';').collect();
        if f[6].trim().parse::<f64>().expect("quantity") == 0.0 {
            zero += 1;
        } else if !f[1].is_empty() && f[1] == f[2] {
            self_trades += 1;
        }
    }
    (self_trades, zero)
}

#[test]
fn imc_self_trades_are_counted_exactly() {
    for file in
        ["imc_prosperity/p2_2024/trades_round_4_day_1_wn.csv", "imc_prosperity/p3_2025/trades_round_5_day_2.csv"]
    {
        let (expected, zero_quantity) = batch_imc(&data(file));
        assert!(expected > 100, "{file}: the file has self-trades to find");
        for workers in [1, 2] {
            let (summary, out) = run(&[data(file)], Config::default(), workers);
            // A trade of nothing is a dead letter.
            assert_eq!(summary.dead_letters, zero_quantity);
            assert_eq!(summary.written.dead_letters_by_reason.get("bad_quantity").copied().unwrap_or(0), zero_quantity);
            assert_eq!(
                alerts_by_rule(out.path()).get("self_trade").copied(),
                Some(expected),
                "{file}, {workers} workers"
            );
        }
    }
}

/// Off-market trades of an IMC file computed directly: a trade further from its instrument's
/// previous trade than the larger of `bps` of that price and `min_ticks` whole seashells (the
/// venue's tick), one alert per print. Prices in units of 10^-4, as the run reads them.
fn batch_imc_collar(path: &std::path::Path, bps: i64, min_ticks: i64) -> u64 {
    let text = std::fs::read_to_string(path).expect("read");
    let mut trades: Vec<(u64, String, i64, u64)> = text
        .lines()
        .skip(1)
        .map(|line| {
            let f: Vec<&str> = line.split(';').collect();
            let price = (f[5].trim().parse::<f64>().expect("price") * 10_000.0).round() as i64;
            (f[0].parse().expect("timestamp"), f[3].to_string(), price, f[6].trim().parse().expect("quantity"))
        })
        .filter(|t| t.3 > 0)
        .collect();
    trades.sort_by_key(|t| t.0);
    // Per instrument: the last price, and the last print (time, price, quantity) alerted.
    type Market = (i64, Option<(u64, i64, u64)>);
    let mut markets: std::collections::HashMap<String, Market> = Default::default();
    let mut breaches = 0;
    for (time, symbol, price, quantity) in trades {
        let print = (time, price, quantity);
        if let Some((last, alerted)) = markets.get_mut(&symbol) {
            let allowance = (*last * bps / 10_000).max(min_ticks * 10_000);
            if (price < *last - allowance || price > *last + allowance) && *alerted != Some(print) {
                breaches += 1;
                *alerted = Some(print);
            }
            *last = price;
        } else {
            markets.insert(symbol, (price, None));
        }
    }
    breaches
}

#[test]
fn imc_off_market_trades_are_counted_exactly_and_a_tick_or_two_is_not_off_market() {
    let file = data("imc_prosperity/p3_2025/trades_round_5_day_2.csv");
    let mut counts = Vec::new();
    for min_ticks in [2u32, 0] {
        let expected = batch_imc_collar(&file, 500, min_ticks as i64);
        let mut config = Config::default();
        config.rules.price_collar.min_deviation_ticks = min_ticks;
        let (_, out) = run(std::slice::from_ref(&file), config, 2);
        let alerts = read_jsonl(out.path(), "alerts.jsonl");
        let off: Vec<_> = alerts.iter().filter(|a| a["rule"] == "off_market_price").collect();
        assert_eq!(off.len() as u64, expected, "{min_ticks} ticks minimum");
        if min_ticks == 2 {
            for alert in &off {
                let number = |key: &str| alert["parameters"][key].as_str().and_then(|v| v.parse::<f64>().ok());
                let (price, reference) = (number("price").expect("price"), number("reference_price").expect("ref"));
                assert!((price - reference).abs() > 2.0, "{alert}");
            }
        }
        counts.push(expected);
    }
    assert!(counts[0] > 100 && counts[1] > counts[0] + 100, "with and without the tick minimum: {counts:?}");
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
    assert!(m > 10_000 && t > 1_000, "the hour has orders and executions: {m}, {t}");
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
