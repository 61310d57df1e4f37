//! Task-local copies of checkpointed keyed state (Flink's local recovery): with
//! `execution.checkpointing.local-backup.enabled`, every SST file of an incremental RocksDB
//! checkpoint is also kept under `<taskmanager.state.local.root-dirs>/tm_<resource id>/<job>/`
//! by its name in `shared/` (a hard link: SST files never change, so the copy costs nothing);
//! with `execution.state-recovery.from-local`, a subtask restored on this taskmanager takes the
//! files found there and downloads only the others. The file of a full (heap) snapshot is
//! kept too, as `full-<file>@<snapshot directory>` (written beside its upload), and a restore
//! reads its key groups from it instead of the storage. The checkpoint storage stays the
//! complete copy: a file missing here is fetched from it.
//!
//! Copies go when nothing needs them: a RocksDB instance drops its own files that its newest
//! completed checkpoint no longer holds, a full snapshot's copy drops all but the newest
//! earlier copy of the same file, a deployment drops the files no restore took (only the copy
//! links to them; full snapshots' copies, read by then, are among them), and the taskmanager
//! drops its directory when it shuts down. A
//! taskmanager holds a lock on its directory while it lives (`RootClaim`), so one that starts
//! drops the directories of the taskmanagers that died without shutting down (`kill -9`).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// One job's local copies on this taskmanager.
#[derive(Debug, Clone)]
pub(crate) struct LocalCopies {
    dir: PathBuf,
}

impl LocalCopies {
    /// The copies of job `job_id` under this taskmanager's local root.
    pub(crate) fn new(tm_root: &Path, job_id: &str) -> LocalCopies {
        LocalCopies {
            dir: tm_root.join(job_id),
        }
    }

    fn path(&self, shared_name: &str) -> PathBuf {
        self.dir.join(shared_name)
    }

    /// Keeps the immutable file `src` under `shared_name`, unless a copy is there already: a
    /// hard link, or a copy when the local root is on another file system. Blocking.
    pub(crate) fn keep(&self, shared_name: &str, src: &Path) -> Result<(), String> {
        let to = self.path(shared_name);
        if to.exists() {
            return Ok(());
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| format!("local state directory {}: {e}", self.dir.display()))?;
        link_or_copy(src, &to)
    }

    /// Puts the local copy of `shared_name` at `to` (a link); `false` when there is none.
    /// Blocking.
    pub(crate) fn take(&self, shared_name: &str, to: &Path) -> bool {
        let from = self.path(shared_name);
        from.exists() && link_or_copy(&from, to).is_ok()
    }

    /// Drops the copies `owned` says belong to the caller and that are not in `live`.
    pub(crate) fn forget_except(&self, owned: impl Fn(&str) -> bool, live: &HashSet<String>) {
        for name in self.names() {
            if owned(&name) && !live.contains(&name) {
                let _ = std::fs::remove_file(self.path(&name));
            }
        }
    }

    /// Whether a copy of `shared_name` is here.
    pub(crate) fn has(&self, shared_name: &str) -> bool {
        self.path(shared_name).exists()
    }

    /// Where a prefetch writes `shared_name` before `adopt` makes it a copy: a name no
    /// restore takes, so a half-written file is never read, and that no other writer uses
    /// (a standby round and a rescale's prefetch may fetch the same file at once). Creates the
    /// directory. Blocking.
    pub(crate) fn staging(&self, shared_name: &str) -> Result<PathBuf, String> {
        static WRITERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        std::fs::create_dir_all(&self.dir).map_err(|e| format!("local state directory {}: {e}", self.dir.display()))?;
        let n = WRITERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(self.dir.join(format!("{shared_name}.{n}{STAGING}")))
    }

    /// Makes `staged`, fully written, the copy of `shared_name`. Blocking.
    pub(crate) fn adopt(&self, staged: &Path, shared_name: &str) -> Result<(), String> {
        std::fs::rename(staged, self.path(shared_name)).map_err(|e| format!("renaming {}: {e}", staged.display()))
    }

