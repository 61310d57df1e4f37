//! The typed specs of a job file's nodes (DESIGN §3a), as the front end (`sluice-frontend`)
//! parses them and as the plan carries sources and sinks to the taskmanagers (connectors read
//! their options from them there). Positions point into the job file for errors.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::yaml_tree::Pos;

use super::types::ColumnType;
pub use super::user_metrics::{MetricKind, MetricSpec};

#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    pub name: String,
    pub parallelism: Option<u32>,
    pub max_parallelism: Option<u32>,
    /// Per-job overrides of cluster keys.
    pub config: Vec<(String, String)>,
    pub sources: Vec<SourceSpec>,
    pub operators: Vec<OperatorSpec>,
    pub sinks: Vec<SinkSpec>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ColumnSpec {
    pub name: String,
    pub ty: ColumnType,
    /// For datagen: a SQL expression over `seq`.
    pub expr: Option<String>,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WatermarkSpec {
    pub column: String,
    pub max_out_of_orderness: Duration,
    /// A split with no rows for this long stops holding back the watermark.
    pub idle_timeout: Option<Duration>,
    /// At most one watermark per this long (`pipeline.auto-watermark-interval`, set when the
    /// graph is built); zero: one after every batch that advances it.
    pub emit_interval: Duration,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SourceSpec {
    pub id: String,
    pub uid: String,
    pub pos: Pos,
    pub connector: String,
    pub parallelism: Option<u32>,
    pub options: BTreeMap<String, (String, Pos)>,
    pub schema: Vec<ColumnSpec>,
    pub watermark: Option<WatermarkSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partition {
    Rebalance,
    Broadcast,
}

#[derive(Debug, Clone, PartialEq)]
pub struct InputSpec {
    pub id: String,
    pub partition: Option<Partition>,
    pub pos: Pos,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeKind {
    Event,
    Processing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    Tumbling { size: Duration },
    Sliding { size: Duration, slide: Duration },
    Session { gap: Duration },
}

#[derive(Debug, Clone, PartialEq)]
pub struct WindowSpec {
    pub kind: WindowKind,
    pub time: TimeKind,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub enum OperatorKind {
    Filter(String, Pos),
    /// Output column name → expression (and where it stands), in order.
    Select(Vec<(String, String, Pos)>),
    /// Only re-partitions by key.
    KeyBy,
    Window {
        window: WindowSpec,
        /// Output column name → aggregate call, in order.
        aggregates: Vec<(String, String, Pos)>,
    },
    /// A keyed aggregate without a window (Flink SQL's `GROUP BY` continuous aggregate): emits
    /// the new value of each key's aggregates as its rows arrive, an updating stream.
    Aggregate {
        aggregates: Vec<(String, String, Pos)>,
        /// `state.ttl`: a key not written for this long starts again from nothing.
        ttl: Option<std::time::Duration>,
    },
    Union,
    /// Connected to a broadcast stream (Flink's broadcast state pattern): main rows look up the
    /// broadcast entry in force at their event time.
    Broadcast(BroadcastSpec),
}

/// `broadcast: {input, key, lookup, join, filter}` of an operator.
#[derive(Debug, Clone, PartialEq)]
pub struct BroadcastSpec {
    /// The broadcast stream; every subtask receives all of it.
    pub input: InputSpec,
    /// Its column naming each entry: a newer row (by event time) replaces the entry.
    pub key: String,
    /// The main column whose value selects the entry.
    pub lookup: String,
    /// `join: inner` drops main rows without an entry; `left` (default) keeps them with nulls.
    pub inner: bool,
    /// Keeps the joined rows where this is true (over main and broadcast columns).
    pub filter: Option<String>,
    pub pos: Pos,
}

impl OperatorKind {
    /// How many inputs the kind takes (`None`: any number); checked when the graph is built.
    pub fn max_inputs(&self) -> Option<usize> {
        match self {
            OperatorKind::Union => None,
            OperatorKind::Broadcast(_) => Some(2),
            OperatorKind::Filter(..)
            | OperatorKind::Select(_)
            | OperatorKind::KeyBy
            | OperatorKind::Window { .. }
            | OperatorKind::Aggregate { .. } => Some(1),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            OperatorKind::Filter(..) => "filter",
            OperatorKind::Select(_) => "select",
            OperatorKind::KeyBy => "key-by",
            OperatorKind::Window { .. } => "window",
            OperatorKind::Aggregate { .. } => "aggregate",
            OperatorKind::Union => "union",
            OperatorKind::Broadcast(_) => "broadcast",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct OperatorSpec {
    pub id: String,
    pub uid: String,
    pub pos: Pos,
    pub inputs: Vec<InputSpec>,
    pub parallelism: Option<u32>,
    pub chain: bool,
    pub key_by: Vec<String>,
    pub kind: OperatorKind,
    /// User metrics over the rows the operator receives.
    pub metrics: Vec<MetricSpec>,
    /// `reinterpret-as-keyed: true` (Flink's `reinterpretAsKeyedStream`): the input is already
    /// partitioned by `key_by` as a hash edge would; it stays a forward edge, no shuffle.
    pub reinterpret_as_keyed: bool,
    /// `salt: N` on a window: its key is spread over N salted keys, pre-aggregated per salted
    /// key, and the window merges the partial results (two phases, whatever the strategy).
    pub salt: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SinkSpec {
    pub id: String,
    pub uid: String,
    pub pos: Pos,
    pub input: InputSpec,
    pub connector: String,
    pub parallelism: Option<u32>,
    pub options: BTreeMap<String, (String, Pos)>,
}
