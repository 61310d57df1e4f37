//! What an operator sees of the subtask it runs in (DESIGN §14's operator contract): which task
//! it is (job, vertex, subtask, parallelism, attempt), the clock, the subtask's current input
//! watermark and its metric counters. Handed to `Operator::process` with every batch, together
//! with the index of the input the batch came from.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::runtime::metrics::TaskMetrics;

/// The subtask an operator runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TaskInfo {
    pub job_name: String,
    /// The vertex's name (its chained operators, as Flink names tasks).
    pub task_name: String,
    pub subtask: u32,
    pub parallelism: u32,
    /// The job attempt's epoch.
    pub attempt: u64,
}

pub(crate) struct OperatorContext {
    pub task: Arc<TaskInfo>,
    metrics: Arc<TaskMetrics>,
}

impl OperatorContext {
    pub(crate) fn new(task: Arc<TaskInfo>, metrics: Arc<TaskMetrics>) -> Self {
        OperatorContext { task, metrics }
    }

    /// Wall-clock time in milliseconds since the Unix epoch (processing time).
    #[allow(
        dead_code,
        reason = "part of the operator contract; the built-in operators do not read it yet"
    )]
    pub(crate) fn now_ms(&self) -> i64 {
        sluice_common::wall_ms::wall_ms()
    }

    /// The subtask's input watermark (`i64::MIN` before the first one).
    #[allow(
        dead_code,
        reason = "part of the operator contract; the built-in operators do not read it yet"
    )]
    pub(crate) fn current_watermark(&self) -> i64 {
        self.metrics.input_watermark.load(Ordering::Relaxed)
    }

    /// The subtask's counters (Flink's task metric group).
    pub(crate) fn metrics(&self) -> &TaskMetrics {
        &self.metrics
    }
}

#[cfg(test)]
impl OperatorContext {
    /// A context for unit tests of one operator.
    pub(crate) fn for_tests() -> Self {
        OperatorContext::new(
            Arc::new(TaskInfo {
                job_name: "test".into(),
                task_name: "test".into(),
                subtask: 0,
                parallelism: 1,
                attempt: 1,
            }),
            TaskMetrics::new(),
        )
    }
}
