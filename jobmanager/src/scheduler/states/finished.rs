//! Finished: the terminal state (FINISHED, CANCELED or FAILED); the attempt's slots are
//! already back with the registry. Logs the outcome with the failure cause, if any.

use super::Ctx;
use crate::scheduler::job::JobState;

pub(super) fn run(ctx: &Ctx, status: JobState) {
    let job = ctx.handle.lock();
    match (&job.failure, status) {
        (Some(cause), JobState::Failed) => {
            tracing::warn!("Job {} ({}) failed: {cause}", job.name, job.id)
        }
        _ => tracing::info!("Job {} ({}) is {}.", job.name, job.id, status.name()),
    }
}
