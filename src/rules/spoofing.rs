//! Spoofing: bidding or offering with the intent to cancel before execution (CEA
//! §4c(a)(5)(C); CME Rule 575; MAR Annex I 2(a)), to draw others to trade against an order on
//! the other side.
//!
//! The logic follows Trillium Surveyor's five steps and the evidence the CFTC cited as proof of
//! intent (`docs/detection.md` has the references):
//!
//! 1. A visible order adds significant size at or near the touch: at most
//!    `max_levels_ahead` occupied levels ahead of it, and at least `min_level_multiple` times
//!    the quantity resting at its price before it (Oystacher: "at least doubling" the level).
//! 2. The same account has an order on the opposite side, and it fills (the genuine order)
//!    as the resting side of the trade (`genuine_must_rest`): the spoof is there to draw others
//!    to it.
//! 3. The first order is cancelled by the member (not by the venue), mostly unfilled (at most `max_fill_share`), within
//!    `max_cancel_after_fill` after the genuine fill (CFTC: 2.3 s on average), or up to
//!    `fill_grace` before it (pulled just before the fill), and within `max_lifetime` of its
//!    entry (CFTC: spoofs lived 11.8 s on average, genuine orders 55.4 s).
//! 4. The spoof orders of the episode (every such order of the account and side cancelled
//!    around the same fills) total at least `min_size_ratio` times the size of the genuine
//!    orders that filled (CFTC: spoof orders 10-50 times larger than the genuine ones; Coscia:
//!    261 lots against 17).
//! 5. The pattern repeats: an alert needs `min_episodes` episodes of the account within
//!    `repeat_window` (the CFTC cites hundreds; RedDeer's window is 30 minutes). A single
//!    large cancel next to an opposite fill happens by chance in normal flow; when the second
//!    episode comes, the first is reported too.
//!
//! Only what the book shows counts as the spoof's size against its level: a reserve (iceberg)
//! order's displayed peak, not its hidden rest, and a fully hidden order is no spoof. The alert
//! gives the displayed share of the spoof orders and of the genuine ones (a fully displayed
//! spoof against a mostly hidden genuine order is the contrast enforcement cases draw).
//!
//! The score (0-100) weighs the size ratio (against 50), the multiple of the level's depth
//! (against 2), how soon the cancel followed the fill (full weight within 2.3 s) and the
//! repetition (full weight at 5 episodes).

use std::collections::VecDeque;

use timely::dataflow::Stream;

use crate::config::{SpoofingConfig, nanos_of};
use crate::detect::{AlertSink, Detect, Detector, Key, OrderBook};
use crate::model::alert::rules;
use crate::model::{Alert, Body, CancelReason, Event, IdMap, Quantity, Severity, Side, Symbol, Timestamp};

const NS: f64 = 1e9;
/// The CFTC's average time from the genuine fill to the spoof's cancel.
const PUBLISHED_CANCEL_AFTER_FILL: f64 = 2.3;

/// The spoofing rule.
#[derive(Clone)]
pub struct Spoofing {
    config: SpoofingConfig,
}

impl Spoofing {
    /// Builds the rule.
    pub fn new(config: &SpoofingConfig) -> Spoofing {
        Spoofing { config: config.clone() }
    }

    /// How long a fill can still be some episode's genuine fill.
    fn keep_fills(&self) -> u64 {
        nanos_of(self.config.max_lifetime).saturating_add(nanos_of(self.config.fill_grace))
    }
}

/// A resting order large enough to be a spoof.
#[derive(Clone, Debug)]
struct Candidate {
    account: Symbol,
    side: Side,
    quantity: Quantity,
    /// What the book showed of it (all of it, unless a reserve order).
    shown: Quantity,
    filled: Quantity,
    /// Its shown quantity over the depth resting at its price before it.
    level_multiple: f64,
    /// The book's mid price when it was entered.
    mid_at_entry: Option<f64>,
    entry: Event,
}

/// A candidate cancelled, waiting for the fills that may still come within the grace.
#[derive(Clone, Debug)]
struct Cancelled {
    candidate: Candidate,
    cancel: Event,
    /// The quantity the cancel removed.
    cancelled: Quantity,
}

