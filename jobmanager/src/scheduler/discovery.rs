//! Split discovery while an attempt runs (Flink's periodic partition discovery, a file source's
//! directory monitoring): at the shortest discovery interval of its sources, the attempt's
//! enumerators look for new splits and deal them, and each running source subtask gets its
//! share through the `AddSplits` RPC. The job loop awaits those answers before its next
//! checkpoint trigger, so a checkpoint's enumerator states and its barriers agree on which
//! splits the readers hold.

use std::collections::BTreeMap;
use std::time::Instant;

use sluice_common::failure::FailureClass;
use sluice_connectors::DealtSplits;
use sluice_proto::control::{AddSplitsRequest, SubtaskSplits};

use super::states::Attempt;
use super::{Handle, Scheduler};

impl Scheduler {
    /// Discovers and hands out new splits when due. A listing failure that may pass is logged
    /// and tried again at the next interval; any other failure is the attempt's (new splits
    /// that may not have reached their readers are dealt again from the last checkpoint).
    pub(super) async fn discover_splits(&self, handle: &Handle, attempt: &mut Attempt) -> Result<(), String> {
        let interval = attempt
            .enumerators
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .discovery_interval();
        let Some(interval) = interval else {
            return Ok(());
        };
        // The first look is one interval after the attempt started running.
        let now = Instant::now();
        if now < *attempt.next_discovery.get_or_insert(now + interval) {
            return Ok(());
        }
        attempt.next_discovery = Some(now + interval);
        let enumerators = attempt.enumerators.clone();
        let found =
            tokio::task::spawn_blocking(move || enumerators.lock().unwrap_or_else(|p| p.into_inner()).discover())
                .await
                .map_err(|e| format!("Split discovery failed: {e}"))?;
        let dealt = match found {
            Ok(dealt) => dealt,
            Err(e) if e.class == FailureClass::Transient => {
                tracing::warn!("Split discovery failed, trying again in {interval:?}: {e}");
                return Ok(());
            }
            Err(e) => return Err(format!("Split discovery failed: {e}")),
        };
        if dealt.is_empty() {
            return Ok(());
        }
        for (resource_id, request) in self.add_splits_requests(handle, attempt.epoch, dealt)? {
            let tm = attempt
                .tms
                .iter()
                .find(|t| t.resource_id == resource_id)
                .ok_or_else(|| format!("TaskManager {resource_id} is not part of the attempt"))?;
            let n: usize = request.splits.iter().map(|s| s.splits.len()).sum();
            tm.gateway
                .add_splits(request)
                .await
                .map_err(|e| format!("Handing {n} new splits to TaskManager {resource_id} failed: {e}"))?;
            tracing::info!("Handed {n} new splits to TaskManager {resource_id}.");
        }
        Ok(())
    }

    /// The dealt splits as one request per taskmanager and source vertex.
    fn add_splits_requests(
        &self,
        handle: &Handle,
        epoch: u64,
        dealt: Vec<DealtSplits>,
    ) -> Result<Vec<(String, AddSplitsRequest)>, String> {
        let job = handle.lock();
        let mut requests: BTreeMap<(String, u32), AddSplitsRequest> = BTreeMap::new();
        for d in dealt {
            let vertex = job
                .graph
                .vertices
                .iter()
                .find(|v| v.nodes.iter().any(|&n| job.graph.nodes[n].uid == d.uid))
                .map(|v| v.index as u32)
                .ok_or_else(|| format!("The job has no source with uid {}", d.uid))?;
            let (_, resource_id) = job
                .tasks
                .get(&(vertex, d.subtask))
                .ok_or_else(|| format!("Source subtask {} of vertex {vertex} is not deployed", d.subtask))?;
            requests
                .entry((resource_id.clone(), vertex))
                .or_insert_with(|| AddSplitsRequest {
                    job_id: job.id.clone(),
                    epoch,
                    vertex,
                    splits: Vec::new(),
                })
                .splits
                .push(SubtaskSplits {
                    node_uid: d.uid,
                    subtask: d.subtask,
                    splits: d.splits,
                });
        }
        Ok(requests.into_iter().map(|((tm, _), r)| (tm, r)).collect())
    }
}
