//! Spoofing and layering on scenarios shaped like the enforcement cases: the Coscia cycle
//! (a small genuine order, three large orders on the ticks beyond the other side's touch,
//! cancelled once the genuine order fills) and the Sarao wall (large sell orders on five
//! consecutive levels, modified many times, cancelled after buying).

mod common;

use std::sync::Arc;

use surveil::config::{LayeringConfig, MarkingCloseConfig, QuoteStuffingConfig, SessionConfig, SpoofingConfig};
use surveil::model::{Alert, Event, EventKind, Side, Symbol};
use surveil::rules::{Layering, MarkingClose, QuoteStuffing, Spoofing};
use surveil::testing::{cancel, fill, new_order, replace, run, run_on};

const MS: u64 = 1_000_000;

/// A book of other accounts: bids 10.00 x 500 and 9.99 x 800, asks 10.02 x 500 and 10.05 x 400.
fn background(t: u64) -> Vec<Event> {
    vec![
        new_order("ACME", "B1", "MM", Side::Buy, "10.00", 500).at(t),
        new_order("ACME", "B2", "MM", Side::Buy, "9.99", 800).at(t + 1),
        new_order("ACME", "A1", "MM", Side::Sell, "10.02", 500).at(t + 2),
        new_order("ACME", "A2", "MM", Side::Sell, "10.05", 400).at(t + 3),
    ]
}

/// One Coscia cycle of `account` starting at `t` ms: a genuine buy of 100 improving the bid,
/// sells of 700, 500 and 300 on the three ticks from the best ask, the buy filled at +300 ms
/// and the sells cancelled `cancel_after` ms after the fill, with `spoof_fill` of the first
/// sell executed before.
fn coscia(account: &str, cycle: usize, t: u64, cancel_after: u64, spoof_fill: u64) -> Vec<Event> {
    let id = |what: &str| format!("{account}-{cycle}-{what}");
    let at = |ms: u64| (t + ms) * MS;
    let mut events = vec![
        new_order("ACME", &id("G"), account, Side::Buy, "10.01", 100).at(at(0)),
        new_order("ACME", &id("S1"), account, Side::Sell, "10.02", 700).at(at(20)),
        new_order("ACME", &id("S2"), account, Side::Sell, "10.03", 500).at(at(21)),
        new_order("ACME", &id("S3"), account, Side::Sell, "10.04", 300).at(at(22)),
    ];
    if spoof_fill > 0 {
        events.push(fill("ACME", &id("S1"), account, Side::Sell, "10.02", spoof_fill).at(at(100)));
    }
    events.push(fill("ACME", &id("G"), account, Side::Buy, "10.01", 100).at(at(300)));
    for s in ["S1", "S2", "S3"] {
        events.push(cancel("ACME", &id(s), account).at(at(300 + cancel_after)));
    }
    events
}

/// The orders of `events` whose id ends with one of `suffixes` made reserve orders showing
/// `shown` of their size.
fn as_reserve(mut events: Vec<Event>, suffixes: &[&str], shown: u64, ids: &[String]) -> Vec<Event> {
    let reserve: Vec<Symbol> =
        ids.iter().filter(|id| suffixes.iter().any(|s| id.ends_with(s))).map(|id| Symbol::of(id.as_bytes())).collect();
    for e in &mut events {
        if let surveil::model::Body::NewOrder { order, quantity, ref mut displayed, .. } = e.body
            && reserve.contains(&order)
        {
            *displayed = Some(shown.min(quantity));
        }
    }
    events
}

fn with_origins(mut events: Vec<Event>) -> Vec<Event> {
    events.sort_by_key(|e| e.time);
    for (i, e) in events.iter_mut().enumerate() {
        e.origin = surveil::model::Origin::new(0, i as u64 * 100);
    }
    events
}

fn coscia_day(cycles: usize, cancel_after: u64, spoof_fill: u64) -> Vec<Event> {
    let mut events = background(0);
    for c in 0..cycles {
        events.extend(coscia("SPOOFER", c, 1_000 + 2_000 * c as u64, cancel_after, spoof_fill));
    }
    with_origins(events)
}

