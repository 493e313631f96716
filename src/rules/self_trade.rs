//! Self-trades: a trade whose buyer and seller are the same account, or different accounts of
//! the same beneficial owner or linked by ownership (FINRA 5210 SM .02; wash trades under MAR
//! Annex I). One alert per trade.
//!
//! Accounts are linked as of the trade's time when the events have been through
//! [`crate::links::LinkAccounts::link_accounts`] (the default job does this whenever the
//! reference data states ownership); without it, the owner columns of the trade decide.

use timely::dataflow::Stream;

use crate::config::SelfTradeConfig;
use crate::detect::{AlertSink, Detect, Detector, Key};
use crate::model::alert::rules;
use crate::model::{Alert, Body, Event, Severity};

/// The self-trade rule.
#[derive(Clone)]
pub struct SelfTrade {
    match_owner: bool,
}

impl SelfTrade {
    /// Builds the rule.
    pub fn new(config: &SelfTradeConfig) -> SelfTrade {
        SelfTrade { match_owner: config.match_owner }
    }
}

impl Detector for SelfTrade {
    type State = ();

    fn name(&self) -> &str {
        rules::SELF_TRADE
    }

    fn key(&self, event: &Event) -> Option<Key> {
        matches!(event.body, Body::Trade { .. }).then_some(Key::Instrument(event.instrument))
    }

    fn on_event(&self, _: &mut (), event: &Event, out: &mut AlertSink<'_>) {
        let Body::Trade { buyer, seller, quantity, linked, .. } = event.body else {
            return;
        };
        let same_owner = !buyer.owner.is_none() && buyer.owner == seller.owner;
        let (why, severity, score) = if !buyer.account.is_none() && buyer.account == seller.account {
            ("the same account is buyer and seller", Severity::Medium, 60.0)
        } else if !self.match_owner {
            return;
        } else if let Some(linked) = linked {
            // Linked as of the trade (crate::links): the links decide, whatever the owner
            // columns say.
            if !linked {
                return;
            }
            if same_owner {
                ("buyer and seller accounts have the same beneficial owner", Severity::High, 75.0)
            } else {
                ("buyer and seller accounts are linked by ownership", Severity::High, 75.0)
            }
        } else if same_owner {
            ("buyer and seller accounts have the same beneficial owner", Severity::High, 75.0)
        } else {
            return;
        };
        out.alert(event)
            .account(buyer.account)
            .severity(severity)
            .score(score)
            .explain(format!("trade of {quantity}: {why}"))
            .param("buyer", buyer.account)
            .param("seller", seller.account)
            .param("buyer_owner", buyer.owner)
            .param("seller_owner", seller.owner)
            .param("quantity", quantity);
    }
}

/// Extension trait: the self-trade rule as an operator on a stream of events.
pub trait SelfTradesExt<'scope> {
    /// Alerts for trades with the same account, or the same beneficial owner, on both sides.
    ///
    /// ```
    /// use surveil::config::SelfTradeConfig;
    /// use surveil::rules::SelfTradesExt;
    /// use timely::dataflow::operators::capture::Capture;
    /// use timely::dataflow::operators::ToStream;
    ///
    /// let wash = surveil::testing::trade("ACME", "ACC1", "ACC1", 100);
    /// let alerts = timely::example(move |scope| {
    ///     vec![wash].to_stream(scope).self_trades(&SelfTradeConfig::default()).capture()
    /// });
    /// assert_eq!(surveil::testing::captured(alerts).into_iter().count(), 1);
    /// ```
    fn self_trades(self, config: &SelfTradeConfig) -> Stream<'scope, u64, Vec<Alert>>;
}

impl<'scope> SelfTradesExt<'scope> for Stream<'scope, u64, Vec<Event>> {
    fn self_trades(self, config: &SelfTradeConfig) -> Stream<'scope, u64, Vec<Alert>> {
        self.detect(SelfTrade::new(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::model::{Party, Price, Symbol};
    use crate::reference::ReferenceData;
    use crate::testing::{event, run};
    use std::sync::Arc;

    fn trade(t: u64, buyer: &str, seller: &str) -> Event {
        let party = |a: &str| Party { account: Symbol::of(a.as_bytes()), ..Default::default() };
        let mut e = event(
            t,
            "X",
            "",
            Body::Trade {
                buyer: party(buyer),
                seller: party(seller),
                price: Price(1),
                quantity: 5,
                aggressor: None,
                linked: None,
            },
        );
        e.account = Symbol::NONE;
        e
    }

    #[test]
    fn same_account_and_same_owner_trades_are_flagged_once_each() {
        let mut reference = ReferenceData::new(2);
        reference.add_account("A1", "OWNER1");
        reference.add_account("A2", "OWNER1");
        reference.add_account("B1", "OWNER2");
        let reference = Arc::new(reference);
        let config = Config::default();
        let mut events = vec![trade(1, "A1", "A1"), trade(2, "A1", "A2"), trade(3, "A1", "B1"), trade(4, "", "")];
        for e in &mut events {
            reference.enrich(e);
        }
        let alerts = run(SelfTrade::new(&config.rules.self_trade), events.clone());
        let got: Vec<(u64, Severity)> = alerts.iter().map(|a| (a.time, a.severity)).collect();
        assert_eq!(got, vec![(1, Severity::Medium), (2, Severity::High)]);
        let without_owners = SelfTrade::new(&SelfTradeConfig { enabled: true, match_owner: false });
        assert_eq!(run(without_owners, events).len(), 1);
    }
}
