//! A harness for testing detectors: feed events to a detector in a real dataflow, on one worker
//! or several, and get its alerts back in a stable order. The built-in rules are tested with it.
//!
//! ```
//! use surveil::rules::SelfTrade;
//! use surveil::testing::{run, run_on, trade};
//!
//! let events = vec![
//!     trade("ACME", "ACC1", "ACC2", 100).at_ms(1),
//!     trade("ACME", "ACC3", "ACC3", 50).at_ms(2), // the same account on both sides
//! ];
//! let rule = SelfTrade::new(&Default::default());
//! let alerts = run(rule.clone(), events.clone());
//! assert_eq!(alerts.len(), 1);
//! assert_eq!(run_on(3, rule, events), alerts); // the same on three workers
//! ```
//!
//! Event builders make test data short: every event gets the instrument, ids and account
//! given, time 0 (set it with [`Event::at_ms`] or [`Event::at`]) and an origin numbering it in
//! input order. Prices are decimal text at 4 places, the default scale for instruments without
//! reference data.

use std::sync::{Arc, Mutex};

use timely::container::CapacityContainerBuilder;
use timely::dataflow::InputHandle;
use timely::dataflow::operators::capture::{Capture, Event as CaptureEvent};
use timely::dataflow::operators::{Input, Probe};

use crate::detect::{Detect, Detector};
use crate::model::decimal::parse_scaled;
use crate::model::{Alert, Body, Event, Level, Origin, Party, Price, Report, Side, Symbol};

/// Runs `detector` over `events` on one worker and returns its alerts, sorted by event time,
/// rule and id.
pub fn run<D>(detector: D, events: impl IntoIterator<Item = Event>) -> Vec<Alert>
where
    D: Detector + Clone + Send + Sync,
{
    run_on(1, detector, events)
}

/// Runs `detector` over `events` on `workers` worker threads and returns its alerts, sorted by
/// event time, rule and id, with `detected_at` (the wall clock) set to 0: the same list
/// whatever the number of workers, or the rule is not deterministic.
pub fn run_on<D>(workers: usize, detector: D, events: impl IntoIterator<Item = Event>) -> Vec<Alert>
where
    D: Detector + Clone + Send + Sync,
{
    outputs_on(workers, detector, events).0
}

/// Runs `detector` and returns its alerts and its side records (ratio values, feature rows),
/// each in a stable order.
pub fn outputs_on<D>(workers: usize, detector: D, events: impl IntoIterator<Item = Event>) -> (Vec<Alert>, Vec<Report>)
where
    D: Detector + Clone + Send + Sync,
{
    outputs_of(workers, events, move |events| events.detect_all(detector.clone()))
}

/// [`outputs_on`] for rules run together by instrument over one order state
/// ([`Detect::detect_by_instrument`], as the default job runs its rules): `rules` builds each
/// worker's set.
pub fn rules_outputs_on<R>(
    workers: usize,
    rules: R,
    events: impl IntoIterator<Item = Event>,
) -> (Vec<Alert>, Vec<Report>)
where
    R: Fn() -> crate::detect::InstrumentRules + Send + Sync + 'static,
{
    outputs_of(workers, events, move |events| events.detect_by_instrument(rules(), true))
}

fn outputs_of<F>(workers: usize, events: impl IntoIterator<Item = Event>, detect: F) -> (Vec<Alert>, Vec<Report>)
where
    F: for<'s> Fn(timely::dataflow::Stream<'s, u64, Vec<Event>>) -> crate::detect::Detected<'s> + Send + Sync + 'static,
{
    let mut events: Vec<Event> = events
        .into_iter()
        .enumerate()
        .map(|(i, e)| if e.origin.0 == 0 { e.with_origin(Origin::new(0, i as u64 + 1)) } else { e })
        .collect();
    events.sort_by_key(|e| e.order_key());
    let events = Arc::new(events);
    let alerts = Arc::new(Mutex::new(Vec::new()));
    let side = Arc::new(Mutex::new(Vec::new()));
    let (alerts_out, side_out) = (alerts.clone(), side.clone());
    let result = timely::execute(timely::Config::process(workers.max(1)), move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let mut input = InputHandle::<u64, CapacityContainerBuilder<Vec<Event>>>::new();
        let probe = timely::dataflow::ProbeHandle::new();
        let (alert_capture, side_capture) = worker.dataflow::<u64, _, _>(|scope| {
            let detected = detect(scope.input_from(&mut input));
            let alerts = detected.alerts.probe_with(&probe).capture();
            let side = detected.side.probe_with(&probe).capture();
            (alerts, side)
        });
        // Each worker feeds its share, advancing its input to each event's time: the detector
        // sees a moving watermark, as from a file or a feed.
        for event in events.iter().skip(index).step_by(peers) {
            if event.time > *input.time() {
                input.advance_to(event.time);
            }
            input.send(*event);
        }
        input.close();
        worker.step_while(|| !probe.done());
        let mut found: Vec<Alert> = captured(alert_capture);
        let mut records: Vec<Report> = captured(side_capture);
        if let Ok(mut all) = alerts_out.lock() {
            all.append(&mut found);
        }
        if let Ok(mut all) = side_out.lock() {
            all.append(&mut records);
        }
    });
    if let Err(error) = result.map(|guards| guards.join()) {
        panic!("the test dataflow failed: {error}");
    }
    let mut alerts = std::mem::take(&mut *alerts.lock().unwrap_or_else(|e| e.into_inner()));
    // The wall clock is the one thing two runs do not share.
    for alert in &mut alerts {
        alert.detected_at = 0;
    }
    alerts.sort_by(|a, b| (a.time, &a.rule, a.id).cmp(&(b.time, &b.rule, b.id)));
    let mut side = std::mem::take(&mut *side.lock().unwrap_or_else(|e| e.into_inner()));
    side.sort_by_cached_key(|r| serde_json::to_string(r).unwrap_or_default());
    (alerts, side)
}

