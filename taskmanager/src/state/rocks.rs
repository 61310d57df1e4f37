//! The RocksDB backend's store: one instance per subtask in a fresh working directory under
//! `io.tmp.dirs`, keys prefixed by the key group (2 bytes, big-endian) so a key-group range is
//! a contiguous key range. Block cache and write-buffer manager come out of the slot's managed
//! memory (Flink's split: write buffers get `write-buffer-ratio` of it). Snapshots are full
//! (per-key-group blocks, backend-independent) or incremental (a RocksDB checkpoint whose SST
//! files not uploaded before go to `shared/`). Writes skip the write-ahead log, as Flink's
//! backend does: an instance never outlives its process, and a snapshot flushes the memtables
//! before it links the SST files, so the log would never be read.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use rocksdb::{
    BlockBasedOptions, Cache, Direction, IngestExternalFileOptions, IteratorMode, Options, SstFileWriter, WriteBatch,
    WriteBufferManager, WriteOptions, DB,
};
use sluice_common::state::key_group_blocks::BlocksWriter;
use sluice_common::state::KeyGroupRange;

use super::local_copy::LocalCopies;
use super::snapshot::{KeyedSnapshot, OperatorRestoreData, RestoredRocksDir};
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
    /// Pending checkpoints: (id, SST files it uploads, every SST file it holds).
    pending: Vec<(u64, Vec<String>, Vec<String>)>,
    /// SST files this instance was opened on (a restored snapshot's): file name → shared name.
    restored: HashMap<String, String>,
    /// Local recovery: where checkpointed SST files are also kept.
    local: Option<LocalCopies>,
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
    /// Opens an instance on `restore`: the restored RocksDB snapshot that overlaps this
    /// subtask's key groups most becomes the instance itself (its files are opened in place,
    /// clipped to the owned key groups with range deletes), and the owned key groups of the
    /// others are written into SST files and ingested; full snapshots are written in batches.
    /// No restored snapshot: a fresh, empty instance.
    pub(crate) fn open(settings: &StateSettings, restore: Option<&OperatorRestoreData>) -> Result<RocksStore, String> {
        let instance = uuid::Uuid::new_v4().simple().to_string();
        let dir = settings.tmp_dir.join(format!("sluice-rocksdb-{instance}"));
        std::fs::create_dir_all(&dir).map_err(|e| format!("RocksDB working directory {}: {e}", dir.display()))?;
        let range = settings.key_groups;
        let base = restore.and_then(|r| base_of(&r.rocks_dirs, range));
        let mut restored = HashMap::new();
        if let Some(b) = base {
            std::fs::rename(&b.dir, dir.join("db"))
                .map_err(|e| format!("opening the restored RocksDB files of {}: {e}", b.dir.display()))?;
            restored.extend(b.shared.iter().cloned());
        }
        let (opts, cache, wbm) = options(settings);
        let db = DB::open(&opts, dir.join("db")).map_err(rocks_err)?;
        let mut store = RocksStore {
            db: Some(db),
            dir,
            range,
            incremental: settings.incremental,
            instance,
            confirmed: restored.values().cloned().collect(),
            pending: Vec::new(),
            restored,
            local: settings.local_backup.clone(),
            _cache: cache,
            _wbm: wbm,
        };
        if base.is_some() {
            store.clip(settings.delete_files_in_range)?;
        }
        if let Some(r) = restore {
            store.restore(settings, r, base.map(|b| b.dir.as_path()))?;
        }
        Ok(store)
    }

    fn db(&self) -> Result<&DB, String> {
        self.db.as_ref().ok_or_else(|| "RocksDB instance is closed".to_string())
    }

    /// Drops every key group outside the owned range (range deletes; with
    /// `use-delete-files-in-range`, whole SST files outside it first).
    fn clip(&self, delete_files: bool) -> Result<(), String> {
        let db = self.db()?;
        let outside = [
            (prefixed(0, &[]), prefixed(self.range.start, &[])),
            (
                prefixed(self.range.end + 1, &[]),
                prefixed(u32::from(u16::MAX), &[0xFF]),
            ),
        ];
        let mut batch = WriteBatch::default();
        for (from, to) in outside.iter().filter(|(f, t)| f < t) {
            if delete_files {
                db.delete_file_in_range(from, to).map_err(rocks_err)?;
            }
            batch.delete_range(from, to);
        }
        db.write_opt(batch, &no_wal()).map_err(rocks_err)
    }

    /// Loads what the base instance does not hold: full snapshots in write batches, the owned
    /// key groups of the other RocksDB snapshots as ingested SST files.
    fn restore(
        &mut self,
        settings: &StateSettings,
        r: &OperatorRestoreData,
        base: Option<&std::path::Path>,
    ) -> Result<(), String> {
        let db = self.db()?;
        let mut batch = WriteBatch::default();
        super::for_each_full(r, self.range, |kg, k, v| {
            batch.put(prefixed(kg, k), v);
            if batch.len() >= 10_000 {
                db.write_opt(std::mem::take(&mut batch), &no_wal()).map_err(rocks_err)?;
            }
            Ok(())
        })?;
        db.write_opt(batch, &no_wal()).map_err(rocks_err)?;
        for (i, d) in r.rocks_dirs.iter().enumerate() {
            if Some(d.dir.as_path()) == base {
                continue;
            }
            let sst = self.dir.join(format!("ingest-{i}.sst"));
            // The writer holds no cache: plain options, not another share of managed memory.
            let plain = Options::default();
            let mut writer = SstFileWriter::create(&plain);
            writer.open(&sst).map_err(rocks_err)?;
            let mut any = false;
            read_rocks_dir(settings, &d.dir, self.range, |kg, k, v| {
                any = true;
                writer.put(prefixed(kg, k), v).map_err(rocks_err)
            })?;
            if any {
                writer.finish().map_err(rocks_err)?;
                let mut ingest = IngestExternalFileOptions::default();
                ingest.set_move_files(true);
                db.ingest_external_file_opts(&ingest, vec![&sst]).map_err(rocks_err)?;
            }
            let _ = std::fs::remove_file(&sst);
        }
        Ok(())
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
        let mut all = Vec::new();
        for name in names {
            if name.ends_with(".sst") {
                let shared = match self.restored.get(&name) {
                    Some(s) => s.clone(),
                    None => format!("{}-{name}", self.instance),
                };
                let known = self.confirmed.contains(&shared);
                if !known {
                    new.push(shared.clone());
                }
                all.push(shared.clone());
                ssts.push((name, shared, known));
            } else {
                private.push(name);
            }
        }
        self.pending.push((checkpoint_id, new, all));
        Ok(KeyedSnapshot::RocksIncremental {
            range: self.range,
            dir,
            ssts,
            private,
            local: self.local.clone(),
        })
    }

    /// Checkpoint `id` completed: its SST files count as uploaded from now on, and local
    /// copies of this instance's files that neither it nor a pending one holds go.
    pub(crate) fn confirm(&mut self, id: u64) {
        let (done, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|(c, _, _)| *c <= id);
        self.pending = rest;
        let mut live: HashSet<String> = self
            .pending
            .iter()
            .flat_map(|(_, _, all)| all.iter().cloned())
            .collect();
        for (c, files, all) in done {
            if c == id {
                self.confirmed.extend(files);
                if let Some(copies) = &self.local {
                    live.extend(all);
                    let mine = format!("{}-", self.instance);
                    let restored: HashSet<&str> = self.restored.values().map(String::as_str).collect();
                    copies.forget_except(|n| n.starts_with(&mine) || restored.contains(n), &live);
                }
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

/// The restored RocksDB snapshot an instance for `range` opens in place: the one sharing the
/// most key groups with it (Flink's rule for its base instance), if any does.
fn base_of(dirs: &[RestoredRocksDir], range: KeyGroupRange) -> Option<&RestoredRocksDir> {
    let shared = |d: &RestoredRocksDir| d.range.intersect(&range).map_or(0, |r| r.len());
    dirs.iter().filter(|d| shared(d) > 0).max_by_key(|d| shared(d))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::test_settings;
    use sluice_common::config::options::StateBackendKind;

    fn settings(dir: &std::path::Path, range: (u32, u32)) -> StateSettings {
        let mut s = test_settings(StateBackendKind::RocksDb, dir, range);
        s.incremental = true;
        s
    }

    /// An old subtask of `range` with key `k<kg>` in every key group, checkpointed
    /// incrementally and "downloaded": its checkpoint's files copied into a directory under
    /// their own names, with their shared names.
    fn old_subtask(dir: &std::path::Path, range: (u32, u32)) -> RestoredRocksDir {
        let mut store = RocksStore::open(&settings(dir, range), None).unwrap();
        for kg in range.0..=range.1 {
            store.put(kg, format!("k{kg}").as_bytes(), b"v").unwrap();
        }
        let KeyedSnapshot::RocksIncremental {
            dir: chk,
            ssts,
            private,
            ..
        } = store.snapshot(1, false).unwrap()
        else {
            panic!("not incremental");
        };
        let to = dir.join(format!("restore-{}-{}", range.0, range.1));
        std::fs::create_dir_all(&to).unwrap();
        for name in ssts.iter().map(|(l, _, _)| l).chain(&private) {
            std::fs::copy(chk.join(name), to.join(name)).unwrap();
        }
        let shared = ssts.into_iter().map(|(l, s, _)| (l, s)).collect();
        RestoredRocksDir {
            dir: to,
            range: KeyGroupRange::new(range.0, range.1),
            shared,
        }
    }

    fn keys(store: &RocksStore) -> Vec<u32> {
        let mut out = Vec::new();
        for item in store.db().unwrap().iterator(IteratorMode::Start) {
            let (k, _) = item.unwrap();
            out.push(kg_of(&k).unwrap());
        }
        out
    }

    #[test]
    fn a_rescaled_instance_opens_the_old_files_clips_them_and_ingests_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let restore = OperatorRestoreData {
            rocks_dirs: vec![old_subtask(dir.path(), (0, 63)), old_subtask(dir.path(), (64, 127))],
            ..Default::default()
        };
        let old_names: HashSet<String> = restore.rocks_dirs[1].shared.iter().map(|(_, s)| s.clone()).collect();
        // New subtask [40, 100]: the second old one overlaps most and is opened in place.
        let mut s = settings(dir.path(), (40, 100));
        s.delete_files_in_range = true;
        let mut store = RocksStore::open(&s, Some(&restore)).unwrap();
        assert_eq!(keys(&store), (40..=100).collect::<Vec<_>>());
        assert_eq!(store.get(70, b"k70").unwrap().as_deref(), Some(&b"v"[..]));
        assert_eq!(store.get(41, b"k41").unwrap().as_deref(), Some(&b"v"[..]));
        assert_eq!(store.get(110, b"k110").unwrap(), None);
        // Its next checkpoint refers to the opened files by their old names, not uploading them.
        let KeyedSnapshot::RocksIncremental { ssts, .. } = store.snapshot(2, false).unwrap() else {
            panic!("not incremental");
        };
        let reused: Vec<_> = ssts.iter().filter(|(_, s, _)| old_names.contains(s)).collect();
        assert!(!reused.is_empty(), "{ssts:?}");
        assert!(reused.iter().all(|(_, _, uploaded)| *uploaded), "{ssts:?}");
        assert!(
            ssts.iter().any(|(_, s, uploaded)| !old_names.contains(s) && !uploaded),
            "{ssts:?}"
        );
        // The old directories were taken (the base) or removed (read and ingested).
        assert!(restore.rocks_dirs.iter().all(|d| !d.dir.exists()));
    }

    #[test]
    fn local_backup_keeps_the_newest_checkpoints_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let copies = LocalCopies::new(&dir.path().join("local"), "job");
        let mut s = settings(dir.path(), (0, 7));
        s.local_backup = Some(copies.clone());
        let mut store = RocksStore::open(&s, None).unwrap();
        let mut files = Vec::new();
        for id in 1..=3u64 {
            store.put(id as u32, b"k", b"v").unwrap();
            if id == 3 {
                // The files of checkpoints 1 and 2 are compacted away: their copies must go.
                store.db().unwrap().flush().unwrap();
                store.db().unwrap().compact_range(None::<&[u8]>, None::<&[u8]>);
            }
            let KeyedSnapshot::RocksIncremental { dir: chk, ssts, .. } = store.snapshot(id, false).unwrap() else {
                panic!("not incremental");
            };
            for (l, sh, _) in &ssts {
                copies.keep(sh, &chk.join(l)).unwrap();
            }
            files = ssts.into_iter().map(|(_, sh, _)| sh).collect::<Vec<_>>();
            store.confirm(id);
        }
        let mut kept: Vec<String> = std::fs::read_dir(dir.path().join("local/job"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        kept.sort();
        files.sort();
        assert_eq!(files.len(), 1, "{files:?}");
        assert_eq!(kept, files);
    }
}
