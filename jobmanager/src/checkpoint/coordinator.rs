//! The checkpoint coordinator of one job attempt (DESIGN §8, Flink's `CheckpointCoordinator`):
//! triggers a checkpoint every `execution.checkpointing.interval` (honouring `min-pause` and
//! `max-concurrent-checkpoints`, and only while every subtask runs) or a savepoint on request,
//! by sending the barrier's id and target to the source subtasks; collects every subtask's
//! acknowledgement; then writes `_metadata` create-only (the checkpoint exists from that
//! moment), tells the taskmanagers (two-phase-commit sinks commit), and drops checkpoints
//! beyond `num-retained` with the shared files no retained checkpoint references. Declines and
//! expiry (`timeout`) fail a checkpoint, which the taskmanagers are told of; more consecutive failures than
//! `tolerable-failed-checkpoints` fail the job. Final checkpoints (FLIP-147): the trigger goes
//! to every subtask (one past the end of its input snapshots on it); a checkpoint that every
//! subtask acknowledged as taken after the end of its input is the job's final one, and its
//! completion notice says so. Once every subtask reported the end of its input, that
//! checkpoint is triggered at once rather than at the next interval. The sources' split
//! enumerators are snapshotted when a checkpoint is triggered (before any barrier leaves), and
//! their states go into its metadata.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_common::config::Configuration;
use sluice_common::ha::Leadership;
use sluice_common::job::JobGraph;
use sluice_common::proto::checkpoint::{CheckpointMetadata, EnumeratorState, OperatorState};
use sluice_common::storage::{checkpoint_url, encode_metadata, location_url, open_location, url_join, CheckpointStore};
use sluice_connectors::SourceEnumerators;
use sluice_proto::control::{CheckpointAck, CheckpointDecline, NotifyCheckpointRequest, TriggerCheckpointRequest};

use super::standby::Standby;
use super::stats::{CheckpointRecord, CheckpointStats, SavepointStatus};
use crate::resource_manager::{now_ms, TaskManagerRecord};

#[derive(Debug, Clone)]
pub(crate) struct CheckpointSettings {
    pub interval: Option<Duration>,
    pub timeout: Duration,
    pub min_pause: Duration,
    pub max_concurrent: u32,
    pub tolerable_failures: u32,
    pub retained: u32,
    /// `execution.checkpointing.dir` (URL), when set.
    pub dir: Option<String>,
    pub savepoint_dir: Option<String>,
    /// A stop-with-checkpoint first takes a checkpoint while the job runs, whose barrier holds
    /// RocksDB compactions until the stop (incremental RocksDB checkpoints and
    /// `…rescale-trigger.active-checkpoint.enabled`).
    pub prepare_stop: bool,
    /// A prepared stop waits, after its checkpoint completed, until the taskmanagers
    /// prefetched that checkpoint's state for the attempt after it (local recovery on):
    /// the scheduler takes `prepared` and holds the stop (`hold_stop`), for `PREFETCH_LIMIT` at
    /// most.
    pub prefetch_before_stop: bool,
    /// `execution.state-recovery.standby-copies` (with local recovery and incremental RocksDB
    /// checkpoints): each completed periodic checkpoint starts a standby round (`standby`).
    pub standby: bool,
}

/// The longest a prepared stop waits for the prefetch of its checkpoint's state: the job runs
/// meanwhile, so waiting costs only the rescale's delay; past it, the stop goes and the
/// restore downloads what was not prefetched.
const PREFETCH_LIMIT: Duration = Duration::from_secs(60);

/// What a trigger starts.
enum Trigger {
    /// A periodic checkpoint.
    Periodic,
    /// The checkpoint a rescale's stop follows (its barrier holds compactions).
    PrepareStop,
    /// The stop-with-checkpoint of a rescale.
    Stop,
    /// A savepoint (or stop-with-savepoint).
    Savepoint(SavepointRequest),
}

/// The checkpoint a stop waits for: a prepared stop's, or a periodic one under way.
#[derive(Debug, Clone, Copy)]
struct StopAfter {
    id: u64,
    /// When the stop was asked for.
    asked: Instant,
    /// Prepare checkpoints still to take after it. Two rounds: the first one's barrier holds
    /// RocksDB compactions, and it completes once the compactions that were running ended;
    /// the second one uploads what they wrote, so the stop after it uploads only flushes. A
    /// periodic checkpoint under way when the stop was asked for comes before both.
    rounds: u8,
}

