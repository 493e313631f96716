//! The audit trail: a hash-chained, append-only log of what a run saw and decided.
//!
//! Each record is one JSON line, `{"seq":N,"kind":K,"prev":P,"data":{...},"hash":H}`, where `H`
//! is the SHA-256 of the line up to (not including) `,"hash":` and `P` is the previous record's
//! `H` (64 zeros for the first). Changing a byte of a record breaks its own hash; deleting,
//! inserting or moving a record breaks the sequence numbers and the link to the record before.
//! The hash of the last record (the head) and the number of records go into `summary.json`,
//! so even a log rewritten from the first changed record on, with every hash recomputed, no
//! longer matches its run's summary ([`verify`] with `expected_head`).
//!
//! A run writes a `run_started` record (the surveil version, a digest of the effective
//! configuration, each input's path, size and modification time), one `alert` record per alert
//! with the alert as written to `alerts.jsonl`, and a `run_finished` record with what was
//! written (alerts by rule, dead letters by reason, late events).
//!
//! Hashes alone cannot stop someone who rewrites the log and its summary together. A log
//! signed with an Ed25519 key ([`AuditLog::signed`]) carries `checkpoint` records, each the
//! key's signature of the head before it, and ends with one; [`verify_signed`] checks them
//! against the public key, which the rewriter does not have.
//!
//! ```
//! use surveil::audit::{AuditLog, verify};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut log = AuditLog::new(Vec::new());
//! log.append("note", &serde_json::json!({"text": "hello"}))?;
//! log.append("note", &serde_json::json!({"text": "again"}))?;
//! let head = log.head();
//! let text = String::from_utf8(log.into_inner())?;
//! assert_eq!(verify(&text, Some(&head))?.records, 2);
//! assert!(verify(&text.replace("again", "agaim"), None).is_err());
//! # Ok(())
//! # }
//! ```

use std::io::Write;

use ed25519_dalek::{Signature, Signer, Verifier};
pub use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::model::hex::{decode as unhex, encode as hex};

/// The audit log's file name in an output folder.
pub const AUDIT: &str = "audit.jsonl";

/// The `prev` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Writes audit records, chaining each to the one before.
pub struct AuditLog<W: Write> {
    out: W,
    seq: u64,
    head: String,
    line: Vec<u8>,
    signer: Option<(SigningKey, u64)>,
    /// The last record is a checkpoint.
    signed_to_end: bool,
    /// Records since the last checkpoint.
    unsigned: u64,
}

impl<W: Write> AuditLog<W> {
    /// An empty log writing to `out`.
    pub fn new(out: W) -> AuditLog<W> {
        AuditLog {
            out,
            seq: 0,
            head: GENESIS.to_string(),
            line: Vec::with_capacity(1024),
            signer: None,
            signed_to_end: false,
            unsigned: 0,
        }
    }

    /// Continues a log that already holds `verified`'s records ([`verify`]), appending to `out`.
    pub fn resume(out: W, verified: &Verified) -> AuditLog<W> {
        let mut log = AuditLog::new(out);
        log.seq = verified.records;
        log.head = verified.head.clone();
        log
    }

    /// Continues a log whose writer stood at `position` ([`AuditLog::position`]) when it was
    /// last synced: a run resumed from a checkpoint.
    pub fn resume_at(out: W, position: &AuditPosition) -> AuditLog<W> {
        let mut log = AuditLog::new(out);
        log.seq = position.records;
        log.head = position.head.clone();
        log.unsigned = position.unsigned;
        log.signed_to_end = position.signed_to_end;
        log
    }

    /// Where the chain stands: enough to continue it with [`AuditLog::resume_at`].
    pub fn position(&self) -> AuditPosition {
        AuditPosition {
            records: self.seq,
            head: self.head.clone(),
            unsigned: self.unsigned,
            signed_to_end: self.signed_to_end,
        }
    }

    /// Signs the log with `key`: a `checkpoint` record after every `every` records (0: only
    /// when asked, [`AuditLog::checkpoint`]), each signing the head before it.
    pub fn signed(mut self, key: SigningKey, every: u64) -> AuditLog<W> {
        self.signer = Some((key, every));
        self
    }

