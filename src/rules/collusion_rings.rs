//! Collusion rings: accounts that pass the same quantity of a security round a closed loop, each
//! selling on what it bought, so that volume prints while no member's position changes.
//!
//! Circular trading is a wash trade spread over several accounts: A sells to B, B to C, C back
//! to A, and the security ends where it started. MAR Annex I (1)(a) and Delegated Regulation
//! 2016/522 Annex II (1)(c) list transactions without a change of beneficial ownership, and
//! arrangements among parties acting in collusion, among the indicators of manipulation; SEC
//! Rule 10b-5 cases call the scheme "matched" or circular trading. Victor & Weintraud (2021,
//! "Detecting and quantifying wash trading on decentralized cryptocurrency exchanges", WWW '21)
//! find such rings as strongly connected components of the account trade graph, per security
//! and time window (an hour, a day), whose members' net positions all return to within 1 % of
//! zero.
//!
//! # Logic (per instrument and window)
//!
//! 1. Every print between two named accounts is a transfer of its quantity from the seller to
//!    the buyer, in each window it falls in: the hour (`window`, tumbling from the epoch) and
//!    the session (local calendar day).
//! 2. The rings of a window are the pass-through rings of its transfers
//!    ([`surveil_operators::PassThroughRings`]): strongly connected components of the transfers
//!    of one quantity through accounts that passed it on to someone other than their seller,
//!    with at least `min_members` accounts, each of which bought and sold that quantity as often
//!    as each other within `net_tolerance` (1 %). Taking one quantity at a time keeps the
//!    market's giant component (market makers trade with everyone) from hiding a ring; an
//!    account with more than `max_counterparties` (10) distinct counterparties in the quantity
//!    is its hub, and none of its transfers of it is a ring's.
//! 3. A ring counts once the quantity has gone round `min_laps` times: every member bought and
//!    sold it at least that often, and the ring's prints are at least that many times its
//!    members. 2 by default, as one lap is what chance makes on a busy day (three clients each
//!    buying and selling one round lot of a popular size, in a loop).
//! 4. An hour's ring is alerted when it forms, at the end of the step of the print that closed
//!    it; an **amended** or **downgraded** version of the same alert when accounts join or
//!    leave it. A ring opens again while the quantity goes round once more (the first member
//!    has sold before it has bought back): that is not yet a verdict. A **retraction**, at the
//!    hour's end, when the ring is open then: a member's later trades of that size left its
//!    position open, so the quantity did not come home after all. A ring closed when its hour
//!    ends stands.
//! 5. A session's rings are judged when it ends (its last nanosecond), as they stand then: over
//!    hours, chance closes a ring of popular round lots for a while and opens it again. One with
//!    the same members as a ring of one of its hours, alerted and not retracted, is not raised
//!    again; a ring built over several hours is.
//!
//! Each window's graph of one quantity is counted on one worker (transfers received and sent,
//! counterparties), and differential gets only what a ring needs as it changes: the edges
//! between accounts that are not hubs, the accounts in balance, and the prints between them.
//! The strongly connected components are differential's
//! ([`surveil_operators::pass_through_rings_of`]), brought up to date at each step of `resolution` (1 s) and corrected rather than recomputed:
//! a print updates the components it touches, not the day. The alerts are the same on any
//! number of workers.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use differential_dataflow::AsCollection;
use serde::{Deserialize, Serialize};
use surveil_operators::{Emitter, ProcessInTimeOrder, TimeOrderedProcessor, pass_through_rings_of, route};
use timely::dataflow::Stream;
use timely::dataflow::operators::Concat;
use timely::dataflow::operators::vec::Map;

use super::executions::Execution;
use crate::config::{CollusionRingsConfig, nanos_of};
use crate::model::alert::{Value, rules};
use crate::model::time::SessionCalendar;
use crate::model::{Alert, Body, CorrectionKind, Event, Severity, Symbol};

/// A window's transfers of one quantity of one instrument: the graph a ring lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RingAmount {
    /// Whether the window is a session (local calendar day) rather than a tumbling hour; first,
    /// so that the hours of a moment are judged before its session.
    pub session: bool,
    /// Instrument.
    pub instrument: Symbol,
    /// Quantity passed round.
    pub quantity: u64,
    /// The window's first nanosecond of event time.
    pub start: u64,
    /// The nanosecond after its last.
    pub end: u64,
}

