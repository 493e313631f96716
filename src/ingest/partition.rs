//! File partitions: blocks of plain files, or whole gzipped files, read line by line.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use surveil_operators::{Partition, PartitionRead};

use super::lines::{LineIndex, LineReader, is_gzip};
use super::{
    DeadLetter, InputError, InputSpec, Line, LineParser, ParseContext, RejectReason, Rejection, companion_of,
    parser_for,
};
use crate::config::Config;
use crate::model::Report;
use crate::model::{Event, IdMap, Origin, Symbol};
use crate::reference::{Missing, MissingCounts, ReferenceData};

/// How far a run has read its inputs: bytes in all (for progress bars) and, per partition, the
/// position reached, which is what an interrupted run reports as the point it stopped at.
#[derive(Debug, Default)]
pub struct ReadProgress {
    bytes: AtomicU64,
    spans: Mutex<Vec<Arc<Span>>>,
    /// Partitions record the points they could be resumed from ([`ReadProgress::resume_points`]).
    sampling: AtomicBool,
    /// Where each partition (input, start) resumes, when the run resumes from a checkpoint.
    resume: Mutex<HashMap<(u32, u64), ResumePoint>>,
    /// Points sampled by the partitions of other processes of a cluster, by (input, start),
    /// oldest first ([`ReadProgress::add_samples`]).
    remote: Mutex<BTreeMap<(u32, u64), std::collections::VecDeque<ResumePoint>>>,
}

/// One partition's byte range and how far it was read.
#[derive(Debug)]
struct Span {
    source: u32,
    start: u64,
    reached: AtomicU64,
    finished: AtomicBool,
    lines: Mutex<SpanCounts>,
    /// Points the partition could resume from, oldest first (while sampling).
    samples: Mutex<std::collections::VecDeque<ResumePoint>>,
}

/// What a partition read: its lines, its events by kind, and its incomplete events by missing
/// reference field.
type SpanCounts = (LineCounts, EventCounts, MissingCounts);

/// A point a partition of a file can be resumed from: a position between two reads, with what
/// the partition had read before it, so that a resumed run counts the whole input.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ResumePoint {
    /// Index of the input.
    pub source: u32,
    /// Where the partition starts (with `source`, it names the partition).
    pub start: u64,
    /// Where reading resumes.
    pub offset: u64,
    /// The line number of the line at `offset`, when known.
    pub line: Option<u64>,
    /// The latest event time read before `offset`, if any.
    pub max_time: Option<u64>,
    /// The partition was read to its end.
    pub finished: bool,
    /// What became of the lines before `offset`.
    pub lines: LineCounts,
    /// The events before `offset`, by kind.
    pub events: Vec<u64>,
    /// The events before `offset` that named reference data the files lacked, by field
    /// ([`crate::reference::Missing::FIELDS`]).
    #[serde(default)]
    pub incomplete: Vec<u64>,
}

impl ResumePoint {
    fn event_counts(&self) -> EventCounts {
        counts_from(&self.events)
    }
}

fn counts_from<const N: usize>(values: &[u64]) -> [u64; N] {
    let mut counts = [0; N];
    for (count, n) in counts.iter_mut().zip(values) {
        *count = *n;
    }
    counts
}

/// What became of the lines read: every line is exactly one of a header, a blank line, a line
/// accepted by its parser (one or more events) or a rejected line (a dead letter), so
/// `read = header + blank + accepted + rejected`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LineCounts {
    /// Lines read.
    pub read: u64,
    /// Header lines skipped.
    pub header: u64,
    /// Empty or whitespace-only lines skipped.
    pub blank: u64,
    /// Lines that gave events.
    pub accepted: u64,
    /// Lines that gave a dead letter instead.
    pub rejected: u64,
}

impl std::ops::AddAssign for LineCounts {
    fn add_assign(&mut self, other: LineCounts) {
        self.read += other.read;
        self.header += other.header;
        self.blank += other.blank;
        self.accepted += other.accepted;
        self.rejected += other.rejected;
    }
}

/// The ranges of one input that were read completely.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InputPosition {
    /// Index of the input.
    pub source: u32,
    /// `[start, end)` byte ranges (of the decompressed stream for gzip) whose every line was
    /// read and processed, merged where they touch.
    pub ranges: Vec<(u64, u64)>,
    /// True when the whole input was read.
    pub finished: bool,
}

