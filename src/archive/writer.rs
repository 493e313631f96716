//! A table of the archive being written: rows go to the file of their partition (date and
//! instrument), in row groups of a fixed number of rows; a partition's file is published when
//! its day is over (the watermark passed midnight UTC) or when it holds `file_rows` rows.
//!
//! Rows wait as rows until their partition has a full row group, which is then written and
//! closed at once: so the files hold the same row groups whenever the watermark moves. Rows
//! waiting on one worker are bounded (`max_buffered_rows`): past the bound, the partitions
//! with the most waiting rows are written as smaller row groups (the same rows, other row
//! group boundaries).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use parquet::arrow::ArrowWriter;

use super::columns::{ArchiveRow, RowContext};
use super::{Archive, ArchiveError, ArchivedFile, PartitionKey};

struct OpenFile {
    writer: ArrowWriter<File>,
    staging: PathBuf,
    key: String,
    rows: u64,
}

struct Partition<R> {
    /// Rows not yet in a row group, in the order they will be written.
    rows: Vec<R>,
    file: Option<OpenFile>,
}

/// One table of the archive on one worker.
pub struct TableWriter<R: ArchiveRow> {
    table: &'static str,
    archive: Arc<Archive>,
    open: BTreeMap<PartitionKey, Partition<R>>,
    /// The next file number of each partition this run wrote to (kept after a partition
    /// closes: a late row for a closed day starts the partition's next file).
    next_file: BTreeMap<PartitionKey, u32>,
    /// Rows waiting, over every partition.
    waiting: usize,
}

impl<R: ArchiveRow> TableWriter<R> {
    /// A writer of `table` into `archive`.
    pub fn new(table: &'static str, archive: Arc<Archive>) -> TableWriter<R> {
        TableWriter { table, archive, open: BTreeMap::new(), next_file: BTreeMap::new(), waiting: 0 }
    }

    /// Adds a row to a partition, after the rows added before.
    pub fn push(&mut self, key: PartitionKey, row: R) {
        self.waiting += 1;
        self.open.entry(key).or_insert_with(|| Partition { rows: Vec::new(), file: None }).rows.push(row);
    }

    /// Adds rows to a partition, after the rows added before.
    pub fn push_all(&mut self, key: PartitionKey, rows: impl IntoIterator<Item = R>) {
        let partition = self.open.entry(key).or_insert_with(|| Partition { rows: Vec::new(), file: None });
        let before = partition.rows.len();
        partition.rows.extend(rows);
        self.waiting += partition.rows.len() - before;
    }

    /// Rows waiting in `key`'s partition (for tests and for sorting before a write).
    pub fn pending_mut(&mut self, key: &PartitionKey) -> Option<&mut Vec<R>> {
        self.open.get_mut(key).map(|p| &mut p.rows)
    }

    /// Writes every full row group, and more when too many rows wait; publishes files that
    /// reached `file_rows`.
    pub fn write_full_groups(&mut self, context: &RowContext<'_>) -> Result<Vec<ArchivedFile>, ArchiveError> {
        let group = self.archive.row_group_rows();
        let mut published = Vec::new();
        let keys: Vec<PartitionKey> =
            self.open.iter().filter(|(_, p)| p.rows.len() >= group).map(|(k, _)| k.clone()).collect();
        for key in keys {
            published.extend(self.write_groups(&key, context, false)?);
        }
        let budget = self.archive.max_buffered_rows();
        if self.waiting > budget {
            let mut largest: Vec<(usize, PartitionKey)> =
                self.open.iter().map(|(k, p)| (p.rows.len(), k.clone())).collect();
            largest.sort_unstable_by(|a, b| b.cmp(a));
            for (_, key) in largest {
                if self.waiting <= budget / 2 {
                    break;
                }
                published.extend(self.write_groups(&key, context, true)?);
            }
        }
        Ok(published)
    }

