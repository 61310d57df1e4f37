//! The job front end (DESIGN §3a), on the jobmanager's side only: a job file's YAML read into
//! typed specs (`job_file.rs`) and the specs built into a checked, chained `JobGraph`
//! (`graph_build.rs`), with connectors checked through a `ConnectorCatalog`. Taskmanagers get
//! the graph as a protobuf plan and never link this crate.

mod graph_build;
mod job_file;
#[cfg(test)]
mod plan_tests;
#[cfg(test)]
mod reactive_tests;
mod two_phase;
#[cfg(test)]
mod two_phase_tests;

pub use graph_build::build_graph;
pub use job_file::parse_job;

use sluice_common::job::{ConnectorCatalog, GraphOptions, JobGraph, JobResult};

/// Parses and builds a job in one step, naming `file` in errors.
pub fn compile_job(
    text: &str,
    file: &str,
    options: &GraphOptions,
    connectors: &dyn ConnectorCatalog,
) -> JobResult<JobGraph> {
    let spec = parse_job(text, file)?;
    build_graph(&spec, options, connectors).map_err(|e| e.in_file(file))
}