    /// Keeps `data`, the file of a full snapshot, as `name`: written under a staging name and
    /// adopted whole, so a restore never reads it half-written. Then drops the older copies
    /// whose names start with `lineage` but for the newest of them: a failover restores the
    /// latest completed checkpoint, which is this one or, while this one is under way, the
    /// one before. Blocking.
    pub(crate) fn keep_bytes(&self, name: &str, lineage: &str, data: &[u8]) -> Result<(), String> {
        let staging = self.staging(name)?;
        std::fs::write(&staging, data).map_err(|e| format!("writing {}: {e}", staging.display()))?;
        self.adopt(&staging, name)?;
        let mut older: Vec<(std::time::SystemTime, String)> = self
            .names()
            .into_iter()
            .filter(|n| n != name && n.starts_with(lineage) && !n.ends_with(STAGING))
            .filter_map(|n| {
                let modified = std::fs::metadata(self.path(&n)).and_then(|m| m.modified()).ok()?;
                Some((modified, n))
            })
            .collect();
        older.sort();
        older.pop();
        for (_, n) in older {
            let _ = std::fs::remove_file(self.path(&n));
        }
        Ok(())
    }

    /// Reads `range` of the copy `name` when there is one of `size` bytes (a copy of another
    /// length is not that file); `None` otherwise. Blocking.
    pub(crate) fn read_range(&self, name: &str, size: u64, range: std::ops::Range<u64>) -> Option<Vec<u8>> {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = std::fs::File::open(self.path(name)).ok()?;
        if file.metadata().ok()?.len() != size || range.end > size || range.start > range.end {
            return None;
        }
        file.seek(SeekFrom::Start(range.start)).ok()?;
        let mut out = vec![0u8; usize::try_from(range.end - range.start).ok()?];
        file.read_exact(&mut out).ok()?;
        Some(out)
    }

    /// Drops the copies nothing else links to: files of attempts whose state no restore on
    /// this taskmanager took. Called once a deployment's restores hold their files. With
    /// `keep_shared` (standby copies), the SST files stay: the next standby round drops those
    /// its checkpoint no longer holds.
    pub(crate) fn drop_unlinked(&self, keep_shared: bool) {
        self.drop_unlinked_where(|name| !keep_shared || name.starts_with(FULL));
    }

    /// After a standby round for a checkpoint holding the SST files `live`, started at
    /// `round_start`: drops the SST copies nothing else links to that it does not hold and
    /// that were there before the round (a newer checkpoint's prefetch may have brought the
    /// others). Blocking.
    pub(crate) fn drop_stale_standby(&self, live: &HashSet<String>, round_start: std::time::SystemTime) {
        self.drop_unlinked_where(|name| {
            !name.starts_with(FULL)
                && !live.contains(name)
                && std::fs::metadata(self.path(name))
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t < round_start)
        });
    }

    /// Drops the copies `drop` picks that nothing else links to; never a file still being
    /// written.
    fn drop_unlinked_where(&self, drop: impl Fn(&str) -> bool) {
        for name in self.names() {
            if !name.ends_with(STAGING) && drop(&name) && self.unlinked(&name) {
                let _ = std::fs::remove_file(self.path(&name));
            }
        }
    }

    /// Whether only this directory links to the copy `name`.
    fn unlinked(&self, name: &str) -> bool {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(self.path(name)).is_ok_and(|m| m.nlink() <= 1)
    }

    fn names(&self) -> Vec<String> {
        std::fs::read_dir(&self.dir)
            .map(|d| d.flatten().filter_map(|e| e.file_name().into_string().ok()).collect())
            .unwrap_or_default()
    }
}

/// The suffix of a file a prefetch is still writing.
const STAGING: &str = ".part";

/// The prefix of a full snapshot's copy (`transfer.rs` `full_copy_name`).
pub(crate) const FULL: &str = "full-";

fn link_or_copy(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::hard_link(from, to)
        .or_else(|_| std::fs::copy(from, to).map(|_| ()))
        .map_err(|e| format!("copying {} to {}: {e}", from.display(), to.display()))
}

/// This taskmanager's local root: the first of `taskmanager.state.local.root-dirs`, else
/// `<tmp>/localState`, with `tm_<resource id>` under it.
pub(crate) fn tm_root(configured: Option<&str>, tmp_dir: &Path, resource_id: &str) -> PathBuf {
    let base = configured
        .and_then(|dirs| dirs.split([',', ':']).map(str::trim).find(|d| !d.is_empty()))
        .map(PathBuf::from)
        .unwrap_or_else(|| tmp_dir.join("localState"));
    base.join(format!("tm_{resource_id}"))
}

/// The lock file in a taskmanager's local root, locked while the taskmanager lives.
const LOCK_FILE: &str = ".lock";

/// This taskmanager's hold on its local root: the root exists and its lock is held until
/// the claim is dropped.
#[derive(Debug)]
pub(crate) struct RootClaim {
    _lock: std::fs::File,
}

