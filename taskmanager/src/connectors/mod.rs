//! Sources and sinks (DESIGN §6): split-based readers a source subtask polls, and sinks that
//! sit at the end of an operator chain.

mod datagen;
mod file_source;
mod sinks;

use std::time::Duration;

use arrow::record_batch::RecordBatch;

pub use datagen::Datagen;
pub use file_source::FileSource;
pub use sinks::{Blackhole, FileSink, PrintSink};

pub enum SourcePoll {
    /// Rows read from split `usize` (an index into the reader's own splits).
    Batch(RecordBatch, usize),
    /// Nothing now (rate limit); ask again after this long.
    Wait(Duration),
    /// Every split is exhausted.
    Finished,
}

pub trait SourceReader: Send {
    /// The next batch; a record that cannot be read fails with `TaskError::user`, naming where
    /// it stands.
    fn poll(&mut self) -> Result<SourcePoll, crate::error::TaskError>;
    /// How many splits this subtask reads (0 = idle subtask).
    fn split_count(&self) -> usize;
    /// Whether split `i` has ended.
    fn split_finished(&self, i: usize) -> bool;
    /// The position of every split not yet finished (operator state, one element per split,
    /// redistributed by even split when parallelism changes).
    fn snapshot(&self) -> Vec<Vec<u8>>;
    /// Reads exactly the splits of a snapshot from their positions.
    fn restore(&mut self, elements: &[Vec<u8>]) -> Result<(), String>;
}

/// The operator-list-state name source positions are stored under.
pub const SPLITS_STATE: &str = "source-splits";

/// Two little-endian `u64`s, the form of every split position.
pub fn encode_position(a: u64, b: u64) -> Vec<u8> {
    let mut v = a.to_le_bytes().to_vec();
    v.extend_from_slice(&b.to_le_bytes());
    v
}

pub fn decode_position(e: &[u8]) -> Result<(u64, u64), String> {
    if e.len() != 16 {
        return Err(format!("a source split position has {} bytes, expected 16", e.len()));
    }
    let mut a = [0u8; 8];
    let mut b = [0u8; 8];
    a.copy_from_slice(&e[..8]);
    b.copy_from_slice(&e[8..]);
    Ok((u64::from_le_bytes(a), u64::from_le_bytes(b)))
}

/// Splits `0..total` dealt round robin: the ones subtask `index` of `parallelism` reads.
pub fn assigned_splits(total: u32, parallelism: u32, index: u32) -> Vec<u32> {
    (0..total).filter(|s| s % parallelism == index).collect()
}
