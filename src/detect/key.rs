//! Keys: what a detector groups events by.

use serde::{Deserialize, Serialize};

use crate::model::Symbol;

/// What a detector groups events by. All events with the same key go to the same worker, in
/// event-time order, and share one state; different keys never share state, which is what
/// lets a rule scale across workers and processes with the same results.
///
/// A rule on one account's behaviour keys by [`Key::Account`]; a rule on an instrument's book
/// by [`Key::Instrument`]; a rule that must see everything (rare: it runs on one worker) by
/// [`Key::Global`].
#[non_exhaustive]
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Key {
    /// One instrument. Detectors keyed by instrument can also see the state of each event's
    /// order before the event ([`crate::detect::AlertSink::order`]) by asking for it
    /// ([`crate::detect::Detector::needs_order_state`]).
    Instrument(Symbol),
    /// One account.
    Account(Symbol),
    /// One beneficial owner (from the event, or from the account reference data).
    Owner(Symbol),
    /// One desk.
    Desk(Symbol),
    /// One trader.
    Trader(Symbol),
    /// Every event together.
    Global,
}

impl Key {
    /// The stable routing hash of the key: every worker of every process sends a key to the
    /// same worker. It hashes the symbol alone, so an instrument's events go to the same worker
    /// whichever kind of key a detector chose for them (and whichever operator routes them).
    #[inline]
    pub fn route(&self) -> u64 {
        surveil_operators::route(&self.symbol())
    }

    /// The symbol the key is about (`Symbol::NONE` for [`Key::Global`]).
    pub fn symbol(&self) -> Symbol {
        match *self {
            Key::Instrument(s) | Key::Account(s) | Key::Owner(s) | Key::Desk(s) | Key::Trader(s) => s,
            Key::Global => Symbol::NONE,
        }
    }
}
