//! Two-phase windowed aggregation: a hot key no longer loads one window subtask with most
//! rows. Decided on the built one-phase graph, where columns and types are known; a split
//! window's draft becomes:
//!
//! - with Flink's `table.optimizer.agg-phase-strategy` (TWO_PHASE, or AUTO with mini-batch):
//!   a local phase chained to the window's input at its parallelism (partials per pane and key
//!   before the shuffle, Flink's local-global aggregation), then the global window;
//! - with `salt: N` on the window (the DataStream salting pattern, whatever the strategy): a
//!   select chained to the input adding a random salt in `[0, N)`, a shuffle by key and salt
//!   to a local phase at the window's parallelism, then the global window shuffled by key.
//!
//! The global window keeps the id, keys and window, takes `uid` + `-global` (its state is not
//! the one-phase window's), merges the partials (sum of counts and sums, min, max) and emits
//! the one-phase columns exactly. Local phases hold no checkpointed state (they flush before
//! every barrier; a watermark flushes the panes it closes). Eligible: an event-time tumbling or sliding window over a hash edge whose
//! aggregates are all `count`, `sum` (of integers or floating point), `min` or `max` without
//! `DISTINCT`; the strategy keeps others in one phase (as Flink does), `salt` names why not.

use std::collections::HashMap;

use arrow::datatypes::{DataType, SchemaRef};
use sluice_common::config::options::{
    AggPhaseStrategy, TABLE_EXEC_MINI_BATCH_ENABLED, TABLE_EXEC_MINI_BATCH_SIZE, TABLE_OPTIMIZER_AGG_PHASE_STRATEGY,
};
use sluice_common::job::graph::{EdgePartition, GraphNode, JobGraph, NodeKind};
use sluice_common::job::spec::{JobSpec, OperatorKind, TimeKind, WindowKind};
use sluice_common::job::{GraphOptions, JobError, JobResult};

use crate::graph_build::{Draft, DraftKind};

/// The merge of a partial result: how the global phase combines the local phases' values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Merge {
    Sum,
    Min,
    Max,
}

impl Merge {
    fn function(self) -> &'static str {
        match self {
            Merge::Sum => "sum",
            Merge::Min => "min",
            Merge::Max => "max",
        }
    }
}

/// The merge of an aggregate call (`count(*)`, `sum(amount)`, …), or none when it cannot be
/// split: another function, `DISTINCT`, or anything around or after the call.
fn merge_of(sql: &str) -> Option<Merge> {
    let sql = sql.trim();
    let open = sql.find('(')?;
    let name = sql[..open].trim().to_ascii_lowercase();
    // The call's parenthesis must close at the very end.
    let mut depth = 0i32;
    for (i, c) in sql[open..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 && open + i + 1 != sql.len() {
                    return None;
                }
            }
            _ => {}
        }
    }
    if depth != 0 || !sql.ends_with(')') {
        return None;
    }
    let arg = sql[open + 1..sql.len() - 1].trim_start().to_ascii_lowercase();
    if arg.starts_with("distinct") {
        return None;
    }
    match name.as_str() {
        "count" | "sum" => Some(Merge::Sum),
        "min" => Some(Merge::Min),
        "max" => Some(Merge::Max),
        _ => None,
    }
}

/// Whether merging keeps the type: a sum of sums of decimals widens its precision.
fn keeps_type(merge: Merge, ty: &DataType) -> bool {
    merge != Merge::Sum || matches!(ty, DataType::Int64 | DataType::UInt64 | DataType::Float64)
}

/// A column name as an SQL identifier (quoted: names keep their case).
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The column a salted window's rows carry their salt in.
pub(crate) const SALT_COLUMN: &str = "__salt";

