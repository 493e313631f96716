//! The Parquet archive: the raw events, the late events, the dead letters and the alerts of
//! every run, as Parquet files partitioned by date and instrument, on the local file system or
//! S3-compatible object storage, and replayable as a run's input.
//!
//! ```text
//! ARCHIVE/events/date=2024-03-01/instrument=ACME/part-5f0c1e2a9b3d4c6e-00000.parquet
//! ARCHIVE/late_events/date=2024-03-01/instrument=ACME/part-5f0c1e2a9b3d4c6e-00000.parquet
//! ARCHIVE/dead_letters/date=2024-03-01/instrument=__HIVE_DEFAULT_PARTITION__/part-5f0c1e2a9b3d4c6e-00000.parquet
//! ARCHIVE/alerts/date=2024-03-01/instrument=ACME/part-5f0c1e2a9b3d4c6e-00000.parquet
//! ```
//!
//! The folders are Hive partitions, which Spark, DuckDB, polars and pyarrow read as the
//! columns `date` and `instrument`. File names carry the run's id (a digest of its inputs), so
//! a run repeated over the same inputs replaces its own files instead of adding copies. Each
//! partition is written by one worker (events are exchanged by instrument), in `(time,
//! origin)` order, in row groups of `row_group_rows`: the `events` files of a run are the same
//! bytes on any number of workers. A partition's file is published when the watermark passes
//! the end of its day (UTC) or when it reaches `file_rows` rows; a reader never sees a file
//! half written (see [`store`]).
//!
//! With an encryption key (`audit.encryption_key` or `SURVEIL_ENCRYPTION_KEY`, as for the
//! audit trail), files are encrypted with Parquet modular encryption (AES-256-GCM, footer
//! and every column, so not even the statistics of prices are readable), with a key derived
//! from the run's key by HKDF-SHA256; the footer's key metadata is the key's id, so a reader
//! holding several keys (while keys rotate) picks the right one.

pub mod columns;
pub mod operator;
pub mod replay;
pub mod store;
pub mod writer;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::config::ArchiveConfig;
use crate::encryption::EncryptionKey;

pub use columns::{AlertRow, ArchiveRow, DeadLetterRow, RowContext};
pub use operator::ArchiveInput;
pub use replay::{ArchiveReader, ReplayPartition};
pub use store::{ArchiveStore, StoreError};
pub use writer::TableWriter;

/// The tables, as their folders are named.
pub const EVENTS: &str = "events";
/// Events that arrived later than the out-of-order bound allowed.
pub const LATE_EVENTS: &str = "late_events";
/// Records refused by the parsers, with the reason.
pub const DEAD_LETTERS: &str = "dead_letters";
/// The alerts, as `alerts.jsonl` has them.
pub const ALERTS: &str = "alerts";

/// The instrument partition of rows without an instrument, as Hive names it.
pub const NO_INSTRUMENT: &str = "__HIVE_DEFAULT_PARTITION__";

/// What the HKDF derivation of the archive's key from the run's key is for.
const KEY_PURPOSE: &[u8] = b"surveil parquet archive v1";

/// Why the archive could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A local staging file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Parquet could not be written.
    #[error("writing {key}: {message}")]
    Write {
        /// The file's key in the archive.
        key: String,
        /// The error.
        message: String,
    },
    /// A file could not be read back.
    #[error("reading {key}: {message}")]
    Read {
        /// The file's key in the archive.
        key: String,
        /// The error.
        message: String,
    },
}

/// A partition of a table: the day (days since 1970-01-01, UTC) and the instrument.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionKey {
    /// Days since 1970-01-01 (UTC).
    pub day: i64,
    /// The instrument's name; `None` for rows without one.
    pub instrument: Option<String>,
}

impl PartitionKey {
    /// The partition of a row at `time` (ns since the epoch).
    pub fn at(time: u64, instrument: Option<String>) -> PartitionKey {
        PartitionKey { day: day_of(time), instrument }
    }

    /// The folder, `date=YYYY-MM-DD/instrument=NAME`.
    pub fn folder(&self) -> String {
        let date = chrono::DateTime::from_timestamp(self.day.saturating_mul(86_400), 0)
            .map(|d| d.format("%Y-%m-%d").to_string())
            .unwrap_or_else(|| "1970-01-01".into());
        let instrument = match &self.instrument {
            Some(name) if !name.is_empty() => escape_partition_value(name),
            _ => NO_INSTRUMENT.to_string(),
        };
        format!("date={date}/instrument={instrument}")
    }
}

/// The day (since 1970-01-01, UTC) of `time` in ns.
pub fn day_of(time: u64) -> i64 {
    (time / 86_400_000_000_000) as i64
}

/// A partition value as Hive escapes it: `%XX` for every byte outside `[A-Za-z0-9._-]`, so
/// that no name can leave its folder (`/`, `..`) or be read as another column (`=`).
pub fn escape_partition_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"_-".contains(&b) || (b == b'.' && !value.bytes().all(|c| c == b'.')) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A file the archive published.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ArchivedFile {
    /// Its table.
    pub table: String,
    /// Its key (path) in the archive.
    pub key: String,
    /// Rows in it.
    pub rows: u64,
    /// Its size.
    pub bytes: u64,
}

/// What a run archived.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ArchiveCounts {
    /// Where.
    pub url: String,
    /// The run's id in the file names.
    pub run: String,
    /// Files published.
    pub files: u64,
    /// Rows by table.
    pub rows: BTreeMap<String, u64>,
    /// Bytes published.
    pub bytes: u64,
    /// Files of an earlier run over the same inputs that this run did not write again, and
    /// removed so that a replay does not read their rows twice.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub removed: u64,
    /// The id of the key the files are encrypted with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_key_id: Option<String>,
    /// Why the archive is incomplete, if it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// An archive being written by a run: where, how, and what it has written so far. Shared by
