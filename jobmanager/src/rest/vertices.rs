//! Per-vertex REST views in Flink 2.3's shapes, from the subtask digests the taskmanagers'
//! heartbeats carry: `GET /jobs/:id/vertices/:vid` (`JobVertexDetailsInfo`, one entry per
//! subtask), `/subtasks/metrics` (`AggregatedMetricsResponseBody`: `get`, `agg`),
//! `/backpressure` (`JobVertexBackPressureInfo`, from back-pressured / busy / idle time per
//! second, as Flink 1.13+ computes it) and `/watermarks` (`currentInputWatermark` per
//! subtask). Also the job-scope metric queries `GET /jobs/:id/metrics`.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use sluice_common::job::Vertex;
use sluice_common::proto::control::TaskDigest;

use super::{error, SharedState};
use crate::resource_manager::now_ms;
use crate::scheduler::job::Job;

/// Flink's thresholds on the back-pressured ratio: above 0.5 high, above 0.1 low.
fn backpressure_level(ratio: f64) -> &'static str {
    if ratio > 0.5 {
        "high"
    } else if ratio > 0.1 {
        "low"
    } else {
        "ok"
    }
}

/// The job and one of its vertices, or Flink's 404.
fn job_and_vertex(state: &SharedState, id: &str, vid: &str) -> Result<(Job, Vertex), Box<Response>> {
    let job = state
        .scheduler
        .job(id)
        .ok_or_else(|| Box::new(error(StatusCode::NOT_FOUND, format!("Job {id} not found"))))?;
    let vertex = job
        .graph
        .vertices
        .iter()
        .find(|v| v.id == vid)
        .cloned()
        .ok_or_else(|| {
            Box::new(error(
                StatusCode::NOT_FOUND,
                format!("JobVertex {vid} not found in job {id}"),
            ))
        })?;
    Ok((job, vertex))
}

/// The latest digest of each running subtask of `vertex`, by subtask index.
fn digests_of(state: &SharedState, job: &str, vertex: &Vertex) -> HashMap<u32, TaskDigest> {
    state
        .registry
        .task_digests()
        .into_iter()
        .filter(|d| d.job_id == job && d.vertex == vertex.index as u32)
        .map(|d| (d.subtask, d))
        .collect()
}

/// A subtask's metrics by Flink's metric name, as the metric store keeps them.
pub(super) fn subtask_metrics(d: &TaskDigest) -> Vec<(&'static str, f64)> {
    let wm = if d.input_watermark == i64::MIN {
        f64::from(i32::MIN)
    } else {
        d.input_watermark as f64
    };
    vec![
        ("numRecordsIn", d.records_in as f64),
        ("numRecordsOut", d.records_out as f64),
        ("numRecordsInPerSecond", d.records_in_per_second),
        ("numRecordsOutPerSecond", d.records_out_per_second),
        ("busyTimeMsPerSecond", d.busy_ms_per_second),
        ("backPressuredTimeMsPerSecond", d.backpressured_ms_per_second),
        ("idleTimeMsPerSecond", d.idle_ms_per_second),
        ("accumulateBusyTimeMs", d.busy_ms as f64),
        ("accumulateBackPressuredTimeMs", d.backpressured_ms as f64),
        ("accumulateIdleTimeMs", d.idle_ms as f64),
        ("currentInputWatermark", wm),
    ]
}

/// Flink's `status-duration`: time in each execution state (all of them present, as Flink's
/// parser requires); only the current state's time is known here.
fn status_durations(status: &str, in_status: u64) -> Value {
    let map: serde_json::Map<String, Value> = crate::scheduler::job::EXECUTION_STATES
        .iter()
        .map(|s| (s.to_string(), json!(if *s == status { in_status } else { 0 })))
        .collect();
    Value::Object(map)
}

fn io_metrics(d: Option<&TaskDigest>, complete: bool) -> Value {
    let d = d.cloned().unwrap_or_default();
    json!({
        "read-bytes": 0,
        "read-bytes-complete": complete,
        "write-bytes": 0,
        "write-bytes-complete": complete,
        "read-records": d.records_in,
        "read-records-complete": complete,
        "write-records": d.records_out,
        "write-records-complete": complete,
        "accumulated-backpressured-time": d.backpressured_ms,
        "accumulated-idle-time": d.idle_ms,
        "accumulated-busy-time": d.busy_ms as f64,
    })
}

