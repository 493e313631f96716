//! Self-trades: a trade whose buyer and seller are the same account, or different accounts of
//! the same beneficial owner (FINRA 5210 SM .02; wash trades under MAR Annex I). One alert per
//! trade.

use surveil_operators::Emitter;

use super::{Detector, OrderContext};
use crate::alert::{Alert, Rule, Severity, Value, param};
use crate::config::SelfTradeConfig;
use crate::model::{Body, Event};
use crate::report::Report;

/// The self-trade rule.
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
    fn name(&self) -> &'static str {
        "self_trade"
    }

    fn on_event(&mut self, event: &Event, _order: &OrderContext, out: &mut Emitter<'_, Report>) {
        let Body::Trade { buyer, seller, quantity, .. } = event.body else {
            return;
        };
        let (why, severity, score) = if !buyer.account.is_none() && buyer.account == seller.account {
            ("the same account is buyer and seller", Severity::Medium, 80.0)
        } else if self.match_owner && !buyer.owner.is_none() && buyer.owner == seller.owner {
            ("buyer and seller accounts have the same beneficial owner", Severity::High, 90.0)
        } else {
            return;
        };
        out.emit(Report::Alert(Box::new(Alert::new(
            Rule::SelfTrade,
            severity,
            score,
            event.time,
            event.instrument,
            buyer.account,
            format!("trade of {quantity}: {why}"),
            vec![
                param("buyer", Value::Name(buyer.account)),
                param("seller", Value::Name(seller.account)),
                param("buyer_owner", Value::Name(buyer.owner)),
                param("seller_owner", Value::Name(seller.owner)),
                param("quantity", Value::Count(quantity)),
            ],
            vec![*event],
            0,
        ))));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::detect::SurveillanceProcessor;
    use crate::detect::testing::{alerts, event, run};
    use crate::model::{Party, Price, Symbol};
    use crate::reference::ReferenceData;
    use std::sync::Arc;

    fn trade(t: u64, buyer: &str, seller: &str) -> Event {
        let party = |a: &str| Party { account: Symbol::of(a.as_bytes()), ..Default::default() };
        let mut e = event(
            t,
            "X",
            "",
            Body::Trade { buyer: party(buyer), seller: party(seller), price: Price(1), quantity: 5, aggressor: None },
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
        let mut p = SurveillanceProcessor::new(vec![Box::new(SelfTrade::new(&config.rules.self_trade))]);
        let reports = run(&mut p, events.clone());
        let got: Vec<(u64, Severity)> = alerts(&reports).iter().map(|a| (a.time, a.severity)).collect();
        assert_eq!(got, vec![(1, Severity::Medium), (2, Severity::High)]);

        let mut p = SurveillanceProcessor::new(vec![Box::new(SelfTrade::new(&SelfTradeConfig {
            enabled: true,
            match_owner: false,
        }))]);
        assert_eq!(alerts(&run(&mut p, events)).len(), 1);
    }
}
