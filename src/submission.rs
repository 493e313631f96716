//! Filing finished reports: an outbox that delivers a report to a regulator's endpoint over
//! HTTPS (or to a folder another system collects from), never files the same report twice,
//! and keeps every attempt and receipt in a hash-chained ledger.
//!
//! A report is identified by its SHA-256, which is also the `Idempotency-Key` of every request
//! that carries it: an endpoint that took a report whose answer was lost recognises the retry
//! and answers with the same receipt. The ledger ([`Ledger`], `submissions.jsonl`) is an
//! [`crate::audit::AuditLog`]: it opens with a `ledger_started` record, holds an `attempt`
//! record for every request made (when, the answer's status, the error) and a `filed` or
//! `failed` record for every submission, and is signed after each submission when the audit
//! trail has a signing key. Before anything is sent the ledger is verified, and a report it
//! shows filed is not sent again: its receipt is given back. The receipt reaches the case as a
//! `filed` case action ([`crate::model::CaseActionKind::Filed`]), which a replay records as a
//! `report_filed` version.
//!
//! ```
//! use surveil::submission::{Ledger, ReportDocument, Submitter, Submitted};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let config: surveil::config::Config = surveil::config::Config::parse(&format!(
//!     "[submission]\ndrop_dir = {:?}\n",
//!     dir.path().join("outbox")
//! ))?;
//! let submitter = Submitter::new(config.submission.as_ref().expect("configured"))?;
//! let report = ReportDocument::read(br#"{"regulation":"MAR","case":"0123456789abcdef0123456789abcdef","status":"final"}"#.to_vec())?;
//! let mut ledger = Ledger::open(&dir.path().join("submissions.jsonl"), None)?;
//! let Submitted::Filed(filing) = submitter.submit(&report, &mut ledger, "carol", false, false)? else { panic!() };
//! // The same report again: not sent, the receipt given back.
//! assert!(matches!(submitter.submit(&report, &mut ledger, "carol", false, false)?, Submitted::AlreadyFiled(f) if f.receipt == filing.receipt));
//! # Ok(())
//! # }
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use crate::audit::{AuditError, AuditLog, LEDGER_STARTED, SigningKey, sha256_hex, verify_ledger};
use crate::config::SubmissionConfig;
use crate::ingest::time::format_time;

/// The ledger's default file name.
pub const LEDGER: &str = "submissions.jsonl";

/// Why a report is not filed.
#[derive(Debug, thiserror::Error)]
pub enum SubmissionError {
    /// The file is not a report this outbox files.
    #[error("not a report that can be filed: {0}")]
    NotAReport(String),
    /// The report is a draft.
    #[error(
        "the report of case {case} is a {status}: only a final report is filed (complete what it lists as missing, \
         and close the case as stor_filed)"
    )]
    Draft {
        /// The case.
        case: String,
        /// Its status.
        status: String,
    },
    /// Another report of the case was filed already.
    #[error(
        "case {case} already has a report filed ({digest}, receipt {receipt}, {at}): a report that corrects or \
         completes it is a follow-up filing (--follow-up)"
    )]
    CaseAlreadyFiled {
        /// The case.
        case: String,
        /// The digest of the report filed.
        digest: String,
        /// Its receipt.
        receipt: String,
        /// When.
        at: String,
    },
    /// Every attempt failed, or one failed for good; the ledger says so.
    #[error("the report of case {case} was not filed after {attempts} attempt(s): {error}")]
    Failed {
        /// The case.
        case: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        error: String,
    },
    /// An earlier drop of the report into the folder stopped before its outcome was recorded.
    #[error(
        "an earlier submission of this report to {destination} was interrupted ({at}) before its outcome was \
         recorded: the file may have been delivered and collected. Check with the collecting system, then run again \
         with --resend to drop it again"
    )]
    Interrupted {
        /// The folder.
        destination: String,
        /// When the interrupted attempt started.
        at: String,
    },
    /// The report was filed but the ledger could not record it.
    #[error(
        "the report of case {case} was filed (receipt {receipt}) but the ledger could not record it: {error}. Keep \
         the receipt; the same report sent again is answered with it"
    )]
    Unrecorded {
        /// The case.
        case: String,
        /// The receipt.
        receipt: String,
        /// Why the ledger could not record it.
        error: String,
    },
    /// The ledger does not verify: it was edited.
    #[error("the submissions ledger {path} does not verify: {source}")]
    Tampered {
        /// The ledger.
        path: PathBuf,
        /// Where it stops being trustworthy.
        source: AuditError,
    },
    /// Another submission holds the ledger.
    #[error(
        "another submission is under way ({lock} exists); if none is, the lock was left by one that was killed: \
         remove it"
    )]
    Locked {
        /// The lock file.
        lock: PathBuf,
    },
    /// The configuration cannot be used.
    #[error("{0}")]
    Config(String),
    /// A file cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// A finished report as it will be filed: its bytes, what it is about and its digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportDocument {
    case: String,
    status: String,
    content_type: &'static str,
    bytes: Vec<u8>,
    sha256: String,
}

