//! Linked accounts: accounts under common ownership, as ownership changes over event time.
//!
//! Two accounts are **linked** when an owner holds at least `reference.link_share` (10 % by
//! default: the CFTC's aggregation standard, 17 CFR 150.4, under which positions in
//! accounts one person owns 10 % or more of are aggregated with that person's) of each of them, or when one
//! holds that share of the other, and links are transitive: A linked to B and B to C puts A, B
//! and C in one group. Owners may be people, entities or accounts, in one namespace.
//!
//! Ownership is reference data that changes while a stream runs (an account sold, an owner
//! added): the accounts file's `owner` column holds all of its account from the start, and the
//! ownership file (`reference.ownership`, `time,account,owner,share`) records changes at event
//! times. The links are a differential collection over event time, their groups are kept by
//! [`LinkedComponents`] (label propagation in an `iterate` scope, corrected rather than
//! recomputed when a link comes or goes), and [`LinkAccounts::link_accounts`] marks each trade
//! with whether its parties were in one group **as of the trade's time** ([`LookupAsOf`]), so a trade made before
//! two accounts were linked, or after they were unlinked, is not a trade between linked
//! accounts.
//!
//! Changes may also arrive while a live run goes on ([`linked_groups_fed`], fed from a topic by
//! `KafkaSource::ownership_feed` (feature `kafka`)): each applies from its own time or from how
//! far the events had been read when it came, whichever is later.

use std::collections::BTreeMap;

use differential_dataflow::{AsCollection, VecCollection};
use surveil_operators::{Feed, LinkedComponents, LookupAsOf, feed_source};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::{Capability, Concat, Operator, ToStream};
use timely::dataflow::{ProbeHandle, Scope, Stream};

use crate::model::{Body, Event, Symbol};
use crate::reference::{OwnershipChange, ReferenceData};

/// The links that `changes` make, as differential updates over event time: `((account, owner),
/// time, +1)` when the owner's share of the account reaches `min_share`, and `-1` when it falls
/// below. Changes apply in time order; changes at one time apply in the order given.
///
/// ```
/// use surveil::links::link_updates;
/// use surveil::model::Symbol;
/// use surveil::reference::OwnershipChange;
///
/// let (a, o) = (Symbol::of(b"ACC1"), Symbol::of(b"FUND"));
/// let change = |time, share| OwnershipChange { time, account: a, owner: o, share };
/// // 5 %, then 25 % at time 10, then sold at time 20.
/// let updates = link_updates(&[change(0, 0.05), change(10, 0.25), change(20, 0.0)], 0.10);
/// assert_eq!(updates, vec![((a, o), 10, 1), ((a, o), 20, -1)]);
/// ```
pub fn link_updates(changes: &[OwnershipChange], min_share: f64) -> Vec<((Symbol, Symbol), u64, isize)> {
    let mut state = LinkState::new(min_share);
    state.apply_all(changes)
}

/// Which (account, owner) pairs are links, as changes apply one after another: the state
/// behind [`link_updates`], kept by a live feed of changes.
#[derive(Clone, Debug)]
pub struct LinkState {
    min_share: f64,
    linked: BTreeMap<(Symbol, Symbol), bool>,
}

impl LinkState {
    /// No links yet, at `min_share`.
    pub fn new(min_share: f64) -> LinkState {
        LinkState { min_share, linked: BTreeMap::new() }
    }

    /// Applies `changes` in time order (stable): the updates they make.
    pub fn apply_all(&mut self, changes: &[OwnershipChange]) -> Vec<((Symbol, Symbol), u64, isize)> {
        let mut ordered: Vec<&OwnershipChange> = changes.iter().collect();
        ordered.sort_by_key(|c| c.time);
        ordered
            .into_iter()
            .filter_map(|change| self.apply(change).map(|(pair, diff)| (pair, change.time, diff)))
            .collect()
    }

    /// Applies one change: `+1` when the pair becomes a link, `-1` when it stops being one.
    pub fn apply(&mut self, change: &OwnershipChange) -> Option<((Symbol, Symbol), isize)> {
        if change.account == change.owner {
            return None;
        }
        let pair = (change.account, change.owner);
        let now = change.share >= self.min_share;
        match (self.linked.insert(pair, now).unwrap_or(false), now) {
            (false, true) => Some((pair, 1)),
            (true, false) => Some((pair, -1)),
            _ => None,
        }
    }
}

/// A change of ownership with its source (0: the feed, 1: `more`) and its number there.
type Numbered = (u8, u64, OwnershipChange);

/// Changes of ownership that arrive while a run follows a live feed (a topic): polled on
/// worker 0 by [`linked_groups_fed`], with how far the events have been read (`ahead`: no
/// change from now on applies before it). [`surveil_operators::feed_source`] says what this
/// means for the times the changes apply from.
pub type OwnershipFeed = Box<dyn FnMut() -> Feed<OwnershipChange>>;

/// A job whose ownership changes also arrive while it runs: every worker has one, worker 0
/// with the feed.
pub struct LiveOwnership {
    /// This worker's feed (worker 0's).
    pub feed: Option<OwnershipFeed>,
}

/// The groups of linked accounts over event time, `(account, group)` with `group` the group's
/// label (its least node by id, an account or an owner), built from the reference data's ownership in `scope`. Worker 0 feeds the
/// links; every worker builds the same dataflow.
pub fn linked_groups<'scope>(
    scope: Scope<'scope, u64>,
    reference: &ReferenceData,
) -> VecCollection<'scope, u64, (Symbol, Symbol), isize> {
    let updates =
        if scope.index() == 0 { link_updates(&reference.ownership(), reference.link_share()) } else { Vec::new() };
    updates.to_stream(scope).as_collection().linked_components()
}

