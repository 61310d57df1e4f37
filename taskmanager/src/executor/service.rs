//! The taskmanager's gRPC gateway (`TaskManagerService`): the jobmanager's reachability check,
//! deploying subtasks (all of a request or none, with their restored state fetched first) and
//! cancelling a job attempt, and the checkpoint messages: triggers go to the attempt's source
//! subtasks, completions and abortions to all of them. Each subtask reports RUNNING, then FINISHED, FAILED
//! (with the cause) or CANCELED.

use crate::error::TaskError;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sluice_common::config::options::{
    CheckpointingMode, CHECKPOINTS_AFTER_TASKS_FINISH, CHECKPOINTS_DIR, CHECKPOINT_INCREMENTAL, CHECKPOINT_INTERVAL,
    CHECKPOINT_MODE, LOCAL_BACKUP_ENABLED, ROCKSDB_DELETE_FILES_IN_RANGE, ROCKSDB_FILE_PER_KEY_GROUP,
    ROCKSDB_WRITE_BUFFER_RATIO, STATE_BACKEND, STATE_RECOVERY_FROM_LOCAL, STATE_RECOVERY_STANDBY_COPIES,
    TABLE_EXEC_STATE_TTL,
};
use sluice_common::config::Configuration;
use sluice_common::ha::FENCING_TOKEN_HEADER;
use sluice_common::job::plan::from_plan;
use sluice_common::job::JobGraph;
use sluice_common::state::assignment::assign;
use sluice_common::state::KeyGroupRange;
use sluice_common::storage::decode_metadata;
use sluice_proto::control::task_manager_service_server::TaskManagerService;
use sluice_proto::control::{
    AddSplitsRequest, AddSplitsResponse, CancelJobRequest, CancelJobResponse, CheckpointAckResponse,
    DescribeTaskManagerRequest, NotifyCheckpointRequest, PrefetchStateRequest, PrefetchStateResponse,
    SubmitTasksRequest, SubmitTasksResponse, TaskManagerDescription, TaskState, TaskStateUpdate,
    TriggerCheckpointRequest,
};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use super::checkpoint_acker::TaskAcker;
use super::deploy::{prepare, run, Deployment};
use super::job_runs::{JobRuns, TaskEntry};
use super::permits::PermitClient;
use super::reporter::StateReporter;
use super::SlotTable;
use crate::network::{Barrier, NetworkEnvironment};
use crate::runtime::build::TaskContext;
use crate::runtime::checkpointing::TaskControl;
use crate::runtime::task::CheckpointHooks;
use crate::state::local_copy::LocalCopies;
use crate::state::transfer::{fetch, needed_shared, prefetch};
use crate::state::StateSettings;

/// What state backends of this taskmanager are given: its configuration (storage keys), each
/// slot's share of task heap and managed memory, and the working directory.
#[derive(Clone)]
pub(crate) struct StateEnv {
    pub config: Arc<Configuration>,
    pub heap_per_slot: u64,
    pub managed_per_slot: u64,
    pub tmp_dir: PathBuf,
    /// This taskmanager's directory of local state copies (`local_copy::tm_root`).
    pub local_root: PathBuf,
}

pub(crate) struct TaskManagerGateway {
    resource_id: String,
    slots: Arc<SlotTable>,
    network: Arc<NetworkEnvironment>,
    runs: JobRuns,
    reporter: StateReporter,
    state: StateEnv,
    /// The newest fencing token a jobmanager registered this taskmanager under.
    fence: Arc<AtomicU64>,
}

impl TaskManagerGateway {
    pub(crate) fn new(
        resource_id: String,
        slots: Arc<SlotTable>,
        network: Arc<NetworkEnvironment>,
        runs: JobRuns,
        reporter: StateReporter,
        state: StateEnv,
        fence: Arc<AtomicU64>,
    ) -> Self {
        TaskManagerGateway {
            resource_id,
            slots,
            network,
            runs,
            reporter,
            state,
            fence,
        }
    }