/// An episode of an account: kept to count repetitions, and to report it when the pattern
/// repeats.
#[derive(Clone, Debug)]
struct Episode {
    time: Timestamp,
    side: Side,
    spoofs: Vec<Cancelled>,
    fills: Vec<Event>,
    /// Total size of the genuine orders that filled, and what they filled.
    genuine_size: Quantity,
    /// What the book showed of the genuine orders.
    genuine_shown: Quantity,
    genuine_filled: Quantity,
    /// How far the mid moved the spoofs' way, from their first entry to the first genuine fill.
    price_move_bps: Option<f64>,
    ratio: f64,
    level_multiple: f64,
    /// Seconds from the genuine fill to the last cancel (negative: cancelled before the fill).
    cancel_after_fill: f64,
    reported: bool,
}

/// A recent fill of an account.
#[derive(Clone, Debug)]
struct RecentFill {
    event: Event,
    /// The size of the order that filled, and what the book showed of it.
    size: Quantity,
    shown: Quantity,
    /// The book's mid price after the fill.
    mid: Option<f64>,
    /// An episode took the fill already (one fill proves one episode, not several).
    used: bool,
}

/// The book's mid price, when both sides hold orders.
fn mid(book: Option<&OrderBook>) -> Option<f64> {
    book?.mid()
}

/// What the rule remembers of an instrument.
#[derive(Default)]
pub struct SpoofingState {
    candidates: IdMap<Symbol, Candidate>,
    cancelled: Vec<Cancelled>,
    /// Recent fills per account.
    fills: IdMap<Symbol, VecDeque<RecentFill>>,
    episodes: IdMap<Symbol, VecDeque<Episode>>,
    /// When idle accounts were last swept out.
    swept: Timestamp,
}

impl Detector for Spoofing {
    type State = SpoofingState;

    fn name(&self) -> &str {
        rules::SPOOFING
    }

    fn key(&self, event: &Event) -> Option<Key> {
        matches!(event.body, Body::NewOrder { .. } | Body::Replace { .. } | Body::Cancel { .. } | Body::Fill { .. })
            .then_some(Key::Instrument(event.instrument))
    }

    fn needs_book(&self) -> bool {
        true
    }

    fn on_event(&self, state: &mut SpoofingState, event: &Event, out: &mut AlertSink<'_>) {
        let Some(context) = out.order().copied() else { return };
        match event.body {
            Body::NewOrder { order, .. } | Body::Replace { order, .. } => {
                let (Some(after), Some(book)) = (context.after, out.book()) else {
                    state.candidates.remove(&order);
                    return;
                };
                let Some(price) = after.price else {
                    state.candidates.remove(&order);
                    return;
                };
                // What rests at the price besides the order itself: only what the book shows
                // counts, of the order (a reserve order's peak) as of the others.
                let shown = after.visible();
                let before = book.depth_at(after.side, price).saturating_sub(shown);
                let multiple = shown as f64 / before.max(1) as f64;
                let max = self.config.max_levels_ahead as usize;
                let near = book.levels_ahead_up_to(after.side, price, max + 1) <= max;
                if shown > 0 && near && (before == 0 || multiple >= self.config.min_level_multiple) {
                    let filled = state.candidates.get(&order).map_or(0, |c| c.filled);
                    let entry = state.candidates.get(&order).map_or(*event, |c| c.entry);
                    let mid_at_entry = state.candidates.get(&order).map_or_else(|| mid(Some(book)), |c| c.mid_at_entry);
                    state.candidates.insert(
                        order,
                        Candidate {
                            account: after.account,
                            side: after.side,
                            quantity: after.remaining + after.filled,
                            shown,
                            filled,
                            level_multiple: if before == 0 { f64::INFINITY } else { multiple },
                            mid_at_entry,
                            entry,
                        },
                    );
                } else {
                    state.candidates.remove(&order);
                }
            }
            Body::Fill { order, quantity, side, aggressor, .. } => {
                let Some(before) = context.before else { return };
                let fills = state.fills.entry(before.account).or_default();
                if !self.config.genuine_must_rest || aggressor != Some(side) {
                    let size = before.remaining.saturating_add(before.filled);
                    fills.push_back(RecentFill {
                        event: *event,
                        size,
                        shown: before.displayed.map_or(size, |d| d.min(size)),
                        mid: mid(out.book()),
                        used: false,
                    });
                }
                let keep = self.keep_fills();
                while fills.front().is_some_and(|f| event.time.saturating_sub(f.event.time) > keep) {
                    fills.pop_front();
                }
                if let Some(c) = state.candidates.get_mut(&order) {
                    c.filled = c.filled.saturating_add(quantity);
                    let traded = c.filled as f64 > self.config.max_fill_share * c.quantity as f64;
                    if traded || context.after.is_none() {
                        state.candidates.remove(&order);
                    }
                }
            }
            Body::Cancel { order, reason, .. } => {
                if context.after.is_some() {
                    return;
                }
                let Some(candidate) = state.candidates.remove(&order) else { return };
                // Only the member's own cancel shows intent (not the venue's self-trade
                // prevention, expiry or kill switch).
                if reason != CancelReason::Member {
                    return;
                }
                if event.time.saturating_sub(candidate.entry.time) > nanos_of(self.config.max_lifetime) {
                    return;
                }
                // What the cancel took off the book (partial cancels before it left less).
                let cancelled = context.before.map_or(0, |b| b.remaining);
                state.cancelled.push(Cancelled { candidate, cancel: *event, cancelled });
                out.timer(event.time.saturating_add(nanos_of(self.config.fill_grace)));
            }
            _ => {}
        }
    }

