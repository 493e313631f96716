//! File partitions: blocks of plain files, or whole gzipped files, read line by line.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use surveil_operators::{Partition, PartitionRead};

use super::lines::{LineIndex, LineReader, is_gzip};
use super::{
    DeadLetter, InputError, InputSpec, Line, LineParser, ParseContext, RejectReason, Rejection, companion_of,
    parser_for,
};
use crate::config::Config;
use crate::model::{Event, IdMap, Origin, Symbol};
use crate::reference::ReferenceData;
use crate::report::Report;

/// A byte range of one input, read as lines.
pub struct LinePartition {
    input: Arc<InputSpec>,
    start: u64,
    end: u64,
    companion: Option<PathBuf>,
    parser: Box<dyn LineParser>,
    reference: Arc<ReferenceData>,
    reader: Option<LineReader>,
    companion_reader: Option<LineReader>,
    /// Line number of the next line, when known.
    line: Option<u64>,
    line_index: Rc<RefCell<LineIndex>>,
    announced: IdMap<Symbol, ()>,
    finished: bool,
    progress: Arc<AtomicU64>,
    reported: u64,
    counts: Rc<RefCell<EventCounts>>,
}

/// Events read by kind (indexed by [`crate::model::EventKind::index`]).
pub type EventCounts = [u64; crate::model::EventKind::ALL.len()];

impl LinePartition {
    fn open(&self) -> std::io::Result<(LineReader, Option<LineReader>)> {
        let reader = LineReader::open(&self.input.path, self.start)?;
        let companion = match &self.companion {
            Some(path) => Some(LineReader::open(path, 0)?),
            None => None,
        };
        Ok((reader, companion))
    }

    fn dead_letter(&mut self, offset: u64, raw: &[u8], rejection: Rejection) -> Report {
        let line = match self.line {
            Some(line) => Some(line),
            None => self.line_index.borrow_mut().line_at(offset).ok(),
        };
        Report::DeadLetter(Box::new(DeadLetter {
            source: self.input.index,
            line,
            offset,
            raw: String::from_utf8_lossy(raw).into_owned(),
            reason: rejection.reason,
            detail: rejection.detail,
        }))
    }

    fn io_failure(&mut self, offset: u64, error: std::io::Error) -> Report {
        self.finished = true;
        Report::DeadLetter(Box::new(DeadLetter {
            source: self.input.index,
            line: self.line,
            offset,
            raw: String::new(),
            reason: RejectReason::IoError,
            detail: format!("reading {} stopped here: {error}", self.input.path.display()),
        }))
    }
}

impl Partition for LinePartition {
    type Record = Event;
    type Side = Report;

    #[inline]
    fn time(record: &Event) -> u64 {
        record.time
    }

    fn first_time(&mut self) -> Option<u64> {
        // Parse from the start of the range up to the first good record. A fresh parser state
        // is not needed: parsers keep no state that changes the time of the first event.
        let (mut reader, mut companion) = self.open().ok()?;
        let mut side = Vec::new();
        let mut announced = IdMap::default();
        let mut events = Vec::new();
        while let Ok(Some((offset, bytes))) = reader.next_line() {
            if offset >= self.end {
                return None;
            }
            let companion_line = match companion.as_mut() {
                Some(c) => c.next_line().ok().flatten().map(|(_, l)| l.to_vec()),
                None => None,
            };
            if offset == 0 && self.parser.is_header(bytes) {
                continue;
            }
            let mut ctx = ParseContext { reference: &self.reference, side: &mut side, announced: &mut announced };
            let line =
                Line { bytes, origin: Origin::new(self.input.index, offset), companion: companion_line.as_deref() };
            if self.parser.parse(&line, &mut ctx, &mut events).is_ok()
                && let Some(first) = events.iter().map(|e| e.time).min()
            {
                return Some(first);
            }
        }
        None
    }

