//! Sluice's connectors (DESIGN §14). The contracts every connector implements
//! (`contract.rs`: an async `Source` reading assigned splits, an async two-phase-commit `Sink`,
//! a `SplitEnumerator` on the jobmanager), one folder per connector (its options, schema rules,
//! reader, writer and enumerator), and the registry that finds them by name (`registry.rs`).
//! The jobmanager checks job files and enumerates splits through the registry; taskmanagers
//! build readers and writers through it. Adding a connector is its folder and one line in
//! `Registry::builtin`.

mod contract;
mod enumerator;
mod failpoint;
mod options;
mod registry;
mod source_enumerators;
mod splits;

mod blackhole;
mod datagen;
mod file;
mod kafka;
mod postgres;
mod print;

pub use contract::{
    Committable, MetricKey, OperatorMetrics, Permits, Sink, SinkContext, Source, SourceContext, SourcePoll, Split,
};
pub use enumerator::{ListedSplit, RoundRobinEnumerator, SplitEnumerator};
pub use options::{local_path, FileFormat, OptionReader};
pub use registry::{registry, Connector, Registry};
pub use sluice_common::failure::ClassedError;
pub use source_enumerators::{deal_splits, DealtSplits, RestoredEnumerators, SourceEnumerators};

#[cfg(test)]
mod job_tests;
#[cfg(test)]
mod registry_tests;