impl ReportDocument {
    /// A STOR as `surveil report stor` writes it, in JSON or XML.
    pub fn read(bytes: Vec<u8>) -> Result<ReportDocument, SubmissionError> {
        let text = std::str::from_utf8(&bytes).map_err(|_| SubmissionError::NotAReport("not UTF-8 text".into()))?;
        let trimmed = text.trim_start_matches('\u{feff}').trim_start();
        let (case, status, content_type) = if trimmed.starts_with('{') {
            let value: Json = serde_json::from_str(trimmed)
                .map_err(|e| SubmissionError::NotAReport(format!("not a JSON report: {e}")))?;
            let field = |name: &str| value[name].as_str().map(String::from);
            match (field("regulation"), field("case"), field("status")) {
                (Some(_), Some(case), Some(status)) => (case, status, "application/json"),
                _ => {
                    return Err(SubmissionError::NotAReport(
                        "a JSON STOR has regulation, case and status (as `surveil report stor` writes it)".into(),
                    ));
                }
            }
        } else if trimmed.starts_with('<') {
            // The root element itself, after the XML declaration only (a comment or another
            // element naming a STOR does not count).
            let body = match trimmed.strip_prefix("<?xml") {
                Some(rest) => rest.split_once("?>").map_or("", |(_, after)| after).trim_start(),
                None => trimmed,
            };
            let root = body
                .strip_prefix("<STOR ")
                .and_then(|rest| rest.split('>').next())
                .map(|attributes| format!(" {attributes}"))
                .ok_or_else(|| SubmissionError::NotAReport("an XML STOR's root element is <STOR>".into()))?;
            let attribute = |name: &str| {
                root.split(&format!(" {name}=\"")).nth(1).and_then(|rest| rest.split('"').next()).map(String::from)
            };
            match (attribute("case"), attribute("status")) {
                (Some(case), Some(status)) => (case, status, "application/xml"),
                _ => return Err(SubmissionError::NotAReport("<STOR> without case and status".into())),
            }
        } else {
            return Err(SubmissionError::NotAReport(
                "neither JSON nor XML (an HTML report is for reading, not for filing)".into(),
            ));
        };
        // The case as the run names it (lower-case hex), whatever the file's spelling.
        let case = crate::model::AlertId::parse(&case)
            .ok_or_else(|| SubmissionError::NotAReport(format!("case {case:?} is not a case id")))?
            .to_string();
        let sha256 = sha256_hex(&bytes);
        Ok(ReportDocument { case, status, content_type, bytes, sha256 })
    }

    /// The case it reports.
    pub fn case(&self) -> &str {
        &self.case
    }

    /// `final` or `draft`.
    pub fn status(&self) -> &str {
        &self.status
    }

    /// `application/json` or `application/xml`.
    pub fn content_type(&self) -> &'static str {
        self.content_type
    }

    /// The bytes filed.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Their SHA-256, in hex: the report's identity and its idempotency key.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The file name a file drop gives it: the case and the first 16 digits of the digest.
    fn file_name(&self) -> String {
        let extension = if self.content_type == "application/xml" { "xml" } else { "json" };
        format!("STOR-{}-{}.{extension}", self.case, self.sha256.get(..16).unwrap_or(&self.sha256))
    }
}

