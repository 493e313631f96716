//! Pass-through rings: groups of nodes that pass the same amount round a closed loop, each
//! passing on what it received.
//!
//! Circular trading and round-tripping move one amount (a quantity of a security, a sum of
//! money) from member to member until it comes back where it started: every member's net
//! position over the ring returns to about zero (Victor & Weintraud 2021 detect such rings as
//! strongly connected components of the trade graph whose members' positions net to zero). In
//! a busy graph almost every node is in one giant strongly connected component, so the
//! component is taken over *pass-through* transfers only:
//!
//! 1. A node `v` passes amount `a` through when it received `a` from some `u` and sent `a` on
//!    to some `w` other than `u` (a transfer straight back is a swap, not a pass), and the
//!    number of transfers of `a` it received and sent agree within `net_tolerance` of the larger
//!    (its net position in that amount returns to zero within the tolerance).
//! 2. The ring edges of amount `a` are the two transfers `u -> v` and `v -> w` of each such
//!    pass (a transfer straight back from `v` to its sender is not one).
//! 3. A ring is a strongly connected component of the ring edges of one amount with at least
//!    `min_members` nodes, every one of them passing `a` through.
//!
//! The transfers are a differential collection: a transfer enters at its time and leaves when
//! it falls out of the caller's window (a retraction at a later time), and the rings follow,
//! corrected rather than recomputed: a new transfer that closes a loop adds its ring, one that
//! leaves the window dissolves it. Amounts match exactly: the caller rounds them to the unit
//! that matters (cents, shares) first.
//!
//! Differential's `strongly_connected` (label propagation forward and backward in an `iterate`
//! scope) finds the components. Whether a transfer passes on is decided from a summary of each
//! node's senders and receivers in the amount (one of them, or several), not by pairing every
//! sender with every receiver, so a node with thousands of counterparties costs work in
//! proportion to its transfers, not to their product.

use std::hash::Hash;

use differential_dataflow::algorithms::graphs::scc::strongly_connected;
use differential_dataflow::lattice::Lattice;
use differential_dataflow::{ExchangeData, VecCollection};
use timely::progress::Timestamp;

use crate::LinkedComponents;

/// What makes a ring.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RingOptions {
    /// Fewest members: 3 by default (two nodes trading back and forth are a pair, which
    /// other rules look at); at least 2, as a ring has an edge.
    pub min_members: usize,
    /// How far a member's transfers received and sent in the ring's amount may differ, as a
    /// share of the larger count: 0.01 by default (Victor & Weintraud's 1 %).
    pub net_tolerance: f64,
    /// Most distinct counterparties (senders and receivers, each direction counted apart) a
    /// node may have in an amount and still be in a ring of it: unbounded by default. A node
    /// above it is the market's hub in that amount (a market maker trading a round lot with
    /// everyone), and its transfers of the amount are no ring edges; bounding it keeps the work
    /// of a hub's balance changing at each of its transfers from growing with its counterparties.
    pub max_counterparties: usize,
}

impl Default for RingOptions {
    fn default() -> Self {
        RingOptions { min_members: 3, net_tolerance: 0.01, max_counterparties: usize::MAX }
    }
}

/// Extension trait: the pass-through rings of a changing collection of transfers.
pub trait PassThroughRings<'scope, T: Timestamp, N, A> {
    /// For a collection of transfers `(from, to, amount)` (a multiset: each transfer counts),
    /// `((member, amount), ring)` for every node in a ring of that amount, `ring` being the
    /// ring's least member, at every time, as the transfers change. See the
    /// [module documentation](self).
    ///
    /// # Examples
    /// ```
    /// use differential_dataflow::input::Input;
    /// use surveil_operators::{PassThroughRings, RingOptions};
    /// use timely::dataflow::operators::capture::{Capture, Extract};
    ///
    /// let rings = timely::example(|scope| {
    ///     let (mut transfers, collection) = scope.new_collection::<(u32, u32, u64), isize>();
    ///     // 100 goes 1 -> 2 -> 3 -> 1; 4 sends 1 another amount, which 1 passes nowhere.
    ///     for t in [(1, 2, 100), (2, 3, 100), (3, 1, 100)] {
    ///         transfers.insert(t);
    ///     }
    ///     transfers.insert((4, 1, 50));
    ///     // The transfer 3 -> 1 leaves the window at time 10: the ring is gone.
    ///     transfers.advance_to(10);
    ///     transfers.remove((3, 1, 100));
    ///     collection.pass_through_rings(Default::default()).inner.capture()
    /// });
    /// let mut updates: Vec<_> = rings.extract().into_iter().flat_map(|(_, data)| data).collect();
    /// updates.sort();
    /// assert_eq!(
    ///     updates,
    ///     vec![
    ///         (((1, 100), 1), 0, 1),
    ///         (((1, 100), 1), 10, -1),
    ///         (((2, 100), 1), 0, 1),
    ///         (((2, 100), 1), 10, -1),
    ///         (((3, 100), 1), 0, 1),
    ///         (((3, 100), 1), 10, -1),
    ///     ],
    /// );
    /// ```
    fn pass_through_rings(self, options: RingOptions) -> VecCollection<'scope, T, ((N, A), N), isize>;
}

