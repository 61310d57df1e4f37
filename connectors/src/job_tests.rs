//! Job files end to end through parsing and graph building with the built-in connectors: the
//! DESIGN example, chaining, edge types, and each kind of error with its line and column.

use sluice_common::job::{EdgePartition, GraphOptions, JobGraph, JobResult};

use sluice_frontend::compile_job;

use crate::registry::registry;

const DESIGN_EXAMPLE: &str = r#"name: scalable-analytics
parallelism: 4
max-parallelism: 256
config:
  execution.checkpointing.interval: 10 s
sources:
  - id: events
    connector: datagen
    parallelism: 2
    options: {number-of-rows: 20000000, rows-per-second: 0, splits: 8}
    schema:
      - {name: user_id, type: bigint,    expr: "seq % 100000"}
      - {name: amount,  type: double,    expr: "CAST(seq % 97 AS DOUBLE)"}
      - {name: ts,      type: timestamp, expr: "to_timestamp_millis(1767225600000 + seq)"}
    watermark: {column: ts, max-out-of-orderness: 5 s}
operators:
  - id: valid
    input: events
    filter: "amount > 0"
  - id: per-user
    uid: per-user-v1
    input: valid
    key-by: [user_id]
    window: {type: tumbling, size: 5 min}
    aggregate: {events: "count(*)", total: "sum(amount)", avg_amount: "avg(amount)"}
    parallelism: 8
sinks:
  - id: out
    input: per-user
    connector: file
    options: {path: "file:///tmp/sluice-out", format: json}
"#;

fn opts() -> GraphOptions {
    GraphOptions {
        default_parallelism: 1,
        ..Default::default()
    }
}

fn build(text: &str) -> JobResult<JobGraph> {
    compile_job(text, "job.yaml", &opts(), registry())
}

fn error(text: &str) -> String {
    build(text).unwrap_err().to_string()
}

#[test]
fn design_example_builds() {
    let g = build(DESIGN_EXAMPLE).unwrap();
    assert_eq!(g.max_parallelism, 256);
    let names: Vec<(&str, u32)> = g.vertices.iter().map(|v| (v.name.as_str(), v.parallelism)).collect();
    assert_eq!(
        names,
        vec![("Source: events", 2), ("valid", 4), ("per-user", 8), ("Sink: out", 4)]
    );
    let parts: Vec<&str> = g.edges.iter().map(|e| e.partition.name()).collect();
    assert_eq!(parts, vec!["REBALANCE", "HASH", "REBALANCE"]);
    let out = &g.nodes[g.vertices[2].nodes[0]].schema;
    let cols: Vec<&str> = out.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        cols,
        vec!["window_start", "window_end", "user_id", "events", "total", "avg_amount"]
    );
    assert_eq!(g.slots_needed(), 8);
    assert!(g.describe().contains("HASH(user_id)"));
}

const CHAINED: &str = "sources:\n  - id: s\n    connector: datagen\n    options: {number-of-rows: 10}\n    schema: [{name: x, type: bigint, expr: seq}]\noperators:\n  - id: f\n    input: s\n    filter: x > 1\nsinks:\n  - id: o\n    input: f\n    connector: blackhole\n";

#[test]
fn forward_edges_chain() {
    let g = build(CHAINED).unwrap();
    assert_eq!(g.vertices.len(), 1);
    assert_eq!(g.vertices[0].name, "Source: s -> f -> Sink: o");
    assert!(g.edges.is_empty());
    let broken = CHAINED.replace("filter: x > 1", "filter: x > 1\n    chain: false");
    let g = build(&broken).unwrap();
    assert_eq!(g.vertices.len(), 2);
    assert_eq!(g.edges[0].partition, EdgePartition::Forward);
    let p = compile_job(
        CHAINED,
        "j",
        &GraphOptions {
            default_parallelism: 1,
            parallelism: Some(3),
            ..Default::default()
        },
        registry(),
    )
    .unwrap();
    assert_eq!(p.vertices[0].parallelism, 3);
}

#[test]
fn union_and_broadcast() {
    let text = "sources:\n  - {id: a, connector: datagen, options: {number-of-rows: 1}, schema: [{name: x, type: bigint, expr: seq}]}\n  - {id: b, connector: datagen, options: {number-of-rows: 1}, schema: [{name: x, type: bigint, expr: seq}]}\noperators:\n  - {id: u, input: [a, {id: b, partition: broadcast}]}\nsinks:\n  - {id: o, input: u, connector: print}\n";
    let g = build(text).unwrap();
    let parts: Vec<&str> = g.edges.iter().map(|e| e.partition.name()).collect();
    assert_eq!(parts, vec!["FORWARD", "BROADCAST"]);
    let bad = text.replace(
        "schema: [{name: x, type: bigint, expr: seq}]}\noperators",
        "schema: [{name: y, type: bigint, expr: seq}]}\noperators",
    );
    assert!(error(&bad).contains("different columns"), "{}", error(&bad));
}

#[test]
fn unknown_input_names_line_and_column() {
    let e = error(&CHAINED.replace("input: f", "input: nope"));
    assert!(e.starts_with("job.yaml:12:12: unknown input 'nope' of 'o'"), "{e}");
}

