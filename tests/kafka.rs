//! The Kafka source and sinks against a real Kafka-protocol broker: tansu, started here on
//! 127.0.0.1 with its SQLite storage ([`TestBroker`]). `scripts/test-all.sh` installs it and
//! names it in `SURVEIL_TANSU`; without it these tests fail.

#[path = "common/https.rs"]
mod https;
#[path = "common/schema_registry.rs"]
mod schema_registry;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use serde_json::Value;
use surveil::config::Config;
use surveil::generate::{GenerateConfig, generate};
use surveil::kafka::test_broker::{Received, TestBroker};
use surveil::kafka::{Encoding, create_topic, produce_files};
use surveil::pipeline::{RunOptions, RunSummary, inputs, run};

fn broker() -> TestBroker {
    TestBroker::start().unwrap_or_else(|e| panic!("{e}"))
}

/// An alert without what depends on where its evidence was read (the id and group id, made
/// from the evidence's input names and offsets, and which of a group's alerts tied at one
/// time is the one sent on) or on the wall clock (detected_at).
/// Makes `topics` (one partition each) and returns a way to publish a text message to a topic,
/// delivered when it returns.
fn publisher(broker: &TestBroker, topics: &[&str]) -> impl Fn(&str, &str) {
    let settings = broker.settings();
    for topic in topics {
        create_topic(&settings, topic, 1).expect("topic");
    }
    let producer: ThreadedProducer<DefaultProducerContext> =
        ClientConfig::new().set("bootstrap.servers", broker.address()).create().expect("producer");
    move |topic: &str, payload: &str| {
        producer.send(BaseRecord::<str, str>::to(topic).key("k").payload(payload)).map_err(|(e, _)| e).expect("queued");
        producer.flush(Duration::from_secs(30)).expect("delivered");
    }
}

fn content(mut alert: Value) -> String {
    if let Value::Object(fields) = &mut alert {
        for field in ["id", "detected_at", "group", "sent_to"] {
            fields.remove(field);
        }
        if let Some(Value::Array(evidence)) = fields.get_mut("evidence") {
            for event in evidence {
                if let Value::Object(event) = event {
                    event.remove("source");
                    event.remove("offset");
                }
            }
        }
    }
    alert.to_string()
}

fn alerts(out: &Path) -> Vec<Value> {
    std::fs::read_to_string(out.join("alerts.jsonl"))
        .expect("alerts.jsonl")
        .lines()
        .map(|line| serde_json::from_str(line).expect("an alert"))
        .collect()
}

fn consume(broker: &TestBroker, topic: &str, expected: usize) -> Vec<Received> {
    broker.read_topic(topic, expected).expect("the topic")
}

/// A generated day of `events` in `work/day` and its run from the file on 2 workers (output in
/// `work/from-file`): the events file, the day's configuration and the run.
fn day_from_file(work: &Path, events: u64, seed: u64) -> (std::path::PathBuf, Config, RunSummary) {
    let day = work.join("day");
    let generated = GenerateConfig { events, seed, ..GenerateConfig::default() };
    generate(&generated, &day).expect("a generated day");
    let file = day.join("events.csv");
    let config = Config::load(&day.join("surveil.toml")).expect("the day's configuration");
    let file_run = run(RunOptions {
        workers: 2,
        out_dir: work.join("from-file"),
        ..RunOptions::new(inputs(std::slice::from_ref(&file), None), config.clone())
    })
    .expect("the file run");
    (file, config, file_run)
}

fn kafka_run(config: Config, workers: usize, out: &Path) -> RunSummary {
    run(RunOptions { workers, out_dir: out.into(), ..RunOptions::new(Vec::new(), config) }).expect("the Kafka run")
}

/// A live run (no end) on 2 workers, on a thread of its own, stopped on request.
struct LiveRun {
    stop: surveil::pipeline::Stop,
    progress: std::sync::Arc<surveil::ingest::ReadProgress>,
    running: std::thread::JoinHandle<Result<RunSummary, surveil::pipeline::RunError>>,
}

impl LiveRun {
    fn start(kafka: &surveil::config::KafkaConfig, out: &Path) -> LiveRun {
        LiveRun::start_with(Config { kafka: Some(kafka.clone()), ..Config::default() }, out)
    }

    fn start_with(config: Config, out: &Path) -> LiveRun {
        let stop = surveil::pipeline::Stop::default();
        let progress = std::sync::Arc::new(surveil::ingest::ReadProgress::default());
        let (run_stop, run_progress, out) = (stop.clone(), progress.clone(), out.to_path_buf());
        let running = std::thread::spawn(move || {
            run(RunOptions {
                workers: 2,
                out_dir: out,
                stop: Some(run_stop),
                progress: Some(run_progress),
                ..RunOptions::new(Vec::new(), config)
            })
        });
        LiveRun { stop, progress, running }
    }

