//! Linked components: which nodes are connected, through any chain of links, at every time.
//!
//! The links are a differential collection of node pairs that changes over time (a link
//! inserted at one time, removed at a later one). The result is a collection of `(node,
//! label)` pairs (consolidated: one update per change of a label), where `label` is the least node of the node's component, kept **correct as
//! the links change**: a new link merges two components and relabels the larger label's side; a
//! removed link splits a component only if no other path joins it. Differential dataflow's
//! label propagation ([`propagate`]) does the work inside an `iterate` scope, so a change costs
//! work in proportion to the labels it changes, not a recomputation of the graph.
//!
//! Links are undirected: `(a, b)` links `b` to `a` as well. A pair present several times is one
//! link; a node with no link has no label (callers treat "no label" as "alone").
//!
//! Written on differential rather than as a union-find inside a timely operator because a
//! union-find cannot undo a link: a removal would mean rebuilding the whole forest.

use std::hash::Hash;

use differential_dataflow::algorithms::graphs::propagate::propagate;
use differential_dataflow::lattice::Lattice;
use differential_dataflow::{ExchangeData, VecCollection};
use timely::progress::Timestamp;

/// Extension trait: the connected components of a changing collection of links.
pub trait LinkedComponents<'scope, T: Timestamp, N> {
    /// For every node that has at least one link, `(node, label)` with `label` the least node
    /// it is connected to (itself included), at every time, as the links change.
    ///
    /// # Examples
    /// ```
    /// use differential_dataflow::input::Input;
    /// use surveil_operators::LinkedComponents;
    /// use timely::dataflow::operators::capture::{Capture, Extract};
    ///
    /// let labels = timely::example(|scope| {
    ///     let (mut links, collection) = scope.new_collection::<(u32, u32), isize>();
    ///     // 1-2 and 2-3 from time 0; 2-3 removed at time 5.
    ///     links.insert((1, 2));
    ///     links.insert((3, 2));
    ///     links.advance_to(5);
    ///     links.remove((3, 2));
    ///     collection.linked_components().inner.capture()
    /// });
    /// let mut updates: Vec<_> = labels.extract().into_iter().flat_map(|(_, data)| data).collect();
    /// updates.sort();
    /// assert_eq!(
    ///     updates,
    ///     vec![((1, 1), 0, 1), ((2, 1), 0, 1), ((3, 1), 0, 1), ((3, 1), 5, -1)],
    /// );
    /// ```
    fn linked_components(self) -> VecCollection<'scope, T, (N, N), isize>;
}

impl<'scope, T, N> LinkedComponents<'scope, T, N> for VecCollection<'scope, T, (N, N), isize>
where
    T: Timestamp + Lattice + Hash + Ord,
    N: ExchangeData + Hash,
{
    fn linked_components(self) -> VecCollection<'scope, T, (N, N), isize> {
        let reversed = self.clone().map(|(a, b)| (b, a));
        let edges = self.concat(reversed).filter(|(a, b)| a != b).distinct();
        let nodes = edges.clone().map(|(a, _)| (a.clone(), a)).distinct();
        // Consolidated, so that readers see one update per change of a label rather than the
        // iteration's transient proposals.
        propagate(edges, nodes).consolidate()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use differential_dataflow::input::Input;
    use proptest::prelude::*;
    use timely::dataflow::operators::capture::{Capture, Extract};

    use super::*;

    /// Batch oracle: union-find over the links alive at `time`.
    fn oracle(links: &[(u8, u8, u64, Option<u64>)], time: u64) -> BTreeMap<u8, u8> {
        let alive: Vec<(u8, u8)> = links
            .iter()
            .filter(|(a, b, from, to)| *from <= time && to.is_none_or(|to| time < to) && a != b)
            .map(|&(a, b, _, _)| (a, b))
            .collect();
        let mut parent: BTreeMap<u8, u8> = BTreeMap::new();
        fn find(parent: &mut BTreeMap<u8, u8>, x: u8) -> u8 {
            let p = *parent.entry(x).or_insert(x);
            if p == x {
                return x;
            }
            let root = find(parent, p);
            parent.insert(x, root);
            root
        }
        for &(a, b) in &alive {
            let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
            let (low, high) = (ra.min(rb), ra.max(rb));
            parent.insert(high, low);
        }
        let nodes: BTreeSet<u8> = alive.iter().flat_map(|&(a, b)| [a, b]).collect();
        nodes.into_iter().map(|n| (n, find(&mut parent, n))).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// The streaming labels, accumulated up to any time, equal the batch components of
        /// the links alive at that time.
        #[test]
        fn matches_union_find(
            links in prop::collection::vec((0u8..12, 0u8..12, 0u64..20, prop::option::of(1u64..25)), 0..30)
        ) {
            let links: Vec<_> = links.into_iter().map(|(a, b, from, to)| (a, b, from, to.map(|t| from + t))).collect();
            let updates: Vec<((u8, u8), u64, isize)> = links
                .iter()
                .flat_map(|&(a, b, from, to)| {
                    std::iter::once(((a, b), from, 1)).chain(to.map(|to| ((a, b), to, -1)))
                })
                .collect();
            let captured = timely::example(move |scope| {
                let (_input, collection) = scope.new_collection_from_raw(updates);
                collection.linked_components().inner.capture()
            });
            let result: Vec<((u8, u8), u64, isize)> = captured.extract().into_iter().flat_map(|(_, d)| d).collect();
            for time in 0..50u64 {
                let mut counts: BTreeMap<(u8, u8), isize> = BTreeMap::new();
                for (pair, t, diff) in &result {
                    if *t <= time {
                        *counts.entry(*pair).or_default() += diff;
                    }
                }
                let streamed: BTreeMap<u8, u8> = counts
                    .into_iter()
                    .filter(|(_, c)| *c != 0)
                    .map(|((node, label), c)| {
                        assert_eq!(c, 1, "node {node} label {label} counted {c} times at {time}");
                        (node, label)
                    })
                    .collect();
                prop_assert_eq!(streamed, oracle(&links, time), "at time {}", time);
            }
        }
    }
}
