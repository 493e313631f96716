//! Regulatory reports made from a run's output folder.
//!
//! A report reads what a finished run wrote (never the inputs again), so it describes exactly
//! the run whose audit trail it names.

pub mod otr;

use std::path::PathBuf;

/// Why a report cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file of the run cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file of the run is not what the run writes.
    #[error("{path} line {line}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The run has nothing for the period asked for.
    #[error("{0}")]
    NotInRun(String),
    /// The reference data cannot be loaded.
    #[error(transparent)]
    Reference(#[from] crate::reference::ReferenceError),
}
