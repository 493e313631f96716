//! A job of one's own: two built-in rules, a rule written here, and a generic window operator
//! from `surveil-operators`. Run: `cargo run --example custom_pipeline -- datasets/example.csv -w 2`

use std::path::PathBuf;

use surveil::detect::{AlertSink, Detect, Detector, Key};
use surveil::model::{Alert, Body, Event, Report};
use surveil::pipeline::{Job, RunSummary, inputs};
use surveil::rules::{OrderLimitsExt, SelfTradesExt};
use surveil_operators::{Count, EventTimeWindows, WindowOptions};
use timely::dataflow::operators::{Concat, vec::Filter, vec::Map};

type Error = Box<dyn std::error::Error>;

/// A trade of at least this many units: a rule of one's own, keyed by instrument.
struct BlockTrade(u64);

impl Detector for BlockTrade {
    type State = ();
    fn name(&self) -> &str {
        "block_trade"
    }
    fn key(&self, e: &Event) -> Option<Key> {
        matches!(e.body, Body::Trade { quantity, .. } if quantity >= self.0).then(|| Key::Instrument(e.instrument))
    }
    fn on_event(&self, _: &mut (), e: &Event, out: &mut AlertSink<'_>) {
        out.alert(e).explain(format!("a trade of at least {}", self.0));
    }
}

/// Runs the job over `paths` into `out` with `timely` (one process of `-w` workers by default).
pub fn custom_job(paths: &[PathBuf], out: PathBuf, timely: timely::Config) -> Result<RunSummary, Error> {
    let job = Job::new(inputs(paths, None), Default::default(), &out)?;
    Ok(job.execute(timely, |job, _scope, events| {
        let rules = &job.config().rules;
        let built_in = events.clone().order_limits(&rules.order_limits, job.reference());
        let alerts = built_in
            .concat(events.clone().self_trades(&rules.self_trade))
            .concat(events.clone().detect(BlockTrade(1_000)));
        // A generic operator: each account's cancels in 2-second event-time windows.
        let cancels = events.filter(|e| matches!(e.body, Body::Cancel { .. }));
        let (by_account, at, options) = (|e: &Event| e.account, |e: &Event| e.time, WindowOptions::default());
        let counts = cancels.tumbling_window("Cancels", 2_000_000_000, by_account, at, |_| (), Count::default, options);
        let busy = counts
            .output
            .filter(|w| w.diff > 0 && w.value > 1)
            .map(|w| Alert::builder("cancels_per_window", w.end - 1).account(w.key).param("cancels", w.value).build());
        alerts.concat(busy).map(Report::from)
    })?)
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let paths: Vec<PathBuf> = args.iter().take_while(|a| !a.starts_with('-')).map(PathBuf::from).collect();
    let timely = timely::Config::from_args(args.into_iter().skip(paths.len()))?;
    println!("{}", custom_job(&paths, "out/custom".into(), timely)?.table());
    Ok(())
}