#[test]
fn cycles_are_found() {
    let text = "sources:\n  - {id: s, connector: datagen, schema: [{name: x, type: bigint, expr: seq}]}\noperators:\n  - {id: a, input: [s, b], union: true}\n  - {id: b, input: a, filter: x > 0}\nsinks:\n  - {id: o, input: b, connector: print}\n";
    let e = error(text);
    assert!(e.contains("cycle through a, b"), "{e}");
    assert!(e.starts_with("job.yaml:4:5"), "{e}");
}

#[test]
fn unknown_column_in_expression() {
    let e = error(&CHAINED.replace("filter: x > 1", "filter: price > 1"));
    assert!(
        e.starts_with("job.yaml:9:13: 'f': filter 'price > 1': No field named price"),
        "{e}"
    );
}

#[test]
fn bad_types() {
    let e = error(&CHAINED.replace("type: bigint", "type: bigdecimal"));
    assert!(
        e.contains("job.yaml:5:30") && e.contains("unknown column type 'bigdecimal'"),
        "{e}"
    );
    let e = error(&CHAINED.replace("filter: x > 1", "filter: x + 1"));
    assert!(e.contains("expected boolean"), "{e}");
}

#[test]
fn values_the_plan_shows_to_be_wrong_are_refused() {
    let e = error(&DESIGN_EXAMPLE.replace("to_timestamp_millis(1767225600000 + seq)", "'not a time'"));
    assert!(
        e.contains("column 'ts' is a timestamp but its expression") && e.contains("job.yaml:"),
        "{e}"
    );
    let e = error(&DESIGN_EXAMPLE.replace("size: 5 min", "size: 100000000 d"));
    assert!(
        e.contains("'size' of a window") && e.contains("range of timestamps"),
        "{e}"
    );
}

#[test]
fn operator_metrics_compile_against_their_input_or_name_what_is_wrong() {
    let with = |metrics: &str| {
        DESIGN_EXAMPLE.replace(
            "    filter: \"amount > 0\"\n",
            &format!("    filter: \"amount > 0\"\n    metrics:\n{metrics}"),
        )
    };
    let g = build(&with(
        "      - {name: lag, type: histogram, value: \"now() - ts\"}\n      - {name: rows, type: meter}\n      - {name: top, type: gauge, value: \"max(amount)\"}\n",
    ))
    .unwrap();
    let valid = g.nodes.iter().find(|n| n.id == "valid").expect("node");
    assert_eq!(valid.metrics.len(), 3);
    let e = error(&with("      - {name: top, type: gauge, value: \"amount\"}\n"));
    assert!(
        e.contains("job.yaml:") && e.contains("'valid'") && e.contains("not an aggregate"),
        "{e}"
    );
    let e = error(&with(
        "      - {name: x, type: counter}\n      - {name: x, type: meter}\n",
    ));
    assert!(e.contains("declares metric 'x' twice"), "{e}");
    let e = error(&with("      - {name: x, type: timer}\n"));
    assert!(e.contains("unknown metric type 'timer'"), "{e}");
}

#[test]
fn reinterpret_as_keyed_keeps_a_forward_edge_at_the_inputs_parallelism() {
    let keyed = |extra: &str| {
        DESIGN_EXAMPLE.replace("    parallelism: 8\n", "").replace(
            "    key-by: [user_id]\n",
            &format!("    key-by: [user_id]\n    reinterpret-as-keyed: true\n{extra}"),
        )
    };
    let g = build(&keyed("    parallelism: 4\n")).unwrap();
    let window = g.nodes.iter().find(|n| n.id == "per-user").expect("node");
    assert_eq!(window.input_partitions, vec![EdgePartition::Forward]);
    // Chained with its input: no shuffle at all.
    assert!(
        g.vertices.iter().any(|v| v.name.contains("valid -> per-user")),
        "{:?}",
        g.vertices
    );
    let e = error(&keyed("    parallelism: 8\n"));
    assert!(
        e.contains("'per-user'") && e.contains("needs the input's parallelism"),
        "{e}"
    );
    let e = error(&CHAINED.replace("filter: x > 1", "filter: x > 1\n    reinterpret-as-keyed: true"));
    assert!(e.contains("'reinterpret-as-keyed' needs 'key-by'"), "{e}");
}

const BROADCAST: &str = r#"name: rules
sources:
  - id: events
    connector: datagen
    schema:
      - {name: grp, type: bigint, expr: "seq % 10"}
      - {name: ts, type: timestamp, expr: "to_timestamp_millis(seq)"}
    watermark: {column: ts, max-out-of-orderness: 0 ms}
  - id: rules
    connector: datagen
    schema:
      - {name: rule_grp, type: bigint, expr: "seq % 10"}
      - {name: limit_value, type: bigint, expr: "seq"}
      - {name: at, type: timestamp, expr: "to_timestamp_millis(seq)"}
    watermark: {column: at, max-out-of-orderness: 0 ms}
