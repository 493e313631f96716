//! Wash trades between linked accounts in separate prints: one account of a group buys and
//! another sells the same instrument, each against a third party, at the same price and size
//! within moments.
//!
//! A wash trade need not be one print with the same owner on both sides: two accounts under
//! common ownership can each trade with the market (through different brokers, or against
//! resting orders placed to be hit) so that the group's position does not change while volume
//! prints. CME Rule 534 prohibits wash trades, including simultaneous buy and sell orders for
//! accounts with common beneficial ownership that produce a wash result; SGX Rule 5.12.2(f)
//! speaks of orders of "substantially the same size, at substantially the same time, and at
//! substantially the same price"; MAR Annex I (1)(a) and Delegated Regulation 2016/522 Annex II
//! list transactions without a change of beneficial ownership among the indicators of
//! manipulation.
//! The print between two linked accounts is the self-trade rule's
//! ([`crate::rules::self_trade`]); this rule pairs the prints that are not.
//!
//! # Logic
//!
//! 1. Each trade's executions of named parties; the trade is skipped when it is itself between
//!    two accounts of one group as of its time (those are the self-trade rule's).
//! 2. A buy and a sell of the same instrument by **different accounts in one group of linked
//!    accounts at the later execution's time** ([`crate::links`]), within `window` of each
//!    other ([`surveil_operators::IntervalJoin`], keyed by instrument and group), at prices
//!    within `price_tolerance_bps` (0: the same price) and quantities within
//!    `quantity_tolerance` of the larger. Each execution carries its account's groups over the
//!    `window` after it, so a group whose label changes (a new member with a lower id) still
//!    pairs its accounts, and accounts in one group only at different times do not pair.
//! 3. One alert per such pair of executions, at the later one's time, with both trades as
//!    evidence.

use differential_dataflow::VecCollection;
use surveil_operators::{Interval, IntervalJoin, LookupAsOf};
use timely::dataflow::Stream;
use timely::dataflow::operators::core::Filter;
use timely::dataflow::operators::vec::Map;

use super::executions::Execution;
use crate::config::{LinkedWashConfig, nanos_of};
use crate::model::alert::rules;
use crate::model::{Alert, Event, Severity, Side, Symbol};

/// An execution with its account's groups from the trade's time to `window` after it, as
/// (from, group) steps; `NONE` while the account is in no group.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
struct Linked {
    execution: Execution,
    groups: Vec<(u64, Symbol)>,
}

impl Linked {
    /// The account's group at `time` (within the span the steps cover).
    fn group_at(&self, time: u64) -> Symbol {
        self.groups.iter().take_while(|(from, _)| *from <= time).last().map_or(Symbol::NONE, |(_, g)| *g)
    }
}

/// A linked execution under one of its groups (the join key).
type Grouped = (Symbol, Linked);

/// Whether two executions are close enough in price and size.
fn alike(buy: &Execution, sell: &Execution, config: &LinkedWashConfig) -> bool {
    let (a, b) = (buy.price as i128, sell.price as i128);
    let allowed = (a.abs().max(b.abs()) as f64) * config.price_tolerance_bps / 10_000.0;
    let larger = buy.quantity.max(sell.quantity) as f64;
    ((a - b).abs() as f64) <= allowed
        && ((buy.quantity as f64 - sell.quantity as f64).abs()) <= config.quantity_tolerance * larger
}

/// Extension trait: wash trades between linked accounts in separate prints.
pub trait LinkedWashExt<'scope> {
    /// Alerts for pairs of opposite executions by different accounts of one group of linked
    /// accounts (`groups`, as [`crate::links::linked_groups`] builds it) in separate prints (see
    /// the [module documentation](self)).
    ///
    /// ```
    /// use surveil::config::LinkedWashConfig;
    /// use surveil::links::linked_groups;
    /// use surveil::reference::ReferenceData;
    /// use surveil::rules::LinkedWashExt;
    /// use surveil::testing::{captured, trade_at_price};
    /// use timely::dataflow::operators::capture::Capture;
    /// use timely::dataflow::operators::ToStream;
    ///
    /// let mut reference = ReferenceData::new(4);
    /// reference.add_ownership(0, "ACC1", "FUND", 1.0);
    /// reference.add_ownership(0, "ACC2", "FUND", 1.0);
    /// let trades = vec![
    ///     trade_at_price(1_000, "ACME", "ACC1", "MM", "10"),   // ACC1 buys from a market maker
    ///     trade_at_price(1_200, "ACME", "MM", "ACC2", "10"),   // ACC2 sells to it: a pair
    ///     trade_at_price(9_000_000_000, "ACME", "MM", "ACC2", "10"), // seconds later: none
    /// ];
    /// let alerts = timely::example(move |scope| {
    ///     let groups = linked_groups(scope, &reference);
    ///     trades.to_stream(scope).linked_washes(groups, &LinkedWashConfig::default()).capture()
    /// });
    /// assert_eq!(captured(alerts).len(), 1);
    /// ```
    fn linked_washes(
        self,
        groups: VecCollection<'scope, u64, (Symbol, Symbol), isize>,
        config: &LinkedWashConfig,
    ) -> Stream<'scope, u64, Vec<Alert>>;
}

