//! The trading-day simulation: per-instrument limit order books with a price-time-priority
//! matching engine, background participants, and the injected (labelled) breaches.
//!
//! Time: background actions follow one merged Poisson process across instruments (each action
//! picks its instrument by activity weight). The process runs in "activity time" `u` in
//! `[0, 1)`, whose rate adapts so that the requested number of events is reached as `u`
//! approaches 1; `u` maps to wall-clock time through an intraday U-shaped intensity (busy
//! open and close, quiet lunch), so the whole session is always spanned whatever the size.
//! Injected breaches and scheduled cancels sit in a time-ordered heap merged with that clock.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

mod abuse;
mod front_run;
mod ignition;
mod market;
mod replay;

pub(crate) use replay::{BackgroundAccounts, BackgroundPlan};

use super::universe::{Role, Universe};
use super::writer::{EventWriter, Kind, Side, Top, price_text};
use super::{EventMix, GenerateError};

const NO_POS: u32 = u32::MAX;
const NO_STORM: u16 = u16::MAX;
const NS_PER_MS: u64 = 1_000_000;
const NS_PER_S: u64 = 1_000_000_000;

/// Background limits (the detectors' defaults are 100,000 shares and 5,000,000 USD).
const MAX_BG_QTY: u64 = 20_000;
/// 2,000,000 USD in cents.
const MAX_BG_NOTIONAL_CENTS: u64 = 200_000_000;

/// Relative intraday intensity at open and close versus midday: `1 + A (2x - 1)^2`.
const U_SHAPE: f64 = 2.0;
const WARP_POINTS: usize = 4096;

/// Share of market-maker actions that re-centre the tight (touch) quotes rather than the
/// deeper ones.
const P_TIGHT: f64 = 0.3;

/// Mixed into the seed of the front runs' own random stream.
const FRONT_RUN_STREAM: u64 = 0x6672_6f6e_7472_756e;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Background,
    MarketMaker,
    Storm,
    Special,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Rest {
    Rest,
    Ioc,
}

struct Order {
    id: u64,
    account: u32,
    owner: u32,
    remaining: u64,
    filled: u64,
    price: i64,
    /// Position in the instrument's `live` list, or `NO_POS`.
    live_pos: u32,
    instrument: u32,
    side: Side,
    class: Class,
    alive: bool,
}

#[derive(Default)]
struct Level {
    queue: VecDeque<u32>,
    total: u64,
}

struct MmSlot {
    account: u32,
    /// Quotes at the touch (true) or a few ticks behind it.
    tight: bool,
    bid: Option<(u32, u64)>,
    ask: Option<(u32, u64)>,
    /// Half spread as a fraction of the fair value.
    half_spread: f64,
    /// Typical quote size in round lots.
    lots: u64,
}

struct Book {
    bids: BTreeMap<i64, Level>,
    asks: BTreeMap<i64, Level>,
    /// Resting background orders, the candidates for random cancels and replaces.
    live: Vec<u32>,
    mm: Vec<MmSlot>,
    /// Fair value in dollars: a geometric random walk in activity time.
    fair: f64,
    sigma: f64,
    last_u: f64,
    /// The last top of book written as a `quote`.
    published: (Top, Top),
}

struct Storm {
    account: u32,
    instrument: u32,
    orders: u64,
    messages: u64,
    fills: u64,
}

/// One injected breach, for `labels.csv`.
pub(crate) struct Label {
    pub(crate) rule: &'static str,
    pub(crate) instrument: u32,
    pub(crate) account: u32,
    pub(crate) time: u64,
    pub(crate) order_id: Option<u64>,
    pub(crate) detail: String,
}

#[derive(Clone, Copy)]
enum Task {
    Cancel { idx: u32, id: u64 },
    StormOrder { storm: u16 },
    StormHit { storm: u16, attempt: u32 },
    QuantityBreach,
    NotionalBreach,
    OffMarketBreach,
    WashSameAccount,
    WashSameOwner,
    SpoofStart,
    SpoofStep { run: u16, step: u8 },
    WallStart,
    WallStep { wall: u16, step: u8 },
    StuffStart,
    StuffStep { run: u16 },
    StuffCancel { run: u16, idx: u32, id: u64 },
    CloseStart { instrument: u32 },
    CloseStep { closer: u16 },
    IgniteStart { attempt: u8 },
    IgniteStep { run: u16, step: u8 },
    FrontRunStart,
    FrontRunBlock { run: u16 },
    FrontRunJudge { run: u16 },
}

/// A resting scenario order whose fills are recorded.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Watch {
    /// A spoofing run's genuine order.
    Genuine(u16),
    /// An igniter's reversal order.
    Reversal(u16),
}

struct Scheduled {
    time: u64,
    seq: u64,
    task: Task,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.time, self.seq) == (other.time, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    /// Reversed, so the `BinaryHeap` pops the earliest task first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.time, other.seq).cmp(&(self.time, self.seq))
    }
}

/// How many breaches of each kind to inject.
pub(crate) struct Plan {
    pub(crate) quantity: usize,
    pub(crate) notional: usize,
    pub(crate) off_market: usize,
    pub(crate) wash: usize,
    pub(crate) storms: usize,
    /// Spoofing accounts, each running a few Coscia-style cycles.
    pub(crate) spoofers: usize,
    /// Sarao-style layered walls.
    pub(crate) walls: usize,
    /// Bursts of fishing orders.
    pub(crate) stuffers: usize,
    /// Accounts marking the close of a quiet instrument.
    pub(crate) closers: usize,
    /// Momentum ignitions: a burst of aggressive orders, then the position turned round.
    pub(crate) igniters: usize,
    /// Employees trading ahead of a client's block.
    pub(crate) front_runs: usize,
    /// New orders per storm account.
    pub(crate) storm_orders: u64,
    /// Deliberate executions per storm account.
    pub(crate) storm_hits: u32,
}

impl Plan {
    /// Breach counts grow mildly (square root) with the size of the day.
    pub(crate) fn for_events(events: u64) -> Plan {
        let scale = (events as f64 / 2_000_000.0).sqrt().max(1.0);
        let n = |min: f64| (min * 1.2 * scale).ceil() as usize;
        let storm_orders = (events / 1000).max(if events >= 200_000 { 1_700 } else { 400 });
        Plan {
            quantity: n(10.0),
            notional: n(10.0),
            off_market: n(10.0),
            wash: 2 * n(10.0),
            storms: ((3.0 * scale).round() as usize).clamp(3, 8),
            spoofers: n(3.0),
            walls: n(6.0),
            stuffers: n(3.0),
            closers: n(2.0),
            igniters: n(6.0),
            front_runs: n(6.0),
            storm_orders,
            storm_hits: ((storm_orders / 600) as u32).clamp(1, 3),
        }
    }
}