/// A print between two named accounts, as a transfer of its quantity in one of its windows.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Transfer {
    /// The step of event time it is judged at.
    step: u64,
    amount: RingAmount,
    seller: Symbol,
    buyer: Symbol,
    /// The buyer's execution: the print, as evidence.
    print: Execution,
}

/// A change to what differential keeps of a window's graph of one quantity.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum GraphChange {
    /// Seller, buyer: an edge between two accounts that are not the quantity's hubs.
    Edge(Symbol, Symbol, RingAmount),
    /// An account that bought and sold the quantity in balance.
    Balanced(Symbol, RingAmount),
    /// Seller, and the buyer's execution: a print that could be a ring's.
    Print(Symbol, RingAmount, Execution),
}

/// A change to a ring, for the alerting stage.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct RingChange {
    time: u64,
    amount: RingAmount,
    ring: Symbol,
    change: Part,
    diff: isize,
}

/// A ring's member or one of its prints.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum Part {
    Member(Symbol),
    Print(Execution),
}

/// Extension trait: collusion rings as an operator on a stream of events.
pub trait CollusionRingsExt<'scope> {
    /// Alerts for rings of accounts passing one quantity of an instrument round a closed loop
    /// within an hour or a session, corrected as the rings change (see the
    /// [module documentation](self)).
    ///
    /// ```
    /// use surveil::config::CollusionRingsConfig;
    /// use surveil::model::time::SessionCalendar;
    /// use surveil::rules::CollusionRingsExt;
    /// use surveil::testing::{captured, trade_at_price};
    /// use timely::dataflow::operators::capture::Capture;
    /// use timely::dataflow::operators::ToStream;
    ///
    /// const S: u64 = 1_000_000_000;
    /// // A sells to B, B to C, C back to A, twice: the quantity came home twice. Then A sells
    /// // it once more, to D.
    /// let mut trades = Vec::new();
    /// for lap in 0..2 {
    ///     let t = 100 * S * (lap + 1);
    ///     trades.push(trade_at_price(t, "ACME", "B", "A", "10"));
    ///     trades.push(trade_at_price(t + 10 * S, "ACME", "C", "B", "10"));
    ///     trades.push(trade_at_price(t + 20 * S, "ACME", "A", "C", "10"));
    /// }
    /// trades.push(trade_at_price(300 * S, "ACME", "D", "A", "10.5"));
    /// let alerts = timely::example(move |scope| {
    ///     let config = CollusionRingsConfig { session: false, ..Default::default() };
    ///     trades.to_stream(scope).collusion_rings(&config, SessionCalendar::new(chrono_tz::UTC)).capture()
    /// });
    /// let alerts = captured(alerts);
    /// // Raised as the second lap closed (at the end of that second); retracted at the hour's
    /// // end, as A's trades of that size no longer net to zero: the quantity left the ring.
    /// assert_eq!(alerts.len(), 2);
    /// assert_eq!(alerts[0].time, 221 * S);
    /// assert!(alerts[1].is_retracted());
    /// assert_eq!(alerts[1].id, alerts[0].id);
    /// assert_eq!(alerts[1].time, 3_600 * S);
    /// ```
    fn collusion_rings(
        self,
        config: &CollusionRingsConfig,
        calendar: SessionCalendar,
    ) -> Stream<'scope, u64, Vec<Alert>>;
}

