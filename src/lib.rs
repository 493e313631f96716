//! surveil: real-time trade surveillance on timely dataflow.
//!
//! Sources read recorded files (canonical CSV and JSON Lines, LOBSTER, IMC Prosperity), bad
//! records go to a dead-letter output with their reason, events are enriched from reference
//! data, routed by instrument and checked by the detectors, and alerts carry their evidence.
#![forbid(missing_docs)]

pub mod alert;
pub mod bench;
pub mod config;
pub mod detect;
pub mod features;
pub mod generate;
pub mod ingest;
pub mod model;
pub mod nab;
pub mod output;
pub mod pipeline;
pub mod reference;
pub mod report;
