//! Scheduling (DESIGN §9): a submitted job waits for the slots it needs (its largest vertex
//! parallelism, with slot sharing) up to `jobmanager.adaptive-scheduler.resource-wait-timeout`,
//! takes them, deploys subtask i of every vertex into slot i (restoring the latest completed
//! checkpoint, or the savepoint it was started from), and follows its subtasks' states to
//! FINISHED, CANCELED or a failure. A failure restarts the job under its restart strategy
//! (`restart`) and fails it with the cause when the strategy gives up. While it runs, the
//! checkpoint coordinator (`crate::checkpoint`) takes checkpoints and savepoints. In reactive
//! mode (`reactive`) every attempt runs at the parallelism the job's share of slots allows, a
//! running job scales up by stop-with-checkpoint and redeploy, and down by failover.
//!
//! This file holds the scheduler's state and what it is told (task states, acks, requests);
//! by concern: `submit` (a job file becomes a job), `deploy` (an attempt onto taskmanagers,
//! its restore point, split enumerators and checkpoint coordinator), `discovery` (new splits
//! for running sources), `rescale` (reactive policy, resource requirements, rescale records),
//! `states/` (the lifecycle, one file per state).

mod autoscale;
mod deploy;
mod discovery;
mod error;
pub(crate) mod job;
mod prefetch;
pub(crate) use error::SchedulerError;
pub(crate) mod reactive;
pub(crate) mod requirements;
mod rescale;
pub(crate) mod restart;
mod states;
mod submit;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sluice_common::config::options::*;
use sluice_common::config::Configuration;
use sluice_common::failure::is_consequence;
use sluice_proto::control::{CheckpointAck, CheckpointDecline, TaskState, TaskStateUpdate};
use tokio::sync::{mpsc, Notify};

use crate::checkpoint::{CheckpointSettings, SavepointRequest};
use crate::resource_manager::{now_ms, Registry};
use job::{CheckpointMessage, Job, JobState, TaskStatus};

const POLL: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
pub(crate) struct SchedulerSettings {
    pub default_parallelism: u32,
    pub resource_wait_timeout: Duration,
    /// The cluster configuration (checkpointing, state backend and restart keys are read per
    /// job, with the job file's overrides on top).
    pub config: Configuration,
    /// HA services (`high-availability.type: object-store`): submitted jobs are kept there.
    pub ha: Option<Arc<crate::ha::HaServices>>,
}

fn cfg<T>(r: Result<T, sluice_common::config::ConfigError>) -> Result<T, String> {
    r.map_err(|e| e.to_string())
}

fn checkpoint_settings(c: &Configuration) -> Result<CheckpointSettings, String> {
    let incremental_rocksdb =
        cfg(c.get(&CHECKPOINT_INCREMENTAL))? && cfg(c.get(&STATE_BACKEND))? == StateBackendKind::RocksDb;
    let from_local = cfg(c.get(&STATE_RECOVERY_FROM_LOCAL))?;
    Ok(CheckpointSettings {
        interval: cfg(c.get_opt(&CHECKPOINT_INTERVAL))?,
        timeout: cfg(c.get(&CHECKPOINT_TIMEOUT))?,
        min_pause: cfg(c.get(&CHECKPOINT_MIN_PAUSE))?,
        max_concurrent: cfg(c.get(&CHECKPOINT_MAX_CONCURRENT))?.get(),
        tolerable_failures: cfg(c.get(&CHECKPOINT_TOLERABLE_FAILED))?,
        retained: cfg(c.get(&CHECKPOINTS_RETAINED))?.get(),
        dir: cfg(c.get_opt(&CHECKPOINTS_DIR))?,
        savepoint_dir: cfg(c.get_opt(&SAVEPOINTS_DIR))?,
        prepare_stop: cfg(c.get(&RESCALE_ACTIVE_CHECKPOINT))? && incremental_rocksdb,
        prefetch_before_stop: from_local && cfg(c.get(&ROCKSDB_RESCALE_PREFETCH))?,
        standby: from_local && cfg(c.get(&STATE_RECOVERY_STANDBY_COPIES))? && incremental_rocksdb,
    })
}

/// Options of a submission besides the job file (kept with the job in the HA store).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct SubmitOptions {
    /// Configuration from `run -D key=value`: over the job file's `config:`.
    pub dynamic: Vec<(String, String)>,
    pub parallelism: Option<u32>,
    /// `run -s`: a savepoint or retained checkpoint directory (or its `_metadata`).
    pub savepoint_path: Option<String>,
    pub allow_non_restored_state: bool,
    /// A recovered job keeps the id it was submitted under (HA); new ones get a fresh id.
    pub job_id: Option<String>,
}

/// What a job's loop is told from outside (REST, the CLI, taskmanagers), in the order it was
/// said; the loop takes commands in at each look at its attempt.
pub(crate) enum JobCommand {
    Cancel,
    Savepoint(SavepointRequest),
    Checkpoint(CheckpointMessage),
    /// `PUT /jobs/:id/resource-requirements` changed what the attempt must fit.
    RequirementsChanged,
}

/// A job as the scheduler shares it: its state (read by REST, written by its loop), and the
/// channel of commands to its loop.
struct Handle {
    job: Mutex<Job>,
    changed: Notify,
    commands: mpsc::UnboundedSender<JobCommand>,
}