/// A report filed: its receipt and where it went.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filing {
    /// The case.
    pub case: String,
    /// The report's SHA-256.
    pub report_sha256: String,
    /// The receipt.
    pub receipt: String,
    /// The endpoint's URL or the drop folder.
    pub destination: String,
    /// When it was filed (RFC 3339).
    pub at: String,
    /// Attempts it took.
    pub attempts: u32,
    /// Who filed it.
    pub by: String,
    /// A report that corrects or completes one filed before for the case.
    pub follow_up: bool,
}

/// The submissions ledger: a hash-chained log of every attempt and filing, verified when it is
/// opened, held by one submission at a time (a lock file beside it).
pub struct Ledger {
    path: PathBuf,
    log: AuditLog<std::fs::File>,
    filings: Vec<Filing>,
    /// Reports whose last attempt started (`sending`) without an outcome: report digest → when.
    interrupted: std::collections::HashMap<String, String>,
    lock: PathBuf,
    /// Records written without a signature (an interrupted submission) found on opening.
    recovered: Option<(u64, u64)>,
}

impl Ledger {
    /// Opens (or starts) the ledger at `path`, verifying every record so far; with `signer`,
    /// each submission's records end with a signed checkpoint.
    pub fn open(path: &Path, signer: Option<SigningKey>) -> Result<Ledger, SubmissionError> {
        let mut lock_name = path.as_os_str().to_owned();
        lock_name.push(".lock");
        let lock = PathBuf::from(lock_name);
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&lock) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(SubmissionError::Locked { lock }),
            Err(e) => return Err(SubmissionError::Io { path: lock, source: e }),
        }
        Self::open_locked(path, signer, &lock).inspect_err(|_| {
            let _ = std::fs::remove_file(&lock);
        })
    }

    fn open_locked(path: &Path, signer: Option<SigningKey>, lock: &Path) -> Result<Ledger, SubmissionError> {
        let io = |source| SubmissionError::Io { path: path.to_path_buf(), source };
        let tampered = |source| SubmissionError::Tampered { path: path.to_path_buf(), source };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io(e)),
        };
        let verified = verify_ledger(&text, None, None).map_err(tampered)?;
        // Every checkpoint must be the key's; records after the last one were written by a
        // submission that was interrupted (or before the ledger had a key): they are named in a
        // `recovered` record and signed now.
        let signed_through = match &signer {
            Some(key) => crate::audit::signed_through(&text, &key.verifying_key()).map_err(tampered)?,
            None => None,
        };
        let records: Vec<Json> = text.lines().filter_map(|line| serde_json::from_str::<Json>(line).ok()).collect();
        let filings = records
            .iter()
            .filter(|record| record["kind"] == "filed")
            .filter_map(|record| serde_json::from_value::<Filing>(record["data"].clone()).ok())
            .collect();
        let mut interrupted = std::collections::HashMap::new();
        for record in &records {
            let digest = record["data"]["report_sha256"].as_str().unwrap_or_default().to_string();
            match record["kind"].as_str() {
                Some("sending") => {
                    interrupted.insert(digest, record["data"]["at"].as_str().unwrap_or_default().to_string());
                }
                Some("attempt") => {
                    interrupted.remove(&digest);
                }
                _ => {}
            }
        }
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(io)?;
        let mut log = AuditLog::resume(file, &verified);
        let signed = signer.is_some();
        if let Some(key) = signer {
            log = log.signed(key, 0);
        }
        let unsigned_from = signed_through.map_or(1, |seq| seq + 1);
        let recovered = (signed && verified.records >= unsigned_from).then_some((unsigned_from, verified.records));
        let mut ledger =
            Ledger { path: path.to_path_buf(), log, filings, interrupted, lock: lock.to_path_buf(), recovered };
        if verified.records == 0 {
            ledger.append(LEDGER_STARTED, &json!({"surveil": env!("CARGO_PKG_VERSION")}))?;
            ledger.seal()?;
        } else if let Some((first, last)) = recovered {
            ledger.append(
                "recovered",
                &json!({
                    "unsigned_from": first,
                    "unsigned_to": last,
                    "at": format_time(clock()),
                    "why": "records after the last checkpoint: a submission was interrupted, or the ledger was \
                            kept without a signing key",
                }),
            )?;
            ledger.seal()?;
        }
        Ok(ledger)
    }

    /// Records found unsigned when the ledger was opened with a key (first and last sequence
    /// number), now signed after a `recovered` record.
    pub fn recovered(&self) -> Option<(u64, u64)> {
        self.recovered
    }

    /// The filing of the report with digest `sha256`, if it was filed.
    pub fn filed(&self, sha256: &str) -> Option<&Filing> {
        self.filings.iter().find(|f| f.report_sha256 == sha256)
    }

    /// Every filing for `case`, oldest first.
    pub fn filings_of<'a>(&'a self, case: &'a str) -> impl Iterator<Item = &'a Filing> + 'a {
        self.filings.iter().filter(move |f| f.case == case)
    }

    /// Every filing, oldest first.
    pub fn filings(&self) -> &[Filing] {
        &self.filings
    }

    /// The ledger's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn append(&mut self, kind: &str, data: &Json) -> Result<(), SubmissionError> {
        let io = |source| SubmissionError::Io { path: self.path.clone(), source };
        self.log.append(kind, data).map_err(io)?;
        self.log.get_mut().sync_data().map_err(io)
    }

    /// Signs what was appended (when signed) and makes it durable.
    fn seal(&mut self) -> Result<(), SubmissionError> {
        let io = |source| SubmissionError::Io { path: self.path.clone(), source };
        self.log.checkpoint().map_err(io)?;
        self.log.get_mut().sync_all().map_err(io)
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.lock);
    }
}

