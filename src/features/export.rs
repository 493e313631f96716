//! `features.csv`: every feature row of a run, for offline analysis and for training.
//!
//! Each row carries the names (for people), the symbol ids (so a reader rebuilds exactly the
//! keys the run used), the counters (exact inputs of the features) and the derived features.
//! Floating-point values are written in Rust's shortest round-trip form, so [`read`] gives back
//! bit-identical rows and `surveil train` on an export equals training on the live stream.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{Counters, FEATURES, FeatureRow, FeatureScope};
use crate::model::Symbol;

/// File name in the output folder.
pub const FEATURES_FILE: &str = "features.csv";

const COUNTERS: [&str; 14] = [
    "orders",
    "order_quantity",
    "max_order_quantity",
    "cancels",
    "replaces",
    "fills",
    "filled_quantity",
    "notional",
    "aggressive_fills",
    "bought",
    "sold",
    "extreme_fills",
    "market_quantity",
    "pnl",
];

const KEYS: [&str; 9] =
    ["window_start", "window_end", "scope", "account", "instrument", "desk", "account_id", "instrument_id", "desk_id"];

/// Why a feature file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FeatureFileError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        source: csv::Error,
    },
    /// A row is malformed.
    #[error("{path}, line {line}: {reason}")]
    Row {
        /// File.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        reason: String,
    },
}

/// The header line.
pub fn header() -> String {
    let mut columns: Vec<&str> = KEYS.to_vec();
    columns.extend(COUNTERS);
    columns.extend(FEATURES.iter().map(|f| f.name));
    columns.join(",")
}

/// Appends a float in shortest round-trip form (`NaN` when undefined).
fn put_float(out: &mut Vec<u8>, value: f64, buffer: &mut ryu::Buffer) {
    out.push(b',');
    if value.is_finite() {
        out.extend_from_slice(buffer.format_finite(value).as_bytes());
    } else {
        out.extend_from_slice(if value.is_nan() {
            b"NaN"
        } else if value > 0.0 {
            b"inf"
        } else {
            b"-inf"
        });
    }
}

/// Appends an integer.
fn put_int(out: &mut Vec<u8>, value: u64, buffer: &mut itoa::Buffer) {
    out.push(b',');
    out.extend_from_slice(buffer.format(value).as_bytes());
}

/// Appends a name, quoted when it holds a separator.
fn put_name(out: &mut Vec<u8>, name: &str) {
    out.push(b',');
    if name.contains([',', '"', '\n', '\r']) {
        out.push(b'"');
        out.extend_from_slice(name.replace('"', "\"\"").as_bytes());
        out.push(b'"');
    } else {
        out.extend_from_slice(name.as_bytes());
    }
}

/// Writes one row; `name` shows a symbol (empty for none).
pub fn write_row(
    out: &mut impl Write,
    row: &FeatureRow,
    window_ns: u64,
    name: impl Fn(Symbol) -> String,
) -> std::io::Result<()> {
    let (mut ints, mut floats) = (itoa::Buffer::new(), ryu::Buffer::new());
    let mut line = Vec::with_capacity(512);
    line.extend_from_slice(ints.format(row.window_end.saturating_sub(window_ns)).as_bytes());
    put_int(&mut line, row.window_end, &mut ints);
    line.push(b',');
    line.extend_from_slice(row.scope.as_str().as_bytes());
    for symbol in [row.account, row.instrument, row.desk] {
        put_name(&mut line, &name(symbol));
    }
    for symbol in [row.account, row.instrument, row.desk] {
        put_int(&mut line, symbol.0, &mut ints);
    }
    let c = &row.counters;
    put_int(&mut line, c.orders, &mut ints);
    put_float(&mut line, c.order_quantity, &mut floats);
    put_float(&mut line, c.max_order_quantity, &mut floats);
    put_int(&mut line, c.cancels, &mut ints);
    put_int(&mut line, c.replaces, &mut ints);
    put_int(&mut line, c.fills, &mut ints);
    put_float(&mut line, c.filled_quantity, &mut floats);
    put_float(&mut line, c.notional, &mut floats);
    put_int(&mut line, c.aggressive_fills, &mut ints);
    put_float(&mut line, c.bought, &mut floats);
    put_float(&mut line, c.sold, &mut floats);
    put_int(&mut line, c.extreme_fills, &mut ints);
    put_float(&mut line, c.market_quantity, &mut floats);
    put_float(&mut line, c.pnl, &mut floats);
    for value in c.features(window_ns as f64 / 1e9) {
        put_float(&mut line, value, &mut floats);
    }
    line.push(b'\n');
    out.write_all(&line)
}

