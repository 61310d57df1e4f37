//! Turns one vertex of a JobGraph into what a subtask runs: its source reader (when the chain
//! starts with a source; built by the connector registry and given its splits: the restored
//! ones and the ones the jobmanager's enumerator dealt), its operator chain, and its sink
//! (when the chain ends in one), each stateful piece given its restored state.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use sluice_common::job::user_metrics::compile_metric;
use sluice_common::job::{EdgePartition, GraphNode, JobGraph, NodeKind};
use sluice_connectors::{registry, SinkContext, Source, SourceContext, Split};

use super::metrics::TaskMetrics;
use super::sink_stage::SinkStage;
use super::user_metrics::MetricsProbe;
use super::watermarks::SplitWatermarks;
use crate::error::TaskError;
use crate::operators::window::{LocalWindowAggregate, WindowAggregate};
use crate::operators::{
    BroadcastColumns, BroadcastJoin, Chain, Filter, KeyGroupGuard, KeyedAggregate, Operator, Select,
};
use crate::state::snapshot::OperatorRestoreData;
use crate::state::StateSettings;
use sluice_common::state::KeyGroupRange;

/// What a subtask is built with besides the graph.
pub(crate) struct TaskContext {
    pub epoch: u64,
    /// State backend settings; `key_groups`/`task_name` are filled in per subtask.
    pub state: StateSettings,
    /// Restored state by operator uid.
    pub restore: HashMap<String, OperatorRestoreData>,
    /// The splits the jobmanager dealt to this subtask, by source uid.
    pub splits: HashMap<String, Vec<Split>>,
    /// The jobmanager's permits for sinks that share a resource across taskmanagers.
    pub permits: Option<crate::executor::PermitClient>,
}

/// The state settings of a keyed operator's subtask: its key groups and name.
fn keyed_settings(base: &StateSettings, graph: &JobGraph, node: &GraphNode, subtask: u32) -> StateSettings {
    let mut settings = base.clone();
    settings.key_groups = KeyGroupRange::of_subtask(graph.max_parallelism, node.parallelism, subtask);
    settings.max_parallelism = graph.max_parallelism;
    settings.task_name = format!("{} ({}/{})", node.id, subtask + 1, node.parallelism);
    settings
}

/// The operator-list-state name source split positions are stored under.
pub(crate) const SPLITS_STATE: &str = "source-splits";

pub(crate) struct SourcePlan {
    pub uid: String,
    pub reader: Box<dyn Source>,
    /// Index of the event-time column, when the source has a watermark.
    pub rowtime: Option<usize>,
    pub watermarks: SplitWatermarks,
}

impl SourcePlan {
    /// Splits given while the subtask runs (for this source: `uid` says which).
    pub(crate) fn add_splits(&mut self, uid: &str, splits: Vec<Split>) -> Result<(), TaskError> {
        if uid != self.uid {
            return Err(TaskError::internal(format!(
                "splits for source '{uid}' reached the subtask of source '{}'",
                self.uid
            )));
        }
        let before = self.reader.split_count();
        self.reader.add_splits(splits)?;
        self.watermarks
            .add_splits(self.reader.split_count().saturating_sub(before));
        Ok(())
    }
}

pub(crate) struct TaskPlan {
    pub source: Option<SourcePlan>,
    pub chain: Chain,
    pub sink: Option<SinkStage>,
}

