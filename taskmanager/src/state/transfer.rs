//! Moving state between a subtask and checkpoint storage: the asynchronous part of a
//! checkpoint (write the snapshot's files, describe them with state handles) and, on restore,
//! fetching the handles a subtask was assigned. Exclusive files go to the snapshot's directory
//! (`chk-N/` or the savepoint's), incremental SST files to `<job>/shared/`; handle paths are
//! relative (to the snapshot directory, or to the job directory for `shared/…`), so savepoints
//! can be moved. Local files are read and written with `tokio::fs`, off the async workers.

use std::path::Path as FsPath;

use bytes::Bytes;
use sluice_common::config::Configuration;
use sluice_common::proto::checkpoint::{StateHandle, SubtaskState};
use sluice_common::state::assignment::OperatorRestore;
use sluice_common::state::KeyGroupRange;
use sluice_common::storage::{open_location, parent_url};

use super::snapshot::{KeyedSnapshot, OperatorRestoreData, OperatorSnapshot};

pub(crate) const FORMAT_FULL: &str = "full";
pub(crate) const FORMAT_ROCKS_INCREMENTAL: &str = "rocksdb-incremental";

/// Writes one operator's snapshot of subtask `subtask`; returns its handles and bytes written.
pub(crate) async fn upload(
    config: &Configuration,
    target_url: &str,
    uid: &str,
    subtask: u32,
    snapshot: OperatorSnapshot,
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
            let size = data.len() as u64;
            target.put(&name, Bytes::from(data)).await?;
            written += size;
            state.keyed.push(StateHandle {
                path: name,
                size,
                key_group_start: range.start,
                key_group_end: range.end,
                key_group_offsets: offsets,
                format: FORMAT_FULL.into(),
                ..Default::default()
            });
        }
        Some(KeyedSnapshot::RocksIncremental {
            range,
            dir,
            ssts,
            private,
        }) => {
            let target = open_location(target_url, config)?;
            let root = open_location(&parent_url(target_url), config)?;
            let mut handle = StateHandle {
                key_group_start: range.start,
                key_group_end: range.end,
                format: FORMAT_ROCKS_INCREMENTAL.into(),
                ..Default::default()
            };
            for (local, shared, uploaded) in ssts {
                if !uploaded {
                    let data = read_local(&dir.join(&local)).await?;
                    written += data.len() as u64;
                    root.put(&format!("shared/{shared}"), data).await?;
                }
                handle.shared_files.push(format!("shared/{shared}"));
            }
            for name in private {
                let data = read_local(&dir.join(&name)).await?;
                written += data.len() as u64;
                let stored = format!("{uid}-{subtask}-db/{name}");
                target.put(&stored, data).await?;
                handle.private_files.push(stored);
            }
            handle.size = written;
            state.keyed.push(handle);
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

/// Fetches the keyed handles of `assigned` from the snapshot at `snapshot_url`; incremental
/// RocksDB handles are downloaded into fresh directories under `tmp_dir`.
pub(crate) async fn fetch(
    config: &Configuration,
    snapshot_url: &str,
    assigned: OperatorRestore,
    tmp_dir: &FsPath,
) -> Result<OperatorRestoreData, String> {
    let dir = open_location(snapshot_url, config)?;
    let mut out = OperatorRestoreData::default();
    for h in &assigned.keyed {
        let range = KeyGroupRange::new(h.key_group_start, h.key_group_end);
        if h.format == FORMAT_ROCKS_INCREMENTAL {
            let root = open_location(&parent_url(snapshot_url), config)?;
            let local = tmp_dir.join(format!("sluice-restore-{}", uuid::Uuid::new_v4().simple()));
            tokio::fs::create_dir_all(&local)
                .await
                .map_err(|e| format!("{}: {e}", local.display()))?;
            for f in &h.shared_files {
                let data = root.get(f).await?;
                let name = f.rsplit('/').next().unwrap_or(f);
                // Shared names are `<instance>-<file>.sst`; RocksDB wants the file's own name.
                let own = name.split_once('-').map(|(_, n)| n).unwrap_or(name);
                tokio::fs::write(local.join(own), &data)
                    .await
                    .map_err(|e| format!("{}: {e}", local.display()))?;
            }
            for f in &h.private_files {
                let data = dir.get(f).await?;
                let name = f.rsplit('/').next().unwrap_or(f);
                tokio::fs::write(local.join(name), &data)
                    .await
                    .map_err(|e| format!("{}: {e}", local.display()))?;
            }
            out.rocks_dirs.push((local, range));
        } else {
            let data = dir.get(&h.path).await?;
            out.full.push((data.to_vec(), range, h.key_group_offsets.clone()));
        }
    }
    out.lists = assigned;
    Ok(out)
}
