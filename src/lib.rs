//! surveil: real-time trade surveillance on timely dataflow.
//!
//! Sources read recorded files (canonical CSV and JSON Lines, LOBSTER, IMC Prosperity), bad
//! records go to a dead-letter output with their reason, events are enriched from reference
//! data, routed by key and checked by the detectors, and alerts carry their evidence.
#![forbid(missing_docs)]

pub mod anomaly;
#[cfg(feature = "tools")]
pub mod bench;
pub mod config;
pub mod detect;
pub mod features;
#[cfg(feature = "tools")]
pub mod generate;
pub mod ingest;
pub mod model;
#[cfg(feature = "tools")]
pub mod nab;
pub mod output;
pub mod pipeline;
pub mod reference;
pub mod rules;
pub mod testing;
