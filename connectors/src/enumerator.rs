//! Split enumeration on the jobmanager (Flink's `SplitEnumerator`): one enumerator per source
//! vertex discovers splits, deals them to the source's readers, takes splits back when a reader
//! fails, and snapshots its state (which splits some reader was given, which it still holds
//! unassigned) into every checkpoint. A restored enumerator deals only what no reader held at
//! that checkpoint, so splits found later (a new file, a new partition) reach restored readers
//! on top of their own. `RoundRobinEnumerator` is the first implementation: it lists splits by
//! a stable id and deals new ones round robin, in the order they were listed.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sluice_common::failure::ClassedError;

use crate::contract::Split;
use crate::splits::{FrameReader, FrameWriter};

/// A split as its enumerator lists it: an id that stays the same across listings (a file's
/// path, a topic-partition) and the split with its starting position.
pub type ListedSplit = (String, Split);

pub trait SplitEnumerator: Send {
    /// Looks for splits it has not seen (assigned or not) and holds them unassigned; returns
    /// how many it found.
    fn discover(&mut self) -> Result<usize, ClassedError>;

    /// Deals every unassigned split over `readers` readers: the splits of each reader.
    fn assign(&mut self, readers: u32) -> Vec<Vec<Split>>;

    /// Splits of a reader that failed or went away come back, to be dealt again.
    fn add_splits_back(&mut self, splits: Vec<ListedSplit>);

    /// Its state in a checkpoint.
    fn snapshot_state(&self) -> Vec<u8>;

    /// Takes up the state a checkpoint holds (before the first `discover`).
    fn restore_state(&mut self, state: &[u8]) -> Result<(), ClassedError>;

    /// How often to look for new splits while the job runs (`None`: splits are known once).
    fn discovery_interval(&self) -> Option<Duration> {
        None
    }

    /// How many splits it knows (assigned or not): a Kafka source's partitions. The
    /// autoscaler aligns a source's parallelism to a divisor of it.
    fn split_count(&self) -> usize;
}

/// What lists a source's splits (every time it is asked).
type ListSplits = Box<dyn Fn() -> Result<Vec<ListedSplit>, ClassedError> + Send>;

/// Which of `readers` readers gets a split, from its id (e.g. Kafka's `getSplitOwner`).
type PlaceSplit = Box<dyn Fn(&str, u32) -> usize + Send>;

/// Splits listed by id; new ones are dealt round robin in the order they were listed, or
/// placed by a connector's rule (`placing_by`).
pub struct RoundRobinEnumerator {
    list: ListSplits,
    place: Option<PlaceSplit>,
    /// Set once the job's first discovery is behind it: after a discovery, or when restored
    /// from a checkpoint (whose enumerator discovered before). Shared with the lister.
    started: Arc<AtomicBool>,
    interval: Option<Duration>,
    /// Ids of the splits some reader was given.
    assigned: BTreeSet<String>,
    unassigned: Vec<ListedSplit>,
}

/// The version byte that starts a `RoundRobinEnumerator` state.
const STATE_VERSION: u8 = 1;

impl RoundRobinEnumerator {
    /// `list` gives every split the source has now, by id.
    pub fn new(list: impl Fn() -> Result<Vec<ListedSplit>, ClassedError> + Send + 'static) -> Self {
        RoundRobinEnumerator {
            list: Box::new(list),
            place: None,
            started: Arc::default(),
            interval: None,
            assigned: BTreeSet::new(),
            unassigned: Vec::new(),
        }
    }

    /// Lists again every `interval` while the job runs.
    pub fn discovering_every(mut self, interval: Option<Duration>) -> Self {
        self.interval = interval;
        self
    }

    /// Shares whether the job's first discovery is behind it (e.g. Kafka reads partitions it
    /// finds later from the earliest offset, the first ones from the startup mode's).
    pub fn sharing_started(mut self, started: Arc<AtomicBool>) -> Self {
        self.started = started;
        self
    }

    /// Places each new split on the reader `place(id, readers)` names instead of round robin.
    pub fn placing_by(mut self, place: impl Fn(&str, u32) -> usize + Send + 'static) -> Self {
        self.place = Some(Box::new(place));
        self
    }

    fn known(&self, id: &str) -> bool {
        self.assigned.contains(id) || self.unassigned.iter().any(|(u, _)| u == id)
    }
}

impl SplitEnumerator for RoundRobinEnumerator {
    fn discover(&mut self) -> Result<usize, ClassedError> {
        let found: Vec<ListedSplit> = (self.list)()?.into_iter().filter(|(id, _)| !self.known(id)).collect();
        self.started.store(true, Ordering::Release);
        let n = found.len();
        self.unassigned.extend(found);
        Ok(n)
    }

    fn assign(&mut self, readers: u32) -> Vec<Vec<Split>> {
        let readers = readers.max(1) as usize;
        let mut out = vec![Vec::new(); readers];
        for (k, (id, split)) in std::mem::take(&mut self.unassigned).into_iter().enumerate() {
            let reader = match &self.place {
                Some(place) => place(&id, readers as u32).min(readers - 1),
                None => k % readers,
            };
            self.assigned.insert(id);
            out[reader].push(split);
        }
        out
    }

    fn split_count(&self) -> usize {
        self.assigned.len() + self.unassigned.len()
    }

