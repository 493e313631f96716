//! Reference data from topics: instruments, accounts and ownership changes published as CSV,
//! read when a run starts and added after the reference files (`docs/kafka.md`).

use std::path::PathBuf;

use super::KafkaError;
use super::topic_reader::read_to_end_with_ends;
use crate::config::KafkaConfig;
use crate::reference::ReferenceData;

/// What [`read_reference_topics`] read: messages per kind, and where each topic's partitions
/// ended (a live run follows them from there).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReferenceCounts {
    /// Messages of `kafka.reference.instruments`.
    pub instruments: u64,
    /// Messages of `kafka.reference.accounts`.
    pub accounts: u64,
    /// Messages of `kafka.reference.ownership`.
    pub ownership: u64,
    /// Messages of `kafka.reference.baskets`.
    pub baskets: u64,
    /// The end offset of each partition of the ownership topic when it was read.
    pub ownership_ends: Vec<(i32, i64)>,
    /// The same for the instruments topic.
    pub instruments_ends: Vec<(i32, i64)>,
    /// The same for the accounts topic.
    pub accounts_ends: Vec<(i32, i64)>,
}

/// Reads the reference topics of `settings` to their ends and adds what they hold to
/// `reference`, in the order the files are read (instruments, accounts, ownership, then
/// baskets), each topic partition by partition in offset order. A message is CSV text in the format of the
/// kind's file (`docs/schema.md`): a header and one or more rows. A message that is not is an
/// error naming its topic, partition, offset and row, as a bad row of a reference file is.
pub fn read_reference_topics(
    settings: &KafkaConfig,
    reference: &mut ReferenceData,
) -> Result<ReferenceCounts, KafkaError> {
    let mut counts = ReferenceCounts::default();
    let topics = &settings.reference;
    let (mut ownership_ends, mut instruments_ends, mut accounts_ends) = (Vec::new(), Vec::new(), Vec::new());
    let kinds = [
        ("instruments", &topics.instruments, &mut counts.instruments),
        ("accounts", &topics.accounts, &mut counts.accounts),
        ("ownership", &topics.ownership, &mut counts.ownership),
        ("baskets", &topics.baskets, &mut counts.baskets),
    ];
    for (kind, topic, count) in kinds {
        let Some(topic) = topic else { continue };
        let (messages, ends) = read_to_end_with_ends(settings, topic, kind)?;
        match kind {
            "ownership" => ownership_ends = ends,
            "instruments" => instruments_ends = ends,
            "accounts" => accounts_ends = ends,
            _ => {}
        }
        for message in messages {
            let origin = PathBuf::from(format!("kafka:{topic}/{}@{}", message.partition, message.offset));
            let text = message.payload.as_slice();
            let read = match kind {
                "instruments" => reference.read_instruments(text, &origin),
                "accounts" => reference.read_accounts(text, &origin),
                "ownership" => reference.read_ownership(text, &origin),
                _ => reference.read_baskets(text, &origin),
            };
            read.map_err(|e| KafkaError::Topic { topic: topic.clone(), message: format!("{kind}: {e}") })?;
            *count += 1;
        }
        tracing::info!(topic, kind, messages = *count, "reference data read from kafka");
    }
    counts.ownership_ends = ownership_ends;
    counts.instruments_ends = instruments_ends;
    counts.accounts_ends = accounts_ends;
    Ok(counts)
}
