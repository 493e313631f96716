//! The time-series sink against a real InfluxDB 1.6 (Debian's `influxdb` package, which
//! `scripts/test-all.sh` installs), started here on 127.0.0.1 with its data in a temporary
//! folder: every alert and case change lands, tags stay few, and points the database does not
//! take are kept.

mod common;
#[path = "common/influx.rs"]
mod influx;

use common::{data, read_jsonl, run};
use influx::{Influx, free_port};
use surveil::config::Config;

/// A day of the IMC Prosperity round 5 trades: many alerts share an instrument and a time.
const IMC: &str = "imc_prosperity/p3_2025/trades_round_5_day_2.csv";

fn config(url: &str, extra: &str) -> Config {
    Config::parse(&format!(
        "[timeseries]\nurl = \"{url}\"\ndatabase = \"surveil\"\nbatch_points = 500\nbackoff = \"10ms\"\n{extra}\n\
         [cases.deadlines]\nlow = \"2m\"\nmedium = \"1m\"\nhigh = \"30s\"\ncritical = \"10s\"\n"
    ))
    .expect("config")
}

#[test]
fn every_alert_and_case_change_lands_with_few_tags() {
    let influx = Influx::start();
    let (summary, out) = run(&[data(IMC)], config(&influx.url(), ""), 2);
    let alerts = read_jsonl(out.path(), "alerts.jsonl");
    let cases = read_jsonl(out.path(), "cases.jsonl");
    let counts = summary.written.timeseries.clone().expect("time-series counts");
    assert_eq!((counts.written, counts.unwritten), ((alerts.len() + cases.len()) as u64, 0));
    assert_eq!(std::fs::read_to_string(out.path().join("timeseries_unwritten.lp")).expect("file"), "");
    // Every point is in the database: none overwrote another of its series at the same time.
    assert_eq!(influx.count("SELECT count(score) FROM surveil_alerts"), alerts.len() as u64);
    assert_eq!(influx.count("SELECT count(\"count\") FROM surveil_cases"), cases.len() as u64);
    for (rule, n) in &summary.written.alerts_by_rule {
        let q = format!("SELECT count(score) FROM surveil_alerts WHERE rule = '{rule}'");
        assert_eq!(influx.count(&q), *n, "{rule}");
    }
    let escalated = cases.iter().filter(|c| c["change"] == "escalated").count() as u64;
    assert_eq!(influx.count("SELECT count(\"count\") FROM surveil_cases WHERE change = 'escalated'"), escalated);
    // Tags are the rule, the instrument and the tier: accounts and ids are fields.
    let keys = influx.query("SHOW TAG KEYS FROM surveil_alerts");
    let mut tags: Vec<String> = keys["results"][0]["series"][0]["values"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v[0].as_str().map(String::from))
        .collect();
    tags.sort();
    assert_eq!(tags, ["instrument", "rule", "tier"]);
    let series = influx.query("SHOW SERIES FROM surveil_alerts");
    let n = series["results"][0]["series"][0]["values"].as_array().map_or(0, Vec::len);
    assert!(n < 200, "{n} series for {} alerts", alerts.len());
}

#[test]
fn points_the_database_does_not_take_are_kept_for_later() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let (summary, out) = run(&[data(IMC)], config(&url, "max_attempts = 2\ndrain_timeout = \"1s\""), 1);
    let alerts = read_jsonl(out.path(), "alerts.jsonl");
    let cases = read_jsonl(out.path(), "cases.jsonl");
    let counts = summary.written.timeseries.clone().expect("counts");
    assert_eq!((counts.written, counts.unwritten), (0, (alerts.len() + cases.len()) as u64));
    let kept = std::fs::read_to_string(out.path().join("timeseries_unwritten.lp")).expect("file");
    assert_eq!(kept.lines().count(), alerts.len() + cases.len());
    // The kept lines load into a database that is there later.
    let influx = Influx::start();
    let mut response = ureq::post(&format!("{}/write", influx.url()))
        .query("db", "surveil")
        .query("precision", "ns")
        .send(kept.as_str())
        .expect("write");
    assert_eq!(response.status().as_u16(), 204, "{:?}", response.body_mut().read_to_string());
    assert_eq!(influx.count("SELECT count(score) FROM surveil_alerts"), alerts.len() as u64);
}

#[test]
fn plain_http_off_the_loopback_is_refused() {
    let error = Config::parse("[timeseries]\nurl = \"http://metrics.example.com:8086\"\ndatabase = \"surveil\"")
        .expect_err("plain http off the loopback");
    assert!(error.contains("https://"), "{error}");
}
