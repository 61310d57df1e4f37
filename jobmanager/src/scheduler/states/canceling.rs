//! Canceling: every subtask of the attempt is told to cancel; the job is CANCELED once they all
//! reported an end (or after a grace period for those that never do).

use tokio::time::Instant;

use super::{Attempt, Ctx, Phase, Transition, STOP_GRACE};
use crate::scheduler::job::JobState;

pub(super) async fn run(ctx: &Ctx, attempt: Attempt) -> Transition {
    let id = ctx.handle.lock().id.clone();
    ctx.scheduler.cancel_on(&attempt.tms, &id, attempt.epoch).await;
    let deadline = Instant::now() + STOP_GRACE;
    loop {
        let o = ctx.observe(&attempt);
        if o.all_done || Instant::now() >= deadline {
            drop(attempt);
            return Transition::to(Phase::Finished(JobState::Canceled), "every subtask ended");
        }
        ctx.wait().await;
    }
}
