//! Checkpoint and savepoint endpoints with Flink's shapes: `GET /jobs/:id/checkpoints`,
//! `POST /jobs/:id/savepoints` (`{"target-directory", "cancel-job", "triggerId"}` → 202
//! `{"request-id"}`), `GET /jobs/:id/savepoints/:triggerid`, and `POST /jobs/:id/stop`
//! (`{"targetDirectory", "drain", "triggerId"}`: stop-with-savepoint).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::{error, SharedState};
use crate::checkpoint::{SavepointRequest, SavepointStatus};
use crate::scheduler::Scheduler;

pub(super) async fn stats(State(state): State<SharedState>, Path(id): Path<String>) -> Response {
    match state.scheduler.job(&id) {
        Some(job) => Json(job.checkpoint_stats().to_json()).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("Job {id} not found")),
    }
}

#[derive(Deserialize, Default)]
pub(super) struct SavepointBody {
    #[serde(rename = "target-directory")]
    target_directory: Option<String>,
    #[serde(rename = "cancel-job", default)]
    cancel_job: bool,
    #[serde(rename = "triggerId")]
    trigger_id: Option<String>,
}

#[derive(Deserialize, Default)]
pub(super) struct StopBody {
    #[serde(rename = "targetDirectory")]
    target_directory: Option<String>,
    #[serde(default)]
    drain: bool,
    #[serde(rename = "triggerId")]
    trigger_id: Option<String>,
}

fn accepted(scheduler: &Scheduler, id: &str, request: SavepointRequest) -> Response {
    match scheduler.savepoint(id, request) {
        Ok(trigger) => (StatusCode::ACCEPTED, Json(json!({ "request-id": trigger }))).into_response(),
        Err(e) => error(e.status(), e.to_string()),
    }
}

fn body<T: for<'de> Deserialize<'de> + Default>(text: &str) -> Result<T, Box<Response>> {
    if text.trim().is_empty() {
        return Ok(T::default());
    }
    serde_json::from_str(text).map_err(|e| Box::new(error(StatusCode::BAD_REQUEST, format!("Bad request body: {e}"))))
}

pub(super) async fn trigger_savepoint(
    State(state): State<SharedState>,
    Path(id): Path<String>,
    text: String,
) -> Response {
    let b: SavepointBody = match body(&text) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let request = SavepointRequest {
        trigger_id: b.trigger_id.unwrap_or_else(Scheduler::new_trigger_id),
        target_dir: b.target_directory,
        // Cancel-with-savepoint is Flink's deprecated form of stop: same mechanism here.
        stop: b.cancel_job,
        drain: false,
    };
    accepted(&state.scheduler, &id, request)
}

pub(super) async fn stop(State(state): State<SharedState>, Path(id): Path<String>, text: String) -> Response {
    let b: StopBody = match body(&text) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let request = SavepointRequest {
        trigger_id: b.trigger_id.unwrap_or_else(Scheduler::new_trigger_id),
        target_dir: b.target_directory,
        stop: true,
        drain: b.drain,
    };
    accepted(&state.scheduler, &id, request)
}

pub(super) async fn savepoint_status(
    State(state): State<SharedState>,
    Path((id, trigger)): Path<(String, String)>,
) -> Response {
    let Some(job) = state.scheduler.job(&id) else {
        return error(StatusCode::NOT_FOUND, format!("Job {id} not found"));
    };
    match job.checkpoint_stats().savepoints.get(&trigger) {
        None => error(StatusCode::NOT_FOUND, format!("There is no savepoint operation with trigger id {trigger} for job {id}.")),
        Some(SavepointStatus::InProgress) => Json(json!({"status": {"id": "IN_PROGRESS"}, "operation": null})).into_response(),
        Some(SavepointStatus::Completed(location)) => {
            Json(json!({"status": {"id": "COMPLETED"}, "operation": {"location": location}})).into_response()
        }
        Some(SavepointStatus::Failed(cause)) => Json(json!({
            "status": {"id": "COMPLETED"},
            "operation": {"failure-cause": {"class": "java.util.concurrent.CompletionException", "stack-trace": cause, "serialized-throwable": null}}
        }))
        .into_response(),
    }
}
