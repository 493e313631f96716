//! Instruments and accounts changed while a job runs, fed to the default detection the way a
//! library user feeds their own source of changes: each change applies from its own time, or
//! from how far the events had been read when it came, whichever is later; events before it
//! are judged by the records before it, and events after by the new ones, on one worker and
//! on two.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use surveil::config::Config;
use surveil::live_reference::{LiveItem, LiveReference};
use surveil::model::{Event, Report, Side, Symbol};
use surveil::pipeline::{FeatureJob, LiveFeeds, default_detection};
use surveil::reference::{LiveKind, ReferenceData};
use surveil::testing::{new_order, trade};
use surveil_operators::Feed;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::InputHandle;
use timely::dataflow::operators::{Input, Inspect, Probe};

/// 2024-03-04 at `hours:minutes` UTC, in nanoseconds.
fn at(hours: u64, minutes: u64) -> u64 {
    1_709_510_400_000_000_000 + (hours * 3600 + minutes * 60) * 1_000_000_000
}

/// Messages published while the job runs: `(kind, CSV text)`, with how far the events have
/// been read when they are taken.
#[derive(Default)]
struct Published {
    messages: Vec<(LiveKind, String)>,
    read_to: u64,
}

/// Worker 0's feed over `published`, as a topic consumer builds it: the feed's own copy of
/// the reference data reads each message (an account row that changes its owner also changes
/// ownership, for the linked accounts).
fn feeds(reference: &ReferenceData, published: Rc<RefCell<Published>>) -> LiveFeeds {
    let mut known = reference.clone();
    let mut next_id = 0;
    let reference_feed = move || {
        let mut published = published.borrow_mut();
        let ahead = published.read_to + 1;
        let mut items = Vec::new();
        for (kind, text) in published.messages.drain(..) {
            let mut owned = Vec::new();
            let changes = known
                .read_live(kind, text.as_bytes(), Path::new("published"), ahead, &mut next_id, &mut owned)
                .expect("a valid change");
            items.extend(LiveItem::all(&known, changes, owned));
        }
        Feed { items, ahead }
    };
    LiveFeeds { ownership: None, reference: Some(LiveReference { feed: Some(Box::new(reference_feed)) }) }
}