    /// Waits until the run has read `want` events (at most 90 s).
    fn read(&self, want: u64) {
        let started = Instant::now();
        while self.progress.events().iter().sum::<u64>() < want {
            assert!(started.elapsed() < Duration::from_secs(90), "read {:?} of {want}", self.progress.events());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Asks the run to stop and returns how it ended.
    fn stop(self) -> Result<RunSummary, surveil::pipeline::RunError> {
        self.stop.request("the test is done");
        self.running.join().expect("the run's thread")
    }
}

#[test]
fn a_day_replayed_through_a_topic_gives_the_alerts_of_the_file() {
    let broker = broker();
    let work = tempfile::tempdir().expect("temp dir");
    // The file itself.
    let (file, config, file_run) = day_from_file(work.path(), 150_000, 5);
    let from_file = work.path().join("from-file");
    assert!(file_run.alerts > 20, "a day with breaches: {:?}", file_run.written.alerts_by_rule);

    // The same events on a topic of four partitions, keyed by instrument, with malformed
    // messages among them.
    let settings = broker.settings();
    create_topic(&settings, "day", 4).expect("topic");
    let produced = produce_files(&inputs(std::slice::from_ref(&file), None), &config, &settings, "day", Encoding::Json)
        .expect("produced");
    assert_eq!(produced.events, file_run.events);
    assert_eq!(produced.delivery.delivered, produced.events);
    let producer: ThreadedProducer<DefaultProducerContext> =
        ClientConfig::new().set("bootstrap.servers", broker.address()).create().expect("producer");
    let malformed = [
        "{\"event_time\": \"2024-03-04T15:00:00Z\", \"kind\": \"trade\"",
        "{\"event_time\": \"2024-03-04T15:00:00Z\", \"kind\": \"new\", \"instrument\": \"ZZZ\"}",
        "{\"event_time\": \"yesterday\", \"kind\": \"quote\", \"instrument\": \"ZZZ\"}",
    ];
    for (partition, message) in malformed.iter().enumerate() {
        let record = BaseRecord::<str, str>::to("day").partition(partition as i32).key("bad").payload(message);
        producer.send(record).map_err(|(e, _)| e).expect("queued");
    }
    producer.flush(Duration::from_secs(30)).expect("delivered");
    create_topic(&settings, "day-alerts", 1).expect("topic");
    create_topic(&settings, "day-letters", 1).expect("topic");

    let mut kafka = settings.clone();
    kafka.topic = Some("day".into());
    kafka.stop_at_end = true;
    kafka.alerts_topic = Some("day-alerts".into());
    kafka.dead_letter_topic = Some("day-letters".into());
    let from_topic = work.path().join("from-topic");
    let topic_run = kafka_run(Config { kafka: Some(kafka.clone()), ..config.clone() }, 2, &from_topic);

    // The same alerts, whatever the partitions and workers.
    assert!(topic_run.complete);
    assert_eq!(topic_run.events, file_run.events);
    assert_eq!(topic_run.written.alerts_by_rule, file_run.written.alerts_by_rule);
    assert_eq!(topic_run.written.alerts_by_tier, file_run.written.alerts_by_tier);
    assert_eq!(topic_run.written.notices_by_route, file_run.written.notices_by_route);
    assert_eq!(topic_run.written.alert_groups, file_run.written.alert_groups);
    let expected: Vec<String> = alerts(&from_file).into_iter().map(content).collect();
    let got: Vec<String> = alerts(&from_topic).into_iter().map(content).collect();
    let (got, expected): (BTreeSet<&String>, BTreeSet<&String>) = (got.iter().collect(), expected.iter().collect());
    let only_topic: Vec<&&String> = got.difference(&expected).take(2).collect();
    let only_file: Vec<&&String> = expected.difference(&got).take(2).collect();
    assert!(
        only_topic.is_empty() && only_file.is_empty(),
        "the alerts of the topic differ from the file's: only from the topic {only_topic:#?}, only from the file {only_file:#?}"
    );

    // The malformed messages are dead letters, in the outputs and on their topic.
    let letters: u64 = topic_run.written.dead_letters_by_reason.values().sum();
    let file_letters: u64 = file_run.written.dead_letters_by_reason.values().sum();
    assert_eq!(letters, file_letters + 3, "{:?}", topic_run.written.dead_letters_by_reason);
    let published = consume(&broker, "day-letters", 3);
    assert_eq!(published.len(), 3);
    for Received { payload, headers, .. } in &published {
        assert!(malformed.contains(&payload.as_str()), "{payload}");
        assert!(headers.contains_key("surveil.reason") && headers["surveil.topic"] == "day", "{headers:?}");
    }

    // Every alert is on the alerts topic, once, under its id.
    let ids: BTreeSet<String> =
        alerts(&from_topic).iter().map(|a| a["id"].as_str().unwrap_or_default().to_string()).collect();
    let published = consume(&broker, "day-alerts", ids.len());
    let keys: BTreeSet<String> = published.iter().map(|m| m.key.clone()).collect();
    assert_eq!(keys, ids);
    assert_eq!(published.len(), ids.len());

    // The positions are committed: a second run of the group finds nothing new, and one
    // after more events reads only those.
    let again = kafka_run(Config { kafka: Some(kafka.clone()), ..config.clone() }, 1, &work.path().join("again"));
    assert_eq!((again.events, again.alerts), (0, 0));
    let late_trade = r#"{"event_time":"2024-03-04T20:00:00Z","kind":"trade","instrument":"LATE","buyer":"X1","seller":"X1","price":"5.00","quantity":10}"#;
    producer
        .send(BaseRecord::<str, str>::to("day").partition(0).key("LATE").payload(late_trade))
        .map_err(|(e, _)| e)
        .expect("queued");
    producer.flush(Duration::from_secs(30)).expect("delivered");
    let more = kafka_run(Config { kafka: Some(kafka), ..config }, 1, &work.path().join("more"));
    assert_eq!(more.events, 1);
    assert_eq!(more.written.alerts_by_rule.get("self_trade"), Some(&1), "{:?}", more.written.alerts_by_rule);
}

#[test]
fn a_live_run_waits_for_a_restarted_broker_and_loses_nothing() {
    let mut broker = broker();
    let settings = broker.settings();
    create_topic(&settings, "live", 2).expect("topic");
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", broker.address())
        .set("enable.idempotence", "true")
        .create()
        .expect("producer");
    let send = |producer: &ThreadedProducer<DefaultProducerContext>, from: u32, to: u32| {
        for i in from..to {
            let account = format!("S{i}");
            let trade = format!(
                r#"{{"event_time":"2024-03-04T14:{:02}:{:02}Z","kind":"trade","instrument":"LIVE","buyer":"{account}","seller":"{account}","price":"5.00","quantity":10}}"#,
                i / 60,
                i % 60
            );
            let record = BaseRecord::<str, str>::to("live").partition((i % 2) as i32).key("LIVE").payload(&trade);
            producer.send(record).map_err(|(e, _)| e).expect("queued");
        }
        producer.flush(Duration::from_secs(30)).expect("delivered");
    };
    send(&producer, 0, 20);

    // A live run (no end), stopped once it has seen everything.
    let mut kafka = settings.clone();
    kafka.topic = Some("live".into());
    kafka.idle_timeout = Duration::from_millis(500);
    let out = tempfile::tempdir().expect("temp dir");
    let live = LiveRun::start(&kafka, out.path());
    live.read(20);

    // The broker goes away and comes back on the same port and storage.
    broker.restart(Duration::from_secs(2)).expect("the broker again");
    send(&producer, 20, 40);
    live.read(40);
    let summary = live.stop().expect("the live run");
    assert_eq!(summary.events, 40);
    assert_eq!(summary.written.alerts_by_rule.get("self_trade"), Some(&40), "{:?}", summary.written.alerts_by_rule);
    assert!(!summary.complete, "a live run stopped by request is interrupted");
}

/// A broker on 127.0.0.1 behind TLS with a server certificate of a test authority, whose files
/// are written into `dir`: the broker and the authority's certificate file.
fn tls_broker(dir: &std::path::Path) -> (TestBroker, std::path::PathBuf) {
    let (ca, certificate, key) = https::test_certificate_files();
    let (ca_file, certificate_file, key_file) = (dir.join("ca.pem"), dir.join("server.pem"), dir.join("server.key"));
    for (path, text) in [(&ca_file, &ca), (&certificate_file, &certificate), (&key_file, &key)] {
        std::fs::write(path, text).expect("written");
    }
    let broker = TestBroker::start_tls(&certificate_file, &key_file).unwrap_or_else(|e| panic!("{e}"));
    (broker, ca_file)
}

#[test]
fn over_tls_and_a_wrong_authority_is_a_clear_error_not_a_hang() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (broker, ca_file) = tls_broker(dir.path());
    let mut settings = broker.settings();
    settings.properties.insert("security.protocol".into(), "ssl".into());
    settings.properties.insert("ssl.ca.location".into(), ca_file.display().to_string());
    create_topic(&settings, "secure", 2).expect("a topic, over TLS");
    create_topic(&settings, "secure-alerts", 1).expect("a topic, over TLS");
    let producer: ThreadedProducer<DefaultProducerContext> =
        surveil::kafka::client_config(&settings).create().expect("a TLS producer");
    for (partition, buyer) in [(0, "A1"), (1, "B2")] {
        let trade = format!(
            r#"{{"event_time":"2024-03-04T14:30:0{partition}Z","kind":"trade","instrument":"SEC","buyer":"{buyer}","seller":"A1","price":"5.00","quantity":10}}"#
        );
        let record = BaseRecord::<str, str>::to("secure").partition(partition).key("SEC").payload(&trade);
        producer.send(record).map_err(|(e, _)| e).expect("queued");
    }
    producer.flush(Duration::from_secs(30)).expect("delivered over TLS");

    // The run reads and publishes over TLS.
    let mut kafka = settings.clone();
    kafka.topic = Some("secure".into());
    kafka.stop_at_end = true;
    kafka.alerts_topic = Some("secure-alerts".into());
    let out = tempfile::tempdir().expect("temp dir");
    let summary = kafka_run(Config { kafka: Some(kafka.clone()), ..Config::default() }, 2, out.path());
    assert_eq!(summary.events, 2);
    assert_eq!(summary.written.alerts_by_rule.get("self_trade"), Some(&1));
    let published = broker.read_topic_with(&settings, "secure-alerts", 1).expect("the alerts, over TLS");
    assert_eq!(published.len(), 1);
    assert!(published[0].payload.contains("self_trade"));

    // A client that trusts another authority fails at the start, saying why, within its timeout.
    let (other_ca, _, _) = https::test_certificate_files();
    let other_ca_file = dir.path().join("other-ca.pem");
    std::fs::write(&other_ca_file, other_ca).expect("written");
    kafka.properties.insert("ssl.ca.location".into(), other_ca_file.display().to_string());
    kafka.timeout = Duration::from_secs(5);
    let started = Instant::now();
    let out = tempfile::tempdir().expect("temp dir");
    let error = run(RunOptions {
        out_dir: out.path().into(),
        ..RunOptions::new(Vec::new(), Config { kafka: Some(kafka.clone()), ..Config::default() })
    })
    .expect_err("an authority that did not sign the broker's certificate");
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
    let message = error.to_string();
    assert!(message.contains(broker.address()) && message.to_lowercase().contains("certificate"), "{message}");

    // So does a client that speaks plain text to the TLS listener.
    kafka.properties.clear();
    let started = Instant::now();
    let error = run(RunOptions {
        out_dir: out.path().into(),
        ..RunOptions::new(Vec::new(), Config { kafka: Some(kafka), ..Config::default() })
    })
    .expect_err("plain text to a TLS listener");
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
    assert!(error.to_string().contains(broker.address()), "{error}");
}

/// Avro's variable-length zigzag integer (`int` and `long`).
fn avro_long(out: &mut Vec<u8>, n: i64) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z > 0x7f {
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn avro_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    avro_long(out, bytes.len() as i64);
    out.extend_from_slice(bytes);
}

/// A producer's own schema: the canonical names, other types (micros, an enum, a decimal, an
/// int, an optional instrument) and a field surveil does not know.
const OWN_SCHEMA: &str = r#"{"type":"record","name":"Print","namespace":"acme","fields":[
    {"name":"event_time","type":{"type":"long","logicalType":"timestamp-micros"}},
    {"name":"kind","type":{"type":"enum","name":"Kind","symbols":["quote","trade"]}},
    {"name":"instrument","type":["null","string"]},
    {"name":"buyer","type":"string"},
    {"name":"seller","type":"string"},
    {"name":"price","type":{"type":"bytes","logicalType":"decimal","precision":9,"scale":2}},
    {"name":"quantity","type":"int"},
    {"name":"desk_note","type":"string"}]}"#;

