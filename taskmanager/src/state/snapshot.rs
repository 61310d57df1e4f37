//! What an operator hands over at a barrier (the synchronous part of a checkpoint), before
//! `upload` makes it durable: its keyed state, full or as a RocksDB checkpoint directory, and
//! its operator list states.

use std::path::PathBuf;

use sluice_common::proto::checkpoint::{OperatorListState, RedistributionMode};
use sluice_common::state::assignment::OperatorRestore;
use sluice_common::state::KeyGroupRange;

/// Which snapshot a barrier asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SnapshotKind {
    /// A periodic checkpoint.
    Checkpoint,
    /// The checkpoint a rescale's stop follows (`Barrier::prepare`).
    BeforeStop,
    /// A stop-with-checkpoint: the subtask ends after it.
    Stop,
    /// A savepoint: self-contained.
    Savepoint,
}

impl SnapshotKind {
    pub(crate) fn of(barrier: &crate::network::Barrier) -> SnapshotKind {
        match (barrier.savepoint, barrier.stop, barrier.prepare) {
            (true, _, _) => SnapshotKind::Savepoint,
            (false, true, _) => SnapshotKind::Stop,
            (false, false, true) => SnapshotKind::BeforeStop,
            (false, false, false) => SnapshotKind::Checkpoint,
        }
    }

    pub(crate) fn is_savepoint(self) -> bool {
        self == SnapshotKind::Savepoint
    }
}

pub(crate) enum KeyedSnapshot {
    /// Per-key-group blocks (`key_group_blocks`).
    Full {
        range: KeyGroupRange,
        data: Vec<u8>,
        offsets: Vec<u64>,
    },
    /// A RocksDB checkpoint in `dir`: SST files named `shared_name(file)` in `shared/` are
    /// uploaded unless `already_uploaded`; other files are private to this checkpoint.
    RocksIncremental {
        range: KeyGroupRange,
        dir: PathBuf,
        /// (local file name, name under shared/, already uploaded).
        ssts: Vec<(String, String, bool)>,
        /// For each of `ssts`: its level and the first and last key group its keys span
        /// (`ALL_KEY_GROUPS` for a level-0 file or an unknown span).
        spans: Vec<(u32, u32, u32)>,
        private: Vec<String>,
        /// Where the SST files are also kept on this taskmanager (local recovery).
        local: Option<super::local_copy::LocalCopies>,
        /// Compactions the upload waits for (the first round of a rescale's prepare).
        settle: Option<super::rocks::CompactionsSettle>,
    },
}

#[derive(Default)]
pub(crate) struct OperatorSnapshot {
    pub keyed: Option<KeyedSnapshot>,
    pub lists: Vec<OperatorListState>,
}

impl OperatorSnapshot {
    pub(crate) fn is_empty(&self) -> bool {
        self.keyed.is_none() && self.lists.is_empty()
    }

    pub(crate) fn list(&mut self, name: &str, mode: RedistributionMode, elements: Vec<Vec<u8>>) {
        self.lists.push(OperatorListState {
            name: name.to_string(),
            mode: mode as i32,
            elements,
        });
    }
}

/// The restored state of one operator: its lists, and its keyed state already fetched.
#[derive(Default)]
pub(crate) struct OperatorRestoreData {
    pub lists: OperatorRestore,
    /// Full snapshots: (file bytes, its range, offsets); the reader keeps its own key groups.
    pub full: Vec<(Vec<u8>, KeyGroupRange, Vec<u64>)>,
    /// Incremental RocksDB snapshots, each downloaded into a local directory.
    pub rocks_dirs: Vec<RestoredRocksDir>,
}

/// An incremental RocksDB snapshot fetched into a local directory.
pub(crate) struct RestoredRocksDir {
    pub dir: PathBuf,
    /// The key groups the old subtask owned.
    pub range: KeyGroupRange,
    /// Its SST files: (file name in `dir`, name under shared/). A RocksDB instance opened on
    /// `dir` references them by these names instead of uploading them again.
    pub shared: Vec<(String, String)>,
    /// Only the files the subtask's key groups need were fetched (`transfer::needed_files`):
    /// `dir` is read between bounds, or opened as the base once its absent files are dropped
    /// (`rocks::drop_unfetched_files`).
    pub partial: bool,
}

/// The (level, first, last key group) of an SST file that any read may open: a level-0
/// file's, or one whose span is unknown.
pub(crate) const ALL_KEY_GROUPS: (u32, u32, u32) = (0, 0, u32::MAX);