operators:
  - id: limited
    input: events
    broadcast: {input: rules, key: rule_grp, lookup: grp}
sinks:
  - {id: out, input: limited, connector: blackhole}
"#;

#[test]
fn a_broadcast_operator_takes_the_entry_columns_and_refuses_what_cannot_join() {
    let g = build(BROADCAST).unwrap();
    let node = g.nodes.iter().find(|n| n.id == "limited").expect("node");
    assert_eq!(node.input_partitions.last(), Some(&EdgePartition::Broadcast));
    let names: Vec<&str> = node.schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        names,
        vec!["grp", "ts", "limit_value"],
        "main columns, then the entry's"
    );
    assert_eq!(node.rowtime.as_deref(), Some("ts"));
    let e = error(&BROADCAST.replace("    watermark: {column: at, max-out-of-orderness: 0 ms}\n", ""));
    assert!(
        e.contains("'limited'") && e.contains("need an event-time column"),
        "{e}"
    );
    let e = error(&BROADCAST.replace("lookup: grp}", "lookup: nope}"));
    assert!(e.contains("'events' has no column 'nope'"), "{e}");
    let e = error(&BROADCAST.replace("name: limit_value", "name: grp"));
    assert!(e.contains("both have a column 'grp'"), "{e}");
    let e = error(&BROADCAST.replace("lookup: grp}", "lookup: grp, join: outer}"));
    assert!(e.contains("unknown join 'outer'"), "{e}");
}

#[test]
fn parallelism_above_max_parallelism() {
    // Without max-parallelism Flink's default grows with the parallelism (300 → 512).
    assert_eq!(
        build(&CHAINED.replace("filter: x > 1", "filter: x > 1\n    parallelism: 300"))
            .unwrap()
            .max_parallelism,
        512
    );
    let e = error(&format!(
        "max-parallelism: 4\n{}",
        CHAINED.replace("filter: x > 1", "filter: x > 1\n    parallelism: 5")
    ));
    assert!(e.contains("parallelism 5 exceeds the max-parallelism 4"), "{e}");
}

#[test]
fn structural_errors() {
    let e = error(&CHAINED.replace("filter: x > 1", "filter: x > 1\n    fliter: x"));
    assert!(e.contains("unknown field 'fliter' in an operator"), "{e}");
    assert!(e.contains("Did you mean 'filter'?"), "{e}");
    // A misspelt required field is reported as itself, not as the field it lacks.
    let e = error(&DESIGN_EXAMPLE.replace("    input: valid\n", "    inputs: valid\n"));
    assert!(
        e.contains("job.yaml:22:5: unknown field 'inputs' in an operator. Did you mean 'input'?"),
        "{e}"
    );
    let e = error(&DESIGN_EXAMPLE.replace("    watermark: {column: ts, max-out-of-orderness: 5 s}\n", ""));
    assert!(
        e.contains("event-time window needs rows with a watermark column"),
        "{e}"
    );
    let e = error(&DESIGN_EXAMPLE.replace("size: 5 min", "size: 5 fortnights"));
    assert!(e.contains("'size' must be a duration"), "{e}");
    let e = error(&CHAINED.replace("connector: blackhole", "connector: kafkaa"));
    assert!(e.contains("unknown sink connector 'kafkaa'"), "{e}");
    let e = error(&CHAINED.replace("number-of-rows: 10", "number-of-rows: ten"));
    assert!(e.contains("option 'number-of-rows'") && e.contains("'ten'"), "{e}");
    let e = error(&DESIGN_EXAMPLE.replace("interval: 10 s", "interval: often"));
    assert!(
        e.contains("job.yaml:5:37: invalid value 'often' for 'execution.checkpointing.interval'"),
        "{e}"
    );
    let e = error(&DESIGN_EXAMPLE.replace("execution.checkpointing.interval: 10 s", "no.such.key: 1"));
    assert!(
        e.contains("job.yaml:5:3: unknown configuration key 'no.such.key'"),
        "{e}"
    );
    let e = error("sources: [\n");
    assert!(e.contains("invalid YAML"), "{e}");
    let e = error(&DESIGN_EXAMPLE.replace("key-by: [user_id]", "key-by: [amount_typo]"));
    assert!(e.contains("key column 'amount_typo'"), "{e}");
    // The operator's kind says how many inputs it takes (a union any number).
    let e = error(&CHAINED.replace("    input: s\n    filter", "    input: [s, s]\n    filter"));
    assert!(e.contains("a filter operator takes 1 input; it lists 2"), "{e}");
    // Aggregates a window cannot run are refused at submission, with their position.
    let e = error(&DESIGN_EXAMPLE.replace("avg(amount)", "approx_percentile_cont(amount, 0.5)"));
    assert!(
        e.contains("job.yaml:25:71:")
            && e.contains("aggregate 'avg_amount'")
            && e.contains("cannot run in a tumbling or sliding window"),
        "{e}"
    );
    let e = error(&DESIGN_EXAMPLE.replace("sum(amount)", "sum(amount_typo)"));
    assert!(e.contains("aggregate 'total'") && e.contains("amount_typo"), "{e}");
}
