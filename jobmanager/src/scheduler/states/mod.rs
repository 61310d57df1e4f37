//! A job's lifecycle as a state machine (DESIGN §9, after Flink's adaptive scheduler): one file
//! per state, each an async step that runs while the job is in it and returns the transition
//! as a value (the next state and why). The driver (`drive`) logs every transition with its
//! cause and how long the job spent in the state, and keeps the job's Flink status current.
//!
//! created → waiting_for_resources → executing ⇄ stopping (stop-with-savepoint) → finished;
//! executing ⇄ rescaling (reactive scale-up by stop-with-checkpoint) → waiting_for_resources;
//! executing → failing → restarting → waiting_for_resources (or finished when the restart
//! strategy gives up); executing → canceling → finished.

mod canceling;
mod created;
mod executing;
mod failing;
mod finished;
mod rescaling;
mod restarting;
mod stopping;
#[cfg(test)]
mod tests;
mod waiting_for_resources;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_connectors::SourceEnumerators;
use tokio::sync::mpsc;

use super::job::{CheckpointMessage, JobState, TaskStatus};
use super::reactive::{ReactiveSettings, ScaleUpWatch};
use super::restart::RestartStrategy;
use super::{Handle, JobCommand, SavepointRequest, Scheduler};
use crate::checkpoint::Coordinator;
use crate::resource_manager::{now_ms, Registry, TaskManagerRecord};

/// How long cancelling or failing waits for subtasks to report before giving up on them.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The slots and deployment of one attempt. Its slots go back to the registry when it is
/// dropped, whichever state drops it.
pub(super) struct Attempt {
    pub epoch: u64,
    pub tms: Vec<TaskManagerRecord>,
    pub coordinator: Option<Coordinator>,
    /// The sources' split enumerators, shared with the coordinator (which snapshots them).
    pub enumerators: Arc<Mutex<SourceEnumerators>>,
    /// When the enumerators of sources that discover look for new splits next.
    pub next_discovery: Option<Instant>,
    pub scale_up: ScaleUpWatch,
    /// Every task ran at least once (a rescale under way is over then).
    pub was_running: bool,
    held: Vec<(String, u32)>,
    registry: Registry,
}

impl Attempt {
    pub(super) fn held_slots(&self) -> u32 {
        self.held.iter().map(|(_, n)| n).sum()
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        self.registry.release(&self.held);
    }
}

pub(super) enum Phase {
    Created,
    WaitingForResources,
    Executing(Attempt),
    /// A stop-with-savepoint is under way.
    Stopping(Attempt),
    /// A stop-with-checkpoint for a reactive rescale is under way.
    Rescaling(Attempt),
    Failing(Attempt),
    Canceling(Attempt),
    Restarting(Duration),
    Finished(JobState),
}

impl Phase {
    pub(super) fn name(&self) -> &'static str {
        match self {
            Phase::Created => "Created",
            Phase::WaitingForResources => "WaitingForResources",
            Phase::Executing(_) => "Executing",
            Phase::Stopping(_) => "StopWithSavepoint",
            Phase::Rescaling(_) => "Rescaling",
            Phase::Failing(_) => "Failing",
            Phase::Canceling(_) => "Canceling",
            Phase::Restarting(_) => "Restarting",
            Phase::Finished(_) => "Finished",
        }
    }

    /// The job status Flink shows in this state.
    fn job_state(&self) -> JobState {
        match self {
            Phase::Created | Phase::WaitingForResources => JobState::Created,
            Phase::Executing(_) | Phase::Stopping(_) => JobState::Running,
            Phase::Rescaling(_) | Phase::Restarting(_) => JobState::Restarting,
            Phase::Failing(_) => JobState::Failing,
            Phase::Canceling(_) => JobState::Canceling,
            Phase::Finished(s) => *s,
        }
    }
}

/// The next state and why.
pub(super) struct Transition {
    pub to: Phase,
    pub cause: String,
}

impl Transition {
    pub(super) fn to(to: Phase, cause: impl Into<String>) -> Self {
        Transition {
            to,
            cause: cause.into(),
        }
    }
}

