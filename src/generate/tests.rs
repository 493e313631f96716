//! Tests of the generated day: format, determinism, labels, and a clean background.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::*;

const TIME: usize = 0;
const SEQ: usize = 1;
const KIND: usize = 2;
const INSTRUMENT: usize = 4;
const ORDER_ID: usize = 5;
const ACCOUNT: usize = 6;
const TRADER: usize = 7;
const DESK: usize = 8;
const OWNER: usize = 9;
const SIDE: usize = 10;
const PRICE: usize = 11;
const QUANTITY: usize = 12;
const BUYER: usize = 15;
const SELLER: usize = 16;
const BUY_ORDER: usize = 19;
const BID_PRICE: usize = 21;
const ASK_PRICE: usize = 23;

fn small(events: u64) -> GenerateConfig {
    GenerateConfig { events, ..GenerateConfig::default() }
}

fn run(config: &GenerateConfig) -> (tempfile::TempDir, GenerateSummary) {
    let dir = tempfile::tempdir().expect("tempdir");
    let summary = generate(config, dir.path()).expect("generate");
    (dir, summary)
}

/// Price text in cents; at most two decimals.
fn cents(text: &str) -> i64 {
    let (units, frac) = text.split_once('.').unwrap_or((text, ""));
    assert!(frac.len() <= 2, "too many decimals: {text}");
    let frac = format!("{frac:0<2}");
    units.parse::<i64>().expect("units") * 100 + frac.parse::<i64>().expect("fraction")
}

fn read_rows(path: &Path) -> Vec<csv::StringRecord> {
    let mut r = csv::ReaderBuilder::new().has_headers(true).from_path(path).expect("open csv");
    r.records().map(|r| r.expect("record")).collect()
}

fn owners(dir: &Path) -> BTreeMap<String, String> {
    read_rows(&dir.join("accounts.csv")).iter().map(|r| (r[0].to_string(), r[1].to_string())).collect()
}

#[test]
fn same_seed_same_bytes() {
    let config = small(20_000);
    let (a, sa) = run(&config);
    let (b, sb) = run(&config);
    for f in ["events.csv", "labels.csv", "accounts.csv", "instruments.csv", "surveil.toml"] {
        let x = fs::read(a.path().join(f)).expect("read a");
        let y = fs::read(b.path().join(f)).expect("read b");
        assert!(x == y, "{f} differs between runs");
    }
    assert_eq!(sa.events_by_kind, sb.events_by_kind);
    let (c, _) = run(&GenerateConfig { seed: 7, ..config });
    let x = fs::read(a.path().join("events.csv")).expect("read a");
    let z = fs::read(c.path().join("events.csv")).expect("read c");
    assert!(x != z, "another seed gives another day");
}

