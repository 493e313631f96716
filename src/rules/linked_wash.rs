//! Wash trades between linked accounts in separate prints: one account of a group buys and
//! another sells the same instrument, each against a third party, at the same price and size
//! within moments.
//!
//! A wash trade need not be one print with the same owner on both sides: two accounts under
//! common ownership can each trade with the market (through different brokers, or against
//! resting orders placed to be hit) so that the group's position does not change while volume
//! prints. CME Rule 534 prohibits wash trades, "buy and sell orders for the same beneficial owner
//! ... entered at or around the same time at the same or similar price"; SGX's and ICE's rules
//! read the same way; MAR Annex I (1)(a) and Delegated Regulation 2016/522 Annex II list
//! transactions without a change of beneficial ownership among the indicators of manipulation.
//! The print between two linked accounts is the self-trade rule's
//! ([`crate::rules::self_trade`]); this rule pairs the prints that are not.
//!
//! # Logic
//!
//! 1. Each trade's two executions; an execution counts when its account belongs to a group of
//!    linked accounts as of the trade ([`crate::links`]), and the trade is not itself between
//!    two accounts of one group (those are the self-trade rule's).
//! 2. A buy and a sell of the same instrument by **different accounts of one group**, within
//!    `window` of each other ([`surveil_operators::IntervalJoin`], keyed by instrument and
//!    group), at prices within `price_tolerance_bps` (0: the same price) and quantities within
//!    `quantity_tolerance` of the larger.
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

/// An execution with its account's group as of the trade.
type Grouped = (Symbol, Execution);

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
        let grouped: Stream<'scope, u64, Vec<Vec<Grouped>>> = self.lookup_as_of(
            "WashGroups",
            groups,
            |event: &Event| event.time,
            |event, as_of| {
                let [buy, sell] = Execution::of_trade(&event);
                let group = |x: &Option<Execution>| x.and_then(|x| as_of.first(&x.account).copied());
                let (buy_group, sell_group) = (group(&buy), group(&sell));
                // A print within one group is a self-trade, not half of a pair.
                if buy_group.is_some() && buy_group == sell_group {
                    return Vec::new();
                }
                [(buy_group, buy), (sell_group, sell)].into_iter().filter_map(|(group, x)| Some((group?, x?))).collect()
            },
        );
        let executions = grouped.flat_map(|all| all);
        let buys = executions.clone().filter(|(_, x): &Grouped| x.side == Side::Buy);
        let sells = executions.filter(|(_, x): &Grouped| x.side == Side::Sell);
        let pairs = buys.interval_join(
            sells,
            "LinkedWash",
            Interval::symmetric(window),
            |(group, x): &Grouped| ((x.instrument, *group), x.time),
            |(group, x): &Grouped| ((x.instrument, *group), x.time),
            move |(group, buy): &Grouped, (_, sell): &Grouped| {
                (buy.account != sell.account && alike(buy, sell, &config)).then_some((*group, *buy, *sell))
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
