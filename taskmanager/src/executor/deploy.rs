//! Deploying subtasks on this taskmanager: reserve their network buffers (Flink's required
//! counts), create and register their input gates before any of them runs (so a producer never
//! waits on a consumer that is not there yet), then open their output channels and run them.

use crate::error::TaskError;
use crate::operators::{OperatorContext, TaskInfo};
use std::collections::HashMap;
use std::sync::Arc;

use sluice_common::job::{EdgePartition, JobGraph};

use crate::network::{
    gate_required, partition_required, ChannelId, GateKey, InputGate, NetworkEnvironment, RecordWriter, Reservation,
    WriterPartition,
};
use crate::runtime::build::{build_task, TaskContext, TaskPlan};
use crate::runtime::metrics::TaskMetrics;
use crate::runtime::task::{run_task, CheckpointHooks};

/// One job attempt's subtasks for this taskmanager.
pub(crate) struct Deployment {
    pub epoch: u64,
    pub graph: Arc<JobGraph>,
    pub tasks: Vec<(usize, u32)>,
    /// Data address of every subtask of the job, by (vertex, subtask).
    pub locations: HashMap<(usize, u32), String>,
    /// What each task is built with (state settings, restored state).
    pub contexts: HashMap<(usize, u32), TaskContext>,
}

/// A subtask ready to run: its gate is registered and its buffers reserved.
pub(crate) struct PreparedTask {
    pub vertex: usize,
    pub subtask: u32,
    pub metrics: Arc<TaskMetrics>,
    epoch: u64,
    graph: Arc<JobGraph>,
    plan: TaskPlan,
    gate: Option<InputGate>,
    input_edges: Vec<u32>,
    locations: Arc<HashMap<(usize, u32), String>>,
    /// Per output edge: its consumers, and the buffers its partition holds (required, plus
    /// what `reserve_partition_extras` adds).
    partitions: Vec<(u64, u64)>,
    _buffers: Vec<Reservation>,
}

impl PreparedTask {
    pub(crate) fn is_source(&self) -> bool {
        self.plan.source.is_some()
    }

    fn gate_key(&self) -> GateKey {
        GateKey {
            epoch: self.epoch,
            vertex: self.vertex as u32,
            subtask: self.subtask,
        }
    }
}

/// Producers of `edge` feeding consumer `subtask`.
fn producers(graph: &JobGraph, edge: usize, subtask: u32) -> Vec<u32> {
    let e = &graph.edges[edge];
    match e.partition {
        EdgePartition::Forward => vec![subtask],
        _ => (0..graph.vertices[e.source].parallelism).collect(),
    }
}

/// Consumers of `edge` fed by producer `subtask`.
fn consumers(graph: &JobGraph, edge: usize, subtask: u32) -> Vec<u32> {
    let e = &graph.edges[edge];
    match e.partition {
        EdgePartition::Forward => vec![subtask],
        _ => (0..graph.vertices[e.target].parallelism).collect(),
    }
}

/// Reserves buffers and registers gates for every task of the deployment, all or nothing.
pub(crate) fn prepare(env: &Arc<NetworkEnvironment>, mut d: Deployment) -> Result<Vec<PreparedTask>, String> {
    let locations = Arc::new(d.locations);
    let mut prepared: Vec<PreparedTask> = Vec::new();
    let rollback = |prepared: &[PreparedTask]| {
        for p in prepared {
            env.gates.unregister(p.gate_key(), &p.input_edges);
        }
    };
    for &(vertex, subtask) in &d.tasks {
        let result = (|| -> Result<PreparedTask, String> {
            let metrics = TaskMetrics::new();
            let mut ctx = d
                .contexts
                .remove(&(vertex, subtask))
                .ok_or_else(|| format!("no task context for subtask {subtask} of vertex {vertex}"))?;
            let plan = build_task(&d.graph, vertex, subtask, &metrics, &mut ctx).map_err(|e| e.to_string())?;
            let inputs: Vec<(u32, u32, Vec<u32>)> = d
                .graph
                .inputs_of(vertex)
                .map(|e| {
                    (
                        e.index as u32,
                        e.target_input as u32,
                        producers(&d.graph, e.index, subtask),
                    )
                })
                .collect();
            let channels: u64 = inputs.iter().map(|(_, _, p)| p.len() as u64).sum();
            let mut buffers = Vec::new();
            let bpc = u64::from(env.buffers_per_channel);
            if channels > 0 {
                buffers.push(env.pool.reserve(gate_required(channels, bpc))?);
            }
            let mut partitions = Vec::new();
            for e in d.graph.outputs_of(vertex) {
                let n = consumers(&d.graph, e.index, subtask).len() as u64;
                let required = env.pool.reserve(partition_required(n))?;
                partitions.push((n, required.count));
                buffers.push(required);
            }
            let gate = if channels > 0 {
                // Floating buffers beyond the one required are taken if the pool has them.
                let extra = env
                    .pool
                    .reserve_up_to(u64::from(env.floating_per_gate.saturating_sub(1)));
                let floating = 1 + extra.count as u32;
                buffers.push(extra);
                let key = GateKey {
                    epoch: d.epoch,
                    vertex: vertex as u32,
                    subtask,
                };
                let gate = InputGate::new(key, &inputs, env.buffers_per_channel, floating);
                let edges: Vec<u32> = inputs.iter().map(|(e, _, _)| *e).collect();
                env.gates.register(gate.shared(), &edges);
                Some(gate)
            } else {
                None
            };
            Ok(PreparedTask {
                vertex,
                subtask,
                metrics,
                epoch: d.epoch,
                graph: d.graph.clone(),
                plan,
                gate,
                input_edges: inputs.iter().map(|(e, _, _)| *e).collect(),
                locations: locations.clone(),
                partitions,
                _buffers: buffers,
            })
        })();
        match result {
            Ok(p) => prepared.push(p),
            Err(e) => {
                rollback(&prepared);
                let name = d.graph.vertices.get(vertex).map(|v| v.name.as_str()).unwrap_or("?");
                return Err(format!(
                    "{name} ({}/{}): {e}",
                    subtask + 1,
                    d.graph.vertices.get(vertex).map(|v| v.parallelism).unwrap_or(0)
                ));
            }
        }
    }
    reserve_partition_extras(env, &mut prepared);
    Ok(prepared)
}

