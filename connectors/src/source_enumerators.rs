//! The split enumerators of one job attempt, one per source (held by the jobmanager for as
//! long as the attempt runs): started fresh or from a checkpoint's enumerator states, they deal
//! splits at deployment, look for new splits while the job runs (sources that discover), and
//! snapshot their states when a checkpoint is triggered.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use sluice_common::failure::ClassedError;
use sluice_common::job::{JobGraph, NodeKind};

use crate::enumerator::SplitEnumerator;
use crate::registry::Registry;
use crate::Split;

/// The splits dealt to one source subtask.
#[derive(Debug, Clone, PartialEq)]
pub struct DealtSplits {
    /// The source node's uid.
    pub uid: String,
    pub subtask: u32,
    pub splits: Vec<Split>,
}

struct SourceEnumerator {
    uid: String,
    /// The source's id in the job file (for messages).
    id: String,
    parallelism: u32,
    enumerator: Box<dyn SplitEnumerator>,
}

/// What a restored checkpoint tells the enumerators.
#[derive(Debug, Default)]
pub struct RestoredEnumerators {
    /// Enumerator states by source uid.
    pub states: HashMap<String, Vec<u8>>,
    /// Uids of the operators whose readers restore state from the checkpoint. A source among
    /// them without an enumerator state was checkpointed before enumerators had state: its
    /// readers hold every split there was, so nothing listed now is dealt again.
    pub restored_uids: HashSet<String>,
}

#[derive(Default)]
pub struct SourceEnumerators {
    sources: Vec<SourceEnumerator>,
}

impl SourceEnumerators {
    /// One enumerator per source of `graph`, each restored from `restored` where it has
    /// state; returns them with the splits they deal now.
    pub fn start(
        graph: &JobGraph,
        registry: &Registry,
        restored: &RestoredEnumerators,
    ) -> Result<(SourceEnumerators, Vec<DealtSplits>), ClassedError> {
        let mut sources = Vec::new();
        for node in &graph.nodes {
            let NodeKind::Source { spec } = &node.kind else {
                continue;
            };
            let mut enumerator = registry.source(spec)?.enumerator(spec, node.parallelism)?;
            let named = |e: ClassedError, doing: &str| e.context(format!("{doing} of source '{}'", node.id));
            match restored.states.get(&node.uid) {
                Some(state) => enumerator
                    .restore_state(state)
                    .map_err(|e| named(e, "restoring the split enumerator"))?,
                None if restored.restored_uids.contains(&node.uid) => {
                    enumerator.discover().map_err(|e| named(e, "listing the splits"))?;
                    let _held_by_restored_readers = enumerator.assign(1);
                }
                None => {}
            }
            sources.push(SourceEnumerator {
                uid: node.uid.clone(),
                id: node.id.clone(),
                parallelism: node.parallelism,
                enumerator,
            });
        }
        let mut all = SourceEnumerators { sources };
        let dealt = all.deal(|_| true)?;
        Ok((all, dealt))
    }

    /// Discovers new splits of the sources `which` selects and deals every unassigned split.
    fn deal(&mut self, which: impl Fn(&SourceEnumerator) -> bool) -> Result<Vec<DealtSplits>, ClassedError> {
        let mut out = Vec::new();
        for s in self.sources.iter_mut().filter(|s| which(s)) {
            s.enumerator
                .discover()
                .map_err(|e| e.context(format!("listing the splits of source '{}'", s.id)))?;
            for (subtask, splits) in s.enumerator.assign(s.parallelism).into_iter().enumerate() {
                if !splits.is_empty() {
                    out.push(DealtSplits {
                        uid: s.uid.clone(),
                        subtask: subtask as u32,
                        splits,
                    });
                }
            }
        }
        Ok(out)
    }

    /// While the job runs: new splits of the sources that discover, dealt.
    pub fn discover(&mut self) -> Result<Vec<DealtSplits>, ClassedError> {
        self.deal(|s| s.enumerator.discovery_interval().is_some())
    }

    /// How often `discover` should run (the shortest interval of the sources that discover).
    pub fn discovery_interval(&self) -> Option<Duration> {
        self.sources
            .iter()
            .filter_map(|s| s.enumerator.discovery_interval())
            .min()
    }

    /// Every enumerator's state, by source uid, for a checkpoint.
    /// Each source's split count, by uid.
    pub fn split_counts(&self) -> HashMap<String, usize> {
        self.sources
            .iter()
            .map(|s| (s.uid.clone(), s.enumerator.split_count()))
            .collect()
    }

    pub fn snapshot(&self) -> Vec<(String, Vec<u8>)> {
        self.sources
            .iter()
            .map(|s| (s.uid.clone(), s.enumerator.snapshot_state()))
            .collect()
    }
}

/// The splits a fresh start of `graph` deals (every source enumerated, nothing restored).
pub fn deal_splits(graph: &JobGraph, registry: &Registry) -> Result<Vec<DealtSplits>, ClassedError> {
    SourceEnumerators::start(graph, registry, &RestoredEnumerators::default()).map(|(_, dealt)| dealt)
}

#[cfg(test)]
mod tests {
    use sluice_common::job::GraphOptions;
    use sluice_frontend::compile_job;

    use super::*;

    fn graph(parallelism: u32) -> JobGraph {
        let job = "sources:\n  - id: g\n    connector: datagen\n    options: {number-of-rows: 100, splits: 5}\n    schema: [{name: n, type: bigint, expr: seq}]\nsinks:\n  - {id: o, input: g, connector: blackhole}\n";
        let options = GraphOptions {
            parallelism: Some(parallelism),
            ..GraphOptions::default()
        };
        compile_job(job, "g.yaml", &options, &Registry::builtin()).unwrap()
    }

    #[test]
    fn a_fresh_start_deals_every_split_and_a_restored_one_none_again() {
        let g = graph(2);
        let (enumerators, dealt) = SourceEnumerators::start(&g, &Registry::builtin(), &Default::default()).unwrap();
        assert_eq!(dealt.iter().map(|d| d.splits.len()).collect::<Vec<_>>(), vec![3, 2]);
        assert_eq!(enumerators.discovery_interval(), None);
        let restored = RestoredEnumerators {
            states: enumerators.snapshot().into_iter().collect(),
            restored_uids: HashSet::new(),
        };
        // Restored at another parallelism: the readers hold every split.
        let (_, dealt) = SourceEnumerators::start(&graph(3), &Registry::builtin(), &restored).unwrap();
        assert!(dealt.is_empty(), "{dealt:?}");
    }

    #[test]
    fn a_checkpoint_without_enumerator_state_leaves_the_splits_to_its_readers() {
        let g = graph(2);
        let restored = RestoredEnumerators {
            states: HashMap::new(),
            restored_uids: g.nodes.iter().map(|n| n.uid.clone()).collect(),
        };
        let (_, dealt) = SourceEnumerators::start(&g, &Registry::builtin(), &restored).unwrap();
        assert!(dealt.is_empty(), "{dealt:?}");
    }

    #[test]
    fn a_damaged_enumerator_state_names_the_source() {
        let g = graph(1);
        let restored = RestoredEnumerators {
            states: g.nodes.iter().map(|n| (n.uid.clone(), vec![7u8])).collect(),
            restored_uids: HashSet::new(),
        };
        let Err(e) = SourceEnumerators::start(&g, &Registry::builtin(), &restored) else {
            panic!("a damaged state fails the start")
        };
        assert!(e.message.contains("source 'g'"), "{e}");
    }
}
