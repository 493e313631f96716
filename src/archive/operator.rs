//! The operator that archives a source's output: its on-time events, its late events and its
//! dead letters, each in their table.

use std::sync::Arc;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::Stream;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::vec::Map;

use surveil_operators::{SourceOutputs, route};

use super::columns::{DeadLetterRow, RowContext};
use super::writer::TableWriter;
use super::{Archive, ArchiveError, ArchivedFile, DEAD_LETTERS, EVENTS, LATE_EVENTS, PartitionKey, day_of};
use crate::model::{DeadLetter, Event, Report, Symbol, SymbolTable};
use crate::reference::ReferenceData;

/// What a source's side stream tells the archive: the text of a hashed name (sent to every
/// worker, since any of them may write an event that uses it) or a dead letter.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
enum SideRow {
    Name(Symbol, Box<str>),
    Letter(Box<DeadLetter>),
    /// A late event that a source sends as a side record (a replay of an archive does).
    Late(Box<Event>),
}

/// Extension trait: archive what a source read.
pub trait ArchiveInput<'scope> {
    /// Writes the source's on-time events, late events and dead letters into `archive`
    /// (tables `events`, `late_events`, `dead_letters`), leaving the source's streams as they
    /// are for the rest of the dataflow. Events are exchanged by instrument, so each partition
    /// of the archive has one writer; dead letters go to worker 0.
    ///
    /// Returns the files as they are published. Encoding and publishing happen on a thread
    /// of the worker's own (a bounded queue holds the worker back when it falls behind), so
    /// the detection of the same worker does not wait on compression; the returned stream's
    /// frontier empties only when the worker's last file is published, so a probe on it tells
    /// when a finite run's archive is complete. A failed write is recorded in the archive
    /// ([`Archive::counts`]`().error`) and that worker stops archiving; the dataflow goes on.
    ///
    /// # Examples
    /// ```
    /// use std::sync::Arc;
    /// use surveil::archive::{Archive, ArchiveInput};
    /// use surveil::config::ArchiveConfig;
    /// use surveil::model::{Body, Event, Origin, Report, Side, Symbol};
    /// use surveil::reference::ReferenceData;
    /// use surveil_operators::SourceOutputs;
    /// use timely::dataflow::operators::ToStream;
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let config = ArchiveConfig::local(dir.path());
    /// let archive = Arc::new(Archive::open(&config, "run1", &[], dir.path(), None).unwrap());
    /// let reference = Arc::new(ReferenceData::new(2));
    /// let (shared, reference2) = (archive.clone(), reference.clone());
    /// timely::example(move |scope| {
    ///     let order =
    ///         Body::NewOrder { order: Symbol::of(b"O1"), side: Side::Buy, price: None, quantity: 10, displayed: None };
    ///     let event = Event::new(1_709_280_000_000_000_000, Origin::new(0, 0), Symbol::of(b"ACME"), order);
    ///     let source = SourceOutputs {
    ///         records: vec![event].to_stream(scope),
    ///         late: Vec::<Event>::new().to_stream(scope),
    ///         side: Vec::<Report>::new().to_stream(scope),
    ///     };
    ///     source.archive_input(&shared, &reference2);
    /// });
    /// assert_eq!(archive.counts().rows["events"], 1);
    /// assert!(dir.path().join("events/date=2024-03-01/instrument=ACME/part-run1-00000.parquet").exists());
    /// ```
    fn archive_input(
        &self,
        archive: &Arc<Archive>,
        reference: &Arc<ReferenceData>,
    ) -> Stream<'scope, u64, Vec<ArchivedFile>>;
}

/// Rows waiting for the watermark.
#[derive(Default)]
struct Waiting {
    events: Vec<Event>,
    late: Vec<(u64, Event)>,
    letters: Vec<(u64, DeadLetter)>,
}

/// What one activation of the operator hands to its writer thread.
#[derive(Default)]
struct Step {
    watermark: u64,
    names: Vec<(Symbol, Box<str>)>,
    events: Vec<Event>,
    late: Vec<(u64, Event)>,
    letters: Vec<(u64, DeadLetter)>,
}

/// Steps a writer thread may have queued before the worker waits for it.
const QUEUED_STEPS: usize = 16;

type Writer = (std::sync::mpsc::Receiver<Vec<ArchivedFile>>, Option<std::thread::JoinHandle<()>>);

