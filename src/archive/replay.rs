//! Reading the archive back: its files as partitions of a run's input, so that a day archived
//! once can be surveilled again (new rules, new parameters) without the original files.
//!
//! Every file is one partition. Events files are read as records, in the `(time, origin)`
//! order they were written in, with their origins (input and offset) as they were, so the
//! alerts of a replay carry the same ids and evidence as the run that archived them. Late
//! events and dead letters come back as what they were: side records, never as events on time.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use arrow_array::RecordBatch;
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::encryption::decrypt::{FileDecryptionProperties, KeyRetriever};
use surveil_operators::{Partition, PartitionRead};

use super::columns::{AlertRow, DeadLetterRow, alerts_of, dead_letters_of, events_of};
use super::store::ArchiveStore;
use super::{ALERTS, ArchiveError, DEAD_LETTERS, EVENTS, LATE_EVENTS, derived_key};
use crate::config::ArchiveConfig;
use crate::encryption::EncryptionKey;
use crate::ingest::{PartitionProgress, ReadProgress};
use crate::model::{DeadLetter, Event, RejectReason, Report, Symbol};
use crate::reference::ReferenceData;

/// The keys a reader holds, found by the id a file's footer names.
struct Keys(Vec<EncryptionKey>);

impl KeyRetriever for Keys {
    fn retrieve_key(&self, key_metadata: &[u8]) -> parquet::errors::Result<Vec<u8>> {
        let id = String::from_utf8_lossy(key_metadata);
        self.0.iter().find(|k| k.id_hex() == id).map(derived_key).ok_or_else(|| {
            parquet::errors::ParquetError::General(format!(
                "encrypted with key {id}, which is not among the keys given (SURVEIL_ENCRYPTION_KEY or \
                 audit.encryption_key)"
            ))
        })
    }
}

/// An archive opened for reading.
pub struct ArchiveReader {
    store: ArchiveStore,
    keys: Arc<Keys>,
}

impl std::fmt::Debug for ArchiveReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ArchiveReader({})", self.store.describe())
    }
}

/// A file to read: local files are read as needed, objects are fetched whole.
enum FileSource {
    Local(std::fs::File),
    Object(bytes::Bytes),
}

/// Which table a partition reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Table {
    Events,
    Late,
    Letters,
}

impl ArchiveReader {
    /// Opens the archive of `config`, with the keys that may have encrypted it.
    pub fn open(config: &ArchiveConfig, keys: Vec<EncryptionKey>) -> Result<ArchiveReader, ArchiveError> {
        Ok(ArchiveReader { store: ArchiveStore::open(config)?, keys: Arc::new(Keys(keys)) })
    }

    /// Where it is.
    pub fn describe(&self) -> String {
        self.store.describe()
    }

    /// The files of `table`, sorted by key.
    pub fn files(&self, table: &str) -> Result<Vec<String>, ArchiveError> {
        Ok(self.store.list(table)?)
    }

    /// A Parquet error reading `key`, in the words a person needs.
    fn read_error(&self, key: &str, error: parquet::errors::ParquetError) -> ArchiveError {
        let mut message = error.to_string();
        if self.keys.0.is_empty() && message.contains("encrypted") {
            message =
                "the file is encrypted and no key was given (SURVEIL_ENCRYPTION_KEY or audit.encryption_key)".into();
        }
        ArchiveError::Read { key: key.to_string(), message }
    }

