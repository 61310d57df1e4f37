//! Starts a taskmanager: derives and logs its memory, binds its gateway (RPC), data and metrics
//! ports, registers with the jobmanager and stays registered until SIGTERM/SIGINT, when it
//! lets its reactive jobs rescale off it (with `taskmanager.graceful-shutdown.timeout` set),
//! deregisters and exits.

use std::net::{IpAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use sluice_common::config::options::*;
use sluice_common::config::{ConfigError, Configuration};
use sluice_common::net::{bind_first_free, bind_host};
use sluice_common::observability::{
    announce_metrics, heap_used_bytes, label_value, physical_memory_bytes, serve_prometheus, CpuLoad, ScrapeText,
};
use sluice_common::signals::shutdown_signal;
use sluice_proto::control::task_manager_service_server::TaskManagerServiceServer;
use sluice_proto::control::{Hardware, RegisterTaskManagerRequest};
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;

use crate::executor::{
    maintain_registration, JobRuns, RegistrationSettings, Reported, SlotTable, StateEnv, StateReporter,
    TaskManagerGateway,
};
use crate::memory::MemoryPools;
use crate::metrics::TaskSeries;
use crate::network::{NetworkBufferPool, NetworkEnvironment};

fn cfg<T>(r: Result<T, ConfigError>) -> Result<T, String> {
    r.map_err(|e| e.to_string())
}

/// The address this taskmanager announces: `taskmanager.host`, else the local address the OS
/// would use to reach the jobmanager (no packet is sent).
fn announced_host(config: &Configuration, jm_host: &str, jm_port: u16) -> Result<String, String> {
    if let Some(host) = cfg(config.get_opt(&TASKMANAGER_HOST))? {
        return Ok(host);
    }
    detect_host(jm_host, jm_port)
}

/// The local address the OS would use to reach the jobmanager (no packet is sent). Without
/// `taskmanager.host` it is detected again at every registration, so a taskmanager whose
/// address changed (a container reconnected to its network) announces the new one.
pub fn detect_host(jm_host: &str, jm_port: u16) -> Result<String, String> {
    let socket = UdpSocket::bind("0.0.0.0:0").map_err(|e| format!("cannot detect taskmanager.host: {e}"))?;
    socket.connect((jm_host, jm_port)).map_err(|e| {
        format!("cannot detect taskmanager.host from jobmanager.rpc.address {jm_host}: {e}; set taskmanager.host")
    })?;
    let ip: IpAddr = socket.local_addr().map_err(|e| e.to_string())?.ip();
    Ok(ip.to_string())
}

fn random_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..6].to_string()
}

fn install_metrics_refresh(
    pools: &MemoryPools,
    network: &Arc<NetworkEnvironment>,
    runs: &JobRuns,
    resource_id: &str,
    host: &str,
) -> sluice_common::observability::MetricsRefresh {
    let labels = [("host", label_value(host)), ("tm_id", label_value(resource_id))];
    let (network, runs) = (network.clone(), runs.clone());
    let managed = pools.memory.flink.managed.bytes() as f64;
    let segments = pools.total_network_segments() as f64;
    let network_bytes = pools.memory.flink.network.bytes() as f64;
    let heap_max = pools.heap_max() as f64;
    let cpu = std::sync::Mutex::new(CpuLoad::new());
    let tasks = TaskSeries::new(host, resource_id);
    Arc::new(move || {
        let g = |name: &'static str, value: f64| metrics::gauge!(name, &labels).set(value);
        let available = network.pool.available() as f64;
        let segment = network.pool.segment_size() as f64;
        g("flink_taskmanager_Status_Flink_Memory_Managed_Total", managed);
        g("flink_taskmanager_Status_Flink_Memory_Managed_Used", 0.0);
        g("flink_taskmanager_Status_Network_TotalMemorySegments", segments);
        g("flink_taskmanager_Status_Network_AvailableMemorySegments", available);
        g("flink_taskmanager_Status_Shuffle_Netty_TotalMemorySegments", segments);
        g(
            "flink_taskmanager_Status_Shuffle_Netty_AvailableMemorySegments",
            available,
        );
        g("flink_taskmanager_Status_Shuffle_Netty_TotalMemory", network_bytes);
        g(
            "flink_taskmanager_Status_Shuffle_Netty_UsedMemory",
            (segments - available) * segment,
        );
        g(
            "flink_taskmanager_Status_JVM_Memory_Heap_Used",
            heap_used_bytes() as f64,
        );
        g("flink_taskmanager_Status_JVM_Memory_Heap_Max", heap_max);
        let load = cpu.lock().map(|mut c| c.sample()).unwrap_or(0.0);
        g("flink_taskmanager_Status_JVM_CPU_Load", load);
        let mut scoped = ScrapeText::default();
        tasks.write(&runs.tasks(), &mut scoped);
        scoped.render()
    })
}