#[test]
fn repeated_coscia_cycles_are_spoofing_with_their_evidence() {
    let alerts = run(Spoofing::new(&SpoofingConfig::default()), coscia_day(3, 200, 0));
    assert_eq!(alerts.len(), 3, "{alerts:#?}");
    for a in &alerts {
        assert_eq!(a.rule, "spoofing");
        assert_eq!(a.account, Symbol::of(b"SPOOFER"));
        // Three spoof entries, the genuine fill, three cancels.
        assert_eq!(a.evidence.len(), 7, "{a:#?}");
        let param = |name: &str| a.parameters.iter().find(|p| p.name == name).map(|p| format!("{:?}", p.value));
        assert_eq!(param("spoof_quantity").as_deref(), Some("Count(1500)"));
        assert_eq!(param("size_ratio").as_deref(), Some("Ratio(15.0)"));
        // The mid went from 10.015 (the genuine bid at 10.01, the spoofs joining the 10.02
        // offer) to 10.01 at the genuine fill: 5 bp the spoofs' way.
        let moved = a.parameters.iter().find(|p| p.name == "price_move_bps").map(|p| format!("{:?}", p.value));
        assert!(moved.as_deref().is_some_and(|m| m.starts_with("Ratio(4.99")), "{moved:?}");
        assert!(a.explanation.contains("3 sell orders of 1500 cancelled 0.2 s after"), "{}", a.explanation);
        assert!(a.score > 50.0, "{}", a.score);
    }
    // The first episode is reported when the second shows the pattern: both at that moment,
    // the first with its own evidence (its spoofs entered two seconds before the second's).
    assert_eq!(alerts[0].time, alerts[1].time);
    let entries: Vec<u64> = alerts.iter().map(|a| a.evidence[0].time).collect();
    assert!(entries.contains(&(1_020 * MS)) && entries.contains(&(3_020 * MS)), "{entries:?}");
    // The same alerts on two workers.
    assert_eq!(run_on(2, Spoofing::new(&SpoofingConfig::default()), coscia_day(3, 200, 0)), alerts);
    // One spoof entered at the touch and two behind it: spoofing, not layering (layers are
    // entered behind the touch, on three levels at least).
    assert!(run(Layering::new(&LayeringConfig::default()), coscia_day(3, 200, 0)).is_empty());
}

#[test]
fn a_spoof_counts_by_what_the_book_shows_and_a_hidden_genuine_order_is_evidence() {
    let ids: Vec<String> =
        (0..3).flat_map(|c| ["G", "S1", "S2", "S3"].map(move |what| format!("SPOOFER-{c}-{what}"))).collect();
    let rule = || Spoofing::new(&SpoofingConfig::default());
    // The genuine buys of 100 show 10: still spoofing, and the alert says how little showed.
    let hidden_genuine = with_origins(as_reserve(coscia_day(3, 200, 0), &["-G"], 10, &ids));
    let alerts = run(rule(), hidden_genuine);
    assert_eq!(alerts.len(), 3, "{alerts:#?}");
    let param = |a: &surveil::model::Alert, name: &str| {
        a.parameters.iter().find(|p| p.name == name).map(|p| format!("{:?}", p.value))
    };
    assert_eq!(param(&alerts[0], "genuine_displayed_share").as_deref(), Some("Ratio(0.1)"));
    assert_eq!(param(&alerts[0], "spoof_displayed_share").as_deref(), Some("Ratio(1.0)"));
    assert!(alerts[0].explanation.contains("the genuine orders showed 10 %"), "{}", alerts[0].explanation);
    // Sells that show only a round lot each: the one at the touch shows 100 against the 500
    // resting there, so it adds no significant size and is no spoof; the two behind (800 in
    // all) are 8 times the genuine order, short of the 10 times the rule needs.
    let hidden_spoofs = with_origins(as_reserve(coscia_day(3, 200, 0), &["-S1", "-S2", "-S3"], 100, &ids));
    assert!(run(rule(), hidden_spoofs).is_empty());
}

