//! A dataflow of your own, built from the library's pieces: the partitioned source reads and
//! validates the inputs, one detector runs as its own operator, and a sink on worker 0 prints
//! the alerts with [`Renderer`].
//!
//! ```text
//! cargo run --example custom_pipeline -- INPUT... [TIMELY OPTIONS]
//! ```
//!
//! As in timely's own examples, the leading arguments are the input files and the rest (from
//! the first one that starts with `-`) go to `timely::execute_from_args`: `-w 2` runs two
//! worker threads, `-n`, `-p` and `-h` spread the workers over several processes. The example
//! runs only the self-trade rule with the default configuration, prints each alert as one
//! JSON line on standard output, in event-time order, and the totals on standard error.
//!
//! On the IMC Prosperity trades of the shared datasets it prints 499 self-trade alerts, on any
//! number of workers (the file's 2 trades of quantity 0 are counted as dead letters):
//!
//! ```text
//! cargo run --example custom_pipeline -- \
//!     ../shared/datasets/imc_prosperity/p2_2024/trades_round_4_day_1_wn.csv -w 2 | wc -l
//! ```

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use surveil::config::Config;
use surveil::detect::self_trade::SelfTrade;
use surveil::ingest::{EventCounts, parser_for, plan_partitions};
use surveil::output::Renderer;
use surveil::pipeline::{Detect, inputs};
use surveil::reference::ReferenceData;
use surveil::report::Report;
use surveil_operators::{SourceOptions, partitioned_source};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::{Concat, Operator};

/// What one worker saw.
#[derive(Clone, Copy, Debug, Default)]
struct Totals {
    /// Events read by this worker's partitions.
    events: u64,
    /// Alerts printed (worker 0 only).
    alerts: u64,
    /// Records rejected with a reason (worker 0 only).
    dead_letters: u64,
    /// Records later than the out-of-order bound (worker 0 only).
    late: u64,
}

/// Reads the arguments, checks the inputs, runs the dataflow and prints the totals.
fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1).peekable();
    let mut paths = Vec::new();
    while let Some(path) = args.next_if(|a| !a.starts_with('-')) {
        paths.push(PathBuf::from(path));
    }
    anyhow::ensure!(!paths.is_empty(), "usage: custom_pipeline INPUT... [-w WORKERS]");

    let config = Config::default();
    let reference = Arc::new(ReferenceData::load(&config)?);
    let inputs = inputs(&paths, None);
    // A missing file or a bad header is an error before any worker starts.
    for input in &inputs {
        parser_for(input, &config)?;
    }
    let sources: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();

    let guards = timely::execute_from_args(args, move |worker| -> Result<Totals, String> {
        let (index, peers) = (worker.index(), worker.peers());
        // This worker's share of the file blocks, each with its parser.
        let progress = Arc::new(surveil::ingest::ReadProgress::default());
        let counts = Rc::new(RefCell::new(EventCounts::default()));
        let partitions = plan_partitions(&inputs, &config, &reference, index, peers, &progress, &counts)
            .map_err(|e| e.to_string())?;
        let ingest = &config.ingest;
        let options = SourceOptions {
            max_out_of_order: ingest.max_out_of_order.as_nanos() as u64,
            epoch: ingest.epoch.as_nanos().max(1) as u64,
            batch_records: ingest.batch_records.max(1),
            ..SourceOptions::default()
        };
        let totals = Rc::new(RefCell::new(Totals::default()));
        let sink_totals = totals.clone();
        let mut renderer = (index == 0).then(|| Renderer::new(reference.clone(), sources.clone()));
        let mut pending: Vec<(u64, Report)> = Vec::new();

        worker.dataflow::<u64, _, _>(|scope| {
            let source = partitioned_source(scope, "Ingest", partitions, options);
            // One rule as its own operator: events are routed by instrument and each worker
            // sees its instruments' events in (time, origin) order.
            let self_trade = Box::new(SelfTrade::new(&config.rules.self_trade));
            let reports = source.records.detect(vec![self_trade]);
            let late = source.late.map(|event| Report::Late(Box::new(event)));
            // Alerts, dead letters, dictionary entries and late events all go to worker 0.
            reports.concat(source.side).concat(late).sink(
                Exchange::new(|_: &Report| 0),
                "PrintAlerts",
                move |(input, frontier)| {
                    input.for_each_stamp(|cap, data| {
                        let time = cap.stamp().iter().copied().min().unwrap_or(0);
                        for batch in data {
                            pending.extend(batch.drain(..).map(|report| (time, report)));
                        }
                    });
                    let Some(renderer) = renderer.as_mut() else {
                        return;
                    };
                    // Print what the watermark has passed: nothing earlier can still arrive,
                    // and the names it uses have been announced.
                    let watermark = frontier.frontier().first().copied();
                    let (ready, rest): (Vec<_>, Vec<_>) =
                        pending.drain(..).partition(|(t, _)| watermark.is_none_or(|w| *t < w));
                    pending = rest;
                    print_ready(renderer, ready, &mut sink_totals.borrow_mut());
                },
            );
        });
        while worker.step_or_park(None) {}
        let mut totals = *totals.borrow();
        totals.events = counts.borrow().iter().sum();
        Ok(totals)
    })
    .map_err(anyhow::Error::msg)?;

    let mut sum = Totals::default();
    for result in guards.join() {
        let totals = result.map_err(anyhow::Error::msg)?.map_err(anyhow::Error::msg)?;
        sum.events += totals.events;
        sum.alerts += totals.alerts;
        sum.dead_letters += totals.dead_letters;
        sum.late += totals.late;
    }
    eprintln!(
        "{} events, {} self-trade alerts, {} dead letters, {} late events",
        sum.events, sum.alerts, sum.dead_letters, sum.late
    );
    Ok(())
}

/// Learns the names in `ready`, then prints its alerts in `(event time, id)` order and counts
/// the rest.
fn print_ready(renderer: &mut Renderer, mut ready: Vec<(u64, Report)>, totals: &mut Totals) {
    for (_, report) in &ready {
        if let Report::Symbol(symbol, text) = report {
            renderer.names.insert(*symbol, text);
        }
    }
    ready.sort_by_key(|(_, report)| match report {
        Report::Alert(alert) => (alert.time, alert.id.0),
        _ => (0, 0),
    });
    for (_, report) in ready {
        match report {
            Report::Alert(alert) => {
                totals.alerts += 1;
                println!("{}", renderer.alert(&alert));
            }
            Report::DeadLetter(_) => totals.dead_letters += 1,
            Report::Late(_) => totals.late += 1,
            Report::Symbol(..) | Report::Ratio(_) | Report::Features(_) => {}
        }
    }
}