/// [`linked_groups`], with the changes a live feed gives while the run goes on (worker 0's;
/// every worker calls this), each applied from its own time or from how far the events had
/// been read when it came, whichever is later, and the changes of `more` (worker 0's, at
/// their timely times, each with a sequence number: the owners that live account records
/// change). The feed finishes with the events, which `events` probes. The changes apply in
/// time order whatever their source, on worker 0 (which holds the state); those of one time
/// by account and owner, then the feed's before `more`'s, each in its own order.
pub fn linked_groups_fed<'scope>(
    scope: Scope<'scope, u64>,
    reference: &ReferenceData,
    events: &ProbeHandle<u64>,
    live: LiveOwnership,
    more: Option<Stream<'scope, u64, Vec<(u64, OwnershipChange)>>>,
) -> VecCollection<'scope, u64, (Symbol, Symbol), isize> {
    let mut state = LinkState::new(reference.link_share());
    let updates = if scope.index() == 0 { state.apply_all(&reference.ownership()) } else { Vec::new() };
    let fixed = updates.to_stream(scope);
    // The feed's changes, numbered in the order it gives them.
    let numbered = live.feed.map(|mut feed| {
        let mut next = 0u64;
        move || {
            let Feed { items, ahead } = feed();
            let items = items
                .into_iter()
                .map(|(change, time)| {
                    next += 1;
                    ((0u8, next, change), time)
                })
                .collect();
            Feed { items, ahead }
        }
    });
    let fed = feed_source(scope, "OwnershipFeed", events, std::time::Duration::from_millis(1), numbered)
        .map(|(change, _)| change);
    let changes = match more {
        Some(more) => fed.concat(more.map(|(seq, change)| (1u8, seq, change))),
        None => fed,
    };
    let to_first = Exchange::new(|_: &Numbered| 0u64);
    let live = changes.unary_frontier::<CapacityContainerBuilder<_>, _, _, _>(to_first, "LinkChanges", move |_, _| {
        let mut pending: BTreeMap<u64, (Capability<u64>, Vec<Numbered>)> = BTreeMap::new();
        move |(input, frontier), output| {
            let port = output.output_index();
            input.for_each_stamp(|cap, data| {
                let Some(&time) = cap.least() else { return };
                let entry = pending.entry(time).or_insert_with(|| (cap.delayed(&time, port), Vec::new()));
                for batch in data {
                    entry.1.append(batch);
                }
            });
            while let Some(entry) = pending.first_entry() {
                if frontier.less_equal(entry.key()) {
                    break;
                }
                let (time, (cap, mut changes)) = entry.remove_entry();
                changes.sort_by_key(|&(source, seq, c)| (c.account, c.owner, source, seq));
                let mut session = output.session(&cap);
                for (_, _, change) in &changes {
                    if let Some((pair, diff)) = state.apply(change) {
                        session.give((pair, time, diff));
                    }
                }
            }
        }
    });
    fixed.concat(live).as_collection().linked_components()
}

/// Extension trait: mark each trade with whether its parties are linked as of its time.
pub trait LinkAccounts<'scope> {
    /// Sets the `linked` flag of every trade ([`Body::Trade`]): whether buyer and seller
    /// accounts are in one group of `groups` as of the trade's event time, or `None` when
    /// neither account is in any group then (so that a rule can fall back on the trade's own
    /// owner columns). Other events pass unchanged.
    ///
    /// ```
    /// use surveil::links::{LinkAccounts, linked_groups};
    /// use surveil::model::Body;
    /// use surveil::reference::ReferenceData;
    /// use timely::dataflow::operators::capture::Capture;
    /// use timely::dataflow::operators::ToStream;
    ///
    /// let mut reference = ReferenceData::new(2);
    /// // FUND takes 40 % of ACC1 and of ACC2 at time 100.
    /// reference.add_ownership(100, "ACC1", "FUND", 0.40);
    /// reference.add_ownership(100, "ACC2", "FUND", 0.40);
    /// let trades = vec![
    ///     surveil::testing::trade("ACME", "ACC1", "ACC2", 10).at(50),
    ///     surveil::testing::trade("ACME", "ACC1", "ACC2", 10).at(150),
    /// ];
    /// let out = timely::example(move |scope| {
    ///     let groups = linked_groups(scope, &reference);
    ///     trades.to_stream(scope).link_accounts(groups).capture()
    /// });
    /// let linked: Vec<Option<bool>> = surveil::testing::captured(out)
    ///     .into_iter()
    ///     .map(|e| match e.body {
    ///         Body::Trade { linked, .. } => linked,
    ///         _ => None,
    ///     })
    ///     .collect();
    /// assert_eq!(linked, vec![None, Some(true)]); // before time 100 neither is in a group
    /// ```
    fn link_accounts(
        self,
        groups: VecCollection<'scope, u64, (Symbol, Symbol), isize>,
    ) -> Stream<'scope, u64, Vec<Event>>;
}

impl<'scope> LinkAccounts<'scope> for Stream<'scope, u64, Vec<Event>> {
    fn link_accounts(
        self,
        groups: VecCollection<'scope, u64, (Symbol, Symbol), isize>,
    ) -> Stream<'scope, u64, Vec<Event>> {
        self.update_as_of(
            "LinkAccounts",
            groups,
            |event: &Event| event.time,
            |event, as_of| {
                if let Body::Trade { buyer, seller, linked, .. } = &mut event.body {
                    let group = |account: Symbol| {
                        if account.is_none() { None } else { as_of.first(&account).copied() }
                    };
                    *linked = match (group(buyer.account), group(seller.account)) {
                        // Neither account is in the ownership data: the trade's own owner
                        // columns decide.
                        (None, None) => None,
                        (b, s) => Some(b.is_some() && b == s),
                    };
                }
            },
        )
    }
}
