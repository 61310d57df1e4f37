//! Restarting: the restart strategy's delay after a failure, then the job waits for slots
//! again (and restores the latest completed checkpoint when it is deployed).

use std::time::Duration;

use super::{Ctx, Phase, Transition};

pub(super) async fn run(ctx: &Ctx, delay: Duration) -> Transition {
    tokio::time::sleep(delay).await;
    ctx.clear_checkpoint_messages();
    let mut job = ctx.handle.lock();
    job.tasks.clear();
    job.failure = None;
    job.failure_task = None;
    job.failure_class = None;
    Transition::to(Phase::WaitingForResources, "restart delay over")
}
