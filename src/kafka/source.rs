//! The partitions of the input topic as sources of events.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use surveil_operators::{Partition, PartitionRead, SourceWaker};

use super::avro::{DecodeError, Schemas};
use super::sink::{AlertPublisher, DeadLetterPublisher, Transactions};
use super::{KafkaError, client_config, partition_count, source_name};
use crate::config::{Config, KafkaConfig, KafkaFormat};
use crate::ingest::partition::PartitionProgress;
use crate::ingest::{DeadLetter, Line, LineParser, ParseContext, ReadProgress};
use crate::model::{Event, IdMap, Origin, RejectReason, Report, Symbol};
use crate::reference::ReferenceData;

/// Granularity of the commit bookkeeping: one entry per partition per this much event time,
/// so a day of replay horizon costs at most 86,400 entries per partition.
const COMMIT_GRANULE_NS: u64 = 1_000_000_000;

/// How long a commit during the run waits for the producers' deliveries.
const COMMIT_FLUSH_WAIT: Duration = Duration::from_secs(2);

/// The input topic of a run: its settings, its partitions' input numbers, the publishers whose
/// deliveries gate the commits, and every partition's consumer (for the commit at the end).
pub struct KafkaSource {
    settings: KafkaConfig,
    topic: String,
    partitions: usize,
    /// The input number of partition 0; partition `p` is input `first_source + p`.
    first_source: u32,
    /// The topics the run publishes to: positions are committed during the run as far as
    /// all of them have delivered.
    gates: Vec<Arc<AlertPublisher>>,
    dead_letters: Option<Arc<DeadLetterPublisher>>,
    /// The transactions the outputs and the positions are committed in
    /// (`kafka.transactional_id`).
    transactions: Option<Arc<Transactions>>,
    /// Every partition's consumer, opened when connecting and taken by the worker that reads it.
    unclaimed: Mutex<Vec<Option<Opened>>>,
    /// The partitions taken so far, for the commit at the end.
    opened: Arc<Mutex<Vec<Arc<Shared>>>>,
    /// A consumer that follows the ownership topic from where the start of the run read it
    /// to (live runs with `kafka.reference.ownership`), taken by worker 0's feed.
    ownership: Mutex<Option<BaseConsumer>>,
    follows_ownership: bool,
    /// A consumer that follows the instruments and accounts topics the same way.
    reference: Mutex<Option<BaseConsumer>>,
    follows_reference: bool,
    /// The writer schemas of Avro messages (`format = "avro"`).
    schemas: Option<Arc<Schemas>>,
    /// What stopped a partition mid-run (a schema registry out of reach): the run fails with
    /// it and commits nothing past the message it could not read.
    failure: Arc<Mutex<Option<KafkaError>>>,
}

impl KafkaSource {
    /// Connects to the brokers, reads the topic's partition count and assigns a consumer to
    /// every partition from the group's committed position: an error, not a hang, when the
    /// brokers do not answer within `kafka.timeout`, before any worker starts. The topic's
    /// partitions become inputs `first_source`, `first_source + 1`, …
    pub fn connect(settings: &KafkaConfig, first_source: u32) -> Result<KafkaSource, KafkaError> {
        let topic = settings
            .topic
            .clone()
            .ok_or_else(|| KafkaError::Config("kafka.topic is not set: which topic should be read?".into()))?;
        let partitions = partition_count(settings, &topic)?;
        let transactions = match settings.transactional_id {
            Some(_) => Some(Transactions::begin(settings)?),
            None => None,
        };
        let dead_letters = match &settings.dead_letter_topic {
            Some(topic) => Some(Arc::new(DeadLetterPublisher::new(settings, topic, transactions.as_ref())?)),
            None => None,
        };
        let schemas = match settings.format {
            KafkaFormat::Avro => Some(Arc::new(Schemas::new(&settings.avro, settings.timeout)?)),
            KafkaFormat::Jsonl | KafkaFormat::Fix => None,
        };
        let mut source = KafkaSource {
            settings: settings.clone(),
            topic,
            partitions,
            first_source,
            gates: Vec::new(),
            dead_letters,
            transactions,
            unclaimed: Mutex::default(),
            opened: Arc::default(),
            ownership: Mutex::default(),
            follows_ownership: false,
            reference: Mutex::default(),
            follows_reference: false,
            schemas,
            failure: Arc::default(),
        };
        // Each consumer finds the group's coordinator and the partition's leader: up to about
        // a second per partition, spent at once for all of them.
        let opened: Vec<Result<Opened, KafkaError>> = std::thread::scope(|scope| {
            let source = &source;
            let opening: Vec<_> = (0..partitions).map(|p| scope.spawn(move || source.open(p as i32))).collect();
            opening
                .into_iter()
                .map(|handle| {
                    handle.join().unwrap_or_else(|_| Err(KafkaError::Config("opening a partition failed".into())))
                })
                .collect()
        });
        source.unclaimed = Mutex::new(opened.into_iter().map(|o| o.map(Some)).collect::<Result<_, _>>()?);
        Ok(source)
    }

