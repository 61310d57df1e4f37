//! Job endpoints with Flink's paths and field names: `POST /jobs` (the job YAML as the body,
//! `?parallelism=N`), `GET /jobs`, `GET /jobs/overview`, `GET /jobs/:id`,
//! `GET /jobs/:id/status`, `PATCH /jobs/:id?mode=cancel`, in the
//! shapes Flink 2.3's REST client parses.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{error, SharedState};
use crate::resource_manager::now_ms;
use crate::scheduler::job::Job;

#[derive(Deserialize)]
pub(super) struct SubmitQuery {
    parallelism: Option<u32>,
    /// The job file's name, for error messages.
    file: Option<String>,
    /// Start from this savepoint or retained checkpoint (Flink's `savepointPath`).
    #[serde(rename = "savepointPath")]
    savepoint_path: Option<String>,
    #[serde(rename = "allowNonRestoredState", default)]
    allow_non_restored_state: bool,
    /// The job's configuration from the CLI's `-D key=value` flags: a JSON object of strings,
    /// over the job file's `config:`.
    config: Option<String>,
}

/// `?config={"key": "value", …}` as key/value pairs; anything else is a 400 naming it.
fn dynamic_config(text: Option<&str>) -> Result<Vec<(String, String)>, String> {
    let Some(text) = text else { return Ok(Vec::new()) };
    let map: serde_json::Map<String, Value> =
        serde_json::from_str(text).map_err(|e| format!("config '{text}' is not a JSON object of strings: {e}"))?;
    Ok(map
        .into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => (k, s),
            other => (k, other.to_string()),
        })
        .collect())
}