/// A print in [`OWN_SCHEMA`] under `id`, in the wire format.
fn own_print(id: u32, instrument: Option<&str>, account: &str) -> Vec<u8> {
    let mut message = vec![0];
    message.extend_from_slice(&id.to_be_bytes());
    avro_long(&mut message, 4_102_444_800_000_000); // 2100-01-01, after every generated event
    avro_long(&mut message, 1); // trade
    match instrument {
        Some(instrument) => {
            avro_long(&mut message, 1);
            avro_bytes(&mut message, instrument.as_bytes());
        }
        None => avro_long(&mut message, 0),
    }
    avro_bytes(&mut message, account.as_bytes());
    avro_bytes(&mut message, account.as_bytes());
    avro_bytes(&mut message, &[0x01, 0xf4]); // 500 at scale 2: 5.00
    avro_long(&mut message, 10);
    avro_bytes(&mut message, b"matched away");
    message
}

#[test]
fn avro_messages_through_a_schema_registry_give_the_alerts_of_the_file() {
    let broker = broker();
    let registry = schema_registry::SchemaRegistry::start();
    let work = tempfile::tempdir().expect("temp dir");
    let (file, config, file_run) = day_from_file(work.path(), 60_000, 9);
    let from_file = work.path().join("from-file");
    assert!(file_run.alerts > 5, "a day with breaches: {:?}", file_run.written.alerts_by_rule);

    // The day in Avro, the bundled schema registered as the topic's value schema.
    let settings = broker.settings();
    create_topic(&settings, "avro-day", 4).expect("topic");
    let event_schema =
        surveil::kafka::avro::register_event_schema(&registry.url(), "avro-day-value", Duration::from_secs(10))
            .expect("registered");
    let produced = produce_files(
        &inputs(std::slice::from_ref(&file), None),
        &config,
        &settings,
        "avro-day",
        Encoding::Avro { schema_id: event_schema },
    )
    .expect("produced");
    assert_eq!((produced.events, produced.delivery.delivered), (file_run.events, file_run.events));

    // A producer's own schema (a self-trade, read; one without its instrument, refused), text
    // that is not Avro, and an id the registry never gave.
    let own = registry.register(OWN_SCHEMA);
    let mut unknown_id = own_print(own, Some("OWN"), "Z9");
    unknown_id[1..5].copy_from_slice(&99u32.to_be_bytes());
    let extra: [(i32, Vec<u8>); 4] = [
        (0, own_print(own, Some("OWN"), "Z9")),
        (1, own_print(own, None, "Z8")),
        (2, br#"{"event_time":"2024-03-04T15:00:00Z","kind":"trade"}"#.to_vec()),
        (3, unknown_id),
    ];
    let producer: ThreadedProducer<DefaultProducerContext> =
        ClientConfig::new().set("bootstrap.servers", broker.address()).create().expect("producer");
    for (partition, message) in &extra {
        let record = BaseRecord::<str, [u8]>::to("avro-day").partition(*partition).key("extra").payload(message);
        producer.send(record).map_err(|(e, _)| e).expect("queued");
    }
    producer.flush(Duration::from_secs(30)).expect("delivered");
    create_topic(&settings, "avro-day-letters", 1).expect("topic");

    let mut kafka = settings.clone();
    kafka.topic = Some("avro-day".into());
    kafka.stop_at_end = true;
    kafka.format = surveil::config::KafkaFormat::Avro;
    kafka.avro.registry = Some(registry.url());
    kafka.dead_letter_topic = Some("avro-day-letters".into());
    let from_topic = work.path().join("from-topic");
    let topic_run = kafka_run(Config { kafka: Some(kafka), ..config.clone() }, 2, &from_topic);

    // The file's alerts, and the self-trade in the producer's own schema.
    assert!(topic_run.complete);
    assert_eq!(topic_run.events, file_run.events + 1);
    let mut expected_rules = file_run.written.alerts_by_rule.clone();
    *expected_rules.entry("self_trade".into()).or_default() += 1;
    assert_eq!(topic_run.written.alerts_by_rule, expected_rules);
    let expected: BTreeSet<String> = alerts(&from_file).into_iter().map(content).collect();
    let (own_alerts, got): (Vec<String>, Vec<String>) =
        alerts(&from_topic).into_iter().map(content).partition(|alert| alert.contains("\"OWN\""));
    assert_eq!(got.into_iter().collect::<BTreeSet<_>>(), expected, "the alerts of the Avro topic");
    assert_eq!(own_alerts.len(), 1, "{own_alerts:?}");
    assert!(own_alerts[0].contains("\"5.00\"") || own_alerts[0].contains("\"5\""), "{}", own_alerts[0]);

    // The three bad messages are dead letters with their reasons, on the topic too.
    let file_letters = &file_run.written.dead_letters_by_reason;
    let letters = &topic_run.written.dead_letters_by_reason;
    for (reason, extra) in [("bad_avro", 1), ("unknown_schema", 1), ("missing_field", 1)] {
        assert_eq!(
            letters.get(reason).copied().unwrap_or(0),
            file_letters.get(reason).copied().unwrap_or(0) + extra,
            "{reason}: {letters:?}"
        );
    }
    let published = consume(&broker, "avro-day-letters", 3);
    let reasons: BTreeSet<&str> = published.iter().map(|m| m.headers["surveil.reason"].as_str()).collect();
    assert_eq!(reasons, BTreeSet::from(["bad_avro", "missing_field", "unknown_schema"]));
    let written = std::fs::read_to_string(from_topic.join("dead_letters.jsonl")).expect("dead letters");
    assert!(written.contains("schema id 99 is not known to"), "{written}");
    assert!(written.contains("first byte is 0x7b"), "{written}");

    // Each schema was fetched once per run (at most once per worker that met it first).
    let lookups = registry.lookups();
    for id in [event_schema, own, 99] {
        assert!((1..=2).contains(&lookups.get(&id).copied().unwrap_or(0)), "id {id}: {lookups:?}");
    }
}

#[test]
fn a_registry_out_of_reach_stops_the_run_and_the_local_schema_reads_on() {
    let broker = broker();
    let work = tempfile::tempdir().expect("temp dir");
    let trades = work.path().join("trades.jsonl");
    let lines: Vec<String> = (0..10)
        .map(|i| {
            format!(
                r#"{{"event_time":"2024-03-04T14:30:{i:02}Z","kind":"trade","instrument":"AV","buyer":"W{i}","seller":"W{i}","price":"5.00","quantity":10}}"#
            )
        })
        .collect();
    std::fs::write(&trades, lines.join("\n") + "\n").expect("written");
    let settings = broker.settings();
    create_topic(&settings, "avro-offline", 2).expect("topic");
    let produced = produce_files(
        &inputs(std::slice::from_ref(&trades), None),
        &Config::default(),
        &settings,
        "avro-offline",
        Encoding::Avro { schema_id: 7 },
    )
    .expect("produced");
    assert_eq!(produced.delivery.delivered, 10);

    // A registry nobody answers at: the run fails naming it, within its timeout, and commits
    // nothing past what it could not read.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port();
    let mut kafka = settings.clone();
    kafka.topic = Some("avro-offline".into());
    kafka.stop_at_end = true;
    kafka.format = surveil::config::KafkaFormat::Avro;
    kafka.avro.registry = Some(format!("http://127.0.0.1:{port}"));
    kafka.timeout = Duration::from_secs(3);
    let started = Instant::now();
    let error = run(RunOptions {
        workers: 2,
        out_dir: work.path().join("unreachable"),
        ..RunOptions::new(Vec::new(), Config { kafka: Some(kafka.clone()), ..Config::default() })
    })
    .expect_err("no registry to decode with");
    assert!(started.elapsed() < Duration::from_secs(40), "took {:?}", started.elapsed());
    let message = error.to_string();
    assert!(message.contains(&format!("schema registry http://127.0.0.1:{port}")), "{message}");
    assert!(message.contains("schema id 7"), "{message}");

    // Offline: the local schema file for id 7 reads every message the failed run left.
    let schema_file = work.path().join("event.avsc");
    std::fs::write(&schema_file, surveil::kafka::avro::EVENT_SCHEMA).expect("written");
    kafka.avro.registry = None;
    kafka.avro.schema_file = Some(schema_file);
    kafka.avro.schema_id = Some(7);
    let offline =
        kafka_run(Config { kafka: Some(kafka.clone()), ..Config::default() }, 2, &work.path().join("offline"));
    assert_eq!(offline.events, 10);
    assert_eq!(offline.written.alerts_by_rule.get("self_trade"), Some(&10), "{:?}", offline.written.alerts_by_rule);
    let again = kafka_run(Config { kafka: Some(kafka), ..Config::default() }, 1, &work.path().join("again"));
    assert_eq!(again.events, 0);
}

#[test]
fn sasl_scram_over_tls_as_an_encrypted_cluster_is_configured_and_a_wrong_password_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut broker, ca_file) = tls_broker(dir.path());
    broker.require_scram_user("surveil", "correct horse").unwrap_or_else(|e| panic!("{e}"));
    // The configuration of docs/kafka.md's encrypted cluster: SASL SCRAM over TLS.
    let mut settings = broker.settings();
    for (key, value) in [
        ("security.protocol", "sasl_ssl"),
        ("ssl.ca.location", &ca_file.display().to_string()),
        ("sasl.mechanisms", "SCRAM-SHA-512"),
        ("sasl.username", "surveil"),
        ("sasl.password", "correct horse"),
    ] {
        settings.properties.insert(key.into(), value.into());
    }
    create_topic(&settings, "scram", 2).expect("a topic, authenticated");
    create_topic(&settings, "scram-alerts", 1).expect("a topic, authenticated");
    let trades = dir.path().join("trades.jsonl");
    let lines: Vec<String> = (0..4)
        .map(|i| {
            format!(
                r#"{{"event_time":"2024-03-04T14:30:0{i}Z","kind":"trade","instrument":"SC{i}","buyer":"Q{i}","seller":"Q{i}","price":"5.00","quantity":10}}"#
            )
        })
        .collect();
    std::fs::write(&trades, lines.join("\n") + "\n").expect("written");
    let produced = produce_files(
        &inputs(std::slice::from_ref(&trades), None),
        &Config::default(),
        &settings,
        "scram",
        Encoding::Json,
    )
    .expect("published, authenticated");
    assert_eq!(produced.delivery.delivered, 4);

    let mut kafka = settings.clone();
    kafka.topic = Some("scram".into());
    kafka.stop_at_end = true;
    kafka.alerts_topic = Some("scram-alerts".into());
    let out = tempfile::tempdir().expect("temp dir");
    let summary = kafka_run(Config { kafka: Some(kafka.clone()), ..Config::default() }, 2, out.path());
    assert_eq!(summary.events, 4);
    assert_eq!(summary.written.alerts_by_rule.get("self_trade"), Some(&4), "{:?}", summary.written.alerts_by_rule);
    let published = broker.read_topic_with(&settings, "scram-alerts", 4).expect("the alerts, authenticated");
    assert_eq!(published.len(), 4);

    // A wrong password, and no credentials at all: clear errors at the start, within the timeout.
    kafka.timeout = Duration::from_secs(5);
    kafka.properties.insert("sasl.password".into(), "wrong".into());
    let started = Instant::now();
    let error = run(RunOptions {
        out_dir: dir.path().join("wrong"),
        ..RunOptions::new(Vec::new(), Config { kafka: Some(kafka.clone()), ..Config::default() })
    })
    .expect_err("a wrong password");
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
    let message = error.to_string();
    assert!(message.contains(broker.address()) && message.contains("SASL authentication"), "{message}");
    kafka.properties.insert("security.protocol".into(), "ssl".into());
    for key in ["sasl.mechanisms", "sasl.username", "sasl.password"] {
        kafka.properties.remove(key);
    }
    let started = Instant::now();
    let error = run(RunOptions {
        out_dir: dir.path().join("anonymous"),
        ..RunOptions::new(Vec::new(), Config { kafka: Some(kafka), ..Config::default() })
    })
    .expect_err("no credentials");
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
    assert!(error.to_string().contains(broker.address()), "{error}");
}

