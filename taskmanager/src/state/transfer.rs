//! Moving state between a subtask and checkpoint storage: the asynchronous part of a
//! checkpoint (write the snapshot's files, describe them with state handles) and, on restore,
//! fetching the handles a subtask was assigned. Exclusive files go to the snapshot's directory
//! (`chk-N/` or the savepoint's), incremental SST files to `<job>/shared/` (several at once);
//! with local backup on, both are kept on the taskmanager too (`local_copy`). Handle paths are
//! relative (to the snapshot directory, or to the job directory for `shared/…`), so savepoints
//! can be moved. Local files are read and written with `tokio::fs`, off the async workers.

use std::collections::{HashMap, HashSet};
use std::path::Path as FsPath;

use bytes::Bytes;
use futures::stream::{self, StreamExt, TryStreamExt};
use sluice_common::config::options::SNAPSHOT_COMPRESSION;
use sluice_common::config::Configuration;
use sluice_common::proto::checkpoint::{StateHandle, SubtaskState};
use sluice_common::state::assignment::OperatorRestore;
use sluice_common::state::key_group_blocks::{byte_range, compress_blocks, decompress_blocks, ZSTD};
use sluice_common::state::KeyGroupRange;
use sluice_common::storage::{open_location, parent_url, StorageLocation};

use super::local_copy::LocalCopies;
use super::snapshot::{KeyedSnapshot, OperatorRestoreData, OperatorSnapshot, RestoredRocksDir};

pub(crate) const FORMAT_FULL: &str = "full";
pub(crate) const FORMAT_ROCKS_INCREMENTAL: &str = "rocksdb-incremental";

/// Writes one operator's snapshot of subtask `subtask`; returns its handles and bytes written.
pub(crate) async fn upload(
    config: &Configuration,
    target_url: &str,
    uid: &str,
    subtask: u32,
    snapshot: OperatorSnapshot,
    local: Option<&LocalCopies>,
) -> Result<(SubtaskState, u64), String> {
    let mut state = SubtaskState {
        subtask,
        lists: snapshot.lists,
        ..Default::default()
    };
    let mut written = 0u64;
    match snapshot.keyed {
        None => {}
        Some(KeyedSnapshot::Full { range, data, offsets }) => {
            let target = open_location(target_url, config)?;
            let name = format!("{uid}-{subtask}-keyed");
            let started = std::time::Instant::now();
            let plain = data.len();
            let (data, offsets, compression) = if config.get(&SNAPSHOT_COMPRESSION)? {
                let (data, offsets) = blocking(move || compress_blocks(&data, &offsets)).await?;
                (data, offsets, ZSTD.to_string())
            } else {
                (data, offsets, String::new())
            };
            let compressed = started.elapsed().as_millis();
            let size = data.len() as u64;
            let data = Bytes::from(data);
            // With local backup, the file is also kept on this taskmanager while it uploads; a
            // copy only saves a later download, so failing to keep one fails nothing.
            let keep = local.cloned().map(|copies| {
                let (copy, lineage) = full_copy_name(target_url, &name);
                let data = data.clone();
                blocking(move || copies.keep_bytes(&copy, &lineage, &data))
            });
            let (stored, kept) = tokio::join!(target.put(&name, data), async {
                match keep {
                    Some(keep) => keep.await,
                    None => Ok(()),
                }
            });
            stored?;
            if let Err(e) = kept {
                tracing::warn!("Local recovery: keeping a local copy of {uid}'s state failed: {e}");
            }
            tracing::debug!(
                "{name}: {plain} bytes of blocks, compressed in {compressed} ms to {size}, stored in {} ms.",
                started.elapsed().as_millis() - compressed
            );
            written += size;
            state.keyed.push(StateHandle {
                path: name,
                size,
                key_group_start: range.start,
                key_group_end: range.end,
                key_group_offsets: offsets,
                format: FORMAT_FULL.into(),
                compression,
                ..Default::default()
            });
        }
        Some(KeyedSnapshot::RocksIncremental {
            range,
            dir,
            ssts,
            spans,
            private,
            local,
            settle,
        }) => {
            let target = open_location(target_url, config)?;
            let root = open_location(&parent_url(target_url), config)?;
            let mut handle = StateHandle {
                key_group_start: range.start,
                key_group_end: range.end,
                format: FORMAT_ROCKS_INCREMENTAL.into(),
                ..Default::default()
            };
            if let Some(copies) = local {
                let kept: Vec<(String, std::path::PathBuf)> =
                    ssts.iter().map(|(l, s, _)| (s.clone(), dir.join(l))).collect();
                // A local copy only saves a later download: failing to keep one is no reason to
                // fail the checkpoint.
                if let Err(e) =
                    blocking(move || kept.iter().try_for_each(|(shared, path)| copies.keep(shared, path))).await
                {
                    tracing::warn!("Local recovery: keeping a local copy of {uid}'s state failed: {e}");
                }
            }
            let new_files: Vec<(std::path::PathBuf, String)> = ssts
                .iter()
                .filter(|(_, _, uploaded)| !uploaded)
                .map(|(local, shared, _)| (dir.join(local), shared.clone()))
                .collect();
            let root_ref = &root;
            written += stream::iter(new_files.into_iter().map(|(path, shared)| {
                let root = root_ref;
                async move {
                    let data = read_local(&path).await?;
                    let size = data.len() as u64;
                    root.put(&format!("shared/{shared}"), data).await?;
                    Ok::<u64, String>(size)
                }
            }))
            .buffer_unordered(TRANSFERS)
            .try_fold(0, |a, b| async move { Ok(a + b) })
            .await?;
            handle.shared_files = ssts.iter().map(|(_, shared, _)| format!("shared/{shared}")).collect();
            handle.shared_file_spans = spans.iter().flat_map(|&(l, a, b)| [l, a, b]).collect();
            for name in private {
                let data = read_local(&dir.join(&name)).await?;
                written += data.len() as u64;
                let stored = format!("{uid}-{subtask}-db/{name}");
                target.put(&stored, data).await?;
                handle.private_files.push(stored);
            }
            handle.size = written;
            state.keyed.push(handle);
            if let Some(settle) = settle {
                settle.wait().await;
            }
        }
    }
    Ok((state, written))
}

