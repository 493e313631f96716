//! A topic of case actions (acknowledgements, assignments, closings), read like a
//! case-actions file.

use super::{KafkaError, read_to_end};
use crate::cases::parse_action;
use crate::config::KafkaConfig;
use crate::model::{CaseAction, DeadLetter, RejectReason, Rejection};

/// Reads every case action `topic` holds when called (each partition up to its end then), as
/// input number `source`: the actions, and a dead letter for each message that is not one (an
/// action per message, in the JSON of a case-actions file line). Partition by partition, in
/// offset order; the case workflow orders them by their times.
pub fn read_case_actions(
    settings: &KafkaConfig,
    topic: &str,
    source: u32,
) -> Result<(Vec<CaseAction>, Vec<DeadLetter>), KafkaError> {
    let (mut actions, mut letters) = (Vec::new(), Vec::new());
    // An action's "line" is its place in this reading (partition by partition, in offset
    // order): it orders actions of the same time, as a file's line numbers do.
    for (line, message) in read_to_end(settings, topic, "case actions")?.into_iter().enumerate() {
        let raw = String::from_utf8_lossy(&message.payload).into_owned();
        let parsed = match std::str::from_utf8(&message.payload) {
            Ok(text) => parse_action(text.trim_end_matches(['\n', '\r'])),
            Err(_) => Err(Rejection::new(RejectReason::BadUtf8, "the message is not UTF-8 text")),
        };
        match parsed {
            Ok(mut action) => {
                (action.source, action.line, action.offset) = (source, line as u64 + 1, message.offset as u64);
                actions.push(action);
            }
            Err(rejection) => letters.push(DeadLetter {
                source,
                line: None,
                offset: message.offset as u64,
                raw,
                reason: rejection.reason,
                detail: rejection.detail,
                event: None,
            }),
        }
    }
    Ok((actions, letters))
}
