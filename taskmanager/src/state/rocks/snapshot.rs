//! The RocksDB backend's snapshots: full ones (per-key-group blocks), incremental ones (a
//! native checkpoint whose SST files not uploaded before go to `shared/`), the hold of
//! automatic compactions for a rescale's stop, and what a completed checkpoint confirms.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use rocksdb::{IteratorMode, DB};
use sluice_common::state::key_group_blocks::BlocksWriter;
use sluice_common::state::KeyGroupRange;

use super::super::snapshot::{KeyedSnapshot, SnapshotKind, ALL_KEY_GROUPS};
use super::{kg_of, live_file_name, rocks_err, Held, RocksStore};

impl RocksStore {
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
    /// the instance the stop ends is closed without a compaction to wait for. A hold since the
    /// restore (`Held::Restore`) is one for the stop from then on.
    fn hold_compactions(&mut self, hold: bool) -> Result<Option<CompactionsSettle>, String> {
        let mut held = self.compactions_held.lock().unwrap_or_else(|p| p.into_inner());
        if (*held != Held::No) == hold {
            if hold {
                *held = Held::Stop;
            }
            return Ok(None);
        }
        let db = self.db()?;
        auto_compactions(db, !hold)?;
        let running = db
            .property_int_value("rocksdb.num-running-compactions")
            .ok()
            .flatten()
            .unwrap_or(0);
        *held = if hold { Held::Stop } else { Held::No };
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

    /// Resumes the compactions a restore held after `after`, unless a checkpoint resumed them
    /// or a rescale's stop holds them by then (a timer thread that holds only a weak handle).
    pub(super) fn resume_compactions_after(&self, after: Duration) {
        let (db, held, range) = (
            self.db.as_ref().map(Arc::downgrade).unwrap_or_default(),
            Arc::clone(&self.compactions_held),
            self.range,
        );
        let spawned = std::thread::Builder::new()
            .name("rocksdb-resume".into())
            .spawn(move || {
                std::thread::sleep(after);
                let mut held = held.lock().unwrap_or_else(|p| p.into_inner());
                let Some(db) = db.upgrade().filter(|_| *held == Held::Restore) else {
                    return;
                };
                match auto_compactions(&db, true) {
                    Ok(()) => *held = Held::No,
                    Err(e) => tracing::warn!(
                        "RocksDB instance of key groups {}-{}: cannot resume compactions: {e}",
                        range.start,
                        range.end
                    ),
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("RocksDB instance of key groups {}-{}: no timer to resume compactions ({e}); the first periodic checkpoint resumes them.", range.start, range.end);
        }
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
    pub(super) fn file_spans(&self) -> Result<HashMap<String, (u32, u32, u32)>, String> {
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

/// Switches automatic compactions of `db` on or off.
fn auto_compactions(db: &DB, on: bool) -> Result<(), String> {
    db.set_options(&[("disable_auto_compactions", if on { "false" } else { "true" })])
        .map_err(rocks_err)
}
