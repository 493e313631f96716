//! The Kafka source and sinks against librdkafka's in-process mock cluster: fast, and no broker
//! to install (`tests/kafka.rs` runs against a real one).

mod common;

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use surveil::config::{Config, KafkaConfig};
use surveil::pipeline::{RunOptions, run};

fn produce(brokers: &str, topic: &str, partition: i32, messages: &[&str]) {
    let producer: ThreadedProducer<DefaultProducerContext> =
        ClientConfig::new().set("bootstrap.servers", brokers).create().expect("producer");
    for message in messages {
        producer
            .send(BaseRecord::<str, str>::to(topic).partition(partition).key("k").payload(message))
            .expect("queued");
    }
    producer.flush(Duration::from_secs(10)).expect("delivered");
}

/// A message: key, payload and headers.
type Received = (String, String, Vec<(String, String)>);

/// Every message of `topic` (partition 0), with its key and headers.
fn consume_all(brokers: &str, topic: &str, expected: usize) -> Vec<Received> {
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", brokers).set("group.id", "reader").create().expect("consumer");
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, 0, Offset::Beginning).expect("partition");
    consumer.assign(&list).expect("assigned");
    let mut out = Vec::new();
    let started = std::time::Instant::now();
    while out.len() < expected && started.elapsed() < Duration::from_secs(20) {
        let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) else { continue };
        let text = |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).into_owned();
        let headers = message
            .headers()
            .map(|h| h.iter().map(|h| (h.key.to_string(), text(h.value))).collect())
            .unwrap_or_default();
        out.push((text(message.key()), text(message.payload()), headers));
    }
    out
}

#[test]
fn a_topic_is_read_to_its_end_with_alerts_dead_letters_and_commits() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("events", 2, 1).expect("events topic");
    cluster.create_topic("alerts", 1, 1).expect("alerts topic");
    cluster.create_topic("letters", 1, 1).expect("letters topic");
    cluster.create_topic("notices", 1, 1).expect("notices topic");
    let trade = |time: &str, buyer: &str, seller: &str| {
        format!(
            r#"{{"event_time":"2024-03-04T{time}Z","kind":"trade","instrument":"XYZ","buyer":"{buyer}","seller":"{seller}","price":"10.00","quantity":100}}"#
        )
    };
    // A self-trade on partition 0 and ordinary trades on both, with one message that is not
    // JSON between them.
    let (first, second, third) =
        (trade("14:30:00", "A1", "A1"), trade("14:30:01", "A1", "B2"), trade("14:30:02", "C3", "B2"));
    produce(&brokers, "events", 0, &[&first, "{not json", &second]);
    produce(&brokers, "events", 1, &[&third]);

    let mut settings = KafkaConfig::new(&brokers);
    settings.topic = Some("events".into());
    settings.stop_at_end = true;
    settings.alerts_topic = Some("alerts".into());
    settings.dead_letter_topic = Some("letters".into());
    settings.timeout = Duration::from_secs(20);
    let mut config = Config { kafka: Some(settings.clone()), ..Config::default() };
    config.alerts.routes[0].kafka_topic = Some("notices".into());
    let out = tempfile::tempdir().expect("temp dir");
    let summary = run(RunOptions { workers: 2, out_dir: out.path().into(), ..RunOptions::new(Vec::new(), config) })
        .expect("the run");

    assert!(summary.complete, "every partition was read to its end: {summary:?}");
    assert_eq!(summary.events, 3);
    assert_eq!(summary.inputs, vec!["kafka:events/0".to_string(), "kafka:events/1".to_string()]);
    assert_eq!(summary.written.dead_letters_by_reason.get("bad_json"), Some(&1));
    let self_trades = summary.written.alerts_by_rule.get("self_trade").copied().unwrap_or(0);
    assert_eq!(self_trades, 1, "the self-trade: {:?}", summary.written.alerts_by_rule);

    // The dead letter names its partition and offset in the run's outputs and in the topic.
    let letters = std::fs::read_to_string(out.path().join("dead_letters.jsonl")).expect("dead letters");
    assert!(letters.contains("kafka:events/0") && letters.contains("\"offset\":1"), "{letters}");
    let published = consume_all(&brokers, "letters", 1);
    assert_eq!(published.len(), 1);
    let (key, payload, headers) = &published[0];
    assert_eq!((key.as_str(), payload.as_str()), ("events/0/1", "{not json"));
    let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    assert_eq!(header("surveil.reason"), Some("bad_json"));
    assert_eq!((header("surveil.partition"), header("surveil.offset")), (Some("0"), Some("1")));

    // Every alert is on the alerts topic under its id.
    let alerts = std::fs::read_to_string(out.path().join("alerts.jsonl")).expect("alerts");
    let ids: Vec<String> = alerts
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json")["id"].as_str().unwrap_or("").to_string())
        .collect();
    let published = consume_all(&brokers, "alerts", ids.len());
    let keys: Vec<String> = published.iter().map(|(k, _, _)| k.clone()).collect();
    assert_eq!(keys, ids);
    assert_eq!(summary.written.kafka_alerts.map(|c| (c.delivered, c.failed)), Some((ids.len() as u64, 0)));

    // The route's notices are on its topic, keyed by alert id.
    let notices = consume_all(&brokers, "notices", 1);
    let sent = summary.written.notices_by_route.get("all").copied().unwrap_or(0);
    assert_eq!(notices.len() as u64, sent);
    assert!(notices.iter().all(|(key, payload, _)| ids.contains(key) && payload.contains("\"notice\":\"alert\"")));
    assert_eq!(summary.written.kafka_routes["all"].delivered, sent);

    // The positions read are committed for the group: a second run reads nothing.
    assert_eq!(committed_positions(&brokers), vec![Offset::Offset(3), Offset::Offset(1)]);
}

