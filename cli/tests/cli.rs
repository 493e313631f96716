//! The command line: generate a day, run on it, and report errors clearly.

use std::process::Command;

fn surveil() -> Command {
    Command::new(env!("CARGO_BIN_EXE_surveil"))
}

/// A generated day of 30,000 events in a new folder: (the folder, the day's folder).
fn small_day() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let day = dir.path().join("day");
    let status = surveil()
        .args(["generate", "--events", "30000", "--accounts", "60", "--instruments", "6", "--out"])
        .arg(&day)
        .status()
        .expect("spawn");
    assert!(status.success());
    (dir, day)
}

#[test]
fn generate_then_run_writes_every_output() {
    let (dir, day) = small_day();
    let out = dir.path().join("out");
    let output = surveil()
        .args(["run", "--workers", "2", "--config"])
        .arg(day.join("surveil.toml"))
        .arg("--out")
        .arg(&out)
        .arg(day.join("events.csv"))
        .output()
        .expect("spawn");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let table = String::from_utf8_lossy(&output.stderr);
    assert!(table.contains("alerts") && table.contains("throughput"), "{table}");
    for file in [
        "alerts.jsonl",
        "dead_letters.jsonl",
        "late_events.jsonl",
        "order_to_trade.jsonl",
        "cases.jsonl",
        "audit.jsonl",
        "notices_all.jsonl",
        "summary.json",
    ] {
        assert!(out.join(file).exists(), "{file}");
    }
    // The RTS 9 report of the run's session, in each format, with the run's configuration.
    let report = |extra: &[&str]| {
        surveil()
            .args(["report", "otr", "--config"])
            .arg(day.join("surveil.toml"))
            .arg(&out)
            .args(extra)
            .output()
            .expect("spawn")
    };
    let json = report(&[]);
    assert!(json.status.success(), "{}", String::from_utf8_lossy(&json.stderr));
    let parsed: serde_json::Value = serde_json::from_slice(&json.stdout).expect("a JSON report");
    assert_eq!(parsed["session"], "2024-03-01");
    assert!(parsed["rows"].as_array().is_some_and(|r| !r.is_empty()));
    assert!(!String::from_utf8_lossy(&json.stderr).contains("warning"), "the run's own configuration");
    let html_path = dir.path().join("otr.html");
    let html = report(&["--member", "desk", "--out", html_path.to_str().expect("path")]);
    assert!(html.status.success(), "{}", String::from_utf8_lossy(&html.stderr));
    assert!(std::fs::read_to_string(&html_path).expect("html").contains("<table>"));
    let csv = report(&["--format", "csv"]);
    assert!(String::from_utf8_lossy(&csv.stdout).starts_with("session,member,instrument"));
    let wrong = report(&["--session", "1999-01-01"]);
    assert_eq!(wrong.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("2024-03-01"));
    // The run's audit trail verifies, and stops verifying once an alert in it is changed.
    let verify = |out: &std::path::Path| surveil().args(["audit", "verify"]).arg(out).output().expect("spawn");
    let verified = verify(&out);
    assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stderr));
    let said = String::from_utf8_lossy(&verified.stdout);
    assert!(said.contains("intact"), "{said}");
    assert!(said.contains("input ") && said.contains("events.csv"), "verify names the run's inputs: {said}");
    let log = out.join("audit.jsonl");
    let text = std::fs::read_to_string(&log).expect("audit log");
    let id = text.lines().nth(1).and_then(|l| l.split("\"id\":\"").nth(1)).map(|s| s[..32].to_string());
    let shown = surveil().args(["audit", "show"]).arg(id.as_deref().expect("an alert id")).arg(&out).output();
    assert!(shown.expect("spawn").status.success());
    std::fs::write(&log, text.replacen("\"rule\":\"", "\"rule\":\"x", 1)).expect("tamper");
    let refused = verify(&out);
    assert_eq!(refused.status.code(), Some(1));
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("line 2") && message.contains("changed"), "{message}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).expect("summary")).expect("json");
    assert!(summary["events"].as_u64().unwrap_or(0) >= 30_000);
    assert!(summary["alerts"].as_u64().unwrap_or(0) > 0);
}