#[test]
fn one_cycle_slow_cancels_filled_spoofs_or_small_ratios_are_not_spoofing() {
    let rule = || Spoofing::new(&SpoofingConfig::default());
    assert!(run(rule(), coscia_day(1, 200, 0)).is_empty(), "one coincidence is not a pattern");
    assert!(run(rule(), coscia_day(3, 8_000, 0)).is_empty(), "cancelled 8 s after the fill");
    assert!(run(rule(), coscia_day(3, 200, 200)).is_empty(), "the large order traded");
    let strict = SpoofingConfig { min_size_ratio: 20.0, ..SpoofingConfig::default() };
    assert!(run(Spoofing::new(&strict), coscia_day(3, 200, 0)).is_empty(), "15x is below 20x");
    let single = SpoofingConfig { min_episodes: 1, ..SpoofingConfig::default() };
    assert_eq!(run(Spoofing::new(&single), coscia_day(1, 200, 0)).len(), 1);
    // Cancelled just before the genuine fill: still the pattern (within the grace).
    let mut early = coscia_day(2, 0, 0);
    for e in &mut early {
        if matches!(e.body, surveil::model::Body::Cancel { .. }) {
            e.time -= 100 * MS;
        }
    }
    assert_eq!(run(rule(), with_origins(early)).len(), 2);
}

/// A Sarao wall of `account`: sells of 600 on the five levels 10.03-10.07, each replaced
/// `replaces` times, a buy filled at the best ask, then the wall cancelled.
fn sarao(account: &str, replaces: usize, layer: u64, other_depth: u64) -> Vec<Event> {
    let mut events = background(0);
    for (i, p) in ["10.03", "10.04", "10.05", "10.06", "10.07"].iter().enumerate() {
        events.push(new_order("ACME", &format!("O{i}"), "OTHER", Side::Sell, p, other_depth).at(10 * MS + i as u64));
    }
    let mut t = 1_000 * MS;
    for (i, p) in ["10.03", "10.04", "10.05", "10.06", "10.07"].iter().enumerate() {
        events.push(new_order("ACME", &format!("L{i}"), account, Side::Sell, p, layer).at(t + i as u64));
    }
    for r in 0..replaces {
        t += 500 * MS;
        for i in 0..5 {
            let q = layer + if r % 2 == 0 { 100 } else { 0 };
            events.push(replace("ACME", &format!("L{i}"), account, None, q).at(t + i as u64));
        }
    }
    t += 1_000 * MS;
    events.push(new_order("ACME", "BUY", account, Side::Buy, "10.02", 300).at(t));
    events.push(fill("ACME", "BUY", account, Side::Buy, "10.02", 300).at(t + 1));
    t += 2_000 * MS;
    for i in 0..5 {
        events.push(cancel("ACME", &format!("L{i}"), account).at(t + i as u64));
    }
    with_origins(events)
}

#[test]
fn a_sarao_wall_cancelled_after_buying_is_layering() {
    let alerts = run(Layering::new(&LayeringConfig::default()), sarao("WALL", 6, 600, 300));
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let a = &alerts[0];
    assert_eq!(a.rule, "layering");
    // The best ask (10.02) is another account's: the layer at 10.07 is the sixth level, outside
    // the five the share is measured over.
    assert_eq!(a.evidence.len(), 9, "four entries, the buy, four cancels");
    assert!(a.explanation.contains("4 sell orders on 4 levels"), "{}", a.explanation);
    assert!(a.explanation.contains("24 replaces"), "{}", a.explanation);
    // The market did not move meanwhile: the mid stayed at 10.01.
    let moved = |a: &Alert| a.parameters.iter().find(|p| p.name == "price_move_bps").map(|p| format!("{:?}", p.value));
    assert_eq!(moved(a).as_deref(), Some("Ratio(0.0)"));
    assert_eq!(run_on(2, Layering::new(&LayeringConfig::default()), sarao("WALL", 6, 600, 300)), alerts);
    // The bid at 10.00 pulled before the buy: the mid fell from 10.01 to 10.005, 5 bp the wall's
    // way, which the alert states.
    let mut events = sarao("WALL", 6, 600, 300);
    events.push(cancel("ACME", "B1", "MM").at(4_900 * MS));
    let alerts = run(Layering::new(&LayeringConfig::default()), with_origins(events));
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let moved = moved(&alerts[0]);
    assert!(moved.as_deref().is_some_and(|m| m.starts_with("Ratio(4.99")), "{moved:?}");
}

