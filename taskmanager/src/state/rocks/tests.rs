use super::*;
use crate::state::snapshot::{KeyedSnapshot, SnapshotKind, ALL_KEY_GROUPS};
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
fn a_restores_hold_on_compactions_ends_with_its_timer_unless_a_stop_holds_them() {
    let dir = tempfile::tempdir().unwrap();
    let restore = OperatorRestoreData {
        rocks_dirs: vec![old_subtask(dir.path(), (0, 63))],
        ..Default::default()
    };
    let mut store = RocksStore::open(&settings(dir.path(), (0, 63)), Some(&restore)).unwrap();
    store.resume_compactions_after(std::time::Duration::ZERO);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while *store.compactions_held.lock().unwrap() != Held::No && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(
        *store.compactions_held.lock().unwrap(),
        Held::No,
        "the timer resumed them"
    );
    // A stop's hold is not the timer's to end.
    store.snapshot(2, SnapshotKind::BeforeStop).unwrap();
    store.resume_compactions_after(std::time::Duration::ZERO);
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(*store.compactions_held.lock().unwrap(), Held::Stop);
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
    assert_eq!(*store.compactions_held.lock().unwrap(), Held::Stop);
    // Each checkpoint flushes a level-0 file; past the trigger (4) nothing compacts them.
    for id in 2..=6 {
        flush(&mut store, id, SnapshotKind::Stop);
    }
    store.db().unwrap().flush().unwrap();
    assert_eq!(level0(&store), 6, "held: every flush stays in level 0");
    flush(&mut store, 7, SnapshotKind::Checkpoint);
    assert_eq!(
        *store.compactions_held.lock().unwrap(),
        Held::No,
        "a periodic checkpoint resumes them"
    );
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
    // Restored: compactions held until its first periodic checkpoint (below).
    assert_eq!(*store.compactions_held.lock().unwrap(), Held::Restore);
    assert_eq!(keys(&store), (40..=100).collect::<Vec<_>>());
    assert_eq!(store.get(70, b"k70").unwrap().as_deref(), Some(&b"v"[..]));
    assert_eq!(store.get(41, b"k41").unwrap().as_deref(), Some(&b"v"[..]));
    assert_eq!(store.get(110, b"k110").unwrap(), None);
    // Its next checkpoint refers to the opened files by their old names, not uploading them.
    let KeyedSnapshot::RocksIncremental { ssts, .. } = store.snapshot(2, SnapshotKind::Checkpoint).unwrap() else {
        panic!("not incremental");
    };
    assert_eq!(
        *store.compactions_held.lock().unwrap(),
        Held::No,
        "the checkpoint resumed them"
    );
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
