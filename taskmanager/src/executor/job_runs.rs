//! The job attempts running on this taskmanager: their cancel switch, the slots they hold,
//! how many of their subtasks are still running, and each subtask's metrics (for heartbeats
//! and Prometheus) while it runs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use sluice_proto::control::TaskDigest;
use tokio::sync::{mpsc, watch};

use super::SlotTable;
use crate::runtime::checkpointing::TaskControl;
use crate::runtime::metrics::TaskMetrics;

/// A running subtask's identity and counters.
#[derive(Clone)]
pub(crate) struct TaskEntry {
    pub job_id: String,
    pub job_name: String,
    pub vertex: u32,
    pub vertex_id: String,
    pub task_name: String,
    pub subtask: u32,
    pub metrics: Arc<TaskMetrics>,
    pub is_source: bool,
    pub control: mpsc::UnboundedSender<TaskControl>,
}

struct JobRun {
    cancel: watch::Sender<bool>,
    running: usize,
    slots: u32,
}

#[derive(Default)]
struct Inner {
    runs: HashMap<(String, u64), JobRun>,
    tasks: HashMap<(String, u64, u32, u32), TaskEntry>,
}

#[derive(Default, Clone)]
pub(crate) struct JobRuns {
    inner: Arc<Mutex<Inner>>,
}

impl JobRuns {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a deployment of `tasks` subtasks holding `slots`; returns its cancel signal.
    pub(crate) fn start(
        &self,
        job: &str,
        epoch: u64,
        tasks: usize,
        slots: u32,
        table: &SlotTable,
    ) -> Result<watch::Receiver<bool>, String> {
        let mut inner = self.lock();
        let key = (job.to_string(), epoch);
        if inner.runs.contains_key(&key) {
            return Err(format!("job {job} attempt {epoch} is already deployed here"));
        }
        table.take(slots)?;
        let (cancel, rx) = watch::channel(false);
        inner.runs.insert(
            key,
            JobRun {
                cancel,
                running: tasks,
                slots,
            },
        );
        Ok(rx)
    }

    pub(crate) fn add_task(&self, epoch: u64, entry: TaskEntry) {
        self.lock()
            .tasks
            .insert((entry.job_id.clone(), epoch, entry.vertex, entry.subtask), entry);
    }

    /// A subtask ended; when it was the job's last here, its slots are freed.
    pub(crate) fn task_ended(&self, job: &str, epoch: u64, vertex: u32, subtask: u32, table: &SlotTable) {
        let mut inner = self.lock();
        inner.tasks.remove(&(job.to_string(), epoch, vertex, subtask));
        let key = (job.to_string(), epoch);
        let done = match inner.runs.get_mut(&key) {
            Some(run) => {
                run.running = run.running.saturating_sub(1);
                run.running == 0
            }
            None => false,
        };
        if done {
            if let Some(run) = inner.runs.remove(&key) {
                table.give_back(run.slots);
            }
        }
    }

    /// Cancels every attempt running here (the jobmanager was lost: it has failed them, and
    /// their results would no longer be accepted). Returns how many were cancelled.
    pub(crate) fn cancel_all(&self) -> usize {
        let inner = self.lock();
        for run in inner.runs.values() {
            let _ = run.cancel.send(true);
        }
        inner.runs.len()
    }

    /// Signals cancellation to every subtask of the attempt; false when none runs here.
    pub(crate) fn cancel(&self, job: &str, epoch: u64) -> bool {
        match self.lock().runs.get(&(job.to_string(), epoch)) {
            Some(run) => {
                let _ = run.cancel.send(true);
                true
            }
            None => false,
        }
    }

    /// Abandons a registration whose deployment failed.
    pub(crate) fn abandon(&self, job: &str, epoch: u64, table: &SlotTable) {
        if let Some(run) = self.lock().runs.remove(&(job.to_string(), epoch)) {
            table.give_back(run.slots);
        }
    }

    /// The running subtasks of one attempt.
    pub(crate) fn tasks_of(&self, job: &str, epoch: u64) -> Vec<TaskEntry> {
        self.lock()
            .tasks
            .iter()
            .filter(|((j, e, _, _), _)| j == job && *e == epoch)
            .map(|(_, t)| t.clone())
            .collect()
    }

    /// The control channel of subtask `subtask` of vertex `vertex`, while it runs here.
    pub(crate) fn control_of(
        &self,
        job: &str,
        epoch: u64,
        vertex: u32,
        subtask: u32,
    ) -> Option<mpsc::UnboundedSender<TaskControl>> {
        self.lock()
            .tasks
            .get(&(job.to_string(), epoch, vertex, subtask))
            .map(|t| t.control.clone())
    }

    pub(crate) fn tasks(&self) -> Vec<TaskEntry> {
        self.lock().tasks.values().cloned().collect()
    }

    pub(crate) fn digests(&self) -> Vec<TaskDigest> {
        let now = std::time::Instant::now();
        self.tasks()
            .into_iter()
            .map(|t| {
                let s = t.metrics.sample_at(now);
                let r = t.metrics.rates_at(now);
                TaskDigest {
                    job_id: t.job_id,
                    vertex: t.vertex,
                    subtask: t.subtask,
                    records_in: s.records_in,
                    records_out: s.records_out,
                    busy_ms: s.busy_ns / 1_000_000,
                    backpressured_ms: s.backpressured_ns / 1_000_000,
                    idle_ms: s.idle_ns / 1_000_000,
                    records_in_per_second: r.records_in,
                    records_out_per_second: r.records_out,
                    busy_ms_per_second: r.busy_ms,
                    backpressured_ms_per_second: r.backpressured_ms,
                    idle_ms_per_second: r.idle_ms,
                    input_watermark: t.metrics.input_watermark.load(std::sync::atomic::Ordering::Relaxed),
                    first_record_ms: t.metrics.first_record_ms.load(std::sync::atomic::Ordering::Relaxed),
                    pending_records: t
                        .metrics
                        .operator
                        .snapshot()
                        .into_iter()
                        .find(|((name, labels), _)| name == "pendingRecords" && labels.is_empty())
                        .map(|(_, v)| v),
                }
            })
            .collect()
    }
}
