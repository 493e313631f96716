//! Injected quote stuffing and marking the close, shaped like the published cases and
//! randomised within their ranges.
//!
//! A stuffer sends a burst of fishing orders at the touch (one tick inside the spread when
//! there is room, else joining the best price), each cancelled within a millisecond: every
//! order and every cancel changes the best level (KX: more than 60 changes to the best bid
//! within 5 s; bursts usually under 10 s). A closer trades one
//! way through the last 15-25 minutes of the day, sweeping the book a little further each
//! time, and takes the last print (Trillium's marking the close).
//!
//! Like the other scenarios, each is labelled only when it played out as designed.

use rand::Rng;

use super::{Class, NS_PER_MS, NS_PER_S, Rest, Sim, Task};
use crate::generate::universe::Role;
use crate::generate::writer::Side;
use crate::model::alert::rules;

/// A burst of fishing orders of one account on one instrument.
pub(super) struct Stuffer {
    account: u32,
    instrument: u32,
    side: Side,
    cycles_left: u32,
    gap_ms: u64,
    start: u64,
    /// Times at which the burst changed the best level.
    changes: Vec<u64>,
    /// Cancels still to come.
    pending: u32,
    labelled: bool,
}

/// An account trading one way into the close of one instrument.
#[derive(Clone, Copy)]
pub(super) struct Closer {
    account: u32,
    instrument: u32,
    side: Side,
    /// The last price before it started, in cents, and how far it aims to move it.
    reference: i64,
    target: f64,
    steps: u32,
    step: u32,
}

/// One execution on an instrument whose close is watched.
#[derive(Clone, Copy)]
pub(super) struct Print {
    pub(super) time: u64,
    pub(super) price: i64,
    pub(super) quantity: u64,
    pub(super) buyer: u32,
    pub(super) seller: u32,
}

/// More changes of the best level than this within this window make a burst (KX).
const BURST_WINDOW_NS: u64 = 5 * NS_PER_S;
const BURST_CHANGES: usize = 60;
/// The closing window (RedDeer's default) and the published thresholds the label checks.
const CLOSE_WINDOW_NS: u64 = 30 * 60 * NS_PER_S;
/// A closer's orders stay under the default order limits.
/// A closer's orders stay within the background's own order sizes, so that nothing but their
/// timing and direction sets them apart.
const MAX_CLOSER_QTY: u64 = super::MAX_BG_QTY;
const MAX_CLOSER_NOTIONAL_CENTS: u64 = super::MAX_BG_NOTIONAL_CENTS;

