//! The RocksDB backend's store: one instance per subtask in a fresh working directory under
//! `io.tmp.dirs`, keys prefixed by the key group (2 bytes, big-endian) so a key-group range is
//! a contiguous key range. Block cache and write-buffer manager come out of the slot's managed
//! memory (Flink's split: write buffers get `write-buffer-ratio` of it). Snapshots are full
//! (per-key-group blocks, backend-independent) or incremental (a RocksDB checkpoint whose SST
//! files not uploaded before go to `shared/`). Writes skip the write-ahead log, as Flink's
//! backend does: an instance never outlives its process, and a snapshot flushes the memtables
//! before it links the SST files, so the log would never be read.

use std::collections::HashSet;
use std::path::PathBuf;

use rocksdb::{
    BlockBasedOptions, Cache, Direction, IteratorMode, Options, WriteBatch, WriteBufferManager, WriteOptions, DB,
};
use sluice_common::state::key_group_blocks::BlocksWriter;
use sluice_common::state::KeyGroupRange;

use super::snapshot::{KeyedSnapshot, OperatorRestoreData};
use super::StateSettings;

pub(crate) struct RocksStore {
    db: Option<DB>,
    dir: PathBuf,
    range: KeyGroupRange,
    /// `execution.checkpointing.incremental`: checkpoints (not savepoints) are native ones.
    incremental: bool,
    /// Names this instance's SST files get under shared/.
    instance: String,
    /// SST files (shared names) of completed checkpoints, not uploaded again.
    confirmed: HashSet<String>,
    /// SST files uploaded for pending checkpoints, by checkpoint id.
    pending: Vec<(u64, Vec<String>)>,
    _cache: Cache,
    _wbm: WriteBufferManager,
}

fn rocks_err(e: rocksdb::Error) -> String {
    format!("RocksDB: {e}")
}

pub(crate) fn prefixed(kg: u32, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + key.len());
    k.extend_from_slice(&(kg as u16).to_be_bytes());
    k.extend_from_slice(key);
    k
}

/// Options of every write: no write-ahead log (the module's doc says why).
fn no_wal() -> WriteOptions {
    let mut w = WriteOptions::default();
    w.disable_wal(true);
    w
}

fn kg_of(key: &[u8]) -> Result<u32, String> {
    key.get(..2)
        .map(|b| u32::from(u16::from_be_bytes([b[0], b[1]])))
        .ok_or_else(|| "RocksDB key without a key-group prefix".to_string())
}

fn options(settings: &StateSettings) -> (Options, Cache, WriteBufferManager) {
    let total = settings.managed_budget.max(8 << 20) as f64;
    let wb = (total * settings.write_buffer_ratio) as usize;
    let cache_size = ((3.0 - settings.write_buffer_ratio) * total / 3.0) as usize;
    let cache = Cache::new_lru_cache(cache_size);
    let wbm = WriteBufferManager::new_write_buffer_manager_with_cache(wb, false, cache.clone());
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(&cache);
    table.set_cache_index_and_filter_blocks(true);
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.set_block_based_table_factory(&table);
    opts.set_write_buffer_manager(&wbm);
    opts.set_max_background_jobs(2);
    opts.set_compaction_filter("sluice-state-ttl", drop_expired_in_compaction);
    (opts, cache, wbm)
}

/// The TTL compaction filter (Flink's `cleanupInRocksdbCompactFilter`): a typed keyed-state
/// entry (state id `USER`, whose value starts with the processing time it expires at) that
/// expired is dropped when compaction meets it; everything else is kept.
fn drop_expired_in_compaction(_level: u32, key: &[u8], value: &[u8]) -> rocksdb::compaction_filter::Decision {
    use rocksdb::compaction_filter::Decision;
    if key.get(2) != Some(&super::state_ids::USER) {
        return Decision::Keep;
    }
    let expires = value.get(..8).and_then(|b| b.try_into().ok()).map(i64::from_be_bytes);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    match expires {
        Some(t) if t <= now => Decision::Remove,
        _ => Decision::Keep,
    }
}

impl RocksStore {
    /// Opens a fresh instance and loads `restore` into it (only the key groups it owns).
    pub(crate) fn open(settings: &StateSettings, restore: Option<&OperatorRestoreData>) -> Result<RocksStore, String> {
        let instance = uuid::Uuid::new_v4().simple().to_string();
        let dir = settings.tmp_dir.join(format!("sluice-rocksdb-{instance}"));
        std::fs::create_dir_all(&dir).map_err(|e| format!("RocksDB working directory {}: {e}", dir.display()))?;
        let (opts, cache, wbm) = options(settings);
        let db = DB::open(&opts, dir.join("db")).map_err(rocks_err)?;
        let mut store = RocksStore {
            db: Some(db),
            dir,
            range: settings.key_groups,
            incremental: settings.incremental,
            instance,
            confirmed: HashSet::new(),
            pending: Vec::new(),
            _cache: cache,
            _wbm: wbm,
        };
        if let Some(r) = restore {
            store.restore(settings, r)?;
        }
        Ok(store)
    }

    fn db(&self) -> Result<&DB, String> {
        self.db.as_ref().ok_or_else(|| "RocksDB instance is closed".to_string())
    }

    fn restore(&mut self, settings: &StateSettings, r: &OperatorRestoreData) -> Result<(), String> {
        let db = self.db()?;
        let mut batch = WriteBatch::default();
        super::for_each_restored(settings, r, self.range, |kg, k, v| {
            batch.put(prefixed(kg, k), v);
            if batch.len() >= 10_000 {
                db.write_opt(std::mem::take(&mut batch), &no_wal()).map_err(rocks_err)?;
            }
            Ok(())
        })?;
        db.write_opt(batch, &no_wal()).map_err(rocks_err)
    }

