//! Injected momentum ignition, shaped like the published pattern (Trading Technologies' model;
//! Delegated Regulation 2016/522 Annex II §I 4(e)) and randomised within its ranges.
//!
//! A proprietary account sends a burst of 3-6 aggressive orders on one side, 0.15-1.5 s apart,
//! each taking the one or two best levels in front of it, so that together they sweep several
//! price levels its way (in the simulated market its impact moves the fair value, and the market
//! makers requote around where it left the price). Then, within a few seconds, it turns round:
//! it rests an order on the other side near the price it made, at a better price than it traded
//! at on average, for 40-100 % of what it took, and a participant drawn by the move takes it
//! (another proprietary account in the simulated market, an account of the recorded crowd over
//! a recording). The rest of that order is cancelled.
//!
//! It is labelled only when it played out as the rule reads the pattern: fills of at least three
//! orders at at least three prices within 10 s, the last beyond the first its way, then the
//! reversal filled within 30 s at a better price than the ignition's average, for at least a
//! quarter of its quantity.

use std::collections::BTreeSet;

use rand::Rng;

use super::{Class, Level, NS_PER_MS, NS_PER_S, Rest, Sim, Task, Watch};
use crate::generate::universe::Role;
use crate::generate::writer::{Kind, Side};
use crate::model::alert::rules;

/// An ignition's orders stay within the background's own order sizes (so well under the
/// order limits): what sets them apart is their run and their turn, not their size.
const MAX_ORDER_NOTIONAL_CENTS: u64 = super::MAX_BG_NOTIONAL_CENTS;
const MAX_ORDER_QTY: u64 = super::MAX_BG_QTY;
/// An ignition takes at most two orders' worth, so that one order can turn at least half of it
/// round.
const MAX_IGNITION_QTY: u64 = 2 * MAX_ORDER_QTY;
const MAX_IGNITION_NOTIONAL_CENTS: u64 = 2 * MAX_ORDER_NOTIONAL_CENTS;

/// The rule's published steps, which the label checks the scenario against: the ignition's
/// window and minimum orders and levels, the reversal's delay and share.
const IGNITION_WINDOW_NS: u64 = 10 * NS_PER_S;
const MIN_ORDERS: usize = 3;
const MIN_LEVELS: usize = 3;
const REVERSAL_DELAY_NS: u64 = 30 * NS_PER_S;
const MIN_REVERSAL_SHARE: f64 = 0.25;

/// The igniting account, and the taker of its reversal, are only chosen when they took no
/// liquidity on the instrument this long before (the ignition window and the reversal delay):
/// an earlier aggressive execution would join the ignition, and a run of the taker's own flow
/// would read the take as its reversal.
const QUIET_NS: u64 = 45 * NS_PER_S;

/// Tries to start while another scenario's orders rest on the instrument.
const START_ATTEMPTS: u8 = 20;
/// Takers sent to the reversal order.
const MAX_TAKES: u8 = 3;

/// The reversal step, then the takes, then the end.
const STEP_REVERSAL: u8 = 100;
const STEP_TAKE: u8 = 101;
const STEP_END: u8 = 200;

/// One execution of the igniting account.
#[derive(Clone, Copy)]
struct Exec {
    time: u64,
    order: u64,
    price: i64,
    quantity: u64,
}

/// One momentum-ignition scenario of one account on one instrument.
pub(super) struct Igniter {
    account: u32,
    instrument: u32,
    /// The ignition's side (a buyer lifts offers, then sells).
    side: Side,
    orders: u8,
    /// Share of the ignition's quantity the reversal order offers.
    share: f64,
    ignition: Vec<Exec>,
    /// The reversal order, its price and its fills.
    reversal: Option<(u32, u64)>,
    reversal_price: i64,
    reversal_fills: Vec<Exec>,
    takes: u8,
}

