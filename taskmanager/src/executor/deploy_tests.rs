//! A whole job through `prepare`/`run` in one process (all channels local): bounded datagen →
//! filter → keyed tumbling window → select → file sink, compared with a reference computed here
//! from the datagen expressions.

use std::collections::BTreeMap;
use std::sync::Arc;

use sluice_common::job::plan::{from_plan, to_plan};
use sluice_common::job::GraphOptions;
use sluice_frontend::compile_job;

use super::deploy::{prepare, run, Deployment};
use crate::network::{NetworkBufferPool, NetworkEnvironment};

fn job(out: &str, rows: u64) -> String {
    format!(
        r#"name: in-process
parallelism: 3
sources:
  - id: events
    connector: datagen
    parallelism: 2
    options: {{number-of-rows: {rows}, splits: 4, batch-size: 1000}}
    schema:
      - {{name: user_id, type: bigint, expr: "seq % 1000"}}
      - {{name: amount, type: double, expr: "CAST(seq % 97 AS DOUBLE)"}}
      - {{name: ts, type: timestamp, expr: "to_timestamp_millis(1767225600000 + seq * 10)"}}
    watermark: {{column: ts, max-out-of-orderness: 1 s}}
operators:
  - id: valid
    input: events
    filter: "amount > 0"
  - id: per-user
    input: valid
    key-by: [user_id]
    window: {{type: tumbling, size: 1 min}}
    aggregate: {{events: "count(*)", total: "sum(amount)"}}
  - id: flat
    input: per-user
    select: {{ws: "CAST(window_start AS BIGINT)", user_id: user_id, events: events, total: total}}
sinks:
  - id: out
    input: flat
    connector: file
    options: {{path: "{out}", format: json}}
"#
    )
}

type Row = (i64, i64, i64, f64);

/// Heap-backend contexts without restored state, for every task, with the splits the
/// jobmanager's enumerators would deal.
fn contexts(
    graph: &sluice_common::job::JobGraph,
    tasks: &[(usize, u32)],
) -> std::collections::HashMap<(usize, u32), crate::runtime::build::TaskContext> {
    let dealt = sluice_connectors::deal_splits(graph, sluice_connectors::registry()).unwrap();
    let state = crate::state::StateSettings {
        backend: sluice_common::config::options::StateBackendKind::HashMap,
        incremental: false,
        heap_budget: 1 << 30,
        managed_budget: 64 << 20,
        write_buffer_ratio: 0.5,
        tmp_dir: std::env::temp_dir(),
        max_parallelism: 128,
        key_groups: sluice_common::state::KeyGroupRange::new(0, 127),
        task_name: String::new(),
        default_ttl: None,
        local_backup: None,
        delete_files_in_range: false,
        sst_per_key_group: false,
    };
    tasks
        .iter()
        .map(|t| {
            (
                *t,
                crate::runtime::build::TaskContext {
                    epoch: 1,
                    state: state.clone(),
                    restore: Default::default(),
                    permits: None,
                    splits: dealt
                        .iter()
                        .filter(|d| {
                            d.subtask == t.1 && graph.vertices[t.0].nodes.iter().any(|n| graph.nodes[*n].uid == d.uid)
                        })
                        .map(|d| (d.uid.clone(), d.splits.clone()))
                        .collect(),
                },
            )
        })
        .collect()
}

struct NoAcks;

impl crate::runtime::checkpointing::SnapshotAcker for NoAcks {
    fn acknowledge(
        &self,
        _: &crate::network::Barrier,
        _: Vec<(String, crate::state::snapshot::OperatorSnapshot)>,
        _: u64,
        _: bool,
    ) {
    }
    fn decline(&self, _: u64, _: String) {}
    fn input_ended(&self) {}
}

/// Hooks for a task that is never checkpointed; keep the sender alive while it runs.
fn hooks() -> (
    crate::runtime::task::CheckpointHooks,
    tokio::sync::mpsc::UnboundedSender<crate::runtime::checkpointing::TaskControl>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    (
        crate::runtime::task::CheckpointHooks {
            control: rx,
            acker: Arc::new(NoAcks),
            exactly_once: true,
            final_checkpoint: false,
            last_snapshot: 0,
            unanswered_trigger: None,
        },
        tx,
    )
}

/// The graph as a taskmanager gets it: compiled (as the jobmanager does), then through the plan.
fn compile(yaml: &str) -> Arc<sluice_common::job::JobGraph> {
    let options = GraphOptions {
        default_parallelism: 1,
        ..Default::default()
    };
    let graph = compile_job(yaml, "in-process.yaml", &options, sluice_connectors::registry()).unwrap();
    Arc::new(from_plan(&to_plan(&graph).unwrap()).unwrap())
}

