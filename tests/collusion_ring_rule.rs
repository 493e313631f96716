//! The collusion-ring rule on a generated day: the day's own flow (market makers, fast takers
//! and clients trading round lots all day) raises nothing; rings planted in it are found once
//! each, within the hour or over the session, a ring left open when its hour ends is retracted,
//! and an open chain is nothing; the same alerts on one worker and on two.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{alerts_of_rule, alerts_without_clock, inject, run, small_day};
use serde_json::Value;
use surveil::config::Config;

const SECOND: u64 = 1_000_000_000;
const HOUR: u64 = 3_600 * SECOND;

/// The busiest instrument of a generated day and its prints' (time, price), in time order.
fn busiest_prints(dir: &Path) -> (String, Vec<(u64, String)>) {
    let events = std::fs::read_to_string(dir.join("events.csv")).expect("events");
    let mut per_instrument: BTreeMap<String, Vec<(u64, String)>> = BTreeMap::new();
    for line in events.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if f[2] == "trade" {
            per_instrument.entry(f[4].to_string()).or_default().push((f[0].parse().expect("time"), f[11].to_string()));
        }
    }
    per_instrument.into_iter().max_by_key(|(_, p)| p.len()).expect("prints")
}

/// The configuration with the rule on (it is off by default).
fn with_rings(mut config: Config) -> Config {
    config.rules.collusion_rings.enabled = true;
    config
}

#[test]
fn rings_planted_in_a_day_are_found_and_the_days_own_flow_raises_nothing() {
    let (dir, events) = small_day(11);
    let config = with_rings(Config::load(&dir.path().join("surveil.toml")).expect("config"));
    let (_, untouched) = run(std::slice::from_ref(&events), config.clone(), 1);
    assert_eq!(alerts_of_rule(untouched.path(), "collusion_rings"), Vec::<Value>::new(), "the day alone");

    let (instrument, prints) = busiest_prints(dir.path());
    let start = prints[0].0;
    // The hours of the day, from the first print's.
    let hour = |k: u64| (start / HOUR + k) * HOUR;
    let price = |time: u64| prints.iter().take_while(|(t, _)| *t <= time).last().map_or(&prints[0].1, |p| &p.1).clone();
    let mut rows = Vec::new();
    let mut print = |time: u64, buyer: &str, seller: &str, quantity: u64| {
        let n = rows.len();
        rows.push(format!(
            "{time},0,trade,XSVL,{instrument},,,,,,,{},{quantity},,,{buyer},{seller},,,R{n}b,R{n}s,,,,,,",
            price(time)
        ));
    };
    // RA, RB and RC pass 700 round twice within ten minutes of the second hour: one alert,
    // raised as the second lap closes.
    for lap in 0..2 {
        let t = hour(2) + 60 * SECOND + 300 * SECOND * lap;
        print(t, "RB", "RA", 700);
        print(t + 60 * SECOND, "RC", "RB", 700);
        print(t + 120 * SECOND, "RA", "RC", 700);
    }
    // SA, SB, SC and SD pass 900 round twice, a hop every half hour: a ring of the session
    // only (no hour holds more than two hops).
    let hops = [("SB", "SA"), ("SC", "SB"), ("SD", "SC"), ("SA", "SD")];
    for (k, (buyer, seller)) in hops.iter().chain(hops.iter()).enumerate() {
        print(hour(2) + 900 * SECOND + 1_800 * SECOND * k as u64, buyer, seller, 900);
    }
    // TA to TD pass 800 along a chain that never closes: nothing.
    for (k, (buyer, seller)) in [("TB", "TA"), ("TC", "TB"), ("TD", "TC")].into_iter().enumerate() {
        print(hour(3) + 100 * SECOND * (k as u64 + 1), buyer, seller, 800);
    }
    // UA, UB and UC pass 600 round twice, then UA sells 600 once more, to UD, within the hour:
    // raised, then retracted when the hour ends with UA's position open.
    let hops = [("UB", "UA"), ("UC", "UB"), ("UA", "UC")];
    for (k, (buyer, seller)) in hops.iter().chain(hops.iter()).chain([("UD", "UA")].iter()).enumerate() {
        print(hour(4) + 200 * SECOND * (k as u64 + 1), buyer, seller, 600);
    }
    let accounts: Vec<String> =
        ["RA", "RB", "RC", "SA", "SB", "SC", "SD", "TA", "TB", "TC", "TD", "UA", "UB", "UC", "UD"]
            .iter()
            .map(|a| format!("{a},{a},,,"))
            .collect();
    let accounts: Vec<&str> = accounts.iter().map(String::as_str).collect();
    inject(dir.path(), rows, &accounts);
    let config = with_rings(Config::load(&dir.path().join("surveil.toml")).expect("config"));

    let (_, out) = run(std::slice::from_ref(&events), config.clone(), 1);
    let alerts = alerts_of_rule(out.path(), "collusion_rings");
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let found: Vec<(String, u64, u64, String, String)> = alerts
        .iter()
        .map(|a| {
            let p = &a["parameters"];
            let kind = a["correction"]["kind"].as_str().unwrap_or("raised").to_string();
            let first = text(&p["member_1"]);
            (first, p["quantity"].as_u64().unwrap_or(0), p["members"].as_u64().unwrap_or(0), text(&p["window"]), kind)
        })
        .collect();
    let members_of = |quantity: u64| -> Vec<String> {
        let alert = alerts.iter().find(|a| a["parameters"]["quantity"] == quantity).expect("alerted");
        let mut m: Vec<String> = (1..=4).map(|i| text(&alert["parameters"][format!("member_{i}")])).collect();
        m.retain(|s| !s.is_empty());
        m.sort();
        m
    };
    let mut kinds: Vec<(u64, String, String)> =
        found.into_iter().map(|(_, quantity, _, window, kind)| (quantity, window, kind)).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        vec![
            (600, "1h".into(), "raised".into()),
            (600, "1h".into(), "retracted".into()),
            (700, "1h".into(), "raised".into()),
            (900, "session".into(), "raised".into()),
        ],
        "{alerts:#?}"
    );
    assert_eq!(members_of(700), vec!["RA", "RB", "RC"]);
    assert_eq!(members_of(900), vec!["SA", "SB", "SC", "SD"]);
    assert_eq!(members_of(600), vec!["UA", "UB", "UC"]);
    let of = |quantity: u64, kind: &str| {
        alerts
            .iter()
            .find(|a| {
                a["parameters"]["quantity"] == quantity && a["correction"]["kind"].as_str().unwrap_or("raised") == kind
            })
            .expect("alerted")
    };
    // Raised at the end of the second in which the second lap closed, with its six prints.
    let second_lap_closed = hour(2) + 480 * SECOND;
    assert_eq!(of(700, "raised")["evidence"].as_array().map(Vec::len), Some(6));
    let raised_at = of(700, "raised")["event_time_ns"].as_u64();
    assert!(raised_at.is_some_and(|t| t > second_lap_closed && t <= second_lap_closed + SECOND), "{raised_at:?}");
    assert_eq!(of(900, "raised")["evidence"].as_array().map(Vec::len), Some(8));
    // The retraction keeps the id and comes at the hour's end.
    assert_eq!(of(600, "retracted")["id"], of(600, "raised")["id"]);
    assert_eq!(of(600, "retracted")["event_time_ns"].as_u64(), Some(hour(5)));

    let (_, two) = run(&[events], config, 2);
    assert_eq!(alerts_without_clock(out.path()), alerts_without_clock(two.path()));
}
