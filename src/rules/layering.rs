//! Layering: several orders on one side across price levels, entered to move the market and
//! obtain an execution on the other side, then cancelled (FINRA's cross-market layering
//! definition; CEA §4c(a)(5)(C); MAR Annex II 1(a)).
//!
//! The logic follows Trillium Surveyor's layering steps and the Sarao case (`docs/detection.md`
//! has the references):
//!
//! 1. When an account executes on one side, its resting orders on the other side are the
//!    candidate layers: they must sit on at least `min_layers` distinct price levels among the
//!    best `levels` of that side, each entered (or last moved) behind at least
//!    `min_levels_ahead` occupied levels (layers show depth without being exposed at the touch;
//!    an order entered at the touch is what the spoofing rule looks at), and hold at least `min_depth_share` of the visible quantity
//!    of those levels (Sarao: "well over 20 percent of all E-mini sell orders visible").
//!    The layers must also outweigh the account's own interest on the execution side (what it
//!    executed plus what it still has resting there) `min_size_ratio` times: a market maker
//!    quoting both sides, with fills on both, is not layering.
//! 2. More executions of the account on the first side while the layers rest join the episode.
//! 3. The layers are then cancelled by the member, mostly unfilled (at most `max_fill_share` each), each
//!    within `max_cancel_after_fill` of the account's latest execution (CFTC: 2.3 s on average
//!    once the genuine order filled) and the last within `window` of the first execution
//!    (RedDeer's layering window, 20 min). At least `min_layers` layers must end that way; a
//!    layer that fills, or is left resting long after the trade, is not a layer; the layers that
//!    count must still span `min_layers` price levels. Institutions
//!    working an order on several levels and trading the other way now and then do not pull
//!    their orders the moment they trade.
//!
//! 4. The layers must stay mostly unexecuted as a whole: once the account has traded on the
//!    other side, executions of its layers may total at most `max_executed_share` of their
//!    quantity (Sarao's layered orders were almost never executed). Layers that do trade lower
//!    the score; beyond that share the episode is no layering.
//!
//! The score (0-100) weighs the depth share (full weight at 50 %), the number of levels
//! (full weight at 5, Sarao's count) and how many replaces the layers took (full weight at 10:
//! Sarao modified his more than 19,000 times), times 1 − the executed share.
//!
//! **Alert now, correct later.** An episode ends when its last layer is gone, which may be up
//! to `window` (20 min) after the trade. With `early_alerts` (the default), an episode proven
//! by its cancels (`min_layers` levels) whose other layers still rest when no later cancel can
//! count any more (`max_cancel_after_fill` after the account's last execution) is raised then,
//! not at its end. When the episode ends, a correction with the same id follows if the verdict
//! changed: `retracted` when the layers went on to trade beyond `max_executed_share`,
//! `downgraded` when some traded, `amended` when more layers were cancelled or more executions
//! joined. The last version of each id says what judging the whole episode at its end says
//! (`early_alerts = false`), which is how a wall pulled at once is reported: once.

use std::collections::BTreeSet;

use surveil_operators::KeySet;
use timely::dataflow::Stream;

use crate::config::{LayeringConfig, nanos_of};
use crate::detect::{AlertSink, Detect, Detector, Key, OrderBook};
use crate::model::alert::rules;
use crate::model::{
    Alert, Body, CancelReason, CorrectionKind, Event, IdMap, Price, Quantity, Severity, Side, Symbol, Timestamp,
};

/// The layering rule.
#[derive(Clone)]
pub struct Layering {
    config: LayeringConfig,
}

impl Layering {
    /// Builds the rule.
    pub fn new(config: &LayeringConfig) -> Layering {
        Layering { config: config.clone() }
    }

    fn window(&self) -> u64 {
        nanos_of(self.config.window)
    }
}

/// A resting order of an account.
#[derive(Clone, Debug)]
struct Resting {
    account: Symbol,
    side: Side,
    price: Price,
    quantity: Quantity,
    filled: Quantity,
    /// What is open now (partial cancels and fills taken off).
    open: Quantity,
    /// What the book shows of it now (a reserve order's peak).
    shown: Quantity,
    replaces: u32,
    /// Whether the order was entered (or last moved) behind the touch.
    entered_behind: bool,
    entry: Event,
    /// The book's mid price when it was entered.
    mid_at_entry: Option<f64>,
}

