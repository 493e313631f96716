//! Publishing recorded files to a topic (a replay for tests and demos) and creating topics.

use std::sync::Arc;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use surveil_operators::{Partition, PartitionRead};

use super::{KafkaError, client_config};
use crate::config::{Config, KafkaConfig};
use crate::ingest::{InputSpec, ReadProgress, plan_partitions};
use crate::model::Report;
use crate::output::{PublishCounts, Renderer};
use crate::reference::ReferenceData;

/// What [`produce_files`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProduceCounts {
    /// Events published, one message each.
    pub events: u64,
    /// Records of the files that were not events (counted, not published).
    pub dead_letters: u64,
    /// What the broker acknowledged.
    pub delivery: PublishCounts,
}

/// Creates `topic` with `partitions` partitions (one replica); a topic that exists already is
/// left as it is.
pub fn create_topic(settings: &KafkaConfig, topic: &str, partitions: usize) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> =
        client_config(settings).create().map_err(|e| KafkaError::Config(e.to_string()))?;
    let new = NewTopic::new(topic, partitions.max(1) as i32, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(settings.timeout)).request_timeout(Some(settings.timeout));
    let broker = |message: String| KafkaError::Broker { brokers: settings.brokers.clone(), message };
    let results = futures_executor::block_on(admin.create_topics([&new], &options))
        .map_err(|e| broker(format!("creating {topic}: {e}")))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(KafkaError::Topic { topic: name, message: format!("cannot be created: {code}") });
            }
        }
    }
    Ok(())
}

/// How [`produce_files`] writes each event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Encoding {
    /// The canonical JSON object.
    #[default]
    Json,
    /// Avro with the bundled event schema ([`super::avro::EVENT_SCHEMA`]) in the Confluent
    /// wire format under this schema id ([`super::avro::register_event_schema`] gives one).
    Avro {
        /// The id every message names.
        schema_id: u32,
    },
}

/// Publishes the events of recorded files to `topic`, one message per event in the canonical
/// JSON schema or in Avro, keyed by instrument (so each instrument's events stay in order on
/// one partition), in the order of the files. Records that are not events are counted, not
/// sent.
pub fn produce_files(
    inputs: &[InputSpec],
    config: &Config,
    settings: &KafkaConfig,
    topic: &str,
    encoding: Encoding,
) -> Result<ProduceCounts, KafkaError> {
    let avro = match encoding {
        Encoding::Json => None,
        Encoding::Avro { schema_id } => Some(super::avro::EventEncoder::new(schema_id)),
    };
    let reference = Arc::new(ReferenceData::load(config).map_err(|e| KafkaError::Config(e.to_string()))?);
    let progress = Arc::new(ReadProgress::default());
    let partitions = plan_partitions(inputs, config, &reference, 0, 1, &progress)
        .map_err(|e| KafkaError::Config(format!("reading the inputs: {e}")))?;
    let publisher = super::AlertPublisher::new(settings, topic, None)?;
    let mut renderer = Renderer::new(reference.clone(), Vec::new());
    let mut counts = ProduceCounts::default();
    let (mut events, mut side) = (Vec::new(), Vec::new());
    let mut line = Vec::new();
    for mut partition in partitions {
        loop {
            let read = partition.read(4096, &mut events, &mut side);
            for report in side.drain(..) {
                match report {
                    Report::Symbol(symbol, text) => {
                        renderer.names.insert(symbol, &text);
                    }
                    Report::DeadLetter(_) => counts.dead_letters += 1,
                    _ => {}
                }
            }
            for event in events.drain(..) {
                let mut json = renderer.event(&event);
                if let serde_json::Value::Object(fields) = &mut json {
                    // Where the event was in the file is not part of the event.
                    fields.remove("source");
                    fields.remove("offset");
                }
                line.clear();
                match &avro {
                    Some(encoder) => encoder.encode(&json, &mut line)?,
                    None => serde_json::to_writer(&mut line, &json).map_err(|e| KafkaError::Config(e.to_string()))?,
                }
                publisher.publish(&renderer.name_text(event.instrument), &line);
                counts.events += 1;
            }
            if read == PartitionRead::Exhausted {
                break;
            }
        }
    }
    publisher.flush(settings.timeout)?;
    counts.delivery = publisher.counts();
    Ok(counts)
}