    /// Appends a signed `checkpoint` record covering every record so far (nothing when the log
    /// is not signed).
    pub fn checkpoint(&mut self) -> std::io::Result<()> {
        let Some((key, _)) = &self.signer else { return Ok(()) };
        if self.signed_to_end {
            return Ok(());
        }
        let signature = key.sign(&checkpoint_message(self.seq, &self.head));
        let data = serde_json::json!({
            "covers": self.seq,
            "head": self.head,
            "public_key": hex(key.verifying_key().as_bytes()),
            "signature": hex(&signature.to_bytes()),
        });
        self.write_record("checkpoint", &data)?;
        self.signed_to_end = true;
        self.unsigned = 0;
        Ok(())
    }

    /// Appends one record of `kind` with `data` (and a checkpoint after it when one is due).
    pub fn append<T: Serialize + ?Sized>(&mut self, kind: &str, data: &T) -> std::io::Result<()> {
        self.write_record(kind, data)?;
        self.unsigned += 1;
        match self.signer {
            Some((_, every)) if every > 0 && self.unsigned >= every => self.checkpoint(),
            _ => Ok(()),
        }
    }

    fn write_record<T: Serialize + ?Sized>(&mut self, kind: &str, data: &T) -> std::io::Result<()> {
        self.signed_to_end = false;
        self.seq += 1;
        self.line.clear();
        self.line.extend_from_slice(format!("{{\"seq\":{},\"kind\":", self.seq).as_bytes());
        serde_json::to_writer(&mut self.line, kind)?;
        self.line.extend_from_slice(format!(",\"prev\":\"{}\",\"data\":", self.head).as_bytes());
        serde_json::to_writer(&mut self.line, data)?;
        self.head = hex(&Sha256::digest(&self.line));
        self.line.extend_from_slice(format!(",\"hash\":\"{}\"}}\n", self.head).as_bytes());
        self.out.write_all(&self.line)
    }

    /// The hash of the last record ([`GENESIS`] before the first).
    pub fn head(&self) -> String {
        self.head.clone()
    }

    /// Records written.
    pub fn records(&self) -> u64 {
        self.seq
    }

    /// The writer.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }

    /// The writer, and the end of the log.
    pub fn into_inner(self) -> W {
        self.out
    }
}

/// Bytes per block of an input's digest: a digest per block says where an input changed.
pub const DIGEST_BLOCK: usize = 8 << 20;

/// The digest of an input as a run read it: the SHA-256 of each block of [`DIGEST_BLOCK`]
/// bytes (the last one shorter), and of the file as the SHA-256 of those digests' bytes in
/// order (one pass over the file, not two).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct InputDigest {
    /// The input's path.
    pub path: String,
    /// Its size.
    pub bytes: u64,
    /// The SHA-256 of the blocks' digests (32 bytes each, in order).
    pub sha256: String,
    /// Bytes per block.
    pub block_bytes: u64,
    /// The SHA-256 of each block, in order.
    pub blocks: Vec<String>,
}

/// The digest of the regular file at `path` in blocks of `block_bytes`, of at most `limit`
/// bytes (the size it had when the run planned its reading); `None` when `stop()` says to give
/// up first.
pub fn digest_input(
    path: &std::path::Path,
    block_bytes: usize,
    limit: u64,
    stop: &dyn Fn() -> bool,
) -> std::io::Result<Option<InputDigest>> {
    use std::io::Read;
    if block_bytes == 0 {
        return Err(std::io::Error::other("a block of 0 bytes"));
    }
    if !std::fs::metadata(path)?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut file = std::io::Read::take(std::fs::File::open(path)?, limit);
    let (mut whole, mut block) = (Sha256::new(), Sha256::new());
    let (mut blocks, mut bytes, mut in_block) = (Vec::new(), 0u64, 0usize);
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        if stop() {
            return Ok(None);
        }
        let read = match file.read(&mut buffer[..(block_bytes - in_block).min(1 << 20)]) {
            Ok(read) => read,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if read > 0 {
            block.update(&buffer[..read]);
            in_block += read;
            bytes += read as u64;
        }
        if (read == 0 && in_block > 0) || in_block == block_bytes {
            let digest = std::mem::take(&mut block).finalize();
            whole.update(digest);
            blocks.push(hex(&digest));
            in_block = 0;
        }
        if read == 0 {
            break;
        }
    }
    Ok(Some(InputDigest {
        path: path.display().to_string(),
        bytes,
        sha256: hex(&whole.finalize()),
        block_bytes: block_bytes as u64,
        blocks,
    }))
}