    fn add_splits_back(&mut self, splits: Vec<ListedSplit>) {
        for (id, split) in splits {
            self.assigned.remove(&id);
            if !self.known(&id) {
                self.unassigned.push((id, split));
            }
        }
    }

    fn snapshot_state(&self) -> Vec<u8> {
        let mut w = FrameWriter::new(STATE_VERSION);
        w.count(self.assigned.len());
        for id in &self.assigned {
            w.frame(id.as_bytes());
        }
        w.count(self.unassigned.len());
        for (id, split) in &self.unassigned {
            w.frame(id.as_bytes());
            w.frame(split);
        }
        w.finish()
    }

    fn restore_state(&mut self, state: &[u8]) -> Result<(), ClassedError> {
        self.started.store(true, Ordering::Release);
        let mut r = FrameReader::new(state, STATE_VERSION, "split enumerator state")?;
        let mut assigned = BTreeSet::new();
        for _ in 0..r.count()? {
            assigned.insert(r.text()?);
        }
        let mut unassigned = Vec::new();
        for _ in 0..r.count()? {
            unassigned.push((r.text()?, r.frame()?.to_vec()));
        }
        r.done()?;
        self.assigned = assigned;
        self.unassigned = unassigned;
        Ok(())
    }

    fn discovery_interval(&self) -> Option<Duration> {
        self.interval
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    fn listed(ids: std::ops::Range<u8>) -> Vec<ListedSplit> {
        ids.map(|i| (format!("s{i}"), vec![i])).collect()
    }

    #[test]
    fn deals_round_robin_once_and_takes_splits_back() {
        let mut e = RoundRobinEnumerator::new(|| Ok(listed(0..5)));
        assert_eq!(e.discover().ok(), Some(5));
        assert_eq!(e.discover().ok(), Some(0), "a split is found once");
        let dealt = e.assign(2);
        assert_eq!(dealt, vec![vec![vec![0], vec![2], vec![4]], vec![vec![1], vec![3]]]);
        assert_eq!(e.discover().ok(), Some(0), "assigned splits are not found again");
        // A reader failed: its splits are dealt again to the readers there are now.
        e.add_splits_back(vec![("s1".into(), vec![1]), ("s3".into(), vec![3])]);
        assert_eq!(e.split_count(), 5, "splits handed back still count");
        assert_eq!(e.assign(3), vec![vec![vec![1]], vec![vec![3]], vec![]]);
        assert_eq!(e.split_count(), 5);
    }

    #[test]
    fn a_restored_enumerator_deals_only_what_no_reader_held() {
        let listing = Arc::new(Mutex::new(listed(0..3)));
        let source = Arc::clone(&listing);
        let list = move || Ok(source.lock().map(|l| l.clone()).unwrap_or_default());
        let mut e = RoundRobinEnumerator::new(list.clone());
        e.discover().unwrap();
        e.assign(2);
        // A fourth split appears after the checkpoint was taken.
        let state = e.snapshot_state();
        if let Ok(mut l) = listing.lock() {
            l.push(("s3".into(), vec![3]));
        }
        let mut restored = RoundRobinEnumerator::new(list);
        restored.restore_state(&state).unwrap();
        assert_eq!(restored.discover().ok(), Some(1));
        assert_eq!(restored.assign(2), vec![vec![vec![3]], vec![]]);
        // Unassigned splits survive the round trip too.
        e.add_splits_back(vec![("s0".into(), vec![0])]);
        let mut again = RoundRobinEnumerator::new(|| Ok(Vec::new()));
        again.restore_state(&e.snapshot_state()).unwrap();
        assert_eq!(again.assign(1), vec![vec![vec![0]]]);
    }

    #[test]
    fn a_damaged_state_is_named() {
        let mut e = RoundRobinEnumerator::new(|| Ok(Vec::new()));
        let err = e.restore_state(&[9, 0]).unwrap_err();
        assert!(err.message.contains("split enumerator state"), "{err}");
        let mut good = RoundRobinEnumerator::new(|| Ok(listed(0..2)));
        good.discover().unwrap();
        let state = good.snapshot_state();
        let err = e.restore_state(&state[..state.len() - 1]).unwrap_err();
        assert!(err.message.contains("ends early"), "{err}");
    }

    #[test]
    fn a_listing_failure_keeps_its_class() {
        let mut e = RoundRobinEnumerator::new(|| Err(ClassedError::config("no such directory")));
        let err = e.discover().unwrap_err();
        assert_eq!(err.class, sluice_common::failure::FailureClass::Config);
    }

    #[test]
    fn the_first_discovery_is_behind_after_a_discovery_or_a_restore() {
        let started = Arc::new(AtomicBool::new(false));
        let mut e = RoundRobinEnumerator::new(|| Ok(listed(0..2))).sharing_started(started.clone());
        assert!(!started.load(Ordering::Acquire));
        e.discover().unwrap();
        assert!(started.load(Ordering::Acquire));
        let state = e.snapshot_state();
        let again = Arc::new(AtomicBool::new(false));
        let mut restored = RoundRobinEnumerator::new(|| Ok(listed(0..3))).sharing_started(again.clone());
        restored.restore_state(&state).unwrap();
        assert!(again.load(Ordering::Acquire), "a restored enumerator discovered before");
    }
}