/// Layers of one account and side, around its executions on the other side.
#[derive(Clone, Debug)]
struct Episode {
    first_fill: Timestamp,
    last_fill: Timestamp,
    layers: BTreeSet<Symbol>,
    fills: Vec<Event>,
    /// Entries and cancels of the layers that ended cancelled, with their replaces and prices.
    cancelled: Vec<(Event, Event, u32, Price)>,
    depth_share: f64,
    levels: usize,
    /// The layers over the account's interest on the other side.
    size_ratio: f64,
    /// Size of every order that joined as a layer.
    layer_quantity: IdMap<Symbol, Quantity>,
    /// Executions of the layers once they joined, and what they executed.
    layer_fills: Vec<Event>,
    executed: Quantity,
    /// How far the mid moved the layers' way, from the first layer's entry to the account's
    /// first execution on the other side (what the wall was for).
    price_move_bps: Option<f64>,
    /// The alert raised early, before the episode ended.
    raised: Option<Alert>,
}

/// What the whole of an episode shows.
#[derive(Clone, Copy, Debug)]
struct Verdict {
    score: f64,
    executed_share: f64,
}

impl Episode {
    fn executed_share(&self) -> f64 {
        let total = self.layer_quantity.values().fold(0u64, |sum, q| sum.saturating_add(*q));
        if total == 0 { 0.0 } else { self.executed as f64 / total as f64 }
    }

    /// How many events the alert of the episode shows, to tell whether a later version says more.
    fn evidence_len(&self) -> usize {
        2 * self.cancelled.len() + self.fills.len() + self.layer_fills.len()
    }
}

/// What the rule remembers of an instrument.
#[derive(Default)]
pub struct LayeringState {
    /// Open orders entered behind the touch: the only ones that can be layers.
    resting: IdMap<Symbol, Resting>,
    /// The same, by account. Hashed, not ordered: what an execution looks at does not depend
    /// on the order it is visited in, and an ordered set cost more than the rest of the rule.
    by_account: IdMap<Symbol, KeySet<Symbol>>,
    /// Open quantity per account and side, of all its orders.
    open: IdMap<(Symbol, Side), Quantity>,
    episodes: IdMap<(Symbol, Side), Episode>,
}

impl LayeringState {
    fn close(&mut self, order: Symbol) -> Option<Resting> {
        let resting = self.resting.remove(&order)?;
        if let Some(orders) = self.by_account.get_mut(&resting.account) {
            orders.remove(&order);
        }
        Some(resting)
    }

    /// Keeps the open quantity per account and side.
    fn note(&mut self, context: &crate::detect::OrderContext) {
        if let Some(b) = context.before
            && let Some(q) = self.open.get_mut(&(b.account, b.side))
        {
            *q = q.saturating_sub(b.remaining);
            if *q == 0 {
                self.open.remove(&(b.account, b.side));
            }
        }
        if let Some(a) = context.after
            && a.remaining > 0
        {
            let open = self.open.entry((a.account, a.side)).or_default();
            *open = open.saturating_add(a.remaining);
        }
    }
}

impl Detector for Layering {
    type State = LayeringState;

    fn name(&self) -> &str {
        rules::LAYERING
    }

    fn key(&self, event: &Event) -> Option<Key> {
        matches!(event.body, Body::NewOrder { .. } | Body::Replace { .. } | Body::Cancel { .. } | Body::Fill { .. })
            .then_some(Key::Instrument(event.instrument))
    }

    fn needs_book(&self) -> bool {
        true
    }

