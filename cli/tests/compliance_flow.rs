//! End to end on a recorded day, through the command line: detection, alerts, a case that
//! escalates unacknowledged, is acknowledged and closed with a STOR filed; the STOR drafted,
//! final, and filed at a regulator's HTTPS endpoint (a local one with a test certificate) with
//! its receipt recorded on the case; the audit trail verifies, and fails to verify after each
//! kind of tampering.

#[path = "../../tests/common/mod.rs"]
mod common;
#[path = "../../tests/common/https.rs"]
mod https;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// A day of the IMC Prosperity round 5 trades: self-trades and off-market prints.
const IMC: &str = "imc_prosperity/p3_2025/trades_round_5_day_2.csv";

const TRADERS: [&str; 10] =
    ["Caesar", "Camilla", "Charlie", "Gary", "Gina", "Olivia", "Pablo", "Paris", "Penelope", "Peter"];

const PRODUCTS: [&str; 15] = [
    "CROISSANTS",
    "DJEMBES",
    "JAMS",
    "KELP",
    "MAGNIFICENT_MACARONS",
    "PICNIC_BASKET1",
    "PICNIC_BASKET2",
    "RAINFOREST_RESIN",
    "SQUID_INK",
    "VOLCANIC_ROCK",
    "VOLCANIC_ROCK_VOUCHER_10000",
    "VOLCANIC_ROCK_VOUCHER_10250",
    "VOLCANIC_ROCK_VOUCHER_10500",
    "VOLCANIC_ROCK_VOUCHER_9500",
    "VOLCANIC_ROCK_VOUCHER_9750",
];

fn surveil() -> Command {
    Command::new(env!("CARGO_BIN_EXE_surveil"))
}

fn ok(output: Output) -> Output {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    output
}

fn failed(output: Output) -> String {
    assert_eq!(output.status.code(), Some(1), "{}", String::from_utf8_lossy(&output.stdout));
    String::from_utf8_lossy(&output.stderr).to_string()
}

fn time_ns(text: &Value) -> u64 {
    surveil::ingest::time::parse_event_time(text.as_str().expect("time").as_bytes()).expect("time")
}

/// The reference data, the deadlines, the submitter and the regulator's endpoint.
fn configure(dir: &Path, regulator: &https::Regulator) -> PathBuf {
    let mut instruments = String::from("instrument,price_scale,currency,isin,cfi,reference_price,tick_size\n");
    for (i, product) in PRODUCTS.iter().enumerate() {
        instruments.push_str(&format!("{product},4,XSH,XS{:010},ESVUFR,,\n", 1000 + i));
    }
    std::fs::write(dir.join("instruments.csv"), instruments).expect("write");
    let mut accounts = String::from("account,owner,desk,trader\n");
    for trader in TRADERS {
        accounts.push_str(&format!("{trader},OWNER-{},ARCHIPELAGO,{trader}\n", trader.to_uppercase()));
    }
    std::fs::write(dir.join("accounts.csv"), accounts).expect("write");
    std::fs::write(dir.join("regulator-ca.pem"), &regulator.ca_pem).expect("write");
    let config = format!(
        r#"
[reference]
instruments = "instruments.csv"
accounts = "accounts.csv"

[alerts]
group_horizon = "15m"

[[alerts.routes]]
name = "all"

[cases.deadlines]
low = "2m"
medium = "1m"
high = "30s"
critical = "10s"

[stor]
person_name = "Dana Reyes"
person_position = "Head of Surveillance"
entity_name = "Example Securities Ltd"
legal_form = "private limited company"
lei = "5493001KJTIIGC8Y1R12"
address = "1 Harbour Street, Dublin"
acting_capacity = "dealing on own account"
trading_activity = "proprietary trading in listed derivatives"
relationship_with_subject = "employee"
contact_name = "Dana Reyes"
contact_position = "Head of Surveillance"
contact_email = "compliance@example.com"

[submission]
url = "{}"
ca_file = "regulator-ca.pem"
token_variable = "SURVEIL_TEST_REGULATOR_TOKEN"
timeout = "5s"
backoff = "10ms"
"#,
        regulator.url()
    );
    let path = dir.join("surveil.toml");
    std::fs::write(&path, config).expect("write");
    path
}

