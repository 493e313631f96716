//! The Parquet archive: written by a run, the same files on any number of workers, read back
//! by the library and by pyarrow, replayed into the same alerts, and encrypted at rest.
//! (Object storage is tested through the command line, against an S3 server on 127.0.0.1:
//! `cli/tests/archive_s3.rs`.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use surveil::archive::{ArchiveReader, EVENTS};
use surveil::config::{ArchiveConfig, Config};
use surveil::encryption::EncryptionKey;
use surveil::generate::{GenerateConfig, generate};
use surveil::pipeline::{RunError, RunSummary, inputs, run_files};

fn day(dir: &Path) -> (PathBuf, Config) {
    let generated = generate(&GenerateConfig { events: 60_000, instruments: 6, ..GenerateConfig::default() }, dir)
        .expect("generate");
    (generated.events_path, Config::load(&dir.join("surveil.toml")).expect("config"))
}

fn with_archive(config: &Config, dir: &Path) -> Config {
    let mut config = config.clone();
    // Small row groups and files, so that a day has several of each.
    config.archive = Some(ArchiveConfig { row_group_rows: 1000, file_rows: 4000, ..ArchiveConfig::local(dir) });
    config
}

/// Every file under `dir`, relative, with its bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let name = path.strip_prefix(dir).expect("relative").display().to_string();
                out.insert(name, std::fs::read(&path).expect("read"));
            }
        }
    }
    out
}

/// The alerts of a run: id, rule, event time and score.
fn alerts(out: &Path) -> Vec<(String, String, u64, String)> {
    let text = std::fs::read_to_string(out.join("alerts.jsonl")).expect("alerts");
    let mut alerts: Vec<_> = text
        .lines()
        .map(|line| {
            let alert: serde_json::Value = serde_json::from_str(line).expect("json");
            (
                alert["id"].as_str().expect("id").to_string(),
                alert["rule"].as_str().expect("rule").to_string(),
                alert["event_time_ns"].as_u64().unwrap_or_default(),
                alert["score"].to_string(),
            )
        })
        .collect();
    alerts.sort();
    alerts
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path).expect("read").lines().map(|line| serde_json::from_str(line).expect("json")).collect()
}