pub(super) async fn submit(State(state): State<SharedState>, Query(q): Query<SubmitQuery>, body: String) -> Response {
    if q.parallelism == Some(0) {
        return error(StatusCode::BAD_REQUEST, "parallelism must be at least 1");
    }
    let file = q.file.unwrap_or_else(|| "job.yaml".to_string());
    let dynamic = match dynamic_config(q.config.as_deref()) {
        Ok(d) => d,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let opts = crate::scheduler::SubmitOptions {
        dynamic,
        parallelism: q.parallelism,
        savepoint_path: q.savepoint_path,
        allow_non_restored_state: q.allow_non_restored_state,
        job_id: None,
    };
    match state.scheduler.submit(body, file, opts).await {
        Ok(id) => Json(json!({ "jobid": id })).into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

pub(super) async fn list(State(state): State<SharedState>) -> Json<Value> {
    let jobs: Vec<Value> = state
        .scheduler
        .jobs()
        .iter()
        .map(|j| json!({"id": j.id, "status": j.state.name()}))
        .collect();
    Json(json!({ "jobs": jobs }))
}

fn duration(job: &Job) -> u64 {
    job.end_time.unwrap_or_else(now_ms).saturating_sub(job.start_time)
}

fn overview_of(job: &Job) -> Value {
    let mut tasks: BTreeMap<String, usize> = job
        .task_counts(None)
        .into_iter()
        .map(|(k, v)| (k.to_lowercase(), v))
        .collect();
    tasks.insert("total".into(), job.tasks.len());
    json!({
        "jid": job.id,
        "name": job.name,
        "state": job.state.name(),
        "start-time": job.start_time,
        "end-time": job.end_time.map(|t| t as i64).unwrap_or(-1),
        "duration": duration(job),
        "last-modification": job.timestamps.values().max().copied().unwrap_or(job.start_time),
        "tasks": tasks,
        // Flink 2's JobDetails: operators not yet in the job graph (adaptive batch); none here.
        "pending-operators": 0,
        "jobType": "STREAMING",
        "schedulerType": if job.reactive { "Adaptive" } else { "Default" },
    })
}

pub(super) async fn overview(State(state): State<SharedState>) -> Json<Value> {
    let jobs: Vec<Value> = state.scheduler.jobs().iter().map(overview_of).collect();
    Json(json!({ "jobs": jobs }))
}

/// A vertex's metrics summed (records) or maxed (accumulated times) over its subtasks.
#[derive(Debug, Default, Clone, Copy)]
struct VertexMetrics {
    read: u64,
    written: u64,
    busy_ms: u64,
    backpressured_ms: u64,
    idle_ms: u64,
}

/// Flink's `JobStatus` values: `timestamps` carries each (0 for a state never entered).
const JOB_STATUSES: [&str; 11] = [
    "INITIALIZING",
    "CREATED",
    "RUNNING",
    "FAILING",
    "FAILED",
    "CANCELLING",
    "CANCELED",
    "FINISHED",
    "RESTARTING",
    "SUSPENDED",
    "RECONCILING",
];

/// Flink 2.3's `JobDetailsInfo` (what `RestClusterClient.getJobDetails` parses), plus Sluice's
/// fields (`failure-cause`, `scheduler-mode`, `parallelism`, `rescales`).
fn details(job: &Job, records: &HashMap<(String, u32), VertexMetrics>) -> Value {
    let g = &job.graph;
    let end_time = job.end_time.map(|t| t as i64).unwrap_or(-1);
    // Sluice puts every vertex of a job in one slot sharing group (a slot holds one subtask of
    // each vertex), as Flink's default does.
    let slot_sharing_group = sluice_common::job::stable_id(&format!("{}#slot-sharing-group", job.id));
    let mut vertices_per_state: BTreeMap<&str, usize> = job.task_counts(None).keys().map(|k| (*k, 0)).collect();
    let vertices: Vec<Value> = g
        .vertices
        .iter()
        .map(|v| {
            let m = records
                .get(&(job.id.clone(), v.index as u32))
                .copied()
                .unwrap_or_default();
            let status = job.vertex_status(v.index as u32);
            *vertices_per_state.entry(status).or_default() += 1;
            let complete = job.state.is_terminal();
            json!({
                "id": v.id,
                "slotSharingGroupId": slot_sharing_group,
                "name": v.name,
                "maxParallelism": g.max_parallelism,
                "parallelism": v.parallelism,
                "status": status,
                "start-time": job.start_time,
                "end-time": end_time,
                "duration": duration(job),
                "tasks": job.task_counts(Some(v.index as u32)),
                "metrics": {
                    "read-bytes": 0,
                    "read-bytes-complete": complete,
                    "write-bytes": 0,
                    "write-bytes-complete": complete,
                    "read-records": m.read,
                    "read-records-complete": complete,
                    "write-records": m.written,
                    "write-records-complete": complete,
                    "accumulated-busy-time": m.busy_ms,
                    "accumulated-backpressured-time": m.backpressured_ms,
                    "accumulated-idle-time": m.idle_ms,
                },
            })
        })
        .collect();
    let mut timestamps: BTreeMap<&str, u64> = JOB_STATUSES.iter().map(|s| (*s, 0)).collect();
    timestamps.extend(job.timestamps.iter().map(|(k, v)| (*k, *v)));
    json!({
        "jid": job.id,
        "name": job.name,
        "isStoppable": false,
        "state": job.state.name(),
        "job-type": "STREAMING",
        "schedulerType": if job.reactive { "Adaptive" } else { "Default" },
        "start-time": job.start_time,
        "end-time": end_time,
        "duration": duration(job),
        "maxParallelism": g.max_parallelism,
        "now": now_ms(),
        "timestamps": timestamps,
        "vertices": vertices,
        "status-counts": vertices_per_state,
        "plan": super::job_info::plan(job),
        "stream-graph": {},
        "pending-operators": 0,
        "failure-cause": job.failure,
        "scheduler-mode": if job.reactive { "reactive" } else { "default" },
        "parallelism": job.current_parallelism(),
        "rescales": {
            "count": job.rescales.len(),
            "last-duration-ms": job.rescales.last().map(|r| r.pause_ms),
            "in-progress": job.pending_rescale.is_some(),
            "history": job.rescales.iter().map(|r| r.to_json()).collect::<Vec<_>>(),
        },
        "autoscaler": job.autoscaler.as_ref().map(|a| a.to_json()),
    })
}

pub(super) async fn get(State(state): State<SharedState>, Path(id): Path<String>) -> Response {
    let Some(job) = state.scheduler.job(&id) else {
        return error(StatusCode::NOT_FOUND, format!("Job {id} not found"));
    };
    let waiting = job.waiting.map(|w| {
        let (_, total, free) = state.registry.totals();
        json!({
            "slots-needed": w.slots_needed,
            "slots-available": free,
            "slots-total": total,
            "timeout-ms": w.timeout_ms,
        })
    });
    let mut records: HashMap<(String, u32), VertexMetrics> = HashMap::new();
    for d in state.registry.task_digests() {
        let e = records.entry((d.job_id.clone(), d.vertex)).or_default();
        e.read += d.records_in;
        e.written += d.records_out;
        // Flink takes the largest subtask's accumulated times for a vertex.
        e.busy_ms = e.busy_ms.max(d.busy_ms);
        e.backpressured_ms = e.backpressured_ms.max(d.backpressured_ms);
        e.idle_ms = e.idle_ms.max(d.idle_ms);
    }
    let mut body = details(&job, &records);
    if let (Some(w), Some(o)) = (waiting, body.as_object_mut()) {
        o.insert("waiting-for-resources".into(), w);
    }
    Json(body).into_response()
}

/// `GET /jobs/:id/status`: Flink's `JobStatusInfo`.
pub(super) async fn status(State(state): State<SharedState>, Path(id): Path<String>) -> Response {
    match state.scheduler.job(&id) {
        Some(job) => Json(json!({ "status": job.state.name() })).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("Job {id} not found")),
    }
}

#[derive(Deserialize)]
pub(super) struct PatchQuery {
    mode: Option<String>,
}

pub(super) async fn patch(
    State(state): State<SharedState>,
    Path(id): Path<String>,
    Query(q): Query<PatchQuery>,
) -> Response {
    match q.mode.as_deref() {
        None | Some("cancel") => match state.scheduler.cancel(&id) {
            Ok(()) => (StatusCode::ACCEPTED, Json(json!({}))).into_response(),
            Err(e) => error(e.status(), e.to_string()),
        },
        Some(other) => error(
            StatusCode::BAD_REQUEST,
            format!("unknown mode '{other}'; expected cancel"),
        ),
    }
}

/// `GET /jobs/:id/autoscaler`: the autoscaler's decisions (time, vertex, from → to, why, the
/// metrics it used) and its latest evaluation of every vertex.
pub(super) async fn autoscaler(State(state): State<SharedState>, Path(id): Path<String>) -> Response {
    match state.scheduler.autoscaler(&id) {
        Ok(v) => Json(v).into_response(),
        Err(e) => error(e.status(), e.to_string()),
    }
}

/// `GET /jobs/:id/resource-requirements`: Flink's body, per vertex id.
pub(super) async fn get_requirements(State(state): State<SharedState>, Path(id): Path<String>) -> Response {
    match state.scheduler.requirements(&id) {
        Ok(v) => Json(v).into_response(),
        Err(e) => error(e.status(), e.to_string()),
    }
}

/// `PUT /jobs/:id/resource-requirements`: the job rescales to fit the new bounds.
pub(super) async fn put_requirements(
    State(state): State<SharedState>,
    Path(id): Path<String>,
    body: String,
) -> Response {
    let parsed: Value = match serde_json::from_str(&body) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("The request body is not JSON: {e}")),
    };
    match state.scheduler.set_requirements(&id, &parsed) {
        Ok(()) => Json(json!({})).into_response(),
        Err(e) => error(e.status(), e.to_string()),
    }
}
