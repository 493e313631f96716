//! Reading a whole topic once, as it is when asked: the topics that stand for files read at
//! the start of a run (case actions, reference data).

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::{KafkaError, client_config, partition_count};
use crate::config::KafkaConfig;

/// The end offset of each partition, `(partition, offset)`.
pub type PartitionEnds = Vec<(i32, i64)>;

/// One message of a topic read to its end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicMessage {
    /// Its partition.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
    /// Its payload (empty for a message without one).
    pub payload: Vec<u8>,
}

/// Every message `topic` holds when called, each partition up to the end it has then:
/// partition by partition, in offset order. `what` names the topic's use in errors. A topic not
/// read to its end within `kafka.timeout` is an error, not a wait.
pub fn read_to_end(settings: &KafkaConfig, topic: &str, what: &str) -> Result<Vec<TopicMessage>, KafkaError> {
    read_to_end_with_ends(settings, topic, what).map(|(messages, _)| messages)
}

/// [`read_to_end`], with the end offset of every partition it read up to: where a consumer
/// that follows the topic from there starts.
pub fn read_to_end_with_ends(
    settings: &KafkaConfig,
    topic: &str,
    what: &str,
) -> Result<(Vec<TopicMessage>, PartitionEnds), KafkaError> {
    let partitions = partition_count(settings, topic)? as i32;
    let mut config = client_config(settings);
    config.set("group.id", &settings.group).set("enable.auto.commit", "false").set("enable.partition.eof", "true");
    let consumer: BaseConsumer = config.create().map_err(|e| KafkaError::Config(e.to_string()))?;
    let broker = |e: rdkafka::error::KafkaError| KafkaError::Broker {
        brokers: settings.brokers.clone(),
        message: format!("{what} on {topic}: {e}"),
    };
    let mut list = TopicPartitionList::new();
    let mut ends = Vec::new();
    let mut all_ends = Vec::new();
    for partition in 0..partitions {
        let (low, high) = consumer.fetch_watermarks(topic, partition, settings.timeout).map_err(broker)?;
        all_ends.push((partition, high));
        if high > low {
            list.add_partition_offset(topic, partition, Offset::Offset(low)).map_err(broker)?;
            ends.push((partition, high));
        }
    }
    if ends.is_empty() {
        return Ok((Vec::new(), all_ends));
    }
    consumer.assign(&list).map_err(broker)?;
    let mut done = vec![false; ends.len()];
    let started = Instant::now();
    let mut by_partition: Vec<Vec<TopicMessage>> = vec![Vec::new(); ends.len()];
    while done.iter().any(|d| !d) {
        if started.elapsed() > settings.timeout {
            return Err(KafkaError::Topic {
                topic: topic.into(),
                message: format!("{what}: not read to its end within {}", humantime::format_duration(settings.timeout)),
            });
        }
        let message = match consumer.poll(Duration::from_millis(100)) {
            None => continue,
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(partition))) => {
                if let Some(index) = ends.iter().position(|(p, _)| *p == partition) {
                    done[index] = true;
                }
                continue;
            }
            Some(Err(error)) => {
                tracing::warn!(%error, topic, "kafka consumer");
                continue;
            }
            Some(Ok(message)) => message,
        };
        let Some(index) = ends.iter().position(|(p, _)| *p == message.partition()) else { continue };
        if message.offset() >= ends[index].1 {
            done[index] = true;
            continue;
        }
        if by_partition[index].last().is_some_and(|m| m.offset >= message.offset()) {
            // Read already (a fetch repeated after a reconnection).
            continue;
        }
        let payload = message.payload().unwrap_or_default().to_vec();
        by_partition[index].push(TopicMessage { partition: message.partition(), offset: message.offset(), payload });
        done[index] |= message.offset() + 1 >= ends[index].1;
    }
    Ok((by_partition.into_iter().flatten().collect(), all_ends))
}