/// What [`Submitter::submit`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Submitted {
    /// The report was filed now.
    Filed(Filing),
    /// The ledger shows it filed already: nothing was sent.
    AlreadyFiled(Filing),
}

/// Where reports go.
enum Destination {
    #[cfg(feature = "http")]
    Endpoint {
        agent: ureq::Agent,
        url: String,
        token: Option<String>,
    },
    Folder(PathBuf),
}

/// Files reports at the configured destination.
pub struct Submitter {
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    config: SubmissionConfig,
    destination: Destination,
}

/// One attempt's outcome: the receipt, or why not and whether trying again may help.
struct Attempt {
    status: Option<u16>,
    error: String,
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    retry: bool,
}

impl Submitter {
    /// A submitter for `config`: its endpoint (with the certificate authorities and the token
    /// from its environment variable) or its drop folder (created if missing).
    pub fn new(config: &SubmissionConfig) -> Result<Submitter, SubmissionError> {
        let destination = match (&config.url, &config.drop_dir) {
            (_, Some(dir)) => {
                std::fs::create_dir_all(dir).map_err(|source| SubmissionError::Io { path: dir.clone(), source })?;
                Destination::Folder(dir.clone())
            }
            #[cfg(feature = "http")]
            (Some(url), None) => {
                let token = match &config.token_variable {
                    Some(variable) => Some(
                        std::env::var(variable)
                            .ok()
                            .map(|token| token.trim().to_string())
                            .filter(|token| !token.is_empty())
                            .ok_or_else(|| {
                                SubmissionError::Config(format!(
                                    "submission.token_variable: the environment variable {variable} holds no token"
                                ))
                            })?,
                    ),
                    None => None,
                };
                let agent = crate::webhook::http_agent(config.timeout, config.ca_file.as_deref())
                    .map_err(|e| SubmissionError::Config(e.to_string()))?;
                Destination::Endpoint { agent, url: url.clone(), token }
            }
            _ => {
                return Err(SubmissionError::Config(
                    "submission: no destination (an endpoint needs the http feature)".into(),
                ));
            }
        };
        Ok(Submitter { config: config.clone(), destination })
    }