    /// A live run (not `stop_at_end`) with `kafka.reference.ownership` follows that topic from
    /// `ends` (where the start of the run read it to, partition by partition): the changes
    /// published meanwhile reach the linked accounts while the run goes on
    /// ([`KafkaSource::ownership_feed`]).
    pub fn follow_ownership(&mut self, ends: &[(i32, i64)]) -> Result<(), KafkaError> {
        let Some(topic) = self.settings.reference.ownership.clone() else { return Ok(()) };
        if self.settings.stop_at_end {
            return Ok(());
        }
        let consumer = self.follower(&[(topic.clone(), ends)], &topic)?;
        if let Ok(mut slot) = self.ownership.lock() {
            *slot = Some(consumer);
        }
        self.follows_ownership = true;
        Ok(())
    }

    /// A consumer of `topics`, each partition assigned at its end offset (`(partition, end)`),
    /// named `what` in errors.
    fn follower(&self, topics: &[(String, &[(i32, i64)])], what: &str) -> Result<BaseConsumer, KafkaError> {
        let mut config = client_config(&self.settings);
        config.set("group.id", &self.settings.group).set("enable.auto.commit", "false");
        let consumer: BaseConsumer = config.create().map_err(|e| KafkaError::Config(e.to_string()))?;
        let mut list = TopicPartitionList::new();
        for (topic, ends) in topics {
            for &(partition, end) in *ends {
                list.add_partition_offset(topic, partition, Offset::Offset(end))
                    .map_err(|e| KafkaError::Config(e.to_string()))?;
            }
        }
        consumer.assign(&list).map_err(|e| KafkaError::Broker {
            brokers: self.settings.brokers.clone(),
            message: format!("following {what}: {e}"),
        })?;
        Ok(consumer)
    }

    /// A live run (not `stop_at_end`) with `kafka.reference.instruments` or `accounts` follows
    /// those topics from where the start of the run read them to (`instruments` and
    /// `accounts`: the end of each partition then): the changes published meanwhile reach the
    /// reference data while the run goes on ([`KafkaSource::reference_feed`]).
    pub fn follow_reference(&mut self, instruments: &[(i32, i64)], accounts: &[(i32, i64)]) -> Result<(), KafkaError> {
        let topics = &self.settings.reference;
        let followed: Vec<(String, &[(i32, i64)])> = [(&topics.instruments, instruments), (&topics.accounts, accounts)]
            .into_iter()
            .filter_map(|(topic, ends)| topic.clone().map(|t| (t, ends)))
            .collect();
        if followed.is_empty() || self.settings.stop_at_end {
            return Ok(());
        }
        let consumer = self.follower(&followed, "the reference topics")?;
        if let Ok(mut slot) = self.reference.lock() {
            *slot = Some(consumer);
        }
        self.follows_reference = true;
        Ok(())
    }

    /// Worker `worker`'s part of the live instruments and accounts feed, when the run follows
    /// those topics: worker 0 polls them. A change applies from its own time, or from the
    /// latest event time read from the input topic when it came, whichever is later
    /// ([`ReferenceData::read_live`] says what a live change may not do). A message that is
    /// not CSV of its kind stops the run, which fails naming it (as at the start).
    pub fn reference_feed(
        &self,
        worker: usize,
        reference: &ReferenceData,
        stop: Option<Arc<std::sync::atomic::AtomicBool>>,
    ) -> Option<crate::live_reference::LiveReference> {
        if !self.follows_reference {
            return None;
        }
        let consumer = if worker == 0 { self.reference.lock().ok().and_then(|mut c| c.take()) } else { None };
        let Some(consumer) = consumer else { return Some(crate::live_reference::LiveReference { feed: None }) };
        let (opened, failure) = (self.opened.clone(), self.failure.clone());
        let topics = self.settings.reference.clone();
        // The feed's own copy: each message's rows start from what came before them.
        let mut known = reference.clone();
        let mut next_id = 0;
        let mut failed = false;
        let feed = move || {
            let ahead = read_ahead(&opened);
            let mut items = Vec::new();
            while !failed && let Some(result) = consumer.poll(Duration::ZERO) {
                let message = match result {
                    Ok(message) => message,
                    Err(error) => {
                        tracing::warn!(%error, "kafka consumer of the reference topics");
                        break;
                    }
                };
                let topic = message.topic().to_owned();
                let kind = match topics.instruments.as_deref() == Some(topic.as_str()) {
                    true => crate::reference::LiveKind::Instruments,
                    false => crate::reference::LiveKind::Accounts,
                };
                let origin =
                    std::path::PathBuf::from(format!("kafka:{topic}/{}@{}", message.partition(), message.offset()));
                let mut owned = Vec::new();
                let payload = message.payload().unwrap_or_default();
                match known.read_live(kind, payload, &origin, ahead, &mut next_id, &mut owned) {
                    Ok(changes) => items.extend(crate::live_reference::LiveItem::all(&known, changes, owned)),
                    Err(error) => {
                        let what =
                            if kind == crate::reference::LiveKind::Instruments { "instruments" } else { "accounts" };
                        stop_on_bad_change(&failure, stop.as_deref(), &topic, what, &error);
                        failed = true;
                    }
                }
            }
            if !items.is_empty() {
                tracing::info!(changes = items.len(), from = ahead, "kafka: reference changes applied while running");
            }
            surveil_operators::Feed { items, ahead }
        };
        Some(crate::live_reference::LiveReference { feed: Some(Box::new(feed)) })
    }

