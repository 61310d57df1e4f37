//! The two-phase split as the graph shows it: which windows the strategy splits, where the
//! local phase runs, and that the global window emits the one-phase columns.
use sluice_common::job::plan::{from_plan, to_plan};
use sluice_common::job::{EdgePartition, GraphOptions, JobGraph, NodeKind};

use crate::compile_job;
use crate::plan_tests::AnyConnector;

fn job(config: &str, window: &str, aggregates: &str) -> String {
    format!(
        r#"
name: skewed
parallelism: 2
config: {{{config}}}
sources:
  - id: events
    connector: datagen
    schema:
      - {{name: user_id, type: bigint, expr: "seq % 10"}}
      - {{name: amount, type: bigint, expr: "seq"}}
      - {{name: ts, type: timestamp, expr: "seq * 1000"}}
    watermark: {{column: ts, max-out-of-orderness: 2 s}}
operators:
  - id: per-user
    input: events
    key-by: [user_id]
    window: {window}
    aggregate: {aggregates}
sinks:
  - {{id: out, input: per-user, connector: blackhole}}
"#
    )
}

fn graph(text: &str) -> JobGraph {
    compile_job(text, "j.yaml", &GraphOptions::default(), &AnyConnector).unwrap()
}

const TUMBLING: &str = "{type: tumbling, size: 10 s}";
const COUNT_SUM: &str = r#"{n: "count(*)", total: "sum(amount)", low: "min(amount)", high: "max(amount)"}"#;

#[test]
fn two_phase_chains_a_local_phase_to_the_input_and_keeps_the_columns() {
    let one = graph(&job(
        "table.optimizer.agg-phase-strategy: ONE_PHASE",
        TUMBLING,
        COUNT_SUM,
    ));
    let two = graph(&job(
        "table.optimizer.agg-phase-strategy: TWO_PHASE",
        TUMBLING,
        COUNT_SUM,
    ));
    assert_eq!(one.nodes.len() + 1, two.nodes.len());
    let local = two
        .nodes
        .iter()
        .find(|n| n.id == "per-user-local")
        .expect("a local phase");
    let NodeKind::LocalWindow {
        pane,
        rowtime,
        buffer_entries,
        ..
    } = &local.kind
    else {
        panic!("{:?}", local.kind)
    };
    assert_eq!((pane.as_secs(), rowtime.as_str(), *buffer_entries), (10, "ts", 0));
    assert_eq!(local.rowtime.as_deref(), Some("ts"));
    assert_eq!(two.vertices[0].name, "Source: events -> per-user-local");
    let global = two
        .nodes
        .iter()
        .find(|n| n.id == "per-user")
        .expect("the window keeps its id");
    assert_eq!(global.uid, "per-user-global", "its state is not the one-phase window's");
    let NodeKind::Window { aggregates, .. } = &global.kind else {
        panic!()
    };
    let merged: Vec<&str> = aggregates.iter().map(|(_, s)| s.as_str()).collect();
    assert_eq!(
        merged,
        ["sum(\"n\")", "sum(\"total\")", "min(\"low\")", "max(\"high\")"]
    );
    assert_eq!(global.input_partitions, [EdgePartition::Hash(vec!["user_id".into()])]);
    let one_window = one.nodes.iter().find(|n| n.id == "per-user").unwrap();
    assert_eq!(
        global.schema, one_window.schema,
        "same output columns, types and nullability"
    );
    // The plan carries the local phase to the taskmanagers.
    let back = from_plan(&to_plan(&two).unwrap()).unwrap();
    let local_back = back.nodes.iter().find(|n| n.id == "per-user-local").unwrap();
    assert_eq!(format!("{:?}", local_back.kind), format!("{:?}", local.kind));
}

