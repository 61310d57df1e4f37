//! The sink at the end of a sink subtask's chain, run through the connector `Sink` contract as
//! Flink runs a two-phase-commit sink: batches are written; at a barrier the sink pre-commits
//! and its committables join the pending ones, which the snapshot holds (union list state, so
//! every subtask sees all of them after a restore); a completed checkpoint commits its own and
//! older pending committables. On restore each subtask recovers its share of the restored
//! committables before it reads anything. Without final checkpoints the end of input
//! pre-commits and commits at once; with them (FLIP-147) it commits nothing: the checkpoint
//! that covers the end of input does.

use sluice_common::proto::checkpoint::RedistributionMode;
use sluice_connectors::{Committable, Sink};

use crate::error::TaskError;
use crate::state::snapshot::{OperatorRestoreData, OperatorSnapshot};

/// The operator-list-state name a sink's pending committables are stored under.
pub(crate) const COMMITTABLES_STATE: &str = "sink-committables";

pub(crate) struct SinkStage {
    pub uid: String,
    sink: Box<dyn Sink>,
    /// (checkpoint id, its committables) not yet committed.
    pending: Vec<(u64, Vec<Committable>)>,
    /// Restored committables still to recover: (this subtask's share, all of them).
    restored: Option<(Vec<Committable>, Vec<Committable>)>,
}

impl SinkStage {
    pub(crate) fn new(
        uid: String,
        sink: Box<dyn Sink>,
        restore: Option<&OperatorRestoreData>,
        subtask: u32,
        parallelism: u32,
    ) -> SinkStage {
        let restored = restore.map(|r| {
            let all: Vec<Committable> = r.lists.list(COMMITTABLES_STATE).unwrap_or_default().to_vec();
            let mine = all
                .iter()
                .enumerate()
                .filter(|(i, _)| *i as u32 % parallelism.max(1) == subtask)
                .map(|(_, c)| c.clone())
                .collect();
            (mine, all)
        });
        SinkStage {
            uid,
            sink,
            pending: Vec::new(),
            restored,
        }
    }

    /// Before the subtask reads anything: open the sink, then commit this subtask's share of
    /// the restored committables (they were durable before their checkpoint completed).
    pub(crate) async fn recover(&mut self) -> Result<(), TaskError> {
        self.sink.open().await?;
        match self.restored.take() {
            Some((mine, all)) => self.sink.recover(mine, &all).await,
            None => Ok(()),
        }
    }

    pub(crate) async fn write(&mut self, batch: arrow::record_batch::RecordBatch) -> Result<(), TaskError> {
        self.sink.write(batch).await
    }

    /// At the barrier of `checkpoint_id`: pre-commit, and the snapshot of every pending
    /// committable.
    pub(crate) async fn snapshot(&mut self, checkpoint_id: u64) -> Result<OperatorSnapshot, TaskError> {
        let committables = self.sink.pre_commit(checkpoint_id).await?;
        if !committables.is_empty() {
            self.pending.push((checkpoint_id, committables));
        }
        let mut snap = OperatorSnapshot::default();
        snap.list(
            COMMITTABLES_STATE,
            RedistributionMode::Union,
            self.pending.iter().flat_map(|(_, c)| c.iter().cloned()).collect(),
        );
        Ok(snap)
    }

    /// Checkpoint `checkpoint_id` completed: commit what it and older ones hold.
    pub(crate) async fn checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<(), TaskError> {
        let (done, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|(c, _)| *c <= checkpoint_id);
        self.pending = rest;
        let committables: Vec<Committable> = done.into_iter().flat_map(|(_, c)| c).collect();
        if committables.is_empty() {
            return Ok(());
        }
        self.sink.commit(committables).await
    }

    pub(crate) async fn checkpoint_aborted(&mut self, checkpoint_id: u64) -> Result<(), TaskError> {
        self.sink.abort(checkpoint_id).await
    }

    /// End of input. Without final checkpoints everything written is committed now (a failure
    /// after this replays and commits again: at-least-once at the end, as before FLIP-147);
    /// with them nothing is (the final checkpoint commits it).
    pub(crate) async fn end_of_input(&mut self, final_checkpoint: bool) -> Result<(), TaskError> {
        if final_checkpoint {
            return Ok(());
        }
        let last = self.sink.pre_commit(u64::MAX).await?;
        let mut committables: Vec<Committable> = std::mem::take(&mut self.pending)
            .into_iter()
            .flat_map(|(_, c)| c)
            .collect();
        committables.extend(last);
        if committables.is_empty() {
            return Ok(());
        }
        self.sink.commit(committables).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use std::sync::{Arc, Mutex};

    /// Records what the runtime asked of it; each pre-commit yields one committable.
    #[derive(Default, Clone)]
    struct Log(Arc<Mutex<Vec<String>>>);

    struct Recording(Log, u64);

    #[async_trait]
    impl Sink for Recording {
        async fn write(&mut self, _b: arrow::record_batch::RecordBatch) -> Result<(), TaskError> {
            self.1 += 1;
            Ok(())
        }
        async fn pre_commit(&mut self, id: u64) -> Result<Vec<Committable>, TaskError> {
            let c = format!("c{id}:{}", self.1);
            self.0 .0.lock().unwrap().push(format!("pre {c}"));
            Ok(vec![c.into_bytes()])
        }
        async fn commit(&mut self, cs: Vec<Committable>) -> Result<(), TaskError> {
            for c in cs {
                self.0
                     .0
                    .lock()
                    .unwrap()
                    .push(format!("commit {}", String::from_utf8_lossy(&c)));
            }
            Ok(())
        }
    }

    fn stage(log: &Log) -> SinkStage {
        SinkStage::new("s".into(), Box::new(Recording(log.clone(), 0)), None, 0, 1)
    }

    fn run<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn commits_only_what_completed_checkpoints_hold_and_keeps_the_rest_in_snapshots() {
        let log = Log::default();
        let mut s = stage(&log);
        run(async {
            s.snapshot(1).await.unwrap();
            let snap = s.snapshot(2).await.unwrap();
            assert_eq!(snap.lists[0].elements.len(), 2, "both pending committables are state");
            s.checkpoint_complete(1).await.unwrap();
            let snap = s.snapshot(3).await.unwrap();
            assert_eq!(snap.lists[0].elements.len(), 2, "c2 and c3 are still pending");
            s.checkpoint_complete(3).await.unwrap();
        });
        let log = log.0.lock().unwrap().clone();
        assert_eq!(
            log,
            [
                "pre c1:0",
                "pre c2:0",
                "commit c1:0",
                "pre c3:0",
                "commit c2:0",
                "commit c3:0"
            ]
        );
    }

    #[test]
    fn end_of_input_commits_only_without_final_checkpoints() {
        let log = Log::default();
        let mut s = stage(&log);
        run(async {
            s.snapshot(1).await.unwrap();
            s.end_of_input(true).await.unwrap();
        });
        assert_eq!(log.0.lock().unwrap().clone(), ["pre c1:0"]);
        let log = Log::default();
        let mut s = stage(&log);
        run(async {
            s.snapshot(1).await.unwrap();
            s.end_of_input(false).await.unwrap();
        });
        let last = format!("pre c{}:0", u64::MAX);
        assert_eq!(
            log.0.lock().unwrap().clone(),
            vec![
                "pre c1:0".to_string(),
                last,
                "commit c1:0".into(),
                format!("commit c{}:0", u64::MAX)
            ]
        );
    }
}