/// What an input is now, against the digest its run recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InputCheck {
    /// The same bytes.
    Unchanged {
        /// The input.
        path: String,
    },
    /// Different bytes: from the first block that differs.
    Changed {
        /// The input.
        path: String,
        /// The first byte of the first block that differs.
        from: u64,
        /// The size recorded.
        recorded_bytes: u64,
        /// The size now.
        bytes: u64,
    },
    /// The input cannot be read now.
    Unreadable {
        /// The input.
        path: String,
        /// Why.
        error: String,
    },
    /// The run did not record a digest of it (it was stopped first, or read from a stream).
    NotRecorded {
        /// The input.
        path: String,
        /// Why, as the run said.
        why: String,
    },
}

/// Checks the inputs a run's log names (the `input_digests` of its `run_finished` record)
/// against the files as they are now.
pub fn check_inputs(text: &str) -> Vec<InputCheck> {
    let finished = text
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|record| record["kind"] == "run_finished");
    let recorded = finished.map(|record| record["data"]["input_digests"].clone()).unwrap_or_default();
    let mut checks = Vec::new();
    for entry in recorded.as_array().into_iter().flatten() {
        let path = entry["path"].as_str().unwrap_or_default().to_string();
        let Ok(then) = serde_json::from_value::<InputDigest>(entry.clone()) else {
            let why = entry["not_hashed"].as_str().unwrap_or("no digest recorded").to_string();
            checks.push(InputCheck::NotRecorded { path, why });
            continue;
        };
        // The recorded block size (at most 1 GiB) and at most one block more than was read.
        let Some(block) = usize::try_from(then.block_bytes).ok().filter(|b| (1..=1 << 30).contains(b)) else {
            checks.push(InputCheck::NotRecorded { path, why: format!("a block size of {}", then.block_bytes) });
            continue;
        };
        let limit = then.bytes.saturating_add(then.block_bytes);
        let now = match digest_input(std::path::Path::new(&then.path), block, limit, &|| false) {
            Ok(Some(now)) => now,
            Ok(None) => continue,
            Err(e) => {
                checks.push(InputCheck::Unreadable { path, error: e.to_string() });
                continue;
            }
        };
        if now.sha256 == then.sha256 && now.bytes == then.bytes {
            checks.push(InputCheck::Unchanged { path });
            continue;
        }
        let same = then.blocks.iter().zip(&now.blocks).take_while(|(a, b)| a == b).count() as u64;
        checks.push(InputCheck::Changed {
            path,
            from: same.saturating_mul(then.block_bytes),
            recorded_bytes: then.bytes,
            bytes: now.bytes,
        });
    }
    checks
}

/// Why a log (or any file a run may seal) cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadLogError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is encrypted and cannot be opened with the keys given.
    #[error("{path} is encrypted: {source} (give the key with --key FILE, or in SURVEIL_ENCRYPTION_KEY)")]
    Sealed {
        /// The file.
        path: std::path::PathBuf,
        /// Why it does not open.
        source: crate::encryption::SealedError,
    },
    /// The file is not text.
    #[error("{0} is not UTF-8 text")]
    NotText(std::path::PathBuf),
}

/// The text of a log at `path`, opened with `keys` if it is encrypted
/// ([`crate::encryption`]); a plain log is read as it is.
pub fn read_log(path: &std::path::Path, keys: &[crate::encryption::EncryptionKey]) -> Result<String, ReadLogError> {
    let bytes = std::fs::read(path).map_err(|source| ReadLogError::Io { path: path.to_path_buf(), source })?;
    let bytes = if crate::encryption::is_sealed(&bytes) {
        crate::encryption::open_sealed(&bytes, keys)
            .map_err(|source| ReadLogError::Sealed { path: path.to_path_buf(), source })?
    } else {
        bytes
    };
    String::from_utf8(bytes).map_err(|_| ReadLogError::NotText(path.to_path_buf()))
}

/// The SHA-256 of `bytes`, in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The digest of a configuration as a run records it (`config_sha256` of `run_started`): the
/// SHA-256 of its debug form, every default included (deterministic: it holds no hash maps).
pub fn config_digest(config: &crate::config::Config) -> String {
    sha256_hex(format!("{config:?}").as_bytes())
}

