//! Pass-through chains: groups of nodes that hand one amount on from one to the next, whether or
//! not the path ever closes.
//!
//! Layering in money laundering, and daisy chains of a security between accounts, move one
//! amount along a path of intermediaries, each passing on what it received. A
//! [ring](crate::rings) is such a path that comes back to where it started; most are never seen
//! closed, because the last hops have not happened yet or happen outside the data. A chain is
//! the open form:
//!
//! 1. passing through and the pass-through edges are the rings' (a node received amount `a`
//!    from one node and sent `a` on to another, its counts of transfers in and out of `a` in
//!    balance within `net_tolerance`; the edges are the two transfers of each such pass);
//! 2. a chain is a connected component of one amount's pass-through edges, their direction
//!    ignored, with at least `min_members` nodes: the intermediaries, where the amount came
//!    from and where it went.
//!
//! A ring's members are in a chain too (a closed path is a path). The time order of the hops is
//! not asked for: a laundering scheme's hops are often booked out of order, and requiring it
//! would let the scheme choose its booking dates to hide. Amounts match exactly, as for rings,
//! which is what makes the search precise on payments in cents and loose on round lots of
//! shares: on trades, bound `max_counterparties` and look at chains of more members.
//!
//! The components come from [`LinkedComponents`] (differential's label propagation in an
//! `iterate` scope), so a transfer that extends a chain relabels only that chain, and one that
//! leaves the window splits it, corrected rather than recomputed.

use std::hash::Hash;

use differential_dataflow::lattice::Lattice;
use differential_dataflow::{ExchangeData, VecCollection};
use timely::progress::Timestamp;

use crate::LinkedComponents;
use crate::rings::{RingOptions, edges_and_balance, pass_edges};

/// Extension trait: the pass-through chains of a changing collection of transfers.
pub trait PassThroughChains<'scope, T: Timestamp, N, A> {
    /// For a collection of transfers `(from, to, amount)` (a multiset: each transfer counts),
    /// `((member, amount), chain)` for every node in a chain of that amount, `chain` being the
    /// chain's least member, at every time, as the transfers change. `options` are the rings'
    /// ([`RingOptions`]); `min_members` counts the chain's ends. See the
    /// [module documentation](self).
    ///
    /// # Examples
    /// ```
    /// use differential_dataflow::input::Input;
    /// use surveil_operators::{PassThroughChains, RingOptions};
    /// use timely::dataflow::operators::capture::{Capture, Extract};
    ///
    /// let chains = timely::example(|scope| {
    ///     let (mut transfers, collection) = scope.new_collection::<(u32, u32, u64), isize>();
    ///     // 100 goes 1 -> 2 -> 3 -> 4 and stops; 5 sends 6 the same amount, which 6 keeps.
    ///     for t in [(1, 2, 100), (2, 3, 100), (3, 4, 100), (5, 6, 100)] {
    ///         transfers.insert(t);
    ///     }
    ///     // The first hop leaves the window at time 10: 2 no longer passes anything on.
    ///     transfers.advance_to(10);
    ///     transfers.remove((1, 2, 100));
    ///     collection.pass_through_chains(RingOptions { min_members: 4, ..Default::default() }).inner.capture()
    /// });
    /// let mut updates: Vec<_> = chains.extract().into_iter().flat_map(|(_, data)| data).collect();
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
    ///         (((4, 100), 1), 0, 1),
    ///         (((4, 100), 1), 10, -1),
    ///     ],
    /// );
    /// ```
    fn pass_through_chains(self, options: RingOptions) -> VecCollection<'scope, T, ((N, A), N), isize>;
}

impl<'scope, T, N, A> PassThroughChains<'scope, T, N, A> for VecCollection<'scope, T, (N, N, A), isize>
where
    T: Timestamp + Lattice + Hash + Ord,
    N: ExchangeData + Hash,
    A: ExchangeData + Hash,
{
    fn pass_through_chains(self, options: RingOptions) -> VecCollection<'scope, T, ((N, A), N), isize> {
        let (edges, balanced) = edges_and_balance(self, options);
        pass_through_chains_of(edges, balanced, options.min_members)
    }
}