#[test]
fn ownership_from_a_reference_topic_links_accounts_from_the_time_of_the_change() {
    let broker = broker();
    let settings = broker.settings();
    let send = publisher(&broker, &["ref-events", "ref-accounts", "ref-ownership"]);
    // The accounts (owned by OWN1 and OWN2: not linked), then a fund taking half of K1 and
    // 30 % of K2 at 14:00, one change per message (each CSV text with its header).
    send("ref-accounts", "account,owner,desk\nK1,OWN1,DESK1\nK2,OWN2,DESK2\n");
    send("ref-ownership", "time,account,owner,share\n2024-03-04T14:00:00Z,K1,FUND,0.5\n");
    send("ref-ownership", "time,account,owner,share\n2024-03-04T14:00:00Z,K2,FUND,30%\n");
    // K1 buys from K2 before and after the link.
    for time in ["13:30:00", "14:30:00"] {
        let trade = format!(
            r#"{{"event_time":"2024-03-04T{time}Z","kind":"trade","instrument":"REF","buyer":"K1","seller":"K2","price":"5.00","quantity":10}}"#
        );
        send("ref-events", &trade);
    }

    let mut kafka = settings.clone();
    kafka.topic = Some("ref-events".into());
    kafka.stop_at_end = true;
    kafka.group = "without-reference".into();
    let work = tempfile::tempdir().expect("temp dir");
    let without =
        kafka_run(Config { kafka: Some(kafka.clone()), ..Config::default() }, 1, &work.path().join("without"));
    assert_eq!((without.events, without.alerts), (2, 0), "{:?}", without.written.alerts_by_rule);

    kafka.group = "with-reference".into();
    kafka.reference.accounts = Some("ref-accounts".into());
    kafka.reference.ownership = Some("ref-ownership".into());
    for workers in [1, 2] {
        kafka.group = format!("with-reference-{workers}");
        let out = work.path().join(format!("with-{workers}"));
        let with = kafka_run(Config { kafka: Some(kafka.clone()), ..Config::default() }, workers, &out);
        assert_eq!(with.written.alerts_by_rule.get("self_trade"), Some(&1), "{:?}", with.written.alerts_by_rule);
        let alert = &alerts(&out)[0];
        assert_eq!(alert["event_time"], "2024-03-04T14:30:00.000000000Z", "only the trade after the link: {alert}");
        assert_eq!(alert["desk"], "DESK1", "the buyer's desk from the accounts topic: {alert}");
        // The events of a topic are enriched as a file's are: owners from the accounts.
        assert_eq!(alert["parameters"]["buyer_owner"], "OWN1", "{alert}");
        assert_eq!(alert["parameters"]["seller_owner"], "OWN2", "{alert}");
    }

    // A message that is not a row of the kind's file stops the run at its start, naming where.
    send("ref-ownership", "time,account,owner,share\n2024-03-04T15:00:00Z,K2,FUND,lots\n");
    kafka.group = "bad-reference".into();
    let error = run(RunOptions {
        out_dir: work.path().join("bad"),
        ..RunOptions::new(Vec::new(), Config { kafka: Some(kafka), ..Config::default() })
    })
    .expect_err("a bad share");
    let message = error.to_string();
    assert!(message.contains("kafka:ref-ownership/0@2") && message.contains("share \"lots\""), "{message}");
}

