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
//! took liquidity), or from trade prints that name the aggressor's side otherwise (a print that
//! names no order counts, with the party's other prints of the same time, as one order). An
//! episode is reported when its reversal window has passed, with the first 20 executions of each
//! leg as evidence; its totals cover every execution. A sale turns round the oldest open
//! ignition first, each only up to its own quantity.

use std::collections::{BTreeSet, VecDeque};

use timely::dataflow::Stream;

use crate::config::{MomentumIgnitionConfig, nanos_of};
use crate::detect::{AlertSink, Detect, Detector, Key};
use crate::model::alert::rules;
use crate::model::{Alert, Body, Event, IdMap, Severity, Side, Symbol, Timestamp};
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

/// One leg of an episode: running totals over every execution, and the first executions as
/// evidence.
#[derive(Clone, Debug, Default)]
struct Leg {
    quantity: u64,
    notional: f64,
    prices: BTreeSet<i64>,
    orders: BTreeSet<Symbol>,
    first: Option<Exec>,
    last: Option<Exec>,
    evidence: Vec<Event>,
}

impl Leg {
    fn add(&mut self, exec: &Exec, quantity: u64) {
        self.quantity = self.quantity.saturating_add(quantity);
        self.notional += exec.price as f64 * quantity as f64;
        self.prices.insert(exec.price);
        self.orders.insert(exec.order);
        self.first.get_or_insert(*exec);
        self.last = Some(*exec);
        if self.evidence.len() < MAX_EVIDENCE && self.evidence.last() != Some(&exec.event) {
            self.evidence.push(exec.event);
        }
    }

    /// Volume-weighted average price.
    fn average(&self) -> f64 {
        self.notional / self.quantity.max(1) as f64
    }
}

/// An ignition, then its reversal window.
#[derive(Clone, Debug)]
struct Episode {
    side: Side,
    ignition: Leg,
    /// Time of its last aggressive execution.
    end: Timestamp,
    reversal: Leg,
}

/// What the rule remembers of one account on an instrument.
#[derive(Default)]
struct Account {
    /// Its aggressive executions within the ignition window not yet in an episode, per side
    /// (buy, sell).
    runs: [VecDeque<Exec>; 2],
    /// Ignitions whose reversal window is open, oldest first.
    episodes: Vec<Episode>,
}

