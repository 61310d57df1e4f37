//! The jobmanager's side of high availability (`sluice_common::ha`): the leadership it holds
//! (its fencing token goes with every request to a taskmanager, and no checkpoint completes
//! once it lapsed), and the submitted jobs kept beside the lease (`job_store`), which a new
//! leader recovers and resumes from their latest checkpoints.

mod job_store;

use std::sync::Arc;

use sluice_common::ha::Leadership;

pub(crate) use job_store::{JobRecord, JobStore};

#[derive(Debug)]
pub(crate) struct HaServices {
    pub jobs: JobStore,
    pub leadership: Arc<Leadership>,
}