/// Beyond its required buffers a result partition takes, if the pool has them, up to Flink's
/// maximum for its local buffer pool, `subpartitions × buffers-per-channel +
/// floating-buffers-per-gate`, for its queues. This runs once every task of the deployment has
/// its required buffers, so no partition's extras can starve a later task of those.
fn reserve_partition_extras(env: &NetworkEnvironment, prepared: &mut [PreparedTask]) {
    let (bpc, floating) = (u64::from(env.buffers_per_channel), u64::from(env.floating_per_gate));
    for p in prepared {
        for (n, buffers) in &mut p.partitions {
            let extra = env.pool.reserve_up_to((*n * bpc + floating).saturating_sub(*buffers));
            *buffers += extra.count;
            p._buffers.push(extra);
        }
    }
}

async fn writers(
    env: &NetworkEnvironment,
    graph: &JobGraph,
    locations: &HashMap<(usize, u32), String>,
    epoch: u64,
    vertex: usize,
    subtask: u32,
    partitions: &[(u64, u64)],
) -> Result<Vec<RecordWriter>, String> {
    let mut out = Vec::new();
    for (e, (_, buffers)) in graph.outputs_of(vertex).zip(partitions) {
        let room = Arc::new(tokio::sync::Semaphore::new(*buffers as usize));
        let mut channels = Vec::new();
        for to in consumers(graph, e.index, subtask) {
            let address = locations
                .get(&(e.target, to))
                .ok_or_else(|| format!("no location for subtask {to} of vertex {}", e.target))?;
            let id = ChannelId {
                epoch,
                edge: e.index as u32,
                from: subtask,
                to,
            };
            channels.push(env.open_channel(id, address, room.clone()).await?);
        }
        let partition = match &e.partition {
            EdgePartition::Forward => WriterPartition::Forward,
            EdgePartition::Rebalance => WriterPartition::Rebalance,
            EdgePartition::Broadcast => WriterPartition::Broadcast,
            EdgePartition::Hash(keys) => WriterPartition::Hash {
                key_columns: keys
                    .iter()
                    .map(|k| e.schema.index_of(k).map_err(|x| x.to_string()))
                    .collect::<Result<_, _>>()?,
                max_parallelism: graph.max_parallelism,
            },
        };
        out.push(RecordWriter::new(
            partition,
            channels,
            env.pool.segment_size() as usize,
            subtask as usize,
        ));
    }
    Ok(out)
}

/// Runs a prepared subtask to its end, then releases its gate and buffers.
pub(crate) async fn run(
    env: Arc<NetworkEnvironment>,
    t: PreparedTask,
    hooks: CheckpointHooks,
) -> Result<(), TaskError> {
    let key = t.gate_key();
    let PreparedTask {
        vertex,
        subtask,
        metrics,
        epoch,
        graph,
        plan,
        gate,
        input_edges,
        locations,
        partitions,
        _buffers,
    } = t;
    let v = &graph.vertices[vertex];
    let task = Arc::new(TaskInfo {
        job_name: graph.name.clone(),
        task_name: v.name.clone(),
        subtask,
        parallelism: v.parallelism,
        attempt: epoch,
    });
    let result = async {
        let writers = writers(&env, &graph, &locations, epoch, vertex, subtask, &partitions)
            .await
            .map_err(TaskError::from)?;
        run_task(plan, gate, writers, OperatorContext::new(task, metrics), hooks).await
    }
    .await;
    env.gates.unregister(key, &input_edges);
    drop(_buffers);
    result
}
