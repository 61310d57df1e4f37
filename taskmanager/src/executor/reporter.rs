//! Sends subtask state changes (`UpdateTaskState`) and checkpoint acknowledgements and
//! declines to the jobmanager, in order, retrying a few times while the jobmanager is briefly
//! unreachable; each report has a deadline, so a partition does not stall the ones after it.

use std::sync::{Arc, Mutex};
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

type Client = JobManagerServiceClient<tonic::transport::Channel>;

#[derive(Clone)]
pub(crate) struct StateReporter {
    tx: mpsc::UnboundedSender<Report>,
    /// The jobmanager reports go to (under HA: the leader this taskmanager registered at) and
    /// a client for it, also for requests that are answered (permits).
    target: Arc<Mutex<(String, Client)>>,
}

fn connect(url: &str) -> Result<Client, String> {
    let channel = Endpoint::from_shared(url.to_string())
        .map_err(|e| format!("invalid jobmanager address {url}: {e}"))?
        .connect_timeout(Duration::from_secs(5))
        // A connection that died silently (a network partition) must not hold the queue:
        // every report has a deadline, and HTTP/2 pings find a dead connection so the
        // next report opens a new one.
        .timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(2))
        .keep_alive_timeout(Duration::from_secs(4))
        .keep_alive_while_idle(true)
        .connect_lazy();
    Ok(JobManagerServiceClient::new(channel))
}

impl StateReporter {
    /// Starts the reporting task towards `jobmanager_url`.
    pub(crate) fn start(jobmanager_url: &str) -> Result<StateReporter, String> {
        let target = Arc::new(Mutex::new((jobmanager_url.to_string(), connect(jobmanager_url)?)));
        let (tx, mut rx) = mpsc::unbounded_channel::<Report>();
        let reporter = StateReporter { tx, target };
        let current = reporter.clone();
        tokio::spawn(async move {
            while let Some(update) = rx.recv().await {
                let mut delay = Duration::from_millis(100);
                for attempt in 1..=5 {
                    let mut client = current.client();
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
        Ok(reporter)
    }

    /// Reports go to the jobmanager at `url` from now on (a new HA leader).
    pub(crate) fn point_at(&self, url: &str) -> Result<(), String> {
        let mut target = self.target.lock().map_err(|e| e.to_string())?;
        if target.0 != url {
            *target = (url.to_string(), connect(url)?);
        }
        Ok(())
    }

    /// The jobmanager client for answered requests.
    pub(crate) fn client(&self) -> Client {
        match self.target.lock() {
            Ok(t) => t.1.clone(),
            Err(p) => p.into_inner().1.clone(),
        }
    }

    pub(crate) fn report(&self, update: TaskStateUpdate) {
        let _ = self.tx.send(Report::State(update));
    }

    pub(crate) fn send(&self, report: Report) {
        let _ = self.tx.send(report);
    }
}