/// Reads a local file (a RocksDB checkpoint's SST) off the async workers.
async fn read_local(path: &FsPath) -> Result<Bytes, String> {
    tokio::fs::read(path)
        .await
        .map(Bytes::from)
        .map_err(|e| format!("reading {}: {e}", path.display()))
}

/// Which of an incremental handle's SST files the restore of key groups `read` needs: those
/// whose recorded span meets it (level-0 files span everything); per level, the first file
/// ending at or after `read`'s start (a seek there opens it, even when it lies wholly after
/// `read`); and those reaching the last key group (a range delete of an earlier clip ends
/// there, so such a file may not lie wholly outside `read` for RocksDB). The others lie wholly
/// before or after `read`: a read between bounds never opens them, and an instance opened on
/// them drops them unopened (`RocksStore::open`). All of them without recorded spans.
fn needed_files(h: &StateHandle, read: Option<KeyGroupRange>) -> Vec<bool> {
    let r = match read {
        Some(r) if h.shared_file_spans.len() == 3 * h.shared_files.len() => r,
        _ => return vec![true; h.shared_files.len()],
    };
    let spans: Vec<&[u32]> = h.shared_file_spans.chunks(3).collect();
    // Per level below 0, the smallest last key group at or after the read's start: where a
    // seek lands.
    let mut lands: HashMap<u32, u32> = HashMap::new();
    for s in spans.iter().filter(|s| s[0] > 0 && s[2] >= r.start) {
        let e = lands.entry(s[0]).or_insert(s[2]);
        *e = (*e).min(s[2]);
    }
    spans
        .iter()
        .map(|s| {
            let (level, first, last) = (s[0], s[1], s[2]);
            (first <= r.end && last >= r.start)
                || last >= u32::from(u16::MAX)
                || (level > 0 && lands.get(&level) == Some(&last))
        })
        .collect()
}

/// The needed (`needed_files`) shared files of `h` as (the file's own name, its name in
/// `shared/`): shared names are `<instance>-<file>.sst`, and RocksDB wants the file's own.
fn wanted_shared(h: &StateHandle, needed: &[bool]) -> Vec<(String, String)> {
    h.shared_files
        .iter()
        .zip(needed)
        .filter(|(_, &n)| n)
        .map(|(f, _)| {
            let name = f.rsplit('/').next().unwrap_or(f);
            let own = name.split_once('-').map(|(_, n)| n).unwrap_or(name);
            (own.to_string(), name.to_string())
        })
        .collect()
}

