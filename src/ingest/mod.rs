//! Reading recorded trading data: formats, validation, dead letters, partitions.
//!
//! Every input is split into partitions: blocks of a plain file (read in parallel by the
//! workers) or a whole gzipped file. A partition reads lines, hands each to the format's
//! [`LineParser`], enriches the events from reference data, and turns every line it cannot
//! use into a [`DeadLetter`] with the reason: bad input never panics and never vanishes.

pub mod csv;
pub mod fields;
pub mod fix;
pub mod imc;
pub mod jsonl;
pub mod lines;
pub mod lobster;
pub mod partition;
/// Event-time parsing and formatting (kept in [`crate::model::time`], shared with the layers below).
pub use crate::model::time;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::model::Report;
use crate::model::{Event, IdMap, Origin, Symbol};
use crate::reference::ReferenceData;

pub use crate::model::{DeadLetter, RejectReason, Rejection};
pub use partition::{
    EventCounts, InputPosition, LineCounts, LinePartition, PartitionProgress, ProgressSnapshot, ReadProgress,
    ResumePoint, SpanSnapshot, partition_starts, plan_partitions,
};

/// Input formats.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Canonical CSV (`docs/schema.md`).
    Csv,
    /// Canonical JSON Lines.
    Jsonl,
    /// LOBSTER message files.
    Lobster,
    /// IMC Prosperity trade files.
    Imc,
    /// FIX 4.2/4.4 drop copies, one tag=value message per line.
    Fix,
    /// A Parquet archive written by a run (a folder holding `events/`, or `s3://…`), replayed
    /// with the `archive` feature.
    Archive,
}

impl Format {
    /// Guesses the format from the file name: `*_message_N.csv` is LOBSTER, `trades_*.csv`
    /// with `;` separators is IMC, `.jsonl`/`.ndjson` is JSON Lines, anything else CSV.
    pub fn detect(path: &Path) -> Format {
        if Format::is_archive(path) {
            return Format::Archive;
        }
        let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
        let name = name.strip_suffix(".gz").unwrap_or(&name);
        if name.ends_with(".jsonl") || name.ends_with(".ndjson") || name.ends_with(".json") {
            Format::Jsonl
        } else if lobster::parse_file_name(name).is_some() {
            Format::Lobster
        } else if name.starts_with("trades_") && first_line(path).is_ok_and(|l| l.contains(';')) {
            Format::Imc
        } else if name.ends_with(".fix") || first_line(path).is_ok_and(|l| l.contains("8=FIX")) {
            Format::Fix
        } else {
            Format::Csv
        }
    }

    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
            Format::Lobster => "lobster",
            Format::Imc => "imc",
            Format::Fix => "fix",
            Format::Archive => "archive",
        }
    }

    /// Whether `path` names an archive: `s3://…`, or a folder with an `events` folder in it.
    pub fn is_archive(path: &Path) -> bool {
        path.to_string_lossy().starts_with("s3://") || path.join("events").is_dir()
    }

    /// Every format.
    pub const ALL: [Format; 6] =
        [Format::Csv, Format::Jsonl, Format::Lobster, Format::Imc, Format::Fix, Format::Archive];
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(text: &str) -> Result<Format, String> {
        Format::ALL.into_iter().find(|f| f.as_str() == text).ok_or_else(|| {
            let names: Vec<&str> = Format::ALL.iter().map(|f| f.as_str()).collect();
            format!("unknown format {text:?} (one of {})", names.join(", "))
        })
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One input file.
#[derive(Clone, Debug)]
pub struct InputSpec {
    /// Position on the command line: the `source` of every origin from this file.
    pub index: u32,
    /// The file.
    pub path: PathBuf,
    /// Its format.
    pub format: Format,
}

/// Why an input cannot be read at all (as opposed to a bad record, which is a dead letter).
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The file cannot be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The header or file name does not fit the format.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// What a parser needs besides the line: reference data and symbol interning.
pub struct ParseContext<'a> {
    /// Reference data (price scales).
    pub reference: &'a ReferenceData,
    /// Side records: new dictionary entries.
    pub side: &'a mut Vec<Report>,
    /// Symbols already announced by this partition.
    pub announced: &'a mut IdMap<Symbol, ()>,
    /// A name that cannot be used, found while interning: the line is rejected with it even
    /// if the parser itself succeeds (see [`ParseContext::parse`]).
    pub rejection: Option<Rejection>,
}