/// The digest of what the order-to-trade values and their breaches depend on (the rule's
/// limits and counting, and the sessions), recorded by a run as `order_to_trade_sha256` so a
/// report can tell whether it applies the run's limits, whatever else the configuration says.
pub fn order_to_trade_digest(config: &crate::config::Config) -> String {
    sha256_hex(format!("{:?}{:?}", config.rules.order_to_trade, config.sessions).as_bytes())
}

/// What a checkpoint signs: a fixed prefix, the number of records it covers and their head.
fn checkpoint_message(covers: u64, head: &str) -> Vec<u8> {
    let mut message = b"surveil audit checkpoint\0".to_vec();
    message.extend_from_slice(&covers.to_le_bytes());
    message.extend_from_slice(head.as_bytes());
    message
}

/// A signing key from its 32-byte seed in hex (64 digits, as [`new_signing_key`] writes it).
pub fn signing_key_from_hex(text: &str) -> Option<SigningKey> {
    unhex::<32>(text).map(|seed| SigningKey::from_bytes(&seed))
}

/// A public key from hex (64 digits).
pub fn public_key_from_hex(text: &str) -> Option<VerifyingKey> {
    unhex::<32>(text).and_then(|bytes| VerifyingKey::from_bytes(&bytes).ok())
}

/// A new random signing key, as the hex of its seed, and its public key in hex.
pub fn new_signing_key() -> (String, String) {
    let mut seed = [0u8; 32];
    rand::Rng::fill(&mut rand::rng(), &mut seed);
    let key = SigningKey::from_bytes(&seed);
    (hex(&seed), hex(key.verifying_key().as_bytes()))
}

/// The public key of a signing key, in hex.
pub fn public_key_hex(key: &SigningKey) -> String {
    hex(key.verifying_key().as_bytes())
}

/// Where an audit log's chain stands, as a checkpoint records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditPosition {
    /// Records written.
    pub records: u64,
    /// The hash of the last record.
    pub head: String,
    /// Records since the last signed checkpoint record.
    pub unsigned: u64,
    /// The last record is a signed checkpoint record.
    pub signed_to_end: bool,
}

/// A log that verifies: how many records, and its head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Records in the log.
    pub records: u64,
    /// The hash of the last record.
    pub head: String,
}

/// Why a log does not verify, with the line (1-based) where it stops being trustworthy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    /// The line is not a record at all.
    #[error("line {line}: not an audit record ({reason})")]
    Malformed {
        /// Line number.
        line: u64,
        /// What is wrong.
        reason: String,
    },
    /// The record's content does not match its own hash: it was edited.
    #[error("line {line}: record {seq} was changed after it was written (its hash does not match its content)")]
    Edited {
        /// Line number.
        line: u64,
        /// The record's sequence number as it reads now.
        seq: u64,
    },
    /// Records are missing before this one.
    #[error("line {line}: records {first} to {last} are missing here (deleted or moved)")]
    Missing {
        /// Line number.
        line: u64,
        /// First missing sequence number.
        first: u64,
        /// Last missing sequence number.
        last: u64,
    },
    /// A record appears where a later or an earlier one should be.
    #[error("line {line}: record {seq} is out of place: record {expected} was due (inserted or reordered)")]
    OutOfPlace {
        /// Line number.
        line: u64,
        /// The record found.
        seq: u64,
        /// The record due.
        expected: u64,
    },
    /// The record does not link to the one before it.
    #[error("line {line}: record {seq} does not link to the record before it (inserted, replaced or reordered)")]
    Unlinked {
        /// Line number.
        line: u64,
        /// The record's sequence number.
        seq: u64,
    },
    /// A checkpoint's signature is not the key's signature of the records before it.
    #[error(
        "line {line}: checkpoint {seq} is not signed by the given key over the records before it \
         (the log was rewritten, or signed with another key)"
    )]
    BadSignature {
        /// Line number.
        line: u64,
        /// The checkpoint's sequence number.
        seq: u64,
    },
    /// Records after the last checkpoint are not covered by a signature.
    #[error("{0}")]
    Unsigned(String),
    /// The log is not one whole run: it does not open with `run_started` or close with
    /// `run_finished`.
    #[error("{0}")]
    NotAWholeRun(String),
    /// The log does not end where its run's summary says.
    #[error(
        "the log ends at record {records} with head {head}, not at the head its run recorded ({expected}): \
         records were removed from the end, or the log was rewritten"
    )]
    WrongHead {
        /// Records found.
        records: u64,
        /// Head found.
        head: String,
        /// Head expected.
        expected: String,
    },
}

