//! A job as the scheduler tracks it: its graph, its state (Flink's names), timestamps, the
//! subtasks of its current attempt and where they run, and why it failed.

use sluice_common::failure::FailureClass;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use sluice_common::config::Configuration;
use sluice_common::job::JobGraph;
use sluice_proto::control::{CheckpointAck, CheckpointDecline};

use crate::checkpoint::coordinator::CheckpointHistory;
use crate::checkpoint::CheckpointStats;

use super::reactive::{PendingRescale, RescaleRecord};
use super::requirements::Requirements;

/// A checkpoint message from a taskmanager, waiting for the coordinator.
#[derive(Debug, Clone)]
pub(crate) enum CheckpointMessage {
    Ack(CheckpointAck),
    Decline(CheckpointDecline),
}

/// A snapshot to start the job from (`run -s`).
#[derive(Debug, Clone)]
pub(crate) struct RestoreSource {
    /// URL of the snapshot directory.
    pub url: String,
    pub metadata: sluice_common::proto::checkpoint::CheckpointMetadata,
    pub allow_non_restored_state: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum JobState {
    Created,
    Running,
    Restarting,
    Failing,
    Failed,
    Canceling,
    Canceled,
    Finished,
}

impl JobState {
    pub(crate) fn name(self) -> &'static str {
        match self {
            JobState::Created => "CREATED",
            JobState::Running => "RUNNING",
            JobState::Restarting => "RESTARTING",
            JobState::Failing => "FAILING",
            JobState::Failed => "FAILED",
            JobState::Canceling => "CANCELLING",
            JobState::Canceled => "CANCELED",
            JobState::Finished => "FINISHED",
        }
    }

    pub(crate) fn is_terminal(self) -> bool {
        matches!(self, JobState::Failed | JobState::Canceled | JobState::Finished)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TaskStatus {
    Deploying,
    Running,
    /// Running with its input ended: waiting for its final checkpoint (FLIP-147). Shown as
    /// RUNNING, as Flink shows it.
    Finishing,
    Finished,
    Failed,
    Canceled,
}

impl TaskStatus {
    pub(crate) fn name(self) -> &'static str {
        match self {
            TaskStatus::Deploying => "DEPLOYING",
            TaskStatus::Running | TaskStatus::Finishing => "RUNNING",
            TaskStatus::Finished => "FINISHED",
            TaskStatus::Failed => "FAILED",
            TaskStatus::Canceled => "CANCELED",
        }
    }

    pub(crate) fn is_terminal(self) -> bool {
        matches!(self, TaskStatus::Finished | TaskStatus::Failed | TaskStatus::Canceled)
    }

    pub(crate) fn is_running(self) -> bool {
        matches!(self, TaskStatus::Running | TaskStatus::Finishing)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub id: String,
    pub name: String,
    pub yaml: String,
    pub file: String,
    pub parallelism: Option<u32>,
    pub graph: Arc<JobGraph>,
    pub state: JobState,
    /// First time each state was entered (ms since the epoch), as Flink's `timestamps`.
    pub timestamps: BTreeMap<&'static str, u64>,
    pub start_time: u64,
    pub end_time: Option<u64>,
    pub epoch: u64,
    /// (vertex, subtask) → status and the taskmanager running it.
    pub tasks: HashMap<(u32, u32), (TaskStatus, String)>,
    pub failure: Option<String>,
    /// The class of the failure that set `failure`, when a task reported it; `None` counts as
    /// transient (a lost taskmanager, a failed deployment).
    pub failure_class: Option<FailureClass>,
    /// The subtask (vertex, subtask) whose report set `failure`, if one did.
    pub failure_task: Option<(u32, u32)>,
    /// Every failure the job went through, oldest first (Flink's exception history).
    pub exceptions: Vec<JobException>,
    /// The job's effective configuration: the cluster's with the job file's `config:`.
    pub config: Configuration,
    pub checkpoints: Arc<Mutex<CheckpointStats>>,
    pub checkpoint_history: Arc<Mutex<CheckpointHistory>>,
    pub restore: Option<RestoreSource>,
    /// `scheduler-mode: reactive`: the parallelism follows the slots.
    pub reactive: bool,
    /// Rescales so far (reactive), and the one under way.
    pub rescales: Vec<RescaleRecord>,
    pub pending_rescale: Option<PendingRescale>,
    /// Per-vertex resource requirements (`PUT /jobs/:id/resource-requirements`).
    pub requirements: Requirements,
    /// Per-node parallelism the scheduler decided (by node id), sent to the taskmanagers.
    pub node_parallelism: BTreeMap<String, u32>,
    /// While the job waits for slots: what it waits for (shown by REST and the CLI).
    pub waiting: Option<Waiting>,
    /// `job.autoscaler.enabled`: its state and decisions.
    pub autoscaler: Option<crate::autoscaler::JobAutoscaler>,
}

/// One failure of the job: what, when, of which class, where (Flink's exception history).
#[derive(Debug, Clone)]
pub(crate) struct JobException {
    pub timestamp: u64,
    pub message: String,
    pub class: &'static str,
    pub task: Option<(u32, u32)>,
}

/// Flink's `ExecutionState` names: REST answers carry an entry for each.
pub(crate) const EXECUTION_STATES: [&str; 10] = [
    "CREATED",
    "SCHEDULED",
    "DEPLOYING",
    "INITIALIZING",
    "RUNNING",
    "FINISHED",
    "CANCELING",
    "CANCELED",
    "FAILED",
    "RECONCILING",
];

/// How many failures the history keeps (Flink's `web.exception-history-size` default).
const EXCEPTION_HISTORY: usize = 16;

/// What a job waiting for slots needs, and until when it waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Waiting {
    pub slots_needed: u32,
    /// `jobmanager.adaptive-scheduler.resource-wait-timeout`; `None`: as long as it takes.
    pub timeout_ms: Option<u64>,
}

impl Job {
    /// The parallelism the job runs at: its widest vertex's.
    pub(crate) fn current_parallelism(&self) -> u32 {
        self.graph.vertices.iter().map(|v| v.parallelism).max().unwrap_or(0)
    }