/// Files moved to or from checkpoint storage at once (Flink's default for
/// `state.backend.rocksdb.checkpoint.transfer.thread.num`). An upload holds its file in memory
/// whole while it moves; a download streams into its local file.
const TRANSFERS: usize = 4;

/// Runs blocking file work off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, String> + Send + 'static) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("local file work failed: {e}"))?
}

/// Fetches the keyed handles of `assigned` from the snapshot at `snapshot_url`; incremental
/// RocksDB handles are fetched into fresh directories under `tmp_dir`, their SST files from
/// `local` (local recovery) where it has them, the others downloaded; only the files that the
/// subtask's key groups need (`needed_files`).
pub(crate) async fn fetch(
    config: &Configuration,
    snapshot_url: &str,
    assigned: OperatorRestore,
    tmp_dir: &FsPath,
    local: Option<&LocalCopies>,
) -> Result<OperatorRestoreData, String> {
    let dir = open_location(snapshot_url, config)?;
    let root = open_location(&parent_url(snapshot_url), config)?;
    let mut out = OperatorRestoreData::default();
    // Every file to download, of every handle: (from the job directory (shared/) or from the
    // snapshot's, its key there, where it goes).
    let mut downloads: Vec<(bool, String, std::path::PathBuf)> = Vec::new();
    for h in assigned.keyed.iter().filter(|h| h.format == FORMAT_ROCKS_INCREMENTAL) {
        let range = range_of(h);
        let read = assigned.range.and_then(|mine| mine.intersect(&range));
        let needed = needed_files(h, read);
        if let (Some(r), true) = (read, needed.contains(&false)) {
            // Level-0 files span every key group: each is fetched, and read merged with the rest.
            let level0 = h.shared_file_spans.chunks(3).filter(|s| s[0] == 0).count();
            tracing::info!(
                "Restore: {} of {} SST files of key groups {}-{} ({level0} at level 0) span key groups {}-{}; only those are fetched.",
                needed.iter().filter(|&&n| n).count(),
                needed.len(),
                range.start,
                range.end,
                r.start,
                r.end
            );
        }
        let into = tmp_dir.join(format!("sluice-restore-{}", uuid::Uuid::new_v4().simple()));
        tokio::fs::create_dir_all(&into)
            .await
            .map_err(|e| format!("{}: {e}", into.display()))?;
        let shared = wanted_shared(h, &needed);
        let missing = match local {
            Some(copies) => {
                let (copies, into, wanted) = (copies.clone(), into.clone(), shared.clone());
                let missing = blocking(move || {
                    Ok(wanted
                        .into_iter()
                        .filter(|(own, name)| !copies.take(name, &into.join(own)))
                        .collect::<Vec<_>>())
                })
                .await?;
                tracing::info!(
                    "Local recovery: {} of {} SST files of key groups {}-{} taken from local copies, {} downloaded.",
                    shared.len() - missing.len(),
                    shared.len(),
                    range.start,
                    range.end,
                    missing.len()
                );
                missing
            }
            None => shared.clone(),
        };
        downloads.extend(
            missing
                .into_iter()
                .map(|(own, name)| (true, format!("shared/{name}"), into.join(own))),
        );
        downloads.extend(h.private_files.iter().map(|f| {
            let name = f.rsplit('/').next().unwrap_or(f);
            (false, f.clone(), into.join(name))
        }));
        out.rocks_dirs.push(RestoredRocksDir {
            dir: into,
            range,
            shared,
            partial: needed.contains(&false),
        });
    }
    let (root, dir) = (&root, &dir);
    let mine = assigned.range;
    let fulls: Vec<StateHandle> = assigned
        .keyed
        .iter()
        .filter(|h| h.format != FORMAT_ROCKS_INCREMENTAL)
        .cloned()
        .collect();
    out.full = stream::iter(
        fulls
            .into_iter()
            .map(|h| async move { fetch_full(dir, snapshot_url, &h, mine, local).await }),
    )
    .buffer_unordered(TRANSFERS)
    .try_filter_map(|part| async move { Ok(part) })
    .try_collect()
    .await?;
    stream::iter(downloads.into_iter().map(|(is_shared, key, path)| async move {
        let from = if is_shared { root } else { dir };
        from.get_into(&key, &path).await
    }))
    .buffer_unordered(TRANSFERS)
    .try_collect::<Vec<u64>>()
    .await?;
    out.lists = assigned;
    Ok(out)
}