impl<'scope> CollusionRingsExt<'scope> for Stream<'scope, u64, Vec<Event>> {
    fn collusion_rings(
        self,
        config: &CollusionRingsConfig,
        calendar: SessionCalendar,
    ) -> Stream<'scope, u64, Vec<Alert>> {
        let config = *config;
        let hour = nanos_of(config.window);
        let resolution = nanos_of(config.resolution).max(1);
        // Each print enters its windows at its time rounded up to the resolution (within the
        // window).
        let candidates = self.flat_map(move |event: Event| {
            let Body::Trade { buyer, seller, quantity, .. } = event.body else {
                return Vec::new();
            };
            let [Some(buy), Some(_)] = Execution::of_trade(&event) else {
                return Vec::new();
            };
            if buyer.account == seller.account || quantity == 0 {
                return Vec::new();
            }
            let mut windows = Vec::with_capacity(2);
            if let Some(index) = event.time.checked_div(hour) {
                let start = index * hour;
                windows.push((false, start, start.saturating_add(hour)));
            }
            if config.session {
                let (date, end) = calendar.session_of(event.time);
                windows.push((true, calendar.session_start(date).unwrap_or(event.time), end));
            }
            windows
                .into_iter()
                .map(|(session, start, end)| {
                    let step = (event.time / resolution).saturating_add(1).saturating_mul(resolution);
                    let step = step.min(end.saturating_sub(1)).max(event.time);
                    let amount = RingAmount { session, instrument: event.instrument, quantity, start, end };
                    Transfer { step, amount, seller: seller.account, buyer: buyer.account, print: buy }
                })
                .collect::<Vec<_>>()
        });
        // Each window's graph of one quantity on one worker, counted there: differential gets
        // the edges between accounts that are not the quantity's hubs, who is in balance, and the
        // prints that could be a ring's, as they change.
        let graphs = RingGraphs {
            max_counterparties: config.max_counterparties,
            tolerance: config.net_tolerance,
            min_laps: config.min_laps,
            graphs: HashMap::new(),
            closing: BTreeMap::new(),
        };
        let inputs = candidates
            .process_in_time_order(
                "RingGraphs",
                |transfer: &Transfer| route(&transfer.amount),
                |transfer: &Transfer| (transfer.step, transfer.print.origin),
                graphs,
            )
            .as_collection();
        let edges = inputs.clone().flat_map(|input| match input {
            GraphChange::Edge(from, to, amount) => Some((from, to, amount)),
            _ => None,
        });
        let balanced = inputs.clone().flat_map(|input| match input {
            GraphChange::Balanced(node, amount) => Some((node, amount)),
            _ => None,
        });
        let prints = inputs.flat_map(|input| match input {
            GraphChange::Print(seller, amount, buy) => Some(((seller, amount), buy)),
            _ => None,
        });
        let members = pass_through_rings_of(edges, balanced, config.min_members);
        // The prints of that quantity between two members of one ring: its evidence.
        let ring_prints = prints
            .join_map(members.clone(), |(_, amount), buy, ring| ((buy.account, *amount), (*ring, *buy)))
            .join_map(members.clone(), |(_, amount), (ring, buy), buyers_ring| {
                (ring == buyers_ring).then_some(((*amount, *ring), *buy))
            })
            .flat_map(|print| print);
        let member_changes = members.inner.map(|(((member, amount), ring), time, diff)| RingChange {
            time,
            amount,
            ring,
            change: Part::Member(member),
            diff,
        });
        let print_changes = ring_prints.inner.map(|(((amount, ring), buy), time, diff)| RingChange {
            time,
            amount,
            ring,
            change: Part::Print(buy),
            diff,
        });
        member_changes.concat(print_changes).process_in_time_order(
            "CollusionRings",
            |change: &RingChange| route(&(change.amount.instrument, change.amount.quantity)),
            |change: &RingChange| (change.time, 0),
            RingAlerts { config, graphs: HashMap::new(), due: BTreeMap::new(), closed_hours: HashMap::new() },
        )
    }
}

/// One account in one window's graph of one quantity.
#[derive(Default)]
struct Node {
    received: u64,
    sent: u64,
    /// Distinct (counterparty, whether it bought) while the account is not a hub.
    counterparties: BTreeSet<(Symbol, bool)>,
    hub: bool,
    balanced: bool,
    /// The edges differential holds that touch it.
    edges: BTreeSet<(Symbol, Symbol)>,
}

/// One window's graph of one quantity, as counted.
#[derive(Default)]
struct TransferGraph {
    nodes: HashMap<Symbol, Node>,
    /// The prints handed on (seller, the buyer's execution), to take back when the window closes.
    prints: Vec<(Symbol, Execution)>,
}