#[test]
fn small_layers_or_layers_that_trade_are_not_layering() {
    let rule = || Layering::new(&LayeringConfig::default());
    // 5 x 50 against 5 x 3,000 of others: under 20 % of the visible depth.
    assert!(run(rule(), sarao("WALL", 2, 50, 3_000)).is_empty());
    // A layer that fills is no longer a layer: four left still make the pattern; with three
    // layers required and three filled, two do not.
    let mut events = sarao("WALL", 2, 600, 300);
    let end = events.last().map(|e| e.time).unwrap_or(0);
    for i in 0..3 {
        let level = ["10.03", "10.04", "10.05"][i];
        events.push(fill("ACME", &format!("L{i}"), "WALL", Side::Sell, level, 600).at(end - 1_000 * MS + i as u64));
    }
    assert!(run(rule(), with_origins(events)).is_empty());
}

const AMZN: &str = "lobster/amzn_2012-06-21_level1_modified/AMZN_2012-06-21_34200000_57600000_message_1.csv";
const AAPL: &str = "lobster/aapl_2012-06-21/AAPL_2012-06-21_34200000_37800000_message_50.csv";

/// The AAPL hour with each order given one of `accounts` synthetic accounts at random (seeded):
/// real flow, where fleeting orders and large cancels are normal.
fn aapl_with_accounts(accounts: u64, seed: u64) -> Vec<Event> {
    let mut events = common::lobster_events(&common::data(AAPL));
    for e in &mut events {
        if let Some(order) = e.order() {
            let n = xxhash_rust::xxh3::xxh3_64_with_seed(&order.0.to_le_bytes(), seed) % accounts;
            e.account = Symbol::of(format!("ACC{n}").as_bytes());
        }
    }
    events
}

#[test]
fn the_untouched_aapl_hour_with_500_accounts_raises_no_spoofing_or_layering() {
    for seed in [1, 2, 3] {
        let events = aapl_with_accounts(500, seed);
        let spoofing = run(Spoofing::new(&SpoofingConfig::default()), events.clone());
        let single =
            run(Spoofing::new(&SpoofingConfig { min_episodes: 1, ..SpoofingConfig::default() }), events.clone());
        let layering = run(Layering::new(&LayeringConfig::default()), events);
        eprintln!(
            "seed {seed}: spoofing {} (single episodes {}), layering {}",
            spoofing.len(),
            single.len(),
            layering.len()
        );
        assert!(spoofing.is_empty() && layering.is_empty(), "{spoofing:#?} {layering:#?}");
    }
}

#[test]
fn the_untouched_aapl_hour_raises_no_quote_stuffing() {
    let rule = || QuoteStuffing::new(&QuoteStuffingConfig::default());
    // As recorded: no accounts, so nothing is attributed to anyone (the hour's own bursts reach
    // 64 changes of the best bid in 0.12 s and 240 in 5 s, market-wide).
    assert!(run(rule(), common::lobster_events(&common::data(AAPL))).is_empty());
    for seed in [1, 2, 3] {
        let alerts = run(rule(), aapl_with_accounts(500, seed));
        assert!(alerts.is_empty(), "seed {seed}: {alerts:#?}");
    }
    // The measure is live on this flow: spread over 500 accounts, an account's busiest 5 s
    // changes the best level 5 or 6 times, so a limit of 2 is crossed.
    let strict = QuoteStuffingConfig { max_book_changes: 2, ..QuoteStuffingConfig::default() };
    assert!(!run(QuoteStuffing::new(&strict), aapl_with_accounts(500, 1)).is_empty());
}

#[test]
fn the_amzn_close_with_synthetic_accounts_is_not_marked() {
    let sessions =
        SessionConfig { timezone: "America/New_York".into(), close: Some("16:00".into()), ..SessionConfig::default() };
    let reference = Arc::new(surveil::reference::ReferenceData::new(4));
    let mut events = common::lobster_events(&common::data(AMZN));
    let anonymous =
        run(MarkingClose::new(&MarkingCloseConfig::default(), &sessions, reference.clone()), events.clone());
    assert!(anonymous.is_empty(), "{anonymous:#?}");
    // Ten accounts, each about a tenth of the closing volume: the day's own close (down 0.28 %
    // from 15:30) does not read as marked. A level-1 LOBSTER file shows only the resting side of
    // each execution, so accounts here can only be passive.
    for e in &mut events {
        if let Some(order) = e.order() {
            let n = xxhash_rust::xxh3::xxh3_64_with_seed(&order.0.to_le_bytes(), 7) % 10;
            e.account = Symbol::of(format!("ACC{n}").as_bytes());
        }
    }
    let alerts = run(MarkingClose::new(&MarkingCloseConfig::default(), &sessions, reference), events);
    assert!(alerts.is_empty(), "{alerts:#?}");
}

