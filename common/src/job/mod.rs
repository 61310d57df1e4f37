//! Jobs (DESIGN §3a) as both daemons see them: the typed specs of a job file's nodes (`spec`),
//! SQL expressions compiled with DataFusion (`expr`), and the checked, chained JobGraph
//! (`graph`), which the jobmanager ships to taskmanagers as a protobuf plan (`plan`). Parsing
//! job files and building the graph is the front end's (`sluice-frontend`, jobmanager only);
//! connectors are checked there through a `ConnectorCatalog` (`catalog`), the registry of
//! `sluice-connectors`.

pub mod catalog;
mod const_div;
mod cpu_cost;
mod error;
pub mod expr;
pub mod graph;
pub mod plan;
mod select_case;
pub mod spec;
pub mod types;
pub mod user_metrics;
mod wall_clock;

pub use catalog::ConnectorCatalog;
pub use error::{JobError, JobResult};
pub use graph::{stable_id, EdgePartition, GraphNode, GraphOptions, JobGraph, NodeKind, Vertex};
pub use spec::JobSpec;
