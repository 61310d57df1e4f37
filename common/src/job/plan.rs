//! The plan the jobmanager ships (`JobPlan` in `control.proto`): a compiled `JobGraph` to
//! protobuf and back. The jobmanager compiles the job file once; taskmanagers rebuild the
//! graph from the plan (schemas as Arrow IPC, expressions as their SQL text, connector options
//! with their job-file positions) and never read the job file.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::{Schema, SchemaRef};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use sluice_proto::control as pb;

use super::graph::{EdgePartition, GraphNode, JobGraph, NodeKind, Vertex};
use super::spec::{
    ColumnSpec, InputSpec, MetricKind, MetricSpec, Partition, SinkSpec, SourceSpec, TimeKind, WatermarkSpec,
    WindowKind, WindowSpec,
};
use super::types::ColumnType;
use crate::yaml_tree::Pos;

/// A plan that does not decode: which node and what.
pub type PlanResult<T> = Result<T, String>;

/// The graph as the plan the jobmanager ships.
pub fn to_plan(graph: &JobGraph) -> PlanResult<pb::JobPlan> {
    Ok(pb::JobPlan {
        name: graph.name.clone(),
        max_parallelism: graph.max_parallelism,
        nodes: graph.nodes.iter().map(node_to_plan).collect::<PlanResult<_>>()?,
        vertices: graph
            .vertices
            .iter()
            .map(|v| pb::PlanVertex {
                id: v.id.clone(),
                name: v.name.clone(),
                nodes: v.nodes.iter().map(|n| *n as u32).collect(),
                parallelism: v.parallelism,
            })
            .collect(),
        edges: graph
            .edges
            .iter()
            .map(|e| {
                Ok(pb::PlanEdge {
                    source: e.source as u32,
                    target: e.target as u32,
                    target_input: e.target_input as u32,
                    partition: Some(partition_to_plan(&e.partition)),
                    schema: schema_to_bytes(&e.schema)?,
                })
            })
            .collect::<PlanResult<_>>()?,
    })
}

/// The graph a plan describes (`config` is the job's configuration, shipped beside it).
pub fn from_plan(plan: &pb::JobPlan) -> PlanResult<JobGraph> {
    let nodes = plan.nodes.iter().map(node_from_plan).collect::<PlanResult<Vec<_>>>()?;
    let index = |i: u32, what: &str| -> PlanResult<usize> {
        let i = i as usize;
        if i < nodes.len() {
            Ok(i)
        } else {
            Err(format!("the plan's {what} names node {i} of {}", nodes.len()))
        }
    };
    let vertices = plan
        .vertices
        .iter()
        .enumerate()
        .map(|(i, v)| {
            Ok(Vertex {
                index: i,
                id: v.id.clone(),
                name: v.name.clone(),
                nodes: v.nodes.iter().map(|n| index(*n, "vertex")).collect::<PlanResult<_>>()?,
                parallelism: v.parallelism,
            })
        })
        .collect::<PlanResult<Vec<_>>>()?;
    let edges = plan
        .edges
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let vertex = |v: u32| {
                let v = v as usize;
                (v < vertices.len())
                    .then_some(v)
                    .ok_or_else(|| format!("edge {i} of the plan names vertex {v} of {}", vertices.len()))
            };
            Ok(super::graph::Edge {
                index: i,
                source: vertex(e.source)?,
                target: vertex(e.target)?,
                target_input: e.target_input as usize,
                partition: partition_from_plan(e.partition.as_ref())?,
                schema: schema_from_bytes(&e.schema).map_err(|m| format!("edge {i}: {m}"))?,
            })
        })
        .collect::<PlanResult<Vec<_>>>()?;
    for n in &nodes {
        for i in &n.inputs {
            index(*i as u32, "node inputs")?;
        }
    }
    Ok(JobGraph {
        name: plan.name.clone(),
        config: Vec::new(),
        max_parallelism: plan.max_parallelism,
        nodes,
        vertices,
        edges,
    })
}