impl<'a> ParseContext<'a> {
    /// A context announcing new names on `side`.
    pub fn new(
        reference: &'a ReferenceData,
        side: &'a mut Vec<Report>,
        announced: &'a mut IdMap<Symbol, ()>,
    ) -> ParseContext<'a> {
        ParseContext { reference, side, announced, rejection: None }
    }

    /// Parses `line` with `parser`: the parser's own verdict, or the first unusable name it
    /// interned. On a rejection, nothing is appended to `out`.
    pub fn parse(
        &mut self,
        parser: &mut dyn LineParser,
        line: &Line<'_>,
        out: &mut Vec<Event>,
    ) -> Result<(), Rejection> {
        let before = out.len();
        self.rejection = None;
        let result = parser.parse(line, self, out).and_then(|()| match self.rejection.take() {
            Some(rejection) => Err(rejection),
            None => Ok(()),
        });
        if result.is_err() {
            out.truncate(before);
        }
        result
    }

    /// The symbol of `text`, announcing its text on the side output the first time a hashed
    /// symbol is seen, so that the writers can show it. Names with control characters are
    /// noted as the line's rejection (packed and numeric names cannot hold any).
    #[inline]
    pub fn intern(&mut self, text: &[u8]) -> Symbol {
        let symbol = Symbol::of(text);
        if symbol.needs_dictionary() {
            if let Some(at) = text.iter().position(|&b| b < 0x20 || b == 0x7f) {
                self.reject_name(text, at);
            } else if self.announced.insert(symbol, ()).is_none() {
                self.side.push(Report::Symbol(symbol, String::from_utf8_lossy(text).into()));
            }
        }
        symbol
    }

    #[cold]
    fn reject_name(&mut self, text: &[u8], at: usize) {
        if self.rejection.is_none() {
            self.rejection = Some(Rejection::new(
                RejectReason::ControlCharacter,
                format!(
                    "the name {:?} holds the control character 0x{:02x} at byte {at}",
                    String::from_utf8_lossy(text),
                    text[at]
                ),
            ));
        }
    }

    /// The price scale of an instrument.
    #[inline]
    pub fn price_scale(&self, instrument: Symbol) -> u8 {
        self.reference.price_scale(instrument)
    }
}

/// One line of input.
pub struct Line<'a> {
    /// The bytes, without the line end.
    pub bytes: &'a [u8],
    /// Where it was read.
    pub origin: Origin,
    /// The matching line of a companion file (LOBSTER order book), if any.
    pub companion: Option<&'a [u8]>,
}

/// Turns lines of one format into events.
pub trait LineParser: Send {
    /// Whether the first line of an input is a header to skip.
    fn is_header(&self, first_line: &[u8]) -> bool;

    /// Parses one line, appending zero or more events.
    fn parse(&mut self, line: &Line<'_>, context: &mut ParseContext<'_>, out: &mut Vec<Event>)
    -> Result<(), Rejection>;
}

/// The first line of a file (decompressed), without its line end.
pub fn first_line(path: &Path) -> Result<String, InputError> {
    let io = |source| InputError::Io { path: path.into(), source };
    let mut reader = lines::LineReader::open(path, 0).map_err(io)?;
    let line = reader.next_line().map_err(io)?.map(|(_, l)| l.to_vec()).unwrap_or_default();
    let mut line = String::from_utf8_lossy(&line).into_owned();
    if line.ends_with('\r') {
        line.pop();
    }
    Ok(line)
}

/// Builds the parser for an input, reading its header where the format has one.
pub fn parser_for(input: &InputSpec, config: &Config) -> Result<Box<dyn LineParser>, InputError> {
    Ok(match input.format {
        Format::Csv => Box::new(csv::CsvParser::from_header(&input.path, &first_line(&input.path)?)?),
        Format::Jsonl => Box::new(jsonl::JsonlParser::new()),
        Format::Lobster => Box::new(lobster::LobsterParser::new(&input.path, &config.ingest.lobster)?),
        Format::Imc => Box::new(imc::ImcParser::new(&input.path, &config.ingest.imc)?),
        Format::Fix => Box::new(fix::FixParser::new(&config.ingest.fix)),
        Format::Archive => {
            return Err(InputError::Format {
                path: input.path.clone(),
                message: "an archive is read as Parquet files, not as lines".into(),
            });
        }
    })
}

/// Inputs that must be read as one partition: gzip (not seekable), or a LOBSTER message file
/// with its order book file beside it (read in lockstep).
pub fn companion_of(input: &InputSpec, config: &Config) -> Option<PathBuf> {
    match input.format {
        Format::Lobster if config.ingest.lobster.orderbook => lobster::orderbook_path(&input.path),
        _ => None,
    }
}