    fn on_timer(&self, state: &mut SpoofingState, time: Timestamp, out: &mut AlertSink<'_>) {
        let grace = nanos_of(self.config.fill_grace);
        // Accounts that stopped trading keep nothing: memory follows the recent activity. Swept
        // once per fill lifetime, not at every timer (a sweep visits every account).
        let (keep, window) = (self.keep_fills(), nanos_of(self.config.repeat_window));
        if time.saturating_sub(state.swept) > keep {
            state.swept = time;
            state.fills.retain(|_, fills| {
                while fills.front().is_some_and(|f| time.saturating_sub(f.event.time) > keep) {
                    fills.pop_front();
                }
                !fills.is_empty()
            });
            state.episodes.retain(|_, episodes| {
                while episodes.front().is_some_and(|e| time.saturating_sub(e.time) > window) {
                    episodes.pop_front();
                }
                !episodes.is_empty()
            });
        }
        // Every cancel whose grace has passed, with the cancels of the same account and side
        // that followed it meanwhile: one episode.
        let due: Vec<(Symbol, Side)> = state
            .cancelled
            .iter()
            .filter(|c| c.cancel.time.saturating_add(grace) <= time)
            .map(|c| (c.candidate.account, c.candidate.side))
            .collect();
        let mut seen = Vec::new();
        for (account, side) in due {
            if seen.contains(&(account, side)) {
                continue;
            }
            seen.push((account, side));
            // The episode is judged once the grace of its last cancel so far has passed.
            let last = state
                .cancelled
                .iter()
                .filter(|c| (c.candidate.account, c.candidate.side) == (account, side))
                .map(|c| c.cancel.time)
                .max()
                .unwrap_or(0);
            if last.saturating_add(grace) > time {
                out.timer(last.saturating_add(grace));
                continue;
            }
            let (spoofs, rest): (Vec<Cancelled>, Vec<Cancelled>) = std::mem::take(&mut state.cancelled)
                .into_iter()
                .partition(|c| (c.candidate.account, c.candidate.side) == (account, side) && c.cancel.time <= time);
            state.cancelled = rest;
            if let Some(episode) = self.episode(state, account, side, spoofs, time) {
                self.record(state, account, episode, out);
            }
        }
    }
}

