//! Alerts and dead letters published to topics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::KafkaError as RdKafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;

use super::{KafkaError, QUEUE_FULL_WAIT, client_config};
use crate::config::KafkaConfig;
use crate::ingest::Rejection;
use crate::output::{PublishCounts, Publisher as WriterPublisher};

/// One topic's deliveries, counted as the producer's thread learns of them.
#[derive(Default)]
struct TopicCounts {
    delivered: AtomicU64,
    failed: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl TopicCounts {
    fn fail(&self, error: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(error);
        }
    }
}

/// Hands each delivery to the counts of the topic its record was sent to (one producer may
/// serve several topics: a transactional one serves them all).
struct Deliveries;

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = Arc<TopicCounts>;

    fn delivery(&self, result: &DeliveryResult<'_>, counts: Arc<TopicCounts>) {
        match result {
            Ok(_) => {
                counts.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((error, _)) => counts.fail(error.to_string()),
        }
    }
}

/// An idempotent producer (acks from every in-sync replica; retries never duplicate or
/// reorder), with its deliveries counted per topic.
fn producer(
    settings: &KafkaConfig,
    transactional_id: Option<&str>,
) -> Result<ThreadedProducer<Deliveries>, KafkaError> {
    let mut config = client_config(settings);
    config.set("enable.idempotence", "true").set("acks", "all").set("linger.ms", "5");
    if let Some(id) = transactional_id {
        config.set("transactional.id", id);
    }
    config
        .create_with_context::<_, ThreadedProducer<Deliveries>>(Deliveries)
        .map_err(|e| KafkaError::Config(e.to_string()))
}

/// The run's output topics and read positions committed together, in Kafka transactions
/// (`kafka.transactional_id`, KIP-98): one transactional producer publishes the alerts, the
/// routes' notices and the dead letters, and each commit of the read positions ends the
/// transaction that holds what was published before it, in one step. A `read_committed`
/// consumer of the output topics sees nothing of a transaction that did not commit: what a
/// killed run published after its last commit is aborted when the next run with the same id
/// starts (or when the broker's transaction timeout passes), and that run publishes it again
/// from the positions committed.
///
/// A transaction that cannot be committed stops the run, which fails saying why: nothing is
/// retried within the run, since what the aborted transaction held would be lost to the
/// topics.
pub struct Transactions {
    producer: ThreadedProducer<Deliveries>,
    /// Sends share it; a commit holds it alone, so that no record is sent while a transaction
    /// ends and the next begins.
    turn: RwLock<()>,
    id: String,
    brokers: String,
    timeout: Duration,
    /// Why a transaction failed, once one has: nothing more is committed.
    broken: Mutex<Option<String>>,
}

impl Transactions {
    /// Starts the transactional producer of `settings.transactional_id`: fences any earlier
    /// producer of the same id (aborting what it left open) and begins the first transaction.
    /// An error, not a hang, when the brokers do not answer within `kafka.timeout` or do not
    /// support transactions.
    pub fn begin(settings: &KafkaConfig) -> Result<Arc<Transactions>, KafkaError> {
        let id = settings
            .transactional_id
            .clone()
            .ok_or_else(|| KafkaError::Config("kafka.transactional_id is not set".into()))?;
        let producer = producer(settings, Some(&id))?;
        let failed = |what: &str, e: RdKafkaError| KafkaError::Transaction {
            id: id.clone(),
            message: format!("{what} (brokers {}): {e}", settings.brokers),
        };
        producer.init_transactions(settings.timeout).map_err(|e| failed("starting", e))?;
        producer.begin_transaction().map_err(|e| failed("beginning the first transaction", e))?;
        tracing::info!(transactional_id = %id, "kafka transactions started");
        Ok(Arc::new(Transactions {
            producer,
            turn: RwLock::new(()),
            id: id.clone(),
            brokers: settings.brokers.clone(),
            timeout: settings.timeout,
            broken: Mutex::new(None),
        }))
    }