impl Igniter {
    /// The ignition as the rule sees it: the account's fills in order, an episode from the
    /// first prefix holding enough orders and prices and trending its way, all of them within
    /// the window of the first. (quantity, average price, last execution time), or none.
    fn ignited(&self) -> Option<(u64, f64, u64)> {
        let first = self.ignition.first()?;
        let mut orders = BTreeSet::new();
        let mut prices = BTreeSet::new();
        let mut started = false;
        for x in &self.ignition {
            if x.time.saturating_sub(first.time) > IGNITION_WINDOW_NS {
                return None;
            }
            orders.insert(x.order);
            prices.insert(x.price);
            let trending = match self.side {
                Side::Buy => x.price > first.price,
                Side::Sell => x.price < first.price,
            };
            started |= orders.len() >= MIN_ORDERS && prices.len() >= MIN_LEVELS && trending;
        }
        if !started {
            return None;
        }
        let quantity: u64 = self.ignition.iter().map(|x| x.quantity).sum();
        let notional: f64 = self.ignition.iter().map(|x| x.price as f64 * x.quantity as f64).sum();
        let end = self.ignition.last().map_or(first.time, |x| x.time);
        Some((quantity, notional / quantity.max(1) as f64, end))
    }

    /// `price` is better than `average` for turning the ignition round (a sale above it).
    fn better(&self, price: f64, average: f64) -> bool {
        match self.side {
            Side::Buy => price > average,
            Side::Sell => price < average,
        }
    }
}