impl Spoofing {
    /// The episode of `spoofs` (cancelled orders of one account and side), if the account's
    /// opposite-side fills make one.
    fn episode(
        &self,
        state: &mut SpoofingState,
        account: Symbol,
        side: Side,
        mut spoofs: Vec<Cancelled>,
        time: Timestamp,
    ) -> Option<Episode> {
        let fills = state.fills.get_mut(&account)?;
        let grace = nanos_of(self.config.fill_grace);
        let after_fill = nanos_of(self.config.max_cancel_after_fill);
        let first_entry = spoofs.iter().map(|c| c.candidate.entry.time).min()?;
        let last_cancel = spoofs.iter().map(|c| c.cancel.time).max()?;
        let takes = |f: &Event, used: bool| {
            !used
                && matches!(f.body, Body::Fill { side: s, .. } if s == side.opposite())
                && f.time >= first_entry
                && f.time <= time
                && spoofs.iter().any(|c| {
                    f.time <= c.cancel.time.saturating_add(grace) && c.cancel.time <= f.time.saturating_add(after_fill)
                })
        };
        let genuine: Vec<(Event, Quantity, Quantity)> =
            fills.iter().filter(|f| takes(&f.event, f.used)).map(|f| (f.event, f.size, f.shown)).collect();
        // The mid from the first spoof's entry to the first genuine fill, in basis points, the
        // way the spoofs push it (down for sell orders): the market moving toward the genuine
        // order is what the spoofs are for.
        let first_spoof = spoofs.iter().min_by_key(|c| c.candidate.entry.order_key());
        let first_fill = fills.iter().find(|f| takes(&f.event, f.used));
        let price_move_bps = match (first_spoof.and_then(|c| c.candidate.mid_at_entry), first_fill.and_then(|f| f.mid))
        {
            (Some(from), Some(to)) => OrderBook::move_bps(from, to, side),
            _ => None,
        };
        let mut filled: Quantity = 0;
        // Each genuine order counts once, at its largest size seen.
        let mut orders: Vec<(Symbol, Quantity, Quantity)> = Vec::new();
        for (f, size, shown) in &genuine {
            if let Body::Fill { order, quantity, .. } = f.body {
                filled = filled.saturating_add(quantity);
                match orders.iter_mut().find(|(o, ..)| *o == order) {
                    Some(known) => {
                        known.1 = known.1.max(*size);
                        known.2 = known.2.max(*shown);
                    }
                    None => orders.push((order, *size, *shown)),
                }
            }
        }
        let genuine_size = orders.iter().fold(0u64, |sum, o| sum.saturating_add(o.1));
        let genuine_shown = orders.iter().fold(0u64, |sum, o| sum.saturating_add(o.2));
        if filled == 0 || genuine_size == 0 {
            return None;
        }
        let spoofed = spoofs.iter().fold(0u64, |sum, c| sum.saturating_add(c.cancelled));
        let ratio = spoofed as f64 / genuine_size as f64;
        if ratio < self.config.min_size_ratio {
            return None;
        }
        // The fills are this episode's evidence now.
        for f in fills.iter_mut() {
            if takes(&f.event, f.used) {
                f.used = true;
            }
        }
        // Evidence in input order.
        spoofs.sort_by_key(|c| c.candidate.entry.order_key());
        let last_fill = genuine.iter().map(|f| f.0.time).max()?;
        let level_multiple = spoofs.iter().map(|c| c.candidate.level_multiple).fold(0.0, f64::max);
        Some(Episode {
            time,
            side,
            spoofs,
            fills: genuine.into_iter().map(|f| f.0).collect(),
            genuine_size,
            genuine_shown,
            genuine_filled: filled,
            price_move_bps,
            ratio,
            level_multiple,
            cancel_after_fill: (last_cancel as f64 - last_fill as f64) / NS,
            reported: false,
        })
    }

    /// Keeps the episode and reports it, with the account's earlier unreported ones, once the
    /// pattern has repeated often enough.
    fn record(&self, state: &mut SpoofingState, account: Symbol, episode: Episode, out: &mut AlertSink<'_>) {
        let window = nanos_of(self.config.repeat_window);
        let episodes = state.episodes.entry(account).or_default();
        while episodes.front().is_some_and(|e| episode.time.saturating_sub(e.time) > window) {
            episodes.pop_front();
        }
        episodes.push_back(episode);
        let count = episodes.len();
        if count < self.config.min_episodes.max(1) as usize {
            return;
        }
        for e in episodes.iter_mut().filter(|e| !e.reported) {
            e.reported = true;
            self.alert(account, e, count, out);
        }
    }

