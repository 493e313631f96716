//! The trading event model: order lifecycle, executions, trades, quotes and trading status.

use serde::{Deserialize, Serialize};

use super::decimal::{Price, Quantity};
use super::symbol::Symbol;

/// Event time: nanoseconds since the Unix epoch, UTC.
pub type Timestamp = u64;

/// Where an event came from: the input's index and the byte offset of its record. It is unique
/// and deterministic, so it breaks ties between events with equal times the same way on any
/// number of workers, and it lets an alert point back at the exact input line.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Origin(pub u64);

impl Origin {
    const OFFSET_BITS: u32 = 44;

    /// The origin of the record at `offset` in input number `source`.
    #[inline]
    pub fn new(source: u32, offset: u64) -> Origin {
        Origin(((source as u64) << Self::OFFSET_BITS) | (offset & ((1 << Self::OFFSET_BITS) - 1)))
    }

    /// The input's index.
    pub fn source(self) -> u32 {
        (self.0 >> Self::OFFSET_BITS) as u32
    }

    /// The byte offset within the (decompressed) input.
    pub fn offset(self) -> u64 {
        self.0 & ((1 << Self::OFFSET_BITS) - 1)
    }
}

/// Who or what cancelled an order. MiFID II RTS 9 does not count, as orders, the cancels a
/// venue makes after an auction uncrosses, on a member's loss of connectivity, or by its kill
/// functionality: only a member's own cancel is a message of the order-to-trade ratio.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    /// The member cancelled (the default: an input that does not say).
    #[default]
    Member,
    /// Unexecuted orders cancelled after an auction uncrossed.
    Uncross,
    /// Cancelled when the member lost its connection (cancel-on-disconnect).
    Connectivity,
    /// Cancelled by kill functionality.
    KillSwitch,
    /// Ended by the venue without a request of the member's: the order expired, the day
    /// ended, an immediate-or-cancel order's remainder, a cancel no request asked for.
    Expired,
}

impl CancelReason {
    /// The name in the canonical formats.
    pub fn as_str(self) -> &'static str {
        match self {
            CancelReason::Member => "member",
            CancelReason::Uncross => "uncross",
            CancelReason::Connectivity => "connectivity",
            CancelReason::KillSwitch => "kill_switch",
            CancelReason::Expired => "expired",
        }
    }

    /// Reads a name; empty is [`CancelReason::Member`].
    pub fn parse(text: &[u8]) -> Option<CancelReason> {
        match text {
            b"" | b"member" => Some(CancelReason::Member),
            b"uncross" => Some(CancelReason::Uncross),
            b"connectivity" => Some(CancelReason::Connectivity),
            b"kill_switch" => Some(CancelReason::KillSwitch),
            b"expired" => Some(CancelReason::Expired),
            _ => None,
        }
    }

    /// Whether RTS 9 counts the cancel as a message of the order-to-trade ratio.
    pub fn counts_for_rts9(self) -> bool {
        self == CancelReason::Member
    }
}

/// Buy or sell.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// Buy.
    Buy,
    /// Sell.
    Sell,
}

impl Side {
    /// The other side.
    pub fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }

    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Buy => "buy",
            Side::Sell => "sell",
        }
    }

    /// Reads `buy`/`b`/`1` or `sell`/`s`/`-1` (any case).
    pub fn parse(text: &[u8]) -> Option<Side> {
        match text {
            b"buy" | b"BUY" | b"Buy" | b"B" | b"b" | b"1" => Some(Side::Buy),
            b"sell" | b"SELL" | b"Sell" | b"S" | b"s" | b"-1" | b"2" => Some(Side::Sell),
            _ => None,
        }
    }
}

/// Trading phase of an instrument.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TradingStatus {
    /// Trading halted.
    Halted,
    /// Quoting resumed, trading not yet.
    QuotingOnly,
    /// Continuous trading.
    Trading,
}

/// The two sides of a trade.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Party {
    /// The account.
    pub account: Symbol,
    /// The beneficial owner, when known.
    pub owner: Symbol,
    /// The order that traded, when known.
    pub order: Symbol,
}

