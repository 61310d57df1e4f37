//! A rescale's prefetch: once the checkpoint a prepared stop took while the job ran has
//! completed, each taskmanager the new attempt is expected on (`Registry::predict`, at the
//! parallelism the rescale plans) fetches into its local state copies the files of that
//! checkpoint its subtasks will restore. The stop waits for it (`Coordinator::hold_stop`), so
//! the restore in the pause downloads only what the stop's own checkpoint added. A wrong
//! guess (the slots changed meanwhile) costs only the fetch: a restore takes local files by
//! name and downloads the others, and a deployment drops the copies no restore took.

use sluice_common::job::JobGraph;
use sluice_common::storage::encode_metadata;
use sluice_proto::control::{PrefetchStateRequest, PrefetchTask};

use super::deploy::{slot_ranges, state_config, subtasks_in};
use super::*;
use crate::checkpoint::PreparedCheckpoint;
use crate::resource_manager::TaskManagerRecord;

impl Scheduler {
    /// Starts the prefetch of `prepared` for the attempt after the stop of the attempt that
    /// holds `held`; the task ends when every taskmanager answered (a failure is logged, the
    /// restore then downloads). Its figures go into the pending rescale.
    pub(super) fn prefetch_for_rescale(
        &self,
        handle: &Arc<Handle>,
        held: &[(String, u32)],
        prepared: PreparedCheckpoint,
        reactive: bool,
    ) -> tokio::task::JoinHandle<()> {
        let requests = self.prefetch_requests(handle, held, &prepared, reactive);
        let handle = handle.clone();
        tokio::spawn(async move {
            let requests = match requests {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!("No prefetch before the rescale: {e}");
                    return;
                }
            };
            let started = std::time::Instant::now();
            let asked = requests
                .into_iter()
                .map(|(tm, request)| async move { (tm.resource_id.clone(), tm.gateway.prefetch_state(request).await) });
            let (mut files, mut bytes) = (0u32, 0u64);
            for (tm, answer) in futures::future::join_all(asked).await {
                match answer {
                    Ok(a) => {
                        files += a.files;
                        bytes += a.bytes;
                    }
                    Err(e) => tracing::warn!("TaskManager {tm} could not prefetch state before the rescale: {e}"),
                }
            }
            let ms = started.elapsed().as_millis() as u64;
            tracing::info!(
                "Prefetched {files} state files ({bytes} bytes) of checkpoint {} before the rescale, in {ms} ms.",
                prepared.metadata.checkpoint_id
            );
            if let Some(p) = handle.lock().pending_rescale.as_mut() {
                p.prefetch = Some((ms, bytes));
            }
        })
    }

    /// One request per taskmanager the new attempt is expected on, naming the subtasks it
    /// will run there.
    fn prefetch_requests(
        &self,
        handle: &Handle,
        held: &[(String, u32)],
        prepared: &PreparedCheckpoint,
        reactive: bool,
    ) -> Result<Vec<(TaskManagerRecord, PrefetchStateRequest)>, String> {
        let target = reactive.then(|| self.reactive_target(handle));
        let (graph, job_id, job_config) = {
            let job = handle.lock();
            (self.plan_at(&job, target)?, job.id.clone(), state_config(&job))
        };
        let needed = target.unwrap_or_else(|| graph.slots_needed());
        let placed = self.registry.predict(needed, held);
        let metadata = encode_metadata(&prepared.metadata).to_vec();
        Ok(slot_tasks(&graph, &placed.iter().map(|(_, n)| *n).collect::<Vec<_>>())
            .into_iter()
            .zip(placed)
            .filter(|(tasks, _)| !tasks.is_empty())
            .map(|(tasks, (tm, _))| {
                let request = PrefetchStateRequest {
                    job_id: job_id.clone(),
                    job_config: job_config.clone(),
                    metadata: metadata.clone(),
                    url: prepared.url.clone(),
                    tasks,
                    standby: false,
                };
                (tm, request)
            })
            .collect())
    }
}

/// The operator subtasks of `graph` on each of the taskmanagers that hold `slots[i]` slots,
/// placed as `deploy` places them.
fn slot_tasks(graph: &JobGraph, slots: &[u32]) -> Vec<Vec<PrefetchTask>> {
    slot_ranges(slots.iter().copied())
        .into_iter()
        .map(|mine| {
            subtasks_in(graph, mine)
                .flat_map(|(v, subtask)| {
                    v.nodes.iter().map(move |&i| PrefetchTask {
                        node_uid: graph.nodes[i].uid.clone(),
                        parallelism: graph.nodes[i].parallelism,
                        subtask,
                    })
                })
                .collect()
        })
        .collect()
}