/// What the simulation hands back.
pub(crate) struct Outcome {
    pub(crate) writer: EventWriter,
    pub(crate) labels: Vec<Label>,
}

pub(crate) struct Sim<'u> {
    rng: ChaCha8Rng,
    uni: &'u Universe,
    w: EventWriter,
    /// Per account: `account,trader,desk,,` (owner left for enrichment).
    party: Vec<Vec<u8>>,
    names: Vec<Vec<u8>>,
    syms: Vec<Vec<u8>>,
    owner_of: Vec<u32>,
    storm_of: Vec<u16>,
    orders: Vec<Order>,
    free: Vec<u32>,
    books: Vec<Book>,
    cum_weight: Vec<f64>,
    next_id: u64,
    heap: BinaryHeap<Scheduled>,
    sched_seq: u64,
    now: u64,
    start_ns: u64,
    end_ns: u64,
    /// Activity time -> fraction of the session, sampled on a uniform grid.
    warp: Vec<f64>,
    labels: Vec<Label>,
    storms: Vec<Storm>,
    plan: Plan,
    /// Weights of the background actions.
    mix: EventMix,
    spoof_runs: Vec<abuse::SpoofRun>,
    walls: Vec<abuse::Wall>,
    /// (account, instrument, time) of each injected abuse scenario.
    abuse_used: Vec<(u32, u32, u64)>,
    stuffers: Vec<market::Stuffer>,
    closers: Vec<market::Closer>,
    igniters: Vec<ignition::Igniter>,
    /// Resting scenario orders whose fills are recorded as they happen, whoever takes them:
    /// (order id, whose).
    watched: Vec<(u64, Watch)>,
    /// The fills (price, quantity) of the last incoming order matched.
    taken: Vec<(i64, u64)>,
    /// Per (account, instrument) that took liquidity: the time of its last aggressive
    /// execution (kept sparse: most accounts never take on most instruments).
    last_take: surveil_operators::KeyMap<(u32, u32), u64>,
    /// Executions of the instruments whose close is marked, from the open.
    close_log: Vec<Option<Vec<market::Print>>>,
    /// Driven by a recording (`replay`) rather than by simulated participants.
    recorded: bool,
    /// The lowest and highest price the recording executed at, when driven by one.
    recorded_range: Option<(i64, i64)>,
    /// The recorded orders' accounts (first, count), when driven by a recording: the crowd
    /// that takes a scenario's genuine orders there.
    crowd: Option<(u32, u32)>,
    /// The last execution price of each instrument, in cents.
    last_price: Vec<Option<i64>>,
    /// Per instrument a front run watches, the client blocks' first executions since it began.
    block_log: Vec<Option<Vec<front_run::BlockExecution>>>,
    front_runs: Vec<front_run::FrontRun>,
    /// The front runs' own random choices, apart from the rest of the day's: adding them leaves
    /// the day's other draws as they were.
    front_rng: ChaCha8Rng,
}

