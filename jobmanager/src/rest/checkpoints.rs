//! Checkpoint and savepoint endpoints with Flink's shapes: `GET /jobs/:id/checkpoints`,
//! `POST /jobs/:id/savepoints` (`{"target-directory", "cancel-job", "triggerId"}` → 202
//! `{"request-id"}`), `GET /jobs/:id/savepoints/:triggerid`, and `POST /jobs/:id/stop`
//! (`{"targetDirectory", "drain", "triggerId"}`: stop-with-savepoint),
//! `GET /jobs/:id/checkpoints/config` (`CheckpointConfigInfo`) and
//! `GET /jobs/:id/checkpoints/details/:checkpointid` (`CheckpointStatistics`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::{error, SharedState};
use crate::checkpoint::{SavepointRequest, SavepointStatus};
use crate::scheduler::Scheduler;

/// A duration option of the job's configuration in milliseconds (its default when unset).
fn millis(job: &crate::scheduler::job::Job, key: &str) -> u64 {
    job.config
        .effective_text(key)
        .and_then(|t| sluice_common::config::parse_duration(&t).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn text(job: &crate::scheduler::job::Job, key: &str, default: &str) -> String {
    job.config.effective_text(key).unwrap_or_else(|| default.to_string())
}

pub(super) async fn config(State(state): State<SharedState>, Path(id): Path<String>) -> Response {
    let Some(job) = state.scheduler.job(&id) else {
        return error(StatusCode::NOT_FOUND, format!("Job {id} not found"));
    };
    let interval = millis(&job, "execution.checkpointing.interval");
    if interval == 0 {
        // Flink answers so when checkpointing is off.
        return error(
            StatusCode::NOT_FOUND,
            "Checkpointing is not enabled for this job (execution.checkpointing.interval).",
        );
    }
    let mode = text(&job, "execution.checkpointing.mode", "EXACTLY_ONCE")
        .to_ascii_lowercase()
        .replace('_', "-");
    let number = |key: &str, default: &str| text(&job, key, default).trim().parse::<u64>().unwrap_or(0);
    let flag = |key: &str, default: &str| text(&job, key, default).trim().eq_ignore_ascii_case("true");
    let backend = text(&job, "state.backend.type", "hashmap");
    let storage = text(&job, "execution.checkpointing.dir", "");
    Json(json!({
        "mode": if mode == "at-least-once" { "at_least_once" } else { "exactly_once" },
        "interval": interval,
        "timeout": millis(&job, "execution.checkpointing.timeout"),
        "min_pause": millis(&job, "execution.checkpointing.min-pause"),
        "max_concurrent": number("execution.checkpointing.max-concurrent-checkpoints", "1"),
        "externalization": {
            "enabled": !storage.is_empty(),
            "delete_on_cancellation": text(&job, "execution.checkpointing.externalized-checkpoint-retention", "NO_EXTERNALIZED_CHECKPOINTS") == "DELETE_ON_CANCELLATION",
        },
        "state_backend": if backend.eq_ignore_ascii_case("rocksdb") { "EmbeddedRocksDBStateBackend" } else { "HashMapStateBackend" },
        "checkpoint_storage": if storage.is_empty() { "JobManagerCheckpointStorage".to_string() } else { format!("FileSystemCheckpointStorage ({storage})") },
        "unaligned_checkpoints": false,
        "tolerable_failed_checkpoints": number("execution.checkpointing.tolerable-failed-checkpoints", "0"),
        "aligned_checkpoint_timeout": 0,
        "checkpoints_after_tasks_finish": flag("execution.checkpointing.checkpoints-after-tasks-finish", "true"),
        "state_changelog_enabled": false,
        "changelog_periodic_materialization_interval": 0,
        "changelog_storage": "memory",
    }))
    .into_response()
}

/// One checkpoint of the retained history.
pub(super) async fn details(
    State(state): State<SharedState>,
    Path((id, checkpoint)): Path<(String, String)>,
) -> Response {
    let Some(job) = state.scheduler.job(&id) else {
        return error(StatusCode::NOT_FOUND, format!("Job {id} not found"));
    };
    let Ok(cid) = checkpoint.parse::<u64>() else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("'{checkpoint}' is not a checkpoint id"),
        );
    };
    match job.checkpoint_stats().history.iter().find(|r| r.id == cid) {
        Some(r) => Json(r.to_json()).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!("Could not find checkpointing statistics for checkpoint {cid}."),
        ),
    }
}

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
