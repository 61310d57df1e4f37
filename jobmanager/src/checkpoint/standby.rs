//! Standby copies (`execution.state-recovery.standby-copies`, with local recovery and
//! incremental RocksDB checkpoints): after each completed periodic checkpoint, every
//! taskmanager of the attempt fetches that checkpoint's SST files it lacks into its local
//! copies and drops the copies the checkpoint no longer holds (a `PrefetchState` request
//! marked `standby`, naming every stateful subtask). A failover or scale-down then restores
//! the key groups it takes over from another taskmanager from local files, as Kafka Streams'
//! standby replicas, instead of downloading them in the pause. Rounds run in the background,
//! one at a time: a checkpoint that completes while one runs gets none (the next round fetches
//! what both added).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use sluice_common::job::JobGraph;
use sluice_proto::control::{PrefetchStateRequest, PrefetchTask};

use crate::resource_manager::TaskManagerRecord;

/// The attempt's standby rounds.
#[derive(Debug)]
pub(crate) struct Standby {
    /// The job's state keys, as a deployment sends them.
    job_config: HashMap<String, String>,
    /// Every subtask of every operator: a standby copy holds the whole job's state.
    tasks: Vec<PrefetchTask>,
    running: Arc<AtomicBool>,
}

impl Standby {
    pub(crate) fn new(graph: &JobGraph, job_config: HashMap<String, String>) -> Standby {
        let tasks = graph
            .nodes
            .iter()
            .flat_map(|n| {
                (0..n.parallelism).map(|subtask| PrefetchTask {
                    node_uid: n.uid.clone(),
                    parallelism: n.parallelism,
                    subtask,
                })
            })
            .collect();
        Standby {
            job_config,
            tasks,
            running: Arc::default(),
        }
    }

    /// Starts a round for the completed checkpoint at `url` (its encoded `_metadata`), unless
    /// one still runs; `false` then.
    pub(crate) fn start(&self, tms: &[TaskManagerRecord], job_id: &str, url: &str, metadata: &[u8]) -> bool {
        if self.running.swap(true, Ordering::SeqCst) {
            return false;
        }
        let request = PrefetchStateRequest {
            job_id: job_id.to_string(),
            job_config: self.job_config.clone(),
            metadata: metadata.to_vec(),
            url: url.to_string(),
            tasks: self.tasks.clone(),
            standby: true,
        };
        let tms = tms.to_vec();
        let running = self.running.clone();
        tokio::spawn(async move {
            let asked = tms.iter().map(|tm| {
                let request = request.clone();
                async move { (tm, tm.gateway.prefetch_state(request).await) }
            });
            for (tm, answer) in futures::future::join_all(asked).await {
                match answer {
                    Ok(a) if a.files > 0 => tracing::debug!(
                        "TaskManager {} fetched {} standby state files ({} bytes).",
                        tm.resource_id,
                        a.files,
                        a.bytes
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(
                        "TaskManager {} could not fetch its standby state copies: {e}",
                        tm.resource_id
                    ),
                }
            }
            running.store(false, Ordering::SeqCst);
        });
        true
    }
}
