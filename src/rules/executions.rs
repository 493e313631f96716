//! The two sides of a trade as separate executions, for rules that follow each party.

use serde::{Deserialize, Serialize};

use crate::model::{Body, Event, Origin, Party, Price, Side, Symbol};

/// One party's side of a trade print.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Execution {
    /// Event time of the trade.
    pub time: u64,
    /// Where the trade was read (source and offset), to find it again.
    pub origin: u64,
    /// Instrument.
    pub instrument: Symbol,
    /// The party.
    pub account: Symbol,
    /// The other party.
    pub counterparty: Symbol,
    /// The party's side.
    pub side: Side,
    /// Price.
    pub price: i64,
    /// Quantity.
    pub quantity: u64,
}

impl Execution {
    /// The buyer's and the seller's executions of a trade with named parties (`None` for an
    /// unnamed side, and for events that are not trades).
    ///
    /// ```
    /// use surveil::model::Side;
    /// use surveil::rules::executions::Execution;
    ///
    /// let [buy, sell] = Execution::of_trade(&surveil::testing::trade("ACME", "A", "", 5));
    /// assert_eq!(buy.map(|x| x.side), Some(Side::Buy));
    /// assert!(sell.is_none());
    /// ```
    pub fn of_trade(event: &Event) -> [Option<Execution>; 2] {
        let Body::Trade { buyer, seller, price, quantity, .. } = event.body else {
            return [None, None];
        };
        let side = |party: Party, side: Side, other: Party| {
            (!party.account.is_none()).then_some(Execution {
                time: event.time,
                origin: event.origin.0,
                instrument: event.instrument,
                account: party.account,
                counterparty: other.account,
                side,
                price: price.0,
                quantity,
            })
        };
        [side(buyer, Side::Buy, seller), side(seller, Side::Sell, buyer)]
    }

    /// The trade it came from, as evidence (parties and origin; owners and orders are not kept).
    pub fn evidence(&self) -> Event {
        let party = |account| Party { account, ..Party::default() };
        let (buyer, seller) = match self.side {
            Side::Buy => (self.account, self.counterparty),
            Side::Sell => (self.counterparty, self.account),
        };
        let body = Body::Trade {
            buyer: party(buyer),
            seller: party(seller),
            price: Price(self.price),
            quantity: self.quantity,
            aggressor: None,
            linked: None,
        };
        Event::new(self.time, Origin(self.origin), self.instrument, body)
    }
}
