//! Read-only job views in Flink 2.3's shapes: `GET /jobs/:id/config` (`JobConfigInfo`),
//! `/plan` (`JobPlanInfo`, the plan `GET /jobs/:id` embeds), `/accumulators`
//! (`JobAccumulatorsInfo`; Sluice jobs have no accumulators) and `/exceptions`
//! (`JobExceptionsInfoWithHistory` as Flink 2 has it: the history only, newest first).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{error, SharedState};
use crate::scheduler::job::Job;

fn with_job(state: &SharedState, id: &str, view: impl FnOnce(&Job) -> Value) -> Response {
    match state.scheduler.job(id) {
        Some(job) => Json(view(&job)).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("Job {id} not found")),
    }
}

/// Flink's `JobPlanInfo.Plan`: one node per vertex with its inputs.
pub(super) fn plan(job: &Job) -> Value {
    let g = &job.graph;
    let nodes: Vec<Value> = g
        .vertices
        .iter()
        .map(|v| {
            let inputs: Vec<Value> = g
                .inputs_of(v.index)
                .enumerate()
                .map(|(i, e)| {
                    json!({
                        "num": i,
                        "id": g.vertices[e.source].id,
                        "ship_strategy": e.partition.name(),
                        "local_strategy": "NONE",
                        "caching": "NONE",
                        "exchange": "pipelined_bounded",
                    })
                })
                .collect();
            json!({
                "id": v.id,
                "parallelism": v.parallelism,
                "operator": "",
                "operator_strategy": "",
                "description": v.name,
                "optimizer_properties": {},
                "inputs": inputs,
            })
        })
        .collect();
    json!({"jid": job.id, "name": job.name, "type": "STREAMING", "nodes": nodes})
}

pub(super) async fn get_plan(State(state): State<SharedState>, Path(id): Path<String>) -> Response {
    with_job(&state, &id, |job| json!({ "plan": plan(job) }))
}

/// `GET /jobs/:id/config`: the restart strategy, parallelism and the job file's `config:`.
pub(super) async fn config(State(state): State<SharedState>, Path(id): Path<String>) -> Response {
    with_job(&state, &id, |job| {
        let restart = job
            .config
            .effective_text("restart-strategy.type")
            .unwrap_or_else(|| "Cluster level default restart strategy".into());
        let user: serde_json::Map<String, Value> =
            job.graph.config.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        json!({
            "jid": job.id,
            "name": job.name,
            "execution-config": {
                "restart-strategy": restart,
                "job-parallelism": job.current_parallelism(),
                "object-reuse-mode": false,
                "user-config": user,
            },
        })
    })
}

pub(super) async fn accumulators(State(state): State<SharedState>, Path(id): Path<String>) -> Response {
    with_job(&state, &id, |_| {
        json!({
            "job-accumulators": [],
            "user-task-accumulators": [],
            "serialized-user-task-accumulators": {},
        })
    })
}

#[derive(Deserialize, Default)]
pub(super) struct ExceptionsQuery {
    #[serde(rename = "maxExceptions")]
    max_exceptions: Option<usize>,
}

/// `GET /jobs/:id/exceptions`: each failure with its time, the task it came from and its
/// class (as Flink's failure label `failureClass`), newest first.
pub(super) async fn exceptions(
    State(state): State<SharedState>,
    Path(id): Path<String>,
    Query(q): Query<ExceptionsQuery>,
) -> Response {
    with_job(&state, &id, |job| {
        let limit = q.max_exceptions.unwrap_or(20);
        let entries: Vec<Value> = job
            .exceptions
            .iter()
            .rev()
            .take(limit)
            .map(|e| {
                let task = e.task.and_then(|(v, s)| {
                    let vertex = job.graph.vertices.get(v as usize)?;
                    let tm = job.tasks.get(&(v, s)).map(|(_, tm)| tm.clone());
                    Some((format!("{} ({}/{})", vertex.name, s + 1, vertex.parallelism), tm))
                });
                let (task_name, tm) = task.map_or((None, None), |(n, tm)| (Some(n), tm));
                json!({
                    "exceptionName": "org.apache.flink.util.FlinkException",
                    "stacktrace": e.message,
                    "timestamp": e.timestamp,
                    "taskName": task_name,
                    "endpoint": null,
                    "taskManagerId": tm,
                    "failureLabels": {"failureClass": e.class},
                    "concurrentExceptions": [],
                })
            })
            .collect();
        json!({
            "exceptionHistory": {
                "entries": entries,
                "truncated": job.exceptions.len() > limit,
            },
        })
    })
}