/// the run's workers.
pub struct Archive {
    store: ArchiveStore,
    staging: PathBuf,
    properties: WriterProperties,
    run: String,
    row_group_rows: usize,
    file_rows: usize,
    max_buffered_rows: usize,
    counts: Mutex<ArchiveCounts>,
    published: Mutex<BTreeSet<String>>,
}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Archive({}, run {})", self.store.describe(), self.run)
    }
}

/// The archive's AES-256 key derived from `key`.
fn derived_key(key: &EncryptionKey) -> Vec<u8> {
    key.derive(KEY_PURPOSE).to_vec()
}

impl Archive {
    /// Opens the archive of `config` for a run with id `run`; staging files of object storage
    /// go to `staging` (a folder of the run's). With `key`, files are encrypted.
    /// Every file names the run and its inputs in its key-value metadata (`surveil.run`,
    /// `surveil.inputs`, a JSON list): the sources that the `source` column numbers.
    pub fn open(
        config: &ArchiveConfig,
        run: &str,
        inputs: &[String],
        staging: &Path,
        key: Option<&EncryptionKey>,
    ) -> Result<Archive, ArchiveError> {
        let store = ArchiveStore::open(config)?;
        let metadata = vec![
            parquet::file::metadata::KeyValue::new("surveil.run".into(), run.to_string()),
            parquet::file::metadata::KeyValue::new(
                "surveil.inputs".into(),
                serde_json::to_string(inputs).unwrap_or_default(),
            ),
        ];
        let mut properties = WriterProperties::builder()
            .set_key_value_metadata(Some(metadata))
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
            .set_max_row_group_row_count(Some(config.row_group_rows.max(1)))
            .set_created_by(format!("surveil {}", env!("CARGO_PKG_VERSION")));
        if let Some(key) = key {
            let encryption = parquet::encryption::encrypt::FileEncryptionProperties::builder(derived_key(key))
                .with_footer_key_metadata(key.id_hex().into_bytes())
                .build()
                .map_err(|e| ArchiveError::Write { key: String::new(), message: e.to_string() })?;
            properties = properties.with_file_encryption_properties(encryption);
        }
        if let ArchiveStore::Local(dir) = &store {
            std::fs::create_dir_all(dir).map_err(|source| ArchiveError::Io { path: dir.clone(), source })?;
        }
        Ok(Archive {
            counts: Mutex::new(ArchiveCounts {
                url: store.describe(),
                run: run.to_string(),
                encryption_key_id: key.map(EncryptionKey::id_hex),
                ..Default::default()
            }),
            store,
            staging: staging.to_path_buf(),
            properties: properties.build(),
            run: run.to_string(),
            row_group_rows: config.row_group_rows.max(1),
            file_rows: config.file_rows.max(1),
            max_buffered_rows: config.max_buffered_rows.max(1),
            published: Mutex::new(BTreeSet::new()),
        })
    }

    /// Rows per row group.
    pub fn row_group_rows(&self) -> usize {
        self.row_group_rows
    }

    /// Rows that may wait for their row group on one worker, per table.
    pub fn max_buffered_rows(&self) -> usize {
        self.max_buffered_rows
    }

    /// Rows per file, at most.
    pub fn file_rows(&self) -> usize {
        self.file_rows
    }

    /// The key of file `number` of a partition of `table` in this run.
    pub fn file_key(&self, table: &str, partition: &PartitionKey, number: u32) -> String {
        format!("{table}/{}/part-{}-{number:05}.parquet", partition.folder(), self.run)
    }

    fn record(&self, file: &ArchivedFile) {
        if let Ok(mut published) = self.published.lock() {
            published.insert(file.key.clone());
        }
        if let Ok(mut counts) = self.counts.lock() {
            counts.files += 1;
            counts.bytes += file.bytes;
            *counts.rows.entry(file.table.clone()).or_default() += file.rows;
        }
    }

    /// Records why the archive is incomplete (the first error is kept).
    pub fn fail(&self, error: &ArchiveError) {
        tracing::error!(archive = %self.store.describe(), %error, "archive incomplete");
        if let Ok(mut counts) = self.counts.lock()
            && counts.error.is_none()
        {
            counts.error = Some(error.to_string());
        }
    }

    /// After a complete run: removes the files with this run's id that the run did not write
    /// (an earlier run over the same inputs may have split its rows into more files), so that
    /// the archive holds each row of these inputs once. Returns how many it removed.
    pub fn remove_stale(&self) -> Result<u64, ArchiveError> {
        let marker = format!("/part-{}-", self.run);
        let published = self.published.lock().map(|p| p.clone()).unwrap_or_default();
        let mut removed = 0;
        for table in [EVENTS, LATE_EVENTS, DEAD_LETTERS, ALERTS] {
            for key in self.store.list(table)? {
                if key.contains(&marker) && !published.contains(&key) {
                    self.store.delete(&key)?;
                    removed += 1;
                }
            }
        }
        if let Ok(mut counts) = self.counts.lock() {
            counts.removed += removed;
        }
        Ok(removed)
    }

    /// What has been archived so far.
    pub fn counts(&self) -> ArchiveCounts {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

/// The run id of inputs: a digest of their names and sizes, so that the same inputs give the
/// same file names.
pub fn run_id(inputs: &[(String, u64)]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for (name, size) in inputs {
        hasher.update(name.as_bytes());
        hasher.update([0]);
        hasher.update(size.to_le_bytes());
    }
    crate::model::hex::encode(&hasher.finalize()[..8])
}

#[cfg(test)]
mod tests;
