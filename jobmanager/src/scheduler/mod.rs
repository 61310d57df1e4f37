//! Scheduling (DESIGN §9): a submitted job waits for the slots it needs (its largest vertex
//! parallelism, with slot sharing) up to `jobmanager.adaptive-scheduler.resource-wait-timeout`,
//! takes them, deploys subtask i of every vertex into slot i (restoring the latest completed
//! checkpoint, or the savepoint it was started from), and follows its subtasks' states to
//! FINISHED, CANCELED or a failure. A failure restarts the job under its restart strategy
//! (`restart`) and fails it with the cause when the strategy gives up. While it runs, the
//! checkpoint coordinator (`crate::checkpoint`) takes checkpoints and savepoints. In reactive
//! mode (`reactive`) every attempt runs at the parallelism the job's share of slots allows, a
//! running job scales up by stop-with-checkpoint and redeploy, and down by failover.

mod error;
pub mod job;
pub use error::SchedulerError;
pub mod reactive;
pub mod requirements;
pub mod restart;
mod states;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sluice_common::config::options::*;
use sluice_common::config::Configuration;
use sluice_common::job::{compile_job, GraphOptions};
use sluice_common::state::assignment::check_max_parallelism;
use sluice_common::storage::{checkpoint_url, decode_metadata, encode_metadata, job_url, location_url, open_location};
use sluice_proto::control::{
    CancelJobRequest, CheckpointAck, CheckpointDecline, SubmitTasksRequest, TaskAddress, TaskLocation, TaskState,
    TaskStateUpdate,
};
use tokio::sync::Notify;

use crate::checkpoint::{CheckpointSettings, Coordinator, SavepointRequest};
use crate::resource_manager::{now_ms, Registry, TaskManagerRecord};
use job::{CheckpointMessage, Job, JobState, RestoreSource, TaskStatus};
use reactive::{PendingRescale, ReactiveSettings, RescaleRecord, ScaleUpWatch};

const POLL: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
pub struct SchedulerSettings {
    pub default_parallelism: u32,
    pub resource_wait_timeout: Duration,
    /// The cluster configuration (checkpointing, state backend and restart keys are read per
    /// job, with the job file's overrides on top).
    pub config: Configuration,
}

fn cfg<T>(r: Result<T, sluice_common::config::ConfigError>) -> Result<T, String> {
    r.map_err(|e| e.to_string())
}

fn checkpoint_settings(c: &Configuration) -> Result<CheckpointSettings, String> {
    Ok(CheckpointSettings {
        interval: cfg(c.get_opt(&CHECKPOINT_INTERVAL))?,
        timeout: cfg(c.get(&CHECKPOINT_TIMEOUT))?,
        min_pause: cfg(c.get(&CHECKPOINT_MIN_PAUSE))?,
        max_concurrent: cfg(c.get(&CHECKPOINT_MAX_CONCURRENT))?.get(),
        tolerable_failures: cfg(c.get(&CHECKPOINT_TOLERABLE_FAILED))?,
        retained: cfg(c.get(&CHECKPOINTS_RETAINED))?.get(),
        dir: cfg(c.get_opt(&CHECKPOINTS_DIR))?,
        savepoint_dir: cfg(c.get_opt(&SAVEPOINTS_DIR))?,
    })
}

/// Options of a submission besides the job file.
#[derive(Debug, Clone, Default)]
pub struct SubmitOptions {
    /// Configuration from `run -D key=value`: over the job file's `config:`.
    pub dynamic: Vec<(String, String)>,
    pub parallelism: Option<u32>,
    /// `run -s`: a savepoint or retained checkpoint directory (or its `_metadata`).
    pub savepoint_path: Option<String>,
    pub allow_non_restored_state: bool,
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