impl<'scope, T, N, A> PassThroughRings<'scope, T, N, A> for VecCollection<'scope, T, (N, N, A), isize>
where
    T: Timestamp + Lattice + Hash + Ord,
    N: ExchangeData + Hash,
    A: ExchangeData + Hash,
{
    fn pass_through_rings(self, options: RingOptions) -> VecCollection<'scope, T, ((N, A), N), isize> {
        let (edges, balanced) = edges_and_balance(self, options);
        pass_through_rings_of(edges, balanced, options.min_members)
    }
}

/// Transfers `(from, to, amount)`.
pub(crate) type Transfers<'scope, T, N, A> = VecCollection<'scope, T, (N, N, A), isize>;
/// Nodes `(node, amount)`: those in balance in an amount, or passing it through.
pub(crate) type Balanced<'scope, T, N, A> = VecCollection<'scope, T, (N, A), isize>;
/// Pass-through edges between `(node, amount)` pairs.
pub(crate) type PassEdges<'scope, T, N, A> = VecCollection<'scope, T, ((N, A), (N, A)), isize>;

/// The distinct transfers between different nodes (the market's hubs left out, when
/// `max_counterparties` bounds them) and the nodes that received and sent each amount in
/// balance: what rings and chains are both made of.
pub(crate) fn edges_and_balance<'scope, T, N, A>(
    transfers: VecCollection<'scope, T, (N, N, A), isize>,
    options: RingOptions,
) -> (Transfers<'scope, T, N, A>, Balanced<'scope, T, N, A>)
where
    T: Timestamp + Lattice + Hash + Ord,
    N: ExchangeData + Hash,
    A: ExchangeData + Hash,
{
    let transfers = transfers.filter(|(from, to, _)| from != to);
    // How many transfers of each amount each node received and sent.
    let received = transfers.clone().map(|(_, to, amount)| (to, amount)).count();
    let sent = transfers.clone().map(|(from, _, amount)| (from, amount)).count();
    let tolerance = options.net_tolerance;
    let balanced = received
        .join(sent)
        .filter(move |(_, (r, s))| {
            let (r, s) = (*r as f64, *s as f64);
            (r - s).abs() <= tolerance * r.max(s)
        })
        .map(|(node_amount, _)| node_amount);
    // Each node's receivers and senders of each amount, summarised as the only one or as
    // several: a transfer in passes on when the node sent the amount to someone other than
    // its sender, which the summary tells without pairing every sender with every receiver.
    let mut edges = transfers.distinct();
    if options.max_counterparties < usize::MAX {
        let most = options.max_counterparties as isize;
        let hubs = edges
            .clone()
            .flat_map(|(from, to, amount)| {
                [((from.clone(), amount.clone()), (to.clone(), true)), ((to, amount), (from, false))]
            })
            .distinct()
            .map(|(node_amount, _)| node_amount)
            .count()
            .filter(move |(_, counterparties)| *counterparties > most)
            .map(|(node_amount, _)| node_amount);
        edges = edges
            .map(|(from, to, amount)| ((from, amount), to))
            .antijoin(hubs.clone())
            .map(|((from, amount), to)| ((to, amount), from))
            .antijoin(hubs)
            .map(|((to, amount), from)| (from, to, amount));
    }
    (edges, balanced)
}

