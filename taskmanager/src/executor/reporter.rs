//! Sends subtask state changes (`UpdateTaskState`) and checkpoint acknowledgements and
//! declines to the jobmanager, in order, retrying a few times while the jobmanager is briefly
//! unreachable; each report has a deadline, so a partition does not stall the ones after it.

use std::time::Duration;

use sluice_proto::control::job_manager_service_client::JobManagerServiceClient;
use sluice_proto::control::{CheckpointAck, CheckpointDecline, TaskStateUpdate};
use tokio::sync::mpsc;
use tonic::transport::Endpoint;

#[derive(Clone, Debug)]
pub(crate) enum Report {
    State(TaskStateUpdate),
    Ack(CheckpointAck),
    Decline(CheckpointDecline),
}

impl Report {
    fn job_id(&self) -> &str {
        match self {
            Report::State(u) => &u.job_id,
            Report::Ack(a) => &a.job_id,
            Report::Decline(d) => &d.job_id,
        }
    }
}

#[derive(Clone)]
pub(crate) struct StateReporter {
    tx: mpsc::UnboundedSender<Report>,
    /// A client on the same channel, for requests that are answered (permits).
    client: JobManagerServiceClient<tonic::transport::Channel>,
}

impl StateReporter {
    /// Starts the reporting task towards `jobmanager_url`.
    pub(crate) fn start(jobmanager_url: &str) -> Result<StateReporter, String> {
        let channel = Endpoint::from_shared(jobmanager_url.to_string())
            .map_err(|e| format!("invalid jobmanager address {jobmanager_url}: {e}"))?
            .connect_timeout(Duration::from_secs(5))
            // A connection that died silently (a network partition) must not hold the queue:
            // every report has a deadline, and HTTP/2 pings find a dead connection so the
            // next report opens a new one.
            .timeout(Duration::from_secs(5))
            .http2_keep_alive_interval(Duration::from_secs(2))
            .keep_alive_timeout(Duration::from_secs(4))
            .keep_alive_while_idle(true)
            .connect_lazy();
        let mut client = JobManagerServiceClient::new(channel);
        let shared = client.clone();
        let (tx, mut rx) = mpsc::unbounded_channel::<Report>();
        tokio::spawn(async move {
            while let Some(update) = rx.recv().await {
                let mut delay = Duration::from_millis(100);
                for attempt in 1..=5 {
                    let sent = match update.clone() {
                        Report::State(u) => client.update_task_state(u).await.map(|_| ()),
                        Report::Ack(a) => client.acknowledge_checkpoint(a).await.map(|_| ()),
                        Report::Decline(d) => client.decline_checkpoint(d).await.map(|_| ()),
                    };
                    match sent {
                        Ok(_) => break,
                        Err(status) if attempt == 5 => {
                            tracing::warn!(
                                "could not report to the jobmanager for job {}: {}",
                                update.job_id(),
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
        Ok(StateReporter { tx, client: shared })
    }

    /// The jobmanager client for answered requests.
    pub(crate) fn client(&self) -> JobManagerServiceClient<tonic::transport::Channel> {
        self.client.clone()
    }

    pub(crate) fn report(&self, update: TaskStateUpdate) {
        let _ = self.tx.send(Report::State(update));
    }

    pub(crate) fn send(&self, report: Report) {
        let _ = self.tx.send(report);
    }
}