#[test]
fn a_replay_of_the_archive_raises_the_same_alerts_and_the_files_are_the_same_on_any_layout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (events, config) = day(&dir.path().join("day"));
    let mut archives = Vec::new();
    let mut summaries: Vec<RunSummary> = Vec::new();
    for workers in [1, 2] {
        let archive = dir.path().join(format!("archive{workers}"));
        let out = dir.path().join(format!("out{workers}"));
        let summary =
            run_files(std::slice::from_ref(&events), with_archive(&config, &archive), workers, &out).expect("run");
        let counts = summary.archive.clone().expect("archive counts");
        assert_eq!(counts.rows.get("events"), Some(&summary.events), "every event is archived");
        assert_eq!(counts.rows.get("alerts"), Some(&summary.alerts), "every alert is archived");
        assert!(counts.files > 6, "several files per instrument: {counts:?}");
        assert_eq!(counts.error, None);
        archives.push(archive);
        summaries.push(summary);
    }
    assert!(summaries[0].alerts > 0, "the generated day has injected breaches");
    // One writer per partition, rows in (time, origin) order, row groups by count: the events
    // are the same bytes whatever the number of workers.
    let (one, two) = (files(&archives[0].join(EVENTS)), files(&archives[1].join(EVENTS)));
    assert_eq!(one.keys().collect::<Vec<_>>(), two.keys().collect::<Vec<_>>());
    assert!(one == two, "events files differ between 1 and 2 workers");
    assert!(one.keys().all(|k| k.starts_with("date=2024-03-01/instrument=")), "{:?}", one.keys());
    assert!(!files(&archives[0]).keys().any(|k| k.ends_with(".partial")), "no staging file is left");

    // Read back, the archive holds every event once, in order within each file.
    let reader = ArchiveReader::open(&ArchiveConfig::local(&archives[0]), Vec::new()).expect("reader");
    for key in reader.files(EVENTS).expect("files") {
        let events = reader.events_in(&key).expect("file");
        assert!(events.windows(2).all(|w| w[0].order_key() < w[1].order_key()), "{key} is not in order");
    }
    let archived = reader.events(false).expect("events");
    assert_eq!(archived.len() as u64, summaries[0].events - summaries[0].written.late_events);
    let mut origins: Vec<_> = archived.iter().map(|e| e.origin).collect();
    origins.sort();
    origins.dedup();
    assert_eq!(origins.len(), archived.len(), "no event twice");
    let archived_alerts: Vec<String> = reader.alerts().expect("alerts").into_iter().map(|a| a.id).collect();
    let mut expected: Vec<String> = alerts(&dir.path().join("out1")).into_iter().map(|a| a.0).collect();
    let mut got = archived_alerts.clone();
    expected.sort();
    got.sort();
    assert_eq!(got, expected, "the alerts table holds the run's alerts");

    // Replayed on two workers, the archive gives the run's alerts and counts.
    let replayed = dir.path().join("replay");
    let summary = surveil::pipeline::run(surveil::pipeline::RunOptions {
        workers: 2,
        out_dir: replayed.clone(),
        ..surveil::pipeline::RunOptions::new(inputs(std::slice::from_ref(&archives[0]), None), config.clone())
    })
    .expect("replay");
    assert!(summary.complete);
    assert_eq!(summary.events, summaries[0].events - summaries[0].written.late_events);
    assert_eq!(alerts(&replayed), alerts(&dir.path().join("out1")));
    // The replay's evidence names the inputs of the run that archived the events.
    let first = std::fs::read_to_string(replayed.join("alerts.jsonl")).expect("alerts");
    let label = format!("{} ({})", archives[0].display(), events.display());
    assert!(first.contains(&format!("\"source\":{}", serde_json::json!(label))), "evidence names the day: {label}");

    // The same inputs archived again with larger files: the run's files replace the earlier
    // ones (fewer of them), and no row is in the archive twice.
    let mut fewer = with_archive(&config, &archives[0]);
    if let Some(settings) = fewer.archive.as_mut() {
        settings.file_rows = 1 << 20;
    }
    let again = run_files(std::slice::from_ref(&events), fewer, 1, &dir.path().join("again")).expect("again");
    let counts = again.archive.expect("counts");
    assert!(counts.removed > 0, "the earlier run's extra files are removed: {counts:?}");
    assert_eq!(reader.events(false).expect("events").len(), archived.len());
}