/// Counts each window's transfers of each quantity and hands differential what a ring needs.
///
/// The same as [`surveil_operators::PassThroughRings`] over every transfer, which counts in
/// differential; here the counts of a graph are plain numbers on the worker that owns it, and a
/// hub's transfers (a market maker trading a round lot all day, most of the prints) never reach
/// differential: measured on the bundled day, that is most of the rule's cost
/// (docs/benchmarks.md).
struct RingGraphs {
    max_counterparties: usize,
    tolerance: f64,
    min_laps: u64,
    graphs: HashMap<RingAmount, TransferGraph>,
    /// Windows by the time they close.
    closing: BTreeMap<u64, Vec<RingAmount>>,
}

type Update = (GraphChange, u64, isize);

impl TimeOrderedProcessor<Transfer> for RingGraphs {
    type Output = Update;

    fn on_record(&mut self, time: u64, transfer: Transfer, output: &mut Emitter<'_, Update>) {
        let Transfer { amount, seller, buyer, print, .. } = transfer;
        if !self.graphs.contains_key(&amount) {
            self.closing.entry(amount.end).or_default().push(amount);
        }
        let most = self.max_counterparties;
        let (tolerance, min_laps) = (self.tolerance, self.min_laps.max(1));
        let graph = self.graphs.entry(amount).or_default();
        let mut emit = |change: GraphChange, diff: isize| output.emit((change, time, diff));
        graph.nodes.entry(seller).or_default().sent += 1;
        graph.nodes.entry(buyer).or_default().received += 1;
        for (node, other, bought) in [(seller, buyer, true), (buyer, seller, false)] {
            let state = graph.nodes.entry(node).or_default();
            if state.hub {
                continue;
            }
            state.counterparties.insert((other, bought));
            if state.counterparties.len() > most {
                // The quantity's hub: its edges and balance leave differential.
                state.hub = true;
                state.counterparties = BTreeSet::new();
                let edges = std::mem::take(&mut state.edges);
                if std::mem::take(&mut state.balanced) {
                    emit(GraphChange::Balanced(node, amount), -1);
                }
                for (from, to) in edges {
                    emit(GraphChange::Edge(from, to, amount), -1);
                    let far = if from == node { to } else { from };
                    if let Some(far) = graph.nodes.get_mut(&far) {
                        far.edges.remove(&(from, to));
                    }
                }
            }
        }
        let hub = |node: &Symbol| graph.nodes.get(node).is_some_and(|n| n.hub);
        if !hub(&seller) && !hub(&buyer) {
            if graph.nodes.get_mut(&seller).is_some_and(|n| n.edges.insert((seller, buyer))) {
                if let Some(n) = graph.nodes.get_mut(&buyer) {
                    n.edges.insert((seller, buyer));
                }
                emit(GraphChange::Edge(seller, buyer, amount), 1);
            }
            emit(GraphChange::Print(seller, amount, print), 1);
            graph.prints.push((seller, print));
        }
        for node in [seller, buyer] {
            let Some(state) = graph.nodes.get_mut(&node) else { continue };
            if state.hub {
                continue;
            }
            // Bought and sold the quantity at least `min_laps` times each, in balance.
            let laps = state.received.min(state.sent);
            let (r, s) = (state.received as f64, state.sent as f64);
            let balanced = laps >= min_laps && (r - s).abs() <= tolerance * r.max(s);
            if balanced != state.balanced {
                state.balanced = balanced;
                emit(GraphChange::Balanced(node, amount), if balanced { 1 } else { -1 });
            }
        }
    }

    fn next_timer(&self) -> Option<u64> {
        self.closing.keys().next().copied()
    }

    fn on_timer(&mut self, time: u64, output: &mut Emitter<'_, Update>) {
        // The window closed: everything it handed differential is taken back.
        for amount in self.closing.remove(&time).unwrap_or_default() {
            let Some(graph) = self.graphs.remove(&amount) else { continue };
            for (node, state) in graph.nodes {
                if state.balanced {
                    output.emit((GraphChange::Balanced(node, amount), time, -1));
                }
                for (from, to) in state.edges.into_iter().filter(|(from, _)| *from == node) {
                    output.emit((GraphChange::Edge(from, to, amount), time, -1));
                }
            }
            for (seller, print) in graph.prints {
                output.emit((GraphChange::Print(seller, amount, print), time, -1));
            }
        }
    }
}

