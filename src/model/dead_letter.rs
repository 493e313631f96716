//! Records that could not be used, and why: errors are data, carried beside the events.

use serde::{Deserialize, Serialize};

use super::Event;

/// Why a record was rejected.
#[non_exhaustive]
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// Wrong number of fields.
    ColumnCount,
    /// Missing or unreadable event time.
    BadTime,
    /// Unknown event kind or message type.
    UnknownKind,
    /// A field required for the kind is empty.
    MissingField,
    /// Not a side.
    UnknownSide,
    /// Not an unsigned integer quantity, or zero where an amount is required.
    BadQuantity,
    /// Not a positive decimal price at the instrument's scale.
    BadPrice,
    /// Not a trading status.
    UnknownStatus,
    /// Not a cancel reason.
    UnknownCancelReason,
    /// Not UTF-8 text.
    BadUtf8,
    /// Not a JSON object of the schema.
    BadJson,
    /// Refers to an order that was never seen, where that changes its meaning.
    UnknownOrder,
    /// The input could not be read past this point.
    IoError,
    /// A name holds a control character (such as NUL), which no identifier may contain.
    ControlCharacter,
    /// A case action the case's state does not allow (an unknown or closed case).
    CaseActionRefused,
    /// Not a FIX message: fields out of order, no CheckSum, a field that is not `tag=value`.
    FixSyntax,
    /// A FIX message whose BodyLength (9) does not match its body.
    FixBodyLength,
    /// A FIX message whose CheckSum (10) does not match its bytes.
    FixChecksum,
    /// A FIX trade bust or correction, which is not applied to the fill it refers to.
    FixTradeCorrection,
    /// Not an Avro message in the Confluent wire format, or not decodable with its schema.
    BadAvro,
    /// An Avro message naming a schema id the schema registry does not know (or not Avro).
    UnknownSchema,
}

impl RejectReason {
    /// Every reason.
    pub const ALL: [RejectReason; 21] = [
        RejectReason::ColumnCount,
        RejectReason::BadTime,
        RejectReason::UnknownKind,
        RejectReason::MissingField,
        RejectReason::UnknownSide,
        RejectReason::BadQuantity,
        RejectReason::BadPrice,
        RejectReason::UnknownStatus,
        RejectReason::UnknownCancelReason,
        RejectReason::BadUtf8,
        RejectReason::BadJson,
        RejectReason::UnknownOrder,
        RejectReason::IoError,
        RejectReason::ControlCharacter,
        RejectReason::CaseActionRefused,
        RejectReason::FixSyntax,
        RejectReason::FixBodyLength,
        RejectReason::FixChecksum,
        RejectReason::FixTradeCorrection,
        RejectReason::BadAvro,
        RejectReason::UnknownSchema,
    ];

    /// The reason of a stable name.
    pub fn parse(name: &str) -> Option<RejectReason> {
        RejectReason::ALL.into_iter().find(|reason| reason.as_str() == name)
    }

    /// The stable name used in output.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::ColumnCount => "column_count",
            RejectReason::BadTime => "bad_time",
            RejectReason::UnknownKind => "unknown_kind",
            RejectReason::MissingField => "missing_field",
            RejectReason::UnknownSide => "unknown_side",
            RejectReason::BadQuantity => "bad_quantity",
            RejectReason::BadPrice => "bad_price",
            RejectReason::UnknownStatus => "unknown_status",
            RejectReason::UnknownCancelReason => "unknown_cancel_reason",
            RejectReason::BadUtf8 => "bad_utf8",
            RejectReason::BadJson => "bad_json",
            RejectReason::UnknownOrder => "unknown_order",
            RejectReason::IoError => "io_error",
            RejectReason::ControlCharacter => "control_character",
            RejectReason::CaseActionRefused => "case_action_refused",
            RejectReason::FixSyntax => "fix_syntax",
            RejectReason::FixBodyLength => "fix_body_length",
            RejectReason::FixChecksum => "fix_checksum",
            RejectReason::FixTradeCorrection => "fix_trade_correction",
            RejectReason::BadAvro => "bad_avro",
            RejectReason::UnknownSchema => "unknown_schema",
        }
    }
}

/// A rejection: the reason and a detail for a person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// The reason, counted in the summary.
    pub reason: RejectReason,
    /// What exactly was wrong.
    pub detail: String,
}

impl Rejection {
    /// Builds a rejection.
    pub fn new(reason: RejectReason, detail: impl Into<String>) -> Rejection {
        Rejection { reason, detail: detail.into() }
    }
}

/// A record that could not be processed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Index of the input.
    pub source: u32,
    /// 1-based line number, when known.
    pub line: Option<u64>,
    /// Byte offset of the record in the (decompressed) input.
    pub offset: u64,
    /// The record as read.
    pub raw: String,
    /// Why it was rejected.
    pub reason: RejectReason,
    /// Details. In a letter judged after parsing, [`ORDER_NAME`] stands
    /// for the order's name, which the writer puts in from `event`.
    pub detail: String,
    /// The parsed event, for letters judged after parsing (`unknown_order`): the writer shows
    /// it as a canonical CSV line with its names when `raw` is empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<Box<Event>>,
}

/// Stands for the order's name in an `unknown_order` detail: names of hashed symbols are known
/// only to the writer, which puts the name in (see [`DeadLetter::event`]).
pub const ORDER_NAME: &str = "{order}";

#[cfg(test)]
mod tests {
    use super::RejectReason;

    #[test]
    fn every_reason_reads_back_from_its_name() {
        for reason in RejectReason::ALL {
            assert_eq!(RejectReason::parse(reason.as_str()), Some(reason));
        }
        assert_eq!(RejectReason::parse("nonsense"), None);
    }
}
