//! Cluster-wide REST views: `/overview`, `/config`, `/jobmanager/config`, `/jars`.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use super::SharedState;

/// `GET /overview`: Flink's `ClusterOverviewWithVersion`.
pub(super) async fn overview(State(state): State<SharedState>) -> Json<Value> {
    let (taskmanagers, slots_total, slots_free) = state.registry.totals();
    let jobs = state.scheduler.jobs();
    let count = |name: &str| jobs.iter().filter(|j| j.state.name() == name).count();
    let running = jobs.iter().filter(|j| !j.state.is_terminal()).count();
    Json(json!({
        "taskmanagers": taskmanagers,
        "slots-total": slots_total,
        "slots-available": slots_free,
        "jobs-running": running,
        "jobs-finished": count("FINISHED"),
        "jobs-cancelled": count("CANCELED"),
        "jobs-failed": count("FAILED"),
        "taskmanagers-blocked": 0,
        "slots-free-and-blocked": 0,
        "flink-version": sluice_common::VERSION,
        "flink-commit": sluice_common::VERSION,
    }))
}

/// `GET /jars`: Flink's `JarListInfo`. Sluice runs job files, not jars: the list is empty.
pub(super) async fn jars() -> Json<Value> {
    Json(json!({"address": "", "files": []}))
}

/// `GET /config`: the web UI's configuration (Flink's `DashboardConfiguration`).
pub(super) async fn web_config() -> Json<Value> {
    Json(json!({
        "refresh-interval": 3000,
        "timezone-name": "Coordinated Universal Time",
        "timezone-offset": 0,
        "flink-version": sluice_common::VERSION,
        "flink-revision": sluice_common::VERSION,
        "features": {"web-submit": true, "web-cancel": true, "web-rescale": false, "web-history": false},
    }))
}

/// `GET /jobmanager/config`: the effective configuration as `[{key, value}]`.
pub(super) async fn jobmanager_config(State(state): State<SharedState>) -> Json<Value> {
    let entries: Vec<Value> = state
        .config
        .iter()
        .map(|(k, v)| json!({"key": k, "value": v}))
        .collect();
    Json(Value::Array(entries))
}