#[test]
fn canonical_csv() {
    let (dir, summary) = run(&small(30_000));
    let text = fs::read_to_string(&summary.events_path).expect("read events");
    let header = text.lines().next().expect("header line");
    assert_eq!(header, writer::HEADER);
    let rows = read_rows(&summary.events_path);
    assert_eq!(rows.len() as u64, summary.events);
    assert!(summary.events >= 30_000 && summary.events < 30_100, "{}", summary.events);
    let (open, close) = session_bounds(config_date()).expect("session");
    assert_eq!(open, 1_709_303_400_000_000_000, "2024-03-01 09:30 EST = 14:30 UTC");
    let mut last_time = 0u64;
    let mut last_seq = 0u64;
    for row in &rows {
        assert_eq!(row.len(), 27, "{row:?}");
        let t: u64 = row[TIME].parse().expect("time");
        let seq: u64 = row[SEQ].parse().expect("seq");
        assert!(t >= last_time, "time went backwards at seq {seq}");
        assert!((open..=close).contains(&t));
        assert_eq!(seq, last_seq + 1);
        (last_time, last_seq) = (t, seq);
        assert_eq!(&row[3], "XSVL");
        assert!(!row[INSTRUMENT].is_empty());
        assert!(row[OWNER].is_empty() && row[17].is_empty() && row[18].is_empty(), "owners are left empty");
        match &row[KIND] {
            "new" | "replace" | "cancel" | "fill" => {
                for f in [ORDER_ID, ACCOUNT, TRADER, DESK, SIDE] {
                    assert!(!row[f].is_empty(), "{row:?}");
                }
                if &row[KIND] != "cancel" {
                    assert!(cents(&row[PRICE]) > 0);
                    assert!(row[QUANTITY].parse::<u64>().expect("qty") > 0);
                } else if !row[QUANTITY].is_empty() {
                    assert!(row[QUANTITY].parse::<u64>().expect("qty") > 0);
                }
            }
            "trade" => {
                assert!(cents(&row[PRICE]) > 0);
                assert!(row[QUANTITY].parse::<u64>().expect("qty") > 0);
                for f in [BUYER, SELLER, BUY_ORDER, 20, 13] {
                    assert!(!row[f].is_empty(), "{row:?}");
                }
            }
            "quote" => assert!(!row[BID_PRICE].is_empty() || !row[ASK_PRICE].is_empty()),
            other => panic!("unexpected kind {other}"),
        }
    }
    let instruments = read_rows(&dir.path().join("instruments.csv"));
    assert_eq!(instruments.len(), 40);
    let accounts = read_rows(&dir.path().join("accounts.csv"));
    assert_eq!(accounts.len(), 402, "400 and two employees");
    assert_eq!(accounts.iter().filter(|r| r.get(4) == Some("employee")).count(), 2);
    let owners: BTreeSet<&str> = accounts.iter().map(|r| r.get(1).unwrap_or("")).collect();
    assert!(owners.len() < 400 && owners.len() > 300, "{} owners", owners.len());
    let toml = fs::read_to_string(dir.path().join("surveil.toml")).expect("toml");
    assert!(toml.contains("[reference]") && toml.contains("instruments = \"instruments.csv\""));
}

fn config_date() -> NaiveDate {
    GenerateConfig::default().date
}

#[test]
fn gzip_output() {
    let (dir, summary) = run(&GenerateConfig { gzip: true, ..small(5_000) });
    assert!(summary.events_path.ends_with("events.csv.gz"));
    let file = fs::File::open(&summary.events_path).expect("open");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(file), &mut text).expect("gunzip");
    assert_eq!(text.lines().count() as u64, summary.events + 1);
    let (plain, _) = run(&small(5_000));
    let plain = fs::read_to_string(plain.path().join("events.csv")).expect("read");
    assert_eq!(text, plain);
    drop(dir);
}

#[test]
fn dst_switch() {
    let d = |m, day| NaiveDate::from_ymd_opt(2024, m, day).expect("date");
    assert!(!us_dst(d(3, 1)));
    assert!(!us_dst(d(3, 9)));
    assert!(us_dst(d(3, 10)));
    assert!(us_dst(d(11, 1)));
    assert!(!us_dst(d(11, 3)));
    let (open, close) = session_bounds(d(7, 1)).expect("session");
    assert_eq!(close - open, 23_400_000_000_000);
    assert_eq!(open % 86_400_000_000_000, 13 * 3_600_000_000_000 + 30 * 60_000_000_000);
}

struct Quote {
    bid: Option<i64>,
    ask: Option<i64>,
}

