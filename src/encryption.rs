//! Encryption at rest: files sealed with ChaCha20-Poly1305 in the STREAM construction
//! (`chacha20poly1305`'s `aead::stream`, big-endian 32-bit counter), so that records kept for
//! years (the audit trail) reveal nothing to whoever holds the storage, and any change to a
//! sealed file, its truncation included, is found when it is opened.
//!
//! A sealed file is a header, `SURVEIL-SEALED-1\n` (17 bytes), the key's id (8 bytes) and the
//! stream's nonce prefix (7 random bytes), then chunks, each a 4-byte little-endian length (its
//! top bit set on the last chunk) and that many bytes of ciphertext (plaintext and a 16-byte
//! tag). Every chunk authenticates the header as associated data; the last one is sealed as the
//! last, so a file cut at a chunk boundary does not open as a whole, and a flag set or cleared
//! by hand makes the chunk fail to open. A writer seals a chunk when its buffer fills and when it
//! is flushed, so what was flushed before a crash can still be read back (and is reported as
//! unfinished).
//!
//! A file whose writer stopped (a run killed after a checkpoint) is continued by a new segment
//! after its last whole chunk: another header, with a new random nonce prefix, whose chunks
//! authenticate that header and the SHA-256 of every byte before it. Continuing the old stream
//! would seal new text under nonces already used for the text cut away; a fresh prefix never
//! reuses one, and the digest ties the segment to the bytes it continues, so it cannot be moved
//! onto another file or another cut.
//!
//! The key id is the first 8 bytes of the SHA-256 of `surveil key id\0` and the key: a reader
//! given several keys (an old one and the one that replaced it) picks the file's own, and names
//! it when it is missing.
//!
//! ```
//! use std::io::Write;
//! use surveil::encryption::{EncryptionKey, SealedWriter, open_sealed};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let key = EncryptionKey::from_bytes([7; 32]);
//! let mut writer = SealedWriter::new(Vec::new(), &key)?;
//! writer.write_all(b"{\"account\":\"ACC7\"}\n")?;
//! let sealed = writer.finish()?;
//! assert!(!sealed.windows(4).any(|w| w == b"ACC7"));
//! let opened = open_sealed(&sealed, &[key])?;
//! assert_eq!(opened, b"{\"account\":\"ACC7\"}\n");
//! # Ok(())
//! # }
//! ```

use std::io::Write;

use chacha20poly1305::aead::generic_array::GenericArray;
use chacha20poly1305::aead::stream::{DecryptorBE32, EncryptorBE32};
use chacha20poly1305::aead::{KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key};
use sha2::{Digest, Sha256};

/// The first bytes of a sealed file.
pub const MAGIC: &[u8; 17] = b"SURVEIL-SEALED-1\n";

/// Header length: the magic, the key id and the nonce prefix.
const HEADER: usize = MAGIC.len() + 8 + 7;

/// Plaintext bytes per chunk when the writer is not flushed sooner.
const CHUNK: usize = 64 * 1024;

/// The largest chunk a reader accepts (a corrupt length must not allocate gigabytes).
const MAX_CHUNK: usize = 16 * 1024 * 1024;

/// The flag of a chunk's length that says it is sealed as the last.
const LAST: u32 = 1 << 31;

/// The environment variable that may hold the key for encrypting the audit trail.
pub const KEY_VARIABLE: &str = "SURVEIL_ENCRYPTION_KEY";

/// A 256-bit key and its id.
#[derive(Clone)]
pub struct EncryptionKey {
    key: [u8; 32],
    id: [u8; 8],
}

impl std::fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key itself.
        write!(f, "EncryptionKey({})", self.id_hex())
    }
}

impl EncryptionKey {
    /// The key of 32 bytes.
    pub fn from_bytes(key: [u8; 32]) -> EncryptionKey {
        let mut hasher = Sha256::new();
        hasher.update(b"surveil key id\0");
        hasher.update(key);
        let digest = hasher.finalize();
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        EncryptionKey { key, id }
    }

    /// The key from 64 hexadecimal digits (surrounding white space ignored).
    pub fn from_hex(text: &str) -> Option<EncryptionKey> {
        crate::model::hex::decode::<32>(text).map(EncryptionKey::from_bytes)
    }

