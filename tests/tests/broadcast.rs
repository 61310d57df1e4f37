//! Broadcast state end to end: a keyed stream of events connected to a broadcast stream of
//! rules that change while the job runs (each group's limit gets a new version every second of
//! event time). Every event must carry the limit of its group's rule in force at its event time
//! (the version with the latest event time not after the event's; events before their group's
//! first rule are dropped, `join: inner`). Reactive mode on two taskmanagers: one is killed with
//! SIGKILL mid-job (a failover and a rescale down) and another joins (a rescale up); the
//! exactly-once file output must equal the reference.

use std::collections::BTreeMap;
use std::time::Duration;

use sluice_tests::{wait_parallelism, ReactivePair};

const EPOCH_MS: i64 = 1767225600000;
const EVENTS: i64 = 60_000;
const GROUPS: i64 = 10;
/// A rule every 100 ms of event time, so each group's rule changes every second.
const RULE_EVERY_MS: i64 = 100;
const RULES: i64 = EVENTS / RULE_EVERY_MS;

fn job(out: &std::path::Path) -> String {
    format!(
        r#"name: broadcast-rules
sources:
  - id: events
    connector: datagen
    options: {{number-of-rows: {EVENTS}, splits: 4, rows-per-second: 3000}}
    schema:
      - {{name: seq, type: bigint, expr: "seq"}}
      - {{name: user_id, type: bigint, expr: "seq % 1000"}}
      - {{name: grp, type: bigint, expr: "seq % {GROUPS}"}}
      - {{name: ts, type: timestamp, expr: "to_timestamp_millis({EPOCH_MS} + seq)"}}
    watermark: {{column: ts, max-out-of-orderness: 0 ms}}
  - id: rules
    connector: datagen
    options: {{number-of-rows: {RULES}, splits: 2, rows-per-second: 30}}
    schema:
      - {{name: rule_grp, type: bigint, expr: "seq % {GROUPS}"}}
      - {{name: limit_value, type: bigint, expr: "seq"}}
      - {{name: at, type: timestamp, expr: "to_timestamp_millis({EPOCH_MS} + seq * {RULE_EVERY_MS})"}}
    watermark: {{column: at, max-out-of-orderness: 0 ms}}
operators:
  - id: limited
    input: events
    key-by: [user_id]
    broadcast: {{input: rules, key: rule_grp, lookup: grp, join: inner}}
sinks:
  - id: out
    input: limited
    connector: file
    options: {{path: "{}", format: json}}
"#,
        out.display()
    )
}

/// seq → the limit of the rule in force for its group at its event time.
fn reference() -> BTreeMap<i64, i64> {
    let mut want = BTreeMap::new();
    for seq in 0..EVENTS {
        let g = seq % GROUPS;
        // Rules r with r % GROUPS == g take effect at r * RULE_EVERY_MS; the latest not after seq.
        let last = seq / RULE_EVERY_MS;
        let r = last - (last - g).rem_euclid(GROUPS);
        if r >= 0 && r % GROUPS == g && r * RULE_EVERY_MS <= seq {
            want.insert(seq, r);
        }
    }
    want
}

fn committed(out: &std::path::Path) -> (BTreeMap<i64, i64>, usize) {
    let mut got = BTreeMap::new();
    let mut duplicates = 0;
    for entry in std::fs::read_dir(out).expect("output dir").flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if !name.starts_with("part-") {
            continue;
        }
        for line in std::fs::read_to_string(entry.path()).expect("part").lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("json");
            let seq = v["seq"].as_i64().expect("seq");
            if got
                .insert(seq, v["limit_value"].as_i64().expect("limit_value"))
                .is_some()
            {
                duplicates += 1;
            }
        }
    }
    (got, duplicates)
}

#[test]
fn events_take_the_rule_in_force_at_their_event_time_through_a_kill_and_a_rescale() {
    let checkpoints = tempfile::tempdir().expect("dir");
    let mut pair = ReactivePair::start(checkpoints.path());
    let out = pair.cluster.config_dir().join("out");
    let id = pair.cluster.submit(&job(&out), "broadcast.yaml");
    wait_parallelism(pair.cluster.rest_port, &id, 2, Duration::from_secs(30));
    // A taskmanager dies: failover at parallelism 1; then one joins: back to 2.
    pair.kill_one_and_rejoin(&id);
    pair.cluster.wait_job_state(&id, "FINISHED", Duration::from_secs(180));
    let (got, duplicates) = committed(&out);
    let want = reference();
    assert_eq!(duplicates, 0, "no event committed twice");
    let missing = want.keys().filter(|k| !got.contains_key(k)).count();
    let wrong = got.iter().filter(|(k, v)| want.get(k) != Some(v)).count();
    println!(
        "{} events, {} joined: {missing} missing, {wrong} wrong",
        EVENTS,
        want.len()
    );
    assert_eq!((missing, wrong), (0, 0));
    assert_eq!(got.len(), want.len());
}
