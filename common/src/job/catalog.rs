//! The seam between the job compiler and the connectors: the compiler asks a catalog (the
//! connector registry, `sluice-connectors`) whether a source's or sink's connector exists and
//! accepts its options and columns. `common` knows no connector by name.

use super::error::JobResult;
use super::spec::{SinkSpec, SourceSpec};

pub trait ConnectorCatalog: Send + Sync {
    /// Checks a source: its connector exists and takes sources, its options parse, its columns
    /// follow the connector's rules (e.g. datagen columns are expressions over `seq`).
    /// `parallelism` is the source's.
    fn check_source(&self, spec: &SourceSpec, parallelism: u32) -> JobResult<()>;

    /// Checks a sink: its connector exists and takes sinks, its options parse.
    fn check_sink(&self, spec: &SinkSpec) -> JobResult<()>;

    /// Whether the sink applies an updating stream (upserts by a key), as a continuous
    /// aggregate emits; append sinks do not.
    fn accepts_updates(&self, _spec: &SinkSpec) -> bool {
        false
    }
}
