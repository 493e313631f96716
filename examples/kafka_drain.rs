//! Reads a topic to the end its partitions have now and nothing else: the rate a consumer gets
//! from the broker, the ceiling for `surveil run --kafka` on the same machine
//! (`docs/benchmarks.md`). Run: `cargo run --release -p surveil --example kafka_drain --features kafka -- BROKERS TOPIC`

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

type Error = Box<dyn std::error::Error>;

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [brokers, topic] = args.as_slice() else { return Err("usage: kafka_drain BROKERS TOPIC".into()) };
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", brokers).set("group.id", "surveil-drain").create()?;
    let timeout = Duration::from_secs(30);
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let partitions = metadata.topics().first().map_or(0, |t| t.partitions().len()) as i32;
    let mut list = TopicPartitionList::new();
    let mut remaining = 0i64;
    for partition in 0..partitions {
        let (low, high) = consumer.fetch_watermarks(topic, partition, timeout)?;
        remaining += high - low;
        list.add_partition_offset(topic, partition, Offset::Beginning)?;
    }
    consumer.assign(&list)?;
    let started = Instant::now();
    let (mut messages, mut bytes) = (0u64, 0u64);
    while (messages as i64) < remaining {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                messages += 1;
                bytes += message.payload().map_or(0, <[u8]>::len) as u64;
            }
            Some(Err(error)) => return Err(error.into()),
            None if started.elapsed() > timeout * 10 => return Err("the topic stopped delivering".into()),
            None => {}
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{messages} messages ({:.1} MB) in {seconds:.2} s: {:.0} messages/s",
        bytes as f64 / 1e6,
        messages as f64 / seconds
    );
    Ok(())
}