    /// Opens `reader` (the file `key`) as Parquet, with the keys that may decrypt it: reads
    /// only the footer.
    fn builder<R: parquet::file::reader::ChunkReader + 'static>(
        &self,
        key: &str,
        reader: R,
    ) -> Result<ParquetRecordBatchReaderBuilder<R>, ArchiveError> {
        let mut options = ArrowReaderOptions::new();
        if !self.keys.0.is_empty() {
            let keys: Arc<dyn KeyRetriever> = self.keys.clone();
            let properties =
                FileDecryptionProperties::with_key_retriever(keys).build().map_err(|e| self.read_error(key, e))?;
            options = options.with_file_decryption_properties(properties);
        }
        ParquetRecordBatchReaderBuilder::try_new_with_options(reader, options).map_err(|e| self.read_error(key, e))
    }

    /// The file `key` as a local file, or its bytes from object storage, and its size.
    fn source(&self, key: &str) -> Result<(FileSource, u64), ArchiveError> {
        match &self.store {
            ArchiveStore::Local(dir) => {
                let path = dir.join(key);
                let file =
                    std::fs::File::open(&path).map_err(|source| ArchiveError::Io { path: path.clone(), source })?;
                let size = file.metadata().map(|m| m.len()).unwrap_or(0);
                Ok((FileSource::Local(file), size))
            }
            ArchiveStore::Object { .. } => {
                let bytes = bytes::Bytes::from(self.store.read(key)?);
                let size = bytes.len() as u64;
                Ok((FileSource::Object(bytes), size))
            }
        }
    }

    fn batches(&self, key: &str, batch_size: usize) -> Result<(ParquetRecordBatchReader, u64, u64), ArchiveError> {
        fn build<R: parquet::file::reader::ChunkReader + 'static>(
            reader: &ArchiveReader,
            key: &str,
            source: R,
            batch_size: usize,
        ) -> Result<(ParquetRecordBatchReader, u64), ArchiveError> {
            let builder = reader.builder(key, source)?;
            let rows = builder.metadata().file_metadata().num_rows().max(0) as u64;
            let batches = builder.with_batch_size(batch_size).build().map_err(|e| reader.read_error(key, e))?;
            Ok((batches, rows))
        }
        let (source, size) = self.source(key)?;
        let (batches, rows) = match source {
            FileSource::Local(file) => build(self, key, file, batch_size)?,
            FileSource::Object(bytes) => build(self, key, bytes, batch_size)?,
        };
        Ok((batches, rows, size))
    }

    fn read_all<T>(
        &self,
        table: &str,
        mut rows_of: impl FnMut(&RecordBatch, &mut Vec<T>) -> Result<(), super::columns::RowError>,
    ) -> Result<Vec<T>, ArchiveError> {
        let mut out = Vec::new();
        for key in self.files(table)? {
            let (reader, _, _) = self.batches(&key, 8192)?;
            for batch in reader {
                let batch = batch.map_err(|e| ArchiveError::Read { key: key.clone(), message: e.to_string() })?;
                rows_of(&batch, &mut out)
                    .map_err(|e| ArchiveError::Read { key: key.clone(), message: e.to_string() })?;
            }
        }
        Ok(out)
    }

    /// Every event of `events` (or of `late_events` when `late`), file by file.
    pub fn events(&self, late: bool) -> Result<Vec<Event>, ArchiveError> {
        let mut names = Vec::new();
        self.read_all(if late { LATE_EVENTS } else { EVENTS }, |batch, out| events_of(batch, out, &mut names, None))
    }

    /// The events of one file of `events` or `late_events`, in the order they were written.
    pub fn events_in(&self, key: &str) -> Result<Vec<Event>, ArchiveError> {
        let (reader, _, _) = self.batches(key, 8192)?;
        let (mut out, mut names) = (Vec::new(), Vec::new());
        for batch in reader {
            let batch = batch.map_err(|e| ArchiveError::Read { key: key.to_string(), message: e.to_string() })?;
            events_of(&batch, &mut out, &mut names, None)
                .map_err(|e| ArchiveError::Read { key: key.to_string(), message: e.to_string() })?;
        }
        Ok(out)
    }

    /// Every dead letter.
    pub fn dead_letters(&self) -> Result<Vec<DeadLetterRow>, ArchiveError> {
        self.read_all(DEAD_LETTERS, dead_letters_of)
    }

    /// Every alert.
    pub fn alerts(&self) -> Result<Vec<AlertRow>, ArchiveError> {
        self.read_all(ALERTS, alerts_of)
    }

    /// The inputs of the run that wrote the archive (`surveil.inputs` of its first file), in
    /// the order the `source` column numbers them; empty for an archive without files.
    pub fn inputs(&self) -> Result<Vec<String>, ArchiveError> {
        fn metadata<R: parquet::file::reader::ChunkReader + 'static>(
            reader: &ArchiveReader,
            key: &str,
            source: R,
        ) -> Result<Vec<parquet::file::metadata::KeyValue>, ArchiveError> {
            let builder = reader.builder(key, source)?;
            Ok(builder.metadata().file_metadata().key_value_metadata().cloned().unwrap_or_default())
        }
        for table in [EVENTS, LATE_EVENTS, DEAD_LETTERS, ALERTS] {
            let Some(key) = self.files(table)?.into_iter().next() else { continue };
            let pairs = match self.source(&key)?.0 {
                FileSource::Local(file) => metadata(self, &key, file)?,
                FileSource::Object(bytes) => metadata(self, &key, bytes)?,
            };
            let text = pairs.iter().find(|kv| kv.key == "surveil.inputs").and_then(|kv| kv.value.clone());
            return match text {
                Some(text) => serde_json::from_str(&text)
                    .map_err(|e| ArchiveError::Read { key: key.clone(), message: format!("surveil.inputs: {e}") }),
                None => Ok(Vec::new()),
            };
        }
        Ok(Vec::new())
    }

    /// This worker's share of the archive's files as partitions of input `source` (its
    /// index among the run's inputs), dealt round-robin in key order; `letters` is the source
    /// number of the dead letters of files it cannot read. Events must have the price scales
    /// `reference` gives their instruments.
    #[allow(clippy::too_many_arguments)]
    pub fn partitions(
        self: &Arc<Self>,
        source: u32,
        letters: u32,
        worker: usize,
        peers: usize,
        progress: &Arc<ReadProgress>,
        reference: &Arc<ReferenceData>,
    ) -> Result<Vec<ReplayPartition>, ArchiveError> {
        let mut all = Vec::new();
        for (table, name) in [(Table::Events, EVENTS), (Table::Late, LATE_EVENTS), (Table::Letters, DEAD_LETTERS)] {
            all.extend(self.files(name)?.into_iter().map(|key| (table, key)));
        }
        Ok(all
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % peers.max(1) == worker)
            .map(|(i, (table, key))| ReplayPartition {
                archive: self.clone(),
                reference: reference.clone(),
                source: letters,
                key,
                table,
                reader: None,
                rows: 0,
                size: 0,
                taken: 0,
                skip: 0,
                buffer: VecDeque::new(),
                announced: HashSet::new(),
                names: Vec::new(),
                progress: progress.track(source, (i as u64) << 32),
                started: false,
                finished: false,
            })
            .collect())
    }
}