    /// The key in the file at `path` (as `surveil audit keygen --encryption` writes it).
    pub fn from_file(path: &std::path::Path) -> Result<EncryptionKey, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        EncryptionKey::from_hex(&text).ok_or_else(|| {
            format!(
                "{}: not an encryption key (64 hex digits, as `surveil audit keygen --encryption` writes)",
                path.display()
            )
        })
    }

    /// A new random key, as 64 hexadecimal digits.
    pub fn generate_hex() -> String {
        let mut key = [0u8; 32];
        rand::Rng::fill(&mut rand::rng(), &mut key);
        crate::model::hex::encode(&key)
    }

    /// The key's id in hex (16 digits): safe to show, it does not reveal the key.
    pub fn id_hex(&self) -> String {
        crate::model::hex::encode(&self.id)
    }

    /// A key for another purpose (HKDF-SHA256 of this key, with `purpose` as its info), so
    /// that one configured key never serves two ciphers.
    #[cfg(feature = "archive")]
    pub(crate) fn derive(&self, purpose: &[u8]) -> [u8; 32] {
        let mut out = [0u8; 32];
        // 32 bytes is far below HKDF's limit of 255 hash lengths: expand cannot fail.
        let _ = hkdf::Hkdf::<Sha256>::new(None, &self.key).expand(purpose, &mut out);
        out
    }

    fn cipher(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(Key::from_slice(&self.key))
    }
}

/// The keys in the environment variable [`KEY_VARIABLE`] (several may be given, separated by
/// commas, while keys rotate); none when it is not set. A value that is not keys is an error.
pub fn keys_from_environment() -> Result<Vec<EncryptionKey>, String> {
    match std::env::var(KEY_VARIABLE) {
        Ok(text) => text
            .split(',')
            .map(|k| EncryptionKey::from_hex(k).ok_or_else(|| format!("{KEY_VARIABLE}: not keys of 64 hex digits")))
            .collect(),
        Err(std::env::VarError::NotPresent) => Ok(Vec::new()),
        Err(std::env::VarError::NotUnicode(_)) => Err(format!("{KEY_VARIABLE} is set but is not text")),
    }
}

/// The key a run seals its audit trail with: `audit.encryption_key` of `config`, else the key
/// in [`KEY_VARIABLE`] (exactly one: a run writes with one key; several are for readers while
/// keys rotate), else none.
pub fn key_for_writing(config: &crate::config::Config) -> Result<Option<EncryptionKey>, String> {
    match &config.audit.encryption_key {
        Some(path) => EncryptionKey::from_file(path).map(Some).map_err(|e| format!("audit.encryption_key {e}")),
        None => {
            let mut keys = keys_from_environment()?;
            if keys.len() > 1 {
                return Err(format!(
                    "{KEY_VARIABLE} holds {} keys: a run seals with one; name it in audit.encryption_key",
                    keys.len()
                ));
            }
            Ok(keys.pop())
        }
    }
}

/// The keys a reader of `config`'s runs may need: its writing key and those of the environment.
pub fn keys_for_reading(config: &crate::config::Config) -> Vec<EncryptionKey> {
    let mut keys = keys_from_environment().unwrap_or_default();
    if let Some(key) = config.audit.encryption_key.as_deref().and_then(|path| EncryptionKey::from_file(path).ok()) {
        keys.push(key);
    }
    keys
}