    /// Refuses a request from a jobmanager whose HA lease is older than the newest this
    /// taskmanager registered under: a deposed leader (paused, partitioned) acts no more.
    fn check_fence<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let token = request
            .metadata()
            .get(FENCING_TOKEN_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        let newest = self.fence.load(Ordering::SeqCst);
        if token < newest {
            return Err(Status::failed_precondition(format!(
                "refused: the request carries fencing token {token}, but a jobmanager with token {newest} leads now"
            )));
        }
        Ok(())
    }

    fn settings(&self, config: &Configuration, job_id: &str) -> Result<StateSettings, String> {
        Ok(StateSettings {
            backend: config.get(&STATE_BACKEND)?,
            incremental: config.get(&CHECKPOINT_INCREMENTAL)?,
            heap_budget: self.state.heap_per_slot,
            managed_budget: self.state.managed_per_slot,
            write_buffer_ratio: f64::from(config.get(&ROCKSDB_WRITE_BUFFER_RATIO)?),
            tmp_dir: self.state.tmp_dir.clone(),
            max_parallelism: 128,
            key_groups: KeyGroupRange::new(0, 0),
            task_name: String::new(),
            default_ttl: Some(config.get(&TABLE_EXEC_STATE_TTL)?).filter(|t| !t.is_zero()),
            // Unset, local backup follows local recovery (Flink's fallback key).
            local_backup: match config.get_opt(&LOCAL_BACKUP_ENABLED)? {
                Some(on) => on,
                None => config.get(&STATE_RECOVERY_FROM_LOCAL)?,
            }
            .then(|| LocalCopies::new(&self.state.local_root, job_id)),
            delete_files_in_range: config.get(&ROCKSDB_DELETE_FILES_IN_RANGE)?,
            sst_per_key_group: config.get(&ROCKSDB_FILE_PER_KEY_GROUP)?,
        })
    }

    /// Each task's context, with its share of the restored snapshot fetched.
    async fn contexts(
        &self,
        req: &SubmitTasksRequest,
        graph: &JobGraph,
        tasks: &[(usize, u32)],
        config: &Configuration,
        settings: &StateSettings,
    ) -> Result<HashMap<(usize, u32), TaskContext>, String> {
        let local = config
            .get(&STATE_RECOVERY_FROM_LOCAL)?
            .then(|| LocalCopies::new(&self.state.local_root, &req.job_id));
        let metadata = if req.restore_metadata.is_empty() {
            None
        } else {
            Some(decode_metadata(&req.restore_metadata).map_err(|e| format!("restored metadata: {e}"))?)
        };
        let mut out = HashMap::new();
        let mut dealt: HashMap<(String, u32), Vec<Vec<u8>>> = req
            .source_splits
            .iter()
            .map(|s| ((s.node_uid.clone(), s.subtask), s.splits.clone()))
            .collect();
        for &(vertex, subtask) in tasks {
            let mut restore = HashMap::new();
            let splits = graph.vertices[vertex]
                .nodes
                .iter()
                .filter_map(|&n| {
                    let uid = &graph.nodes[n].uid;
                    dealt.remove(&(uid.clone(), subtask)).map(|s| (uid.clone(), s))
                })
                .collect();
            if let Some(m) = &metadata {
                for &n in &graph.vertices[vertex].nodes {
                    let node = &graph.nodes[n];
                    if let Some(assigned) = assign(m, &node.uid, node.parallelism, subtask) {
                        let data = fetch(
                            &self.state.config,
                            &req.restore_url,
                            assigned,
                            &self.state.tmp_dir,
                            local.as_ref(),
                        )
                        .await?;
                        restore.insert(node.uid.clone(), data);
                    }
                }
            }
            out.insert(
                (vertex, subtask),
                TaskContext {
                    epoch: req.epoch,
                    state: settings.clone(),
                    restore,
                    splits,
                    permits: Some(PermitClient {
                        client: self.reporter.client(),
                        job_id: req.job_id.clone(),
                        epoch: req.epoch,
                        resource_id: self.resource_id.clone(),
                    }),
                },
            );
        }
        // Every restore holds its files now: copies no restore took are of no use, but for
        // standby copies (the next standby round keeps those its checkpoint holds).
        if let Some(copies) = settings.local_backup.clone() {
            let standby = config.get(&STATE_RECOVERY_STANDBY_COPIES)?;
            let _ = tokio::task::spawn_blocking(move || copies.drop_unlinked(standby)).await;
        }
        Ok(out)
    }

