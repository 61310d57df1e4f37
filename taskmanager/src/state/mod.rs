//! Keyed and operator state of a subtask (DESIGN §7). The backend (`state.backend.type`) is
//! chosen per job: `hashmap` keeps state as live objects on the heap, budgeted against the
//! slot's share of task heap; `rocksdb` keeps it in one RocksDB instance per subtask under
//! `io.tmp.dirs`, with key-group-prefixed keys and memory from the slot's managed share.
//! Either writes the same full snapshot format (`sluice_common::state::key_group_blocks`);
//! RocksDB can also snapshot incrementally (`incremental`). `transfer` moves a snapshot to the
//! checkpoint storage and describes it with state handles, and fetches restored state back.

pub(crate) mod keyed;
pub(crate) mod kv;
pub(crate) mod local_copy;
pub(crate) mod rocks;
pub(crate) mod snapshot;
pub(crate) mod timers;
pub(crate) mod transfer;

use std::path::PathBuf;

use sluice_common::config::options::StateBackendKind;
use sluice_common::state::key_group_blocks::read_blocks;
use sluice_common::state::KeyGroupRange;

use snapshot::OperatorRestoreData;

/// What a stateful operator of a subtask needs to know about its backend.
#[derive(Debug, Clone)]
pub(crate) struct StateSettings {
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
    /// `table.exec.state.ttl`: the time to live of a continuous aggregate's keys that sets none.
    pub default_ttl: Option<std::time::Duration>,
    /// `execution.checkpointing.local-backup.enabled`: where checkpointed SST files are kept.
    pub local_backup: Option<local_copy::LocalCopies>,
    /// `state.backend.rocksdb.rescaling.use-delete-files-in-range`.
    pub delete_files_in_range: bool,
    /// `state.backend.rocksdb.compaction.file-per-key-group`.
    pub sst_per_key_group: bool,
}

impl StateSettings {
    /// The error a heap backend gives when its state outgrows the slot's budget.
    pub(crate) fn heap_budget_error(&self, needed: u64) -> String {
        format!(
            "The keyed state of {} needs {needed} bytes, more than the slot's share of task heap ({} bytes). Increase taskmanager.memory.task.heap.size (or taskmanager.memory.process.size), lower taskmanager.numberOfTaskSlots, or set state.backend.type: rocksdb.",
            self.task_name, self.heap_budget
        )
    }
}

/// Calls `f(kg, key, value)` for every restored keyed entry of the key groups in `want`, from
/// full snapshots and from downloaded incremental ones alike, whichever backend wrote them.
pub(crate) fn for_each_restored(
    r: &OperatorRestoreData,
    want: KeyGroupRange,
    mut f: impl FnMut(u32, &[u8], &[u8]) -> Result<(), String>,
) -> Result<(), String> {
    for_each_full(r, want, &mut f)?;
    for d in &r.rocks_dirs {
        rocks::read_rocks_dir(d, want, &mut f)?;
    }
    Ok(())
}

/// Calls `f(kg, key, value)` for every entry of the key groups of `want` in the restored full
/// snapshots.
pub(crate) fn for_each_full(
    r: &OperatorRestoreData,
    want: KeyGroupRange,
    mut f: impl FnMut(u32, &[u8], &[u8]) -> Result<(), String>,
) -> Result<(), String> {
    for (data, range, offsets) in &r.full {
        read_blocks(data, *range, offsets, want, &mut f)?;
    }
    Ok(())
}

/// Settings for unit tests: the given backend and key-group range, 64 MiB of heap budget.
#[cfg(test)]
pub(crate) fn test_settings(backend: StateBackendKind, dir: &std::path::Path, range: (u32, u32)) -> StateSettings {
    StateSettings {
        backend,
        incremental: false,
        heap_budget: 64 << 20,
        managed_budget: 16 << 20,
        write_buffer_ratio: 0.5,
        tmp_dir: dir.to_path_buf(),
        max_parallelism: 128,
        key_groups: KeyGroupRange::new(range.0, range.1),
        task_name: "w (1/1)".into(),
        default_ttl: None,
        local_backup: None,
        delete_files_in_range: false,
        sst_per_key_group: false,
    }
}

/// State ids: the first byte of every logical key (DESIGN §7 "key group + state id + key").
pub(crate) mod state_ids {
    /// A window pane's accumulators: window end, window start, key.
    pub(crate) const PANE: u8 = 1;
    /// The typed keyed state of `keyed`: state name, key, and a map's user key.
    pub(crate) const USER: u8 = 3;
    /// Timers (`timers`): time domain, time, key.
    pub(crate) const TIMER: u8 = 4;
}

/// Order-preserving big-endian encoding of an `i64`.
pub(crate) fn encode_i64(v: i64) -> [u8; 8] {
    ((v as u64) ^ (1 << 63)).to_be_bytes()
}

pub(crate) fn decode_i64(b: &[u8]) -> Result<i64, String> {
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