fn schema_to_bytes(schema: &SchemaRef) -> PlanResult<Vec<u8>> {
    let mut out = Vec::new();
    let mut w = StreamWriter::try_new(&mut out, schema).map_err(|e| e.to_string())?;
    w.finish().map_err(|e| e.to_string())?;
    drop(w);
    Ok(out)
}

fn schema_from_bytes(bytes: &[u8]) -> PlanResult<SchemaRef> {
    let reader = StreamReader::try_new(Cursor::new(bytes), None).map_err(|e| format!("bad schema: {e}"))?;
    Ok(Arc::new(Schema::clone(&reader.schema())))
}

fn pos(line: u32, column: u32) -> Pos {
    Pos {
        line: line as usize,
        column: column as usize,
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn partition_to_plan(p: &EdgePartition) -> pb::PlanPartition {
    let (kind, keys) = match p {
        EdgePartition::Forward => ("forward", Vec::new()),
        EdgePartition::Hash(keys) => ("hash", keys.clone()),
        EdgePartition::Rebalance => ("rebalance", Vec::new()),
        EdgePartition::Broadcast => ("broadcast", Vec::new()),
    };
    pb::PlanPartition {
        kind: kind.into(),
        keys,
    }
}

fn partition_from_plan(p: Option<&pb::PlanPartition>) -> PlanResult<EdgePartition> {
    let p = p.ok_or("a partition is missing from the plan")?;
    Ok(match p.kind.as_str() {
        "forward" => EdgePartition::Forward,
        "hash" => EdgePartition::Hash(p.keys.clone()),
        "rebalance" => EdgePartition::Rebalance,
        "broadcast" => EdgePartition::Broadcast,
        other => return Err(format!("unknown partition '{other}' in the plan")),
    })
}

fn options_to_plan(options: &BTreeMap<String, (String, Pos)>) -> std::collections::HashMap<String, pb::PlanOption> {
    options
        .iter()
        .map(|(k, (value, p))| {
            let option = pb::PlanOption {
                value: value.clone(),
                line: p.line as u32,
                column: p.column as u32,
            };
            (k.clone(), option)
        })
        .collect()
}

fn options_from_plan(options: &std::collections::HashMap<String, pb::PlanOption>) -> BTreeMap<String, (String, Pos)> {
    options
        .iter()
        .map(|(k, o)| (k.clone(), (o.value.clone(), pos(o.line, o.column))))
        .collect()
}

fn named(items: &[(String, String)]) -> Vec<pb::NamedExpr> {
    items
        .iter()
        .map(|(name, sql)| pb::NamedExpr {
            name: name.clone(),
            sql: sql.clone(),
        })
        .collect()
}

fn unnamed(items: &[pb::NamedExpr]) -> Vec<(String, String)> {
    items.iter().map(|e| (e.name.clone(), e.sql.clone())).collect()
}

fn node_to_plan(n: &GraphNode) -> PlanResult<pb::PlanNode> {
    use pb::plan_node::Kind;
    let kind = match &n.kind {
        NodeKind::Source { spec } => Kind::Source(pb::PlanSource {
            connector: spec.connector.clone(),
            options: options_to_plan(&spec.options),
            schema: spec
                .schema
                .iter()
                .map(|c| pb::PlanColumn {
                    name: c.name.clone(),
                    r#type: c.ty.name().into(),
                    expr: c.expr.clone(),
                    line: c.pos.line as u32,
                    column: c.pos.column as u32,
                })
                .collect(),
            watermark: spec.watermark.as_ref().map(|w| pb::PlanWatermark {
                time_column: w.column.clone(),
                max_out_of_orderness_nanos: nanos(w.max_out_of_orderness),
                idle_timeout_nanos: w.idle_timeout.map(nanos),
                emit_interval_nanos: nanos(w.emit_interval),
                line: w.pos.line as u32,
                column: w.pos.column as u32,
            }),
            parallelism: spec.parallelism,
        }),
        NodeKind::Filter { predicate } => Kind::Filter(predicate.clone()),
        NodeKind::Select { columns } => Kind::Select(pb::PlanSelect {
            columns: named(columns),
        }),
        NodeKind::KeyBy => Kind::KeyBy(true),
        NodeKind::Window {
            keys,
            window,
            aggregates,
        } => {
            let (kind, size, slide, gap) = match window.kind {
                WindowKind::Tumbling { size } => ("tumbling", nanos(size), 0, 0),
                WindowKind::Sliding { size, slide } => ("sliding", nanos(size), nanos(slide), 0),
                WindowKind::Session { gap } => ("session", 0, 0, nanos(gap)),
            };
            Kind::Window(pb::PlanWindow {
                kind: kind.into(),
                size_nanos: size,
                slide_nanos: slide,
                gap_nanos: gap,
                processing_time: window.time == TimeKind::Processing,
                keys: keys.clone(),
                aggregates: named(aggregates),
                line: window.pos.line as u32,
                column: window.pos.column as u32,
            })
        }
        NodeKind::LocalWindow {
            keys,
            pane,
            aggregates,
            rowtime,
            buffer_entries,
        } => Kind::LocalWindow(pb::PlanLocalWindow {
            keys: keys.clone(),
            pane_nanos: nanos(*pane),
            aggregates: named(aggregates),
            rowtime: rowtime.clone(),
            buffer_entries: *buffer_entries,
        }),
        NodeKind::Aggregate { keys, aggregates, ttl } => Kind::Aggregate(pb::PlanAggregate {
            keys: keys.clone(),
            aggregates: named(aggregates),
            ttl_millis: ttl.map_or(0, |t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
        }),
        NodeKind::Union => Kind::Union(true),
        NodeKind::Broadcast {
            key,
            lookup,
            inner,
            filter,
        } => Kind::Broadcast(pb::PlanBroadcast {
            key: key.clone(),
            lookup: lookup.clone(),
            inner: *inner,
            filter: filter.clone(),
        }),
        NodeKind::Sink { spec } => Kind::Sink(pb::PlanSink {
            connector: spec.connector.clone(),
            options: options_to_plan(&spec.options),
            input: spec.input.id.clone(),
            input_partition: match spec.input.partition {
                None => "",
                Some(Partition::Rebalance) => "rebalance",
                Some(Partition::Broadcast) => "broadcast",
            }
            .into(),
            parallelism: spec.parallelism,
            input_line: spec.input.pos.line as u32,
            input_column: spec.input.pos.column as u32,
        }),
    };
    Ok(pb::PlanNode {
        id: n.id.clone(),
        uid: n.uid.clone(),
        line: n.pos.line as u32,
        column: n.pos.column as u32,
        parallelism: n.parallelism,
        inputs: n.inputs.iter().map(|i| *i as u32).collect(),
        input_partitions: n.input_partitions.iter().map(partition_to_plan).collect(),
        schema: schema_to_bytes(&n.schema)?,
        rowtime: n.rowtime.clone(),
        chain: n.chain,
        kind: Some(kind),
        metrics: n
            .metrics
            .iter()
            .map(|m| pb::PlanMetric {
                name: m.name.clone(),
                kind: m.kind.name().to_string(),
                value: m.value.clone(),
                line: m.pos.line as u32,
                column: m.pos.column as u32,
            })
            .collect(),
    })
}

fn node_from_plan(n: &pb::PlanNode) -> PlanResult<GraphNode> {
    use pb::plan_node::Kind;
    let at = pos(n.line, n.column);
    let what = |m: String| format!("node '{}' of the plan: {m}", n.id);
    let kind = match n.kind.as_ref().ok_or_else(|| what("no kind".into()))? {
        Kind::Source(s) => NodeKind::Source {
            spec: SourceSpec {
                id: n.id.clone(),
                uid: n.uid.clone(),
                pos: at,
                connector: s.connector.clone(),
                parallelism: s.parallelism,
                options: options_from_plan(&s.options),
                schema: s
                    .schema
                    .iter()
                    .map(|c| {
                        Ok(ColumnSpec {
                            name: c.name.clone(),
                            ty: ColumnType::parse(&c.r#type).map_err(what)?,
                            expr: c.expr.clone(),
                            pos: pos(c.line, c.column),
                        })
                    })
                    .collect::<PlanResult<_>>()?,
                watermark: s.watermark.as_ref().map(|w| WatermarkSpec {
                    column: w.time_column.clone(),
                    max_out_of_orderness: Duration::from_nanos(w.max_out_of_orderness_nanos),
                    idle_timeout: w.idle_timeout_nanos.map(Duration::from_nanos),
                    emit_interval: Duration::from_nanos(w.emit_interval_nanos),
                    pos: pos(w.line, w.column),
                }),
            },
        },
        Kind::Filter(predicate) => NodeKind::Filter {
            predicate: predicate.clone(),
        },
        Kind::Select(s) => NodeKind::Select {
            columns: unnamed(&s.columns),
        },
        Kind::KeyBy(_) => NodeKind::KeyBy,
        Kind::Window(w) => {
            let kind = match w.kind.as_str() {
                "tumbling" => WindowKind::Tumbling {
                    size: Duration::from_nanos(w.size_nanos),
                },
                "sliding" => WindowKind::Sliding {
                    size: Duration::from_nanos(w.size_nanos),
                    slide: Duration::from_nanos(w.slide_nanos),
                },
                "session" => WindowKind::Session {
                    gap: Duration::from_nanos(w.gap_nanos),
                },
                other => return Err(what(format!("unknown window kind '{other}'"))),
            };
            NodeKind::Window {
                keys: w.keys.clone(),
                window: WindowSpec {
                    kind,
                    time: if w.processing_time {
                        TimeKind::Processing
                    } else {
                        TimeKind::Event
                    },
                    pos: pos(w.line, w.column),
                },
                aggregates: unnamed(&w.aggregates),
            }
        }
        Kind::Aggregate(a) => NodeKind::Aggregate {
            keys: a.keys.clone(),
            aggregates: unnamed(&a.aggregates),
            ttl: (a.ttl_millis > 0).then(|| Duration::from_millis(a.ttl_millis)),
        },
        Kind::LocalWindow(l) => NodeKind::LocalWindow {
            keys: l.keys.clone(),
            pane: Duration::from_nanos(l.pane_nanos),
            aggregates: unnamed(&l.aggregates),
            rowtime: l.rowtime.clone(),
            buffer_entries: l.buffer_entries,
        },
        Kind::Union(_) => NodeKind::Union,
        Kind::Broadcast(b) => NodeKind::Broadcast {
            key: b.key.clone(),
            lookup: b.lookup.clone(),
            inner: b.inner,
            filter: b.filter.clone(),
        },
        Kind::Sink(s) => NodeKind::Sink {
            spec: SinkSpec {
                id: n.id.clone(),
                uid: n.uid.clone(),
                pos: at,
                input: InputSpec {
                    id: s.input.clone(),
                    partition: match s.input_partition.as_str() {
                        "" => None,
                        "rebalance" => Some(Partition::Rebalance),
                        "broadcast" => Some(Partition::Broadcast),
                        other => return Err(what(format!("unknown input partition '{other}'"))),
                    },
                    pos: pos(s.input_line, s.input_column),
                },
                connector: s.connector.clone(),
                parallelism: s.parallelism,
                options: options_from_plan(&s.options),
            },
        },
    };
    Ok(GraphNode {
        id: n.id.clone(),
        uid: n.uid.clone(),
        pos: at,
        kind,
        parallelism: n.parallelism,
        inputs: n.inputs.iter().map(|i| *i as usize).collect(),
        input_partitions: n
            .input_partitions
            .iter()
            .map(|p| partition_from_plan(Some(p)))
            .collect::<PlanResult<_>>()
            .map_err(what)?,
        schema: schema_from_bytes(&n.schema).map_err(what)?,
        rowtime: n.rowtime.clone(),
        chain: n.chain,
        metrics: n
            .metrics
            .iter()
            .map(|m| {
                Ok(MetricSpec {
                    name: m.name.clone(),
                    kind: MetricKind::parse(&m.kind)
                        .ok_or_else(|| what(format!("unknown metric kind '{}'", m.kind)))?,
                    value: m.value.clone(),
                    pos: pos(m.line, m.column),
                })
            })
            .collect::<PlanResult<_>>()?,
    })
}
