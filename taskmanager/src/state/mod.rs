//! Keyed and operator state of a subtask (DESIGN §7). The backend (`state.backend.type`) is
//! chosen per job: `hashmap` keeps state as live objects on the heap, budgeted against the
//! slot's share of task heap; `rocksdb` keeps it in one RocksDB instance per subtask under
//! `io.tmp.dirs`, with key-group-prefixed keys and memory from the slot's managed share.
//! Either writes the same full snapshot format (`sluice_common::state::key_group_blocks`);
//! RocksDB can also snapshot incrementally (`incremental`). `transfer` moves a snapshot to the
//! checkpoint storage and describes it with state handles, and fetches restored state back.

pub mod rocks;
pub mod snapshot;
pub mod transfer;

use std::path::PathBuf;

use sluice_common::config::options::StateBackendKind;
use sluice_common::state::KeyGroupRange;

/// What a stateful operator of a subtask needs to know about its backend.
#[derive(Debug, Clone)]
pub struct StateSettings {
    pub backend: StateBackendKind,
    pub incremental: bool,
    /// The slot's share of task heap: the heap backend's budget.
    pub heap_budget: u64,
    /// The slot's share of managed memory: RocksDB's block cache and write buffers.
    pub managed_budget: u64,
    pub write_buffer_ratio: f64,
    /// Where RocksDB working directories go (`io.tmp.dirs`).
    pub tmp_dir: PathBuf,
    pub max_parallelism: u32,
    pub key_groups: KeyGroupRange,
    /// For messages: "per-user (2/4)".
    pub task_name: String,
}

impl StateSettings {
    /// The error a heap backend gives when its state outgrows the slot's budget.
    pub fn heap_budget_error(&self, needed: u64) -> String {
        format!(
            "The keyed state of {} needs {needed} bytes, more than the slot's share of task heap ({} bytes). Increase taskmanager.memory.task.heap.size (or taskmanager.memory.process.size), lower taskmanager.numberOfTaskSlots, or set state.backend.type: rocksdb.",
            self.task_name, self.heap_budget
        )
    }
}

/// State ids: the first byte of every logical key (DESIGN §7 "key group + state id + key").
pub mod state_ids {
    /// A window pane's accumulators: window end, window start, key.
    pub const PANE: u8 = 1;
    /// A session's accumulators: key, session start, session end.
    pub const SESSION: u8 = 2;
}

/// Order-preserving big-endian encoding of an `i64`.
pub fn encode_i64(v: i64) -> [u8; 8] {
    ((v as u64) ^ (1 << 63)).to_be_bytes()
}

pub fn decode_i64(b: &[u8]) -> Result<i64, String> {
    let bytes: [u8; 8] = b
        .get(..8)
        .and_then(|s| s.try_into().ok())
        .ok_or("short timestamp in a state key")?;
    Ok((u64::from_be_bytes(bytes) ^ (1 << 63)) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn i64_encoding_sorts() {
        let vals = [i64::MIN, -5, 0, 7, i64::MAX];
        let enc: Vec<[u8; 8]> = vals.iter().map(|v| encode_i64(*v)).collect();
        let mut sorted = enc.clone();
        sorted.sort();
        assert_eq!(enc, sorted);
        for v in vals {
            assert_eq!(decode_i64(&encode_i64(v)).unwrap(), v);
        }
    }
}
