//! Injected front running (FINRA Rule 5270): an employee who hears of a client's block trades
//! its way seconds before the block reaches the market.
//!
//! The employee takes liquidity at the touch (a few hundred to two thousand shares), then, 2-30 s
//! later, the client's block (10,000 shares or more, or $200,000 or more: NYSE Rule 127.10; and
//! at least the first four levels in its way) arrives as a marketable order that sweeps the
//! book; the price the block reached becomes the instrument's fair value (its lasting impact).
//! The employee holds the position.
//!
//! The rule reads an execution against the first client block that executes after it, so the
//! scenario is labelled against that block, whichever client's it is: the injected one, or a
//! block of the day's own flow that happened to come in between. It is labelled only when it
//! played out: that block went the employee's way and the trade was worth money at the rule's
//! horizon (five minutes) after it.

use rand::Rng;

use super::{NS_PER_S, Rest, Sim, Task};
use crate::generate::universe::Role;
use crate::generate::writer::Side;
use crate::model::alert::rules;

/// A block is at least this many shares...
pub(super) const BLOCK_QUANTITY: u64 = 10_000;
/// ...or worth at least this much at its limit price, in cents.
pub(super) const BLOCK_NOTIONAL_CENTS: u64 = 20_000_000;
/// The injected block stays within the day's own orders' sizes (shares, and cents).
const MAX_BLOCK_QUANTITY: u64 = 20_000;
const MAX_BLOCK_NOTIONAL_CENTS: u64 = 200_000_000;
/// The rule's default horizon, at which the profit is judged.
const HORIZON_NS: u64 = 5 * 60 * NS_PER_S;
/// An employee trades ahead on one instrument at most once in this long.
const SEPARATION_NS: u64 = 40 * 60 * NS_PER_S;

/// The first execution of a client's block order.
#[derive(Clone, Copy)]
pub(super) struct BlockExecution {
    pub(super) time: u64,
    pub(super) order_id: u64,
    pub(super) side: Side,
}

/// One employee trading ahead of one block.
pub(super) struct FrontRun {
    employee: u32,
    instrument: u32,
    side: Side,
    /// When the employee's order executed, and its fills (price in cents, quantity).
    executed: u64,
    fills: Vec<(i64, u64)>,
    /// The block the employee's trade is read against, once it has executed.
    block: Option<BlockExecution>,
}