    fn on_event(&self, state: &mut LayeringState, event: &Event, out: &mut AlertSink<'_>) {
        let Some(context) = out.order().copied() else { return };
        state.note(&context);
        match event.body {
            Body::NewOrder { order, .. } | Body::Replace { order, .. } => {
                let previous = state.close(order);
                let (Some(after), Some(price)) = (context.after, context.after.and_then(|a| a.price)) else {
                    return;
                };
                let behind = |price| {
                    out.book().is_some_and(|b| {
                        let min = self.config.min_levels_ahead as usize;
                        b.levels_ahead_up_to(after.side, price, min) >= min
                    })
                };
                let (entry, mid_at_entry, replaces, filled, entered_behind) = match &previous {
                    Some(p) if matches!(event.body, Body::Replace { .. }) => {
                        let entered_behind = if p.price == price { p.entered_behind } else { behind(price) };
                        (p.entry, p.mid_at_entry, p.replaces.saturating_add(1), p.filled, entered_behind)
                    }
                    _ => (*event, out.book().and_then(|b| b.mid()), 0, 0, behind(price)),
                };
                if !entered_behind {
                    // Moved to the touch: no layer any more.
                    if let Some(p) = previous {
                        self.leave(state, order, p.account, p.side, event.time, out);
                    }
                    return;
                }
                let quantity = after.remaining.saturating_add(after.filled);
                state.resting.insert(
                    order,
                    Resting {
                        account: after.account,
                        side: after.side,
                        price,
                        quantity,
                        filled,
                        open: after.remaining,
                        shown: after.visible(),
                        replaces,
                        entered_behind,
                        entry,
                        mid_at_entry,
                    },
                );
                state.by_account.entry(after.account).or_default().insert(order);
            }
            Body::Fill { order, quantity, side, .. } => {
                let Some(before) = context.before else { return };
                if let Some(r) = state.resting.get_mut(&order) {
                    if let Some(e) = state.episodes.get_mut(&(r.account, r.side))
                        && e.layers.contains(&order)
                    {
                        e.executed = e.executed.saturating_add(quantity);
                        e.layer_fills.push(*event);
                    }
                    r.filled = r.filled.saturating_add(quantity);
                    r.open = context.after.map_or(0, |a| a.remaining);
                    r.shown = context.after.map_or(0, |a| a.visible());
                    let too_filled = r.filled as f64 > self.config.max_fill_share * r.quantity as f64;
                    if context.after.is_none() || too_filled {
                        let (account, side) = (r.account, r.side);
                        state.close(order);
                        // A layer that trades is no layer.
                        self.leave(state, order, account, side, event.time, out);
                    }
                }
                self.on_execution(state, before.account, side, event, out);
            }
            Body::Cancel { order, reason, .. } => {
                if let Some(after) = context.after {
                    if let Some(r) = state.resting.get_mut(&order) {
                        r.open = after.remaining;
                        r.shown = after.visible();
                    }
                    return;
                }
                let Some(resting) = state.close(order) else { return };
                let key = (resting.account, resting.side);
                let Some(episode) = state.episodes.get_mut(&key) else { return };
                if !episode.layers.remove(&order) {
                    return;
                }
                let prompt = nanos_of(self.config.max_cancel_after_fill);
                // A layer the venue cancelled (self-trade prevention, expiry) shows no intent.
                if reason == CancelReason::Member
                    && event.time.saturating_sub(episode.last_fill) <= prompt
                    && event.time.saturating_sub(episode.first_fill) <= self.window()
                {
                    episode.cancelled.push((resting.entry, *event, resting.replaces, resting.price));
                    // Proven, with layers still resting: raised once no later cancel can count
                    // (unless the account executes again), if the episode has not ended by then.
                    if self.config.early_alerts && episode.raised.is_none() && self.verdict(episode).is_some() {
                        out.timer(self.cancels_counted_until(episode).saturating_add(1));
                    }
                }
                self.finish_if_done(state, key, event.time, out);
            }
            _ => {}
        }
    }

