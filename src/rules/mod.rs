//! The built-in rules, each a [`crate::detect::Detector`] in a file of its own with its
//! regulation and logic at the top, and an extension trait that runs it as an operator on a
//! stream of events:
//!
//! * [`OrderLimits`] ([`OrderLimitsExt::order_limits`]): maximum order quantity and notional
//!   (MiFID II RTS 6 Art. 15).
//! * [`PriceCollar`] ([`PriceCollarExt::price_collar`]): off-market orders and executions.
//! * [`OrderToTrade`] ([`OrderToTradeExt::order_to_trade`]): the RTS 9 order-to-trade ratio per
//!   account, instrument and session.
//! * [`SelfTrade`] ([`SelfTradesExt::self_trades`]): the same account or beneficial owner on
//!   both sides of a trade.
//!
//! All four key by instrument, so the default job runs them together in one operator over one
//! order book state ([`default_rules`] and [`crate::detect::Detect::detect_by_instrument`]).

pub mod order_limits;
pub mod order_to_trade;
pub mod price_collar;
pub mod self_trade;

use std::sync::Arc;

pub use order_limits::{OrderLimits, OrderLimitsExt};
pub use order_to_trade::{OrderToTrade, OrderToTradeExt, OrderToTradeStreams};
pub use price_collar::{PriceCollar, PriceCollarExt};
pub use self_trade::{SelfTrade, SelfTradesExt};

use crate::config::Config;
use crate::detect::InstrumentRules;
use crate::reference::ReferenceData;

/// The built-in rules the configuration enables, in a fixed order.
pub fn default_rules(config: &Config, reference: &Arc<ReferenceData>) -> InstrumentRules {
    let rules = &config.rules;
    let mut set = InstrumentRules::new();
    if rules.order_limits.enabled {
        set = set.with(OrderLimits::new(&rules.order_limits, reference.clone()));
    }
    if rules.price_collar.enabled {
        set = set.with(PriceCollar::new(&rules.price_collar, reference.clone()));
    }
    if rules.order_to_trade.enabled {
        set = set.with(OrderToTrade::new(&rules.order_to_trade, &config.sessions));
    }
    if rules.self_trade.enabled {
        set = set.with(SelfTrade::new(&rules.self_trade));
    }
    set
}