/// Claims `tm_root` for this taskmanager, first dropping every sibling `tm_*` directory
/// whose owner died (its lock is free), this root's own leftovers included. Fails, naming
/// the directory, when another live taskmanager holds `tm_root` or it cannot be made.
/// Blocking.
pub(crate) fn claim_root(tm_root: &Path) -> Result<RootClaim, String> {
    if let Some(parent) = tm_root.parent() {
        drop_dead_roots(parent);
    }
    let name = |e: std::io::Error| format!("local state directory {}: {e}", tm_root.display());
    std::fs::create_dir_all(tm_root).map_err(name)?;
    let lock = tm_root.join(LOCK_FILE);
    if lock.exists() {
        // Not dropped above: a live taskmanager holds it.
        return Err(format!(
            "local state directory {} is in use by another taskmanager with the same resource id (taskmanager.resource-id)",
            tm_root.display()
        ));
    }
    // Locked under a name no sweep looks at, then put in place: a sweep never sees the lock
    // file unlocked.
    let staged = tm_root.join(format!("{LOCK_FILE}.{}", std::process::id()));
    let file = std::fs::File::create(&staged).map_err(name)?;
    file.try_lock()
        .map_err(|e| name(std::io::Error::other(e.to_string())))?;
    std::fs::rename(&staged, &lock).map_err(name)?;
    Ok(RootClaim { _lock: file })
}