    /// Writes and publishes every partition of a day before `day` (days since 1970-01-01).
    pub fn close_days_before(&mut self, day: i64, context: &RowContext<'_>) -> Result<Vec<ArchivedFile>, ArchiveError> {
        let keys: Vec<PartitionKey> = self.open.keys().filter(|k| k.day < day).cloned().collect();
        let mut published = Vec::new();
        for key in keys {
            published.extend(self.write_groups(&key, context, true)?);
            if let Some(partition) = self.open.remove(&key)
                && let Some(last) = partition.file
            {
                published.push(self.archive.publish(self.table, last.writer, &last.staging, &last.key, last.rows)?);
            }
        }
        Ok(published)
    }

    /// Writes and publishes everything.
    pub fn finish(&mut self, context: &RowContext<'_>) -> Result<Vec<ArchivedFile>, ArchiveError> {
        self.close_days_before(i64::MAX, context)
    }

    /// Writes the partition's full row groups (and the rest as a smaller one when `all`),
    /// rolling over to a new file at `file_rows`, and publishes the files it filled.
    fn write_groups(
        &mut self,
        key: &PartitionKey,
        context: &RowContext<'_>,
        all: bool,
    ) -> Result<Vec<ArchivedFile>, ArchiveError> {
        let group = self.archive.row_group_rows() as u64;
        let file_rows = self.archive.file_rows() as u64;
        let mut published = Vec::new();
        let Some(partition) = self.open.get_mut(key) else { return Ok(published) };
        let mut start = 0;
        loop {
            let in_file = partition.file.as_ref().map_or(0, |f| f.rows);
            // A row group never crosses the end of a file.
            let chunk = group.min(file_rows - in_file) as usize;
            let left = partition.rows.len() - start;
            if left == 0 || (left < chunk && !all) {
                break;
            }
            let end = start + chunk.min(left);
            if partition.file.is_none() {
                let number = self.next_file.entry(key.clone()).or_insert(0);
                let file_key = self.archive.file_key(self.table, key, *number);
                *number += 1;
                partition.file = Some(self.archive.create::<R>(&file_key)?);
            }
            let Some(file) = partition.file.as_mut() else { break };
            let batch = R::batch(&partition.rows[start..end], context)
                .map_err(|e| ArchiveError::Write { key: file.key.clone(), message: e.to_string() })?;
            let failed = |e: parquet::errors::ParquetError| ArchiveError::Write {
                key: file.key.clone(),
                message: e.to_string(),
            };
            file.writer.write(&batch).map_err(failed)?;
            file.writer.flush().map_err(failed)?;
            file.rows += (end - start) as u64;
            start = end;
            if file.rows >= file_rows
                && let Some(full) = partition.file.take()
            {
                published.push(self.archive.publish(self.table, full.writer, &full.staging, &full.key, full.rows)?);
            }
        }
        partition.rows.drain(..start);
        self.waiting -= start;
        Ok(published)
    }
}

impl Archive {
    fn create<R: ArchiveRow>(&self, key: &str) -> Result<OpenFile, ArchiveError> {
        let staging = self.store.staging_path(key, &self.staging);
        if let Some(parent) = staging.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|source| ArchiveError::Io { path: parent.to_path_buf(), source })?;
        }
        let file = File::create(&staging).map_err(|source| ArchiveError::Io { path: staging.clone(), source })?;
        let writer = ArrowWriter::try_new(file, R::schema(), Some(self.properties.clone()))
            .map_err(|e| ArchiveError::Write { key: key.to_string(), message: e.to_string() })?;
        Ok(OpenFile { writer, staging, key: key.to_string(), rows: 0 })
    }

    fn publish(
        &self,
        table: &'static str,
        writer: ArrowWriter<File>,
        staging: &std::path::Path,
        key: &str,
        rows: u64,
    ) -> Result<ArchivedFile, ArchiveError> {
        writer.close().map_err(|e| ArchiveError::Write { key: key.to_string(), message: e.to_string() })?;
        let bytes = std::fs::metadata(staging).map(|m| m.len()).unwrap_or(0);
        self.store.publish(staging, key)?;
        let file = ArchivedFile { table: table.to_string(), key: key.to_string(), rows, bytes };
        self.record(&file);
        Ok(file)
    }
}
