//! Filing reports at a regulator's HTTPS endpoint (a local one with a test certificate that
//! records what it receives): once, through failures and lost answers, with every attempt in
//! the ledger.

#[path = "common/https.rs"]
mod https;

use std::path::Path;
use std::time::Duration;

use https::{Answer, Regulator};
use serde_json::Value;
use surveil::config::Config;
use surveil::submission::{Ledger, ReportDocument, SubmissionError, Submitted, Submitter};

const CASE: &str = "00112233445566778899aabbccddeeff";

fn report(detail: &str) -> ReportDocument {
    let text = format!(r#"{{"regulation":"MAR","case":"{CASE}","status":"final","detail":"{detail}"}}"#);
    ReportDocument::read(text.into_bytes()).expect("report")
}

/// A submitter for `regulator`, trusting its test authority when `trusted`.
fn submitter(dir: &Path, regulator: &Regulator, trusted: bool, attempts: u32) -> Submitter {
    let ca = dir.join("test-ca.pem");
    std::fs::write(&ca, &regulator.ca_pem).expect("write");
    let trust = if trusted { format!("ca_file = {:?}\n", ca) } else { String::new() };
    let config = Config::parse(&format!(
        "[submission]\nurl = \"{}\"\n{trust}timeout = \"1s\"\nbackoff = \"10ms\"\nmax_attempts = {attempts}\n",
        regulator.url()
    ))
    .expect("config");
    Submitter::new(config.submission.as_ref().expect("submission")).expect("submitter")
}

fn ledger_records(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("ledger");
    surveil::audit::verify_ledger(&text, None, None).expect("the ledger verifies");
    text.lines().map(|l| serde_json::from_str(l).expect("json")).collect()
}

#[test]
fn a_report_is_filed_once_through_an_error_and_a_lost_answer() {
    let regulator = Regulator::start(vec![Answer::Status(503), Answer::Silence(Duration::from_secs(3))]);
    let dir = tempfile::tempdir().expect("tempdir");
    let submitter = submitter(dir.path(), &regulator, true, 5);
    let path = dir.path().join("submissions.jsonl");
    let mut ledger = Ledger::open(&path, None).expect("ledger");
    let report = report("layering");
    let filed = submitter.submit(&report, &mut ledger, "carol", false, false).expect("filed");
    let Submitted::Filed(filing) = filed else { panic!("{filed:?}") };
    // 503, then an answer lost to the timeout (the regulator had filed it), then the same
    // receipt for the same key.
    assert_eq!((filing.receipt.as_str(), filing.attempts), ("RCPT-0001", 3));
    let received = regulator.received();
    assert_eq!(received.len(), 3);
    for request in &received {
        assert_eq!(request.key.as_deref(), Some(report.sha256()));
        assert_eq!(request.content_type.as_deref(), Some("application/json"));
        assert_eq!(request.body, report.bytes());
    }
    // Filing it again sends nothing.
    let again = submitter.submit(&report, &mut ledger, "dave", false, false).expect("again");
    assert_eq!(again, Submitted::AlreadyFiled(filing));
    assert_eq!(regulator.received().len(), 3);
    drop(ledger);
    let records = ledger_records(&path);
    let kinds: Vec<&str> = records.iter().map(|r| r["kind"].as_str().unwrap_or("")).collect();
    assert_eq!(kinds, ["ledger_started", "sending", "attempt", "sending", "attempt", "sending", "attempt", "filed"]);
    assert_eq!(records[2]["data"]["status"], 503);
    assert!(records[4]["data"]["error"].as_str().unwrap_or("").to_ascii_lowercase().contains("timeout"));
    assert_eq!(records[6]["data"]["receipt"], "RCPT-0001");
    assert_eq!(records[7]["data"]["by"], "carol");
}

#[test]
fn an_endpoint_down_leaves_the_report_unfiled_until_a_later_try() {
    let regulator = Regulator::start(vec![Answer::Status(503), Answer::Status(502)]);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("submissions.jsonl");
    let report = report("wash trades");
    {
        let mut ledger = Ledger::open(&path, None).expect("ledger");
        let error = submitter(dir.path(), &regulator, true, 2).submit(&report, &mut ledger, "carol", false, false);
        assert!(matches!(error, Err(SubmissionError::Failed { attempts: 2, .. })), "{error:?}");
    }
    let mut ledger = Ledger::open(&path, None).expect("ledger");
    let filed = submitter(dir.path(), &regulator, true, 2).submit(&report, &mut ledger, "carol", false, false);
    assert!(matches!(&filed, Ok(Submitted::Filed(f)) if f.receipt == "RCPT-0001"), "{filed:?}");
    drop(ledger);
    let kinds: Vec<String> =
        ledger_records(&path).iter().map(|r| r["kind"].as_str().unwrap_or("").to_string()).collect();
    assert_eq!(
        kinds,
        ["ledger_started", "sending", "attempt", "sending", "attempt", "failed", "sending", "attempt", "filed"]
    );
}

#[test]
fn a_refusal_or_an_unknown_certificate_is_not_retried() {
    let regulator = Regulator::start(vec![Answer::Status(400)]);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ledger = Ledger::open(&dir.path().join("submissions.jsonl"), None).expect("ledger");
    let refused = submitter(dir.path(), &regulator, true, 5).submit(&report("x"), &mut ledger, "carol", false, false);
    assert!(
        matches!(&refused, Err(SubmissionError::Failed { attempts: 1, error, .. }) if error.contains("400")),
        "{refused:?}"
    );
    // Without the test authority the endpoint is not trusted: one attempt, a clear reason,
    // nothing sent.
    let before = regulator.received().len();
    let untrusted =
        submitter(dir.path(), &regulator, false, 5).submit(&report("y"), &mut ledger, "carol", false, false);
    let Err(SubmissionError::Failed { attempts, error, .. }) = untrusted else { panic!("{untrusted:?}") };
    assert_eq!(attempts, 1);
    let error = error.to_ascii_lowercase();
    assert!(error.contains("certificate") || error.contains("issuer"), "{error}");
    assert_eq!(regulator.received().len(), before);
}

#[test]
fn reports_leave_the_machine_encrypted_only() {
    for (url, ok) in [
        ("https://stor.example.eu/submit", true),
        ("http://127.0.0.1:8080/stor", true),
        ("http://stor.example.eu/submit", false),
        ("http://127.0.0.1.example.eu/submit", false),
    ] {
        let parsed = Config::parse(&format!("[submission]\nurl = \"{url}\"\n"));
        assert_eq!(parsed.is_ok(), ok, "{url}: {parsed:?}");
    }
    assert!(Config::parse("[submission]\n").is_err(), "a destination is required");
    assert!(Config::parse("[submission]\nurl = \"https://a\"\ndrop_dir = \"b\"\n").is_err(), "only one");
}

/// A relay on 127.0.0.1 between a client and `port` that keeps every byte it passes: what a
/// capture of the loopback interface would see.
fn relay(port: u16) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<u8>>>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let relay_port = listener.local_addr().expect("address").port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let captured = seen.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().take(8).flatten() {
            let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", port)) else { continue };
            for (mut from, mut to) in
                [(client.try_clone().expect("clone"), server.try_clone().expect("clone")), (server, client)]
            {
                let seen = seen.clone();
                std::thread::spawn(move || {
                    let mut buffer = [0u8; 16 * 1024];
                    while let Ok(n) = from.read(&mut buffer) {
                        if n == 0 || to.write_all(&buffer[..n]).is_err() {
                            break;
                        }
                        seen.lock().expect("capture").extend_from_slice(&buffer[..n]);
                    }
                    let _ = to.shutdown(std::net::Shutdown::Write);
                });
            }
        }
    });
    (relay_port, captured)
}

