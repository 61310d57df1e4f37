//! The jobmanager's permits (`AcquirePermit` / `ReleasePermit`) as the connectors' `Permits`:
//! one client per taskmanager, a holder per sink subtask (taskmanager, operator, subtask). A
//! permit not granted is asked for again every 20 ms; an unreachable jobmanager fails the
//! acquisition after about 10 s (a transient failure: the task restarts).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sluice_common::failure::{ClassedError, FailureClass};
use sluice_connectors::Permits;
use sluice_proto::control::job_manager_service_client::JobManagerServiceClient;
use sluice_proto::control::PermitRequest;
use tonic::transport::Channel;

/// What every subtask of one job attempt on this taskmanager shares.
#[derive(Clone)]
pub(crate) struct PermitClient {
    pub client: JobManagerServiceClient<Channel>,
    pub job_id: String,
    pub epoch: u64,
    pub resource_id: String,
}

impl PermitClient {
    /// The permits of subtask `subtask` of operator `uid`.
    pub(crate) fn holder(&self, uid: &str, subtask: u32) -> Arc<dyn Permits> {
        Arc::new(HeldPermits {
            base: self.clone(),
            holder: format!("{}/{uid}/{subtask}", self.resource_id),
        })
    }
}

struct HeldPermits {
    base: PermitClient,
    holder: String,
}

impl HeldPermits {
    fn request(&self, pool: &str, max: u32) -> PermitRequest {
        PermitRequest {
            job_id: self.base.job_id.clone(),
            epoch: self.base.epoch,
            pool: pool.to_string(),
            max,
            holder: self.holder.clone(),
        }
    }
}

#[async_trait]
impl Permits for HeldPermits {
    async fn acquire(&self, pool: &str, max: u32) -> Result<(), ClassedError> {
        let mut client = self.base.client.clone();
        let mut failures = 0;
        loop {
            match client.acquire_permit(self.request(pool, max)).await {
                Ok(r) if r.get_ref().granted => return Ok(()),
                Ok(_) => {
                    failures = 0;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(status) => {
                    failures += 1;
                    if failures >= 100 {
                        return Err(ClassedError::new(
                            FailureClass::Transient,
                            format!("the jobmanager granted no permit of {pool}: {}", status.message()),
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    async fn release(&self, pool: &str) {
        let mut client = self.base.client.clone();
        for _ in 0..5 {
            if client.release_permit(self.request(pool, 0)).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tracing::warn!(
            "Could not give the permit of {pool} back to the jobmanager (the job's next attempt starts afresh)."
        );
    }
}
