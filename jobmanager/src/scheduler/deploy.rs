//! Deploying an attempt: the checkpoint it restores, the sources' split enumerators (restored
//! with it), subtask i of every vertex into the allocated slots (one request per taskmanager,
//! with every subtask's location and the source splits the enumerators dealt it), the
//! checkpoint coordinator of the attempt, and cancelling an attempt on its taskmanagers.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use sluice_common::config::options::*;
use sluice_common::job::plan::to_plan;
use sluice_common::job::{JobGraph, Vertex};
use sluice_common::storage::{checkpoint_url, decode_metadata, encode_metadata, job_url, open_location};
use sluice_connectors::{RestoredEnumerators, SourceEnumerators};
use sluice_proto::control::{CancelJobRequest, SubmitTasksRequest, SubtaskSplits, TaskAddress, TaskLocation};

use super::job::TaskStatus;
use crate::checkpoint::Coordinator;
use crate::resource_manager::{now_ms, TaskManagerRecord};

use super::*;

/// The slots each taskmanager of an allocation holds (`counts[i]` of them), in allocation
/// order: slot i runs subtask i of every vertex.
pub(super) fn slot_ranges(counts: impl IntoIterator<Item = u32>) -> Vec<Range<u32>> {
    let mut first = 0u32;
    counts
        .into_iter()
        .map(|n| {
            first += n;
            first - n..first
        })
        .collect()
}

/// The vertex subtasks that run in `slots`.
pub(super) fn subtasks_in(graph: &JobGraph, slots: Range<u32>) -> impl Iterator<Item = (&Vertex, u32)> {
    graph
        .vertices
        .iter()
        .flat_map(move |v| slots.clone().filter(|s| *s < v.parallelism).map(move |s| (v, s)))
}

impl Scheduler {
    /// What the attempt restores: the latest checkpoint this jobmanager completed, as it holds
    /// it; else (a jobmanager that took over the job) the latest completed one in the
    /// checkpoint storage, an unusable newest one skipped with a logged reason; else the
    /// snapshot the job was started from.
    pub(super) async fn restore_point(&self, handle: &Handle) -> Result<Option<(String, Vec<u8>)>, String> {
        let (job_id, config, initial) = {
            let job = handle.lock();
            (job.id.clone(), job.config.clone(), job.restore.clone())
        };
        if let Some(dir) = cfg(config.get_opt(&CHECKPOINTS_DIR))? {
            let history = handle.lock().checkpoint_history.clone();
            let known = history.lock().unwrap_or_else(|p| p.into_inner()).latest.clone();
            if let Some((id, url, metadata)) = known {
                tracing::info!("Restoring job {job_id} from checkpoint {id} ({url}).");
                return Ok(Some((url, metadata)));
            }
            let store = sluice_common::storage::CheckpointStore::new(open_location(&dir, &config)?, &job_id);
            if let Some(m) = store.latest_complete().await? {
                let url = checkpoint_url(&dir, &job_id, m.checkpoint_id);
                tracing::info!("Restoring job {job_id} from checkpoint {} ({url}).", m.checkpoint_id);
                return Ok(Some((url, encode_metadata(&m).to_vec())));
            }
        }
        Ok(initial.map(|r| (r.url, encode_metadata(&r.metadata).to_vec())))
    }

