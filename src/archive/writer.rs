//! A table of the archive being written: rows go to the file of their partition (date and
//! instrument), in row groups of a fixed number of rows; a partition's file is published when
//! its day is over (the watermark passed midnight UTC) or when it holds `file_rows` rows.

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
}

impl<R: ArchiveRow> TableWriter<R> {
    /// A writer of `table` into `archive`.
    pub fn new(table: &'static str, archive: Arc<Archive>) -> TableWriter<R> {
        TableWriter { table, archive, open: BTreeMap::new(), next_file: BTreeMap::new() }
    }

    /// Adds a row to a partition, after the rows added before.
    pub fn push(&mut self, key: PartitionKey, row: R) {
        self.open.entry(key).or_insert_with(|| Partition { rows: Vec::new(), file: None }).rows.push(row);
    }

    /// Rows waiting in `key`'s partition (for tests and for sorting before a write).
    pub fn pending_mut(&mut self, key: &PartitionKey) -> Option<&mut Vec<R>> {
        self.open.get_mut(key).map(|p| &mut p.rows)
    }

    /// Writes every full row group; publishes files that reached `file_rows`.
    pub fn write_full_groups(&mut self, context: &RowContext<'_>) -> Result<Vec<ArchivedFile>, ArchiveError> {
        let group = self.archive.row_group_rows();
        let mut published = Vec::new();
        let keys: Vec<PartitionKey> =
            self.open.iter().filter(|(_, p)| p.rows.len() >= group).map(|(k, _)| k.clone()).collect();
        for key in keys {
            published.extend(self.write_groups(&key, context, false)?);
        }
        Ok(published)
    }

    /// Writes and publishes every partition of a day before `day` (days since 1970-01-01).
    pub fn close_days_before(&mut self, day: i64, context: &RowContext<'_>) -> Result<Vec<ArchivedFile>, ArchiveError> {
        let keys: Vec<PartitionKey> = self.open.keys().filter(|k| k.day < day).cloned().collect();
        let mut published = Vec::new();
        for key in keys {
            published.extend(self.write_groups(&key, context, true)?);
            self.open.remove(&key);
        }
        Ok(published)
    }

    /// Writes and publishes everything.
    pub fn finish(&mut self, context: &RowContext<'_>) -> Result<Vec<ArchivedFile>, ArchiveError> {
        self.close_days_before(i64::MAX, context)
    }

    /// Writes the partition's rows in groups of `row_group_rows` (all of them when `close`),
    /// rolling over to a new file at `file_rows`, and publishes the files it finished.
    fn write_groups(
        &mut self,
        key: &PartitionKey,
        context: &RowContext<'_>,
        close: bool,
    ) -> Result<Vec<ArchivedFile>, ArchiveError> {
        let group = self.archive.row_group_rows();
        let file_rows = self.archive.file_rows() as u64;
        let mut published = Vec::new();
        let Some(partition) = self.open.get_mut(key) else { return Ok(published) };
        let mut start = 0;
        while partition.rows.len() - start >= group || (close && start < partition.rows.len()) {
            let end = (start + group).min(partition.rows.len());
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
        if close && let Some(last) = partition.file.take() {
            published.push(self.archive.publish(self.table, last.writer, &last.staging, &last.key, last.rows)?);
        }
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