    fn on_timer(&self, state: &mut LayeringState, time: Timestamp, out: &mut AlertSink<'_>) {
        // Early alerts: an episode proven by its cancels, whose remaining layers still rest once
        // the time for cancels to count has passed, is raised now and corrected at its end.
        if self.config.early_alerts {
            let mut proven: Vec<(Symbol, Side)> = state
                .episodes
                .iter()
                .filter(|(_, e)| e.raised.is_none() && self.verdict(e).is_some())
                .map(|(k, _)| *k)
                .collect();
            proven.sort();
            for key in proven {
                let Some(episode) = state.episodes.get_mut(&key) else { continue };
                let until = self.cancels_counted_until(episode);
                if time <= until {
                    // A later execution reopened the time for cancels.
                    out.timer(until.saturating_add(1));
                    continue;
                }
                if let Some(verdict) = self.verdict(episode) {
                    self.alert(key.0, key.1, episode, verdict, time, None, out);
                    episode.raised = out.last_alert().cloned();
                }
            }
        }
        // The window has passed: the layers cancelled by now are judged, those still resting do
        // not count.
        let window = self.window();
        let mut over: Vec<(Symbol, Side)> = state
            .episodes
            .iter()
            .filter(|(_, e)| time.saturating_sub(e.first_fill) > window)
            .map(|(k, _)| *k)
            .collect();
        over.sort();
        for key in over {
            if let Some(episode) = state.episodes.remove(&key) {
                self.judge(key, &episode, time, out);
            }
        }
    }
}

impl Layering {
    /// `order` of `account` on `side` is no layer any more (it traded, or moved to the touch):
    /// its episode goes on without it.
    fn leave(
        &self,
        state: &mut LayeringState,
        order: Symbol,
        account: Symbol,
        side: Side,
        time: Timestamp,
        out: &mut AlertSink<'_>,
    ) {
        let key = (account, side);
        if let Some(episode) = state.episodes.get_mut(&key)
            && episode.layers.remove(&order)
        {
            self.finish_if_done(state, key, time, out);
        }
    }

    /// Judges the episode of `key` once none of its layers rests any more.
    fn finish_if_done(&self, state: &mut LayeringState, key: (Symbol, Side), time: Timestamp, out: &mut AlertSink<'_>) {
        if state.episodes.get(&key).is_some_and(|e| e.layers.is_empty())
            && let Some(episode) = state.episodes.remove(&key)
        {
            self.judge(key, &episode, time, out);
        }
    }

    /// The verdict on what the episode shows so far: an alert when the layers that counted span
    /// enough prices and the layers did not trade beyond the limit.
    fn verdict(&self, e: &Episode) -> Option<Verdict> {
        let prices: BTreeSet<Price> = e.cancelled.iter().map(|c| c.3).collect();
        let executed_share = e.executed_share();
        if prices.len() < self.config.min_layers as usize || executed_share > self.config.max_executed_share {
            return None;
        }
        let replaces: u32 = e.cancelled.iter().map(|c| c.2).sum();
        let share = (e.depth_share / 0.5).clamp(0.0, 1.0);
        let levels = (e.levels as f64 / 5.0).clamp(0.0, 1.0);
        let modified = (replaces as f64 / 10.0).clamp(0.0, 1.0);
        let score = (40.0 + 60.0 * (0.5 * share + 0.3 * levels + 0.2 * modified)) * (1.0 - executed_share);
        Some(Verdict { score, executed_share })
    }

    /// The last instant a cancel of the episode's layers counts, unless the account executes
    /// again on the other side.
    fn cancels_counted_until(&self, episode: &Episode) -> Timestamp {
        episode
            .last_fill
            .saturating_add(nanos_of(self.config.max_cancel_after_fill))
            .min(episode.first_fill.saturating_add(self.window()))
    }

