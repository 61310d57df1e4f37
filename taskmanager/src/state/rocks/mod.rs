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
use std::sync::Arc;

use rocksdb::{
    BlockBasedOptions, Cache, Direction, IngestExternalFileOptions, IteratorMode, Options, ReadOptions, SstFileWriter,
    WriteBatch, WriteBufferManager, WriteOptions, DB,
};
use sluice_common::state::KeyGroupRange;

use super::local_copy::LocalCopies;
use super::snapshot::{OperatorRestoreData, RestoredRocksDir};
use super::StateSettings;

pub(crate) struct RocksStore {
    db: Option<Arc<DB>>,
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
    /// Whether automatic compactions are held, and why (`hold_compactions`); shared with the
    /// timer that resumes a restore's hold.
    compactions_held: Arc<std::sync::Mutex<Held>>,
    _cache: Cache,
    _wbm: WriteBufferManager,
}

/// Why automatic compactions are held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    No,
    /// Since a restore opened the instance.
    Restore,
    /// For a rescale's stop.
    Stop,
}

/// The longest a restored instance holds its compactions without a periodic checkpoint.
const RESTORE_HOLD: std::time::Duration = std::time::Duration::from_secs(10);

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

/// RocksDB's own partitioner cutting compaction output files where the first two bytes of the
/// key (the key group) change.
const FILE_PER_KEY_GROUP: &str = "sst_partitioner_factory={id=SstPartitionerFixedPrefixFactory;length=2}";