/// Checks a whole log: every record's hash, the sequence and the links; with `expected_head`
/// (from the run's `summary.json`), also that nothing was cut from the end or rewritten.
pub fn verify(text: &str, expected_head: Option<&str>) -> Result<Verified, AuditError> {
    let mut head = GENESIS.to_string();
    let mut expected_seq = 1u64;
    for (index, line) in text.lines().enumerate() {
        let line_no = index as u64 + 1;
        let malformed = |reason: &str| AuditError::Malformed { line: line_no, reason: reason.into() };
        let cut = line.rfind(",\"hash\":\"").ok_or_else(|| malformed("no hash"))?;
        let (body, tail) = line.split_at(cut);
        let hash = tail
            .strip_prefix(",\"hash\":\"")
            .and_then(|t| t.strip_suffix("\"}"))
            .filter(|h| h.len() == 64)
            .ok_or_else(|| malformed("bad hash field"))?;
        let record: serde_json::Value =
            serde_json::from_str(&format!("{body}}}")).map_err(|e| malformed(&e.to_string()))?;
        let seq = record["seq"].as_u64().ok_or_else(|| malformed("no sequence number"))?;
        if hex(&Sha256::digest(body.as_bytes())) != hash {
            return Err(AuditError::Edited { line: line_no, seq });
        }
        if seq > expected_seq {
            return Err(AuditError::Missing { line: line_no, first: expected_seq, last: seq - 1 });
        }
        if seq < expected_seq {
            return Err(AuditError::OutOfPlace { line: line_no, seq, expected: expected_seq });
        }
        if record["prev"].as_str() != Some(head.as_str()) {
            return Err(AuditError::Unlinked { line: line_no, seq });
        }
        head = hash.to_string();
        expected_seq += 1;
    }
    let records = expected_seq - 1;
    if let Some(expected) = expected_head
        && expected != head
    {
        return Err(AuditError::WrongHead { records, head, expected: expected.to_string() });
    }
    Ok(Verified { records, head })
}

/// Checks a run's log: [`verify`], and that it opens with `run_started` and closes with
/// `run_finished` (so a log cut anywhere is found even without the head).
pub fn verify_run(text: &str, expected_head: Option<&str>) -> Result<Verified, AuditError> {
    let verified = verify(text, expected_head)?;
    let kind = |line: Option<&str>| {
        line.and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .and_then(|record| record["kind"].as_str().map(String::from))
    };
    if kind(text.lines().next()).as_deref() != Some("run_started") {
        return Err(AuditError::NotAWholeRun("the log does not open with a run_started record".into()));
    }
    // A signed log ends with the checkpoint that signs its run_finished record.
    let mut tail = text.lines().rev();
    let mut last = kind(tail.next());
    if last.as_deref() == Some("checkpoint") {
        last = kind(tail.next());
    }
    if last.as_deref() != Some("run_finished") {
        return Err(AuditError::NotAWholeRun(format!(
            "the log stops at record {} without a run_finished record: its end was cut",
            verified.records
        )));
    }
    Ok(verified)
}

/// Checks a run's log ([`verify_run`]) and its signatures: every `checkpoint` record must be
/// `key`'s signature of the head before it, and the log must end with one, so that no record
/// is unsigned. Someone without the key cannot rewrite the log, even together with its
/// summary, without this failing (though they can put another whole signed log in its place).
pub fn verify_signed(text: &str, expected_head: Option<&str>, key: &VerifyingKey) -> Result<Verified, AuditError> {
    let verified = verify_run(text, expected_head)?;
    check_signatures(text, verified, key)
}

/// The kind of the first record of a ledger that is not a run's log (the submissions of
/// reports, [`crate::submission`]).
pub const LEDGER_STARTED: &str = "ledger_started";

/// Checks a ledger ([`verify`], opening with `ledger_started`) and, with `key`, its signatures
/// as [`verify_signed`] does.
pub fn verify_ledger(
    text: &str,
    expected_head: Option<&str>,
    key: Option<&VerifyingKey>,
) -> Result<Verified, AuditError> {
    let verified = verify(text, expected_head)?;
    let first = text.lines().next().and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok());
    if first.is_some_and(|record| record["kind"] != LEDGER_STARTED) {
        return Err(AuditError::NotAWholeRun(format!("the ledger does not open with a {LEDGER_STARTED} record")));
    }
    match key {
        // A ledger not yet started has nothing to sign.
        Some(key) if verified.records > 0 => check_signatures(text, verified, key),
        _ => Ok(verified),
    }
}