impl Sim<'_> {
    /// A proprietary account for the scenario, or, where every one of them is busy on the
    /// instrument, an institutional or retail one with no order resting there.
    fn scenario_account(&mut self, i: usize, t: u64) -> Option<u32> {
        if let Some(account) = self.abuse_account(i, t) {
            return Some(account);
        }
        for role in [Role::Institutional, Role::Retail] {
            let coverage = &self.uni.coverage[i];
            let pool = if role == Role::Institutional { &coverage.inst } else { &coverage.retail };
            if pool.is_empty() {
                continue;
            }
            for _ in 0..8 {
                let account = self.pick_role(i, role);
                let clash = self.abuse_used.iter().any(|&(a, inst, _)| a == account && inst == i as u32);
                if !clash && self.resting_of(i, account) == 0 {
                    self.abuse_used.push((account, i as u32, t));
                    return Some(account);
                }
            }
        }
        None
    }

    // ----- quote stuffing ------------------------------------------------------------------

    pub(super) fn stuff_start(&mut self, t: u64) {
        let i = self.pick_instrument();
        let Some(account) = self.scenario_account(i, t) else { return };
        let side = if self.rng.random_bool(0.5) { Side::Buy } else { Side::Sell };
        self.stuffers.push(Stuffer {
            account,
            instrument: i as u32,
            side,
            cycles_left: self.rng.random_range(40..=120),
            gap_ms: self.rng.random_range(5..=40),
            start: t,
            changes: Vec::new(),
            pending: 0,
            labelled: false,
        });
        let run = (self.stuffers.len() - 1) as u16;
        self.schedule(t, Task::StuffStep { run });
    }

    /// One fishing order: a round lot at the touch, cancelled within 1 ms.
    pub(super) fn stuff_step(&mut self, t: u64, run: u16) {
        let r = run as usize;
        let (account, i, side) =
            (self.stuffers[r].account, self.stuffers[r].instrument as usize, self.stuffers[r].side);
        self.stuffers[r].cycles_left -= 1;
        if let (Some((bid, _)), Some((ask, _))) = (self.best(i, Side::Buy), self.best(i, Side::Sell)) {
            let inside = ask - bid >= 2;
            let price = match side {
                Side::Buy if inside => bid + 1,
                Side::Buy => bid,
                Side::Sell if inside => ask - 1,
                Side::Sell => ask,
            };
            if let Some(idx) = self.submit(t, i, account, side, price, 100, Class::Special, Rest::Rest) {
                let id = self.orders[idx as usize].id;
                self.stuffers[r].changes.push(t);
                self.stuffers[r].pending += 1;
                self.publish(t, i);
                let life = self.rng.random_range(100_000..900_000);
                self.schedule(t + life, Task::StuffCancel { run, idx, id });
            }
        }
        if self.stuffers[r].cycles_left > 0 {
            let gap = self.stuffers[r].gap_ms * NS_PER_MS;
            let jitter = self.rng.random_range(0..=gap / 4);
            self.schedule(t + gap + jitter, Task::StuffStep { run });
        } else {
            self.stuff_label(r);
        }
    }

    pub(super) fn stuff_cancel(&mut self, t: u64, run: u16, idx: u32, id: u64) {
        let r = run as usize;
        self.stuffers[r].pending -= 1;
        if let Some(idx) = self.alive(Some((idx, id))) {
            let (i, side, price) = {
                let o = &self.orders[idx as usize];
                (o.instrument as usize, o.side, o.price)
            };
            // The cancel changes the best level when the order still rests there.
            let at_touch = self.best(i, side).is_some_and(|(p, _)| p == price);
            self.cancel(t, i, idx, None);
            self.publish(t, i);
            if at_touch {
                self.stuffers[r].changes.push(t);
            }
        }
        if self.stuffers[r].cycles_left == 0 {
            self.stuff_label(r);
        }
    }

    /// Labels a finished burst that moved the best price often enough within the window.
    fn stuff_label(&mut self, r: usize) {
        let s = &self.stuffers[r];
        if s.pending > 0 || s.cycles_left > 0 || s.labelled {
            return;
        }
        let mut peak = 0;
        let mut first = 0;
        for (k, &t) in s.changes.iter().enumerate() {
            while t - s.changes[first] >= BURST_WINDOW_NS {
                first += 1;
            }
            peak = peak.max(k + 1 - first);
        }
        if peak > BURST_CHANGES {
            let detail = format!("{} changes of the best level, up to {peak} within 5 s", s.changes.len());
            let (i, account, start) = (s.instrument as usize, s.account, s.start);
            self.label(rules::QUOTE_STUFFING, i, account, start, None, detail);
        }
        self.stuffers[r].labelled = true;
    }

    // ----- marking the close ---------------------------------------------------------------

    /// Picks the quiet, cheaper instruments whose close will be marked, watches their
    /// executions from the open, and schedules the closers.
    pub(super) fn plan_closers(&mut self) {
        // Not where a storm account rests orders it pulls rather than lets trade.
        let storms: Vec<usize> = self.storms.iter().map(|s| s.instrument as usize).collect();
        // The least traded in value first: what a closer's money moves most.
        let traded = |i: usize| self.uni.instruments[i].weight * self.uni.instruments[i].start_ticks as f64;
        let mut quiet: Vec<usize> = (0..self.books.len()).filter(|i| !storms.contains(i)).collect();
        quiet.sort_by(|&a, &b| traded(a).total_cmp(&traded(b)).then(a.cmp(&b)));
        for &i in quiet.iter().take(self.plan.closers) {
            self.close_log[i] = Some(Vec::new());
            let minutes = self.rng.random_range(15..=25);
            let t = self.end_ns.saturating_sub(minutes * 60 * NS_PER_S);
            self.schedule(t, Task::CloseStart { instrument: i as u32 });
        }
    }

    pub(super) fn close_start(&mut self, t: u64, instrument: u32) {
        let i = instrument as usize;
        let Some(account) = self.scenario_account(i, t) else { return };
        let reference =
            self.close_log[i].as_ref().and_then(|log| log.last()).map_or(self.mid(i).round() as i64, |p| p.price);
        let side = if self.rng.random_bool(0.5) { Side::Buy } else { Side::Sell };
        self.closers.push(Closer {
            account,
            instrument,
            side,
            reference,
            target: self.rng.random_range(0.008..0.02),
            steps: self.rng.random_range(5..=9),
            step: 0,
        });
        let closer = (self.closers.len() - 1) as u16;
        let wait = self.rng.random_range(30..=90) * NS_PER_S;
        self.schedule(t + wait, Task::CloseStep { closer });
    }

    /// One sweep: everything on the other side up to a price a further step from the reference,
    /// the last one just before the close.
    pub(super) fn close_step(&mut self, t: u64, closer: u16) {
        let c = closer as usize;
        let (account, i, side) = (self.closers[c].account, self.closers[c].instrument as usize, self.closers[c].side);
        self.closers[c].step += 1;
        let (step, steps) = (self.closers[c].step, self.closers[c].steps);
        let reach = self.closers[c].target * f64::from(step) / f64::from(steps);
        let reference = self.closers[c].reference as f64;
        let limit = match side {
            Side::Buy => (reference * (1.0 + reach)).ceil() as i64,
            Side::Sell => ((reference * (1.0 - reach)).floor() as i64).max(1),
        };
        // The last sweep goes on, order after order, until the touch is past the target (or
        // twelve orders have gone); the others send two.
        let orders = if step == steps { 12 } else { 2 };
        for _ in 0..orders {
            let beyond = self.best(i, side.opposite()).is_none_or(|(p, _)| match side {
                Side::Buy => p > limit,
                Side::Sell => p < limit,
            });
            if beyond && step == steps {
                break;
            }
            // Every level up to the limit that the order can clear whole, so that its last fill
            // is the furthest price it reached; as much as it may of a level too large to clear,
            // and a round lot at the touch when that is beyond the limit.
            let (price, qty) = match self.sweep_to(i, side, limit) {
                Some(sweep) => sweep,
                None => match self.best(i, side.opposite()) {
                    Some((p, _)) if !beyond => (p, MAX_CLOSER_QTY.min(MAX_CLOSER_NOTIONAL_CENTS / p.max(1) as u64)),
                    Some((p, _)) => (p, 100),
                    None => (limit, 100),
                },
            };
            if self.take_at(t, i, account, side, price, qty) > 0 {
                // Its price impact: the market makers quote around where it left the price.
                self.books[i].fair = price as f64 / 100.0;
            }
            self.publish(t, i);
        }
        // Then the closing print: a round lot at the touch left behind, within 3 % of the
        // reference (well inside the default 5 % price collar).
        if step == steps
            && let Some((p, _)) = self.best(i, side.opposite())
            && (p as f64 / reference - 1.0).abs() <= 0.03
        {
            self.take_at(t, i, account, side, p, 100);
            self.publish(t, i);
        }
        if step + 1 < steps {
            let next = t + self.rng.random_range(60..=150) * NS_PER_S;
            let last_call = self.end_ns.saturating_sub(5 * NS_PER_S);
            self.schedule(next.min(last_call), Task::CloseStep { closer });
        } else if step + 1 == steps {
            // The last sweep, moments before the close (a smaller day's flow may end a second
            // before it).
            let before = self.rng.random_range(1_000..=3_000) * NS_PER_MS;
            self.schedule(self.end_ns.saturating_sub(before).max(t + 1), Task::CloseStep { closer });
        }
    }

    /// The furthest price up to `limit` on the side opposite `side` whose levels, with those
    /// before it, a closer's order can clear whole, and the quantity that takes.
    fn sweep_to(&self, i: usize, side: Side, limit: i64) -> Option<(i64, u64)> {
        let b = &self.books[i];
        let levels: Box<dyn Iterator<Item = (&i64, &super::Level)>> = match side {
            Side::Buy => Box::new(b.asks.range(..=limit)),
            Side::Sell => Box::new(b.bids.range(limit..).rev()),
        };
        let mut reached = None;
        let mut total = 0u64;
        for (&price, level) in levels {
            let qty = total + level.total;
            let notional = qty.saturating_mul(price.max(1) as u64);
            if qty > MAX_CLOSER_QTY || notional > MAX_CLOSER_NOTIONAL_CENTS {
                break;
            }
            total = qty;
            reached = Some((price, total));
        }
        reached
    }

    /// Labels each closer whose day ended as marking the close: a quarter of the window's
    /// volume at least, the close moved 0.5 % its way from the last price before the window,
    /// half its volume of the day in the window, and a party to the last print.
    pub(super) fn close_labels_marking(&mut self) {
        let end = self.end_ns;
        let window_start = end.saturating_sub(CLOSE_WINDOW_NS);
        let mut labels = Vec::new();
        for closer in &self.closers {
            // Judged on what happened, as the rule reads it, whether or not its last sweep came
            // before the day's flow ended: a closer cut short may have marked the close already.
            let Closer { account, instrument, side, .. } = *closer;
            let i = instrument as usize;
            let Some(log) = self.close_log[i].as_ref() else { continue };
            let before = log.iter().rev().find(|p| p.time < window_start).map(|p| p.price);
            let window: Vec<&Print> = log.iter().filter(|p| p.time >= window_start && p.time < end).collect();
            let (Some(first), Some(last)) = (window.first(), window.last()) else { continue };
            let reference = before.unwrap_or(first.price) as f64;
            let moved = (last.price as f64 - reference) / reference;
            let volume: u64 = window.iter().map(|p| p.quantity).sum();
            let party = |p: &Print| p.buyer == account || p.seller == account;
            let own: u64 = window.iter().filter(|p| party(p)).map(|p| p.quantity).sum();
            let day: u64 = log.iter().filter(|p| p.time < end && party(p)).map(|p| p.quantity).sum();
            let last_time = last.time;
            let in_last = window.iter().filter(|p| p.time == last_time).any(|p| party(p));
            let toward = match side {
                Side::Buy => moved >= 0.005,
                Side::Sell => moved <= -0.005,
            };
            let share = own as f64 / volume.max(1) as f64;
            if toward && in_last && share >= 0.25 && own * 2 >= day {
                let detail =
                    format!("{:.0} % of the window's volume, close moved {:+.2} %", 100.0 * share, 100.0 * moved);
                labels.push((i, account, detail));
            }
        }
        for (i, account, detail) in labels {
            self.label(rules::MARKING_CLOSE, i, account, end, None, detail);
        }
    }
}
