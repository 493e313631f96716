//! An Avro record written straight as the JSON text the canonical parser reads, by walking the
//! writer's schema over the message's bytes (the Avro binary encoding).
//!
//! `apache-avro` decodes a message into a tree of `Value`s (a `String` for every field name of
//! every message), which was then rebuilt as a `serde_json` map and written out: about 30 % of
//! an Avro message's cost was allocation (`docs/benchmarks.md`, "Kafka messages"). This writes
//! the same JSON, field for field, with no tree in between. A schema with a type it does not
//! take ([`supported`]: a reference to a named type, `uuid`, `big-decimal`, `duration`) is
//! decoded by `apache-avro` as before; the tests hold both paths to the same events.

use std::io::Write;

pub use apache_avro::Schema;

/// The schema of one event in the canonical field names, as `surveil kafka produce --avro`
/// writes it: the event time as `timestamp-nanos`, decimals as text (exact), quantities as
/// `long`, every field but `event_time`, `kind` and `instrument` optional.
pub const EVENT_SCHEMA: &str = include_str!("event.avsc");

/// Whether [`write_record`] reads every message of `schema`.
pub fn supported(schema: &Schema) -> bool {
    match schema {
        Schema::Ref { .. } | Schema::Uuid | Schema::BigDecimal | Schema::Duration => false,
        Schema::Record(record) => record.fields.iter().all(|f| supported(&f.schema)),
        Schema::Union(union) => union.variants().iter().all(supported),
        Schema::Array(array) => supported(&array.items),
        Schema::Map(map) => supported(&map.types),
        Schema::Decimal(decimal) => matches!(decimal.inner.as_ref(), Schema::Bytes | Schema::Fixed(_)),
        _ => true,
    }
}

/// Writes the record at the start of `datum` as a JSON object to `out` and advances `datum`
/// past it. Errors name what did not decode; damaged or hostile bytes give an error, never a
/// panic or an allocation their lengths ask for (the `avro` fuzz target holds it to that).
///
/// ```
/// use surveil::avro_json::{Schema, write_record};
///
/// let schema = Schema::parse_str(
///     r#"{"type": "record", "name": "T", "fields": [
///         {"name": "kind", "type": "string"}, {"name": "quantity", "type": ["null", "long"]}]}"#,
/// )
/// .unwrap();
/// // "fill" (its length 4, zig-zag 8), then the union's second branch (zig-zag 2) holding 300
/// // (zig-zag 600: 0xd8 0x04).
/// let mut datum: &[u8] = &[8, b'f', b'i', b'l', b'l', 2, 0xd8, 0x04];
/// let mut json = Vec::new();
/// write_record(&schema, &mut datum, &mut json).unwrap();
/// let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
/// assert_eq!(value, serde_json::json!({"kind": "fill", "quantity": 300}));
/// assert!(datum.is_empty());
/// ```
pub fn write_record(schema: &Schema, datum: &mut &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    if !matches!(schema, Schema::Record(_)) {
        return Err("the message is not an Avro record".into());
    }
    write_value(schema, datum, out)
}

fn write_value(schema: &Schema, datum: &mut &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    let number = |out: &mut Vec<u8>, n: i64| write!(out, "{n}").map_err(|e| e.to_string());
    let nanos = |out: &mut Vec<u8>, t: i64, per: i64| match t.checked_mul(per) {
        Some(n) => number(out, n),
        None => Err(format!("time {t} is out of range")),
    };
    match schema {
        Schema::Null => out.extend_from_slice(b"null"),
        Schema::Boolean => match take(datum, 1)?[0] {
            0 => out.extend_from_slice(b"false"),
            1 => out.extend_from_slice(b"true"),
            b => return Err(format!("a boolean byte {b:#04x}")),
        },
        Schema::Int | Schema::Date | Schema::TimeMillis => number(out, int(datum)?.into())?,
        Schema::Long | Schema::TimeMicros | Schema::TimestampNanos => number(out, long(datum)?)?,
        Schema::TimestampMillis => nanos(out, long(datum)?, 1_000_000)?,
        Schema::TimestampMicros => nanos(out, long(datum)?, 1_000)?,
        Schema::LocalTimestampMillis | Schema::LocalTimestampMicros | Schema::LocalTimestampNanos => {
            // A local timestamp has no zone: which instant it names is unknown.
            long(datum)?;
            out.extend_from_slice(b"\"a local timestamp (no time zone)\"");
        }
        Schema::Float => {
            let bytes: [u8; 4] = take(datum, 4)?.try_into().map_err(|_| "a float".to_string())?;
            float(out, f64::from(f32::from_le_bytes(bytes)))?;
        }
        Schema::Double => {
            let bytes: [u8; 8] = take(datum, 8)?.try_into().map_err(|_| "a double".to_string())?;
            float(out, f64::from_le_bytes(bytes))?;
        }
        Schema::String => {
            let bytes = sized(datum)?;
            let text = std::str::from_utf8(bytes).map_err(|e| format!("a string that is not UTF-8: {e}"))?;
            string(out, text)?;
        }
        Schema::Bytes => {
            let bytes = sized(datum)?;
            byte_array(out, bytes);
        }
        Schema::Fixed(fixed) => {
            let bytes = take(datum, fixed.size)?;
            byte_array(out, bytes);
        }
        Schema::Enum(schema) => {
            let index = int(datum)?;
            let symbol = usize::try_from(index)
                .ok()
                .and_then(|i| schema.symbols.get(i))
                .ok_or_else(|| format!("enum index {index} of {} symbols", schema.symbols.len()))?;
            string(out, symbol)?;
        }
        Schema::Union(union) => {
            let index = long(datum)?;
            let variant = usize::try_from(index)
                .ok()
                .and_then(|i| union.variants().get(i))
                .ok_or_else(|| format!("union index {index} of {} variants", union.variants().len()))?;
            write_value(variant, datum, out)?;
        }
        Schema::Decimal(decimal) => {
            let bytes = match decimal.inner.as_ref() {
                Schema::Fixed(fixed) => take(datum, fixed.size)?,
                _ => sized(datum)?,
            };
            string(out, &decimal_text(bytes, decimal.scale)?)?;
        }
        Schema::Record(record) => {
            out.push(b'{');
            for (i, field) in record.fields.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                string(out, &field.name)?;
                out.push(b':');
                write_value(&field.schema, datum, out).map_err(|e| format!("field {}: {e}", field.name))?;
            }
            out.push(b'}');
        }
        Schema::Array(array) => {
            write_blocks(datum, out, *b"[]", |datum, out| write_value(&array.items, datum, out))?;
        }
        Schema::Map(map) => write_blocks(datum, out, *b"{}", |datum, out| {
            let key = std::str::from_utf8(sized(datum)?).map_err(|e| format!("a map key: {e}"))?;
            string(out, key)?;
            out.push(b':');
            write_value(&map.types, datum, out)
        })?,
        Schema::Ref { .. } | Schema::Uuid | Schema::BigDecimal | Schema::Duration => {
            return Err(format!("{schema:?} is read by the general decoder"));
        }
    }
    Ok(())
}