/// One file of the archive, read as a partition of a run's input.
pub struct ReplayPartition {
    archive: Arc<ArchiveReader>,
    reference: Arc<ReferenceData>,
    source: u32,
    key: String,
    table: Table,
    reader: Option<ParquetRecordBatchReader>,
    rows: u64,
    size: u64,
    /// Rows taken out of the file so far.
    taken: u64,
    /// Rows to skip when the file is opened again.
    skip: u64,
    buffer: VecDeque<Event>,
    announced: HashSet<Symbol>,
    names: Vec<(Symbol, String)>,
    progress: PartitionProgress,
    started: bool,
    finished: bool,
}

const BATCH: usize = 4096;

impl ReplayPartition {
    /// The file's key.
    pub fn key(&self) -> &str {
        &self.key
    }

    fn failure(&self, error: &ArchiveError) -> Report {
        Report::DeadLetter(Box::new(DeadLetter {
            source: self.source,
            line: None,
            offset: self.taken,
            raw: String::new(),
            reason: RejectReason::IoError,
            detail: format!("archive {}: {error}", self.archive.describe()),
            event: None,
        }))
    }

    /// Reads the next batch of the file into the buffer (events) or `side` (the other
    /// tables); false at the end of the file.
    fn fill(&mut self, side: &mut Vec<Report>) -> Result<bool, ArchiveError> {
        if self.reader.is_none() {
            let (mut reader, rows, size) = self.archive.batches(&self.key, BATCH)?;
            (self.rows, self.size) = (rows, size);
            // Opened again after `first_time` let go of it: skip what was taken then.
            let mut skip = self.skip;
            while skip > 0 {
                match reader.next() {
                    Some(Ok(batch)) => skip = skip.saturating_sub(batch.num_rows() as u64),
                    Some(Err(e)) => return Err(ArchiveError::Read { key: self.key.clone(), message: e.to_string() }),
                    None => break,
                }
            }
            self.reader = Some(reader);
        }
        let Some(reader) = self.reader.as_mut() else { return Ok(false) };
        let batch = match reader.next() {
            None => return Ok(false),
            Some(batch) => batch.map_err(|e| ArchiveError::Read { key: self.key.clone(), message: e.to_string() })?,
        };
        self.taken += batch.num_rows() as u64;
        let bad = |e: super::columns::RowError| ArchiveError::Read { key: self.key.clone(), message: e.to_string() };
        match self.table {
            Table::Events | Table::Late => {
                let mut events = Vec::with_capacity(batch.num_rows());
                events_of(&batch, &mut events, &mut self.names, Some(&self.reference)).map_err(bad)?;
                for (symbol, text) in self.names.drain(..) {
                    if self.announced.insert(symbol) {
                        side.push(Report::Symbol(symbol, text.into()));
                    }
                }
                if self.table == Table::Late {
                    side.extend(events.into_iter().map(|e| Report::Late(Box::new(e))));
                } else {
                    self.buffer.extend(events);
                }
            }
            Table::Letters => {
                let mut letters = Vec::new();
                dead_letters_of(&batch, &mut letters).map_err(bad)?;
                side.extend(letters.into_iter().map(|row| Report::DeadLetter(Box::new(row.letter))));
            }
        }
        Ok(true)
    }

