use super::*;

#[test]
fn partition_folders_are_hive_style_and_stay_in_their_folder() {
    let key = PartitionKey::at(1_709_280_000_000_000_000, Some("ACME".into()));
    assert_eq!(key.folder(), "date=2024-03-01/instrument=ACME");
    assert_eq!(PartitionKey::at(0, None).folder(), "date=1970-01-01/instrument=__HIVE_DEFAULT_PARTITION__");
    assert_eq!(escape_partition_value("../x=y/z"), "..%2Fx%3Dy%2Fz");
    assert_eq!(escape_partition_value(".."), "%2E%2E");
    assert_eq!(escape_partition_value("BRK.B"), "BRK.B");
    assert_eq!(escape_partition_value("Ä B"), "%C3%84%20B");
}

#[test]
fn the_run_id_depends_on_the_inputs_only() {
    let a = run_id(&[("day.csv".into(), 10)]);
    assert_eq!(a, run_id(&[("day.csv".into(), 10)]));
    assert_ne!(a, run_id(&[("day.csv".into(), 11)]));
    assert_eq!(a.len(), 16);
}
