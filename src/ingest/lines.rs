//! Line-oriented reading of plain and gzipped files, a block at a time.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

const INITIAL_BUFFER: usize = 1 << 20;

/// The UTF-8 byte order mark some tools write at the start of a text file.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// True when the file starts with the gzip magic bytes.
pub fn is_gzip(path: &Path) -> io::Result<bool> {
    let mut magic = [0u8; 2];
    let mut file = File::open(path)?;
    let mut read = 0;
    while read < 2 {
        match file.read(&mut magic[read..])? {
            0 => return Ok(false),
            n => read += n,
        }
    }
    Ok(magic == [0x1f, 0x8b])
}

/// Reads lines without allocating per line: each line is a slice of an internal buffer, valid
/// until the next call. Offsets are byte offsets in the (decompressed) stream.
pub struct LineReader {
    inner: Box<dyn Read + Send>,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
    offset: u64,
    consumed: u64,
}

impl LineReader {
    /// Opens `path` at byte `start` (which must be 0 for gzip files). When `start > 0`, the
    /// partial line before it is skipped, so the first line returned is the first that begins
    /// at or after `start`.
    pub fn open(path: &Path, start: u64) -> io::Result<LineReader> {
        if is_gzip(path)? {
            if start != 0 {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, "gzip input cannot be split"));
            }
            let file = File::open(path)?;
            return Ok(LineReader::new(Box::new(flate2::read::MultiGzDecoder::new(io::BufReader::new(file))), 0));
        }
        let mut file = File::open(path)?;
        if start == 0 {
            return Ok(LineReader::new(Box::new(file), 0));
        }
        file.seek(SeekFrom::Start(start - 1))?;
        let mut reader = LineReader::new(Box::new(file), start - 1);
        // The rest of the line that straddles `start` belongs to the previous block (if the
        // byte before `start` is a line end, this skips just that byte).
        reader.next_line()?;
        Ok(reader)
    }

    /// Wraps any reader positioned at stream offset `offset`.
    pub fn new(inner: Box<dyn Read + Send>, offset: u64) -> LineReader {
        LineReader { inner, buf: vec![0; INITIAL_BUFFER], start: 0, end: 0, eof: false, offset, consumed: 0 }
    }

    /// The offset of the next line.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Bytes returned so far.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// The next line (without its `\n`; a trailing `\r` is kept) and its offset. A UTF-8 byte
    /// order mark at the very start of the stream is not part of the first line's text (the
    /// line still starts at offset 0).
    pub fn next_line(&mut self) -> io::Result<Option<(u64, &[u8])>> {
        let (offset, start, len) = loop {
            if let Some(i) = memchr::memchr(b'\n', &self.buf[self.start..self.end]) {
                let line_start = self.start;
                let offset = self.offset;
                self.start += i + 1;
                self.offset += i as u64 + 1;
                self.consumed += i as u64 + 1;
                break (offset, line_start, i);
            }
            if self.eof {
                if self.start < self.end {
                    let line_start = self.start;
                    let offset = self.offset;
                    let len = self.end - self.start;
                    self.start = self.end;
                    self.offset += len as u64;
                    self.consumed += len as u64;
                    break (offset, line_start, len);
                }
                return Ok(None);
            }
            self.fill()?;
        };
        let line = &self.buf[start..start + len];
        let line = if offset == 0 { line.strip_prefix(BOM).unwrap_or(line) } else { line };
        Ok(Some((offset, line)))
    }

    fn fill(&mut self) -> io::Result<()> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            let len = self.buf.len() * 2;
            self.buf.resize(len, 0);
        }
        loop {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(());
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

/// Line numbers of byte offsets in one plain file, computed on demand by counting line ends
/// from the nearest known point. Only dead letters need line numbers, so a clean file costs
/// nothing; a worker reading its blocks in order counts each byte at most about once, and the
/// file stays open between calls, so a run of bad lines costs a short scan each, not an open.
pub struct LineIndex {
    path: PathBuf,
    file: Option<File>,
    /// A window of the file, `buf[..len]` holding the bytes from `buf_start`: letters of one
    /// block fall in the same window, so a run of bad lines costs no system call per line.
    buf: Vec<u8>,
    buf_start: u64,
    len: usize,
    /// offset -> number of line ends before it
    known: BTreeMap<u64, u64>,
    /// The last answer: (offset, line ends before it).
    last: (u64, u64),
}

impl std::fmt::Debug for LineIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineIndex").field("path", &self.path).field("known", &self.known.len()).finish()
    }
}

/// Known points kept per index: beyond this the oldest are thinned out, so the index stays
/// small on a file with millions of bad lines.
const MAX_KNOWN: usize = 4096;

/// Bytes read into the window at a time.
const WINDOW: usize = 1 << 20;

impl LineIndex {
    /// An index of `path`.
    pub fn new(path: &Path) -> LineIndex {
        let mut known = BTreeMap::new();
        known.insert(0, 0);
        LineIndex { path: path.into(), file: None, buf: Vec::new(), buf_start: 0, len: 0, known, last: (0, 0) }
    }