/// A price level of a quote: price and size.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Level {
    /// Price.
    pub price: Price,
    /// Size at that price.
    pub quantity: Quantity,
}

/// What happened.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Body {
    /// A new order; `price` is `None` for a market order.
    NewOrder {
        /// Order id.
        order: Symbol,
        /// Side.
        side: Side,
        /// Limit price.
        price: Option<Price>,
        /// Quantity.
        quantity: Quantity,
        /// Quantity shown in the book, for a reserve (iceberg) order: the venue shows at most
        /// this much of what remains and refreshes it as it fills. `None`: all of it is shown.
        #[serde(default)]
        displayed: Option<Quantity>,
    },
    /// A change of an order's price and/or quantity (the new values).
    Replace {
        /// Order id.
        order: Symbol,
        /// Side, when the message states it.
        side: Option<Side>,
        /// New limit price.
        price: Option<Price>,
        /// New total quantity.
        quantity: Quantity,
        /// New displayed quantity, as on [`Body::NewOrder`] (`None`: all of it is shown).
        #[serde(default)]
        displayed: Option<Quantity>,
    },
    /// A cancellation: of `quantity` units, or of everything left when `None`.
    Cancel {
        /// Order id.
        order: Symbol,
        /// Side, when the message states it.
        side: Option<Side>,
        /// Price of the order, when the message states it.
        price: Option<Price>,
        /// Quantity cancelled; `None` cancels what remains.
        quantity: Option<Quantity>,
        /// Who or what cancelled it.
        reason: CancelReason,
    },
    /// An execution of one order (one side of a trade).
    Fill {
        /// Order id (`NONE` for an execution against a hidden order of unknown id).
        order: Symbol,
        /// Side of the executed order.
        side: Side,
        /// Execution price.
        price: Price,
        /// Executed quantity.
        quantity: Quantity,
        /// Side of the aggressor (the order that took liquidity), when known.
        aggressor: Option<Side>,
        /// Execution against non-displayed liquidity.
        hidden: bool,
    },
    /// A trade with both sides.
    Trade {
        /// Buyer.
        buyer: Party,
        /// Seller.
        seller: Party,
        /// Price.
        price: Price,
        /// Quantity.
        quantity: Quantity,
        /// Side of the aggressor, when known.
        aggressor: Option<Side>,
        /// Whether buyer and seller accounts were linked by ownership as of the trade
        /// ([`crate::links`]); `None` until the trade has been through
        /// [`crate::links::LinkAccounts::link_accounts`]. Derived, so never read from input.
        #[serde(default, skip)]
        linked: Option<bool>,
    },
    /// Best bid and offer.
    Quote {
        /// Best bid, if any.
        bid: Option<Level>,
        /// Best ask, if any.
        ask: Option<Level>,
    },
    /// A change of trading phase.
    Status {
        /// The new phase.
        status: TradingStatus,
    },
}

impl Body {
    /// A member's cancel of all that remains of `order`, when the message says no more.
    pub fn cancel_rest(order: crate::model::Symbol) -> Body {
        Body::Cancel { order, side: None, price: None, quantity: None, reason: CancelReason::Member }
    }
}

/// Event kinds, for counting and for the `kind` column of the canonical formats.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// [`Body::NewOrder`].
    New,
    /// [`Body::Replace`].
    Replace,
    /// [`Body::Cancel`].
    Cancel,
    /// [`Body::Fill`].
    Fill,
    /// [`Body::Trade`].
    Trade,
    /// [`Body::Quote`].
    Quote,
    /// [`Body::Status`].
    Status,
}

impl EventKind {
    /// All kinds, in a fixed order.
    pub const ALL: [EventKind; 7] = [
        EventKind::New,
        EventKind::Replace,
        EventKind::Cancel,
        EventKind::Fill,
        EventKind::Trade,
        EventKind::Quote,
        EventKind::Status,
    ];