    /// Where reports go: the endpoint's URL or the folder.
    pub fn destination(&self) -> String {
        match &self.destination {
            #[cfg(feature = "http")]
            Destination::Endpoint { url, .. } => url.clone(),
            Destination::Folder(dir) => dir.display().to_string(),
        }
    }

    /// Files `report` (a final one) unless the ledger shows it filed, recording every attempt
    /// (a `sending` record before it, an `attempt` record after) and the outcome in `ledger`,
    /// stamped by the clock. A case with a report filed takes another only as a `follow_up`. A
    /// drop into a folder that was interrupted before its outcome was recorded is repeated only
    /// when `resend` says so (the collecting system may have taken the file).
    pub fn submit(
        &self,
        report: &ReportDocument,
        ledger: &mut Ledger,
        by: &str,
        follow_up: bool,
        resend: bool,
    ) -> Result<Submitted, SubmissionError> {
        if report.status != "final" {
            return Err(SubmissionError::Draft { case: report.case.clone(), status: report.status.clone() });
        }
        if let Some(filing) = ledger.filed(&report.sha256) {
            return Ok(Submitted::AlreadyFiled(filing.clone()));
        }
        if let Some(earlier) = ledger.filings_of(&report.case).next()
            && !follow_up
        {
            return Err(SubmissionError::CaseAlreadyFiled {
                case: report.case.clone(),
                digest: earlier.report_sha256.clone(),
                receipt: earlier.receipt.clone(),
                at: earlier.at.clone(),
            });
        }
        let destination = self.destination();
        if let (Destination::Folder(_), Some(at)) = (&self.destination, ledger.interrupted.get(&report.sha256))
            && !resend
        {
            return Err(SubmissionError::Interrupted { destination, at: at.clone() });
        }
        let mut attempts = 0u32;
        let mut ledger_error = None;
        // Before each attempt a `sending` record, after it an `attempt` record: a ledger that
        // ends between the two shows an attempt whose outcome is unknown. A ledger that cannot
        // be written stops the submission.
        let mut attempt_once = |ledger: &mut Ledger, send: &mut dyn FnMut() -> Result<String, Attempt>| {
            attempts += 1;
            let common = json!({
                "case": report.case,
                "report_sha256": report.sha256,
                "destination": destination,
                "attempt": attempts,
            });
            let mut sending = common.clone();
            sending["at"] = Json::from(format_time(clock()));
            if let Err(e) = ledger.append("sending", &sending) {
                ledger_error.get_or_insert(e);
                return Err(Attempt { status: None, error: "the ledger cannot be written".into(), retry: false });
            }
            let outcome = send();
            let mut data = common;
            data["idempotency_key"] = Json::from(report.sha256.as_str());
            data["at"] = Json::from(format_time(clock()));
            match &outcome {
                Ok(receipt) => data["receipt"] = Json::from(receipt.as_str()),
                Err(failure) => {
                    data["status"] = json!(failure.status);
                    data["error"] = Json::from(failure.error.as_str());
                }
            }
            if let Err(e) = ledger.append("attempt", &data) {
                ledger_error.get_or_insert(e);
            }
            outcome
        };
        let outcome: Result<String, Option<Attempt>> = match &self.destination {
            Destination::Folder(dir) => attempt_once(ledger, &mut || drop_file(dir, report)).map_err(Some),
            #[cfg(feature = "http")]
            Destination::Endpoint { agent, url, token } => {
                let (_, outcome) = crate::webhook::with_retries(
                    self.config.timeout,
                    self.config.backoff,
                    self.config.max_attempts,
                    &|| None,
                    |timeout| {
                        attempt_once(ledger, &mut || self.post(agent, url, token.as_deref(), report, timeout))
                            .map_err(|a| crate::webhook::Failure { status: a.status, error: a.error, retry: a.retry })
                    },
                );
                outcome.map_err(|last| last.map(|f| Attempt { status: f.status, error: f.error, retry: f.retry }))
            }
        };
        if let Some(e) = ledger_error {
            return Err(match outcome {
                Ok(receipt) => SubmissionError::Unrecorded { case: report.case.clone(), receipt, error: e.to_string() },
                Err(_) => e,
            });
        }
        ledger.interrupted.remove(&report.sha256);
        let at = format_time(clock());
        match outcome {
            Ok(receipt) => {
                let filing = Filing {
                    case: report.case.clone(),
                    report_sha256: report.sha256.clone(),
                    receipt,
                    destination,
                    at,
                    attempts,
                    by: by.to_string(),
                    follow_up,
                };
                let recorded = ledger
                    .append("filed", &serde_json::to_value(&filing).unwrap_or_default())
                    .and_then(|()| ledger.seal());
                if let Err(e) = recorded {
                    return Err(SubmissionError::Unrecorded {
                        case: filing.case,
                        receipt: filing.receipt,
                        error: e.to_string(),
                    });
                }
                ledger.filings.push(filing.clone());
                Ok(Submitted::Filed(filing))
            }
            Err(last) => {
                let error = last.map_or_else(|| "no attempt was made".to_string(), |a| a.error);
                ledger.append(
                    "failed",
                    &json!({
                        "case": report.case,
                        "report_sha256": report.sha256,
                        "destination": destination,
                        "at": at,
                        "attempts": attempts,
                        "by": by,
                        "error": error,
                    }),
                )?;
                ledger.seal()?;
                Err(SubmissionError::Failed { case: report.case.clone(), attempts, error })
            }
        }
    }