impl<'scope> LinkedWashExt<'scope> for Stream<'scope, u64, Vec<Event>> {
    fn linked_washes(
        self,
        groups: VecCollection<'scope, u64, (Symbol, Symbol), isize>,
        config: &LinkedWashConfig,
    ) -> Stream<'scope, u64, Vec<Alert>> {
        let config = *config;
        let window = nanos_of(config.window);
        // Each execution waits until the groups are known `window` past it, and carries its
        // account's groups over that span: a pair counts when both accounts are in one group
        // at the later execution's time, whatever labels the group had before.
        let grouped: Stream<'scope, u64, Vec<Vec<Grouped>>> = self.lookup_as_of(
            "WashGroups",
            groups,
            move |event: &Event| event.time.saturating_add(window),
            move |event, as_of| {
                let [buy, sell] = Execution::of_trade(&event);
                let at = |time: u64, x: &Option<Execution>| x.and_then(|x| as_of.at(time).first(&x.account).copied());
                // A print within one group is a self-trade, not half of a pair.
                let (buy_group, sell_group) = (at(event.time, &buy), at(event.time, &sell));
                if buy_group.is_some() && buy_group == sell_group {
                    return Vec::new();
                }
                let end = event.time.saturating_add(window);
                let mut out = Vec::new();
                for execution in [buy, sell].into_iter().flatten() {
                    let mut steps: Vec<(u64, Symbol)> = Vec::new();
                    let times =
                        std::iter::once(event.time).chain(as_of.change_times(&execution.account, event.time, end));
                    for time in times {
                        let group = at(time, &Some(execution)).unwrap_or(Symbol::NONE);
                        if steps.last().is_none_or(|(_, g)| *g != group) {
                            steps.push((time, group));
                        }
                    }
                    let mut keys: Vec<Symbol> = steps.iter().map(|(_, g)| *g).filter(|g| !g.is_none()).collect();
                    keys.sort_unstable();
                    keys.dedup();
                    let linked = Linked { execution, groups: steps };
                    out.extend(keys.into_iter().map(|key| (key, linked.clone())));
                }
                out
            },
        );
        let executions = grouped.flat_map(|all| all);
        let buys = executions.clone().filter(|(_, x): &Grouped| x.execution.side == Side::Buy);
        let sells = executions.filter(|(_, x): &Grouped| x.execution.side == Side::Sell);
        let pairs = buys.interval_join(
            sells,
            "LinkedWash",
            Interval::symmetric(window),
            |(group, x): &Grouped| ((x.execution.instrument, *group), x.execution.time),
            |(group, x): &Grouped| ((x.execution.instrument, *group), x.execution.time),
            move |(group, buy): &Grouped, (_, sell): &Grouped| {
                // Found under every group the two share within the span; counted under the
                // one they share at the later execution, so once.
                let later = buy.execution.time.max(sell.execution.time);
                let (b, s) = (&buy.execution, &sell.execution);
                (b.account != s.account
                    && buy.group_at(later) == *group
                    && sell.group_at(later) == *group
                    && alike(b, s, &config))
                .then_some((*group, *b, *s))
            },
        );
        pairs.matches.map(move |(group, buy, sell)| {
            let time = buy.time.max(sell.time);
            let gap = buy.time.abs_diff(sell.time);
            let mut alert = Alert::builder(rules::LINKED_WASH, time);
            alert
                .instrument(buy.instrument)
                .account(buy.account)
                .severity(Severity::High)
                .score(if buy.quantity == sell.quantity && buy.price == sell.price { 80.0 } else { 70.0 })
                .explain(format!(
                    "linked accounts traded opposite sides in separate prints {} ms apart: a buy of {} and a sell of {}",
                    gap / 1_000_000,
                    buy.quantity,
                    sell.quantity
                ))
                .param("buyer", buy.account)
                .param("seller", sell.account)
                .param("group", group)
                .param("buy_counterparty", buy.counterparty)
                .param("sell_counterparty", sell.counterparty)
                .param("gap", std::time::Duration::from_nanos(gap))
                .evidence(&buy.evidence())
                .evidence(&sell.evidence())
                .discriminator(sell.origin);
            alert.build()
        })
    }
}

#[cfg(test)]
mod tests {
    use timely::dataflow::operators::ToStream;
    use timely::dataflow::operators::capture::Capture;

    use super::*;
    use crate::links::linked_groups;
    use crate::reference::ReferenceData;
    use crate::testing::{captured, trade_at_price};

    const T: u64 = 10_000_000_000;
    const MS: u64 = 1_000_000;

    fn washes(reference: ReferenceData, trades: Vec<Event>) -> Vec<Alert> {
        captured(timely::example(move |scope| {
            let groups = linked_groups(scope, &reference);
            trades.to_stream(scope).linked_washes(groups, &LinkedWashConfig::default()).capture()
        }))
    }

    #[test]
    fn a_group_whose_label_changes_still_pairs_its_accounts() {
        let mut reference = ReferenceData::new(4);
        reference.add_ownership(0, "ACC1", "FUND", 1.0);
        reference.add_ownership(0, "ACC2", "FUND", 1.0);
        // A member with a lower id joins at T: the group's label changes, its members do not.
        reference.add_ownership(T, "7", "FUND", 0.5);
        let trades = vec![
            trade_at_price(T - 100 * MS, "ACME", "ACC1", "MM", "10"),
            trade_at_price(T + 100 * MS, "ACME", "MM", "ACC2", "10"),
        ];
        assert_eq!(washes(reference, trades).len(), 1);
    }

    #[test]
    fn accounts_in_one_group_only_at_different_times_do_not_pair() {
        let mut reference = ReferenceData::new(4);
        // Owner 1 holds BBB until T, then CCC from T.
        reference.add_ownership(0, "BBB", "1", 1.0);
        reference.add_ownership(T, "BBB", "1", 0.0);
        reference.add_ownership(T, "CCC", "1", 1.0);
        let trades = vec![
            trade_at_price(T - 100 * MS, "ACME", "BBB", "MM", "10"),
            trade_at_price(T + 100 * MS, "ACME", "MM", "CCC", "10"),
        ];
        assert!(washes(reference, trades).is_empty());
    }
}