fn options(settings: &StateSettings) -> Result<(Options, Cache, WriteBufferManager), String> {
    let mut opts = Options::default();
    if settings.sst_per_key_group {
        // Files below level 0 then hold one key group each: a rescale fetches only the files of
        // the key groups it takes and drops whole files of the others.
        opts = opts.get_options_from_string(FILE_PER_KEY_GROUP).map_err(rocks_err)?;
    }
    let total = settings.managed_budget.max(8 << 20) as f64;
    let wb = (total * settings.write_buffer_ratio) as usize;
    let cache_size = ((3.0 - settings.write_buffer_ratio) * total / 3.0) as usize;
    let cache = Cache::new_lru_cache(cache_size);
    let wbm = WriteBufferManager::new_write_buffer_manager_with_cache(wb, false, cache.clone());
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(&cache);
    table.set_cache_index_and_filter_blocks(true);
    opts.create_if_missing(true);
    opts.set_block_based_table_factory(&table);
    opts.set_write_buffer_manager(&wbm);
    opts.set_max_background_jobs(2);
    opts.set_compaction_filter("sluice-state-ttl", drop_expired_in_compaction);
    Ok((opts, cache, wbm))
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
    let now = sluice_common::wall_ms::wall_ms();
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
        let started = std::time::Instant::now();
        let instance = uuid::Uuid::new_v4().simple().to_string();
        let dir = settings.tmp_dir.join(format!("sluice-rocksdb-{instance}"));
        std::fs::create_dir_all(&dir).map_err(|e| format!("RocksDB working directory {}: {e}", dir.display()))?;
        let range = settings.key_groups;
        let mut base = restore.and_then(|r| base_of(&r.rocks_dirs, range));
        if let Some(b) = base.filter(|b| b.partial) {
            // What it holds outside its own key groups is covered by an earlier clip's range
            // deletes: files there may go too.
            let read = b.range.intersect(&range).unwrap_or(range);
            if !drop_unfetched_files(&b.dir, read)? {
                tracing::warn!(
                    "The restored RocksDB files of key groups {}-{} still name files outside key groups {}-{} that were not fetched; the instance is rebuilt from their rows instead.",
                    b.range.start,
                    b.range.end,
                    range.start,
                    range.end
                );
                base = None;
            }
        }
        let mut restored = HashMap::new();
        if let Some(b) = base {
            std::fs::rename(&b.dir, dir.join("db"))
                .map_err(|e| format!("opening the restored RocksDB files of {}: {e}", b.dir.display()))?;
            restored.extend(b.shared.iter().cloned());
        }
        let (mut opts, cache, wbm) = options(settings)?;
        // A restored instance with incremental checkpoints opens with compactions held (its
        // restored level 0 would start one at once): the restores still running in the pause
        // on this and the other taskmanagers get the CPU and disks, and the first checkpoint
        // after uploads no rewritten files. Its first periodic checkpoint resumes them, or
        // the timer `RESTORE_HOLD` after the open (no periodic checkpoint comes).
        let held = if restore.is_some() && settings.incremental {
            opts.set_disable_auto_compactions(true);
            Held::Restore
        } else {
            Held::No
        };
        let db = DB::open(&opts, dir.join("db")).map_err(rocks_err)?;
        let mut store = RocksStore {
            db: Some(Arc::new(db)),
            dir,
            range,
            incremental: settings.incremental,
            instance,
            confirmed: restored.values().cloned().collect(),
            pending: Vec::new(),
            restored,
            local: settings.local_backup.clone(),
            compactions_held: Arc::new(std::sync::Mutex::new(held)),
            _cache: cache,
            _wbm: wbm,
        };
        if base.is_some() {
            store.clip(settings.delete_files_in_range)?;
        }
        if held == Held::Restore {
            store.resume_compactions_after(RESTORE_HOLD);
        }
        if let Some(r) = restore {
            let opened = started.elapsed();
            store.restore(r, base.map(|b| b.dir.as_path()))?;
            tracing::info!(
                "RocksDB restore of key groups {}-{} for {}: base {} opened and clipped in {} ms, the rest written and ingested in {} ms.",
                range.start,
                range.end,
                settings.task_name,
                base.map_or("none".to_string(), |b| format!("{}-{}", b.range.start, b.range.end)),
                opened.as_millis(),
                (started.elapsed() - opened).as_millis()
            );
        }
        Ok(store)
    }

    fn db(&self) -> Result<&DB, String> {
        self.db
            .as_deref()
            .ok_or_else(|| "RocksDB instance is closed".to_string())
    }

    /// Drops every key group outside the owned range (range deletes; with
    /// `use-delete-files-in-range`, whole SST files outside it first).
    fn clip(&self, delete_files: bool) -> Result<(), String> {
        let db = self.db()?;
        let mut batch = WriteBatch::default();
        for (from, to) in outside(self.range) {
            if delete_files {
                db.delete_file_in_range(&from, &to).map_err(rocks_err)?;
            }
            batch.delete_range(&from, &to);
        }
        db.write_opt(batch, &no_wal()).map_err(rocks_err)
    }

    /// Loads what the base instance does not hold: full snapshots in write batches, the owned
    /// key groups of the other RocksDB snapshots as ingested SST files.
    fn restore(&mut self, r: &OperatorRestoreData, base: Option<&std::path::Path>) -> Result<(), String> {
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
            let started = std::time::Instant::now();
            let ssts = write_sst_slices(d, self.range, &self.dir.join(format!("ingest-{i}")))?;
            let written = started.elapsed();
            if !ssts.is_empty() {
                let mut ingest = IngestExternalFileOptions::default();
                ingest.set_move_files(true);
                db.ingest_external_file_opts(&ingest, ssts.iter().map(|(f, _)| f).collect())
                    .map_err(rocks_err)?;
            }
            let taken = d.range.intersect(&self.range).unwrap_or(d.range);
            tracing::info!(
                "RocksDB restore: key groups {}-{} of the snapshot of {}-{}: {} bytes written into {} SST files in {} ms, ingested in {} ms.",
                taken.start,
                taken.end,
                d.range.start,
                d.range.end,
                ssts.iter().map(|(_, size)| size).sum::<u64>(),
                ssts.len(),
                written.as_millis(),
                (started.elapsed() - written).as_millis()
            );
            for (sst, _) in &ssts {
                let _ = std::fs::remove_file(sst);
            }
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
}

