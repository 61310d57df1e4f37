//! Split enumeration on the jobmanager (Flink's `SplitEnumerator`): one enumerator per source
//! vertex discovers splits, deals them to the source's readers at deployment, takes splits back
//! when a reader fails or the source is rescaled, and snapshots what it holds unassigned.
//! Readers restored from a checkpoint keep their own splits (with positions); the enumerator
//! only deals what no reader holds. `RoundRobinEnumerator` is the first implementation: its
//! splits are known up front and split k goes to reader k mod parallelism.

use sluice_common::failure::ClassedError;
use sluice_common::job::{JobGraph, NodeKind};

use crate::contract::Split;
use crate::registry::Registry;

/// The splits dealt to one source subtask at deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct DealtSplits {
    /// The source node's uid.
    pub uid: String,
    pub subtask: u32,
    pub splits: Vec<Split>,
}

/// At deployment, on the jobmanager: every source of `graph` gets its enumerator, which
/// discovers its splits and deals them over the source's subtasks.
pub fn deal_splits(graph: &JobGraph, registry: &Registry) -> Result<Vec<DealtSplits>, ClassedError> {
    let mut out = Vec::new();
    for node in &graph.nodes {
        let NodeKind::Source { spec } = &node.kind else {
            continue;
        };
        let mut enumerator = registry.source(spec)?.enumerator(spec, node.parallelism)?;
        enumerator
            .discover()
            .map_err(|e| e.context(format!("listing the splits of source '{}'", node.id)))?;
        for (subtask, splits) in enumerator.assign(node.parallelism).into_iter().enumerate() {
            out.push(DealtSplits {
                uid: node.uid.clone(),
                subtask: subtask as u32,
                splits,
            });
        }
    }
    Ok(out)
}

pub trait SplitEnumerator: Send {
    /// Looks for splits not seen before (all of them on the first call) and holds them
    /// unassigned; returns how many it found.
    fn discover(&mut self) -> Result<usize, ClassedError>;

    /// Deals every unassigned split over `readers` readers: the splits of each reader.
    fn assign(&mut self, readers: u32) -> Vec<Vec<Split>>;

    /// Splits of a reader that failed or went away come back, to be dealt again.
    fn add_splits_back(&mut self, splits: Vec<Split>);

    /// The splits it holds unassigned (its state in a checkpoint).
    fn snapshot_state(&self) -> Vec<Split>;
}

/// What lists a source's splits, once.
type ListSplits = Box<dyn FnOnce() -> Result<Vec<Split>, ClassedError> + Send>;

/// Splits listed once, dealt round robin in the order they were listed.
pub struct RoundRobinEnumerator {
    list: Option<ListSplits>,
    unassigned: Vec<Split>,
}

impl RoundRobinEnumerator {
    /// `list` gives every split, once, on the first `discover`.
    pub fn new(list: impl FnOnce() -> Result<Vec<Split>, ClassedError> + Send + 'static) -> Self {
        RoundRobinEnumerator {
            list: Some(Box::new(list)),
            unassigned: Vec::new(),
        }
    }
}

impl SplitEnumerator for RoundRobinEnumerator {
    fn discover(&mut self) -> Result<usize, ClassedError> {
        let Some(list) = self.list.take() else {
            return Ok(0);
        };
        let found = list()?;
        let n = found.len();
        self.unassigned.extend(found);
        Ok(n)
    }

    fn assign(&mut self, readers: u32) -> Vec<Vec<Split>> {
        let readers = readers.max(1) as usize;
        let mut out = vec![Vec::new(); readers];
        for (k, split) in std::mem::take(&mut self.unassigned).into_iter().enumerate() {
            out[k % readers].push(split);
        }
        out
    }

    fn add_splits_back(&mut self, splits: Vec<Split>) {
        self.unassigned.extend(splits);
    }

    fn snapshot_state(&self) -> Vec<Split> {
        self.unassigned.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn splits(n: u8) -> Vec<Split> {
        (0..n).map(|i| vec![i]).collect()
    }

    #[test]
    fn deals_round_robin_once_and_takes_splits_back() {
        let mut e = RoundRobinEnumerator::new(|| Ok(splits(5)));
        assert_eq!(e.discover().ok(), Some(5));
        assert_eq!(e.discover().ok(), Some(0), "splits are listed once");
        assert_eq!(e.snapshot_state().len(), 5);
        let dealt = e.assign(2);
        assert_eq!(dealt, vec![vec![vec![0], vec![2], vec![4]], vec![vec![1], vec![3]]]);
        assert!(e.snapshot_state().is_empty());
        // A reader failed: its splits are dealt again to the readers there are now.
        e.add_splits_back(dealt[1].clone());
        assert_eq!(e.snapshot_state(), vec![vec![1], vec![3]]);
        assert_eq!(e.assign(3), vec![vec![vec![1]], vec![vec![3]], vec![]]);
    }

    #[test]
    fn a_listing_failure_keeps_its_class() {
        let mut e = RoundRobinEnumerator::new(|| Err(ClassedError::config("no such directory")));
        let err = e.discover().unwrap_err();
        assert_eq!(err.class, sluice_common::failure::FailureClass::Config);
    }
}
