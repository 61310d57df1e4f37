//! Keeps the taskmanager registered: registers (retrying with Flink's doubling back-off from
//! `cluster.registration.initial-timeout` to `max-timeout`), then holds the heartbeat stream;
//! when the stream breaks or the jobmanager falls silent for `heartbeat.timeout` it registers
//! again (a restarted jobmanager knows nothing of it). On shutdown it deregisters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sluice_common::ha::HaSettings;
use sluice_common::observability::{heap_used_bytes, CpuLoad};
use sluice_proto::control::job_manager_service_client::JobManagerServiceClient;
use sluice_proto::control::{DeregisterTaskManagerRequest, RegisterTaskManagerRequest, TaskManagerHeartbeat};
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep, sleep_until, Instant};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

use super::{JobRuns, SlotTable};

#[derive(Clone, Debug)]
pub(crate) struct RegistrationSettings {
    /// `http://host:port` of the jobmanager's RPC endpoint.
    pub jobmanager_url: String,
    pub request: RegisterTaskManagerRequest,
    /// Without `taskmanager.host`: the jobmanager's host and port to detect the announced
    /// address from, again at every registration.
    pub detect_host: Option<(String, u16)>,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub heartbeat_interval: Duration,
    pub heartbeat_timeout: Duration,
    /// `taskmanager.graceful-shutdown.timeout`: on shutdown, how long to wait for the jobs
    /// running here to rescale off before deregistering.
    pub graceful_shutdown: Duration,
    /// HA: the leader is whoever holds the lease in the HA store, not the configured address.
    pub ha: Option<HaSettings>,
    /// The newest fencing token a jobmanager registered this taskmanager under; requests
    /// carrying an older one come from a deposed leader and are refused.
    pub fence: Arc<AtomicU64>,
}

/// How a heartbeat session ended.
enum SessionEnd {
    Shutdown,
    Broken(String),
}

struct Session {
    /// The jobmanager registered at.
    url: String,
    client: JobManagerServiceClient<Channel>,
    registration_id: String,
    interval: Duration,
    timeout: Duration,
}

/// Where the jobmanager to register at is: the HA lease's holder, else the configured one.
async fn leader_url(settings: &RegistrationSettings) -> Result<(String, Option<(String, u16)>), String> {
    let Some(ha) = &settings.ha else {
        return Ok((settings.jobmanager_url.clone(), settings.detect_host.clone()));
    };
    let leader = ha
        .current_leader()
        .await?
        .ok_or_else(|| format!("no jobmanager holds the leader lease in {} yet", ha.location.url))?;
    let detect = match (&settings.detect_host, leader.rpc_address.rsplit_once(':')) {
        (Some(_), Some((host, port))) => port.parse().ok().map(|p| (host.to_string(), p)),
        _ => None,
    };
    Ok((format!("http://{}", leader.rpc_address), detect))
}

async fn register(settings: &RegistrationSettings) -> Result<Session, String> {
    let (url, detect_host) = leader_url(settings).await?;
    let endpoint = Endpoint::from_shared(url.clone())
        .map_err(|e| format!("invalid jobmanager address {url}: {e}"))?
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(20));
    let channel = endpoint.connect().await.map_err(|e| format!("cannot connect: {e}"))?;
    let mut client = JobManagerServiceClient::new(channel);
    let mut request = settings.request.clone();
    if let Some((jm_host, jm_port)) = &detect_host {
        match crate::daemon::detect_host(jm_host, *jm_port) {
            Ok(host) if host != request.host => {
                tracing::info!("This taskmanager's address is now {host} (was {}).", request.host);
                request.host = host;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("{e}"),
        }
    }
    // A jobmanager that hangs (paused, a deposed HA leader) must not hold the registration.
    let limit = settings.heartbeat_timeout.min(Duration::from_secs(10));
    let answer = tokio::time::timeout(limit, client.register_task_manager(request))
        .await
        .map_err(|_| format!("no answer from {url} within {} ms", limit.as_millis()))?
        .map_err(|s| format!("registration refused: {}", s.message()))?
        .into_inner();
    let pick = |jm_ms: u64, local: Duration| {
        if jm_ms > 0 {
            Duration::from_millis(jm_ms)
        } else {
            local
        }
    };
    let newest = settings
        .fence
        .fetch_max(answer.fencing_token, Ordering::SeqCst)
        .max(answer.fencing_token);
    if answer.fencing_token < newest {
        return Err(format!(
            "the jobmanager at {url} leads under fencing token {}, older than {newest} this taskmanager already saw",
            answer.fencing_token
        ));
    }
    tracing::info!(
        "Successful registration at job manager {url} (id {}, fencing token {}) under registration id {}.",
        answer.jobmanager_id,
        answer.fencing_token,
        answer.registration_id
    );
    Ok(Session {
        url,
        client,
        registration_id: answer.registration_id,
        interval: pick(answer.heartbeat_interval_ms, settings.heartbeat_interval),
        timeout: pick(answer.heartbeat_timeout_ms, settings.heartbeat_timeout),
    })
}

