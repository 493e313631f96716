//! Everything the pipeline produces besides events, on one stream to the writers.

use serde::{Deserialize, Serialize};

use super::{Alert, AlertGroup, CaseRecord, DeadLetter, Event, FeatureRow, RatioReport, Symbol, TriagedAlert};

/// A record for the output writers.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Report {
    /// An alert, as a detector raised it (written as is when no alert manager runs).
    Alert(Box<Alert>),
    /// An alert with the alert manager's tier, group and routes.
    Triaged(Box<TriagedAlert>),
    /// The summary of a group of repeats, when its horizon closed.
    Group(Box<AlertGroup>),
    /// A version of a case: opened, acted on, escalated or closed.
    Case(Box<CaseRecord>),
    /// A record that could not be processed, with the reason.
    DeadLetter(Box<DeadLetter>),
    /// An event that arrived later than the out-of-order bound allows.
    Late(Box<Event>),
    /// The text of a hashed symbol, for output.
    Symbol(Symbol, Box<str>),
    /// An order-to-trade ratio value.
    Ratio(Box<RatioReport>),
    /// A row of the feature store.
    Features(Box<FeatureRow>),
}

impl From<Alert> for Report {
    fn from(alert: Alert) -> Report {
        Report::Alert(Box::new(alert))
    }
}
