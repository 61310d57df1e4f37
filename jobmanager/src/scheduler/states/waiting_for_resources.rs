//! WaitingForResources: takes the slots the job needs (reactive: its share, or what is free
//! once the slots stayed short for the stabilization timeout), plans the attempt at that
//! parallelism (reactive), and deploys it. Fails the job with Flink's message when the slots do
//! not come within `resource-wait-timeout`; a cancellation ends the wait.

use std::time::Instant;

use sluice_common::config::format_duration;

use super::{Attempt, Ctx, Phase, Transition};
use crate::scheduler::job::{JobState, Waiting};
use crate::scheduler::reactive::ScaleUpWatch;

pub(super) async fn run(ctx: &Ctx) -> Transition {
    let s = &ctx.scheduler;
    // A rescale to fit resource requirements planned new per-vertex parallelism.
    let replanned = ctx.reactive.is_none() && !ctx.handle.lock().node_parallelism.is_empty();
    if replanned {
        if let Err(e) = s.replan(&ctx.handle, None) {
            ctx.handle.lock().failure.get_or_insert(e.clone());
            return Transition::to(Phase::Finished(JobState::Failed), e);
        }
    }
    let since = Instant::now();
    let deadline = ctx.resource_wait.map(|w| since + w);
    let (allocation, took) = loop {
        if ctx.cancel_requested() {
            ctx.handle.lock().waiting = None;
            return Transition::to(Phase::Finished(JobState::Canceled), "cancelled while waiting for slots");
        }
        let needed = match &ctx.reactive {
            Some(r) => s.reactive_slots(&ctx.handle, r, since),
            None => ctx.handle.lock().graph.slots_needed(),
        };
        if let Some(a) = (needed > 0).then(|| s.registry.allocate(needed)).flatten() {
            ctx.handle.lock().waiting = None;
            break (a, needed);
        }
        ctx.handle.lock().waiting = Some(Waiting {
            slots_needed: needed.max(1),
            timeout_ms: ctx.resource_wait.map(|w| w.as_millis() as u64),
        });
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let (tms, total, free) = s.registry.totals();
            let cause = format!(
                "Could not acquire the minimum required resources: the job needs {} slots, but only {free} of {total} slots (on {tms} taskmanagers) were available after waiting {} (jobmanager.adaptive-scheduler.resource-wait-timeout).",
                needed.max(1),
                format_duration(ctx.resource_wait.unwrap_or_default())
            );
            let mut job = ctx.handle.lock();
            job.waiting = None;
            job.failure.get_or_insert(cause.clone());
            return Transition::to(Phase::Finished(JobState::Failed), cause);
        }
        ctx.wait().await;
    };
    let held: Vec<(String, u32)> = allocation.iter().map(|(r, n)| (r.resource_id.clone(), *n)).collect();
    let mut attempt = Attempt {
        epoch: 0,
        tms: Vec::new(),
        coordinator: None,
        enumerators: Default::default(),
        next_discovery: None,
        scale_up: ScaleUpWatch::default(),
        was_running: false,
        held,
        registry: s.registry.clone(),
    };
    if ctx.reactive.is_some() {
        if let Err(e) = s.replan(&ctx.handle, Some(took)) {
            ctx.handle.lock().failure.get_or_insert(e.clone());
            return Transition::to(Phase::Finished(JobState::Failed), e);
        }
    }
    match s.deploy(&ctx.handle, allocation, &mut attempt).await {
        Ok(()) => match s.coordinator(&ctx.handle, &attempt) {
            Ok(c) => {
                attempt.coordinator = Some(c);
                let p = ctx.handle.lock().current_parallelism();
                Transition::to(
                    Phase::Executing(attempt),
                    format!("{took} slots taken, deployed at parallelism {p}"),
                )
            }
            Err(e) => {
                ctx.handle.lock().failure.get_or_insert(e.clone());
                Transition::to(Phase::Failing(attempt), e)
            }
        },
        Err(cause) => {
            ctx.handle.lock().failure.get_or_insert(cause.clone());
            Transition::to(Phase::Failing(attempt), cause)
        }
    }
}