/// Replays a day and checks every label against the events, and the unlabelled flow against
/// the detectors' default thresholds.
#[test]
fn labels_and_clean_background() {
    let (dir, summary) = run(&small(200_000));
    let owners = owners(dir.path());
    let labels = read_rows(&dir.path().join("labels.csv"));
    assert_eq!(labels.len() as u64, summary.labels);
    for (rule, min) in [
        ("order_quantity_limit", 10),
        ("order_notional_limit", 10),
        ("off_market_price", 10),
        ("self_trade", 20),
        ("order_to_trade_ratio", 3),
    ] {
        let n = summary.labels_by_rule.get(rule).copied().unwrap_or(0);
        assert!(n >= min, "{rule}: {n} labels < {min}");
    }
    let mut labelled_orders: BTreeMap<String, String> = BTreeMap::new();
    let mut labelled_trades: BTreeSet<String> = BTreeSet::new();
    let mut storms: BTreeSet<(String, String)> = BTreeSet::new();
    // (instrument, account) of the spoofing, layering and momentum-ignition scenarios, whose
    // orders are large.
    let mut abusers: BTreeSet<(String, String)> = BTreeSet::new();
    // (account, instrument) of the quote-stuffing bursts: hundreds of messages, no trade.
    let mut stuffers: BTreeSet<(String, String)> = BTreeSet::new();
    for l in &labels {
        assert_eq!(&l[3], "2024-03-01");
        match &l[0] {
            "self_trade" => {
                labelled_trades.insert(l[5].to_string());
            }
            "order_to_trade_ratio" => {
                assert!(l[5].is_empty());
                assert_eq!(l[4].parse::<u64>().expect("time"), 1_709_326_800_000_000_000, "16:00 EST");
                storms.insert((l[2].to_string(), l[1].to_string()));
            }
            "quote_stuffing" | "marking_close" => {
                // One per account, instrument and session; their orders are background-sized.
                assert!(l[5].is_empty());
                if &l[0] == "marking_close" {
                    assert_eq!(l[4].parse::<u64>().expect("time"), 1_709_326_800_000_000_000, "16:00 EST");
                }
                abusers.insert((l[1].to_string(), l[2].to_string()));
                if &l[0] == "quote_stuffing" {
                    stuffers.insert((l[2].to_string(), l[1].to_string()));
                }
            }
            rule => {
                if matches!(rule, "spoofing" | "layering" | "momentum_ignition") {
                    abusers.insert((l[1].to_string(), l[2].to_string()));
                }
                labelled_orders.insert(l[5].to_string(), rule.to_string());
            }
        }
    }

    let rows = read_rows(&summary.events_path);
    let mut quotes: BTreeMap<String, Quote> = BTreeMap::new();
    let mut seen_orders = BTreeSet::new();
    let mut seen_trades = BTreeSet::new();
    let mut order_info: BTreeMap<String, (i64, u64)> = BTreeMap::new();
    for (k, row) in rows.iter().enumerate() {
        let inst = row[INSTRUMENT].to_string();
        let kind = &row[KIND];
        let q = quotes.entry(inst.clone()).or_insert(Quote { bid: None, ask: None });
        match kind {
            "quote" => {
                q.bid = (!row[BID_PRICE].is_empty()).then(|| cents(&row[BID_PRICE]));
                q.ask = (!row[ASK_PRICE].is_empty()).then(|| cents(&row[ASK_PRICE]));
            }
            "new" | "replace" => {
                let price = cents(&row[PRICE]);
                let qty: u64 = row[QUANTITY].parse().expect("qty");
                let notional = price as u128 * qty as u128;
                let id = &row[ORDER_ID];
                if kind == "new" {
                    order_info.insert(id.to_string(), (price, qty));
                }
                let off_market = match &row[SIDE] {
                    "buy" => q.ask.is_some_and(|a| price * 100 > a * 105),
                    _ => q.bid.is_some_and(|b| price * 100 < b * 95),
                };
                match labelled_orders.get(id).map(String::as_str) {
                    Some(rule) if kind == "new" => {
                        seen_orders.insert(id.to_string());
                        let big = qty > 100_000;
                        let rich = notional > 500_000_000;
                        let tripped: Vec<&str> = [
                            (big, "order_quantity_limit"),
                            (rich, "order_notional_limit"),
                            (off_market, "off_market_price"),
                        ]
                        .iter()
                        .filter(|x| x.0)
                        .map(|x| x.1)
                        .collect();
                        if matches!(rule, "spoofing" | "layering" | "momentum_ignition" | "front_running") {
                            // The first order of a scenario: judged by the book rules, and
                            // under every order limit.
                            assert!(tripped.is_empty(), "order {id} of a {rule} scenario trips {tripped:?}");
                        } else {
                            assert_eq!(tripped, vec![rule], "order {id} should trip only {rule}");
                        }
                        if rule == "off_market_price" {
                            let next = &rows[k + 1];
                            assert_eq!((&next[KIND], &next[ORDER_ID]), ("cancel", id), "fat finger pulled at once");
                            assert!(
                                price * 100 > q.ask.unwrap_or(i64::MAX / 200) * 110
                                    || price * 100 < q.bid.unwrap_or(0) * 90
                            );
                        }
                    }
                    _ if abusers.contains(&(inst.clone(), row[ACCOUNT].to_string())) => {
                        // A scenario's other orders: large, but under every order limit.
                        assert!(qty <= 100_000 && notional <= 500_000_000, "scenario order at seq {}", &row[SEQ]);
                        assert!(!off_market, "scenario order off market at seq {}", &row[SEQ]);
                    }
                    _ => {
                        assert!(qty <= 20_000, "background quantity {qty} at seq {}", &row[SEQ]);
                        assert!(notional <= 200_000_000, "background notional at seq {}", &row[SEQ]);
                        assert!(!off_market, "background order off market at seq {}", &row[SEQ]);
                    }
                }
            }
            "fill" => {
                let price = cents(&row[PRICE]);
                assert!(
                    q.bid.is_none_or(|b| price >= b) && q.ask.is_none_or(|a| price <= a),
                    "fill at {price} outside the quote at seq {}",
                    &row[SEQ]
                );
            }
            "trade" => {
                let (buyer, seller) = (&row[BUYER], &row[SELLER]);
                let self_trade = buyer == seller || owners.get(buyer) == owners.get(seller);
                let id = &row[BUY_ORDER];
                if labelled_trades.contains(id) {
                    assert!(self_trade, "labelled wash trade {id} is not a self trade");
                    let price = cents(&row[PRICE]);
                    let qty: u64 = row[QUANTITY].parse().expect("qty");
                    assert!(qty <= 100_000 && price as u128 * qty as u128 <= 500_000_000);
                    seen_trades.insert(id.to_string());
                } else {
                    assert!(!self_trade, "unlabelled self trade at seq {}", &row[SEQ]);
                }
            }
            _ => {}
        }
    }
    let missing: Vec<_> = labelled_orders.keys().filter(|id| !seen_orders.contains(*id)).collect();
    assert!(missing.is_empty(), "labelled orders without a new event: {missing:?}");
    assert_eq!(seen_trades, labelled_trades, "every wash-trade label has its trade");
    for id in labelled_orders.keys() {
        assert!(order_info.contains_key(id));
    }

    // Order-to-trade ratio (as the detector counts it): the storms breach it, nobody else
    // breaches the default limits (100 by count, 500 by volume) or comes close by count.
    let stats = otr(&rows);
    for (key, s) in &stats {
        if storms.contains(key) {
            assert!(s.messages >= 3_000, "{key:?}: {s:?}");
            assert!((1..=10).contains(&s.fills), "{key:?}: {s:?}");
            assert!(s.new as f64 / s.fills as f64 - 1.0 > 300.0, "{key:?}: ratio too low");
        } else if stuffers.contains(key) {
            // A burst is the stuffing rule's: below the detector's 500 counted messages, or
            // under its limit of 100 by count with the account's other trading.
            assert!(s.messages < 500 || s.count_ratio() < 100.0, "{key:?}: {s:?}");
        } else if s.messages >= 500 {
            // Where the detector counts (500 messages or more), nobody comes near its count
            // limit. Spoofing scenarios raise the volume ratio by design (orders 10-50 times
            // the genuine ones, filled or not): under the limit.
            assert!(s.count_ratio() < 50.0, "{key:?}: {s:?}");
            assert!(s.volume_ratio() < 500.0, "{key:?}: {s:?}");
        } else if s.messages >= 200 {
            // Below that, an account with a few hundred messages and a handful of fills (an
            // institution replacing a large order all day) stays under the count limit.
            assert!(s.count_ratio() < 100.0, "{key:?}: {s:?}");
        }
    }
    assert_eq!(storms.len(), 3);
}