/// The positions group `surveil` has committed on partitions 0 and 1 of `events`.
fn committed_positions(brokers: &str) -> Vec<Offset> {
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", brokers).set("group.id", "surveil").create().expect("consumer");
    let mut list = TopicPartitionList::new();
    list.add_partition("events", 0);
    list.add_partition("events", 1);
    let committed = consumer.committed_offsets(list, Duration::from_secs(10)).expect("committed");
    committed.elements().iter().map(|e| e.offset()).collect()
}

#[test]
fn a_broker_that_does_not_answer_is_an_error_not_a_hang() {
    // A port nothing listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let address = listener.local_addr().expect("address");
    drop(listener);
    let mut settings = KafkaConfig::new(&address.to_string());
    settings.topic = Some("events".into());
    settings.timeout = Duration::from_secs(2);
    let config = Config { kafka: Some(settings), ..Config::default() };
    let out = tempfile::tempdir().expect("temp dir");
    let started = std::time::Instant::now();
    let error =
        run(RunOptions { out_dir: out.path().into(), ..RunOptions::new(Vec::new(), config) }).expect_err("no broker");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(error.to_string().contains(&address.to_string()), "{error}");
}

#[test]
fn remote_brokers_need_encryption() {
    let mut settings = KafkaConfig::new("kafka.example.com:9092");
    settings.topic = Some("events".into());
    let config = Config { kafka: Some(settings.clone()), ..Config::default() };
    assert!(config.validate().expect_err("a plain connection to a remote broker").contains("encrypted"));
    settings.properties.insert("security.protocol".into(), "SSL".into());
    let config = Config { kafka: Some(settings), ..Config::default() };
    config.validate().expect("an encrypted connection to a remote broker");
}

#[test]
fn fix_drop_copies_are_read_from_a_topic_and_bad_ones_are_dead_letters() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("dropcopy", 1, 1).expect("topic");
    let report = common::fix_message(
        "FIX.4.4",
        &[
            (35, "8"),
            (34, "7"),
            (49, "VENUE"),
            (56, "FIRM"),
            (52, "20240301-14:30:00.000"),
            (1, "ACC1"),
            (37, "V-1"),
            (11, "C-1"),
            (17, "E-1"),
            (150, "0"),
            (39, "0"),
            (55, "ACME"),
            (54, "1"),
            (38, "500"),
            (40, "2"),
            (44, "10.25"),
            (60, "20240301-14:30:00.123"),
        ],
    );
    // The same message with one byte changed: its checksum no longer matches.
    let tampered = report.replace("38=500", "38=900");
    produce(&brokers, "dropcopy", 0, &[&report, &tampered]);
    let mut settings = KafkaConfig::new(&brokers);
    settings.topic = Some("dropcopy".into());
    settings.format = surveil::config::KafkaFormat::Fix;
    settings.stop_at_end = true;
    let out = tempfile::tempdir().expect("temp dir");
    let config = Config { kafka: Some(settings), ..Config::default() };
    let summary = run(RunOptions { out_dir: out.path().into(), ..RunOptions::new(Vec::new(), config) }).expect("run");
    assert_eq!(summary.events, 1);
    assert_eq!(summary.events_by_kind.get("new"), Some(&1));
    assert_eq!(summary.written.dead_letters_by_reason.get("fix_checksum"), Some(&1), "{summary:?}");
}