    /// One request: the report with its idempotency key; the receipt from the answer.
    #[cfg(feature = "http")]
    fn post(
        &self,
        agent: &ureq::Agent,
        url: &str,
        token: Option<&str>,
        report: &ReportDocument,
        timeout: std::time::Duration,
    ) -> Result<String, Attempt> {
        let mut request = agent
            .post(url)
            .config()
            .timeout_global(Some(timeout))
            .build()
            .header("Content-Type", report.content_type)
            .header("Idempotency-Key", report.sha256.as_str());
        if let Some(token) = token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let (status, answer) = crate::webhook::exchange(request, &report.bytes).map_err(|f| Attempt {
            status: f.status,
            error: f.error,
            retry: f.retry,
        })?;
        let field = &self.config.receipt_field;
        let receipt = serde_json::from_str::<Json>(&answer).ok().and_then(|value| match &value[field.as_str()] {
            Json::String(text) if !text.trim().is_empty() => Some(text.clone()),
            Json::Number(number) => Some(number.to_string()),
            _ => None,
        });
        // An answer without a receipt is retried: the idempotency key makes that safe.
        receipt.ok_or_else(|| Attempt {
            status: Some(status),
            error: format!(
                "HTTP {status} without a receipt (no {field:?} in the JSON answer: {})",
                answer.chars().take(200).collect::<String>()
            ),
            retry: true,
        })
    }
}

/// Now, by the clock, in nanoseconds since 1970.
fn clock() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| u64::try_from(d.as_nanos()).ok())
        .unwrap_or(0)
}