/// A prepared stop's checkpoint, completed: what the attempt after the stop will restore
/// (the stop's own checkpoint adds only what changed since).
#[derive(Debug, Clone)]
pub(crate) struct PreparedCheckpoint {
    pub url: String,
    pub metadata: CheckpointMetadata,
}

#[derive(Debug, Clone)]
pub(crate) struct SavepointRequest {
    pub trigger_id: String,
    pub target_dir: Option<String>,
    pub stop: bool,
    pub drain: bool,
}

/// State that outlives one attempt: the id counter, the retained checkpoints with the shared
/// files each references, and the latest completed checkpoint.
#[derive(Debug, Default)]
pub(crate) struct CheckpointHistory {
    pub next_id: u64,
    pub retained: VecDeque<(u64, HashSet<String>)>,
    /// The newest checkpoint this jobmanager completed (not a savepoint): its id, URL and
    /// encoded `_metadata`. A restart restores it as it is held here, without reading the
    /// checkpoint storage (Flink's completed checkpoint store); a jobmanager that took over
    /// the job has none and reads the storage.
    pub latest: Option<(u64, String, Vec<u8>)>,
}

/// A stop-with-checkpoint's trigger, as a rescale's record wants it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StopTriggered {
    pub at: Instant,
    /// `at` in unix ms.
    pub at_ms: u64,
    /// A prepared stop: from the stop's request until its barrier left (the checkpoint before
    /// it, taken while the job ran).
    pub prepared_ms: Option<u64>,
}

struct Pending {
    id: u64,
    started: Instant,
    trigger_ms: u64,
    target_url: String,
    savepoint: Option<SavepointRequest>,
    /// The barrier also stops the tasks (stop-with-savepoint, or a reactive rescale).
    stop: bool,
    acks: BTreeMap<(u32, u32), CheckpointAck>,
    /// The split enumerators' states when it was triggered.
    enumerators: Vec<EnumeratorState>,
}

pub(crate) struct Coordinator {
    pub settings: CheckpointSettings,
    config: Configuration,
    job_id: String,
    epoch: u64,
    graph: Arc<JobGraph>,
    tms: Vec<TaskManagerRecord>,
    expected: HashSet<(u32, u32)>,
    stats: Arc<Mutex<CheckpointStats>>,
    history: Arc<Mutex<CheckpointHistory>>,
    pending: BTreeMap<u64, Pending>,
    last_trigger: Instant,
    last_end: Option<Instant>,
    consecutive_failures: u32,
    /// Set when failures exceeded the tolerance: the job must fail with this cause.
    pub fatal: Option<String>,
    /// A stop-with-savepoint (or stop-with-checkpoint) completed: the tasks end.
    pub stopped: bool,
    /// The stopping checkpoint's duration and bytes, once it completed.
    pub stopped_with: Option<(u64, u64)>,
    /// The job's final checkpoint (every subtask past the end of its input) completed: the
    /// tasks end and nothing more is checkpointed.
    finished: bool,
    /// A prepared stop: the stop-with-checkpoint waits until this checkpoint is no longer
    /// pending (completed, so the stop uploads only what changed since, or failed).
    stop_after: Option<StopAfter>,
    /// When the stop-with-checkpoint was triggered (a rescale's pause starts there), and how
    /// long the checkpoint before it took when the stop was prepared; taken by the scheduler.
    pub stop_triggered: Option<StopTriggered>,
    /// With `prefetch_before_stop`: the prepared stop's checkpoint once completed, for the
    /// scheduler to take; when it completed; and the prefetch that holds the stop until done.
    pub prepared: Option<PreparedCheckpoint>,
    prepared_at: Option<Instant>,
    hold: Option<tokio::task::JoinHandle<()>>,
    /// Checkpoints that failed since the taskmanagers last heard of a failure.
    aborted: Vec<u64>,
    /// The attempt's split enumerators.
    enumerators: Arc<Mutex<SourceEnumerators>>,
    /// The lease this jobmanager leads under (HA), checked before a checkpoint completes.
    leadership: Option<Arc<Leadership>>,
    /// With `settings.standby`: the taskmanagers' standby copies, refreshed after each
    /// completed periodic checkpoint.
    standby: Option<Standby>,
}