fn range_of(h: &StateHandle) -> KeyGroupRange {
    KeyGroupRange::new(h.key_group_start, h.key_group_end)
}

/// The name of a full snapshot's local copy, and the prefix its lineage (the same file of
/// other checkpoints) shares: the file's name in the snapshot directory, then the directory's.
fn full_copy_name(snapshot_url: &str, path: &str) -> (String, String) {
    let snapshot = snapshot_url
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(snapshot_url);
    let lineage = format!("{}{}@", super::local_copy::FULL, path.replace('/', "_"));
    (format!("{lineage}{snapshot}"), lineage)
}

/// Reads of a full handle only the bytes of the key groups the subtask owns (`mine`; all of
/// them when unknown), decompressed: (plain blocks, their key groups, where each begins).
/// They come from the handle's local copy (local recovery) when `local` has it, else from
/// the snapshot directory `dir` at `snapshot_url`. `None` when it holds none of them.
async fn fetch_full(
    dir: &StorageLocation,
    snapshot_url: &str,
    h: &StateHandle,
    mine: Option<KeyGroupRange>,
    local: Option<&LocalCopies>,
) -> Result<Option<(Vec<u8>, KeyGroupRange, Vec<u64>)>, String> {
    let range = range_of(h);
    let Some((kgs, bytes, offsets)) = byte_range(range, &h.key_group_offsets, h.size, mine.unwrap_or(range))
        .map_err(|e| format!("{}: {e}", h.path))?
    else {
        return Ok(None);
    };
    let kept = match local.cloned() {
        Some(copies) => {
            let (copy, _) = full_copy_name(snapshot_url, &h.path);
            let (size, wanted) = (h.size, bytes.clone());
            blocking(move || Ok(copies.read_range(&copy, size, wanted))).await?
        }
        None => None,
    };
    let data = match kept {
        Some(data) => {
            tracing::info!(
                "Local recovery: key groups {}-{} of {} read from its local copy.",
                kgs.start,
                kgs.end,
                h.path
            );
            Bytes::from(data)
        }
        None if bytes.start == 0 && bytes.end == h.size => dir.get(&h.path).await?,
        None => dir.get_range(&h.path, bytes).await?,
    };
    let (data, offsets) = match h.compression.as_str() {
        "" => (data.to_vec(), offsets),
        ZSTD => {
            let path = h.path.clone();
            blocking(move || decompress_blocks(&data, &offsets).map_err(|e| format!("{path}: {e}"))).await?
        }
        other => {
            return Err(format!(
                "keyed state file {} is compressed with \"{other}\", which this version cannot read",
                h.path
            ))
        }
    };
    Ok(Some((data, kgs, offsets)))
}

/// The shared SST files (by name) that restoring `assigned` needs.
pub(crate) fn needed_shared(assigned: &[OperatorRestore]) -> HashSet<String> {
    let mut names = HashSet::new();
    for a in assigned {
        for h in a.keyed.iter().filter(|h| h.format == FORMAT_ROCKS_INCREMENTAL) {
            let range = range_of(h);
            let read = a.range.and_then(|mine| mine.intersect(&range));
            names.extend(
                wanted_shared(h, &needed_files(h, read))
                    .into_iter()
                    .map(|(_, name)| name),
            );
        }
    }
    names
}