    /// The transactional id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Ends the open transaction: what was published since the last commit, with `positions`
    /// (the offsets of the input topic to commit for `group`), then begins the next unless
    /// this is the `last`. `positions` is computed with the commit's turn held, after every
    /// record sent so far is in the transaction; `committed` is told them once they are.
    pub(super) fn commit(
        &self,
        group: Option<&ConsumerGroupMetadata>,
        last: bool,
        positions: impl FnOnce() -> Result<TopicPartitionList, KafkaError>,
        committed: impl FnOnce(&TopicPartitionList),
    ) -> Result<(), KafkaError> {
        let _turn = self.turn.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(why) = self.broken.lock().ok().and_then(|b| b.clone()) {
            return Err(KafkaError::Transaction { id: self.id.clone(), message: why });
        }
        let offsets = positions()?;
        let ended = (|| {
            if offsets.count() > 0 {
                let Some(group) = group else {
                    return Err("positions to commit, and no consumer group metadata to commit them for".to_string());
                };
                self.producer.send_offsets_to_transaction(&offsets, group, self.timeout).map_err(|e| e.to_string())?;
            }
            self.producer.commit_transaction(self.timeout).map_err(|e| e.to_string())?;
            if !last {
                self.producer.begin_transaction().map_err(|e| e.to_string())?;
            }
            Ok::<(), String>(())
        })();
        match ended {
            Ok(()) => {
                committed(&offsets);
                tracing::debug!(transactional_id = %self.id, partitions = offsets.count(), "kafka transaction committed");
                Ok(())
            }
            Err(error) => {
                let why = format!("committing (brokers {}): {error}", self.brokers);
                if let Ok(mut broken) = self.broken.lock() {
                    broken.get_or_insert(why.clone());
                }
                Err(KafkaError::Transaction { id: self.id.clone(), message: why })
            }
        }
    }
}

/// Where a [`Publisher`] sends: a producer of its own, or the run's transactional one.
enum Sender {
    Own(ThreadedProducer<Deliveries>),
    Transactional(Arc<Transactions>),
}

/// A producer to one topic, with its deliveries counted.
struct Publisher {
    sender: Sender,
    topic: String,
    counts: Arc<TopicCounts>,
}

impl Publisher {
    fn new(
        settings: &KafkaConfig,
        topic: &str,
        transactions: Option<&Arc<Transactions>>,
    ) -> Result<Publisher, KafkaError> {
        // A topic that does not exist would only show as failed deliveries much later.
        super::partition_count(settings, topic)?;
        let sender = match transactions {
            Some(transactions) => Sender::Transactional(transactions.clone()),
            None => Sender::Own(producer(settings, None)?),
        };
        Ok(Publisher { sender, topic: topic.into(), counts: Arc::default() })
    }

    fn producer(&self) -> &ThreadedProducer<Deliveries> {
        match &self.sender {
            Sender::Own(producer) => producer,
            Sender::Transactional(transactions) => &transactions.producer,
        }
    }

    /// Queues one record, waiting while the producer's queue is full.
    fn send(&self, key: &[u8], payload: &[u8], headers: Option<OwnedHeaders>) {
        // In a transaction, between commits.
        let _turn = match &self.sender {
            Sender::Own(_) => None,
            Sender::Transactional(t) => Some(t.turn.read().unwrap_or_else(|poisoned| poisoned.into_inner())),
        };
        let producer = self.producer();
        let mut record = BaseRecord::with_opaque_to(&self.topic, self.counts.clone()).key(key).payload(payload);
        if let Some(headers) = headers {
            record = record.headers(headers);
        }
        loop {
            match producer.send(record) {
                Ok(()) => return,
                Err((RdKafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(QUEUE_FULL_WAIT);
                }
                Err((error, _)) => {
                    self.counts.fail(error.to_string());
                    return;
                }
            }
        }
    }

    /// Waits until every record queued so far is delivered or failed.
    fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        let delivery = |message: String| KafkaError::Delivery { topic: self.topic.clone(), message };
        self.producer().flush(timeout).map_err(|e| delivery(format!("{e} (not delivered within {timeout:?})")))?;
        match self.counts.failed.load(Ordering::Relaxed) {
            0 => Ok(()),
            failed => {
                let last = self.counts.last_error.lock().ok().and_then(|l| l.clone()).unwrap_or_default();
                Err(delivery(format!("{failed} records not delivered; the last error: {last}")))
            }
        }
    }

