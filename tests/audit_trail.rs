//! The audit trail of a real run: it records every alert, verifies as written, and says where
//! it was changed after each kind of tampering.

mod common;

use common::{data, read_jsonl, run};
use surveil::audit::{AUDIT, AuditError, verify, verify_run};
use surveil::config::Config;

const AAPL: &str = "lobster/aapl_2012-06-21/AAPL_2012-06-21_34200000_37800000_message_50.csv";

/// The audit log and the head its run recorded, for a run over the generated example session
/// and a real LOBSTER hour.
fn audited_run(workers: usize) -> (String, String, Vec<serde_json::Value>, tempfile::TempDir) {
    let example = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("datasets/example.csv");
    let (summary, out) = run(&[example, data(AAPL)], Config::default(), workers);
    let head = summary.written.audit.clone().expect("the run keeps an audit log");
    let text = std::fs::read_to_string(out.path().join(AUDIT)).expect("audit.jsonl");
    assert_eq!(head.records, text.lines().count() as u64);
    let alerts = read_jsonl(out.path(), "alerts.jsonl");
    (text, head.head, alerts, out)
}

fn lines(text: &str) -> Vec<String> {
    text.lines().map(String::from).collect()
}

fn join(lines: &[String]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

#[test]
fn the_log_records_the_run_and_every_alert_and_verifies() {
    for workers in [1, 2] {
        let (text, head, alerts, _out) = audited_run(workers);
        let verified = verify_run(&text, Some(&head)).expect("verifies");
        let records: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).expect("JSON")).collect();
        assert_eq!(records[0]["kind"], "run_started");
        assert_eq!(records[0]["data"]["inputs"].as_array().map(Vec::len), Some(2));
        let end = records.last().expect("records");
        assert_eq!(end["kind"], "run_finished");
        assert_eq!(end["data"]["complete"], true);
        assert!(end["data"]["events"].as_u64().unwrap_or(0) > 90_000, "{end}");
        // Every alert, as written to alerts.jsonl, in the same order.
        let audited: Vec<&serde_json::Value> =
            records.iter().filter(|r| r["kind"] == "alert").map(|r| &r["data"]).collect();
        assert!(!alerts.is_empty());
        assert_eq!(audited.len(), alerts.len(), "{workers} workers");
        assert!(audited.iter().zip(&alerts).all(|(a, b)| *a == b));
        // Besides the run's start and end: the alerts, group summaries and case versions.
        assert_eq!(verified.records, records.len() as u64);
        let kinds = ["run_started", "alert", "alert_group", "case", "run_finished"];
        assert!(records.iter().all(|r| kinds.iter().any(|k| r["kind"] == *k)));
    }
}

#[test]
fn each_kind_of_tampering_is_found_where_it_happened() {
    let (text, head, _, _out) = audited_run(1);
    let original = lines(&text);
    assert!(original.len() >= 4, "a log long enough to tamper with");

    // An edited alert: another rule name.
    let mut edited = original.clone();
    edited[1] = edited[1].replacen("\"rule\":\"", "\"rule\":\"not_", 1);
    assert_ne!(edited[1], original[1]);
    assert_eq!(verify(&join(&edited), Some(&head)), Err(AuditError::Edited { line: 2, seq: 2 }));

    // A deleted alert.
    let mut deleted = original.clone();
    deleted.remove(2);
    assert_eq!(verify(&join(&deleted), Some(&head)), Err(AuditError::Missing { line: 3, first: 3, last: 3 }));

    // An inserted copy of an alert.
    let mut inserted = original.clone();
    inserted.insert(2, original[1].clone());
    assert_eq!(verify(&join(&inserted), Some(&head)), Err(AuditError::OutOfPlace { line: 3, seq: 2, expected: 3 }));

    // Two records swapped.
    let mut swapped = original.clone();
    swapped.swap(1, 2);
    assert_eq!(verify(&join(&swapped), Some(&head)), Err(AuditError::Missing { line: 2, first: 2, last: 2 }));

    // The end cut off: visible against the head in summary.json, and without it.
    let mut cut = original.clone();
    cut.pop();
    assert!(matches!(verify(&join(&cut), Some(&head)), Err(AuditError::WrongHead { .. })));
    assert!(matches!(verify_run(&join(&cut), None), Err(AuditError::NotAWholeRun(_))));

    // The untouched log still verifies.
    assert!(verify_run(&join(&original), Some(&head)).is_ok());
}