/// A ring as alerted: its members, the version first raised, and whether the ring is closed
/// as the window stands (a lap under way leaves it open for a while).
struct Alerted {
    members: BTreeSet<Symbol>,
    raised: Alert,
    closed: bool,
}

/// One window's rings of one quantity.
#[derive(Default)]
struct Graph {
    members: BTreeMap<Symbol, BTreeMap<Symbol, isize>>,
    prints: BTreeMap<Symbol, BTreeMap<Execution, isize>>,
    alerted: Vec<Alerted>,
    /// A session's rings as they stand, judged when it ends.
    standing: Vec<(BTreeSet<Symbol>, Vec<Execution>)>,
}

/// An hour's start and the members of a ring alerted in it that stood when it closed.
type ClosedHour = (u64, BTreeSet<Symbol>);

/// Turns ring changes into alerts and corrections, once per step of event time.
struct RingAlerts {
    config: CollusionRingsConfig,
    graphs: HashMap<RingAmount, Graph>,
    /// Graphs changed at a time, judged just after it (when every change at it is in).
    due: BTreeMap<u64, BTreeSet<RingAmount>>,
    /// Member sets alerted in hours that have closed, per (instrument, quantity), until their
    /// session closes: a session's ring with the same members is not raised again.
    closed_hours: HashMap<(Symbol, u64), Vec<ClosedHour>>,
}

impl TimeOrderedProcessor<RingChange> for RingAlerts {
    type Output = Alert;

    fn on_record(&mut self, time: u64, change: RingChange, _: &mut Emitter<'_, Alert>) {
        let graph = self.graphs.entry(change.amount).or_default();
        match change.change {
            Part::Member(member) => add(graph.members.entry(change.ring).or_default(), member, change.diff),
            Part::Print(print) => add(graph.prints.entry(change.ring).or_default(), print, change.diff),
        }
        self.due.entry(time.saturating_add(1)).or_default().insert(change.amount);
        // And once more when its window closes, even if nothing changes then.
        self.due.entry(change.amount.end.saturating_add(1)).or_default().insert(change.amount);
    }

    fn next_timer(&self) -> Option<u64> {
        self.due.keys().next().copied()
    }

    fn on_timer(&mut self, time: u64, output: &mut Emitter<'_, Alert>) {
        let Some(amounts) = self.due.remove(&time) else {
            return;
        };
        let now = time - 1;
        for amount in amounts {
            self.judge(amount, now, output);
        }
    }
}

/// Adds `diff` to `item`'s count, forgetting it at zero.
fn add<K: Ord>(counts: &mut BTreeMap<K, isize>, item: K, diff: isize) {
    match counts.entry(item) {
        Entry::Occupied(mut entry) => {
            *entry.get_mut() += diff;
            if *entry.get() == 0 {
                entry.remove();
            }
        }
        Entry::Vacant(entry) => {
            if diff != 0 {
                entry.insert(diff);
            }
        }
    }
}

