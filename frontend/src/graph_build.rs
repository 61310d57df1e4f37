//! Building the JobGraph (DESIGN §9) from a parsed job file: nodes resolved and checked
//! (inputs exist, no cycles, parallelism within max-parallelism, every expression compiles
//! against its input's columns), each node's output schema derived, forward edges chained into
//! vertices, and the edges between vertices typed forward / hash / rebalance / broadcast.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use sluice_common::config::options::AUTO_WATERMARK_INTERVAL;
use sluice_common::config::Configuration;
use sluice_common::job::expr::{check_window_aggregate, compile_aggregate, compile_scalar};
use sluice_common::job::graph::*;
use sluice_common::job::spec::{
    BroadcastSpec, JobSpec, MetricSpec, OperatorKind, Partition, SinkSpec, SourceSpec, TimeKind, WindowKind,
};
use sluice_common::job::user_metrics::compile_metric;
use sluice_common::job::{ConnectorCatalog, JobError, JobResult};
use sluice_common::key_groups::{default_max_parallelism, is_key_type, UPPER_BOUND_MAX_PARALLELISM};
use sluice_common::yaml_tree::Pos;

#[derive(Clone)]
pub(crate) struct Draft {
    pub(crate) id: String,
    pub(crate) uid: String,
    pub(crate) pos: Pos,
    pub(crate) parallelism: Option<u32>,
    pub(crate) inputs: Vec<(String, Option<Partition>, Pos)>,
    pub(crate) chain: bool,
    pub(crate) key_by: Vec<String>,
    pub(crate) kind: DraftKind,
    pub(crate) metrics: Vec<MetricSpec>,
    /// Keyed by `key_by` over a forward edge (`reinterpret-as-keyed`).
    pub(crate) reinterpret: bool,
    /// Runs at its input's parallelism (a step the planner chains to it).
    pub(crate) follows_input: bool,
    /// `salt: N` of a window.
    pub(crate) salt: Option<u32>,
}

#[derive(Clone)]
pub(crate) enum DraftKind {
    Source(SourceSpec),
    Operator(OperatorKind),
    Sink(SinkSpec),
    /// The local phase of a two-phase window (`two_phase.rs`): at its input's parallelism,
    /// chained to it.
    LocalWindow {
        pane: std::time::Duration,
        aggregates: Vec<(String, String, Pos)>,
        rowtime: String,
        buffer_entries: u64,
    },
}

fn drafts(spec: &JobSpec) -> Vec<Draft> {
    let mut out = Vec::new();
    for s in &spec.sources {
        out.push(Draft {
            id: s.id.clone(),
            uid: s.uid.clone(),
            pos: s.pos,
            parallelism: s.parallelism,
            inputs: Vec::new(),
            chain: true,
            key_by: Vec::new(),
            kind: DraftKind::Source(s.clone()),
            metrics: Vec::new(),
            reinterpret: false,
            follows_input: false,
            salt: None,
        });
    }
    for o in &spec.operators {
        out.push(Draft {
            id: o.id.clone(),
            uid: o.uid.clone(),
            pos: o.pos,
            parallelism: o.parallelism,
            inputs: o
                .inputs
                .iter()
                .chain(match &o.kind {
                    OperatorKind::Broadcast(b) => Some(&b.input),
                    _ => None,
                })
                .map(|i| (i.id.clone(), i.partition, i.pos))
                .collect(),
            chain: o.chain,
            key_by: o.key_by.clone(),
            kind: DraftKind::Operator(o.kind.clone()),
            metrics: o.metrics.clone(),
            reinterpret: o.reinterpret_as_keyed,
            follows_input: false,
            salt: o.salt,
        });
    }
    for s in &spec.sinks {
        out.push(Draft {
            id: s.id.clone(),
            uid: s.uid.clone(),
            pos: s.pos,
            parallelism: s.parallelism,
            inputs: vec![(s.input.id.clone(), s.input.partition, s.input.pos)],
            chain: true,
            key_by: Vec::new(),
            kind: DraftKind::Sink(s.clone()),
            metrics: Vec::new(),
            reinterpret: false,
            follows_input: false,
            salt: None,
        });
    }
    out
}