/// One spoofing cycle of `account` at `t` ms: a genuine buy of 100 filled at +300 ms, and sells
/// of 1,500 on the two ticks from the ask, entered at +20 ms and cancelled at the given times.
fn staggered(account: &str, cycle: usize, t: u64, filled_at: u64, cancels: [u64; 2]) -> Vec<Event> {
    let id = |what: &str| format!("{account}-{cycle}-{what}");
    let at = |ms: u64| (t + ms) * MS;
    vec![
        new_order("ACME", &id("G"), account, Side::Buy, "10.01", 100).at(at(0)),
        new_order("ACME", &id("S1"), account, Side::Sell, "10.02", 1_500).at(at(20)),
        new_order("ACME", &id("S2"), account, Side::Sell, "10.03", 1_500).at(at(21)),
        fill("ACME", &id("G"), account, Side::Buy, "10.01", 100).at(at(filled_at)),
        cancel("ACME", &id("S1"), account).at(at(cancels[0])),
        cancel("ACME", &id("S2"), account).at(at(cancels[1])),
    ]
}

#[test]
fn one_genuine_fill_makes_one_episode_and_staggered_cancels_are_judged_together() {
    let rule = || Spoofing::new(&SpoofingConfig::default());
    // Cancels 1.6 s apart around one fill: one episode, not two, so no pattern.
    let mut one = background(0);
    one.extend(staggered("SP", 0, 1_000, 300, [400, 1_900]));
    assert!(run(rule(), with_origins(one)).is_empty());
    // Two cycles whose first spoof is pulled 1.5 s before the fill and the second 0.7 s before
    // it: each cycle is judged once both graces have passed, and the pattern is found.
    let mut two = background(0);
    two.extend(staggered("SP", 0, 1_000, 1_600, [100, 900]));
    two.extend(staggered("SP", 1, 10_000, 1_600, [100, 900]));
    let alerts = run(rule(), with_origins(two));
    assert_eq!(alerts.len(), 2, "{alerts:#?}");
    assert!(alerts.iter().all(|a| a.evidence.len() == 5), "two entries, the fill, two cancels");
}

#[test]
fn a_wall_with_a_layer_left_resting_or_filled_is_still_layering() {
    let rule = || Layering::new(&LayeringConfig::default());
    // The wall's fourth layer (10.06) stays: judged when the window has passed.
    let resting: Vec<Event> = sarao("WALL", 2, 600, 300)
        .into_iter()
        .filter(|e| !(e.order() == Some(Symbol::of(b"L3")) && e.kind() == EventKind::Cancel))
        .collect();
    let alerts = run(rule(), with_origins(resting));
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert!(alerts[0].explanation.contains("3 sell orders on 4 levels"), "{}", alerts[0].explanation);
    // The fourth layer filled instead of cancelled: the other three are the pattern.
    let mut filled: Vec<Event> = sarao("WALL", 2, 600, 300)
        .into_iter()
        .filter(|e| !(e.order() == Some(Symbol::of(b"L3")) && e.kind() == EventKind::Cancel))
        .collect();
    let end = filled.iter().map(|e| e.time).max().unwrap_or(0);
    filled.push(fill("ACME", "L3", "WALL", Side::Sell, "10.06", 700).at(end + 1));
    let alerts = run(rule(), with_origins(filled));
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    // The fill came before the alert was due: one alert, its score lowered by the share of the
    // layers' quantity that executed.
    assert!(alerts[0].correction.is_none());
    let executed = param(&alerts[0], "executed_share");
    assert!(executed > 0.2 && executed < 0.5, "{executed}");
}