/// Whether `text` is a ledger rather than a run's log: its first record is `ledger_started`.
pub fn is_ledger(text: &str) -> bool {
    text.lines()
        .next()
        .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .is_some_and(|record| record["kind"] == LEDGER_STARTED)
}

/// Every checkpoint of a verified log is `key`'s signature of the records before it, and the
/// log ends with one.
fn check_signatures(text: &str, verified: Verified, key: &VerifyingKey) -> Result<Verified, AuditError> {
    let last_checkpoint = signed_through(text, key)?;
    if last_checkpoint != Some(verified.records) {
        return Err(AuditError::Unsigned(format!(
            "records {} to {} are not signed: the log does not end with a checkpoint",
            last_checkpoint.map_or(1, |s| s + 1),
            verified.records
        )));
    }
    Ok(verified)
}

/// Checks every checkpoint of `text` against `key` (each must sign the records before it) and
/// returns the sequence number of the last one, if any: the records after it are unsigned.
pub fn signed_through(text: &str, key: &VerifyingKey) -> Result<Option<u64>, AuditError> {
    let mut last_checkpoint = None;
    for (index, line) in text.lines().enumerate() {
        let record: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| AuditError::Malformed { line: index as u64 + 1, reason: e.to_string() })?;
        if record["kind"] != "checkpoint" {
            continue;
        }
        let seq = record["seq"].as_u64().unwrap_or(0);
        let bad = AuditError::BadSignature { line: index as u64 + 1, seq };
        let data = &record["data"];
        let covers = data["covers"].as_u64();
        let head = data["head"].as_str();
        let signature = data["signature"].as_str().and_then(unhex::<64>).map(|b| Signature::from_bytes(&b));
        let (Some(covers), Some(head), Some(signature)) = (covers, head, signature) else {
            return Err(bad);
        };
        // A checkpoint signs the records before it: its own `prev` is the head it names.
        if seq.checked_sub(1) != Some(covers) || record["prev"].as_str() != Some(head) {
            return Err(bad);
        }
        key.verify(&checkpoint_message(covers, head), &signature).map_err(|_| bad)?;
        last_checkpoint = Some(seq);
    }
    Ok(last_checkpoint)
}