/// Kahn's algorithm; a leftover node sits on a cycle.
fn topological_order(inputs: &[Vec<usize>], drafts: &[Draft]) -> JobResult<Vec<usize>> {
    let n = inputs.len();
    let mut consumers = vec![Vec::new(); n];
    let mut pending: Vec<usize> = inputs.iter().map(Vec::len).collect();
    for (node, ins) in inputs.iter().enumerate() {
        for &i in ins {
            consumers[i].push(node);
        }
    }
    let mut ready: Vec<usize> = (0..n).filter(|&i| pending[i] == 0).rev().collect();
    let mut order = Vec::with_capacity(n);
    while let Some(node) = ready.pop() {
        order.push(node);
        for &c in consumers[node].iter().rev() {
            pending[c] -= 1;
            if pending[c] == 0 {
                ready.push(c);
            }
        }
    }
    if order.len() < n {
        let stuck: Vec<&str> = (0..n)
            .filter(|i| pending[*i] > 0)
            .map(|i| drafts[i].id.as_str())
            .collect();
        let first = (0..n).find(|i| pending[*i] > 0).unwrap_or(0);
        return Err(JobError::at(
            drafts[first].pos,
            format!("the job graph has a cycle through {}", stuck.join(", ")),
        ));
    }
    Ok(order)
}

fn err_at(pos: Pos, node: &str, message: impl std::fmt::Display) -> JobError {
    JobError::at(pos, format!("'{node}': {message}"))
}

/// The source's columns (the connector checked their rules and its options before).
fn source_schema(spec: &SourceSpec) -> JobResult<SchemaRef> {
    if spec.schema.is_empty() {
        return Err(err_at(
            spec.pos,
            &spec.id,
            "a source needs a 'schema' listing its columns",
        ));
    }
    let mut fields = Vec::with_capacity(spec.schema.len());
    for col in &spec.schema {
        if fields.iter().any(|f: &Field| f.name() == &col.name) {
            return Err(err_at(
                col.pos,
                &spec.id,
                format!("column '{}' is declared twice", col.name),
            ));
        }
        fields.push(Field::new(&col.name, col.ty.arrow(), true));
    }
    Ok(Arc::new(Schema::new(fields)))
}

fn check_rowtime(spec: &SourceSpec, schema: &SchemaRef) -> JobResult<Option<String>> {
    let Some(wm) = &spec.watermark else {
        return Ok(None);
    };
    match schema.field_with_name(&wm.column) {
        Ok(f) if f.data_type() == &timestamp_type() => Ok(Some(wm.column.clone())),
        Ok(f) => Err(err_at(
            wm.pos,
            &spec.id,
            format!(
                "watermark column '{}' has type {}, expected timestamp",
                wm.column,
                f.data_type()
            ),
        )),
        Err(_) => Err(err_at(
            wm.pos,
            &spec.id,
            format!("watermark column '{}' is not a column of the source", wm.column),
        )),
    }
}

fn check_keys(keys: &[String], schema: &SchemaRef, pos: Pos, node: &str) -> JobResult<()> {
    for k in keys {
        let field = schema.field_with_name(k).map_err(|_| {
            let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            err_at(
                pos,
                node,
                format!("key column '{k}' is not among the input columns ({})", names.join(", ")),
            )
        })?;
        if !is_key_type(field.data_type()) {
            return Err(err_at(
                pos,
                node,
                format!("key column '{k}' has type {}, which cannot be a key", field.data_type()),
            ));
        }
    }
    Ok(())
}

