//! A subtask's side of checkpointing (DESIGN §8): the control messages it receives (a trigger
//! and new splits for sources, completion and abort notices for all), barrier alignment over
//! its input channels (exactly-once blocks a channel after its barrier until every channel
//! delivered it; at-least-once only counts), and the hand-over of snapshots to the executor,
//! which uploads them and acknowledges to the jobmanager.

use std::collections::HashSet;

use crate::network::Barrier;
use crate::state::snapshot::OperatorSnapshot;

#[derive(Debug)]
pub(crate) enum TaskControl {
    /// Sources: take a snapshot and emit this barrier; `true` = first emit the maximum
    /// watermark (stop-with-savepoint with drain).
    Trigger(Barrier, bool),
    /// Checkpoint N is complete; `true`: every subtask of the job snapshotted it after the end
    /// of its input (the job's final checkpoint).
    Complete(u64, bool),
    /// Checkpoint N was abandoned.
    Abort(u64),
    /// Sources: splits the jobmanager's enumerator found while the job runs, for the source
    /// with this uid. Queued in the same channel as triggers, so a barrier triggered after the
    /// jobmanager heard they were queued comes after them.
    AddSplits(String, Vec<sluice_connectors::Split>),
}

/// Receives a subtask's snapshots (the synchronous part is done), declines, and the news that
/// its input ended.
pub(crate) trait SnapshotAcker: Send + Sync {
    /// `end_of_input`: the snapshot was taken after the subtask's input ended.
    fn acknowledge(
        &self,
        barrier: &Barrier,
        snapshots: Vec<(String, OperatorSnapshot)>,
        sync_ms: u64,
        end_of_input: bool,
    );
    fn decline(&self, checkpoint_id: u64, reason: String);
    /// The subtask's input ended and it waits for its final checkpoint (FLIP-147); the
    /// jobmanager triggers that checkpoint once every subtask has said so.
    fn input_ended(&self);
}

/// What a barrier means for the task after alignment bookkeeping.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AlignStep {
    /// Keep going (block the channel if asked).
    Wait { block: bool },
    /// Every channel delivered it: snapshot now (and unblock).
    Snapshot(Barrier),
    /// An older alignment was overtaken by a newer barrier: it is declined and its channels
    /// unblocked; the new one has started.
    Overtaken { old: u64, block: bool },
    /// A barrier of an abandoned or finished checkpoint: ignore.
    Ignore,
}

pub(crate) struct Aligner {
    channels: usize,
    exactly_once: bool,
    pending: Option<(Barrier, HashSet<usize>)>,
    ended: HashSet<usize>,
    last: u64,
}

impl Aligner {
    pub(crate) fn new(channels: usize, exactly_once: bool) -> Self {
        Aligner {
            channels,
            exactly_once,
            pending: None,
            ended: HashSet::new(),
            last: 0,
        }
    }

    fn complete(&mut self) -> Option<Barrier> {
        let (b, seen) = self.pending.as_ref()?;
        if seen.union(&self.ended).count() >= self.channels {
            let b = b.clone();
            self.last = b.id;
            self.pending = None;
            return Some(b);
        }
        None
    }

    pub(crate) fn on_barrier(&mut self, ch: usize, b: Barrier) -> AlignStep {
        if b.id <= self.last {
            return AlignStep::Ignore;
        }
        let block = self.exactly_once;
        let mut overtaken = None;
        match &mut self.pending {
            Some((p, seen)) if p.id == b.id => {
                seen.insert(ch);
            }
            Some((p, _)) if p.id > b.id => return AlignStep::Ignore,
            other => {
                overtaken = other.as_ref().map(|(p, _)| p.id);
                *other = Some((b, HashSet::from([ch])));
            }
        }
        if let Some(done) = self.complete() {
            return AlignStep::Snapshot(done);
        }
        match overtaken {
            Some(old) => AlignStep::Overtaken { old, block },
            None => AlignStep::Wait { block },
        }
    }

    /// A channel ended: it owes no barrier any more.
    pub(crate) fn on_end(&mut self, ch: usize) -> Option<Barrier> {
        self.ended.insert(ch);
        self.complete()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(id: u64) -> Barrier {
        Barrier {
            id,
            timestamp_ms: 0,
            savepoint: false,
            target_url: "".into(),
            stop: false,
            prepare: false,
        }
    }

    #[test]
    fn aligns_over_every_channel() {
        let mut a = Aligner::new(3, true);
        assert_eq!(a.on_barrier(0, b(1)), AlignStep::Wait { block: true });
        assert_eq!(a.on_barrier(2, b(1)), AlignStep::Wait { block: true });
        assert_eq!(a.on_barrier(1, b(1)), AlignStep::Snapshot(b(1)));
        assert_eq!(a.on_barrier(1, b(1)), AlignStep::Ignore);
    }

    #[test]
    fn newer_barrier_overtakes_and_ended_channels_count() {
        let mut a = Aligner::new(2, false);
        assert_eq!(a.on_barrier(0, b(1)), AlignStep::Wait { block: false });
        assert_eq!(a.on_barrier(0, b(2)), AlignStep::Overtaken { old: 1, block: false });
        assert_eq!(a.on_barrier(1, b(1)), AlignStep::Ignore);
        assert_eq!(a.on_end(1), Some(b(2)));
        // One channel: immediate.
        let mut one = Aligner::new(1, true);
        assert_eq!(one.on_barrier(0, b(5)), AlignStep::Snapshot(b(5)));
    }
}
