//! Trades between accounts linked by ownership, on the IMC Prosperity trade files: every trade
//! between linked traders, and every self-matched trade, is exactly one alert, judged by the
//! ownership in force at the trade's own time, on one worker and on two.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use common::{data, read_jsonl, run};
use serde_json::Value;
use surveil::config::Config;

const P2: &str = "imc_prosperity/p2_2024/trades_round_4_day_1_wn.csv";
const P3: &str = "imc_prosperity/p3_2025/trades_round_5_day_2.csv";

/// A trade of an IMC file: (tick, buyer, seller, quantity).
type Trade = (u64, String, String, f64);

fn trades(path: &Path) -> Vec<Trade> {
    full_trades(path).into_iter().map(|t| (t.0, t.1, t.2, t.5)).collect()
}

/// (tick, buyer, seller, symbol, price, quantity) of the trades of positive quantity.
fn full_trades(path: &Path) -> Vec<(u64, String, String, String, f64, f64)> {
    let text = std::fs::read_to_string(path).expect("read");
    text.lines()
        .skip(1)
        .map(|line| {
            let f: Vec<&str> = line.split(';').collect();
            (
                f[0].parse().expect("tick"),
                f[1].to_string(),
                f[2].to_string(),
                f[3].to_string(),
                f[5].trim().parse().expect("price"),
                f[6].trim().parse().expect("quantity"),
            )
        })
        .filter(|t| t.5 > 0.0)
        .collect()
}

/// Pairs of a buy and a sell by the two different accounts of `group` in separate prints that
/// are not between the two: the same symbol and price, at most `window_ticks` apart, quantities
/// within 10 % of the larger. As (buy tick, sell tick), sorted.
fn batch_linked_washes(path: &Path, group: [&str; 2], window_ticks: u64) -> Vec<(u64, u64)> {
    let all = full_trades(path);
    let member = |name: &str| group.contains(&name);
    let mut buys = Vec::new();
    let mut sells = Vec::new();
    for t in &all {
        if member(&t.1) && member(&t.2) {
            continue; // within the group: the self-trade rule's
        }
        if member(&t.1) {
            buys.push(t);
        }
        if member(&t.2) {
            sells.push(t);
        }
    }
    let mut pairs = Vec::new();
    for b in &buys {
        for s in &sells {
            if b.1 != s.2 && b.3 == s.3 && b.4 == s.4 && b.0.abs_diff(s.0) <= window_ticks {
                let larger = b.5.max(s.5);
                if (b.5 - s.5).abs() <= 0.1 * larger {
                    pairs.push((b.0, s.0));
                }
            }
        }
    }
    pairs.sort();
    pairs
}

/// The two different traders that trade with each other most often.
fn busiest_pair(trades: &[Trade]) -> (String, String) {
    let mut pairs: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (_, buyer, seller, _) in trades {
        if buyer != seller && !buyer.is_empty() && !seller.is_empty() {
            let key = if buyer < seller { (buyer.clone(), seller.clone()) } else { (seller.clone(), buyer.clone()) };
            *pairs.entry(key).or_default() += 1;
        }
    }
    pairs.into_iter().max_by_key(|(_, n)| *n).map(|(pair, _)| pair).expect("a pair")
}

/// The ticks of the trades between `a` and `b`, either way round.
fn mutual_ticks(all: &[Trade], a: &str, b: &str) -> Vec<u64> {
    all.iter().filter(|(_, x, y, _)| x != y && ((x == a && y == b) || (x == b && y == a))).map(|t| t.0).collect()
}

/// Event time of a tick of `file` under the default IMC settings (day N of the file name is
/// `ingest.imc.date` + N - 1 days; a tick is `ingest.imc.tick`).
fn event_time(config: &Config, file: &str, tick: u64) -> u64 {
    let date = surveil::ingest::time::parse_date(&config.ingest.imc.date).expect("date");
    let midnight = date.and_hms_opt(0, 0, 0).expect("midnight").and_utc().timestamp_nanos_opt().expect("ns") as u64;
    let day: u64 =
        file.rsplit("_day_").next().and_then(|r| r.split(['_', '.']).next()).expect("day").parse().expect("n");
    midnight + (day - 1) * 86_400_000_000_000 + tick * config.ingest.imc.tick.as_nanos() as u64
}

/// The self-trade alerts of a run: (evidence time, buyer, seller) and the evidence's line
/// offsets (one trade each).
fn self_trade_alerts(out: &Path) -> (Vec<(u64, String, String)>, BTreeSet<u64>) {
    let alerts: Vec<Value> =
        read_jsonl(out, "alerts.jsonl").into_iter().filter(|a| a["rule"] == "self_trade").collect();
    let mut seen = Vec::new();
    let mut offsets = BTreeSet::new();
    for alert in &alerts {
        let evidence = &alert["evidence"][0];
        seen.push((
            evidence["event_time_ns"].as_u64().expect("time"),
            evidence["buyer"].as_str().expect("buyer").to_string(),
            evidence["seller"].as_str().expect("seller").to_string(),
        ));
        assert!(offsets.insert(evidence["offset"].as_u64().expect("offset")), "two alerts on one trade: {alert}");
    }
    seen.sort();
    (seen, offsets)
}