/// Per (account, instrument): the order-to-trade counts as the detector defines them
/// (MiFID RTS 9: replace weighs 2; volume counts new, cancelled, and removed-plus-new).
#[derive(Default, Debug, Clone, Copy)]
struct Otr {
    new: u64,
    messages: u64,
    fills: u64,
    order_volume: u64,
    fill_volume: u64,
}

impl Otr {
    fn count_ratio(&self) -> f64 {
        self.messages as f64 / self.fills.max(1) as f64 - 1.0
    }
    fn volume_ratio(&self) -> f64 {
        self.order_volume as f64 / self.fill_volume.max(1) as f64 - 1.0
    }
}

fn otr(rows: &[csv::StringRecord]) -> BTreeMap<(String, String), Otr> {
    let mut open: BTreeMap<String, u64> = BTreeMap::new();
    let mut out: BTreeMap<(String, String), Otr> = BTreeMap::new();
    for row in rows {
        let kind = &row[KIND];
        if !matches!(kind, "new" | "replace" | "cancel" | "fill") {
            continue;
        }
        let id = row[ORDER_ID].to_string();
        let qty: u64 = row[QUANTITY].parse().unwrap_or(0);
        let e = out.entry((row[ACCOUNT].to_string(), row[INSTRUMENT].to_string())).or_default();
        match kind {
            "new" => {
                e.new += 1;
                e.messages += 1;
                e.order_volume += qty;
                open.insert(id, qty);
            }
            "replace" => {
                e.messages += 2;
                let before = open.insert(id, qty).unwrap_or(0);
                e.order_volume += before + qty;
            }
            "cancel" => {
                e.messages += 1;
                let rem = open.get(&id).copied().unwrap_or(0);
                let c = if row[QUANTITY].is_empty() { rem } else { qty };
                e.order_volume += c;
                if c >= rem {
                    open.remove(&id);
                } else {
                    open.insert(id, rem - c);
                }
            }
            _ => {
                e.fills += 1;
                e.fill_volume += qty;
                if let Some(r) = open.get_mut(&id) {
                    *r = r.saturating_sub(qty);
                }
            }
        }
    }
    out
}

