//! Order-to-trade ratio values (MiFID II RTS 9), as the ratio rule reports them.

use serde::{Deserialize, Serialize};

use super::Symbol;

/// Running totals of one key.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RatioCounts {
    /// Weighted order messages.
    pub messages: u64,
    /// Order volume.
    pub order_volume: u64,
    /// Executions.
    pub transactions: u64,
    /// Executed volume.
    pub transaction_volume: u64,
}

impl RatioCounts {
    /// `messages / max(transactions, 1) - 1`.
    pub fn count_ratio(&self) -> f64 {
        self.messages as f64 / self.transactions.max(1) as f64 - 1.0
    }

    /// `order volume / max(transaction volume, 1) - 1`.
    pub fn volume_ratio(&self) -> f64 {
        self.order_volume as f64 / self.transaction_volume.max(1) as f64 - 1.0
    }
}

/// An order-to-trade ratio value, final at session end or running.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RatioReport {
    /// Account.
    pub account: Symbol,
    /// Instrument.
    pub instrument: Symbol,
    /// Session date.
    pub session: String,
    /// Event time the value is as of.
    pub time: u64,
    /// Totals.
    pub counts: RatioCounts,
    /// True at session end.
    pub r#final: bool,
}