    fn controls(&self, job: &str, epoch: u64, sources_only: bool) -> Vec<mpsc::UnboundedSender<TaskControl>> {
        self.runs
            .tasks_of(job, epoch)
            .into_iter()
            .filter(|t| !sources_only || t.is_source)
            .map(|t| t.control)
            .collect()
    }
}

/// Whether subtasks that reach the end of their input wait for a final checkpoint: the job
/// checkpoints (an interval and a directory) and
/// `execution.checkpointing.checkpoints-after-tasks-finish` is on (Flink's default).
fn final_checkpoints(config: &Configuration) -> Result<bool, String> {
    Ok(config.get_opt(&CHECKPOINT_INTERVAL)?.is_some()
        && config.get_opt(&CHECKPOINTS_DIR)?.is_some()
        && config.get(&CHECKPOINTS_AFTER_TASKS_FINISH)?)
}

#[tonic::async_trait]
impl TaskManagerService for TaskManagerGateway {
    async fn describe_task_manager(
        &self,
        _request: Request<DescribeTaskManagerRequest>,
    ) -> Result<Response<TaskManagerDescription>, Status> {
        Ok(Response::new(TaskManagerDescription {
            resource_id: self.resource_id.clone(),
            slots: Some(self.slots.report()),
        }))
    }

