//! Alerts and dead letters published to topics.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::error::KafkaError as RdKafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;

use super::{KafkaError, QUEUE_FULL_WAIT, client_config};
use crate::config::KafkaConfig;
use crate::ingest::Rejection;
use crate::output::{PublishCounts, Publisher as WriterPublisher};

/// Counts deliveries as the producer's thread learns of them.
#[derive(Default)]
struct Deliveries {
    delivered: AtomicU64,
    failed: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((error, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut last) = self.last_error.lock() {
                    *last = Some(error.to_string());
                }
            }
        }
    }
}

/// An idempotent producer to one topic (acks from every in-sync replica; retries never
/// duplicate or reorder), with its deliveries counted.
struct Publisher {
    producer: ThreadedProducer<Deliveries>,
    topic: String,
}

impl Publisher {
    fn new(settings: &KafkaConfig, topic: &str) -> Result<Publisher, KafkaError> {
        // A topic that does not exist would only show as failed deliveries much later.
        super::partition_count(settings, topic)?;
        let mut config = client_config(settings);
        config.set("enable.idempotence", "true").set("acks", "all").set("linger.ms", "5");
        let producer = config
            .create_with_context::<_, ThreadedProducer<Deliveries>>(Deliveries::default())
            .map_err(|e| KafkaError::Config(e.to_string()))?;
        Ok(Publisher { producer, topic: topic.into() })
    }

    /// Queues one record, waiting while the producer's queue is full.
    fn send(&self, key: &[u8], payload: &[u8], headers: Option<OwnedHeaders>) {
        let mut record = BaseRecord::to(&self.topic).key(key).payload(payload);
        if let Some(headers) = headers {
            record = record.headers(headers);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return,
                Err((RdKafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(QUEUE_FULL_WAIT);
                }
                Err((error, _)) => {
                    let context = self.producer.context();
                    context.failed.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut last) = context.last_error.lock() {
                        *last = Some(error.to_string());
                    }
                    return;
                }
            }
        }
    }

    /// Waits until every record queued so far is delivered or failed.
    fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        let delivery = |message: String| KafkaError::Delivery { topic: self.topic.clone(), message };
        self.producer.flush(timeout).map_err(|e| delivery(format!("{e} (not delivered within {timeout:?})")))?;
        let context = self.producer.context();
        match context.failed.load(Ordering::Relaxed) {
            0 => Ok(()),
            failed => {
                let last = context.last_error.lock().ok().and_then(|l| l.clone()).unwrap_or_default();
                Err(delivery(format!("{failed} records not delivered; the last error: {last}")))
            }
        }
    }

    fn counts(&self) -> PublishCounts {
        let context = self.producer.context();
        PublishCounts {
            delivered: context.delivered.load(Ordering::Relaxed),
            failed: context.failed.load(Ordering::Relaxed),
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
    /// A publisher to `topic`.
    pub fn new(settings: &KafkaConfig, topic: &str) -> Result<AlertPublisher, KafkaError> {
        Ok(AlertPublisher { publisher: Publisher::new(settings, topic)?, written_through: AtomicU64::new(0) })
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
    /// A publisher to `topic`.
    pub fn new(settings: &KafkaConfig, topic: &str) -> Result<DeadLetterPublisher, KafkaError> {
        Ok(DeadLetterPublisher { publisher: Publisher::new(settings, topic)? })
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
