//! Turns one vertex of a JobGraph into what a subtask runs: its source reader (when the chain
//! starts with a source) and its operator chain, ending in a sink or in the vertex's output,
//! each stateful piece given its restored state.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use sluice_common::job::connectors::{SinkConnector, SourceConnector};
use sluice_common::job::{JobGraph, NodeKind};

use super::metrics::TaskMetrics;
use super::watermarks::SplitWatermarks;
use crate::connectors::SPLITS_STATE;
use crate::connectors::{Blackhole, Datagen, FileSink, FileSource, PrintSink, SourceReader};
use crate::operators::window::WindowAggregate;
use crate::operators::{Chain, Filter, Operator, Select};
use crate::state::snapshot::OperatorRestoreData;
use crate::state::StateSettings;
use sluice_common::state::KeyGroupRange;

/// What a subtask is built with besides the graph.
pub struct TaskContext {
    pub epoch: u64,
    /// State backend settings; `key_groups`/`task_name` are filled in per subtask.
    pub state: StateSettings,
    /// Restored state by operator uid.
    pub restore: HashMap<String, OperatorRestoreData>,
    /// Sinks commit their last data through a final checkpoint, not at the end of input.
    pub final_checkpoint: bool,
}

pub struct SourcePlan {
    pub uid: String,
    pub reader: Box<dyn SourceReader>,
    /// Index of the event-time column, when the source has a watermark.
    pub rowtime: Option<usize>,
    pub watermarks: SplitWatermarks,
}

pub struct TaskPlan {
    pub source: Option<SourcePlan>,
    pub chain: Chain,
}

pub fn build_task(
    graph: &JobGraph,
    vertex: usize,
    subtask: u32,
    metrics: &TaskMetrics,
    ctx: &mut TaskContext,
) -> Result<TaskPlan, String> {
    let v = graph
        .vertices
        .get(vertex)
        .ok_or_else(|| format!("job has no vertex {vertex}"))?;
    let mut source = None;
    let mut ops: Vec<(String, Box<dyn Operator>)> = Vec::new();
    for &n in &v.nodes {
        let node = &graph.nodes[n];
        let input: Option<SchemaRef> = node.inputs.first().map(|i| graph.nodes[*i].schema.clone());
        let input_rowtime = node.inputs.first().and_then(|i| graph.nodes[*i].rowtime.clone());
        let need_input = || input.clone().ok_or_else(|| format!("'{}' has no input", node.id));
        let named = |e: String| format!("'{}': {e}", node.id);
        match &node.kind {
            NodeKind::Source { spec, connector } => {
                let mut reader: Box<dyn SourceReader> = match connector {
                    SourceConnector::Datagen(o) => Box::new(
                        Datagen::new(o, &spec.schema, node.schema.clone(), node.parallelism, subtask).map_err(named)?,
                    ),
                    SourceConnector::File(o) => {
                        Box::new(FileSource::new(o, node.schema.clone(), node.parallelism, subtask).map_err(named)?)
                    }
                };
                if let Some(r) = ctx.restore.remove(&node.uid) {
                    reader
                        .restore(r.lists.list(SPLITS_STATE).unwrap_or_default())
                        .map_err(named)?;
                }
                let rowtime = node.rowtime.as_ref().and_then(|c| node.schema.index_of(c).ok());
                let (ooo, idle) = spec
                    .watermark
                    .as_ref()
                    .map(|w| (w.max_out_of_orderness, w.idle_timeout))
                    .unwrap_or_default();
                let watermarks = SplitWatermarks::new(reader.split_count(), ooo, idle);
                source = Some(SourcePlan {
                    uid: node.uid.clone(),
                    reader,
                    rowtime,
                    watermarks,
                });
            }
            NodeKind::Filter { predicate } => ops.push((
                node.uid.clone(),
                Box::new(Filter::new(predicate, &need_input()?).map_err(named)?),
            )),
            NodeKind::Select { columns } => ops.push((
                node.uid.clone(),
                Box::new(Select::new(columns, &need_input()?, node.schema.clone()).map_err(named)?),
            )),
            NodeKind::KeyBy | NodeKind::Union => {}
            NodeKind::Window {
                keys,
                window,
                aggregates,
            } => {
                let mut settings = ctx.state.clone();
                settings.key_groups = KeyGroupRange::of_subtask(graph.max_parallelism, node.parallelism, subtask);
                settings.max_parallelism = graph.max_parallelism;
                settings.task_name = format!("{} ({}/{})", node.id, subtask + 1, node.parallelism);
                let op = WindowAggregate::new(
                    window,
                    input_rowtime.as_deref(),
                    keys,
                    aggregates,
                    &need_input()?,
                    node.schema.clone(),
                    Arc::clone(&metrics.late_dropped),
                    settings,
                    ctx.restore.remove(&node.uid),
                )
                .map_err(named)?;
                ops.push((node.uid.clone(), Box::new(op)));
            }
            NodeKind::Sink { connector, .. } => {
                let op: Box<dyn Operator> = match connector {
                    SinkConnector::Print => Box::new(PrintSink::new(subtask)),
                    SinkConnector::Blackhole => Box::new(Blackhole),
                    SinkConnector::File(o) => Box::new(
                        FileSink::new(
                            o,
                            subtask,
                            node.parallelism,
                            ctx.epoch,
                            ctx.restore.get(&node.uid),
                            ctx.final_checkpoint,
                        )
                        .map_err(named)?,
                    ),
                };
                ops.push((node.uid.clone(), op));
            }
        }
    }
    Ok(TaskPlan {
        source,
        chain: Chain::new(ops),
    })
}
