//! Momentum ignition: trading that starts or speeds up a price trend to draw others in, then
//! closes the position at the price the trend made (Delegated Regulation 2016/522 Annex II §I
//! 4(e): orders or trades "likely to start or exacerbate a trend … to create an opportunity to
//! close out or open a position at a favourable price"; CME Rule 575).
//!
//! The logic follows Trading Technologies' published model, per account and instrument:
//!
//! 1. **Ignition**: the account's aggressive executions on one side (it lifted offers or hit
//!    bids) from at least `min_orders` orders within `ignition_window`, at at least
//!    `min_price_levels` prices, the last beyond the first in the account's direction (fills at
//!    several levels that trend its way).
//! 2. **Reversal**: within `max_reversal_delay` of the ignition's last execution, the same
//!    account executes on the other side (passively or not) at a better price than the
//!    ignition's average (a sale above what it bought at): the fill "received too quickly".
//!    The profit-taking quantity is at least `min_reversal_share` of the ignition's.
//! 3. The score weighs the share of the position turned round (TT's ratio of aggressive to
//!    profit-taking quantity), the price levels swept and how soon the reversal came.
//!
//! Executions come from fill events when the input has them (the aggressor's own fill says it
//! took liquidity), or from trade prints that name the aggressor's side otherwise. An episode is
//! reported when its reversal window has passed, with every execution of both legs.

use std::collections::VecDeque;

use timely::dataflow::Stream;

use crate::config::{MomentumIgnitionConfig, nanos_of};
use crate::detect::{AlertSink, Detect, Detector, Key};
use crate::model::alert::rules;
use crate::model::{Alert, Body, Event, EventKind, IdMap, Severity, Side, Symbol, Timestamp};
use crate::rules::executions::Execution;

/// Executions kept per leg as an alert's evidence.
const MAX_EVIDENCE: usize = 20;

/// The momentum-ignition rule.
#[derive(Clone)]
pub struct MomentumIgnition {
    config: MomentumIgnitionConfig,
}

impl MomentumIgnition {
    /// Builds the rule.
    pub fn new(config: &MomentumIgnitionConfig) -> MomentumIgnition {
        MomentumIgnition { config: *config }
    }
}

/// One execution of an account.
#[derive(Clone, Copy, Debug)]
struct Exec {
    time: Timestamp,
    order: Symbol,
    price: i64,
    quantity: u64,
    event: Event,
}

/// An ignition waiting for its reversal window to pass.
#[derive(Clone, Debug)]
struct Episode {
    side: Side,
    execs: Vec<Exec>,
    /// Time of its last aggressive execution.
    end: Timestamp,
    reversal: Vec<Exec>,
}

impl Episode {
    fn quantity(&self) -> u64 {
        self.execs.iter().fold(0u64, |s, e| s.saturating_add(e.quantity))
    }

    /// Volume-weighted average price of the ignition.
    fn average(&self) -> f64 {
        let q = self.quantity().max(1) as f64;
        self.execs.iter().map(|e| e.price as f64 * e.quantity as f64).sum::<f64>() / q
    }

    fn levels(&self) -> usize {
        let mut prices: Vec<i64> = self.execs.iter().map(|e| e.price).collect();
        prices.sort_unstable();
        prices.dedup();
        prices.len()
    }
}

/// What the rule remembers of one account on an instrument.
#[derive(Default)]
struct Account {
    /// Its aggressive executions within the ignition window, per side (buy, sell).
    runs: [VecDeque<Exec>; 2],
    /// Ignitions whose reversal window is open.
    episodes: Vec<Episode>,
}

/// What the rule remembers of an instrument.
#[derive(Default)]
pub struct MomentumIgnitionState {
    /// Which events carry the executions: fills, or trade prints where there are no fills.
    source: Option<EventKind>,
    accounts: IdMap<Symbol, Account>,
    /// When idle accounts were last swept out.
    swept: Timestamp,
}

fn index(side: Side) -> usize {
    match side {
        Side::Buy => 0,
        Side::Sell => 1,
    }
}

/// `a` is beyond `b` in the direction of `side` (higher for a buyer).
fn beyond(side: Side, a: f64, b: f64) -> bool {
    match side {
        Side::Buy => a > b,
        Side::Sell => a < b,
    }
}

impl Detector for MomentumIgnition {
    type State = MomentumIgnitionState;

    fn name(&self) -> &str {
        rules::MOMENTUM_IGNITION
    }

