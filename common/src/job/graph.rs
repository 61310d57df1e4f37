//! The JobGraph (DESIGN §9): checked nodes with their output schemas, chained into vertices,
//! and the typed edges between vertices (forward / hash / rebalance / broadcast). The front end
//! (`sluice-frontend`) builds it from a job file; the plan carries it to the taskmanagers.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use twox_hash::XxHash64;

use crate::yaml_tree::Pos;

use super::spec::{SinkSpec, SourceSpec, WindowSpec};

/// Parallelism inputs besides the job file.
#[derive(Debug, Clone, Default)]
pub struct GraphOptions {
    /// `parallelism.default` of the cluster.
    pub default_parallelism: u32,
    /// A submission's `-p` / `?parallelism=`: overrides the job file's default, not per-node values.
    pub parallelism: Option<u32>,
    /// Per-node parallelism decided by the scheduler (rescaling), by node id.
    pub node_parallelism: BTreeMap<String, u32>,
    /// The max parallelism of restored state, used when the job file sets none.
    pub restored_max_parallelism: Option<u32>,
    /// Reactive mode: `parallelism` is every node's, whatever the job file declares (Flink
    /// ignores the configured parallelism there; only the max parallelism bounds it).
    pub uniform: bool,
    /// The cluster's configuration, under the job file's `config:`: the table options that
    /// shape the plan (`table.optimizer.agg-phase-strategy`, `table.exec.mini-batch.*`) are
    /// read from it. None: their defaults under the job file's.
    pub cluster_config: Option<Arc<crate::config::Configuration>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EdgePartition {
    Forward,
    /// By key group of these columns.
    Hash(Vec<String>),
    Rebalance,
    Broadcast,
}

impl EdgePartition {
    pub fn name(&self) -> &'static str {
        match self {
            EdgePartition::Forward => "FORWARD",
            EdgePartition::Hash(_) => "HASH",
            EdgePartition::Rebalance => "REBALANCE",
            EdgePartition::Broadcast => "BROADCAST",
        }
    }
}

#[derive(Debug, Clone)]
pub enum NodeKind {
    /// Built by the connector registry from the spec (connector name, options, columns).
    Source {
        spec: SourceSpec,
    },
    Filter {
        predicate: String,
    },
    Select {
        columns: Vec<(String, String)>,
    },
    KeyBy,
    Window {
        keys: Vec<String>,
        window: WindowSpec,
        aggregates: Vec<(String, String)>,
    },
    /// A keyed aggregate without a window: output the keys then the aggregates, one row per
    /// key a batch touched, with that key's new values (an upsert stream keyed by `keys`).
    Aggregate {
        keys: Vec<String>,
        aggregates: Vec<(String, String)>,
        ttl: Option<std::time::Duration>,
    },
    /// The local phase of a two-phase windowed aggregate (Flink's `LocalWindowAggregate`),
    /// before the shuffle: per (pane, key) partial results of `aggregates` on the heap, flushed
    /// as rows (keys, partials, the pane's max timestamp as `rowtime`) at every watermark, at a
    /// checkpoint barrier, or when it holds `buffer_entries` (pane, key) entries; it holds no
    /// checkpointed state.
    LocalWindow {
        keys: Vec<String>,
        /// Tumbling panes of this size: the window's size, or for a sliding window the
        /// greatest common divisor of size and slide, so every pane lies inside or outside
        /// each window.
        pane: std::time::Duration,
        aggregates: Vec<(String, String)>,
        rowtime: String,
        buffer_entries: u64,
    },
    Union,
    /// Two inputs: main rows (input 0) enriched with the broadcast entry (input 1, keyed by
    /// `key`) whose value `lookup` names, the entry in force at the main row's event time.
    Broadcast {
        key: String,
        lookup: String,
        inner: bool,
        filter: Option<String>,
    },
    Sink {
        spec: SinkSpec,
    },
}

#[derive(Debug, Clone)]
pub struct GraphNode {
    pub id: String,
    pub uid: String,
    pub pos: Pos,
    pub kind: NodeKind,
    pub parallelism: u32,
    /// Indices of the input nodes, in the order the job file lists them.
    pub inputs: Vec<usize>,
    pub input_partitions: Vec<EdgePartition>,
    /// The rows this node emits (a sink: the rows it receives).
    pub schema: SchemaRef,
    /// The event-time column of the emitted rows, when there is one.
    pub rowtime: Option<String>,
    /// Whether it may be chained to its input (`chain: false` in the job file says not).
    pub chain: bool,
    /// User metrics over the rows the node receives (operators only).
    pub metrics: Vec<super::spec::MetricSpec>,
}

#[derive(Debug, Clone)]
pub struct Vertex {
    pub index: usize,
    /// 32 hex characters, derived from the head node's uid (stable across submissions).
    pub id: String,
    /// Chained node ids joined by " -> " (sources prefixed "Source: ", sinks "Sink: ").
    pub name: String,
    pub nodes: Vec<usize>,
    pub parallelism: u32,
}

#[derive(Debug, Clone)]
pub struct Edge {
    pub index: usize,
    pub source: usize,
    pub target: usize,
    /// Which input of the target vertex's head node this edge feeds.
    pub target_input: usize,
    pub partition: EdgePartition,
    pub schema: SchemaRef,
}

#[derive(Debug, Clone)]
pub struct JobGraph {
    pub name: String,
    /// The job file's `config:` overrides, in file order.
    pub config: Vec<(String, String)>,
    pub max_parallelism: u32,
    pub nodes: Vec<GraphNode>,
    pub vertices: Vec<Vertex>,
    pub edges: Vec<Edge>,
}

/// Output columns of a window: `window_start`, `window_end`, then keys and aggregates.
pub const WINDOW_START: &str = "window_start";
pub const WINDOW_END: &str = "window_end";

pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, None)
}

/// The schema datagen expressions see: the row index `seq`.
pub fn seq_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("seq", DataType::Int64, false)]))
}

/// A stable 32-hex-character id (the form of Flink's `AbstractID`s) derived from a name.
pub fn stable_id(name: &str) -> String {
    format!(
        "{:016x}{:016x}",
        XxHash64::oneshot(1, name.as_bytes()),
        XxHash64::oneshot(2, name.as_bytes())
    )
}

impl JobGraph {
    /// Slots a job needs with slot sharing: its largest vertex parallelism.
    pub fn slots_needed(&self) -> u32 {
        self.vertices.iter().map(|v| v.parallelism).max().unwrap_or(0)
    }

    pub fn inputs_of(&self, vertex: usize) -> impl Iterator<Item = &Edge> {
        self.edges.iter().filter(move |e| e.target == vertex)
    }

    pub fn outputs_of(&self, vertex: usize) -> impl Iterator<Item = &Edge> {
        self.edges.iter().filter(move |e| e.source == vertex)
    }

    /// A readable plan: vertices with parallelism and chains, then edges.
    pub fn describe(&self) -> String {
        let mut out = format!("Job '{}' (max-parallelism {})\n", self.name, self.max_parallelism);
        for v in &self.vertices {
            out.push_str(&format!(
                "  vertex {} [{}] parallelism {}: {}\n",
                v.index, v.id, v.parallelism, v.name
            ));
        }
        for e in &self.edges {
            let keys = match &e.partition {
                EdgePartition::Hash(k) => format!("({})", k.join(", ")),
                _ => String::new(),
            };
            out.push_str(&format!(
                "  edge {} -> {}: {}{keys}\n",
                self.vertices[e.source].name,
                self.vertices[e.target].name,
                e.partition.name()
            ));
        }
        out
    }
}