impl RingAlerts {
    /// The rings of `amount` as they stand at `now`, against what was alerted.
    fn judge(&mut self, amount: RingAmount, now: u64, output: &mut Emitter<'_, Alert>) {
        if now >= amount.end {
            // The window closed: its transfers leave; its rings stand or fall by their state
            // at its end.
            if let Some(graph) = self.graphs.remove(&amount) {
                self.close(amount, graph, output);
            }
            return;
        }
        let Some(graph) = self.graphs.get_mut(&amount) else {
            return;
        };
        graph.members.retain(|_, m| !m.is_empty());
        graph.prints.retain(|_, p| !p.is_empty());
        let min_laps = self.config.min_laps;
        let rings: Vec<(BTreeSet<Symbol>, Vec<Execution>)> = graph
            .members
            .iter()
            .map(|(ring, members)| {
                let mut prints: Vec<Execution> =
                    graph.prints.get(ring).map(|p| p.keys().copied().collect()).unwrap_or_default();
                prints.sort_by_key(|x| (x.time, x.origin));
                (members.keys().copied().collect::<BTreeSet<Symbol>>(), prints)
            })
            // Gone round often enough.
            .filter(|(members, prints)| prints.len() as u64 >= min_laps.saturating_mul(members.len() as u64))
            .collect();
        if amount.session {
            // A session's rings are judged at its end, the window's own verdict: over hours,
            // chance closes a ring of popular round lots for a while and opens it again.
            graph.standing = rings;
            return;
        }
        let mut alerted = std::mem::take(&mut graph.alerted);
        let mut kept = Vec::with_capacity(alerted.len() + rings.len());
        for (members, prints) in rings {
            // The alert of a ring that shared an account with this one: the same ring, grown,
            // shrunk, relabelled, or closed again after a lap left it open for a while.
            let before = alerted.iter().position(|a| !a.members.is_disjoint(&members));
            match before.map(|i| alerted.swap_remove(i)) {
                Some(mut earlier) => {
                    if earlier.members != members {
                        let grew = members.len() >= earlier.members.len() && !members.is_subset(&earlier.members);
                        let (kind, reason) = if grew {
                            (CorrectionKind::Amended, "accounts joined the ring")
                        } else {
                            (CorrectionKind::Downgraded, "accounts left the ring")
                        };
                        output.emit(self.alert(&amount, now, &members, &prints, Some((&earlier.raised, kind, reason))));
                        earlier.members = members;
                    }
                    earlier.closed = true;
                    kept.push(earlier);
                }
                None if !self.already_alerted(&amount, &members) => {
                    let raised = self.alert(&amount, now, &members, &prints, None);
                    output.emit(raised.clone());
                    kept.push(Alerted { members, raised, closed: true });
                }
                None => {}
            }
        }
        // Rings open for now: the next print of a lap may close them again before the window ends.
        kept.extend(alerted.into_iter().map(|a| Alerted { closed: false, ..a }));
        if let Some(graph) = self.graphs.get_mut(&amount) {
            graph.alerted = kept;
        }
    }

    /// Whether a session's ring was alerted with the same members in one of its hours.
    fn already_alerted(&self, amount: &RingAmount, members: &BTreeSet<Symbol>) -> bool {
        if !amount.session {
            return false;
        }
        let within = |start: u64| start >= amount.start && start < amount.end;
        let open = self.graphs.iter().any(|(other, graph)| {
            !other.session
                && other.instrument == amount.instrument
                && other.quantity == amount.quantity
                && within(other.start)
                && graph.alerted.iter().any(|a| a.closed && a.members == *members)
        });
        open || self
            .closed_hours
            .get(&(amount.instrument, amount.quantity))
            .is_some_and(|hours| hours.iter().any(|(start, m)| within(*start) && m == members))
    }

    /// Retracts the alerts of rings open when their window closed, and files a closed hour's
    /// standing rings for its session (forgotten when the session closes).
    fn close(&mut self, amount: RingAmount, graph: Graph, output: &mut Emitter<'_, Alert>) {
        let last = amount.end.saturating_sub(1);
        for (members, prints) in &graph.standing {
            if !self.already_alerted(&amount, members) {
                output.emit(self.alert(&amount, last, members, prints, None));
            }
        }
        let (standing, open): (Vec<Alerted>, Vec<Alerted>) = graph.alerted.into_iter().partition(|a| a.closed);
        for gone in open {
            let reason = "the ring was open when its window closed: a member's later trades of this size left its \
                          position open";
            let correction = Some((&gone.raised, CorrectionKind::Retracted, reason));
            output.emit(self.alert(&amount, amount.end, &gone.members, &[], correction));
        }
        let key = (amount.instrument, amount.quantity);
        if amount.session {
            if let Some(hours) = self.closed_hours.get_mut(&key) {
                hours.retain(|(start, _)| *start < amount.start || *start >= amount.end);
                if hours.is_empty() {
                    self.closed_hours.remove(&key);
                }
            }
        } else if self.config.session && !standing.is_empty() {
            let hours = self.closed_hours.entry(key).or_default();
            hours.extend(standing.into_iter().map(|a| (amount.start, a.members)));
        }
    }