/// How many (pane, key) entries a local phase buffers (0: by memory), when the job's table
/// options split windows in two: the cluster's options with the job file's `config:` on top.
fn strategy(spec: &JobSpec, options: &GraphOptions) -> JobResult<Option<u64>> {
    let config = crate::graph_build::job_config(spec, options);
    let get_err = |e: sluice_common::config::ConfigError| JobError::general(e.to_string());
    let two_phase = match config.get(&TABLE_OPTIMIZER_AGG_PHASE_STRATEGY).map_err(get_err)? {
        AggPhaseStrategy::OnePhase => false,
        AggPhaseStrategy::TwoPhase => true,
        AggPhaseStrategy::Auto => config.get(&TABLE_EXEC_MINI_BATCH_ENABLED).map_err(get_err)?,
    };
    if !two_phase {
        return Ok(None);
    }
    // 0 (unset): the local phase buffers by memory.
    Ok(Some(u64::from(
        config.get(&TABLE_EXEC_MINI_BATCH_SIZE).map_err(get_err)?,
    )))
}

fn gcd(a: u128, b: u128) -> u128 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// What splitting a window takes: the local phase's pane, the input's rowtime, each
/// aggregate's merge.
struct Split {
    pane: std::time::Duration,
    rowtime: String,
    merges: Vec<Merge>,
}

/// The split of window node `n` (built from `d`), or what keeps it whole.
fn eligible(graph: &JobGraph, n: &GraphNode, d: &Draft) -> Result<Split, &'static str> {
    let NodeKind::Window {
        keys,
        window,
        aggregates,
    } = &n.kind
    else {
        return Err("a window");
    };
    if window.time != TimeKind::Event {
        return Err("an event-time window");
    }
    if d.reinterpret || !matches!(n.input_partitions.as_slice(), [EdgePartition::Hash(_)]) {
        return Err("a window that shuffles its input by key (not reinterpret-as-keyed)");
    }
    let pane = match window.kind {
        WindowKind::Tumbling { size } => size,
        WindowKind::Sliding { size, slide } => std::time::Duration::from_nanos(
            u64::try_from(gcd(size.as_nanos(), slide.as_nanos())).map_err(|_| "a shorter window")?,
        ),
        WindowKind::Session { .. } => return Err("a tumbling or sliding window (sessions merge)"),
    };
    let rowtime = graph.nodes[n.inputs[0]]
        .rowtime
        .clone()
        .ok_or("an input with an event-time column")?;
    if keys.contains(&rowtime) || aggregates.iter().any(|(name, _)| *name == rowtime) {
        return Err("keys and aggregate names other than the input's event-time column");
    }
    let merges = aggregates
        .iter()
        .map(|(name, sql)| {
            let merge = merge_of(sql)?;
            let field = n.schema.field_with_name(name).ok()?;
            keeps_type(merge, field.data_type()).then_some(merge)
        })
        .collect::<Option<Vec<_>>>()
        .ok_or("aggregates that merge: count, sum (of integers or floating point), min or max, without DISTINCT")?;
    Ok(Split { pane, rowtime, merges })
}

/// The rewritten drafts, and the output columns of each global window by id.
pub(crate) type Rewritten = (Vec<Draft>, HashMap<String, SchemaRef>);

