//! Reactive mode (`scheduler-mode: reactive`, DESIGN §9): a job runs at the parallelism the
//! slots allow. Unlike Flink it works in a session cluster: the registered slots are split
//! evenly between the reactive jobs that have not ended, in the order they were submitted
//! (the first `total mod n` jobs get one more). Each vertex then runs at min(its max
//! parallelism, the job's share). A running job scales up when its share rose by at least
//! `min-parallelism-increase` (summed over vertices), the extra slots are free, and the slots
//! have not changed for `resource-stabilization-timeout`. It scales down by stop-with-checkpoint
//! when a taskmanager it runs on drains as it shuts down (`taskmanager.graceful-shutdown.timeout`
//! set), and by failover when one is lost. Every rescale is recorded with its cause and pause.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_common::config::options::{MIN_PARALLELISM_INCREASE, RESOURCE_STABILIZATION_TIMEOUT};
use sluice_common::config::Configuration;

#[derive(Debug, Clone)]
pub(crate) struct ReactiveSettings {
    pub stabilization: Duration,
    pub min_increase: u32,
}

impl ReactiveSettings {
    pub(crate) fn from_config(c: &Configuration) -> Result<Self, String> {
        Ok(ReactiveSettings {
            stabilization: c.get(&RESOURCE_STABILIZATION_TIMEOUT).map_err(|e| e.to_string())?,
            min_increase: c.get(&MIN_PARALLELISM_INCREASE).map_err(|e| e.to_string())?.get(),
        })
    }
}

/// The slots job number `index` (in submission order) of `jobs` reactive jobs gets of `total`.
pub(crate) fn share(total: u32, index: usize, jobs: usize) -> u32 {
    let n = jobs.max(1) as u32;
    total / n + u32::from((index as u32) < total % n)
}

/// Decides when a running job scales up: the desired parallelism must have been the same,
/// and enough above the current one, for the stabilization timeout.
#[derive(Debug, Default)]
pub(crate) struct ScaleUpWatch {
    seen: Option<(u32, Instant)>,
}

impl ScaleUpWatch {
    /// `current`/`desired` are summed over vertices; `true` means rescale now.
    pub(crate) fn observe(&mut self, settings: &ReactiveSettings, current: u32, desired: u32, now: Instant) -> bool {
        if desired < current + settings.min_increase {
            self.seen = None;
            return false;
        }
        match self.seen {
            Some((d, since)) if d == desired => now.duration_since(since) >= settings.stabilization,
            _ => {
                self.seen = Some((desired, now));
                settings.stabilization.is_zero()
            }
        }
    }
}

/// One rescale of a job, as REST shows it.
#[derive(Debug, Clone)]
pub(crate) struct RescaleRecord {
    pub timestamp_ms: u64,
    pub from: u32,
    pub to: u32,
    pub cause: String,
    /// From the stop barrier (or the failure) to every task of the new attempt running.
    pub pause_ms: u64,
    /// The pause in phases: until the new attempt's deployment started (the stop-with-
    /// checkpoint and the old attempt's end, or the failure's notice and the restart delay),
    /// and from there until every task ran.
    pub stop_ms: u64,
    pub deploy_ms: u64,
    /// Within the deployment, the slowest taskmanager's fetching of its state (downloads, or
    /// local copies) and opening it in the state backends.
    pub download_ms: u64,
    pub restore_ms: u64,
    /// The stop-with-checkpoint's duration and bytes uploaded (none after a failure).
    pub stop_checkpoint: Option<(u64, u64)>,
    /// Before the pause, while the job ran: the checkpoint the stop waited for (a prepared
    /// stop's, or a periodic one under way).
    pub prepare_ms: Option<u64>,
    /// Within the prepare: the taskmanagers' prefetch of that checkpoint's state for the new
    /// attempt (ms, bytes).
    pub prefetch: Option<(u64, u64)>,
    /// From the pause's start until the new attempt processed its first record (`note_first_
    /// record`); none until a heartbeat brought it.
    pub first_record_ms: Option<u64>,
    /// Each vertex whose parallelism changed: (vertex id, from, to).
    pub vertices: Vec<(String, u32, u32)>,
}