/// Why a sealed file does not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealedError {
    /// The file is not sealed (no header).
    #[error("not a sealed file (it does not start with SURVEIL-SEALED-1)")]
    NotSealed,
    /// None of the keys given is the file's.
    #[error("sealed with key {id}, which was not given (keys given: {given})")]
    UnknownKey {
        /// The file's key id.
        id: String,
        /// The ids of the keys given.
        given: String,
    },
    /// A chunk does not authenticate: the file was changed, or chunks were moved.
    #[error("chunk {chunk} (at byte {offset}) was changed or moved: it does not authenticate with the file's key")]
    Tampered {
        /// Chunk number, from 0.
        chunk: u64,
        /// Its byte offset in the file.
        offset: u64,
    },
    /// The file ends in the middle of a chunk: it was cut.
    #[error("the file ends inside chunk {chunk} (at byte {offset}): it was cut")]
    Cut {
        /// Chunk number, from 0.
        chunk: u64,
        /// Its byte offset in the file.
        offset: u64,
    },
    /// The file ends without its last chunk: it was cut, or its writer never finished.
    #[error(
        "the file ends after {chunks} chunk(s) without its last one: it was cut, or the writer stopped before \
         finishing it ({readable} bytes before the cut read back)"
    )]
    Unfinished {
        /// Chunks read.
        chunks: u64,
        /// Bytes of plaintext read back before the end.
        readable: usize,
        /// What could be read.
        plaintext: Vec<u8>,
    },
}

/// Whether `bytes` start like a sealed file.
pub fn is_sealed(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// Writes a sealed file: buffers plaintext and seals it in chunks; [`SealedWriter::finish`]
/// seals the last. Dropped without `finish`, the file is unfinished (what was flushed can be
/// read back, and is reported as cut).
pub struct SealedWriter<W: Write> {
    out: W,
    encryptor: Option<EncryptorBE32<ChaCha20Poly1305>>,
    header: Vec<u8>,
    buffer: Vec<u8>,
}

impl<W: Write> SealedWriter<W> {
    /// Starts a sealed file on `out` with `key` (and a new random nonce prefix).
    pub fn new(out: W, key: &EncryptionKey) -> std::io::Result<SealedWriter<W>> {
        SealedWriter::segment(out, key, None)
    }

    /// Continues an unfinished sealed file: `out` writes after its last whole chunk, and
    /// `before` reads every byte of the file up to there. The text written opens as the rest of
    /// the file's text.
    pub fn continuing(out: W, key: &EncryptionKey, mut before: impl std::io::Read) -> std::io::Result<SealedWriter<W>> {
        let mut start = [0u8; MAGIC.len()];
        before.read_exact(&mut start).map_err(|_| std::io::Error::other(SealedError::NotSealed))?;
        if start != *MAGIC {
            return Err(std::io::Error::other(SealedError::NotSealed));
        }
        let mut digest = Sha256::new();
        digest.update(start);
        std::io::copy(&mut before, &mut digest)?;
        SealedWriter::segment(out, key, Some(digest.finalize().into()))
    }

    /// Writes a segment's header; a continuation's chunks also authenticate `before`, the
    /// digest of the bytes it follows.
    fn segment(mut out: W, key: &EncryptionKey, before: Option<[u8; 32]>) -> std::io::Result<SealedWriter<W>> {
        let mut nonce = [0u8; 7];
        rand::Rng::fill(&mut rand::rng(), &mut nonce);
        let mut header = MAGIC.to_vec();
        header.extend_from_slice(&key.id);
        header.extend_from_slice(&nonce);
        out.write_all(&header)?;
        if let Some(digest) = before {
            header.extend_from_slice(&digest);
        }
        let encryptor = EncryptorBE32::from_aead(key.cipher(), GenericArray::from_slice(&nonce));
        Ok(SealedWriter { out, encryptor: Some(encryptor), header, buffer: Vec::with_capacity(CHUNK) })
    }

    fn seal_chunk(&mut self, last: bool) -> std::io::Result<()> {
        let failed = |_| std::io::Error::other("the stream cipher refused a chunk (more than 2^32 chunks)");
        let payload = Payload { msg: &self.buffer, aad: &self.header };
        let ciphertext = if last {
            let Some(encryptor) = self.encryptor.take() else { return Ok(()) };
            encryptor.encrypt_last(payload).map_err(failed)?
        } else {
            let Some(encryptor) = self.encryptor.as_mut() else {
                return Err(std::io::Error::other("the sealed file is already finished"));
            };
            encryptor.encrypt_next(payload).map_err(failed)?
        };
        let length = u32::try_from(ciphertext.len())
            .ok()
            .filter(|l| l & LAST == 0)
            .ok_or_else(|| std::io::Error::other("chunk too large"))?;
        let frame = if last { length | LAST } else { length };
        self.out.write_all(&frame.to_le_bytes())?;
        self.out.write_all(&ciphertext)?;
        self.buffer.clear();
        Ok(())
    }

    /// Seals what is buffered as the last chunk and returns the writer, flushed.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.seal_chunk(true)?;
        self.out.flush()?;
        // `self` has no Drop of its own to run: move the writer out.
        Ok(self.out)
    }

    /// The underlying writer.
    pub fn get_ref(&self) -> &W {
        &self.out
    }
}

