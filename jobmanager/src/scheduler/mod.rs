//! Scheduling (DESIGN §9): a submitted job waits for the slots it needs (its largest vertex
//! parallelism, with slot sharing) up to `jobmanager.adaptive-scheduler.resource-wait-timeout`,
//! takes them, deploys subtask i of every vertex into slot i, and follows its subtasks'
//! states to FINISHED, FAILED (cancelling the rest, with the cause) or CANCELED.

pub mod job;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sluice_common::config::format_duration;
use sluice_common::job::{compile_job, GraphOptions};
use sluice_proto::control::{
    CancelJobRequest, SubmitTasksRequest, TaskAddress, TaskLocation, TaskState, TaskStateUpdate,
};
use tokio::sync::Notify;

use crate::resource_manager::{now_ms, Registry, TaskManagerRecord};
use job::{Job, JobState, TaskStatus};

/// How long cancelling or failing waits for subtasks to report before giving up on them.
const STOP_GRACE: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
pub struct SchedulerSettings {
    pub default_parallelism: u32,
    pub resource_wait_timeout: Duration,
}

struct Handle {
    job: Mutex<Job>,
    changed: Notify,
}

impl Handle {
    fn lock(&self) -> MutexGuard<'_, Job> {
        self.job.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Clone)]
pub struct Scheduler {
    jobs: Arc<Mutex<BTreeMap<String, Arc<Handle>>>>,
    registry: Registry,
    settings: SchedulerSettings,
    next_epoch: Arc<AtomicU64>,
}

impl Scheduler {
    pub fn new(registry: Registry, settings: SchedulerSettings) -> Self {
        // Epochs are unique across jobmanager restarts too: start from the clock.
        Scheduler {
            jobs: Arc::default(),
            registry,
            settings,
            next_epoch: Arc::new(AtomicU64::new(now_ms() << 16)),
        }
    }

    fn handles(&self) -> MutexGuard<'_, BTreeMap<String, Arc<Handle>>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Compiles and starts a job; the error text names file, line and column.
    pub fn submit(&self, yaml: String, file: String, parallelism: Option<u32>) -> Result<String, String> {
        let options = GraphOptions {
            default_parallelism: self.settings.default_parallelism,
            parallelism,
            node_parallelism: BTreeMap::new(),
        };
        let graph = compile_job(&yaml, &file, &options).map_err(|e| e.to_string())?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let now = now_ms();
        let mut timestamps = BTreeMap::new();
        timestamps.insert(JobState::Created.name(), now);
        let job = Job {
            id: id.clone(),
            name: graph.name.clone(),
            yaml,
            file,
            parallelism,
            graph: Arc::new(graph),
            state: JobState::Created,
            timestamps,
            start_time: now,
            end_time: None,
            epoch: 0,
            tasks: HashMap::new(),
            failure: None,
            cancel_requested: false,
        };
        tracing::info!(
            "Received job {} ({id}) needing {} slots.",
            job.name,
            job.graph.slots_needed()
        );
        let handle = Arc::new(Handle {
            job: Mutex::new(job),
            changed: Notify::new(),
        });
        self.handles().insert(id.clone(), handle.clone());
        tokio::spawn(self.clone().drive(handle));
        Ok(id)
    }

    pub fn jobs(&self) -> Vec<Job> {
        self.handles().values().map(|h| h.lock().clone()).collect()
    }

    pub fn job(&self, id: &str) -> Option<Job> {
        self.handles().get(id).map(|h| h.lock().clone())
    }

    /// Requests cancellation; `Err` when the job is unknown.
    pub fn cancel(&self, id: &str) -> Result<(), String> {
        let handle = self
            .handles()
            .get(id)
            .cloned()
            .ok_or_else(|| format!("Job {id} not found"))?;
        handle.lock().cancel_requested = true;
        handle.changed.notify_one();
        Ok(())
    }

    /// A subtask's state from its taskmanager; updates of other attempts are ignored.
    pub fn on_task_state(&self, update: &TaskStateUpdate) {
        let Some(handle) = self.handles().get(&update.job_id).cloned() else {
            return;
        };
        let mut job = handle.lock();
        if job.epoch != update.epoch {
            return;
        }
        let status = match TaskState::try_from(update.state) {
            Ok(TaskState::Running) => TaskStatus::Running,
            Ok(TaskState::Finished) => TaskStatus::Finished,
            Ok(TaskState::Failed) => TaskStatus::Failed,
            Ok(TaskState::Canceled) => TaskStatus::Canceled,
            _ => return,
        };
        if let Some(entry) = job.tasks.get_mut(&(update.vertex, update.subtask)) {
            if !entry.0.is_terminal() {
                entry.0 = status;
            }
        }
        if status == TaskStatus::Failed && job.failure.is_none() {
            job.failure = Some(update.failure.clone());
        }
        drop(job);
        handle.changed.notify_one();
    }

    async fn wait(handle: &Handle) {
        let _ = tokio::time::timeout(POLL, handle.changed.notified()).await;
    }

    fn fail(handle: &Handle, cause: String) {
        let mut job = handle.lock();
        job.failure.get_or_insert(cause);
        job.transition(JobState::Failed, now_ms());
    }