/// The chains of `edges` (distinct transfers `(from, to, amount)`, the market's hubs left out)
/// through the nodes `balanced` says received and sent each amount in balance, as
/// [`PassThroughChains::pass_through_chains`] gives them, for a caller that keeps the counts of
/// transfers itself (as [`pass_through_rings_of`](crate::pass_through_rings_of)).
pub fn pass_through_chains_of<'scope, T, N, A>(
    edges: VecCollection<'scope, T, (N, N, A), isize>,
    balanced: VecCollection<'scope, T, (N, A), isize>,
    min_members: usize,
) -> VecCollection<'scope, T, ((N, A), N), isize>
where
    T: Timestamp + Lattice + Hash + Ord,
    N: ExchangeData + Hash,
    A: ExchangeData + Hash,
{
    let (pass_edges, _) = pass_edges(edges, balanced);
    let members = pass_edges.linked_components();
    let chains = members
        .clone()
        .map(|(_, label)| label)
        .count()
        .filter(move |(_, members)| *members as usize >= min_members.max(2))
        .map(|(label, _)| label);
    // Consolidated, so that readers see one update per change rather than the iteration's
    // transient proposals.
    members
        .map(|(member, label)| (label, member))
        .semijoin(chains)
        .map(|(chain, member)| (member, chain.0))
        .consolidate()
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::*;
    use crate::rings::tests::{Transfer, oracle_edges, streamed, streamed_equals_oracle};

    /// Batch oracle: the chains of the transfers alive at one time, by union-find over the
    /// pass-through edges of each amount.
    fn oracle(transfers: &[Transfer], options: RingOptions) -> BTreeSet<((u8, u8), u8)> {
        let (_, pass_edges) = oracle_edges(transfers, options);
        let mut out = BTreeSet::new();
        for (a, edges) in pass_edges {
            let mut parent: BTreeMap<u8, u8> = BTreeMap::new();
            fn root(parent: &mut BTreeMap<u8, u8>, n: u8) -> u8 {
                let p = *parent.entry(n).or_insert(n);
                if p == n {
                    return n;
                }
                let r = root(parent, p);
                parent.insert(n, r);
                r
            }
            for &(u, v) in &edges {
                let (ru, rv) = (root(&mut parent, u), root(&mut parent, v));
                // The least node is every component's root, as it is the chain's label.
                parent.insert(ru.max(rv), ru.min(rv));
            }
            let nodes: Vec<u8> = parent.keys().copied().collect();
            let mut components: BTreeMap<u8, Vec<u8>> = BTreeMap::new();
            for n in nodes {
                let r = root(&mut parent, n);
                components.entry(r).or_default().push(n);
            }
            for (label, members) in components {
                if members.len() >= options.min_members.max(2) {
                    out.extend(members.into_iter().map(|n| ((n, a), label)));
                }
            }
        }
        out
    }

    fn chains(
        transfers: VecCollection<'_, u64, Transfer, isize>,
        options: RingOptions,
    ) -> VecCollection<'_, u64, ((u8, u8), u8), isize> {
        transfers.pass_through_chains(options)
    }

    #[test]
    fn a_chain_and_what_is_not_one() {
        let options = RingOptions::default();
        let at = |transfers: &[Transfer]| {
            let timed = transfers.iter().map(|&t| (t, 0, None)).collect();
            streamed(timed, 1, options, chains).remove(0)
        };
        // An open path of three, and its hops booked in reverse (no time order is asked for).
        let three: BTreeSet<_> = [((1, 7), 1), ((2, 7), 1), ((3, 7), 1)].into();
        assert_eq!(at(&[(1, 2, 7), (2, 3, 7)]), three);
        assert_eq!(at(&[(2, 3, 7), (1, 2, 7)]), three);
        // A ring is a chain too.
        assert_eq!(at(&[(1, 2, 7), (2, 3, 7), (3, 1, 7)]), three);
        // A different amount on the second hop, a transfer straight back, or an intermediary
        // that received twice and sent once: nothing passed through.
        assert!(at(&[(1, 2, 7), (2, 3, 8)]).is_empty());
        assert!(at(&[(1, 2, 7), (2, 1, 7)]).is_empty());
        assert!(at(&[(1, 2, 7), (4, 2, 7), (2, 3, 7)]).is_empty());
        // Two chains of one amount that share no node stay apart.
        let two = at(&[(1, 2, 7), (2, 3, 7), (4, 5, 7), (5, 6, 7)]);
        assert_eq!(two.iter().map(|(_, chain)| *chain).collect::<BTreeSet<_>>(), [1, 4].into());
        assert_eq!(two, oracle(&[(1, 2, 7), (2, 3, 7), (4, 5, 7), (5, 6, 7)], options));
        // Fewer members than asked for.
        let four = RingOptions { min_members: 4, ..options };
        assert!(streamed(vec![((1, 2, 7), 0, None), ((2, 3, 7), 0, None)], 1, four, chains)[0].is_empty());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]
        /// Random transfers among a few nodes and amounts, entering and leaving at random
        /// times: the streamed chains equal the batch chains of the transfers alive at each time.
        #[test]
        fn streamed_chains_equal_the_batch_oracle(
            transfers in proptest::collection::vec(
                ((0u8..6, 0u8..6, 0u8..2), 0u64..6, proptest::option::of(1u64..8)),
                0..30,
            ),
            tolerance in prop_oneof![Just(0.0), Just(0.34)],
            max_counterparties in prop_oneof![Just(usize::MAX), Just(2usize), Just(3usize)],
            min_members in 2usize..5,
        ) {
            let options = RingOptions { min_members, net_tolerance: tolerance, max_counterparties };
            streamed_equals_oracle(transfers, options, chains, oracle)?;
        }
    }
}
