//! Output side of a task: one `OutputChannel` per consumer subtask of an edge, and the
//! `RecordWriter` that partitions batches over them (forward, hash by key group, rebalance,
//! broadcast), cuts them into buffers of at most one segment, and queues each on its channel
//! (`output_queue`), which sends against credit. Time spent waiting for queue room is the
//! task's back-pressured time.

use arrow::array::UInt32Array;
use arrow::compute::take_record_batch;
use arrow::record_batch::RecordBatch;
use sluice_common::key_groups::{hash_keys, key_group, subtask_for_key_group};

use super::event::StreamEvent;
use super::output_queue::OutputChannel;
use crate::runtime::time_account::TimeAccount;

pub(crate) enum WriterPartition {
    /// Producer i → consumer i.
    Forward,
    Rebalance,
    Broadcast,
    Hash {
        key_columns: Vec<usize>,
        max_parallelism: u32,
    },
}

/// Key group → consumer channel, computed once per writer instead of once per row.
fn key_group_routes(max_parallelism: u32, channels: usize) -> Vec<u32> {
    (0..max_parallelism)
        .map(|kg| subtask_for_key_group(max_parallelism, channels as u32, kg))
        .collect()
}

pub(crate) struct RecordWriter {
    partition: WriterPartition,
    /// For hash partitioning: key group → channel.
    routes: Vec<u32>,
    channels: Vec<OutputChannel>,
    next: usize,
    segment_size: usize,
}

/// Splits `batch` into slices of about `segment_size` bytes (at least one row each).
fn buffers(batch: &RecordBatch, segment_size: usize) -> Vec<RecordBatch> {
    let rows = batch.num_rows();
    if rows == 0 {
        return Vec::new();
    }
    let bytes = batch.get_array_memory_size().max(1);
    let per = ((segment_size as u128 * rows as u128 / bytes as u128) as usize).clamp(1, rows);
    (0..rows)
        .step_by(per)
        .map(|start| batch.slice(start, per.min(rows - start)))
        .collect()
}

impl RecordWriter {
    pub(crate) fn new(
        partition: WriterPartition,
        channels: Vec<OutputChannel>,
        segment_size: usize,
        producer: usize,
    ) -> Self {
        let next = if channels.is_empty() {
            0
        } else {
            producer % channels.len()
        };
        let routes = match &partition {
            WriterPartition::Hash { max_parallelism, .. } => key_group_routes(*max_parallelism, channels.len()),
            _ => Vec::new(),
        };
        RecordWriter {
            partition,
            routes,
            channels,
            next,
            segment_size,
        }
    }

    async fn send_batch(&mut self, ch: usize, batch: &RecordBatch, time: &TimeAccount) -> Result<(), String> {
        for part in buffers(batch, self.segment_size) {
            self.channels[ch].send(StreamEvent::Batch(part), time).await?;
        }
        Ok(())
    }

    /// Routes a batch to its consumers.
    pub(crate) async fn emit(&mut self, batch: &RecordBatch, time: &TimeAccount) -> Result<(), String> {
        if batch.num_rows() == 0 || self.channels.is_empty() {
            return Ok(());
        }
        match &self.partition {
            WriterPartition::Forward => self.send_batch(0, batch, time).await,
            WriterPartition::Rebalance => {
                let ch = self.next;
                self.next = (self.next + 1) % self.channels.len();
                self.send_batch(ch, batch, time).await
            }
            WriterPartition::Broadcast => {
                for ch in 0..self.channels.len() {
                    self.send_batch(ch, batch, time).await?;
                }
                Ok(())
            }
            WriterPartition::Hash {
                key_columns,
                max_parallelism,
            } => {
                let keys: Vec<_> = key_columns.iter().map(|i| batch.column(*i).clone()).collect();
                let hashes = hash_keys(&keys, batch.num_rows())?;
                let mut rows: Vec<Vec<u32>> = vec![Vec::new(); self.channels.len()];
                for (row, h) in hashes.iter().enumerate() {
                    let kg = key_group(*h, *max_parallelism) as usize;
                    let target = self.routes.get(kg).ok_or("key group outside max parallelism")?;
                    rows[*target as usize].push(row as u32);
                }
                for (ch, idx) in rows.into_iter().enumerate() {
                    if idx.is_empty() {
                        continue;
                    }
                    let part = take_record_batch(batch, &UInt32Array::from(idx)).map_err(|e| e.to_string())?;
                    self.send_batch(ch, &part, time).await?;
                }
                Ok(())
            }
        }
    }

    /// Sends an event (watermark, idleness, end of partition) to every consumer.
    pub(crate) async fn broadcast_event(&mut self, event: StreamEvent, time: &TimeAccount) -> Result<(), String> {
        for ch in &mut self.channels {
            ch.send(event.clone(), time).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    #[test]
    fn buffers_respect_the_segment_size() {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from_iter_values(0..10_000))]).unwrap();
        let parts = buffers(&batch, 8 << 10);
        assert!(parts.len() >= 9, "{}", parts.len());
        assert_eq!(parts.iter().map(|b| b.num_rows()).sum::<usize>(), 10_000);
        assert!(parts.iter().all(|b| b.num_rows() * 8 <= 8 << 10));
    }
}