fn param(alert: &surveil::model::Alert, name: &str) -> f64 {
    match alert.parameters.iter().find(|p| p.name == name).map(|p| &p.value) {
        Some(surveil::model::Value::Ratio(r)) => *r,
        Some(surveil::model::Value::Count(n)) => *n as f64,
        other => panic!("{name}: {other:?}"),
    }
}

/// The Sarao wall with its fourth layer (10.06) left resting after the others' cancels, and
/// then, `after` ms later, `then` (a fill or cancel of it, or nothing).
fn wall_with_a_late_layer(then: Option<&str>, after: u64) -> Vec<Event> {
    let mut events: Vec<Event> = sarao("WALL", 2, 600, 300)
        .into_iter()
        .filter(|e| !(e.order() == Some(Symbol::of(b"L3")) && e.kind() == EventKind::Cancel))
        .collect();
    let end = events.iter().map(|e| e.time).max().unwrap_or(0);
    match then {
        Some("fill") => events.push(fill("ACME", "L3", "WALL", Side::Sell, "10.06", 600).at(end + after * MS)),
        Some("cancel") => events.push(cancel("ACME", "L3", "WALL").at(end + after * MS)),
        _ => {}
    }
    with_origins(events)
}

#[test]
fn a_wall_is_raised_while_a_layer_rests_and_corrected_when_it_trades() {
    use surveil::model::CorrectionKind;
    let rule = |config: LayeringConfig| Layering::new(&config);
    // Three layers pulled within a second of the buy, the fourth left: raised 5 s after the buy
    // (when no later cancel could count), not when the window ends 20 minutes later.
    let resting = run(rule(LayeringConfig::default()), wall_with_a_late_layer(None, 0));
    assert_eq!(resting.len(), 1, "{resting:#?}");
    let raised = &resting[0];
    let buy = wall_with_a_late_layer(None, 0)
        .iter()
        .find(|e| e.order() == Some(Symbol::of(b"BUY")) && e.kind() == EventKind::Fill)
        .map(|e| e.time)
        .expect("the buy's fill");
    assert_eq!(raised.time, buy + 5_000 * MS + 1);

    // The fourth layer then trades (a quarter of the layers' quantity): the same alert,
    // downgraded, with the fill as evidence.
    let traded = run(rule(LayeringConfig::default()), wall_with_a_late_layer(Some("fill"), 30_000));
    assert_eq!(traded.len(), 2, "{traded:#?}");
    assert_eq!(traded[0], *raised);
    let correction = traded[1].correction.as_ref().expect("a correction");
    assert_eq!((traded[1].id, correction.kind), (raised.id, CorrectionKind::Downgraded));
    assert!(traded[1].score < raised.score && correction.raised_score == raised.score);
    assert_eq!(traded[1].evidence.len(), raised.evidence.len() + 1);

    // With at most a fifth allowed to execute, the same fill retracts it.
    let strict = LayeringConfig { max_executed_share: 0.2, ..LayeringConfig::default() };
    let retracted = run(rule(strict.clone()), wall_with_a_late_layer(Some("fill"), 30_000));
    assert_eq!(retracted.len(), 2, "{retracted:#?}");
    assert!(retracted[1].is_retracted() && retracted[1].id == retracted[0].id, "{retracted:#?}");
    assert_eq!(retracted[1].score, 0.0);

    // Cancelled late (too long after the buy to count): the verdict stands, nothing follows.
    let late = run(rule(LayeringConfig::default()), wall_with_a_late_layer(Some("cancel"), 30_000));
    assert_eq!(late, resting);

    // Judged only at the end, the same episodes give what the last versions say.
    let deferred = LayeringConfig { early_alerts: false, ..LayeringConfig::default() };
    let once = run(rule(deferred.clone()), wall_with_a_late_layer(Some("fill"), 30_000));
    assert_eq!(once.len(), 1);
    assert!(once[0].correction.is_none() && (once[0].score - traded[1].score).abs() < 1e-9);
    let strict_once = LayeringConfig { early_alerts: false, ..strict };
    assert!(run(rule(strict_once), wall_with_a_late_layer(Some("fill"), 30_000)).is_empty());
    // And on two workers the change stream is the same.
    assert_eq!(run_on(2, rule(LayeringConfig::default()), wall_with_a_late_layer(Some("fill"), 30_000)), traded);
}