#[test]
fn late_events_and_dead_letters_are_archived_and_come_back_as_they_were() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("day.csv");
    let base = 1_709_280_000_000_000_000u64;
    let mut csv = String::from("event_time,kind,instrument,order_id,account,side,price,quantity\n");
    for i in 0..50u64 {
        csv.push_str(&format!("{},new,ACME,O{i},ACC{},buy,10.5,100\n", base + i * 1_000_000_000, i % 3));
    }
    // Far behind the latest event: late. Then a price that is not a price: a dead letter.
    csv.push_str(&format!("{},new,ACME,LATE1,ACC9,sell,10.5,100\n", base + 5_000_000_000));
    csv.push_str(&format!("{},new,ACME,BAD1,ACC9,sell,ten,100\n", base + 60_000_000_000));
    csv.push_str(&format!(
        "{},new,A-LONG-INSTRUMENT/NAME,O-WITH-A-VERY-LONG-NAME-1,ACC1,buy,1,1\n",
        base + 61_000_000_000
    ));
    std::fs::write(&input, csv).expect("write");
    // An owner from the reference data with a name that needs a dictionary.
    std::fs::write(dir.path().join("accounts.csv"), "account,owner,desk,trader\nACC1,BENEFICIAL OWNER ONE,,\n")
        .expect("accounts");
    let mut config = Config::default();
    config.reference.accounts = Some(dir.path().join("accounts.csv"));
    let archive = dir.path().join("archive");
    let config = with_archive(&config, &archive);
    let first = run_files(std::slice::from_ref(&input), config.clone(), 1, &dir.path().join("out")).expect("run");
    assert_eq!((first.written.late_events, first.dead_letters), (1, 1));

    let reader = ArchiveReader::open(&ArchiveConfig::local(&archive), Vec::new()).expect("reader");
    let letters = reader.dead_letters().expect("dead letters");
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].letter.reason.as_str(), "bad_price");
    assert!(letters[0].letter.raw.contains("BAD1,ACC9,sell,ten"), "{:?}", letters[0].letter.raw);
    let late = reader.events(true).expect("late events");
    assert_eq!(late.len(), 1);
    let owners = reader.events(false).expect("events");
    let owner = surveil::model::Symbol::of(b"BENEFICIAL OWNER ONE");
    assert!(owners.iter().any(|e| e.owner == owner), "the reference data's owner is archived by name");
    // A name that needs a dictionary (long, with a slash) is written as text and escaped in
    // its folder.
    let keys = reader.files(EVENTS).expect("files");
    assert!(keys.iter().any(|k| k.contains("instrument=A-LONG-INSTRUMENT%2FNAME/")), "{keys:?}");

    // The replay archives what it replays, late events and dead letters included.
    let out = dir.path().join("replay");
    let mut replay_config = with_archive(&config, &dir.path().join("rearchived"));
    replay_config.reference.accounts = None;
    let replay = run_files(std::slice::from_ref(&archive), replay_config, 1, &out).expect("replay");
    assert_eq!((replay.written.late_events, replay.dead_letters, replay.events), (1, 1, first.events - 1));
    let rearchived =
        ArchiveReader::open(&ArchiveConfig::local(&dir.path().join("rearchived")), Vec::new()).expect("reader");
    assert_eq!(rearchived.events(true).expect("late").len(), 1);
    assert_eq!(rearchived.dead_letters().expect("letters").len(), 1);
    assert_eq!(rearchived.events(false).expect("events").len(), owners.len());
    let strip = |mut v: serde_json::Value| {
        v.as_object_mut().expect("object").remove("source");
        v
    };
    let (before, after) = (dir.path().join("out"), out);
    for file in ["dead_letters.jsonl", "late_events.jsonl"] {
        let a: Vec<_> = lines(&before.join(file)).into_iter().map(strip).collect();
        let b: Vec<_> = lines(&after.join(file)).into_iter().map(strip).collect();
        assert_eq!(a, b, "{file}");
    }
}

#[test]
fn an_encrypted_archive_holds_no_plaintext_and_opens_only_with_its_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (events, config) = day(&dir.path().join("day"));
    let key_file = dir.path().join("archive.key");
    std::fs::write(&key_file, EncryptionKey::generate_hex()).expect("key");
    let key = EncryptionKey::from_file(&key_file).expect("key");
    let archive = dir.path().join("archive");
    let mut config = with_archive(&config, &archive);
    config.audit.encryption_key = Some(key_file.clone());
    let summary = run_files(std::slice::from_ref(&events), config.clone(), 1, &dir.path().join("out")).expect("run");
    assert_eq!(summary.archive.as_ref().and_then(|a| a.encryption_key_id.clone()), Some(key.id_hex()));
    let day_text = std::fs::read_to_string(&events).expect("day");
    let account = day_text.lines().nth(1).and_then(|l| l.split(',').nth(6)).expect("an account").to_string();
    let order = day_text.lines().nth(1).and_then(|l| l.split(',').nth(5)).expect("an order").to_string();
    let all = files(&archive);
    assert!(!all.is_empty());
    for (name, bytes) in &all {
        // Parquet with an encrypted footer ends in "PARE", not "PAR1".
        assert!(bytes.ends_with(b"PARE"), "{name} is not an encrypted Parquet file");
        for plain in [account.as_bytes(), order.as_bytes(), b"self_trade".as_slice()] {
            assert!(
                !bytes.windows(plain.len()).any(|w| w == plain),
                "{name} shows {:?} in plain text",
                String::from_utf8_lossy(plain)
            );
        }
    }
    let settings = ArchiveConfig::local(&archive);
    let without = ArchiveReader::open(&settings, Vec::new()).expect("reader").events(false);
    assert!(without.is_err(), "read without a key");
    let other = EncryptionKey::from_hex(&EncryptionKey::generate_hex()).expect("key");
    let wrong =
        ArchiveReader::open(&settings, vec![other.clone()]).expect("reader").events(false).expect_err("wrong key");
    assert!(wrong.to_string().contains(&key.id_hex()), "the error names the key it needs: {wrong}");
    let read = ArchiveReader::open(&settings, vec![other, key]).expect("reader").events(false).expect("with the key");
    assert_eq!(read.len() as u64, summary.events - summary.written.late_events);

    // A replay with the key gives the same alerts; without it, the run refuses to start.
    let mut replay_config = config.clone();
    replay_config.archive = None;
    let out = dir.path().join("replay");
    run_files(std::slice::from_ref(&archive), replay_config.clone(), 1, &out).expect("replay");
    assert_eq!(alerts(&out), alerts(&dir.path().join("out")));
    replay_config.audit.encryption_key = None;
    let blind = run_files(std::slice::from_ref(&archive), replay_config, 1, &dir.path().join("blind"))
        .expect_err("no key, no replay");
    assert!(blind.to_string().contains("encrypted and no key was given"), "{blind}");
}