/// The case records of a run: (case id, change, state).
fn case_changes(out: &std::path::Path) -> Vec<(String, String, String)> {
    std::fs::read_to_string(out.join("cases.jsonl"))
        .expect("cases.jsonl")
        .lines()
        .map(|line| {
            let case: serde_json::Value = serde_json::from_str(line).expect("a case record");
            let text = |field: &str| case[field].as_str().unwrap_or_default().to_string();
            (text("case"), text("change"), text("state"))
        })
        .collect()
}

#[test]
fn case_actions_are_read_from_a_topic() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("events", 1, 1).expect("events topic");
    cluster.create_topic("actions", 2, 1).expect("actions topic");
    let self_trade = r#"{"event_time":"2024-03-04T14:30:00Z","kind":"trade","instrument":"XYZ","buyer":"A1","seller":"A1","price":"10.00","quantity":100}"#;
    produce(&brokers, "events", 0, &[self_trade]);
    let mut settings = KafkaConfig::new(&brokers);
    settings.topic = Some("events".into());
    settings.stop_at_end = true;
    let mut config = Config { kafka: Some(settings.clone()), ..Config::default() };
    config.cases.enabled = true;
    let first = tempfile::tempdir().expect("temp dir");
    run(RunOptions { out_dir: first.path().into(), ..RunOptions::new(Vec::new(), config.clone()) }).expect("run");
    let opened = case_changes(first.path());
    let (case, change, _) = opened.first().expect("the self-trade opens a case");
    assert_eq!(change, "opened");

    // Someone closes it, through the topic; another message there is not an action.
    let close = format!(
        r#"{{"time":"2024-03-04T15:00:00Z","case":"{case}","action":"close","by":"bob","disposition":"no_action","reason":"a hedge"}}"#
    );
    produce(&brokers, "actions", 1, &[&close]);
    produce(&brokers, "actions", 0, &["{oops"]);
    settings.group = "second".into();
    settings.case_actions_topic = Some("actions".into());
    config.kafka = Some(settings);
    let second = tempfile::tempdir().expect("temp dir");
    let summary =
        run(RunOptions { out_dir: second.path().into(), ..RunOptions::new(Vec::new(), config.clone()) }).expect("run");
    let changes = case_changes(second.path());
    assert!(
        changes.iter().any(|(id, change, state)| id == case && change == "closed" && state == "closed"),
        "{changes:?}"
    );
    assert_eq!(summary.written.dead_letters_by_reason.get("bad_json"), Some(&1), "{summary:?}");
    let letters = std::fs::read_to_string(second.path().join("dead_letters.jsonl")).expect("dead letters");
    assert!(letters.contains("kafka:actions") && letters.contains("{oops"), "{letters}");

    // Without the case workflow, a topic of actions is refused rather than ignored.
    config.cases.enabled = false;
    let third = tempfile::tempdir().expect("temp dir");
    let error = run(RunOptions { out_dir: third.path().into(), ..RunOptions::new(Vec::new(), config) })
        .expect_err("actions without cases");
    assert!(error.to_string().contains("cases.enabled"), "{error}");
}

/// The keys of every message of `topic` (partition 0) a consumer with `isolation` reads, up
/// to the partition's end.
fn keys_read(brokers: &str, topic: &str, isolation: &str) -> Vec<String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "reader")
        .set("isolation.level", isolation)
        .set("enable.partition.eof", "true")
        .create()
        .expect("consumer");
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, 0, Offset::Beginning).expect("partition");
    consumer.assign(&list).expect("assigned");
    let mut keys = Vec::new();
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => keys.push(String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned()),
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => return keys,
            _ => {}
        }
    }
    panic!("{topic} not read to its end within 20 s ({isolation}): {keys:?}");
}