    /// The episode is over: alerts on the whole of it, or corrects the alert raised early
    /// when the whole says something else.
    fn judge(&self, key: (Symbol, Side), episode: &Episode, time: Timestamp, out: &mut AlertSink<'_>) {
        let verdict = self.verdict(episode);
        let Some(raised) = &episode.raised else {
            if let Some(verdict) = verdict {
                self.alert(key.0, key.1, episode, verdict, time, None, out);
            }
            return;
        };
        let Some(verdict) = verdict else {
            let share = episode.executed_share();
            let reason = format!(
                "the layers traded: {:.0} % of their quantity executed after the account's trade (at most {:.0} %)",
                100.0 * share,
                100.0 * self.config.max_executed_share
            );
            let mut retraction = out.correction(raised, CorrectionKind::Retracted, reason.clone());
            retraction
                .severity(Severity::Low)
                .score(0.0)
                .explain(format!("retracted: {reason}"))
                .param("executed_share", share)
                .param("max_executed_share", self.config.max_executed_share);
            for event in raised.evidence.iter().chain(&episode.layer_fills) {
                retraction.evidence(event);
            }
            return;
        };
        let raised_evidence = raised.evidence.len();
        let (kind, reason) = if verdict.score < raised.score - 1e-9 {
            let reason = format!(
                "{} of the layers' executions ({:.1} % of their quantity) after the alert",
                episode.layer_fills.len(),
                100.0 * verdict.executed_share
            );
            (CorrectionKind::Downgraded, reason)
        } else if verdict.score > raised.score + 1e-9 || episode.evidence_len() != raised_evidence {
            let reason = format!(
                "{} layers cancelled and {} executions when the episode ended ({} and {} when raised)",
                episode.cancelled.len(),
                episode.fills.len(),
                count_of(raised, "layers"),
                count_of(raised, "executions"),
            );
            (CorrectionKind::Amended, reason)
        } else {
            return;
        };
        self.alert(key.0, key.1, episode, verdict, time, Some((raised, kind, reason)), out);
    }

    /// An execution of `account` on `side`: its orders on the other side may be layers.
    fn on_execution(
        &self,
        state: &mut LayeringState,
        account: Symbol,
        side: Side,
        fill: &Event,
        out: &mut AlertSink<'_>,
    ) {
        let layer_side = side.opposite();
        // Any execution on that side while layers rest restarts the clock of their cancels.
        if let Some(e) = state.episodes.get_mut(&(account, layer_side)) {
            e.last_fill = fill.time;
        }
        let Some(book) = out.book() else { return };
        let orders = state.by_account.get(&account).into_iter().flatten();
        let levels = self.config.levels as usize;
        let mut prices = BTreeSet::new();
        let mut held: Quantity = 0;
        // Of which the book shows (reserve layers show their peak): the share of the visible
        // depth is of what others can see.
        let mut shown: Quantity = 0;
        let mut layers = Vec::new();
        // The mid when the earliest of the layers was entered.
        let mut earliest: Option<(Event, Option<f64>)> = None;
        let executed = match fill.body {
            Body::Fill { quantity, .. } => quantity,
            _ => 0,
        };
        let own_interest = executed.saturating_add(state.open.get(&(account, side)).copied().unwrap_or(0));
        for order in orders {
            let Some(r) = state.resting.get(order) else { continue };
            // Behind the touch when entered; the execution may since have taken the levels in
            // front (the price moving toward the wall).
            if r.side != layer_side
                || !r.entered_behind
                || book.levels_ahead_up_to(layer_side, r.price, levels) >= levels
            {
                continue;
            }
            prices.insert(r.price);
            if earliest.as_ref().is_none_or(|(e, _)| r.entry.order_key() < e.order_key()) {
                earliest = Some((r.entry, r.mid_at_entry));
            }
            held = held.saturating_add(r.open);
            shown = shown.saturating_add(r.shown);
            layers.push(*order);
        }
        let visible = book.visible_depth(layer_side, levels);
        let share = if visible == 0 { 0.0 } else { shown as f64 / visible as f64 };
        let ratio = held as f64 / own_interest.max(1) as f64;
        if prices.len() < self.config.min_layers as usize
            || share < self.config.min_depth_share
            || ratio < self.config.min_size_ratio
        {
            return;
        }
        let key = (account, layer_side);
        let first = !state.episodes.contains_key(&key);
        let price_move_bps = match (earliest.and_then(|e| e.1), book.mid()) {
            (Some(from), Some(to)) => OrderBook::move_bps(from, to, layer_side),
            _ => None,
        };
        let episode = state.episodes.entry(key).or_insert_with(|| Episode {
            first_fill: fill.time,
            last_fill: fill.time,
            layers: BTreeSet::new(),
            fills: Vec::new(),
            cancelled: Vec::new(),
            depth_share: 0.0,
            levels: 0,
            size_ratio: 0.0,
            layer_quantity: IdMap::default(),
            layer_fills: Vec::new(),
            executed: 0,
            price_move_bps,
            raised: None,
        });
        for order in &layers {
            if let Some(r) = state.resting.get(order) {
                let size = episode.layer_quantity.entry(*order).or_default();
                *size = (*size).max(r.quantity);
            }
        }
        episode.layers.extend(layers);
        episode.fills.push(*fill);
        episode.last_fill = fill.time;
        episode.depth_share = episode.depth_share.max(share);
        episode.levels = episode.levels.max(prices.len());
        episode.size_ratio = episode.size_ratio.max(ratio);
        if first {
            out.timer(fill.time.saturating_add(self.window()).saturating_add(1));
        }
    }

