//! The Kafka benchmark's helper (scripts/bench.py, figure K1), on the same librdkafka build as
//! Sluice's source:
//!
//!   kafka_bench fill SERVERS TOPIC PARTITIONS RECORDS
//!       creates TOPIC (`retention.ms=-1`) and writes RECORDS small JSON records spread evenly
//!       over its partitions; prints `{"records":N,"per_partition":[..],"seconds":S}`.
//!   kafka_bench consume SERVERS TOPIC COUNTS
//!       the raw rate: a plain consumer assigned every partition from its beginning reads until
//!       each partition gave its count (COUNTS: comma-separated, one per partition); prints
//!       `{"records":N,"bytes":B,"seconds":S}`. Gives up after 30 s without a record.
//!       `KAFKA_BENCH_PROPERTIES` (`key=value,…`) sets client properties of the consumer, so it
//!       can run with the settings a Sluice job gives its source.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

type Result<T> = std::result::Result<T, String>;

fn config(servers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", servers);
    c
}

fn number<T: std::str::FromStr>(what: &str, text: &str) -> Result<T> {
    text.parse()
        .map_err(|_| format!("{what} must be a number, found '{text}'"))
}

fn create_topic(servers: &str, topic: &str, partitions: i32) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = config(servers)
        .create()
        .map_err(|e| format!("admin client for {servers}: {e}"))?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1)).set("retention.ms", "-1");
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    for r in rt
        .block_on(admin.create_topics([&new], &opts))
        .map_err(|e| format!("creating topic {topic}: {e}"))?
    {
        r.map_err(|(t, e)| format!("creating topic {t}: {e}"))?;
    }
    Ok(())
}

fn fill(servers: &str, topic: &str, partitions: i32, records: u64) -> Result<String> {
    create_topic(servers, topic, partitions)?;
    let producer: BaseProducer = config(servers)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .map_err(|e| format!("producer for {servers}: {e}"))?;
    let start = Instant::now();
    let mut per_partition = vec![0u64; partitions.max(1) as usize];
    for i in 0..records {
        let partition = (i % partitions.max(1) as u64) as i32;
        let value = format!(
            r#"{{"user":"u{}","v":{},"ts":{}}}"#,
            i % 100_000,
            i % 1000,
            1_767_225_600_000u64 + i
        );
        let mut record = BaseRecord::<(), str>::to(topic).partition(partition).payload(&value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    back,
                )) => {
                    producer.poll(Duration::from_millis(10));
                    record = back;
                }
                Err((e, _)) => return Err(format!("producing to {topic}-{partition}: {e}")),
            }
        }
        per_partition[partition as usize] += 1;
    }
    producer
        .flush(Duration::from_secs(600))
        .map_err(|e| format!("flushing to {topic}: {e}"))?;
    Ok(format!(
        r#"{{"records":{records},"per_partition":{per_partition:?},"seconds":{}}}"#,
        start.elapsed().as_secs_f64()
    ))
}

fn consume(servers: &str, topic: &str, counts: &[u64]) -> Result<String> {
    let mut c = config(servers);
    c.set("group.id", "sluice-bench-raw").set("enable.auto.commit", "false");
    for kv in std::env::var("KAFKA_BENCH_PROPERTIES").unwrap_or_default().split(',') {
        if let Some((k, v)) = kv.split_once('=') {
            c.set(k.trim(), v.trim());
        }
    }
    let consumer: BaseConsumer = c.create().map_err(|e| format!("consumer for {servers}: {e}"))?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..counts.len() as i32 {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .map_err(|e| format!("{topic}-{p}: {e}"))?;
    }
    consumer.assign(&tpl).map_err(|e| format!("assigning {topic}: {e}"))?;
    let mut left: Vec<u64> = counts.to_vec();
    let mut open = left.iter().filter(|c| **c > 0).count();
    let (mut records, mut bytes) = (0u64, 0u64);
    let start = Instant::now();
    let mut last = Instant::now();
    while open > 0 {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                last = Instant::now();
                let p = m.partition() as usize;
                if let Some(l) = left.get_mut(p).filter(|l| **l > 0) {
                    *l -= 1;
                    records += 1;
                    bytes += m.payload_len() as u64;
                    if *l == 0 {
                        open -= 1;
                    }
                }
            }
            Some(Err(e)) => return Err(format!("reading {topic}: {e}")),
            None if last.elapsed() > Duration::from_secs(30) => {
                return Err(format!("{topic}: nothing for 30 s with {records} record(s) read"))
            }
            None => {}
        }
    }
    Ok(format!(
        r#"{{"records":{records},"bytes":{bytes},"seconds":{}}}"#,
        start.elapsed().as_secs_f64()
    ))
}

fn run(args: &[String]) -> Result<String> {
    match args {
        [cmd, servers, topic, partitions, records] if cmd == "fill" => fill(
            servers,
            topic,
            number("PARTITIONS", partitions)?,
            number("RECORDS", records)?,
        ),
        [cmd, servers, topic, counts] if cmd == "consume" => {
            let counts = counts
                .split(',')
                .map(|c| number::<u64>("a count", c.trim()))
                .collect::<Result<Vec<u64>>>()?;
            consume(servers, topic, &counts)
        }
        _ => Err("usage: kafka_bench fill SERVERS TOPIC PARTITIONS RECORDS | consume SERVERS TOPIC COUNTS".into()),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(out) => println!("{out}"),
        Err(e) => {
            eprintln!("kafka_bench: {e}");
            std::process::exit(1);
        }
    }
}