    /// Worker `worker`'s part of the live ownership feed, when the run follows the ownership
    /// topic: worker 0 polls it. A change applies from its own time, or from the latest event
    /// time read from the input topic when it came, whichever is later (events read before
    /// the change do not see it). A message that is not ownership CSV stops the run, which
    /// fails naming it (as at the start).
    pub fn ownership_feed(
        &self,
        worker: usize,
        stop: Option<Arc<std::sync::atomic::AtomicBool>>,
    ) -> Option<crate::links::LiveOwnership> {
        if !self.follows_ownership {
            return None;
        }
        let consumer = if worker == 0 { self.ownership.lock().ok().and_then(|mut c| c.take()) } else { None };
        let Some(consumer) = consumer else { return Some(crate::links::LiveOwnership { feed: None }) };
        let (opened, failure) = (self.opened.clone(), self.failure.clone());
        let topic = self.settings.reference.ownership.clone().unwrap_or_default();
        let mut failed = false;
        let feed = move || {
            let ahead = read_ahead(&opened);
            let mut items = Vec::new();
            while !failed && let Some(result) = consumer.poll(Duration::ZERO) {
                let message = match result {
                    Ok(message) => message,
                    Err(error) => {
                        tracing::warn!(%error, topic, "kafka consumer of the ownership topic");
                        break;
                    }
                };
                let origin =
                    std::path::PathBuf::from(format!("kafka:{topic}/{}@{}", message.partition(), message.offset()));
                let mut changes = ReferenceData::new(0);
                match changes.read_ownership(message.payload().unwrap_or_default(), &origin) {
                    Ok(()) => items.extend(changes.ownership().into_iter().map(|change| (change, change.time))),
                    Err(error) => {
                        stop_on_bad_change(&failure, stop.as_deref(), &topic, "ownership", &error);
                        failed = true;
                    }
                }
            }
            if !items.is_empty() {
                tracing::info!(
                    topic,
                    changes = items.len(),
                    from = ahead,
                    "kafka: ownership changes applied while running"
                );
            }
            surveil_operators::Feed { items, ahead }
        };
        Some(crate::links::LiveOwnership { feed: Some(Box::new(feed)) })
    }

    /// Commits during the run wait for `publisher` to deliver what it was given up to the
    /// positions committed. Without any, positions are committed at the end of the run only.
    pub fn gate_commits_on(&mut self, publisher: Arc<AlertPublisher>) {
        self.gates.push(publisher);
    }

    /// The transactions the run's outputs and positions are committed in, with
    /// `kafka.transactional_id`: every publisher of the run sends in them.
    pub fn transactions(&self) -> Option<&Arc<Transactions>> {
        self.transactions.as_ref()
    }

    /// Waits until every refused message is on the dead-letter topic, if there is one.
    pub fn flush_dead_letters(&self) -> Result<(), KafkaError> {
        match &self.dead_letters {
            Some(letters) => letters.flush(self.settings.timeout),
            None => Ok(()),
        }
    }

    /// What the dead-letter topic acknowledged, when there is one.
    pub fn dead_letter_counts(&self) -> Option<crate::output::PublishCounts> {
        self.dead_letters.as_ref().map(|letters| letters.counts())
    }

    /// The topic read.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The number of partitions (inputs) of the topic.
    pub fn partition_count(&self) -> usize {
        self.partitions
    }

    /// The names of the inputs, partition by partition.
    pub fn source_names(&self) -> Vec<String> {
        (0..self.partitions).map(|p| source_name(&self.topic, p)).collect()
    }

