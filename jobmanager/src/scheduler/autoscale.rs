//! The autoscaler's seat in the scheduler: while every subtask of a job runs, each look hands
//! the job's latest subtask digests and the cluster's slots to its `JobAutoscaler` and acts on
//! what it decides: a rescale goes through the stop-with-checkpoint (as resource requirements
//! do), a taskmanager command runs in the background with its outcome logged and shown.

use std::sync::Mutex;
use std::time::Instant;

use sluice_connectors::SourceEnumerators;

use sluice_common::job::graph::{EdgePartition, NodeKind};

use crate::autoscaler::{Action, Slots, VertexInfo};
use crate::checkpoint::Coordinator;

use super::*;

impl Scheduler {
    /// `GET /jobs/:id/autoscaler`: every decision and the latest evaluated metrics.
    pub(crate) fn autoscaler(&self, id: &str) -> Result<serde_json::Value, SchedulerError> {
        let handle = self.handle(id)?;
        let job = handle.lock();
        Ok(job.autoscaler.as_ref().map_or_else(
            || serde_json::json!({"enabled": false, "decisions": [], "vertices": []}),
            |a| a.to_json(),
        ))
    }

    /// One autoscaler look at a running job holding `held` slots; `true` once a rescale's
    /// stop is under way.
    pub(super) async fn autoscale(
        &self,
        handle: &Arc<Handle>,
        held: u32,
        coordinator: &mut Coordinator,
        enumerators: &Mutex<SourceEnumerators>,
    ) -> bool {
        if handle.lock().autoscaler.is_none() {
            return false;
        }
        // Read before the job's lock is taken: never hold both.
        let splits = enumerators.lock().map(|e| e.split_counts()).unwrap_or_default();
        let (tms, total, free) = self.registry.totals();
        let slots = Slots {
            held,
            free,
            taskmanagers: tms as u32,
            per_taskmanager: if tms == 0 { 1 } else { total / tms as u32 },
        };
        let actions = {
            let mut job = handle.lock();
            let (graph, epoch, id) = (job.graph.clone(), job.epoch, job.id.clone());
            let Some(a) = job.autoscaler.as_mut() else {
                return false;
            };
            let digests: Vec<_> = self
                .registry
                .task_digests()
                .into_iter()
                .filter(|d| d.job_id == id)
                .collect();
            let vertices: Vec<VertexInfo> = graph
                .vertices
                .iter()
                .map(|v| {
                    let inputs: Vec<_> = graph.edges.iter().filter(|e| e.target == v.index).collect();
                    VertexInfo {
                        id: v.id.clone(),
                        parallelism: v.parallelism,
                        inputs: inputs.iter().map(|e| e.source).collect(),
                        source: v
                            .nodes
                            .first()
                            .is_some_and(|n| matches!(graph.nodes[*n].kind, NodeKind::Source { .. })),
                        keyed: inputs.iter().any(|e| matches!(e.partition, EdgePartition::Hash(_))),
                        // A source's splits (Kafka: its partitions), from its enumerator.
                        partitions: v
                            .nodes
                            .first()
                            .and_then(|n| splits.get(&graph.nodes[*n].uid))
                            .and_then(|c| u32::try_from(*c).ok())
                            .filter(|c| *c > 0),
                    }
                })
                .collect();
            let names: Vec<String> = graph.vertices.iter().map(|v| v.name.clone()).collect();
            a.tick(
                Instant::now(),
                now_ms(),
                epoch,
                &vertices,
                &names,
                graph.max_parallelism,
                &digests,
                slots,
            )
        };
        let mut rescaling = false;
        for action in actions {
            match action {
                Action::Command { taskmanagers, slots } => self.run_taskmanager_command(handle, taskmanagers, slots),
                Action::Rescale { parallelism, cause } => {
                    if !Self::begin_rescale(handle, coordinator, cause, "as the autoscaler decided").await {
                        return false;
                    }
                    handle.lock().plan_vertex_parallelism(&parallelism);
                    rescaling = true;
                }
            }
        }
        rescaling
    }

    /// Runs `sluice.autoscaler.taskmanager-command` with `{taskmanagers}` and `{slots}` filled
    /// in, through `sh -c`, in the background; its outcome is logged and kept for REST.
    fn run_taskmanager_command(&self, handle: &Arc<Handle>, taskmanagers: u32, slots: u32) {
        let Some(template) = handle
            .lock()
            .autoscaler
            .as_ref()
            .and_then(|a| a.settings.taskmanager_command.clone())
        else {
            return;
        };
        let command = template
            .replace("{taskmanagers}", &taskmanagers.to_string())
            .replace("{slots}", &slots.to_string());
        tracing::info!("Autoscaler: asking for {taskmanagers} taskmanager(s): {command}");
        let handle = handle.clone();
        tokio::spawn(async move {
            let out = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(&command)
                .output()
                .await;
            let outcome = match out {
                Ok(o) if o.status.success() => format!("'{command}' succeeded"),
                Ok(o) => format!(
                    "'{command}' failed ({}): {}",
                    o.status,
                    String::from_utf8_lossy(&o.stderr).trim()
                ),
                Err(e) => format!("'{command}' could not run: {e}"),
            };
            tracing::info!("Autoscaler: {outcome}");
            if let Some(a) = handle.lock().autoscaler.as_mut() {
                a.last_command = Some(outcome);
            }
        });
    }
}