/// What the taskmanager reports with each heartbeat.
pub(crate) struct Reported {
    pub slots: Arc<SlotTable>,
    pub runs: JobRuns,
    /// Data connections to other taskmanagers, forgotten when the jobmanager is lost.
    pub network: Arc<crate::network::NetworkEnvironment>,
    /// Task states and checkpoint acknowledgements go to the jobmanager registered at.
    pub reporter: super::StateReporter,
}

fn beat(registration_id: &str, reported: &Reported, cpu: &mut CpuLoad) -> TaskManagerHeartbeat {
    TaskManagerHeartbeat {
        registration_id: registration_id.to_string(),
        slots: Some(reported.slots.report()),
        heap_used_bytes: heap_used_bytes(),
        cpu_load: cpu.sample(),
        tasks: reported.runs.digests(),
        network_segments_total: reported.network.pool.total(),
        network_segments_available: reported.network.pool.available(),
        network_segment_size: reported.network.pool.segment_size(),
    }
}

/// How often a draining taskmanager looks whether its subtasks have ended.
const DRAIN_POLL: Duration = Duration::from_millis(20);

async fn heartbeat(
    session: &mut Session,
    reported: &Reported,
    shutdown: &mut watch::Receiver<bool>,
    graceful: Duration,
) -> SessionEnd {
    let mut cpu = CpuLoad::new();
    let (tx, rx) = mpsc::channel(4);
    if tx
        .send(beat(&session.registration_id, reported, &mut cpu))
        .await
        .is_err()
    {
        return SessionEnd::Broken("heartbeat channel closed".into());
    }
    let mut inbound = match session.client.heartbeat(ReceiverStream::new(rx)).await {
        Ok(response) => response.into_inner(),
        Err(status) => return SessionEnd::Broken(status.message().to_string()),
    };
    let mut ticker = tokio::time::interval(session.interval);
    ticker.tick().await;
    let mut deadline = Instant::now() + session.timeout;
    // Shutting down while the jobs running here rescale off: until when to wait for them.
    let mut draining: Option<Instant> = None;
    let mut drain_poll = tokio::time::interval(DRAIN_POLL);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                if tx.send(beat(&session.registration_id, reported, &mut cpu)).await.is_err() {
                    return SessionEnd::Broken("heartbeat channel closed".into());
                }
            }
            message = inbound.message() => match message {
                Ok(Some(_)) => deadline = Instant::now() + session.timeout,
                Ok(None) => return SessionEnd::Broken("the jobmanager closed the heartbeat stream".into()),
                Err(status) => return SessionEnd::Broken(status.message().to_string()),
            },
            _ = sleep_until(deadline) => {
                return SessionEnd::Broken(format!(
                    "no answer from the jobmanager for {} ms (heartbeat.timeout)",
                    session.timeout.as_millis()
                ));
            }
            _ = shutdown.changed(), if draining.is_none() => {
                // The jobs running here move off first (heartbeats go on meanwhile), if the
                // jobmanager says any will.
                if !graceful.is_zero() && !reported.runs.tasks().is_empty() {
                    match drain(session).await {
                        Drain::Moving => {
                            tracing::info!(
                                "Waiting up to {} ms for the jobs running here to rescale off (taskmanager.graceful-shutdown.timeout).",
                                graceful.as_millis()
                            );
                            draining = Some(Instant::now() + graceful);
                            continue;
                        }
                        // No job moves off: the jobmanager deregistered us with its answer.
                        Drain::Deregistered => {
                            tracing::info!("Deregistered from the jobmanager (no job here rescales off).");
                            return SessionEnd::Shutdown;
                        }
                        Drain::Failed => {}
                    }
                }
                // Deregister while the stream is still open, so the jobmanager records a
                // clean departure rather than a broken stream.
                deregister(session, "TaskManager shutting down").await;
                return SessionEnd::Shutdown;
            }
            _ = drain_poll.tick(), if draining.is_some() => {
                let empty = reported.runs.tasks().is_empty();
                if empty || draining.is_some_and(|until| Instant::now() >= until) {
                    if empty {
                        tracing::info!("The jobs running here moved off.");
                    } else {
                        tracing::warn!("The jobs running here did not move off within taskmanager.graceful-shutdown.timeout; leaving anyway (they fail over).");
                    }
                    deregister(session, "TaskManager shutting down").await;
                    return SessionEnd::Shutdown;
                }
            }
        }
    }
}

