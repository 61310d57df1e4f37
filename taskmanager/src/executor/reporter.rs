//! Sends subtask state changes to the jobmanager (`UpdateTaskState`), in order, retrying a
//! few times while the jobmanager is briefly unreachable.

use std::time::Duration;

use sluice_proto::control::job_manager_service_client::JobManagerServiceClient;
use sluice_proto::control::TaskStateUpdate;
use tokio::sync::mpsc;
use tonic::transport::Endpoint;

#[derive(Clone)]
pub struct StateReporter {
    tx: mpsc::UnboundedSender<TaskStateUpdate>,
}

impl StateReporter {
    /// Starts the reporting task towards `jobmanager_url`.
    pub fn start(jobmanager_url: &str) -> Result<StateReporter, String> {
        let channel = Endpoint::from_shared(jobmanager_url.to_string())
            .map_err(|e| format!("invalid jobmanager address {jobmanager_url}: {e}"))?
            .connect_timeout(Duration::from_secs(5))
            .connect_lazy();
        let mut client = JobManagerServiceClient::new(channel);
        let (tx, mut rx) = mpsc::unbounded_channel::<TaskStateUpdate>();
        tokio::spawn(async move {
            while let Some(update) = rx.recv().await {
                let mut delay = Duration::from_millis(100);
                for attempt in 1..=5 {
                    match client.update_task_state(update.clone()).await {
                        Ok(_) => break,
                        Err(status) if attempt == 5 => {
                            tracing::warn!(
                                "could not report task state of job {}: {}",
                                update.job_id,
                                status.message()
                            )
                        }
                        Err(_) => {
                            tokio::time::sleep(delay).await;
                            delay *= 2;
                        }
                    }
                }
            }
        });
        Ok(StateReporter { tx })
    }

    pub fn report(&self, update: TaskStateUpdate) {
        let _ = self.tx.send(update);
    }
}