/// Every cancel a detector sees, as an alert naming its reason.
#[derive(Clone)]
struct Cancels;

impl surveil::detect::Detector for Cancels {
    type State = ();

    fn name(&self) -> &str {
        "cancels"
    }

    fn key(&self, event: &Event) -> Option<surveil::detect::Key> {
        matches!(event.body, surveil::model::Body::Cancel { .. })
            .then_some(surveil::detect::Key::Instrument(event.instrument))
    }

    fn needs_order_state(&self) -> bool {
        true
    }

    fn on_event(&self, _: &mut (), event: &Event, out: &mut surveil::detect::AlertSink<'_>) {
        if let surveil::model::Body::Cancel { order, reason, .. } = event.body {
            out.alert(event).param("reason", reason.as_str()).discriminator(order.0);
        }
    }
}

#[test]
fn orders_open_at_the_end_of_the_session_expire_as_venue_cancels_the_detectors_see() {
    use surveil::detect::InstrumentRules;
    use surveil::model::Report;
    use surveil::model::time::SessionCalendar;
    use surveil::testing::rules_outputs_on;

    // 2024-03-04 in New York: 09:30 is 14:30Z; the session ends at 05:00Z on the 5th.
    let open = 1_709_562_600_000_000_000u64;
    let end = 1_709_614_800_000_000_000u64;
    let day2 = end + 14 * 3_600_000_000_000 + 1_800_000_000_000;
    let events = with_origins(vec![
        new_order("X", "O1", "A", Side::Buy, "10.00", 100).at(open),
        new_order("Y", "O2", "B", Side::Sell, "20.00", 100).at(open + 1),
        new_order("X", "O3", "A", Side::Buy, "9.99", 100).at(open + 2),
        cancel("X", "O3", "A").at(open + 3),
        new_order("Y", "O4", "B", Side::Sell, "20.01", 100).at(day2),
        cancel("X", "O1", "A").at(day2 + 1),
    ]);
    let expiring = || {
        InstrumentRules::new()
            .with(Cancels)
            .expiring_orders_at_session_end(SessionCalendar::new(chrono_tz::America::New_York))
    };
    let (alerts, side) = rules_outputs_on(1, expiring, events.clone());
    let seen: Vec<(u64, Symbol, String)> = alerts
        .iter()
        .map(|a| {
            let reason = a.parameters.iter().find(|p| p.name == "reason").map(|p| format!("{:?}", p.value));
            (a.time, a.instrument, reason.unwrap_or_default())
        })
        .collect();
    // The member's cancel on day 1; O1 and O2 expire at the session's last instant; the day-2
    // cancel of O1 finds nothing open; O4 expires at the end of day 2 (the input ends, the
    // session with it).
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert_eq!(seen[0].0, open + 3);
    assert!(seen[1..3].iter().all(|(t, _, r)| *t == end - 1 && r.contains("expired")), "{seen:?}");
    let mut instruments = [seen[1].1, seen[2].1];
    instruments.sort();
    let mut expected = [Symbol::of(b"X"), Symbol::of(b"Y")];
    expected.sort();
    assert_eq!(instruments, expected);
    assert_eq!((seen[3].0, seen[3].1), (end + 24 * 3_600_000_000_000 - 1, Symbol::of(b"Y")));
    let letters: Vec<String> = side
        .iter()
        .filter_map(|r| match r {
            Report::DeadLetter(d) => Some(d.detail.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert!(letters[0].contains("cancelled at"), "{letters:?}");
    // The same on two workers (X and Y may share one or not).
    assert_eq!(rules_outputs_on(2, expiring, events.clone()).0, alerts);
    // Without expiry, O1 is still open on day 2 and its cancel is the member's.
    let (kept, side) = rules_outputs_on(1, || InstrumentRules::new().with(Cancels), events);
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert!(kept.iter().all(|a| a.parameters.iter().any(|p| format!("{:?}", p.value).contains("member"))));
    assert!(!side.iter().any(|r| matches!(r, Report::DeadLetter(_))));
}

/// A wall of `layers` sells behind another account's ask, a buy of the wall's account, then for
/// each layer, by its `fate`: cancelled soon after the buy (within 4 s, so it counts) or late,
/// filled soon or late, filled in small part and cancelled, or left resting.
fn random_wall(layers: &[(u64, u8, u64)], second_buy: Option<u64>) -> Vec<Event> {
    let mut events = background(0);
    let prices = ["10.03", "10.04", "10.05", "10.06", "10.07"];
    for (i, p) in prices.iter().enumerate() {
        events.push(new_order("ACME", &format!("O{i}"), "OTHER", Side::Sell, p, 300).at(10 * MS + i as u64));
    }
    let t = 1_000 * MS;
    for (i, (size, ..)) in layers.iter().enumerate() {
        events.push(new_order("ACME", &format!("L{i}"), "WALL", Side::Sell, prices[i % 5], *size).at(t + i as u64));
    }
    let buy = 3_000 * MS;
    events.push(new_order("ACME", "BUY", "WALL", Side::Buy, "10.02", 100).at(buy));
    events.push(fill("ACME", "BUY", "WALL", Side::Buy, "10.02", 100).at(buy + 1));
    if let Some(after) = second_buy {
        events.push(new_order("ACME", "BUY2", "WALL", Side::Buy, "10.02", 50).at(buy + after * MS));
        events.push(fill("ACME", "BUY2", "WALL", Side::Buy, "10.02", 50).at(buy + after * MS + 1));
    }
    for (i, (size, fate, after)) in layers.iter().enumerate() {
        let soon = buy + 2 + (after % 4_000) * MS + i as u64;
        let late = buy + 2 + (5_000 + after) * MS + i as u64;
        let (id, price) = (format!("L{i}"), prices[i % 5]);
        match fate {
            0..=2 => events.push(cancel("ACME", &id, "WALL").at(soon)),
            3 => events.push(cancel("ACME", &id, "WALL").at(late)),
            4 => events.push(fill("ACME", &id, "WALL", Side::Sell, price, *size).at(late)),
            5 => events.push(fill("ACME", &id, "WALL", Side::Sell, price, *size).at(soon)),
            6 => {
                events.push(fill("ACME", &id, "WALL", Side::Sell, price, size / 20).at(soon));
                events.push(cancel("ACME", &id, "WALL").at(soon + MS));
            }
            _ => {}
        }
    }
    events.sort_by_key(|e| e.time);
    with_origins(events)
}

/// What an alert says, without when it was raised (an early alert and the judgement at the end
/// are raised at different times, and its id with them).
fn verdict(a: &surveil::model::Alert) -> (String, u64, String, Vec<(String, String)>, Vec<u64>) {
    let params = a
        .parameters
        .iter()
        .filter(|p| p.name != "seconds_from_execution")
        .map(|p| (p.name.clone(), format!("{:?}", p.value)))
        .collect();
    (
        a.rule.clone(),
        (a.score * 1e6).round() as u64,
        format!("{:?}", a.severity),
        params,
        a.evidence.iter().map(|e| e.origin.0).collect(),
    )
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]

    /// The change stream's last version of each alert (retractions removed) says what judging
    /// each episode once, at its end, says.
    #[test]
    fn early_alerts_with_their_corrections_end_where_judging_at_the_end_does(
        layers in proptest::collection::vec((200u64..900, 0u8..8, 0u64..40_000), 3..7),
        second_buy in proptest::option::of(0u64..20_000),
    ) {
        let events = random_wall(&layers, second_buy);
        let early = run(Layering::new(&LayeringConfig::default()), events.clone());
        let deferred = LayeringConfig { early_alerts: false, ..LayeringConfig::default() };
        let once = run(Layering::new(&deferred), events);
        let mut last: Vec<surveil::model::Alert> = Vec::new();
        for a in early {
            match last.iter_mut().find(|l| l.id == a.id) {
                Some(l) => *l = a,
                None => last.push(a),
            }
        }
        last.retain(|a| !a.is_retracted());
        proptest::prop_assert!(once.iter().all(|a| a.correction.is_none()));
        let last: Vec<_> = last.iter().map(verdict).collect();
        let once: Vec<_> = once.iter().map(verdict).collect();
        proptest::prop_assert_eq!(last, once);
    }
}
