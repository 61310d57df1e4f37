//! `GET /taskmanagers` and `GET /taskmanagers/:id` with Flink's `TaskManagerInfo` fields.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

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

pub(super) async fn list(State(state): State<SharedState>) -> Json<Value> {
    let tms: Vec<Value> = state.registry.snapshot().iter().map(info).collect();
    Json(json!({ "taskmanagers": tms }))
}

pub(super) async fn details(State(state): State<SharedState>, Path(id): Path<String>) -> Response {
    match state.registry.get(&id) {
        None => error(StatusCode::NOT_FOUND, format!("Could not find TaskManager {id}")),
        Some(r) => {
            let mut body = info(&r);
            body["metrics"] = json!({
                "heapUsed": r.heap_used,
                "heapMax": heap_max(&r),
                "cpuLoad": r.cpu_load,
            });
            Json(body).into_response()
        }
    }
}