/// Times a default (2M-event) day and prints the mix and order-to-trade statistics:
/// `cargo test --release --lib generate -- --ignored --nocapture` (`GENERATE_EVENTS` and
/// `GENERATE_GZIP=1` change the size and compression).
#[test]
#[ignore]
fn timing_default_day() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = GenerateConfig::default();
    if let Some(n) = std::env::var("GENERATE_EVENTS").ok().and_then(|v| v.parse().ok()) {
        config.events = n;
    }
    config.gzip = std::env::var("GENERATE_GZIP").is_ok_and(|v| v == "1");
    let start = std::time::Instant::now();
    let summary = generate(&config, dir.path()).expect("generate");
    let secs = start.elapsed().as_secs_f64();
    let bytes = fs::metadata(&summary.events_path).map(|m| m.len()).unwrap_or(0);
    println!(
        "{} events in {secs:.2} s = {:.2} M events/s, {:.0} MB ({:.0} bytes/event)",
        summary.events,
        summary.events as f64 / secs / 1e6,
        bytes as f64 / 1e6,
        bytes as f64 / summary.events as f64
    );
    for (k, n) in &summary.events_by_kind {
        println!("  {k:8} {n:9} {:5.1}%", *n as f64 * 100.0 / summary.events as f64);
    }
    println!("labels: {:?}", summary.labels_by_rule);
    if config.gzip || config.events > 2_000_000 {
        return;
    }
    let rows = read_rows(&summary.events_path);
    let stats = otr(&rows);
    let mut by_count: Vec<_> = stats.iter().filter(|(_, s)| s.messages >= 500).collect();
    by_count.sort_by(|a, b| b.1.count_ratio().total_cmp(&a.1.count_ratio()));
    println!("pairs with >= 500 messages: {} of {}", by_count.len(), stats.len());
    for (k, s) in by_count.iter().take(8) {
        println!("  {k:?} count {:.1} volume {:.1} {s:?}", s.count_ratio(), s.volume_ratio());
    }
    by_count.sort_by(|a, b| b.1.volume_ratio().total_cmp(&a.1.volume_ratio()));
    for (k, s) in by_count.iter().take(8) {
        println!("  {k:?} count {:.1} volume {:.1} {s:?}", s.count_ratio(), s.volume_ratio());
    }
    let desks: BTreeMap<String, String> =
        read_rows(&dir.path().join("accounts.csv")).iter().map(|r| (r[0].to_string(), r[2].to_string())).collect();
    let mut by_desk: BTreeMap<String, (Otr, f64, usize)> = BTreeMap::new();
    for ((account, _), s) in &stats {
        let d = by_desk.entry(desks.get(account).cloned().unwrap_or_default()).or_default();
        d.0.new += s.new;
        d.0.messages += s.messages;
        d.0.fills += s.fills;
        d.0.order_volume += s.order_volume;
        d.0.fill_volume += s.fill_volume;
        if s.messages >= 500 && s.count_ratio() < 1000.0 {
            d.1 = d.1.max(s.count_ratio());
            d.2 += 1;
        }
    }
    for (desk, (s, max, n)) in &by_desk {
        println!(
            "  {desk:12} count {:6.1} volume {:6.1} max count {max:5.1} over {n:4} pairs  {s:?}",
            s.count_ratio(),
            s.volume_ratio()
        );
    }
    let mut per_instrument: BTreeMap<&str, u64> = BTreeMap::new();
    for r in &rows {
        *per_instrument.entry(r.get(INSTRUMENT).unwrap_or("")).or_default() += 1;
    }
    let mut v: Vec<_> = per_instrument.values().copied().collect();
    v.sort_unstable();
    println!("events per instrument: min {} median {} max {}", v[0], v[v.len() / 2], v[v.len() - 1]);
}