impl ReadProgress {
    /// Bytes read so far over all partitions.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    fn register(&self, source: u32, start: u64) -> Arc<Span> {
        let span = Arc::new(Span {
            source,
            start,
            reached: AtomicU64::new(start),
            finished: AtomicBool::new(false),
            lines: Mutex::new((LineCounts::default(), EventCounts::default(), MissingCounts::default())),
            samples: Mutex::default(),
        });
        if let Ok(mut spans) = self.spans.lock() {
            spans.push(span.clone());
        }
        span
    }

    /// Partitions read from here on record the points they could resume from.
    pub fn sample_resume_points(&self) {
        self.sampling.store(true, Ordering::Relaxed);
    }

    /// Partitions record no more points: every partition resumes from its start.
    pub fn stop_sampling_resume_points(&self) {
        self.sampling.store(false, Ordering::Relaxed);
    }

    fn is_sampling(&self) -> bool {
        self.sampling.load(Ordering::Relaxed)
    }

    /// Partitions planned from here on start at `points` (by input and start) instead of their
    /// start: the run resumes from a checkpoint.
    pub fn resume_from(&self, points: &[ResumePoint]) {
        if let Ok(mut resume) = self.resume.lock() {
            resume.extend(points.iter().map(|p| ((p.source, p.start), p.clone())));
        }
    }

    /// The point partition `(source, start)` resumes from, when the run resumes from a
    /// checkpoint that has one.
    pub fn resume_point(&self, source: u32, start: u64) -> Option<ResumePoint> {
        self.resume.lock().ok()?.get(&(source, start)).cloned()
    }

    /// For every partition, the furthest point it has read to before which every event is
    /// earlier than `before`: a run resumed from these points reads again every event at or
    /// after `before` (and some earlier ones). Earlier samples are forgotten, since `before`
    /// only grows. Covers the partitions of other processes whose samples were added.
    pub fn resume_points(&self, before: u64) -> Vec<ResumePoint> {
        // A point after reads that gave no event (only bad lines) is not known to be behind
        // `before`: its dead letters may not be written yet. Only the start is always usable.
        let usable = |p: &ResumePoint| match p.max_time {
            Some(t) => t < before,
            None => p.offset == p.start,
        };
        let furthest = |samples: &mut std::collections::VecDeque<ResumePoint>| {
            while samples.len() > 1 && samples.get(1).is_some_and(usable) {
                samples.pop_front();
            }
            samples.front().cloned()
        };
        let mut points = Vec::new();
        if let Ok(spans) = self.spans.lock() {
            for span in spans.iter() {
                if let Some(point) = span.samples.lock().ok().and_then(|mut s| furthest(&mut s)) {
                    points.push(point);
                }
            }
        }
        if let Ok(mut remote) = self.remote.lock() {
            points.extend(remote.values_mut().filter_map(furthest));
        }
        points.sort_by_key(|p| (p.source, p.start));
        points
    }

    /// Takes the points this process's partitions sampled since the last call, oldest first
    /// per partition, to send to the process that keeps the checkpoints.
    pub fn take_samples(&self) -> Vec<ResumePoint> {
        let Ok(spans) = self.spans.lock() else { return Vec::new() };
        let mut taken = Vec::new();
        for span in spans.iter() {
            if let Ok(mut samples) = span.samples.lock() {
                taken.extend(samples.drain(..));
            }
        }
        taken
    }

    /// Adds points sampled by another process's partitions ([`ReadProgress::take_samples`]),
    /// so that [`ReadProgress::resume_points`] covers them.
    pub fn add_samples(&self, points: impl IntoIterator<Item = ResumePoint>) {
        if let Ok(mut remote) = self.remote.lock() {
            for point in points {
                remote.entry((point.source, point.start)).or_default().push_back(point);
            }
        }
    }

    /// What became of the lines read so far, over all partitions.
    pub fn lines(&self) -> LineCounts {
        let mut total = LineCounts::default();
        if let Ok(spans) = self.spans.lock() {
            for span in spans.iter() {
                if let Ok(lines) = span.lines.lock() {
                    total += lines.0;
                }
            }
        }
        total
    }

    /// Events read so far, by kind (indexed by [`crate::model::EventKind::index`]).
    pub fn events(&self) -> EventCounts {
        let mut total = EventCounts::default();
        if let Ok(spans) = self.spans.lock() {
            for span in spans.iter() {
                if let Ok(counts) = span.lines.lock() {
                    for (t, n) in total.iter_mut().zip(counts.1) {
                        *t += n;
                    }
                }
            }
        }
        total
    }

    /// Events read so far by input (its index) and kind.
    pub fn events_by_source(&self) -> BTreeMap<u32, EventCounts> {
        let mut totals: BTreeMap<u32, EventCounts> = BTreeMap::new();
        if let Ok(spans) = self.spans.lock() {
            for span in spans.iter() {
                if let Ok(counts) = span.lines.lock() {
                    let total = totals.entry(span.source).or_default();
                    for (t, n) in total.iter_mut().zip(counts.1) {
                        *t += n;
                    }
                }
            }
        }
        totals
    }

    /// Events read so far that named reference data the files lacked, by input (its index)
    /// and missing field; inputs without any are left out.
    pub fn incomplete_by_source(&self) -> BTreeMap<u32, MissingCounts> {
        let mut totals: BTreeMap<u32, MissingCounts> = BTreeMap::new();
        if let Ok(spans) = self.spans.lock() {
            for span in spans.iter() {
                if let Ok(counts) = span.lines.lock()
                    && counts.2.iter().any(|&n| n > 0)
                {
                    let total = totals.entry(span.source).or_default();
                    for (t, n) in total.iter_mut().zip(counts.2) {
                        *t += n;
                    }
                }
            }
        }
        totals
    }

    /// Per input, the byte ranges read so far.
    pub fn positions(&self) -> Vec<InputPosition> {
        let Ok(spans) = self.spans.lock() else { return Vec::new() };
        let mut spans: Vec<(u32, u64, u64, bool)> = spans
            .iter()
            .map(|s| (s.source, s.start, s.reached.load(Ordering::Relaxed), s.finished.load(Ordering::Relaxed)))
            .collect();
        spans.sort_unstable();
        let mut out: Vec<InputPosition> = Vec::new();
        for (source, start, reached, finished) in spans {
            if out.last().is_none_or(|p| p.source != source) {
                out.push(InputPosition { source, ranges: Vec::new(), finished: true });
            }
            let Some(position) = out.last_mut() else { continue };
            position.finished &= finished;
            if reached <= start {
                continue;
            }
            match position.ranges.last_mut() {
                Some(last) if last.1 == start => last.1 = reached,
                _ => position.ranges.push((start, reached)),
            }
        }
        out
    }
}