    /// The canonical name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::New => "new",
            EventKind::Replace => "replace",
            EventKind::Cancel => "cancel",
            EventKind::Fill => "fill",
            EventKind::Trade => "trade",
            EventKind::Quote => "quote",
            EventKind::Status => "status",
        }
    }

    /// Reads a canonical name.
    pub fn parse(text: &[u8]) -> Option<EventKind> {
        Some(match text {
            b"new" => EventKind::New,
            b"replace" => EventKind::Replace,
            b"cancel" => EventKind::Cancel,
            b"fill" => EventKind::Fill,
            b"trade" => EventKind::Trade,
            b"quote" => EventKind::Quote,
            b"status" => EventKind::Status,
            _ => return None,
        })
    }

    /// Position in [`EventKind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// One trading event.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Event {
    /// Event time, UTC nanoseconds.
    pub time: Timestamp,
    /// Where the event was read.
    pub origin: Origin,
    /// The venue's sequence number, 0 when the input has none.
    pub seq: u64,
    /// Instrument.
    pub instrument: Symbol,
    /// Venue.
    pub venue: Symbol,
    /// Account that sent the order (`NONE` for trades, whose parties are in the body).
    pub account: Symbol,
    /// Trader.
    pub trader: Symbol,
    /// Desk.
    pub desk: Symbol,
    /// Beneficial owner of the account, when known.
    pub owner: Symbol,
    /// What happened.
    pub body: Body,
}

impl Event {
    /// The kind of event.
    pub fn kind(&self) -> EventKind {
        match self.body {
            Body::NewOrder { .. } => EventKind::New,
            Body::Replace { .. } => EventKind::Replace,
            Body::Cancel { .. } => EventKind::Cancel,
            Body::Fill { .. } => EventKind::Fill,
            Body::Trade { .. } => EventKind::Trade,
            Body::Quote { .. } => EventKind::Quote,
            Body::Status { .. } => EventKind::Status,
        }
    }

    /// The order the event refers to, if any.
    pub fn order(&self) -> Option<Symbol> {
        match self.body {
            Body::NewOrder { order, .. }
            | Body::Replace { order, .. }
            | Body::Cancel { order, .. }
            | Body::Fill { order, .. } => Some(order),
            _ => None,
        }
    }

    /// Sort key that orders events the same way everywhere: time, then origin.
    #[inline]
    pub fn order_key(&self) -> (u64, u64) {
        (self.time, self.origin.0)
    }

    /// A blank event of the given body, for tests and generators.
    pub fn new(time: Timestamp, origin: Origin, instrument: Symbol, body: Body) -> Event {
        Event {
            time,
            origin,
            seq: 0,
            instrument,
            venue: Symbol::NONE,
            account: Symbol::NONE,
            trader: Symbol::NONE,
            desk: Symbol::NONE,
            owner: Symbol::NONE,
            body,
        }
    }

    /// The same event at `time` (nanoseconds since the epoch).
    pub fn at(mut self, time: Timestamp) -> Event {
        self.time = time;
        self
    }

    /// The same event at `ms` milliseconds after the epoch (for tests and examples).
    pub fn at_ms(self, ms: u64) -> Event {
        self.at(ms.saturating_mul(1_000_000))
    }

    /// The same event of `account`.
    pub fn with_account(mut self, account: Symbol) -> Event {
        self.account = account;
        self
    }

    /// The same event with beneficial owner `owner`.
    pub fn with_owner(mut self, owner: Symbol) -> Event {
        self.owner = owner;
        self
    }

    /// The same event with its origin (input and byte offset) set.
    pub fn with_origin(mut self, origin: Origin) -> Event {
        self.origin = origin;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_packs_source_and_offset() {
        let o = Origin::new(3, 123_456_789);
        assert_eq!((o.source(), o.offset()), (3, 123_456_789));
        assert!(Origin::new(0, u64::MAX >> 21) < Origin::new(1, 0));
    }

    #[test]
    fn events_stay_small() {
        // Events are copied through exchange channels millions of times a second.
        assert!(std::mem::size_of::<Event>() <= 144, "{}", std::mem::size_of::<Event>());
    }
}