/// Builds and checks the graph of a parsed job; windows the table options split in two
/// phases are built again as local and global nodes (`two_phase.rs`).
pub fn build_graph(spec: &JobSpec, options: &GraphOptions, connectors: &dyn ConnectorCatalog) -> JobResult<JobGraph> {
    let drafts = drafts(spec);
    let graph = build_from(spec, &drafts, options, connectors, &HashMap::new())?;
    let mut graph = match crate::two_phase::split(spec, options, &graph, &drafts)? {
        Some((drafts, schemas)) => build_from(spec, &drafts, options, connectors, &schemas)?,
        None => graph,
    };
    let interval = job_config(spec, options)
        .get(&AUTO_WATERMARK_INTERVAL)
        .map_err(|e| JobError::general(e.to_string()))?;
    for node in &mut graph.nodes {
        if let NodeKind::Source { spec } = &mut node.kind {
            if let Some(w) = spec.watermark.as_mut() {
                w.emit_interval = interval;
            }
        }
    }
    Ok(graph)
}

/// The options a job runs with: the cluster's, with the job file's `config:` on top.
pub(crate) fn job_config(spec: &JobSpec, options: &GraphOptions) -> Configuration {
    let base = options
        .cluster_config
        .as_deref()
        .cloned()
        .unwrap_or_else(Configuration::new);
    base.overlaid(spec.config.iter().map(|(k, v)| (k, v)))
}