    /// Each vertex's parallelism, by vertex id.
    pub(crate) fn vertex_parallelism(&self) -> Vec<(String, u32)> {
        self.graph
            .vertices
            .iter()
            .map(|v| (v.id.clone(), v.parallelism))
            .collect()
    }

    /// Per-vertex parallelism the scheduler decided (resource requirements, the autoscaler),
    /// by vertex id: every node of such a vertex takes it at the next replan.
    pub(crate) fn plan_vertex_parallelism(&mut self, target: &BTreeMap<String, u32>) {
        let graph = self.graph.clone();
        for v in &graph.vertices {
            if let Some(p) = target.get(&v.id) {
                for &n in &v.nodes {
                    self.node_parallelism.insert(graph.nodes[n].id.clone(), *p);
                }
            }
        }
    }

    pub(crate) fn checkpoint_stats(&self) -> CheckpointStats {
        self.checkpoints.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Job {
    pub(crate) fn transition(&mut self, to: JobState, now: u64) {
        if self.state == to {
            return;
        }
        tracing::info!(
            "Job {} ({}) switched from state {} to {}.",
            self.name,
            self.id,
            self.state.name(),
            to.name()
        );
        if matches!(to, JobState::Restarting | JobState::Failing | JobState::Failed) {
            self.record_failure(now);
        }
        self.state = to;
        self.timestamps.entry(to.name()).or_insert(now);
        if to.is_terminal() {
            self.end_time = Some(now);
        }
    }

    /// Flink's job-scope metrics on the jobmanager, by Flink's metric name: checkpoint counts and
    /// the latest completed checkpoint's duration and size, `numRestarts`; and Sluice's rescale
    /// figures (`numRescales`, `lastRescaleDurationMs` and its phases `lastRescaleStopMs`,
    /// `…DeployMs`, `…DownloadMs`, `…RestoreMs`, `parallelism`). Prometheus shows them as
    /// `flink_jobmanager_job_<name>`, `GET /jobs/:id/metrics` by name.
    pub(crate) fn metric_values(&self) -> Vec<(&'static str, f64)> {
        let stats = self.checkpoint_stats();
        let last = |f: fn(&super::reactive::RescaleRecord) -> u64| self.rescales.last().map_or(0.0, |r| f(r) as f64);
        let (duration, size) = stats
            .latest_completed
            .as_ref()
            .map_or((0.0, 0.0), |c| (c.duration_ms as f64, c.state_size as f64));
        let total = stats.completed + stats.failed + stats.in_progress;
        let running_since = self.timestamps.get("RUNNING").copied().unwrap_or(self.start_time);
        let uptime = if self.state.name() == "RUNNING" {
            crate::resource_manager::now_ms().saturating_sub(running_since)
        } else {
            0
        };
        vec![
            ("lastCheckpointDuration", duration),
            ("lastCheckpointSize", size),
            ("numberOfCompletedCheckpoints", stats.completed as f64),
            ("numberOfFailedCheckpoints", stats.failed as f64),
            ("numberOfInProgressCheckpoints", stats.in_progress as f64),
            ("totalNumberOfCheckpoints", total as f64),
            ("numRestarts", stats.num_restarts as f64),
            ("numRescales", self.rescales.len() as f64),
            ("lastRescaleDurationMs", last(|r| r.pause_ms)),
            ("lastRescaleStopMs", last(|r| r.stop_ms)),
            ("lastRescaleDeployMs", last(|r| r.deploy_ms)),
            ("lastRescaleDownloadMs", last(|r| r.download_ms)),
            ("lastRescaleRestoreMs", last(|r| r.restore_ms)),
            // -1 until the new attempt's first record is known (as Flink's unknown timestamps).
            (
                "lastRescaleFirstRecordMs",
                self.rescales
                    .last()
                    .and_then(|r| r.first_record_ms)
                    .map_or(-1.0, |v| v as f64),
            ),
            ("parallelism", f64::from(self.current_parallelism())),
            ("uptime", uptime as f64),
        ]
        .into_iter()
        .chain(self.autoscaler.iter().flat_map(|a| a.metric_values()))
        .collect()
    }

    /// Adds the current failure to the history once (a failing job passes FAILING, then
    /// FAILED with the same cause).
    fn record_failure(&mut self, now: u64) {
        let Some(message) = self.failure.clone() else { return };
        if self.exceptions.last().is_some_and(|e| e.message == message) {
            return;
        }
        self.exceptions.push(JobException {
            timestamp: now,
            message,
            class: self.failure_class.map_or("transient", |c| c.name()),
            task: self.failure_task,
        });
        if self.exceptions.len() > EXCEPTION_HISTORY {
            self.exceptions.remove(0);
        }
    }

    /// A vertex's status from its subtasks (Flink's `ExecutionJobVertex` aggregation).
    pub(crate) fn vertex_status(&self, vertex: u32) -> &'static str {
        let states: Vec<TaskStatus> = self
            .tasks
            .iter()
            .filter(|((v, _), _)| *v == vertex)
            .map(|(_, (s, _))| *s)
            .collect();
        if states.is_empty() {
            return if self.state.is_terminal() {
                self.state.name()
            } else {
                "CREATED"
            };
        }
        for name in ["FAILED", "DEPLOYING", "RUNNING", "CANCELED"] {
            if states.iter().any(|s| s.name() == name) {
                return name;
            }
        }
        "FINISHED"
    }

    /// Subtask counts by status name, for `tasks` fields.
    pub(crate) fn task_counts(&self, vertex: Option<u32>) -> BTreeMap<&'static str, usize> {
        // Every ExecutionState of Flink, so its clients find each count.
        let mut counts: BTreeMap<&'static str, usize> = EXECUTION_STATES.iter().map(|s| (*s, 0)).collect();
        for ((v, _), (s, _)) in &self.tasks {
            if vertex.is_none_or(|x| x == *v) {
                *counts.entry(s.name()).or_default() += 1;
            }
        }
        counts
    }
}
