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
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use rocksdb::{
    BlockBasedOptions, Cache, Direction, IngestExternalFileOptions, IteratorMode, Options, ReadOptions, SstFileWriter,
    WriteBatch, WriteBufferManager, WriteOptions, DB,
};
use sluice_common::state::key_group_blocks::BlocksWriter;
use sluice_common::state::KeyGroupRange;

use super::local_copy::LocalCopies;
use super::snapshot::{KeyedSnapshot, OperatorRestoreData, RestoredRocksDir, SnapshotKind, ALL_KEY_GROUPS};
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
    /// Automatic compactions are held for a rescale's stop (`hold_compactions`).
    compactions_held: bool,
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
        let (opts, cache, wbm) = options(settings)?;
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
            compactions_held: false,
            _cache: cache,
            _wbm: wbm,
        };
        if base.is_some() {
            store.clip(settings.delete_files_in_range)?;
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
    pub(crate) fn snapshot(&mut self, checkpoint_id: u64, kind: SnapshotKind) -> Result<KeyedSnapshot, String> {
        if !self.incremental || kind.is_savepoint() {
            return self.snapshot_full();
        }
        let settle = match kind {
            SnapshotKind::BeforeStop => self.hold_compactions(true)?,
            SnapshotKind::Checkpoint => self.hold_compactions(false)?,
            SnapshotKind::Stop | SnapshotKind::Savepoint => None,
        };
        self.snapshot_incremental(checkpoint_id, settle)
    }

    /// Holds (or resumes) automatic compactions. A rescale's stop follows the checkpoint that
    /// holds them: what a compaction would rewrite meanwhile (often the whole next level) the
    /// stop would have to upload in the pause; with them held, it uploads only the memtables
    /// flushed since. Any later periodic checkpoint resumes them (the stop did not come), and
    /// the instance the stop ends is closed without a compaction to wait for.
    fn hold_compactions(&mut self, hold: bool) -> Result<Option<CompactionsSettle>, String> {
        if self.compactions_held == hold {
            return Ok(None);
        }
        let db = self.db()?;
        db.set_options(&[("disable_auto_compactions", if hold { "true" } else { "false" })])
            .map_err(rocks_err)?;
        let running = db
            .property_int_value("rocksdb.num-running-compactions")
            .ok()
            .flatten()
            .unwrap_or(0);
        self.compactions_held = hold;
        if hold {
            tracing::info!(
                "RocksDB instance of key groups {}-{}: compactions held until the rescale's stop ({running} still running).",
                self.range.start,
                self.range.end
            );
        }
        // The checkpoint completes once the compactions that were running ended (its upload
        // waits, not the task); the next prepare round then uploads what they wrote.
        Ok((hold && running > 0).then(|| CompactionsSettle {
            db: self.db.as_ref().map(Arc::downgrade).unwrap_or_default(),
            range: self.range,
        }))
    }

    /// An incremental snapshot: a RocksDB checkpoint (hard links) of the instance; its SST
    /// files that a completed checkpoint already uploaded are referenced, not uploaded.
    fn snapshot_incremental(
        &mut self,
        checkpoint_id: u64,
        settle: Option<CompactionsSettle>,
    ) -> Result<KeyedSnapshot, String> {
        let dir = self.dir.join(format!("chk-{checkpoint_id}"));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        rocksdb::checkpoint::Checkpoint::new(self.db()?)
            .and_then(|c| c.create_checkpoint(&dir))
            .map_err(rocks_err)?;
        let spans_of = self.file_spans()?;
        let mut ssts = Vec::new();
        let mut spans = Vec::new();
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
                spans.push(spans_of.get(&name).copied().unwrap_or(ALL_KEY_GROUPS));
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
            spans,
            private,
            local: self.local.clone(),
            settle,
        })
    }

    /// The level and key groups of each live SST file, by file name; a level-0 file spans all
    /// of them, as every read opens it. A file a compaction writes after the checkpoint is not
    /// here (and one it removed is), so the checkpoint's files are looked up by name.
    fn file_spans(&self) -> Result<HashMap<String, (u32, u32, u32)>, String> {
        let files = self.db()?.live_files().map_err(rocks_err)?;
        Ok(files
            .into_iter()
            .map(|f| {
                let span = match (u32::try_from(f.level), f.start_key.as_deref(), f.end_key.as_deref()) {
                    (Ok(level @ 1..), Some(a), Some(b)) => match (kg_of(a), kg_of(b)) {
                        (Ok(a), Ok(b)) => (level, a, b),
                        _ => ALL_KEY_GROUPS,
                    },
                    _ => ALL_KEY_GROUPS,
                };
                (live_file_name(&f).to_string(), span)
            })
            .collect())
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

/// The compactions of an instance that were running when its compactions were held: the
/// upload of that checkpoint waits for them (`wait`), so the checkpoint after it holds what
/// they wrote.
pub(crate) struct CompactionsSettle {
    db: Weak<DB>,
    range: KeyGroupRange,
}

/// The longest a checkpoint's upload waits for compactions to end.
const SETTLE_LIMIT: Duration = Duration::from_secs(30);

impl CompactionsSettle {
    pub(crate) async fn wait(self) {
        let started = Instant::now();
        loop {
            // A closed instance runs none.
            let running = self
                .db
                .upgrade()
                .and_then(|db| db.property_int_value("rocksdb.num-running-compactions").ok().flatten())
                .unwrap_or(0);
            if running == 0 {
                break;
            }
            if started.elapsed() >= SETTLE_LIMIT {
                tracing::warn!(
                    "RocksDB instance of key groups {}-{}: {running} compactions still run after {} s; the checkpoint completes without waiting longer.",
                    self.range.start,
                    self.range.end,
                    SETTLE_LIMIT.as_secs()
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::info!(
            "RocksDB instance of key groups {}-{}: the running compactions ended {} ms after its compactions were held.",
            self.range.start,
            self.range.end,
            started.elapsed().as_millis()
        );
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
                        scan_between(other, slice, |kg, k, v| {
                            any = true;
                            writer.put(prefixed(kg, k), v).map_err(rocks_err)
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
    let mut read = ReadOptions::default();
    read.fill_cache(false);
    read.set_iterate_lower_bound(prefixed(want.start, &[]));
    if want.end < u32::from(u16::MAX) {
        read.set_iterate_upper_bound(prefixed(want.end + 1, &[]));
    }
    for item in db.iterator_opt(IteratorMode::Start, read) {
        let (k, v) = item.map_err(rocks_err)?;
        f(kg_of(&k)?, &k[2..], &v)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::test_settings;
    use sluice_common::config::options::StateBackendKind;

    /// Incremental checkpoints; compaction files may span key groups (`file-per-key-group`
    /// off, the default: the restores below build files of several key groups).
    fn settings(dir: &std::path::Path, range: (u32, u32)) -> StateSettings {
        let mut s = test_settings(StateBackendKind::RocksDb, dir, range);
        s.incremental = true;
        s
    }

    #[test]
    fn key_groups_are_cut_into_even_contiguous_slices() {
        let r = |a, b| KeyGroupRange::new(a, b);
        assert_eq!(key_group_slices(r(40, 63), 2), [r(40, 51), r(52, 63)]);
        assert_eq!(key_group_slices(r(0, 9), 3), [r(0, 2), r(3, 5), r(6, 9)]);
        assert_eq!(key_group_slices(r(7, 8), 4), [r(7, 7), r(8, 8)]);
        assert_eq!(key_group_slices(r(5, 5), 0), [r(5, 5)]);
    }

    #[test]
    fn compactions_write_a_file_per_key_group() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path(), (0, 127));
        s.sst_per_key_group = true;
        let store = RocksStore::open(&s, None).unwrap();
        for kg in [3, 4, 5, 90] {
            for i in 0..100u32 {
                store.put(kg, &i.to_be_bytes(), b"value").unwrap();
            }
        }
        let db = store.db().unwrap();
        db.flush().unwrap();
        db.compact_range(None::<&[u8]>, None::<&[u8]>);
        let mut spans: Vec<(u32, u32)> = store.file_spans().unwrap().values().map(|&(_, a, b)| (a, b)).collect();
        spans.sort();
        assert_eq!(spans, [(3, 3), (4, 4), (5, 5), (90, 90)]);
        // An instance of key group 4 alone drops the files of the others whole.
        let mut keys_left = 0;
        for (from, to) in outside(KeyGroupRange::new(4, 4)) {
            db.delete_file_in_range(&from, &to).unwrap();
        }
        for item in db.iterator(IteratorMode::Start) {
            assert_eq!(kg_of(&item.unwrap().0).unwrap(), 4);
            keys_left += 1;
        }
        assert_eq!(keys_left, 100);
    }

    /// An old subtask of `range` with key `k<kg>` in every key group, checkpointed
    /// incrementally and "downloaded": its checkpoint's files copied into a directory under
    /// their own names, with their shared names.
    fn old_subtask(dir: &std::path::Path, range: (u32, u32)) -> RestoredRocksDir {
        old_subtask_in_files(dir, range, &[], range).0
    }

    /// An old subtask of `range` whose key groups `files` were each written (value `v`),
    /// flushed and compacted into a file of their own below level 0, then key groups `last`
    /// (value `v2`, or `v` with no `files`) left to its checkpoint's flush (a level-0 file);
    /// also returns its files' recorded spans.
    fn old_subtask_in_files(
        dir: &std::path::Path,
        range: (u32, u32),
        files: &[(u32, u32)],
        last: (u32, u32),
    ) -> (RestoredRocksDir, Vec<(u32, u32, u32)>) {
        let mut store = RocksStore::open(&settings(dir, range), None).unwrap();
        for &(a, b) in files {
            for kg in a..=b {
                store.put(kg, format!("k{kg}").as_bytes(), b"v").unwrap();
            }
            let db = store.db().unwrap();
            db.flush().unwrap();
            db.compact_range(Some(prefixed(a, &[])), Some(prefixed(b + 1, &[])));
        }
        let value: &[u8] = if files.is_empty() { b"v" } else { b"v2" };
        for kg in last.0..=last.1 {
            store.put(kg, format!("k{kg}").as_bytes(), value).unwrap();
        }
        let KeyedSnapshot::RocksIncremental {
            dir: chk,
            ssts,
            spans,
            private,
            ..
        } = store.snapshot(1, SnapshotKind::Checkpoint).unwrap()
        else {
            panic!("not incremental");
        };
        let to = dir.join(format!("restore-{}-{}", range.0, range.1));
        std::fs::create_dir_all(&to).unwrap();
        for name in ssts.iter().map(|(l, _, _)| l).chain(&private) {
            std::fs::copy(chk.join(name), to.join(name)).unwrap();
        }
        let shared = ssts.into_iter().map(|(l, s, _)| (l, s)).collect();
        let restored = RestoredRocksDir {
            dir: to,
            range: KeyGroupRange::new(range.0, range.1),
            shared,
            partial: false,
        };
        (restored, spans)
    }

    /// Level-0 files of the instance.
    fn level0(store: &RocksStore) -> usize {
        store
            .db()
            .unwrap()
            .live_files()
            .unwrap()
            .iter()
            .filter(|f| f.level == 0)
            .count()
    }

    #[test]
    fn the_checkpoint_before_a_stop_holds_compactions_until_a_periodic_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = RocksStore::open(&settings(dir.path(), (0, 127)), None).unwrap();
        let flush = |store: &mut RocksStore, id: u64, kind: SnapshotKind| {
            for kg in 0..128 {
                store.put(kg, format!("k{kg}-{id}").as_bytes(), b"v").unwrap();
            }
            store.snapshot(id, kind).unwrap();
        };
        flush(&mut store, 1, SnapshotKind::BeforeStop);
        assert!(store.compactions_held);
        // Each checkpoint flushes a level-0 file; past the trigger (4) nothing compacts them.
        for id in 2..=6 {
            flush(&mut store, id, SnapshotKind::Stop);
        }
        store.db().unwrap().flush().unwrap();
        assert_eq!(level0(&store), 6, "held: every flush stays in level 0");
        flush(&mut store, 7, SnapshotKind::Checkpoint);
        assert!(!store.compactions_held, "a periodic checkpoint resumes them");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while level0(&store) >= 4 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(level0(&store) < 4, "resumed, level 0 compacts");
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
        let KeyedSnapshot::RocksIncremental { ssts, .. } = store.snapshot(2, SnapshotKind::Checkpoint).unwrap() else {
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

    /// `old_subtask_in_files` of [0, 63] with key groups `files` in files below level 0 and
    /// 50-55 again in a level-0 file, "fetched" for a new subtask of `new`: the file of
    /// `skipped` is not.
    fn partly_fetched(dir: &std::path::Path, files: &[(u32, u32)], skipped: (u32, u32)) -> RestoredRocksDir {
        let (mut old, spans) = old_subtask_in_files(dir, (0, 63), files, (50, 55));
        // The compacted files below level 0, the flushed one at level 0 spanning everything.
        let mut sorted: Vec<(u32, u32)> = spans.iter().map(|&(_, a, b)| (a, b)).collect();
        sorted.sort();
        let mut expected = files.to_vec();
        expected.push((0, u32::MAX));
        expected.sort();
        assert_eq!(sorted, expected, "{spans:?}");
        assert!(spans.iter().all(|&s| s == ALL_KEY_GROUPS || s.0 > 0), "{spans:?}");
        let i = spans.iter().position(|&(_, a, b)| (a, b) == skipped).unwrap();
        let (name, _) = old.shared.remove(i);
        std::fs::remove_file(old.dir.join(name)).unwrap();
        old.partial = true;
        old
    }

    fn assert_values(store: &RocksStore, range: std::ops::RangeInclusive<u32>) {
        assert_eq!(keys(store), range.clone().collect::<Vec<_>>());
        for kg in range {
            let v = if (50..=55).contains(&kg) { "v2" } else { "v" };
            let got = store.get(kg, format!("k{kg}").as_bytes()).unwrap();
            assert_eq!(got.as_deref(), Some(v.as_bytes()), "key group {kg}");
        }
    }

    #[test]
    fn a_partly_fetched_snapshot_is_read_from_the_files_its_key_groups_need() {
        let dir = tempfile::tempdir().unwrap();
        // New subtask [40, 100] reads key groups 40-63 of old [0, 63]: the file of 0-31 is
        // not fetched; old [64, 127] is its base.
        let restore = OperatorRestoreData {
            rocks_dirs: vec![
                partly_fetched(dir.path(), &[(0, 31), (32, 63)], (0, 31)),
                old_subtask(dir.path(), (64, 127)),
            ],
            ..Default::default()
        };
        let store = RocksStore::open(&settings(dir.path(), (40, 100)), Some(&restore)).unwrap();
        assert_values(&store, 40..=100);
        assert!(restore.rocks_dirs.iter().all(|d| !d.dir.exists()));
    }

    #[test]
    fn a_partly_fetched_snapshot_is_read_over_its_own_key_groups_only() {
        let dir = tempfile::tempdir().unwrap();
        // Old subtask [0, 31] that still holds key groups 32-63 from before an earlier clip,
        // in a file the fetch for new subtask [30, 63] left out: only 30-31 are read of it.
        let mut leftover = partly_fetched(dir.path(), &[(0, 31), (32, 63)], (32, 63));
        leftover.range = KeyGroupRange::new(0, 31);
        let restore = OperatorRestoreData {
            rocks_dirs: vec![leftover, old_subtask(dir.path(), (32, 63))],
            ..Default::default()
        };
        let store = RocksStore::open(&settings(dir.path(), (30, 63)), Some(&restore)).unwrap();
        assert_eq!(keys(&store), (30..=63).collect::<Vec<_>>());
        for kg in 30..=63 {
            let got = store.get(kg, format!("k{kg}").as_bytes()).unwrap();
            assert_eq!(got.as_deref(), Some(&b"v"[..]), "key group {kg}");
        }
    }

    #[test]
    fn a_partly_fetched_base_drops_its_unfetched_files_and_opens_in_place() {
        let dir = tempfile::tempdir().unwrap();
        // New subtask [10, 40]: old [0, 63] is its base, without the file of 0-9.
        let base = partly_fetched(dir.path(), &[(0, 9), (10, 63)], (0, 9));
        let names: HashSet<String> = base.shared.iter().map(|(_, s)| s.clone()).collect();
        let restore = OperatorRestoreData {
            rocks_dirs: vec![base],
            ..Default::default()
        };
        let mut store = RocksStore::open(&settings(dir.path(), (10, 40)), Some(&restore)).unwrap();
        assert_values(&store, 10..=40);
        // Opened in place: its next checkpoint names the fetched files by their old names.
        let KeyedSnapshot::RocksIncremental { ssts, .. } = store.snapshot(2, SnapshotKind::Checkpoint).unwrap() else {
            panic!("not incremental");
        };
        assert!(
            ssts.iter().any(|(_, s, uploaded)| names.contains(s) && *uploaded),
            "{ssts:?}"
        );
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
            let KeyedSnapshot::RocksIncremental { dir: chk, ssts, .. } =
                store.snapshot(id, SnapshotKind::Checkpoint).unwrap()
            else {
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