pub(crate) fn build_task(
    graph: &JobGraph,
    vertex: usize,
    subtask: u32,
    metrics: &TaskMetrics,
    ctx: &mut TaskContext,
) -> Result<TaskPlan, TaskError> {
    let v = graph
        .vertices
        .get(vertex)
        .ok_or_else(|| TaskError::internal(format!("job has no vertex {vertex}")))?;
    let mut source = None;
    let mut sink = None;
    let mut ops: Vec<(String, Box<dyn Operator>)> = Vec::new();
    for &n in &v.nodes {
        let node = &graph.nodes[n];
        let input: Option<SchemaRef> = node.inputs.first().map(|i| graph.nodes[*i].schema.clone());
        let input_rowtime = node.inputs.first().and_then(|i| graph.nodes[*i].rowtime.clone());
        let need_input = || input.clone().ok_or_else(|| format!("'{}' has no input", node.id));
        let named = |e: String| TaskError::from(format!("'{}': {e}", node.id));
        let classed = |e: TaskError| e.context(format!("'{}'", node.id));
        if !node.metrics.is_empty() {
            let input = need_input()?;
            let compiled = node
                .metrics
                .iter()
                .map(|m| compile_metric(m, &input))
                .collect::<Result<Vec<_>, _>>()
                .map_err(named)?;
            ops.push((
                format!("{}#metrics", node.uid),
                Box::new(MetricsProbe::new(&node.id, compiled, &metrics.user)),
            ));
        }
        // A keyed operator over a forward edge reinterprets its input as keyed: check it.
        if let NodeKind::Window { keys, .. } | NodeKind::Aggregate { keys, .. } = &node.kind {
            if node.input_partitions.first() == Some(&EdgePartition::Forward) {
                ops.push((
                    format!("{}#key-groups", node.uid),
                    Box::new(KeyGroupGuard::new(
                        &node.id,
                        keys,
                        graph.max_parallelism,
                        KeyGroupRange::of_subtask(graph.max_parallelism, node.parallelism, subtask),
                    )),
                ));
            }
        }
        match &node.kind {
            NodeKind::Source { spec } => {
                let connector = registry().source(spec).map_err(classed)?;
                let context = SourceContext {
                    spec,
                    schema: node.schema.clone(),
                    parallelism: node.parallelism,
                    subtask,
                    metrics: metrics.operator.clone(),
                };
                let mut reader = connector.create_source(&context).map_err(classed)?;
                // Restored splits (with their positions) first, then the ones the enumerator dealt:
                // a restored enumerator deals only splits no reader held at that checkpoint.
                let mut splits = match ctx.restore.remove(&node.uid) {
                    Some(r) => r.lists.list(SPLITS_STATE).unwrap_or_default().to_vec(),
                    None => Vec::new(),
                };
                splits.extend(ctx.splits.remove(&node.uid).unwrap_or_default());
                reader.add_splits(splits).map_err(classed)?;
                let rowtime = node.rowtime.as_ref().and_then(|c| node.schema.index_of(c).ok());
                let (ooo, idle, interval) = spec
                    .watermark
                    .as_ref()
                    .map(|w| (w.max_out_of_orderness, w.idle_timeout, w.emit_interval))
                    .unwrap_or_default();
                let watermarks = SplitWatermarks::new(reader.split_count(), ooo, idle, interval);
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
            NodeKind::Broadcast {
                key,
                lookup,
                inner,
                filter,
            } => {
                let (main, rules) = match node.inputs.as_slice() {
                    [m, r] => (&graph.nodes[*m], &graph.nodes[*r]),
                    _ => return Err(named(format!("a broadcast takes 2 inputs, not {}", node.inputs.len()))),
                };
                let time = |n: &GraphNode| {
                    n.rowtime
                        .clone()
                        .ok_or_else(|| named(format!("input '{}' has no event-time column", n.id)))
                };
                let cols = BroadcastColumns {
                    main: main.schema.clone(),
                    main_time: time(main)?,
                    lookup: lookup.clone(),
                    rules: rules.schema.clone(),
                    rules_time: time(rules)?,
                    key: key.clone(),
                    output: node.schema.clone(),
                };
                let op = BroadcastJoin::new(cols, *inner, filter.as_deref(), ctx.restore.remove(&node.uid))
                    .map_err(named)?;
                ops.push((node.uid.clone(), Box::new(op)));
            }
            NodeKind::Window {
                keys,
                window,
                aggregates,
            } => {
                let op = WindowAggregate::new(
                    window,
                    input_rowtime.as_deref(),
                    keys,
                    aggregates,
                    &need_input()?,
                    node.schema.clone(),
                    Arc::clone(&metrics.late_dropped),
                    keyed_settings(&ctx.state, graph, node, subtask),
                    ctx.restore.remove(&node.uid),
                )
                .map_err(named)?;
                ops.push((node.uid.clone(), Box::new(op)));
            }
            NodeKind::LocalWindow {
                keys,
                pane,
                aggregates,
                rowtime,
                buffer_entries,
            } => {
                let op = LocalWindowAggregate::new(
                    keys,
                    *pane,
                    aggregates,
                    rowtime,
                    *buffer_entries,
                    &need_input()?,
                    node.schema.clone(),
                    Arc::clone(&metrics.late_dropped),
                    keyed_settings(&ctx.state, graph, node, subtask),
                )
                .map_err(named)?;
                ops.push((node.uid.clone(), Box::new(op)));
            }
            NodeKind::Aggregate { keys, aggregates, ttl } => {
                let op = KeyedAggregate::new(
                    keys,
                    aggregates,
                    *ttl,
                    &need_input()?,
                    node.schema.clone(),
                    keyed_settings(&ctx.state, graph, node, subtask),
                    ctx.restore.remove(&node.uid),
                )
                .map_err(named)?;
                ops.push((node.uid.clone(), Box::new(op)));
            }
            NodeKind::Sink { spec } => {
                let connector = registry().sink(spec).map_err(classed)?;
                let context = SinkContext {
                    spec,
                    schema: node.schema.clone(),
                    parallelism: node.parallelism,
                    subtask,
                    attempt: ctx.epoch,
                    permits: ctx.permits.as_ref().map(|p| p.holder(&node.uid, subtask)),
                };
                let writer = connector.create_sink(&context).map_err(classed)?;
                let restore = ctx.restore.get(&node.uid);
                sink = Some(SinkStage::new(
                    node.uid.clone(),
                    writer,
                    restore,
                    subtask,
                    node.parallelism,
                ));
            }
        }
    }
    Ok(TaskPlan {
        source,
        chain: Chain::new(ops),
        sink,
    })
}
