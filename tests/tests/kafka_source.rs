//! The Kafka source against a real Kafka-protocol broker (noida-db on 127.0.0.1): a 4-partition
//! topic read by 3 source subtasks over two taskmanagers, into the file sink.
//! - Bounded (`scan.bounded.mode: latest-offset`): every record arrives exactly once, with its
//!   partition and offset as metadata columns, and the group's committed offsets are the end
//!   offsets once the job finished.
//! - Bounded at specific offsets (`scan.bounded.mode: specific-offsets`): the records before them.
//! - Unbounded with partition discovery every second: records produced while the job runs
//!   arrive, and so do those of partitions added to the topic mid-job (read from earliest).
//! - `topic-pattern` reads every topic whose whole name matches.
//! - A record that is not JSON fails the job naming topic, partition and offset; with
//!   `scan.dead-letter-topic` it goes to that topic instead and the rest arrive exactly once.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use sluice_tests::kafka::{broker_bin, have_broker, Broker};
use sluice_tests::tools::have_tool;
use sluice_tests::{wait_for, Cluster};

fn job(name: &str, bootstrap: &str, topic: &str, out: &Path, extra: &str) -> String {
    format!(
        r#"name: {name}
parallelism: 3
sources:
  - id: events
    connector: kafka
    options:
      topic: {topic}
      properties.bootstrap.servers: "{bootstrap}"
      properties.group.id: {name}
      scan.startup.mode: earliest-offset
{extra}    schema:
      - {{name: n, type: bigint}}
      - {{name: user, type: string}}
      - {{name: p, type: int, expr: partition}}
      - {{name: o, type: bigint, expr: offset}}
sinks:
  - id: out
    input: events
    connector: file
    options: {{path: "file://{}", format: json}}
"#,
        out.display()
    )
}

/// (partition, key, JSON value) for n in `range`, partition n % partitions.
fn records(range: std::ops::Range<i64>, partitions: i32) -> Vec<(i32, Option<String>, String)> {
    range
        .map(|n| {
            let p = i32::try_from(n % i64::from(partitions)).unwrap_or(0);
            (
                p,
                Some(format!("k{n}")),
                format!(r#"{{"n": {n}, "user": "u{}"}}"#, n % 7),
            )
        })
        .collect()
}

/// n → (partition, offset) of every row the sink committed; a row seen twice fails.
fn output(out: &Path) -> BTreeMap<i64, (i64, i64)> {
    let mut got = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(out) else {
        return got;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if !name.starts_with("part-") {
            continue;
        }
        for line in std::fs::read_to_string(entry.path()).unwrap_or_default().lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("json line");
            let n = v["n"].as_i64().expect("n");
            let prev = got.insert(n, (v["p"].as_i64().expect("p"), v["o"].as_i64().expect("o")));
            assert!(prev.is_none(), "row {n} written twice");
        }
    }
    got
}