    /// An alert for the ring `members` of `amount` at `now`, or a correction of one.
    fn alert(
        &self,
        amount: &RingAmount,
        now: u64,
        members: &BTreeSet<Symbol>,
        prints: &[Execution],
        correcting: Option<(&Alert, CorrectionKind, &str)>,
    ) -> Alert {
        let count = members.len().max(1);
        // Laps: how many times the quantity went round. Once scores 60; twice 80; more, towards 100.
        let laps = (prints.len() as f64 / count as f64).max(1.0);
        let score = 100.0 - 40.0 / laps;
        let window = if amount.session {
            "session".to_string()
        } else {
            humantime::format_duration(self.config.window).to_string()
        };
        let mut builder = Alert::builder(rules::COLLUSION_RINGS, now);
        builder
            .instrument(amount.instrument)
            .account(members.first().copied().unwrap_or(Symbol::NONE))
            .severity(Severity::High)
            .score(score)
            .explain(format!(
                "{} accounts passed {} round a closed loop within the {window} ({} prints): each bought and sold \
                 that quantity as often as the other within {:.0}%, so none of them kept a position",
                members.len(),
                amount.quantity,
                prints.len(),
                self.config.net_tolerance * 100.0,
            ))
            .param("members", members.len())
            .param("quantity", amount.quantity)
            .param("prints", prints.len())
            .param("laps", laps)
            .param("window", Value::Text(window))
            .param("window_start", amount.start)
            .param("window_end", amount.end)
            .discriminator(route(&(amount.session, amount.start, amount.end, amount.quantity)));
        for (i, member) in members.iter().enumerate() {
            builder.param(&format!("member_{}", i + 1), Value::Name(*member));
        }
        for print in prints.iter().take(self.config.max_evidence) {
            builder.evidence(&print.evidence());
        }
        if let Some((original, kind, reason)) = correcting {
            builder.corrects(original, kind, reason);
            if kind == CorrectionKind::Retracted {
                builder.score(0.0);
            }
        }
        builder.build()
    }
}

#[cfg(test)]
mod tests {
    use timely::dataflow::operators::ToStream;
    use timely::dataflow::operators::capture::Capture;

    use super::*;
    use crate::testing::{captured, trade_at_price};

    const S: u64 = 1_000_000_000;
    const HOUR: u64 = 3_600 * S;

    fn rings(trades: Vec<Event>, config: CollusionRingsConfig, workers: usize) -> Vec<Alert> {
        let (send, receive) = std::sync::mpsc::channel();
        let send = std::sync::Mutex::new(send);
        timely::execute(timely::Config::process(workers), move |worker| {
            let index = worker.index();
            let trades = if index == 0 { trades.clone() } else { Vec::new() };
            let send = send.lock().map(|s| s.clone()).expect("sender");
            worker.dataflow::<u64, _, _>(|scope| {
                trades
                    .to_stream(scope)
                    .collusion_rings(&config, SessionCalendar::new(chrono_tz::UTC))
                    .capture_into(send);
            });
        })
        .expect("timely runs");
        let mut alerts = captured(receive);
        alerts.sort_by_key(|a| (a.time, a.id, a.correction.is_some()));
        alerts
    }

    /// Prints with distinct origins, so that alert ids tell them apart.
    fn prints(rows: &[(u64, &str, &str)]) -> Vec<Event> {
        rows.iter()
            .enumerate()
            .map(|(i, (time, buyer, seller))| {
                let mut event = trade_at_price(*time, "ACME", buyer, seller, "10");
                event.origin = crate::model::Origin(i as u64 + 1);
                event
            })
            .collect()
    }

    /// Hourly rings alerted at their first lap.
    fn hourly() -> CollusionRingsConfig {
        CollusionRingsConfig { session: false, min_laps: 1, ..Default::default() }
    }

    fn one_lap() -> CollusionRingsConfig {
        CollusionRingsConfig { min_laps: 1, ..Default::default() }
    }