/// What every state works with.
pub(super) struct Ctx {
    pub scheduler: Scheduler,
    pub handle: Arc<Handle>,
    pub strategy: RestartStrategy,
    pub reactive: Option<ReactiveSettings>,
    /// How long to wait for slots (`None`: as long as it takes).
    pub resource_wait: Option<Duration>,
    pub commands: Mutex<Commands>,
}

/// The job's commands as its loop took them in: a cancellation and changed requirements
/// stand until acted on; savepoint requests and checkpoint messages are handed out once.
pub(super) struct Commands {
    channel: mpsc::UnboundedReceiver<JobCommand>,
    cancel: bool,
    requirements_changed: bool,
    inbox: Vec<CheckpointMessage>,
    requests: Vec<SavepointRequest>,
}

impl Commands {
    pub(super) fn new(channel: mpsc::UnboundedReceiver<JobCommand>) -> Self {
        Commands {
            channel,
            cancel: false,
            requirements_changed: false,
            inbox: Vec::new(),
            requests: Vec::new(),
        }
    }

    fn take_in(&mut self) {
        while let Ok(command) = self.channel.try_recv() {
            match command {
                JobCommand::Cancel => self.cancel = true,
                JobCommand::Savepoint(r) => self.requests.push(r),
                JobCommand::Checkpoint(m) => self.inbox.push(m),
                JobCommand::RequirementsChanged => self.requirements_changed = true,
            }
        }
    }
}

/// One look at the attempt: lost taskmanagers fail their subtasks, and the subtasks' states
/// summed up. Messages for the checkpoint coordinator are taken out of the job.
pub(super) struct Observation {
    pub cancel: bool,
    pub all_done: bool,
    pub any_failed: bool,
    pub all_finished: bool,
    pub all_running: bool,
    /// Every subtask's input has ended (finishing or finished): time for the final checkpoint.
    pub input_ended: bool,
    pub inbox: Vec<CheckpointMessage>,
    pub requests: Vec<SavepointRequest>,
}

