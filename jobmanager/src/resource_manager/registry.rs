//! The registry of registered taskmanagers, keyed by registration id. A taskmanager that
//! registers again (after a broken stream or a jobmanager restart) replaces its old entry, so a
//! late end of the old stream cannot remove the new registration.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sluice_proto::control::{TaskDigest, TaskManagerHeartbeat};

use super::Gateway;

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    u64::try_from(sluice_common::wall_ms::wall_ms()).unwrap_or(0)
}

/// One registered taskmanager.
#[derive(Clone, Debug)]
pub(crate) struct TaskManagerRecord {
    pub resource_id: String,
    pub registration_id: String,
    pub host: String,
    pub rpc_port: u16,
    pub data_port: u16,
    pub slots_total: u32,
    /// Slots the scheduler gave to jobs (the jobmanager's own bookkeeping is authoritative).
    pub slots_allocated: u32,
    /// Counters of the subtasks running there, from its last heartbeat.
    pub tasks: Vec<TaskDigest>,
    /// Derived memory pools in bytes under Flink's option names.
    pub memory: BTreeMap<String, u64>,
    pub cpu_cores: u32,
    pub physical_memory: u64,
    pub registered_at_ms: u64,
    pub last_heartbeat_ms: u64,
    pub heap_used: u64,
    pub cpu_load: f64,
    /// The network buffer pool from the latest heartbeat: (segments, free, segment bytes).
    pub network_segments: (u64, u64, u64),
    /// Whether its heartbeat stream is open (liveness is watched through it).
    pub streaming: bool,
    /// It is shutting down and asked its jobs to move off (`Registry::drain`): its slots are
    /// neither offered nor counted.
    pub leaving: bool,
    /// Connected gateway for commands to this taskmanager.
    pub gateway: Gateway,
}

impl TaskManagerRecord {
    pub(crate) fn rpc_address(&self) -> String {
        format!("grpc://{}:{}", self.host, self.rpc_port)
    }

    pub(crate) fn data_address(&self) -> String {
        format!("{}:{}", self.host, self.data_port)
    }

    pub(crate) fn slots_free(&self) -> u32 {
        if self.leaving {
            return 0;
        }
        self.slots_total.saturating_sub(self.slots_allocated)
    }
}

