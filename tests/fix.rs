//! A FIX drop copy through the whole run: the format is recognised, execution reports become
//! order events, damaged messages become dead letters with their reason, and the rules see the
//! orders (an oversized order raises its alert).

mod common;

use std::collections::BTreeMap;

use surveil::config::Config;
use surveil::ingest::Format;
use surveil::pipeline::{inputs, run_files};

use common::fix_message as message;

#[test]
fn a_drop_copy_is_read_checked_and_surveilled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("dropcopy.log");
    let report = |seq: &str, exec: &str, order: &str, qty: &str, time: &str, extra: &[(u32, &str)]| {
        let mut fields = vec![
            (35, "8"),
            (34, seq),
            (52, time),
            (1, "ACC7"),
            (37, order),
            (11, order),
            (150, exec),
            (55, "ACME"),
            (54, "1"),
            (38, qty),
            (40, "2"),
            (44, "10.50"),
            (60, time),
        ];
        fields.extend_from_slice(extra);
        message("FIX.4.4", &fields)
    };
    let mut lines = vec![
        message("FIX.4.4", &[(35, "A"), (34, "1"), (52, "20240301-14:29:59.000"), (98, "0"), (108, "30")]),
        report("2", "0", "V1", "500", "20240301-14:30:00.000", &[]),
        report("3", "F", "V1", "500", "20240301-14:30:01.000", &[(31, "10.50"), (32, "200"), (851, "1")]),
        report("4", "4", "V1", "500", "20240301-14:30:02.000", &[]),
        // Far above the default quantity limit of 100,000.
        report("5", "0", "V2", "250000", "20240301-14:30:03.000", &[]),
        message("FIX.4.4", &[(35, "0"), (34, "6"), (52, "20240301-14:30:04.000")]),
    ];
    // A message damaged in transit: one byte of the body changed.
    lines.push(report("7", "0", "V3", "100", "20240301-14:30:05.000", &[]).replace("ACC7", "ACC8"));
    // Engines log with a timestamp first and `|` between fields.
    lines.push(format!(
        "20240301-14:30:06.000 : {}",
        report("8", "0", "V4", "100", "20240301-14:30:06.000", &[]).replace('\u{1}', "|")
    ));
    std::fs::write(&path, lines.join("\n") + "\n").expect("write");
    let specs = inputs(std::slice::from_ref(&path), None);
    assert_eq!(specs[0].format, Format::Fix, "recognised by its first line");

    let summary = run_files(std::slice::from_ref(&path), Config::default(), 1, &dir.path().join("out")).expect("run");
    let kinds: BTreeMap<&str, u64> =
        summary.events_by_kind.iter().filter(|(_, n)| **n > 0).map(|(k, n)| (k.as_str(), *n)).collect();
    assert_eq!(kinds, BTreeMap::from([("cancel", 1), ("fill", 1), ("new", 3)]));
    assert_eq!(summary.written.dead_letters_by_reason.get("fix_checksum"), Some(&1));
    assert_eq!(summary.dead_letters, 1);
    assert_eq!(summary.lines.read, 8);
    assert_eq!(summary.written.alerts_by_rule.get("order_quantity_limit"), Some(&1));
    let letters = std::fs::read_to_string(dir.path().join("out/dead_letters.jsonl")).expect("letters");
    assert!(letters.contains("CheckSum (10) says"), "{letters}");
}
