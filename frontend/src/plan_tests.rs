//! The plan round trip (common's `job::plan`) over a graph the front end built: every node
//! kind survives `to_plan`/`from_plan` unchanged, and a broken plan names what is wrong.
use sluice_common::job::plan::{from_plan, to_plan};
use sluice_common::job::spec::{SinkSpec, SourceSpec};
use sluice_common::job::{ConnectorCatalog, GraphOptions, JobGraph, JobResult};

use crate::compile_job;

/// Accepts every connector: the plan does not depend on which ones exist.
pub(crate) struct AnyConnector;

impl ConnectorCatalog for AnyConnector {
    fn check_source(&self, _spec: &SourceSpec, _parallelism: u32) -> JobResult<()> {
        Ok(())
    }
    fn check_sink(&self, _spec: &SinkSpec) -> JobResult<()> {
        Ok(())
    }
    fn accepts_updates(&self, spec: &SinkSpec) -> bool {
        spec.id == "upserts"
    }
}

const JOB: &str = r#"
name: every-kind
parallelism: 2
sources:
  - id: clicks
    connector: datagen
    options: {rows-per-second: 100}
    schema:
      - {name: user_id, type: bigint, expr: "seq % 10"}
      - {name: amount, type: double, expr: "seq * 1.5"}
      - {name: ts, type: timestamp, expr: "seq * 1000"}
    watermark: {column: ts, max-out-of-orderness: 2 s, idle-timeout: 5 s}
  - id: more
    connector: datagen
    schema:
      - {name: user_id, type: bigint, expr: "seq"}
      - {name: amount, type: double, expr: "1.0"}
      - {name: ts, type: timestamp, expr: "seq"}
    watermark: {column: ts, max-out-of-orderness: 0 s}
operators:
  - {id: both, input: [clicks, more], union: true}
  - {id: big, input: both, filter: "amount > 1"}
  - id: shaped
    input: big
    select: {user_id: user_id, amount: "amount * 2", ts: ts}
  - id: per-user
    input: shaped
    key-by: [user_id]
    window: {type: tumbling, size: 10 s}
    aggregate: {n: "count(*)", total: "sum(amount)"}
  - id: sessions
    input: shaped
    key-by: [user_id]
    window: {type: session, gap: 3 s}
    aggregate: {n: "count(*)"}
  - id: running
    input: shaped
    key-by: [user_id]
    aggregate: {n: "count(*)", most: "max(amount)"}
    state.ttl: 1 min
sinks:
  - {id: upserts, input: running, connector: print}
  - {id: out, input: per-user, connector: print}
  - {id: files, input: {id: sessions, partition: rebalance}, connector: file, options: {path: /tmp/x}}
"#;

#[test]
fn a_graph_survives_the_plan_unchanged() {
    let graph = compile_job(JOB, "job.yaml", &GraphOptions::default(), &AnyConnector).unwrap();
    let plan = to_plan(&graph).unwrap();
    let back = from_plan(&plan).unwrap();
    // The job's config travels beside the plan, not in it.
    let graph = JobGraph {
        config: Vec::new(),
        ..graph
    };
    assert_eq!(format!("{back:#?}"), format!("{graph:#?}"));
}

#[test]
fn a_broken_plan_names_what_is_wrong() {
    let graph = compile_job(JOB, "job.yaml", &GraphOptions::default(), &AnyConnector).unwrap();
    let mut plan = to_plan(&graph).unwrap();
    plan.nodes[2].schema = b"not arrow".to_vec();
    let e = from_plan(&plan).unwrap_err();
    assert!(e.starts_with("node 'both' of the plan: bad schema"), "{e}");
    let mut plan = to_plan(&graph).unwrap();
    plan.edges[0].target = 99;
    let e = from_plan(&plan).unwrap_err();
    assert!(e.contains("edge 0 of the plan names vertex 99"), "{e}");
}

#[test]
fn continuous_aggregates_need_keys_and_an_upsert_sink_and_ttl_belongs_to_them() {
    let compile = |job: &str| compile_job(job, "job.yaml", &GraphOptions::default(), &AnyConnector);
    let e = compile(&JOB.replace("{id: upserts, input: running", "{id: appends, input: running"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("cannot take the updating stream of continuous aggregate 'running'"),
        "{e}"
    );
    let e = compile(&JOB.replace(
        "    key-by: [user_id]\n    aggregate: {n: \"count(*)\", most",
        "    aggregate: {n: \"count(*)\", most",
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("an 'aggregate' without a 'window' needs 'key-by'"), "{e}");
    let e = compile(&JOB.replace(
        "window: {type: tumbling, size: 10 s}",
        "window: {type: tumbling, size: 10 s}\n    state.ttl: 1 s",
    ))
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("'state.ttl' applies to an 'aggregate' without a 'window'"),
        "{e}"
    );
}