    #[test]
    fn a_ring_that_closes_is_raised_once_and_its_window_closing_does_not_retract_it() {
        let trades = prints(&[(10 * S, "B", "A"), (20 * S, "C", "B"), (30 * S, "A", "C")]);
        for workers in [1, 2] {
            let alerts = rings(trades.clone(), hourly(), workers);
            assert_eq!(alerts.len(), 1, "{alerts:?}");
            assert_eq!(alerts[0].time, 31 * S);
            assert_eq!(alerts[0].evidence.len(), 3);
            assert!(alerts[0].correction.is_none());
        }
    }

    #[test]
    fn a_ring_going_round_again_is_one_alert() {
        let laps: Vec<(u64, &str, &str)> = (0..4u64)
            .flat_map(|lap| {
                let t = 100 * S * (lap + 1);
                [(t, "B", "A"), (t + 10 * S, "C", "B"), (t + 20 * S, "A", "C")]
            })
            .collect();
        let alerts = rings(prints(&laps), CollusionRingsConfig::default(), 2);
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        // Raised at the second lap's close, by default.
        assert_eq!(alerts[0].evidence.len(), 6);
        assert_eq!(alerts[0].time, 221 * S);
        assert!(rings(prints(&laps[..5]), CollusionRingsConfig::default(), 1).is_empty(), "one lap and a half");
    }

    #[test]
    fn a_ring_split_across_two_hours_is_no_hours_ring_but_is_the_sessions() {
        let trades = prints(&[(HOUR - 20 * S, "B", "A"), (HOUR - 10 * S, "C", "B"), (HOUR + 10 * S, "A", "C")]);
        assert!(rings(trades.clone(), hourly(), 1).is_empty());
        let alerts = rings(trades, one_lap(), 2);
        assert_eq!(alerts.len(), 1);
        assert_eq!(
            alerts[0].parameters.iter().find(|p| p.name == "window").map(|p| &p.value),
            Some(&Value::Text("session".into()))
        );
    }

    #[test]
    fn a_sessions_ring_with_the_same_members_as_an_hours_is_not_raised_twice() {
        let trades = prints(&[(10 * S, "B", "A"), (20 * S, "C", "B"), (30 * S, "A", "C")]);
        assert_eq!(rings(trades, one_lap(), 1).len(), 1);
    }

    #[test]
    fn a_member_joining_amends_and_a_dissolving_ring_is_retracted() {
        let ms = S / 1_000;
        let trades = prints(&[
            (10 * S, "B", "C"),
            (20 * S, "D", "B"),
            (30 * S, "C", "D"),
            // Raised (B, C, D). Within one second E joins between D and C: D sells to E, E to
            // C, C once more to B and B to D: every member balanced again at the step's end.
            (40 * S + 100 * ms, "E", "D"),
            (40 * S + 200 * ms, "C", "E"),
            (40 * S + 300 * ms, "B", "C"),
            (40 * S + 400 * ms, "D", "B"),
            // D sells the quantity once more, to a fifth account: D's position stays open.
            (50 * S, "F", "D"),
        ]);
        let alerts = rings(trades.clone(), hourly(), 1);
        let kinds: Vec<Option<CorrectionKind>> = alerts.iter().map(|a| a.correction.as_ref().map(|c| c.kind)).collect();
        assert_eq!(kinds, vec![None, Some(CorrectionKind::Amended), Some(CorrectionKind::Retracted)], "{alerts:?}");
        assert!(alerts.iter().all(|a| a.id == alerts[0].id));
        let members = |a: &Alert| a.parameters.iter().find(|p| p.name == "members").map(|p| p.value.clone());
        assert_eq!(members(&alerts[0]), Some(Value::Count(3)));
        assert_eq!(members(&alerts[1]), Some(Value::Count(4)));
        assert_eq!(alerts[1].time, 41 * S);
        assert_eq!(alerts[2].time, HOUR, "retracted when the hour closes with D's position open");
        let summary = |alerts: Vec<Alert>| -> Vec<_> {
            alerts.into_iter().map(|a| (a.id, a.time, a.correction.map(|c| c.kind), a.evidence.len())).collect()
        };
        assert_eq!(summary(rings(trades, hourly(), 2)), summary(alerts));
    }
}