#[test]
fn an_ownership_change_published_during_a_live_run_links_accounts_from_then_on() {
    let broker = broker();
    let settings = broker.settings();
    let send = publisher(&broker, &["live-events", "live-ownership"]);
    let trade = |time: &str| {
        format!(
            r#"{{"event_time":"2024-03-04T{time}Z","kind":"trade","instrument":"LIV","buyer":"K1","seller":"K2","price":"5.00","quantity":10}}"#
        )
    };
    let mut kafka = settings.clone();
    kafka.topic = Some("live-events".into());
    kafka.idle_timeout = Duration::from_millis(500);
    kafka.reference.ownership = Some("live-ownership".into());
    // A trade at 13:30, then the fund takes half of K1 and 30 % of K2 from 14:00, published
    // while the run follows the topics, then a trade at 14:30.
    let work = tempfile::tempdir().expect("temp dir");
    let live = LiveRun::start(&kafka, &work.path().join("live"));
    send("live-events", &trade("13:30:00"));
    live.read(1);
    send(
        "live-ownership",
        "time,account,owner,share\n2024-03-04T14:00:00Z,K1,FUND,0.5\n2024-03-04T14:00:00Z,K2,FUND,0.3\n",
    );
    // The feed polls every millisecond; a second is plenty for the change to be taken.
    std::thread::sleep(Duration::from_secs(1));
    send("live-events", &trade("14:30:00"));
    live.read(2);
    let summary = live.stop().expect("the live run");
    assert_eq!(summary.events, 2);
    assert_eq!(summary.written.alerts_by_rule.get("self_trade"), Some(&1), "{:?}", summary.written.alerts_by_rule);
    let alert = &alerts(&work.path().join("live"))[0];
    assert_eq!(alert["event_time"], "2024-03-04T14:30:00.000000000Z", "{alert}");

    // A later run reads the change at its start; a bad change published while it runs stops
    // it, naming the message.
    kafka.group = "second".into();
    let second = LiveRun::start(&kafka, &work.path().join("second"));
    second.read(2);
    send("live-ownership", "time,account,owner,share\n2024-03-04T15:00:00Z,K2,FUND,lots\n");
    let error = second.running.join().expect("the run's thread").expect_err("a bad ownership change");
    let message = error.to_string();
    assert!(message.contains("kafka:live-ownership/0@1") && message.contains("share \"lots\""), "{message}");
}

