//! Rescaling (reactive scale-up): a checkpoint whose barrier also stops the tasks is on its
//! way (with incremental RocksDB checkpoints, after a checkpoint the job takes while it runs,
//! so the stop uploads little; with local recovery, the taskmanagers of the next attempt
//! prefetch that checkpoint's state before the stop: `scheduler::prefetch`). Once it completed
//! and every task ended, the attempt's slots go back and the job waits for its new share
//! (nothing is replayed: the restored checkpoint is where the tasks stopped). If that
//! checkpoint fails the job keeps executing at its parallelism.

use super::{Attempt, Ctx, Phase, Transition};

pub(super) async fn run(ctx: &Ctx, mut attempt: Attempt) -> Transition {
    loop {
        let (o, stopping, stopped) = ctx.stop_tick(&mut attempt).await;
        // The pause starts with the stop's barrier (a prepared stop first took a checkpoint
        // while the job ran).
        // A prepared stop's checkpoint completed: the taskmanagers of the next attempt
        // prefetch its state, and the stop waits for them.
        if let Some(prepared) = attempt.coordinator.as_mut().and_then(|c| c.prepared.take()) {
            let prefetch =
                ctx.scheduler
                    .prefetch_for_rescale(&ctx.handle, &attempt.held, prepared, ctx.reactive.is_some());
            if let Some(c) = attempt.coordinator.as_mut() {
                c.hold_stop(prefetch);
            }
        }
        if let Some(t) = attempt.coordinator.as_mut().and_then(|c| c.stop_triggered.take()) {
            if let Some(p) = ctx.handle.lock().pending_rescale.as_mut() {
                p.stop_triggered(t);
            }
        }
        if o.all_finished && stopped {
            ctx.clear_checkpoint_messages();
            let stopped_with = attempt.coordinator.as_ref().and_then(|c| c.stopped_with);
            let mut job = ctx.handle.lock();
            job.tasks.clear();
            if let Some(p) = job.pending_rescale.as_mut() {
                p.stop_checkpoint = stopped_with;
            }
            drop(job);
            return Transition::to(Phase::WaitingForResources, "stopped with a checkpoint to rescale");
        }
        if let Some(to) = ctx.interrupted(&attempt, &o) {
            return ctx.interrupt(to, attempt);
        }
        if !stopping && !stopped {
            ctx.handle.lock().pending_rescale = None;
            return Transition::to(
                Phase::Executing(attempt),
                "the stop-with-checkpoint for the rescale failed; the job keeps running",
            );
        }
        ctx.wait().await;
    }
}
