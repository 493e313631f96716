//! The webhook sink against a local HTTP server (127.0.0.1) that records every request and
//! answers as told: PagerDuty events for every notice of the route, in order; retries through
//! errors and an endpoint that is down for a while; an outbox that keeps what could not be
//! delivered, and `redeliver` that sends it later.

mod common;
#[path = "common/endpoint.rs"]
mod endpoint;
#[path = "common/https.rs"]
mod https;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::{data, read_jsonl, run};
use endpoint::Endpoint;
use serde_json::Value;
use surveil::config::Config;

/// A day of the IMC Prosperity round 5 trades.
const IMC: &str = "imc_prosperity/p3_2025/trades_round_5_day_2.csv";

fn config(url: &str, extra: &str) -> Config {
    Config::parse(&format!(
        r#"
[[alerts.routes]]
name = "all"

[[alerts.routes]]
name = "pager"
tiers = ["high", "critical"]
webhook = {{ url = "{url}", routing_key = "R0UT1NGKEY", backoff = "10ms", timeout = "2s"{extra} }}

[cases.deadlines]
low = "2m"
medium = "1m"
high = "30s"
critical = "10s"
"#
    ))
    .expect("config")
}

#[test]
fn every_notice_of_the_route_reaches_the_endpoint_once_in_order_through_errors() {
    // The first three requests fail with 503: the same event is sent again until accepted.
    let endpoint = Endpoint::serve(TcpListener::bind("127.0.0.1:0").expect("bind"), |n| if n < 3 { 503 } else { 202 });
    let (summary, out) = run(&[data(IMC)], config(&endpoint.url(), ""), 2);
    let notices = read_jsonl(out.path(), "notices_pager.jsonl");
    assert!(notices.len() > 10, "high and critical notices: {}", notices.len());
    let expected: Vec<Value> = notices.iter().filter_map(surveil::webhook::pagerduty_event).collect();
    let requests = endpoint.requests();
    // The routing key goes with every request and nowhere else.
    assert!(requests.iter().all(|(e, _)| e["routing_key"] == "R0UT1NGKEY"));
    let without_key = |e: &Value| {
        let mut e = e.clone();
        if let Some(fields) = e.as_object_mut() {
            fields.remove("routing_key");
        }
        e
    };
    let accepted: Vec<Value> = requests.iter().filter(|(_, s)| *s == 202).map(|(e, _)| without_key(e)).collect();
    assert_eq!(accepted, expected, "each event accepted once, in the notices' order");
    assert_eq!(requests.len(), expected.len() + 3);
    assert!(requests[..4].iter().all(|(e, _)| without_key(e) == expected[0]), "the first event retried three times");
    let kinds: std::collections::BTreeSet<&str> = expected.iter().filter_map(|e| e["event_action"].as_str()).collect();
    assert!(kinds.contains("trigger"));
    assert!(expected.iter().all(|e| e["dedup_key"].as_str().is_some()));
    let escalations = expected.iter().filter(|e| e["payload"]["custom_details"]["notice"] == "escalation").count();
    assert!(escalations > 0, "case escalations are paged too");
    // The outbox holds every event with its outcome; the summary counts them.
    let outbox = read_jsonl(out.path(), "webhook_pager.jsonl");
    assert_eq!(outbox.len(), expected.len());
    let kept = std::fs::read_to_string(out.path().join("webhook_pager.jsonl")).expect("outbox");
    assert!(!kept.contains("R0UT1NGKEY"), "no secret in the run's files");
    assert!(outbox.iter().all(|d| d["delivered"] == true && d["status"] == 202));
    assert_eq!(outbox[0]["attempts"], 4);
    let counts = &summary.written.webhooks["pager"];
    assert_eq!((counts.delivered, counts.undelivered), (expected.len() as u64, 0));
}

#[test]
fn an_endpoint_down_for_a_while_loses_nothing() {
    // Take a free port, and start listening on it only after a second and a half.
    let port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port();
    let url = format!("http://127.0.0.1:{port}/v2/enqueue");
    let later = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        Endpoint::serve(TcpListener::bind(("127.0.0.1", port)).expect("rebind"), |_| 202)
    });
    let (summary, out) = run(&[data(IMC)], config(&url, ", max_attempts = 1000, drain_timeout = \"30s\""), 1);
    let endpoint = later.join().expect("endpoint");
    let outbox = read_jsonl(out.path(), "webhook_pager.jsonl");
    assert!(outbox.iter().all(|d| d["delivered"] == true), "all delivered once the endpoint came up");
    assert!(outbox[0]["attempts"].as_u64().unwrap_or(0) > 1, "the first event waited for the endpoint");
    assert_eq!(endpoint.requests().len(), outbox.len());
    assert_eq!(summary.written.webhooks["pager"].undelivered, 0);
}