/// Records that a worker's archive thread is gone (it panicked), so that the run reports its
/// archive incomplete (and keeps an earlier run's files).
fn thread_lost(archive: &Archive, panic: Option<Box<dyn std::any::Any + Send>>) {
    let why = panic
        .as_ref()
        .and_then(|p| p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())))
        .unwrap_or_else(|| "it stopped".into());
    archive.fail(&ArchiveError::Write { key: "the archive thread".into(), message: format!("failed: {why}") });
}

/// Starts the thread that turns a worker's rows into Parquet files: encoding and compressing
/// take longer than detecting, and on a thread of their own they neither delay the worker's
/// alerts nor leave a spare core idle.
fn start_writer(archive: Arc<Archive>, reference: Arc<ReferenceData>) -> (std::sync::mpsc::SyncSender<Step>, Writer) {
    let (steps, queue) = std::sync::mpsc::sync_channel::<Step>(QUEUED_STEPS);
    let (files, published) = std::sync::mpsc::channel::<Vec<ArchivedFile>>();
    let shared = archive.clone();
    let thread = std::thread::Builder::new().name("archive".into()).spawn(move || {
        let archive = shared;
        // The reference data's names (desks, owners from the accounts file) are never
        // announced on the stream: start from them.
        let mut names: SymbolTable = reference.names.clone();
        let mut waiting = Waiting::default();
        let mut events: TableWriter<Event> = TableWriter::new(EVENTS, archive.clone());
        let mut late: TableWriter<Event> = TableWriter::new(LATE_EVENTS, archive.clone());
        let mut letters: TableWriter<DeadLetterRow> = TableWriter::new(DEAD_LETTERS, archive.clone());
        let mut failed = false;
        for mut step in queue {
            if failed {
                continue;
            }
            for (symbol, text) in step.names.drain(..) {
                names.insert(symbol, &text);
            }
            waiting.events.append(&mut step.events);
            waiting.late.append(&mut step.late);
            waiting.letters.append(&mut step.letters);
            let context = RowContext { names: &names, reference: &reference };
            let mut done = Vec::new();
            let result =
                release(step.watermark, &mut waiting, &context, (&mut events, &mut late, &mut letters), &mut done);
            if let Err(error) = result {
                archive.fail(&error);
                failed = true;
                waiting = Waiting::default();
            }
            if !done.is_empty() {
                let _ = files.send(done);
            }
        }
    });
    let thread = match thread {
        Ok(thread) => Some(thread),
        // No thread: the archive fails, the rest of the run goes on.
        Err(error) => {
            archive.fail(&ArchiveError::Io { path: "archive thread".into(), source: error });
            None
        }
    };
    (steps, (published, thread))
}

impl<'scope> ArchiveInput<'scope> for SourceOutputs<'scope, Event, Report> {
    fn archive_input(
        &self,
        archive: &Arc<Archive>,
        reference: &Arc<ReferenceData>,
    ) -> Stream<'scope, u64, Vec<ArchivedFile>> {
        let scope = self.records.scope();
        let peers = scope.peers();
        let side = self.side.clone().flat_map(move |report| -> Vec<(usize, SideRow)> {
            match report {
                Report::Symbol(symbol, text) => {
                    (0..peers).map(|to| (to, SideRow::Name(symbol, text.clone()))).collect()
                }
                Report::DeadLetter(letter) => vec![(0, SideRow::Letter(letter))],
                Report::Late(event) => vec![((route(&event.instrument) % peers as u64) as usize, SideRow::Late(event))],
                _ => Vec::new(),
            }
        });
        let mut builder = OperatorBuilder::new("Archive".to_owned(), scope);
        let mut events_in = builder.new_input(self.records.clone(), Exchange::new(|e: &Event| route(&e.instrument)));
        let mut late_in = builder.new_input(self.late.clone(), Exchange::new(|e: &Event| route(&e.instrument)));
        let mut side_in = builder.new_input(side, Exchange::new(|(to, _): &(usize, SideRow)| *to as u64));
        let (files_out, files) = builder.new_output::<Vec<ArchivedFile>>();
        let mut files_out = OutputBuilder::<_, CapacityContainerBuilder<Vec<ArchivedFile>>>::from(files_out);
        let archive = archive.clone();
        let reference = reference.clone();
        builder.build(move |mut initial| {
            let mut held: Option<Capability<u64>> = initial.pop();
            let (steps, published) = start_writer(archive.clone(), reference.clone());
            let mut steps = Some(steps);
            let mut writer = Some(published);
            let mut step = Step::default();
            let mut released_to = 0u64;
            move |frontiers| {
                side_in.for_each(|cap, data| {
                    let sent = cap.least().copied().unwrap_or(0);
                    for (_, row) in data.drain(..) {
                        match row {
                            SideRow::Name(symbol, text) => step.names.push((symbol, text)),
                            SideRow::Letter(letter) => step.letters.push((sent, *letter)),
                            SideRow::Late(event) => step.late.push((sent, *event)),
                        }
                    }
                });
                late_in.for_each(|cap, data| {
                    let sent = cap.least().copied().unwrap_or(0);
                    step.late.extend(data.drain(..).map(|e| (sent, e)))
                });
                events_in.for_each(|_, data| step.events.append(data));
                let watermark =
                    frontiers.iter().filter_map(|f| f.frontier().first().copied()).min().unwrap_or(u64::MAX);
                let Some(cap) = held.as_mut() else { return };
                let mut files: Vec<ArchivedFile> = Vec::new();
                if watermark > released_to || watermark == u64::MAX {
                    released_to = watermark;
                    step.watermark = watermark;
                    // The writer thread encodes and publishes; a full queue holds the worker
                    // back (the archive keeps up or the run slows down, nothing is dropped).
                    let sent = std::mem::take(&mut step);
                    if let Some(queue) = &steps
                        && queue.send(sent).is_err()
                    {
                        // The thread is gone: say so, and stop collecting for it.
                        thread_lost(&archive, None);
                        steps = None;
                    }
                }
                if watermark == u64::MAX {
                    // The end: wait for the writer to publish everything.
                    steps = None;
                    if let Some((published, thread)) = writer.take() {
                        if let Some(Err(panic)) = thread.map(|t| t.join()) {
                            thread_lost(&archive, Some(panic));
                        }
                        files.extend(published.try_iter().flatten());
                    }
                } else if let Some((published, _)) = &writer {
                    files.extend(published.try_iter().flatten());
                }
                if !files.is_empty() {
                    files_out.activate().session(&*cap).give_container(&mut files);
                }
                if watermark == u64::MAX {
                    held = None;
                } else if watermark > *cap.time() {
                    cap.downgrade(&watermark);
                }
            }
        });
        files
    }
}