/// Before a rescale's stop, or in a standby round: downloads into `copies` the shared SST
/// files `names` (`needed_shared`) of the completed checkpoint at `snapshot_url` that are not
/// there yet, so a restore takes them locally (`fetch`). Each file is written under a staging
/// name and adopted whole. Returns the files and bytes downloaded.
pub(crate) async fn prefetch(
    config: &Configuration,
    snapshot_url: &str,
    names: &HashSet<String>,
    copies: &LocalCopies,
) -> Result<(u32, u64), String> {
    let root = open_location(&parent_url(snapshot_url), config)?;
    let names: Vec<String> = names.iter().filter(|n| !copies.has(n)).cloned().collect();
    let files = names.len() as u32;
    let root = &root;
    let bytes = stream::iter(names.into_iter().map(|name| async move {
        let staging = {
            let (copies, name) = (copies.clone(), name.clone());
            blocking(move || copies.staging(&name)).await?
        };
        let size = match root.get_into(&format!("shared/{name}"), &staging).await {
            Ok(size) => size,
            Err(e) => {
                let _ = tokio::fs::remove_file(&staging).await;
                return Err(e);
            }
        };
        let copies = copies.clone();
        blocking(move || copies.adopt(&staging, &name)).await?;
        Ok::<u64, String>(size)
    }))
    .buffer_unordered(TRANSFERS)
    .try_fold(0u64, |sum, size| async move { Ok(sum + size) })
    .await?;
    Ok((files, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle(spans: &[(u32, u32, u32)]) -> StateHandle {
        StateHandle {
            shared_files: (0..spans.len().max(3)).map(|i| format!("shared/x-{i}.sst")).collect(),
            shared_file_spans: spans.iter().flat_map(|&(l, a, b)| [l, a, b]).collect(),
            format: FORMAT_ROCKS_INCREMENTAL.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_read_fetches_the_files_spanning_its_key_groups_and_every_level_zero_file() {
        let h = handle(&[(6, 0, 31), (6, 32, 63), crate::state::snapshot::ALL_KEY_GROUPS]);
        let read = |h: &StateHandle, a, b| needed_files(h, Some(KeyGroupRange::new(a, b)));
        assert_eq!(read(&h, 40, 63), [false, true, true]);
        assert_eq!(read(&h, 31, 32), [true, true, true]);
        assert_eq!(read(&h, 0, 10), [true, false, true]);
        // A seek to 31 lands on the level's first file ending at or after it, (40, 50), though
        // it lies after the read; (60, 70) does not, nor does level 5's (0, 20).
        let gap = handle(&[(6, 0, 30), (6, 40, 50), (6, 60, 70), (5, 0, 20), (5, 31, 34)]);
        assert_eq!(read(&gap, 31, 34), [false, true, false, false, true]);
        // A file reaching the last key group is always needed; with spans not recorded (an
        // older snapshot), every file is.
        let tail = handle(&[(6, 0, 31), (5, 70, 65535), (6, 32, 40), (6, 64, 69)]);
        assert_eq!(read(&tail, 0, 40), [true, true, true, false]);
        assert_eq!(read(&handle(&[]), 40, 63), [true, true, true]);
    }

    #[tokio::test]
    async fn a_prefetch_downloads_only_the_needed_files_not_kept_locally() {
        let dir = tempfile::tempdir().unwrap();
        let job = dir.path().join("job");
        std::fs::create_dir_all(job.join("shared")).unwrap();
        for i in 0..3 {
            std::fs::write(job.join(format!("shared/x-{i}.sst")), format!("sst {i}")).unwrap();
        }
        let copies = LocalCopies::new(&dir.path().join("local"), "job");
        // x-2 spans every key group and is here already; x-0 lies before the read.
        let kept = dir.path().join("kept.sst");
        std::fs::write(&kept, b"sst 2").unwrap();
        copies.keep("x-2.sst", &kept).unwrap();
        let old_instance = |spans: &[(u32, u32, u32)]| StateHandle {
            key_group_start: 0,
            key_group_end: 127,
            ..handle(spans)
        };
        let assigned = OperatorRestore {
            keyed: vec![old_instance(&[
                (6, 0, 31),
                (6, 32, 63),
                crate::state::snapshot::ALL_KEY_GROUPS,
            ])],
            lists: Vec::new(),
            range: Some(KeyGroupRange::new(40, 63)),
        };
        let url = format!("file://{}/chk-3", job.display());
        let config = Configuration::default();
        let needed = needed_shared(std::slice::from_ref(&assigned));
        assert_eq!(needed, HashSet::from(["x-1.sst".to_string(), "x-2.sst".to_string()]));
        let got = prefetch(&config, &url, &needed, &copies).await.unwrap();
        assert_eq!(got, (1, 5));
        assert!(copies.has("x-1.sst") && !copies.has("x-0.sst"));
        // Everything needed is here now: a second prefetch moves nothing.
        assert_eq!(prefetch(&config, &url, &needed, &copies).await.unwrap(), (0, 0));
        // A file the storage lacks fails the prefetch, by its name, and leaves no copy, not
        // even a half-written one.
        let missing = needed_shared(&[OperatorRestore {
            keyed: vec![old_instance(&[(6, 0, 31), (6, 32, 63), (6, 64, 65), (6, 66, 70)])],
            lists: Vec::new(),
            range: Some(KeyGroupRange::new(64, 70)),
        }]);
        let missing = prefetch(&config, &url, &missing, &copies).await.unwrap_err();
        assert!(missing.contains("x-3.sst"), "{missing}");
        assert!(!copies.has("x-3.sst"));
        let left: Vec<_> = std::fs::read_dir(dir.path().join("local/job"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left.len(), 2, "{left:?}");
    }

    #[tokio::test]
    async fn a_compressed_full_snapshot_restores_only_the_subtasks_key_groups() {
        use sluice_common::state::key_group_blocks::BlocksWriter;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}/job/chk-1", dir.path().display());
        let mut config = Configuration::default();
        config.set(SNAPSHOT_COMPRESSION.key, "true", sluice_common::config::Origin::Flag);
        let copies = LocalCopies::new(&dir.path().join("local"), "job");
        // Two old subtasks of key groups 0-63 and 64-127, ten entries per key group.
        let mut handles = Vec::new();
        for (subtask, range) in [(0, KeyGroupRange::new(0, 63)), (1, KeyGroupRange::new(64, 127))] {
            let mut w = BlocksWriter::new(range);
            for kg in range.iter() {
                for i in 0..10u32 {
                    w.entry(kg, &i.to_be_bytes(), format!("0.{kg:03}{i:020}").as_bytes())
                        .unwrap();
                }
            }
            let (data, offsets) = w.finish();
            let plain = data.len() as u64;
            let snapshot = OperatorSnapshot {
                keyed: Some(KeyedSnapshot::Full { range, data, offsets }),
                lists: Vec::new(),
            };
            // The first old subtask keeps a local copy too (local backup).
            let (state, written) = upload(
                &config,
                &url,
                "agg",
                subtask,
                snapshot,
                (subtask == 0).then_some(&copies),
            )
            .await
            .unwrap();
            assert!(written < plain / 2, "{written} of {plain} bytes written");
            assert_eq!(state.keyed[0].compression, ZSTD);
            handles.extend(state.keyed);
        }
        // The first file's handle, with a codec this version does not know.
        let mut odd = handles[0].clone();
        odd.compression = "lzma".into();
        // The middle one of three new subtasks: key groups 43-85, from both files.
        let assigned = OperatorRestore {
            keyed: handles,
            lists: Vec::new(),
            range: Some(KeyGroupRange::new(43, 85)),
        };
        let got = fetch(&config, &url, assigned.clone(), dir.path(), None).await.unwrap();
        // With local recovery, the first file's key groups come from its local copy: the
        // same bytes, though the stored file is gone now.
        let stored = dir.path().join("job/chk-1/agg-0-keyed");
        let moved = dir.path().join("moved");
        std::fs::rename(&stored, &moved).unwrap();
        let local = fetch(&config, &url, assigned.clone(), dir.path(), Some(&copies))
            .await
            .unwrap();
        let mut both = [got.full.clone(), local.full];
        both.iter_mut().for_each(|f| f.sort_by_key(|(_, r, _)| r.start));
        assert!(both[0] == both[1]);
        // Without the copy (another taskmanager), the stored file is read: moved away, the
        // restore fails and names it.
        let other = LocalCopies::new(&dir.path().join("other"), "job");
        let err = fetch(&config, &url, assigned, dir.path(), Some(&other))
            .await
            .err()
            .unwrap();
        assert!(err.contains("agg-0-keyed"), "{err}");
        std::fs::rename(&moved, &stored).unwrap();
        let ranges: Vec<KeyGroupRange> = got.full.iter().map(|(_, r, _)| *r).collect();
        assert!(ranges.contains(&KeyGroupRange::new(43, 63)) && ranges.contains(&KeyGroupRange::new(64, 85)));
        let mut seen = Vec::new();
        crate::state::for_each_full(&got, KeyGroupRange::new(0, 127), |kg, _, v| {
            assert!(v.starts_with(format!("0.{kg:03}").as_bytes()));
            seen.push(kg);
            Ok(())
        })
        .unwrap();
        seen.sort();
        seen.dedup();
        assert_eq!(seen, (43..=85).collect::<Vec<u32>>());
        // A codec this version does not know is an error that names the file.
        let unknown = OperatorRestore {
            keyed: vec![odd],
            lists: Vec::new(),
            range: None,
        };
        let err = fetch(&config, &url, unknown, dir.path(), None).await.err().unwrap();
        assert!(err.contains("agg-0-keyed") && err.contains("lzma"), "{err}");
    }
}
