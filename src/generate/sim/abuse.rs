//! Injected order-book abuse, shaped like the enforcement cases and randomised within their
//! published ranges: Coscia-style spoofing cycles and Sarao-style layered walls.
//!
//! Each scenario runs as a chain of scheduled steps, so the background flow goes on around
//! it, and is labelled only when it played out as designed (a spoof order that traded, or a
//! genuine order nobody filled, is not spoofing).

use rand::Rng;

use super::{Class, NS_PER_MS, Rest, Sim, Task, Watch};
use crate::generate::universe::Role;
use crate::generate::writer::Kind;
use crate::generate::writer::Side;

/// A spoofing account's run of cycles on one instrument.
pub(super) struct SpoofRun {
    account: u32,
    instrument: u32,
    cycles_left: u32,
    attempts_left: u32,
    genuine: Option<(u32, u64)>,
    genuine_qty: u64,
    genuine_filled: u64,
    spoofs: Vec<(u32, u64, u64)>,
}

/// A layered wall of one account on one instrument.
pub(super) struct Wall {
    account: u32,
    instrument: u32,
    side: Side,
    layers: Vec<(u32, u64, u64)>,
    rounds_left: u32,
    ratio: f64,
    attempts_left: u32,
}

/// Injected orders stay under the default order limits (5,000,000 notional, 100,000 shares),
/// so that they raise no order-limit alert.
pub(super) const MAX_ORDER_NOTIONAL_CENTS: u64 = 400_000_000;

/// Episodes of one account on one instrument this close together could read as one pattern.
pub(super) const SEPARATION_NS: u64 = 40 * 60 * 1_000_000_000;

