//! StopWithSavepoint: the stopping savepoint's barrier is on its way; the tasks end once it
//! completed (finished). If the savepoint fails the job keeps executing.

use super::{Attempt, Ctx, Phase, Transition};
use crate::scheduler::job::JobState;

pub(super) async fn run(ctx: &Ctx, mut attempt: Attempt) -> Transition {
    loop {
        let (o, stopping, stopped) = ctx.stop_tick(&mut attempt).await;
        if o.all_finished {
            return Transition::to(Phase::Finished(JobState::Finished), "stopped with a savepoint");
        }
        if let Some(to) = ctx.interrupted(&attempt, &o) {
            return ctx.interrupt(to, attempt);
        }
        if !stopping && !stopped {
            return Transition::to(
                Phase::Executing(attempt),
                "the stopping savepoint failed; the job keeps running",
            );
        }
        ctx.wait().await;
    }
}
