//! A Kafka-protocol broker for end-to-end tests: noida-db (PyPI; scripts/deps.sh installs it
//! into `~/.cache/sluice-tools/kafka-venv`, `SLUICE_KAFKA_BIN` overrides) on 127.0.0.1 with a
//! free port and its own data directory, plus what tests do to it through librdkafka:
//! create topics, produce, read a group's committed offsets.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::{free_port, Daemon};

/// The broker binary scripts/deps.sh installs: the binary itself inside the venv's
/// `site-packages/noida_db/`, not the Python launcher in `bin/` (killing the launcher would
/// leave the broker running).
pub fn broker_bin() -> PathBuf {
    if let Ok(bin) = std::env::var("SLUICE_KAFKA_BIN") {
        return PathBuf::from(bin);
    }
    let lib = PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/sluice-tools/kafka-venv/lib");
    std::fs::read_dir(&lib)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("site-packages/noida_db/noida-db"))
        .find(|p| p.exists())
        .unwrap_or_else(|| lib.join("python3/site-packages/noida_db/noida-db"))
}

/// Whether the broker is installed; SKIPPED (or, under SLUICE_REQUIRE_TOOLS=1, a failure)
/// when it is not.
pub fn have_broker() -> bool {
    crate::tools::have_tool(
        broker_bin().exists(),
        "the Kafka-protocol broker (PyPI noida-db in ~/.cache/sluice-tools/kafka-venv) is missing; scripts/test.sh installs it",
    )
}

pub struct Broker {
    pub bootstrap: String,
    _daemon: Option<Daemon>,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

impl Broker {
    /// Starts the broker with its data in `dir`; waits (at most 20 s) until it answers.
    pub fn start(dir: &Path) -> Broker {
        let port = free_port();
        let data = dir.join("kafka-data");
        std::fs::create_dir_all(&data).expect("data dir");
        let args: Vec<String> = [
            "start",
            "--data-dir",
            &data.display().to_string(),
            "--host",
            "127.0.0.1",
            "--only",
            "kafka",
            "--kafka-port",
            &port.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let daemon = Daemon::start("kafka-broker", &broker_bin(), &args, dir.join("kafka-broker.log"));
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the Kafka broker did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Broker {
            bootstrap: format!("127.0.0.1:{port}"),
            _daemon: Some(daemon),
        }
    }

    /// A broker the test did not start (a container's), at `bootstrap`.
    pub fn external(bootstrap: String) -> Broker {
        Broker {
            bootstrap,
            _daemon: None,
        }
    }

    fn config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap);
        c
    }

    fn admin(&self) -> AdminClient<DefaultClientContext> {
        self.config().create().expect("admin client")
    }

    /// Creates `topic` with `partitions` partitions, kept forever (`retention.ms=-1`).
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        let admin = self.admin();
        let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1)).set("retention.ms", "-1");
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results = runtime()
            .block_on(admin.create_topics([&new], &opts))
            .expect("create topics");
        for r in results {
            r.unwrap_or_else(|(t, e)| panic!("creating topic {t}: {e}"));
        }
    }

    /// Grows `topic` to `partitions` partitions.
    pub fn add_partitions(&self, topic: &str, partitions: usize) {
        let admin = self.admin();
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results = runtime()
            .block_on(admin.create_partitions([&NewPartitions::new(topic, partitions)], &opts))
            .expect("create partitions");
        for r in results {
            r.unwrap_or_else(|(t, e)| panic!("adding partitions to {t}: {e}"));
        }
    }

    /// Produces every (partition, key, value) and waits until the broker has them all.
    pub fn produce(&self, topic: &str, records: &[(i32, Option<String>, String)]) {
        let producer: BaseProducer = self.config().set("linger.ms", "5").create().expect("producer");
        for (partition, key, value) in records {
            let mut record = BaseRecord::to(topic).partition(*partition).payload(value.as_str());
            if let Some(k) = key {
                record = record.key(k.as_str());
            }
            let mut pending = record;
            loop {
                match producer.send(pending) {
                    Ok(()) => break,
                    Err((e, back)) => {
                        assert!(
                            matches!(
                                e,
                                rdkafka::error::KafkaError::MessageProduction(
                                    rdkafka::types::RDKafkaErrorCode::QueueFull
                                )
                            ),
                            "producing to {topic}: {e}"
                        );
                        producer.poll(Duration::from_millis(50));
                        pending = back;
                    }
                }
            }
        }
        producer.flush(Duration::from_secs(30)).expect("flush");
    }

    /// The offsets `group` committed for `topic`'s partitions `0..partitions` (-1: none).
    pub fn committed(&self, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
        let consumer: BaseConsumer = self.config().set("group.id", group).create().expect("consumer");
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(topic, p);
        }
        let got = consumer
            .committed_offsets(tpl, Duration::from_secs(10))
            .expect("committed offsets");
        (0..partitions)
            .map(|p| match got.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => -1,
            })
            .collect()
    }

    /// Every record of `topic` a consumer with `isolation.level` sees (read_committed hides
    /// open and aborted transactions): (partition, offset, key, value). Reads until nothing
    /// new came for 2 s (at most 60 s).
    pub fn read_all(&self, topic: &str, isolation: &str) -> Vec<(i32, i64, Option<String>, String)> {
        let consumer: BaseConsumer = self
            .config()
            .set("group.id", "sluice-test-reader")
            .set("isolation.level", isolation)
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let md = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .expect("metadata");
        let partitions = md
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .map_or(0, |t| t.partitions().len());
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(topic, p as i32, Offset::Beginning)
                .expect("partition");
        }
        consumer.assign(&tpl).expect("assign");
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = Instant::now();
        while Instant::now() < deadline && last.elapsed() < Duration::from_secs(2) {
            if let Some(m) = consumer.poll(Duration::from_millis(100)) {
                let m = m.expect("record");
                use rdkafka::message::Message;
                out.push((
                    m.partition(),
                    m.offset(),
                    m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                    String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
                ));
                last = Instant::now();
            }
        }
        out
    }
}