    fn read(&mut self, max_records: usize, records: &mut Vec<Event>, side: &mut Vec<Report>) -> PartitionRead {
        if self.finished {
            return PartitionRead::Exhausted;
        }
        if self.reader.is_none() {
            match self.open() {
                Ok((reader, companion)) => {
                    self.reader = Some(reader);
                    self.companion_reader = companion;
                }
                Err(error) => {
                    let report = self.io_failure(self.start, error);
                    side.push(report);
                    return PartitionRead::Exhausted;
                }
            }
        }
        let mut lines = 0;
        let mut companion_line: Vec<u8> = Vec::new();
        while lines < max_records {
            let Some(reader) = self.reader.as_mut() else {
                break;
            };
            let (offset, bytes) = match reader.next_line() {
                Ok(Some((offset, _))) if offset >= self.end => {
                    self.finished = true;
                    break;
                }
                Ok(Some((offset, bytes))) => (offset, bytes),
                Ok(None) => {
                    self.finished = true;
                    break;
                }
                Err(error) => {
                    let offset = reader.offset();
                    let report = self.io_failure(offset, error);
                    side.push(report);
                    break;
                }
            };
            lines += 1;
            let has_companion = match self.companion_reader.as_mut() {
                Some(c) => {
                    companion_line.clear();
                    match c.next_line() {
                        Ok(Some((_, l))) => {
                            companion_line.extend_from_slice(l);
                            true
                        }
                        _ => false,
                    }
                }
                None => false,
            };
            let this_line = self.line;
            self.line = self.line.map(|l| l + 1);
            if offset == 0 && self.parser.is_header(bytes) {
                continue;
            }
            let trimmed = bytes.strip_suffix(b"\r").unwrap_or(bytes);
            if trimmed.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if self.companion.is_some() && !has_companion {
                let rejection = Rejection::new(
                    RejectReason::ColumnCount,
                    "the order book file has fewer lines than the message file",
                );
                let raw = bytes.to_vec();
                self.line = this_line;
                let report = self.dead_letter(offset, &raw, rejection);
                self.line = this_line.map(|l| l + 1);
                side.push(report);
                continue;
            }
            let before = records.len();
            let result = {
                let mut ctx = ParseContext { reference: &self.reference, side, announced: &mut self.announced };
                let line = Line {
                    bytes,
                    origin: Origin::new(self.input.index, offset),
                    companion: has_companion.then_some(companion_line.as_slice()),
                };
                self.parser.parse(&line, &mut ctx, records)
            };
            match result {
                Ok(()) => {
                    let mut counts = self.counts.borrow_mut();
                    for event in &mut records[before..] {
                        self.reference.enrich(event);
                        counts[event.kind().index()] += 1;
                    }
                }
                Err(rejection) => {
                    records.truncate(before);
                    let raw = bytes.to_vec();
                    self.line = this_line;
                    let report = self.dead_letter(offset, &raw, rejection);
                    self.line = this_line.map(|l| l + 1);
                    side.push(report);
                }
            }
        }
        // Progress counts the partition's own byte range, so the blocks add up to the file.
        let position = self.reader.as_ref().map_or(self.start, |r| r.offset().min(self.end)).max(self.start);
        let done = position - self.start;
        self.progress.fetch_add(done.saturating_sub(self.reported), Ordering::Relaxed);
        self.reported = done.max(self.reported);
        if self.finished { PartitionRead::Exhausted } else { PartitionRead::More }
    }

    fn bytes_read(&self) -> u64 {
        self.reported
    }
}

