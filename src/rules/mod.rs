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
//! * [`Spoofing`] ([`SpoofingExt::spoofing`]): large orders near the touch cancelled around the
//!   fill of the same account's order on the other side, repeatedly.
//! * [`Layering`] ([`LayeringExt::layering`]): orders on several levels of one side holding a
//!   large share of its depth, cancelled after an execution on the other side.
//! * [`QuoteStuffing`] ([`QuoteStuffingExt::quote_stuffing`]): bursts of one account's changes
//!   to the best bid or offer, and message rates above the RTS 6 limit.
//! * [`MarkingClose`] ([`MarkingCloseExt::marking_close`]): an account's closing-window
//!   trading that moves the closing price its way.
//! * [`MomentumIgnition`] ([`MomentumIgnitionExt::momentum_ignition`]): aggressive executions
//!   through several price levels, then the position turned round at the price they made.
//! * [`CrossTrades`] ([`CrossTradesExt::cross_trades`]): pairs of accounts that trade with each
//!   other far more often than their activity explains, within an hour and over a session.
//! * [`SelfTradePattern`] ([`SelfTradePatternExt::self_trade_pattern`]): a desk or algorithm
//!   whose self-trades make up a large share of its volume in a security over a session
//!   (FINRA 5210 SM .02).
//! * [`FrontRunning`] ([`FrontRunningExt::front_running`]): the firm's own or an employee's
//!   account trading ahead of a client's block, in the instrument or one written on it (FINRA
//!   5270). It keys by underlying, so it runs as an operator of its own ([`StreamRules`]).
//!
//! All of them key by instrument, so the default job runs them together in one operator over one
//! order book state ([`default_rules`] and [`crate::detect::Detect::detect_by_instrument`]).
//!
//! Rules over a whole session's trades run as operators of their own on differential dataflow
//! ([`StreamRules`]):
//!
//! * [`insider_like`] ([`InsiderLikeExt::insider_like`]): accounts whose trades sit
//!   systematically at the session's price extremes.
//! * [`linked_wash`] ([`LinkedWashExt::linked_washes`]): opposite executions of linked accounts
//!   in separate prints, at one price and size, within moments.
//! * [`collusion_rings`] ([`CollusionRingsExt::collusion_rings`]): accounts passing one quantity
//!   of a security round a closed loop within an hour or a session, corrected as the rings
//!   change.

pub mod collusion_rings;
pub mod cross_trades;
pub mod executions;
pub mod front_running;
pub mod insider_like;
pub mod layering;
pub mod linked_wash;
pub mod marking_close;
pub mod momentum_ignition;
pub mod order_limits;
pub mod order_to_trade;
pub mod price_collar;
pub mod quote_stuffing;
pub mod self_trade;
pub mod self_trade_pattern;
pub mod spoofing;

use std::sync::Arc;

pub use collusion_rings::CollusionRingsExt;
pub use cross_trades::{CrossTrades, CrossTradesExt};
pub use front_running::{FrontRunning, FrontRunningExt};
pub use insider_like::InsiderLikeExt;
pub use layering::{Layering, LayeringExt};
pub use linked_wash::LinkedWashExt;
pub use marking_close::{MarkingClose, MarkingCloseExt};
pub use momentum_ignition::{MomentumIgnition, MomentumIgnitionExt};
pub use order_limits::{OrderLimits, OrderLimitsExt};
pub use order_to_trade::{OrderToTrade, OrderToTradeExt, OrderToTradeStreams};
pub use price_collar::{PriceCollar, PriceCollarExt};
pub use quote_stuffing::{QuoteStuffing, QuoteStuffingExt};
pub use self_trade::{SelfTrade, SelfTradesExt};
pub use self_trade_pattern::{SelfTradePattern, SelfTradePatternExt};
pub use spoofing::{Spoofing, SpoofingExt};

use timely::dataflow::Stream;

use differential_dataflow::VecCollection;

use crate::config::{CollusionRingsConfig, Config, InsiderLikeConfig, LinkedWashConfig};
use crate::detect::InstrumentRules;
use crate::model::time::SessionCalendar;
use crate::model::{Alert, Event, Symbol};
use crate::reference::ReferenceData;

/// The built-in rules the configuration enables that run as operators of their own on the event
/// stream rather than in the keyed group of [`default_rules`].
#[derive(Clone, Default)]
pub struct StreamRules {
    insider_like: Option<(InsiderLikeConfig, SessionCalendar)>,
    linked_wash: Option<LinkedWashConfig>,
    collusion_rings: Option<(CollusionRingsConfig, SessionCalendar)>,
}

