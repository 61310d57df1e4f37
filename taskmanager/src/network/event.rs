//! What travels on a channel, in order: data buffers and in-band events.

use std::sync::Arc;

use arrow::record_batch::RecordBatch;

/// A checkpoint barrier (DESIGN §8): everything before it on a channel belongs to checkpoint
/// `id`, everything after to later ones. It names where the snapshot's files go, so a task
/// needs no other message to take its part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Barrier {
    pub id: u64,
    pub timestamp_ms: u64,
    /// A savepoint: self-contained, every file under `target_url`.
    pub savepoint: bool,
    /// URL of the directory this snapshot's exclusive files go to.
    pub target_url: Arc<str>,
    /// Stop-with-savepoint: the job ends after this barrier.
    pub stop: bool,
    /// A rescale's stop follows this checkpoint: state held for it (RocksDB compactions)
    /// waits until then.
    pub prepare: bool,
}

#[derive(Debug, Clone)]
pub(crate) enum StreamEvent {
    /// At most one segment's worth of rows.
    Batch(RecordBatch),
    /// Event time has reached this value (ms) on this channel.
    Watermark(i64),
    /// The channel's producer is idle (true) or active again (false).
    Idle(bool),
    /// A checkpoint barrier, in order with the data.
    Barrier(Barrier),
    /// The producer finished; nothing follows.
    EndOfPartition,
    /// The channel broke (its connection failed); never sent on the wire.
    Broken(String),
}

/// Identifies a channel across the cluster: job attempt, edge, producer and consumer subtask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ChannelId {
    pub epoch: u64,
    pub edge: u32,
    pub from: u32,
    pub to: u32,
}

/// Identifies an input gate: the consumer subtask of a job attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct GateKey {
    pub epoch: u64,
    pub vertex: u32,
    pub subtask: u32,
}