/// Share of each event kind in a generated day.
fn shares(summary: &GenerateSummary) -> BTreeMap<String, f64> {
    let total = summary.events as f64;
    summary.events_by_kind.iter().map(|(kind, n)| (kind.clone(), *n as f64 / total)).collect()
}

#[test]
fn the_event_mix_moves_the_shares_of_kinds() {
    let base = small(60_000);
    let (_a, default_day) = run(&base);
    let (_b, takers) = run(&GenerateConfig { mix: "take=3".parse().expect("mix"), ..base.clone() });
    let (_c, replacers) =
        run(&GenerateConfig { mix: "cancel=0.01,replace=0.05".parse().expect("mix"), ..base.clone() });
    let (d, e, f) = (shares(&default_day), shares(&takers), shares(&replacers));
    let executions = |s: &BTreeMap<String, f64>| s["fill"] + s["trade"];
    assert!(
        executions(&e) > 2.0 * executions(&d),
        "six times the aggressive orders: fills and trades {:.3} vs {:.3}",
        executions(&e),
        executions(&d)
    );
    assert!(f["cancel"] < d["cancel"] - 0.05, "cancels {:.3} vs {:.3}", f["cancel"], d["cancel"]);
    assert!(f["replace"] > 2.0 * d["replace"], "replaces {:.3} vs {:.3}", f["replace"], d["replace"]);
    // Every mix still holds the injected breaches.
    assert_eq!(takers.labels_by_rule.keys().collect::<Vec<_>>(), default_day.labels_by_rule.keys().collect::<Vec<_>>());
}

#[test]
fn the_default_mix_is_the_default_day() {
    let config = small(20_000);
    let mix = "market_maker=3.4,passive=4,take=0.52,cancel=0.05,replace=0.006".parse().expect("mix");
    let explicit = GenerateConfig { mix, ..config.clone() };
    let (a, _) = run(&config);
    let (b, _) = run(&explicit);
    let x = fs::read(a.path().join("events.csv")).expect("read a");
    let y = fs::read(b.path().join("events.csv")).expect("read b");
    assert!(x == y, "spelling out the default mix changes nothing");
}

#[test]
fn invalid_mixes_are_refused_with_the_reason() {
    for (text, why) in [
        ("take", "expected name=weight"),
        ("take=x", "not a number"),
        ("takes=1", "unknown name"),
        ("cancel=-0.1", ">= 0"),
        ("cancel=inf", ">= 0"),
        ("market_maker=0,passive=0,take=0", "no order is ever entered"),
    ] {
        let error = text.parse::<EventMix>().expect_err(text).to_string();
        assert!(error.contains(why), "{text}: {error}");
    }
    let bad = GenerateConfig { mix: EventMix { take: f64::NAN, ..EventMix::default() }, ..small(1_000) };
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(matches!(generate(&bad, dir.path()), Err(GenerateError::InvalidConfig(_))));
}
