//! Front running on a generated day: the day's own flow (market makers and fast traders of the
//! firm trading all day around its clients' large orders) raises nothing but its labelled
//! employees' runs ahead of client blocks; an employee account
//! trading ahead of client blocks, and a proprietary account ahead of block after block, are
//! found, on one worker and on two.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{alerts_of_rule, alerts_without_clock, inject, run, small_day};
use serde_json::Value;
use surveil::config::Config;
use surveil::generate::labels::evaluate;

const SECOND: u64 = 1_000_000_000;

/// A client block order of the generated file and its first execution.
struct Block {
    instrument: String,
    side: String,
    executed_at: u64,
    price: String,
    /// Time since the instrument's previous block executed.
    quiet_for: u64,
}

/// The client blocks (orders of 10,000 or more, or worth 200,000 or more, as replaced and part
/// cancelled, and single fills of that size) that executed, in file order.
fn client_blocks(dir: &Path) -> Vec<Block> {
    let accounts = std::fs::read_to_string(dir.join("accounts.csv")).expect("accounts");
    let clients: Vec<&str> =
        accounts.lines().skip(1).filter(|l| l.ends_with(",client")).filter_map(|l| l.split(',').next()).collect();
    let events = std::fs::read_to_string(dir.join("events.csv")).expect("events");
    // Client orders: (instrument, side, limit price, quantity left), and whether each is a block.
    let mut orders: BTreeMap<String, (String, String, f64, f64)> = BTreeMap::new();
    let is_block = |price: f64, quantity: f64| quantity >= 10_000.0 || price * quantity >= 200_000.0;
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    let mut judged: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    let mut blocks = Vec::new();
    for line in events.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let (time, kind, instrument, order, account, side, price, quantity) =
            (f[0], f[2], f[4], f[5], f[6], f[10], f[11], f[12]);
        let cancelled_all = quantity.is_empty();
        let quantity: f64 = quantity.parse().unwrap_or(0.0);
        match kind {
            "new" if clients.contains(&account) => {
                let price = price.parse::<f64>().unwrap_or(0.0);
                orders.insert(order.to_string(), (instrument.to_string(), side.to_string(), price, quantity));
            }
            "replace" if clients.contains(&account) => {
                if let Some(o) = orders.get_mut(order) {
                    o.2 = price.parse::<f64>().unwrap_or(o.2);
                    o.3 = quantity;
                }
            }
            "cancel" if clients.contains(&account) => match orders.get_mut(order) {
                Some(o) if !cancelled_all => o.3 = (o.3 - quantity).max(0.0),
                _ => {
                    orders.remove(order);
                }
            },
            "fill" if clients.contains(&account) && !judged.contains(order) => {
                // A block order's first fill, or (as the rule reads it) a client's single fill of
                // block size whose order was not one.
                let fill_price = price.parse::<f64>().unwrap_or(0.0);
                let block_order = orders.remove(order).filter(|o| is_block(o.2, o.3)).map(|o| (o.0, o.1));
                let single = is_block(fill_price, quantity).then(|| (instrument.to_string(), side.to_string()));
                if let Some((instrument, side)) = block_order.or(single) {
                    judged.insert(order.to_string());
                    let executed_at: u64 = time.parse().expect("integer time");
                    let quiet_for = executed_at - last.insert(instrument.clone(), executed_at).unwrap_or(0);
                    blocks.push(Block { instrument, side, executed_at, price: price.to_string(), quiet_for });
                }
            }
            _ => {}
        }
    }
    blocks
}

/// An order of `account` entered and filled `lead` before `block`, its way, at its price, and
/// turned round 30 s after the block: a round trip on the client's information.
fn ahead_of(block: &Block, account: &str, order: &str, lead: u64, quantity: u64) -> [String; 4] {
    let other = if block.side == "buy" { "sell" } else { "buy" };
    let row = |t: u64, kind: &str, order: &str, side: &str| {
        format!(
            "{t},0,{kind},XSVL,{},{order},{account},,,,{side},{},{quantity},,,,,,,,,,,,,,",
            block.instrument, block.price
        )
    };
    let (before, after) = (block.executed_at - lead, block.executed_at + 30 * SECOND);
    let back = format!("{order}x");
    [
        row(before, "new", order, &block.side),
        row(before + 1_000, "fill", order, &block.side),
        row(after, "new", &back, other),
        row(after + 1_000, "fill", &back, other),
    ]
}