/// Splits the inputs into partitions and returns this worker's share. Partitions are numbered
/// in input order and dealt round-robin, so neighbouring blocks of one file go to different
/// workers and all workers advance through event time together.
///
/// `progress` accumulates the bytes read, for progress bars.
pub fn plan_partitions(
    inputs: &[InputSpec],
    config: &Config,
    reference: &Arc<ReferenceData>,
    worker: usize,
    peers: usize,
    progress: &Arc<AtomicU64>,
    counts: &Rc<RefCell<EventCounts>>,
) -> Result<Vec<LinePartition>, InputError> {
    let mut mine = Vec::new();
    let mut global = 0usize;
    let mut indexes: HashMap<u32, Rc<RefCell<LineIndex>>> = HashMap::new();
    let block = config.ingest.block_size.max(4096);
    for input in inputs {
        let io = |source| InputError::Io { path: input.path.clone(), source };
        let size = std::fs::metadata(&input.path).map_err(io)?.len();
        let companion = companion_of(input, config);
        let splittable = !is_gzip(&input.path).map_err(io)? && companion.is_none();
        let ranges: Vec<(u64, u64)> = if splittable && size > block {
            (0..size.div_ceil(block)).map(|b| (b * block, ((b + 1) * block).min(size))).collect()
        } else {
            vec![(0, u64::MAX)]
        };
        let shared = Arc::new(input.clone());
        for (start, end) in ranges {
            if global % peers.max(1) == worker {
                let line_index = indexes
                    .entry(input.index)
                    .or_insert_with(|| Rc::new(RefCell::new(LineIndex::new(&input.path))))
                    .clone();
                mine.push(LinePartition {
                    input: shared.clone(),
                    start,
                    end,
                    companion: companion.clone(),
                    parser: parser_for(input, config)?,
                    reference: reference.clone(),
                    reader: None,
                    companion_reader: None,
                    line: (start == 0).then_some(1),
                    line_index,
                    announced: IdMap::default(),
                    finished: false,
                    progress: progress.clone(),
                    reported: 0,
                    counts: counts.clone(),
                });
            }
            global += 1;
        }
    }
    Ok(mine)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::Format;
    use crate::ingest::csv::write::HEADER;

    fn read_all(partitions: &mut [LinePartition]) -> (Vec<Event>, Vec<Report>) {
        let mut events = Vec::new();
        let mut side = Vec::new();
        for p in partitions.iter_mut() {
            while p.read(7, &mut events, &mut side) == PartitionRead::More {}
        }
        (events, side)
    }

    #[test]
    fn every_line_is_either_an_event_or_a_dead_letter_whatever_the_split() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("day.csv");
        let mut text = format!("{HEADER}\n");
        let mut bad = 0;
        for i in 0..300u64 {
            if i % 23 == 5 {
                text.push_str(&format!("{},{i},new,X,ACME,O{i},ACC1,,,,buy,-1,5,,,,,,,,,,,,,\n", 1000 + i));
                bad += 1;
            } else {
                text.push_str(&format!("{},{i},new,X,ACME,O{i},ACC1,,,,buy,10.5,5,,,,,,,,,,,,,\n", 1000 + i));
            }
        }
        std::fs::write(&path, &text).expect("write");
        let inputs = vec![InputSpec { index: 0, path: path.clone(), format: Format::Csv }];
        let reference = Arc::new(ReferenceData::new(4));
        for (block, peers) in [(4096u64, 1usize), (4096, 2), (4096, 3), (1 << 20, 1)] {
            let mut config = Config::default();
            config.ingest.block_size = block;
            let progress = Arc::new(AtomicU64::new(0));
            let mut events = Vec::new();
            let mut letters = Vec::new();
            for worker in 0..peers {
                let counts = Rc::new(RefCell::new(EventCounts::default()));
                let mut parts =
                    plan_partitions(&inputs, &config, &reference, worker, peers, &progress, &counts).expect("plan");
                let (e, s) = read_all(&mut parts);
                events.extend(e);
                letters.extend(s.into_iter().filter_map(|r| match r {
                    Report::DeadLetter(d) => Some(*d),
                    _ => None,
                }));
            }
            assert_eq!(events.len(), 300 - bad, "block {block} peers {peers}");
            assert_eq!(letters.len(), bad);
            let mut lines: Vec<u64> = letters.iter().filter_map(|d| d.line).collect();
            lines.sort();
            let expected: Vec<u64> = (0..300u64).filter(|i| i % 23 == 5).map(|i| i + 2).collect();
            assert_eq!(lines, expected, "line numbers, block {block} peers {peers}");
            assert!(letters.iter().all(|d| d.reason == RejectReason::BadPrice));
            assert_eq!(progress.load(Ordering::Relaxed), text.len() as u64);
        }
    }
}