#[test]
fn errors_are_clear_and_fail_the_command() {
    let output = surveil().args(["run", "/no/such/file.csv"]).output().expect("spawn");
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("/no/such/file.csv") && err.contains("No such file"), "{err}");

    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "time,what\n1,2\n").expect("write");
    let output = surveil().arg("run").arg(&bad).output().expect("spawn");
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("no `event_time` column"), "{err}");

    let config = dir.path().join("c.toml");
    std::fs::write(&config, "[rules.order_limits]\nmax_quantty = 5\n").expect("write");
    let output = surveil().arg("run").arg("--config").arg(&config).arg(&bad).output().expect("spawn");
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("max_quantty"), "{err}");
}

#[test]
fn training_on_an_export_refuses_a_window_that_does_not_match() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../datasets/example.csv");
    let status = surveil().args(["run", "-q", "--export-features", "--out"]).arg(&out).arg(example).status();
    assert!(status.expect("spawn").success());
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "[features]\nwindow = \"30s\"\n").expect("write");
    let output = surveil()
        .args(["train", "--config"])
        .arg(&config)
        .arg("--features")
        .arg(out.join("features.csv"))
        .arg("--out")
        .arg(dir.path().join("model.json"))
        .output()
        .expect("spawn");
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("holds 1m windows but features.window is 30s"), "{err}");
    // With the export's own window it trains.
    let output = surveil()
        .args(["train", "--features"])
        .arg(out.join("features.csv"))
        .arg("--out")
        .arg(dir.path().join("model.json"))
        .output()
        .expect("spawn");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn a_signed_audit_trail_verifies_with_its_public_key_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("audit.key");
    let keygen =
        |path: &std::path::Path| surveil().args(["audit", "keygen", "--out"]).arg(path).output().expect("spawn");
    let made = keygen(&key);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let public = String::from_utf8_lossy(&made.stdout).trim().to_string();
    assert_eq!(public.len(), 64);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).expect("key").permissions().mode();
        assert_eq!(mode & 0o077, 0, "the secret key is readable by its owner only");
    }
    assert!(!keygen(&key).status.success(), "an existing key is never overwritten");
    std::fs::write(dir.path().join("surveil.toml"), "[audit]\nsigning_key = \"audit.key\"\ncheckpoint_every = 2\n")
        .expect("config");
    let out = dir.path().join("out");
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/example.csv");
    let ran = surveil()
        .args(["run", "-q", "--config"])
        .arg(dir.path().join("surveil.toml"))
        .arg("--out")
        .arg(&out)
        .arg(&example)
        .output();
    let ran = ran.expect("spawn");
    assert!(ran.status.success(), "{}", String::from_utf8_lossy(&ran.stderr));
    let verify =
        |key: &str| surveil().args(["audit", "verify", "--public-key", key]).arg(&out).output().expect("spawn");
    let good = verify(&public);
    assert!(good.status.success(), "{}", String::from_utf8_lossy(&good.stderr));
    assert!(String::from_utf8_lossy(&good.stdout).contains("signed by the given key"));
    let other = keygen(&dir.path().join("other.key"));
    let bad = verify(String::from_utf8_lossy(&other.stdout).trim());
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not signed by the given key"));
    let garbage = verify("xyz");
    assert_eq!(garbage.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&garbage.stderr).contains("not an Ed25519 public key"));
}