/// `GET /jobs/:id/vertices/:vid`.
pub(super) async fn details(State(state): State<SharedState>, Path((id, vid)): Path<(String, String)>) -> Response {
    let (job, vertex) = match job_and_vertex(&state, &id, &vid) {
        Ok(found) => found,
        Err(r) => return *r,
    };
    let digests = digests_of(&state, &id, &vertex);
    let now = now_ms();
    let start = job.timestamps.get("RUNNING").copied().unwrap_or(job.start_time);
    let attempt = job.checkpoint_stats().num_restarts;
    let end = job.end_time;
    let subtasks: Vec<Value> = (0..vertex.parallelism)
        .map(|s| {
            let (status, tm) = job
                .tasks
                .get(&(vertex.index as u32, s))
                .map(|(status, tm)| (status.name(), tm.clone()))
                .unwrap_or(("CREATED", String::new()));
            let endpoint = state
                .registry
                .get(&tm)
                .map(|r| r.data_address())
                .unwrap_or_else(|| "(unassigned)".into());
            json!({
                "subtask": s,
                "status": status,
                "attempt": attempt,
                "endpoint": endpoint,
                "start-time": start,
                "start_time": start,
                "end-time": end.map(|t| t as i64).unwrap_or(-1),
                "duration": end.unwrap_or(now).saturating_sub(start),
                "metrics": io_metrics(digests.get(&s), job.state.is_terminal()),
                "taskmanager-id": if tm.is_empty() { "(unassigned)".to_string() } else { tm },
                "status-duration": status_durations(status, end.unwrap_or(now).saturating_sub(start)),
                "other-concurrent-attempts": [],
            })
        })
        .collect();
    Json(json!({
        "id": vertex.id,
        "name": vertex.name,
        "parallelism": vertex.parallelism,
        "maxParallelism": job.graph.max_parallelism,
        "now": now,
        "subtasks": subtasks,
    }))
    .into_response()
}

/// `GET /jobs/:id/vertices/:vid/backpressure`: ratios over each subtask's latest view.
pub(super) async fn backpressure(
    State(state): State<SharedState>,
    Path((id, vid)): Path<(String, String)>,
) -> Response {
    let (_, vertex) = match job_and_vertex(&state, &id, &vid) {
        Ok(found) => found,
        Err(r) => return *r,
    };
    let digests = digests_of(&state, &id, &vertex);
    let mut worst = 0.0f64;
    let subtasks: Vec<Value> = (0..vertex.parallelism)
        .filter_map(|s| digests.get(&s).map(|d| (s, d)))
        .map(|(s, d)| {
            let ratio = (d.backpressured_ms_per_second / 1000.0).clamp(0.0, 1.0);
            worst = worst.max(ratio);
            let level = backpressure_level(ratio);
            json!({
                "subtask": s,
                "attempt-number": null,
                "backpressure-level": level,
                "backpressureLevel": level,
                "ratio": ratio,
                "idleRatio": (d.idle_ms_per_second / 1000.0).clamp(0.0, 1.0),
                "busyRatio": (d.busy_ms_per_second / 1000.0).clamp(0.0, 1.0),
                "other-concurrent-attempts": [],
            })
        })
        .collect();
    let level = backpressure_level(worst);
    Json(json!({
        "status": "ok",
        "backpressure-level": level,
        "backpressureLevel": level,
        "end-timestamp": now_ms(),
        "subtasks": subtasks,
    }))
    .into_response()
}

/// `GET /jobs/:id/vertices/:vid/watermarks`: `[{id: "<subtask>.currentInputWatermark", value}]`.
pub(super) async fn watermarks(State(state): State<SharedState>, Path((id, vid)): Path<(String, String)>) -> Response {
    let (_, vertex) = match job_and_vertex(&state, &id, &vid) {
        Ok(found) => found,
        Err(r) => return *r,
    };
    let mut digests: Vec<TaskDigest> = digests_of(&state, &id, &vertex).into_values().collect();
    digests.sort_by_key(|d| d.subtask);
    let entries: Vec<Value> = digests
        .iter()
        .map(|d| json!({"id": format!("{}.currentInputWatermark", d.subtask), "value": d.input_watermark.to_string()}))
        .collect();
    Json(Value::Array(entries)).into_response()
}

/// Flink's metric query parameters: `get` (comma-separated names) and `agg` (comma-separated
/// `min`, `max`, `avg`, `sum`, `skew`).
#[derive(Deserialize, Default)]
pub(super) struct MetricQuery {
    get: Option<String>,
    agg: Option<String>,
}

impl MetricQuery {
    fn names(&self) -> Option<Vec<&str>> {
        self.get
            .as_deref()
            .map(|g| g.split(',').map(str::trim).filter(|s| !s.is_empty()).collect())
    }
}

const AGGREGATIONS: [&str; 5] = ["min", "max", "avg", "sum", "skew"];

