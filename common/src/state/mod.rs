//! What the taskmanager's state backends and the jobmanager's checkpoint coordinator agree on
//! (DESIGN §7): the backend-independent keyed snapshot format (`key_group_blocks`) and how a
//! snapshot's state is assigned to the subtasks of a restored job (`assignment`), by key-group
//! intersection for keyed state and by Flink's even-split or union for operator lists.

pub mod assignment;
pub mod batch_ipc;
pub mod key_group_blocks;

/// An inclusive key-group range, as Flink's `KeyGroupRange`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyGroupRange {
    pub start: u32,
    pub end: u32,
}

impl KeyGroupRange {
    pub fn new(start: u32, end: u32) -> Self {
        KeyGroupRange { start, end }
    }

    /// The range subtask `i` of `parallelism` owns.
    pub fn of_subtask(max_parallelism: u32, parallelism: u32, i: u32) -> Self {
        let (start, end) = crate::key_groups::key_group_range(max_parallelism, parallelism, i);
        KeyGroupRange { start, end }
    }

    pub fn contains(&self, kg: u32) -> bool {
        self.start <= kg && kg <= self.end
    }

    pub fn intersect(&self, other: &KeyGroupRange) -> Option<KeyGroupRange> {
        let (s, e) = (self.start.max(other.start), self.end.min(other.end));
        (s <= e).then_some(KeyGroupRange { start: s, end: e })
    }

    pub fn len(&self) -> usize {
        (self.end - self.start + 1) as usize
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn iter(&self) -> impl Iterator<Item = u32> {
        self.start..=self.end
    }
}