#[test]
fn kafka_source_reads_exactly_discovers_partitions_and_names_bad_records() {
    if !have_broker() {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let broker = Broker::start(dir.path());
    let checkpoints = tempfile::tempdir().expect("dir");
    let mut cluster = Cluster::new(&format!(
        "execution.checkpointing.dir: file://{}\nexecution.checkpointing.interval: 300 ms\n\
         restart-strategy.type: none\n",
        checkpoints.path().display()
    ));
    let (_jm, _) = cluster.start_jobmanager();
    let _a = cluster.start_taskmanager(&[]);
    let _b = cluster.start_taskmanager(&[]);
    cluster.wait_taskmanagers(2, Duration::from_secs(20));

    // Bounded: 4000 records in 4 partitions, read by 3 subtasks.
    broker.create_topic("events", 4);
    broker.produce("events", &records(0..4000, 4));
    let out = dir.path().join("bounded");
    let id = cluster.submit(
        &job(
            "bounded",
            &broker.bootstrap,
            "events",
            &out,
            "      scan.bounded.mode: latest-offset\n",
        ),
        "bounded.yaml",
    );
    cluster.wait_job_state(&id, "FINISHED", Duration::from_secs(60));
    let got = output(&out);
    assert_eq!(got.len(), 4000, "every record once");
    for (n, (p, o)) in &got {
        assert_eq!(*p, n % 4, "record {n}'s partition");
        assert_eq!(*o, n / 4, "record {n}'s offset");
    }
    let committed = wait_for(Duration::from_secs(10), "the group's committed offsets", || {
        let c = broker.committed("bounded", "events", 4);
        (c == [1000, 1000, 1000, 1000]).then_some(c)
    });
    println!("bounded: 4000 records exactly once; committed offsets {committed:?}");

    // Bounded at given offsets: partitions 0 and 1 up to theirs; 2 and 3, unlisted and never
    // committed by this group, stop where they start (Flink's fallback: committed, else earliest).
    let out = dir.path().join("specific");
    let id = cluster.submit(
        &job(
            "specific",
            &broker.bootstrap,
            "events",
            &out,
            "      scan.bounded.mode: specific-offsets\n      scan.bounded.specific-offsets: \"partition:0,offset:10;partition:1,offset:20\"\n",
        ),
        "specific.yaml",
    );
    cluster.wait_job_state(&id, "FINISHED", Duration::from_secs(60));
    let got = output(&out);
    let want: BTreeMap<i64, (i64, i64)> = (0..10)
        .map(|o| (o * 4, (0, o)))
        .chain((0..20).map(|o| (o * 4 + 1, (1, o))))
        .collect();
    assert_eq!(got, want, "offsets 0..10 of partition 0 and 0..20 of partition 1");
    println!("bounded at specific offsets: the 30 records before them");

    // Unbounded, discovering partitions every second.
    broker.create_topic("growing", 2);
    broker.produce("growing", &records(0..100, 2));
    let out = dir.path().join("unbounded");
    let id = cluster.submit(
        &job(
            "unbounded",
            &broker.bootstrap,
            "growing",
            &out,
            "      scan.topic-partition-discovery.interval: 1 s\n",
        ),
        "unbounded.yaml",
    );
    cluster.wait_job_state(&id, "RUNNING", Duration::from_secs(30));
    broker.produce("growing", &records(100..200, 2));
    broker.add_partitions("growing", 4);
    // Records 200.. go to all four partitions, the two new ones included.
    broker.produce("growing", &records(200..400, 4));
    let got = wait_for(Duration::from_secs(60), "400 records, new partitions included", || {
        let got = output(&out);
        (got.len() == 400).then_some(got)
    });
    let partitions: std::collections::BTreeSet<i64> = got.values().map(|(p, _)| *p).collect();
    assert_eq!(partitions.len(), 4, "read from all four partitions: {partitions:?}");
    let c = cluster.sluice("cancel", &[id.as_str()]);
    assert!(c.status.success(), "{c:?}");
    println!("unbounded: 400 records, partitions {partitions:?}");

    // topic-pattern: every topic whose whole name matches, none other.
    broker.create_topic("pat-a", 1);
    broker.create_topic("pat-b", 2);
    broker.create_topic("patio", 1);
    broker.produce("pat-a", &records(0..10, 1));
    broker.produce("pat-b", &records(10..30, 2));
    broker.produce("patio", &records(30..40, 1));
    let out = dir.path().join("pattern");
    let yaml = job(
        "pattern",
        &broker.bootstrap,
        "x",
        &out,
        "      scan.bounded.mode: latest-offset\n",
    )
    .replace("      topic: x\n", "      topic-pattern: \"pat-.*\"\n");
    let id = cluster.submit(&yaml, "pattern.yaml");
    cluster.wait_job_state(&id, "FINISHED", Duration::from_secs(60));
    let got = output(&out);
    assert_eq!(
        got.keys().copied().collect::<Vec<_>>(),
        (0..30).collect::<Vec<_>>(),
        "pat-a and pat-b only"
    );
    println!("topic-pattern: 30 records of pat-a and pat-b, none of patio");

    // A record that is not JSON fails the job, naming where it stands.
    broker.create_topic("poison", 1);
    let mut bad = records(0..10, 1);
    bad[5].2 = "not json".into();
    broker.produce("poison", &bad);
    let out = dir.path().join("poison");
    let id = cluster.submit(
        &job(
            "poison",
            &broker.bootstrap,
            "poison",
            &out,
            "      scan.bounded.mode: latest-offset\n",
        ),
        "poison.yaml",
    );
    cluster.wait_job_state(&id, "FAILED", Duration::from_secs(60));
    let details = cluster.rest(&format!("/jobs/{id}")).expect("job details");
    let cause = details["failure-cause"].as_str().unwrap_or_default().to_string();
    assert!(
        cause.contains("topic 'poison', partition 0, offset 5"),
        "the failure names the record: {cause}"
    );
    println!("poison: {cause}");

    // group-offsets (the default) for a group that committed nothing fails as Flink does.
    let out = dir.path().join("no-commit");
    let yaml = job("no-commit", &broker.bootstrap, "events", &out, "")
        .replace("      scan.startup.mode: earliest-offset\n", "");
    let id = cluster.submit(&yaml, "no-commit.yaml");
    cluster.wait_job_state(&id, "FAILED", Duration::from_secs(60));
    let details = cluster.rest(&format!("/jobs/{id}")).expect("job details");
    let cause = details["failure-cause"].as_str().unwrap_or_default().to_string();
    assert!(cause.contains("Undefined offset with no reset policy"), "{cause}");
    println!("group-offsets without a commit: {cause}");

    // With a dead-letter topic the bad record goes there and the job stays exact.
    broker.create_topic("poison-dlq", 1);
    let out = dir.path().join("dead-letters");
    let id = cluster.submit(
        &job(
            "dead-letters",
            &broker.bootstrap,
            "poison",
            &out,
            "      scan.bounded.mode: latest-offset\n      scan.dead-letter-topic: poison-dlq\n",
        ),
        "dead-letters.yaml",
    );
    cluster.wait_job_state(&id, "FINISHED", Duration::from_secs(60));
    let got = output(&out);
    assert_eq!(
        got.keys().copied().collect::<Vec<_>>(),
        [0, 1, 2, 3, 4, 6, 7, 8, 9],
        "the good records once"
    );
    let dead = broker.read_all("poison-dlq", "read_uncommitted");
    assert_eq!(dead.len(), 1, "one dead letter: {dead:?}");
    assert_eq!(dead[0].3, "not json");
    println!("dead letters: the bad record in poison-dlq, the 9 good ones in the output");
}

/// A taskmanager reading Kafka is killed (`kill -9`) mid-stream: the job restarts from its
/// latest checkpoint on a new taskmanager, and the offsets in that checkpoint bring every
/// record exactly once into the (two-phase-commit) file sink, those produced meanwhile too.
#[test]
fn kafka_source_recovers_from_a_killed_taskmanager_exactly_once() {
    if !have_broker() {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let broker = Broker::start(dir.path());
    broker.create_topic("stream", 4);
    broker.produce("stream", &records(0..5000, 4));
    let checkpoints = tempfile::tempdir().expect("dir");
    let mut cluster = Cluster::new(&sluice_tests::checkpoints_and_restarts(checkpoints.path(), "300 ms"));
    let (_jm, jm_metrics) = cluster.start_jobmanager();
    let (mut a, _) = cluster.start_taskmanager(&[]);
    cluster.wait_taskmanagers(1, Duration::from_secs(20));
    let out = dir.path().join("out");
    let yaml = job("recovering", &broker.bootstrap, "stream", &out, "").replace("parallelism: 3", "parallelism: 2");
    let id = cluster.submit(&yaml, "recovering.yaml");
    wait_for(Duration::from_secs(60), "a first checkpoint's rows", || {
        (output(&out).len() >= 1000).then_some(())
    });
    a.kill9();
    broker.produce("stream", &records(5000..10_000, 4));
    let _b = cluster.start_taskmanager(&[]);
    let got = sluice_tests::wait_or_explain(
        Duration::from_secs(90),
        || {
            let got = output(&out);
            (got.len() == 10_000).then_some(got)
        },
        || {
            format!(
                "{} rows so far, job {:?}; logs:\n{}",
                output(&out).len(),
                cluster.job_state(&id),
                cluster.log_tails(20)
            )
        },
    );
    assert_eq!(got.keys().copied().collect::<Vec<_>>(), (0..10_000).collect::<Vec<_>>());
    let restarts = sluice_tests::job_restarts(jm_metrics, &id);
    assert!(restarts >= 1, "the job restarted ({restarts})");
    println!("killed taskmanager: {restarts} restart(s), 10000 records exactly once");
    let c = cluster.sluice("cancel", &[id.as_str()]);
    assert!(c.status.success(), "{c:?}");
}

/// A Kafka source behind a slow sink lags: on a real Prometheus, Flink's consumer-lag metric
/// (`..._KafkaSourceReader_KafkaConsumer_records_lag_max`) is above 10000 so the shipped
/// `SluiceKafkaConsumerLag` expression holds, and the per-partition `currentOffset` series
/// carry topic and partition labels.
#[test]
fn a_lagging_kafka_source_shows_its_lag_on_prometheus() {
    if !have_tool(
        broker_bin().exists() && sluice_tests::tools::runs("prometheus", &["--version"]),
        "the Kafka-protocol broker (PyPI noida-db) or prometheus is missing; scripts/test.sh installs both",
    ) {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let broker = Broker::start(dir.path());
    broker.create_topic("backlog", 2);
    broker.produce("backlog", &records(0..40_000, 2));
    let targets = sluice_tests::prometheus::install(dir.path(), None);
    let mut cluster = Cluster::new(&format!("metrics.reporter.prom.file-sd-dir: {}\n", targets.display()));
    let (_jm, _) = cluster.start_jobmanager();
    let _a = cluster.start_taskmanager(&[]);
    cluster.wait_taskmanagers(1, Duration::from_secs(20));
    let yaml = format!(
        r#"name: lagging
parallelism: 1
sources:
  - id: events
    connector: kafka
    options:
      topic: backlog
      properties.bootstrap.servers: "{}"
      scan.startup.mode: earliest-offset
    schema:
      - {{name: n, type: bigint}}
sinks:
  - id: out
    input: events
    connector: blackhole
    options: {{rows-per-second: 500}}
"#,
        broker.bootstrap
    );
    let id = cluster.submit(&yaml, "lagging.yaml");
    let prometheus = sluice_tests::prometheus::start(dir.path());
    let alert = "max(flink_taskmanager_job_task_operator_KafkaSourceReader_KafkaConsumer_records_lag_max) > 10000";
    let lag = sluice_tests::prometheus::wait_query(&prometheus, alert, Duration::from_secs(60));
    println!("Prometheus: {alert} → {}", lag[0]["value"][1]);
    let query =
        "flink_taskmanager_job_task_operator_KafkaSourceReader_topic_partition_currentOffset{topic=\"backlog\"}";
    let partitions = wait_for(Duration::from_secs(60), "currentOffset of both partitions", || {
        let series = prometheus.query(query)?;
        let partitions: std::collections::BTreeSet<String> = series
            .as_array()?
            .iter()
            .filter_map(|s| s["metric"]["partition"].as_str().map(str::to_string))
            .collect();
        (partitions.len() == 2).then_some(partitions)
    });
    println!("Prometheus: currentOffset for partitions {partitions:?}");
    let c = cluster.sluice("cancel", &[id.as_str()]);
    assert!(c.status.success(), "{c:?}");
}
