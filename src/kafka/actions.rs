//! A topic of case actions (acknowledgements, assignments, closings), read like a
//! case-actions file.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::{KafkaError, client_config, partition_count};
use crate::cases::parse_action;
use crate::config::KafkaConfig;
use crate::model::{CaseAction, DeadLetter, RejectReason, Rejection};

/// A message read: the action, or why not and the message as text.
type Parsed = Result<CaseAction, (Rejection, String)>;

/// Reads every case action `topic` holds when called (each partition up to its end then), as
/// input number `source`: the actions, and a dead letter for each message that is not one (an
/// action per message, in the JSON of a case-actions file line). Partition by partition, in
/// offset order; the case workflow orders them by their times.
pub fn read_case_actions(
    settings: &KafkaConfig,
    topic: &str,
    source: u32,
) -> Result<(Vec<CaseAction>, Vec<DeadLetter>), KafkaError> {
    let partitions = partition_count(settings, topic)? as i32;
    let mut config = client_config(settings);
    config.set("group.id", &settings.group).set("enable.auto.commit", "false").set("enable.partition.eof", "true");
    let consumer: BaseConsumer = config.create().map_err(|e| KafkaError::Config(e.to_string()))?;
    let broker = |e: rdkafka::error::KafkaError| KafkaError::Broker {
        brokers: settings.brokers.clone(),
        message: format!("case actions on {topic}: {e}"),
    };
    let mut list = TopicPartitionList::new();
    let mut ends = Vec::new();
    for partition in 0..partitions {
        let (low, high) = consumer.fetch_watermarks(topic, partition, settings.timeout).map_err(broker)?;
        if high > low {
            list.add_partition_offset(topic, partition, Offset::Offset(low)).map_err(broker)?;
            ends.push((partition, high));
        }
    }
    let (mut actions, mut letters) = (Vec::new(), Vec::new());
    if ends.is_empty() {
        return Ok((actions, letters));
    }
    consumer.assign(&list).map_err(broker)?;
    let mut done = vec![false; ends.len()];
    let started = Instant::now();
    let mut by_partition: Vec<Vec<(i64, Parsed)>> = vec![Vec::new(); ends.len()];
    while done.iter().any(|d| !d) {
        if started.elapsed() > settings.timeout {
            return Err(KafkaError::Topic {
                topic: topic.into(),
                message: format!("not read to its end within {}", humantime::format_duration(settings.timeout)),
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
        let payload = message.payload().unwrap_or_default();
        let raw = String::from_utf8_lossy(payload).into_owned();
        let parsed = match std::str::from_utf8(payload) {
            Ok(text) => parse_action(text.trim_end_matches(['\n', '\r'])).map_err(|r| (r, raw)),
            Err(_) => Err((Rejection::new(RejectReason::BadUtf8, "the message is not UTF-8 text"), raw)),
        };
        by_partition[index].push((message.offset(), parsed));
        done[index] |= message.offset() + 1 >= ends[index].1;
    }
    // An action's "line" is its place in this reading (partition by partition, in offset
    // order): it orders actions of the same time, as a file's line numbers do.
    for (line, (offset, parsed)) in by_partition.into_iter().flatten().enumerate() {
        {
            match parsed {
                Ok(mut action) => {
                    (action.source, action.line, action.offset) = (source, line as u64 + 1, offset as u64);
                    actions.push(action);
                }
                Err((rejection, raw)) => letters.push(DeadLetter {
                    source,
                    line: None,
                    offset: offset as u64,
                    raw,
                    reason: rejection.reason,
                    detail: rejection.detail,
                    event: None,
                }),
            }
        }
    }
    Ok((actions, letters))
}