    fn key(&self, event: &Event) -> Option<Key> {
        matches!(event.body, Body::Fill { .. } | Body::Trade { .. }).then_some(Key::Instrument(event.instrument))
    }

    fn on_event(&self, state: &mut MomentumIgnitionState, event: &Event, out: &mut AlertSink<'_>) {
        let source = *state.source.get_or_insert(event.kind());
        if event.kind() != source {
            return;
        }
        // (account, side, aggressive, execution)
        let mut parties: Vec<(Symbol, Side, bool, Exec)> = Vec::with_capacity(2);
        match event.body {
            Body::Fill { order, side, price, quantity, aggressor, .. } => {
                let exec = Exec { time: event.time, order, price: price.0, quantity, event: *event };
                parties.push((event.account, side, aggressor == Some(side), exec));
            }
            Body::Trade { aggressor, buyer, seller, .. } => {
                for x in Execution::of_trade(event).into_iter().flatten() {
                    // The party's order when the print names it, else the print itself.
                    let named = if x.side == Side::Buy { buyer.order } else { seller.order };
                    let order = if named.is_none() { Symbol::of_integer(x.origin) } else { named };
                    let exec = Exec { time: event.time, order, price: x.price, quantity: x.quantity, event: *event };
                    parties.push((x.account, x.side, aggressor == Some(x.side), exec));
                }
            }
            _ => return,
        }
        let window = nanos_of(self.config.ignition_window);
        for (account, side, aggressive, exec) in parties {
            if account.is_none() || exec.quantity == 0 {
                continue;
            }
            let state_of = state.accounts.entry(account).or_default();
            // A reversal of an open ignition on the other side.
            for episode in state_of.episodes.iter_mut().filter(|e| e.side != side) {
                if exec.time > episode.end && beyond(episode.side, exec.price as f64, episode.average()) {
                    if episode.reversal.len() < MAX_EVIDENCE || episode.reversal.is_empty() {
                        episode.reversal.push(exec);
                    } else if let Some(last) = episode.reversal.last_mut() {
                        // Past the evidence limit the quantities still count, folded into the last.
                        last.quantity = last.quantity.saturating_add(exec.quantity);
                    }
                }
            }
            if !aggressive {
                continue;
            }
            let run = &mut state_of.runs[index(side)];
            run.push_back(exec);
            while run.front().is_some_and(|e| exec.time.saturating_sub(e.time) > window) {
                run.pop_front();
            }
            // An ignition of this side still igniting (no reversal yet) grows with the run.
            if let Some(episode) = state_of
                .episodes
                .iter_mut()
                .find(|e| e.side == side && e.reversal.is_empty() && exec.time.saturating_sub(e.end) <= window)
            {
                if episode.execs.len() < MAX_EVIDENCE {
                    episode.execs.push(exec);
                } else if let Some(last) = episode.execs.last_mut() {
                    last.quantity = last.quantity.saturating_add(exec.quantity);
                }
                episode.end = exec.time;
                out.timer(exec.time.saturating_add(nanos_of(self.config.max_reversal_delay)));
                continue;
            }
            let mut orders: Vec<Symbol> = run.iter().map(|e| e.order).collect();
            orders.sort_unstable();
            orders.dedup();
            let mut prices: Vec<i64> = run.iter().map(|e| e.price).collect();
            prices.sort_unstable();
            prices.dedup();
            let trending = run
                .front()
                .zip(run.back())
                .is_some_and(|(first, last)| beyond(side, last.price as f64, first.price as f64));
            if orders.len() >= self.config.min_orders as usize
                && prices.len() >= self.config.min_price_levels as usize
                && trending
            {
                let execs: Vec<Exec> = run.drain(..).take(MAX_EVIDENCE).collect();
                state_of.episodes.push(Episode { side, execs, end: exec.time, reversal: Vec::new() });
                out.timer(exec.time.saturating_add(nanos_of(self.config.max_reversal_delay)));
            }
        }
        // Accounts with nothing open keep nothing. Swept once per ignition window.
        let now = event.time;
        if now.saturating_sub(state.swept) > window {
            state.swept = now;
            state.accounts.retain(|_, a| {
                for run in &mut a.runs {
                    while run.front().is_some_and(|e| now.saturating_sub(e.time) > window) {
                        run.pop_front();
                    }
                }
                !a.episodes.is_empty() || a.runs.iter().any(|r| !r.is_empty())
            });
        }
    }

