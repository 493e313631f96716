//! The domain model, at the bottom of the crate: events, exact money, interned names, and
//! everything the pipeline produces about them (alerts, dead letters, ratio values, feature
//! rows). A type two layers share lives here, so that no layer imports one above it.

pub mod alert;
pub mod case;
pub mod dead_letter;
pub mod decimal;
pub mod event;
pub mod features;
pub mod hex;
pub mod ratio;
pub mod report;
pub mod symbol;
pub mod time;
pub mod triage;

pub use alert::{Alert, AlertId, Correction, CorrectionKind, FeatureEvidence, Parameter, Severity, Value};
pub use case::{CaseAction, CaseActionKind, CaseChange, CaseRecord, CaseState, Disposition};
pub use dead_letter::{DeadLetter, RejectReason, Rejection};
pub use decimal::{Decimal, Price, Quantity};
pub use event::{Body, CancelReason, Event, EventKind, Level, Origin, Party, Side, Timestamp, TradingStatus};
pub use features::{FeatureRow, FeatureScope};
pub use ratio::{RatioCounts, RatioReport};
pub use report::Report;
pub use symbol::{IdMap, Symbol, SymbolTable};
pub use triage::{AlertGroup, Occurrence, Routes, Tier, TriagedAlert};
