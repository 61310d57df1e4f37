//! Kafka to Kafka through a real Kafka-protocol broker (noida-db): a 4-partition topic read by
//! the Kafka source and written by the Kafka sink with `sink.delivery-guarantee: exactly-once`
//! (one transaction per checkpoint, committed when it completes). A `read_committed`
//! consumer of the output topic sees every record exactly once, keyed by `key.fields`; a job
//! with `at-least-once` delivers everything too. An exactly-once sink without a transactional
//! id prefix is refused at submission with Flink's message, and so is one whose
//! `transaction.timeout.ms` would not outlive two checkpoint intervals.

use std::time::Duration;

use sluice_tests::kafka::{have_broker, Broker};
use sluice_tests::Cluster;

fn job(name: &str, bootstrap: &str, input: &str, output: &str, delivery: &str) -> String {
    format!(
        r#"name: {name}
parallelism: 2
sources:
  - id: events
    connector: kafka
    options:
      topic: {input}
      properties.bootstrap.servers: "{bootstrap}"
      scan.startup.mode: earliest-offset
      scan.bounded.mode: latest-offset
    schema:
      - {{name: n, type: bigint}}
      - {{name: user, type: string}}
sinks:
  - id: out
    input: events
    connector: kafka
    options:
      topic: {output}
      properties.bootstrap.servers: "{bootstrap}"
{delivery}      key.fields: user
"#
    )
}