#[test]
fn auto_splits_with_mini_batch_only_and_unsplittable_windows_stay_whole() {
    let count = |text: &str| graph(text).nodes.len();
    let base = count(&job("", TUMBLING, COUNT_SUM));
    assert_eq!(
        count(&job("table.exec.mini-batch.enabled: true", TUMBLING, COUNT_SUM)),
        base + 1
    );
    assert_eq!(
        count(&job(
            "table.exec.mini-batch.enabled: true, table.exec.mini-batch.size: 500, table.optimizer.agg-phase-strategy: ONE_PHASE",
            TUMBLING,
            COUNT_SUM
        )),
        base
    );
    let two = "table.optimizer.agg-phase-strategy: TWO_PHASE";
    for (window, aggs) in [
        ("{type: session, gap: 3 s}", COUNT_SUM),
        ("{type: tumbling, size: 10 s, time: processing}", COUNT_SUM),
        (TUMBLING, r#"{mean: "avg(CAST(amount AS DOUBLE))"}"#),
        (TUMBLING, r#"{users: "count(DISTINCT amount)"}"#),
        (TUMBLING, r#"{spent: "sum(CAST(amount AS DECIMAL(10, 2)))"}"#),
    ] {
        assert_eq!(count(&job(two, window, aggs)), base, "{window} {aggs}");
    }
    // A sliding window pre-aggregates panes of gcd(size, slide).
    let g = graph(&job(
        "table.exec.mini-batch.enabled: true, table.exec.mini-batch.size: 500",
        "{type: sliding, size: 10 s, slide: 4 s}",
        COUNT_SUM,
    ));
    let local = g.nodes.iter().find(|n| n.id == "per-user-local").unwrap();
    let NodeKind::LocalWindow {
        pane, buffer_entries, ..
    } = &local.kind
    else {
        panic!()
    };
    assert_eq!((pane.as_secs(), *buffer_entries), (2, 500));
    let bad = compile_job(
        &job("table.optimizer.agg-phase-strategy: THREE_PHASE", TUMBLING, COUNT_SUM),
        "j.yaml",
        &GraphOptions::default(),
        &AnyConnector,
    )
    .unwrap_err()
    .to_string();
    assert!(
        bad.contains("table.optimizer.agg-phase-strategy") && bad.contains("THREE_PHASE"),
        "{bad}"
    );
}

fn salted(window: &str, salt: &str) -> String {
    job("", window, COUNT_SUM).replace(
        "    key-by: [user_id]\n",
        &format!("    key-by: [user_id]\n    salt: {salt}\n"),
    )
}

#[test]
fn a_salted_window_spreads_its_key_then_merges_by_key() {
    let g = graph(&salted(TUMBLING, "4"));
    let names: Vec<&str> = g.vertices.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "Source: events -> per-user-salt",
            "per-user-local",
            "per-user -> Sink: out"
        ]
    );
    let node = |id: &str| g.nodes.iter().find(|n| n.id == id).unwrap();
    let salt = node("per-user-salt");
    assert_eq!(salt.rowtime.as_deref(), Some("ts"), "the salt keeps the event time");
    assert!(salt.schema.field_with_name("__salt").is_ok());
    assert_eq!(
        node("per-user-local").input_partitions,
        [EdgePartition::Hash(vec!["user_id".into(), "__salt".into()])]
    );
    assert_eq!(
        node("per-user").input_partitions,
        [EdgePartition::Hash(vec!["user_id".into()])]
    );
    let one = graph(&job("", TUMBLING, COUNT_SUM));
    let whole = one.nodes.iter().find(|n| n.id == "per-user").unwrap();
    assert_eq!(node("per-user").schema, whole.schema);

    let err = |text: &str| {
        compile_job(text, "j.yaml", &GraphOptions::default(), &AnyConnector)
            .unwrap_err()
            .to_string()
    };
    let e = err(&salted("{type: session, gap: 3 s}", "4"));
    assert!(
        e.contains("'per-user': 'salt' needs a tumbling or sliding window"),
        "{e}"
    );
    let e = err(&salted(TUMBLING, "1"));
    assert!(e.contains("use 2 or more"), "{e}");
}
