//! Issue 16's end-to-end contract, on a real Kafka-protocol broker (noida-db) and real
//! processes: a 16-partition topic → key by user → 10 s tumbling event-time windows → Kafka
//! sink with exactly-once delivery, in reactive mode over two taskmanagers of two slots
//! (parallelism 4). While records keep arriving, a taskmanager is killed with SIGKILL (the job
//! restarts and scales down), one joins (scale-up) and one more joins and then stops (up and
//! down again). A `read_committed` consumer of the output topic then sees exactly the
//! reference windows: each (window, user) once, with the right count and sum.

use std::collections::BTreeMap;
use std::time::Duration;

use sluice_tests::kafka::{have_broker, Broker};
use sluice_tests::{wait_for, wait_or_explain, wait_parallelism, Cluster};

const EPOCH_MS: i64 = 1_767_225_600_000;
const USERS: i64 = 40;
const WINDOW_MS: i64 = 10_000;
/// Records per phase; five phases while the cluster changes.
const PHASE: i64 = 4000;
/// Event time advances 5 ms per record: a phase spans 20 s of event time (two windows).
const STEP_MS: i64 = 5;

fn record(n: i64) -> (i32, Option<String>, String) {
    (
        (n % 16) as i32,
        None,
        format!(
            r#"{{"user_id": {}, "amount": {}, "ts": {}}}"#,
            n % USERS,
            n % 13,
            EPOCH_MS + n * STEP_MS
        ),
    )
}

/// (window start ms, user) → (count, sum) of records `0..rows` whose window ends at or before
/// `watermark` (the windows the job must have fired).
fn reference(rows: i64, watermark: i64) -> BTreeMap<(i64, i64), (i64, i64)> {
    let mut m = BTreeMap::new();
    for n in 0..rows {
        let ts = EPOCH_MS + n * STEP_MS;
        let start = ts - ts.rem_euclid(WINDOW_MS);
        if start + WINDOW_MS <= watermark {
            let e: &mut (i64, i64) = m.entry((start, n % USERS)).or_default();
            e.0 += 1;
            e.1 += n % 13;
        }
    }
    m
}

#[test]
fn sixteen_partitions_windows_and_kafka_exactly_once_through_kills_and_rescales() {
    if !have_broker() {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let broker = Broker::start(dir.path());
    broker.create_topic("clicks", 16);
    broker.create_topic("per-user", 4);
    let checkpoints = tempfile::tempdir().expect("dir");
    let mut cluster = Cluster::new(&sluice_tests::reactive_checkpoints(checkpoints.path()));
    let (_jm, _) = cluster.start_jobmanager();
    let (mut a, _) = cluster.start_taskmanager(&[]);
    let _b = cluster.start_taskmanager(&[]);
    cluster.wait_taskmanagers(2, Duration::from_secs(20));
    let yaml = format!(
        r#"name: kafka-windows
sources:
  - id: clicks
    connector: kafka
    options:
      topic: clicks
      properties.bootstrap.servers: "{0}"
      properties.group.id: kafka-windows
      scan.startup.mode: earliest-offset
    schema:
      - {{name: user_id, type: bigint}}
      - {{name: amount, type: bigint}}
      - {{name: ts, type: timestamp}}
    watermark: {{column: ts, max-out-of-orderness: 0 ms}}
operators:
  - id: per-user
    input: clicks
    key-by: [user_id]
    window: {{type: tumbling, size: 10 s}}
    aggregate: {{n: "count(*)", total: "sum(amount)"}}
sinks:
  - id: out
    input: per-user
    connector: kafka
    options:
      topic: per-user
      properties.bootstrap.servers: "{0}"
      sink.delivery-guarantee: exactly-once
      sink.transactional-id-prefix: kafka-windows
"#,
        broker.bootstrap
    );
    let id = cluster.submit(&yaml, "kafka-windows.yaml");
    wait_parallelism(cluster.rest_port, &id, 4, Duration::from_secs(30));
    let committed_windows = || broker.read_all("per-user", "read_committed").len();
    let mut produced = 0i64;
    let mut phase = |broker: &Broker| {
        let records: Vec<_> = (produced..produced + PHASE).map(record).collect();
        broker.produce("clicks", &records);
        produced += PHASE;
    };

    phase(&broker);
    wait_for(Duration::from_secs(60), "first windows committed", || {
        (committed_windows() > 0).then_some(())
    });
    // Down by SIGKILL: 4 → 2.
    a.kill9();
    wait_parallelism(cluster.rest_port, &id, 2, Duration::from_secs(60));
    phase(&broker);
    // Up: a taskmanager joins, 2 → 4.
    let (c, _) = cluster.start_taskmanager(&[]);
    wait_parallelism(cluster.rest_port, &id, 4, Duration::from_secs(60));
    phase(&broker);
    // Up and down again: 4 → 6 → 4 (SIGTERM this time).
    let _d = cluster.start_taskmanager(&[]);
    wait_parallelism(cluster.rest_port, &id, 6, Duration::from_secs(60));
    phase(&broker);
    c.signal(libc::SIGTERM);
    wait_parallelism(cluster.rest_port, &id, 4, Duration::from_secs(60));
    phase(&broker);
    // One record per partition far ahead moves every partition's watermark past the data.
    let closing = EPOCH_MS + produced * STEP_MS + 10 * WINDOW_MS;
    let last: Vec<_> = (0..16)
        .map(|p| (p, None, format!(r#"{{"user_id": 0, "amount": 0, "ts": {closing}}}"#)))
        .collect();
    broker.produce("clicks", &last);

    let want = reference(produced, closing);
    let got = wait_or_explain(
        Duration::from_secs(120),
        || {
            let rows = broker.read_all("per-user", "read_committed");
            (rows.len() >= want.len()).then_some(rows)
        },
        || {
            format!(
                "{} of {} windows committed; job {:?}; logs:\n{}",
                committed_windows(),
                want.len(),
                cluster.job_state(&id),
                cluster.log_tails(20)
            )
        },
    );
    let mut windows: BTreeMap<(String, i64), (i64, i64)> = BTreeMap::new();
    for (_, _, _, value) in &got {
        let v: serde_json::Value = serde_json::from_str(value).expect("json");
        let key = (
            v["window_start"].as_str().expect("window_start").to_string(),
            v["user_id"].as_i64().expect("user_id"),
        );
        let prev = windows.insert(
            key.clone(),
            (v["n"].as_i64().expect("n"), v["total"].as_i64().expect("total")),
        );
        assert!(prev.is_none(), "window {key:?} committed twice");
    }
    assert_eq!(windows.len(), want.len(), "every reference window once");
    let count: i64 = windows.values().map(|w| w.0).sum();
    let total: i64 = windows.values().map(|w| w.1).sum();
    assert_eq!(count, want.values().map(|w| w.0).sum::<i64>(), "records counted");
    assert_eq!(total, want.values().map(|w| w.1).sum::<i64>(), "amounts summed");
    let details = cluster.rest(&format!("/jobs/{id}")).expect("job");
    println!(
        "{} windows of {produced} records exactly once through a kill and {} rescales",
        windows.len(),
        details["rescales"]["count"]
    );
    let c = cluster.sluice("cancel", &[id.as_str()]);
    assert!(c.status.success(), "{c:?}");
}
