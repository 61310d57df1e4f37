//! What is known about a job's checkpoints, in Flink's REST shape (`/jobs/:id/checkpoints`):
//! counts, the latest completed / failed / savepoint / restored, and a bounded history. Also
//! the outcome of each savepoint trigger (`/jobs/:id/savepoints/:triggerid`).

use std::collections::{HashMap, VecDeque};

use serde_json::{json, Value};

const HISTORY: usize = 10;

#[derive(Debug, Clone)]
pub(crate) struct CheckpointRecord {
    pub id: u64,
    pub status: &'static str,
    pub savepoint: bool,
    pub trigger_timestamp: u64,
    pub latest_ack_timestamp: u64,
    pub state_size: u64,
    pub duration_ms: u64,
    pub external_path: String,
    pub num_subtasks: usize,
    pub acknowledged: usize,
    pub failure: Option<String>,
}

impl CheckpointRecord {
    /// Flink's `CheckpointStatistics` (`className` `completed` or `failed`, as its Jackson
    /// subtype names say). Per-vertex statistics (`tasks`) are not kept.
    pub(crate) fn to_json(&self) -> Value {
        let completed = self.status == "COMPLETED";
        let mut v = json!({
            "className": if completed { "completed" } else { "failed" },
            "id": self.id,
            "status": self.status,
            "is_savepoint": self.savepoint,
            "savepointFormat": if self.savepoint { Value::from("CANONICAL") } else { Value::Null },
            "checkpoint_type": if self.savepoint { "SAVEPOINT" } else { "CHECKPOINT" },
            "trigger_timestamp": self.trigger_timestamp,
            "latest_ack_timestamp": self.latest_ack_timestamp,
            "state_size": self.state_size,
            "checkpointed_size": self.state_size,
            "end_to_end_duration": self.duration_ms,
            "alignment_buffered": 0,
            "processed_data": 0,
            "persisted_data": 0,
            "num_subtasks": self.num_subtasks,
            "num_acknowledged_subtasks": self.acknowledged,
            "tasks": {},
        });
        if completed {
            v["external_path"] = json!(self.external_path);
            v["discarded"] = json!(false);
        } else {
            v["failure_timestamp"] = json!(self.latest_ack_timestamp.max(self.trigger_timestamp));
            v["failure_message"] = json!(self.failure);
        }
        v
    }
}

#[derive(Debug, Clone)]
pub(crate) enum SavepointStatus {
    InProgress,
    Completed(String),
    Failed(String),
}

#[derive(Debug, Clone, Default)]
pub(crate) struct CheckpointStats {
    pub completed: u64,
    pub failed: u64,
    pub in_progress: u64,
    pub restored: Option<(u64, String, u64)>,
    pub latest_completed: Option<CheckpointRecord>,
    pub latest_failed: Option<CheckpointRecord>,
    pub latest_savepoint: Option<CheckpointRecord>,
    pub history: VecDeque<CheckpointRecord>,
    pub savepoints: HashMap<String, SavepointStatus>,
    pub num_restarts: u64,
}

impl CheckpointStats {
    pub(crate) fn record(&mut self, r: CheckpointRecord) {
        if r.status == "COMPLETED" {
            self.completed += 1;
            if r.savepoint {
                self.latest_savepoint = Some(r.clone());
            } else {
                self.latest_completed = Some(r.clone());
            }
        } else {
            self.failed += 1;
            self.latest_failed = Some(r.clone());
        }
        self.history.push_front(r);
        self.history.truncate(HISTORY);
    }

    pub(crate) fn to_json(&self) -> Value {
        let opt = |r: &Option<CheckpointRecord>| r.as_ref().map(|r| r.to_json()).unwrap_or(Value::Null);
        let durations: Vec<u64> = self
            .history
            .iter()
            .filter(|r| r.status == "COMPLETED")
            .map(|r| r.duration_ms)
            .collect();
        let sizes: Vec<u64> = self
            .history
            .iter()
            .filter(|r| r.status == "COMPLETED")
            .map(|r| r.state_size)
            .collect();
        let summary = |v: &[u64]| {
            let n = v.len().max(1) as u64;
            let mut sorted = v.to_vec();
            sorted.sort_unstable();
            // Nearest-rank quantiles over the retained history.
            let q = |p: f64| -> f64 {
                if sorted.is_empty() {
                    return 0.0;
                }
                let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
                sorted[rank - 1] as f64
            };
            json!({
                "min": sorted.first().copied().unwrap_or(0),
                "max": sorted.last().copied().unwrap_or(0),
                "avg": v.iter().sum::<u64>() / n,
                "p50": q(0.5),
                "p90": q(0.9),
                "p95": q(0.95),
                "p99": q(0.99),
                "p999": q(0.999),
            })
        };
        let zero = summary(&[]);
        json!({
            "counts": {
                "restored": u64::from(self.restored.is_some()),
                "total": self.completed + self.failed + self.in_progress,
                "in_progress": self.in_progress,
                "completed": self.completed,
                "failed": self.failed,
            },
            "summary": {
                "state_size": summary(&sizes),
                "checkpointed_size": summary(&sizes),
                "end_to_end_duration": summary(&durations),
                "alignment_buffered": zero.clone(),
                "processed_data": zero.clone(),
                "persisted_data": zero,
            },
            "latest": {
                "completed": opt(&self.latest_completed),
                "savepoint": opt(&self.latest_savepoint),
                "failed": opt(&self.latest_failed),
                "restored": self.restored.as_ref().map(|(id, path, ts)| json!({
                    "id": id, "external_path": path, "restore_timestamp": ts, "is_savepoint": path.contains("/savepoint-"),
                })).unwrap_or(Value::Null),
            },
            "history": self.history.iter().map(|r| r.to_json()).collect::<Vec<_>>(),
        })
    }
}
