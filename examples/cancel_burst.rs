//! A rule of one's own: more than `limit` cancels by one account within `window`, run beside
//! the built-in rules of the default job.
//!
//! ```sh
//! cargo run --example cancel_burst -- datasets/example.csv
//! ```

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use surveil::config::Config;
use surveil::detect::{AlertSink, Detect, Detector, Key};
use surveil::model::{Body, Event, Severity};
use surveil::pipeline::{RunOptions, RunSummary, inputs, run};

/// More than `limit` cancels by one account within `window`.
#[derive(Clone)]
struct CancelBurst {
    window: Duration,
    limit: usize,
}

impl Detector for CancelBurst {
    type State = VecDeque<u64>; // the account's recent cancel times, created on first use

    fn name(&self) -> &str {
        "cancel_burst"
    }

    fn key(&self, e: &Event) -> Option<Key> {
        matches!(e.body, Body::Cancel { .. }).then(|| Key::Account(e.account))
    }

    fn on_event(&self, seen: &mut VecDeque<u64>, e: &Event, out: &mut AlertSink<'_>) {
        let window = self.window.as_nanos() as u64;
        seen.push_back(e.time);
        while seen.front().is_some_and(|t| e.time - t > window) {
            seen.pop_front();
        }
        if seen.len() > self.limit {
            out.alert(e)
                .severity(Severity::Medium)
                .score(50.0 * seen.len() as f64 / self.limit.max(1) as f64)
                .param("cancels", seen.len())
                .param("limit", self.limit)
                .param("window", self.window)
                .explain(format!("{} cancels within {:?}", seen.len(), self.window));
        }
    }
}

/// The default job on `paths`, with the rule added, into `out`.
pub fn run_with_rule(paths: &[PathBuf], out: PathBuf) -> Result<RunSummary, surveil::pipeline::RunError> {
    let rule = CancelBurst { window: Duration::from_secs(1), limit: 1 };
    let options =
        RunOptions::new(inputs(paths, None), Config::default()).with_rule(move |events| events.detect(rule.clone()));
    run(RunOptions { out_dir: out, ..options })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let paths: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    let summary = run_with_rule(&paths, "out/cancel_burst".into())?;
    println!("{}", summary.table());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifty_one_cancels_in_a_second_alert_once() {
        let events = (0..51).map(|i| surveil::testing::cancel("ACME", &format!("O{i}"), "ACC1").at_ms(i * 10));
        let alerts = surveil::testing::run(CancelBurst { window: Duration::from_secs(1), limit: 50 }, events);
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].rule, "cancel_burst");
    }
}
