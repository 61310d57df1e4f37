//! The jobmanager's gRPC service (`JobManagerService`, DESIGN §4): registration with a
//! dial-back to the taskmanager's gateway, the heartbeat stream, and deregistration.

use std::pin::Pin;
use std::time::Duration;

use sluice_proto::control::job_manager_service_server::JobManagerService;
use sluice_proto::control::task_manager_service_client::TaskManagerServiceClient;
use sluice_proto::control::{
    DeregisterTaskManagerRequest, DeregisterTaskManagerResponse, DescribeTaskManagerRequest, JobManagerHeartbeat,
    PermitRequest, PermitResponse, RegisterTaskManagerRequest, RegisterTaskManagerResponse, TaskManagerHeartbeat,
    TaskStateAck, TaskStateUpdate,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::transport::Endpoint;
use tonic::{Request, Response, Status, Streaming};

use crate::permits::PermitTable;
use crate::resource_manager::now_ms;
use crate::resource_manager::{monitor_heartbeats, LossCause, Registry, TaskManagerRecord};
use crate::scheduler::Scheduler;

/// Settings the service hands to taskmanagers and uses for liveness.
#[derive(Clone, Debug)]
pub(crate) struct RpcSettings {
    pub jobmanager_id: String,
    pub heartbeat_interval: Duration,
    pub heartbeat_timeout: Duration,
    /// The HA lease's token this jobmanager leads under (0 without HA).
    pub fencing_token: u64,
}

pub(crate) struct JobManagerRpc {
    registry: Registry,
    scheduler: Scheduler,
    settings: RpcSettings,
    shutdown: watch::Receiver<bool>,
    permits: PermitTable,
}

impl JobManagerRpc {
    pub(crate) fn new(
        registry: Registry,
        scheduler: Scheduler,
        settings: RpcSettings,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        JobManagerRpc {
            registry,
            scheduler,
            settings,
            shutdown,
            permits: PermitTable::default(),
        }
    }

    /// Flink's ResourceManager connects back to a registering TaskExecutor's gateway; an
    /// unreachable address fails the registration instead of leaving a ghost.
    async fn dial_back(
        &self,
        host: &str,
        port: u32,
    ) -> Result<TaskManagerServiceClient<tonic::transport::Channel>, Status> {
        let address = format!("http://{host}:{port}");
        let limit = self.settings.heartbeat_timeout.min(Duration::from_secs(10));
        let endpoint = Endpoint::from_shared(address.clone())
            .map_err(|e| Status::invalid_argument(format!("taskmanager address {address} is invalid: {e}")))?
            .connect_timeout(limit)
            .timeout(limit);
        let channel = endpoint.connect().await.map_err(|e| {
            Status::unavailable(format!(
                "jobmanager cannot reach the taskmanager gateway at {address}: {e}"
            ))
        })?;
        let mut client = TaskManagerServiceClient::new(channel);
        client
            .describe_task_manager(DescribeTaskManagerRequest {})
            .await
            .map_err(|e| {
                Status::unavailable(format!(
                    "taskmanager gateway at {address} did not answer: {}",
                    e.message()
                ))
            })?;
        Ok(client)
    }
}

fn check_port(name: &str, port: u32) -> Result<u16, Status> {
    u16::try_from(port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| Status::invalid_argument(format!("{name} {port} is not a usable port")))
}

type HeartbeatStream = Pin<Box<dyn Stream<Item = Result<JobManagerHeartbeat, Status>> + Send>>;

#[tonic::async_trait]
impl JobManagerService for JobManagerRpc {
    async fn register_task_manager(
        &self,
        request: Request<RegisterTaskManagerRequest>,
    ) -> Result<Response<RegisterTaskManagerResponse>, Status> {
        let req = request.into_inner();
        if req.resource_id.is_empty() || req.host.is_empty() {
            return Err(Status::invalid_argument("registration needs a resource id and a host"));
        }
        if req.number_of_slots == 0 {
            return Err(Status::invalid_argument("a taskmanager must offer at least one slot"));
        }
        let rpc_port = check_port("rpc port", req.rpc_port)?;
        let data_port = check_port("data port", req.data_port)?;
        let gateway = self.dial_back(&req.host, req.rpc_port).await?;
        let registration_id = uuid::Uuid::new_v4().simple().to_string();
        let hardware = req.hardware.unwrap_or_default();
        let record = TaskManagerRecord {
            resource_id: req.resource_id.clone(),
            registration_id: registration_id.clone(),
            host: req.host,
            rpc_port,
            data_port,
            slots_total: req.number_of_slots,
            slots_allocated: 0,
            tasks: Vec::new(),
            memory: req.memory.into_iter().collect(),
            cpu_cores: hardware.cpu_cores,
            physical_memory: hardware.physical_memory,
            registered_at_ms: now_ms(),
            last_heartbeat_ms: now_ms(),
            heap_used: 0,
            cpu_load: 0.0,
            network_segments: (0, 0, 0),
            streaming: false,
            leaving: false,
            gateway: crate::resource_manager::GrpcGateway::gateway(gateway, self.settings.fencing_token),
        };
        let address = record.rpc_address();
        // Liveness is watched through the heartbeat stream; one that never opens (the process
        // died right after registering) must not leave the registration behind.
        tokio::spawn(
            self.registry
                .clone()
                .expire_unless_streaming(registration_id.clone(), self.settings.heartbeat_timeout),
        );
        if let Some(old) = self.registry.register(record) {
            tracing::info!(
                "TaskManager {} registered again; its earlier registration {old} is replaced.",
                req.resource_id
            );
        }
        tracing::info!(
            "Registering TaskManager with ResourceID {} ({address}, {} slots) under registration id {registration_id}.",
            req.resource_id,
            req.number_of_slots
        );
        Ok(Response::new(RegisterTaskManagerResponse {
            registration_id,
            jobmanager_id: self.settings.jobmanager_id.clone(),
            heartbeat_interval_ms: self.settings.heartbeat_interval.as_millis() as u64,
            heartbeat_timeout_ms: self.settings.heartbeat_timeout.as_millis() as u64,
            fencing_token: self.settings.fencing_token,
        }))
    }

    type HeartbeatStream = HeartbeatStream;

    async fn heartbeat(
        &self,
        request: Request<Streaming<TaskManagerHeartbeat>>,
    ) -> Result<Response<Self::HeartbeatStream>, Status> {
        let mut inbound = request.into_inner();
        let first = match tokio::time::timeout(self.settings.heartbeat_timeout, inbound.message()).await {
            Ok(Ok(Some(first))) => first,
            Ok(Ok(None)) => {
                return Err(Status::invalid_argument(
                    "heartbeat stream closed before its first beat",
                ))
            }
            Ok(Err(status)) => return Err(status),
            Err(_) => return Err(Status::deadline_exceeded("no first heartbeat within heartbeat.timeout")),
        };
        if !self.registry.attach_stream(&first.registration_id) {
            return Err(Status::not_found(format!(
                "registration {} is not known to this jobmanager; register again",
                first.registration_id
            )));
        }
        tracing::info!("Heartbeat stream of registration {} is open.", first.registration_id);
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(monitor_heartbeats(
            self.registry.clone(),
            first,
            inbound,
            tx,
            self.settings.heartbeat_timeout,
            self.shutdown.clone(),
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn deregister_task_manager(
        &self,
        request: Request<DeregisterTaskManagerRequest>,
    ) -> Result<Response<DeregisterTaskManagerResponse>, Status> {
        let req = request.into_inner();
        if req.drain {
            // Its reactive jobs rescale off it (a stop-with-checkpoint, their state prefetched
            // where it goes); it deregisters once they did.
            if let Some(resource_id) = self.registry.drain(&req.registration_id) {
                if self.scheduler.moves_off(&resource_id) {
                    tracing::info!(
                        "TaskManager {resource_id} is shutting down: its jobs rescale off it before it deregisters."
                    );
                    return Ok(Response::new(DeregisterTaskManagerResponse { draining: true }));
                }
            }
        }
        let reason = if req.reason.is_empty() {
            "no reason given".to_string()
        } else {
            req.reason
        };
        match self
            .registry
            .remove(&req.registration_id, LossCause::Deregistered(reason))
        {
            Some(_) => Ok(Response::new(DeregisterTaskManagerResponse::default())),
            None => Err(Status::not_found(format!(
                "registration {} is not known",
                req.registration_id
            ))),
        }
    }

    async fn acquire_permit(&self, request: Request<PermitRequest>) -> Result<Response<PermitResponse>, Status> {
        let r = request.into_inner();
        let granted = self.permits.acquire(&r.job_id, r.epoch, &r.pool, r.max, &r.holder);
        Ok(Response::new(PermitResponse { granted }))
    }

    async fn release_permit(&self, request: Request<PermitRequest>) -> Result<Response<PermitResponse>, Status> {
        let r = request.into_inner();
        self.permits.release(&r.job_id, r.epoch, &r.pool, &r.holder);
        Ok(Response::new(PermitResponse { granted: false }))
    }

    async fn update_task_state(&self, request: Request<TaskStateUpdate>) -> Result<Response<TaskStateAck>, Status> {
        self.scheduler.on_task_state(&request.into_inner());
        Ok(Response::new(TaskStateAck {}))
    }

    async fn acknowledge_checkpoint(
        &self,
        request: Request<sluice_proto::control::CheckpointAck>,
    ) -> Result<Response<sluice_proto::control::CheckpointAckResponse>, Status> {
        self.scheduler.on_checkpoint_ack(request.into_inner());
        Ok(Response::new(sluice_proto::control::CheckpointAckResponse {}))
    }

    async fn decline_checkpoint(
        &self,
        request: Request<sluice_proto::control::CheckpointDecline>,
    ) -> Result<Response<sluice_proto::control::CheckpointAckResponse>, Status> {
        self.scheduler.on_checkpoint_decline(request.into_inner());
        Ok(Response::new(sluice_proto::control::CheckpointAckResponse {}))
    }
}