/// Flink's `AggregatedMetric` of `values`: the requested aggregations (all without `agg`).
/// Skew is Flink's: (max − avg) / avg as a percentage, 0 when the average is 0.
fn aggregate(id: &str, values: &[f64], agg: Option<&str>) -> Result<Value, String> {
    let wanted: Vec<&str> = match agg {
        None => AGGREGATIONS.to_vec(),
        Some(a) => a.split(',').map(str::trim).filter(|s| !s.is_empty()).collect(),
    };
    if let Some(bad) = wanted.iter().find(|a| !AGGREGATIONS.contains(a)) {
        return Err(format!(
            "Cannot resolve query parameter (agg): '{bad}' is not one of {}",
            AGGREGATIONS.join(", ")
        ));
    }
    let mut out = serde_json::Map::new();
    out.insert("id".into(), json!(id));
    if values.is_empty() {
        return Ok(Value::Object(out));
    }
    let n = values.len() as f64;
    let sum: f64 = values.iter().sum();
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let avg = sum / n;
    let skew = if avg == 0.0 { 0.0 } else { (max - avg) / avg * 100.0 };
    for a in wanted {
        let v = match a {
            "min" => min,
            "max" => max,
            "avg" => avg,
            "sum" => sum,
            _ => skew,
        };
        out.insert(a.into(), json!(v));
    }
    Ok(Value::Object(out))
}

/// `GET /jobs/:id/vertices/:vid/subtasks/metrics`: without `get` the metric names; with it
/// each metric aggregated over the vertex's subtasks.
pub(super) async fn subtask_aggregates(
    State(state): State<SharedState>,
    Path((id, vid)): Path<(String, String)>,
    Query(q): Query<MetricQuery>,
) -> Response {
    let (_, vertex) = match job_and_vertex(&state, &id, &vid) {
        Ok(found) => found,
        Err(r) => return *r,
    };
    let per_subtask: Vec<Vec<(&str, f64)>> = digests_of(&state, &id, &vertex).values().map(subtask_metrics).collect();
    let Some(names) = q.names() else {
        let names: Vec<Value> = subtask_metrics(&TaskDigest::default())
            .iter()
            .map(|(n, _)| json!({"id": n}))
            .collect();
        return Json(Value::Array(names)).into_response();
    };
    let mut out = Vec::new();
    for name in names {
        let values: Vec<f64> = per_subtask
            .iter()
            .filter_map(|m| m.iter().find(|(n, _)| *n == name).map(|(_, v)| *v))
            .collect();
        if values.is_empty() {
            // Flink leaves out metrics it does not know.
            continue;
        }
        match aggregate(name, &values, q.agg.as_deref()) {
            Ok(v) => out.push(v),
            Err(e) => return error(StatusCode::BAD_REQUEST, e),
        }
    }
    Json(Value::Array(out)).into_response()
}

/// `[{id}]` without `get`, `[{id, value}]` for the requested names that exist.
pub(super) fn metric_values(available: &[(String, String)], q: &MetricQuery) -> Value {
    match q.names() {
        None => Value::Array(available.iter().map(|(n, _)| json!({"id": n})).collect()),
        Some(names) => Value::Array(
            names
                .iter()
                .filter_map(|n| available.iter().find(|(k, _)| k == n))
                .map(|(k, v)| json!({"id": k, "value": v}))
                .collect(),
        ),
    }
}

/// `GET /jobs/:id/metrics`: the job-scope metrics Flink's jobmanager keeps per job.
pub(super) async fn job_metrics(
    State(state): State<SharedState>,
    Path(id): Path<String>,
    Query(q): Query<MetricQuery>,
) -> Response {
    let Some(job) = state.scheduler.job(&id) else {
        return error(StatusCode::NOT_FOUND, format!("Job {id} not found"));
    };
    let available: Vec<(String, String)> = job
        .metric_values()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Json(metric_values(&available, &q)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregates_as_flink() {
        let v = aggregate("busyTimeMsPerSecond", &[1000.0, 500.0], None).unwrap();
        assert_eq!(v["min"], 500.0);
        assert_eq!(v["max"], 1000.0);
        assert_eq!(v["avg"], 750.0);
        assert_eq!(v["sum"], 1500.0);
        assert!((v["skew"].as_f64().unwrap() - 33.333).abs() < 0.01);
        let only = aggregate("x", &[1.0], Some("max")).unwrap();
        assert_eq!(only, json!({"id": "x", "max": 1.0}));
        let bad = aggregate("x", &[1.0], Some("median")).unwrap_err();
        assert!(bad.contains("'median'"), "{bad}");
    }

    #[test]
    fn levels_follow_flinks_thresholds() {
        assert_eq!(backpressure_level(0.05), "ok");
        assert_eq!(backpressure_level(0.3), "low");
        assert_eq!(backpressure_level(0.95), "high");
    }
}
