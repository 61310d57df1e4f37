//! Savepoint disposal as Flink's REST API has it: `POST /savepoint-disposal`
//! (`{"savepoint-path"}` → 200 `{"request-id"}`) deletes a savepoint directory in the
//! background once its `_metadata` shows it is one; `GET /savepoint-disposal/:triggerid`
//! answers Flink's `AsynchronousOperationResult` (`IN_PROGRESS`, or `COMPLETED` with a
//! `failure-cause` when it could not be disposed).

use std::collections::HashMap;
use std::sync::Mutex;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use sluice_common::storage::{location_url, open_location};

use super::{error, SharedState};
use crate::scheduler::Scheduler;

/// Disposal operations by trigger id: `None` while running, then the outcome.
pub(crate) type Disposals = Mutex<HashMap<String, Option<Result<(), String>>>>;

#[derive(Deserialize)]
pub(super) struct DisposalRequest {
    #[serde(rename = "savepoint-path")]
    savepoint_path: String,
}

/// Reads the directory's `_metadata` (so a wrong path deletes nothing), then deletes it all.
async fn dispose(url: String, config: sluice_common::config::Configuration) -> Result<(), String> {
    let location = open_location(&url, &config)?;
    location
        .read_metadata()
        .await
        .map_err(|e| format!("{url} is not a savepoint: {e}"))?;
    location.delete_all().await
}

pub(super) async fn trigger(State(state): State<SharedState>, text: String) -> Response {
    let request: DisposalRequest = match serde_json::from_str(&text) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("Bad request body: {e}; expected {{\"savepoint-path\": \"…\"}}"),
            )
        }
    };
    let trigger = Scheduler::new_trigger_id();
    let url = location_url(&request.savepoint_path);
    if let Ok(mut d) = state.disposals.lock() {
        d.insert(trigger.clone(), None);
    }
    let (state2, id) = (state.clone(), trigger.clone());
    tokio::spawn(async move {
        let outcome = dispose(url.clone(), state2.storage_config.clone()).await;
        match &outcome {
            Ok(()) => tracing::info!("Disposed savepoint {url}."),
            Err(e) => tracing::warn!("Could not dispose savepoint {url}: {e}"),
        }
        if let Ok(mut d) = state2.disposals.lock() {
            d.insert(id, Some(outcome));
        }
    });
    Json(json!({ "request-id": trigger })).into_response()
}

pub(super) async fn status(State(state): State<SharedState>, Path(trigger): Path<String>) -> Response {
    let entry = state.disposals.lock().ok().and_then(|d| d.get(&trigger).cloned());
    match entry {
        None => error(
            StatusCode::NOT_FOUND,
            format!("There is no savepoint disposal operation with trigger id {trigger}."),
        ),
        Some(None) => Json(json!({"status": {"id": "IN_PROGRESS"}, "operation": null})).into_response(),
        Some(Some(Ok(()))) => Json(json!({"status": {"id": "COMPLETED"}, "operation": {}})).into_response(),
        Some(Some(Err(cause))) => Json(json!({
            "status": {"id": "COMPLETED"},
            "operation": {"failure-cause": {"class": "java.util.concurrent.CompletionException", "stack-trace": cause, "serialized-throwable": null}},
        }))
        .into_response(),
    }
}