impl Sim<'_> {
    /// A proprietary (HFT) account on instrument `i` with no other injected abuse there nearby.
    pub(super) fn abuse_account(&mut self, i: usize, t: u64) -> Option<u32> {
        self.abuse_account_where(i, t, |_, _| true)
    }

    /// The same, among the accounts that `accept` also takes.
    pub(super) fn abuse_account_where(&mut self, i: usize, t: u64, accept: impl Fn(&Self, u32) -> bool) -> Option<u32> {
        for _ in 0..8 {
            let account = self.pick_role(i, Role::Hft);
            let clash = self
                .abuse_used
                .iter()
                .any(|&(a, inst, at)| a == account && inst == i as u32 && at.abs_diff(t) < SEPARATION_NS);
            if !clash && self.resting_of(i, account) == 0 && accept(self, account) {
                self.abuse_used.push((account, i as u32, t));
                return Some(account);
            }
        }
        None
    }

    /// One tick (a cent) further from the touch on `side`.
    fn behind(side: Side, price: i64, ticks: i64) -> i64 {
        match side {
            Side::Buy => price - ticks,
            Side::Sell => price + ticks,
        }
    }

    fn depth_at(&self, i: usize, side: Side, price: i64) -> u64 {
        let b = &self.books[i];
        let levels = match side {
            Side::Buy => &b.bids,
            Side::Sell => &b.asks,
        };
        levels.get(&price).map_or(0, |l| l.total)
    }

    /// Orders of `account` resting on instrument `i`.
    pub(super) fn resting_of(&self, i: usize, account: u32) -> usize {
        let b = &self.books[i];
        b.bids
            .values()
            .chain(b.asks.values())
            .flat_map(|l| l.queue.iter())
            .filter(|&&idx| self.orders[idx as usize].account == account)
            .count()
    }

    /// Orders of `account` resting at `price` on `side` of instrument `i`.
    fn own_at(&self, i: usize, side: Side, price: i64, account: u32) -> usize {
        let b = &self.books[i];
        let levels = if side == Side::Buy { &b.bids } else { &b.asks };
        levels
            .get(&price)
            .map_or(0, |l| l.queue.iter().filter(|&&idx| self.orders[idx as usize].account == account).count())
    }

    pub(super) fn visible_depth(&self, i: usize, side: Side, levels: usize) -> u64 {
        let b = &self.books[i];
        match side {
            Side::Buy => b.bids.values().rev().take(levels).map(|l| l.total).sum(),
            Side::Sell => b.asks.values().take(levels).map(|l| l.total).sum(),
        }
    }

    /// An immediate-or-cancel order of `account`: what it filled.
    pub(super) fn take_at(&mut self, t: u64, i: usize, account: u32, side: Side, price: i64, qty: u64) -> u64 {
        if qty == 0 {
            return 0;
        }
        let idx = self.alloc(i, account, side, price, qty, Class::Special);
        self.emit(Kind::New, t, idx, Some(price), Some(qty), None);
        self.execute(t, i, idx);
        let filled = self.orders[idx as usize].filled;
        if self.orders[idx as usize].remaining > 0 {
            self.emit(Kind::Cancel, t, idx, None, None, None);
        }
        self.release(idx);
        filled
    }

    // ----- spoofing ------------------------------------------------------------------------

    /// Counts a fill of spoofing run `run`'s genuine order.
    pub(super) fn note_genuine_fill(&mut self, run: u16, quantity: u64) {
        self.spoof_runs[run as usize].genuine_filled += quantity;
    }

    /// Starts a spoofer: 2-4 cycles a few seconds apart (the pattern repeats: the CFTC cites
    /// hundreds of instances).
    pub(super) fn spoof_start(&mut self, t: u64) {
        let i = self.pick_instrument();
        let Some(account) = self.abuse_account(i, t) else { return };
        let cycles = self.rng.random_range(2..=4);
        self.spoof_runs.push(SpoofRun {
            account,
            instrument: i as u32,
            cycles_left: cycles,
            attempts_left: 10 * cycles,
            genuine: None,
            genuine_qty: 0,
            genuine_filled: 0,
            spoofs: Vec::new(),
        });
        let run = (self.spoof_runs.len() - 1) as u16;
        self.schedule(t, Task::SpoofStep { run, step: 0 });
    }

    pub(super) fn spoof_step(&mut self, t: u64, run: u16, step: u8) {
        let r = run as usize;
        let (account, i) = (self.spoof_runs[r].account, self.spoof_runs[r].instrument as usize);
        match step {
            // The genuine order: a round lot or three, improving its side's best price when the
            // spread allows, else joining it.
            0 => {
                if self.spoof_runs[r].cycles_left == 0 || self.spoof_runs[r].attempts_left == 0 {
                    return;
                }
                self.spoof_runs[r].attempts_left -= 1;
                let side = if self.rng.random_bool(0.5) { Side::Buy } else { Side::Sell };
                let (Some((own, _)), Some((other, _))) = (self.best(i, side), self.best(i, side.opposite())) else {
                    self.schedule(t + 500 * NS_PER_MS, Task::SpoofStep { run, step: 0 });
                    return;
                };
                let price = if (other - own).abs() >= 2 { Self::behind(side, own, -1) } else { own };
                // The account's own orders resting at that price would trade with the genuine
                // one: the cycle waits until they are gone.
                if self.own_at(i, side, price, account) > 0 {
                    self.schedule(t + 500 * NS_PER_MS, Task::SpoofStep { run, step: 0 });
                    return;
                }
                let qty = self.rng.random_range(1..=3) * 100;
                self.watched.retain(|w| w.1 != Watch::Genuine(run));
                let Some(idx) = self.submit(t, i, account, side, price, qty, Class::Special, Rest::Rest) else {
                    self.schedule(t + 500 * NS_PER_MS, Task::SpoofStep { run, step: 0 });
                    return;
                };
                let id = self.orders[idx as usize].id;
                let run_state = &mut self.spoof_runs[r];
                run_state.genuine = Some((idx, id));
                run_state.genuine_qty = qty;
                run_state.genuine_filled = 0;
                run_state.spoofs.clear();
                // Its fills are counted as they happen, whoever takes it and whenever.
                self.watched.push((id, Watch::Genuine(run)));
                self.publish(t, i);
                let delay = self.rng.random_range(5..=50) * NS_PER_MS;
                self.schedule(t + delay, Task::SpoofStep { run, step: 1 });
            }
            // Three large orders on the other side, on the touch and the two ticks behind it
            // (Coscia: 122, 85 and 54 lots against 17), in all 10-50 times the genuine order
            // (the CFTC's range), each at least doubling its level.
            1 => {
                let Some((gidx, gid)) = self.spoof_runs[r].genuine else { return };
                let Some(gidx) = self.alive(Some((gidx, gid))) else {
                    self.schedule(t + 200 * NS_PER_MS, Task::SpoofStep { run, step: 0 });
                    return;
                };
                let side = self.orders[gidx as usize].side.opposite();
                let Some((touch, _)) = self.best(i, side) else {
                    self.cancel(t, i, gidx, None);
                    self.publish(t, i);
                    self.schedule(t + 200 * NS_PER_MS, Task::SpoofStep { run, step: 0 });
                    return;
                };
                let ratio = self.rng.random_range(10.0..50.0);
                let total = ratio * self.spoof_runs[r].genuine_qty as f64;
                let first = self.rng.random_range(0.4..0.55);
                let second = self.rng.random_range(0.25..0.35);
                for (k, share) in [first, second, 1.0 - first - second].into_iter().enumerate() {
                    let price = Self::behind(side, touch, k as i64);
                    if price <= 0 {
                        continue;
                    }
                    let wanted = ((total * share / 100.0).ceil() as u64).max(1) * 100;
                    let qty = wanted.max((self.depth_at(i, side, price) + 100).div_ceil(100) * 100);
                    // Under the order limits (no order-limit alert on a spoof): an order that
                    // cannot double its level there is left out.
                    if qty > (MAX_ORDER_NOTIONAL_CENTS / price as u64).min(90_000) {
                        continue;
                    }
                    if let Some(idx) = self.submit(t, i, account, side, price, qty, Class::Special, Rest::Rest) {
                        let id = self.orders[idx as usize].id;
                        self.spoof_runs[r].spoofs.push((idx, id, qty));
                    }
                }
                self.publish(t, i);
                let delay = self.rng.random_range(100..=500) * NS_PER_MS;
                self.schedule(t + delay, Task::SpoofStep { run, step: 2 });
            }
            // Another participant takes the genuine order's level.
            2 => {
                let Some(gidx) = self.alive(self.spoof_runs[r].genuine) else {
                    // Filled by the background flow meanwhile: that was the genuine fill.
                    self.schedule(t, Task::SpoofStep { run, step: 3 });
                    return;
                };
                let (side, price) = {
                    let o = &self.orders[gidx as usize];
                    (o.side, o.price)
                };
                // Another participant's order: within the background's order sizes (a level
                // deeper than that leaves the genuine order resting, and the cycle unlabelled).
                let qty = super::cap_qty(self.depth_at(i, side, price), price);
                let owner = self.owner_of[account as usize];
                let mut taker = None;
                for _ in 0..8 {
                    let a = self.pick_taker(i);
                    if self.owner_of[a as usize] != owner {
                        taker = Some(a);
                        break;
                    }
                }
                if let Some(taker) = taker {
                    self.take_at(t, i, taker, side.opposite(), price, qty);
                }
                self.publish(t, i);
                // The spoofs go soon after the fill (CFTC: 2.3 s on average).
                let delay = self.rng.random_range(50..=2_300) * NS_PER_MS;
                self.schedule(t + delay, Task::SpoofStep { run, step: 3 });
            }
            // The spoofs are cancelled (and what is left of the genuine order); the cycle is
            // labelled when it played out: the genuine order filled, the spoofs did not trade.
            _ => {
                if let Some(gidx) = self.alive(self.spoof_runs[r].genuine) {
                    self.cancel(t, i, gidx, None);
                }
                self.watched.retain(|w| w.1 != Watch::Genuine(run));
                let spoofs = std::mem::take(&mut self.spoof_runs[r].spoofs);
                let mut clean = Vec::new();
                for &(idx, id, qty) in &spoofs {
                    if let Some(idx) = self.alive(Some((idx, id))) {
                        // More than a tenth traded: that order was no spoof.
                        let filled = self.orders[idx as usize].filled;
                        self.cancel(t, i, idx, None);
                        if filled * 10 <= qty {
                            clean.push((id, qty - filled));
                        }
                    }
                }
                self.publish(t, i);
                let genuine = self.spoof_runs[r].genuine_qty;
                let spoofed: u64 = clean.iter().map(|c| c.1).sum();
                let played_out = self.spoof_runs[r].genuine_filled > 0 && !clean.is_empty() && spoofed >= 10 * genuine;
                if played_out {
                    self.spoof_runs[r].cycles_left -= 1;
                    let detail = format!(
                        "{} orders of {spoofed} cancelled around the fill of a genuine order of {genuine}",
                        clean.len()
                    );
                    self.label("spoofing", i, account, t, Some(clean[0].0), detail);
                }
                let gap = self.rng.random_range(1_000..=20_000) * NS_PER_MS;
                self.schedule(t + gap, Task::SpoofStep { run, step: 0 });
            }
        }
    }

    // ----- layering ------------------------------------------------------------------------

    /// Starts a wall: 3-4 large orders on the ticks behind one side's touch, together over a
    /// quarter of the side's visible depth (Sarao: 20 % of all visible sell orders).
    pub(super) fn wall_start(&mut self, t: u64) {
        let i = self.pick_instrument();
        let Some(account) = self.abuse_account(i, t) else { return };
        let side = if self.rng.random_bool(0.5) { Side::Buy } else { Side::Sell };
        let (Some((touch, _)), Some(_)) = (self.best(i, side), self.best(i, side.opposite())) else { return };
        let n = self.rng.random_range(3..=4);
        let visible = self.visible_depth(i, side, 5);
        let mut layers = Vec::new();
        for k in 1..=n {
            let price = Self::behind(side, touch, k);
            if price <= 0 {
                break;
            }
            let here = self.depth_at(i, side, price);
            let wanted = (visible as f64 * 0.6 / n as f64).max(500.0).max(2.0 * here as f64);
            let mut qty = (wanted / 100.0).ceil() as u64 * 100;
            // Under the order limits: no order-limit alert on a layer.
            let cap = (MAX_ORDER_NOTIONAL_CENTS / price.max(1) as u64).min(90_000) / 100 * 100;
            qty = qty.min(cap);
            if qty == 0 {
                break;
            }
            if let Some(idx) = self.submit(t, i, account, side, price, qty, Class::Special, Rest::Rest) {
                let id = self.orders[idx as usize].id;
                layers.push((idx, id, qty));
            }
        }
        self.publish(t, i);
        let rounds = self.rng.random_range(3..=10);
        let ratio = self.rng.random_range(10.0..50.0);
        self.walls.push(Wall {
            account,
            instrument: i as u32,
            side,
            layers,
            rounds_left: rounds,
            ratio,
            attempts_left: 10,
        });
        let wall = (self.walls.len() - 1) as u16;
        let delay = self.rng.random_range(200..=2_000) * NS_PER_MS;
        self.schedule(t + delay, Task::WallStep { wall, step: 0 });
    }

    pub(super) fn wall_step(&mut self, t: u64, wall: u16, step: u8) {
        let w = wall as usize;
        let (account, i, side) = (self.walls[w].account, self.walls[w].instrument as usize, self.walls[w].side);
        match step {
            // The wall is modified, round after round (Sarao: over 19,000 times), following the
            // market so that it stays on the ticks just behind the touch.
            0 if self.walls[w].rounds_left > 0 => {
                self.walls[w].rounds_left -= 1;
                let layers = self.walls[w].layers.clone();
                let touch = self.best(i, side).map(|(p, _)| p);
                let own_touch = layers
                    .iter()
                    .any(|l| self.alive(Some((l.0, l.1))).is_some() && Some(self.orders[l.0 as usize].price) == touch);
                for (k, &(idx, id, qty)) in layers.iter().enumerate() {
                    if let Some(idx) = self.alive(Some((idx, id))) {
                        let (price, remaining, filled) = {
                            let o = &self.orders[idx as usize];
                            (o.price, o.remaining, o.filled)
                        };
                        let target = match touch {
                            Some(touch) if !own_touch => Self::behind(side, touch, k as i64 + 1),
                            _ => price,
                        };
                        let new_qty = if self.rng.random_bool(0.5) { qty + 100 } else { qty };
                        // A layer that traded is left as it is (a replace's quantity is a total).
                        if filled == 0 && target > 0 && (new_qty != remaining || target != price) {
                            self.replace(t, i, idx, target, new_qty.saturating_sub(filled).max(100));
                        }
                        self.walls[w].layers[k].2 = new_qty;
                    }
                }
                self.publish(t, i);
                let delay = self.rng.random_range(200..=2_000) * NS_PER_MS;
                self.schedule(t + delay, Task::WallStep { wall, step: 0 });
            }
            // The trade on the other side: the account takes the touch in front of its wall (a
            // sell wall, then a buy at the best ask), 1/10 to 1/50 of the wall's size.
            0 => {
                let total: u64 = self.walls[w].layers.iter().map(|l| l.2).sum();
                let qty = ((total as f64 / self.walls[w].ratio / 100.0).floor() as u64).max(1) * 100;
                // Only while others' orders are in front of the wall: once the price has come to
                // the wall, the trade would meet the account's own orders.
                let prices = self.walls[w]
                    .layers
                    .iter()
                    .filter_map(|l| self.alive(Some((l.0, l.1))))
                    .map(|idx| self.orders[idx as usize].price);
                let nearest = if side == Side::Sell { prices.min() } else { prices.max() };
                let filled = match (self.best(i, side), nearest) {
                    (Some((touch, _)), Some(nearest))
                        if ((side == Side::Sell && touch < nearest) || (side == Side::Buy && touch > nearest))
                            && (!self.recorded || self.levels_ahead(i, side, nearest) <= 1) =>
                    {
                        self.take_at(t, i, account, side.opposite(), touch, qty)
                    }
                    _ => 0,
                };
                self.publish(t, i);
                if filled > 0 {
                    let delay = self.rng.random_range(50..=2_000) * NS_PER_MS;
                    self.schedule(t + delay, Task::WallStep { wall, step: 1 });
                } else if self.walls[w].attempts_left > 0 {
                    self.walls[w].attempts_left -= 1;
                    if self.recorded {
                        self.wall_step_back(t, wall);
                    }
                    self.schedule(t + 200 * NS_PER_MS, Task::WallStep { wall, step: 0 });
                } else {
                    self.wall_end(t, wall, false);
                }
            }
            _ => self.wall_end(t, wall, true),
        }
    }

    /// Occupied levels of `side` better than `price`.
    fn levels_ahead(&self, i: usize, side: Side, price: i64) -> usize {
        let b = &self.books[i];
        match side {
            Side::Buy => b.bids.range(price + 1..).count(),
            Side::Sell => b.asks.range(..price).count(),
        }
    }

    /// In recorded flow nobody requotes in front of a wall whose first layer has become the
    /// touch, and a fast market can leave it far behind: the wall steps back to the ticks just
    /// behind the others' best price, as it stood when entered (the trade waits for that, so
    /// that the layers are near the touch when it comes).
    fn wall_step_back(&mut self, t: u64, wall: u16) {
        let w = wall as usize;
        let (account, i, side) = (self.walls[w].account, self.walls[w].instrument as usize, self.walls[w].side);
        let others_best = {
            let b = &self.books[i];
            let mut levels: Box<dyn Iterator<Item = (&i64, &super::Level)>> =
                if side == Side::Buy { Box::new(b.bids.iter().rev()) } else { Box::new(b.asks.iter()) };
            levels
                .find(|(_, l)| l.queue.iter().any(|&idx| self.orders[idx as usize].account != account))
                .map(|(p, _)| *p)
        };
        let Some(others_best) = others_best else { return };
        let layers = self.walls[w].layers.clone();
        for (k, &(idx, id, _)) in layers.iter().enumerate() {
            if let Some(idx) = self.alive(Some((idx, id))) {
                let (price, remaining, filled) = {
                    let o = &self.orders[idx as usize];
                    (o.price, o.remaining, o.filled)
                };
                let target = Self::behind(side, others_best, k as i64 + 1);
                if filled == 0 && target > 0 && target != price {
                    self.replace(t, i, idx, target, remaining);
                }
            }
        }
        self.publish(t, i);
    }

    /// The wall comes down; labelled when at least three layers did not trade (more than a
    /// tenth of a layer traded makes it no layer).
    fn wall_end(&mut self, t: u64, wall: u16, traded: bool) {
        let w = wall as usize;
        let (account, i) = (self.walls[w].account, self.walls[w].instrument as usize);
        let layers = std::mem::take(&mut self.walls[w].layers);
        let mut clean = Vec::new();
        for &(idx, id, _) in &layers {
            if let Some(idx) = self.alive(Some((idx, id))) {
                let o = &self.orders[idx as usize];
                let untouched = o.filled * 10 <= o.filled + o.remaining;
                self.cancel(t, i, idx, None);
                if untouched {
                    clean.push(id);
                }
            }
        }
        self.publish(t, i);
        if traded && clean.len() >= 3 {
            let side = if self.walls[w].side == Side::Buy { "buy" } else { "sell" };
            let detail = format!(
                "{} {side} orders on consecutive ticks behind the touch, cancelled after trading the other way",
                clean.len()
            );
            self.label("layering", i, account, t, Some(clean[0]), detail);
        }
    }
}
