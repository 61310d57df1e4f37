//! What the jobmanager asks of a taskmanager, behind a trait (Flink's `TaskExecutorGateway`):
//! deploy and cancel a job attempt's subtasks, hand running sources new splits, trigger
//! checkpoints and announce their completion or abortion, prefetch state before a rescale.
//! The daemon talks gRPC (`GrpcGateway`); unit tests of the scheduler and the checkpoint
//! coordinator put a fake in its place. Errors are the taskmanager's message.

use std::fmt;
use std::sync::Arc;

use sluice_common::ha::FENCING_TOKEN_HEADER;
use sluice_proto::control::task_manager_service_client::TaskManagerServiceClient;
use sluice_proto::control::{
    AddSplitsRequest, CancelJobRequest, NotifyCheckpointRequest, PrefetchStateRequest, PrefetchStateResponse,
    SubmitTasksRequest, SubmitTasksResponse, TriggerCheckpointRequest,
};
use tonic::transport::Channel;

#[tonic::async_trait]
pub(crate) trait TaskManagerGateway: Send + Sync {
    /// Deploys subtasks; the answer says how long fetching and opening their state took.
    async fn submit_tasks(&self, request: SubmitTasksRequest) -> Result<SubmitTasksResponse, String>;
    async fn cancel_job(&self, request: CancelJobRequest) -> Result<(), String>;
    async fn trigger_checkpoint(&self, request: TriggerCheckpointRequest) -> Result<(), String>;
    async fn notify_checkpoint_complete(&self, request: NotifyCheckpointRequest) -> Result<(), String>;
    async fn notify_checkpoint_aborted(&self, request: NotifyCheckpointRequest) -> Result<(), String>;
    async fn add_splits(&self, request: AddSplitsRequest) -> Result<(), String>;
    /// Fetches a completed checkpoint's files that the taskmanager's subtasks after a rescale
    /// need into its local state copies; the answer says how many files and bytes came.
    async fn prefetch_state(&self, request: PrefetchStateRequest) -> Result<PrefetchStateResponse, String>;
}

/// A shared gateway, as a registry entry holds it.
#[derive(Clone)]
pub(crate) struct Gateway(pub Arc<dyn TaskManagerGateway>);

impl fmt::Debug for Gateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Gateway")
    }
}

impl std::ops::Deref for Gateway {
    type Target = dyn TaskManagerGateway;
    fn deref(&self) -> &Self::Target {
        self.0.as_ref()
    }
}

/// The taskmanager's gRPC service (`TaskManagerService`); every request carries the
/// jobmanager's fencing token (0 without HA), so a taskmanager refuses a deposed leader.
pub(crate) struct GrpcGateway {
    client: TaskManagerServiceClient<Channel>,
    fencing_token: u64,
}

impl GrpcGateway {
    pub(crate) fn gateway(client: TaskManagerServiceClient<Channel>, fencing_token: u64) -> Gateway {
        Gateway(Arc::new(GrpcGateway { client, fencing_token }))
    }

    fn fenced<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.metadata_mut().insert(
            FENCING_TOKEN_HEADER,
            tonic::metadata::MetadataValue::from(self.fencing_token),
        );
        request
    }
}

/// The taskmanager's answer as the gateway reports it: done, or its message.
fn answered<T>(r: Result<tonic::Response<T>, tonic::Status>) -> Result<(), String> {
    r.map(|_| ()).map_err(|s| s.message().to_string())
}

#[tonic::async_trait]
impl TaskManagerGateway for GrpcGateway {
    async fn submit_tasks(&self, request: SubmitTasksRequest) -> Result<SubmitTasksResponse, String> {
        self.client
            .clone()
            .submit_tasks(self.fenced(request))
            .await
            .map(|r| r.into_inner())
            .map_err(|s| s.message().to_string())
    }

    async fn cancel_job(&self, request: CancelJobRequest) -> Result<(), String> {
        answered(self.client.clone().cancel_job(self.fenced(request)).await)
    }

    async fn trigger_checkpoint(&self, request: TriggerCheckpointRequest) -> Result<(), String> {
        answered(self.client.clone().trigger_checkpoint(self.fenced(request)).await)
    }

    async fn notify_checkpoint_complete(&self, request: NotifyCheckpointRequest) -> Result<(), String> {
        answered(
            self.client
                .clone()
                .notify_checkpoint_complete(self.fenced(request))
                .await,
        )
    }
    async fn notify_checkpoint_aborted(&self, request: NotifyCheckpointRequest) -> Result<(), String> {
        answered(
            self.client
                .clone()
                .notify_checkpoint_aborted(self.fenced(request))
                .await,
        )
    }

    async fn add_splits(&self, request: AddSplitsRequest) -> Result<(), String> {
        answered(self.client.clone().add_splits(self.fenced(request)).await)
    }

    async fn prefetch_state(&self, request: PrefetchStateRequest) -> Result<PrefetchStateResponse, String> {
        self.client
            .clone()
            .prefetch_state(self.fenced(request))
            .await
            .map(|r| r.into_inner())
            .map_err(|s| s.message().to_string())
    }
}

/// A taskmanager that records what it is asked and answers yes, for unit tests of the
/// scheduler and the checkpoint coordinator.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct RecordingGateway {
    pub(crate) submits: std::sync::Mutex<Vec<SubmitTasksRequest>>,
    pub(crate) cancels: std::sync::Mutex<Vec<CancelJobRequest>>,
    pub(crate) triggers: std::sync::Mutex<Vec<TriggerCheckpointRequest>>,
    pub(crate) notices: std::sync::Mutex<Vec<NotifyCheckpointRequest>>,
    pub(crate) aborts: std::sync::Mutex<Vec<NotifyCheckpointRequest>>,
    pub(crate) added_splits: std::sync::Mutex<Vec<AddSplitsRequest>>,
    pub(crate) prefetches: std::sync::Mutex<Vec<PrefetchStateRequest>>,
}

#[cfg(test)]
#[tonic::async_trait]
impl TaskManagerGateway for RecordingGateway {
    async fn submit_tasks(&self, r: SubmitTasksRequest) -> Result<SubmitTasksResponse, String> {
        self.submits.lock().unwrap_or_else(|p| p.into_inner()).push(r);
        Ok(SubmitTasksResponse::default())
    }
    async fn cancel_job(&self, r: CancelJobRequest) -> Result<(), String> {
        self.cancels.lock().unwrap_or_else(|p| p.into_inner()).push(r);
        Ok(())
    }
    async fn trigger_checkpoint(&self, r: TriggerCheckpointRequest) -> Result<(), String> {
        self.triggers.lock().unwrap_or_else(|p| p.into_inner()).push(r);
        Ok(())
    }
    async fn notify_checkpoint_complete(&self, r: NotifyCheckpointRequest) -> Result<(), String> {
        self.notices.lock().unwrap_or_else(|p| p.into_inner()).push(r);
        Ok(())
    }
    async fn notify_checkpoint_aborted(&self, r: NotifyCheckpointRequest) -> Result<(), String> {
        self.aborts.lock().unwrap_or_else(|p| p.into_inner()).push(r);
        Ok(())
    }
    async fn add_splits(&self, r: AddSplitsRequest) -> Result<(), String> {
        self.added_splits.lock().unwrap_or_else(|p| p.into_inner()).push(r);
        Ok(())
    }
    async fn prefetch_state(&self, r: PrefetchStateRequest) -> Result<PrefetchStateResponse, String> {
        self.prefetches.lock().unwrap_or_else(|p| p.into_inner()).push(r);
        Ok(PrefetchStateResponse::default())
    }
}
