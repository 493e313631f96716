//! Regulatory reports made from a run's output folder.
//!
//! A report reads what a finished run wrote (never the inputs again), so it describes exactly
//! the run whose audit trail it names.

pub mod finra;
pub mod market;
pub mod otr;
pub mod stor;

use std::path::{Path, PathBuf};

use serde_json::Value as Json;

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

/// The run a report describes, from its `summary.json`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RunSource {
    /// The run's output folder.
    pub folder: String,
    /// The run's inputs.
    pub inputs: Vec<String>,
    /// Whether the run read every input to its end; a partial run gives a partial report.
    pub complete: bool,
    /// The head of the run's audit trail, naming the run the report describes.
    pub audit_head: Option<String>,
}

/// Reads a run's file.
pub(crate) fn read(path: &Path) -> Result<String, ReportError> {
    std::fs::read_to_string(path).map_err(|source| ReportError::Read { path: path.into(), source })
}

/// The versions of each case in a `cases.jsonl` file, by case id, oldest first.
pub fn case_versions(path: &Path) -> Result<std::collections::BTreeMap<String, Vec<Json>>, ReportError> {
    let mut cases: std::collections::BTreeMap<String, Vec<Json>> = std::collections::BTreeMap::new();
    for (i, line) in read(path)?.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let version: Json = serde_json::from_str(line).map_err(|e| ReportError::Invalid {
            path: path.into(),
            line: i + 1,
            message: e.to_string(),
        })?;
        let id = version["case"].as_str().unwrap_or_default().to_string();
        cases.entry(id).or_default().push(version);
    }
    Ok(cases)
}

/// The run in `folder`, from its `summary.json`.
pub fn run_source(folder: &Path) -> Result<RunSource, ReportError> {
    let summary_path = folder.join(crate::output::SUMMARY);
    let summary: Json = serde_json::from_str(&read(&summary_path)?).map_err(|e| ReportError::Invalid {
        path: summary_path.clone(),
        line: 1,
        message: e.to_string(),
    })?;
    Ok(RunSource {
        folder: folder.display().to_string(),
        inputs: summary["inputs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i.as_str().map(String::from))
            .collect(),
        complete: summary["complete"].as_bool().unwrap_or(false),
        audit_head: summary["audit"]["head"].as_str().map(String::from),
    })
}