/// The rings of `edges` (distinct transfers `(from, to, amount)`, the market's hubs left out)
/// through the nodes `balanced` says bought and sent each amount in balance, as
/// [`PassThroughRings::pass_through_rings`] gives them: for a caller that keeps the counts of
/// transfers itself (one amount's graph on one worker, say) and hands differential only the
/// edges and the balance as they change, which is far less than every transfer.
pub fn pass_through_rings_of<'scope, T, N, A>(
    edges: VecCollection<'scope, T, (N, N, A), isize>,
    balanced: VecCollection<'scope, T, (N, A), isize>,
    min_members: usize,
) -> VecCollection<'scope, T, ((N, A), N), isize>
where
    T: Timestamp + Lattice + Hash + Ord,
    N: ExchangeData + Hash,
    A: ExchangeData + Hash,
{
    let (ring_edges, passing) = pass_edges(edges, balanced);
    let members = strongly_connected(ring_edges).linked_components();
    // A ring: enough members, every one passing its amount through.
    let passing_members = members.clone().semijoin(passing).map(|(_, label)| label).count();
    let all_members = members.clone().map(|(_, label)| label).count();
    let rings = all_members
        .join(passing_members)
        .filter(move |(_, (all, passing))| all == passing && *all as usize >= min_members.max(2))
        .map(|(label, _)| label);
    // Consolidated, so that readers see one update per change rather than the iteration's
    // transient proposals.
    members.map(|(member, label)| (label, member)).semijoin(rings).map(|(ring, member)| (member, ring.0)).consolidate()
}

/// The pass-through edges of `edges` at the nodes `balanced` names (the two transfers of each
/// pass, as node-and-amount pairs) and the nodes that pass each amount through.
pub(crate) fn pass_edges<'scope, T, N, A>(
    edges: Transfers<'scope, T, N, A>,
    balanced: Balanced<'scope, T, N, A>,
) -> (PassEdges<'scope, T, N, A>, Balanced<'scope, T, N, A>)
where
    T: Timestamp + Lattice + Hash + Ord,
    N: ExchangeData + Hash,
    A: ExchangeData + Hash,
{
    let into = edges.clone().map(|(from, to, amount)| ((to, amount), from));
    let out_of = edges.map(|(from, to, amount)| ((from, amount), to));
    let receivers = summarise(out_of.clone());
    let senders = summarise(into.clone());
    let passes_on = |other: &Option<N>, me: &N| other.as_ref() != Some(me);
    let ring_in = into
        .join_map(receivers.clone(), move |(node, amount), from, receiver| {
            passes_on(receiver, from).then(|| ((from.clone(), amount.clone()), (node.clone(), amount.clone())))
        })
        .flat_map(|edge| edge);
    let ring_out = out_of
        .join_map(senders.clone(), move |(node, amount), to, sender| {
            passes_on(sender, to).then(|| ((node.clone(), amount.clone()), (to.clone(), amount.clone())))
        })
        .flat_map(|edge| edge);
    // A node passes an amount through when some sender and receiver differ, in balance.
    let passing = senders
        .join(receivers)
        .filter(|(_, (sender, receiver))| sender.is_none() || sender != receiver)
        .map(|(node_amount, _)| (node_amount, ()))
        .semijoin(balanced.clone())
        .map(|(node_amount, ())| node_amount);
    // The ring edges, at balanced nodes: one graph per amount.
    let ring_in = ring_in.map(|(from, to)| (to, from)).semijoin(balanced.clone()).map(|(to, from)| (from, to));
    let ring_edges = ring_in.concat(ring_out.semijoin(balanced)).distinct();
    (ring_edges, passing)
}