/// Builds the graph of `drafts`; a node named in `schemas` emits that schema (a global window
/// emits its one-phase columns exactly).
fn build_from(
    spec: &JobSpec,
    drafts: &[Draft],
    options: &GraphOptions,
    connectors: &dyn ConnectorCatalog,
    schemas: &HashMap<String, SchemaRef>,
) -> JobResult<JobGraph> {
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, d) in drafts.iter().enumerate() {
        if index.insert(d.id.as_str(), i).is_some() {
            return Err(JobError::at(d.pos, format!("id '{}' is used twice", d.id)));
        }
    }
    let mut inputs = Vec::with_capacity(drafts.len());
    for d in drafts.iter() {
        let mut ins = Vec::new();
        for (id, _, pos) in &d.inputs {
            let Some(&i) = index.get(id.as_str()) else {
                let known: Vec<&str> = drafts
                    .iter()
                    .filter(|x| !matches!(x.kind, DraftKind::Sink(_)))
                    .map(|x| x.id.as_str())
                    .collect();
                return Err(JobError::at(
                    *pos,
                    format!(
                        "unknown input '{id}' of '{}'; known sources and operators: {}",
                        d.id,
                        known.join(", ")
                    ),
                ));
            };
            if matches!(drafts[i].kind, DraftKind::Sink(_)) {
                return Err(JobError::at(
                    *pos,
                    format!("'{}' reads from sink '{id}', which emits nothing", d.id),
                ));
            }
            ins.push(i);
        }
        inputs.push(ins);
    }
    let order = topological_order(&inputs, drafts)?;

    let job_default = options
        .parallelism
        .or(spec.parallelism)
        .unwrap_or(options.default_parallelism.max(1));
    let uniform = options.parallelism.filter(|_| options.uniform);
    let mut parallelism: Vec<u32> = drafts
        .iter()
        .map(|d| {
            uniform
                .or_else(|| options.node_parallelism.get(&d.id).copied())
                .or(d.parallelism)
                .unwrap_or(job_default)
        })
        .collect();
    // Steps the planner chains to their input run at its parallelism (inputs come first).
    for &i in &order {
        if drafts[i].follows_input {
            parallelism[i] = parallelism[inputs[i][0]];
        }
    }
    let max_parallelism = match spec.max_parallelism {
        Some(m) if m > UPPER_BOUND_MAX_PARALLELISM => {
            return Err(JobError::general(format!(
                "max-parallelism {m} exceeds the upper bound {UPPER_BOUND_MAX_PARALLELISM}"
            )))
        }
        Some(m) => m,
        None => match options.restored_max_parallelism {
            Some(m) => m,
            None => default_max_parallelism(parallelism.iter().copied().max().unwrap_or(1)),
        },
    };
    for (d, p) in drafts.iter().zip(&parallelism) {
        if *p > max_parallelism {
            return Err(err_at(
                d.pos,
                &d.id,
                format!("parallelism {p} exceeds the max-parallelism {max_parallelism}"),
            ));
        }
    }

    let mut nodes: Vec<Option<GraphNode>> = vec![None; drafts.len()];
    for &i in &order {
        let d = &drafts[i];
        let ins = &inputs[i];
        let input = |k: usize| nodes[ins[k]].as_ref().expect("inputs come first in topological order");
        let p = parallelism[i];
        let mut partitions = Vec::with_capacity(ins.len());
        for (k, (_, explicit, pos)) in d.inputs.iter().enumerate() {
            let upstream = parallelism[ins[k]];
            let broadcast_input = k == 1 && matches!(d.kind, DraftKind::Operator(OperatorKind::Broadcast(_)));
            let part = if broadcast_input {
                EdgePartition::Broadcast
            } else if d.reinterpret {
                if upstream != p {
                    return Err(err_at(
                        *pos,
                        &d.id,
                        format!(
                            "reinterprets its input as keyed, which keeps the input's partitioning: it needs the input's parallelism {upstream}, not {p}"
                        ),
                    ));
                }
                EdgePartition::Forward
            } else if !d.key_by.is_empty() {
                if explicit.is_some() {
                    return Err(JobError::at(
                        *pos,
                        format!(
                            "'{}' is keyed; its input cannot also be partitioned by {:?}",
                            d.id, explicit
                        ),
                    ));
                }
                EdgePartition::Hash(d.key_by.clone())
            } else {
                match explicit {
                    Some(Partition::Rebalance) => EdgePartition::Rebalance,
                    Some(Partition::Broadcast) => EdgePartition::Broadcast,
                    None if upstream == p => EdgePartition::Forward,
                    None => EdgePartition::Rebalance,
                }
            };
            partitions.push(part);
        }
        let (kind, schema, rowtime) = match &d.kind {
            DraftKind::Source(s) => {
                connectors.check_source(s, p)?;
                let schema = source_schema(s)?;
                let rowtime = check_rowtime(s, &schema)?;
                (NodeKind::Source { spec: s.clone() }, schema, rowtime)
            }
            DraftKind::LocalWindow {
                pane,
                aggregates,
                rowtime,
                buffer_entries,
            } => {
                let up = input(0);
                let mut fields = keyed_aggregate_fields(Vec::new(), d, &up.schema, aggregates, Some(false))?;
                fields.push(Field::new(rowtime, timestamp_type(), false));
                let kind = NodeKind::LocalWindow {
                    keys: d.key_by.clone(),
                    pane: *pane,
                    aggregates: aggregates.iter().map(|(n, s, _)| (n.clone(), s.clone())).collect(),
                    rowtime: rowtime.clone(),
                    buffer_entries: *buffer_entries,
                };
                (kind, Arc::new(Schema::new(fields)), Some(rowtime.clone()))
            }
            DraftKind::Sink(s) => {
                connectors.check_sink(s)?;
                if let Some(agg) = updating_origin(&nodes, ins[0]) {
                    if !connectors.accepts_updates(s) {
                        return Err(err_at(
                            s.pos,
                            &d.id,
                            format!(
                                "sink '{}' appends rows and cannot take the updating stream of continuous aggregate '{agg}' (new values of each key as they change); write it to an upsert sink: connector postgres with a primary-key",
                                s.id
                            ),
                        ));
                    }
                }
                let up = input(0);
                (
                    NodeKind::Sink { spec: s.clone() },
                    up.schema.clone(),
                    up.rowtime.clone(),
                )
            }
            DraftKind::Operator(kind) => {
                if let Some(max) = kind.max_inputs().filter(|m| d.inputs.len() > *m) {
                    return Err(err_at(
                        d.inputs[max].2,
                        &d.id,
                        format!(
                            "a {} operator takes {max} input; it lists {} (a union takes several)",
                            kind.name(),
                            d.inputs.len()
                        ),
                    ));
                }
                let up = input(0);
                match kind {
                    OperatorKind::Filter(sql, pos) => {
                        let e = compile_scalar(sql, &up.schema)
                            .map_err(|e| err_at(*pos, &d.id, format!("filter '{sql}': {e}")))?;
                        if e.data_type != DataType::Boolean {
                            return Err(err_at(
                                *pos,
                                &d.id,
                                format!("filter '{sql}' has type {}, expected boolean", e.data_type),
                            ));
                        }
                        (
                            NodeKind::Filter { predicate: sql.clone() },
                            up.schema.clone(),
                            up.rowtime.clone(),
                        )
                    }
                    OperatorKind::Select(cols) => {
                        let mut fields = Vec::with_capacity(cols.len());
                        let mut rowtime = None;
                        for (name, sql, pos) in cols {
                            let e = compile_scalar(sql, &up.schema)
                                .map_err(|e| err_at(*pos, &d.id, format!("select '{name}': {e}")))?;
                            let bare = sql.trim();
                            let ident = bare.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(bare);
                            if up.rowtime.as_deref() == Some(ident) && name == ident {
                                rowtime = Some(name.clone());
                            }
                            fields.push(Field::new(name, e.data_type, e.nullable));
                        }
                        let columns = cols.iter().map(|(n, s, _)| (n.clone(), s.clone())).collect();
                        (NodeKind::Select { columns }, Arc::new(Schema::new(fields)), rowtime)
                    }
                    OperatorKind::KeyBy => {
                        check_keys(&d.key_by, &up.schema, d.pos, &d.id)?;
                        (NodeKind::KeyBy, up.schema.clone(), up.rowtime.clone())
                    }
                    OperatorKind::Aggregate { aggregates, ttl } => {
                        check_keys(&d.key_by, &up.schema, d.pos, &d.id)?;
                        if let Some(agg) = updating_origin(&nodes, ins[0]) {
                            return Err(err_at(
                                d.pos,
                                &d.id,
                                format!("an aggregate cannot take the updating stream of continuous aggregate '{agg}'"),
                            ));
                        }
                        let fields = keyed_aggregate_fields(Vec::new(), d, &up.schema, aggregates, None)?;
                        let kind = NodeKind::Aggregate {
                            keys: d.key_by.clone(),
                            aggregates: aggregates.iter().map(|(n, s, _)| (n.clone(), s.clone())).collect(),
                            ttl: *ttl,
                        };
                        (kind, Arc::new(Schema::new(fields)), None)
                    }
                    OperatorKind::Window { window, aggregates } => {
                        check_keys(&d.key_by, &up.schema, d.pos, &d.id)?;
                        if let Some(agg) = updating_origin(&nodes, ins[0]) {
                            return Err(err_at(
                                d.pos,
                                &d.id,
                                format!("a window cannot take the updating stream of continuous aggregate '{agg}'"),
                            ));
                        }
                        if window.time == TimeKind::Event && up.rowtime.is_none() {
                            return Err(err_at(
                                window.pos,
                                &d.id,
                                "an event-time window needs rows with a watermark column; add a watermark to the source or use time: processing",
                            ));
                        }
                        let window_columns = vec![
                            Field::new(WINDOW_START, timestamp_type(), false),
                            Field::new(WINDOW_END, timestamp_type(), false),
                        ];
                        let sessions = matches!(window.kind, WindowKind::Session { .. });
                        let fields = keyed_aggregate_fields(window_columns, d, &up.schema, aggregates, Some(sessions))?;
                        let kind = NodeKind::Window {
                            keys: d.key_by.clone(),
                            window: window.clone(),
                            aggregates: aggregates.iter().map(|(n, s, _)| (n.clone(), s.clone())).collect(),
                        };
                        let schema = match schemas.get(&d.id) {
                            Some(s) => s.clone(),
                            None => Arc::new(Schema::new(fields)),
                        };
                        (kind, schema, None)
                    }
                    OperatorKind::Broadcast(b) => broadcast_node(d, b, up, input(1))?,
                    OperatorKind::Union => {
                        for k in 1..ins.len() {
                            let other = input(k);
                            if other.schema.fields() != up.schema.fields() {
                                return Err(err_at(
                                    d.inputs[k].2,
                                    &d.id,
                                    format!("union inputs '{}' and '{}' have different columns", up.id, other.id),
                                ));
                            }
                        }
                        let same_rowtime = (1..ins.len()).all(|k| input(k).rowtime == up.rowtime);
                        (
                            NodeKind::Union,
                            up.schema.clone(),
                            if same_rowtime { up.rowtime.clone() } else { None },
                        )
                    }
                }
            }
        };
        check_metrics(d, (!ins.is_empty()).then(|| &input(0).schema))?;
        nodes[i] = Some(GraphNode {
            id: d.id.clone(),
            uid: d.uid.clone(),
            pos: d.pos,
            kind,
            parallelism: p,
            inputs: ins.clone(),
            input_partitions: partitions,
            schema,
            rowtime,
            chain: d.chain,
            metrics: d.metrics.clone(),
        });
    }
    let nodes: Vec<GraphNode> = nodes
        .into_iter()
        .map(|n| n.expect("every node is in the order"))
        .collect();
    let (vertices, edges) = chain(&nodes, &order);
    Ok(JobGraph {
        name: spec.name.clone(),
        config: spec.config.clone(),
        max_parallelism,
        nodes,
        vertices,
        edges,
    })
}

