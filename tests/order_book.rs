//! The order book built from order events, checked against LOBSTER's own book file for the AMZN
//! day: row i of `..._orderbook_1.csv` is the best ask and bid (price and size) after message i.
//!
//! A level-1 LOBSTER message file holds only the messages that touch the best level (LOBSTER's
//! read-me: "an update of the limit order book in the requested price range"): orders added
//! deeper and their later cancels are not in it. So the book cannot be rebuilt from the
//! messages alone, and the check is message by message: before message i the book's best
//! levels are restated to row i-1 (what the file says the book was), an order the message
//! names that the file never added is introduced from that level, and after the message the
//! best bid and ask must equal row i exactly. The one thing a level-1 file cannot show is the
//! level behind a best level the message empties; that side is not compared for that message.

mod common;

use surveil::detect::OrderTracker;
use surveil::model::{Body, Event, Price, Side};

const AMZN: &str = "lobster/amzn_2012-06-21_level1_modified/AMZN_2012-06-21_34200000_57600000_message_1.csv";
const EMPTY: i64 = 9_999_999_999;

/// (ask price, ask size, bid price, bid size) per row, `None` for an empty side.
type Top = (Option<(i64, u64)>, Option<(i64, u64)>);

fn book_rows(path: &std::path::Path) -> Vec<Top> {
    let book = path.to_string_lossy().replace("_message_", "_orderbook_");
    let text = std::fs::read_to_string(book).expect("order book file");
    text.lines()
        .filter(|l| l.split(',').next().is_some_and(|f| f.parse::<i64>().is_ok()))
        .map(|l| {
            let f: Vec<i64> = l.split(',').map(|x| x.trim().parse().expect("number")).collect();
            let level = |p: i64, q: i64| (p.abs() != EMPTY && q > 0).then_some((p, q as u64));
            (level(f[0], f[1]), level(f[2], f[3]))
        })
        .collect()
}

fn side_of(top: &Top, side: Side) -> Option<(i64, u64)> {
    match side {
        Side::Sell => top.0,
        Side::Buy => top.1,
    }
}

#[test]
fn the_reconstructed_best_bid_and_ask_match_lobsters_book_after_every_message() {
    let path = common::data(AMZN);
    let rows = book_rows(&path);
    let events = common::lobster_events(&path);
    assert_eq!(events.len(), rows.len(), "one book row per message");
    assert!(events.len() > 57_000);
    let mut tracker = OrderTracker::with_books();
    let instrument = events[0].instrument;
    let (mut compared, mut unobservable, mut restated, mut introduced) = (0u64, 0u64, 0u64, 0u64);
    let mut mismatches = Vec::new();
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            let book = tracker.book_mut(instrument).expect("books are kept");
            for side in [Side::Sell, Side::Buy] {
                let (price, quantity) = match side_of(&rows[i - 1], side) {
                    Some((p, q)) => (Price(p), q),
                    None if side == Side::Sell => (Price(i64::MAX), 0),
                    None => (Price(i64::MIN), 0),
                };
                let now = book.best(side).map(|(p, d)| (p, d.quantity));
                if now != (quantity > 0).then_some((price, quantity)) {
                    restated += 1;
                    book.restate_best(side, price, quantity);
                }
            }
        }
        // A cancel or execution of an order the file never added: it rested at the best level
        // the file showed before the message.
        let named = match event.body {
            Body::Cancel { order, side: Some(side), price: Some(price), quantity: Some(q), .. } => {
                Some((order, side, price, q))
            }
            Body::Fill { order, side, price, quantity, hidden: false, .. } => Some((order, side, price, quantity)),
            _ => None,
        };
        if let Some((order, side, price, quantity)) = named
            && tracker.get(instrument, order).is_none()
            && i > 0
            && let Some((best, size)) = side_of(&rows[i - 1], side)
            && best == price.0
        {
            introduced += 1;
            let book = tracker.book_mut(instrument).expect("books are kept");
            book.restate_best(side, price, size.saturating_sub(quantity));
            let new = Body::NewOrder { order, side, price: Some(price), quantity, displayed: None };
            tracker.apply(&Event::new(event.time, event.origin, instrument, new)).expect("introduced");
        }
        let top_before = tracker.book(instrument).map(|b| (b.best(Side::Sell), b.best(Side::Buy)));
        tracker.apply(event).expect("the message applies");
        let book = &*tracker.book_mut(instrument).expect("books are kept");
        for side in [Side::Sell, Side::Buy] {
            // The message emptied the best level of its side: the level behind it is not in a
            // level-1 file.
            let emptied = match event.body {
                Body::Cancel { side: Some(s), price: Some(p), .. }
                | Body::Fill { side: s, price: p, hidden: false, .. } => {
                    s == side
                        && book.depth_at(side, p) == 0
                        && top_before
                            .and_then(|t| if side == Side::Sell { t.0 } else { t.1 })
                            .is_some_and(|(best, _)| best == p)
                }
                _ => false,
            };
            let got = book.best(side).map(|(p, d)| (p.0, d.quantity));
            let want = side_of(&rows[i], side);
            // The book before the first message is not in the file either.
            if got != want && (emptied || i == 0) {
                unobservable += 1;
                continue;
            }
            compared += 1;
            if got != want && mismatches.len() < 10 {
                mismatches.push(format!("message {} ({:?}) {side:?}: book {got:?}, file {want:?}", i + 1, event.body));
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    // Most of the day is compared: the restatements and introduced orders are the messages the
    // level-1 file leaves out, and the uncompared sides the levels it never shows.
    assert!(compared > 100_000, "{compared} sides compared");
    assert!(unobservable < compared / 10, "{unobservable} sides not comparable");
    // The book needed correcting only where the file could not show it: after each of those
    // messages, the level behind.
    assert!(restated <= unobservable + 2, "{restated} restatements for {unobservable} hidden levels");
    assert!(introduced < events.len() as u64 / 5, "{introduced} orders introduced");
    eprintln!(
        "{} messages: {compared} sides compared, {unobservable} not comparable, {restated} restatements, {introduced} orders introduced",
        events.len()
    );
}