#[test]
fn baskets_from_a_reference_topic_relate_a_fund_to_what_it_holds() {
    let broker = broker();
    let settings = broker.settings();
    let send = publisher(&broker, &["bk-instruments", "bk-baskets"]);
    send("bk-instruments", "instrument,underlying\nACME,\nACME_C,ACME\nFUND,\n");
    send("bk-baskets", "basket,member,weight\nFUND,ACME,20%\n");
    // The fund sells out of ACME at 14:00.
    send("bk-baskets", "time,basket,member,weight\n2024-03-04T14:00:00Z,FUND,ACME,0\n");
    let mut kafka = settings.clone();
    kafka.reference.instruments = Some("bk-instruments".into());
    kafka.reference.baskets = Some("bk-baskets".into());
    let mut reference = surveil::reference::ReferenceData::new(2);
    let counts = surveil::kafka::read_reference_topics(&kafka, &mut reference).expect("read");
    assert_eq!((counts.instruments, counts.baskets), (1, 2));
    let (fund, option) = (surveil::model::Symbol::of(b"FUND"), surveil::model::Symbol::of(b"ACME_C"));
    let two_pm = 1_709_560_800_000_000_000;
    assert!(reference.related(fund, option, two_pm - 1), "the option follows its underlying into the fund");
    assert!(!reference.related(fund, option, two_pm), "sold out at 14:00");
    // A basket row that names a derivative is refused, naming where it was read.
    send("bk-baskets", "basket,member,weight\nFUND,ACME_C,10%\n");
    let error = surveil::kafka::read_reference_topics(&kafka, &mut surveil::reference::ReferenceData::new(2))
        .expect_err("a derivative in a basket");
    let message = error.to_string();
    assert!(message.contains("kafka:bk-baskets/0@2") && message.contains("written on ACME"), "{message}");
}

