//! Generic event-time operators for timely dataflow.
//!
//! Nothing here knows about finance: callers supply key, time and value extractors. Each
//! operator family lives in its own file and is exposed as an extension trait on timely's
//! `Stream`, in the style of timely's own operators.
//!
//! * [`ProcessInTimeOrder`]: keyed, stateful processing in event-time order with timers.
//! * [`partitioned_source`]: a source that reads partitions (file blocks, topic partitions),
//!   derives a watermark from the data with a bound on out-of-orderness, routes late records
//!   to a side output, and reports when a watermark has been fully processed.
#![forbid(missing_docs)]

pub mod in_time_order;
pub mod partitioned_source;
pub mod routing;

pub use in_time_order::{Emitter, ProcessInTimeOrder, TimeOrderedProcessor};
pub use partitioned_source::{Partition, PartitionRead, SourceOptions, SourceOutputs, partitioned_source};
pub use routing::route;
