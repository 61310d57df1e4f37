//! Starts the jobmanager: derives its memory, binds RPC, REST and metrics, serves until
//! SIGTERM/SIGINT, then stops its heartbeat monitors and exits cleanly.

use std::sync::Arc;
use std::time::Duration;

use sluice_common::config::options::*;
use sluice_common::config::Configuration;
use sluice_common::ha::{HaSettings, LeaseRecord};
use sluice_common::memory::JobManagerMemory;
use sluice_common::net::{bind_first_free, bind_host};
use sluice_common::observability::{
    announce_metrics, heap_used_bytes, label_value, serve_prometheus, CpuLoad, ScrapeText,
};
use sluice_common::signals::shutdown_signal;
use sluice_proto::control::job_manager_service_server::JobManagerServiceServer;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;

use crate::ha::{HaServices, JobStore};
use crate::resource_manager::Registry;
use crate::rest::{router, RestState};
use crate::rpc::{JobManagerRpc, RpcSettings};
use crate::scheduler::{Scheduler, SchedulerSettings};

/// How long a shutdown waits for open connections before the process exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

fn cfg<T>(r: Result<T, sluice_common::config::ConfigError>) -> Result<T, String> {
    r.map_err(|e| e.to_string())
}

/// Derives the jobmanager's memory with Flink's rules and error prefix.
pub fn derive_memory(config: &Configuration) -> Result<JobManagerMemory, String> {
    JobManagerMemory::from_config(config).map_err(|e| format!("JobManager memory configuration failed: {e}"))
}