    /// The 1-based line number of the line starting at `offset`.
    pub fn line_at(&mut self, offset: u64) -> io::Result<u64> {
        // Letters mostly come in file order: start from the last answer when it is behind.
        let (from, lines) = match self.last {
            (at, count) if at <= offset && offset - at < WINDOW as u64 => (at, count),
            _ => self.known.range(..=offset).next_back().map_or((0, 0), |(&a, &c)| (a, c)),
        };
        if from == offset {
            return Ok(lines + 1);
        }
        let mut position = from;
        let mut count = lines;
        while position < offset {
            let window_end = self.buf_start + self.len as u64;
            if position < self.buf_start || position >= window_end {
                self.load(position)?;
                if self.len == 0 {
                    break; // the file ends before `offset`
                }
                continue;
            }
            let start = (position - self.buf_start) as usize;
            let end = (offset.min(window_end) - self.buf_start) as usize;
            count += memchr::memchr_iter(b'\n', &self.buf[start..end]).count() as u64;
            position = self.buf_start + end as u64;
        }
        self.last = (offset, count);
        // Known points at most a window apart are enough to bound every lookup.
        let nearest = self.known.range(..=offset).next_back().map_or(0, |(&a, _)| a);
        if offset - nearest < WINDOW as u64 {
            return Ok(count + 1);
        }
        if self.known.len() >= MAX_KNOWN {
            // Keep every other point: lookups stay within twice the distance.
            let mut keep = false;
            self.known.retain(|&k, _| {
                keep = !keep;
                keep || k == 0
            });
        }
        self.known.insert(offset, count);
        Ok(count + 1)
    }

    /// The text of the line starting at `offset` (without its line end and, at the start of the
    /// file, its byte order mark), when it fits in the window.
    pub fn text_at(&mut self, offset: u64) -> io::Result<Option<&[u8]>> {
        let window_end = self.buf_start + self.len as u64;
        let in_window = |this: &Self| -> Option<usize> {
            let start = offset.checked_sub(this.buf_start).map(|s| s as usize).filter(|&s| s < this.len)?;
            memchr::memchr(b'\n', &this.buf[start..this.len]).map(|end| start + end)
        };
        if offset < self.buf_start || offset >= window_end || in_window(self).is_none() {
            self.load(offset)?;
        }
        let Some(end) = in_window(self).or_else(|| {
            // The last line of the file, without a line end.
            (self.len < self.buf.len() && offset >= self.buf_start && offset < self.buf_start + self.len as u64)
                .then_some(self.len)
        }) else {
            return Ok(None);
        };
        let start = (offset - self.buf_start) as usize;
        let line = &self.buf[start..end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        Ok(Some(if offset == 0 { line.strip_prefix(BOM).unwrap_or(line) } else { line }))
    }

    /// Reads the window starting at `position`.
    fn load(&mut self, position: u64) -> io::Result<()> {
        let file = match &mut self.file {
            Some(file) => file,
            None => self.file.insert(File::open(&self.path)?),
        };
        file.seek(SeekFrom::Start(position))?;
        if self.buf.is_empty() {
            self.buf = vec![0u8; WINDOW];
        }
        self.buf_start = position;
        self.len = 0;
        while self.len < self.buf.len() {
            match file.read(&mut self.buf[self.len..]) {
                Ok(0) => break,
                Ok(n) => self.len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn lines_of(path: &Path, start: u64, end: u64) -> Vec<(u64, String)> {
        let mut reader = LineReader::open(path, start).expect("open");
        let mut out = Vec::new();
        while let Some((offset, line)) = reader.next_line().expect("read") {
            if offset >= end {
                break;
            }
            out.push((offset, String::from_utf8_lossy(line).into_owned()));
        }
        out
    }

    #[test]
    fn blocks_partition_the_lines_exactly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f.csv");
        let text: String = (0..500).map(|i| format!("line {i} {}\n", "x".repeat(i % 17))).collect();
        std::fs::write(&path, &text).expect("write");
        let len = text.len() as u64;
        let all = lines_of(&path, 0, u64::MAX);
        assert_eq!(all.len(), 500);
        for block in [1u64, 7, 64, 1000, len] {
            let mut joined = Vec::new();
            let mut start = 0;
            while start < len {
                joined.extend(lines_of(&path, start, start + block));
                start += block;
            }
            assert_eq!(joined, all, "block size {block}");
        }
        let mut index = LineIndex::new(&path);
        for (n, (offset, text)) in all.iter().enumerate().rev().step_by(37) {
            assert_eq!(index.line_at(*offset).expect("count"), n as u64 + 1);
            assert_eq!(index.text_at(*offset).expect("text"), Some(text.as_bytes()));
        }
    }

    #[test]
    fn reads_gzip_and_a_last_line_without_newline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f.csv.gz");
        let mut enc = flate2::write::GzEncoder::new(File::create(&path).expect("create"), flate2::Compression::fast());
        enc.write_all(b"a,b\r\nc,d\ne,f").expect("write");
        enc.finish().expect("finish");
        let lines = lines_of(&path, 0, u64::MAX);
        assert_eq!(lines, vec![(0, "a,b\r".into()), (5, "c,d".into()), (9, "e,f".into())]);
    }
}