fn config_with_ownership(dir: &Path, rows: &str) -> Config {
    let path = dir.join("ownership.csv");
    std::fs::write(&path, format!("time,account,owner,share\n{rows}")).expect("write ownership");
    let mut config = Config::default();
    config.reference.ownership = Some(path);
    config
}

#[test]
fn trades_between_linked_traders_and_self_trades_are_one_alert_each() {
    for file in [P2, P3] {
        let all = trades(&data(file));
        let (a, b) = busiest_pair(&all);
        // A fund holds 30 % of one and 12 % of the other: both at or above the CFTC's 10 %, so
        // linked; a third trader 5 % owned by the same fund is not.
        let third = all.iter().map(|t| &t.1).find(|n| **n != a && **n != b && !n.is_empty()).expect("third").clone();
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config_with_ownership(dir.path(), &format!(",{a},FUND,30%\n,{b},FUND,0.12\n,{third},FUND,0.05\n"));
        let mut expected: Vec<(u64, String, String)> = all
            .iter()
            .filter(|(_, buyer, seller, _)| {
                !buyer.is_empty() && (buyer == seller || ([buyer, seller] == [&a, &b] || [buyer, seller] == [&b, &a]))
            })
            .map(|(tick, buyer, seller, _)| (event_time(&config, file, *tick), buyer.clone(), seller.clone()))
            .collect();
        expected.sort();
        let between = expected.iter().filter(|(_, x, y)| x != y).count();
        assert!(between > 20, "{file}: {a} and {b} trade with each other {between} times");
        // Separate prints of the two linked traders within a second (1,000 ticks of 1 ms).
        let washes = batch_linked_washes(&data(file), [&a, &b], 1_000);
        let tick_of = |ns: u64| (ns - event_time(&config, file, 0)) / config.ingest.imc.tick.as_nanos() as u64;
        for workers in [1, 2] {
            let (_, out) = run(&[data(file)], config.clone(), workers);
            let (seen, _) = self_trade_alerts(out.path());
            assert_eq!(seen.len(), expected.len(), "{file}, {workers} workers");
            assert_eq!(seen, expected, "{file}, {workers} workers");
            let mut pairs: Vec<(u64, u64)> = read_jsonl(out.path(), "alerts.jsonl")
                .into_iter()
                .filter(|a| a["rule"] == "linked_wash")
                .map(|a| {
                    let time = |i: usize| tick_of(a["evidence"][i]["event_time_ns"].as_u64().expect("time"));
                    (time(0), time(1))
                })
                .collect();
            pairs.sort();
            assert_eq!(pairs, washes, "{file}, {workers} workers: linked washes");
        }
        println!("{file}: {a} and {b}: {between} prints between them, {} pairs of separate prints", washes.len());
    }
}

#[test]
fn a_link_counts_from_the_time_it_starts_until_the_time_it_ends() {
    let file = P3;
    let all = trades(&data(file));
    let (a, b) = busiest_pair(&all);
    let ticks = mutual_ticks(&all, &a, &b);
    // Linked from a third of the way through their mutual trades until two thirds (a tick
    // between two trades, so no trade sits on a boundary).
    let start_tick = ticks[ticks.len() / 3] - 1;
    let end_tick = ticks[2 * ticks.len() / 3] - 1;
    let probe = Config::default();
    let (start, end) = (event_time(&probe, file, start_tick), event_time(&probe, file, end_tick));
    let dir = tempfile::tempdir().expect("tempdir");
    // The link comes through an intermediate holding, transitively: HOLDCO owns 50 % of the
    // first trader's account and 20 % of the second's from `start`; at `end` it sells down to 5 %
    // of the second.
    let config = config_with_ownership(
        dir.path(),
        &format!("{start},{a},HOLDCO,0.5\n{start},{b},HOLDCO,0.2\n{end},{b},HOLDCO,0.05\n"),
    );
    let mut expected: Vec<(u64, String, String)> = all
        .iter()
        .map(|(tick, buyer, seller, _)| (event_time(&config, file, *tick), buyer.clone(), seller.clone()))
        .filter(|(time, buyer, seller)| {
            let linked_pair = (*buyer == a && *seller == b) || (*buyer == b && *seller == a);
            (!buyer.is_empty() && buyer == seller) || (linked_pair && start <= *time && *time < end)
        })
        .collect();
    expected.sort();
    let linked = expected.iter().filter(|(_, x, y)| x != y).count();
    assert!(linked > 5 && linked < ticks.len(), "{linked} of {} mutual trades in the window", ticks.len());
    for workers in [1, 2] {
        let (_, out) = run(&[data(file)], config.clone(), workers);
        let (seen, _) = self_trade_alerts(out.path());
        assert_eq!(seen, expected, "{workers} workers");
    }
}