/// What the rule remembers of an instrument.
#[derive(Default)]
pub struct MomentumIgnitionState {
    /// Whether the instrument's executions come as fills (preferred) or only as trade prints.
    fills_seen: bool,
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
        // Fills when the input has them: the first fill discards what prints built up (the same
        // executions would otherwise count twice); prints after that are ignored.
        match event.body {
            Body::Fill { .. } if !state.fills_seen => {
                state.fills_seen = true;
                state.accounts.clear();
            }
            Body::Trade { .. } if state.fills_seen => return,
            _ => {}
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
                    // The party's order when the print names it; else the prints of one time
                    // are one order (a sweep through several levels prints once per level).
                    let named = if x.side == Side::Buy { buyer.order } else { seller.order };
                    let order =
                        if named.is_none() { Symbol::of(format!("print@{}", event.time).as_bytes()) } else { named };
                    let exec = Exec { time: event.time, order, price: x.price, quantity: x.quantity, event: *event };
                    parties.push((x.account, x.side, aggressor == Some(x.side), exec));
                }
            }
            _ => return,
        }
        let window = nanos_of(self.config.ignition_window);
        let delay = nanos_of(self.config.max_reversal_delay);
        for (account, side, aggressive, exec) in parties {
            if account.is_none() || exec.quantity == 0 {
                continue;
            }
            let state_of = state.accounts.entry(account).or_default();
            // A reversal of open ignitions on the other side, oldest first, each taking what it
            // has not yet had turned round.
            let mut left = exec.quantity;
            for episode in state_of.episodes.iter_mut().filter(|e| e.side != side) {
                if left == 0 {
                    break;
                }
                // Within the delay: the episode is judged when it has passed.
                let open = exec.time > episode.end && exec.time < episode.end.saturating_add(delay);
                let room = episode.ignition.quantity.saturating_sub(episode.reversal.quantity);
                if open && room > 0 && beyond(episode.side, exec.price as f64, episode.ignition.average()) {
                    let taken = left.min(room);
                    episode.reversal.add(&exec, taken);
                    left -= taken;
                }
            }
            if !aggressive {
                continue;
            }
            // An ignition of this side still igniting (no reversal yet, within the window of its
            // first execution) grows with it.
            if let Some(episode) = state_of.episodes.iter_mut().find(|e| {
                e.side == side
                    && e.reversal.quantity == 0
                    && e.ignition.first.is_some_and(|f| exec.time.saturating_sub(f.time) <= window)
            }) {
                episode.ignition.add(&exec, exec.quantity);
                episode.end = exec.time;
                out.timer(exec.time.saturating_add(delay));
                continue;
            }
            let run = &mut state_of.runs[index(side)];
            run.push_back(exec);
            while run.front().is_some_and(|e| exec.time.saturating_sub(e.time) > window) {
                run.pop_front();
            }
            let orders: BTreeSet<Symbol> = run.iter().map(|e| e.order).collect();
            let prices: BTreeSet<i64> = run.iter().map(|e| e.price).collect();
            let trending = run
                .front()
                .zip(run.back())
                .is_some_and(|(first, last)| beyond(side, last.price as f64, first.price as f64));
            if orders.len() >= self.config.min_orders as usize
                && prices.len() >= self.config.min_price_levels as usize
                && trending
            {
                let mut ignition = Leg::default();
                for e in run.drain(..) {
                    ignition.add(&e, e.quantity);
                }
                state_of.episodes.push(Episode { side, ignition, end: exec.time, reversal: Leg::default() });
                out.timer(exec.time.saturating_add(delay));
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
        let due_at = |e: &Episode| e.end.saturating_add(delay) <= time;
        let mut due: Vec<(Symbol, Episode)> = Vec::new();
        for (account, a) in state.accounts.iter_mut() {
            if !a.episodes.iter().any(due_at) {
                continue;
            }
            let (ready, open): (Vec<Episode>, Vec<Episode>) =
                std::mem::take(&mut a.episodes).into_iter().partition(due_at);
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
        let (ignited, reversed) = (e.ignition.quantity, e.reversal.quantity);
        let share = reversed as f64 / ignited.max(1) as f64;
        if reversed == 0 || share < config.min_reversal_share {
            return;
        }
        let (Some(first), Some(last)) = (e.ignition.first, e.ignition.last) else { return };
        let first_reversal = e.reversal.first.map_or(e.end, |x| x.time);
        let delay = first_reversal.saturating_sub(e.end) as f64 / 1e9;
        let max_delay = config.max_reversal_delay.as_secs_f64().max(1e-9);
        let levels = e.ignition.prices.len();
        let turned = share.clamp(0.0, 1.0);
        let swept = ((levels as f64 - 1.0) / (2.0 * f64::from(config.min_price_levels.max(2)) - 1.0)).clamp(0.0, 1.0);
        let speed = (1.0 - delay / max_delay).clamp(0.0, 1.0);
        let score = 100.0 * (0.4 * turned + 0.3 * swept + 0.3 * speed);
        let severity = Severity::from_score(score, 45.0, 70.0);
        let average = e.ignition.average();
        let move_share = (last.price - first.price) as f64 / first.price.max(1) as f64;
        let gain_share = (e.reversal.average() - average) / average.max(1.0);
        let (verb, back) = if e.side == Side::Buy { ("bought", "sold") } else { ("sold", "bought") };
        let mut alert = out.alert_now();
        alert
            .account(account)
            .severity(severity)
            .score(score)
            .explain(format!(
                "{verb} {ignited} aggressively through {levels} price levels ({:+.2} %) in {:.1} s, then {back} {reversed} ({:.0} % of it) {delay:.1} s later at {:+.2} % from its average",
                100.0 * move_share,
                e.end.saturating_sub(first.time) as f64 / 1e9,
                100.0 * share,
                100.0 * gain_share,
            ))
            .param("side", e.side.as_str())
            .param("ignition_quantity", ignited)
            .param("ignition_orders", e.ignition.orders.len())
            .param("price_levels", levels)
            .param("min_price_levels", u64::from(config.min_price_levels))
            .param("ignition_move", move_share)
            .param("reversal_quantity", reversed)
            .param("reversal_share", share)
            .param("min_reversal_share", config.min_reversal_share)
            .param("reversal_gain", gain_share)
            .param("reversal_delay_s", delay)
            .param("max_reversal_delay_s", max_delay);
        for x in e.ignition.evidence.iter().chain(&e.reversal.evidence) {
            alert.evidence(x);
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
        // Exactly 30 s after is judged too late; 29.9 s is in time.
        assert!(run(rule(), ignition(1_500, 1_005, 30_000)).is_empty());
        assert_eq!(run(rule(), ignition(1_500, 1_005, 29_900)).len(), 1);
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
        // Buys at three falling prices: no trend the buyer's way.
        let mut falling = Vec::new();
        for (k, cents) in [1_006, 1_004, 1_002, 1_000].into_iter().enumerate() {
            falling.push(fill(1_000 + 500 * k as u64, "IGNITER", &format!("B{k}"), Side::Buy, cents, 500, true));
        }
        falling.push(fill(5_000, "IGNITER", "S", Side::Sell, 1_010, 2_000, false));
        assert!(run(rule(), with_origins(falling)).is_empty());
    }

    fn with_origins(mut events: Vec<Event>) -> Vec<Event> {
        events.sort_by_key(|e| e.time);
        for (i, e) in events.iter_mut().enumerate() {
            e.origin = Origin::new(0, i as u64);
        }
        events
    }

    #[test]
    fn a_sell_side_ignition_bought_back_is_found() {
        let mut events = Vec::new();
        for (k, cents) in [1_006, 1_004, 1_002].into_iter().enumerate() {
            events.push(fill(1_000 + 1_000 * k as u64, "IGNITER", &format!("S{k}"), Side::Sell, cents, 400, true));
        }
        // Bought back below the average selling price (10.04).
        events.push(fill(5_000, "IGNITER", "B", Side::Buy, 1_003, 600, false));
        let alerts = run(MomentumIgnition::new(&MomentumIgnitionConfig::default()), with_origins(events));
        assert_eq!(alerts.len(), 1, "{alerts:#?}");
        assert!(
            alerts[0].explanation.starts_with("sold 1200 aggressively through 3 price levels (-0.40 %)"),
            "{}",
            alerts[0].explanation
        );
    }

    #[test]
    fn two_ignitions_each_take_only_their_own_reversal() {
        // Ignition one (4 x 500 from 10.00 to 10.06), a sale of 1,000 at 10.05, then ignition
        // two (3 x 500 from 10.07 to 10.11) and a sale of 1,500 at 10.12.
        let mut events = Vec::new();
        for (k, cents) in [1_000, 1_002, 1_004, 1_006].into_iter().enumerate() {
            events.push(fill(1_000 + 500 * k as u64, "IGNITER", &format!("A{k}"), Side::Buy, cents, 500, true));
        }
        events.push(fill(4_000, "IGNITER", "S1", Side::Sell, 1_005, 1_000, false));
        for (k, cents) in [1_007, 1_009, 1_011].into_iter().enumerate() {
            events.push(fill(20_000 + 500 * k as u64, "IGNITER", &format!("B{k}"), Side::Buy, cents, 500, true));
        }
        events.push(fill(23_000, "IGNITER", "S2", Side::Sell, 1_012, 1_500, false));
        let alerts = run(MomentumIgnition::new(&MomentumIgnitionConfig::default()), with_origins(events));
        assert_eq!(alerts.len(), 2, "{alerts:#?}");
        let count =
            |a: &Alert, name: &str| a.parameters.iter().find(|p| p.name == name).map(|p| format!("{:?}", p.value));
        // The second sale first fills what is left of the first ignition (1,000 of 2,000 at a
        // price above its average), then the second ignition's 500: never more than each bought.
        assert_eq!(count(&alerts[0], "ignition_quantity").as_deref(), Some("Count(2000)"));
        assert_eq!(count(&alerts[0], "reversal_quantity").as_deref(), Some("Count(2000)"));
        assert_eq!(count(&alerts[1], "ignition_quantity").as_deref(), Some("Count(1500)"));
        assert_eq!(count(&alerts[1], "reversal_quantity").as_deref(), Some("Count(500)"));
        // No execution appears in both.
        for e in &alerts[1].evidence {
            assert!(!alerts[0].evidence.contains(e) || matches!(e.body, Body::Fill { side: Side::Sell, .. }));
        }
    }

    #[test]
    fn a_single_sweep_printed_level_by_level_is_one_order() {
        // Trade prints naming no orders: one aggressive buy through three levels at one time,
        // then a sale: one order, not three.
        let print = |time_ms: u64, buyer: &str, seller: &str, cents: i64, quantity: u64, aggressor: Side| {
            let party = |name: &str| crate::model::Party { account: Symbol::of(name.as_bytes()), ..Default::default() };
            event(
                time_ms * MS,
                "ACME",
                "",
                Body::Trade {
                    buyer: party(buyer),
                    seller: party(seller),
                    price: Price(cents),
                    quantity,
                    aggressor: Some(aggressor),
                    linked: None,
                },
            )
        };
        let mut events: Vec<Event> =
            [1_000, 1_002, 1_004].into_iter().map(|c| print(1_000, "IGNITER", "MM", c, 500, Side::Buy)).collect();
        events.push(print(3_000, "OTHER", "IGNITER", 1_004, 1_500, Side::Buy));
        let rule = || MomentumIgnition::new(&MomentumIgnitionConfig::default());
        assert!(run(rule(), with_origins(events.clone())).is_empty());
        // Three sweeps at three times are three orders.
        let mut three: Vec<Event> = [1_000, 1_002, 1_004]
            .into_iter()
            .enumerate()
            .map(|(k, c)| print(1_000 + 500 * k as u64, "IGNITER", "MM", c, 500, Side::Buy))
            .collect();
        three.push(print(3_000, "OTHER", "IGNITER", 1_004, 1_500, Side::Buy));
        assert_eq!(run(rule(), with_origins(three)).len(), 1);
    }
}
