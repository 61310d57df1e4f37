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
    fn poll(&mut self) -> Result<SourcePoll, String>;
    /// How many splits this subtask reads (0 = idle subtask).
    fn split_count(&self) -> usize;
    /// Whether split `i` has ended.
    fn split_finished(&self, i: usize) -> bool;
}

/// Splits `0..total` dealt round robin: the ones subtask `index` of `parallelism` reads.
pub fn assigned_splits(total: u32, parallelism: u32, index: u32) -> Vec<u32> {
    (0..total).filter(|s| s % parallelism == index).collect()
}
