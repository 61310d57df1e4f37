//! The taskmanager's `NetworkBufferPool`: network memory / segment size segments. Deploying a
//! task reserves the buffers its gates and partitions require; a shortage fails deployment with
//! Flink's "Insufficient number of network buffers" message. Segments are counted, not
//! preallocated, so an idle taskmanager stays small; in-flight data per channel is bounded by
//! the credits these reservations back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Debug)]
pub(crate) struct NetworkBufferPool {
    total: u64,
    segment_size: u64,
    used: AtomicU64,
}

/// Buffers held by one task; returned to the pool when dropped.
#[derive(Debug)]
pub(crate) struct Reservation {
    pool: Arc<NetworkBufferPool>,
    pub count: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.pool.used.fetch_sub(self.count, Ordering::AcqRel);
    }
}

impl NetworkBufferPool {
    pub(crate) fn new(total_segments: u64, segment_size: u64) -> Arc<Self> {
        Arc::new(NetworkBufferPool {
            total: total_segments,
            segment_size,
            used: AtomicU64::new(0),
        })
    }

    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    pub(crate) fn available(&self) -> u64 {
        self.total.saturating_sub(self.used.load(Ordering::Acquire))
    }

    pub(crate) fn segment_size(&self) -> u64 {
        self.segment_size
    }

    /// Reserves `required` buffers or fails with Flink's message.
    pub(crate) fn reserve(self: &Arc<Self>, required: u64) -> Result<Reservation, String> {
        let mut used = self.used.load(Ordering::Acquire);
        loop {
            let available = self.total.saturating_sub(used);
            if required > available {
                return Err(format!(
                    "Insufficient number of network buffers: required {required}, but only {available} available. The total number of network buffers is currently set to {} of {} bytes each. You can increase this number by setting the configuration keys 'taskmanager.memory.network.fraction', 'taskmanager.memory.network.min', and 'taskmanager.memory.network.max'.",
                    self.total, self.segment_size
                ));
            }
            match self
                .used
                .compare_exchange(used, used + required, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    return Ok(Reservation {
                        pool: self.clone(),
                        count: required,
                    })
                }
                Err(now) => used = now,
            }
        }
    }

    /// Takes up to `wanted` extra buffers if free (floating buffers beyond the required ones).
    pub(crate) fn reserve_up_to(self: &Arc<Self>, wanted: u64) -> Reservation {
        let mut used = self.used.load(Ordering::Acquire);
        loop {
            let take = wanted.min(self.total.saturating_sub(used));
            match self
                .used
                .compare_exchange(used, used + take, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    return Reservation {
                        pool: self.clone(),
                        count: take,
                    }
                }
                Err(now) => used = now,
            }
        }
    }
}

/// Flink's required buffers for an input gate of `channels` channels (streaming):
/// `channels × buffers-per-channel + 1`.
pub(crate) fn gate_required(channels: u64, buffers_per_channel: u64) -> u64 {
    channels * buffers_per_channel + 1
}

/// Flink's minimum for a pipelined result partition of `subpartitions`: `subpartitions + 1`.
pub(crate) fn partition_required(subpartitions: u64) -> u64 {
    subpartitions + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_and_release() {
        let pool = NetworkBufferPool::new(10, 32768);
        let a = pool.reserve(6).unwrap();
        assert_eq!(pool.available(), 4);
        let e = pool.reserve(5).unwrap_err();
        assert!(e.starts_with("Insufficient number of network buffers: required 5, but only 4 available. The total number of network buffers is currently set to 10 of 32768 bytes each."), "{e}");
        assert!(e.contains("'taskmanager.memory.network.fraction', 'taskmanager.memory.network.min', and 'taskmanager.memory.network.max'"));
        drop(a);
        assert_eq!(pool.available(), 10);
        let extra = pool.reserve_up_to(20);
        assert_eq!(extra.count, 10);
    }
}