impl Sim<'_> {
    /// Records a fill of igniter `run`'s reversal order.
    pub(super) fn note_reversal_fill(&mut self, t: u64, run: u16, id: u64, price: i64, quantity: u64) {
        self.igniters[run as usize].reversal_fills.push(Exec { time: t, order: id, price, quantity });
    }

    /// Whether `account` took no liquidity on instrument `i` in the `span` before `t`.
    pub(super) fn quiet(&self, account: u32, i: usize, t: u64, span: u64) -> bool {
        self.last_take.get(&(account, i as u32)).is_none_or(|&last| last == 0 || t.saturating_sub(last) > span)
    }

    /// Starts an igniter on a random instrument where no other scenario's order rests; tried
    /// again a few seconds later while one does.
    pub(super) fn ignite_start(&mut self, t: u64, attempt: u8) {
        let i = self.pick_instrument();
        let busy = {
            let b = &self.books[i];
            b.bids
                .values()
                .chain(b.asks.values())
                .flat_map(|l| l.queue.iter())
                .any(|&idx| self.orders[idx as usize].class == Class::Special)
        };
        let account = if busy { None } else { self.igniter_account(i, t) };
        let Some(account) = account else {
            if attempt < START_ATTEMPTS {
                let wait = self.rng.random_range(2_000..=20_000) * NS_PER_MS;
                self.schedule(t + wait, Task::IgniteStart { attempt: attempt + 1 });
            }
            return;
        };
        // Over a recording, whose executions print no trades, the hour's trade prices are the
        // scenarios' own: a burst that bought near their low (or sold near their high) would
        // put the account's trades at the extremes (the insider-like rule's pattern). There
        // the ignition goes up from the upper half of the recorded prices and down from the
        // lower half; in the simulated market either way at random.
        let side = match self.recorded_range {
            Some((low, high)) => {
                if 2.0 * self.mid(i) >= (low + high) as f64 {
                    Side::Buy
                } else {
                    Side::Sell
                }
            }
            None if self.rng.random_bool(0.5) => Side::Buy,
            None => Side::Sell,
        };
        self.igniters.push(Igniter {
            account,
            instrument: i as u32,
            side,
            orders: self.rng.random_range(3..=6),
            share: self.rng.random_range(0.4..=1.0),
            ignition: Vec::new(),
            reversal: None,
            reversal_price: 0,
            reversal_fills: Vec::new(),
            takes: 0,
        });
        let run = (self.igniters.len() - 1) as u16;
        self.schedule(t, Task::IgniteStep { run, step: 0 });
    }

    /// A proprietary account with no other scenario on the instrument nearby, no order resting
    /// there and no recent aggressive execution there.
    fn igniter_account(&mut self, i: usize, t: u64) -> Option<u32> {
        self.abuse_account_where(i, t, |sim, account| sim.quiet(account, i, t, QUIET_NS))
    }

    pub(super) fn ignite_step(&mut self, t: u64, run: u16, step: u8) {
        let r = run as usize;
        match step {
            STEP_REVERSAL => self.ignite_reversal(t, run),
            STEP_END => self.ignite_end(t, run),
            s if s >= STEP_TAKE => self.ignite_take(t, run),
            k => {
                self.ignite_order(t, r, k);
                let delay = if k + 1 < self.igniters[r].orders {
                    self.rng.random_range(150..=1_500) * NS_PER_MS
                } else if self.recorded {
                    // A recorded market refills the levels at once: the account turns round
                    // sooner there.
                    self.rng.random_range(50..=500) * NS_PER_MS
                } else {
                    self.rng.random_range(200..=2_500) * NS_PER_MS
                };
                let next = if k + 1 < self.igniters[r].orders { k + 1 } else { STEP_REVERSAL };
                self.schedule(t + delay, Task::IgniteStep { run, step: next });
            }
        }
    }

    /// One aggressive order: everything in front of it up to the first level beyond the
    /// furthest price the ignition has reached (and at random one level more), none holding
    /// another scenario's order, within the background's order sizes and the ignition's total.
    fn ignite_order(&mut self, t: u64, r: usize, k: u8) {
        let (account, i, side) =
            (self.igniters[r].account, self.igniters[r].instrument as usize, self.igniters[r].side);
        let extra = self.rng.random_range(0..=1);
        let g = &self.igniters[r];
        let furthest = match side {
            Side::Buy => g.ignition.iter().map(|x| x.price).max(),
            Side::Sell => g.ignition.iter().map(|x| x.price).min(),
        };
        // What is left of the ignition's total, shared out over the orders still to come.
        let left = u64::from(g.orders.saturating_sub(k).max(1));
        let taken: u64 = g.ignition.iter().map(|x| x.quantity).sum();
        let spent: u64 = g.ignition.iter().map(|x| x.price.max(0) as u64 * x.quantity).sum();
        let budget = MAX_IGNITION_QTY.saturating_sub(taken) / left;
        let budget_notional = MAX_IGNITION_NOTIONAL_CENTS.saturating_sub(spent) / left;
        let (price, qty) = {
            let b = &self.books[i];
            let front: Box<dyn Iterator<Item = (&i64, &Level)>> = match side {
                Side::Buy => Box::new(b.asks.iter()),
                Side::Sell => Box::new(b.bids.iter().rev()),
            };
            let mut reached = None;
            let mut total = 0u64;
            let mut new_levels = 0;
            for (&price, level) in front {
                if level.queue.iter().any(|&idx| self.orders[idx as usize].class == Class::Special) {
                    break;
                }
                let p = price.max(1) as u64;
                let cap = (MAX_ORDER_NOTIONAL_CENTS / p).min(MAX_ORDER_QTY).min(budget).min(budget_notional / p);
                let qty = (total + level.total).min(cap);
                if qty <= total {
                    break;
                }
                total = qty;
                reached = Some((price, total));
                let beyond = furthest.is_none_or(|f| match side {
                    Side::Buy => price > f,
                    Side::Sell => price < f,
                });
                if beyond {
                    new_levels += 1;
                }
                if new_levels > extra || qty == cap {
                    break;
                }
            }
            match reached {
                Some(x) => x,
                None => return,
            }
        };
        let idx = self.alloc(i, account, side, price, qty, Class::Special);
        let id = self.orders[idx as usize].id;
        self.emit(Kind::New, t, idx, Some(price), Some(qty), None);
        self.execute(t, i, idx);
        if self.orders[idx as usize].remaining > 0 {
            self.emit(Kind::Cancel, t, idx, None, None, None);
        }
        self.release(idx);
        let fills: Vec<Exec> =
            self.taken.iter().map(|&(price, quantity)| Exec { time: t, order: id, price, quantity }).collect();
        if let Some(last) = fills.last()
            && !self.recorded
        {
            // Its price impact: the market makers quote around where it left the price.
            self.books[i].fair = last.price as f64 / 100.0;
        }
        self.igniters[r].ignition.extend(fills);
        self.publish(t, i);
    }

    /// The turn: an order on the other side near the price the ignition made, better than its
    /// average, inside the spread when there is room.
    fn ignite_reversal(&mut self, t: u64, run: u16) {
        let r = run as usize;
        let (account, i, side) =
            (self.igniters[r].account, self.igniters[r].instrument as usize, self.igniters[r].side);
        let Some((quantity, average, _)) = self.igniters[r].ignited() else { return };
        let Some(last) = self.igniters[r].ignition.last().map(|x| x.price) else { return };
        let back = side.opposite();
        // The best price of the ignition's side (a sale must stay above a buyer's best bid to
        // rest) and of the reversal's side (the touch it improves when there is room).
        let (own_best, their_best) = (self.best(i, side).map(|(p, _)| p), self.best(i, back).map(|(p, _)| p));
        let pull = self.rng.random_range(0..=2);
        // Inside the spread when there is room above the average (a sale); else the nearest
        // price above the average, behind the others' orders there, which the taker then
        // takes through.
        let price = match back {
            Side::Sell => {
                let lo = ((average.floor() as i64) + 1).max(own_best.map_or(1, |b| b + 1));
                let hi = their_best.map_or(last, |a| a - 1);
                if lo <= hi { (last - pull).clamp(lo, hi) } else { lo }
            }
            Side::Buy => {
                let hi = ((average.ceil() as i64) - 1).min(own_best.map_or(i64::MAX, |a| a - 1));
                let lo = their_best.map_or(last, |b| b + 1);
                if lo <= hi { (last + pull).clamp(lo, hi) } else { hi }
            }
        };
        if price <= 0 {
            return;
        }
        if !self.igniters[r].better(price as f64, average) {
            return;
        }
        let share = self.igniters[r].share;
        let mut qty = (quantity as f64 * share).ceil() as u64;
        if qty >= 200 && (qty / 100 * 100) as f64 >= 0.4 * quantity as f64 {
            qty = qty / 100 * 100;
        }
        let qty = qty.clamp(1, quantity).min(MAX_ORDER_NOTIONAL_CENTS / price.max(1) as u64).min(MAX_ORDER_QTY);
        let Some(idx) = self.submit(t, i, account, back, price, qty, Class::Special, Rest::Rest) else {
            self.publish(t, i);
            return;
        };
        let id = self.orders[idx as usize].id;
        self.igniters[r].reversal = Some((idx, id));
        self.igniters[r].reversal_price = price;
        self.watched.push((id, Watch::Reversal(run)));
        self.publish(t, i);
        let delay = if self.recorded {
            self.rng.random_range(50..=500) * NS_PER_MS
        } else {
            self.rng.random_range(100..=2_000) * NS_PER_MS
        };
        self.schedule(t + delay, Task::IgniteStep { run, step: STEP_TAKE });
    }

    /// A participant drawn by the move takes the reversal order (and whatever rests before it).
    fn ignite_take(&mut self, t: u64, run: u16) {
        let r = run as usize;
        let (account, i, side) =
            (self.igniters[r].account, self.igniters[r].instrument as usize, self.igniters[r].side);
        let price = self.igniters[r].reversal_price;
        let end = self.igniters[r].ignition.last().map_or(t, |x| x.time);
        self.igniters[r].takes += 1;
        if let Some(idx) = self.alive(self.igniters[r].reversal)
            && t < end + REVERSAL_DELAY_NS
        {
            let ahead = self.ahead_of(i, idx) + self.orders[idx as usize].remaining;
            let owner = self.owner_of[account as usize];
            // A proprietary account (the recorded crowd over a recording), else an institution.
            let mut taker = None;
            let institutions = !self.recorded && !self.uni.coverage[i].inst.is_empty();
            for k in 0..16 {
                let a =
                    if k >= 8 && institutions { self.pick_role(i, Role::Institutional) } else { self.pick_taker(i) };
                if self.owner_of[a as usize] != owner && self.quiet(a, i, t, QUIET_NS) {
                    taker = Some(a);
                    break;
                }
            }
            if let Some(taker) = taker {
                self.take_at(t, i, taker, side, price, super::cap_qty(ahead, price));
                self.publish(t, i);
            }
        }
        let more = self.alive(self.igniters[r].reversal).is_some() && self.igniters[r].takes < MAX_TAKES;
        if more {
            let delay = self.rng.random_range(100..=1_000) * NS_PER_MS;
            self.schedule(t + delay, Task::IgniteStep { run, step: STEP_TAKE });
        } else {
            let delay = self.rng.random_range(200..=3_000) * NS_PER_MS;
            self.schedule(t + delay, Task::IgniteStep { run, step: STEP_END });
        }
    }

    /// Quantity resting before order `idx` on its side: better prices, and earlier at its own.
    fn ahead_of(&self, i: usize, idx: u32) -> u64 {
        let (side, price) = (self.orders[idx as usize].side, self.orders[idx as usize].price);
        let b = &self.books[i];
        let better: u64 = match side {
            Side::Sell => b.asks.range(..price).map(|(_, l)| l.total).sum(),
            Side::Buy => b.bids.range(price + 1..).map(|(_, l)| l.total).sum(),
        };
        let levels = if side == Side::Buy { &b.bids } else { &b.asks };
        let same = levels
            .get(&price)
            .map_or(0, |l| l.queue.iter().take_while(|&&x| x != idx).map(|&x| self.orders[x as usize].remaining).sum());
        better + same
    }

    /// What is left of the reversal order is cancelled; labelled when the scenario played out.
    fn ignite_end(&mut self, t: u64, run: u16) {
        let r = run as usize;
        let (account, i, side) =
            (self.igniters[r].account, self.igniters[r].instrument as usize, self.igniters[r].side);
        if let Some(idx) = self.alive(self.igniters[r].reversal) {
            self.cancel(t, i, idx, None);
            self.publish(t, i);
        }
        if let Some((_, id)) = self.igniters[r].reversal {
            self.watched.retain(|w| w.0 != id);
        }
        let g = &self.igniters[r];
        let Some((quantity, average, end)) = g.ignited() else { return };
        let (Some(first), Some(last)) = (g.ignition.first(), g.ignition.last()) else { return };
        let reversed: u64 = g
            .reversal_fills
            .iter()
            .filter(|x| x.time > end && x.time < end + REVERSAL_DELAY_NS && g.better(x.price as f64, average))
            .map(|x| x.quantity)
            .sum::<u64>()
            .min(quantity);
        let share = reversed as f64 / quantity.max(1) as f64;
        if reversed == 0 || share < MIN_REVERSAL_SHARE {
            return;
        }
        let levels: BTreeSet<i64> = g.ignition.iter().map(|x| x.price).collect();
        let orders: BTreeSet<u64> = g.ignition.iter().map(|x| x.order).collect();
        let (verb, back) = if side == Side::Buy { ("bought", "sold") } else { ("sold", "bought") };
        let turn = g.reversal_fills.first().map_or(end, |x| x.time);
        let detail = format!(
            "{verb} {quantity} in {} orders through {} price levels ({} to {}) in {:.1} s, then {back} {reversed} ({:.0} %) {:.1} s later at {}",
            orders.len(),
            levels.len(),
            super::price_text(first.price),
            super::price_text(last.price),
            end.saturating_sub(first.time) as f64 / 1e9,
            100.0 * share,
            turn.saturating_sub(end) as f64 / 1e9,
            super::price_text(g.reversal_price),
        );
        let (time, order) = (first.time, first.order);
        self.label(rules::MOMENTUM_IGNITION, i, account, time, Some(order), detail);
    }
}
