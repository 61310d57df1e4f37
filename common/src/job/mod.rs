//! Jobs (DESIGN §3a): the YAML job file (`spec`), SQL expressions compiled with DataFusion
//! (`expr`), and the checked, chained JobGraph (`graph`); connectors are checked through a
//! `ConnectorCatalog` (`catalog`), the registry of `sluice-connectors`. The jobmanager ships the
//! compiled graph to taskmanagers as a protobuf plan (`plan`).

pub mod catalog;
mod error;
pub mod expr;
pub mod graph;
pub mod plan;
pub mod spec;
pub mod types;

pub use catalog::ConnectorCatalog;
pub use error::{JobError, JobResult};
pub use graph::{stable_id, EdgePartition, GraphNode, GraphOptions, JobGraph, NodeKind, Vertex};
pub use spec::JobSpec;

/// Parses and builds a job in one step, naming `file` in errors.
pub fn compile_job(
    text: &str,
    file: &str,
    options: &GraphOptions,
    connectors: &dyn ConnectorCatalog,
) -> JobResult<JobGraph> {
    let spec = JobSpec::parse(text, file)?;
    JobGraph::build(&spec, options, connectors).map_err(|e| e.in_file(file))
}
