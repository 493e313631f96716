//! A job of one's own: two built-in rules, a rule written here, and a generic window operator
//! from `surveil-operators`, over files, on as many workers as asked.
//!
//! ```sh
//! cargo run --example custom_pipeline -- datasets/example.csv -w 2
//! ```

use std::path::PathBuf;

use surveil::config::Config;
use surveil::detect::{AlertSink, Detect, Detector, Key};
use surveil::model::{Alert, Body, Event, Report};
use surveil::pipeline::{Job, RunSummary, inputs};
use surveil::rules::{OrderLimitsExt, SelfTradesExt};
use surveil_operators::{Count, EventTimeWindows, WindowOptions};
use timely::dataflow::operators::Concat;
use timely::dataflow::operators::vec::{Filter, Map};

/// A trade of at least `min` units: a rule of one's own, keyed by instrument.
#[derive(Clone)]
struct BlockTrade {
    min: u64,
}

impl Detector for BlockTrade {
    type State = ();
    fn name(&self) -> &str {
        "block_trade"
    }
    fn key(&self, e: &Event) -> Option<Key> {
        matches!(e.body, Body::Trade { quantity, .. } if quantity >= self.min).then(|| Key::Instrument(e.instrument))
    }
    fn on_event(&self, _: &mut (), e: &Event, out: &mut AlertSink<'_>) {
        out.alert(e).explain(format!("a trade of at least {}", self.min));
    }
}

/// Runs the job over `paths` into `out` with `timely` (one process of `-w` workers by default).
pub fn custom_job(
    paths: &[PathBuf],
    out: PathBuf,
    timely: timely::Config,
) -> Result<RunSummary, Box<dyn std::error::Error>> {
    let job = Job::new(inputs(paths, None), Config::default(), &out)?;
    Ok(job.execute(timely, |job, _scope, events| {
        let rules = &job.config().rules;
        let alerts = events
            .clone()
            .order_limits(&rules.order_limits, job.reference())
            .concat(events.clone().self_trades(&rules.self_trade))
            .concat(events.clone().detect(BlockTrade { min: 1_000 }));
        // A generic operator: each account's cancels in 2-second event-time windows.
        let cancels = events.filter(|e| matches!(e.body, Body::Cancel { .. }));
        let counts = cancels.tumbling_window(
            "Cancels",
            2_000_000_000,
            |e| e.account,
            |e| e.time,
            |_| (),
            Count::default,
            WindowOptions::default(),
        );
        let busy = counts
            .output
            .filter(|w| w.diff > 0 && w.value > 1)
            .map(|w| Alert::builder("cancels_per_window", w.end - 1).account(w.key).param("cancels", w.value).build());
        alerts.concat(busy).map(Report::from)
    })?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let paths: Vec<PathBuf> = args.iter().take_while(|a| !a.starts_with('-')).map(PathBuf::from).collect();
    let timely = timely::Config::from_args(args.into_iter().skip(paths.len()))?;
    println!("{}", custom_job(&paths, "out/custom".into(), timely)?.table());
    Ok(())
}
