//! The registry of registered taskmanagers, keyed by registration id. A taskmanager that
//! registers again (after a broken stream or a jobmanager restart) replaces its old entry, so a
//! late end of the old stream cannot remove the new registration.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sluice_proto::control::task_manager_service_client::TaskManagerServiceClient;
use sluice_proto::control::TaskManagerHeartbeat;
use tonic::transport::Channel;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}

/// One registered taskmanager.
#[derive(Clone, Debug)]
pub struct TaskManagerRecord {
    pub resource_id: String,
    pub registration_id: String,
    pub host: String,
    pub rpc_port: u16,
    pub data_port: u16,
    pub slots_total: u32,
    pub slots_free: u32,
    /// Derived memory pools in bytes under Flink's option names.
    pub memory: BTreeMap<String, u64>,
    pub cpu_cores: u32,
    pub physical_memory: u64,
    pub registered_at_ms: u64,
    pub last_heartbeat_ms: u64,
    pub heap_used: u64,
    pub cpu_load: f64,
    /// Connected gateway for commands to this taskmanager.
    pub gateway: TaskManagerServiceClient<Channel>,
}

impl TaskManagerRecord {
    pub fn rpc_address(&self) -> String {
        format!("grpc://{}:{}", self.host, self.rpc_port)
    }
}

/// Why a taskmanager left the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LossCause {
    /// Its heartbeat stream broke (process died, connection reset).
    StreamBroken(String),
    /// Nothing heard for `heartbeat.timeout`.
    HeartbeatTimeout(Duration),
    /// It deregistered itself (clean shutdown).
    Deregistered(String),
}

impl std::fmt::Display for LossCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LossCause::StreamBroken(why) => write!(f, "heartbeat stream broke ({why})"),
            LossCause::HeartbeatTimeout(t) => {
                write!(f, "heartbeat timed out after {} ms", t.as_millis())
            }
            LossCause::Deregistered(reason) => write!(f, "deregistered ({reason})"),
        }
    }
}

/// Shared, cheaply cloned registry.
#[derive(Clone, Default)]
pub struct Registry {
    inner: Arc<Mutex<BTreeMap<String, TaskManagerRecord>>>,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, TaskManagerRecord>> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a registration, replacing any earlier one of the same resource id. Returns the
    /// registration id that was replaced, if any.
    pub fn register(&self, record: TaskManagerRecord) -> Option<String> {
        let mut map = self.lock();
        let old = map
            .values()
            .find(|r| r.resource_id == record.resource_id)
            .map(|r| r.registration_id.clone());
        if let Some(old) = &old {
            map.remove(old);
        }
        map.insert(record.registration_id.clone(), record);
        old
    }

    /// Records a heartbeat; false when the registration is unknown (replaced or lost).
    pub fn heartbeat(&self, beat: &TaskManagerHeartbeat) -> bool {
        let mut map = self.lock();
        match map.get_mut(&beat.registration_id) {
            None => false,
            Some(r) => {
                r.last_heartbeat_ms = now_ms();
                if let Some(slots) = &beat.slots {
                    r.slots_total = slots.total;
                    r.slots_free = slots.free;
                }
                r.heap_used = beat.heap_used_bytes;
                r.cpu_load = beat.cpu_load;
                true
            }
        }
    }

    /// Removes a registration; logs and returns it when it was still present.
    pub fn remove(&self, registration_id: &str, cause: LossCause) -> Option<TaskManagerRecord> {
        let removed = self.lock().remove(registration_id);
        if let Some(r) = &removed {
            match &cause {
                LossCause::Deregistered(_) => tracing::info!(
                    "TaskManager {} ({}) {cause}; {} slots released.",
                    r.resource_id,
                    r.rpc_address(),
                    r.slots_total
                ),
                _ => tracing::warn!(
                    "TaskManager {} ({}) is lost: {cause}; {} slots released.",
                    r.resource_id,
                    r.rpc_address(),
                    r.slots_total
                ),
            }
        }
        removed
    }

    pub fn get(&self, resource_id: &str) -> Option<TaskManagerRecord> {
        self.lock()
            .values()
            .find(|r| r.resource_id == resource_id)
            .cloned()
    }

    pub fn contains(&self, registration_id: &str) -> bool {
        self.lock().contains_key(registration_id)
    }

    pub fn snapshot(&self) -> Vec<TaskManagerRecord> {
        self.lock().values().cloned().collect()
    }

    /// (taskmanagers, slots total, slots free).
    pub fn totals(&self) -> (usize, u32, u32) {
        let map = self.lock();
        let total = map.values().map(|r| r.slots_total).sum();
        let free = map.values().map(|r| r.slots_free).sum();
        (map.len(), total, free)
    }
}
