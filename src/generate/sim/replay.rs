//! The simulation driven by recorded flow instead of synthetic participants: each message of
//! the recording is applied to the book as it happened, and the injected scenarios run
//! against that book (they see the real touch and the real depth, and their takers trade with
//! whatever rests in front, real orders included).
//!
//! A real order that an injected taker filled is no longer what the recording says it is: its
//! later messages are cut to what is left of it, or dropped when nothing is, and counted as
//! displaced.

use std::collections::HashMap;

use rand::Rng;

use super::{Class, NS_PER_S, Outcome, Sim, Task};
use crate::generate::GenerateError;
use crate::generate::background::{Message, MessageKind, Recording};
use crate::generate::writer::{Kind, Side};

/// Injected scenarios per hour of recorded flow.
pub(crate) struct BackgroundPlan {
    pub(crate) spoofers: f64,
    pub(crate) walls: f64,
    pub(crate) stuffers: f64,
    pub(crate) igniters: f64,
}

/// What happened to the recording's messages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ReplayCounts {
    /// Messages written as recorded.
    pub(crate) replayed: u64,
    /// Messages cut short or dropped because an injected taker had traded with their order.
    pub(crate) displaced: u64,
}

/// The synthetic accounts of the recording's orders: accounts `first..first + count` of the
/// universe, one per order id, chosen by a seeded hash so that an order keeps its account.
#[derive(Clone, Copy)]
pub(crate) struct BackgroundAccounts {
    pub(crate) first: u32,
    pub(crate) count: u32,
    pub(crate) seed: u64,
}

impl BackgroundAccounts {
    fn of(&self, order: u64) -> u32 {
        let h = xxhash_rust::xxh3::xxh3_64_with_seed(&order.to_le_bytes(), self.seed);
        self.first + (h % u64::from(self.count.max(1))) as u32
    }
}

impl Sim<'_> {
    /// Replays `recording` on instrument 0 with `plan`'s scenarios injected at random times.
    pub(crate) fn run_recording(
        mut self,
        recording: &Recording,
        accounts: BackgroundAccounts,
        plan: &BackgroundPlan,
    ) -> Result<(Outcome, ReplayCounts), GenerateError> {
        let (Some(first), Some(last)) = (recording.messages.first(), recording.messages.last()) else {
            return Err(GenerateError::InvalidConfig("the background recording holds no order messages".into()));
        };
        let (start, end) = (first.time, last.time);
        self.recorded = true;
        self.crowd = Some((accounts.first, accounts.count));
        let executed = recording.messages.iter().filter(|m| m.kind == MessageKind::Execute).map(|m| m.price);
        self.recorded_range = executed.clone().min().zip(executed.max());
        // Injected ids never meet the recording's.
        let max_real = recording.messages.iter().map(|m| m.order).max().unwrap_or(0);
        self.next_id = max_real.max(10_000_000_000);
        let hours = (end - start) as f64 / (3600.0 * NS_PER_S as f64);
        for (per_hour, task) in [
            (plan.spoofers, Task::SpoofStart),
            (plan.walls, Task::WallStart),
            (plan.stuffers, Task::StuffStart),
            (plan.igniters, Task::IgniteStart { attempt: 0 }),
        ] {
            let count = (per_hour * hours).round() as usize;
            for _ in 0..count {
                // Not in the first minutes, while the book fills, nor so late that it cannot
                // play out.
                let t = start + ((end - start) as f64 * self.rng.random_range(0.05..0.9)) as u64;
                self.schedule(t, task);
            }
        }
        let mut orders: HashMap<u64, (u32, u64)> = HashMap::new();
        let mut counts = ReplayCounts::default();
        for m in &recording.messages {
            while let Some(next) = self.heap.peek() {
                if next.time > m.time {
                    break;
                }
                let Some(s) = self.heap.pop() else { break };
                let t = s.time.max(self.now);
                self.now = t;
                self.run_task(t, s.task);
            }
            self.now = m.time.max(self.now);
            let t = self.now;
            let whole = self.apply_message(t, m, &mut orders, accounts);
            counts.replayed += u64::from(whole);
            counts.displaced += u64::from(!whole);
            self.publish(t, 0);
            self.w.checkpoint()?;
        }
        // Steps due by the end of the recording; scenarios still running then are cut off, and
        // not labelled.
        while let Some(next) = self.heap.pop() {
            if next.time > end {
                break;
            }
            self.now = next.time.max(self.now);
            self.run_task(self.now, next.task);
        }
        self.close_labels();
        Ok((Outcome { writer: self.w, labels: self.labels }, counts))
    }

    /// Writes one recorded message; false when an injected taker had already traded with its
    /// order, so that the message was cut short or dropped.
    fn apply_message(
        &mut self,
        t: u64,
        m: &Message,
        orders: &mut HashMap<u64, (u32, u64)>,
        accounts: BackgroundAccounts,
    ) -> bool {
        const I: usize = 0;
        let account = accounts.of(m.order);
        if m.kind == MessageKind::Submit {
            let idx = self.alloc(I, account, m.side, m.price, m.size, Class::Background);
            self.orders[idx as usize].id = m.order;
            orders.insert(m.order, (idx, m.order));
            self.emit(Kind::New, t, idx, Some(m.price), Some(m.size), None);
            // Recorded orders rest as recorded: what they would have crossed is in the recording
            // as executions of the resting orders.
            self.rest(I, idx);
            return true;
        }
        if m.kind == MessageKind::HiddenExecute {
            self.w.hidden_fill(t, &self.syms[I], m.order, m.side, m.price, m.size, m.side.opposite());
            return true;
        }
        let known = orders.get(&m.order).copied();
        let Some(idx) = self.alive(known) else {
            if known.is_some() {
                // Filled by an injected taker: nothing of it is left.
                return false;
            }
            // An order from before the recording starts: written as recorded.
            let party = self.party[account as usize].clone();
            let kind = if m.kind == MessageKind::Execute { Kind::Fill } else { Kind::Cancel };
            let (price, aggressor) = match kind {
                Kind::Fill => (Some(m.price), Some(m.side.opposite())),
                _ => (None, None),
            };
            self.w.order(kind, t, &self.syms[I], m.order, &party, m.side, price, Some(m.size), aggressor);
            return true;
        };
        let remaining = self.orders[idx as usize].remaining;
        let whole = m.size <= remaining;
        match m.kind {
            MessageKind::Execute => {
                let q = m.size.min(remaining);
                self.fill_resting(t, I, idx, q);
            }
            MessageKind::Delete => self.cancel(t, I, idx, None),
            _ => self.cancel(t, I, idx, Some(m.size).filter(|&q| q < remaining)),
        }
        whole
    }

    /// A resting order executed against a taker the recording does not show.
    fn fill_resting(&mut self, t: u64, i: usize, idx: u32, q: u64) {
        let (side, price) = (self.orders[idx as usize].side, self.orders[idx as usize].price);
        self.emit(Kind::Fill, t, idx, Some(price), Some(q), Some(side.opposite()));
        let o = &mut self.orders[idx as usize];
        o.remaining -= q;
        o.filled += q;
        let done = o.remaining == 0;
        let book = &mut self.books[i];
        let levels = match side {
            Side::Buy => &mut book.bids,
            Side::Sell => &mut book.asks,
        };
        if let Some(level) = levels.get_mut(&price) {
            level.total -= q.min(level.total);
        }
        if done {
            // Off its level and the live list (its remaining 0 leaves the level's total as is).
            self.unrest(i, idx);
            self.release(idx);
        }
    }
}