    fn counts(&self) -> PublishCounts {
        PublishCounts {
            delivered: self.counts.delivered.load(Ordering::Relaxed),
            failed: self.counts.failed.load(Ordering::Relaxed),
        }
    }
}

/// Publishes alerts to `kafka.alerts_topic`, keyed by alert id, as the run writes them: a
/// replayed alert carries the same key, so a compacted topic (or any consumer that keeps the
/// last record per key) holds each alert once.
pub struct AlertPublisher {
    publisher: Publisher,
    /// The watermark the writer has handed every alert before to the producer.
    written_through: AtomicU64,
}

impl AlertPublisher {
    /// A publisher to `topic`, with a producer of its own or in the run's `transactions`.
    pub fn new(
        settings: &KafkaConfig,
        topic: &str,
        transactions: Option<&Arc<Transactions>>,
    ) -> Result<AlertPublisher, KafkaError> {
        Ok(AlertPublisher {
            publisher: Publisher::new(settings, topic, transactions)?,
            written_through: AtomicU64::new(0),
        })
    }

    /// Queues an alert (its JSON, as `alerts.jsonl` holds it) under its id.
    pub fn publish(&self, id: &str, json: &[u8]) {
        self.publisher.send(id.as_bytes(), json, None);
    }

    /// Every alert before `watermark` has been queued.
    pub fn written_through_watermark(&self, watermark: u64) {
        self.written_through.fetch_max(watermark, Ordering::Release);
    }

    /// The watermark every alert before which has been queued.
    pub fn written_through(&self) -> u64 {
        self.written_through.load(Ordering::Acquire)
    }

    /// Waits until every queued alert is delivered; an error if any was not.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.publisher.flush(timeout)
    }

    /// What was delivered.
    pub fn counts(&self) -> PublishCounts {
        self.publisher.counts()
    }
}

impl WriterPublisher for AlertPublisher {
    fn publish(&self, key: &str, record: &[u8]) {
        AlertPublisher::publish(self, key, record);
    }

    fn written_through(&self, watermark: u64) {
        self.written_through_watermark(watermark);
    }

    fn finish(&self, timeout: Duration) -> (PublishCounts, Result<(), String>) {
        let delivered = self.flush(timeout).map_err(|e| e.to_string());
        (self.counts(), delivered)
    }
}

/// Publishes the messages that cannot be read to `kafka.dead_letter_topic`: the message as it
/// came (same key), with the reason, its detail and where it came from in headers
/// (`surveil.reason`, `surveil.detail`, `surveil.topic`, `surveil.partition`, `surveil.offset`).
pub struct DeadLetterPublisher {
    publisher: Publisher,
}

impl DeadLetterPublisher {
    /// A publisher to `topic`, with a producer of its own or in the run's `transactions`.
    pub fn new(
        settings: &KafkaConfig,
        topic: &str,
        transactions: Option<&Arc<Transactions>>,
    ) -> Result<DeadLetterPublisher, KafkaError> {
        Ok(DeadLetterPublisher { publisher: Publisher::new(settings, topic, transactions)? })
    }

    /// Queues one refused message.
    pub fn publish(&self, topic: &str, partition: i32, offset: i64, payload: &[u8], rejection: &Rejection) {
        let (partition_text, offset_text) = (partition.to_string(), offset.to_string());
        let headers = OwnedHeaders::new()
            .insert(Header { key: "surveil.reason", value: Some(rejection.reason.as_str()) })
            .insert(Header { key: "surveil.detail", value: Some(rejection.detail.as_str()) })
            .insert(Header { key: "surveil.topic", value: Some(topic) })
            .insert(Header { key: "surveil.partition", value: Some(partition_text.as_str()) })
            .insert(Header { key: "surveil.offset", value: Some(offset_text.as_str()) });
        let key = format!("{topic}/{partition}/{offset}");
        self.publisher.send(key.as_bytes(), payload, Some(headers));
    }

    /// Waits until every queued letter is delivered; an error if any was not.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.publisher.flush(timeout)
    }

    /// What was delivered.
    pub fn counts(&self) -> PublishCounts {
        self.publisher.counts()
    }
}
