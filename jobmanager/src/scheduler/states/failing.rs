//! Failing: a subtask failed, a taskmanager was lost, or checkpoints failed beyond tolerance.
//! The attempt is cancelled; once its subtasks ended the restart strategy decides: restarting
//! (after its delay) or FAILED with the cause. In reactive mode the restart is also a
//! scale-down to whatever parallelism the remaining slots allow, recorded as a rescale. A
//! user- or config-class failure (`sluice_common::failure`) fails the job without a restart.

use super::{Attempt, Ctx, Phase, Transition, STOP_GRACE};
use crate::scheduler::job::JobState;
use crate::scheduler::reactive::PendingRescale;

pub(super) async fn run(ctx: &mut Ctx, attempt: Attempt) -> Transition {
    let id = {
        let mut job = ctx.handle.lock();
        if ctx.reactive.is_some() {
            let cause = job.failure.clone().unwrap_or_default();
            match job.pending_rescale.as_mut() {
                Some(p) => p.interrupted_by(&cause),
                None => job.pending_rescale = Some(PendingRescale::now(&job, cause)),
            }
        }
        job.id.clone()
    };
    ctx.scheduler.cancel_on(&attempt.tms, &id, attempt.epoch).await;
    let deadline = tokio::time::Instant::now() + STOP_GRACE;
    loop {
        let o = ctx.observe(&attempt);
        if o.all_done || tokio::time::Instant::now() >= deadline {
            break;
        }
        ctx.wait().await;
    }
    drop(attempt);
    // Read once every subtask ended: a task that failed on a broken channel may have reported
    // before the task whose failure broke it (`Scheduler::on_task_state` keeps the latter).
    let (cause, class) = {
        let job = ctx.handle.lock();
        (job.failure.clone().unwrap_or_default(), job.failure_class)
    };
    // Flink's FailureResult.canNotRestart: a failure of the job or its settings fails the same
    // way on every attempt, so the restart strategy is not asked.
    if let Some(c) = class.filter(|c| !c.can_restart()) {
        return Transition::to(
            Phase::Finished(JobState::Failed),
            format!("not restarting after a {} failure: {cause}", c.name()),
        );
    }
    let cancel = ctx.cancel_requested();
    match (!cancel)
        .then(|| ctx.strategy.on_failure(std::time::Instant::now()))
        .flatten()
    {
        Some(delay) => {
            let restarts = {
                let stats = ctx.handle.lock().checkpoints.clone();
                let mut s = stats.lock().unwrap_or_else(|p| p.into_inner());
                s.num_restarts += 1;
                s.num_restarts
            };
            Transition::to(
                Phase::Restarting(delay),
                format!(
                    "restart {restarts} in {} after: {cause}",
                    sluice_common::config::format_duration(delay)
                ),
            )
        }
        None => Transition::to(Phase::Finished(JobState::Failed), cause),
    }
}