    /// The alert on episode `e` with `verdict`: raised, or a correction of an earlier one.
    #[allow(clippy::too_many_arguments)]
    fn alert(
        &self,
        account: Symbol,
        side: Side,
        e: &Episode,
        verdict: Verdict,
        time: Timestamp,
        correcting: Option<(&Alert, CorrectionKind, String)>,
        out: &mut AlertSink<'_>,
    ) {
        let replaces: u32 = e.cancelled.iter().map(|c| c.2).sum();
        let score = verdict.score;
        let severity = Severity::from_score(score, 60.0, 80.0);
        let mut entries: Vec<&(Event, Event, u32, Price)> = e.cancelled.iter().collect();
        entries.sort_by_key(|c| c.0.order_key());
        let traded = if e.layer_fills.is_empty() {
            String::new()
        } else {
            format!("; {:.1} % of the layers' quantity executed", 100.0 * verdict.executed_share)
        };
        let mut alert = match correcting {
            Some((raised, kind, reason)) => out.correction(raised, kind, reason),
            None => out.alert_now(),
        };
        alert
            .account(account)
            .severity(severity)
            .score(score)
            .explain(format!(
                "{} {} orders on {} levels ({:.0} % of the visible depth of the best {}) cancelled after {} execution{} on the other side, {replaces} replaces{traded}",
                e.cancelled.len(),
                side.as_str(),
                e.levels,
                e.depth_share * 100.0,
                self.config.levels,
                e.fills.len(),
                if e.fills.len() == 1 { "" } else { "s" },
            ))
            .param("layer_side", side.as_str())
            .param("layers", e.cancelled.len())
            .param("levels", e.levels)
            .param("min_layers", u64::from(self.config.min_layers))
            .param("depth_share", e.depth_share)
            .param("min_depth_share", self.config.min_depth_share)
            .param("size_ratio", e.size_ratio)
            .param("min_size_ratio", self.config.min_size_ratio)
            .param("executions", e.fills.len())
            .param("replaces", u64::from(replaces))
            .param("executed_share", verdict.executed_share)
            .param("max_executed_share", self.config.max_executed_share)
            .param("seconds_from_execution", (time.saturating_sub(e.first_fill)) as f64 / 1e9);
        if let Some(moved) = e.price_move_bps {
            alert.param("price_move_bps", moved);
        }
        for c in &entries {
            alert.evidence(&c.0);
        }
        for f in &e.fills {
            alert.evidence(f);
        }
        for c in &entries {
            alert.evidence(&c.1);
        }
        for f in &e.layer_fills {
            alert.evidence(f);
        }
    }
}

/// A count the alert states.
fn count_of(alert: &Alert, name: &str) -> u64 {
    alert
        .parameters
        .iter()
        .find_map(|p| match p.value {
            crate::model::Value::Count(n) if p.name == name => Some(n),
            _ => None,
        })
        .unwrap_or(0)
}

/// Extension trait: the layering rule as an operator on a stream of events.
pub trait LayeringExt<'scope> {
    /// Layering alerts: see the [module documentation](self).
    fn layering(self, config: &LayeringConfig) -> Stream<'scope, u64, Vec<Alert>>;
}

impl<'scope> LayeringExt<'scope> for Stream<'scope, u64, Vec<Event>> {
    fn layering(self, config: &LayeringConfig) -> Stream<'scope, u64, Vec<Alert>> {
        self.detect(Layering::new(config))
    }
}