fn run(config: &Path, out: &Path, actions: Option<&Path>) {
    let mut command = surveil();
    command.args(["run", "--quiet", "--config"]).arg(config).arg("--out").arg(out);
    if let Some(actions) = actions {
        command.arg("--case-actions").arg(actions);
    }
    ok(command.arg(common::data(IMC)).output().expect("spawn"));
}

fn versions(run: &Path, case: &str) -> Vec<Value> {
    common::read_jsonl(run, "cases.jsonl").into_iter().filter(|c| c["case"] == case).collect()
}

fn verify(log: &Path) -> Output {
    surveil().args(["audit", "verify"]).arg(log).output().expect("spawn")
}

#[test]
fn a_recorded_day_from_detection_to_a_filed_stor_with_an_audit_trail_that_shows_tampering() {
    let regulator = https::Regulator::start(vec![https::Answer::Status(503)]);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = configure(dir.path(), &regulator);

    // Detection: the day's alerts open cases, which escalate when nobody acknowledges them.
    let first = dir.path().join("first");
    run(&config, &first, None);
    let cases = common::read_jsonl(&first, "cases.jsonl");
    let escalated =
        cases.iter().find(|c| c["change"] == "escalated" && c["rule"] == "self_trade").expect("an escalation");
    let id = escalated["case"].as_str().expect("id").to_string();
    let escalated_at = time_ns(&escalated["time"]);

    // People act: an acknowledgement after the escalation, then the decision to file.
    let actions = dir.path().join("case_actions.jsonl");
    let act = |args: &[&str]| {
        ok(surveil()
            .arg("case")
            .args(args)
            .arg("--actions")
            .arg(&actions)
            .arg("--run")
            .arg(&first)
            .output()
            .expect("spawn"))
    };
    let (ack_at, close_at) = (escalated_at + 1_000_000_000, escalated_at + 60_000_000_000);
    act(&["ack", &id, "--by", "alice", "--at", &ack_at.to_string()]);
    act(&[
        "close",
        &id,
        "--by",
        "alice",
        "--disposition",
        "stor_filed",
        "--reason",
        "the same trader on both sides of repeated prints",
        "--at",
        &close_at.to_string(),
    ]);
    let second = dir.path().join("second");
    run(&config, &second, Some(&actions));
    let changes: Vec<String> =
        versions(&second, &id).iter().map(|v| v["change"].as_str().unwrap_or("").to_string()).collect();
    assert_eq!(changes.first().map(String::as_str), Some("opened"));
    assert!(changes.contains(&"escalated".to_string()) && changes.contains(&"acknowledged".to_string()), "{changes:?}");
    assert_eq!(changes.last().map(String::as_str), Some("closed"));

    // The STOR: final (the reference data and the submitter fill everything).
    let stor = dir.path().join("stor.json");
    let drafted = ok(surveil()
        .args(["report", "stor", &id])
        .arg(&second)
        .arg("--config")
        .arg(&config)
        .args(["--suspicion-formed", &close_at.to_string(), "--at", &(close_at + 3_600_000_000_000).to_string()])
        .arg("--out")
        .arg(&stor)
        .output()
        .expect("spawn"));
    let report: Value = serde_json::from_slice(&std::fs::read(&stor).expect("stor")).expect("json");
    assert_eq!(report["status"], "final", "{}", String::from_utf8_lossy(&drafted.stderr));
    assert!(!report["orders_and_transactions"].as_array().expect("events").is_empty());
    // The market around the activity, read again from the day: the prints of its instrument.
    let market = &report["market"][0];
    assert_eq!(market["instrument"], report["instruments"][0]["name"]);
    assert!(market["prints"].as_array().is_some_and(|p| p.len() > 1), "{market}");
    let html = ok(surveil()
        .args(["report", "stor", &id])
        .arg(&second)
        .arg("--config")
        .arg(&config)
        .args(["--suspicion-formed", &close_at.to_string(), "--at", &(close_at + 3_600_000_000_000).to_string()])
        .args(["--format", "html"])
        .output()
        .expect("spawn"));
    let html = String::from_utf8_lossy(&html.stdout);
    assert!(html.contains("<svg") && html.contains("prints (grey)") && html.matches("r=\"1.5\"").count() > 1);

    // Filed at the regulator: a 503 first, then the receipt; the token is sent, never kept.
    let ledger = dir.path().join("submissions.jsonl");
    let submit = || {
        surveil()
            .args(["report", "submit"])
            .arg(&stor)
            .arg("--config")
            .arg(&config)
            .args(["--by", "carol", "--ledger"])
            .arg(&ledger)
            .arg("--actions")
            .arg(&actions)
            .args(["--at", &(close_at + 7_200_000_000_000).to_string()])
            .env("SURVEIL_TEST_REGULATOR_TOKEN", "s3cret-token")
            .output()
            .expect("spawn")
    };
    let filed = ok(submit());
    assert_eq!(String::from_utf8_lossy(&filed.stdout).trim(), "RCPT-0001");
    let digest = surveil::audit::sha256_hex(&std::fs::read(&stor).expect("stor"));
    let received = regulator.received();
    assert_eq!(received.len(), 2);
    assert!(received.iter().all(
        |r| r.key.as_deref() == Some(digest.as_str()) && r.authorization.as_deref() == Some("Bearer s3cret-token")
    ));
    let again = ok(submit());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not sent again"));
    assert_eq!(regulator.received().len(), 2, "filed once");
    let ledger_text = std::fs::read_to_string(&ledger).expect("ledger");
    assert!(!ledger_text.contains("s3cret"));
    let checked = ok(verify(&ledger));
    assert!(String::from_utf8_lossy(&checked.stdout).contains("1 filing(s)"));

    // The receipt on the case, from the replayed actions; every version in the audit trail.
    let third = dir.path().join("third");
    run(&config, &third, Some(&actions));
    let last = versions(&third, &id).pop().expect("versions");
    assert_eq!((last["change"].as_str(), last["receipt"].as_str()), (Some("report_filed"), Some("RCPT-0001")));
    assert_eq!(last["report_sha256"].as_str(), Some(digest.as_str()));
    ok(verify(&third));
    // The run recorded what it read: the input's digest, which still matches the file.
    let log_text = std::fs::read_to_string(third.join("audit.jsonl")).expect("audit log");
    let finished: Value = serde_json::from_str(log_text.lines().last().expect("a record")).expect("json");
    let digest = &finished["data"]["input_digests"][0];
    let day = std::fs::read(common::data(IMC)).expect("the day");
    assert_eq!(digest["bytes"].as_u64(), Some(day.len() as u64));
    assert_eq!(digest["blocks"][0].as_str(), Some(surveil::audit::sha256_hex(&day[..day.len().min(8 << 20)]).as_str()));
    let inputs = ok(surveil().args(["audit", "verify", "--inputs"]).arg(&third).output().expect("spawn"));
    assert!(String::from_utf8_lossy(&inputs.stdout).contains("unchanged since the run"));
    let shown = ok(surveil().args(["audit", "show", &id]).arg(&third).output().expect("spawn"));
    assert!(String::from_utf8_lossy(&shown.stdout).contains("RCPT-0001"));

    // Tampering, each kind: the log stops verifying, and says where.
    let log = std::fs::read_to_string(third.join("audit.jsonl")).expect("audit log");
    let lines: Vec<&str> = log.lines().collect();
    let tampered = dir.path().join("tampered");
    std::fs::create_dir_all(&tampered).expect("mkdir");
    std::fs::copy(third.join("summary.json"), tampered.join("summary.json")).expect("copy");
    let receipt_line = lines.iter().position(|l| l.contains("RCPT-0001")).expect("the receipt is audited");
    let mut edited = lines.clone();
    let changed = lines[receipt_line].replace("RCPT-0001", "RCPT-0002");
    edited[receipt_line] = &changed;
    let mut deleted = lines.clone();
    deleted.remove(receipt_line);
    let mut inserted = lines.clone();
    inserted.insert(receipt_line, lines[1]);
    let mut swapped = lines.clone();
    swapped.swap(1, 2);
    let cut = &lines[..lines.len() - 1];
    let cases = [
        (edited, "was changed after it was written"),
        (deleted, "are missing here"),
        (inserted, "is out of place"),
        (swapped, "are missing here"),
        (cut.to_vec(), "records were removed from the end"),
    ];
    for (records, expected) in cases {
        std::fs::write(tampered.join("audit.jsonl"), records.join("\n") + "\n").expect("write");
        let said = failed(verify(&tampered));
        assert!(said.contains(expected), "{expected}: {said}");
    }
    // Rewritten with every hash recomputed: it no longer ends where the run's summary says.
    let mut rewritten = surveil::audit::AuditLog::new(Vec::new());
    for line in &lines {
        let record: Value = serde_json::from_str(&line.replace("RCPT-0001", "RCPT-0002")).expect("record");
        rewritten.append(record["kind"].as_str().expect("kind"), &record["data"]).expect("append");
    }
    std::fs::write(tampered.join("audit.jsonl"), rewritten.into_inner()).expect("write");
    let said = failed(verify(&tampered));
    assert!(said.contains("not at the head its run recorded"), "{said}");
    // Nor does a run's log pass as a submissions ledger, which has no head to match.
    let mut disguised = surveil::audit::AuditLog::new(Vec::new());
    disguised.append("ledger_started", &serde_json::json!({})).expect("append");
    std::fs::write(tampered.join("audit.jsonl"), disguised.into_inner()).expect("write");
    let said = failed(verify(&tampered));
    assert!(said.contains("does not verify"), "{said}");

    // A ledger that lost its end would let the report be filed twice: the case actions show
    // the filing, and the submission is refused.
    let kept: String = ledger_text.lines().take(3).map(|l| format!("{l}\n")).collect();
    std::fs::write(&ledger, kept).expect("write");
    let said = failed(submit());
    assert!(said.contains("lost records from its end"), "{said}");
    assert_eq!(regulator.received().len(), 2);
}