/// The events of the transactional tests: a self-trade and an ordinary trade on partition 0,
/// with a message that is not JSON between them, and a trade on partition 1.
fn transactional_day(brokers: &str) {
    let trade = |time: &str, buyer: &str, seller: &str| {
        format!(
            r#"{{"event_time":"2024-03-04T{time}Z","kind":"trade","instrument":"XYZ","buyer":"{buyer}","seller":"{seller}","price":"10.00","quantity":100}}"#
        )
    };
    let (first, second, third) =
        (trade("14:30:00", "A1", "A1"), trade("14:30:01", "A1", "B2"), trade("14:30:02", "C3", "B2"));
    produce(brokers, "events", 0, &[&first, "{not json", &second]);
    produce(brokers, "events", 1, &[&third]);
}

fn transactional_settings(brokers: &str) -> KafkaConfig {
    let mut settings = KafkaConfig::new(brokers);
    settings.topic = Some("events".into());
    settings.stop_at_end = true;
    settings.alerts_topic = Some("alerts".into());
    settings.dead_letter_topic = Some("letters".into());
    settings.transactional_id = Some("surveil-job".into());
    settings.timeout = Duration::from_secs(20);
    settings
}

/// What librdkafka's mock cluster can show of transactions: the run's requests (a
/// transactional id, the outputs added to the transaction, the positions sent to it, the
/// transaction ended) are accepted, and a refusal stops the run (below). It keeps no fencing
/// epochs, writes no abort markers and does not keep the positions a transaction commits, so
/// what a `read_committed` consumer sees after a crash is not tested here (`docs/kafka.md`).
#[test]
fn transactions_carry_the_alerts_the_dead_letters_and_the_positions() {
    let cluster = MockCluster::new(3).expect("mock cluster");
    let brokers = cluster.bootstrap_servers();
    for (topic, partitions) in [("events", 2), ("alerts", 1), ("letters", 1)] {
        cluster.create_topic(topic, partitions, 3).expect("topic");
    }
    transactional_day(&brokers);
    let mut settings = transactional_settings(&brokers);
    // Commits during the run too, not only the last one.
    settings.commit_interval = Duration::from_millis(1);
    settings.replay_horizon = Duration::ZERO;
    let config = Config { kafka: Some(settings), ..Config::default() };
    let out = tempfile::tempdir().expect("temp dir");
    let summary = run(RunOptions { workers: 2, out_dir: out.path().into(), ..RunOptions::new(Vec::new(), config) })
        .expect("the run");
    assert!(summary.complete, "{summary:?}");
    assert_eq!(summary.events, 3);
    assert_eq!(summary.written.dead_letters_by_reason.get("bad_json"), Some(&1));

    let alerts = std::fs::read_to_string(out.path().join("alerts.jsonl")).expect("alerts");
    let ids: Vec<String> = alerts
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json")["id"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(!ids.is_empty(), "the self-trade is an alert");
    assert_eq!(keys_read(&brokers, "alerts", "read_committed"), ids);
    assert_eq!(keys_read(&brokers, "letters", "read_committed"), vec!["events/0/1".to_string()]);
    assert_eq!(summary.written.kafka_alerts.map(|c| (c.delivered, c.failed)), Some((ids.len() as u64, 0)));

    // The positions went in the transaction (TxnOffsetCommit; refused, it stops the run
    // below), not in a commit of their own.
    assert_eq!(committed_positions(&brokers), vec![Offset::Invalid, Offset::Invalid]);
}