    async fn submit_tasks(
        &self,
        request: Request<SubmitTasksRequest>,
    ) -> Result<Response<SubmitTasksResponse>, Status> {
        self.check_fence(&request)?;
        let req = request.into_inner();
        // The jobmanager's compiled graph; the job file never reaches a taskmanager.
        let plan = req
            .plan
            .as_ref()
            .ok_or_else(|| Status::invalid_argument("the request carries no job plan"))?;
        let graph = Arc::new(from_plan(plan).map_err(Status::invalid_argument)?);
        let tasks: Vec<(usize, u32)> = req.tasks.iter().map(|t| (t.vertex as usize, t.subtask)).collect();
        for (v, s) in &tasks {
            let ok = graph.vertices.get(*v).is_some_and(|vx| *s < vx.parallelism);
            if !ok {
                return Err(Status::invalid_argument(format!(
                    "job has no subtask {s} of vertex {v}"
                )));
            }
        }
        let locations: HashMap<(usize, u32), String> = req
            .locations
            .iter()
            .map(|l| ((l.vertex as usize, l.subtask), l.data_address.clone()))
            .collect();
        // The job's effective configuration: this taskmanager's, with the job's keys on top.
        let config = self.state.config.overlaid(&req.job_config);
        let exactly_once = config
            .get(&CHECKPOINT_MODE)
            .map_err(|e| Status::invalid_argument(e.to_string()))?
            == CheckpointingMode::ExactlyOnce;
        let final_checkpoint = final_checkpoints(&config).map_err(Status::invalid_argument)?;
        let restoring_state = |e: String| Status::failed_precondition(format!("restoring state: {e}"));
        let settings = self.settings(&config, &req.job_id).map_err(restoring_state)?;
        let fetching = std::time::Instant::now();
        let contexts = self
            .contexts(&req, &graph, &tasks, &config, &settings)
            .await
            .map_err(restoring_state)?;
        let download_ms = fetching.elapsed().as_millis() as u64;
        let restoring = std::time::Instant::now();
        let cancel = self
            .runs
            .start(&req.job_id, req.epoch, tasks.len(), req.slots, &self.slots)
            .map_err(Status::resource_exhausted)?;
        // Building the tasks opens their restored state (RocksDB files, ingests): blocking
        // work, off the async workers.
        let deployment = Deployment {
            epoch: req.epoch,
            graph: graph.clone(),
            tasks,
            locations,
            contexts,
        };
        let network = self.network.clone();
        let prepared = match tokio::task::spawn_blocking(move || prepare(&network, deployment))
            .await
            .unwrap_or_else(|e| Err(format!("building the tasks failed: {e}")))
        {
            Ok(p) => p,
            Err(e) => {
                self.runs.abandon(&req.job_id, req.epoch, &self.slots);
                return Err(Status::resource_exhausted(e));
            }
        };
        let restore_ms = restoring.elapsed().as_millis() as u64;
        tracing::info!(
            "Deploying {} subtasks of job {} ({}) attempt {} (state fetched in {download_ms} ms, opened in {restore_ms} ms).",
            prepared.len(),
            req.job_name,
            req.job_id,
            req.epoch
        );
        for task in prepared {
            let vertex = &graph.vertices[task.vertex];
            let (control_tx, control_rx) = mpsc::unbounded_channel();
            let entry = TaskEntry {
                job_id: req.job_id.clone(),
                job_name: req.job_name.clone(),
                vertex: task.vertex as u32,
                vertex_id: vertex.id.clone(),
                task_name: vertex.name.clone(),
                subtask: task.subtask,
                metrics: task.metrics.clone(),
                is_source: task.is_source(),
                control: control_tx,
            };
            self.runs.add_task(req.epoch, entry.clone());
            let hooks = CheckpointHooks {
                control: control_rx,
                acker: Arc::new(TaskAcker {
                    reporter: self.reporter.clone(),
                    config: self.state.config.clone(),
                    job_id: req.job_id.clone(),
                    epoch: req.epoch,
                    vertex: task.vertex as u32,
                    subtask: task.subtask,
                    local: settings.local_backup.clone(),
                }),
                exactly_once,
                final_checkpoint,
                last_snapshot: 0,
                unanswered_trigger: None,
            };
            let update = move |state: TaskState, failure: Option<TaskError>| TaskStateUpdate {
                job_id: entry.job_id.clone(),
                epoch: req.epoch,
                vertex: entry.vertex,
                subtask: entry.subtask,
                state: state as i32,
                failure_class: failure.as_ref().map_or(0, |f| f.class.to_wire()),
                failure: failure.map(|f| f.message).unwrap_or_default(),
                ..TaskStateUpdate::default()
            };
            let (reporter, runs, slots, network, mut cancel) = (
                self.reporter.clone(),
                self.runs.clone(),
                self.slots.clone(),
                self.network.clone(),
                cancel.clone(),
            );
            let (job_id, epoch, name, parallelism) =
                (req.job_id.clone(), req.epoch, vertex.name.clone(), vertex.parallelism);
            tokio::spawn(async move {
                reporter.report(update(TaskState::Running, None));
                let (vertex, subtask) = (task.vertex as u32, task.subtask);
                let outcome = tokio::select! {
                    r = run(network, task, hooks) => r.map(|_| TaskState::Finished),
                    _ = cancel.wait_for(|c| *c) => Ok(TaskState::Canceled),
                };
                let (state, failure) = match outcome {
                    Ok(state) => (state, None),
                    Err(e) => {
                        tracing::warn!(
                            "{name} ({}/{parallelism}) of job {job_id} failed ({} failure): {e}",
                            subtask + 1,
                            e.class.name()
                        );
                        (
                            TaskState::Failed,
                            Some(e.context(format!("{name} ({}/{parallelism})", subtask + 1))),
                        )
                    }
                };
                runs.task_ended(&job_id, epoch, vertex, subtask, &slots);
                reporter.report(update(state, failure));
            });
        }
        Ok(Response::new(SubmitTasksResponse {
            download_ms,
            restore_ms,
        }))
    }

    async fn cancel_job(&self, request: Request<CancelJobRequest>) -> Result<Response<CancelJobResponse>, Status> {
        self.check_fence(&request)?;
        let req = request.into_inner();
        if self.runs.cancel(&req.job_id, req.epoch) {
            tracing::info!("Cancelling job {} attempt {}.", req.job_id, req.epoch);
        }
        Ok(Response::new(CancelJobResponse {}))
    }