impl RescaleRecord {
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "timestamp": self.timestamp_ms,
            "from_parallelism": self.from,
            "to_parallelism": self.to,
            "cause": self.cause,
            "pause_ms": self.pause_ms,
            "phases": {
                "prepare_checkpoint_ms": self.prepare_ms,
                "prefetch_ms": self.prefetch.map(|p| p.0),
                "prefetched_bytes": self.prefetch.map(|p| p.1),
                "stop_ms": self.stop_ms,
                "stop_checkpoint_ms": self.stop_checkpoint.map(|c| c.0),
                "stop_checkpoint_uploaded_bytes": self.stop_checkpoint.map(|c| c.1),
                "deploy_ms": self.deploy_ms,
                "download_ms": self.download_ms,
                "restore_ms": self.restore_ms,
                "first_record_ms": self.first_record_ms,
            },
            "vertices": self
                .vertices
                .iter()
                .map(|(id, from, to)| json!({"id": id, "from_parallelism": from, "to_parallelism": to}))
                .collect::<Vec<_>>(),
        })
    }
}

/// A rescale under way: what it started from and when the job stopped processing.
#[derive(Debug, Clone)]
pub(crate) struct PendingRescale {
    /// Each vertex's parallelism before, by vertex id.
    pub from_vertices: Vec<(String, u32)>,
    pub cause: String,
    pub since: Instant,
    pub timestamp_ms: u64,
    /// When the new attempt's deployment started, and what its taskmanagers took to fetch
    /// and open their state (the slowest one's).
    pub deploying: Option<Instant>,
    pub download_ms: u64,
    pub restore_ms: u64,
    /// The stop-with-checkpoint's duration and bytes, once it completed (none when the rescale
    /// follows a failure).
    pub stop_checkpoint: Option<(u64, u64)>,
    /// A prepared stop: the checkpoint taken while the job ran, before the stop's barrier,
    /// and the prefetch of its state after it (ms, bytes).
    pub prepare_ms: Option<u64>,
    pub prefetch: Option<(u64, u64)>,
}

impl PendingRescale {
    /// A rescale of `job` (from its current parallelism) that starts now.
    pub(crate) fn now(job: &super::job::Job, cause: String) -> Self {
        PendingRescale {
            from_vertices: job.vertex_parallelism(),
            cause,
            since: Instant::now(),
            timestamp_ms: crate::resource_manager::now_ms(),
            deploying: None,
            download_ms: 0,
            restore_ms: 0,
            stop_checkpoint: None,
            prepare_ms: None,
            prefetch: None,
        }
    }

    /// The stop-with-checkpoint's barrier left: the pause starts there (after a prepared
    /// stop's checkpoint, which the job ran through).
    pub(crate) fn stop_triggered(&mut self, t: crate::checkpoint::StopTriggered) {
        self.since = t.at;
        self.timestamp_ms = t.at_ms;
        self.prepare_ms = t.prepared_ms;
    }

    /// A failure interrupted this rescale: the job restarts from its latest checkpoint
    /// instead, and the record says so.
    pub(crate) fn interrupted_by(&mut self, failure: &str) {
        self.cause = format!("{}; interrupted by a failure: {failure}", self.cause);
    }

    /// The job's parallelism before (its widest vertex's).
    pub(crate) fn parallelism_before(&self) -> u32 {
        self.from_vertices.iter().map(|(_, p)| *p).max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_split_evenly_in_submission_order() {
        assert_eq!(share(6, 0, 2), 3);
        assert_eq!(share(6, 1, 2), 3);
        assert_eq!(share(5, 0, 2), 3);
        assert_eq!(share(5, 1, 2), 2);
        assert_eq!(share(3, 0, 1), 3);
        assert_eq!(share(0, 0, 1), 0);
    }

    #[test]
    fn scale_up_waits_for_stable_resources_and_the_minimum_increase() {
        let s = ReactiveSettings {
            stabilization: Duration::from_secs(2),
            min_increase: 2,
        };
        let t0 = Instant::now();
        let mut w = ScaleUpWatch::default();
        assert!(!w.observe(&s, 4, 5, t0), "below the minimum increase");
        assert!(!w.observe(&s, 4, 6, t0));
        assert!(!w.observe(&s, 4, 6, t0 + Duration::from_secs(1)));
        // The slots changed again: stabilization starts over.
        assert!(!w.observe(&s, 4, 8, t0 + Duration::from_millis(1500)));
        assert!(!w.observe(&s, 4, 8, t0 + Duration::from_secs(3)));
        assert!(w.observe(&s, 4, 8, t0 + Duration::from_millis(3500)));
        let now = ReactiveSettings {
            stabilization: Duration::ZERO,
            min_increase: 1,
        };
        assert!(ScaleUpWatch::default().observe(&now, 2, 3, t0));
    }
}
