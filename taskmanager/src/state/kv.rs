//! The byte store under the typed keyed state (`keyed`) and the timers (`timers`), whichever
//! backend the job chose: entries are addressed by key group and logical key (state id byte +
//! the state's own bytes). The heap backend keeps one ordered map per key group, with its size
//! counted against the slot's share of task heap; RocksDB keeps one instance per subtask.
//! Both restore from, and snapshot to, the same per-key-group format.

use std::collections::BTreeMap;

use sluice_common::config::options::StateBackendKind;
use sluice_common::state::key_group_blocks::BlocksWriter;
use sluice_common::state::KeyGroupRange;

use super::rocks::RocksStore;
use super::snapshot::{KeyedSnapshot, OperatorRestoreData, SnapshotKind};
use super::{for_each_restored, StateSettings};

/// What an entry costs on the heap beyond its bytes (map node, two vectors).
const ENTRY_OVERHEAD: u64 = 96;

/// Per-key-group ordered maps on the heap, budgeted.
pub(crate) struct HeapKv {
    settings: StateSettings,
    groups: Vec<BTreeMap<Vec<u8>, Vec<u8>>>,
    bytes: u64,
}

fn entry_cost(key: &[u8], value: &[u8]) -> u64 {
    (key.len() + value.len()) as u64 + ENTRY_OVERHEAD
}

impl HeapKv {
    fn new(settings: &StateSettings) -> Self {
        HeapKv {
            settings: settings.clone(),
            groups: vec![BTreeMap::new(); settings.key_groups.len()],
            bytes: 0,
        }
    }

    /// The position of key group `kg` in `groups`, or why it is not held here.
    fn index(&self, kg: u32) -> Result<usize, String> {
        let r = self.settings.key_groups;
        kg.checked_sub(r.start)
            .map(|i| i as usize)
            .filter(|i| *i < self.groups.len())
            .ok_or_else(|| out_of_range(kg, r))
    }

    fn group(&self, kg: u32) -> Result<&BTreeMap<Vec<u8>, Vec<u8>>, String> {
        Ok(&self.groups[self.index(kg)?])
    }

    fn group_mut(&mut self, kg: u32) -> Result<&mut BTreeMap<Vec<u8>, Vec<u8>>, String> {
        let i = self.index(kg)?;
        Ok(&mut self.groups[i])
    }

    fn put(&mut self, kg: u32, key: &[u8], value: &[u8]) -> Result<(), String> {
        let (budget, bytes) = (self.settings.heap_budget, self.bytes);
        let group = self.group_mut(kg)?;
        let added = entry_cost(key, value);
        let removed = group.get(key).map_or(0, |old| entry_cost(key, old));
        let after = bytes - removed + added;
        if after > budget && added > removed {
            return Err(self.settings.heap_budget_error(after));
        }
        group.insert(key.to_vec(), value.to_vec());
        self.bytes = after;
        Ok(())
    }

    fn delete(&mut self, kg: u32, key: &[u8]) -> Result<(), String> {
        if let Some(old) = self.group_mut(kg)?.remove(key) {
            self.bytes -= entry_cost(key, &old);
        }
        Ok(())
    }
}

fn out_of_range(kg: u32, r: KeyGroupRange) -> String {
    format!(
        "key group {kg} is not owned by this subtask (it owns {}..={})",
        r.start, r.end
    )
}

/// The keyed store of one operator in one subtask.
pub(crate) enum KvStore {
    Heap(HeapKv),
    Rocks(Box<RocksStore>),
}

impl KvStore {
    /// Opens the store of the job's backend and loads the key groups this subtask owns from
    /// `restore` (written by either backend, at any parallelism).
    pub(crate) fn open(settings: &StateSettings, restore: Option<&OperatorRestoreData>) -> Result<KvStore, String> {
        match settings.backend {
            StateBackendKind::RocksDb => Ok(KvStore::Rocks(Box::new(RocksStore::open(settings, restore)?))),
            StateBackendKind::HashMap => {
                let mut heap = HeapKv::new(settings);
                if let Some(r) = restore {
                    for_each_restored(r, settings.key_groups, |kg, k, v| heap.put(kg, k, v))?;
                }
                Ok(KvStore::Heap(heap))
            }
        }
    }