impl Ctx {
    /// The commands, with what was sent since the last look taken in.
    fn commands(&self) -> std::sync::MutexGuard<'_, Commands> {
        let mut commands = self.commands.lock().unwrap_or_else(|p| p.into_inner());
        commands.take_in();
        commands
    }

    pub(super) fn cancel_requested(&self) -> bool {
        self.commands().cancel
    }

    /// Whether the resource requirements changed since the last call.
    pub(super) fn take_requirements_changed(&self) -> bool {
        std::mem::take(&mut self.commands().requirements_changed)
    }

    /// Acknowledgements and declines of an attempt that is over.
    pub(super) fn clear_checkpoint_messages(&self) {
        self.commands().inbox.clear();
    }

    pub(super) fn observe(&self, attempt: &Attempt) -> Observation {
        let (cancel, inbox, requests) = {
            let mut c = self.commands();
            (c.cancel, std::mem::take(&mut c.inbox), std::mem::take(&mut c.requests))
        };
        let lost: Vec<String> = attempt
            .tms
            .iter()
            .filter(|t| !self.scheduler.registry.is_registered(&t.resource_id))
            .map(|t| t.resource_id.clone())
            .collect();
        let mut job = self.handle.lock();
        for (status, tm) in job.tasks.values_mut() {
            if lost.contains(tm) && !status.is_terminal() {
                *status = TaskStatus::Failed;
            }
        }
        // A lost taskmanager is the cause; what its peers reported (broken channels) is a
        // consequence, kept as detail.
        if let Some(tm) = lost.first() {
            let cause = format!("TaskManager {tm} was lost while running the job.");
            if !job.failure.as_deref().is_some_and(|f| f.starts_with(&cause)) {
                job.failure = Some(match job.failure.take() {
                    Some(first) => format!("{cause} First reported task failure: {first}"),
                    None => cause,
                });
            }
        }
        Observation {
            cancel,
            all_done: job.tasks.values().all(|(s, _)| s.is_terminal()),
            any_failed: job.tasks.values().any(|(s, _)| *s == TaskStatus::Failed),
            all_finished: job.tasks.values().all(|(s, _)| *s == TaskStatus::Finished),
            all_running: job.tasks.values().all(|(s, _)| s.is_running()),
            input_ended: !job.tasks.is_empty()
                && job
                    .tasks
                    .values()
                    .all(|(s, _)| matches!(s, TaskStatus::Finishing | TaskStatus::Finished)),
            inbox,
            requests,
        }
    }

    /// Feeds acknowledgements and declines to the coordinator and lets it trigger.
    pub(super) async fn checkpoint_tick(&self, attempt: &mut Attempt, o: &mut Observation) {
        let Some(coordinator) = attempt.coordinator.as_mut() else {
            return;
        };
        for m in std::mem::take(&mut o.inbox) {
            match m {
                CheckpointMessage::Ack(a) => coordinator.on_ack(a).await,
                CheckpointMessage::Decline(d) => coordinator.on_decline(&d),
            }
        }
        coordinator
            .tick(o.all_running, o.input_ended, std::mem::take(&mut o.requests))
            .await;
    }

    /// One tick of a stopping state (stop-with-savepoint or -checkpoint): the observation, and
    /// whether the stopping snapshot is still pending and whether it completed.
    pub(super) async fn stop_tick(&self, attempt: &mut Attempt) -> (Observation, bool, bool) {
        let mut o = self.observe(attempt);
        self.checkpoint_tick(attempt, &mut o).await;
        let (stopping, stopped) = attempt
            .coordinator
            .as_ref()
            .map_or((false, false), |c| (c.stopping(), c.stopped));
        (o, stopping, stopped)
    }

    /// A failure or cancellation seen while the attempt runs: the state the job goes to,
    /// given the attempt when there is one.
    pub(super) fn interrupted(&self, attempt: &Attempt, o: &Observation) -> Option<fn(Attempt) -> Phase> {
        let fatal = attempt.coordinator.as_ref().and_then(|c| c.fatal.clone());
        if let Some(f) = fatal {
            self.handle.lock().failure.get_or_insert(f);
            return Some(Phase::Failing);
        }
        if o.any_failed {
            return Some(Phase::Failing);
        }
        o.cancel.then_some(Phase::Canceling as fn(Attempt) -> Phase)
    }

    /// The transition for an interruption `interrupted` found.
    pub(super) fn interrupt(&self, to: fn(Attempt) -> Phase, attempt: Attempt) -> Transition {
        let phase = to(attempt);
        let cause = match phase {
            Phase::Canceling(_) => "cancellation requested".to_string(),
            _ => self.handle.lock().failure.clone().unwrap_or_default(),
        };
        Transition::to(phase, cause)
    }

    pub(super) async fn wait(&self) {
        Scheduler::wait(&self.handle).await;
    }
}

/// Runs a job through its states until it ends.
pub(super) async fn drive(scheduler: Scheduler, handle: Arc<Handle>, commands: mpsc::UnboundedReceiver<JobCommand>) {
    let mut ctx = match created::setup(&scheduler, &handle, commands) {
        Ok(ctx) => ctx,
        Err(e) => {
            Scheduler::fail(&handle, e);
            scheduler.forget_job(&handle).await;
            return;
        }
    };
    let mut phase = Phase::Created;
    let mut entered = Instant::now();
    loop {
        let leaving = phase.name();
        let t = match phase {
            Phase::Created => created::run(&ctx),
            Phase::WaitingForResources => waiting_for_resources::run(&ctx).await,
            Phase::Executing(a) => executing::run(&ctx, a).await,
            Phase::Stopping(a) => stopping::run(&ctx, a).await,
            Phase::Rescaling(a) => rescaling::run(&ctx, a).await,
            Phase::Failing(a) => failing::run(&mut ctx, a).await,
            Phase::Canceling(a) => canceling::run(&ctx, a).await,
            Phase::Restarting(delay) => restarting::run(&ctx, delay).await,
            Phase::Finished(_) => {
                scheduler.forget_job(&handle).await;
                return;
            }
        };
        let (id, name) = {
            let job = handle.lock();
            (job.id.clone(), job.name.clone())
        };
        tracing::info!(
            "Job {name} ({id}): {leaving} → {} after {} ms in {leaving}: {}",
            t.to.name(),
            entered.elapsed().as_millis(),
            t.cause
        );
        entered = Instant::now();
        let status = t.to.job_state();
        handle.lock().transition(status, now_ms());
        if let Phase::Finished(_) = t.to {
            finished::run(&ctx, status);
            return;
        }
        phase = t.to;
    }
}