impl StreamRules {
    /// The stream rules `config` enables.
    pub fn from_config(config: &Config) -> StreamRules {
        let zone = config.sessions.timezone.parse().unwrap_or(chrono_tz::UTC);
        let insider = &config.rules.insider_like;
        let wash = &config.rules.linked_wash;
        StreamRules {
            insider_like: insider.enabled.then(|| (*insider, SessionCalendar::new(zone))),
            linked_wash: wash.enabled.then_some(*wash),
            collusion_rings: config
                .rules
                .collusion_rings
                .enabled
                .then(|| (config.rules.collusion_rings, SessionCalendar::new(zone))),
        }
    }

    /// True when the configuration enables none of them.
    pub fn is_empty(&self) -> bool {
        self.insider_like.is_none() && self.linked_wash.is_none() && self.collusion_rings.is_none()
    }

    /// Their alerts over `events`, one stream per rule. The rules read trade prints only: pass
    /// the trades of the event stream (see [`surveil_operators::Tap`]) rather than the whole
    /// stream, which each rule would otherwise receive a copy of; `groups` are the groups of linked
    /// accounts ([`crate::links::linked_groups`]), when the reference data states ownership
    /// (the rules that need them do not run without).
    pub fn alerts<'scope>(
        &self,
        events: Stream<'scope, u64, Vec<Event>>,
        groups: Option<VecCollection<'scope, u64, (Symbol, Symbol), isize>>,
    ) -> Vec<Stream<'scope, u64, Vec<Alert>>> {
        let mut all = Vec::new();
        if let Some((config, calendar)) = &self.collusion_rings {
            all.push(events.clone().collusion_rings(config, calendar.clone()));
        }
        if let Some((config, calendar)) = &self.insider_like {
            all.push(events.clone().insider_like(config, calendar.clone()));
        }
        if let (Some(config), Some(groups)) = (&self.linked_wash, groups) {
            all.push(events.linked_washes(groups, config));
        }
        all
    }
}

/// The built-in rules the configuration enables, in a fixed order.
pub fn default_rules(config: &Config, reference: &Arc<ReferenceData>) -> InstrumentRules {
    let rules = &config.rules;
    let mut set = InstrumentRules::new();
    if config.sessions.expire_orders {
        let zone = config.sessions.timezone.parse().unwrap_or(chrono_tz::UTC);
        set = set.expiring_orders_at_session_end(SessionCalendar::new(zone));
    }
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
    if rules.spoofing.enabled {
        set = set.with(Spoofing::new(&rules.spoofing));
    }
    if rules.layering.enabled {
        set = set.with(Layering::new(&rules.layering));
    }
    if rules.quote_stuffing.enabled {
        set = set.with(QuoteStuffing::new(&rules.quote_stuffing));
    }
    if rules.marking_close.enabled && config.sessions.close.is_some() {
        set = set.with(MarkingClose::new(&rules.marking_close, &config.sessions, reference.clone()));
    } else if rules.marking_close.enabled && reference.has_closing_times() {
        let rule = MarkingClose::new(&rules.marking_close, &config.sessions, reference.clone());
        set = set.with(rule.only_instruments_with_a_closing_time());
    }
    if rules.momentum_ignition.enabled {
        set = set.with(MomentumIgnition::new(&rules.momentum_ignition));
    }
    if rules.cross_trades.enabled {
        let zone = config.sessions.timezone.parse().unwrap_or(chrono_tz::UTC);
        set = set.with(CrossTrades::new(&rules.cross_trades, SessionCalendar::new(zone)));
    }
    if rules.self_trade_pattern.enabled && reference.account_count() > 0 {
        let zone = config.sessions.timezone.parse().unwrap_or(chrono_tz::UTC);
        set = set.with(SelfTradePattern::new(&rules.self_trade_pattern, SessionCalendar::new(zone), reference.clone()));
    }
    // Front running keys by the underlying (and the baskets): see `FrontRunning::join`. It
    // needs account capacities.
    if rules.front_running.enabled && reference.has_capacities() {
        let zone = config.sessions.timezone.parse().unwrap_or(chrono_tz::UTC);
        set = FrontRunning::new(&rules.front_running, reference.clone(), SessionCalendar::new(zone)).join(set);
    }
    set
}