#[test]
fn on_the_wire_a_report_is_encrypted() {
    let regulator = Regulator::start(Vec::new());
    let (port, captured) = relay(regulator.port);
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("test-ca.pem");
    std::fs::write(&ca, &regulator.ca_pem).expect("write");
    let config = Config::parse(&format!(
        "[submission]\nurl = \"https://127.0.0.1:{port}/stor\"\nca_file = {ca:?}\ntimeout = \"5s\"\n"
    ))
    .expect("config");
    let submitter = Submitter::new(config.submission.as_ref().expect("submission")).expect("submitter");
    let report = report("account ACC-SECRET-7 sold 1500 at 101.2575");
    let mut ledger = Ledger::open(&dir.path().join("submissions.jsonl"), None).expect("ledger");
    let filed = submitter.submit(&report, &mut ledger, "carol", false, false).expect("filed");
    assert!(matches!(filed, Submitted::Filed(_)));
    assert_eq!(regulator.received()[0].body, report.bytes(), "the endpoint got the report");
    let wire = captured.lock().expect("capture").clone();
    assert!(wire.len() > report.bytes().len(), "the exchange passed through the relay");
    for secret in ["ACC-SECRET-7", "101.2575", CASE] {
        assert!(!wire.windows(secret.len()).any(|w| w == secret.as_bytes()), "{secret} on the wire");
    }
}