/// What one process of a cluster read ([`ReadProgress::snapshot`]), sent to the process that
/// writes the outputs so that its summary and audit trail count every process's reading.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProgressSnapshot {
    /// Bytes read.
    pub bytes: u64,
    /// Per partition: input, start, position reached, whether finished, lines and events.
    pub spans: Vec<SpanSnapshot>,
    /// Why the process stopped reading early, if it did.
    #[serde(default)]
    pub interrupted: Option<String>,
}

/// One partition's reading in a [`ProgressSnapshot`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SpanSnapshot {
    /// Index of the input.
    pub source: u32,
    /// Where the partition starts.
    pub start: u64,
    /// How far it was read.
    pub reached: u64,
    /// True when it was read to its end.
    pub finished: bool,
    /// What became of its lines.
    pub lines: LineCounts,
    /// Its events, by kind.
    pub events: Vec<u64>,
    /// Its incomplete events, by missing field.
    #[serde(default)]
    pub incomplete: Vec<u64>,
}

impl ReadProgress {
    /// Everything read so far, to send to another process.
    pub fn snapshot(&self) -> ProgressSnapshot {
        let spans = match self.spans.lock() {
            Ok(spans) => spans
                .iter()
                .map(|s| {
                    let (lines, events, incomplete) = s.lines.lock().map(|l| *l).unwrap_or_default();
                    SpanSnapshot {
                        source: s.source,
                        start: s.start,
                        reached: s.reached.load(Ordering::Relaxed),
                        finished: s.finished.load(Ordering::Relaxed),
                        lines,
                        events: events.to_vec(),
                        incomplete: incomplete.to_vec(),
                    }
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        ProgressSnapshot { bytes: self.bytes(), spans, interrupted: None }
    }

    /// Adds what another process read, so that counts and positions cover both.
    pub fn absorb(&self, snapshot: &ProgressSnapshot) {
        self.bytes.fetch_add(snapshot.bytes, Ordering::Relaxed);
        for span in &snapshot.spans {
            let mine = self.register(span.source, span.start);
            mine.reached.store(span.reached, Ordering::Relaxed);
            mine.finished.store(span.finished, Ordering::Relaxed);
            if let Ok(mut lines) = mine.lines.lock() {
                *lines = (span.lines, counts_from(&span.events), counts_from(&span.incomplete));
            }
        }
    }
}

/// How far a partition that is not read as lines (an archive's file, a replay) has read, for
/// the run's progress, counts and interruption report.
#[derive(Debug)]
pub struct PartitionProgress {
    progress: Arc<ReadProgress>,
    span: Arc<Span>,
    reported: u64,
    counts: EventCounts,
    incomplete: MissingCounts,
}

impl ReadProgress {
    /// Starts tracking a partition of input `source` whose positions start at `start`.
    pub fn track(self: &Arc<Self>, source: u32, start: u64) -> PartitionProgress {
        PartitionProgress {
            progress: self.clone(),
            span: self.register(source, start),
            reported: 0,
            counts: EventCounts::default(),
            incomplete: MissingCounts::default(),
        }
    }
}

impl PartitionProgress {
    /// Records `events` read and the position reached (bytes from the partition's start).
    pub fn read(&mut self, events: &[Event], reached: u64) {
        for event in events {
            self.counts[event.kind().index()] += 1;
        }
        let start = self.span.start;
        self.span.reached.store(start + reached, Ordering::Relaxed);
        if let Ok(mut lines) = self.span.lines.lock() {
            (lines.1, lines.2) = (self.counts, self.incomplete);
        }
        self.progress.bytes.fetch_add(reached.saturating_sub(self.reported), Ordering::Relaxed);
        self.reported = reached.max(self.reported);
    }

    /// Counts an event to be [`PartitionProgress::read`] as incomplete.
    pub fn incomplete(&mut self, missing: Missing) {
        missing.count(&mut self.incomplete);
    }

    /// The partition is read to its end.
    pub fn finish(&mut self) {
        self.span.finished.store(true, Ordering::Relaxed);
    }

    /// The partition resumes at `point`: its counts go on from the point's.
    pub fn resume(&mut self, point: &ResumePoint) {
        self.counts = point.event_counts();
        self.incomplete = counts_from(&point.incomplete);
        if let Ok(mut lines) = self.span.lines.lock() {
            *lines = (point.lines, self.counts, self.incomplete);
        }
    }

    /// A position the partition could resume from (`offset`, every event before it handed
    /// out, none later than `max_time`), with the counts so far, while checkpoints are kept.
    pub fn sample(&self, offset: u64, max_time: Option<u64>) {
        if !self.progress.is_sampling() {
            return;
        }
        let point = ResumePoint {
            source: self.span.source,
            start: self.span.start,
            offset,
            line: None,
            max_time,
            finished: self.span.finished.load(Ordering::Relaxed),
            lines: LineCounts::default(),
            events: self.counts.to_vec(),
            incomplete: self.incomplete.to_vec(),
        };
        if let Ok(mut samples) = self.span.samples.lock() {
            samples.push_back(point);
        }
    }
}

/// A byte range of one input, read as lines.
pub struct LinePartition {
    input: Arc<InputSpec>,
    start: u64,
    /// Where reading begins: the start, or the point a resumed run continues from.
    begin: u64,
    end: u64,
    /// The partition can be resumed between two reads (a block of a plain file; not a gzip
    /// stream, an order book's pair of files or a FIX log read as one chain).
    resumable: bool,
    /// The latest event time read so far.
    max_time: Option<u64>,
    companion: Option<PathBuf>,
    /// The parser, or why the input's content could not be read far enough to build one
    /// (a truncated gzip header): then the partition yields one `io_error` dead letter.
    parser: Result<Box<dyn LineParser>, String>,
    reference: Arc<ReferenceData>,
    reader: Option<LineReader>,
    companion_reader: Option<LineReader>,
    /// Line number of the next line, when known.
    line: Option<u64>,
    line_index: Rc<RefCell<LineIndex>>,
    announced: IdMap<Symbol, ()>,
    finished: bool,
    /// A gzipped input (offsets count decompressed bytes; one partition).
    gzip: bool,
    /// The file's size when planned.
    size: u64,
    /// Offset reached (of the decompressed stream for gzip).
    position: u64,
    progress: Arc<ReadProgress>,
    span: Arc<Span>,
    lines: LineCounts,
    reported: u64,
    counts: EventCounts,
    incomplete: MissingCounts,
}

/// Events read by kind (indexed by [`crate::model::EventKind::index`]).
pub type EventCounts = [u64; crate::model::EventKind::ALL.len()];

impl LinePartition {
    fn open(&self) -> std::io::Result<(LineReader, Option<LineReader>)> {
        let reader = LineReader::open(&self.input.path, self.begin)?;
        let companion = match &self.companion {
            Some(path) => Some(LineReader::open(path, 0)?),
            None => None,
        };
        Ok((reader, companion))
    }

    /// The line number of the line at `offset`, which is the next line to be counted: from
    /// the running count when known, else from the file (then the count is known from here on).
    fn line_number(&mut self, offset: u64) -> Option<u64> {
        if self.line.is_none() && !self.gzip {
            self.line = self.line_index.borrow_mut().line_at(offset).ok();
        }
        self.line
    }

    fn dead_letter(&self, line: Option<u64>, offset: u64, raw: &[u8], rejection: Rejection) -> Report {
        Report::DeadLetter(Box::new(DeadLetter {
            source: self.input.index,
            line,
            offset,
            raw: String::from_utf8_lossy(raw).into_owned(),
            reason: rejection.reason,
            detail: rejection.detail,
            event: None,
        }))
    }

    fn io_failure(&mut self, offset: u64, error: std::io::Error) -> Report {
        self.finish();
        Report::DeadLetter(Box::new(DeadLetter {
            source: self.input.index,
            line: self.line,
            offset,
            raw: String::new(),
            reason: RejectReason::IoError,
            detail: format!("reading {} stopped here: {error}", self.input.path.display()),
            event: None,
        }))
    }

    /// Records how far the partition has read. Progress counts the partition's own byte
    /// range, so the blocks add up to the file.
    fn note_position(&mut self) {
        if let Some(reader) = &self.reader {
            self.position = reader.offset().min(self.end).max(self.start);
        }
        let done = self.position - self.start;
        self.span.reached.store(self.position, Ordering::Relaxed);
        if let Ok(mut lines) = self.span.lines.lock() {
            *lines = (self.lines, self.counts, self.incomplete);
        }
        self.progress.bytes.fetch_add(done.saturating_sub(self.reported), Ordering::Relaxed);
        self.reported = done.max(self.reported);
    }

    /// Done: the readers and their buffers are released at once (a run over many blocks
    /// holds only the open ones).
    fn finish(&mut self) {
        self.note_position();
        if !self.gzip {
            self.position = self.position.max(self.end.min(self.size));
        }
        self.note_position();
        self.finished = true;
        self.reader = None;
        self.companion_reader = None;
        self.span.finished.store(true, Ordering::Relaxed);
    }

    /// Records the point after the last read as one to resume from (between reads, at a line).
    fn sample(&self) {
        if !(self.progress.is_sampling() && (self.resumable || self.finished || self.position == self.start)) {
            return;
        }
        let point = ResumePoint {
            source: self.input.index,
            start: self.start,
            offset: self.position,
            line: self.line,
            max_time: self.max_time,
            finished: self.finished,
            lines: self.lines,
            events: self.counts.to_vec(),
            incomplete: self.incomplete.to_vec(),
        };
        if let Ok(mut samples) = self.span.samples.lock() {
            samples.push_back(point);
        }
    }
}

/// The UTF-8 error of a line, as a rejection.
#[cold]
fn not_utf8(error: std::str::Utf8Error) -> Rejection {
    Rejection::new(
        RejectReason::BadUtf8,
        format!("not UTF-8 text: an invalid byte sequence at byte {} of the line", error.valid_up_to()),
    )
}

impl Partition for LinePartition {
    type Record = Event;
    type Side = Report;

    #[inline]
    fn time(record: &Event) -> u64 {
        record.time
    }

    fn first_time(&mut self) -> Option<u64> {
        if self.finished {
            return None;
        }
        // Parse from the start of the range up to the first good record. A fresh parser state
        // is not needed: parsers keep no state that changes the time of the first event.
        let (mut reader, mut companion) = self.open().ok()?;
        let Ok(parser) = self.parser.as_mut() else { return None };
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
            if offset == 0 && parser.is_header(bytes) {
                continue;
            }
            if std::str::from_utf8(bytes).is_err() {
                continue;
            }
            let mut ctx = ParseContext::new(&self.reference, &mut side, &mut announced);
            let line =
                Line { bytes, origin: Origin::new(self.input.index, offset), companion: companion_line.as_deref() };
            if ctx.parse(parser.as_mut(), &line, &mut events).is_ok()
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
        if let Err(error) = &self.parser {
            let error = std::io::Error::other(error.clone());
            let report = self.io_failure(self.start, error);
            side.push(report);
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
        let mut raw: Vec<u8> = Vec::new();
        while lines < max_records {
            let Some(reader) = self.reader.as_mut() else {
                break;
            };
            let (offset, bytes) = match reader.next_line() {
                Ok(Some((offset, _))) if offset >= self.end => {
                    self.finish();
                    break;
                }
                Ok(Some((offset, bytes))) => (offset, bytes),
                Ok(None) => {
                    self.finish();
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
            self.lines.read += 1;
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
            let Ok(parser) = self.parser.as_mut() else { break };
            if offset == 0 && parser.is_header(bytes) {
                self.lines.header += 1;
                continue;
            }
            let trimmed = bytes.strip_suffix(b"\r").unwrap_or(bytes);
            if trimmed.iter().all(u8::is_ascii_whitespace) {
                self.lines.blank += 1;
                continue;
            }
            let rejection = if self.companion.is_some() && !has_companion {
                Some(Rejection::new(
                    RejectReason::ColumnCount,
                    "the order book file has fewer lines than the message file",
                ))
            } else if let Err(error) = std::str::from_utf8(bytes) {
                Some(not_utf8(error))
            } else {
                let before = records.len();
                let mut ctx = ParseContext::new(&self.reference, side, &mut self.announced);
                let line = Line {
                    bytes,
                    origin: Origin::new(self.input.index, offset),
                    companion: has_companion.then_some(companion_line.as_slice()),
                };
                match ctx.parse(parser.as_mut(), &line, records) {
                    Ok(()) => {
                        for event in &mut records[before..] {
                            self.reference.enrich(event).count(&mut self.incomplete);
                            self.counts[event.kind().index()] += 1;
                            self.max_time = Some(self.max_time.map_or(event.time, |t| t.max(event.time)));
                        }
                        self.lines.accepted += 1;
                        None
                    }
                    Err(rejection) => Some(rejection),
                }
            };
            if let Some(rejection) = rejection {
                self.lines.rejected += 1;
                raw.clear();
                raw.extend_from_slice(bytes);
                self.line = this_line;
                let line = self.line_number(offset);
                self.line = line.map(|l| l + 1);
                side.push(self.dead_letter(line, offset, &raw, rejection));
            }
        }
        self.note_position();
        self.sample();
        if self.finished { PartitionRead::Exhausted } else { PartitionRead::More }
    }

    fn bytes_read(&self) -> u64 {
        self.reported
    }
}

/// How one input is split into partitions.
struct Split {
    size: u64,
    gzip: bool,
    companion: Option<PathBuf>,
    /// The input can be split into blocks (a plain file read alone).
    splittable: bool,
    /// The partitions' `[start, end)` byte ranges.
    ranges: Vec<(u64, u64)>,
}

impl Split {
    fn of(input: &InputSpec, config: &Config) -> Result<Split, InputError> {
        let io = |source| InputError::Io { path: input.path.clone(), source };
        let size = std::fs::metadata(&input.path).map_err(io)?.len();
        let companion = companion_of(input, config);
        let gzip = is_gzip(&input.path).map_err(io)?;
        // A FIX order-entry log names orders by chains of request ids, followed through the
        // file: it is read as one partition.
        let chained =
            input.format == super::Format::Fix && config.ingest.fix.orders_from == crate::config::FixOrders::Requests;
        let splittable = !gzip && companion.is_none() && !chained;
        let block = config.ingest.block_size.max(4096);
        let ranges: Vec<(u64, u64)> = if splittable && size > block {
            (0..size.div_ceil(block)).map(|b| (b * block, ((b + 1) * block).min(size))).collect()
        } else {
            vec![(0, u64::MAX)]
        };
        Ok(Split { size, gzip, companion, splittable, ranges })
    }
}

/// Every partition [`plan_partitions`] makes of `inputs`, over all workers: (input, start).
pub fn partition_starts(inputs: &[InputSpec], config: &Config) -> Result<Vec<(u32, u64)>, InputError> {
    let mut starts = Vec::new();
    for input in inputs.iter().filter(|i| i.format != super::Format::Archive) {
        starts.extend(Split::of(input, config)?.ranges.into_iter().map(|(start, _)| (input.index, start)));
    }
    Ok(starts)
}

/// Splits the inputs into partitions and returns this worker's share. Partitions are numbered
/// in input order and dealt round-robin, so neighbouring blocks of one file go to different
/// workers and all workers advance through event time together.
///
/// `progress` accumulates the bytes read and each partition's position.
pub fn plan_partitions(
    inputs: &[InputSpec],
    config: &Config,
    reference: &Arc<ReferenceData>,
    worker: usize,
    peers: usize,
    progress: &Arc<ReadProgress>,
) -> Result<Vec<LinePartition>, InputError> {
    let mut mine = Vec::new();
    let mut global = 0usize;
    let mut indexes: HashMap<u32, Rc<RefCell<LineIndex>>> = HashMap::new();
    for input in inputs.iter().filter(|i| i.format != super::Format::Archive) {
        let Split { size, gzip, companion, splittable, ranges } = Split::of(input, config)?;
        let shared = Arc::new(input.clone());
        for (start, end) in ranges {
            if global % peers.max(1) == worker {
                let line_index = indexes
                    .entry(input.index)
                    .or_insert_with(|| Rc::new(RefCell::new(LineIndex::new(&input.path))))
                    .clone();
                let resume = progress.resume_point(input.index, start);
                let begin = resume.as_ref().map_or(start, |p| p.offset.clamp(start, end));
                let mut partition = LinePartition {
                    input: shared.clone(),
                    start,
                    begin,
                    end,
                    resumable: splittable,
                    max_time: resume.as_ref().and_then(|p| p.max_time),
                    companion: companion.clone(),
                    parser: match parser_for(input, config) {
                        Ok(parser) => Ok(parser),
                        Err(InputError::Io { source, .. }) => Err(source.to_string()),
                        Err(format) => return Err(format),
                    },
                    reference: reference.clone(),
                    reader: None,
                    companion_reader: None,
                    line: match &resume {
                        Some(point) => point.line,
                        None => (start == 0).then_some(1),
                    },
                    line_index,
                    announced: IdMap::default(),
                    finished: false,
                    gzip,
                    size,
                    position: begin,
                    progress: progress.clone(),
                    span: progress.register(input.index, start),
                    lines: resume.as_ref().map(|p| p.lines).unwrap_or_default(),
                    reported: 0,
                    counts: resume.as_ref().map(ResumePoint::event_counts).unwrap_or_default(),
                    incomplete: resume.as_ref().map(|p| counts_from(&p.incomplete)).unwrap_or_default(),
                };
                // A resumed partition counts what it read before the checkpoint, and one read
                // to its end is not read again.
                if let Some(point) = &resume {
                    partition.note_position();
                    if point.finished {
                        partition.finished = true;
                        partition.span.finished.store(true, Ordering::Relaxed);
                    }
                }
                partition.sample();
                mine.push(partition);
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
    fn a_partition_resumed_from_a_sample_reads_the_rest_and_counts_the_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("day.csv");
        let mut text = format!("{HEADER}\n");
        for i in 0..2000u64 {
            // Slightly out of order, with a bad line now and then.
            let time = 1_000 + i * 10 - (i % 3) * 7;
            let price = if i % 97 == 13 { "-1" } else { "10.5" };
            text.push_str(&format!("{time},{i},new,X,ACME,O{i},ACC1,,,,buy,{price},5,,,,,,,,,,,,,\n"));
        }
        std::fs::write(&path, &text).expect("write");
        let inputs = vec![InputSpec { index: 0, path: path.clone(), format: Format::Csv }];
        let reference = Arc::new(ReferenceData::new(4));
        let mut config = Config::default();
        config.ingest.block_size = 16 << 10;
        let origins = |side: &[Report]| -> Vec<u64> {
            side.iter()
                .filter_map(|r| match r {
                    Report::DeadLetter(d) => Some(d.offset),
                    _ => None,
                })
                .collect()
        };
        // The whole file, as one uninterrupted run reads it.
        let whole = Arc::new(ReadProgress::default());
        let mut parts = plan_partitions(&inputs, &config, &reference, 0, 1, &whole).expect("plan");
        let (all_events, all_side) = read_all(&mut parts);
        assert!(parts.len() > 2, "several blocks");
        // A run that reads part of each partition, then resumes from its samples.
        let first = Arc::new(ReadProgress::default());
        first.sample_resume_points();
        let mut parts = plan_partitions(&inputs, &config, &reference, 0, 1, &first).expect("plan");
        let (mut events, mut side) = (Vec::new(), Vec::new());
        for (i, p) in parts.iter_mut().enumerate() {
            // The first partition to its end, the others part of the way.
            for _ in 0..if i == 0 { 1000 } else { 3 } {
                if p.read(50, &mut events, &mut side) == PartitionRead::Exhausted {
                    break;
                }
            }
        }
        let cut = 1_000 + 900 * 10;
        let points = first.resume_points(cut);
        assert_eq!(points.len(), parts.len());
        assert!(points[0].finished, "the first partition was read to its end");
        assert!(points.iter().any(|p| p.offset > p.start && !p.finished), "{points:?}");
        for point in &points {
            assert!(point.max_time.is_none_or(|t| t < cut));
        }
        let before = |offset: u64| points.iter().any(|p| p.start <= offset && offset < p.offset);
        let resumed = Arc::new(ReadProgress::default());
        resumed.resume_from(&points);
        let mut parts = plan_partitions(&inputs, &config, &reference, 0, 1, &resumed).expect("plan");
        let (rest, rest_side) = read_all(&mut parts);
        // What the first run read before the points, and what the resumed run read after them,
        // are together the whole file, each line once.
        let mut together: Vec<u64> =
            events.iter().filter(|e| before(e.origin.offset())).chain(&rest).map(|e| e.origin.offset()).collect();
        together.sort_unstable();
        let mut expected: Vec<u64> = all_events.iter().map(|e| e.origin.offset()).collect();
        expected.sort_unstable();
        assert_eq!(together, expected);
        let mut letters: Vec<u64> =
            origins(&side).into_iter().filter(|o| before(*o)).chain(origins(&rest_side)).collect();
        letters.sort_unstable();
        assert_eq!(letters, origins(&all_side));
        // The resumed run counts the whole file.
        assert_eq!(resumed.lines(), whole.lines());
        assert_eq!(resumed.events(), whole.events());
        assert_eq!(resumed.bytes(), whole.bytes());
        assert_eq!(resumed.positions(), whole.positions());
        // Line numbers of dead letters after a resume point are right.
        let lines = |side: &[Report]| -> Vec<(u64, Option<u64>)> {
            side.iter()
                .filter_map(|r| match r {
                    Report::DeadLetter(d) => Some((d.offset, d.line)),
                    _ => None,
                })
                .collect()
        };
        let all_lines = lines(&all_side);
        for letter in lines(&rest_side) {
            assert!(all_lines.contains(&letter), "{letter:?}");
        }
    }

    #[test]
    fn points_sampled_by_another_process_resume_its_partitions_as_its_own() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("day.csv");
        let mut text = format!("{HEADER}\n");
        for i in 0..2000u64 {
            let time = 1_000 + i * 10 - (i % 3) * 7;
            text.push_str(&format!("{time},{i},new,X,ACME,O{i},ACC1,,,,buy,10.5,5,,,,,,,,,,,,,\n"));
        }
        std::fs::write(&path, &text).expect("write");
        let inputs = vec![InputSpec { index: 0, path, format: Format::Csv }];
        let reference = Arc::new(ReferenceData::new(4));
        let mut config = Config::default();
        config.ingest.block_size = 16 << 10;
        // Reads part of the partitions of worker `worker` of two into `progress`, in two rounds
        // (`after` runs between them).
        let read = |progress: &Arc<ReadProgress>, worker: usize, after: &mut dyn FnMut()| {
            let mut parts = plan_partitions(&inputs, &config, &reference, worker, 2, progress).expect("plan");
            let (mut events, mut side) = (Vec::new(), Vec::new());
            for round in 0..2 {
                for (i, p) in parts.iter_mut().enumerate() {
                    for _ in 0..if i == 0 { 1000 } else { 2 + round } {
                        if p.read(50, &mut events, &mut side) == PartitionRead::Exhausted {
                            break;
                        }
                    }
                }
                if round == 0 {
                    after();
                }
            }
            parts.iter().map(|p| (p.input.index, p.start)).collect::<Vec<_>>()
        };
        // One process that reads both workers' partitions.
        let one = Arc::new(ReadProgress::default());
        one.sample_resume_points();
        let mut starts = read(&one, 0, &mut || {});
        starts.extend(read(&one, 1, &mut || {}));
        starts.sort_unstable();
        assert_eq!(partition_starts(&inputs, &config).expect("starts"), starts);
        // Two processes: the second sends its samples to the first, in two messages.
        let (first, second) = (Arc::new(ReadProgress::default()), Arc::new(ReadProgress::default()));
        first.sample_resume_points();
        second.sample_resume_points();
        read(&first, 0, &mut || {});
        read(&second, 1, &mut || first.add_samples(second.take_samples()));
        first.add_samples(second.take_samples());
        assert!(second.take_samples().is_empty(), "samples are sent once");
        for cut in [1_000, 1_000 + 300 * 10, 1_000 + 900 * 10, u64::MAX] {
            let points = first.resume_points(cut);
            assert_eq!(points, one.resume_points(cut), "cut {cut}");
            assert_eq!(points.len(), starts.len());
        }
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
            let progress = Arc::new(ReadProgress::default());
            let mut events = Vec::new();
            let mut letters = Vec::new();
            for worker in 0..peers {
                let mut parts = plan_partitions(&inputs, &config, &reference, worker, peers, &progress).expect("plan");
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
            assert_eq!(progress.bytes(), text.len() as u64);
            let positions = progress.positions();
            assert_eq!(positions.len(), 1);
            assert_eq!((positions[0].ranges.clone(), positions[0].finished), (vec![(0, text.len() as u64)], true));
        }
    }
}