#[test]
fn instrument_and_account_changes_published_during_a_live_run_apply_from_then_on() {
    let broker = broker();
    let settings = broker.settings();
    let send = publisher(&broker, &["lr-events", "lr-instruments", "lr-accounts"]);
    let order = |time: &str, id: &str, instrument: &str| {
        format!(
            r#"{{"event_time":"2024-03-04T{time}Z","kind":"new","instrument":"{instrument}","order_id":"{id}","account":"K1","side":"buy","price":"10.00","quantity":5000}}"#
        )
    };
    let trade = |time: &str| {
        format!(
            r#"{{"event_time":"2024-03-04T{time}Z","kind":"trade","instrument":"LIVE","buyer":"K1","seller":"K2","price":"10.00","quantity":10}}"#
        )
    };
    // What the topics hold when the run starts.
    send("lr-instruments", "instrument,average_daily_volume\nLIVE,1000000\n");
    send("lr-accounts", "account,owner,desk,firm\nK1,ANN,EQUITIES,NORTH_BROKERS\nK2,BOB,EQUITIES,NORTH_BROKERS\n");
    let mut kafka = settings.clone();
    kafka.topic = Some("lr-events".into());
    kafka.idle_timeout = Duration::from_millis(500);
    kafka.reference.instruments = Some("lr-instruments".into());
    kafka.reference.accounts = Some("lr-accounts".into());
    let mut config = Config { kafka: Some(kafka), ..Config::default() };
    // Orders above 1 % of the instrument's average daily volume are alerts.
    config.rules.order_limits.max_adv_share = Some(0.01);
    let work = tempfile::tempdir().expect("temp dir");
    let live = LiveRun::start_with(config, &work.path().join("live"));
    send("lr-events", &trade("13:30:00"));
    send("lr-events", &order("13:45:00", "O1", "LIVE"));
    live.read(2);
    // Published while the run goes on: K2 passes to ANN, LIVE's volume falls to 100,000, and
    // NEWLY_LISTED is listed, all from 14:00.
    send("lr-accounts", "time,account,owner\n2024-03-04T14:00:00Z,K2,ANN\n");
    send(
        "lr-instruments",
        "time,instrument,average_daily_volume\n2024-03-04T14:00:00Z,LIVE,100000\n\
         2024-03-04T14:00:00Z,NEWLY_LISTED,100000\n",
    );
    // The feed polls every millisecond; the broker answers a fetch within half a second.
    std::thread::sleep(Duration::from_secs(2));
    send("lr-events", &trade("14:30:00"));
    send("lr-events", &order("14:35:00", "O2", "LIVE"));
    send("lr-events", &order("14:40:00", "O3", "NEWLY_LISTED"));
    live.read(5);
    // K1 moves to the rates desk, stamped 14:00 but published when the events were read to
    // 14:40: it applies from then.
    send("lr-accounts", "time,account,desk\n2024-03-04T14:00:00Z,K1,RATES_DESK\n");
    std::thread::sleep(Duration::from_secs(2));
    send("lr-events", &order("15:00:00", "O4", "LIVE"));
    live.read(6);
    let summary = live.stop().expect("the live run");
    assert_eq!(summary.events, 6);
    let by_rule = &summary.written.alerts_by_rule;
    assert_eq!(by_rule.get("self_trade"), Some(&1), "{by_rule:?}");
    assert_eq!(by_rule.get("order_quantity_limit"), Some(&3), "{by_rule:?}");
    let found: Vec<(String, String, String)> = alerts(&work.path().join("live"))
        .iter()
        .filter(|a| a["rule"] == "self_trade" || a["rule"] == "order_quantity_limit")
        .map(|a| {
            assert_eq!(a["firm"], "NORTH_BROKERS", "the account's firm, kept by the changes: {a}");
            let text = |field: &str| a[field].as_str().unwrap_or_default().to_string();
            (text("rule"), text("event_time"), text("desk"))
        })
        .collect();
    let expect = |rule: &str, time: &str, desk: &str| {
        (rule.to_string(), format!("2024-03-04T{time}.000000000Z"), desk.to_string())
    };
    let mut found = found;
    found.sort();
    assert_eq!(
        found,
        vec![
            expect("order_quantity_limit", "14:35:00", "EQUITIES"),
            expect("order_quantity_limit", "14:40:00", "EQUITIES"),
            expect("order_quantity_limit", "15:00:00", "RATES_DESK"),
            expect("self_trade", "14:30:00", "EQUITIES"),
        ]
    );
}

