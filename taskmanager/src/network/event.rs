//! What travels on a channel, in order: data buffers and in-band events.

use arrow::record_batch::RecordBatch;

#[derive(Debug, Clone)]
pub enum StreamEvent {
    /// At most one segment's worth of rows.
    Batch(RecordBatch),
    /// Event time has reached this value (ms) on this channel.
    Watermark(i64),
    /// The channel's producer is idle (true) or active again (false).
    Idle(bool),
    /// The producer finished; nothing follows.
    EndOfPartition,
    /// The channel broke (its connection failed); never sent on the wire.
    Broken(String),
}

/// Identifies a channel across the cluster: job attempt, edge, producer and consumer subtask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChannelId {
    pub epoch: u64,
    pub edge: u32,
    pub from: u32,
    pub to: u32,
}

/// Identifies an input gate: the consumer subtask of a job attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GateKey {
    pub epoch: u64,
    pub vertex: u32,
    pub subtask: u32,
}