    /// Deploys onto the allocated slots and follows the attempt to its end.
    /// Deploys the job onto the allocated slots (restoring the latest completed checkpoint, or
    /// the snapshot the job started from); the taskmanagers it reached go into `attempt`.
    pub(super) async fn deploy(
        &self,
        handle: &Arc<Handle>,
        allocation: Vec<(TaskManagerRecord, u32)>,
        attempt: &mut states::Attempt,
    ) -> Result<(), String> {
        let epoch = self.next_epoch.fetch_add(1, Ordering::Relaxed);
        attempt.epoch = epoch;
        let restore = self
            .restore_point(handle)
            .await
            .map_err(|e| format!("Cannot read the checkpoints: {e}"))?;
        // Slot i → its taskmanager.
        let slots: Vec<&TaskManagerRecord> = allocation
            .iter()
            .flat_map(|(r, n)| std::iter::repeat_n(r, *n as usize))
            .collect();
        let needed = handle.lock().graph.slots_needed() as usize;
        if slots.len() < needed {
            return Err(format!(
                "The job needs {needed} slots at its parallelism, but only {} were allocated.",
                slots.len()
            ));
        }
        let (mut request_base, graph) = {
            let mut job = handle.lock();
            job.epoch = epoch;
            let graph = job.graph.clone();
            for v in &graph.vertices {
                for s in 0..v.parallelism {
                    job.tasks.insert(
                        (v.index as u32, s),
                        (TaskStatus::Deploying, slots[s as usize].resource_id.clone()),
                    );
                }
            }
            if let Some((url, bytes)) = &restore {
                if let Ok(m) = decode_metadata(bytes) {
                    job.checkpoints.lock().unwrap_or_else(|p| p.into_inner()).restored =
                        Some((m.checkpoint_id, url.clone(), now_ms()));
                    // Ids go on after the restored one (as Flink's do): a job recovered by a
                    // new jobmanager must not write checkpoint 1 again beside its newer ones.
                    let mut history = job.checkpoint_history.lock().unwrap_or_else(|p| p.into_inner());
                    history.next_id = history.next_id.max(m.checkpoint_id + 1);
                }
            }
            let job_config = state_config(&job);
            let checkpoint_url = job
                .config
                .get_opt(&CHECKPOINTS_DIR)
                .ok()
                .flatten()
                .filter(|_| job.config.get_opt(&CHECKPOINT_INTERVAL).ok().flatten().is_some())
                .map(|d| job_url(&d, &job.id))
                .unwrap_or_default();
            let base = SubmitTasksRequest {
                job_id: job.id.clone(),
                epoch,
                job_name: job.name.clone(),
                job_config,
                checkpoint_url,
                restore_metadata: restore.as_ref().map(|r| r.1.clone()).unwrap_or_default(),
                restore_url: restore.as_ref().map(|r| r.0.clone()).unwrap_or_default(),
                allow_non_restored_state: job.restore.as_ref().is_some_and(|r| r.allow_non_restored_state),
                ..Default::default()
            };
            (base, graph)
        };
        // The compiled graph of this attempt (its planned parallelism included): the
        // taskmanagers build their tasks from it and never see the job file.
        request_base.plan = Some(to_plan(&graph).map_err(|e| format!("Encoding the job's plan failed: {e}"))?);
        // The sources' enumerators start (from the restored checkpoint's enumerator states)
        // and deal their splits (listing them may touch files or external systems, so off the
        // async workers). They live as long as the attempt: checkpoints snapshot them and
        // sources that discover get new splits from them while running.
        let restored = restored_enumerators(restore.as_ref().map(|r| r.1.as_slice()))?;
        let (enumerators, dealt) = {
            let graph = graph.clone();
            tokio::task::spawn_blocking(move || {
                SourceEnumerators::start(&graph, sluice_connectors::registry(), &restored)
            })
            .await
            .map_err(|e| format!("Enumerating the source splits failed: {e}"))?
            .map_err(|e| format!("Enumerating the source splits failed: {e}"))?
        };
        *attempt.enumerators.lock().unwrap_or_else(|p| p.into_inner()) = enumerators;
        let locations: Vec<TaskLocation> = graph
            .vertices
            .iter()
            .flat_map(|v| (0..v.parallelism).map(move |s| (v.index as u32, s)))
            .map(|(vertex, subtask)| TaskLocation {
                vertex,
                subtask,
                data_address: slots[subtask as usize].data_address(),
            })
            .collect();
        if let Some(p) = handle.lock().pending_rescale.as_mut() {
            p.deploying = Some(std::time::Instant::now());
        }
        // Every taskmanager fetches and opens its state at once (one after another would add
        // their restore times up).
        let mut submits = Vec::new();
        for ((tm, n), mine) in allocation.iter().zip(slot_ranges(allocation.iter().map(|(_, n)| *n))) {
            let tasks: Vec<TaskAddress> = subtasks_in(&graph, mine.clone())
                .map(|(v, subtask)| TaskAddress {
                    vertex: v.index as u32,
                    subtask,
                })
                .collect();
            let source_splits = dealt
                .iter()
                .filter(|d| mine.contains(&d.subtask))
                .map(|d| SubtaskSplits {
                    node_uid: d.uid.clone(),
                    subtask: d.subtask,
                    splits: d.splits.clone(),
                })
                .collect();
            let request = SubmitTasksRequest {
                tasks,
                locations: locations.clone(),
                slots: *n,
                source_splits,
                ..request_base.clone()
            };
            submits.push(async move { (tm, tm.gateway.submit_tasks(request).await) });
        }
        let (mut download_ms, mut restore_ms, mut failed) = (0, 0, None);
        for (tm, answer) in futures::future::join_all(submits).await {
            match answer {
                Ok(a) => {
                    download_ms = a.download_ms.max(download_ms);
                    restore_ms = a.restore_ms.max(restore_ms);
                    attempt.tms.push(tm.clone());
                }
                Err(message) => {
                    failed.get_or_insert(format!(
                        "Deployment to TaskManager {} failed: {message}",
                        tm.resource_id
                    ));
                }
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        if let Some(p) = handle.lock().pending_rescale.as_mut() {
            (p.download_ms, p.restore_ms) = (download_ms, restore_ms);
        }
        Ok(())
    }

    pub(super) async fn cancel_on(&self, tms: &[TaskManagerRecord], job_id: &str, epoch: u64) {
        for tm in tms {
            let _ = tm
                .gateway
                .cancel_job(CancelJobRequest {
                    job_id: job_id.to_string(),
                    epoch,
                })
                .await;
        }
    }

    pub(super) fn coordinator(&self, handle: &Handle, attempt: &states::Attempt) -> Result<Coordinator, String> {
        let (tms, epoch) = (&attempt.tms, attempt.epoch);
        let job = handle.lock();
        Ok(Coordinator::new(
            checkpoint_settings(&job.config)?,
            job.config.clone(),
            job.id.clone(),
            epoch,
            job.graph.clone(),
            tms.to_vec(),
            job.checkpoints.clone(),
            job.checkpoint_history.clone(),
        )
        .with_enumerators(attempt.enumerators.clone())
        .with_leadership(self.settings.ha.as_ref().map(|ha| ha.leadership.clone()))
        .with_standby(state_config(&job)))
    }
}

/// The job's keys a taskmanager's state backends and restores read (the effective
/// configuration: the cluster's with the job file's overrides).
pub(super) fn state_config(job: &Job) -> HashMap<String, String> {
    job.config
        .entries()
        .filter(|(k, _)| {
            ["state.", "execution.checkpointing.", "execution.state-recovery."]
                .iter()
                .any(|p| k.starts_with(p))
        })
        .map(|(k, e)| (k.clone(), e.value.clone()))
        .collect()
}

/// What the restored checkpoint (its encoded metadata) tells the enumerators: their states, and
/// which operators restore state.
fn restored_enumerators(metadata: Option<&[u8]>) -> Result<RestoredEnumerators, String> {
    let Some(bytes) = metadata else {
        return Ok(RestoredEnumerators::default());
    };
    let m = decode_metadata(bytes).map_err(|e| format!("Cannot read the restored checkpoint's metadata: {e}"))?;
    Ok(RestoredEnumerators {
        states: m.enumerators.into_iter().map(|e| (e.uid, e.state)).collect(),
        restored_uids: m.operators.into_iter().map(|o| o.uid).collect(),
    })
}