/// The drafts with every window the job salts or the strategy splits in two phases, and the
/// one-phase output columns of each global window; `None` when nothing is split.
pub(crate) fn split(
    spec: &JobSpec,
    options: &GraphOptions,
    graph: &JobGraph,
    drafts: &[Draft],
) -> JobResult<Option<Rewritten>> {
    let two_phase = strategy(spec, options)?;
    let mut out = Vec::with_capacity(drafts.len() + 2);
    let mut schemas = HashMap::new();
    let nodes: HashMap<&str, &GraphNode> = graph.nodes.iter().map(|n| (n.id.as_str(), n)).collect();
    for d in drafts {
        let node = nodes.get(d.id.as_str()).copied();
        let (DraftKind::Operator(OperatorKind::Window { window, aggregates }), Some(n)) = (&d.kind, node) else {
            out.push(d.clone());
            continue;
        };
        let split = match eligible(graph, n, d) {
            Ok(split) if d.salt.is_some() || two_phase.is_some() => split,
            Err(why) if d.salt.is_some() => {
                return Err(JobError::at(d.pos, format!("'{}': 'salt' needs {why}", d.id)));
            }
            _ => {
                out.push(d.clone());
                continue;
            }
        };
        let taken = |id: &str| drafts.iter().any(|x| x.id == id);
        let local_id = format!("{}-local", d.id);
        let salt_id = format!("{}-salt", d.id);
        if taken(&local_id) || (d.salt.is_some() && taken(&salt_id)) {
            return Err(JobError::at(
                d.pos,
                format!(
                    "'{}': the phases of its split aggregate are named '{local_id}' and '{salt_id}', which another node uses; rename that node",
                    d.id
                ),
            ));
        }
        let local_kind = DraftKind::LocalWindow {
            pane: split.pane,
            aggregates: aggregates.clone(),
            rowtime: split.rowtime.clone(),
            buffer_entries: two_phase.unwrap_or(0),
        };
        match d.salt {
            // Before the shuffle, chained to the input: a reinterpreted keyed forward edge.
            None => out.push(Draft {
                id: local_id.clone(),
                uid: format!("{}-local", d.uid),
                parallelism: None,
                chain: true,
                kind: local_kind,
                reinterpret: true,
                follows_input: true,
                // User metrics watch the rows the job file's operator receives: the local's.
                ..d.clone()
            }),
            // A salt column chained to the input, a shuffle by key and salt, the local phase.
            Some(buckets) => {
                let input = &graph.nodes[n.inputs[0]].schema;
                if input.field_with_name(SALT_COLUMN).is_ok() {
                    return Err(JobError::at(
                        d.pos,
                        format!(
                            "'{}': 'salt' adds a column '{SALT_COLUMN}', which its input already has",
                            d.id
                        ),
                    ));
                }
                let mut columns: Vec<_> = input
                    .fields()
                    .iter()
                    .map(|f| (f.name().clone(), quoted(f.name()), d.pos))
                    .collect();
                columns.push((
                    SALT_COLUMN.to_string(),
                    format!("CAST(floor(random() * {buckets}) AS INT)"),
                    d.pos,
                ));
                out.push(Draft {
                    id: salt_id.clone(),
                    uid: format!("{}-salt", d.uid),
                    parallelism: None,
                    chain: true,
                    key_by: Vec::new(),
                    kind: DraftKind::Operator(OperatorKind::Select(columns)),
                    follows_input: true,
                    salt: None,
                    ..d.clone()
                });
                let mut key_by = d.key_by.clone();
                key_by.push(SALT_COLUMN.to_string());
                out.push(Draft {
                    id: local_id.clone(),
                    uid: format!("{}-local", d.uid),
                    inputs: vec![(salt_id, None, d.pos)],
                    key_by,
                    kind: local_kind,
                    metrics: Vec::new(),
                    salt: None,
                    ..d.clone()
                });
            }
        }
        let merged = aggregates
            .iter()
            .zip(&split.merges)
            .map(|((name, _, pos), m)| (name.clone(), format!("{}({})", m.function(), quoted(name)), *pos))
            .collect();
        out.push(Draft {
            uid: format!("{}-global", d.uid),
            inputs: vec![(local_id, None, d.pos)],
            kind: DraftKind::Operator(OperatorKind::Window {
                window: window.clone(),
                aggregates: merged,
            }),
            metrics: Vec::new(),
            salt: None,
            ..d.clone()
        });
        schemas.insert(d.id.clone(), n.schema.clone());
    }
    Ok((!schemas.is_empty()).then_some((out, schemas)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_only_mergeable_calls() {
        assert_eq!(merge_of("count(*)"), Some(Merge::Sum));
        assert_eq!(merge_of(" SUM( amount ) "), Some(Merge::Sum));
        assert_eq!(merge_of("min(ts)"), Some(Merge::Min));
        assert_eq!(merge_of("max(abs(x))"), Some(Merge::Max));
        assert_eq!(merge_of("count(DISTINCT user)"), None);
        assert_eq!(merge_of("avg(x)"), None);
        assert_eq!(merge_of("sum(a) + 1"), None);
        assert_eq!(merge_of("sum(a) filter (where a > 1)"), None);
        assert_eq!(merge_of("sum(a"), None);
        assert_eq!(merge_of("sum"), None);
        assert_eq!(merge_of("sum("), None);
        assert!(keeps_type(Merge::Sum, &DataType::Int64));
        assert!(!keeps_type(Merge::Sum, &DataType::Decimal128(20, 2)));
        assert!(keeps_type(Merge::Min, &DataType::Decimal128(20, 2)));
        assert_eq!(quoted("a\"b"), "\"a\"\"b\"");
    }
}
