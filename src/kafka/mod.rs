//! Kafka: live events from a topic, alerts and dead letters to topics (`docs/kafka.md`).
//!
//! Each partition of the input topic is an input of its own, read by one worker (partition
//! `p` by worker `p mod workers`) as a [`surveil_operators::Partition`]: the watermark is the
//! least over the partitions of their latest event time minus the out-of-order bound, and an
//! idle partition stops holding it back after `kafka.idle_timeout`. A message is one event
//! (canonical JSON) or one FIX drop-copy message; one that cannot be read is a dead letter,
//! counted in the run's outputs and published to `kafka.dead_letter_topic` with the reason.
//!
//! Alerts go to `kafka.alerts_topic` keyed by their deterministic id, from an idempotent
//! producer. Read positions are committed only for messages whose events are behind both the
//! processed watermark and what the alert and dead-letter producers have delivered, less
//! `kafka.replay_horizon`: a restart re-reads the state the detectors need and publishes the
//! same alerts under the same keys (at-least-once input, exactly-once effect in a compacted
//! topic). With `kafka.transactional_id`, the alerts, notices and dead letters and the
//! positions go in Kafka transactions instead ([`Transactions`]).

mod actions;
pub mod avro;
mod produce;
mod reference;
mod sink;
mod source;
pub mod test_broker;
mod topic_reader;

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, ClientContext};

pub use actions::read_case_actions;
pub use produce::{Encoding, ProduceCounts, create_topic, produce_files};
pub use reference::{ReferenceCounts, read_reference_topics};
pub use sink::{AlertPublisher, DeadLetterPublisher, Transactions};
pub use source::{KafkaPartition, KafkaSource};
pub use topic_reader::{TopicMessage, read_to_end};

use crate::config::KafkaConfig;

/// Why Kafka cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// The settings do not make a client.
    #[error("kafka settings: {0}")]
    Config(String),
    /// A broker did not answer in time or refused.
    #[error("kafka brokers {brokers}: {message}")]
    Broker {
        /// The brokers asked.
        brokers: String,
        /// What went wrong.
        message: String,
    },
    /// The topic is missing or unusable.
    #[error("kafka topic {topic}: {message}")]
    Topic {
        /// The topic.
        topic: String,
        /// What is wrong.
        message: String,
    },
    /// The schema registry could not be asked (Avro messages).
    #[error("schema registry {url}: {message}")]
    Registry {
        /// The registry asked.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// A record could not be delivered.
    #[error("kafka delivery to {topic}: {message}")]
    Delivery {
        /// The topic.
        topic: String,
        /// What went wrong.
        message: String,
    },
    /// A transaction (`kafka.transactional_id`) could not be started or committed: what it
    /// held is aborted, and a restart reads again from the positions committed last.
    #[error("kafka transaction {id:?}: {message}")]
    Transaction {
        /// The transactional id.
        id: String,
        /// What went wrong.
        message: String,
    },
}

/// The client settings shared by consumers and producers: the brokers, the pass-through
/// properties, and timeouts that turn an unreachable broker into an error.
pub fn client_config(settings: &KafkaConfig) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &settings.brokers);
    // Warnings and errors reach the client's context whether or not a `log` logger is set up
    // (rdkafka otherwise takes its level from the `log` crate, which is off without one).
    config.set_log_level(rdkafka::config::RDKafkaLogLevel::Warning);
    // Do not wait for ever on a broker that does not answer: errors come back instead.
    let millis = settings.timeout.as_millis().clamp(1000, i32::MAX as u128).to_string();
    config.set("socket.connection.setup.timeout.ms", &millis);
    for (key, value) in &settings.properties {
        config.set(key, value);
    }
    config
}

/// Keeps the first few errors librdkafka reports on its own (a failed TLS handshake, a
/// refused connection), so that a broker that cannot be reached is reported with the reason
/// rather than only "transport failure".
#[derive(Default)]
struct LastError(std::sync::Mutex<Vec<String>>);

impl LastError {
    fn note(&self, reason: &str) {
        if let Ok(mut reasons) = self.0.lock()
            && reasons.len() < 4
            && !reasons.iter().any(|r| r == reason)
        {
            reasons.push(reason.to_string());
        }
    }
}

impl ClientContext for LastError {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        use rdkafka::config::RDKafkaLogLevel;
        // librdkafka logs a failed TLS handshake or a refused connection from its own threads
        // while a request waits, and returns only "transport failure" to it.
        if (level as i32) <= (RDKafkaLogLevel::Warning as i32) {
            tracing::debug!(facility, message, "kafka client");
            self.note(message);
        }
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "kafka client");
        self.note(reason);
    }
}

impl rdkafka::consumer::ConsumerContext for LastError {}

/// The number of partitions of `topic`, asking the brokers for at most `settings.timeout`.
pub fn partition_count(settings: &KafkaConfig, topic: &str) -> Result<usize, KafkaError> {
    let consumer: BaseConsumer<LastError> = client_config(settings)
        .create_with_context(LastError::default())
        .map_err(|e| KafkaError::Config(e.to_string()))?;
    let broker = |e: rdkafka::error::KafkaError| {
        // The client's logs and errors wait on its queue: serve them, for the reason.
        for _ in 0..10 {
            let _ = consumer.poll(Duration::from_millis(20));
        }
        let reasons = consumer.context().0.lock().map(|r| r.join("; ")).unwrap_or_default();
        KafkaError::Broker {
            brokers: settings.brokers.clone(),
            message: match reasons.is_empty() {
                false => format!("{e}: {reasons}"),
                true => format!("{e} (no answer within {})", humantime::format_duration(settings.timeout)),
            },
        }
    };
    let metadata = consumer.fetch_metadata(Some(topic), settings.timeout).map_err(broker)?;
    let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Err(KafkaError::Topic {
            topic: topic.into(),
            message: "not found (create it first, e.g. with `surveil kafka create-topic`)".into(),
        });
    };
    if let Some(error) = found.error() {
        return Err(KafkaError::Topic { topic: topic.into(), message: format!("{error:?}") });
    }
    if found.partitions().is_empty() {
        return Err(KafkaError::Topic { topic: topic.into(), message: "has no partitions".into() });
    }
    Ok(found.partitions().len())
}

/// The name of input `partition` of `topic`, as the outputs show the source of an event.
pub fn source_name(topic: &str, partition: usize) -> String {
    format!("kafka:{topic}/{partition}")
}

/// How long to wait between attempts when a producer's queue is full.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(10);

#[cfg(test)]
mod tests;