/// The records of a log about `id` (an alert or case id): every record that names it, the
/// summary of the group of repeats it belongs to (which lists only its first occurrences), and
/// every version of the case its group opened, in log order.
pub fn records_about<'t>(text: &'t str, id: &str) -> Vec<&'t str> {
    let needle = format!("\"id\":\"{id}\"");
    let mut groups: Vec<String> = text
        .lines()
        .filter(|line| line.contains(&needle))
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|record| record["data"]["group"].as_str().map(String::from))
        .collect();
    groups.push(id.to_string());
    let group_needles: Vec<String> = groups.iter().map(|g| format!("\"group\":\"{g}\"")).collect();
    let case_needles: Vec<String> = groups.iter().map(|g| format!("\"case\":\"{g}\"")).collect();
    text.lines()
        .filter(|line| {
            line.contains(&needle)
                || (line.contains("\"kind\":\"alert_group\"")
                    && group_needles.iter().any(|g| line.contains(g.as_str())))
                || (line.contains("\"kind\":\"case\"") && case_needles.iter().any(|c| line.contains(c.as_str())))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A signed log of `n` alerts between a run's start and end.
    fn signed_run(n: usize, every: u64) -> (String, String, VerifyingKey) {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let public = key.verifying_key();
        let mut log = AuditLog::new(Vec::new()).signed(key, every);
        log.append("run_started", &serde_json::json!({})).expect("append");
        for i in 0..n {
            log.append("alert", &serde_json::json!({"id": format!("a{i}")})).expect("append");
        }
        log.append("run_finished", &serde_json::json!({})).expect("append");
        log.checkpoint().expect("checkpoint");
        let head = log.head();
        (String::from_utf8(log.into_inner()).expect("utf-8"), head, public)
    }

    #[test]
    fn a_signed_log_verifies_with_its_key_only() {
        let (text, head, public) = signed_run(5, 3);
        let kinds: Vec<String> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|r| r["kind"].as_str().unwrap_or_default().to_string())
            .collect();
        // Seven records (start, five alerts, end): checkpoints after every three of them, and
        // the end signed once.
        assert_eq!(
            kinds,
            [
                "run_started",
                "alert",
                "alert",
                "checkpoint",
                "alert",
                "alert",
                "alert",
                "checkpoint",
                "run_finished",
                "checkpoint"
            ]
        );
        assert_eq!(kinds.last().map(String::as_str), Some("checkpoint"));
        assert_eq!(verify_signed(&text, Some(&head), &public).map(|v| v.records), Ok(kinds.len() as u64));
        let other = SigningKey::from_bytes(&[8u8; 32]).verifying_key();
        assert!(matches!(verify_signed(&text, Some(&head), &other), Err(AuditError::BadSignature { line: 4, .. })));
        assert!(signing_key_from_hex(&format!("+{}", "f".repeat(63))).is_none(), "strict hex");
        // Without a key, the log is still a whole run.
        assert!(verify_run(&text, Some(&head)).is_ok());
    }

    #[test]
    fn keys_round_trip_through_hex() {
        let (secret, public) = new_signing_key();
        let key = signing_key_from_hex(&format!("{secret}\n")).expect("secret key");
        assert_eq!(public_key_hex(&key), public);
        assert!(public_key_from_hex(&public).is_some());
        assert!(signing_key_from_hex("not hex").is_none());
        assert!(public_key_from_hex(&"g".repeat(64)).is_none());
    }

    fn log(n: usize) -> (String, String) {
        let mut log = AuditLog::new(Vec::new());
        for i in 0..n {
            log.append("alert", &serde_json::json!({"id": format!("a{i}"), "rule": "test"})).expect("append");
        }
        let head = log.head();
        (String::from_utf8(log.into_inner()).expect("utf-8"), head)
    }

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(String::from).collect()
    }

    fn join(lines: &[String]) -> String {
        lines.iter().map(|l| format!("{l}\n")).collect()
    }

    #[test]
    fn an_untouched_log_verifies() {
        let (text, head) = log(5);
        assert_eq!(verify(&text, Some(&head)), Ok(Verified { records: 5, head: head.clone() }));
        assert_eq!(verify("", Some(GENESIS)).map(|v| v.records), Ok(0));
    }

    #[test]
    fn an_edit_is_found_where_it_is() {
        let (text, _) = log(5);
        let mut l = lines(&text);
        l[2] = l[2].replace("a2", "a9");
        assert_eq!(verify(&join(&l), None), Err(AuditError::Edited { line: 3, seq: 3 }));
    }

    #[test]
    fn a_deletion_is_found() {
        let (text, head) = log(5);
        let mut l = lines(&text);
        l.remove(1);
        assert_eq!(verify(&join(&l), None), Err(AuditError::Missing { line: 2, first: 2, last: 2 }));
        // Cutting the end is only visible against the head the run recorded.
        let mut l = lines(&text);
        l.pop();
        assert!(verify(&join(&l), None).is_ok());
        assert!(matches!(verify(&join(&l), Some(&head)), Err(AuditError::WrongHead { records: 4, .. })));
    }

    #[test]
    fn an_insertion_is_found() {
        let (text, _) = log(5);
        let mut l = lines(&text);
        let copy = l[1].clone();
        l.insert(3, copy);
        assert_eq!(verify(&join(&l), None), Err(AuditError::OutOfPlace { line: 4, seq: 2, expected: 4 }));
        // A record forged with a valid hash of its own but not linked to its predecessor.
        let mut l = lines(&text);
        let mut forged_log = AuditLog::new(Vec::new());
        forged_log.append("alert", &serde_json::json!({"id": "x"})).expect("append");
        forged_log.append("alert", &serde_json::json!({"id": "forged"})).expect("append");
        let forged_line = lines(&String::from_utf8(forged_log.into_inner()).expect("utf-8"))[1].clone();
        l[1] = forged_line;
        assert_eq!(verify(&join(&l), None), Err(AuditError::Unlinked { line: 2, seq: 2 }));
    }

    #[test]
    fn a_reordering_is_found() {
        let (text, _) = log(5);
        let mut l = lines(&text);
        l.swap(1, 3);
        assert_eq!(verify(&join(&l), None), Err(AuditError::Missing { line: 2, first: 2, last: 3 }));
    }

    #[test]
    fn a_rewritten_log_does_not_match_its_runs_head() {
        let (text, head) = log(3);
        let mut rewritten = AuditLog::new(Vec::new());
        for i in 0..3 {
            let id = if i == 1 { "changed".to_string() } else { format!("a{i}") };
            rewritten.append("alert", &serde_json::json!({"id": id, "rule": "test"})).expect("append");
        }
        let rewritten = String::from_utf8(rewritten.into_inner()).expect("utf-8");
        assert!(verify(&rewritten, None).is_ok(), "a consistent rewrite verifies on its own");
        assert!(matches!(verify(&rewritten, Some(&head)), Err(AuditError::WrongHead { .. })));
        assert_eq!(records_about(&text, "a1").len(), 1);
    }

    #[test]
    fn a_run_log_must_be_whole() {
        let mut log = AuditLog::new(Vec::new());
        log.append("run_started", &serde_json::json!({})).expect("append");
        log.append("alert", &serde_json::json!({"id": "a"})).expect("append");
        let open = String::from_utf8(log.get_mut().clone()).expect("utf-8");
        assert!(matches!(verify_run(&open, None), Err(AuditError::NotAWholeRun(_))));
        log.append("run_finished", &serde_json::json!({})).expect("append");
        let whole = String::from_utf8(log.into_inner()).expect("utf-8");
        assert_eq!(verify_run(&whole, None).map(|v| v.records), Ok(3));
        let headless: String = whole.lines().skip(1).map(|l| format!("{l}\n")).collect();
        assert!(verify_run(&headless, None).is_err());
    }

    #[test]
    fn an_input_changed_after_its_run_is_found_from_the_block_that_changed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("input.csv");
        let bytes: Vec<u8> = (0..DIGEST_BLOCK * 5 / 2).map(|i| b"0123456789,\n"[i % 12]).collect();
        std::fs::write(&path, &bytes).expect("write");
        let digest = digest_input(&path, DIGEST_BLOCK, u64::MAX, &|| false).expect("read").expect("digest");
        assert_eq!((digest.bytes as usize, digest.blocks.len()), (bytes.len(), 3));
        let expected: Vec<u8> = bytes.chunks(DIGEST_BLOCK).flat_map(|b| Sha256::digest(b).to_vec()).collect();
        assert_eq!(digest.sha256, sha256_hex(&expected));
        assert_eq!(digest.blocks[2], sha256_hex(&bytes[2 * DIGEST_BLOCK..]));
        assert_eq!(digest_input(&path, DIGEST_BLOCK, u64::MAX, &|| true).expect("read"), None, "stopped");
        let first = digest_input(&path, DIGEST_BLOCK, 10, &|| false).expect("read").expect("digest");
        assert_eq!((first.bytes, first.blocks.len()), (10, 1), "no more than the limit");
        assert!(digest_input(dir.path(), DIGEST_BLOCK, u64::MAX, &|| false).is_err(), "a folder");
        let mut log = AuditLog::new(Vec::new());
        log.append("run_finished", &serde_json::json!({"input_digests": [digest]})).expect("append");
        let text = String::from_utf8(log.into_inner()).expect("utf-8");
        let path_text = path.display().to_string();
        assert_eq!(check_inputs(&text), vec![InputCheck::Unchanged { path: path_text.clone() }]);
        let mut changed = bytes.clone();
        changed[DIGEST_BLOCK * 2 + 5] = b'X';
        std::fs::write(&path, &changed).expect("write");
        let expected = InputCheck::Changed {
            path: path_text.clone(),
            from: 2 * DIGEST_BLOCK as u64,
            recorded_bytes: bytes.len() as u64,
            bytes: bytes.len() as u64,
        };
        assert_eq!(check_inputs(&text), vec![expected]);
        std::fs::remove_file(&path).expect("remove");
        assert!(matches!(check_inputs(&text)[0], InputCheck::Unreadable { .. }));
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        for text in ["not json", "{\"seq\":1}", "{\"seq\":1,\"hash\":\"xyz\"}", "\u{0}\n"] {
            assert!(matches!(verify(text, None), Err(AuditError::Malformed { line: 1, .. })), "{text:?}");
        }
    }
}