/// Why a taskmanager left the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LossCause {
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
pub(crate) struct Registry {
    inner: Arc<Mutex<BTreeMap<String, TaskManagerRecord>>>,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, TaskManagerRecord>> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a registration, replacing any earlier one of the same resource id. Returns the
    /// registration id that was replaced, if any.
    pub(crate) fn register(&self, record: TaskManagerRecord) -> Option<String> {
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
    pub(crate) fn heartbeat(&self, beat: &TaskManagerHeartbeat) -> bool {
        let mut map = self.lock();
        match map.get_mut(&beat.registration_id) {
            None => false,
            Some(r) => {
                r.last_heartbeat_ms = now_ms();
                if let Some(slots) = &beat.slots {
                    r.slots_total = slots.total;
                }
                r.tasks = beat.tasks.clone();
                r.heap_used = beat.heap_used_bytes;
                r.cpu_load = beat.cpu_load;
                r.network_segments = (
                    beat.network_segments_total,
                    beat.network_segments_available,
                    beat.network_segment_size,
                );
                true
            }
        }
    }

    /// Removes a registration; logs and returns it when it was still present.
    pub(crate) fn remove(&self, registration_id: &str, cause: LossCause) -> Option<TaskManagerRecord> {
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

    pub(crate) fn get(&self, resource_id: &str) -> Option<TaskManagerRecord> {
        self.lock().values().find(|r| r.resource_id == resource_id).cloned()
    }

    /// The heartbeat stream of a registration opened; false when it is not known.
    pub(crate) fn attach_stream(&self, registration_id: &str) -> bool {
        match self.lock().get_mut(registration_id) {
            Some(r) => {
                r.streaming = true;
                true
            }
            None => false,
        }
    }

    /// Removes a registration whose heartbeat stream never opened within `timeout`.
    pub(crate) async fn expire_unless_streaming(self, registration_id: String, timeout: Duration) {
        tokio::time::sleep(timeout).await;
        let silent = self.lock().get(&registration_id).is_some_and(|r| !r.streaming);
        if silent {
            self.remove(&registration_id, LossCause::HeartbeatTimeout(timeout));
        }
    }

    pub(crate) fn snapshot(&self) -> Vec<TaskManagerRecord> {
        self.lock().values().cloned().collect()
    }

    /// (taskmanagers, slots total, slots free); a leaving taskmanager's slots are not counted.
    pub(crate) fn totals(&self) -> (usize, u32, u32) {
        let map = self.lock();
        let total = map.values().filter(|r| !r.leaving).map(|r| r.slots_total).sum();
        let free = map.values().map(|r| r.slots_free()).sum();
        (map.len(), total, free)
    }

    /// Takes `needed` free slots, filling taskmanagers in registration order; all or none.
    /// Returns (taskmanager, slots taken there).
    pub(crate) fn allocate(&self, needed: u32) -> Option<Vec<(TaskManagerRecord, u32)>> {
        let mut map = self.lock();
        let free: u32 = map.values().map(|r| r.slots_free()).sum();
        if free < needed {
            return None;
        }
        let mut tms: Vec<&mut TaskManagerRecord> = map.values_mut().collect();
        tms.sort_by(|a, b| fill_order(a, b));
        let takes = fill(&tms.iter().map(|r| r.slots_free()).collect::<Vec<_>>(), needed);
        let mut out = Vec::new();
        for (r, take) in tms.into_iter().zip(takes).filter(|(_, t)| *t > 0) {
            r.slots_allocated += take;
            out.push((r.clone(), take));
        }
        Some(out)
    }

    /// Where `allocate(needed)` would put the slots once the attempt holding `held`
    /// (taskmanager, slots) gave them back, without taking any: a rescale's prefetch plans
    /// with it. Fewer than `needed` when the slots are short.
    pub(crate) fn predict(&self, needed: u32, held: &[(String, u32)]) -> Vec<(TaskManagerRecord, u32)> {
        let mut tms = self.snapshot();
        tms.sort_by(fill_order);
        let free: Vec<u32> = tms
            .iter()
            .map(|r| {
                let mine: u32 = held.iter().filter(|(id, _)| *id == r.resource_id).map(|(_, n)| n).sum();
                if r.leaving {
                    0
                } else {
                    r.slots_free() + mine.min(r.slots_allocated)
                }
            })
            .collect();
        let takes = fill(&free, needed);
        tms.into_iter().zip(takes).filter(|(_, t)| *t > 0).collect()
    }

    /// Marks a registration as leaving (its taskmanager is shutting down and drains): its
    /// slots are offered no more. Returns its resource id; `None` when it is not known.
    pub(crate) fn drain(&self, registration_id: &str) -> Option<String> {
        let mut map = self.lock();
        let r = map.get_mut(registration_id)?;
        r.leaving = true;
        Some(r.resource_id.clone())
    }

    /// Whether the taskmanager `resource_id` is registered and leaving.
    pub(crate) fn is_leaving(&self, resource_id: &str) -> bool {
        self.lock().values().any(|r| r.resource_id == resource_id && r.leaving)
    }

    /// Gives slots back (to taskmanagers still registered).
    pub(crate) fn release(&self, allocation: &[(String, u32)]) {
        let mut map = self.lock();
        for (resource_id, n) in allocation {
            if let Some(r) = map.values_mut().find(|r| &r.resource_id == resource_id) {
                r.slots_allocated = r.slots_allocated.saturating_sub(*n);
            }
        }
    }

    pub(crate) fn is_registered(&self, resource_id: &str) -> bool {
        self.lock().values().any(|r| r.resource_id == resource_id)
    }

    /// Subtask counters of every taskmanager, from their last heartbeats.
    pub(crate) fn task_digests(&self) -> Vec<TaskDigest> {
        self.lock().values().flat_map(|r| r.tasks.clone()).collect()
    }
}

/// The order slots are taken in: by registration, then resource id.
fn fill_order(a: &TaskManagerRecord, b: &TaskManagerRecord) -> std::cmp::Ordering {
    (a.registered_at_ms, &a.resource_id).cmp(&(b.registered_at_ms, &b.resource_id))
}

/// How many of `needed` slots each taskmanager gives when they are filled in order, each up
/// to its `free` slots.
fn fill(free: &[u32], needed: u32) -> Vec<u32> {
    let mut left = needed;
    free.iter()
        .map(|&f| {
            let take = f.min(left);
            left -= take;
            take
        })
        .collect()
}

/// A registered taskmanager with two slots behind `gateway`, for unit tests.
#[cfg(test)]
pub(crate) fn test_record(registration_id: &str, gateway: Gateway) -> TaskManagerRecord {
    TaskManagerRecord {
        resource_id: format!("tm-{registration_id}"),
        registration_id: registration_id.to_string(),
        host: "127.0.0.1".into(),
        rpc_port: 1,
        data_port: 2,
        slots_total: 2,
        slots_allocated: 0,
        tasks: Vec::new(),
        memory: BTreeMap::new(),
        cpu_cores: 2,
        physical_memory: 0,
        registered_at_ms: now_ms(),
        last_heartbeat_ms: now_ms(),
        heap_used: 0,
        cpu_load: 0.0,
        network_segments: (0, 0, 0),
        streaming: false,
        leaving: false,
        gateway,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::transport::Endpoint;

    fn record(registration_id: &str) -> TaskManagerRecord {
        test_record(
            registration_id,
            super::super::GrpcGateway::gateway(
                sluice_proto::control::task_manager_service_client::TaskManagerServiceClient::new(
                    Endpoint::from_static("http://127.0.0.1:1").connect_lazy(),
                ),
                0,
            ),
        )
    }

    #[tokio::test]
    async fn a_registration_without_heartbeat_stream_expires() {
        let registry = Registry::default();
        registry.register(record("silent"));
        registry.register(record("alive"));
        assert!(registry.attach_stream("alive"));
        let timeout = Duration::from_millis(20);
        tokio::join!(
            registry.clone().expire_unless_streaming("silent".into(), timeout),
            registry.clone().expire_unless_streaming("alive".into(), timeout),
        );
        let left: Vec<String> = registry.snapshot().into_iter().map(|r| r.registration_id).collect();
        assert_eq!(left, vec!["alive".to_string()]);
    }

    #[tokio::test]
    async fn allocation_is_all_or_nothing_and_released() {
        let registry = Registry::default();
        registry.register(record("a"));
        registry.register(record("b"));
        assert!(registry.allocate(5).is_none(), "only 4 slots exist");
        let got = registry.allocate(3).expect("3 of 4 slots");
        assert_eq!(got.iter().map(|(_, n)| n).sum::<u32>(), 3);
        assert_eq!(registry.totals(), (2, 4, 1));
        let held: Vec<(String, u32)> = got.iter().map(|(r, n)| (r.resource_id.clone(), *n)).collect();
        // Once those 3 go back, the same 3 come again: a rescale's prefetch plans with that.
        let predicted: Vec<(String, u32)> = registry
            .predict(3, &held)
            .iter()
            .map(|(r, n)| (r.resource_id.clone(), *n))
            .collect();
        assert_eq!(predicted, held);
        assert_eq!(registry.totals(), (2, 4, 1), "a prediction takes nothing");
        registry.release(&held);
        assert_eq!(registry.totals(), (2, 4, 4));
        let again: Vec<(String, u32)> = registry
            .allocate(3)
            .unwrap()
            .iter()
            .map(|(r, n)| (r.resource_id.clone(), *n))
            .collect();
        assert_eq!(again, predicted);
        // A leaving taskmanager offers and counts no slots, and predictions skip it.
        registry.release(&held);
        let leaving = registry.snapshot()[0].clone();
        assert_eq!(
            registry.drain(&leaving.registration_id),
            Some(leaving.resource_id.clone())
        );
        assert!(registry.is_leaving(&leaving.resource_id));
        assert_eq!(registry.totals(), (2, 2, 2));
        assert!(registry
            .predict(2, &[])
            .iter()
            .all(|(r, _)| r.resource_id != leaving.resource_id));
        assert!(registry.allocate(3).is_none());
    }
}