    async fn trigger_checkpoint(
        &self,
        request: Request<TriggerCheckpointRequest>,
    ) -> Result<Response<CheckpointAckResponse>, Status> {
        self.check_fence(&request)?;
        let req = request.into_inner();
        let barrier = Barrier {
            id: req.checkpoint_id,
            timestamp_ms: req.timestamp_ms,
            savepoint: req.savepoint,
            target_url: req.target_url.as_str().into(),
            stop: req.stop,
            prepare: req.prepare_stop,
        };
        // Sources start the barrier; a subtask past the end of its input (waiting for its final
        // checkpoint) snapshots on the trigger itself; the others ignore it.
        for control in self.controls(&req.job_id, req.epoch, false) {
            let _ = control.send(TaskControl::Trigger(barrier.clone(), req.drain));
        }
        Ok(Response::new(CheckpointAckResponse {}))
    }

    async fn notify_checkpoint_complete(
        &self,
        request: Request<NotifyCheckpointRequest>,
    ) -> Result<Response<CheckpointAckResponse>, Status> {
        self.check_fence(&request)?;
        let req = request.into_inner();
        for control in self.controls(&req.job_id, req.epoch, false) {
            let _ = control.send(TaskControl::Complete(req.checkpoint_id, req.end_of_input));
        }
        Ok(Response::new(CheckpointAckResponse {}))
    }

    async fn notify_checkpoint_aborted(
        &self,
        request: Request<NotifyCheckpointRequest>,
    ) -> Result<Response<CheckpointAckResponse>, Status> {
        self.check_fence(&request)?;
        let req = request.into_inner();
        for control in self.controls(&req.job_id, req.epoch, false) {
            let _ = control.send(TaskControl::Abort(req.checkpoint_id));
        }
        Ok(Response::new(CheckpointAckResponse {}))
    }

    async fn add_splits(&self, request: Request<AddSplitsRequest>) -> Result<Response<AddSplitsResponse>, Status> {
        self.check_fence(&request)?;
        let req = request.into_inner();
        for s in req.splits {
            let queued = self
                .runs
                .control_of(&req.job_id, req.epoch, req.vertex, s.subtask)
                .is_some_and(|control| {
                    control
                        .send(TaskControl::AddSplits(s.node_uid.clone(), s.splits))
                        .is_ok()
                });
            if !queued {
                return Err(Status::failed_precondition(format!(
                    "source '{}' subtask {} of job {} attempt {} does not run on this TaskManager",
                    s.node_uid, s.subtask, req.job_id, req.epoch
                )));
            }
        }
        Ok(Response::new(AddSplitsResponse {}))
    }

    async fn prefetch_state(
        &self,
        request: Request<PrefetchStateRequest>,
    ) -> Result<Response<PrefetchStateResponse>, Status> {
        self.check_fence(&request)?;
        let req = request.into_inner();
        let config = self.state.config.overlaid(&req.job_config);
        let from_local = config
            .get(&STATE_RECOVERY_FROM_LOCAL)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        if !from_local {
            return Ok(Response::new(PrefetchStateResponse::default()));
        }
        let metadata = decode_metadata(&req.metadata)
            .map_err(|e| Status::invalid_argument(format!("prefetched checkpoint's metadata: {e}")))?;
        let assigned: Vec<_> = req
            .tasks
            .iter()
            .filter_map(|t| assign(&metadata, &t.node_uid, t.parallelism, t.subtask))
            .collect();
        let copies = LocalCopies::new(&self.state.local_root, &req.job_id);
        let (started, round_start) = (std::time::Instant::now(), std::time::SystemTime::now());
        let needed = needed_shared(&assigned);
        let (files, bytes) = prefetch(&self.state.config, &req.url, &needed, &copies)
            .await
            .map_err(|e| Status::unavailable(format!("prefetching checkpoint {}: {e}", metadata.checkpoint_id)))?;
        let what = if req.standby {
            let _ = tokio::task::spawn_blocking(move || copies.drop_stale_standby(&needed, round_start)).await;
            "as standby copies"
        } else {
            "for the subtasks this TaskManager runs after the rescale"
        };
        tracing::info!(
            "Prefetched {files} state files ({bytes} bytes) of checkpoint {} of job {} {what}, in {} ms.",
            metadata.checkpoint_id,
            req.job_id,
            started.elapsed().as_millis()
        );
        Ok(Response::new(PrefetchStateResponse { files, bytes }))
    }
}