/// Runs the jobmanager until a shutdown signal.
pub async fn run(config: Configuration) -> Result<(), String> {
    let memory = derive_memory(&config)?;
    for line in memory.breakdown().lines() {
        tracing::info!("{line}");
    }
    let jobmanager_id = uuid::Uuid::new_v4().simple().to_string();
    let rpc_host = bind_host(cfg(config.get_opt(&JOBMANAGER_BIND_HOST))?);
    let rpc_port = cfg(config.get(&JOBMANAGER_RPC_PORT))?;
    let rpc_listener = tokio::net::TcpListener::bind((rpc_host.as_str(), rpc_port))
        .await
        .map_err(|e| format!("cannot bind the RPC endpoint {rpc_host}:{rpc_port} (jobmanager.rpc.port): {e}"))?;

    let rest_host = bind_host(cfg(config.get_opt(&REST_BIND_ADDRESS))?);
    let rest_ports = match cfg(config.get_opt(&REST_BIND_PORT))? {
        Some(range) => range,
        None => PortRange(vec![(cfg(config.get(&REST_PORT))?, cfg(config.get(&REST_PORT))?)]),
    };
    let rest_listener = bind_first_free(&rest_host, &rest_ports)
        .await
        .map_err(|e| format!("cannot bind the REST endpoint (rest.port / rest.bind-port): {e}"))?;

    // Under HA a jobmanager leads only once it holds the lease; until then it stands by.
    let signal = shutdown_signal();
    tokio::pin!(signal);
    let rest_port = rest_listener.local_addr().map_err(|e| e.to_string())?.port();
    let ha = match HaSettings::from_config(&config)? {
        None => None,
        Some(settings) => {
            let host = cfg(config.get(&JOBMANAGER_RPC_ADDRESS))?;
            let rpc_port = rpc_listener.local_addr().map_err(|e| e.to_string())?.port();
            let me = LeaseRecord {
                token: 0,
                owner: jobmanager_id.clone(),
                rpc_address: format!("{host}:{rpc_port}"),
                rest_address: format!("http://{host}:{rest_port}"),
                renewals: 0,
            };
            tracing::info!(
                "High availability in {}: contending for the leader lease as {} (RPC {}).",
                settings.location.url,
                me.owner,
                me.rpc_address
            );
            sluice_common::systemd::notify("STATUS=standing by for the leader lease");
            let leadership = tokio::select! {
                l = settings.acquire(me) => Arc::new(l),
                sig = &mut signal => {
                    tracing::info!("Received {sig} while standing by; the JobManager stops.");
                    return Ok(());
                }
            };
            Some(Arc::new(HaServices {
                jobs: JobStore::new(&settings),
                leadership,
            }))
        }
    };
    let fencing_token = ha.as_ref().map(|h| h.leadership.token()).unwrap_or(0);

    let registry = Registry::default();
    let scheduler = Scheduler::new(
        registry.clone(),
        SchedulerSettings {
            default_parallelism: cfg(config.get(&PARALLELISM_DEFAULT))?.get(),
            resource_wait_timeout: cfg(config.get(&RESOURCE_WAIT_TIMEOUT))?,
            config: config.clone(),
            ha: ha.clone(),
        },
    );
    let host_label = label_value(&cfg(config.get(&JOBMANAGER_RPC_ADDRESS))?);
    let metrics_registry = registry.clone();
    let metrics_scheduler = scheduler.clone();
    let cpu = Arc::new(std::sync::Mutex::new(CpuLoad::new()));
    let refresh = Arc::new(move || {
        let (tms, total, free) = metrics_registry.totals();
        let labels = [("host", host_label.clone())];
        metrics::gauge!("flink_jobmanager_numRegisteredTaskManagers", &labels).set(tms as f64);
        metrics::gauge!("flink_jobmanager_taskSlotsTotal", &labels).set(f64::from(total));
        metrics::gauge!("flink_jobmanager_taskSlotsAvailable", &labels).set(f64::from(free));
        let running = metrics_scheduler
            .jobs()
            .iter()
            .filter(|j| !j.state.is_terminal())
            .count();
        metrics::gauge!("flink_jobmanager_numRunningJobs", &labels).set(running as f64);
        metrics::gauge!("flink_jobmanager_Status_JVM_Memory_Heap_Used", &labels).set(heap_used_bytes() as f64);
        let load = cpu.lock().map(|mut c| c.sample()).unwrap_or(0.0);
        metrics::gauge!("flink_jobmanager_Status_JVM_CPU_Load", &labels).set(load);
        // A job's series exist while it does: Flink drops its metric group when it ends.
        let mut scoped = ScrapeText::default();
        for job in metrics_scheduler.jobs().iter().filter(|j| !j.state.is_terminal()) {
            job_metrics(&host_label, job, &mut scoped);
        }
        scoped.render()
    });
    let metrics_addr = serve_prometheus(&rpc_host, &cfg(config.get(&PROMETHEUS_PORT))?, refresh).await?;
    let _file_sd = announce_metrics(&config, "jobmanager", metrics_addr)?;

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let settings = RpcSettings {
        jobmanager_id: jobmanager_id.clone(),
        heartbeat_interval: cfg(config.get(&HEARTBEAT_INTERVAL))?,
        heartbeat_timeout: cfg(config.get(&HEARTBEAT_TIMEOUT))?,
        fencing_token,
    };
    let service = JobManagerRpc::new(registry.clone(), scheduler.clone(), settings, shutdown_rx.clone());
    let mut rpc_shutdown = shutdown_rx.clone();
    let rpc_addr = rpc_listener.local_addr().map_err(|e| e.to_string())?;
    let rpc_server = tokio::spawn(
        tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(5)))
            .http2_keepalive_timeout(Some(Duration::from_secs(20)))
            .add_service(JobManagerServiceServer::new(service))
            .serve_with_incoming_shutdown(TcpListenerStream::new(rpc_listener), async move {
                let _ = rpc_shutdown.changed().await;
            }),
    );

    let rest_state = Arc::new(RestState {
        registry: registry.clone(),
        scheduler: scheduler.clone(),
        config: config.displayable(),
        storage_config: config.clone(),
        disposals: Default::default(),
    });
    let rest_addr = rest_listener.local_addr().map_err(|e| e.to_string())?;
    let mut rest_shutdown = shutdown_rx.clone();
    let rest_server = tokio::spawn(async move {
        axum::serve(rest_listener, router(rest_state))
            .with_graceful_shutdown(async move {
                let _ = rest_shutdown.changed().await;
            })
            .await
    });

    tracing::info!(
        "JobManager {jobmanager_id} (Sluice {}) serving RPC on {rpc_addr}, REST on http://{rest_addr}, metrics on http://{metrics_addr}/metrics",
        sluice_common::VERSION
    );

    sluice_common::systemd::ready(&format!("serving RPC on {rpc_addr}, REST on http://{rest_addr}"));

    let lost = match &ha {
        Some(ha) => {
            // The jobs this leader must resume; the store may not answer yet: try again.
            let recovering = scheduler.clone();
            tokio::spawn(async move {
                let started = std::time::Instant::now();
                loop {
                    match recovering.recover_jobs().await {
                        Ok(n) => {
                            tracing::info!(
                                "Recovered {n} job(s) from the HA store in {} ms.",
                                started.elapsed().as_millis()
                            );
                            return;
                        }
                        Err(e) => {
                            tracing::error!("Cannot read the submitted jobs from the HA store (retrying): {e}");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }
            });
            let leadership = ha.leadership.clone();
            tokio::select! {
                why = leadership.hold() => Some(why),
                sig = &mut signal => {
                    tracing::info!("Received {sig}; shutting down the JobManager.");
                    None
                }
            }
        }
        None => {
            let sig = (&mut signal).await;
            tracing::info!("Received {sig}; shutting down the JobManager.");
            None
        }
    };
    if let Some(why) = lost {
        // Nothing more may be done in the name of a lease another jobmanager may hold now:
        // the process ends (a supervisor restarts it as a standby).
        tracing::error!("JobManager {jobmanager_id} lost its leadership: {why}. Exiting.");
        return Err(format!("lost leadership: {why}"));
    }
    sluice_common::systemd::stopping();
    let _ = shutdown_tx.send(true);
    let stopped = async {
        let _ = rpc_server.await;
        let _ = rest_server.await;
    };
    if tokio::time::timeout(SHUTDOWN_GRACE, stopped).await.is_err() {
        tracing::warn!("Connections still open after {SHUTDOWN_GRACE:?}; exiting anyway.");
    }
    tracing::info!("JobManager stopped.");
    Ok(())
}

fn job_metrics(host: &str, job: &crate::scheduler::job::Job, out: &mut ScrapeText) {
    let labels = [
        ("host", host.to_string()),
        ("job_id", label_value(&job.id)),
        ("job_name", label_value(&job.name)),
    ];
    for (name, value) in job.metric_values() {
        out.gauge(&format!("flink_jobmanager_job_{name}"), &labels, value);
    }
}