#[test]
fn accounts_linked_through_a_chain_of_owners_are_linked() {
    // ACC1 is 100 % owned by HOLD1, which is 15 % owned by PARENT, which owns 60 % of ACC2.
    let mut reference = surveil::reference::ReferenceData::new(2);
    reference.add_ownership(0, "ACC1", "HOLD1", 1.0);
    reference.add_ownership(0, "HOLD1", "PARENT", 0.15);
    reference.add_ownership(0, "ACC2", "PARENT", 0.6);
    reference.add_ownership(0, "ACC3", "PARENT", 0.09);
    let reference = std::sync::Arc::new(reference);
    let trades = vec![
        surveil::testing::trade("ACME", "ACC1", "ACC2", 10).at(10),
        surveil::testing::trade("ACME", "ACC3", "ACC2", 10).at(20),
    ];
    for workers in [1, 2] {
        let reference = reference.clone();
        let trades = trades.clone();
        let flags = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = flags.clone();
        timely::execute(timely::Config::process(workers), move |worker| {
            use surveil::links::{LinkAccounts, linked_groups};
            use timely::dataflow::operators::{Inspect, ToStream};
            let mine = if worker.index() == 0 { trades.clone() } else { Vec::new() };
            let sink = sink.clone();
            let reference = reference.clone();
            worker.dataflow::<u64, _, _>(move |scope| {
                let groups = linked_groups(scope, &reference);
                mine.to_stream(scope).link_accounts(groups).inspect(move |e| {
                    if let surveil::model::Body::Trade { linked, .. } = e.body {
                        sink.lock().expect("lock").push((e.time, linked));
                    }
                });
            });
        })
        .expect("run");
        let mut flags = flags.lock().expect("lock").clone();
        flags.sort();
        assert_eq!(flags, vec![(10, Some(true)), (20, Some(false))], "{workers} workers");
    }
}

#[test]
fn an_account_moved_to_another_owner_in_the_accounts_file_is_linked_only_while_it_is_held() {
    let file = P3;
    let all = trades(&data(file));
    let (a, b) = busiest_pair(&all);
    let ticks = mutual_ticks(&all, &a, &b);
    let moved_tick = ticks[ticks.len() / 2] - 1;
    let probe = Config::default();
    let moved = event_time(&probe, file, moved_tick);
    let dir = tempfile::tempdir().expect("tempdir");
    // Both accounts are the fund's from the start; a row with a time moves the second to
    // another owner (and desk) from then on, keeping its trader.
    let path = dir.path().join("accounts.csv");
    std::fs::write(
        &path,
        format!("time,account,owner,desk,trader\n,{a},FUND,D1,t1\n,{b},FUND,D1,t2\n{moved},{b},OTHER,D2,\n"),
    )
    .expect("write accounts");
    let mut config = Config::default();
    config.reference.accounts = Some(path);
    let mut expected: Vec<(u64, String, String)> = all
        .iter()
        .map(|(tick, buyer, seller, _)| (event_time(&config, file, *tick), buyer.clone(), seller.clone()))
        .filter(|(time, buyer, seller)| {
            let pair = (*buyer == a && *seller == b) || (*buyer == b && *seller == a);
            (!buyer.is_empty() && buyer == seller) || (pair && *time < moved)
        })
        .collect();
    expected.sort();
    let before = expected.iter().filter(|(_, x, y)| x != y).count();
    assert!(before > 5 && before < ticks.len(), "{before} of {} mutual trades before the move", ticks.len());
    // Every party that is neither account is missing from the accounts file: counted, and
    // its trade processed all the same.
    let text = std::fs::read_to_string(data(file)).expect("read");
    let rows: Vec<Vec<&str>> = text
        .lines()
        .skip(1)
        .map(|l| l.split(';').collect::<Vec<&str>>())
        .filter(|r| r[6].trim().parse::<f64>().is_ok_and(|q| q > 0.0))
        .collect();
    let unknown = |name: &str| !name.is_empty() && name != a && name != b;
    let buyers = rows.iter().filter(|r| unknown(r[1])).count() as u64;
    let sellers = rows.iter().filter(|r| unknown(r[2])).count() as u64;
    assert!(buyers > 0 && sellers > 0);
    for workers in [1, 2] {
        let (summary, out) = run(&[data(file)], config.clone(), workers);
        let (seen, _) = self_trade_alerts(out.path());
        assert_eq!(seen, expected, "{workers} workers");
        assert_eq!(summary.events_by_kind["trade"], rows.len() as u64, "every trade is read");
        let incomplete = summary.incomplete_events.values().next().expect("incomplete events counted");
        assert_eq!(incomplete.get("buyer_account"), Some(&buyers), "{workers} workers: {incomplete:?}");
        assert_eq!(incomplete.get("seller_account"), Some(&sellers), "{workers} workers: {incomplete:?}");
        assert_eq!(incomplete.get("instrument"), None, "no instrument file, nothing to lack");
    }
}