/// Writes the report into `dir` under its name, atomically (a temporary file, synced, then
/// renamed); a file of that name with the same bytes is the same filing.
fn drop_file(dir: &Path, report: &ReportDocument) -> Result<String, Attempt> {
    let name = report.file_name();
    let target = dir.join(&name);
    let failed = |what: &str, e: std::io::Error| Attempt {
        status: None,
        error: format!("{what} {}: {e}", target.display()),
        retry: false,
    };
    match std::fs::read(&target) {
        Ok(existing) if existing == report.bytes => return Ok(format!("file:{name}")),
        Ok(_) => return Err(failed("another file holds the name", std::io::Error::other("different content"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(failed("cannot read", e)),
    }
    let temporary = dir.join(format!(".{name}.partial"));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(&report.bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, &target)?;
        // The rename itself is durable once the folder is synced.
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| failed("cannot write", e))?;
    Ok(format!("file:{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CASE: &str = "0123456789abcdef0123456789abcdef";

    fn json_report(status: &str, detail: &str) -> ReportDocument {
        let text = format!(r#"{{"regulation":"MAR","case":"{CASE}","status":"{status}","detail":"{detail}"}}"#);
        ReportDocument::read(text.into_bytes()).expect("a report")
    }

    fn drop_submitter(dir: &Path) -> Submitter {
        let config = crate::config::Config::parse(&format!("[submission]\ndrop_dir = {:?}\n", dir.join("outbox")))
            .expect("config");
        Submitter::new(config.submission.as_ref().expect("submission")).expect("submitter")
    }

    #[test]
    fn reports_are_read_from_json_and_xml_only() {
        let json = json_report("final", "x");
        assert_eq!((json.case(), json.status(), json.content_type()), (CASE, "final", "application/json"));
        assert_eq!(json.sha256(), sha256_hex(json.bytes()));
        let xml = ReportDocument::read(
            format!("<?xml version=\"1.0\"?>\n<STOR case=\"{CASE}\" status=\"draft\">\n</STOR>\n").into_bytes(),
        )
        .expect("xml");
        assert_eq!((xml.status(), xml.content_type()), ("draft", "application/xml"));
        for (bad, why) in [
            ("<html><body>STOR</body></html>", "<STOR>"),
            ("<!DOCTYPE html>", "<STOR>"),
            ("{\"case\":1}", "regulation"),
            ("{\"regulation\":\"MAR\",\"case\":\"x\",\"status\":\"final\"}", "not a case id"),
            ("STOR", "neither JSON nor XML"),
            ("{", "not a JSON report"),
        ] {
            let error = ReportDocument::read(bad.as_bytes().to_vec()).expect_err(bad).to_string();
            assert!(error.contains(why), "{bad}: {error}");
        }
        assert!(ReportDocument::read(vec![0xff, 0xfe]).is_err());
    }

    #[test]
    fn a_file_drop_files_once_and_a_draft_or_a_second_report_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let submitter = drop_submitter(dir.path());
        let path = dir.path().join(LEDGER);
        let mut ledger = Ledger::open(&path, None).expect("ledger");
        let draft = json_report("draft", "x");
        assert!(matches!(
            submitter.submit(&draft, &mut ledger, "carol", false, false),
            Err(SubmissionError::Draft { .. })
        ));
        let report = json_report("final", "x");
        let Ok(Submitted::Filed(filing)) = submitter.submit(&report, &mut ledger, "carol", false, false) else {
            panic!("filed")
        };
        assert_eq!(filing.receipt, format!("file:STOR-{CASE}-{}.json", &report.sha256()[..16]));
        let dropped = dir.path().join("outbox").join(filing.receipt.trim_start_matches("file:"));
        assert_eq!(std::fs::read(&dropped).expect("dropped"), report.bytes());
        // Another report of the same case needs --follow-up; the same one is not filed again.
        let corrected = json_report("final", "y");
        assert!(matches!(
            submitter.submit(&corrected, &mut ledger, "carol", false, false),
            Err(SubmissionError::CaseAlreadyFiled { .. })
        ));
        drop(ledger);
        let mut ledger = Ledger::open(&path, None).expect("reopened");
        assert_eq!(
            submitter.submit(&report, &mut ledger, "dave", false, false).expect("again"),
            Submitted::AlreadyFiled(filing.clone())
        );
        let Ok(Submitted::Filed(second)) = submitter.submit(&corrected, &mut ledger, "carol", true, false) else {
            panic!("follow-up filed")
        };
        assert!(second.follow_up);
        assert_eq!(ledger.filings_of(CASE).count(), 2);
        drop(ledger);
        // The ledger verifies: start, and per filing an attempt and the filing.
        let text = std::fs::read_to_string(&path).expect("ledger");
        let kinds: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<Json>(l).expect("json")["kind"].as_str().unwrap_or("").to_string())
            .collect();
        assert_eq!(kinds, ["ledger_started", "sending", "attempt", "filed", "sending", "attempt", "filed"]);
        assert_eq!(verify_ledger(&text, None, None).map(|v| v.records), Ok(7));
    }

    #[test]
    fn an_interrupted_drop_is_repeated_only_when_asked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let submitter = drop_submitter(dir.path());
        let path = dir.path().join(LEDGER);
        let report = json_report("final", "x");
        {
            // Killed after announcing the drop, before its outcome was recorded.
            let mut ledger = Ledger::open(&path, None).expect("ledger");
            let sending = json!({"case": CASE, "report_sha256": report.sha256(), "attempt": 1, "at": "then"});
            ledger.append("sending", &sending).expect("append");
        }
        let mut ledger = Ledger::open(&path, None).expect("ledger");
        let refused = submitter.submit(&report, &mut ledger, "carol", false, false);
        assert!(matches!(refused, Err(SubmissionError::Interrupted { .. })), "{refused:?}");
        let filed = submitter.submit(&report, &mut ledger, "carol", false, true);
        assert!(matches!(filed, Ok(Submitted::Filed(_))), "{filed:?}");
    }

    #[test]
    fn reports_name_their_case_in_lower_case_and_only_the_root_element_counts() {
        let upper = format!(r#"{{"regulation":"MAR","case":"{}","status":"final"}}"#, CASE.to_uppercase());
        assert_eq!(ReportDocument::read(upper.into_bytes()).expect("report").case(), CASE);
        let disguised = format!(
            "<?xml version=\"1.0\"?>\n<!-- <STOR case=\"{CASE}\" status=\"final\"> -->\n<STOR case=\"{CASE}\" status=\"draft\">"
        );
        assert!(ReportDocument::read(disguised.into_bytes()).is_err());
    }

    #[test]
    fn a_tampered_or_held_ledger_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let submitter = drop_submitter(dir.path());
        let path = dir.path().join(LEDGER);
        let mut ledger = Ledger::open(&path, None).expect("ledger");
        assert!(matches!(Ledger::open(&path, None), Err(SubmissionError::Locked { .. })), "one submission at a time");
        submitter.submit(&json_report("final", "x"), &mut ledger, "carol", false, false).expect("filed");
        drop(ledger);
        let text = std::fs::read_to_string(&path).expect("ledger");
        // Removing the attempt before the filing, or editing the filing: the ledger no longer verifies.
        let cut: String = text.lines().take(1).chain(text.lines().skip(2)).map(|l| format!("{l}\n")).collect();
        std::fs::write(&path, cut).expect("write");
        let error = Ledger::open(&path, None).err().expect("refused").to_string();
        assert!(error.contains("missing"), "{error}");
        std::fs::write(&path, text.replace("carol", "mallory")).expect("write");
        let error = Ledger::open(&path, None).err().expect("refused").to_string();
        assert!(error.contains("does not verify"), "{error}");
        // A signed ledger is checked against its key.
        let signed = dir.path().join("signed.jsonl");
        let key = SigningKey::from_bytes(&[3u8; 32]);
        let mut ledger = Ledger::open(&signed, Some(key.clone())).expect("signed ledger");
        submitter.submit(&json_report("final", "z"), &mut ledger, "carol", false, false).expect("filed");
        drop(ledger);
        let text = std::fs::read_to_string(&signed).expect("ledger");
        assert!(verify_ledger(&text, None, Some(&key.verifying_key())).is_ok());
        assert!(Ledger::open(&signed, Some(SigningKey::from_bytes(&[4u8; 32]))).is_err(), "another key");
        // A submission killed between its records: the unsigned end is named and signed on opening.
        {
            let mut ledger = Ledger::open(&signed, Some(key.clone())).expect("signed ledger");
            ledger.append("sending", &json!({"case": CASE, "report_sha256": "ab", "attempt": 1})).expect("append");
        }
        let ledger = Ledger::open(&signed, Some(key.clone())).expect("reopened");
        let (first, last) = ledger.recovered().expect("recovered");
        assert_eq!(first, last);
        drop(ledger);
        let text = std::fs::read_to_string(&signed).expect("ledger");
        assert!(text.contains("\"kind\":\"recovered\""));
        assert!(verify_ledger(&text, None, Some(&key.verifying_key())).is_ok());
    }
}