/// Reads a `features.csv` back into rows (the names are ignored; the ids are the keys).
/// Reads an export and the width of its windows (`window_end - window_start`, the same on
/// every row, or an error): what the rows were computed over, which training must match.
pub fn read_with_window(path: &Path) -> Result<(Vec<FeatureRow>, Option<u64>), FeatureFileError> {
    let rows = read(path)?;
    let mut reader =
        csv::Reader::from_path(path).map_err(|source| FeatureFileError::Read { path: path.into(), source })?;
    let mut window = None;
    for (index, record) in reader.records().enumerate() {
        let record = record.map_err(|source| FeatureFileError::Read { path: path.into(), source })?;
        let start: u64 = record.get(0).and_then(|f| f.parse().ok()).unwrap_or(0);
        let end: u64 = record.get(1).and_then(|f| f.parse().ok()).unwrap_or(0);
        let width = end.saturating_sub(start);
        match window {
            None => window = Some(width),
            Some(w) if w != width => {
                return Err(FeatureFileError::Row {
                    path: path.into(),
                    line: index as u64 + 2,
                    reason: format!("a window of {width} ns where the rows before have {w} ns"),
                });
            }
            Some(_) => {}
        }
    }
    Ok((rows, window))
}

/// Reads the rows of an export written by [`write_row`] under [`header`].
pub fn read(path: &Path) -> Result<Vec<FeatureRow>, FeatureFileError> {
    let mut reader =
        csv::Reader::from_path(path).map_err(|source| FeatureFileError::Read { path: path.into(), source })?;
    let headers = reader.headers().map_err(|source| FeatureFileError::Read { path: path.into(), source })?.clone();
    let expected = header();
    if headers.iter().collect::<Vec<_>>().join(",") != expected {
        return Err(FeatureFileError::Row {
            path: path.into(),
            line: 1,
            reason: "the header is not the feature export header of this build".into(),
        });
    }
    let mut rows = Vec::new();
    for (index, record) in reader.records().enumerate() {
        let line = index as u64 + 2;
        let record = record.map_err(|source| FeatureFileError::Read { path: path.into(), source })?;
        let bad = |reason: String| FeatureFileError::Row { path: path.into(), line, reason };
        let field = |i: usize| record.get(i).unwrap_or("");
        let int =
            |i: usize| field(i).parse::<u64>().map_err(|e| bad(format!("{}: {e}", headers.get(i).unwrap_or("?"))));
        let float =
            |i: usize| field(i).parse::<f64>().map_err(|e| bad(format!("{}: {e}", headers.get(i).unwrap_or("?"))));
        let scope = FeatureScope::parse(field(2)).ok_or_else(|| bad(format!("unknown scope {:?}", field(2))))?;
        let k = KEYS.len();
        let counters = Counters {
            orders: int(k)?,
            order_quantity: float(k + 1)?,
            max_order_quantity: float(k + 2)?,
            cancels: int(k + 3)?,
            replaces: int(k + 4)?,
            fills: int(k + 5)?,
            filled_quantity: float(k + 6)?,
            notional: float(k + 7)?,
            aggressive_fills: int(k + 8)?,
            bought: float(k + 9)?,
            sold: float(k + 10)?,
            extreme_fills: int(k + 11)?,
            market_quantity: float(k + 12)?,
            pnl: float(k + 13)?,
        };
        rows.push(FeatureRow {
            window_end: int(1)?,
            scope,
            account: Symbol(int(6)?),
            instrument: Symbol(int(7)?),
            desk: Symbol(int(8)?),
            counters,
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_exactly() {
        let row = FeatureRow {
            window_end: 120_000_000_000,
            scope: FeatureScope::AccountInstrument,
            account: Symbol::of(b"ACC,1"),
            instrument: Symbol::of(b"XYZ"),
            desk: Symbol::NONE,
            counters: Counters {
                orders: 3,
                order_quantity: 0.1 + 0.2,
                notional: 1e300 / 3.0,
                pnl: -1.0 / 3.0,
                ..Counters::default()
            },
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FEATURES_FILE);
        let mut text = Vec::new();
        writeln!(text, "{}", header()).expect("write");
        write_row(&mut text, &row, 60_000_000_000, |s| if s.is_none() { String::new() } else { "ACC,1".into() })
            .expect("write");
        std::fs::write(&path, text).expect("write file");
        assert_eq!(read(&path).expect("read"), vec![row]);
    }

    #[test]
    fn a_bad_row_names_its_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FEATURES_FILE);
        let cells = vec!["x"; header().split(',').count()].join(",");
        std::fs::write(&path, format!("{}\n{}\n", header(), cells)).expect("write file");
        let error = read(&path).expect_err("bad row").to_string();
        assert!(error.contains("line 2"), "{error}");
    }
}