    fn on_timer(&self, state: &mut MomentumIgnitionState, time: Timestamp, out: &mut AlertSink<'_>) {
        let delay = nanos_of(self.config.max_reversal_delay);
        let mut due: Vec<(Symbol, Episode)> = Vec::new();
        for (account, a) in state.accounts.iter_mut() {
            let (ready, open): (Vec<Episode>, Vec<Episode>) =
                std::mem::take(&mut a.episodes).into_iter().partition(|e| e.end.saturating_add(delay) <= time);
            a.episodes = open;
            due.extend(ready.into_iter().map(|e| (*account, e)));
        }
        // The same order whatever the map's layout.
        due.sort_by_key(|(account, e)| (e.end, account.0, index(e.side)));
        for (account, episode) in due {
            self.judge(account, &episode, out);
        }
    }
}

impl MomentumIgnition {
    fn judge(&self, account: Symbol, e: &Episode, out: &mut AlertSink<'_>) {
        let config = &self.config;
        let ignited = e.quantity();
        let reversed = e.reversal.iter().fold(0u64, |s, x| s.saturating_add(x.quantity));
        let share = reversed as f64 / ignited.max(1) as f64;
        if reversed == 0 || share < config.min_reversal_share {
            return;
        }
        let (Some(first), Some(last)) = (e.execs.first(), e.execs.last()) else { return };
        let first_reversal = e.reversal.iter().map(|x| x.time).min().unwrap_or(e.end);
        let delay = first_reversal.saturating_sub(e.end) as f64 / 1e9;
        let max_delay = config.max_reversal_delay.as_secs_f64().max(1e-9);
        let levels = e.levels();
        let turned = share.clamp(0.0, 1.0);
        let swept = ((levels as f64 - 1.0) / (2.0 * f64::from(config.min_price_levels.max(2)) - 1.0)).clamp(0.0, 1.0);
        let speed = (1.0 - delay / max_delay).clamp(0.0, 1.0);
        let score = 100.0 * (0.4 * turned + 0.3 * swept + 0.3 * speed);
        let severity = match score {
            s if s >= 70.0 => Severity::High,
            s if s >= 45.0 => Severity::Medium,
            _ => Severity::Low,
        };
        let average = e.average();
        let reversal_average =
            e.reversal.iter().map(|x| x.price as f64 * x.quantity as f64).sum::<f64>() / reversed.max(1) as f64;
        let move_share = (last.price - first.price) as f64 / first.price.max(1) as f64;
        let gain_share = (reversal_average - average) / average.max(1.0);
        let (verb, back) = if e.side == Side::Buy { ("bought", "sold") } else { ("sold", "bought") };
        let mut alert = out.alert_now();
        alert
            .account(account)
            .severity(severity)
            .score(score)
            .explain(format!(
                "{verb} {ignited} aggressively through {levels} price levels ({:+.2} %) in {:.1} s, then {back} {reversed} ({:.0} % of it) {delay:.1} s later at {:+.2} % from its average",
                100.0 * move_share,
                last.time.saturating_sub(first.time) as f64 / 1e9,
                100.0 * share,
                100.0 * gain_share,
            ))
            .param("side", e.side.as_str())
            .param("ignition_quantity", ignited)
            .param("ignition_orders", {
                let mut orders: Vec<Symbol> = e.execs.iter().map(|x| x.order).collect();
                orders.sort_unstable();
                orders.dedup();
                orders.len()
            })
            .param("price_levels", levels)
            .param("min_price_levels", u64::from(config.min_price_levels))
            .param("ignition_move", move_share)
            .param("reversal_quantity", reversed)
            .param("reversal_share", share)
            .param("min_reversal_share", config.min_reversal_share)
            .param("reversal_gain", gain_share)
            .param("reversal_delay_s", delay)
            .param("max_reversal_delay_s", max_delay);
        for x in e.execs.iter().chain(&e.reversal) {
            alert.evidence(&x.event);
        }
        alert.discriminator(first.time);
    }
}

/// Extension trait: the momentum-ignition rule as an operator on a stream of events.
pub trait MomentumIgnitionExt<'scope> {
    /// Momentum-ignition alerts: see the [module documentation](self).
    ///
    /// ```
    /// use surveil::config::MomentumIgnitionConfig;
    /// use surveil::rules::MomentumIgnitionExt;
    /// use timely::dataflow::operators::capture::Capture;
    /// use timely::dataflow::operators::ToStream;
    ///
    /// let alerts = timely::example(move |scope| {
    ///     Vec::<surveil::model::Event>::new()
    ///         .to_stream(scope)
    ///         .momentum_ignition(&MomentumIgnitionConfig::default())
    ///         .capture()
    /// });
    /// assert!(surveil::testing::captured(alerts).is_empty());
    /// ```
    fn momentum_ignition(self, config: &MomentumIgnitionConfig) -> Stream<'scope, u64, Vec<Alert>>;
}