    /// Reads the snapshot a job starts from: `path` is its directory or its `_metadata`.
    async fn read_snapshot(
        &self,
        path: &str,
    ) -> Result<(String, sluice_common::proto::checkpoint::CheckpointMetadata), String> {
        let url = location_url(path.trim_end_matches('/').trim_end_matches("/_metadata"));
        let metadata = open_location(&url, &self.settings.config)?
            .read_metadata()
            .await
            .map_err(|e| format!("Cannot restore from the savepoint at {url}: {e}"))?;
        Ok((url, metadata))
    }

    /// Compiles and starts a job; the error text names file, line and column.
    pub async fn submit(&self, yaml: String, file: String, opts: SubmitOptions) -> Result<String, String> {
        let restore = match &opts.savepoint_path {
            Some(p) => {
                let (url, metadata) = self.read_snapshot(p).await?;
                Some(RestoreSource {
                    url,
                    metadata,
                    allow_non_restored_state: opts.allow_non_restored_state,
                })
            }
            None => None,
        };
        let options = GraphOptions {
            default_parallelism: self.settings.default_parallelism,
            parallelism: opts.parallelism,
            node_parallelism: BTreeMap::new(),
            restored_max_parallelism: restore.as_ref().map(|r| r.metadata.max_parallelism),
        };
        if let Some(r) = &restore {
            // Flink's check first: the graph's own would name the max parallelism it adopted.
            let unbounded = GraphOptions {
                restored_max_parallelism: Some(sluice_common::key_groups::UPPER_BOUND_MAX_PARALLELISM),
                ..options.clone()
            };
            let probe = compile_job(&yaml, &file, &unbounded).map_err(|e| e.to_string())?;
            for v in &probe.vertices {
                check_max_parallelism(&r.metadata, &v.name, v.parallelism)?;
            }
        }
        let graph = compile_job(&yaml, &file, &options).map_err(|e| e.to_string())?;
        // The job's effective configuration: the cluster's, the job file's `config:` on top,
        // then the submitter's `-D` flags.
        let config = self
            .settings
            .config
            .overlaid(graph.config.iter().chain(&opts.dynamic).map(|(k, v)| (k, v)));
        let cp = checkpoint_settings(&config)?;
        let reactive = cfg(config.get_opt(&SCHEDULER_MODE))?.is_some();
        if reactive && (cp.interval.is_none() || cp.dir.is_none()) {
            return Err("Reactive mode (scheduler-mode: reactive) rescales from checkpoints: set execution.checkpointing.interval and execution.checkpointing.dir.".into());
        }
        if let Some(r) = &restore {
            if !r.allow_non_restored_state {
                for op in &r.metadata.operators {
                    if !graph.nodes.iter().any(|n| n.uid == op.uid) {
                        return Err(format!(
                            "Failed to rollback to checkpoint/savepoint {}. Cannot map checkpoint/savepoint state for operator {} to the new program, because the operator is not available in the new program. If you want to allow to skip this, you can set the --allowNonRestoredState option on the CLI.",
                            r.url, op.uid
                        ));
                    }
                }
            }
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        let now = now_ms();
        let mut timestamps = BTreeMap::new();
        timestamps.insert(JobState::Created.name(), now);
        let job = Job {
            id: id.clone(),
            name: graph.name.clone(),
            yaml,
            file,
            parallelism: opts.parallelism,
            graph: Arc::new(graph),
            state: JobState::Created,
            timestamps,
            start_time: now,
            end_time: None,
            epoch: 0,
            tasks: HashMap::new(),
            failure: None,
            failure_class: None,
            waiting: None,
            cancel_requested: false,
            config,
            checkpoints: Arc::default(),
            checkpoint_history: Arc::default(),
            inbox: Vec::new(),
            savepoint_requests: Vec::new(),
            restore,
            reactive,
            rescales: Vec::new(),
            pending_rescale: None,
            requirements: Default::default(),
            requirements_changed: false,
            node_parallelism: BTreeMap::new(),
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
        tokio::spawn(states::drive(self.clone(), handle));
        Ok(id)
    }

    fn handle(&self, id: &str) -> Result<Arc<Handle>, SchedulerError> {
        self.handles()
            .get(id)
            .cloned()
            .ok_or_else(|| SchedulerError::not_found(id))
    }

    /// Requests a savepoint (optionally stopping the job); the trigger id names the request.
    pub fn savepoint(&self, id: &str, request: SavepointRequest) -> Result<String, SchedulerError> {
        let handle = self.handle(id)?;
        let mut job = handle.lock();
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
        job.savepoint_requests.push(request);
        drop(job);
        handle.changed.notify_one();
        Ok(trigger)
    }

    pub fn on_checkpoint_ack(&self, ack: CheckpointAck) {
        self.deliver(ack.job_id.clone(), CheckpointMessage::Ack(ack));
    }

    pub fn on_checkpoint_decline(&self, decline: CheckpointDecline) {
        self.deliver(decline.job_id.clone(), CheckpointMessage::Decline(decline));
    }

    fn deliver(&self, job_id: String, message: CheckpointMessage) {
        if let Some(handle) = self.handles().get(&job_id).cloned() {
            handle.lock().inbox.push(message);
            handle.changed.notify_one();
        }
    }

    pub fn jobs(&self) -> Vec<Job> {
        self.handles().values().map(|h| h.lock().clone()).collect()
    }

    pub fn job(&self, id: &str) -> Option<Job> {
        self.handles().get(id).map(|h| h.lock().clone())
    }

    /// Requests cancellation; `Err` when the job is unknown.
    pub fn cancel(&self, id: &str) -> Result<(), SchedulerError> {
        let handle = self.handle(id)?;
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
    pub fn new_trigger_id() -> String {
        uuid::Uuid::new_v4().simple().to_string()
    }

    /// Reactive mode: the slots to take now, 0 to keep waiting. The job's share if that many
    /// are free; what is free once the slots stayed short for the stabilization timeout.
    fn reactive_slots(&self, handle: &Handle, r: &ReactiveSettings, waiting_since: Instant) -> u32 {
        let want = self.reactive_target(handle);
        let (_, _, free) = self.registry.totals();
        if want > 0 && free >= want {
            want
        } else if free > 0 && want > 0 && waiting_since.elapsed() >= r.stabilization {
            free.min(want)
        } else {
            0
        }
    }

    /// Reactive mode: min(max parallelism, the job's even share of the registered slots).
    fn reactive_target(&self, handle: &Handle) -> u32 {
        let (id, max_parallelism) = {
            let job = handle.lock();
            (job.id.clone(), job.graph.max_parallelism)
        };
        // Called every tick: read the few fields needed, not a clone of every job.
        let handles: Vec<Arc<Handle>> = self.handles().values().cloned().collect();
        let mut jobs: Vec<(u64, String)> = handles
            .iter()
            .filter_map(|h| {
                let j = h.lock();
                (j.reactive && !j.state.is_terminal()).then(|| (j.start_time, j.id.clone()))
            })
            .collect();
        jobs.sort();
        let index = jobs.iter().position(|(_, j)| *j == id).unwrap_or(0);
        let (_, total, _) = self.registry.totals();
        reactive::share(total, index, jobs.len()).min(max_parallelism)
    }

    /// Recompiles the job at parallelism `p` (reactive) or with its submitted parallelism, and
    /// the per-node parallelism the scheduler decided; the max parallelism (the key groups)
    /// stays.
    fn replan(&self, handle: &Handle, p: Option<u32>) -> Result<(), String> {
        let mut job = handle.lock();
        let options = GraphOptions {
            default_parallelism: self.settings.default_parallelism,
            parallelism: p.or(job.parallelism),
            node_parallelism: job.node_parallelism.clone(),
            restored_max_parallelism: Some(job.graph.max_parallelism),
        };
        let graph = compile_job(&job.yaml, &job.file, &options).map_err(|e| e.to_string())?;
        job.graph = Arc::new(graph);
        Ok(())
    }

    /// The job's resource requirements in Flink's body.
    pub fn requirements(&self, id: &str) -> Result<serde_json::Value, SchedulerError> {
        let handle = self.handle(id)?;
        let job = handle.lock();
        Ok(requirements::to_json(&job.graph, &job.requirements))
    }

    /// Sets the job's resource requirements; a running job rescales to fit them.
    pub fn set_requirements(&self, id: &str, body: &serde_json::Value) -> Result<(), SchedulerError> {
        let handle = self.handle(id)?;
        let mut job = handle.lock();
        if job.reactive {
            return Err(SchedulerError::WrongState("Resource requirements cannot be changed in reactive mode (scheduler-mode: reactive): the parallelism follows the slots.".into()));
        }
        if job.state.is_terminal() {
            return Err(SchedulerError::WrongState(format!(
                "Job {id} has already ended ({}).",
                job.state.name()
            )));
        }
        if job.config.get_opt(&CHECKPOINTS_DIR).ok().flatten().is_none() {
            return Err(SchedulerError::BadRequest(
                "Rescaling a job goes through a checkpoint: set execution.checkpointing.dir.".into(),
            ));
        }
        job.requirements = requirements::parse(&job.graph, body).map_err(SchedulerError::BadRequest)?;
        job.requirements_changed = true;
        drop(job);
        handle.changed.notify_one();
        Ok(())
    }

    /// A running job whose requirements changed: when another per-vertex parallelism fits the
    /// slots (those it holds and the free ones), stops it with a checkpoint to rescale.
    async fn maybe_fit_requirements(&self, handle: &Handle, held: u32, coordinator: &mut Coordinator) -> bool {
        let (graph, reqs) = {
            let mut job = handle.lock();
            if !std::mem::take(&mut job.requirements_changed) {
                return false;
            }
            (job.graph.clone(), job.requirements.clone())
        };
        let (_, _, free) = self.registry.totals();
        let Some(target) = requirements::fit(&graph, &reqs, held + free) else {
            tracing::warn!(
                "The resource requirements of job {} do not fit the slots; it keeps its parallelism.",
                graph.name
            );
            return false;
        };
        if graph.vertices.iter().all(|v| target.get(&v.id) == Some(&v.parallelism)) {
            return false;
        }
        let what = format!("to fit its resource requirements ({target:?})");
        if !Self::begin_rescale(handle, coordinator, "resource requirements changed".into(), &what).await {
            return false;
        }
        let mut job = handle.lock();
        for v in &graph.vertices {
            for &n in &v.nodes {
                if let Some(p) = target.get(&v.id) {
                    job.node_parallelism.insert(graph.nodes[n].id.clone(), *p);
                }
            }
        }
        true
    }

    /// What the attempt restores: the latest completed checkpoint (an unusable newest one is
    /// skipped with a logged reason), else the snapshot the job was started from.
    async fn restore_point(&self, handle: &Handle) -> Result<Option<(String, Vec<u8>)>, String> {
        let (job_id, config, initial) = {
            let job = handle.lock();
            (job.id.clone(), job.config.clone(), job.restore.clone())
        };
        if let Some(dir) = cfg(config.get_opt(&CHECKPOINTS_DIR))? {
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
    async fn deploy(
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
            if let Some((url, bytes)) = &restore {
                if let Ok(m) = decode_metadata(bytes) {
                    job.checkpoints.lock().unwrap_or_else(|p| p.into_inner()).restored =
                        Some((m.checkpoint_id, url.clone(), now_ms()));
                }
            }
            let job_config: HashMap<String, String> = job
                .config
                .entries()
                .filter(|(k, _)| k.starts_with("state.") || k.starts_with("execution.checkpointing."))
                .map(|(k, e)| (k.clone(), e.value.clone()))
                .collect();
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
                job_yaml: job.yaml.clone(),
                job_file: job.file.clone(),
                default_parallelism: self.settings.default_parallelism,
                // Reactive: the parallelism this attempt was planned at.
                parallelism: if job.reactive {
                    job.current_parallelism()
                } else {
                    job.parallelism.unwrap_or(0)
                },
                // Every node's planned parallelism, so the taskmanagers build this very graph.
                node_parallelism: graph.nodes.iter().map(|n| (n.id.clone(), n.parallelism)).collect(),
                job_name: job.name.clone(),
                job_config,
                max_parallelism: graph.max_parallelism,
                checkpoint_url,
                restore_metadata: restore.as_ref().map(|r| r.1.clone()).unwrap_or_default(),
                restore_url: restore.as_ref().map(|r| r.0.clone()).unwrap_or_default(),
                allow_non_restored_state: job.restore.as_ref().is_some_and(|r| r.allow_non_restored_state),
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
            if let Err(message) = tm.gateway.submit_tasks(request).await {
                return Err(format!(
                    "Deployment to TaskManager {} failed: {message}",
                    tm.resource_id
                ));
            }
            attempt.tms.push(tm.clone());
        }
        Ok(())
    }

    async fn cancel_on(&self, tms: &[TaskManagerRecord], job_id: &str, epoch: u64) {
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

    fn coordinator(&self, handle: &Handle, tms: &[TaskManagerRecord], epoch: u64) -> Result<Coordinator, String> {
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
        ))
    }

    /// Reactive scale-up: stops the job with a checkpoint when its share of slots grew enough
    /// and the extra slots are free. `true` once the stop is under way.
    async fn maybe_scale_up(
        &self,
        handle: &Handle,
        r: &ReactiveSettings,
        watch: &mut ScaleUpWatch,
        coordinator: &mut Coordinator,
    ) -> bool {
        let (current, vertices) = {
            let job = handle.lock();
            (job.current_parallelism(), job.graph.vertices.len() as u32)
        };
        let desired = self.reactive_target(handle);
        let (_, _, free) = self.registry.totals();
        let fits = desired > current && free >= desired - current;
        if !watch.observe(
            r,
            current * vertices,
            if fits { desired * vertices } else { 0 },
            Instant::now(),
        ) {
            return false;
        }
        let cause = format!("{desired} slots became available to the job");
        Self::begin_rescale(
            handle,
            coordinator,
            cause,
            &format!("from parallelism {current} to {desired}"),
        )
        .await
    }

    /// Stops the job with a checkpoint for a rescale and records the rescale as under way;
    /// `false` when the stop cannot start.
    async fn begin_rescale(handle: &Handle, coordinator: &mut Coordinator, cause: String, what: &str) -> bool {
        let pending = PendingRescale::now(handle.lock().current_parallelism(), cause);
        if !coordinator.stop_with_checkpoint().await {
            return false;
        }
        let mut job = handle.lock();
        tracing::info!(
            "Rescaling job {} ({}) {what}: stopping it with a checkpoint.",
            job.name,
            job.id
        );
        job.pending_rescale = Some(pending);
        true
    }

    /// The first time every task of an attempt runs: a rescale under way is over.
    fn finish_rescale(handle: &Handle) {
        let mut job = handle.lock();
        let Some(pending) = job.pending_rescale.take() else {
            return;
        };
        let to = job.current_parallelism();
        if to == pending.from {
            return;
        }
        let pause_ms = pending.since.elapsed().as_millis() as u64;
        tracing::info!(
            "Job {} ({}) rescaled from parallelism {} to {to} in {pause_ms} ms ({}).",
            job.name,
            job.id,
            pending.from,
            pending.cause
        );
        job.rescales.push(RescaleRecord {
            timestamp_ms: pending.timestamp_ms,
            from: pending.from,
            to,
            cause: pending.cause,
            pause_ms,
        });
    }
}
