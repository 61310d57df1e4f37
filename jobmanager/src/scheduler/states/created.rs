//! Created: the job was accepted; its restart strategy and reactive settings are read from its
//! configuration (a bad value fails the job with the key named), then it waits for slots.

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use sluice_common::config::options::{CHECKPOINT_INTERVAL, RESOURCE_WAIT_TIMEOUT};

use super::{Commands, Ctx, Phase, Transition};
use crate::scheduler::reactive::ReactiveSettings;
use crate::scheduler::restart::RestartStrategy;
use crate::scheduler::{Handle, JobCommand, Scheduler};

pub(super) fn setup(
    scheduler: &Scheduler,
    handle: &Arc<Handle>,
    commands: mpsc::UnboundedReceiver<JobCommand>,
) -> Result<Ctx, String> {
    let (config, reactive) = {
        let job = handle.lock();
        (job.config.clone(), job.reactive)
    };
    let checkpointing = config.get_opt(&CHECKPOINT_INTERVAL).ok().flatten().is_some();
    let strategy = RestartStrategy::from_config(&config, checkpointing)?;
    let reactive = reactive.then(|| ReactiveSettings::from_config(&config)).transpose()?;
    // Reactive mode waits for slots as long as it takes unless a timeout is set (Flink's
    // reactive default for resource-wait-timeout is -1).
    let resource_wait = (reactive.is_none() || config.contains(&RESOURCE_WAIT_TIMEOUT))
        .then_some(scheduler.settings.resource_wait_timeout);
    Ok(Ctx {
        scheduler: scheduler.clone(),
        handle: handle.clone(),
        strategy,
        reactive,
        resource_wait,
        commands: Mutex::new(Commands::new(commands)),
    })
}

pub(super) fn run(ctx: &Ctx) -> Transition {
    let slots = ctx.handle.lock().graph.slots_needed();
    let what = match ctx.reactive {
        Some(_) => "reactive: as many slots as its share allows".to_string(),
        None => format!("needs {slots} slots"),
    };
    Transition::to(Phase::WaitingForResources, format!("submitted ({what})"))
}
