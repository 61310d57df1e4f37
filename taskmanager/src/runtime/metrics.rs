//! Per-subtask counters behind Flink's task metrics (`numRecordsIn/Out`, busy / idle /
//! back-pressured time, `currentInputWatermark`, `numLateRecordsDropped`). The task loop adds
//! to them; the Prometheus refresh turns them into Flink's per-second gauges.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Debug, Default)]
pub(crate) struct TaskMetrics {
    pub records_in: AtomicU64,
    pub records_out: AtomicU64,
    pub busy_ns: AtomicU64,
    pub idle_ns: AtomicU64,
    pub backpressured_ns: AtomicU64,
    pub input_watermark: AtomicI64,
    pub late_dropped: Arc<AtomicU64>,
}

/// A point-in-time copy.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TaskSample {
    pub records_in: u64,
    pub records_out: u64,
    pub busy_ns: u64,
    pub idle_ns: u64,
    pub backpressured_ns: u64,
}

impl TaskMetrics {
    pub(crate) fn new() -> Arc<TaskMetrics> {
        Arc::new(TaskMetrics {
            input_watermark: AtomicI64::new(i64::MIN),
            ..Default::default()
        })
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn sample(&self) -> TaskSample {
        TaskSample {
            records_in: self.records_in.load(Ordering::Relaxed),
            records_out: self.records_out.load(Ordering::Relaxed),
            busy_ns: self.busy_ns.load(Ordering::Relaxed),
            idle_ns: self.idle_ns.load(Ordering::Relaxed),
            backpressured_ns: self.backpressured_ns.load(Ordering::Relaxed),
        }
    }
}