/// Renumbers records and recomputes every hash and link, as someone rewriting a log without
/// the signing key would.
fn rechain(lines: &[String]) -> (String, String) {
    let mut head = surveil::audit::GENESIS.to_string();
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        let body = &line[..line.rfind(",\"hash\":\"").expect("hash")];
        let body = format!("{{\"seq\":{}{}", i + 1, &body[body.find(",\"kind\"").expect("kind")..]);
        let prev_at = body.find(",\"prev\":\"").expect("prev") + 9;
        let body = format!("{}{}{}", &body[..prev_at], head, &body[prev_at + 64..]);
        head = surveil::audit::sha256_hex(body.as_bytes());
        out.push_str(&format!("{body},\"hash\":\"{head}\"}}\n"));
    }
    (out, head)
}

#[test]
fn a_signed_run_cannot_be_rewritten_without_its_key() {
    let keys = tempfile::tempdir().expect("tempdir");
    let (secret, public) = surveil::audit::new_signing_key();
    std::fs::write(keys.path().join("audit.key"), &secret).expect("key file");
    let mut config = Config::default();
    config.audit.signing_key = Some(keys.path().join("audit.key"));
    config.audit.checkpoint_every = 10;
    let example = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("datasets/example.csv");
    let (summary, out) = run(&[example, data(AAPL)], config, 2);
    let head = summary.written.audit.expect("head").head;
    let text = std::fs::read_to_string(out.path().join(AUDIT)).expect("audit.jsonl");
    let key = surveil::audit::public_key_from_hex(&public).expect("public key");
    let verified = surveil::audit::verify_signed(&text, Some(&head), &key).expect("signed and intact");
    let records: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).expect("JSON")).collect();
    assert_eq!(records[0]["data"]["signing_public_key"], public.as_str());
    let checkpoints = records.iter().filter(|r| r["kind"] == "checkpoint").count() as u64;
    assert!(checkpoints >= verified.records / 11, "{checkpoints} checkpoints in {} records", verified.records);
    assert_eq!(records.last().map(|r| r["kind"].clone()), Some("checkpoint".into()));

    // An alert edited and the log re-hashed from there, with a matching summary: the hashes
    // agree, the signatures do not.
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let alert = lines.iter().position(|l| l.contains("\"kind\":\"alert\"")).expect("an alert");
    lines[alert] = lines[alert].replacen("\"rule\":\"", "\"rule\":\"not_", 1);
    let (forged, forged_head) = rechain(&lines);
    assert!(verify_run(&forged, Some(&forged_head)).is_ok());
    let refused = surveil::audit::verify_signed(&forged, Some(&forged_head), &key);
    assert!(matches!(refused, Err(AuditError::BadSignature { .. })), "{refused:?}");
    // Dropping the checkpoints does not help: the end is then unsigned.
    let unsigned: Vec<String> =
        text.lines().filter(|l| !l.contains("\"kind\":\"checkpoint\"")).map(String::from).collect();
    let (stripped, stripped_head) = rechain(&unsigned);
    assert!(verify_run(&stripped, Some(&stripped_head)).is_ok());
    let refused = surveil::audit::verify_signed(&stripped, Some(&stripped_head), &key);
    assert!(matches!(refused, Err(AuditError::Unsigned(_))), "{refused:?}");

    // A key that is not a key is a clear error before anything is written.
    std::fs::write(keys.path().join("audit.key"), "not a key").expect("key file");
    let mut config = Config::default();
    config.audit.signing_key = Some(keys.path().join("audit.key"));
    let empty = tempfile::tempdir().expect("tempdir");
    let error = surveil::pipeline::run_files(&[data(AAPL)], config, 1, empty.path()).expect_err("refused");
    assert!(error.to_string().contains("audit.signing_key"), "{error}");
    assert_eq!(std::fs::read_dir(empty.path()).expect("folder").count(), 0, "nothing written");
}
