//! Liveness of one taskmanager: reads its heartbeat stream, answers each beat, and removes the
//! registration the moment the stream breaks (a killed process closes its socket) or after
//! `heartbeat.timeout` of silence (a hung or partitioned process).

use std::time::Duration;

use sluice_proto::control::{JobManagerHeartbeat, TaskManagerHeartbeat};
use tokio::sync::{mpsc, watch};
use tonic::{Status, Streaming};

use super::registry::{now_ms, LossCause, Registry};

/// Runs until the stream ends, times out, the registration disappears or the jobmanager shuts
/// down. `first` is the beat already read to learn the registration id.
pub(crate) async fn monitor_heartbeats(
    registry: Registry,
    first: TaskManagerHeartbeat,
    mut inbound: Streaming<TaskManagerHeartbeat>,
    outbound: mpsc::Sender<Result<JobManagerHeartbeat, Status>>,
    timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let registration_id = first.registration_id.clone();
    let mut beat = first;
    loop {
        if !registry.heartbeat(&beat) {
            let _ = outbound
                .send(Err(Status::not_found(format!(
                    "registration {registration_id} is not known to this jobmanager; register again"
                ))))
                .await;
            return;
        }
        let answer = JobManagerHeartbeat { timestamp_ms: now_ms() };
        if outbound.send(Ok(answer)).await.is_err() {
            registry.remove(
                &registration_id,
                LossCause::StreamBroken("response stream closed".into()),
            );
            return;
        }
        let next = tokio::select! {
            next = tokio::time::timeout(timeout, inbound.message()) => next,
            _ = shutdown.changed() => return,
        };
        beat = match next {
            Ok(Ok(Some(beat))) if beat.registration_id == registration_id => beat,
            Ok(Ok(Some(other))) => {
                let _ = outbound
                    .send(Err(Status::invalid_argument(format!(
                        "heartbeat stream of registration {registration_id} carried registration {}",
                        other.registration_id
                    ))))
                    .await;
                registry.remove(&registration_id, LossCause::StreamBroken("mixed registrations".into()));
                return;
            }
            Ok(Ok(None)) => {
                registry.remove(
                    &registration_id,
                    LossCause::StreamBroken("closed by the taskmanager".into()),
                );
                return;
            }
            Ok(Err(status)) => {
                registry.remove(&registration_id, LossCause::StreamBroken(status.message().to_string()));
                return;
            }
            Err(_) => {
                registry.remove(&registration_id, LossCause::HeartbeatTimeout(timeout));
                // Dropping `outbound` ends the response stream: a taskmanager that wakes up
                // sees it and registers again.
                return;
            }
        };
    }
}