/// Per key, its only neighbour, or `None` when it has several.
fn summarise<'scope, T, K, N>(
    pairs: VecCollection<'scope, T, (K, N), isize>,
) -> VecCollection<'scope, T, (K, Option<N>), isize>
where
    T: Timestamp + Lattice + Ord,
    K: ExchangeData + Hash,
    N: ExchangeData + Hash,
{
    pairs.reduce(|_, neighbours: &[(&N, isize)], out: &mut Vec<(Option<N>, isize)>| {
        let only = match neighbours {
            [(only, _)] => Some((*only).clone()),
            _ => None,
        };
        out.push((only, 1));
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use differential_dataflow::input::Input;
    use proptest::prelude::*;
    use timely::dataflow::operators::capture::{Capture, Extract};

    use super::*;

    pub(crate) type Transfer = (u8, u8, u8);

    /// The nodes passing each amount through and the pass-through edges of each amount, of the
    /// transfers alive at one time, pairing every sender with every receiver.
    #[allow(clippy::type_complexity)]
    pub(crate) fn oracle_edges(
        transfers: &[Transfer],
        options: RingOptions,
    ) -> (BTreeSet<(u8, u8)>, BTreeMap<u8, BTreeSet<(u8, u8)>>) {
        let mut received: BTreeMap<(u8, u8), usize> = BTreeMap::new();
        let mut sent: BTreeMap<(u8, u8), usize> = BTreeMap::new();
        let live: Vec<Transfer> = transfers.iter().copied().filter(|(f, t, _)| f != t).collect();
        for &(f, t, a) in &live {
            *received.entry((t, a)).or_default() += 1;
            *sent.entry((f, a)).or_default() += 1;
        }
        let all_edges: BTreeSet<Transfer> = live.iter().copied().collect();
        let mut counterparties: BTreeMap<(u8, u8), BTreeSet<(u8, bool)>> = BTreeMap::new();
        for &(f, t, a) in &all_edges {
            counterparties.entry((f, a)).or_default().insert((t, true));
            counterparties.entry((t, a)).or_default().insert((f, false));
        }
        let hub = |n: u8, a: u8| counterparties.get(&(n, a)).is_some_and(|c| c.len() > options.max_counterparties);
        let edges: BTreeSet<Transfer> =
            all_edges.iter().copied().filter(|&(f, t, a)| !hub(f, a) && !hub(t, a)).collect();
        let mut passing = BTreeSet::new();
        let mut ring_edges: BTreeMap<u8, BTreeSet<(u8, u8)>> = BTreeMap::new();
        for &(u, v, a) in &edges {
            let (r, s) = (received.get(&(v, a)).copied().unwrap_or(0), sent.get(&(v, a)).copied().unwrap_or(0));
            if (r as f64 - s as f64).abs() > options.net_tolerance * (r.max(s) as f64) {
                continue;
            }
            for &(v2, w, a2) in &edges {
                if v2 == v && a2 == a && w != u {
                    passing.insert((v, a));
                    ring_edges.entry(a).or_default().insert((u, v));
                    ring_edges.entry(a).or_default().insert((v, w));
                }
            }
        }
        (passing, ring_edges)
    }

    /// Batch oracle: the rings of the transfers alive at one time, by Tarjan's algorithm over
    /// the pass-through edges of each amount.
    fn oracle(transfers: &[Transfer], options: RingOptions) -> BTreeSet<((u8, u8), u8)> {
        let (passing, ring_edges) = oracle_edges(transfers, options);
        let mut out = BTreeSet::new();
        for (a, es) in ring_edges {
            for component in tarjan(&es) {
                let min = *component.iter().min().expect("a component has a node");
                if component.len() >= options.min_members.max(2) && component.iter().all(|n| passing.contains(&(*n, a)))
                {
                    out.extend(component.iter().map(|n| ((*n, a), min)));
                }
            }
        }
        out
    }

    /// Strongly connected components of a small graph (recursive Tarjan).
    fn tarjan(edges: &BTreeSet<(u8, u8)>) -> Vec<Vec<u8>> {
        struct State<'a> {
            edges: &'a BTreeSet<(u8, u8)>,
            index: BTreeMap<u8, usize>,
            low: BTreeMap<u8, usize>,
            stack: Vec<u8>,
            out: Vec<Vec<u8>>,
        }
        fn visit(s: &mut State<'_>, v: u8) {
            let i = s.index.len();
            s.index.insert(v, i);
            s.low.insert(v, i);
            s.stack.push(v);
            let next: Vec<u8> = s.edges.range((v, 0)..=(v, u8::MAX)).map(|e| e.1).collect();
            for w in next {
                if !s.index.contains_key(&w) {
                    visit(s, w);
                    let lw = s.low[&w];
                    let lv = s.low.get_mut(&v).expect("visited");
                    *lv = (*lv).min(lw);
                } else if s.stack.contains(&w) {
                    let iw = s.index[&w];
                    let lv = s.low.get_mut(&v).expect("visited");
                    *lv = (*lv).min(iw);
                }
            }
            if s.low[&v] == s.index[&v] {
                let mut component = Vec::new();
                while let Some(w) = s.stack.pop() {
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                s.out.push(component);
            }
        }
        let nodes: BTreeSet<u8> = edges.iter().flat_map(|&(a, b)| [a, b]).collect();
        let mut s = State { edges, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), out: Vec::new() };
        for v in nodes {
            if !s.index.contains_key(&v) {
                visit(&mut s, v);
            }
        }
        s.out
    }

    /// What `build` makes of the transfers, at each of `times`, from transfers `(transfer,
    /// enters, leaves)`.
    pub(crate) fn streamed(
        transfers: Vec<(Transfer, u64, Option<u64>)>,
        times: u64,
        options: RingOptions,
        build: Build,
    ) -> Vec<BTreeSet<((u8, u8), u8)>> {
        let captured = timely::example(move |scope| {
            let (mut input, collection) = scope.new_collection::<Transfer, isize>();
            for t in 0..times {
                input.advance_to(t);
                for &(transfer, enters, leaves) in &transfers {
                    if enters == t {
                        input.insert(transfer);
                    }
                    if leaves == Some(t) {
                        input.remove(transfer);
                    }
                }
            }
            build(collection, options).inner.capture()
        });
        let mut updates: Vec<_> = captured.extract().into_iter().flat_map(|(_, data)| data).collect();
        updates.sort_by_key(|u| u.1);
        (0..times)
            .map(|t| {
                let mut count: BTreeMap<((u8, u8), u8), isize> = BTreeMap::new();
                for (data, time, diff) in &updates {
                    if *time <= t {
                        *count.entry(*data).or_default() += diff;
                    }
                }
                count.into_iter().filter(|(_, c)| *c != 0).map(|(d, _)| d).collect()
            })
            .collect()
    }

    /// Groups `((member, amount), group)` of the transfers alive at one time, in batch.
    pub(crate) type Oracle = fn(&[Transfer], RingOptions) -> BTreeSet<((u8, u8), u8)>;

    /// An operator from transfers to `((member, amount), group)`.
    pub(crate) type Build = for<'s> fn(
        VecCollection<'s, u64, Transfer, isize>,
        RingOptions,
    ) -> VecCollection<'s, u64, ((u8, u8), u8), isize>;

    fn rings(
        transfers: VecCollection<'_, u64, Transfer, isize>,
        options: RingOptions,
    ) -> VecCollection<'_, u64, ((u8, u8), u8), isize> {
        transfers.pass_through_rings(options)
    }

    #[test]
    fn a_ring_and_what_is_not_one() {
        let options = RingOptions::default();
        let at = |transfers: &[Transfer]| {
            let timed = transfers.iter().map(|&t| (t, 0, None)).collect();
            streamed(timed, 1, options, rings).remove(0)
        };
        let ring: BTreeSet<_> = [((1, 7), 1), ((2, 7), 1), ((3, 7), 1)].into();
        assert_eq!(at(&[(1, 2, 7), (2, 3, 7), (3, 1, 7)]), ring);
        // A different amount on one hop breaks it.
        assert!(at(&[(1, 2, 7), (2, 3, 7), (3, 1, 8)]).is_empty());
        // Two nodes swapping are no ring.
        assert!(at(&[(1, 2, 7), (2, 1, 7)]).is_empty());
        // A member that received the amount twice but sent it once is out of balance.
        assert!(at(&[(1, 2, 7), (2, 3, 7), (3, 1, 7), (4, 2, 7)]).is_empty());
        // A second loop through one member: both amounts' rings, each on its own.
        let two = at(&[(1, 2, 7), (2, 3, 7), (3, 1, 7), (4, 5, 9), (5, 6, 9), (6, 4, 9)]);
        assert_eq!(two.len(), 6);
        assert_eq!(at(&[(1, 2, 7), (2, 3, 7), (3, 1, 7)]), oracle(&[(1, 2, 7), (2, 3, 7), (3, 1, 7)], options));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]
        /// Random transfers among a few nodes and amounts, entering and leaving at random
        /// times: the streamed rings equal the batch rings of the transfers alive at each time.
        #[test]
        fn streamed_rings_equal_the_batch_oracle(
            transfers in proptest::collection::vec(
                ((0u8..5, 0u8..5, 0u8..2), 0u64..6, proptest::option::of(1u64..8)),
                0..30,
            ),
            tolerance in prop_oneof![Just(0.0), Just(0.34)],
            max_counterparties in prop_oneof![Just(usize::MAX), Just(2usize), Just(3usize)],
        ) {
            let options = RingOptions { min_members: 3, net_tolerance: tolerance, max_counterparties };
            streamed_equals_oracle(transfers, options, rings, oracle)?;
        }
    }

    /// Transfers `(transfer, enters, for how long)` streamed through `build` over 14 times: at
    /// each time, what comes out equals `oracle` of the transfers alive then.
    pub(crate) fn streamed_equals_oracle(
        transfers: Vec<(Transfer, u64, Option<u64>)>,
        options: RingOptions,
        build: Build,
        oracle: Oracle,
    ) -> Result<(), TestCaseError> {
        let transfers: Vec<(Transfer, u64, Option<u64>)> =
            transfers.into_iter().map(|(t, enters, leaves)| (t, enters, leaves.map(|l| enters + l))).collect();
        let times = 14;
        for (t, got) in streamed(transfers.clone(), times, options, build).into_iter().enumerate() {
            let t = t as u64;
            let alive: Vec<Transfer> = transfers
                .iter()
                .filter(|(_, enters, leaves)| *enters <= t && leaves.is_none_or(|l| l > t))
                .map(|(transfer, ..)| *transfer)
                .collect();
            prop_assert_eq!(got, oracle(&alive, options), "at time {}", t);
        }
        Ok(())
    }
}