    pub(crate) fn key_groups(&self) -> KeyGroupRange {
        match self {
            KvStore::Heap(h) => h.settings.key_groups,
            KvStore::Rocks(r) => r.range(),
        }
    }

    pub(crate) fn get(&self, kg: u32, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        match self {
            KvStore::Heap(h) => Ok(h.group(kg)?.get(key).cloned()),
            KvStore::Rocks(r) => r.get(kg, key),
        }
    }

    pub(crate) fn put(&mut self, kg: u32, key: &[u8], value: &[u8]) -> Result<(), String> {
        match self {
            KvStore::Heap(h) => h.put(kg, key, value),
            KvStore::Rocks(r) => r.put(kg, key, value),
        }
    }

    pub(crate) fn delete(&mut self, kg: u32, key: &[u8]) -> Result<(), String> {
        match self {
            KvStore::Heap(h) => h.delete(kg, key),
            KvStore::Rocks(r) => r.delete(kg, key),
        }
    }

    /// Every (key, value) of key group `kg` whose key starts with `prefix`, in key order.
    pub(crate) fn scan(
        &self,
        kg: u32,
        prefix: &[u8],
        mut f: impl FnMut(&[u8], &[u8]) -> Result<(), String>,
    ) -> Result<(), String> {
        match self {
            KvStore::Heap(h) => {
                for (k, v) in h.group(kg)?.range(prefix.to_vec()..) {
                    if !k.starts_with(prefix) {
                        break;
                    }
                    f(k, v)?;
                }
                Ok(())
            }
            KvStore::Rocks(r) => r.scan(kg, prefix, f),
        }
    }

    /// Bytes the heap backend holds (0 for RocksDB, whose memory is managed memory).
    #[cfg(test)]
    pub(crate) fn heap_bytes(&self) -> u64 {
        match self {
            KvStore::Heap(h) => h.bytes,
            KvStore::Rocks(_) => 0,
        }
    }

    /// The synchronous part of a checkpoint: per-key-group blocks, or for RocksDB with
    /// incremental checkpoints (not savepoints, which are self-contained) a native checkpoint.
    pub(crate) fn snapshot(&mut self, checkpoint_id: u64, kind: SnapshotKind) -> Result<KeyedSnapshot, String> {
        match self {
            KvStore::Heap(h) => {
                let range = h.settings.key_groups;
                let mut w = BlocksWriter::new(range);
                for (kg, group) in range.iter().zip(&h.groups) {
                    for (k, v) in group {
                        w.entry(kg, k, v)?;
                    }
                }
                let (data, offsets) = w.finish();
                Ok(KeyedSnapshot::Full { range, data, offsets })
            }
            KvStore::Rocks(r) => r.snapshot(checkpoint_id, kind),
        }
    }

    /// Checkpoint `id` completed (RocksDB stops uploading its SST files again).
    pub(crate) fn confirm(&mut self, id: u64) {
        if let KvStore::Rocks(r) = self {
            r.confirm(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::test_settings as settings;

    #[test]
    fn heap_budget_fails_with_the_keys_to_change() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(StateBackendKind::HashMap, dir.path(), (0, 3));
        s.heap_budget = 1000;
        let mut kv = KvStore::open(&s, None).unwrap();
        kv.put(0, b"a", &[0; 100]).unwrap();
        let err = kv.put(1, b"b", &[0; 1000]).unwrap_err();
        assert!(err.contains("taskmanager.memory.task.heap.size"), "{err}");
        // Replacing an entry with a smaller one is always allowed.
        kv.put(0, b"a", &[0; 10]).unwrap();
        assert_eq!(kv.heap_bytes(), 1 + 10 + ENTRY_OVERHEAD);
        assert!(kv.put(9, b"x", b"y").unwrap_err().contains("not owned"));
    }
}
