//! The jobmanager's REST API on `rest.port` with Flink's paths and field names, served both
//! bare and under `/v1` as Flink does. Errors use Flink's `{"errors": [...]}` body. `/` serves
//! the dashboard (`dashboard.html`).

mod checkpoints;
mod cluster;
mod jobs;
mod taskmanagers;

use std::sync::Arc;

use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::resource_manager::Registry;
use crate::scheduler::Scheduler;

/// What the handlers read.
pub(crate) struct RestState {
    pub registry: Registry,
    pub scheduler: Scheduler,
    /// Effective configuration as shown by `/jobmanager/config` (secrets masked).
    pub config: Vec<(String, String)>,
    pub started_at_ms: u64,
}

pub(crate) type SharedState = Arc<RestState>;

/// Flink's error body with a status code.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "errors": [message.into()] }))).into_response()
}

/// The dashboard (`/`): one static page that reads this API and refreshes itself.
async fn dashboard() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")],
        include_str!("dashboard.html"),
    )
        .into_response()
}

async fn not_found(uri: Uri) -> Response {
    error(StatusCode::NOT_FOUND, format!("Not found: {}", uri.path()))
}

pub(crate) fn router(state: SharedState) -> Router {
    let api = Router::new()
        .route("/overview", get(cluster::overview))
        .route("/config", get(cluster::web_config))
        .route("/jobmanager/config", get(cluster::jobmanager_config))
        .route("/taskmanagers", get(taskmanagers::list))
        .route("/taskmanagers/{id}", get(taskmanagers::details))
        .route("/jobs", post(jobs::submit).get(jobs::list))
        .route("/jobs/overview", get(jobs::overview))
        .route("/jobs/{id}", get(jobs::get).patch(jobs::patch))
        .route("/jobs/{id}/status", get(jobs::status))
        .route("/jobs/{id}/exceptions", get(jobs::exceptions))
        .route("/jobs/{id}/checkpoints", get(checkpoints::stats))
        .route("/jobs/{id}/savepoints", post(checkpoints::trigger_savepoint))
        .route("/jobs/{id}/savepoints/{trigger}", get(checkpoints::savepoint_status))
        .route("/jobs/{id}/stop", post(checkpoints::stop))
        .route(
            "/jobs/{id}/resource-requirements",
            get(jobs::get_requirements).put(jobs::put_requirements),
        )
        .with_state(state);
    Router::new()
        .route("/", get(dashboard))
        .nest("/v1", api.clone())
        .merge(api)
        .fallback(not_found)
}
