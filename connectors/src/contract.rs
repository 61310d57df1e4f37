//! The connector contracts. A source subtask owns a `Source`: it is handed splits (from its
//! restored state, and by the jobmanager's enumerator at deployment and while running),
//! yields batches, snapshots the position of each split it still reads, and hears when a
//! checkpoint completes or is aborted (to commit offsets). A sink subtask owns a `Sink`: it
//! writes, pre-commits at every barrier (returning committables the runtime keeps in the
//! checkpoint), commits them when that checkpoint completes, and recovers restored committables
//! after a failure (Flink's two-phase-commit `SinkWriter`/`Committer`). Both are async: a
//! connector talks to external systems; blocking work (files, blocking clients) runs off
//! tokio's workers.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use sluice_common::failure::ClassedError;
use sluice_common::job::spec::{SinkSpec, SourceSpec};

/// A split with its position, opaque to everything but its connector (and to the enumerator
/// that made it). Stored in checkpoints as one element of the source's split list state.
pub type Split = Vec<u8>;

/// What a sink's pre-commit hands to the checkpoint: enough to commit (or find again) the
/// data it made durable, opaque to everything but its connector.
pub type Committable = Vec<u8>;

pub enum SourcePoll {
    /// Rows read from split `usize` (an index into the reader's own splits).
    Batch(RecordBatch, usize),
    /// Nothing now (rate limit, no data yet); ask again after this long.
    Wait(Duration),
    /// Every split is exhausted (bounded sources only).
    Finished,
}

/// A metric's name (as Prometheus shows it after `flink_taskmanager_job_task_operator_`, e.g.
/// `KafkaSourceReader_KafkaConsumer_records_lag_max`) and its own labels (e.g. topic,
/// partition), besides the task's.
pub type MetricKey = (String, Vec<(String, String)>);

/// The gauges a connector reports in its operator's scope (Flink's operator metric group): the
/// connector sets them, the taskmanager exports them with the subtask's labels for as long as
/// the subtask runs.
#[derive(Debug, Clone, Default)]
pub struct OperatorMetrics(Arc<Mutex<BTreeMap<MetricKey, f64>>>);

impl OperatorMetrics {
    pub fn set(&self, name: &str, labels: &[(&str, &str)], value: f64) {
        let key = (
            name.to_string(),
            labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        );
        self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(key, value);
    }

    /// Every gauge and its value now.
    pub fn snapshot(&self) -> Vec<(MetricKey, f64)> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }
}

/// What a source reader is built from.
pub struct SourceContext<'a> {
    pub spec: &'a SourceSpec,
    /// The source's columns.
    pub schema: SchemaRef,
    pub parallelism: u32,
    pub subtask: u32,
    /// Where the reader reports its gauges.
    pub metrics: OperatorMetrics,
}

#[async_trait]
pub trait Source: Send {
    /// Splits to read from now on, added to those it has: at the start the splits of a
    /// restored checkpoint and the enumerator's assignment, later splits the enumerator found
    /// while the job runs.
    fn add_splits(&mut self, splits: Vec<Split>) -> Result<(), ClassedError>;

    /// The next batch. A record that cannot be read fails with `ClassedError::user`, naming
    /// where it stands.
    async fn next_batch(&mut self) -> Result<SourcePoll, ClassedError>;

    /// How many splits this reader has (0 = idle subtask).
    fn split_count(&self) -> usize;

    /// Whether split `i` has ended.
    fn split_finished(&self, i: usize) -> bool;

    /// Every split not yet finished, with its position (redistributed evenly over the readers
    /// when the parallelism changes).
    fn snapshot_splits(&self) -> Vec<Split>;

    /// Checkpoint `checkpoint_id` completed (a source commits offsets here).
    async fn notify_checkpoint_complete(&mut self, _checkpoint_id: u64) -> Result<(), ClassedError> {
        Ok(())
    }

    /// Checkpoint `checkpoint_id` was aborted.
    async fn notify_checkpoint_aborted(&mut self, _checkpoint_id: u64) -> Result<(), ClassedError> {
        Ok(())
    }
}

/// What a sink writer is built from.
pub struct SinkContext<'a> {
    pub spec: &'a SinkSpec,
    /// The rows the sink receives.
    pub schema: SchemaRef,
    pub parallelism: u32,
    pub subtask: u32,
    /// The job attempt's epoch, unique across the cluster's jobs and attempts (for names of
    /// transactions or files no other attempt uses).
    pub attempt: u64,
    /// Permits of resources the sink's subtasks share across taskmanagers (the jobmanager's);
    /// `None` where there is no jobmanager (unit tests): the sink bounds its own process only.
    pub permits: Option<Arc<dyn Permits>>,
}

/// Permits of a resource shared by the subtasks of a job attempt wherever they run (a sink's
/// database connections under `connection.pool.max-size`), granted by the jobmanager. The
/// holder (taskmanager, operator, subtask) is the implementation's.
#[async_trait]
pub trait Permits: Send + Sync {
    /// Waits until one permit of `pool`, of which at most `max` are held at once, is held.
    async fn acquire(&self, pool: &str, max: u32) -> Result<(), ClassedError>;

    /// Gives the permit of `pool` back.
    async fn release(&self, pool: &str);
}

#[async_trait]
pub trait Sink: Send {
    /// Before anything else (after a restore: before `recover`): connect and check what the
    /// sink writes to, so a wrong setup fails the job at its start.
    async fn open(&mut self) -> Result<(), ClassedError> {
        Ok(())
    }

    async fn write(&mut self, batch: RecordBatch) -> Result<(), ClassedError>;

    /// At the barrier of checkpoint `checkpoint_id`: make everything written so far durable
    /// but not yet visible, and say how to commit it.
    async fn pre_commit(&mut self, _checkpoint_id: u64) -> Result<Vec<Committable>, ClassedError> {
        Ok(Vec::new())
    }

    /// The checkpoint holding these committables completed: make them visible. A commit may be
    /// retried after a crash, so committing twice must be harmless.
    async fn commit(&mut self, _committables: Vec<Committable>) -> Result<(), ClassedError> {
        Ok(())
    }

    /// After a restore: `mine` are this subtask's share of the restored checkpoint's
    /// committables (durable before it completed, so they are committed); `all` are every
    /// subtask's, so one subtask can clean up what no checkpoint holds.
    async fn recover(&mut self, mine: Vec<Committable>, _all: &[Committable]) -> Result<(), ClassedError> {
        self.commit(mine).await
    }

    /// Checkpoint `checkpoint_id` was aborted.
    async fn abort(&mut self, _checkpoint_id: u64) -> Result<(), ClassedError> {
        Ok(())
    }
}
