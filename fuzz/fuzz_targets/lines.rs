#![no_main]
//! The line reader over plain and gzipped bytes: every byte belongs to exactly one line, and a
//! corrupt gzip stream is an error, never a panic.

use std::io::Write;

use libfuzzer_sys::fuzz_target;
use surveil::ingest::lines::LineReader;

fuzz_target!(|data: &[u8]| {
    let mut reader = LineReader::new(Box::new(std::io::Cursor::new(data.to_vec())), 0);
    let mut total = 0u64;
    let mut last_end = 0u64;
    while let Ok(Some((offset, line))) = reader.next_line() {
        assert_eq!(offset, last_end, "lines are contiguous");
        let bom = if offset == 0 && data.starts_with(b"\xEF\xBB\xBF") { 3 } else { 0 };
        let has_end = data.get((offset as usize) + bom + line.len()) == Some(&b'\n');
        last_end = offset + bom as u64 + line.len() as u64 + u64::from(has_end);
        total = last_end;
    }
    assert_eq!(total, data.len() as u64, "every byte is read");
    // The same bytes through gzip, then cut: an error or a prefix of the lines, never a panic.
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    if encoder.write_all(data).is_err() {
        return;
    }
    let Ok(gz) = encoder.finish() else { return };
    let cut = gz.len() * 2 / 3;
    let decoder = flate2::read::MultiGzDecoder::new(std::io::Cursor::new(gz[..cut].to_vec()));
    let mut reader = LineReader::new(Box::new(decoder), 0);
    while let Ok(Some(_)) = reader.next_line() {}
});
