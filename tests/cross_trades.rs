//! Cross trades on a generated day: the day's own flow (market makers, fast takers and clients
//! meeting all day) raises nothing; pairs of accounts meeting again and again are found, within
//! the hour and over the session, each once, on one worker and on two.

mod common;

use std::path::Path;

use common::{alerts_of_rule, alerts_without_clock, inject, run, small_day};
use serde_json::Value;
use surveil::config::Config;

const SECOND: u64 = 1_000_000_000;

/// The trade prints: (instrument, time, price) in file order.
fn prints(dir: &Path) -> Vec<(String, u64, String)> {
    let events = std::fs::read_to_string(dir.join("events.csv")).expect("events");
    events
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            (f[2] == "trade").then(|| (f[4].to_string(), f[0].parse().expect("integer time"), f[11].to_string()))
        })
        .collect()
}

/// A print between `buyer` and `seller` of 100 at `price`.
fn print(time: u64, instrument: &str, buyer: &str, seller: &str, price: &str, order: usize) -> String {
    format!("{time},0,trade,XSVL,{instrument},,,,,,,{price},100,,,{buyer},{seller},,,X{order}b,X{order}s,,,,,,")
}

#[test]
fn pairs_meeting_again_and_again_are_found_and_the_days_own_flow_raises_nothing() {
    let (dir, events) = small_day(11);
    let config = Config::load(&dir.path().join("surveil.toml")).expect("config");
    let (_, untouched) = run(std::slice::from_ref(&events), config.clone(), 1);
    assert_eq!(alerts_of_rule(untouched.path(), "cross_trades"), Vec::<Value>::new(), "the day alone");

    // The busiest instrument's prints: the pairs meet at the prices of the moment.
    let all = prints(dir.path());
    let mut per_instrument = std::collections::BTreeMap::<&str, Vec<(u64, &str)>>::new();
    for (instrument, time, price) in &all {
        per_instrument.entry(instrument).or_default().push((*time, price));
    }
    let (busiest, its_prints) = per_instrument.iter().max_by_key(|(_, p)| p.len()).expect("prints");
    let (start, end) = (its_prints[0].0, its_prints[its_prints.len() - 1].0);
    let at = |time: u64| its_prints.iter().take_while(|(t, _)| *t <= time).last().map_or(its_prints[0].1, |p| p.1);
    let mut rows = Vec::new();
    // RA and RB meet six times within 40 minutes of the second hour, turning the position
    // round each time: a rolling alert at the fifth meeting.
    for k in 0..6 {
        let t = start + 3_600 * SECOND + 400 * SECOND * k;
        let (b, s) = if k % 2 == 0 { ("RA", "RB") } else { ("RB", "RA") };
        rows.push(print(t, busiest, b, s, at(t), rows.len()));
    }
    // SA and SB meet eight times, spread over the day (never five within an hour): a session
    // alert at its end.
    for k in 0..8 {
        let t = start + (end - start) / 9 * (k + 1);
        rows.push(print(t, busiest, "SA", "SB", at(t), rows.len()));
    }
    // TA and TB meet four times: too few.
    for k in 0..4 {
        let t = start + 7_200 * SECOND + 60 * SECOND * k;
        rows.push(print(t, busiest, "TA", "TB", at(t), rows.len()));
    }
    inject(dir.path(), rows, &["RA,RA,,,", "RB,RB,,,", "SA,SA,,,", "SB,SB,,,", "TA,TA,,,", "TB,TB,,,"]);
    let config = Config::load(&dir.path().join("surveil.toml")).expect("config");

    let (_, out) = run(std::slice::from_ref(&events), config.clone(), 1);
    let alerts = alerts_of_rule(out.path(), "cross_trades");
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let mut found: Vec<(String, String, String)> = alerts
        .iter()
        .map(|a| {
            let p = &a["parameters"];
            let mut pair = [text(&p["account"]), text(&p["counterparty"])];
            pair.sort();
            let [x, y] = pair;
            (x, y, text(&p["span"]))
        })
        .collect();
    found.sort();
    assert_eq!(
        found,
        vec![("RA".into(), "RB".into(), "rolling".into()), ("SA".into(), "SB".into(), "session".into())],
        "{alerts:#?}"
    );
    let of_span = |span: &str| alerts.iter().find(|a| a["parameters"]["span"] == span).expect("found");
    assert_eq!(of_span("rolling")["parameters"]["prints_between"], 5);
    assert_eq!(of_span("session")["parameters"]["prints_between"], 8);
    assert_eq!(of_span("session")["evidence"].as_array().map(Vec::len), Some(8));

    let (_, two) = run(&[events], config, 2);
    assert_eq!(alerts_without_clock(out.path()), alerts_without_clock(two.path()));
}
