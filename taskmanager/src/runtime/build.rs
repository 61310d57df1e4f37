//! Turns one vertex of a JobGraph into what a subtask runs: its source reader (when the chain
//! starts with a source) and its operator chain, ending in a sink or in the vertex's output.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use sluice_common::job::connectors::{SinkConnector, SourceConnector};
use sluice_common::job::{JobGraph, NodeKind};

use super::metrics::TaskMetrics;
use super::watermarks::SplitWatermarks;
use crate::connectors::{Blackhole, Datagen, FileSink, FileSource, PrintSink, SourceReader};
use crate::operators::window::WindowAggregate;
use crate::operators::{Chain, Filter, Operator, Select};

pub struct SourcePlan {
    pub reader: Box<dyn SourceReader>,
    /// Index of the event-time column, when the source has a watermark.
    pub rowtime: Option<usize>,
    pub watermarks: SplitWatermarks,
}

pub struct TaskPlan {
    pub source: Option<SourcePlan>,
    pub chain: Chain,
}

pub fn build_task(graph: &JobGraph, vertex: usize, subtask: u32, metrics: &TaskMetrics) -> Result<TaskPlan, String> {
    let v = graph
        .vertices
        .get(vertex)
        .ok_or_else(|| format!("job has no vertex {vertex}"))?;
    let mut source = None;
    let mut ops: Vec<Box<dyn Operator>> = Vec::new();
    for &n in &v.nodes {
        let node = &graph.nodes[n];
        let input: Option<SchemaRef> = node.inputs.first().map(|i| graph.nodes[*i].schema.clone());
        let input_rowtime = node.inputs.first().and_then(|i| graph.nodes[*i].rowtime.clone());
        let need_input = || input.clone().ok_or_else(|| format!("'{}' has no input", node.id));
        let named = |e: String| format!("'{}': {e}", node.id);
        match &node.kind {
            NodeKind::Source { spec, connector } => {
                let reader: Box<dyn SourceReader> = match connector {
                    SourceConnector::Datagen(o) => Box::new(
                        Datagen::new(o, &spec.schema, node.schema.clone(), node.parallelism, subtask).map_err(named)?,
                    ),
                    SourceConnector::File(o) => {
                        Box::new(FileSource::new(o, node.schema.clone(), node.parallelism, subtask).map_err(named)?)
                    }
                };
                let rowtime = node.rowtime.as_ref().and_then(|c| node.schema.index_of(c).ok());
                let (ooo, idle) = spec
                    .watermark
                    .as_ref()
                    .map(|w| (w.max_out_of_orderness, w.idle_timeout))
                    .unwrap_or_default();
                let watermarks = SplitWatermarks::new(reader.split_count(), ooo, idle);
                source = Some(SourcePlan {
                    reader,
                    rowtime,
                    watermarks,
                });
            }
            NodeKind::Filter { predicate } => {
                ops.push(Box::new(Filter::new(predicate, &need_input()?).map_err(named)?))
            }
            NodeKind::Select { columns } => ops.push(Box::new(
                Select::new(columns, &need_input()?, node.schema.clone()).map_err(named)?,
            )),
            NodeKind::KeyBy | NodeKind::Union => {}
            NodeKind::Window {
                keys,
                window,
                aggregates,
            } => ops.push(Box::new(
                WindowAggregate::new(
                    window,
                    input_rowtime.as_deref(),
                    keys,
                    aggregates,
                    &need_input()?,
                    node.schema.clone(),
                    Arc::clone(&metrics.late_dropped),
                )
                .map_err(named)?,
            )),
            NodeKind::Sink { connector, .. } => ops.push(match connector {
                SinkConnector::Print => Box::new(PrintSink::new(subtask)),
                SinkConnector::Blackhole => Box::new(Blackhole),
                SinkConnector::File(o) => Box::new(FileSink::new(o, subtask)),
            }),
        }
    }
    Ok(TaskPlan {
        source,
        chain: Chain::new(ops),
    })
}