impl Drop for RocksStore {
    fn drop(&mut self) {
        self.db.take();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The keys outside `range`: [from, to) before it and after it, where not empty.
fn outside(range: KeyGroupRange) -> impl Iterator<Item = (Vec<u8>, Vec<u8>)> {
    let last = prefixed(u32::from(u16::MAX), &[0xFF]);
    [
        (prefixed(0, &[]), prefixed(range.start, &[])),
        (prefixed(range.end + 1, &[]), last),
    ]
    .into_iter()
    .filter(|(f, t)| f < t)
}

/// A base snapshot fetched in part (`transfer::needed_files`): its unfetched files lie wholly
/// outside `range` (the key groups read of it), so whole-file deletes over the keys outside
/// it drop them from the instance before it opens as usual. Opened without the check that
/// every file is there and without compactions (none may pick an absent file). Returns
/// whether every file it still names is there: RocksDB keeps a file whose boundary key a
/// neighbour shares, and such an instance cannot open (it is then read between bounds, which
/// never opens the absent files).
fn drop_unfetched_files(db_dir: &std::path::Path, range: KeyGroupRange) -> Result<bool, String> {
    let mut opts = Options::default();
    opts.set_paranoid_checks(false);
    opts.set_disable_auto_compactions(true);
    let db = DB::open(&opts, db_dir)
        .map_err(|e| format!("opening the restored RocksDB files of {}: {e}", db_dir.display()))?;
    for (from, to) in outside(range) {
        db.delete_file_in_range(&from, &to).map_err(rocks_err)?;
    }
    let files = db.live_files().map_err(rocks_err)?;
    Ok(files.iter().all(|f| db_dir.join(live_file_name(f)).exists()))
}

/// A live file's name in its directory (RocksDB reports it as `/000012.sst`).
fn live_file_name(f: &rocksdb::LiveFile) -> &str {
    f.name.trim_start_matches('/')
}

/// The restored RocksDB snapshot an instance for `range` opens in place: the one sharing the
/// most key groups with it (Flink's rule for its base instance), if any does.
fn base_of(dirs: &[RestoredRocksDir], range: KeyGroupRange) -> Option<&RestoredRocksDir> {
    let shared = |d: &RestoredRocksDir| d.range.intersect(&range).map_or(0, |r| r.len());
    dirs.iter().filter(|d| shared(d) > 0).max_by_key(|d| shared(d))
}

/// Calls `f(kg, key, value)` for every entry of the key groups of `want` that the downloaded
/// incremental snapshot (a RocksDB directory) owns, then deletes the directory (`with_restored`).
/// Either backend restores incremental snapshots through this.
pub(crate) fn read_rocks_dir(
    d: &RestoredRocksDir,
    want: KeyGroupRange,
    f: impl FnMut(u32, &[u8], &[u8]) -> Result<(), String>,
) -> Result<(), String> {
    with_restored(d, want, |db, want| scan_between(db, want, f))
}

/// Runs `read` on the downloaded snapshot `d` opened read-only, with the key groups of `want`
/// it owns (none: `read` does not run), then deletes the directory: what it holds outside its
/// own key groups is an earlier clip's leftover, possibly in files not fetched.
fn with_restored<T: Default>(
    d: &RestoredRocksDir,
    want: KeyGroupRange,
    read: impl FnOnce(&DB, KeyGroupRange) -> Result<T, String>,
) -> Result<T, String> {
    let result = match d.range.intersect(&want) {
        None => Ok(T::default()),
        Some(want) => {
            let db = open_restored(d)?;
            let result = read(&db, want);
            drop(db);
            result
        }
    };
    let _ = std::fs::remove_dir_all(&d.dir);
    result
}

/// The entries of the key groups of `want` that the downloaded snapshot `d` owns, written into
/// SST files named `<into>-<n>.sst`, one per slice of those key groups, the slices read and
/// written side by side (one per core, at most four); returns the files that hold entries,
/// in key order, with their sizes, and deletes the directory (`with_restored`).
fn write_sst_slices(
    d: &RestoredRocksDir,
    want: KeyGroupRange,
    into: &std::path::Path,
) -> Result<Vec<(PathBuf, u64)>, String> {
    with_restored(d, want, |other, want| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let slices = key_group_slices(want, cores.min(4));
        let written: Vec<Result<Option<(PathBuf, u64)>, String>> = std::thread::scope(|scope| {
            let handles: Vec<_> = slices
                .iter()
                .enumerate()
                .map(|(n, &slice)| {
                    let sst = into.with_file_name(format!(
                        "{}-{n}.sst",
                        into.file_name().map(|f| f.to_string_lossy()).unwrap_or_default()
                    ));
                    scope.spawn(move || {
                        // The writer holds no cache: plain options, not another share of managed memory.
                        let plain = Options::default();
                        let mut writer = SstFileWriter::create(&plain);
                        writer.open(&sst).map_err(rocks_err)?;
                        let mut any = false;
                        // The keys as stored (key group prefix included): nothing rebuilt.
                        scan_stored(other, slice, |k, v| {
                            any = true;
                            writer.put(k, v).map_err(rocks_err)
                        })?;
                        if !any {
                            drop(writer);
                            let _ = std::fs::remove_file(&sst);
                            return Ok(None);
                        }
                        writer.finish().map_err(rocks_err)?;
                        Ok(Some((sst, writer.file_size())))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err("a restore thread panicked".to_string()))
                })
                .collect()
        });
        let mut out = Vec::new();
        for w in written {
            out.extend(w?);
        }
        Ok(out)
    })
}

/// `range` cut into at most `n` contiguous slices of about as many key groups each.
fn key_group_slices(range: KeyGroupRange, n: usize) -> Vec<KeyGroupRange> {
    let len = range.end - range.start + 1;
    let n = (n.max(1) as u32).min(len);
    (0..n)
        .map(|i| KeyGroupRange::new(range.start + len * i / n, range.start + len * (i + 1) / n - 1))
        .collect()
}

/// A downloaded snapshot opened read-only with RocksDB's own small block cache (a short
/// sequential read, not a share of managed memory); a partial one (only the files its reader
/// needs were fetched) without the check that every file is there.
fn open_restored(d: &RestoredRocksDir) -> Result<DB, String> {
    let mut opts = Options::default();
    opts.set_paranoid_checks(!d.partial);
    DB::open_for_read_only(&opts, &d.dir, false)
        .map_err(|e| format!("opening the restored RocksDB files of {}: {e}", d.dir.display()))
}

/// Calls `f(kg, key, value)` for every entry of `db` in key groups `want`, read between
/// bounds so that no file outside them is opened.
fn scan_between(
    db: &DB,
    want: KeyGroupRange,
    mut f: impl FnMut(u32, &[u8], &[u8]) -> Result<(), String>,
) -> Result<(), String> {
    scan_stored(db, want, |k, v| f(kg_of(k)?, &k[2..], v))
}

/// As `scan_between`, with each key as stored (its key-group prefix included), read straight
/// from the iterator without a copy.
fn scan_stored(
    db: &DB,
    want: KeyGroupRange,
    mut f: impl FnMut(&[u8], &[u8]) -> Result<(), String>,
) -> Result<(), String> {
    let mut read = ReadOptions::default();
    read.fill_cache(false);
    read.set_iterate_lower_bound(prefixed(want.start, &[]));
    if want.end < u32::from(u16::MAX) {
        read.set_iterate_upper_bound(prefixed(want.end + 1, &[]));
    }
    let mut it = db.raw_iterator_opt(read);
    it.seek_to_first();
    while let (Some(k), Some(v)) = (it.key(), it.value()) {
        f(k, v)?;
        it.next();
    }
    it.status().map_err(rocks_err)
}

mod snapshot;
#[cfg(test)]
mod tests;

pub(crate) use snapshot::CompactionsSettle;
