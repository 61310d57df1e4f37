//! The taskmanager's gRPC gateway (`TaskManagerService`): the jobmanager's reachability check,
//! deploying subtasks (all of a request or none) and cancelling a job attempt. Each subtask
//! reports RUNNING, then FINISHED, FAILED (with the cause) or CANCELED.

use std::collections::HashMap;
use std::sync::Arc;

use sluice_common::job::{compile_job, GraphOptions};
use sluice_proto::control::task_manager_service_server::TaskManagerService;
use sluice_proto::control::{
    CancelJobRequest, CancelJobResponse, DescribeTaskManagerRequest, SubmitTasksRequest, SubmitTasksResponse,
    TaskManagerDescription, TaskState, TaskStateUpdate,
};
use tonic::{Request, Response, Status};

use super::deploy::{prepare, run, Deployment};
use super::job_runs::{JobRuns, TaskEntry};
use super::reporter::StateReporter;
use super::SlotTable;
use crate::network::NetworkEnvironment;

pub struct TaskManagerGateway {
    resource_id: String,
    slots: Arc<SlotTable>,
    network: Arc<NetworkEnvironment>,
    runs: JobRuns,
    reporter: StateReporter,
}

impl TaskManagerGateway {
    pub fn new(
        resource_id: String,
        slots: Arc<SlotTable>,
        network: Arc<NetworkEnvironment>,
        runs: JobRuns,
        reporter: StateReporter,
    ) -> Self {
        TaskManagerGateway {
            resource_id,
            slots,
            network,
            runs,
            reporter,
        }
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

    async fn submit_tasks(
        &self,
        request: Request<SubmitTasksRequest>,
    ) -> Result<Response<SubmitTasksResponse>, Status> {
        let req = request.into_inner();
        let options = GraphOptions {
            default_parallelism: req.default_parallelism.max(1),
            parallelism: (req.parallelism > 0).then_some(req.parallelism),
            node_parallelism: req.node_parallelism.into_iter().collect(),
        };
        let graph = Arc::new(
            compile_job(&req.job_yaml, &req.job_file, &options).map_err(|e| Status::invalid_argument(e.to_string()))?,
        );
        let tasks: Vec<(usize, u32)> = req.tasks.iter().map(|t| (t.vertex as usize, t.subtask)).collect();
        for (v, s) in &tasks {
            let ok = graph.vertices.get(*v).is_some_and(|vx| *s < vx.parallelism);
            if !ok {
                return Err(Status::invalid_argument(format!(
                    "job has no subtask {s} of vertex {v}"
                )));
            }
        }
        let locations: HashMap<(usize, u32), String> = req
            .locations
            .iter()
            .map(|l| ((l.vertex as usize, l.subtask), l.data_address.clone()))
            .collect();
        let cancel = self
            .runs
            .start(&req.job_id, req.epoch, tasks.len(), req.slots, &self.slots)
            .map_err(Status::resource_exhausted)?;
        let prepared = match prepare(
            &self.network,
            Deployment {
                epoch: req.epoch,
                graph: graph.clone(),
                tasks,
                locations,
            },
        ) {
            Ok(p) => p,
            Err(e) => {
                self.runs.abandon(&req.job_id, req.epoch, &self.slots);
                return Err(Status::resource_exhausted(e));
            }
        };
        tracing::info!(
            "Deploying {} subtasks of job {} ({}) attempt {}.",
            prepared.len(),
            req.job_name,
            req.job_id,
            req.epoch
        );
        for task in prepared {
            let vertex = &graph.vertices[task.vertex];
            let entry = TaskEntry {
                job_id: req.job_id.clone(),
                job_name: req.job_name.clone(),
                vertex: task.vertex as u32,
                vertex_id: vertex.id.clone(),
                task_name: vertex.name.clone(),
                subtask: task.subtask,
                metrics: task.metrics.clone(),
            };
            self.runs.add_task(req.epoch, entry.clone());
            let update = move |state: TaskState, failure: String| TaskStateUpdate {
                job_id: entry.job_id.clone(),
                epoch: req.epoch,
                vertex: entry.vertex,
                subtask: entry.subtask,
                state: state as i32,
                failure,
                resource_id: String::new(),
            };
            let (reporter, runs, slots, network, mut cancel) = (
                self.reporter.clone(),
                self.runs.clone(),
                self.slots.clone(),
                self.network.clone(),
                cancel.clone(),
            );
            let (job_id, epoch, name, parallelism) =
                (req.job_id.clone(), req.epoch, vertex.name.clone(), vertex.parallelism);
            tokio::spawn(async move {
                reporter.report(update(TaskState::Running, String::new()));
                let (vertex, subtask) = (task.vertex as u32, task.subtask);
                let outcome = tokio::select! {
                    r = run(network, task) => r.map(|_| TaskState::Finished),
                    _ = cancel.wait_for(|c| *c) => Ok(TaskState::Canceled),
                };
                let (state, failure) = match outcome {
                    Ok(state) => (state, String::new()),
                    Err(e) => {
                        tracing::warn!("{name} ({}/{parallelism}) of job {job_id} failed: {e}", subtask + 1);
                        (
                            TaskState::Failed,
                            format!("{name} ({}/{parallelism}): {e}", subtask + 1),
                        )
                    }
                };
                runs.task_ended(&job_id, epoch, vertex, subtask, &slots);
                reporter.report(update(state, failure));
            });
        }
        Ok(Response::new(SubmitTasksResponse {}))
    }

    async fn cancel_job(&self, request: Request<CancelJobRequest>) -> Result<Response<CancelJobResponse>, Status> {
        let req = request.into_inner();
        if self.runs.cancel(&req.job_id, req.epoch) {
            tracing::info!("Cancelling job {} attempt {}.", req.job_id, req.epoch);
        }
        Ok(Response::new(CancelJobResponse {}))
    }
}