impl Handle {
    fn lock(&self) -> MutexGuard<'_, Job> {
        self.job.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tells the job's loop (which ended, for a job that ended: then nobody listens).
    fn send(&self, command: JobCommand) {
        let _ = self.commands.send(command);
        self.changed.notify_one();
    }
}

#[derive(Clone)]
pub(crate) struct Scheduler {
    jobs: Arc<Mutex<BTreeMap<String, Arc<Handle>>>>,
    registry: Registry,
    settings: SchedulerSettings,
    next_epoch: Arc<AtomicU64>,
}

impl Scheduler {
    pub(crate) fn new(registry: Registry, settings: SchedulerSettings) -> Self {
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

    fn handle(&self, id: &str) -> Result<Arc<Handle>, SchedulerError> {
        self.handles()
            .get(id)
            .cloned()
            .ok_or_else(|| SchedulerError::not_found(id))
    }

    /// Requests a savepoint (optionally stopping the job); the trigger id names the request.
    pub(crate) fn savepoint(&self, id: &str, request: SavepointRequest) -> Result<String, SchedulerError> {
        let handle = self.handle(id)?;
        let job = handle.lock();
        if job.state != JobState::Running {
            return Err(SchedulerError::WrongState(format!(
                "Job {id} is not running (it is {}).",
                job.state.name()
            )));
        }
        let trigger = request.trigger_id.clone();
        job.checkpoints
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .savepoints
            .insert(trigger.clone(), crate::checkpoint::SavepointStatus::InProgress);
        drop(job);
        handle.send(JobCommand::Savepoint(request));
        Ok(trigger)
    }

    pub(crate) fn on_checkpoint_ack(&self, ack: CheckpointAck) {
        self.deliver(ack.job_id.clone(), CheckpointMessage::Ack(ack));
    }

    pub(crate) fn on_checkpoint_decline(&self, decline: CheckpointDecline) {
        self.deliver(decline.job_id.clone(), CheckpointMessage::Decline(decline));
    }

    fn deliver(&self, job_id: String, message: CheckpointMessage) {
        if let Some(handle) = self.handles().get(&job_id).cloned() {
            handle.send(JobCommand::Checkpoint(message));
        }
    }

    /// Whether a job runs on taskmanager `resource_id` that moves off when it leaves: a
    /// reactive job that checkpoints (a rescale by stop-with-checkpoint; others fail over when
    /// it is gone).
    pub(crate) fn moves_off(&self, resource_id: &str) -> bool {
        let handles: Vec<Arc<Handle>> = self.handles().values().cloned().collect();
        handles.iter().any(|h| {
            let job = h.lock();
            job.reactive
                && !job.state.is_terminal()
                && job.config.get_opt(&CHECKPOINTS_DIR).ok().flatten().is_some()
                && job.tasks.values().any(|(_, tm)| tm == resource_id)
        })
    }

    pub(crate) fn jobs(&self) -> Vec<Job> {
        self.handles().values().map(|h| h.lock().clone()).collect()
    }

    pub(crate) fn job(&self, id: &str) -> Option<Job> {
        self.handles().get(id).map(|h| h.lock().clone())
    }

    /// Requests cancellation; `Err` when the job is unknown.
    pub(crate) fn cancel(&self, id: &str) -> Result<(), SchedulerError> {
        let handle = self.handle(id)?;
        handle.send(JobCommand::Cancel);
        Ok(())
    }

    /// A subtask's state from its taskmanager; updates of other attempts are ignored.
    pub(crate) fn on_task_state(&self, update: &TaskStateUpdate) {
        let Some(handle) = self.handles().get(&update.job_id).cloned() else {
            return;
        };
        let mut job = handle.lock();
        if job.epoch != update.epoch {
            return;
        }
        let status = match TaskState::try_from(update.state) {
            Ok(TaskState::Running) if update.end_of_input => TaskStatus::Finishing,
            Ok(TaskState::Running) => TaskStatus::Running,
            Ok(TaskState::Finished) => TaskStatus::Finished,
            Ok(TaskState::Failed) => TaskStatus::Failed,
            Ok(TaskState::Canceled) => TaskStatus::Canceled,
            _ => return,
        };
        if let Some(entry) = job.tasks.get_mut(&(update.vertex, update.subtask)) {
            // A subtask in its finishing phase does not go back to running.
            let back_to_running = entry.0 == TaskStatus::Finishing && status == TaskStatus::Running;
            if !entry.0.is_terminal() && !back_to_running {
                entry.0 = status;
            }
        }
        // The first failure is the cause, unless it only reports another task's end (a broken
        // channel) and that task's own failure comes after it.
        let root_after_consequence = job.failure_task.is_some()
            && job.failure.as_deref().is_some_and(is_consequence)
            && !is_consequence(&update.failure);
        if status == TaskStatus::Failed && (job.failure.is_none() || root_after_consequence) {
            job.failure = Some(update.failure.clone());
            job.failure_task = Some((update.vertex, update.subtask));
            job.failure_class = Some(sluice_common::failure::FailureClass::from_wire(update.failure_class));
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

    /// The id allocation hands out for a savepoint trigger when the caller gives none.
    pub(crate) fn new_trigger_id() -> String {
        uuid::Uuid::new_v4().simple().to_string()
    }
}