/// A replay of a topic with checkpoints, stopped part-way, and the same run again: the second
/// run goes back to the checkpoint's positions (not the group's, which the first run moved on
/// as its alerts reached their topic) and ends with the outputs of a run that was never
/// stopped.
#[test]
fn a_topic_replay_stopped_part_way_resumes_from_its_checkpoint() {
    let broker = broker();
    let work = tempfile::tempdir().expect("temp dir");
    let (file, config, _) = day_from_file(work.path(), 150_000, 8);
    let settings = broker.settings();
    create_topic(&settings, "resume", 4).expect("topic");
    create_topic(&settings, "resume-alerts", 1).expect("topic");
    produce_files(&inputs(std::slice::from_ref(&file), None), &config, &settings, "resume", Encoding::Json)
        .expect("produced");
    let mut kafka = settings.clone();
    kafka.topic = Some("resume".into());
    kafka.stop_at_end = true;
    kafka.alerts_topic = Some("resume-alerts".into());
    // The group's positions move on within the day (a minute behind what is delivered), so
    // that a run resumed from them alone would miss the events before them.
    kafka.commit_interval = Duration::from_millis(10);
    kafka.replay_horizon = Duration::from_secs(60);
    kafka.group = "uninterrupted".into();
    let whole = kafka_run(Config { kafka: Some(kafka.clone()), ..config.clone() }, 2, &work.path().join("whole"));
    assert!(whole.complete && whole.alerts > 20, "{whole:?}");

    kafka.group = "resumed".into();
    let checkpoint = surveil::config::CheckpointConfig {
        dir: work.path().join("state"),
        interval: Duration::from_millis(1),
        replay_horizon: Duration::from_secs(86_400),
    };
    let mut config = Config { kafka: Some(kafka), checkpoint: Some(checkpoint), ..config };
    // Reading paced by what is processed, so that checkpoints come while the topic is read.
    config.ingest.max_in_flight = 5_000;
    let out = work.path().join("resumed");
    let stop = surveil::pipeline::Stop::default();
    let progress = std::sync::Arc::new(surveil::ingest::ReadProgress::default());
    let running = {
        let (stop, progress, out, config) = (stop.clone(), progress.clone(), out.clone(), config.clone());
        std::thread::spawn(move || {
            run(RunOptions {
                workers: 2,
                out_dir: out,
                stop: Some(stop),
                progress: Some(progress),
                ..RunOptions::new(Vec::new(), config)
            })
        })
    };
    // Stopped once a checkpoint is written and 40,000 events are read.
    let started = Instant::now();
    while progress.events().iter().sum::<u64>() < 40_000 || !work.path().join("state/checkpoint.json").exists() {
        assert!(started.elapsed() < Duration::from_secs(90), "read {:?}", progress.events());
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.request("the test stops it part-way");
    let first = running.join().expect("the run's thread").expect("the stopped run");
    assert!(!first.complete && first.events < whole.events, "stopped part-way: {} events", first.events);
    assert!(first.checkpoints.as_ref().is_some_and(|c| c.written > 0 && c.resumable), "{:?}", first.checkpoints);

    let second = kafka_run(config, 2, &out);
    assert!(second.complete);
    assert_eq!(second.checkpoints.as_ref().map(|c| c.resumes), Some(1));
    assert_eq!((second.events, second.alerts), (whole.events, whole.alerts));
    let without_clock = |dir: &Path| -> Vec<Value> {
        alerts(dir)
            .into_iter()
            .map(|mut a| {
                a.as_object_mut().map(|fields| fields.remove("detected_at"));
                a
            })
            .collect()
    };
    assert_eq!(without_clock(&out), without_clock(&work.path().join("whole")));
    for name in ["dead_letters.jsonl", "cases.jsonl", "notices_all.jsonl"] {
        let read = |dir: &Path| std::fs::read_to_string(dir.join(name)).unwrap_or_default().lines().count();
        assert_eq!(read(&out), read(&work.path().join("whole")), "{name}");
    }
}

/// tansu answers the transaction coordinator's `EndTxn` as unsupported: a run asked for
/// transactions (`kafka.transactional_id`) fails saying so, with nothing committed, and does
/// not hang. (`tests/kafka_mock.rs` runs transactions through against librdkafka's mock
/// cluster.)
#[test]
fn a_broker_without_transactions_fails_a_transactional_run_clearly() {
    let broker = broker();
    let publish = publisher(&broker, &["events", "alerts"]);
    let self_trade = r#"{"event_time":"2024-03-04T14:30:00Z","kind":"trade","instrument":"XYZ","buyer":"A1","seller":"A1","price":"10.00","quantity":100}"#;
    publish("events", self_trade);
    let mut settings = broker.settings();
    settings.topic = Some("events".into());
    settings.stop_at_end = true;
    settings.alerts_topic = Some("alerts".into());
    settings.transactional_id = Some("surveil-job".into());
    settings.timeout = Duration::from_secs(15);
    let config = Config { kafka: Some(settings), ..Config::default() };
    let out = tempfile::tempdir().expect("temp dir");
    let started = Instant::now();
    let error = run(RunOptions { out_dir: out.path().into(), ..RunOptions::new(Vec::new(), config) })
        .expect_err("tansu cannot end a transaction");
    assert!(started.elapsed() < Duration::from_secs(90), "{:?}", started.elapsed());
    let text = error.to_string();
    assert!(text.contains("kafka transaction \"surveil-job\""), "{text}");
    // The run's own outputs are written; the group's position is not committed.
    assert_eq!(alerts(out.path()).len(), 1);
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.address())
        .set("group.id", "surveil")
        .create()
        .expect("consumer");
    let mut list = rdkafka::TopicPartitionList::new();
    list.add_partition("events", 0);
    let committed = consumer.committed_offsets(list, Duration::from_secs(30)).expect("committed");
    assert!(committed.elements().iter().all(|e| e.offset() == rdkafka::Offset::Invalid), "{committed:?}");
}