#[test]
fn kafka_to_kafka_exactly_once_and_at_least_once() {
    if !have_broker() {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let broker = Broker::start(dir.path());
    let checkpoints = tempfile::tempdir().expect("dir");
    let mut cluster = Cluster::new(&format!(
        "execution.checkpointing.dir: file://{}\nexecution.checkpointing.interval: 300 ms\nrestart-strategy.type: none\n",
        checkpoints.path().display()
    ));
    let (_jm, _) = cluster.start_jobmanager();
    let _a = cluster.start_taskmanager(&[]);
    let _b = cluster.start_taskmanager(&[]);
    cluster.wait_taskmanagers(2, Duration::from_secs(20));
    broker.create_topic("in", 4);
    let records: Vec<(i32, Option<String>, String)> = (0..3000)
        .map(|n: i64| ((n % 4) as i32, None, format!(r#"{{"n": {n}, "user": "u{}"}}"#, n % 5)))
        .collect();
    broker.produce("in", &records);

    // Refused at submission: exactly-once needs a transactional id prefix, and a transaction
    // that outlives two checkpoint intervals (300 ms here).
    let refused = |name: &str, delivery: &str| {
        let file = cluster.config_dir().join(format!("{name}.yaml"));
        std::fs::write(&file, job(name, &broker.bootstrap, "in", "x", delivery)).expect("job file");
        let run = cluster.sluice("run", &["-d", file.to_str().expect("path")]);
        assert!(!run.status.success(), "{name} was accepted");
        format!(
            "{}{}",
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        )
    };
    let text = refused("no-prefix", "      sink.delivery-guarantee: exactly-once\n");
    assert!(text.contains("requires a transactionalIdPrefix"), "{text}");
    let text = refused(
        "short-txn",
        "      sink.delivery-guarantee: exactly-once\n      sink.transactional-id-prefix: short\n      properties.transaction.timeout.ms: 400\n",
    );
    assert!(
        text.contains("transaction.timeout.ms (400 ms) must be at least twice the checkpoint interval (300 ms)"),
        "{text}"
    );

    for (name, delivery) in [
        (
            "exactly",
            "      sink.delivery-guarantee: exactly-once\n      sink.transactional-id-prefix: sluice-test\n",
        ),
        ("at-least", "      sink.delivery-guarantee: at-least-once\n"),
    ] {
        let output = format!("out-{name}");
        broker.create_topic(&output, 2);
        let id = cluster.submit(&job(name, &broker.bootstrap, "in", &output, delivery), "job.yaml");
        cluster.wait_job_state(&id, "FINISHED", Duration::from_secs(60));
        let got = broker.read_all(&output, "read_committed");
        let mut ns: Vec<i64> = got
            .iter()
            .map(|(_, _, _, v)| {
                serde_json::from_str::<serde_json::Value>(v).expect("json")["n"]
                    .as_i64()
                    .expect("n")
            })
            .collect();
        ns.sort_unstable();
        assert_eq!(ns, (0..3000).collect::<Vec<_>>(), "{name}: every record exactly once");
        for (_, _, key, value) in &got {
            let v: serde_json::Value = serde_json::from_str(value).expect("json");
            let want = format!(r#"{{"user":"{}"}}"#, v["user"].as_str().expect("user"));
            assert_eq!(
                key.as_deref(),
                Some(want.as_str()),
                "{name}: the key is key.fields as JSON"
            );
        }
        // Transaction markers take offsets: committed transactions leave gaps between records.
        let mut offsets: Vec<(i32, i64)> = got.iter().map(|(p, o, _, _)| (*p, *o)).collect();
        offsets.sort_unstable();
        let gaps = offsets
            .windows(2)
            .filter(|w| w[0].0 == w[1].0 && w[1].1 > w[0].1 + 1)
            .count();
        println!("{name}: a read_committed consumer sees 3000 records exactly once ({gaps} offset gaps)");
        if name == "exactly" {
            assert!(
                gaps > 0,
                "exactly-once wrote through transactions (commit markers between records)"
            );
        } else {
            assert_eq!(gaps, 0, "at-least-once wrote no transactions");
        }
    }
}

/// The recovery-commit gap: a failpoint (`SLUICE_FAILPOINT=kafka-sink-before-commit`, tests
/// only) crashes the taskmanager after a checkpoint completed and before the sink committed
/// its transaction. The restarted job commits that transaction from the checkpoint's
/// committable (transactional id, producer id and epoch) by the wire protocol, and a
/// `read_committed` consumer sees every record exactly once.
#[test]
fn a_crash_between_checkpoint_completion_and_commit_still_commits() {
    if !have_broker() {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let broker = Broker::start(dir.path());
    broker.create_topic("in", 4);
    broker.create_topic("out", 2);
    let records: Vec<(i32, Option<String>, String)> = (0..2000)
        .map(|n: i64| ((n % 4) as i32, None, format!(r#"{{"n": {n}, "user": "u{}"}}"#, n % 5)))
        .collect();
    broker.produce("in", &records);
    let checkpoints = tempfile::tempdir().expect("dir");
    let mut cluster = Cluster::new(&sluice_tests::checkpoints_and_restarts(checkpoints.path(), "300 ms"));
    let (_jm, _) = cluster.start_jobmanager();
    let (mut a, _) = cluster.start_with_env("taskmanager", &[], &[("SLUICE_FAILPOINT", "kafka-sink-before-commit")]);
    cluster.wait_taskmanagers(1, Duration::from_secs(20));
    let yaml = job(
        "gap",
        &broker.bootstrap,
        "in",
        "out",
        "      sink.delivery-guarantee: exactly-once\n      sink.transactional-id-prefix: gap-test\n",
    );
    let id = cluster.submit(&yaml, "gap.yaml");
    let status = a.wait_exit(Duration::from_secs(60));
    assert!(!status.success(), "the failpoint crashed the taskmanager: {status:?}");
    assert!(a.log().contains("Failpoint kafka-sink-before-commit"), "{}", a.log());
    let (b, _) = cluster.start_with_env("taskmanager", &[], &[]);
    sluice_tests::wait_or_explain(
        Duration::from_secs(90),
        || (cluster.job_state(&id).as_deref() == Some("FINISHED")).then_some(()),
        || format!("job {:?}; logs:\n{}", cluster.job_state(&id), cluster.log_tails(30)),
    );
    assert!(
        b.log().contains("precommitted before a restart"),
        "the restarted attempt committed the crashed attempt's transaction:\n{}",
        b.log()
    );
    let got = broker.read_all("out", "read_committed");
    let mut ns: Vec<i64> = got
        .iter()
        .map(|(_, _, _, v)| {
            serde_json::from_str::<serde_json::Value>(v).expect("json")["n"]
                .as_i64()
                .expect("n")
        })
        .collect();
    ns.sort_unstable();
    if ns != (0..2000).collect::<Vec<_>>() {
        let interesting = |log: String| {
            log.lines()
                .filter(|l| {
                    l.contains("kafka") || l.contains("Kafka") || l.contains("Failpoint") || l.contains("estor")
                })
                .map(str::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        };
        panic!(
            "{} records ({} read_uncommitted), {} distinct, want 2000 exactly once; crashed taskmanager:\n{}\nnew taskmanager:\n{}\n{}",
            ns.len(),
            broker.read_all("out", "read_uncommitted").len(),
            ns.iter().collect::<std::collections::BTreeSet<_>>().len(),
            interesting(a.log()),
            interesting(b.log()),
            cluster.log_tails(40)
        );
    }
    let restarts = cluster
        .rest(&format!("/jobs/{id}/metrics?get=numRestarts"))
        .expect("job metrics");
    assert_eq!(restarts[0]["value"], "1", "one restart: {restarts}");
    println!("gap closed: one restart, 2000 records exactly once");
}