fn keygen(path: &Path) -> String {
    let made = ok(surveil().args(["audit", "keygen", "--encryption", "--out"]).arg(path).output().expect("spawn"));
    String::from_utf8_lossy(&made.stdout).trim().trim_start_matches("encryption key ").to_string()
}

#[test]
fn an_encrypted_audit_trail_holds_no_plaintext_and_opens_with_its_key_only() {
    let regulator = https::Regulator::start(Vec::new());
    let dir = tempfile::tempdir().expect("tempdir");
    let config = configure(dir.path(), &regulator);
    let (old, new) = (dir.path().join("old.key"), dir.path().join("new.key"));
    let (old_id, new_id) = (keygen(&old), keygen(&new));
    assert_eq!(old_id.len(), 16);
    let mut text = std::fs::read_to_string(&config).expect("config");
    text.push_str("\n[audit]\nencryption_key = \"old.key\"\n");
    std::fs::write(&config, text).expect("write");
    let out = dir.path().join("out");
    run(&config, &out, None);

    // Neither an account nor a price of the day's alerts is in the file.
    let log = out.join("audit.jsonl");
    let sealed = std::fs::read(&log).expect("audit log");
    assert!(surveil::encryption::is_sealed(&sealed));
    let alerts = common::read_jsonl(&out, "alerts.jsonl");
    let evidence = alerts[0]["evidence"][0].clone();
    // As the plaintext would hold it (a bare price of three digits could occur in any random bytes).
    let price = format!("\"price\":\"{}\"", evidence["price"].as_str().expect("a price"));
    for secret in TRADERS.iter().map(|t| t.to_string()).chain([price, alerts[0]["id"].as_str().expect("id").into()]) {
        assert!(!sealed.windows(secret.len()).any(|w| w == secret.as_bytes()), "{secret} in the sealed log");
    }

    let verify_with = |keys: &[&Path]| {
        let mut command = surveil();
        command.args(["audit", "verify"]).arg(&out).env_remove("SURVEIL_ENCRYPTION_KEY");
        for key in keys {
            command.arg("--key").arg(key);
        }
        command.output().expect("spawn")
    };
    let said = failed(verify_with(&[]));
    assert!(said.contains("is encrypted") && said.contains(&old_id) && said.contains("--key"), "{said}");
    ok(verify_with(&[&old]));
    let said = failed(verify_with(&[&new]));
    assert!(said.contains(&format!("sealed with key {old_id}")), "{said}");
    let id = alerts[0]["id"].as_str().expect("id");
    let shown = ok(surveil()
        .args(["audit", "show", id])
        .arg(&out)
        .env("SURVEIL_ENCRYPTION_KEY", std::fs::read_to_string(&old).expect("key").trim())
        .output()
        .expect("spawn"));
    assert!(String::from_utf8_lossy(&shown.stdout).contains(id));

    // A changed byte, a cut: found, with where.
    let mut changed = sealed.clone();
    let middle = changed.len() / 2;
    changed[middle] ^= 1;
    std::fs::write(&log, &changed).expect("write");
    assert!(failed(verify_with(&[&old])).contains("was changed or moved"));
    std::fs::write(&log, &sealed[..sealed.len() - 100]).expect("write");
    assert!(failed(verify_with(&[&old])).contains("it was cut"));
    // A plain log in the sealed one's place: the summary says it was sealed.
    let plain = surveil::encryption::open_sealed(
        &sealed,
        &[surveil::encryption::EncryptionKey::from_hex(&std::fs::read_to_string(&old).expect("key")).expect("key")],
    )
    .expect("opens");
    std::fs::write(&log, &plain).expect("write");
    assert!(failed(verify_with(&[])).contains("is plain text: it was replaced"));
    assert!(failed(verify_with(&[&old])).contains("plain text"));
    // A killed run: its first records flushed as a chunk, the last chunk never written. The
    // readable records are checked.
    let key = surveil::encryption::EncryptionKey::from_hex(&std::fs::read_to_string(&old).expect("key")).expect("key");
    let first_records: String = String::from_utf8_lossy(&plain).lines().take(3).map(|l| format!("{l}\n")).collect();
    let mut writer = surveil::encryption::SealedWriter::new(Vec::new(), &key).expect("writer");
    std::io::Write::write_all(&mut writer, first_records.as_bytes()).expect("write");
    std::io::Write::flush(&mut writer).expect("flush");
    std::fs::write(&log, writer.get_ref()).expect("write");
    let said = failed(verify_with(&[&old]));
    assert!(said.contains("without its last one") && said.contains("its first 3 records verify"), "{said}");
    std::fs::write(&log, &sealed).expect("write");

    // Rotation: sealed again under the new key, the log verifies with it, and with both keys.
    let resealed = surveil()
        .args(["audit", "reseal"])
        .arg(&out)
        .arg("--key")
        .arg(&old)
        .arg("--new-key")
        .arg(&new)
        .env_remove("SURVEIL_ENCRYPTION_KEY")
        .output()
        .expect("spawn");
    ok(resealed);
    ok(verify_with(&[&new]));
    ok(verify_with(&[&old, &new]));
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).expect("summary")).expect("json");
    assert_eq!(summary["audit"]["encryption_key_id"].as_str(), Some(new_id.as_str()));
    assert!(failed(verify_with(&[&old])).contains(&format!("sealed with key {new_id}")));
}