/// Runs the taskmanager until a shutdown signal.
pub async fn run(config: Configuration) -> Result<(), String> {
    let pools = MemoryPools::from_config(&config)?;
    for line in pools.memory.breakdown().lines() {
        tracing::info!("{line}");
    }
    let slots = Arc::new(SlotTable::new(cfg(config.get(&TASK_SLOTS))?.get()));

    let bind = bind_host(cfg(config.get_opt(&TASKMANAGER_BIND_HOST))?);
    let rpc_listener = bind_first_free(&bind, &cfg(config.get(&TASKMANAGER_RPC_PORT))?)
        .await
        .map_err(|e| format!("cannot bind the RPC endpoint (taskmanager.rpc.port): {e}"))?;
    let rpc_port = rpc_listener.local_addr().map_err(|e| e.to_string())?.port();
    let data_port_cfg = cfg(config.get(&TASKMANAGER_DATA_PORT))?;
    // The data plane's listener, served once the network environment exists.
    let data_listener = tokio::net::TcpListener::bind((bind.as_str(), data_port_cfg))
        .await
        .map_err(|e| format!("cannot bind the data port {bind}:{data_port_cfg} (taskmanager.data.port): {e}"))?;
    let data_port = data_listener.local_addr().map_err(|e| e.to_string())?.port();

    let jm_host = cfg(config.get(&JOBMANAGER_RPC_ADDRESS))?;
    let jm_port = cfg(config.get(&JOBMANAGER_RPC_PORT))?;
    let host = announced_host(&config, &jm_host, jm_port)?;
    let resource_id = match cfg(config.get_opt(&TASKMANAGER_RESOURCE_ID))? {
        Some(id) => id,
        None => format!("{host}:{rpc_port}-{}", random_suffix()),
    };

    let network = NetworkEnvironment::new(
        NetworkBufferPool::new(pools.total_network_segments(), pools.segment_size.bytes()),
        format!("{host}:{data_port}"),
        cfg(config.get(&NETWORK_BUFFERS_PER_CHANNEL))?.get(),
        cfg(config.get(&NETWORK_FLOATING_BUFFERS_PER_GATE))?.get(),
        cfg(config.get(&NETWORK_MAX_BUFFERS_PER_CHANNEL))?.get(),
    );
    network.serve(data_listener);
    let runs = JobRuns::default();

    let refresh = install_metrics_refresh(&pools, &network, &runs, &resource_id, &host);
    let metrics_addr = serve_prometheus(&bind, &cfg(config.get(&PROMETHEUS_PORT))?, refresh).await?;
    let _file_sd = announce_metrics(&config, "taskmanager", metrics_addr)?;

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let jobmanager_url = format!("http://{jm_host}:{jm_port}");
    let reporter = StateReporter::start(&jobmanager_url)?;
    let reporter_for_registration = reporter.clone();
    let tmp_dir = match cfg(config.get_opt(&IO_TMP_DIRS))? {
        // Flink takes a list separated by ',' or the path separator; the first one is used.
        Some(dirs) => std::path::PathBuf::from(dirs.split([',', ':']).next().unwrap_or("").trim()),
        None => std::env::temp_dir(),
    };
    let slot_count = u64::from(slots.total().max(1));
    let local_root = crate::state::local_copy::tm_root(
        cfg(config.get_opt(&LOCAL_STATE_ROOT_DIRS))?.as_deref(),
        &tmp_dir,
        &resource_id,
    );
    let claim_of = local_root.clone();
    let _local_claim = tokio::task::spawn_blocking(move || crate::state::local_copy::claim_root(&claim_of))
        .await
        .map_err(|e| e.to_string())??;
    let state_env = StateEnv {
        config: Arc::new(config.clone()),
        heap_per_slot: pools.memory.flink.task_heap.bytes() / slot_count,
        managed_per_slot: pools.memory.flink.managed.bytes() / slot_count,
        tmp_dir,
        local_root: local_root.clone(),
    };
    let fence = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let gateway = TaskManagerGateway::new(
        resource_id.clone(),
        slots.clone(),
        network.clone(),
        runs.clone(),
        reporter,
        state_env,
        fence.clone(),
    );
    // The gateway serves until the registration ended: a draining taskmanager still takes
    // the checkpoint that moves its jobs off.
    let (rpc_stop_tx, mut rpc_shutdown) = watch::channel(false);
    let rpc_server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TaskManagerServiceServer::new(gateway))
            .serve_with_incoming_shutdown(TcpListenerStream::new(rpc_listener), async move {
                let _ = rpc_shutdown.changed().await;
            }),
    );

    let graceful_shutdown = cfg(config.get(&GRACEFUL_SHUTDOWN_TIMEOUT))?;
    let settings = RegistrationSettings {
        jobmanager_url,
        request: RegisterTaskManagerRequest {
            resource_id: resource_id.clone(),
            host: host.clone(),
            rpc_port: u32::from(rpc_port),
            data_port: u32::from(data_port),
            number_of_slots: slots.total(),
            memory: pools.by_option(),
            hardware: Some(Hardware {
                cpu_cores: std::thread::available_parallelism()
                    .map(|n| n.get() as u32)
                    .unwrap_or(1),
                physical_memory: physical_memory_bytes(),
            }),
            version: sluice_common::VERSION.to_string(),
        },
        detect_host: cfg(config.get_opt(&TASKMANAGER_HOST))?
            .is_none()
            .then(|| (jm_host.clone(), jm_port)),
        initial_backoff: cfg(config.get(&REGISTRATION_INITIAL_TIMEOUT))?,
        max_backoff: cfg(config.get(&REGISTRATION_MAX_TIMEOUT))?,
        heartbeat_interval: cfg(config.get(&HEARTBEAT_INTERVAL))?,
        heartbeat_timeout: cfg(config.get(&HEARTBEAT_TIMEOUT))?,
        graceful_shutdown,
        ha: sluice_common::ha::HaSettings::from_config(&config)?,
        fence,
    };
    tracing::info!(
        "TaskManager {resource_id} (Sluice {}) with {} slots: RPC on {host}:{rpc_port}, data on {host}:{data_port}, metrics on http://{metrics_addr}/metrics; jobmanager at {jm_host}:{jm_port}",
        sluice_common::VERSION,
        slots.total()
    );
    let reported = Reported {
        slots: slots.clone(),
        runs,
        network: network.clone(),
        reporter: reporter_for_registration,
    };
    let registration = tokio::spawn(maintain_registration(settings, reported, shutdown_rx.clone()));

    let signal = shutdown_signal().await;
    tracing::info!("Received {signal}; shutting down the TaskManager.");
    sluice_common::systemd::stopping();
    let _ = shutdown_tx.send(true);
    let _ = tokio::time::timeout(graceful_shutdown + Duration::from_secs(5), registration).await;
    let _ = rpc_stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(2), rpc_server).await;
    // Local copies of checkpointed state do not outlive the taskmanager (Flink's rule).
    let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(local_root)).await;
    tracing::info!("TaskManager stopped.");
    Ok(())
}