    fn end(&mut self) {
        self.finished = true;
        self.reader = None;
        self.progress.read(&[], self.size);
        self.progress.finish();
    }
}

impl Partition for ReplayPartition {
    type Record = Event;
    type Side = Report;

    fn time(record: &Event) -> u64 {
        record.time
    }

    fn first_time(&mut self) -> Option<u64> {
        if self.table != Table::Events {
            return None;
        }
        // The first batch says where the file starts; the file is let go of until it is read,
        // so that a replay of many files does not hold them all open (or, from object
        // storage, in memory).
        let mut side = Vec::new();
        match self.fill(&mut side) {
            Ok(_) => {
                self.skip = self.taken;
                self.reader = None;
                self.names.extend(side.into_iter().filter_map(|r| match r {
                    Report::Symbol(s, t) => Some((s, t.to_string())),
                    _ => None,
                }));
                self.announced.clear();
                self.buffer.front().map(|e| e.time)
            }
            Err(error) => {
                // Read from the start again, where the error will be met and reported as a
                // dead letter; until then, hold the watermark at the beginning of time, so
                // that what can be read of the file is not judged late.
                tracing::warn!(file = %self.key, %error, "archive file unreadable at the start of the replay");
                (self.reader, self.taken, self.skip) = (None, 0, 0);
                self.buffer.clear();
                self.names.clear();
                self.announced.clear();
                Some(0)
            }
        }
    }

    fn read(&mut self, max_records: usize, records: &mut Vec<Event>, side: &mut Vec<Report>) -> PartitionRead {
        if self.finished {
            return PartitionRead::Exhausted;
        }
        if !self.started {
            self.started = true;
            // Names found by `first_time` are announced with the first records.
            for (symbol, text) in std::mem::take(&mut self.names) {
                if self.announced.insert(symbol) {
                    side.push(Report::Symbol(symbol, text.into()));
                }
            }
        }
        while self.buffer.len() < max_records.max(1) {
            match self.fill(side) {
                Ok(true) if self.table == Table::Events => continue,
                Ok(true) => break,
                Ok(false) => {
                    if self.buffer.is_empty() {
                        self.end();
                        return PartitionRead::Exhausted;
                    }
                    break;
                }
                Err(error) => {
                    side.push(self.failure(&error));
                    // What was read stays read; the rest of the file cannot be.
                    let start = records.len();
                    records.extend(self.buffer.drain(..));
                    self.progress.read(&records[start..], 0);
                    self.end();
                    return PartitionRead::Exhausted;
                }
            }
        }
        let n = self.buffer.len().min(max_records.max(1));
        let start = records.len();
        records.extend(self.buffer.drain(..n));
        let done = self.taken - self.buffer.len() as u64;
        let reached = (self.size * done).checked_div(self.rows).unwrap_or(self.size);
        self.progress.read(&records[start..], reached);
        PartitionRead::More
    }
}