/// A keyed aggregate's output columns: `leading`, the keys, then each aggregate (compiled
/// against `input`; a window's checked for its kind: `sessions` or not); a name twice is an
/// error.
fn keyed_aggregate_fields(
    mut fields: Vec<Field>,
    d: &Draft,
    input: &SchemaRef,
    aggregates: &[(String, String, Pos)],
    window_sessions: Option<bool>,
) -> JobResult<Vec<Field>> {
    for k in &d.key_by {
        let f = input.field_with_name(k).map_err(|e| err_at(d.pos, &d.id, e))?;
        fields.push(f.clone());
    }
    for (name, sql, pos) in aggregates {
        let a = compile_aggregate(name, sql, input)
            .and_then(|a| match window_sessions {
                Some(sessions) => check_window_aggregate(&a, sessions).map(|()| a),
                None => Ok(a),
            })
            .map_err(|e| err_at(*pos, &d.id, format!("aggregate '{name}': {e}")))?;
        fields.push(a.field().as_ref().clone().with_name(name));
    }
    let mut names: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(err_at(d.pos, &d.id, format!("output column '{}' appears twice", w[0])));
    }
    Ok(fields)
}

/// The continuous aggregate whose updating stream node `i` emits (through filters, selects,
/// key-bys and unions), if any.
fn updating_origin(nodes: &[Option<GraphNode>], i: usize) -> Option<String> {
    let n = nodes.get(i)?.as_ref()?;
    match &n.kind {
        NodeKind::Aggregate { .. } => Some(n.id.clone()),
        NodeKind::Filter { .. } | NodeKind::Select { .. } | NodeKind::KeyBy | NodeKind::Union => {
            n.inputs.iter().find_map(|&up| updating_origin(nodes, up))
        }
        _ => None,
    }
}

