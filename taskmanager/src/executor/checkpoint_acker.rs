//! The asynchronous part of a subtask's checkpoint: upload every operator's snapshot to the
//! barrier's target, then acknowledge to the jobmanager with the state handles (or decline
//! with the reason when an upload fails); and report that the subtask's input ended.

use std::sync::Arc;
use std::time::Instant;

use sluice_common::config::Configuration;
use sluice_common::proto::checkpoint::OperatorSubtaskState;
use sluice_proto::control::{CheckpointAck, CheckpointDecline, TaskState, TaskStateUpdate};

use super::reporter::{Report, StateReporter};
use crate::network::Barrier;
use crate::runtime::checkpointing::SnapshotAcker;
use crate::state::local_copy::LocalCopies;
use crate::state::snapshot::OperatorSnapshot;
use crate::state::transfer::upload;

#[derive(Clone)]
pub(super) struct TaskAcker {
    pub reporter: StateReporter,
    pub config: Arc<Configuration>,
    pub job_id: String,
    pub epoch: u64,
    pub vertex: u32,
    pub subtask: u32,
    /// Where full snapshots are also kept on this taskmanager (local backup).
    pub local: Option<LocalCopies>,
}

impl TaskAcker {
    fn decline_report(&self, checkpoint_id: u64, reason: String) -> Report {
        Report::Decline(CheckpointDecline {
            job_id: self.job_id.clone(),
            epoch: self.epoch,
            checkpoint_id,
            vertex: self.vertex,
            subtask: self.subtask,
            reason,
        })
    }
}

impl SnapshotAcker for TaskAcker {
    fn acknowledge(
        &self,
        barrier: &Barrier,
        snapshots: Vec<(String, OperatorSnapshot)>,
        sync_ms: u64,
        end_of_input: bool,
    ) {
        let me = self.clone();
        let barrier = barrier.clone();
        tokio::spawn(async move {
            let TaskAcker {
                reporter,
                config,
                job_id,
                epoch,
                vertex,
                subtask,
                local,
            } = &me;
            let started = Instant::now();
            let mut operators = Vec::new();
            let mut size = 0u64;
            for (uid, snap) in snapshots {
                match upload(config, &barrier.target_url, &uid, *subtask, snap, local.as_ref()).await {
                    Ok((state, written)) => {
                        size += written;
                        operators.push(OperatorSubtaskState {
                            uid,
                            state: Some(state),
                        });
                    }
                    Err(e) => {
                        tracing::warn!("checkpoint {} of job {job_id}: upload failed: {e}", barrier.id);
                        let reason = format!("uploading the state of {uid} failed: {e}");
                        reporter.send(me.decline_report(barrier.id, reason));
                        return;
                    }
                }
            }
            let async_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            // A rescale's checkpoints are part of its pause: their phases say where it went.
            if barrier.stop || barrier.prepare {
                let now = u64::try_from(sluice_common::wall_ms::wall_ms()).unwrap_or(0);
                let delay = now.saturating_sub(barrier.timestamp_ms + sync_ms + async_ms);
                tracing::info!(
                    "Checkpoint {} ({}) of subtask {subtask} of vertex {vertex}: barrier {delay} ms after the trigger, synchronous part {sync_ms} ms, upload {async_ms} ms ({size} bytes).",
                    barrier.id,
                    if barrier.stop { "stop" } else { "before a stop" },
                );
            }
            reporter.send(Report::Ack(CheckpointAck {
                job_id: job_id.clone(),
                epoch: *epoch,
                checkpoint_id: barrier.id,
                vertex: *vertex,
                subtask: *subtask,
                operators,
                state_size: size,
                sync_duration_ms: sync_ms,
                async_duration_ms: async_ms,
                end_of_input,
            }));
        });
    }

    fn decline(&self, checkpoint_id: u64, reason: String) {
        self.reporter.send(self.decline_report(checkpoint_id, reason));
    }

    fn input_ended(&self) {
        self.reporter.report(TaskStateUpdate {
            job_id: self.job_id.clone(),
            epoch: self.epoch,
            vertex: self.vertex,
            subtask: self.subtask,
            state: TaskState::Running as i32,
            end_of_input: true,
            ..TaskStateUpdate::default()
        });
    }
}
