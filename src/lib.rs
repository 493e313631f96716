//! surveil: real-time trade surveillance on timely dataflow.
//!
//! Sources read recorded trading data (canonical CSV and JSON Lines, LOBSTER, IMC Prosperity);
//! bad records go to a dead-letter output with their reason; events are enriched from reference
//! data, routed by key and checked by detectors in event time; alerts carry their evidence and
//! have the same ids on one worker or many.
//!
//! # A rule of one's own
//!
//! A rule is a [`detect::Detector`]: the key it groups events by, the state it keeps per key,
//! and what it does with each event. This one flags an account that cancels more than `limit`
//! orders within a second:
//!
//! ```
//! use std::collections::VecDeque;
//! use surveil::detect::{AlertSink, Detector, Key};
//! use surveil::model::{Body, Event, Severity};
//!
//! #[derive(Clone)]
//! struct CancelBurst { limit: usize }
//!
//! impl Detector for CancelBurst {
//!     type State = VecDeque<u64>; // the account's recent cancel times
//!     fn name(&self) -> &str { "cancel_burst" }
//!     fn key(&self, e: &Event) -> Option<Key> {
//!         matches!(e.body, Body::Cancel { .. }).then(|| Key::Account(e.account))
//!     }
//!     fn on_event(&self, seen: &mut VecDeque<u64>, e: &Event, out: &mut AlertSink<'_>) {
//!         seen.push_back(e.time);
//!         while seen.front().is_some_and(|t| e.time - t > 1_000_000_000) { seen.pop_front(); }
//!         if seen.len() > self.limit {
//!             out.alert(e).severity(Severity::Medium).param("cancels", seen.len())
//!                 .explain(format!("{} cancels within a second", seen.len()));
//!         }
//!     }
//! }
//!
//! // Test it with the harness the built-in rules use, on one worker and on three.
//! let cancels: Vec<Event> =
//!     (0..5).map(|i| surveil::testing::cancel("ACME", &format!("O{i}"), "ACC1").at_ms(100 * i)).collect();
//! let alerts = surveil::testing::run(CancelBurst { limit: 3 }, cancels.clone());
//! assert_eq!(alerts.len(), 2); // the 4th and the 5th cancel
//! assert_eq!(surveil::testing::run_on(3, CancelBurst { limit: 3 }, cancels), alerts);
//! ```
//!
//! To run it on files beside the built-in rules, add it to the default job
//! ([`pipeline::RunOptions::with_rule`]); to wire a job of one's own from the pieces (files as a
//! source, built-in rules as operators, generic operators from `surveil-operators`, the ordered
//! sink), use [`pipeline::Job::execute`]. `examples/cancel_burst.rs` and
//! `examples/custom_pipeline.rs` do both; `docs/architecture.md` shows the layers.
//!
//! # Layers
//!
//! Each module imports only the ones below it (checked by `tests/architecture.rs`):
//! [`model`] (events, alerts, dead letters, feature rows), [`config`], [`encryption`] (files
//! sealed at rest), [`reference`],
//! [`ingest`] (parsers, file partitions), [`links`] (accounts linked by ownership, as of event
//! time, on differential dataflow), [`detect`] (the detector framework), [`rules`],
//! [`features`] and [`testing`], [`anomaly`], [`manager`] (tiers, grouping, routing),
//! [`cases`] (the case workflow: deadlines, escalation, people's actions),
//! [`audit`], [`output`] (sinks), [`reports`] (regulatory reports from a run's outputs),
//! [`submission`] (filing reports, with receipts), [`pipeline`] (jobs).
#![forbid(missing_docs)]

pub mod anomaly;
#[cfg(feature = "archive")]
pub mod archive;
pub mod audit;
#[cfg(feature = "avro")]
pub mod avro_json;
#[cfg(feature = "tools")]
pub mod bench;
pub mod cases;
pub mod checkpoint;
pub mod cluster;
pub mod config;
pub mod detect;
pub mod encryption;
pub mod features;
#[cfg(feature = "tools")]
pub mod generate;
pub mod ingest;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod links;
pub mod live_reference;
pub mod manager;
pub mod metrics;
pub mod model;
#[cfg(feature = "tools")]
pub mod nab;
pub mod output;
pub mod pipeline;
pub mod reference;
pub mod reports;
pub mod rules;
pub mod submission;
pub mod testing;
#[cfg(feature = "http")]
pub mod timeseries;
#[cfg(feature = "http")]
pub mod webhook;

/// The README's code, compiled as a doc test.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