/// The day's events in order, with the messages published just before each (when any).
fn script() -> Vec<(Option<(LiveKind, &'static str)>, Event)> {
    let order = |time, id: &str, instrument: &str, quantity| {
        new_order(instrument, id, "ACC1", Side::Buy, "10.00", quantity).at(time)
    };
    vec![
        // Published before anything is read: ACC2 passes to ANN from 14:00, ACME's average
        // daily volume falls to 100,000 from 14:00, and NEWCO is listed from 14:00.
        (
            Some((LiveKind::Accounts, "time,account,owner\n2024-03-04T14:00:00Z,ACC2,ANN\n")),
            trade("ACME", "ACC1", "ACC2", 100).at(at(13, 30)),
        ),
        (
            Some((
                LiveKind::Instruments,
                "time,instrument,average_daily_volume\n2024-03-04T14:00:00Z,ACME,100000\n\
                 2024-03-04T14:00:00Z,NEWCO_HOLDINGS,100000\n",
            )),
            order(at(13, 45), "O1", "ACME", 5_000),
        ),
        (None, order(at(13, 50), "O2", "NEWCO_HOLDINGS", 5_000)),
        (None, trade("ACME", "ACC1", "ACC2", 100).at(at(14, 30))),
        (None, order(at(14, 35), "O3", "ACME", 5_000)),
        (None, order(at(14, 40), "O4", "NEWCO_HOLDINGS", 5_000)),
        // Published when the events have been read to 14:40: ACC2 back to BOB and ACC1 to
        // the rates desk, both stamped 14:00 but too late for what was read; they apply from
        // 14:40 on.
        (
            Some((
                LiveKind::Accounts,
                "time,account,owner,desk\n2024-03-04T14:00:00Z,ACC2,BOB,\n2024-03-04T14:00:00Z,ACC1,,RATES_DESK\n",
            )),
            trade("ACME", "ACC1", "ACC2", 100).at(at(15, 0)),
        ),
        (None, order(at(15, 5), "O5", "ACME", 5_000)),
    ]
}

/// (rule, event time, desk) of every alert of a run on `workers` workers.
fn run(workers: usize) -> BTreeSet<(String, u64, String)> {
    let mut reference = ReferenceData::new(2);
    let accounts = "account,owner,desk\nACC1,ANN,EQUITIES\nACC2,BOB,EQUITIES\n";
    reference.read_accounts(accounts.as_bytes(), Path::new("accounts.csv")).expect("accounts");
    let instruments = "instrument,average_daily_volume\nACME,1000000\n";
    reference.read_instruments(instruments.as_bytes(), Path::new("instruments.csv")).expect("instruments");
    let reference_names = reference.names.clone();
    let reference = Arc::new(reference);
    let config = Config::parse("[rules.order_limits]\nmax_adv_share = 0.01\n").expect("config");
    let features = FeatureJob::from_config(&config).expect("features");
    let alerts = Arc::new(Mutex::new(BTreeSet::new()));
    let names: Arc<Mutex<BTreeMap<Symbol, String>>> = Arc::default();
    let (found, named) = (alerts.clone(), names.clone());
    timely::execute(timely::Config::process(workers), move |worker| {
        let published = Rc::new(RefCell::new(Published::default()));
        let live = if worker.index() == 0 {
            feeds(&reference, published.clone())
        } else {
            LiveFeeds { ownership: None, reference: Some(LiveReference { feed: None }) }
        };
        let mut events = InputHandle::<u64, CapacityContainerBuilder<Vec<Event>>>::new();
        let (found, reference, config, features) = (found.clone(), reference.clone(), config.clone(), features.clone());
        let names = named.clone();
        let probe = worker.dataflow::<u64, _, _>(|scope| {
            let events = scope.input_from(&mut events);
            let actions = Arc::default();
            default_detection(events, &config, &reference, &features, &actions, &[], live)
                .inspect(move |report| match report {
                    Report::Triaged(triaged) => {
                        let desk = triaged.desk;
                        found.lock().expect("lock").insert((triaged.alert.rule.clone(), triaged.alert.time, desk));
                    }
                    // The names a change brings reach the output as a reader's do.
                    Report::Symbol(symbol, name) => {
                        names.lock().expect("lock").insert(*symbol, name.to_string());
                    }
                    _ => {}
                })
                .probe()
                .0
        });
        if worker.index() == 0 {
            for (message, mut event) in script() {
                if let Some((kind, text)) = message {
                    published.borrow_mut().messages.push((kind, text.to_string()));
                    // The feed takes it within a poll; the events read so far stay as they are.
                    let started = std::time::Instant::now();
                    while !published.borrow().messages.is_empty() {
                        assert!(started.elapsed().as_secs() < 30, "the feed did not take the message");
                        worker.step();
                    }
                }
                // The reader enriches from the records it knows, as a file or topic reader does.
                reference.enrich(&mut event);
                events.advance_to(event.time);
                let time = event.time;
                events.send(event);
                published.borrow_mut().read_to = time;
                worker.step();
            }
        }
        drop(events);
        worker.step_while(|| !probe.done());
    })
    .expect("timely");
    let names = names.lock().expect("lock").clone();
    let desk = |desk: Symbol| names.get(&desk).cloned().unwrap_or_else(|| reference_names.name(desk).into_owned());
    let found = alerts.lock().expect("lock").clone();
    found.into_iter().map(|(rule, time, d)| (rule, time, desk(d))).collect()
}

#[test]
fn changes_published_while_running_apply_from_their_time_or_from_when_they_came() {
    let expected: BTreeSet<(String, u64, String)> = [
        // The 14:30 trade only: ACC2 was ANN's from 14:00 until the change back came at 14:40
        // (the 15:00 trade is BOB's again); the desk is the one in force at each alert's time.
        ("self_trade", at(14, 30), "EQUITIES"),
        // ACME's limit is 1 % of 100,000 from 14:00 (5,000 passed 1 % of 1,000,000 at 13:45);
        // NEWCO_HOLDINGS has no volume, and so no limit, before its listing at 14:00.
        ("order_quantity_limit", at(14, 35), "EQUITIES"),
        ("order_quantity_limit", at(14, 40), "EQUITIES"),
        ("order_quantity_limit", at(15, 5), "RATES_DESK"),
    ]
    .into_iter()
    .map(|(rule, time, desk)| (rule.to_string(), time, desk.to_string()))
    .collect();
    for workers in [1, 2] {
        let got: BTreeSet<_> = run(workers)
            .into_iter()
            .filter(|(rule, _, _)| rule == "self_trade" || rule == "order_quantity_limit")
            .collect();
        assert_eq!(got, expected, "{workers} workers");
    }
}
