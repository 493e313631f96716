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
//! * [`SessionWindows`]: per-key session windows with an inactivity gap.
//! * [`Suppress`]: at most one record per key per horizon of event time, with summaries.
//! * [`EventTimeWindows`]: tumbling and sliding event-time windows with per-key incremental
//!   aggregates ([`Accumulator`], [`Stats`]), allowed lateness with corrections, and late output.
//! * [`ScoreByKey`]: per-key causal anomaly scoring in event-time order with a [`Scorer`]
//!   ([`WindowedGaussian`], [`EwmaZ`], [`RobustZ`], [`Ensemble`]).
//! * [`LastTime`]: where each worker's share of a finite input ended, announced to every
//!   worker, so deadlines the data never reached are not taken for missed ones.
//! * [`LinkedComponents`]: which nodes a changing set of links connects, kept correct as links
//!   come and go (differential dataflow's label propagation).
//! * [`PassThroughRings`]: groups of nodes passing one amount round a closed loop, each in
//!   balance, kept correct as transfers enter and leave a window (differential's strongly
//!   connected components).
//! * [`PassThroughChains`]: the open form of those rings: nodes handing one amount on along a
//!   path, whether or not it closes (layering, daisy chains).
//! * [`LookupAsOf`]: records looked up in a changing reference collection as it stood at their
//!   own event time.
//! * [`AfterChanges`]: records held until a side stream of changes (to state that operators
//!   read directly, such as reference data) has been applied up to their own event time.
//! * [`ReleaseAt`]: records held until the watermark passes a time of their own, then released
//!   together at that time (feeding a differential collection whose updates run ahead).
//! * [`FoldAt`]: records folded into one accumulator per time of their own, handed on when the
//!   watermark passes that time (a session's summary instead of all its records).
//! * [`Tap`]: the few records a side branch needs copied out of a stream that passes on
//!   uncopied.
//! * [`ForestScoring`]: per-group streaming scores from a seeded [`IsolationForest`] trained on a
//!   reservoir sample and retrained on a schedule or on drift, with per-feature explanations.
#![forbid(missing_docs)]

pub mod after_changes;
pub mod chains;
pub mod feed_source;
pub mod fold_at;
pub mod forest_scoring;
pub mod hashing;
pub mod in_time_order;
pub mod interval_join;
pub mod isolation_forest;
pub mod last_time;
pub mod linked_components;
pub mod lookup_as_of;
pub mod partitioned_source;
pub mod release_at;
pub mod reservoir;
pub mod rings;
pub mod routing;
pub mod score_by_key;
pub mod scorers;
pub mod sequence;
pub mod session_windows;
pub mod suppress;
pub mod tap;
#[cfg(test)]
mod test_support;
pub mod windows;

pub use after_changes::AfterChanges;
pub use chains::{PassThroughChains, pass_through_chains_of};
pub use feed_source::{Feed, feed_source};
pub use fold_at::FoldAt;
pub use forest_scoring::{DriftRule, ForestScore, ForestScorer, ForestScoring, ForestScoringOptions};
pub use hashing::{KeyMap, KeySet};
pub use in_time_order::{Emitter, ProcessInTimeOrder, TimeOrderedProcessor};
pub use interval_join::{Interval, IntervalJoin, IntervalJoinOutputs, JoinOptions};
pub use isolation_forest::{ForestError, ForestParams, IsolationForest};
pub use last_time::{EndOfInput, LastTime, LastTimeOutputs};
pub use linked_components::LinkedComponents;
pub use lookup_as_of::{AsOf, LookupAsOf};
pub use partitioned_source::{
    Partition, PartitionRead, SharedClock, SourceOptions, SourceOutputs, SourceWaker, partitioned_source,
};
pub use release_at::ReleaseAt;
pub use rings::{PassThroughRings, RingOptions, pass_through_rings_of};
pub use routing::route;
pub use score_by_key::ScoreByKey;
pub use scorers::{Ensemble, EnsembleOptions, EwmaZ, RobustZ, Scored, Scorer, SlidingOrder, WindowedGaussian};
pub use sequence::{Match, MatchSequence, Pattern, SequenceOutputs};
pub use session_windows::{Session, SessionAccumulator, SessionOutputs, SessionWindows};
pub use suppress::{Suppress, SuppressOutputs, Suppressed};
pub use tap::{Tap, TapOutputs};
pub use windows::{
    Accumulator, Count, EventTimeWindows, First, IntegerMoments, Last, Max, Mean, Min, Number, Stats, StatsValue, Sum,
    TieBreak, Variance, VarianceValue, Vwap, VwapValue, Welford, WindowChange, WindowOptions, WindowStreams,
};