/// Drops the `tm_*` directories under `base` whose lock file no process holds. A directory
/// without a lock file is left alone (a taskmanager still starting, or not ours).
fn drop_dead_roots(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for dir in entries.flatten().map(|e| e.path()) {
        let ours = dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("tm_"));
        let Some(lock) = ours.then(|| std::fs::File::open(dir.join(LOCK_FILE)).ok()).flatten() else {
            continue;
        };
        if lock.try_lock().is_ok() {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => tracing::info!(
                    "Dropped the local state of a taskmanager that is gone: {}",
                    dir.display()
                ),
                Err(e) => tracing::warn!("Cannot drop the local state directory {}: {e}", dir.display()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefetched_file_is_taken_only_once_adopted() {
        let dir = tempfile::tempdir().unwrap();
        let copies = LocalCopies::new(&dir.path().join("root"), "job");
        let staged = copies.staging("a-000007.sst").unwrap();
        assert_ne!(staged, copies.staging("a-000007.sst").unwrap(), "each writer its own");
        std::fs::write(&staged, b"half").unwrap();
        assert!(!copies.has("a-000007.sst"));
        assert!(
            !copies.take("a-000007.sst", &dir.path().join("early.sst")),
            "a half-written file is never taken"
        );
        std::fs::write(&staged, b"whole").unwrap();
        copies.drop_unlinked(false);
        assert!(staged.exists(), "a deployment leaves a file being written alone");
        copies.adopt(&staged, "a-000007.sst").unwrap();
        assert!(copies.has("a-000007.sst") && !staged.exists());
        let to = dir.path().join("restored.sst");
        assert!(copies.take("a-000007.sst", &to));
        assert_eq!(std::fs::read(&to).unwrap(), b"whole");
    }

    #[test]
    fn a_full_snapshot_copy_is_read_by_range_and_only_two_per_lineage_stay() {
        let dir = tempfile::tempdir().unwrap();
        let copies = LocalCopies::new(&dir.path().join("root"), "job");
        for n in 1..=3 {
            copies
                .keep_bytes(&format!("full-agg-0@chk-{n}"), "full-agg-0@", b"0123456789")
                .unwrap();
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        copies.keep_bytes("full-agg-1@chk-3", "full-agg-1@", b"other").unwrap();
        assert!(!copies.has("full-agg-0@chk-1"), "the oldest of a lineage is dropped");
        assert!(copies.has("full-agg-0@chk-2") && copies.has("full-agg-0@chk-3"));
        assert!(copies.has("full-agg-1@chk-3"), "another lineage is not touched");
        assert_eq!(copies.read_range("full-agg-0@chk-3", 10, 2..5).unwrap(), b"234");
        assert!(
            copies.read_range("full-agg-0@chk-3", 11, 2..5).is_none(),
            "a copy of another size is not that file"
        );
        assert!(copies.read_range("full-agg-0@chk-3", 10, 8..12).is_none());
        assert!(copies.read_range("full-agg-0@chk-9", 10, 2..5).is_none());
    }

    #[test]
    fn keeps_takes_and_forgets_copies() {
        let dir = tempfile::tempdir().unwrap();
        let copies = LocalCopies::new(&dir.path().join("root"), "job");
        let src = dir.path().join("000009.sst");
        std::fs::write(&src, b"sst").unwrap();
        copies.keep("a-000009.sst", &src).unwrap();
        copies.keep("a-000009.sst", &src).unwrap();
        let to = dir.path().join("restored.sst");
        assert!(copies.take("a-000009.sst", &to));
        assert_eq!(std::fs::read(&to).unwrap(), b"sst");
        assert!(!copies.take("b-000001.sst", &dir.path().join("x.sst")));
        // Linked from src and to: kept; once both are gone, a deployment drops it (with
        // standby copies, the next standby round does).
        copies.drop_unlinked(false);
        assert!(copies.path("a-000009.sst").exists());
        std::fs::remove_file(&src).unwrap();
        std::fs::remove_file(&to).unwrap();
        copies.drop_unlinked(true);
        assert!(copies.path("a-000009.sst").exists());
        copies.drop_unlinked(false);
        assert!(!copies.path("a-000009.sst").exists());
        // An instance drops its own files its newest checkpoint no longer holds.
        std::fs::write(&src, b"sst").unwrap();
        copies.keep("a-000009.sst", &src).unwrap();
        copies.keep("b-000009.sst", &src).unwrap();
        copies.forget_except(|n| n.starts_with("a-"), &HashSet::new());
        assert!(!copies.path("a-000009.sst").exists());
        assert!(copies.path("b-000009.sst").exists());
    }

    #[test]
    fn a_root_is_claimed_once_and_a_dead_owners_root_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("tm_live");
        let claim = claim_root(&live).unwrap();
        let err = claim_root(&live).unwrap_err();
        assert!(err.contains("tm_live") && err.contains("in use"), "{err}");
        // A root whose owner died: its lock file is there, nobody holds it.
        let dead = dir.path().join("tm_dead");
        std::fs::create_dir_all(dead.join("job")).unwrap();
        std::fs::write(dead.join(LOCK_FILE), b"").unwrap();
        std::fs::write(dead.join("job").join("a-000009.sst"), b"sst").unwrap();
        // Without a lock file (starting, or not a taskmanager's): left alone.
        let other = dir.path().join("tm_starting");
        std::fs::create_dir_all(&other).unwrap();
        let _second = claim_root(&dir.path().join("tm_second")).unwrap();
        assert!(!dead.exists(), "the dead taskmanager's copies are dropped");
        assert!(live.join(LOCK_FILE).exists() && other.exists());
        // Once the live one is gone too, its root is the next claim's to drop.
        drop(claim);
        let _third = claim_root(&dir.path().join("tm_third")).unwrap();
        assert!(!live.exists());
    }

    #[test]
    fn the_root_is_the_first_configured_directory_or_under_tmp() {
        let tmp = Path::new("/tmp/x");
        assert_eq!(tm_root(None, tmp, "r1"), PathBuf::from("/tmp/x/localState/tm_r1"));
        assert_eq!(tm_root(Some("/a, /b"), tmp, "r1"), PathBuf::from("/a/tm_r1"));
    }

    #[test]
    fn a_standby_round_drops_only_unlinked_copies_its_checkpoint_no_longer_holds() {
        let dir = tempfile::tempdir().unwrap();
        let copies = LocalCopies::new(&dir.path().join("root"), "job");
        let put = |name: &str| {
            let staged = copies.staging(name).unwrap();
            std::fs::write(&staged, name).unwrap();
            copies.adopt(&staged, name).unwrap();
        };
        for name in ["a-1.sst", "a-2.sst", "b-1.sst", "b-2.sst"] {
            put(name);
        }
        copies.keep_bytes("full-agg-0@chk-1", "full-agg-0@", b"heap").unwrap();
        // An instance holds b-2.sst (restored from it).
        copies.take("b-2.sst", &dir.path().join("held.sst"));
        std::thread::sleep(std::time::Duration::from_millis(20));
        let round_start = std::time::SystemTime::now();
        std::thread::sleep(std::time::Duration::from_millis(20));
        // A newer checkpoint's prefetch brought c-1.sst during the round.
        put("c-1.sst");
        let writing = copies.staging("d-1.sst").unwrap();
        std::fs::write(&writing, b"half").unwrap();
        copies.drop_stale_standby(&HashSet::from(["a-2.sst".to_string()]), round_start);
        assert!(
            !copies.has("a-1.sst") && !copies.has("b-1.sst"),
            "no longer held: dropped"
        );
        assert!(copies.has("a-2.sst"), "held by the checkpoint");
        assert!(copies.has("b-2.sst"), "linked by an instance");
        assert!(copies.has("c-1.sst"), "newer than the round");
        assert!(copies.has("full-agg-0@chk-1") && writing.exists());
    }
}