#[test]
fn trading_ahead_of_client_blocks_is_found_and_the_days_own_flow_raises_nothing() {
    let (dir, events) = small_day(7);
    // The day as generated: its own employees' runs ahead of client blocks (labelled when they
    // played out) are found, and nothing else.
    let config = Config::load(&dir.path().join("surveil.toml")).expect("config");
    let (_, untouched) = run(std::slice::from_ref(&events), config.clone(), 1);
    let scores = evaluate(&dir.path().join("labels.csv"), &untouched.path().join("alerts.jsonl")).expect("evaluate");
    let front = scores.iter().find(|s| s.rule == "front_running").expect("the day's employees are labelled");
    assert!(front.labels >= 1 && front.found == front.labels && front.false_alerts == 0, "the day alone: {front:?}");
    let generated: Vec<Value> = alerts_of_rule(untouched.path(), "front_running");
    assert!(generated.iter().all(|a| a["account"].as_str().is_some_and(|a| a.starts_with("EMP"))), "{generated:#?}");

    // Judged on the trading alone, so that every injected case counts whatever the market did
    // after it (the profit condition is the unit tests').
    let mut config = config;
    config.rules.front_running.require_profit = false;

    let blocks = client_blocks(dir.path());
    assert!(blocks.len() >= 100, "{} client blocks", blocks.len());
    // An employee ahead of every 20th block that came 40 s or more after the one before (an
    // execution is read against the first block after it), 30 s before, 500 shares.
    let mut rows = Vec::new();
    let employee: Vec<&Block> = blocks.iter().filter(|b| b.quiet_for >= 40 * SECOND).step_by(20).collect();
    for (k, block) in employee.iter().enumerate() {
        rows.extend(ahead_of(block, "STAFF1", &format!("E{k}"), 30 * SECOND, 500));
    }
    // The firm's own account ahead of 25 blocks of the instrument with the most (every other
    // one that came 20 s or more after the block before), 10 s before, each time the block's
    // way (a buy block's buy is, when the block before was a sell, also its turning round).
    // Two client blocks executing at one moment (one client's buy against another's sell) are
    // both read: trading ahead of the pair is ahead of one and against the other.
    let alone_at_its_time = |b: &Block| {
        blocks.iter().filter(|o| o.instrument == b.instrument && o.executed_at == b.executed_at).count() == 1
    };
    let mut per_instrument: BTreeMap<&str, Vec<&Block>> = BTreeMap::new();
    for block in blocks.iter().filter(|b| b.quiet_for >= 20 * SECOND && alone_at_its_time(b)) {
        per_instrument.entry(block.instrument.as_str()).or_default().push(block);
    }
    let (busiest, its_blocks) = per_instrument.iter().max_by_key(|(_, b)| b.len()).expect("blocks");
    assert!(its_blocks.len() >= 60, "{busiest}: {}", its_blocks.len());
    for (k, block) in its_blocks.iter().skip(10).step_by(2).take(25).enumerate() {
        rows.extend(ahead_of(block, "PROP1", &format!("P{k}"), 10 * SECOND, 300).into_iter().take(2));
    }
    inject(dir.path(), rows, &["STAFF1,STAFF1,STAFF,,employee", "PROP1,FIRM,PROP-X,,proprietary"]);
    let config = {
        let mut c = Config::load(&dir.path().join("surveil.toml")).expect("config");
        c.rules.front_running.require_profit = false;
        c
    };

    let (_, out) = run(std::slice::from_ref(&events), config.clone(), 1);
    let alerts = alerts_of_rule(out.path(), "front_running");
    // Every employee case is found, each alert naming the block it was ahead of (another
    // client's block the same way within the lookback is one too: the employee was ahead of it,
    // and is raised for it).
    let staff: Vec<&Value> = alerts.iter().filter(|a| a["account"] == "STAFF1").collect();
    for block in &employee {
        let named = |a: &&&Value| {
            a["evidence"].as_array().is_some_and(|e| {
                e.iter()
                    .any(|x| x["event_time_ns"] == block.executed_at && x["instrument"] == block.instrument.as_str())
            })
        };
        assert!(staff.iter().any(|a| named(&a)), "block at {} missed: {staff:#?}", block.executed_at);
    }
    // One alert per block: the block's later fills are not blocks again.
    let blocks_named: std::collections::BTreeSet<String> = staff
        .iter()
        .filter_map(|a| a["evidence"].as_array())
        .map(|e| e.iter().filter(|x| x["account"] != "STAFF1").map(|x| x["offset"].to_string()).collect::<String>())
        .collect();
    assert_eq!(blocks_named.len(), staff.len(), "{staff:#?}");
    let prop: Vec<&Value> = alerts.iter().filter(|a| a["account"] == "PROP1").collect();
    assert_eq!(prop.len(), 1, "one session alert: {alerts:#?}");
    assert!(prop[0]["parameters"]["blocks_ahead"].as_u64().is_some_and(|n| n >= 25), "{:#?}", prop[0]);
    assert_eq!(prop[0]["instrument"], *busiest);
    // The day's own employees aside (judged above with the profit condition), nothing else but
    // what trading alone lets through: a proprietary account of the day whose last execution
    // went the way of a handful of blocks by chance (7 of 7 here, a sign test's 0.8 %), at a
    // loss, which the profit condition drops (the day alone, above, raised none).
    let account = |a: &Value| a["account"].as_str().unwrap_or_default().to_string();
    let others: Vec<&Value> = alerts
        .iter()
        .filter(|a| !["STAFF1", "PROP1"].contains(&account(a).as_str()) && !account(a).starts_with("EMP"))
        .collect();
    for a in &others {
        let lost = a["parameters"]["profit"].as_str().and_then(|p| p.parse::<f64>().ok()).is_some_and(|p| p < 0.0);
        assert!(a["parameters"]["scope"] == "session" && lost, "no other account: {a:#?}");
    }
    assert!(others.len() <= 1, "{others:#?}");

    let (_, two) = run(&[events], config, 2);
    assert_eq!(alerts_without_clock(out.path()), alerts_without_clock(two.path()));
}