fn display_name(node: &GraphNode) -> String {
    match node.kind {
        NodeKind::Source { .. } => format!("Source: {}", node.id),
        NodeKind::Sink { .. } => format!("Sink: {}", node.id),
        _ => node.id.clone(),
    }
}

/// Chains a node onto its single input when the edge is forward, the input feeds nothing else
/// and neither side asks not to be chained (`chain: false`).
fn chain(nodes: &[GraphNode], order: &[usize]) -> (Vec<Vertex>, Vec<Edge>) {
    let mut consumers = vec![0usize; nodes.len()];
    for n in nodes {
        for &i in &n.inputs {
            consumers[i] += 1;
        }
    }
    let mut vertex_of = vec![usize::MAX; nodes.len()];
    let mut vertices: Vec<Vertex> = Vec::new();
    for &i in order {
        let n = &nodes[i];
        let chained = n.inputs.len() == 1
            && n.chain
            && n.input_partitions[0] == EdgePartition::Forward
            && consumers[n.inputs[0]] == 1
            && !matches!(n.kind, NodeKind::Source { .. });
        if chained {
            let v = vertex_of[n.inputs[0]];
            vertices[v].nodes.push(i);
            vertices[v].name = format!("{} -> {}", vertices[v].name, display_name(n));
            vertex_of[i] = v;
        } else {
            vertex_of[i] = vertices.len();
            vertices.push(Vertex {
                index: vertices.len(),
                id: stable_id(&n.uid),
                name: display_name(n),
                nodes: vec![i],
                parallelism: n.parallelism,
            });
        }
    }
    let mut edges = Vec::new();
    for v in &vertices {
        let head = &nodes[v.nodes[0]];
        for (k, &input) in head.inputs.iter().enumerate() {
            if vertex_of[input] == v.index {
                continue;
            }
            edges.push(Edge {
                index: edges.len(),
                source: vertex_of[input],
                target: v.index,
                target_input: k,
                partition: head.input_partitions[k].clone(),
                schema: nodes[input].schema.clone(),
            });
        }
    }
    (vertices, edges)
}