#[test]
fn an_archive_that_cannot_be_written_fails_the_run_after_its_other_outputs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (events, config) = day(&dir.path().join("day"));
    // A file where the archive's folder would be.
    let blocked = dir.path().join("blocked");
    std::fs::create_dir_all(blocked.join("events")).expect("dir");
    std::fs::write(blocked.join("events/date=2024-03-01"), b"not a folder").expect("file");
    let out = dir.path().join("out");
    let error = run_files(std::slice::from_ref(&events), with_archive(&config, &blocked), 1, &out).expect_err("fails");
    assert!(matches!(error, RunError::Archive(_)), "{error}");
    assert!(error.to_string().contains("date=2024-03-01"), "{error}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).expect("summary")).expect("json");
    assert!(summary["archive"]["error"].is_string(), "the summary says the archive is incomplete");
    assert!(summary["alerts"].as_u64().unwrap_or_default() > 0, "the alerts are written all the same");
}

#[test]
fn pyarrow_reads_the_archive_as_a_hive_partitioned_dataset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (events, config) = day(&dir.path().join("day"));
    let archive = dir.path().join("archive");
    let summary = run_files(std::slice::from_ref(&events), with_archive(&config, &archive), 1, &dir.path().join("out"))
        .expect("run");
    let script = r#"
import sys, json
import pyarrow.dataset as ds
events = ds.dataset(sys.argv[1] + "/events", format="parquet", partitioning="hive").to_table()
alerts = ds.dataset(sys.argv[1] + "/alerts", format="parquet", partitioning="hive").to_table()
kinds = {}
for kind in events.column("kind").to_pylist():
    kinds[kind] = kinds.get(kind, 0) + 1
print(json.dumps({"events": events.num_rows, "alerts": alerts.num_rows, "kinds": kinds,
                  "columns": events.schema.names, "instruments": sorted(set(events.column("instrument").to_pylist()))}))
"#;
    let output = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&archive)
        .output()
        .expect("python3 (scripts/test-all.sh installs pyarrow)");
    assert!(output.status.success(), "pyarrow failed: {}", String::from_utf8_lossy(&output.stderr));
    let read: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(read["events"].as_u64(), Some(summary.events - summary.written.late_events));
    assert_eq!(read["alerts"].as_u64(), Some(summary.alerts));
    for (kind, n) in &summary.events_by_kind {
        if *n > 0 {
            assert!(read["kinds"][kind].as_u64().is_some(), "{kind}");
        }
    }
    let columns: Vec<&str> = read["columns"].as_array().expect("columns").iter().filter_map(|c| c.as_str()).collect();
    assert!(columns.contains(&"date") && columns.contains(&"instrument") && columns.contains(&"price"), "{columns:?}");
    assert_eq!(read["instruments"].as_array().map(Vec::len), Some(6));
}