    /// The partitions worker `worker` of `peers` reads (`p mod peers == worker`), each with a
    /// consumer assigned to it from its committed position (or the start of the partition).
    /// `stop` is raised when a record cannot be delivered to an output topic.
    pub fn partitions(
        &self,
        worker: usize,
        peers: usize,
        config: &Config,
        reference: &Arc<ReferenceData>,
        progress: &Arc<ReadProgress>,
        stop: Option<Arc<std::sync::atomic::AtomicBool>>,
    ) -> Result<Vec<KafkaPartition>, KafkaError> {
        let mut mine = Vec::new();
        for partition in (0..self.partitions).filter(|p| p % peers.max(1) == worker) {
            let taken = self.unclaimed.lock().ok().and_then(|mut all| all.get_mut(partition).and_then(Option::take));
            let Some(opened) = taken else {
                return Err(KafkaError::Config(format!("partition {partition} of {} is read already", self.topic)));
            };
            if let Ok(mut all) = self.opened.lock() {
                all.push(opened.shared.clone());
            }
            let source = self.first_source + partition as u32;
            let mut tracked = progress.track(source, 0);
            let (mut next, mut max_time) = (opened.start, Some(0));
            if let Some(point) = progress.resume_point(source, 0) {
                // Resumed from a checkpoint: read again from its position, whatever the group
                // has committed since (commits never move back, so the group keeps its own).
                let offset = i64::try_from(point.offset).unwrap_or(i64::MAX);
                let mut assignment = TopicPartitionList::new();
                assignment
                    .add_partition_offset(&self.topic, partition as i32, Offset::Offset(offset))
                    .and_then(|()| opened.shared.consumer.assign(&assignment))
                    .map_err(|e| KafkaError::Broker {
                        brokers: self.settings.brokers.clone(),
                        message: format!("resuming {}/{partition} at {offset}: {e}", self.topic),
                    })?;
                tracing::info!(topic = %self.topic, partition, offset, "kafka partition resumed from the checkpoint");
                tracked.resume(&point);
                (next, max_time) = (offset, point.max_time);
            }
            // Where a resumed run could start before anything is read: every event this run
            // reads comes after it.
            tracked.sample(u64::try_from(next).unwrap_or(0), max_time);
            let parser: Box<dyn LineParser> = match self.settings.format {
                KafkaFormat::Jsonl | KafkaFormat::Avro => Box::new(crate::ingest::jsonl::JsonlParser::new()),
                KafkaFormat::Fix => Box::new(crate::ingest::fix::FixParser::new(&config.ingest.fix)),
            };
            mine.push(KafkaPartition {
                shared: opened.shared,
                end: opened.end,
                next,
                max_time,
                sampled_at: next,
                source,
                parser,
                reference: reference.clone(),
                announced: IdMap::default(),
                buffered: VecDeque::new(),
                side: Vec::new(),
                progress: tracked,
                bytes: 0,
                gates: self.gates.clone(),
                dead_letters: self.dead_letters.clone(),
                transactions: self.transactions.clone(),
                opened: self.opened.clone(),
                horizon: self.settings.replay_horizon.as_nanos().min(u64::MAX as u128) as u64,
                commit_interval: self.settings.commit_interval,
                last_commit: Instant::now(),
                stop_at_end: self.settings.stop_at_end,
                eof: false,
                stop: stop.clone(),
                timeout: self.settings.timeout,
                schemas: self.schemas.clone(),
                decoded: Vec::new(),
                failure: self.failure.clone(),
                halted: false,
            });
        }
        Ok(mine)
    }

