//! Executing: every subtask is deployed; the checkpoint coordinator runs. Leaves when every
//! subtask finished, on a failure (failing) or cancellation (canceling), when a stop-with-savepoint
//! starts (stopping), or when a stop-with-checkpoint starts to rescale (rescaling): in reactive
//! mode because the job's share of slots grew or a taskmanager it runs on is leaving, otherwise because its resource requirements
//! changed and another parallelism fits, or because the autoscaler decided one.

use super::{Attempt, Ctx, Phase, Transition};
use crate::scheduler::job::JobState;
use crate::scheduler::Scheduler;

pub(super) async fn run(ctx: &Ctx, mut attempt: Attempt) -> Transition {
    loop {
        let mut o = ctx.observe(&attempt);
        ctx.checkpoint_tick(&mut attempt, &mut o).await;
        if o.all_running && !attempt.was_running {
            attempt.was_running = true;
            Scheduler::finish_rescale(&ctx.handle);
        }
        if attempt.was_running {
            ctx.scheduler.note_first_record(&ctx.handle);
        }
        if o.all_finished {
            return Transition::to(Phase::Finished(JobState::Finished), "every subtask finished");
        }
        let stopping = attempt.coordinator.as_ref().is_some_and(|c| c.stopping());
        if let Some(to) = ctx.interrupted(&attempt, &o) {
            return ctx.interrupt(to, attempt);
        }
        if stopping {
            return Transition::to(Phase::Stopping(attempt), "stop-with-savepoint triggered");
        }
        if let (Some(r), true) = (&ctx.reactive, o.all_running) {
            let Attempt {
                coordinator,
                scale_up,
                held,
                ..
            } = &mut attempt;
            if let Some(c) = coordinator.as_mut() {
                if ctx.scheduler.maybe_move_off(&ctx.handle, held, c).await
                    || ctx.scheduler.maybe_scale_up(&ctx.handle, r, scale_up, c).await
                {
                    let cause = ctx
                        .handle
                        .lock()
                        .pending_rescale
                        .as_ref()
                        .map(|p| p.cause.clone())
                        .unwrap_or_default();
                    return Transition::to(Phase::Rescaling(attempt), cause);
                }
            }
        }
        if o.all_running {
            if let Err(e) = ctx.scheduler.discover_splits(&ctx.handle, &mut attempt).await {
                ctx.handle.lock().failure.get_or_insert(e.clone());
                return Transition::to(Phase::Failing(attempt), e);
            }
        }
        if ctx.reactive.is_none() && o.all_running && ctx.take_requirements_changed() {
            let held = attempt.held_slots();
            if let Some(c) = attempt.coordinator.as_mut() {
                if ctx.scheduler.maybe_fit_requirements(&ctx.handle, held, c).await {
                    return Transition::to(Phase::Rescaling(attempt), "resource requirements changed");
                }
            }
        }
        if ctx.reactive.is_none() && o.all_running {
            let held = attempt.held_slots();
            let enumerators = attempt.enumerators.clone();
            if let Some(c) = attempt.coordinator.as_mut() {
                if ctx.scheduler.autoscale(&ctx.handle, held, c, &enumerators).await {
                    return Transition::to(Phase::Rescaling(attempt), "the autoscaler decided a rescale");
                }
            }
        }
        ctx.wait().await;
    }
}
