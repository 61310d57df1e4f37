//! Checkpoints on the jobmanager (DESIGN §8): the per-attempt coordinator (`coordinator`) that
//! triggers, collects acknowledgements, writes `_metadata` last and create-only, notifies
//! completion and deletes what no retained checkpoint references; and the statistics the REST
//! API and metrics show (`stats`).

pub mod coordinator;
#[cfg(test)]
mod coordinator_tests;
pub mod stats;

pub use coordinator::{CheckpointSettings, Coordinator, SavepointRequest};
pub use stats::{CheckpointRecord, CheckpointStats, SavepointStatus};