/// Moves the rows the watermark has passed into their tables, in `(time, origin)` order, and
/// publishes the partitions of the days it has passed (everything at the end).
fn release(
    watermark: u64,
    waiting: &mut Waiting,
    context: &RowContext<'_>,
    (events, late, letters): (&mut TableWriter<Event>, &mut TableWriter<Event>, &mut TableWriter<DeadLetterRow>),
    published: &mut Vec<ArchivedFile>,
) -> Result<(), ArchiveError> {
    let instrument = |symbol: Symbol| {
        (!symbol.is_none()).then(|| {
            let mut name = String::new();
            context.names.write_name(symbol, &mut name);
            name
        })
    };
    // On-time events are sent at or before their event time: once the watermark passes a
    // time, no event before it is still to come. They go to their partitions in groups, in
    // order.
    waiting.events.sort_unstable_by_key(Event::order_key);
    let ready = waiting.events.partition_point(|e| e.time < watermark);
    let mut groups: std::collections::BTreeMap<(i64, Symbol), Vec<Event>> = std::collections::BTreeMap::new();
    for event in waiting.events.drain(..ready) {
        groups.entry((day_of(event.time), event.instrument)).or_default().push(event);
    }
    for ((day, symbol), rows) in groups {
        events.push_all(PartitionKey { day, instrument: instrument(symbol) }, rows);
    }
    // Late events and dead letters are complete once the watermark passes the time they were
    // sent at.
    let (mut ready, rest): (Vec<_>, Vec<_>) = waiting.late.drain(..).partition(|(sent, _)| *sent < watermark);
    waiting.late = rest;
    ready.sort_unstable_by_key(|(_, e)| e.order_key());
    for (_, event) in ready {
        late.push(PartitionKey::at(event.time, instrument(event.instrument)), event);
    }
    let (mut ready, rest): (Vec<_>, Vec<_>) = waiting.letters.drain(..).partition(|(sent, _)| *sent < watermark);
    waiting.letters = rest;
    ready.sort_by_key(|(sent, l)| (*sent, l.source, l.offset));
    for (sent, letter) in ready {
        letters.push(PartitionKey::at(sent, None), DeadLetterRow { time: sent, letter });
    }
    published.extend(events.write_full_groups(context)?);
    published.extend(late.write_full_groups(context)?);
    published.extend(letters.write_full_groups(context)?);
    let today = if watermark == u64::MAX { i64::MAX } else { day_of(watermark) };
    published.extend(events.close_days_before(today, context)?);
    published.extend(late.close_days_before(today, context)?);
    published.extend(letters.close_days_before(today, context)?);
    Ok(())
}