    pub(crate) fn get(&self, kg: u32, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        self.db()?.get(prefixed(kg, key)).map_err(rocks_err)
    }

    pub(crate) fn put(&self, kg: u32, key: &[u8], value: &[u8]) -> Result<(), String> {
        self.db()?
            .put_opt(prefixed(kg, key), value, &no_wal())
            .map_err(rocks_err)
    }

    pub(crate) fn delete(&self, kg: u32, key: &[u8]) -> Result<(), String> {
        self.db()?.delete_opt(prefixed(kg, key), &no_wal()).map_err(rocks_err)
    }

    pub(crate) fn multi_get(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, String> {
        self.db()?
            .multi_get(keys)
            .into_iter()
            .map(|r| r.map_err(rocks_err))
            .collect()
    }

    pub(crate) fn write(&self, batch: WriteBatch) -> Result<(), String> {
        self.db()?.write_opt(batch, &no_wal()).map_err(rocks_err)
    }

    /// Every (key without the key-group prefix, value) under `prefix` in key group `kg`.
    pub(crate) fn scan(
        &self,
        kg: u32,
        prefix: &[u8],
        mut f: impl FnMut(&[u8], &[u8]) -> Result<(), String>,
    ) -> Result<(), String> {
        let start = prefixed(kg, prefix);
        for item in self.db()?.iterator(IteratorMode::From(&start, Direction::Forward)) {
            let (k, v) = item.map_err(rocks_err)?;
            if !k.starts_with(&start) {
                break;
            }
            f(&k[2..], &v)?;
        }
        Ok(())
    }

    pub(crate) fn range(&self) -> KeyGroupRange {
        self.range
    }

    /// A full snapshot: every entry of the owned key groups as per-key-group blocks.
    pub(crate) fn snapshot_full(&self) -> Result<KeyedSnapshot, String> {
        let mut w = BlocksWriter::new(self.range);
        for item in self.db()?.iterator(IteratorMode::Start) {
            let (k, v) = item.map_err(rocks_err)?;
            w.entry(kg_of(&k)?, &k[2..], &v)?;
        }
        let (data, offsets) = w.finish();
        Ok(KeyedSnapshot::Full {
            range: self.range,
            data,
            offsets,
        })
    }

    /// The synchronous part of a checkpoint: incremental when so configured, full for
    /// savepoints (self-contained) and otherwise.
    pub(crate) fn snapshot(&mut self, checkpoint_id: u64, savepoint: bool) -> Result<KeyedSnapshot, String> {
        if self.incremental && !savepoint {
            self.snapshot_incremental(checkpoint_id)
        } else {
            self.snapshot_full()
        }
    }

    /// An incremental snapshot: a RocksDB checkpoint (hard links) of the instance; its SST
    /// files that a completed checkpoint already uploaded are referenced, not uploaded.
    fn snapshot_incremental(&mut self, checkpoint_id: u64) -> Result<KeyedSnapshot, String> {
        let dir = self.dir.join(format!("chk-{checkpoint_id}"));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        rocksdb::checkpoint::Checkpoint::new(self.db()?)
            .and_then(|c| c.create_checkpoint(&dir))
            .map_err(rocks_err)?;
        let mut ssts = Vec::new();
        let mut private = Vec::new();
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        let mut new = Vec::new();
        for name in names {
            if name.ends_with(".sst") {
                let shared = format!("{}-{name}", self.instance);
                let known = self.confirmed.contains(&shared);
                if !known {
                    new.push(shared.clone());
                }
                ssts.push((name, shared, known));
            } else {
                private.push(name);
            }
        }
        self.pending.push((checkpoint_id, new));
        Ok(KeyedSnapshot::RocksIncremental {
            range: self.range,
            dir,
            ssts,
            private,
        })
    }

    /// Checkpoint `id` completed: its SST files count as uploaded from now on.
    pub(crate) fn confirm(&mut self, id: u64) {
        let (done, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|(c, _)| *c <= id);
        self.pending = rest;
        for (c, files) in done {
            if c == id {
                self.confirmed.extend(files);
            }
        }
        // Checkpoint directories of older checkpoints are no longer needed locally.
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if let Some(n) = name.strip_prefix("chk-").and_then(|n| n.parse::<u64>().ok()) {
                    if n <= id {
                        let _ = std::fs::remove_dir_all(e.path());
                    }
                }
            }
        }
    }
}

impl Drop for RocksStore {
    fn drop(&mut self) {
        self.db.take();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Calls `f(kg, key, value)` for every entry of the key groups of `want` in a downloaded
/// incremental snapshot (a RocksDB directory), then deletes the directory. Either backend
/// restores incremental snapshots through this.
pub(crate) fn read_rocks_dir(
    settings: &StateSettings,
    dir: &std::path::Path,
    want: KeyGroupRange,
    mut f: impl FnMut(u32, &[u8], &[u8]) -> Result<(), String>,
) -> Result<(), String> {
    let (opts, _c, _w) = options(settings);
    let other = DB::open(&opts, dir).map_err(rocks_err)?;
    let start = prefixed(want.start, &[]);
    for item in other.iterator(IteratorMode::From(&start, Direction::Forward)) {
        let (k, v) = item.map_err(rocks_err)?;
        let kg = kg_of(&k)?;
        if kg > want.end {
            break;
        }
        f(kg, &k[2..], &v)?;
    }
    drop(other);
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}