    fn alert(&self, account: Symbol, e: &Episode, episodes: usize, out: &mut AlertSink<'_>) {
        let size = (e.ratio.ln() / 50f64.ln()).clamp(0.0, 1.0);
        let depth = (e.level_multiple / 2.0).clamp(0.0, 1.0);
        let max_after = self.config.max_cancel_after_fill.as_secs_f64().max(PUBLISHED_CANCEL_AFTER_FILL);
        let timing = if e.cancel_after_fill <= PUBLISHED_CANCEL_AFTER_FILL {
            1.0
        } else {
            ((max_after - e.cancel_after_fill) / (max_after - PUBLISHED_CANCEL_AFTER_FILL)).clamp(0.0, 1.0)
        };
        let repetition = ((episodes as f64 - 1.0) / 4.0).clamp(0.0, 1.0);
        let score = 100.0 * (0.3 * size + 0.2 * depth + 0.2 * timing + 0.3 * repetition);
        let severity = Severity::from_score(score, 60.0, 80.0);
        let spoofed = e.spoofs.iter().fold(0u64, |sum, c| sum.saturating_add(c.cancelled));
        // Shown against committed: enforcement cases contrast fully displayed spoofs with
        // genuine orders mostly hidden in reserve.
        let share = |shown: Quantity, size: Quantity| if size == 0 { 1.0 } else { shown as f64 / size as f64 };
        let spoof_shown = e.spoofs.iter().fold(0u64, |sum, c| sum.saturating_add(c.candidate.shown));
        let spoof_size = e.spoofs.iter().fold(0u64, |sum, c| sum.saturating_add(c.candidate.quantity));
        let genuine_displayed_share = share(e.genuine_shown, e.genuine_size);
        let hidden_genuine = if genuine_displayed_share < 1.0 {
            format!("; the genuine orders showed {:.0} % of their size", 100.0 * genuine_displayed_share)
        } else {
            String::new()
        };
        let mut alert = out.alert_now();
        alert
            .account(account)
            .severity(severity)
            .score(score)
            .explain(format!(
                "{} {} order{} of {spoofed} cancelled {:.1} s after the account's {} fill{} of {} on the other side ({:.1}x the genuine orders' {}{hidden_genuine}; {episodes} episodes in {} min)",
                e.spoofs.len(),
                e.side.as_str(),
                if e.spoofs.len() == 1 { "" } else { "s" },
                e.cancel_after_fill,
                e.fills.len(),
                if e.fills.len() == 1 { "" } else { "s" },
                e.genuine_filled,
                e.ratio,
                e.genuine_size,
                self.config.repeat_window.as_secs() / 60,
            ))
            .param("spoof_side", e.side.as_str())
            .param("spoof_orders", e.spoofs.len())
            .param("spoof_quantity", spoofed)
            .param("genuine_order_quantity", e.genuine_size)
            .param("genuine_quantity_filled", e.genuine_filled)
            .param("spoof_displayed_share", share(spoof_shown, spoof_size))
            .param("genuine_displayed_share", genuine_displayed_share)
            .param("size_ratio", e.ratio)
            .param("min_size_ratio", self.config.min_size_ratio)
            .param("level_multiple", if e.level_multiple.is_finite() { e.level_multiple } else { -1.0 })
            .param("min_level_multiple", self.config.min_level_multiple)
            .param("cancel_after_fill_s", e.cancel_after_fill)
            .param("max_cancel_after_fill_s", self.config.max_cancel_after_fill.as_secs_f64())
            .param("episodes", episodes)
            .param("min_episodes", u64::from(self.config.min_episodes));
        if let Some(moved) = e.price_move_bps {
            alert.param("price_move_bps", moved);
        }
        for c in &e.spoofs {
            alert.evidence(&c.candidate.entry);
        }
        for f in &e.fills {
            alert.evidence(f);
        }
        for c in &e.spoofs {
            alert.evidence(&c.cancel);
        }
        alert.discriminator(e.time);
    }
}

/// Extension trait: the spoofing rule as an operator on a stream of events.
pub trait SpoofingExt<'scope> {
    /// Spoofing alerts: see the [module documentation](self).
    ///
    /// ```
    /// use surveil::config::SpoofingConfig;
    /// use surveil::rules::SpoofingExt;
    /// use timely::dataflow::operators::capture::Capture;
    /// use timely::dataflow::operators::ToStream;
    ///
    /// let alerts = timely::example(move |scope| {
    ///     Vec::<surveil::model::Event>::new().to_stream(scope).spoofing(&SpoofingConfig::default()).capture()
    /// });
    /// assert!(surveil::testing::captured(alerts).is_empty());
    /// ```
    fn spoofing(self, config: &SpoofingConfig) -> Stream<'scope, u64, Vec<Alert>>;
}

impl<'scope> SpoofingExt<'scope> for Stream<'scope, u64, Vec<Event>> {
    fn spoofing(self, config: &SpoofingConfig) -> Stream<'scope, u64, Vec<Alert>> {
        self.detect(Spoofing::new(config))
    }
}