    async fn drive(self, handle: Arc<Handle>) {
        let (needed, wait) = {
            let job = handle.lock();
            (job.graph.slots_needed(), self.settings.resource_wait_timeout)
        };
        // 1. Slots.
        let deadline = tokio::time::Instant::now() + wait;
        let allocation = loop {
            if handle.lock().cancel_requested {
                handle.lock().transition(JobState::Canceled, now_ms());
                return;
            }
            if let Some(a) = self.registry.allocate(needed) {
                break a;
            }
            if tokio::time::Instant::now() >= deadline {
                let (tms, total, free) = self.registry.totals();
                Self::fail(
                    &handle,
                    format!(
                        "Could not acquire the minimum required resources: the job needs {needed} slots, but only {free} of {total} slots (on {tms} taskmanagers) were available after waiting {} (jobmanager.adaptive-scheduler.resource-wait-timeout).",
                        format_duration(wait)
                    ),
                );
                return;
            }
            Self::wait(&handle).await;
        };
        let held: Vec<(String, u32)> = allocation.iter().map(|(r, n)| (r.resource_id.clone(), *n)).collect();
        self.run(&handle, allocation).await;
        self.registry.release(&held);
    }

    /// Deploys onto the allocated slots and follows the job to a terminal state.
    async fn run(&self, handle: &Arc<Handle>, allocation: Vec<(TaskManagerRecord, u32)>) {
        let epoch = self.next_epoch.fetch_add(1, Ordering::Relaxed);
        // Slot i → its taskmanager.
        let slots: Vec<&TaskManagerRecord> = allocation
            .iter()
            .flat_map(|(r, n)| std::iter::repeat_n(r, *n as usize))
            .collect();
        let (request_base, graph) = {
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
            job.transition(JobState::Running, now_ms());
            let base = SubmitTasksRequest {
                job_id: job.id.clone(),
                epoch,
                job_yaml: job.yaml.clone(),
                job_file: job.file.clone(),
                default_parallelism: self.settings.default_parallelism,
                parallelism: job.parallelism.unwrap_or(0),
                job_name: job.name.clone(),
                ..Default::default()
            };
            (base, graph)
        };
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
        let mut slot = 0usize;
        let mut deployed: Vec<TaskManagerRecord> = Vec::new();
        for (tm, n) in &allocation {
            let mine: Vec<u32> = (slot as u32..slot as u32 + n).collect();
            slot += *n as usize;
            let tasks: Vec<TaskAddress> = graph
                .vertices
                .iter()
                .flat_map(|v| {
                    mine.iter().filter(|s| **s < v.parallelism).map(move |s| TaskAddress {
                        vertex: v.index as u32,
                        subtask: *s,
                    })
                })
                .collect();
            let request = SubmitTasksRequest {
                tasks,
                locations: locations.clone(),
                slots: *n,
                ..request_base.clone()
            };
            let mut gateway = tm.gateway.clone();
            if let Err(status) = gateway.submit_tasks(request).await {
                let cause = format!(
                    "Deployment to TaskManager {} failed: {}",
                    tm.resource_id,
                    status.message()
                );
                self.cancel_on(&deployed, &request_base.job_id, epoch).await;
                Self::fail(handle, cause);
                return;
            }
            deployed.push(tm.clone());
        }
        self.follow(handle, &deployed, epoch).await;
    }

    async fn cancel_on(&self, tms: &[TaskManagerRecord], job_id: &str, epoch: u64) {
        for tm in tms {
            let mut gateway = tm.gateway.clone();
            let _ = gateway
                .cancel_job(CancelJobRequest {
                    job_id: job_id.to_string(),
                    epoch,
                })
                .await;
        }
    }

    async fn follow(&self, handle: &Arc<Handle>, tms: &[TaskManagerRecord], epoch: u64) {
        let mut stop_deadline: Option<tokio::time::Instant> = None;
        loop {
            let lost: Vec<String> = tms
                .iter()
                .filter(|t| !self.registry.is_registered(&t.resource_id))
                .map(|t| t.resource_id.clone())
                .collect();
            let (state, job_id, cancel, all_done, any_failed, all_finished) = {
                let mut job = handle.lock();
                for ((_, _), (status, tm)) in job.tasks.iter_mut() {
                    if lost.contains(tm) && !status.is_terminal() {
                        *status = TaskStatus::Failed;
                    }
                }
                // A lost taskmanager is the cause; what its peers reported (broken channels) is
                // a consequence, kept as detail.
                if let Some(tm) = lost.first() {
                    let cause = format!("TaskManager {tm} was lost while running the job.");
                    if !job.failure.as_deref().is_some_and(|f| f.starts_with(&cause)) {
                        job.failure = Some(match job.failure.take() {
                            Some(first) => format!("{cause} First reported task failure: {first}"),
                            None => cause,
                        });
                    }
                }
                let all_done = job.tasks.values().all(|(s, _)| s.is_terminal());
                let any_failed = job.tasks.values().any(|(s, _)| *s == TaskStatus::Failed);
                let all_finished = job.tasks.values().all(|(s, _)| *s == TaskStatus::Finished);
                (
                    job.state,
                    job.id.clone(),
                    job.cancel_requested,
                    all_done,
                    any_failed,
                    all_finished,
                )
            };
            match state {
                JobState::Running if all_finished => {
                    handle.lock().transition(JobState::Finished, now_ms());
                    return;
                }
                JobState::Running if any_failed || cancel => {
                    let next = if any_failed {
                        JobState::Failing
                    } else {
                        JobState::Canceling
                    };
                    handle.lock().transition(next, now_ms());
                    self.cancel_on(tms, &job_id, epoch).await;
                    stop_deadline = Some(tokio::time::Instant::now() + STOP_GRACE);
                }
                JobState::Failing | JobState::Canceling => {
                    let expired = stop_deadline.is_some_and(|d| tokio::time::Instant::now() >= d);
                    if all_done || expired {
                        let end = if state == JobState::Failing {
                            JobState::Failed
                        } else {
                            JobState::Canceled
                        };
                        handle.lock().transition(end, now_ms());
                        return;
                    }
                }
                _ => {}
            }
            Self::wait(handle).await;
        }
    }
}