impl Sim<'_> {
    /// Whether `account` is a client (what the accounts file calls `capacity = client`).
    pub(super) fn is_client(&self, account: u32) -> bool {
        matches!(self.uni.accounts[account as usize].role, Role::Institutional | Role::Retail)
    }

    /// Notes the first execution of a client's block order, on an instrument a front run
    /// watches (called before the execution is booked, so the order's size is as it arrived,
    /// replaced or part cancelled).
    pub(super) fn note_block_execution(&mut self, t: u64, i: usize, idx: u32) {
        let o = &self.orders[idx as usize];
        let size = o.remaining + o.filled;
        let is_block = size >= BLOCK_QUANTITY || (o.price.max(0) as u64).saturating_mul(size) >= BLOCK_NOTIONAL_CENTS;
        if o.filled == 0 && is_block && self.is_client(o.account) {
            let block = BlockExecution { time: t, order_id: o.id, side: o.side };
            if let Some(log) = self.block_log[i].as_mut() {
                log.push(block);
            }
        }
    }

    /// An employee trades at the touch on a busy instrument; the client's block follows.
    pub(super) fn front_run_start(&mut self, t: u64) {
        if self.uni.employees.is_empty() {
            return;
        }
        let x = self.front_rng.random::<f64>();
        let i = self.pick_instrument_with(x);
        let employee = self.uni.employees[self.front_rng.random_range(0..self.uni.employees.len())];
        // One run at a time on an instrument, runs on it well apart, and an employee's runs
        // apart too.
        let clash = self.block_log[i].is_some()
            || self.front_runs.iter().any(|r| {
                let apart = r.executed.abs_diff(t);
                (r.instrument == i as u32 && apart < SEPARATION_NS)
                    || (r.employee == employee && apart < SEPARATION_NS / 4)
            });
        if clash {
            return;
        }
        let side = if self.front_rng.random_bool(0.5) { Side::Buy } else { Side::Sell };
        let Some((touch, _)) = self.best(i, side.opposite()) else { return };
        let quantity = super::cap_qty(self.front_rng.random_range(2..=20) * 100, touch);
        self.block_log[i] = Some(Vec::new());
        let filled = self.take_at(t, i, employee, side, touch, quantity);
        let fills = self.taken.clone();
        self.publish(t, i);
        if filled == 0 {
            self.block_log[i] = None;
            return;
        }
        let run = self.front_runs.len() as u16;
        self.front_runs.push(FrontRun { employee, instrument: i as u32, side, executed: t, fills, block: None });
        let lead = self.front_rng.random_range(2 * NS_PER_S..30 * NS_PER_S);
        self.schedule(t + lead, Task::FrontRunBlock { run });
    }

    /// The client's block: a marketable order of block size sweeping a few levels.
    pub(super) fn front_run_block(&mut self, t: u64, run: u16) {
        let (i, side) = {
            let r = &self.front_runs[run as usize];
            (r.instrument as usize, r.side)
        };
        if let Some((touch, _)) = self.best(i, side.opposite()) {
            let ticks = self.front_rng.random_range(3..=12);
            let limit = if side == Side::Buy { touch + ticks } else { (touch - ticks).max(1) };
            // At least a block (10,000 shares or $200,000, whichever is fewer shares), and at
            // least what rests on the first four levels in its way, so that it moves the price;
            // within what the day's own orders may be (20,000 shares, $2,000,000).
            let floor = BLOCK_QUANTITY.min(BLOCK_NOTIONAL_CENTS.div_ceil(limit.max(1) as u64).div_ceil(100) * 100);
            let depth = self.visible_depth(i, side.opposite(), 4);
            let wanted = (depth.max(floor) as f64 * self.front_rng.random_range(1.0..1.3)) as u64;
            let quantity =
                wanted.min(MAX_BLOCK_QUANTITY).min(MAX_BLOCK_NOTIONAL_CENTS / limit.max(1) as u64) / 100 * 100;
            if quantity >= floor {
                let client = self.pick_client(i);
                self.submit(t, i, client, side, limit, quantity, super::Class::Special, Rest::Ioc);
                if let Some(&(last, _)) = self.taken.last() {
                    // The price the block reached is where the market now values the stock.
                    self.books[i].fair = last as f64 / 100.0;
                }
                self.publish(t, i);
            }
        }
        // Judged against the first block after the employee's trade, whoever's it was.
        let executed = self.front_runs[run as usize].executed;
        let log = self.block_log[i].take().unwrap_or_default();
        // A block at the moment of the employee's trade came before it (the rule reads trading
        // strictly before a block); blocks executing at one moment are read together, the
        // employee ahead of the one that went its way.
        let first = log.iter().map(|b| b.time).filter(|&time| time > executed).min();
        let block = first.and_then(|time| log.iter().find(|b| b.time == time && b.side == side)).copied();
        if let Some(block) = block {
            self.front_runs[run as usize].block = Some(block);
            self.schedule(block.time + HORIZON_NS, Task::FrontRunJudge { run });
        }
    }

    /// Labels the run when the employee's trade was worth money at the horizon.
    pub(super) fn front_run_judge(&mut self, run: u16) {
        let r = &self.front_runs[run as usize];
        let (Some(block), Some(last)) = (r.block, self.last_price[r.instrument as usize]) else { return };
        let sign = if r.side == Side::Buy { 1 } else { -1 };
        let profit: i64 = r.fills.iter().map(|&(price, quantity)| sign * (last - price) * quantity as i64).sum();
        if profit <= 0 {
            return;
        }
        let quantity: u64 = r.fills.iter().map(|f| f.1).sum();
        let detail = format!(
            "employee {} {quantity} {} s before a client block executed; worth {}.{:02} five minutes later",
            if r.side == Side::Buy { "bought" } else { "sold" },
            (block.time - r.executed) / NS_PER_S,
            profit / 100,
            profit % 100
        );
        let (i, employee) = (r.instrument as usize, r.employee);
        self.label(rules::FRONT_RUNNING, i, employee, block.time, Some(block.order_id), detail);
    }

    /// A client account that trades instrument `i`, drawn from the front-running stream.
    fn pick_client(&mut self, i: usize) -> u32 {
        let clients = &self.uni.coverage[i].inst;
        clients[self.front_rng.random_range(0..clients.len())]
    }
}
