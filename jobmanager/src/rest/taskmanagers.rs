//! `GET /taskmanagers`, `GET /taskmanagers/:id` (with its slots and metrics) and
//! `GET /taskmanagers/:id/metrics` (Flink's metric query, `get`) with Flink 2.3's
//! `TaskManagerInfo` / `TaskManagerDetailsInfo` fields.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::vertices::MetricQuery;
use super::{error, SharedState};
use crate::resource_manager::TaskManagerRecord;

/// Flink's REST names for the memory pools, from the option names the taskmanager announces.
const MEMORY_FIELDS: [(&str, &str); 10] = [
    ("frameworkHeap", "taskmanager.memory.framework.heap.size"),
    ("taskHeap", "taskmanager.memory.task.heap.size"),
    ("frameworkOffHeap", "taskmanager.memory.framework.off-heap.size"),
    ("taskOffHeap", "taskmanager.memory.task.off-heap.size"),
    ("networkMemory", "taskmanager.memory.network.max"),
    ("managedMemory", "taskmanager.memory.managed.size"),
    ("jvmMetaspace", "taskmanager.memory.jvm-metaspace.size"),
    ("jvmOverhead", "taskmanager.memory.jvm-overhead.max"),
    ("totalFlinkMemory", "taskmanager.memory.flink.size"),
    ("totalProcessMemory", "taskmanager.memory.process.size"),
];

fn memory_configuration(r: &TaskManagerRecord) -> Value {
    let fields: Map<String, Value> = MEMORY_FIELDS
        .iter()
        .map(|(name, key)| (name.to_string(), json!(r.memory.get(*key).copied().unwrap_or(0))))
        .collect();
    Value::Object(fields)
}

fn mebibytes(r: &TaskManagerRecord, key: &str) -> u64 {
    r.memory.get(key).copied().unwrap_or(0) >> 20
}

/// Flink's `ResourceProfileInfo` (memory in MB), scaled to `slots` of the taskmanager.
fn resource_profile(r: &TaskManagerRecord, slots: u32) -> Value {
    let share = |key: &str| mebibytes(r, key) * u64::from(slots) / u64::from(r.slots_total.max(1));
    json!({
        "cpuCores": f64::from(slots),
        "taskHeapMemory": share("taskmanager.memory.task.heap.size"),
        "taskOffHeapMemory": share("taskmanager.memory.task.off-heap.size"),
        "managedMemory": share("taskmanager.memory.managed.size"),
        "networkMemory": share("taskmanager.memory.network.max"),
        "extendedResources": {},
    })
}

/// Framework + task heap: the heap budget the taskmanager runs within.
fn heap_max(r: &TaskManagerRecord) -> u64 {
    r.memory
        .get("taskmanager.memory.framework.heap.size")
        .copied()
        .unwrap_or(0)
        + r.memory.get("taskmanager.memory.task.heap.size").copied().unwrap_or(0)
}

fn info(r: &TaskManagerRecord) -> Value {
    json!({
        "assignedTasks": r.tasks.len(),
        "blocked": false,
        "id": r.resource_id,
        "path": r.rpc_address(),
        "dataPort": r.data_port,
        "jmxPort": -1,
        "timeSinceLastHeartbeat": r.last_heartbeat_ms,
        "slotsNumber": r.slots_total,
        "freeSlots": r.slots_free(),
        "totalResource": resource_profile(r, r.slots_total),
        "freeResource": resource_profile(r, r.slots_free()),
        "hardware": {
            "cpuCores": r.cpu_cores,
            "physicalMemory": r.physical_memory,
            "freeMemory": heap_max(r).saturating_sub(r.heap_used),
            "managedMemory": r.memory.get("taskmanager.memory.managed.size").copied().unwrap_or(0),
        },
        "memoryConfiguration": memory_configuration(r),
    })
}

/// The taskmanager's metrics by Flink's names (`Status.JVM.Memory.Heap.Used`, …), from its
/// latest heartbeat.
fn metric_values(r: &TaskManagerRecord) -> Vec<(String, String)> {
    let max = heap_max(r);
    [
        ("Status.JVM.Memory.Heap.Used", r.heap_used as f64),
        ("Status.JVM.Memory.Heap.Max", max as f64),
        ("Status.JVM.CPU.Load", r.cpu_load),
        (
            "Status.Flink.Memory.Managed.Total",
            r.memory.get("taskmanager.memory.managed.size").copied().unwrap_or(0) as f64,
        ),
        (
            "Status.Shuffle.Netty.TotalMemory",
            r.memory.get("taskmanager.memory.network.max").copied().unwrap_or(0) as f64,
        ),
        ("numRunningTasks", r.tasks.len() as f64),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// `GET /taskmanagers/:id/metrics`.
pub(super) async fn metrics(
    State(state): State<SharedState>,
    Path(id): Path<String>,
    Query(q): Query<MetricQuery>,
) -> Response {
    match state.registry.get(&id) {
        None => error(StatusCode::NOT_FOUND, format!("Could not find TaskManager {id}")),
        Some(r) => Json(super::vertices::metric_values(&metric_values(&r), &q)).into_response(),
    }
}

/// Flink's `SlotInfo` per slot a job uses here: a slot holds one subtask index of each of
/// the job's vertices (one slot sharing group).
fn allocated_slots(state: &SharedState, r: &TaskManagerRecord) -> Vec<Value> {
    let mut slots = Vec::new();
    for job in state.scheduler.jobs().iter().filter(|j| !j.state.is_terminal()) {
        let mut per_slot: std::collections::BTreeMap<u32, usize> = Default::default();
        for ((_, subtask), _) in job.tasks.iter().filter(|(_, (_, tm))| *tm == r.resource_id) {
            *per_slot.entry(*subtask).or_default() += 1;
        }
        for tasks in per_slot.values() {
            slots.push(json!({
                "resource": resource_profile(r, 1),
                "jobId": job.id,
                "assignedTasks": tasks,
            }));
        }
    }
    slots
}

pub(super) async fn list(State(state): State<SharedState>) -> Json<Value> {
    let tms: Vec<Value> = state.registry.snapshot().iter().map(info).collect();
    Json(json!({ "taskmanagers": tms }))
}

pub(super) async fn details(State(state): State<SharedState>, Path(id): Path<String>) -> Response {
    match state.registry.get(&id) {
        None => error(StatusCode::NOT_FOUND, format!("Could not find TaskManager {id}")),
        Some(r) => {
            let mut body = info(&r);
            let (segments, free, segment) = r.network_segments;
            body["metrics"] = json!({
                "heapUsed": r.heap_used,
                "heapCommitted": r.heap_used,
                "heapMax": heap_max(&r),
                "nonHeapUsed": 0,
                "nonHeapCommitted": 0,
                "nonHeapMax": 0,
                "directCount": 0,
                "directUsed": 0,
                "directMax": 0,
                "mappedCount": 0,
                "mappedUsed": 0,
                "mappedMax": 0,
                "nettyShuffleMemorySegmentsAvailable": free,
                "nettyShuffleMemorySegmentsUsed": segments.saturating_sub(free),
                "nettyShuffleMemorySegmentsTotal": segments,
                "nettyShuffleMemoryAvailable": free * segment,
                "nettyShuffleMemoryUsed": segments.saturating_sub(free) * segment,
                "nettyShuffleMemoryTotal": segments * segment,
                "garbageCollectors": [],
            });
            body["allocatedSlots"] = json!(allocated_slots(&state, &r));
            Json(body).into_response()
        }
    }
}