impl<W: Write> Write for SealedWriter<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.encryptor.is_none() {
            return Err(std::io::Error::other("the sealed file is already finished"));
        }
        let room = CHUNK - self.buffer.len();
        let taken = bytes.len().min(room);
        self.buffer.extend_from_slice(&bytes[..taken]);
        if self.buffer.len() == CHUNK {
            self.seal_chunk(false)?;
        }
        Ok(taken)
    }

    /// Seals what is buffered as a chunk of its own, so that it is on disk in a form that can be
    /// read back.
    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buffer.is_empty() && self.encryptor.is_some() {
            self.seal_chunk(false)?;
        }
        self.out.flush()
    }
}

/// The plaintext of a sealed file, opened with whichever of `keys` is its own (each segment's,
/// when the file was continued).
pub fn open_sealed(bytes: &[u8], keys: &[EncryptionKey]) -> Result<Vec<u8>, SealedError> {
    if !is_sealed(bytes) {
        return Err(SealedError::NotSealed);
    }
    let mut plaintext = Vec::with_capacity(bytes.len());
    let (mut at, mut chunk) = (0usize, 0u64);
    // One segment per pass: the file's own, then each continuation.
    loop {
        let start = at;
        let Some(header) = bytes.get(at..at + HEADER) else {
            return Err(SealedError::Cut { chunk, offset: at as u64 });
        };
        at += HEADER;
        let id = &header[MAGIC.len()..MAGIC.len() + 8];
        let Some(key) = keys.iter().find(|k| k.id == id) else {
            return Err(SealedError::UnknownKey {
                id: crate::model::hex::encode(id),
                given: if keys.is_empty() {
                    "none".into()
                } else {
                    keys.iter().map(EncryptionKey::id_hex).collect::<Vec<_>>().join(", ")
                },
            });
        };
        let mut aad = header.to_vec();
        if start > 0 {
            aad.extend_from_slice(&Sha256::digest(&bytes[..start]));
        }
        let nonce = GenericArray::from_slice(&header[MAGIC.len() + 8..]);
        let mut decryptor = DecryptorBE32::from_aead(key.cipher(), nonce);
        loop {
            if at == bytes.len() {
                return Err(SealedError::Unfinished { chunks: chunk, readable: plaintext.len(), plaintext });
            }
            if MAGIC.starts_with(&bytes[at..]) {
                return Err(SealedError::Cut { chunk, offset: at as u64 });
            }
            if bytes[at..].starts_with(MAGIC) {
                // A continuation (no chunk's length starts with these bytes: it would be far
                // above the largest chunk).
                break;
            }
            let tampered = SealedError::Tampered { chunk, offset: at as u64 };
            let cut = SealedError::Cut { chunk, offset: at as u64 };
            let Some(frame) = bytes.get(at..at + 4) else { return Err(cut) };
            let frame = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]);
            let (last, length) = (frame & LAST != 0, (frame & !LAST) as usize);
            if length > MAX_CHUNK + 16 {
                return Err(tampered);
            }
            let Some(ciphertext) = bytes.get(at + 4..at + 4 + length) else { return Err(cut) };
            let payload = Payload { msg: ciphertext, aad: &aad };
            at += 4 + length;
            if last {
                // The flag is not trusted: a chunk not sealed as the last does not open as one.
                let end = decryptor.decrypt_last(payload).map_err(|_| tampered)?;
                if at != bytes.len() {
                    return Err(SealedError::Tampered { chunk: chunk + 1, offset: at as u64 });
                }
                plaintext.extend(end);
                return Ok(plaintext);
            }
            plaintext.extend(decryptor.decrypt_next(payload).map_err(|_| tampered)?);
            chunk += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(text: &[u8], key: &EncryptionKey, flush_every: usize) -> Vec<u8> {
        let mut writer = SealedWriter::new(Vec::new(), key).expect("writer");
        for piece in text.chunks(flush_every.max(1)) {
            writer.write_all(piece).expect("write");
            writer.flush().expect("flush");
        }
        writer.finish().expect("finish")
    }

    #[test]
    fn what_is_sealed_opens_with_its_key_only() {
        let key = EncryptionKey::from_bytes([1; 32]);
        let text: Vec<u8> =
            (0..200_000u32).flat_map(|i| format!("{{\"account\":\"ACC{i}\"}}\n").into_bytes()).collect();
        for flush_every in [1_000, CHUNK, text.len()] {
            let bytes = sealed(&text, &key, flush_every);
            assert!(is_sealed(&bytes));
            assert!(!bytes.windows(6).any(|w| w == b"ACC199"), "no plaintext");
            assert_eq!(open_sealed(&bytes, std::slice::from_ref(&key)).expect("opens"), text);
        }
        assert_eq!(open_sealed(&sealed(b"", &key, 1), std::slice::from_ref(&key)), Ok(Vec::new()));
        let other = EncryptionKey::from_bytes([2; 32]);
        let bytes = sealed(b"x", &key, 1);
        let error = open_sealed(&bytes, std::slice::from_ref(&other)).expect_err("another key");
        assert!(matches!(&error, SealedError::UnknownKey { id, .. } if *id == key.id_hex()), "{error}");
        // Rotation: a reader holding the old key and the new opens both.
        let ring = [other.clone(), key.clone()];
        assert!(open_sealed(&bytes, &ring).is_ok() && open_sealed(&sealed(b"y", &other, 1), &ring).is_ok());
        assert_eq!(open_sealed(b"{\"seq\":1}", &ring), Err(SealedError::NotSealed));
        assert!(format!("{key:?}").contains(&key.id_hex()) && !format!("{key:?}").contains("0101"));
    }

    #[test]
    fn a_changed_cut_or_reordered_file_does_not_open() {
        let key = EncryptionKey::from_bytes([9; 32]);
        let keys = std::slice::from_ref(&key);
        let text = b"first line\nsecond line\nthird line\n";
        let bytes = sealed(text, &key, 11);
        // Every single byte changed after the magic is found.
        for i in MAGIC.len()..bytes.len() {
            let mut changed = bytes.clone();
            changed[i] ^= 0x20;
            assert!(open_sealed(&changed, keys).is_err(), "byte {i}");
        }
        // Cut at a chunk boundary: the first chunks read back, reported as unfinished.
        let first_chunk = HEADER + 4 + 11 + 16;
        match open_sealed(&bytes[..first_chunk], keys) {
            Err(SealedError::Unfinished { chunks: 1, plaintext, .. }) => assert_eq!(plaintext, b"first line\n"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(open_sealed(&bytes[..first_chunk + 3], keys), Err(SealedError::Cut { chunk: 1, .. })));
        assert!(matches!(open_sealed(&bytes[..bytes.len() - 1], keys), Err(SealedError::Cut { .. })));
        assert!(matches!(open_sealed(&bytes[..HEADER - 3], keys), Err(SealedError::Cut { chunk: 0, .. })));
        // Two chunks swapped.
        let second = first_chunk + 4 + 11 + 16;
        let mut swapped = bytes[..HEADER].to_vec();
        swapped.extend_from_slice(&bytes[first_chunk..second]);
        swapped.extend_from_slice(&bytes[HEADER..first_chunk]);
        swapped.extend_from_slice(&bytes[second..]);
        assert!(matches!(open_sealed(&swapped, keys), Err(SealedError::Tampered { chunk: 0, .. })));
        // Bytes after the last chunk.
        let mut longer = bytes.clone();
        longer.extend_from_slice(&bytes[HEADER..first_chunk]);
        assert!(open_sealed(&longer, keys).is_err());
        // A file written without finishing: what was flushed reads back.
        let mut writer = SealedWriter::new(Vec::new(), &key).expect("writer");
        writer.write_all(b"kept\n").expect("write");
        writer.flush().expect("flush");
        writer.write_all(b"lost\n").expect("write");
        let unfinished = writer.get_ref().clone();
        assert!(matches!(open_sealed(&unfinished, keys), Err(SealedError::Unfinished { readable: 5, .. })));
    }

    /// The file a writer left when it stopped after flushing `kept` (and writing `lost`).
    fn stopped(key: &EncryptionKey, previous: Option<&[u8]>, kept: &[u8], lost: &[u8]) -> Vec<u8> {
        let mut writer = match previous {
            Some(before) => SealedWriter::continuing(before.to_vec(), key, before).expect("continue"),
            None => SealedWriter::new(Vec::new(), key).expect("writer"),
        };
        writer.write_all(kept).expect("write");
        writer.flush().expect("flush");
        writer.write_all(lost).expect("write");
        writer.get_ref().clone()
    }

    #[test]
    fn a_stopped_file_continues_and_the_continuation_stays_where_it_was_written() {
        let key = EncryptionKey::from_bytes([4; 32]);
        let keys = std::slice::from_ref(&key);
        // Written, stopped, cut back to what was flushed, continued twice (once with nothing
        // flushed in between), then finished.
        let first = stopped(&key, None, b"one\n", b"lost\n");
        let second = stopped(&key, Some(&first), b"two\n", b"");
        let empty = stopped(&key, Some(&second), b"", b"");
        let mut writer = SealedWriter::continuing(empty.clone(), &key, empty.as_slice()).expect("continue");
        writer.write_all(b"three\n").expect("write");
        let whole = writer.finish().expect("finish");
        assert_eq!(open_sealed(&whole, keys).expect("opens"), b"one\ntwo\nthree\n");
        assert!(!whole.windows(5).any(|w| w == b"three"), "no plaintext");
        // Stopped again before the end: what was flushed reads back, reported as unfinished.
        match open_sealed(&second, keys) {
            Err(SealedError::Unfinished { chunks: 2, plaintext, .. }) => assert_eq!(plaintext, b"one\ntwo\n"),
            other => panic!("{other:?}"),
        }
        // Every byte of the continued file is checked.
        for i in MAGIC.len()..whole.len() {
            let mut changed = whole.clone();
            changed[i] ^= 0x20;
            assert!(open_sealed(&changed, keys).is_err(), "byte {i}");
        }
        // A continuation moved onto another file (or another cut of this one) does not open.
        let other = stopped(&key, None, b"one\n", b"");
        let continuation = &whole[first.len()..];
        let mut moved = other.clone();
        moved.extend_from_slice(continuation);
        assert_eq!(other.len(), first.len());
        assert!(matches!(open_sealed(&moved, keys), Err(SealedError::Tampered { chunk: 1, .. })), "moved");
        // A file cut inside a continuation's header is cut, not changed.
        for cut in [first.len() + 5, first.len() + HEADER - 1] {
            assert!(matches!(open_sealed(&second[..cut], keys), Err(SealedError::Cut { chunk: 1, .. })), "{cut}");
        }
        // Only a sealed file is continued.
        assert!(SealedWriter::continuing(Vec::new(), &key, &b"{\"seq\":1}\n"[..]).is_err());
        // A continuation sealed with a key not given names it.
        let rotated = EncryptionKey::from_bytes([5; 32]);
        let mixed = stopped(&rotated, Some(&first), b"two\n", b"");
        assert!(matches!(open_sealed(&mixed, keys), Err(SealedError::UnknownKey { .. })));
        assert!(
            open_sealed(&mixed, &[key.clone(), rotated])
                .is_err_and(|e| matches!(e, SealedError::Unfinished { chunks: 2, .. }))
        );
    }

    #[test]
    fn keys_read_from_hex() {
        let text = EncryptionKey::generate_hex();
        let key = EncryptionKey::from_hex(&format!("{text}\n")).expect("key");
        assert_eq!(key.id_hex().len(), 16);
        assert!(EncryptionKey::from_hex(&text[1..]).is_none());
        assert!(EncryptionKey::from_hex(&"z".repeat(64)).is_none());
        assert!(EncryptionKey::from_hex(&format!("+{}", &text[1..])).is_none());
    }
}