#[test]
fn people_act_on_cases_from_the_command_line_and_a_run_replays_them() {
    let (dir, day) = small_day();
    let run = |out: &std::path::Path, actions: Option<&std::path::Path>| {
        let mut command = surveil();
        command.args(["run", "--quiet", "--config"]).arg(day.join("surveil.toml")).arg("--out").arg(out);
        if let Some(actions) = actions {
            command.arg("--case-actions").arg(actions);
        }
        let output = command.arg(day.join("events.csv")).output().expect("spawn");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    };
    let first = dir.path().join("first");
    run(&first, None);
    let cases = std::fs::read_to_string(first.join("cases.jsonl")).expect("cases.jsonl");
    let opened: serde_json::Value = serde_json::from_str(cases.lines().next().expect("a case")).expect("json");
    let id = opened["case"].as_str().expect("case id").to_string();
    let at = surveil::ingest::time::parse_event_time(opened["time"].as_str().expect("time").as_bytes()).expect("time");
    let actions = dir.path().join("actions.jsonl");
    let act = |args: &[&str]| {
        surveil()
            .args(["case"])
            .args(args)
            .arg("--actions")
            .arg(&actions)
            .arg("--run")
            .arg(&first)
            .output()
            .expect("spawn")
    };
    let ack = act(&["ack", &id, "--by", "alice", "--at", &(at + 1_000_000_000).to_string()]);
    assert!(ack.status.success(), "{}", String::from_utf8_lossy(&ack.stderr));
    // A close needs a reason; a case that had not opened by then cannot be acted on.
    let later = (at + 60_000_000_000).to_string();
    let reasonless = act(&["close", &id, "--by", "bob", "--disposition", "stor_filed", "--at", &later]);
    assert_eq!(reasonless.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&reasonless.stderr).contains("reason"));
    let early = act(&["review", &id, "--by", "bob", "--at", &(at - 1).to_string()]);
    assert_eq!(early.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&early.stderr).contains("no case"));
    let close =
        act(&["close", &id, "--by", "bob", "--disposition", "stor_filed", "--reason", "layering", "--at", &later]);
    assert!(close.status.success(), "{}", String::from_utf8_lossy(&close.stderr));
    assert_eq!(
        std::fs::read_to_string(&actions).expect("actions").lines().count(),
        2,
        "refused actions are not recorded"
    );

    let second = dir.path().join("second");
    run(&second, Some(&actions));
    let shown = surveil().args(["case", "show", &id]).arg(&second).output().expect("spawn");
    let versions: Vec<serde_json::Value> =
        String::from_utf8_lossy(&shown.stdout).lines().map(|l| serde_json::from_str(l).expect("json")).collect();
    let changes: Vec<&str> = versions.iter().filter_map(|v| v["change"].as_str()).collect();
    assert_eq!(changes.first(), Some(&"opened"));
    assert!(changes.contains(&"acknowledged") && changes.last() == Some(&"closed"), "{changes:?}");
    let closed = versions.last().expect("versions");
    assert_eq!((closed["disposition"].as_str(), closed["reason"].as_str()), (Some("stor_filed"), Some("layering")));
    let listed = surveil().args(["case", "list", "--state", "closed"]).arg(&second).output().expect("spawn");
    let listed = String::from_utf8_lossy(&listed.stdout).to_string();
    assert_eq!(listed.lines().count(), 2, "a header and the closed case: {listed}");
    assert!(listed.contains(&id));
    let audit = surveil().args(["audit", "show", &id]).arg(&second).output().expect("spawn");
    let audit = String::from_utf8_lossy(&audit.stdout).to_string();
    assert_eq!(audit.lines().filter(|l| l.contains("\"kind\":\"case\"")).count(), versions.len());
    let verified = surveil().args(["audit", "verify"]).arg(&second).output().expect("spawn");
    assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stderr));
    // The reports of the case: a STOR in XML, and the quarter's FINRA 3110 report.
    let stor = surveil()
        .args(["report", "stor", &id])
        .arg(&second)
        .arg("--config")
        .arg(day.join("surveil.toml"))
        .args(["--format", "xml"])
        .output()
        .expect("spawn");
    assert!(stor.status.success(), "{}", String::from_utf8_lossy(&stor.stderr));
    let xml = String::from_utf8_lossy(&stor.stdout).to_string();
    assert!(xml.contains("<DecidedAt>") && xml.contains("layering"), "{xml}");
    let finra =
        surveil().args(["report", "finra-3110"]).arg(&second).args(["--format", "csv"]).output().expect("spawn");
    assert!(finra.status.success(), "{}", String::from_utf8_lossy(&finra.stderr));
    let csv = String::from_utf8_lossy(&finra.stdout).to_string();
    assert!(csv.starts_with("quarter,case,") && csv.contains("violation found"), "{csv}");
}

#[test]
fn audit_verify_inputs_says_when_an_input_changed_after_its_run() {
    let (dir, day) = small_day();
    let out = dir.path().join("out");
    let events = day.join("events.csv");
    let run = surveil()
        .args(["run", "--quiet", "--config"])
        .arg(day.join("surveil.toml"))
        .arg("--out")
        .arg(&out)
        .arg(&events)
        .output()
        .expect("spawn");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let check = || surveil().args(["audit", "verify", "--inputs"]).arg(&out).output().expect("spawn");
    assert!(check().status.success());
    let mut bytes = std::fs::read(&events).expect("events");
    let middle = bytes.len() / 2;
    bytes[middle] = if bytes[middle] == b'7' { b'8' } else { b'7' };
    std::fs::write(&events, bytes).expect("write");
    let changed = check();
    assert_eq!(changed.status.code(), Some(1));
    let said = String::from_utf8_lossy(&changed.stdout);
    assert!(said.contains("CHANGED since the run, from byte 0"), "{said}");
    assert!(String::from_utf8_lossy(&changed.stderr).contains("not the bytes the run read"));
}
