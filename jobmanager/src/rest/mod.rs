//! The jobmanager's REST API on `rest.port` with Flink's paths and field names, served both
//! bare and under `/v1` as Flink does. Errors use Flink's `{"errors": [...]}` body. `/` serves
//! the dashboard (`dashboard.html`).

mod checkpoints;
mod cluster;
mod job_info;
mod jobs;
mod savepoint_disposal;
mod taskmanagers;
mod vertices;

pub(crate) use savepoint_disposal::Disposals;

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
    /// The cluster's configuration, for opening storage (savepoint disposal).
    pub storage_config: sluice_common::config::Configuration,
    pub disposals: Disposals,
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
        .route("/taskmanagers/{id}/metrics", get(taskmanagers::metrics))
        .route("/jobs", post(jobs::submit).get(jobs::list))
        .route("/jobs/overview", get(jobs::overview))
        .route("/jobs/{id}", get(jobs::get).patch(jobs::patch))
        .route("/jobs/{id}/status", get(jobs::status))
        .route("/jobs/{id}/exceptions", get(job_info::exceptions))
        .route("/jobs/{id}/config", get(job_info::config))
        .route("/jobs/{id}/plan", get(job_info::get_plan))
        .route("/jobs/{id}/accumulators", get(job_info::accumulators))
        .route("/jobs/{id}/metrics", get(vertices::job_metrics))
        .route("/jobs/{id}/vertices/{vid}", get(vertices::details))
        .route(
            "/jobs/{id}/vertices/{vid}/subtasks/metrics",
            get(vertices::subtask_aggregates),
        )
        .route("/jobs/{id}/vertices/{vid}/backpressure", get(vertices::backpressure))
        .route("/jobs/{id}/vertices/{vid}/watermarks", get(vertices::watermarks))
        .route("/jobs/{id}/checkpoints", get(checkpoints::stats))
        .route("/jobs/{id}/checkpoints/config", get(checkpoints::config))
        .route("/jobs/{id}/checkpoints/details/{cid}", get(checkpoints::details))
        .route("/savepoint-disposal", post(savepoint_disposal::trigger))
        .route("/savepoint-disposal/{trigger}", get(savepoint_disposal::status))
        .route("/jars", get(cluster::jars))
        .route("/jobs/{id}/savepoints", post(checkpoints::trigger_savepoint))
        .route("/jobs/{id}/savepoints/{trigger}", get(checkpoints::savepoint_status))
        .route("/jobs/{id}/stop", post(checkpoints::stop))
        .route("/jobs/{id}/autoscaler", get(jobs::autoscaler))
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