/// The next `n` bytes.
fn take<'a>(datum: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
    if datum.len() < n {
        return Err(format!("{n} bytes wanted, {} left", datum.len()));
    }
    let (head, rest) = datum.split_at(n);
    *datum = rest;
    Ok(head)
}

/// A zigzag-encoded variable-length long.
fn long(datum: &mut &[u8]) -> Result<i64, String> {
    let mut value: u64 = 0;
    for (i, &byte) in datum.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            if i == 9 && byte > 1 {
                break;
            }
            *datum = &datum[i + 1..];
            return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
        }
    }
    Err(if datum.len() < 10 {
        "the message ends inside a number".into()
    } else {
        "a number of more than 64 bits".into()
    })
}

fn int(datum: &mut &[u8]) -> Result<i32, String> {
    let n = long(datum)?;
    i32::try_from(n).map_err(|_| format!("int {n} is out of range"))
}

/// Bytes or a string: a long length, then the bytes.
fn sized<'a>(datum: &mut &'a [u8]) -> Result<&'a [u8], String> {
    let length = long(datum)?;
    let length = usize::try_from(length).map_err(|_| format!("a negative length {length}"))?;
    take(datum, length)
}

/// The items of an array or map, block after block, between `brackets` and separated by commas.
fn write_blocks(
    datum: &mut &[u8],
    out: &mut Vec<u8>,
    brackets: [u8; 2],
    mut item: impl FnMut(&mut &[u8], &mut Vec<u8>) -> Result<(), String>,
) -> Result<(), String> {
    out.push(brackets[0]);
    let mut first = true;
    while let Some(count) = block(datum)? {
        for _ in 0..count {
            if !std::mem::take(&mut first) {
                out.push(b',');
            }
            item(datum, out)?;
        }
    }
    out.push(brackets[1]);
    Ok(())
}

/// The item count of the next block of an array or map, or `None` at the end. A negative
/// count is followed by the block's size in bytes. A count far beyond the bytes left is
/// refused: items of nulls take no bytes, and a forged count must not loop for ever.
fn block(datum: &mut &[u8]) -> Result<Option<u64>, String> {
    let count = long(datum)?;
    if count < 0 {
        long(datum)?;
    }
    let count = count.unsigned_abs();
    if count > datum.len() as u64 + 65_536 {
        return Err(format!("a block of {count} items in {} bytes", datum.len()));
    }
    Ok((count != 0).then_some(count))
}

fn string(out: &mut Vec<u8>, text: &str) -> Result<(), String> {
    serde_json::to_writer(&mut *out, text).map_err(|e| e.to_string())
}

fn byte_array(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'[');
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let _ = write!(out, "{b}");
    }
    out.push(b']');
}

/// A float as a JSON number of its shortest text, as `serde_json` writes one; not a number is
/// text, which the parser refuses.
fn float(out: &mut Vec<u8>, x: f64) -> Result<(), String> {
    match serde_json::Number::from_f64(x) {
        Some(number) => serde_json::to_writer(&mut *out, &number).map_err(|e| e.to_string()),
        None => string(out, &x.to_string()),
    }
}

/// A decimal's two's-complement big-endian unscaled value at `scale` as text.
pub fn decimal_text(bytes: &[u8], scale: usize) -> Result<String, String> {
    if bytes.len() > 16 {
        return Err(format!("a decimal of {} bytes is beyond 128 bits", bytes.len()));
    }
    let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
    let mut full = [if negative { 0xff } else { 0 }; 16];
    full[16 - bytes.len()..].copy_from_slice(bytes);
    let unscaled = i128::from_be_bytes(full);
    let digits = unscaled.unsigned_abs().to_string();
    let sign = if unscaled < 0 { "-" } else { "" };
    Ok(match scale {
        0 => format!("{sign}{digits}"),
        _ if digits.len() > scale => {
            let (whole, fraction) = digits.split_at(digits.len() - scale);
            format!("{sign}{whole}.{fraction}")
        }
        _ => format!("{sign}0.{}{digits}", "0".repeat(scale - digits.len())),
    })
}