#[test]
fn a_transaction_the_brokers_refuse_stops_the_run_with_a_clear_error() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    // Ending the transaction refused as by a broker without transactions; the positions
    // refused as for a group the run may not write.
    for (request, refusal) in [
        (RDKafkaApiKey::EndTxn, RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNSUPPORTED_VERSION),
        (RDKafkaApiKey::TxnOffsetCommit, RDKafkaRespErr::RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED),
    ] {
        let cluster = MockCluster::new(3).expect("mock cluster");
        let brokers = cluster.bootstrap_servers();
        for (topic, partitions) in [("events", 2), ("alerts", 1), ("letters", 1)] {
            cluster.create_topic(topic, partitions, 3).expect("topic");
        }
        transactional_day(&brokers);
        cluster.request_errors(request, &[refusal; 8]);
        let config = Config { kafka: Some(transactional_settings(&brokers)), ..Config::default() };
        let out = tempfile::tempdir().expect("temp dir");
        let started = std::time::Instant::now();
        let error = run(RunOptions { out_dir: out.path().into(), ..RunOptions::new(Vec::new(), config) })
            .expect_err("the transaction cannot commit");
        assert!(started.elapsed() < Duration::from_secs(60), "{request:?}: {:?}", started.elapsed());
        let text = error.to_string();
        assert!(text.contains("kafka transaction \"surveil-job\""), "{request:?}: {text}");
        assert_eq!(committed_positions(&brokers), vec![Offset::Invalid, Offset::Invalid], "{request:?}");
    }
}

/// An alert without what depends on where its evidence was read or on the wall clock.
fn alert_content(mut alert: serde_json::Value) -> String {
    if let serde_json::Value::Object(fields) = &mut alert {
        for field in ["id", "detected_at", "group", "sent_to"] {
            fields.remove(field);
        }
        if let Some(serde_json::Value::Array(evidence)) = fields.get_mut("evidence") {
            for event in evidence.iter_mut().filter_map(serde_json::Value::as_object_mut) {
                event.remove("source");
                event.remove("offset");
            }
        }
    }
    alert.to_string()
}

#[test]
fn a_day_through_transactions_committed_as_it_goes_gives_the_alerts_of_the_file() {
    use surveil::generate::{GenerateConfig, generate};
    use surveil::kafka::{Encoding, produce_files};
    use surveil::pipeline::inputs;
    let work = tempfile::tempdir().expect("temp dir");
    let day = work.path().join("day");
    generate(&GenerateConfig { events: 40_000, seed: 11, ..GenerateConfig::default() }, &day).expect("a day");
    let file = day.join("events.csv");
    let config = Config::load(&day.join("surveil.toml")).expect("the day's configuration");
    let from_file = work.path().join("from-file");
    let file_run = run(RunOptions {
        workers: 2,
        out_dir: from_file.clone(),
        ..RunOptions::new(inputs(std::slice::from_ref(&file), None), config.clone())
    })
    .expect("the file run");
    assert!(file_run.alerts > 5, "a day with breaches: {:?}", file_run.written.alerts_by_rule);

    let cluster = MockCluster::new(3).expect("mock cluster");
    let brokers = cluster.bootstrap_servers();
    for (topic, partitions) in [("events", 4), ("alerts", 1), ("letters", 1)] {
        cluster.create_topic(topic, partitions, 3).expect("topic");
    }
    let mut settings = transactional_settings(&brokers);
    let produced =
        produce_files(&inputs(std::slice::from_ref(&file), None), &config, &settings, "events", Encoding::Json)
            .expect("produced");
    assert_eq!(produced.events, file_run.events);
    // A transaction every millisecond or so, while the writer publishes alerts.
    settings.commit_interval = Duration::from_millis(1);
    settings.replay_horizon = Duration::ZERO;
    // Reading waits for the dataflow, so that the source hears of the watermark as it goes.
    let mut config = config;
    config.ingest.max_in_flight = 1_000;
    let from_topic = work.path().join("from-topic");
    let topic_run = run(RunOptions {
        workers: 2,
        out_dir: from_topic.clone(),
        ..RunOptions::new(Vec::new(), Config { kafka: Some(settings), ..config })
    })
    .expect("the transactional run");
    assert!(topic_run.complete);
    assert_eq!(topic_run.events, file_run.events);
    assert_eq!(topic_run.written.alerts_by_rule, file_run.written.alerts_by_rule);
    let contents = |dir: &std::path::Path| -> std::collections::BTreeSet<String> {
        std::fs::read_to_string(dir.join("alerts.jsonl"))
            .expect("alerts")
            .lines()
            .map(|l| alert_content(serde_json::from_str(l).expect("json")))
            .collect()
    };
    assert_eq!(contents(&from_topic), contents(&from_file));
    // Every alert on the topic once, under its id, in the order written.
    let ids: Vec<String> = std::fs::read_to_string(from_topic.join("alerts.jsonl"))
        .expect("alerts")
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json")["id"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(keys_read(&brokers, "alerts", "read_committed"), ids);
}