impl<'scope> MomentumIgnitionExt<'scope> for Stream<'scope, u64, Vec<Event>> {
    fn momentum_ignition(self, config: &MomentumIgnitionConfig) -> Stream<'scope, u64, Vec<Alert>> {
        self.detect(MomentumIgnition::new(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Origin, Price};
    use crate::testing::{event, run, run_on};

    const MS: u64 = 1_000_000;

    fn fill(
        time_ms: u64,
        account: &str,
        order: &str,
        side: Side,
        cents: i64,
        quantity: u64,
        aggressive: bool,
    ) -> Event {
        let aggressor = if aggressive { side } else { side.opposite() };
        event(
            time_ms * MS,
            "ACME",
            account,
            Body::Fill {
                order: Symbol::of(order.as_bytes()),
                side,
                price: Price(cents),
                quantity,
                aggressor: Some(aggressor),
                hidden: false,
            },
        )
    }

    /// Four buys by `IGNITER` lifting 10.00, 10.02, 10.04, 10.06 within 3 s, then a sale of
    /// `sold` at `sale_cents` `sale_after` ms later.
    fn ignition(sold: u64, sale_cents: i64, sale_after: u64) -> Vec<Event> {
        let mut events = Vec::new();
        for (k, cents) in [1_000, 1_002, 1_004, 1_006].into_iter().enumerate() {
            let t = 1_000 + 1_000 * k as u64;
            events.push(fill(t, "IGNITER", &format!("B{k}"), Side::Buy, cents, 500, true));
            events.push(fill(t, "MM", &format!("M{k}"), Side::Sell, cents, 500, false));
        }
        if sold > 0 {
            events.push(fill(4_000 + sale_after, "IGNITER", "S", Side::Sell, sale_cents, sold, false));
            events.push(fill(4_000 + sale_after, "OTHER", "X", Side::Buy, sale_cents, sold, true));
        }
        for (i, e) in events.iter_mut().enumerate() {
            e.origin = Origin::new(0, i as u64);
        }
        events
    }

    #[test]
    fn a_run_of_aggressive_buys_sold_out_soon_after_is_one_alert() {
        for workers in [1, 2] {
            let alerts = run_on(
                workers,
                MomentumIgnition::new(&MomentumIgnitionConfig::default()),
                ignition(1_500, 1_005, 2_000),
            );
            assert_eq!(alerts.len(), 1, "{alerts:#?}");
            let a = &alerts[0];
            assert_eq!((a.rule.as_str(), a.account), (rules::MOMENTUM_IGNITION, Symbol::of(b"IGNITER")));
            // Four ignition fills and the sale.
            assert_eq!(a.evidence.len(), 5);
            assert!(
                a.explanation.starts_with("bought 2000 aggressively through 4 price levels (+0.60 %)"),
                "{}",
                a.explanation
            );
            assert!(a.explanation.contains("then sold 1500 (75 % of it) 2.0 s later"), "{}", a.explanation);
            assert_eq!(a.time, 4_000 * MS + 30_000 * MS, "reported when the reversal window has passed");
        }
    }

    #[test]
    fn no_reversal_a_late_or_losing_or_small_one_or_a_flat_run_is_not_ignition() {
        let rule = || MomentumIgnition::new(&MomentumIgnitionConfig::default());
        assert!(run(rule(), ignition(0, 0, 0)).is_empty());
        // 31 s after: too late.
        assert!(run(rule(), ignition(1_500, 1_005, 31_000)).is_empty());
        // Below the average buying price (10.03): no profit from the move.
        assert!(run(rule(), ignition(1_500, 1_002, 2_000)).is_empty());
        // A tenth of the position.
        assert!(run(rule(), ignition(200, 1_005, 2_000)).is_empty());
        // Four buys at one price: no trend.
        let mut flat = Vec::new();
        for k in 0..4u64 {
            flat.push(fill(1_000 + 500 * k, "IGNITER", &format!("B{k}"), Side::Buy, 1_000, 500, true));
        }
        flat.push(fill(5_000, "IGNITER", "S", Side::Sell, 1_010, 2_000, false));
        for (i, e) in flat.iter_mut().enumerate() {
            e.origin = Origin::new(0, i as u64);
        }
        assert!(run(rule(), flat).is_empty());
    }
}