/// Deploys every subtask of `graph` on `env` (all local) and runs them to the end.
async fn run_locally(env: &Arc<NetworkEnvironment>, graph: Arc<sluice_common::job::JobGraph>) {
    let tasks: Vec<(usize, u32)> = graph
        .vertices
        .iter()
        .flat_map(|v| (0..v.parallelism).map(move |s| (v.index, s)))
        .collect();
    let locations = tasks.iter().map(|t| (*t, "local:0".to_string())).collect();
    let contexts = contexts(&graph, &tasks);
    let prepared = prepare(
        env,
        Deployment {
            epoch: 1,
            graph,
            contexts,
            tasks,
            locations,
        },
    )
    .unwrap();
    let mut senders = Vec::new();
    let handles: Vec<_> = prepared
        .into_iter()
        .map(|t| {
            let (h, tx) = hooks();
            senders.push(tx);
            tokio::spawn(run(env.clone(), t, h))
        })
        .collect();
    for h in handles {
        tokio::time::timeout(std::time::Duration::from_secs(60), h)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

fn reference(rows: u64) -> Vec<Row> {
    let mut m: BTreeMap<(i64, i64), (i64, f64)> = BTreeMap::new();
    for seq in 0..rows as i64 {
        let amount = (seq % 97) as f64;
        if amount <= 0.0 {
            continue;
        }
        let ts = 1767225600000 + seq * 10;
        let e = m.entry((ts - ts.rem_euclid(60_000), seq % 1000)).or_default();
        e.0 += 1;
        e.1 += amount;
    }
    m.into_iter().map(|((w, k), (n, t))| (w, k, n, t)).collect()
}

fn read_output(dir: &std::path::Path) -> Vec<Row> {
    let mut rows = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        assert!(name.starts_with("part-"), "unexpected file {name}");
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            rows.push((
                v["ws"].as_i64().unwrap(),
                v["user_id"].as_i64().unwrap(),
                v["events"].as_i64().unwrap(),
                v["total"].as_f64().unwrap(),
            ));
        }
    }
    rows.sort_by(|a, b| a.partial_cmp(b).unwrap());
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_window_job_matches_its_reference() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let rows = 200_000;
    let graph = compile(&job(&out.display().to_string(), rows));
    let env = NetworkEnvironment::new(NetworkBufferPool::new(4096, 32 << 10), "local:0".into(), 2, 8, 10);
    run_locally(&env, graph.clone()).await;
    let got = read_output(&out);
    let want = reference(rows);
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!((g.0, g.1, g.2), (w.0, w.1, w.2));
        assert!((g.3 - w.3).abs() < 1e-6, "{g:?} vs {w:?}");
    }
    assert_eq!(env.pool.available(), 4096, "every buffer returned");
}

#[test]
fn too_few_buffers_fail_with_flinks_message() {
    let graph = compile(&job("/tmp/unused", 10));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let env = NetworkEnvironment::new(NetworkBufferPool::new(5, 32 << 10), "local:0".into(), 2, 8, 10);
        let tasks: Vec<(usize, u32)> = graph
            .vertices
            .iter()
            .flat_map(|v| (0..v.parallelism).map(move |s| (v.index, s)))
            .collect();
        let locations = tasks.iter().map(|t| (*t, "local:0".to_string())).collect();
        let e = prepare(
            &env,
            Deployment {
                epoch: 1,
                graph: graph.clone(),
                contexts: contexts(&graph, &tasks),
                tasks,
                locations,
            },
        )
        .err()
        .unwrap();
        assert!(e.contains("Insufficient number of network buffers: required"), "{e}");
        assert_eq!(env.pool.available(), 5, "a failed deployment holds nothing");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_source_reads_json_and_csv_splits() {
    let dir = tempfile::tempdir().unwrap();
    for (name, fmt) in [("json", "json"), ("csv", "csv")] {
        let input = dir.path().join(format!("in-{name}"));
        std::fs::create_dir_all(&input).unwrap();
        for f in 0..3 {
            let mut text = String::new();
            if fmt == "csv" {
                text.push_str("id,word\n");
            }
            for i in 0..100 {
                let id = f * 100 + i;
                if fmt == "json" {
                    text.push_str(&format!("{{\"id\": {id}, \"word\": \"w{}\"}}\n", id % 7));
                } else {
                    text.push_str(&format!("{id},w{}\n", id % 7));
                }
            }
            std::fs::write(input.join(format!("part-{f}.{fmt}")), text).unwrap();
        }
        std::fs::write(input.join(".hidden"), "ignored").unwrap();
        let out = dir.path().join(format!("out-{name}"));
        let yaml = format!(
            "sources:\n  - id: s\n    connector: file\n    parallelism: 2\n    options: {{path: \"{}\", format: {fmt}}}\n    schema: [{{name: id, type: bigint}}, {{name: word, type: string}}]\noperators:\n  - {{id: f, input: s, filter: \"word = 'w3'\"}}\nsinks:\n  - {{id: o, input: f, connector: file, options: {{path: \"{}\", format: json}}}}\n",
            input.display(),
            out.display()
        );
        let graph = compile(&yaml);
        let env = NetworkEnvironment::new(NetworkBufferPool::new(64, 32 << 10), "local:0".into(), 2, 8, 10);
        run_locally(&env, graph).await;
        let mut ids: Vec<i64> = Vec::new();
        for entry in std::fs::read_dir(&out).unwrap() {
            for line in std::fs::read_to_string(entry.unwrap().path()).unwrap().lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                ids.push(v["id"].as_i64().unwrap());
            }
        }
        ids.sort_unstable();
        assert_eq!(ids, (0..300).filter(|i| i % 7 == 3).collect::<Vec<_>>(), "{name}");
    }
}