/// A fund that holds a fifth of one of the day's stocks: an employee buying or selling the fund
/// ahead of that stock's client blocks is found once the reference data names the fund's
/// holdings (`reference.baskets`), on one worker and on two, and not without them; the same
/// trading in a fund that holds 1 % of the stock is not trading on it.
#[test]
fn an_employee_trading_a_fund_ahead_of_blocks_in_a_stock_it_holds_is_found() {
    let (dir, events) = small_day(11);
    let blocks = client_blocks(dir.path());
    let mut per_instrument: BTreeMap<&str, usize> = BTreeMap::new();
    for block in &blocks {
        *per_instrument.entry(block.instrument.as_str()).or_default() += 1;
    }
    let (stock, _) = per_instrument.iter().max_by_key(|(_, n)| **n).expect("blocks");
    let stock = stock.to_string();
    let chosen: Vec<&Block> =
        blocks.iter().filter(|b| b.instrument == stock && b.quiet_for >= 40 * SECOND).step_by(7).take(6).collect();
    assert!(chosen.len() >= 4, "{} blocks of {stock}", chosen.len());
    let mut rows = Vec::new();
    for (k, block) in chosen.iter().enumerate() {
        for (fund, account) in [("FUNDA", "STAFF9"), ("FUNDB", "STAFF8")] {
            let at_fund = Block { instrument: fund.into(), side: block.side.clone(), price: "50.00".into(), ..**block };
            rows.extend(ahead_of(&at_fund, account, &format!("{fund}{k}"), 20 * SECOND, 400).into_iter().take(2));
        }
    }
    inject(dir.path(), rows, &["STAFF9,STAFF9,STAFF,,employee", "STAFF8,STAFF8,STAFF,,employee"]);
    std::fs::write(
        dir.path().join("baskets.csv"),
        format!("basket,member,weight\nFUNDA,{stock},20%\nFUNDB,{stock},1%\n"),
    )
    .expect("baskets");
    let mut config = Config::load(&dir.path().join("surveil.toml")).expect("config");
    config.rules.front_running.require_profit = false;
    let staff = |out: &Path| -> Vec<Value> {
        alerts_of_rule(out, "front_running")
            .into_iter()
            .filter(|a| a["account"] == "STAFF9" || a["account"] == "STAFF8")
            .collect()
    };

    let (_, without) = run(std::slice::from_ref(&events), config.clone(), 1);
    assert_eq!(staff(without.path()), Vec::<Value>::new(), "without the baskets the funds are unrelated");

    config.reference.baskets = Some(dir.path().join("baskets.csv"));
    let (_, out) = run(std::slice::from_ref(&events), config.clone(), 1);
    let found = staff(out.path());
    assert!(found.iter().all(|a| a["account"] == "STAFF9" && a["instrument"] == stock.as_str()), "{found:#?}");
    for block in &chosen {
        let named = |a: &Value| {
            a["evidence"].as_array().is_some_and(|e| {
                e.iter().any(|x| x["event_time_ns"] == block.executed_at && x["instrument"] == stock.as_str())
            })
        };
        assert!(found.iter().any(named), "the block at {} missed: {found:#?}", block.executed_at);
    }
    eprintln!(
        "{} blocks of {stock} traded ahead through a fund holding 20 % of it: {} alerts",
        chosen.len(),
        found.len()
    );
    let (_, two) = run(&[events], config, 2);
    assert_eq!(alerts_without_clock(out.path()), alerts_without_clock(two.path()));
}