impl Coordinator {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        settings: CheckpointSettings,
        config: Configuration,
        job_id: String,
        epoch: u64,
        graph: Arc<JobGraph>,
        tms: Vec<TaskManagerRecord>,
        stats: Arc<Mutex<CheckpointStats>>,
        history: Arc<Mutex<CheckpointHistory>>,
    ) -> Self {
        let expected = graph
            .vertices
            .iter()
            .flat_map(|v| (0..v.parallelism).map(move |s| (v.index as u32, s)))
            .collect();
        Coordinator {
            settings,
            config,
            job_id,
            epoch,
            graph,
            tms,
            expected,
            stats,
            history,
            pending: BTreeMap::new(),
            last_trigger: Instant::now(),
            last_end: None,
            consecutive_failures: 0,
            fatal: None,
            stopped: false,
            stopped_with: None,
            finished: false,
            stop_after: None,
            stop_triggered: None,
            prepared: None,
            prepared_at: None,
            hold: None,
            aborted: Vec::new(),
            enumerators: Arc::default(),
            leadership: None,
            standby: None,
        }
    }

    /// With `settings.standby`: keeps the taskmanagers' standby copies current, sending
    /// `job_config` (the job's state keys) with each round.
    pub(crate) fn with_standby(mut self, job_config: HashMap<String, String>) -> Self {
        self.standby = self.settings.standby.then(|| Standby::new(&self.graph, job_config));
        self
    }

    /// Snapshots these split enumerators into every checkpoint.
    pub(crate) fn with_enumerators(mut self, enumerators: Arc<Mutex<SourceEnumerators>>) -> Self {
        self.enumerators = enumerators;
        self
    }

    /// Under HA: a checkpoint completes only while this jobmanager's lease holds.
    pub(crate) fn with_leadership(mut self, leadership: Option<Arc<Leadership>>) -> Self {
        self.leadership = leadership;
        self
    }

    fn stats(&self) -> std::sync::MutexGuard<'_, CheckpointStats> {
        self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn history(&self) -> std::sync::MutexGuard<'_, CheckpointHistory> {
        self.history.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The checkpoint store of this job, when checkpoints are configured.
    pub(crate) fn store(&self) -> Result<Option<CheckpointStore>, String> {
        match &self.settings.dir {
            Some(dir) => Ok(Some(CheckpointStore::new(
                open_location(dir, &self.config)?,
                &self.job_id,
            ))),
            None => Ok(None),
        }
    }

    /// Periodic work: expire, trigger a periodic checkpoint, start requested savepoints.
    /// `input_ended`: every subtask waits for the final checkpoint, which then need not wait
    /// for the interval.
    pub(crate) async fn tick(&mut self, all_running: bool, input_ended: bool, requests: Vec<SavepointRequest>) {
        let expired: Vec<u64> = self
            .pending
            .values()
            .filter(|p| p.started.elapsed() >= self.settings.timeout)
            .map(|p| p.id)
            .collect();
        for id in expired {
            let reason = format!("Checkpoint {id} of job {} expired before completing.", self.job_id);
            self.fail(id, reason, true);
        }
        self.notify_aborted().await;
        self.stop_when_prepared().await;
        for request in requests {
            if self.finished {
                self.stats().savepoints.insert(
                    request.trigger_id.clone(),
                    SavepointStatus::Failed("the job has reached the end of its input and is finishing".into()),
                );
                continue;
            }
            if !all_running {
                self.stats().savepoints.insert(
                    request.trigger_id.clone(),
                    SavepointStatus::Failed("not every task of the job is running; try again later".into()),
                );
                continue;
            }
            let dir = request
                .target_dir
                .clone()
                .or_else(|| self.settings.savepoint_dir.clone());
            let Some(dir) = dir else {
                self.stats().savepoints.insert(
                    request.trigger_id.clone(),
                    SavepointStatus::Failed(
                        "No savepoint directory was given: pass a target directory or set execution.checkpointing.savepoint-dir (state.savepoints.dir).".into(),
                    ),
                );
                continue;
            };
            let short: String = self.job_id.chars().take(6).collect();
            let rand: String = uuid::Uuid::new_v4().simple().to_string().chars().take(12).collect();
            let target = url_join(&location_url(&dir), &format!("savepoint-{short}-{rand}"));
            self.trigger(|_| target, Trigger::Savepoint(request)).await;
        }
        let Some(interval) = self.settings.interval else {
            return;
        };
        let paused = self.last_end.is_some_and(|t| t.elapsed() < self.settings.min_pause);
        let periodic_pending = self.pending.values().filter(|p| p.savepoint.is_none()).count();
        if all_running
            && !self.stopped
            && self.stop_after.is_none()
            && !self.finished
            && (self.last_trigger.elapsed() >= interval || (input_ended && periodic_pending == 0))
            && periodic_pending < self.settings.max_concurrent as usize
            && !paused
        {
            if let Some(dir) = self.settings.dir.clone() {
                self.trigger_checkpoint(&dir, Trigger::Periodic).await;
            }
        }
    }

    /// A checkpoint whose barrier also stops the tasks, so a rescale replays nothing (reactive
    /// scale-up). `false` when it cannot start: no checkpoint directory, or a stop under way.
    /// With `prepare_stop` the stop waits for a checkpoint taken while the job runs (the
    /// periodic one under way, else one triggered now), so the stop's own upload is small.
    /// Without it, a periodic checkpoint under way still comes first: the stop's snapshot
    /// would share the machine with its upload in the pause (two full heap snapshots at once).
    pub(crate) async fn stop_with_checkpoint(&mut self) -> bool {
        let Some(dir) = self.settings.dir.clone() else {
            return false;
        };
        if self.stopped || self.stopping() {
            return false;
        }
        let asked = Instant::now();
        if let Some(id) = self.newest_periodic_pending() {
            // It held no compactions: a prepared stop's two rounds follow it.
            let rounds = if self.settings.prepare_stop { 2 } else { 0 };
            self.stop_after = Some(StopAfter { id, asked, rounds });
            return true;
        }
        if self.settings.prepare_stop {
            if let Some(id) = self.trigger_prepare(&dir).await {
                self.stop_after = Some(StopAfter { id, asked, rounds: 1 });
                return true;
            }
        }
        self.trigger_stop(&dir, None).await;
        true
    }

    /// Triggers the stopping checkpoint; `prepared_from` is when the checkpoint before it
    /// was asked for, when the stop was prepared.
    async fn trigger_stop(&mut self, dir: &str, prepared_from: Option<Instant>) {
        self.stop_triggered = Some(StopTriggered {
            at: Instant::now(),
            at_ms: now_ms(),
            prepared_ms: prepared_from.map(|t| t.elapsed().as_millis() as u64),
        });
        self.trigger_checkpoint(dir, Trigger::Stop).await;
    }

    /// Triggers the checkpoint a stop follows (its barrier holds the compactions of RocksDB
    /// instances until the stop); its id, unless triggering failed.
    async fn trigger_prepare(&mut self, dir: &str) -> Option<u64> {
        self.trigger_checkpoint(dir, Trigger::PrepareStop).await;
        let id = self.newest_periodic_pending()?;
        tracing::info!(
            "Job {}: the stop-with-checkpoint follows checkpoint {id}, taken while the job runs.",
            self.job_id
        );
        Some(id)
    }

    /// Triggers a checkpoint (not a savepoint) into the job's checkpoint directory `dir`.
    async fn trigger_checkpoint(&mut self, dir: &str, what: Trigger) {
        let job_id = self.job_id.clone();
        self.trigger(|id| checkpoint_url(dir, &job_id, id), what).await;
    }

    /// The newest pending checkpoint that is not a savepoint.
    fn newest_periodic_pending(&self) -> Option<u64> {
        self.pending
            .values()
            .filter(|p| p.savepoint.is_none())
            .map(|p| p.id)
            .max()
    }

    /// A prepared stop whose checkpoint is no longer pending (completed, or failed: the stop
    /// then uploads more) stops now, or takes the next prepare round.
    async fn stop_when_prepared(&mut self) {
        let Some(StopAfter { id, asked, rounds }) = self.stop_after else {
            return;
        };
        if self.pending.contains_key(&id) {
            return;
        }
        if rounds > 0 {
            if let Some(dir) = self.settings.dir.clone() {
                if let Some(id) = self.trigger_prepare(&dir).await {
                    self.stop_after = Some(StopAfter {
                        id,
                        asked,
                        rounds: rounds - 1,
                    });
                    return;
                }
            }
        }
        // Its state is being prefetched (or is still to be taken for that): the job runs on.
        let prefetching = self.prepared.is_some() || self.hold.as_ref().is_some_and(|h| !h.is_finished());
        if prefetching && self.prepared_at.is_some_and(|t| t.elapsed() < PREFETCH_LIMIT) {
            return;
        }
        if prefetching {
            tracing::warn!(
                "Job {}: the prefetch of checkpoint {id}'s state took longer than {} s; stopping without waiting for it.",
                self.job_id,
                PREFETCH_LIMIT.as_secs()
            );
        }
        self.prepared = None;
        self.hold = None;
        self.stop_after = None;
        let Some(dir) = self.settings.dir.clone() else { return };
        self.trigger_stop(&dir, Some(asked)).await;
    }

    /// Holds a prepared stop until `prefetch` (of the state in `prepared`) ends.
    pub(crate) fn hold_stop(&mut self, prefetch: tokio::task::JoinHandle<()>) {
        self.hold = Some(prefetch);
    }

    /// Whether a stopping checkpoint or savepoint is pending (or prepared).
    pub(crate) fn stopping(&self) -> bool {
        self.stop_after.is_some() || self.pending.values().any(|p| p.stop)
    }

    /// Starts checkpoint (or savepoint) number next; `target_of(id)` is where its files go.
    async fn trigger(&mut self, target_of: impl FnOnce(u64) -> String, what: Trigger) {
        let id = {
            let mut h = self.history();
            let id = h.next_id.max(1);
            h.next_id = id + 1;
            id
        };
        let target_url = target_of(id);
        self.last_trigger = Instant::now();
        let trigger_ms = now_ms();
        let (stop, drain, prepare_stop, savepoint) = match what {
            Trigger::Periodic => (false, false, false, None),
            Trigger::PrepareStop => (false, false, true, None),
            Trigger::Stop => (true, false, false, None),
            Trigger::Savepoint(s) => (s.stop, s.drain, false, Some(s)),
        };
        if let Some(s) = &savepoint {
            self.stats()
                .savepoints
                .insert(s.trigger_id.clone(), SavepointStatus::InProgress);
        }
        // The job loop runs split discovery and triggers one after the other, so new splits
        // are either in this snapshot and queued before the barrier, or in neither.
        let enumerators = self
            .enumerators
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .snapshot()
            .into_iter()
            .map(|(uid, state)| EnumeratorState { uid, state })
            .collect();
        self.pending.insert(
            id,
            Pending {
                id,
                started: Instant::now(),
                trigger_ms,
                target_url: target_url.clone(),
                savepoint: savepoint.clone(),
                stop,
                acks: BTreeMap::new(),
                enumerators,
            },
        );
        self.stats().in_progress = self.pending.len() as u64;
        tracing::info!(
            "Triggering {} {id} for job {} (target {target_url}).",
            if savepoint.is_some() { "savepoint" } else { "checkpoint" },
            self.job_id
        );
        for tm in &self.tms {
            let req = TriggerCheckpointRequest {
                job_id: self.job_id.clone(),
                epoch: self.epoch,
                checkpoint_id: id,
                timestamp_ms: trigger_ms,
                savepoint: savepoint.is_some(),
                target_url: target_url.clone(),
                stop,
                drain,
                prepare_stop,
            };
            if let Err(e) = tm.gateway.trigger_checkpoint(req).await {
                let reason = format!("triggering at TaskManager {} failed: {e}", tm.resource_id);
                self.fail(id, reason, false);
                return;
            }
        }
    }

    /// Tells every taskmanager of the checkpoints that failed (Flink's
    /// `notifyCheckpointAborted`): sources and sinks hear it, and a subtask waiting on a
    /// stop-with-savepoint that failed runs on. A declined checkpoint is announced at the next
    /// tick.
    async fn notify_aborted(&mut self) {
        for checkpoint_id in std::mem::take(&mut self.aborted) {
            for tm in &self.tms {
                let _ = tm
                    .gateway
                    .notify_checkpoint_aborted(NotifyCheckpointRequest {
                        job_id: self.job_id.clone(),
                        epoch: self.epoch,
                        checkpoint_id,
                        end_of_input: false,
                    })
                    .await;
            }
        }
    }

    fn fail(&mut self, id: u64, reason: String, counts: bool) {
        if let Some(p) = self.pending.remove(&id) {
            self.record_failure(p, reason, counts);
        }
    }

    /// Records a failed checkpoint that is no longer pending; too many in a row fail the job.
    fn record_failure(&mut self, p: Pending, reason: String, counts: bool) {
        let id = p.id;
        tracing::warn!("Checkpoint {id} of job {} failed: {reason}", self.job_id);
        // A prepare round that failed ends the rounds: the stop follows (uploading more).
        if let Some(s) = self.stop_after.as_mut().filter(|s| s.id == id) {
            s.rounds = 0;
        }
        self.aborted.push(id);
        let record = CheckpointRecord {
            id,
            status: "FAILED",
            savepoint: p.savepoint.is_some(),
            trigger_timestamp: p.trigger_ms,
            latest_ack_timestamp: now_ms(),
            state_size: 0,
            duration_ms: p.started.elapsed().as_millis() as u64,
            external_path: String::new(),
            num_subtasks: self.expected.len(),
            acknowledged: p.acks.len(),
            failure: Some(reason.clone()),
        };
        let mut stats = self.stats();
        stats.record(record);
        stats.in_progress = self.pending.len() as u64;
        if let Some(s) = &p.savepoint {
            stats
                .savepoints
                .insert(s.trigger_id.clone(), SavepointStatus::Failed(reason.clone()));
        }
        drop(stats);
        self.last_end = Some(Instant::now());
        if counts && p.savepoint.is_none() {
            self.consecutive_failures += 1;
            if self.consecutive_failures > self.settings.tolerable_failures {
                self.fatal = Some(format!(
                    "Exceeded checkpoint tolerable failure threshold ({}): {reason}",
                    self.settings.tolerable_failures
                ));
            }
        }
    }

    pub(crate) fn on_decline(&mut self, d: &CheckpointDecline) {
        if d.epoch == self.epoch {
            let reason = format!("subtask {} of vertex {} declined: {}", d.subtask, d.vertex, d.reason);
            self.fail(d.checkpoint_id, reason, true);
        }
    }

    /// An acknowledgement; completes the checkpoint when it is the last one.
    pub(crate) async fn on_ack(&mut self, ack: CheckpointAck) {
        if ack.epoch != self.epoch {
            return;
        }
        let id = ack.checkpoint_id;
        let complete = match self.pending.get_mut(&id) {
            Some(p) => {
                p.acks.insert((ack.vertex, ack.subtask), ack);
                p.acks.len() >= self.expected.len()
            }
            None => false,
        };
        if complete {
            if let Some(p) = self.pending.remove(&id) {
                if let Err(e) = self.complete(&p).await {
                    self.record_failure(p, format!("completing failed: {e}"), true);
                    self.notify_aborted().await;
                }
            }
        }
    }

    fn metadata(&self, p: &Pending) -> CheckpointMetadata {
        let mut operators: BTreeMap<String, OperatorState> = BTreeMap::new();
        for ack in p.acks.values() {
            for op in &ack.operators {
                let parallelism = self
                    .graph
                    .nodes
                    .iter()
                    .find(|n| n.uid == op.uid)
                    .map(|n| n.parallelism)
                    .unwrap_or(0);
                let entry = operators.entry(op.uid.clone()).or_insert_with(|| OperatorState {
                    uid: op.uid.clone(),
                    parallelism,
                    subtasks: Vec::new(),
                });
                if let Some(s) = &op.state {
                    entry.subtasks.push(s.clone());
                }
            }
        }
        CheckpointMetadata {
            job_id: self.job_id.clone(),
            checkpoint_id: p.id,
            timestamp_ms: p.trigger_ms,
            max_parallelism: self.graph.max_parallelism,
            savepoint: p.savepoint.is_some(),
            operators: operators.into_values().collect(),
            enumerators: p.enumerators.clone(),
        }
    }

    async fn complete(&mut self, p: &Pending) -> Result<(), String> {
        if self.leadership.as_ref().is_some_and(|l| !l.is_valid()) {
            return Err(
                "this jobmanager's leader lease lapsed: another jobmanager may lead, so no checkpoint completes here"
                    .into(),
            );
        }
        let metadata = self.metadata(p);
        open_location(&p.target_url, &self.config)?
            .write_metadata(&metadata)
            .await?;
        let size: u64 = p.acks.values().map(|a| a.state_size).sum();
        let duration = p.started.elapsed().as_millis() as u64;
        tracing::info!(
            "Completed {} {} for job {} ({size} bytes, {duration} ms).",
            if p.savepoint.is_some() {
                "savepoint"
            } else {
                "checkpoint"
            },
            p.id,
            self.job_id
        );
        self.consecutive_failures = 0;
        self.last_end = Some(Instant::now());
        {
            let mut stats = self.stats();
            stats.record(CheckpointRecord {
                id: p.id,
                status: "COMPLETED",
                savepoint: p.savepoint.is_some(),
                trigger_timestamp: p.trigger_ms,
                latest_ack_timestamp: now_ms(),
                state_size: size,
                duration_ms: duration,
                external_path: p.target_url.clone(),
                num_subtasks: self.expected.len(),
                acknowledged: p.acks.len(),
                failure: None,
            });
            stats.in_progress = self.pending.len() as u64;
            if let Some(s) = &p.savepoint {
                stats
                    .savepoints
                    .insert(s.trigger_id.clone(), SavepointStatus::Completed(p.target_url.clone()));
            }
        }
        if p.stop {
            self.stopped = true;
            self.stopped_with = Some((duration, size));
        }
        if self.settings.prepare_stop
            && self.settings.prefetch_before_stop
            && self.stop_after.is_some_and(|s| s.id == p.id && s.rounds == 0)
        {
            self.prepared = Some(PreparedCheckpoint {
                url: p.target_url.clone(),
                metadata: metadata.clone(),
            });
            self.prepared_at = Some(Instant::now());
        }
        // Every subtask snapshotted it after the end of its input: the job's final checkpoint
        // (FLIP-147); the subtasks waiting for it end.
        let end_of_input = !p.acks.is_empty() && p.acks.values().all(|a| a.end_of_input);
        self.finished |= end_of_input;
        for tm in &self.tms {
            let _ = tm
                .gateway
                .notify_checkpoint_complete(NotifyCheckpointRequest {
                    job_id: self.job_id.clone(),
                    epoch: self.epoch,
                    checkpoint_id: p.id,
                    end_of_input,
                })
                .await;
        }
        if p.savepoint.is_none() {
            let encoded = encode_metadata(&metadata).to_vec();
            // No standby round for a stop (the next attempt restores in the pause; a round
            // would compete with it) nor while a stop is planned (its prefetch fetches what the
            // next attempt needs).
            if let Some(standby) = self.standby.as_ref().filter(|_| !p.stop && self.stop_after.is_none()) {
                if !standby.start(&self.tms, &self.job_id, &p.target_url, &encoded) {
                    tracing::debug!(
                        "Checkpoint {} gets no standby round: the previous one still runs.",
                        p.id
                    );
                }
            }
            self.history().latest = Some((p.id, p.target_url.clone(), encoded));
            let shared: HashSet<String> = metadata
                .operators
                .iter()
                .flat_map(|o| o.subtasks.iter())
                .flat_map(|s| s.keyed.iter())
                .flat_map(|h| h.shared_files.iter().cloned())
                .collect();
            self.retain(p.id, shared).await;
        }
        Ok(())
    }

    /// Keeps the newest `num-retained` checkpoints; deletes the others and the shared files
    /// only they referenced.
    async fn retain(&mut self, id: u64, shared: HashSet<String>) {
        let dropped: Vec<(u64, HashSet<String>)> = {
            let mut h = self.history();
            h.retained.push_back((id, shared));
            let mut out = Vec::new();
            while h.retained.len() > self.settings.retained as usize {
                if let Some(x) = h.retained.pop_front() {
                    out.push(x);
                }
            }
            out
        };
        if dropped.is_empty() {
            return;
        }
        let still: HashSet<String> = self
            .history()
            .retained
            .iter()
            .flat_map(|(_, s)| s.iter().cloned())
            .collect();
        let Ok(Some(store)) = self.store() else {
            return;
        };
        for (old, files) in dropped {
            if let Err(e) = store.discard(old).await {
                tracing::warn!("could not delete checkpoint {old} of job {}: {e}", self.job_id);
            }
            for f in files.difference(&still) {
                if let Err(e) = store.discard_shared(f).await {
                    tracing::warn!("could not delete {f} of job {}: {e}", self.job_id);
                }
            }
        }
    }
}