/// Everything a captured stream carried (`Capture::capture`), in arrival order: unlike
/// timely's `extract`, the records need no ordering (alerts have none).
pub fn captured<T>(capture: std::sync::mpsc::Receiver<CaptureEvent<u64, Vec<T>>>) -> Vec<T> {
    capture
        .try_iter()
        .flat_map(|event| match event {
            CaptureEvent::Messages(_, data) => data,
            CaptureEvent::Progress(_) => Vec::new(),
        })
        .collect()
}

fn price(text: &str) -> Price {
    Price(parse_scaled(text.as_bytes(), 4).unwrap_or_else(|e| panic!("price {text:?}: {e}")))
}

fn symbol(text: &str) -> Symbol {
    Symbol::of(text.as_bytes())
}

/// Any event: `body` on `instrument` for `account` at `time` nanoseconds.
pub fn event(time: u64, instrument: &str, account: &str, body: Body) -> Event {
    of_account(instrument, account, body).at(time)
}

fn of_account(instrument: &str, account: &str, body: Body) -> Event {
    Event::new(0, Origin(0), symbol(instrument), body).with_account(symbol(account))
}

/// A new limit order.
pub fn new_order(instrument: &str, order: &str, account: &str, side: Side, price_text: &str, quantity: u64) -> Event {
    of_account(
        instrument,
        account,
        Body::NewOrder { order: symbol(order), side, price: Some(price(price_text)), quantity, displayed: None },
    )
}

/// A new limit order showing only `displayed` of its `quantity` (a reserve, or iceberg, order).
pub fn reserve_order(
    instrument: &str,
    order: &str,
    account: &str,
    side: Side,
    price_text: &str,
    quantity: u64,
    displayed: u64,
) -> Event {
    let body = Body::NewOrder {
        order: symbol(order),
        side,
        price: Some(price(price_text)),
        quantity,
        displayed: Some(displayed),
    };
    of_account(instrument, account, body)
}

/// A cancel of all that remains of an order.
pub fn cancel(instrument: &str, order: &str, account: &str) -> Event {
    of_account(instrument, account, Body::cancel_rest(symbol(order)))
}

/// A replace of an order's quantity (and price, when given).
pub fn replace(instrument: &str, order: &str, account: &str, price_text: Option<&str>, quantity: u64) -> Event {
    let body =
        Body::Replace { order: symbol(order), side: None, price: price_text.map(price), quantity, displayed: None };
    of_account(instrument, account, body)
}

/// An execution of an order.
pub fn fill(instrument: &str, order: &str, account: &str, side: Side, price_text: &str, quantity: u64) -> Event {
    let body =
        Body::Fill { order: symbol(order), side, price: price(price_text), quantity, aggressor: None, hidden: false };
    of_account(instrument, account, body)
}

/// A trade between two accounts at 1.0000.
pub fn trade(instrument: &str, buyer: &str, seller: &str, quantity: u64) -> Event {
    let party = |account: &str| Party { account: symbol(account), ..Party::default() };
    let body = Body::Trade {
        buyer: party(buyer),
        seller: party(seller),
        price: price("1"),
        quantity,
        aggressor: None,
        linked: None,
    };
    Event::new(0, Origin(0), symbol(instrument), body)
}

/// A trade between two accounts at `price_text`, at event time `time`.
pub fn trade_at_price(time: u64, instrument: &str, buyer: &str, seller: &str, price_text: &str) -> Event {
    let mut event = trade(instrument, buyer, seller, 1);
    if let Body::Trade { price: p, .. } = &mut event.body {
        *p = price(price_text);
    }
    event.at(time)
}

/// A best bid and offer.
pub fn quote(instrument: &str, bid: &str, ask: &str) -> Event {
    let level = |p: &str| Some(Level { price: price(p), quantity: 100 });
    Event::new(0, Origin(0), symbol(instrument), Body::Quote { bid: level(bid), ask: level(ask) })
}
