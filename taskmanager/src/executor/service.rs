//! The taskmanager's gRPC gateway (`TaskManagerService`), which the jobmanager dials back when
//! the taskmanager registers.

use std::sync::Arc;

use sluice_proto::control::task_manager_service_server::TaskManagerService;
use sluice_proto::control::{DescribeTaskManagerRequest, TaskManagerDescription};
use tonic::{Request, Response, Status};

use super::SlotTable;

pub struct TaskManagerGateway {
    resource_id: String,
    slots: Arc<SlotTable>,
}

impl TaskManagerGateway {
    pub fn new(resource_id: String, slots: Arc<SlotTable>) -> Self {
        TaskManagerGateway { resource_id, slots }
    }
}

#[tonic::async_trait]
impl TaskManagerService for TaskManagerGateway {
    async fn describe_task_manager(
        &self,
        _request: Request<DescribeTaskManagerRequest>,
    ) -> Result<Response<TaskManagerDescription>, Status> {
        Ok(Response::new(TaskManagerDescription {
            resource_id: self.resource_id.clone(),
            slots: Some(self.slots.report()),
        }))
    }
}