#[test]
fn what_cannot_be_delivered_stays_in_the_outbox_for_later() {
    let port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port();
    let url = format!("http://127.0.0.1:{port}/v2/enqueue");
    let config = config(&url, ", max_attempts = 2, drain_timeout = \"1s\"");
    let (summary, out) = run(&[data(IMC)], config.clone(), 1);
    let outbox_path = out.path().join("webhook_pager.jsonl");
    let outbox = read_jsonl(out.path(), "webhook_pager.jsonl");
    let notices = read_jsonl(out.path(), "notices_pager.jsonl");
    assert_eq!(outbox.len(), notices.len(), "every event kept");
    assert!(outbox.iter().all(|d| d["delivered"] == false && d["error"].as_str().is_some()));
    assert_eq!(summary.written.webhooks["pager"].undelivered, outbox.len() as u64);
    // The run's audit trail still verifies, and its end counts the undelivered events.
    let log = std::fs::read_to_string(out.path().join("audit.jsonl")).expect("audit");
    let head = summary.written.audit.as_ref().map(|a| a.head.clone());
    surveil::audit::verify_run(&log, head.as_deref()).expect("verifies");
    let end: Value = serde_json::from_str(log.lines().last().expect("records")).expect("JSON");
    assert_eq!(end["data"]["webhooks"]["pager"]["undelivered"], outbox.len() as u64);

    // Later the endpoint is up: the outbox is sent, in order, and rewritten as delivered.
    let endpoint = Endpoint::serve(TcpListener::bind(("127.0.0.1", port)).expect("rebind"), |_| 202);
    let webhook = config.alerts.routes[1].webhook.clone().expect("webhook");
    let (delivered, undelivered) = surveil::webhook::redeliver(&outbox_path, &webhook).expect("redeliver");
    assert_eq!((delivered, undelivered), (outbox.len() as u64, 0));
    let sent: Vec<Value> = endpoint
        .requests()
        .into_iter()
        .map(|(mut e, _)| {
            assert_eq!(e["routing_key"], "R0UT1NGKEY", "the key of the configuration");
            e.as_object_mut().map(|f| f.remove("routing_key"));
            e
        })
        .collect();
    let kept: Vec<Value> = outbox.iter().map(|d| d["event"].clone()).collect();
    assert_eq!(sent, kept);
    let rewritten = read_jsonl(out.path(), "webhook_pager.jsonl");
    assert!(rewritten.iter().all(|d| d["delivered"] == true));
    // Nothing is sent twice.
    assert_eq!(surveil::webhook::redeliver(&outbox_path, &webhook).expect("again"), (0, 0));
    assert_eq!(endpoint.requests().len(), kept.len());
}

#[test]
fn an_undelivered_event_holds_the_rest_of_its_incident() {
    // The first request is refused for good (400: resending cannot help); the rest succeed.
    let endpoint = Endpoint::serve(TcpListener::bind("127.0.0.1:0").expect("bind"), |n| if n == 0 { 400 } else { 202 });
    let (summary, out) = run(&[data(IMC)], config(&endpoint.url(), ""), 1);
    let outbox = read_jsonl(out.path(), "webhook_pager.jsonl");
    let first_key = outbox[0]["event"]["dedup_key"].clone();
    assert_eq!((outbox[0]["delivered"].as_bool(), outbox[0]["attempts"].as_u64()), (Some(false), Some(1)));
    let same: Vec<&Value> = outbox.iter().skip(1).filter(|d| d["event"]["dedup_key"] == first_key).collect();
    assert!(!same.is_empty(), "the incident has later events");
    for held in &same {
        assert_eq!((held["delivered"].as_bool(), held["attempts"].as_u64()), (Some(false), Some(0)));
        assert!(held["error"].as_str().is_some_and(|e| e.starts_with("held")), "{held}");
    }
    let others = outbox.iter().filter(|d| d["event"]["dedup_key"] != first_key);
    assert!(others.clone().all(|d| d["delivered"] == true));
    let counts = &summary.written.webhooks["pager"];
    assert_eq!(counts.undelivered as usize, 1 + same.len());
    // No event of the held incident reached the endpoint after its failed first.
    let requests = endpoint.requests();
    assert_eq!(requests.iter().filter(|(e, _)| e["dedup_key"] == first_key).count(), 1);
}