/// What the jobmanager made of a request to drain.
enum Drain {
    /// Some job rescales off: the registration stays (offering no slots) until we deregister.
    Moving,
    /// No job moves off, so the request deregistered us at once.
    Deregistered,
    /// No answer or an error: we deregister ourselves.
    Failed,
}

/// Asks the jobmanager to move the jobs running here off.
async fn drain(session: &mut Session) -> Drain {
    let request = DeregisterTaskManagerRequest {
        registration_id: session.registration_id.clone(),
        reason: "TaskManager shutting down".into(),
        drain: true,
    };
    match tokio::time::timeout(Duration::from_secs(3), session.client.deregister_task_manager(request)).await {
        Ok(Ok(answer)) if answer.get_ref().draining => Drain::Moving,
        Ok(Ok(_)) => Drain::Deregistered,
        Ok(Err(status)) => {
            tracing::warn!("Draining was not accepted: {}", status.message());
            Drain::Failed
        }
        Err(_) => {
            tracing::warn!("Draining got no answer within 3 s.");
            Drain::Failed
        }
    }
}

async fn deregister(session: &mut Session, reason: &str) {
    let request = DeregisterTaskManagerRequest {
        registration_id: session.registration_id.clone(),
        reason: reason.to_string(),
        drain: false,
    };
    match tokio::time::timeout(Duration::from_secs(3), session.client.deregister_task_manager(request)).await {
        Ok(Ok(_)) => tracing::info!("Deregistered from the jobmanager."),
        Ok(Err(status)) => tracing::warn!("Deregistration was not accepted: {}", status.message()),
        Err(_) => tracing::warn!("Deregistration got no answer within 3 s."),
    }
}

/// Runs until `shutdown` flips; deregisters on the way out when registered.
pub(crate) async fn maintain_registration(
    settings: RegistrationSettings,
    reported: Reported,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = settings.initial_backoff;
    loop {
        if *shutdown.borrow() {
            return;
        }
        match register(&settings).await {
            Ok(mut session) => {
                backoff = settings.initial_backoff;
                if let Err(e) = reported.reporter.point_at(&session.url) {
                    tracing::warn!("Cannot direct reports to {}: {e}", session.url);
                }
                // systemd (Type=notify): a taskmanager is ready once registered.
                sluice_common::systemd::ready(&format!("registered at {}", session.url));
                match heartbeat(&mut session, &reported, &mut shutdown, settings.graceful_shutdown).await {
                    SessionEnd::Shutdown => return,
                    SessionEnd::Broken(why) => {
                        // The jobmanager declared us lost (or will): it failed over our tasks,
                        // so they stop here too instead of running on as zombies.
                        // Pooled data connections may be dead the same way.
                        let cancelled = reported.runs.cancel_all();
                        let forgotten = reported.network.forget_connections().await;
                        tracing::warn!(
                            "Connection to the jobmanager lost: {why}. Registering again (cancelled {cancelled} job attempt(s) running here, dropped {forgotten} data connection(s))."
                        );
                    }
                }
            }
            Err(why) => {
                let at = match &settings.ha {
                    Some(ha) => format!("the leader of {}", ha.location.url),
                    None => settings.jobmanager_url.clone(),
                };
                tracing::info!(
                    "Could not register at the jobmanager {at} ({why}); next attempt in {} ms.",
                    backoff.as_millis()
                );
                tokio::select! {
                    _ = sleep(backoff) => {}
                    _ = shutdown.changed() => return,
                }
                // Under HA a new leader appears within a lease: look again at least that often.
                let max = settings
                    .ha
                    .as_ref()
                    .map_or(settings.max_backoff, |ha| ha.renew_interval.min(settings.max_backoff));
                backoff = (backoff * 2).min(max);
            }
        }
    }
}