    fn open(&self, partition: i32) -> Result<Opened, KafkaError> {
        let settings = &self.settings;
        let mut config = client_config(settings);
        // Each partition has a consumer of its own: keep its read-ahead modest (librdkafka's
        // default is 64 MB per consumer), unless the properties say otherwise.
        for (key, value) in [("queued.max.messages.kbytes", "8192"), ("enable.partition.eof", "true")] {
            if !settings.properties.contains_key(key) {
                config.set(key, value);
            }
        }
        config
            .set("group.id", &settings.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest");
        let mut consumer: BaseConsumer = config.create().map_err(|e| KafkaError::Config(e.to_string()))?;
        // A message arriving while the source sleeps wakes it (librdkafka calls back from its
        // own thread when the queue stops being empty) instead of waiting for its next poll.
        let waker: Arc<OnceLock<SourceWaker>> = Arc::new(OnceLock::new());
        let wakes = waker.clone();
        consumer.set_nonempty_callback(move || {
            if let Some(waker) = wakes.get() {
                waker.wake();
            }
        });
        let broker = |what: &str, e: rdkafka::error::KafkaError| KafkaError::Broker {
            brokers: settings.brokers.clone(),
            message: format!("{what} of {}/{partition}: {e}", self.topic),
        };
        let (low, high) =
            consumer.fetch_watermarks(&self.topic, partition, settings.timeout).map_err(|e| broker("offsets", e))?;
        let mut wanted = TopicPartitionList::new();
        wanted.add_partition(&self.topic, partition);
        let committed =
            consumer.committed_offsets(wanted, settings.timeout).map_err(|e| broker("committed offset", e))?;
        let start = match committed.find_partition(&self.topic, partition).map(|e| e.offset()) {
            Some(Offset::Offset(offset)) if offset > high => {
                // The topic was emptied or made again since: its committed position means nothing.
                tracing::warn!(topic = %self.topic, partition, committed = offset, end = high, "kafka: the committed position is past the partition's end; reading from its start");
                low
            }
            Some(Offset::Offset(offset)) if offset >= low => offset,
            _ => low,
        };
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(&self.topic, partition, Offset::Offset(start))
            .map_err(|e| broker("assignment", e))?;
        consumer.assign(&assignment).map_err(|e| broker("assignment", e))?;
        tracing::info!(topic = %self.topic, partition, start, end = high, "kafka partition assigned");
        let shared = Arc::new(Shared {
            consumer,
            waker,
            topic: self.topic.clone(),
            partition,
            commits: Mutex::new(Commits { entries: VecDeque::new(), committed: start, read_to: start, latest: 0 }),
        });
        Ok(Opened { shared, start, end: settings.stop_at_end.then_some(high) })
    }

    /// Commits, for every partition, the position after the last message read: called once
    /// the run's outputs are complete. A run that did not read to the end keeps the replay
    /// horizon behind the latest event time it read, so that a restart rebuilds the state.
    pub fn commit_final(&self, complete: bool) -> Result<(), KafkaError> {
        // Nothing is committed before every refused message is on the dead-letter topic.
        if let Some(letters) = &self.dead_letters {
            letters.flush(self.settings.timeout)?;
        }
        let failure = self.failure.lock().ok().and_then(|mut f| f.take());
        if failure.is_some() {
            // The partitions that went on are committed as a stopped run's are (the one that
            // halted never noted the message it could not read); then the run fails.
            self.commit_all(false)?;
        }
        match failure {
            Some(failure) => Err(failure),
            None => self.commit_all(complete),
        }
    }

    fn commit_all(&self, complete: bool) -> Result<(), KafkaError> {
        let horizon = self.settings.replay_horizon.as_nanos().min(u64::MAX as u128) as u64;
        if let Some(transactions) = &self.transactions {
            // The last transaction: what was published, with the positions.
            let cutoff = |commits: &Commits| match complete {
                true => u64::MAX,
                false => commits.latest.saturating_sub(horizon),
            };
            return commit_in_transaction(transactions, &self.opened, cutoff, true);
        }
        let Ok(opened) = self.opened.lock() else { return Ok(()) };
        for shared in opened.iter() {
            let cutoff = match complete {
                true => u64::MAX,
                false => shared.latest().saturating_sub(horizon),
            };
            shared.commit_before(cutoff)?;
        }
        Ok(())
    }
}

/// Commits, in the run's open transaction, what was published so far with every partition's
/// position before its `cutoff`; the next transaction begins unless this is the `last`.
fn commit_in_transaction(
    transactions: &Transactions,
    opened: &Mutex<Vec<Arc<Shared>>>,
    cutoff: impl Fn(&Commits) -> u64,
    last: bool,
) -> Result<(), KafkaError> {
    let all: Vec<Arc<Shared>> = opened.lock().map(|o| o.clone()).unwrap_or_default();
    // Without a partition taken there is no position, but what was published still commits.
    let group = all.first().and_then(|first| first.consumer.group_metadata());
    let positions = || {
        let mut list = TopicPartitionList::new();
        for shared in &all {
            let Ok(commits) = shared.commits.lock() else { continue };
            let position = commits.position_before(cutoff(&commits));
            if position > commits.committed {
                list.add_partition_offset(&shared.topic, shared.partition, Offset::Offset(position)).map_err(|e| {
                    KafkaError::Transaction { id: transactions.id().into(), message: format!("positions: {e}") }
                })?;
            }
        }
        Ok(list)
    };
    let committed = |list: &TopicPartitionList| {
        for shared in &all {
            if let Some(Offset::Offset(position)) =
                list.find_partition(&shared.topic, shared.partition).map(|e| e.offset())
                && let Ok(mut commits) = shared.commits.lock()
                && position > commits.committed
            {
                commits.committed_to(position);
            }
        }
    };
    transactions.commit(group.as_ref(), last, positions, committed)
}

/// How far the input topic has been read, plus one: a live change polled from now on applies
/// no earlier.
fn read_ahead(opened: &Mutex<Vec<Arc<Shared>>>) -> u64 {
    let latest = opened.lock().map(|all| all.iter().map(|s| s.latest()).max().unwrap_or(0)).unwrap_or(0);
    latest.saturating_add(1)
}

/// A live reference change (of `what`, read from `topic`) that cannot be read stops the run,
/// which fails naming it, as a bad message does at the start.
fn stop_on_bad_change(
    failure: &Mutex<Option<KafkaError>>,
    stop: Option<&std::sync::atomic::AtomicBool>,
    topic: &str,
    what: &str,
    error: &crate::reference::ReferenceError,
) {
    tracing::error!(%error, topic, what, "kafka: a live reference change cannot be read; the run stops");
    if let Ok(mut slot) = failure.lock() {
        slot.get_or_insert(KafkaError::Topic { topic: topic.into(), message: format!("{what}: {error}") });
    }
    if let Some(stop) = stop {
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

struct Opened {
    shared: Arc<Shared>,
    start: i64,
    end: Option<i64>,
}

/// What a partition shares with the source: its consumer and commit bookkeeping.
struct Shared {
    consumer: BaseConsumer,
    /// Set when the partition's source is built: woken when messages arrive.
    waker: Arc<OnceLock<SourceWaker>>,
    topic: String,
    partition: i32,
    commits: Mutex<Commits>,
}

/// Which positions can be committed once event time has been processed up to a cutoff.
struct Commits {
    /// `(offset, time)`: the message at `offset` is the first whose event time reached `time`,
    /// and the messages from it up to the next entry are all earlier than `time` plus one
    /// granule. Entries are at least a granule apart.
    entries: VecDeque<(i64, u64)>,
    /// The position committed last.
    committed: i64,
    /// The offset after the last message read.
    read_to: i64,
    /// The latest event time read.
    latest: u64,
}

impl Commits {
    fn note(&mut self, offset: i64, time: u64) {
        if self.entries.back().is_none_or(|&(_, last)| time >= last.saturating_add(COMMIT_GRANULE_NS)) {
            self.entries.push_back((offset, time.max(self.latest)));
        }
        self.latest = self.latest.max(time);
        self.read_to = offset + 1;
    }

    /// The position before which every message read has only events earlier than `cutoff`.
    fn position_before(&self, cutoff: u64) -> i64 {
        let mut position = self.committed;
        for (index, &(offset, time)) in self.entries.iter().enumerate() {
            if time.saturating_add(COMMIT_GRANULE_NS) > cutoff {
                // Messages from this entry on may hold events at or after the cutoff.
                return position.max(offset).max(self.committed);
            }
            // Every message up to the next entry (or all read) is earlier than the cutoff.
            position = self.entries.get(index + 1).map_or(self.read_to, |&(next, _)| next);
        }
        position.max(self.committed)
    }

    /// `position` is committed: forget the entries wholly before it.
    fn committed_to(&mut self, position: i64) {
        self.committed = position;
        while let Some(&(_, _)) = self.entries.front() {
            let end = self.entries.get(1).map_or(self.read_to, |&(next, _)| next);
            if end > position {
                break;
            }
            self.entries.pop_front();
        }
    }
}

/// [`Commits::position_before`] over messages with these event times, from offset 0.
#[cfg(test)]
pub(super) fn position_before_for_tests(times: &[u64], cutoff: u64) -> i64 {
    let mut commits = Commits { entries: VecDeque::new(), committed: 0, read_to: 0, latest: 0 };
    for (offset, &time) in times.iter().enumerate() {
        commits.note(offset as i64, time);
    }
    let position = commits.position_before(cutoff);
    // Forgetting what is committed changes nothing of what comes after.
    commits.committed_to(position);
    assert_eq!(commits.position_before(cutoff), position);
    position
}

impl Shared {
    fn latest(&self) -> u64 {
        self.commits.lock().map(|c| c.latest).unwrap_or(0)
    }

    fn can_commit_before(&self, cutoff: u64) -> bool {
        self.commits.lock().is_ok_and(|c| c.position_before(cutoff) > c.committed)
    }

    fn commit_before(&self, cutoff: u64) -> Result<(), KafkaError> {
        let Ok(mut commits) = self.commits.lock() else { return Ok(()) };
        let position = commits.position_before(cutoff);
        if position <= commits.committed {
            return Ok(());
        }
        let mut list = TopicPartitionList::new();
        let broker = |e: rdkafka::error::KafkaError| KafkaError::Broker {
            brokers: String::new(),
            message: format!("commit of {}/{}: {e}", self.topic, self.partition),
        };
        list.add_partition_offset(&self.topic, self.partition, Offset::Offset(position)).map_err(broker)?;
        self.consumer.commit(&list, CommitMode::Sync).map_err(broker)?;
        tracing::debug!(topic = %self.topic, partition = self.partition, position, "kafka position committed");
        commits.committed_to(position);
        Ok(())
    }
}

/// One partition of the input topic, read by one worker.
pub struct KafkaPartition {
    shared: Arc<Shared>,
    /// With `stop_at_end`, the offset the partition is read up to (its end when the run
    /// started).
    end: Option<i64>,
    /// The offset of the next message.
    next: i64,
    /// The latest event time handed out, and the offset last sampled as a resume point.
    max_time: Option<u64>,
    sampled_at: i64,
    source: u32,
    parser: Box<dyn LineParser>,
    reference: Arc<ReferenceData>,
    announced: IdMap<Symbol, ()>,
    /// Events read ahead (by [`Partition::first_time`]) and not yet handed out.
    buffered: VecDeque<Event>,
    side: Vec<Report>,
    progress: PartitionProgress,
    /// Payload bytes read (the progress and the summary count bytes).
    bytes: u64,
    gates: Vec<Arc<AlertPublisher>>,
    dead_letters: Option<Arc<DeadLetterPublisher>>,
    /// With `kafka.transactional_id`: positions are committed in transactions, every
    /// partition's at once.
    transactions: Option<Arc<Transactions>>,
    opened: Arc<Mutex<Vec<Arc<Shared>>>>,
    horizon: u64,
    commit_interval: Duration,
    last_commit: Instant,
    stop_at_end: bool,
    /// The consumer reported the end of the partition (with `stop_at_end`).
    eof: bool,
    /// Raised when a record could not be delivered: the run stops.
    stop: Option<Arc<std::sync::atomic::AtomicBool>>,
    timeout: Duration,
    /// The writer schemas, for Avro messages; `decoded` holds a message's JSON.
    schemas: Option<Arc<Schemas>>,
    decoded: Vec<u8>,
    failure: Arc<Mutex<Option<KafkaError>>>,
    /// A message could not be read for a reason not its own: nothing more is read.
    halted: bool,
}

impl KafkaPartition {
    fn at_end(&self) -> bool {
        self.eof || self.end.is_some_and(|end| self.next >= end)
    }

    /// Polls one message (waiting up to `wait`) and parses it into `buffered` and `side`.
    /// Returns whether a message came.
    fn poll_one(&mut self, wait: Duration) -> bool {
        if self.halted {
            return false;
        }
        let Some(result) = self.shared.consumer.poll(wait) else { return false };
        let message = match result {
            Ok(message) => message,
            Err(rdkafka::error::KafkaError::PartitionEOF(_)) => {
                // Read to the partition's end as it is now: a replay to the end is done even
                // when the end offset is past the last message (transaction markers, a
                // compacted tail), which `next` would never reach.
                if self.stop_at_end {
                    self.eof = true;
                }
                return false;
            }
            Err(error) => {
                // Transport errors and broker restarts: librdkafka reconnects by itself.
                tracing::warn!(topic = %self.shared.topic, partition = self.shared.partition, %error, "kafka consumer");
                return false;
            }
        };
        let offset = message.offset();
        if offset < self.next {
            // Already read (a fetch repeated after a reconnection).
            return true;
        }
        let payload = message.payload().unwrap_or_default();
        let mut decoded = std::mem::take(&mut self.decoded);
        let text = match &self.schemas {
            None => Ok(payload),
            Some(schemas) => match schemas.decode(payload, &mut decoded) {
                Ok(()) => Ok(&decoded[..]),
                Err(DecodeError::Rejected(rejection)) => Err(rejection),
                Err(DecodeError::Unavailable(error)) => {
                    // Not the message's fault: read nothing more, commit nothing past it, and
                    // stop the run, which fails saying why.
                    tracing::error!(topic = %self.shared.topic, partition = self.shared.partition, offset, %error, "kafka: a message cannot be decoded; the run stops");
                    self.halted = true;
                    if let Ok(mut failure) = self.failure.lock() {
                        failure.get_or_insert(error);
                    }
                    if let Some(stop) = &self.stop {
                        stop.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    self.decoded = decoded;
                    return false;
                }
            },
        };
        self.next = offset + 1;
        self.bytes += payload.len() as u64;
        let mut events = Vec::new();
        let origin = Origin::new(self.source, offset as u64);
        let parsed = text.and_then(|text| {
            let line = Line { bytes: text, origin, companion: None };
            let mut context = ParseContext::new(&self.reference, &mut self.side, &mut self.announced);
            context.parse(self.parser.as_mut(), &line, &mut events)
        });
        match parsed {
            Ok(()) => {
                // Owners, desks and traders from the reference data, as a file's events get them.
                for event in &mut events {
                    let missing = self.reference.enrich(event);
                    self.progress.incomplete(missing);
                }
                if let Ok(mut commits) = self.shared.commits.lock() {
                    let time = events.iter().map(|e| e.time).max().unwrap_or(0);
                    commits.note(offset, time);
                }
                self.buffered.extend(events);
            }
            Err(rejection) => {
                if let Ok(mut commits) = self.shared.commits.lock() {
                    let latest = commits.latest;
                    commits.note(offset, latest);
                }
                if let Some(publisher) = &self.dead_letters {
                    publisher.publish(&self.shared.topic, self.shared.partition, offset, payload, &rejection);
                }
                let raw = match &self.schemas {
                    // What the parser saw, when the message decoded; else its bytes in hex.
                    Some(_) if matches!(rejection.reason, RejectReason::BadAvro | RejectReason::UnknownSchema) => {
                        hex(payload)
                    }
                    Some(_) => String::from_utf8_lossy(&decoded).into_owned(),
                    None => String::from_utf8_lossy(payload).into_owned(),
                };
                self.side.push(Report::DeadLetter(Box::new(DeadLetter {
                    source: self.source,
                    line: None,
                    offset: offset as u64,
                    raw,
                    reason: rejection.reason,
                    detail: rejection.detail,
                    event: None,
                })));
            }
        }
        self.decoded = decoded;
        true
    }

    fn commit_processed(&mut self, watermark: u64) {
        // Without a durable sink, positions are committed only at the end of the run, when
        // the output files are complete.
        if self.gates.is_empty() || self.last_commit.elapsed() < self.commit_interval {
            return;
        }
        self.last_commit = Instant::now();
        let written = self.gates.iter().map(|g| g.written_through()).min().unwrap_or(0);
        let cutoff = watermark.min(written).saturating_sub(self.horizon);
        // Flushing waits for the producers: only when there is something to commit.
        if !self.shared.can_commit_before(cutoff) {
            return;
        }
        // A record the producer gave up on (after librdkafka's own retries) is lost to its
        // topic: commit nothing more, and stop the run, which then fails saying so.
        let failed = self.gates.iter().any(|g| g.counts().failed > 0)
            || self.dead_letters.as_ref().is_some_and(|l| l.counts().failed > 0);
        if failed {
            tracing::error!(topic = %self.shared.topic, "kafka: records could not be delivered; the run stops");
            if let Some(stop) = &self.stop {
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            return;
        }
        // Wait a little for what is in flight; a broker that is slow now is asked again at the
        // next interval rather than holding up the worker.
        let wait = self.timeout.min(COMMIT_FLUSH_WAIT);
        for gate in &self.gates {
            if let Err(error) = gate.flush(wait) {
                tracing::warn!(%error, "kafka alerts not yet delivered; positions not committed");
                return;
            }
        }
        if let Some(letters) = &self.dead_letters
            && let Err(error) = letters.flush(wait)
        {
            tracing::warn!(%error, "kafka dead letters not yet delivered; positions not committed");
            return;
        }
        if let Some(transactions) = &self.transactions {
            if let Err(error) = commit_in_transaction(transactions, &self.opened, |_| cutoff, false) {
                // What the transaction held is aborted: stop, and fail saying why; a restart
                // reads again from the positions committed last.
                tracing::error!(%error, "kafka transaction failed; the run stops");
                if let Ok(mut failure) = self.failure.lock() {
                    failure.get_or_insert(error);
                }
                if let Some(stop) = &self.stop {
                    stop.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            }
        } else if let Err(error) = self.shared.commit_before(cutoff) {
            tracing::warn!(%error, "kafka commit failed; retried at the next interval");
        }
    }
}

/// Bytes as `0x` and their hex digits: a binary message in a text field.
fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut text = String::with_capacity(2 + 2 * bytes.len());
    text.push_str("0x");
    for byte in bytes {
        let _ = write!(text, "{byte:02x}");
    }
    text
}

impl Partition for KafkaPartition {
    type Record = Event;
    type Side = Report;

    fn time(record: &Event) -> u64 {
        record.time
    }

    fn first_time(&mut self) -> Option<u64> {
        if self.at_end() {
            return None;
        }
        // Wait for the first event: a run that stops at the end knows one is coming; a live
        // run waits a little and otherwise starts from the earliest time.
        let patience = if self.stop_at_end { self.timeout } else { Duration::from_millis(200) };
        let started = Instant::now();
        while self.buffered.is_empty() && !self.at_end() && !self.halted && started.elapsed() < patience {
            self.poll_one(Duration::from_millis(100));
        }
        match self.buffered.front() {
            Some(event) => Some(event.time),
            None if self.at_end() => None,
            None => Some(0),
        }
    }

    fn read(&mut self, max_records: usize, records: &mut Vec<Event>, side: &mut Vec<Report>) -> PartitionRead {
        let before = records.len();
        let mut polled = false;
        while records.len() - before < max_records {
            if let Some(event) = self.buffered.pop_front() {
                records.push(event);
                continue;
            }
            if self.at_end() || !self.poll_one(Duration::ZERO) {
                break;
            }
            polled = true;
        }
        side.append(&mut self.side);
        self.progress.read(&records[before..], self.bytes);
        if let Some(latest) = records[before..].iter().map(|e| e.time).max() {
            self.max_time = Some(self.max_time.map_or(latest, |t| t.max(latest)));
        }
        // A resume point between messages: nothing read ahead is waiting. Every 1,024 messages
        // at most, so that the samples kept between checkpoints stay few.
        if self.buffered.is_empty() && self.next >= self.sampled_at.saturating_add(1024) {
            self.sampled_at = self.next;
            self.progress.sample(u64::try_from(self.next).unwrap_or(0), self.max_time);
        }
        if self.at_end() && self.buffered.is_empty() {
            self.progress.finish();
            return PartitionRead::Exhausted;
        }
        if records.len() > before || polled || !side.is_empty() { PartitionRead::More } else { PartitionRead::Idle }
    }

    fn processed(&mut self, watermark: u64) {
        self.commit_processed(watermark);
    }

    fn set_waker(&mut self, waker: SourceWaker) -> bool {
        // The first source built over the partition keeps it (a partition is read by one).
        let _ = self.shared.waker.set(waker);
        true
    }

    fn bytes_read(&self) -> u64 {
        self.bytes
    }
}