#[test]
fn an_endpoint_that_never_answers_delays_the_end_by_the_drain_timeout_only() {
    // Accepts connections and never answers them.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    listener.set_nonblocking(true).expect("nonblocking");
    let silent = std::thread::spawn(move || {
        let mut held = Vec::new();
        let until = Instant::now() + Duration::from_secs(30);
        while Instant::now() < until {
            match listener.accept() {
                Ok((stream, _)) => held.push(stream),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    let url = format!("http://127.0.0.1:{port}/v2/enqueue");
    let started = Instant::now();
    let config = Config::parse(&format!(
        "[[alerts.routes]]\nname = \"pager\"\ntiers = [\"high\", \"critical\"]\n\
         webhook = {{ url = \"{url}\", routing_key = \"k\", timeout = \"2s\", drain_timeout = \"2s\", backoff = \"10ms\" }}\n"
    ))
    .expect("config");
    let (summary, out) = run(&[data(IMC)], config, 1);
    let took = started.elapsed();
    // At most the drain timeout after one request's timeout, however many events wait.
    assert!(took < Duration::from_secs(10), "the run took {took:?}");
    let outbox = read_jsonl(out.path(), "webhook_pager.jsonl");
    assert!(outbox.len() > 5 && outbox.iter().all(|d| d["delivered"] == false));
    assert_eq!(summary.written.webhooks["pager"].undelivered as usize, outbox.len());
    drop(silent);
}

#[test]
fn plain_http_is_refused_off_the_loopback_and_a_bad_certificate_file_stops_the_run() {
    let error = Config::parse(
        "[[alerts.routes]]\nname = \"p\"\nwebhook = { url = \"http://events.example.com/v2/enqueue\", routing_key = \"k\" }",
    )
    .expect_err("plain http off the loopback");
    assert!(error.contains("https://"), "{error}");
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "not a certificate").expect("write");
    let mut config = config("https://127.0.0.1:9/v2/enqueue", "");
    if let Some(webhook) = config.alerts.routes[1].webhook.as_mut() {
        webhook.ca_file = Some(ca.clone());
    }
    let out = dir.path().join("out");
    let error = surveil::pipeline::run_files(&[data(IMC)], config, 1, &out).expect_err("a bad certificate file");
    assert!(error.to_string().contains("ca.pem"), "{error}");
    assert!(!out.exists(), "checked before the output folder is touched");
}

#[test]
fn https_with_the_configured_authority_delivers_and_an_unknown_certificate_is_a_clear_error() {
    let (tls, ca_pem) = https::test_tls();
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("test-ca.pem");
    std::fs::write(&ca, ca_pem).expect("write");
    let endpoint = Endpoint::serve_with(TcpListener::bind("127.0.0.1:0").expect("bind"), Some(tls), |_| 202);
    let url = format!("https://127.0.0.1:{}/v2/enqueue", endpoint.port);
    let mut trusted = config(&url, ", drain_timeout = \"5s\"");
    if let Some(webhook) = trusted.alerts.routes[1].webhook.as_mut() {
        webhook.ca_file = Some(ca);
    }
    let (summary, out) = run(&[data(IMC)], trusted, 1);
    let outbox = read_jsonl(out.path(), "webhook_pager.jsonl");
    assert!(!outbox.is_empty() && outbox.iter().all(|d| d["delivered"] == true), "delivered over TLS");
    assert_eq!(endpoint.requests().len(), outbox.len());
    assert_eq!(summary.written.webhooks["pager"].undelivered, 0);

    // Without the test authority (Mozilla's roots only), the endpoint's certificate is refused
    // at once, with the reason, and not retried.
    let (_, out) = run(&[data(IMC)], config(&url, ", drain_timeout = \"5s\""), 1);
    let refused = read_jsonl(out.path(), "webhook_pager.jsonl");
    // Each incident's first event is tried once (a certificate error is not retried); the
    // incident's later events are held behind it.
    assert!(
        refused.iter().all(|d| d["delivered"] == false && d["attempts"].as_u64() <= Some(1)),
        "{:?}",
        refused.first()
    );
    assert_eq!(refused[0]["attempts"], 1);
    let error = refused[0]["error"].as_str().unwrap_or_default().to_ascii_lowercase();
    assert!(error.contains("certificate") || error.contains("issuer"), "{error}");
    assert_eq!(endpoint.requests().len(), outbox.len(), "nothing reached the endpoint unverified");
}
