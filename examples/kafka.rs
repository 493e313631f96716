//! A job of one's own over a Kafka topic: the topic's partitions are the inputs (split over
//! the workers), a rule written here and a built-in one check the events, and every alert is
//! published to a topic keyed by its id. Run against a broker on 127.0.0.1:9092:
//! `cargo run -p surveil --example kafka --features kafka -- trading.events surveil.alerts -w 2`

use std::path::PathBuf;

use surveil::config::{Config, KafkaConfig};
use surveil::detect::{AlertSink, Detect, Detector, Key};
use surveil::model::{Body, Event, Report};
use surveil::pipeline::{Job, RunSummary};
use surveil::rules::SelfTradesExt;
use timely::dataflow::operators::{Concat, vec::Map};

type Error = Box<dyn std::error::Error>;

/// An order of at least this many units.
struct LargeOrder(u64);

impl Detector for LargeOrder {
    type State = ();
    fn name(&self) -> &str {
        "large_order"
    }
    fn key(&self, e: &Event) -> Option<Key> {
        matches!(e.body, Body::NewOrder { quantity, .. } if quantity >= self.0).then(|| Key::Instrument(e.instrument))
    }
    fn on_event(&self, _: &mut (), e: &Event, out: &mut AlertSink<'_>) {
        out.alert(e).explain(format!("an order of at least {}", self.0));
    }
}

/// Reads `topic` to its end on `brokers`, publishing the alerts to `alerts`.
pub fn kafka_job(brokers: &str, topic: &str, alerts: &str, timely: timely::Config) -> Result<RunSummary, Error> {
    let mut kafka = KafkaConfig::new(brokers);
    kafka.topic = Some(topic.into());
    kafka.alerts_topic = Some(alerts.into());
    kafka.stop_at_end = true;
    let config = Config { kafka: Some(kafka), ..Config::default() };
    let job = Job::new(Vec::new(), config, &PathBuf::from("out/kafka"))?;
    Ok(job.execute(timely, |job, _scope, events| {
        let self_trades = events.clone().self_trades(&job.config().rules.self_trade);
        self_trades.concat(events.detect(LargeOrder(50_000))).map(Report::from)
    })?)
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (topic, alerts) = match args.as_slice() {
        [topic, alerts, ..] => (topic.clone(), alerts.clone()),
        _ => return Err("usage: kafka TOPIC ALERTS_TOPIC [-w WORKERS]".into()),
    };
    let brokers = std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let timely = timely::Config::from_args(args.into_iter().skip(2))?;
    println!("{}", kafka_job(&brokers, &topic, &alerts, timely)?.table());
    Ok(())
}