fn exp1(rng: &mut ChaCha8Rng) -> f64 {
    -(1.0 - rng.random::<f64>()).ln()
}

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1 = 1.0 - rng.random::<f64>();
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Inverse of the normalised cumulative U-shaped intensity, tabulated.
fn build_warp() -> Vec<f64> {
    let cum = |x: f64| x + U_SHAPE * ((2.0 * x - 1.0).powi(3) + 1.0) / 6.0;
    let total = cum(1.0);
    (0..=WARP_POINTS)
        .map(|k| {
            let target = k as f64 / WARP_POINTS as f64 * total;
            let (mut lo, mut hi) = (0.0f64, 1.0f64);
            for _ in 0..60 {
                let mid = 0.5 * (lo + hi);
                if cum(mid) < target {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            0.5 * (lo + hi)
        })
        .collect()
}

/// Caps a background quantity by the size and notional limits; at least one share.
fn cap_qty(qty: u64, price: i64) -> u64 {
    let by_notional = MAX_BG_NOTIONAL_CENTS / price.max(1) as u64;
    qty.min(MAX_BG_QTY).min(by_notional).max(1)
}

impl<'u> Sim<'u> {
    pub(crate) fn new(
        uni: &'u Universe,
        rng: ChaCha8Rng,
        writer: EventWriter,
        start_ns: u64,
        end_ns: u64,
        plan: Plan,
        mix: EventMix,
    ) -> Sim<'u> {
        let party = uni.accounts.iter().map(|a| format!("{},{},{},,", a.name, a.trader, a.desk).into_bytes()).collect();
        let names = uni.accounts.iter().map(|a| a.name.clone().into_bytes()).collect();
        let syms = uni.instruments.iter().map(|i| i.symbol.clone().into_bytes()).collect();
        let owner_of = uni.accounts.iter().map(|a| a.owner).collect();
        let mut cum_weight = Vec::with_capacity(uni.instruments.len());
        let mut acc = 0.0;
        for i in &uni.instruments {
            acc += i.weight;
            cum_weight.push(acc);
        }
        let front_rng = ChaCha8Rng::seed_from_u64(rng.clone().random::<u64>() ^ FRONT_RUN_STREAM);
        let books = uni
            .instruments
            .iter()
            .map(|i| Book {
                bids: BTreeMap::new(),
                asks: BTreeMap::new(),
                live: Vec::new(),
                mm: Vec::new(),
                fair: i.start_ticks as f64 / 100.0,
                sigma: i.sigma,
                last_u: 0.0,
                published: (None, None),
            })
            .collect();
        Sim {
            rng,
            uni,
            w: writer,
            party,
            names,
            syms,
            owner_of,
            storm_of: vec![NO_STORM; uni.accounts.len()],
            orders: Vec::new(),
            free: Vec::new(),
            books,
            cum_weight,
            next_id: 100_000,
            heap: BinaryHeap::new(),
            sched_seq: 0,
            now: start_ns,
            start_ns,
            end_ns,
            warp: build_warp(),
            labels: Vec::new(),
            storms: Vec::new(),
            plan,
            mix,
            spoof_runs: Vec::new(),
            walls: Vec::new(),
            abuse_used: Vec::new(),
            stuffers: Vec::new(),
            closers: Vec::new(),
            igniters: Vec::new(),
            watched: Vec::new(),
            taken: Vec::new(),
            last_take: Default::default(),
            close_log: (0..uni.instruments.len()).map(|_| None).collect(),
            recorded: false,
            recorded_range: None,
            crowd: None,
            last_price: vec![None; uni.instruments.len()],
            block_log: (0..uni.instruments.len()).map(|_| None).collect(),
            front_runs: Vec::new(),
            front_rng,
        }
    }

    // ----- clock -------------------------------------------------------------------------

    fn wall(&self, u: f64) -> u64 {
        let x = u.clamp(0.0, 1.0) * WARP_POINTS as f64;
        let k = (x as usize).min(WARP_POINTS - 1);
        let frac = x - k as f64;
        let f = self.warp[k] + (self.warp[k + 1] - self.warp[k]) * frac;
        self.start_ns + (f * (self.end_ns - self.start_ns) as f64) as u64
    }

    fn schedule(&mut self, time: u64, task: Task) {
        self.sched_seq += 1;
        self.heap.push(Scheduled { time, seq: self.sched_seq, task });
    }

    fn schedule_at_u(&mut self, u: f64, task: Task) {
        let t = self.wall(u);
        self.schedule(t, task);
    }

    /// Runs the day until `target` events have been written.
    pub(crate) fn run(mut self, target: u64) -> Result<Outcome, GenerateError> {
        self.setup();
        self.opening()?;
        let opening_events = self.w.total();
        let mut u = 0.0f64;
        let mut actions = 0u64;
        let mut next_u = self.step_u(u, target, opening_events, actions);
        let mut next_t = self.wall(next_u);
        while self.w.total() < target {
            let special = self.heap.peek().is_some_and(|s| s.time <= next_t);
            if special {
                if let Some(s) = self.heap.pop() {
                    let t = s.time.max(self.now);
                    self.now = t;
                    self.run_task(t, s.task);
                }
            } else {
                u = next_u;
                self.now = next_t.max(self.now);
                let t = self.now;
                self.background(t, u);
                actions += 1;
                next_u = self.step_u(u, target, opening_events, actions);
                next_t = self.wall(next_u);
            }
            self.w.checkpoint()?;
        }
        self.close_labels();
        Ok(Outcome { writer: self.w, labels: self.labels })
    }

    /// The next background action's activity time: exponential steps whose mean spreads the
    /// events still to write over the activity time still left.
    fn step_u(&mut self, u: f64, target: u64, opening: u64, actions: u64) -> f64 {
        let written = self.w.total();
        let remaining = target.saturating_sub(written).max(1) as f64;
        let per_action = if actions >= 64 { (written - opening) as f64 / actions as f64 } else { 2.0 };
        let mean = (1.0 - u) * per_action / remaining;
        let next = u + mean * exp1(&mut self.rng);
        if next < 1.0 { next } else { u + (1.0 - u) * 0.5 }
    }

    // ----- set-up ------------------------------------------------------------------------

    fn setup(&mut self) {
        // Market-maker slots per book.
        for i in 0..self.books.len() {
            let mms = self.uni.coverage[i].mm.clone();
            for a in mms {
                let half_spread = self.rng.random_range(0.00005..0.0003);
                let lots = self.rng.random_range(8..=30);
                self.books[i].mm.push(MmSlot { account: a, tight: true, bid: None, ask: None, half_spread, lots });
                let half_spread = self.rng.random_range(0.0006..0.002);
                let lots = self.rng.random_range(2..=10);
                self.books[i].mm.push(MmSlot { account: a, tight: false, bid: None, ask: None, half_spread, lots });
            }
        }
        // Storm accounts on the busiest instruments.
        let mut busy: Vec<usize> = (0..self.books.len()).collect();
        busy.sort_by(|&a, &b| {
            self.uni.instruments[b].weight.total_cmp(&self.uni.instruments[a].weight).then(a.cmp(&b))
        });
        let pairs = self.plan.storms.min(self.uni.storm_accounts.len()).min(busy.len());
        for (k, (&account, &instrument)) in self.uni.storm_accounts.iter().zip(&busy).take(pairs).enumerate() {
            self.storm_of[account as usize] = k as u16;
            self.storms.push(Storm { account, instrument: instrument as u32, orders: 0, messages: 0, fills: 0 });
        }
        let n = self.plan.storm_orders;
        for k in 0..pairs {
            for j in 0..n {
                let u = 0.01 + 0.93 * (j as f64 + self.rng.random::<f64>()) / n as f64;
                self.schedule_at_u(u, Task::StormOrder { storm: k as u16 });
            }
            for _ in 0..self.plan.storm_hits {
                let u = self.rng.random_range(0.05..0.85);
                self.schedule_at_u(u, Task::StormHit { storm: k as u16, attempt: 0 });
            }
        }
        let breaches = [
            (self.plan.quantity, Task::QuantityBreach),
            (self.plan.notional, Task::NotionalBreach),
            (self.plan.off_market, Task::OffMarketBreach),
            (self.plan.wash / 2, Task::WashSameAccount),
            (self.plan.wash - self.plan.wash / 2, Task::WashSameOwner),
            (self.plan.spoofers, Task::SpoofStart),
            (self.plan.walls, Task::WallStart),
            (self.plan.stuffers, Task::StuffStart),
            (self.plan.igniters, Task::IgniteStart { attempt: 0 }),
        ];
        for (count, task) in breaches {
            for _ in 0..count {
                let u = self.rng.random_range(0.02..0.9);
                self.schedule_at_u(u, task);
            }
        }
        for _ in 0..self.plan.front_runs {
            let u = self.front_rng.random_range(0.05..0.85);
            self.schedule_at_u(u, Task::FrontRunStart);
        }
        self.plan_closers();
    }

    /// The opening book: market makers quote, a few resting orders join.
    fn opening(&mut self) -> Result<(), GenerateError> {
        for i in 0..self.books.len() {
            let t = self.start_ns + i as u64 * 1_000;
            self.now = t;
            for m in 0..self.books[i].mm.len() {
                self.mm_quote(t, i, m, Side::Buy);
                self.mm_quote(t, i, m, Side::Sell);
            }
            for _ in 0..8 {
                self.passive(t, i);
            }
            self.publish(t, i);
            self.w.checkpoint()?;
        }
        Ok(())
    }

    // ----- book primitives ---------------------------------------------------------------

    fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    #[allow(clippy::too_many_arguments)]
    fn alloc(&mut self, i: usize, account: u32, side: Side, price: i64, qty: u64, class: Class) -> u32 {
        let order = Order {
            id: self.fresh_id(),
            account,
            owner: self.owner_of[account as usize],
            remaining: qty,
            filled: 0,
            price,
            live_pos: NO_POS,
            instrument: i as u32,
            side,
            class,
            alive: true,
        };
        match self.free.pop() {
            Some(idx) => {
                self.orders[idx as usize] = order;
                idx
            }
            None => {
                self.orders.push(order);
                (self.orders.len() - 1) as u32
            }
        }
    }

    fn release(&mut self, idx: u32) {
        self.orders[idx as usize].alive = false;
        self.free.push(idx);
    }

    fn alive(&self, r: Option<(u32, u64)>) -> Option<u32> {
        r.filter(|&(idx, id)| {
            let o = &self.orders[idx as usize];
            o.alive && o.id == id
        })
        .map(|(idx, _)| idx)
    }

    fn best(&self, i: usize, side: Side) -> Top {
        let b = &self.books[i];
        match side {
            Side::Buy => b.bids.last_key_value(),
            Side::Sell => b.asks.first_key_value(),
        }
        .map(|(p, l)| (*p, l.total))
    }

    /// Mid of the book in ticks, or the fair value when a side is empty.
    fn mid(&self, i: usize) -> f64 {
        match (self.best(i, Side::Buy), self.best(i, Side::Sell)) {
            (Some((b, _)), Some((a, _))) => (b + a) as f64 / 2.0,
            _ => self.books[i].fair * 100.0,
        }
    }

    /// Prices within 1% of the mid.
    fn band(&self, i: usize) -> (i64, i64) {
        let m = self.mid(i);
        (((m * 0.99).ceil() as i64).max(1), (m * 1.01).floor() as i64)
    }

    /// `desired` moved into the band and onto the passive side of the book, if possible.
    fn passive_price(&self, i: usize, side: Side, desired: i64) -> Option<i64> {
        let (lo, hi) = self.band(i);
        let (lo, hi) = match side {
            Side::Buy => (lo, self.best(i, Side::Sell).map_or(hi, |(a, _)| hi.min(a - 1))),
            Side::Sell => (self.best(i, Side::Buy).map_or(lo, |(b, _)| lo.max(b + 1)), hi),
        };
        (lo <= hi && lo > 0).then(|| desired.clamp(lo, hi))
    }

    fn rest(&mut self, i: usize, idx: u32) {
        let o = &self.orders[idx as usize];
        let (side, price, qty, class) = (o.side, o.price, o.remaining, o.class);
        let book = &mut self.books[i];
        let levels = match side {
            Side::Buy => &mut book.bids,
            Side::Sell => &mut book.asks,
        };
        let level = levels.entry(price).or_default();
        level.queue.push_back(idx);
        level.total += qty;
        if class == Class::Background {
            self.orders[idx as usize].live_pos = book.live.len() as u32;
            book.live.push(idx);
        }
    }

    fn unrest(&mut self, i: usize, idx: u32) {
        let o = &self.orders[idx as usize];
        let (side, price, qty, pos) = (o.side, o.price, o.remaining, o.live_pos);
        let book = &mut self.books[i];
        let levels = match side {
            Side::Buy => &mut book.bids,
            Side::Sell => &mut book.asks,
        };
        if let Some(level) = levels.get_mut(&price) {
            if let Some(p) = level.queue.iter().position(|&x| x == idx) {
                level.queue.remove(p);
                level.total -= qty;
            }
            if level.queue.is_empty() {
                levels.remove(&price);
            }
        }
        if pos != NO_POS {
            book.live.swap_remove(pos as usize);
            if let Some(&moved) = book.live.get(pos as usize) {
                self.orders[moved as usize].live_pos = pos;
            }
            self.orders[idx as usize].live_pos = NO_POS;
        }
    }

    /// Writes a `quote` if the top of book differs from the last one written.
    fn publish(&mut self, t: u64, i: usize) {
        let top = (self.best(i, Side::Buy), self.best(i, Side::Sell));
        if top != self.books[i].published {
            self.books[i].published = top;
            if top.0.is_some() || top.1.is_some() {
                self.w.quote(t, &self.syms[i], top.0, top.1);
            }
        }
    }

    // ----- order events ------------------------------------------------------------------

    fn note_storm(&mut self, account: u32, kind: Kind) {
        let s = self.storm_of[account as usize];
        if s != NO_STORM {
            let st = &mut self.storms[s as usize];
            match kind {
                Kind::New => {
                    st.orders += 1;
                    st.messages += 1;
                }
                Kind::Replace | Kind::Cancel => st.messages += 1,
                Kind::Fill => st.fills += 1,
                _ => {}
            }
        }
    }

    fn emit(&mut self, kind: Kind, t: u64, idx: u32, price: Option<i64>, qty: Option<u64>, aggressor: Option<Side>) {
        let o = &self.orders[idx as usize];
        let (account, i) = (o.account, o.instrument as usize);
        self.w.order(kind, t, &self.syms[i], o.id, &self.party[account as usize], o.side, price, qty, aggressor);
        self.note_storm(account, kind);
    }

    /// Enters a new order: writes `new`, matches it, then rests it or cancels the remainder.
    #[allow(clippy::too_many_arguments)]
    fn submit(
        &mut self,
        t: u64,
        i: usize,
        account: u32,
        side: Side,
        price: i64,
        qty: u64,
        class: Class,
        rest: Rest,
    ) -> Option<u32> {
        let idx = self.alloc(i, account, side, price, qty, class);
        self.emit(Kind::New, t, idx, Some(price), Some(qty), None);
        self.execute(t, i, idx);
        if self.orders[idx as usize].remaining == 0 {
            self.release(idx);
            None
        } else if rest == Rest::Ioc {
            self.emit(Kind::Cancel, t, idx, None, None, None);
            self.release(idx);
            None
        } else {
            self.rest(i, idx);
            Some(idx)
        }
    }

    /// Price-time-priority matching of an incoming order against the opposite side, always
    /// at resting prices. Self-trade prevention by beneficial owner cancels the resting order;
    /// storm orders are pulled by their owner rather than hit (that is the storm behaviour).
    fn execute(&mut self, t: u64, i: usize, idx: u32) {
        self.taken.clear();
        loop {
            let o = &self.orders[idx as usize];
            let (side, limit, owner, class) = (o.side, o.price, o.owner, o.class);
            if o.remaining == 0 {
                break;
            }
            let book = &self.books[i];
            let opp = match side {
                Side::Buy => book.asks.first_key_value(),
                Side::Sell => book.bids.last_key_value(),
            };
            let Some((&lp, level)) = opp else { break };
            let crosses = match side {
                Side::Buy => lp <= limit,
                Side::Sell => lp >= limit,
            };
            if !crosses {
                break;
            }
            let Some(&r) = level.queue.front() else { break };
            let ro = &self.orders[r as usize];
            if ro.owner == owner || (ro.class == Class::Storm && class != Class::Storm) {
                // The venue's cancel (self-trade prevention), or the storm owner pulling it.
                if ro.owner == owner {
                    let (id, account, side) = (ro.id, ro.account, ro.side);
                    self.w.venue_cancel(t, &self.syms[i], id, &self.party[account as usize], side);
                } else {
                    self.emit(Kind::Cancel, t, r, None, None, None);
                }
                self.unrest(i, r);
                self.release(r);
                self.publish(t, i);
                continue;
            }
            let q = self.orders[idx as usize].remaining.min(ro.remaining);
            let (resting_id, taker) = (ro.id, self.orders[idx as usize].account);
            self.taken.push((lp, q));
            self.last_take.insert((taker, i as u32), t);
            self.last_price[i] = Some(lp);
            if self.block_log[i].is_some() {
                self.note_block_execution(t, i, idx);
                self.note_block_execution(t, i, r);
            }
            if !self.watched.is_empty() {
                self.note_watched_fill(t, resting_id, lp, q);
            }
            self.emit(Kind::Fill, t, r, Some(lp), Some(q), Some(side));
            self.emit(Kind::Fill, t, idx, Some(lp), Some(q), Some(side));
            let (buy, sell) = if side == Side::Buy { (idx, r) } else { (r, idx) };
            let (bo, so) = (&self.orders[buy as usize], &self.orders[sell as usize]);
            if let Some(log) = self.close_log[i].as_mut() {
                log.push(market::Print { time: t, price: lp, quantity: q, buyer: bo.account, seller: so.account });
            }
            self.w.trade(
                t,
                &self.syms[i],
                lp,
                q,
                side,
                &self.names[bo.account as usize],
                &self.names[so.account as usize],
                bo.id,
                so.id,
            );
            for x in [idx, r] {
                let o = &mut self.orders[x as usize];
                o.remaining -= q;
                o.filled += q;
            }
            let book = &mut self.books[i];
            let levels = match side {
                Side::Buy => &mut book.asks,
                Side::Sell => &mut book.bids,
            };
            let mut emptied = false;
            if let Some(level) = levels.get_mut(&lp) {
                level.total -= q;
                if self.orders[r as usize].remaining == 0 {
                    level.queue.pop_front();
                    emptied = level.queue.is_empty();
                    if emptied {
                        levels.remove(&lp);
                    }
                }
            }
            if self.orders[r as usize].remaining == 0 {
                // Already off the price level; drop it from the live list too.
                let pos = self.orders[r as usize].live_pos;
                if pos != NO_POS {
                    let book = &mut self.books[i];
                    book.live.swap_remove(pos as usize);
                    if let Some(&moved) = book.live.get(pos as usize) {
                        self.orders[moved as usize].live_pos = pos;
                    }
                }
                self.release(r);
            }
            if emptied && self.orders[idx as usize].remaining > 0 {
                // The sweep continues at the next level: show the new touch first.
                self.publish(t, i);
            }
        }
    }

    /// Records a fill of a watched resting order.
    fn note_watched_fill(&mut self, t: u64, id: u64, price: i64, quantity: u64) {
        match self.watched.iter().find(|w| w.0 == id).map(|w| w.1) {
            Some(Watch::Genuine(run)) => self.note_genuine_fill(run, quantity),
            Some(Watch::Reversal(run)) => self.note_reversal_fill(t, run, id, price, quantity),
            None => {}
        }
    }

    fn cancel(&mut self, t: u64, i: usize, idx: u32, partial: Option<u64>) {
        match partial {
            Some(q) if q < self.orders[idx as usize].remaining => {
                self.emit(Kind::Cancel, t, idx, None, Some(q), None);
                let o = &mut self.orders[idx as usize];
                o.remaining -= q;
                let (side, price) = (o.side, o.price);
                let book = &mut self.books[i];
                let levels = match side {
                    Side::Buy => &mut book.bids,
                    Side::Sell => &mut book.asks,
                };
                if let Some(level) = levels.get_mut(&price) {
                    level.total -= q;
                }
            }
            _ => {
                self.emit(Kind::Cancel, t, idx, None, None, None);
                self.unrest(i, idx);
                self.release(idx);
            }
        }
    }

    /// Cancel/replace of an unfilled resting order to a passive price and a new quantity.
    /// A smaller quantity at the same price keeps time priority; anything else loses it.
    fn replace(&mut self, t: u64, i: usize, idx: u32, price: i64, qty: u64) {
        self.emit(Kind::Replace, t, idx, Some(price), Some(qty), None);
        let o = &self.orders[idx as usize];
        if o.price == price && qty <= o.remaining {
            let delta = o.remaining - qty;
            let side = o.side;
            self.orders[idx as usize].remaining = qty;
            let book = &mut self.books[i];
            let levels = match side {
                Side::Buy => &mut book.bids,
                Side::Sell => &mut book.asks,
            };
            if let Some(level) = levels.get_mut(&price) {
                level.total -= delta;
            }
        } else {
            self.unrest(i, idx);
            let o = &mut self.orders[idx as usize];
            o.price = price;
            o.remaining = qty;
            self.rest(i, idx);
        }
    }

    // ----- participants ------------------------------------------------------------------

    fn pick_instrument(&mut self) -> usize {
        let x = self.rng.random::<f64>();
        self.pick_instrument_with(x)
    }

    /// The instrument at `x` (uniform in 0..1) of the activity weights.
    fn pick_instrument_with(&self, x: f64) -> usize {
        let total = self.cum_weight.last().copied().unwrap_or(0.0);
        self.cum_weight.partition_point(|&c| c <= x * total).min(self.cum_weight.len() - 1)
    }

    fn pick_role(&mut self, i: usize, role: Role) -> u32 {
        let c = &self.uni.coverage[i];
        let list = match role {
            Role::Hft => &c.hft,
            Role::Institutional => &c.inst,
            _ => &c.retail,
        };
        list[self.rng.random_range(0..list.len())]
    }

    /// Another participant to take an order: a proprietary account of the simulated market,
    /// or over a recording one of the recorded orders' accounts (so that the takes are spread
    /// over the crowd, as they are in the market, not concentrated on a few accounts).
    fn pick_taker(&mut self, i: usize) -> u32 {
        match self.crowd {
            Some((first, count)) if count > 0 => first + self.rng.random_range(0..count),
            _ => self.pick_role(i, Role::Hft),
        }
    }

    fn order_qty(&mut self, role: Role, price: i64) -> u64 {
        let q = match role {
            Role::Retail => {
                let q = (self.rng.random_range(0.0f64..6.2)).exp() as u64 + 1;
                if q >= 100 { q / 10 * 10 } else { q }
            }
            Role::Hft => self.rng.random_range(1..=10) * 100,
            Role::Institutional => {
                let lots = (self.rng.random_range(0.0f64..4.6)).exp() as u64 + 1;
                lots * 100
            }
            Role::MarketMaker | Role::Storm | Role::Employee => self.rng.random_range(1..=5) * 100,
        };
        cap_qty(q, price)
    }

    /// Moves the fair value along its random walk up to activity time `u`.
    fn drift(&mut self, i: usize, u: f64) {
        let z = normal(&mut self.rng);
        let b = &mut self.books[i];
        let dt = (u - b.last_u).max(0.0);
        b.last_u = u;
        b.fair = (b.fair * (b.sigma * dt.sqrt() * z).exp()).max(1.0);
    }

    fn background(&mut self, t: u64, u: f64) {
        let i = self.pick_instrument();
        self.drift(i, u);
        let live = self.books[i].live.len() as f64;
        let mix = &self.mix;
        let weights = [mix.market_maker, mix.passive, mix.take, mix.cancel * live, mix.replace * live];
        let total: f64 = weights.iter().sum();
        let mut x = self.rng.random::<f64>() * total;
        let choice = weights
            .iter()
            .position(|w| {
                x -= w;
                x < 0.0
            })
            .unwrap_or(weights.len() - 1);
        match choice {
            0 => self.mm_action(t, i),
            1 => self.passive(t, i),
            2 => self.take(t, i),
            3 => self.cancel_random(t, i),
            _ => self.replace_random(t, i),
        }
        self.publish(t, i);
    }

    fn mm_action(&mut self, t: u64, i: usize) {
        let n = self.books[i].mm.len();
        if n == 0 {
            return self.passive(t, i);
        }
        // Slots alternate tight, deep per market maker.
        let tight = self.rng.random_bool(P_TIGHT);
        let m = (self.rng.random_range(0..n / 2) * 2 + usize::from(!tight)).min(n - 1);
        let side = if self.rng.random_bool(0.5) { Side::Buy } else { Side::Sell };
        self.mm_quote(t, i, m, side);
    }

    /// A market maker re-centres one side of its quote on the fair value.
    fn mm_quote(&mut self, t: u64, i: usize, m: usize, side: Side) {
        let slot = &self.books[i].mm[m];
        let (account, half, lots, tight) = (slot.account, slot.half_spread, slot.lots, slot.tight);
        let current = self.alive(match side {
            Side::Buy => slot.bid,
            Side::Sell => slot.ask,
        });
        let fair = self.books[i].fair * 100.0;
        let hs = (fair * half).max(1.0);
        let desired = match side {
            Side::Buy => (fair - hs).floor() as i64,
            Side::Sell => (fair + hs).ceil() as i64,
        };
        let Some(price) = self.passive_price(i, side, desired) else {
            return;
        };
        let qty = cap_qty(self.rng.random_range(lots / 2 + 1..=lots + lots / 2) * 100, price);
        let placed = match current {
            None => self.submit(t, i, account, side, price, qty, Class::MarketMaker, Rest::Rest),
            Some(idx) => {
                let o = &self.orders[idx as usize];
                let (cur_price, cur_qty, filled) = (o.price, o.remaining, o.filled);
                // Deep quotes are only moved once they are a third of the spread off target.
                let tolerance = if tight { 0 } else { (hs / 3.0) as i64 };
                if (cur_price - price).abs() <= tolerance {
                    if tight && filled == 0 && cur_qty != qty && self.rng.random_bool(0.3) {
                        self.replace(t, i, idx, price, qty);
                    } else {
                        self.passive(t, i);
                    }
                    Some(idx)
                } else if filled == 0 && self.rng.random_bool(0.12) {
                    self.replace(t, i, idx, price, cur_qty);
                    Some(idx)
                } else {
                    self.cancel(t, i, idx, None);
                    self.submit(t, i, account, side, price, qty, Class::MarketMaker, Rest::Rest)
                }
            }
        };
        let r = placed.map(|idx| (idx, self.orders[idx as usize].id));
        let slot = &mut self.books[i].mm[m];
        match side {
            Side::Buy => slot.bid = r,
            Side::Sell => slot.ask = r,
        }
    }

    /// A resting limit order from an institution, a retail client or an HFT.
    fn passive(&mut self, t: u64, i: usize) {
        let x = self.rng.random::<f64>();
        let role = if x < 0.55 {
            Role::Institutional
        } else if x < 0.9 {
            Role::Retail
        } else {
            Role::Hft
        };
        let account = self.pick_role(i, role);
        let side = if self.rng.random_bool(0.5) { Side::Buy } else { Side::Sell };
        let sign = if side == Side::Buy { 1 } else { -1 };
        let desired = match (self.best(i, side), self.best(i, side.opposite())) {
            (Some((p, _)), opp) => {
                let spread = opp.map_or(0, |(a, _)| (a - p).abs());
                let x = self.rng.random::<f64>();
                if spread >= 2 && x < 0.04 {
                    p + sign * self.rng.random_range(1..spread)
                } else if x < 0.1 {
                    p
                } else {
                    // Behind the touch, depth scaling with the price (~6 bp on average).
                    let mean = (p as f64 * 0.0006).max(1.0);
                    p - sign * (1 + (exp1(&mut self.rng) * mean) as i64)
                }
            }
            (None, _) => {
                let fair = self.books[i].fair * 100.0;
                let off = fair * self.rng.random_range(0.0003..0.004);
                (fair - sign as f64 * off).round() as i64
            }
        };
        let Some(price) = self.passive_price(i, side, desired) else {
            return;
        };
        let qty = self.order_qty(role, price);
        self.submit(t, i, account, side, price, qty, Class::Background, Rest::Rest);
    }

    /// A marketable limit order, leaning towards the fair value.
    fn take(&mut self, t: u64, i: usize) {
        let x = self.rng.random::<f64>();
        let role = if x < 0.45 {
            Role::Retail
        } else if x < 0.75 {
            Role::Institutional
        } else {
            Role::Hft
        };
        let mid = self.mid(i);
        let lean = ((self.books[i].fair * 100.0 - mid) / mid * 30.0).clamp(-0.35, 0.35);
        let side = if self.rng.random_bool(0.5 + lean) { Side::Buy } else { Side::Sell };
        let Some((touch, _)) = self.best(i, side.opposite()) else {
            return self.passive(t, i);
        };
        let (lo, hi) = self.band(i);
        let extra = match self.rng.random_range(0..10) {
            0..=5 => 0,
            6..=8 => self.rng.random_range(1..=3),
            _ => self.rng.random_range(4..=10),
        };
        let price = match side {
            Side::Buy => (touch + extra).min(hi).max(touch),
            Side::Sell => (touch - extra).max(lo).min(touch),
        };
        let account = self.pick_role(i, role);
        let qty = self.order_qty(role, price);
        let rest = match role {
            Role::Hft => Rest::Ioc,
            Role::Retail if self.rng.random_bool(0.15) => Rest::Ioc,
            _ => Rest::Rest,
        };
        self.submit(t, i, account, side, price, qty, Class::Background, rest);
    }

    fn cancel_random(&mut self, t: u64, i: usize) {
        let n = self.books[i].live.len();
        if n == 0 {
            return self.passive(t, i);
        }
        let idx = self.books[i].live[self.rng.random_range(0..n)];
        let remaining = self.orders[idx as usize].remaining;
        let partial = (remaining >= 200 && self.rng.random_bool(0.12))
            .then(|| (remaining * self.rng.random_range(1..=9) / 10).max(1));
        self.cancel(t, i, idx, partial);
    }

    fn replace_random(&mut self, t: u64, i: usize) {
        let n = self.books[i].live.len();
        if n == 0 {
            return self.passive(t, i);
        }
        let idx = self.books[i].live[self.rng.random_range(0..n)];
        let o = &self.orders[idx as usize];
        let (side, price, remaining, filled) = (o.side, o.price, o.remaining, o.filled);
        if filled > 0 {
            return self.cancel(t, i, idx, None);
        }
        let mut new_price = price;
        if self.rng.random_bool(0.6) {
            let step = self.rng.random_range(1..=3);
            let desired = if self.rng.random_bool(0.5) { price + step } else { price - step };
            match self.passive_price(i, side, desired) {
                Some(p) => new_price = p,
                None => return self.cancel(t, i, idx, None),
            }
        }
        let mut qty = remaining;
        if new_price == price || self.rng.random_bool(0.3) {
            let f = self.rng.random_range(0.5..1.6);
            qty = cap_qty(((remaining as f64 * f) as u64).max(1), new_price);
            if qty == remaining && new_price == price {
                qty = if remaining > 1 { remaining - 1 } else { 2 };
            }
        }
        self.replace(t, i, idx, new_price, cap_qty(qty, new_price));
    }

    // ----- injected breaches -------------------------------------------------------------

    fn run_task(&mut self, t: u64, task: Task) {
        match task {
            Task::Cancel { idx, id } => {
                if let Some(idx) = self.alive(Some((idx, id))) {
                    let i = self.orders[idx as usize].instrument as usize;
                    self.cancel(t, i, idx, None);
                    self.publish(t, i);
                }
            }
            Task::StormOrder { storm } => self.storm_order(t, storm as usize),
            Task::StormHit { storm, attempt } => self.storm_hit(t, storm as usize, attempt),
            Task::QuantityBreach => self.large_order(t, false),
            Task::NotionalBreach => self.large_order(t, true),
            Task::OffMarketBreach => self.off_market(t),
            Task::WashSameAccount => self.wash(t, false),
            Task::WashSameOwner => self.wash(t, true),
            Task::SpoofStart => self.spoof_start(t),
            Task::SpoofStep { run, step } => self.spoof_step(t, run, step),
            Task::WallStart => self.wall_start(t),
            Task::WallStep { wall, step } => self.wall_step(t, wall, step),
            Task::StuffStart => self.stuff_start(t),
            Task::StuffStep { run } => self.stuff_step(t, run),
            Task::StuffCancel { run, idx, id } => self.stuff_cancel(t, run, idx, id),
            Task::CloseStart { instrument } => self.close_start(t, instrument),
            Task::CloseStep { closer } => self.close_step(t, closer),
            Task::IgniteStart { attempt } => self.ignite_start(t, attempt),
            Task::IgniteStep { run, step } => self.ignite_step(t, run, step),
            Task::FrontRunStart => self.front_run_start(t),
            Task::FrontRunBlock { run } => self.front_run_block(t, run),
            Task::FrontRunJudge { run } => self.front_run_judge(run),
        }
    }

    fn label(&mut self, rule: &'static str, i: usize, account: u32, time: u64, order_id: Option<u64>, detail: String) {
        self.labels.push(Label { rule, instrument: i as u32, account, time, order_id, detail });
    }

    /// A quantity-limit (150k..1M shares, notional under 5M) or notional-limit (<= 50k shares,
    /// notional over 5M) order: passive, a few ticks behind the touch, cancelled later.
    fn large_order(&mut self, t: u64, notional: bool) {
        let candidates: Vec<usize> = (0..self.books.len())
            .filter(|&i| {
                let fair = self.books[i].fair;
                if notional { fair >= 115.0 } else { fair <= 30.0 }
            })
            .collect();
        if candidates.is_empty() {
            return;
        }
        let i = candidates[self.rng.random_range(0..candidates.len())];
        let side = if self.rng.random_bool(0.5) { Side::Buy } else { Side::Sell };
        let sign = if side == Side::Buy { 1 } else { -1 };
        let behind = self.rng.random_range(1..=5);
        let desired = match self.best(i, side) {
            Some((p, _)) => p - sign * behind,
            None => (self.books[i].fair * 100.0).round() as i64 - sign * (behind + 2),
        };
        let Some(price) = self.passive_price(i, side, desired) else {
            return;
        };
        let p = price as u64;
        let qty = if notional {
            // > 5,000,000 USD (500,000,000 cents) with <= 50,000 shares.
            let min = (530_000_000 / p + 1).div_ceil(100) * 100;
            if min > 50_000 {
                return;
            }
            self.rng.random_range(min..=(min * 2).min(50_000))
        } else {
            // >= 150,000 shares with notional <= 4,800,000 USD.
            let max = (480_000_000 / p).min(1_000_000) / 100 * 100;
            if max < 150_000 {
                return;
            }
            self.rng.random_range(1_500..=max / 100) * 100
        };
        let account = self.pick_role(i, Role::Institutional);
        let Some(idx) = self.submit(t, i, account, side, price, qty, Class::Special, Rest::Rest) else {
            return;
        };
        let id = self.orders[idx as usize].id;
        let notional_cents = price as u128 * qty as u128;
        let (rule, detail) = if notional {
            ("order_notional_limit", format!("notional {} USD > 5000000", price_text_u128(notional_cents)))
        } else {
            ("order_quantity_limit", format!("quantity {qty} > 100000"))
        };
        self.label(rule, i, account, t, Some(id), detail);
        let life = self.rng.random_range(2 * NS_PER_S..90 * NS_PER_S);
        self.schedule(t + life, Task::Cancel { idx, id });
        self.publish(t, i);
    }

    /// A fat-finger order far through the opposite touch, pulled at once (never executes).
    fn off_market(&mut self, t: u64) {
        let i = self.pick_instrument();
        let (Some((bid, _)), Some((ask, _))) = (self.best(i, Side::Buy), self.best(i, Side::Sell)) else {
            return;
        };
        let side = if self.rng.random_bool(0.5) { Side::Buy } else { Side::Sell };
        let (price, detail) = match side {
            Side::Buy => {
                let f = self.rng.random_range(1.12..1.35);
                let p = (ask as f64 * f).ceil() as i64;
                (
                    p,
                    format!(
                        "buy at {} vs best ask {} (+{:.1}%)",
                        price_text(p),
                        price_text(ask),
                        (p as f64 / ask as f64 - 1.0) * 100.0
                    ),
                )
            }
            Side::Sell => {
                let f = self.rng.random_range(0.65..0.88);
                let p = ((bid as f64 * f).floor() as i64).max(1);
                (
                    p,
                    format!(
                        "sell at {} vs best bid {} ({:.1}%)",
                        price_text(p),
                        price_text(bid),
                        (p as f64 / bid as f64 - 1.0) * 100.0
                    ),
                )
            }
        };
        let role = if self.rng.random_bool(0.5) { Role::Institutional } else { Role::Retail };
        let account = self.pick_role(i, role);
        let qty = cap_qty(self.rng.random_range(1..=10) * 100, price);
        let idx = self.alloc(i, account, side, price, qty, Class::Special);
        self.emit(Kind::New, t, idx, Some(price), Some(qty), None);
        let id = self.orders[idx as usize].id;
        let t2 = t + self.rng.random_range(20_000..400_000);
        self.emit(Kind::Cancel, t2, idx, None, None, None);
        self.now = t2;
        self.release(idx);
        self.label("off_market_price", i, account, t, Some(id), detail);
    }

    /// A wash trade inside the spread: the same account, or two accounts of one owner.
    fn wash(&mut self, t: u64, same_owner: bool) {
        let i = self.pick_instrument();
        let (Some((bid, _)), Some((ask, _))) = (self.best(i, Side::Buy), self.best(i, Side::Sell)) else {
            return;
        };
        let (buyer, seller) = if same_owner {
            if self.uni.multi_owners.is_empty() {
                return;
            }
            let accts = &self.uni.multi_owners[self.rng.random_range(0..self.uni.multi_owners.len())];
            let a = self.rng.random_range(0..accts.len());
            let b = (a + self.rng.random_range(1..accts.len())) % accts.len();
            (accts[a], accts[b])
        } else {
            let role = if self.rng.random_bool(0.6) { Role::Institutional } else { Role::Retail };
            let a = self.pick_role(i, role);
            (a, a)
        };
        let price = self.rng.random_range(bid..=ask);
        let qty = cap_qty(self.rng.random_range(1..=20) * 100, price);
        let (buy_id, sell_id) = (self.fresh_id(), self.fresh_id());
        let aggressor = if self.rng.random_bool(0.5) { Side::Buy } else { Side::Sell };
        let buy = (buy_id, buyer, Side::Buy);
        let sell = (sell_id, seller, Side::Sell);
        let (resting, taking) = if aggressor == Side::Buy { (sell, buy) } else { (buy, sell) };
        for (id, account, side) in [resting, taking] {
            self.w.order(
                Kind::Fill,
                t,
                &self.syms[i],
                id,
                &self.party[account as usize],
                side,
                Some(price),
                Some(qty),
                Some(aggressor),
            );
        }
        self.w.trade(
            t,
            &self.syms[i],
            price,
            qty,
            aggressor,
            &self.names[buyer as usize],
            &self.names[seller as usize],
            buy_id,
            sell_id,
        );
        if let Some(log) = self.close_log[i].as_mut() {
            log.push(market::Print { time: t, price, quantity: qty, buyer, seller });
        }
        let detail = if same_owner {
            format!(
                "buyer {} and seller {} share owner {}",
                self.uni.accounts[buyer as usize].name,
                self.uni.accounts[seller as usize].name,
                self.uni.owners[self.owner_of[buyer as usize] as usize]
            )
        } else {
            format!("buyer and seller are both {}", self.uni.accounts[buyer as usize].name)
        };
        self.label("self_trade", i, buyer, t, Some(buy_id), detail);
    }

    /// One storm message pair: a small passive order behind the touch, cancelled shortly after.
    fn storm_order(&mut self, t: u64, s: usize) {
        let (account, i) = (self.storms[s].account, self.storms[s].instrument as usize);
        let side = if self.rng.random_bool(0.5) { Side::Buy } else { Side::Sell };
        let sign = if side == Side::Buy { 1 } else { -1 };
        let behind = self.rng.random_range(1..=6);
        let desired = match self.best(i, side) {
            Some((p, _)) => p - sign * behind,
            None => (self.books[i].fair * 100.0).round() as i64 - sign * (behind + 2),
        };
        let Some(price) = self.passive_price(i, side, desired) else {
            return;
        };
        let qty = self.order_qty(Role::Storm, price);
        if let Some(idx) = self.submit(t, i, account, side, price, qty, Class::Storm, Rest::Rest) {
            let id = self.orders[idx as usize].id;
            let life = self.rng.random_range(5 * NS_PER_MS..900 * NS_PER_MS);
            self.schedule(t + life, Task::Cancel { idx, id });
        }
        self.publish(t, i);
    }

    /// One of the storm account's rare executions: a small immediate-or-cancel order at the
    /// opposite touch. Retried a second later if it found nothing to trade with.
    fn storm_hit(&mut self, t: u64, s: usize, attempt: u32) {
        let (account, i) = (self.storms[s].account, self.storms[s].instrument as usize);
        let fills_before = self.storms[s].fills;
        let side = if self.rng.random_bool(0.5) { Side::Buy } else { Side::Sell };
        let book = &self.books[i];
        let front = match side {
            Side::Buy => book.asks.first_key_value(),
            Side::Sell => book.bids.last_key_value(),
        }
        .and_then(|(p, l)| l.queue.front().map(|&r| (*p, self.orders[r as usize].remaining)));
        if let Some((price, front_qty)) = front {
            let qty = front_qty.min(100);
            self.submit(t, i, account, side, price, qty, Class::Storm, Rest::Ioc);
            self.publish(t, i);
        }
        if self.storms[s].fills == fills_before && attempt < 20 {
            self.schedule(t + NS_PER_S, Task::StormHit { storm: s as u16, attempt: attempt + 1 });
        }
    }

    /// Labels the storms that did breach the order-to-trade ratio.
    fn close_labels(&mut self) {
        self.close_labels_marking();
        for s in 0..self.storms.len() {
            let st = &self.storms[s];
            let (orders, messages, fills) = (st.orders, st.messages, st.fills);
            if fills == 0 || orders as f64 / fills as f64 - 1.0 <= 300.0 {
                continue;
            }
            let (account, i) = (st.account, st.instrument as usize);
            let detail = format!("{orders} orders, {messages} order messages, {fills} executions");
            self.label("order_to_trade_ratio", i, account, self.end_ns, None, detail);
        }
    }
}

fn price_text_u128(cents: u128) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}