/// A node's user metrics compile against the rows it receives, under distinct names.
fn check_metrics(d: &Draft, input: Option<&SchemaRef>) -> JobResult<()> {
    let mut names = std::collections::HashSet::new();
    for m in &d.metrics {
        if !names.insert(m.name.as_str()) {
            return Err(err_at(m.pos, &d.id, format!("declares metric '{}' twice", m.name)));
        }
        if let Some(schema) = input {
            compile_metric(m, schema).map_err(|e| err_at(m.pos, &d.id, e))?;
        }
    }
    Ok(())
}

/// A broadcast operator's node: the main columns, then the broadcast entry's (its key left
/// out; nullable under a left join), the main rowtime; both inputs need event time.
fn broadcast_node(
    d: &Draft,
    b: &BroadcastSpec,
    main: &GraphNode,
    rules: &GraphNode,
) -> JobResult<(NodeKind, SchemaRef, Option<String>)> {
    let (Some(main_time), Some(rules_time)) = (&main.rowtime, &rules.rowtime) else {
        return Err(err_at(
            b.pos,
            &d.id,
            format!(
                "a broadcast applies each entry from its event time on: '{}' and '{}' both need an event-time column (a watermark)",
                main.id, rules.id
            ),
        ));
    };
    let column = |schema: &SchemaRef, name: &str, of: &str| {
        schema
            .field_with_name(name)
            .cloned()
            .map_err(|_| err_at(b.pos, &d.id, format!("'{of}' has no column '{name}'")))
    };
    let key = column(&rules.schema, &b.key, &rules.id)?;
    let lookup = column(&main.schema, &b.lookup, &main.id)?;
    if !is_key_type(key.data_type()) || !is_key_type(lookup.data_type()) {
        return Err(err_at(
            b.pos,
            &d.id,
            format!(
                "'{}' and '{}' must be key types (integers, strings, booleans)",
                b.key, b.lookup
            ),
        ));
    }
    let mut fields: Vec<Field> = main.schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    for f in rules.schema.fields() {
        if f.name() == &b.key || f.name() == rules_time {
            continue;
        }
        if main.schema.field_with_name(f.name()).is_ok() {
            return Err(err_at(
                b.pos,
                &d.id,
                format!(
                    "'{}' and '{}' both have a column '{}'; rename one with a select",
                    main.id,
                    rules.id,
                    f.name()
                ),
            ));
        }
        fields.push(f.as_ref().clone().with_nullable(true));
    }
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    if let Some(sql) = &b.filter {
        let e = compile_scalar(sql, &schema).map_err(|e| err_at(b.pos, &d.id, format!("filter '{sql}': {e}")))?;
        if e.data_type != DataType::Boolean {
            return Err(err_at(
                b.pos,
                &d.id,
                format!("filter '{sql}' has type {}, expected boolean", e.data_type),
            ));
        }
    }
    Ok((
        NodeKind::Broadcast {
            key: b.key.clone(),
            lookup: b.lookup.clone(),
            inner: b.inner,
            filter: b.filter.clone(),
        },
        schema,
        Some(main_time.clone()),
    ))
}
