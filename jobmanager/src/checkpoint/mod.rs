//! Checkpoints on the jobmanager (DESIGN §8): the per-attempt coordinator (`coordinator`) that
//! triggers, collects acknowledgements, writes `_metadata` last and create-only, notifies
//! completion and deletes what no retained checkpoint references; the taskmanagers' standby
//! copies of the state (`standby`); and the statistics the REST API and metrics show
//! (`stats`).

pub(crate) mod coordinator;
#[cfg(test)]
mod coordinator_tests;
mod standby;
pub(crate) mod stats;

pub(crate) use coordinator::{CheckpointSettings, Coordinator, PreparedCheckpoint, SavepointRequest, StopTriggered};
pub(crate) use stats::{CheckpointStats, SavepointStatus};
