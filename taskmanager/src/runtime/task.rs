//! The subtask loop (DESIGN §6): a source subtask polls its reader; any other subtask takes
//! buffers and events from its input gate. Batches go through the operator chain and out
//! through the record writers; watermarks are combined per channel, pass through the chain,
//! and are forwarded. At the end of input the maximum watermark fires every window, sinks
//! finish, and end-of-partition goes downstream. Every moment is accounted as busy, idle
//! (waiting for input, or a source with nothing to read) or back-pressured (waiting for room
//! on an output channel, which has no credit), `time_account`.
//!
//! Checkpoints: a source subtask snapshots when triggered and emits the barrier; any other
//! subtask snapshots when its `Aligner` says every channel delivered the barrier, then forwards
//! it. A stop barrier (stop-with-savepoint) ends the subtask once that savepoint completes.
//! With final checkpoints a subtask at the end of its input snapshots on the trigger itself
//! and ends only when such a checkpoint completes (`await_final_checkpoint`).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray};
use arrow::datatypes::TimestampMillisecondType;
use arrow::record_batch::RecordBatch;

use sluice_common::proto::checkpoint::RedistributionMode;
use tokio::sync::mpsc;

use super::build::{SourcePlan, TaskPlan, SPLITS_STATE};
use super::checkpointing::{AlignStep, Aligner, SnapshotAcker, TaskControl};
use super::metrics::TaskMetrics;
use super::sink_stage::SinkStage;
use super::time_account::Phase;
use super::watermarks::WatermarkValve;
use crate::error::TaskError;
use crate::network::{Barrier, InputGate, RecordWriter, StreamEvent};
use crate::operators::{Chain, OperatorContext};
use crate::state::snapshot::OperatorSnapshot;
use crate::state::snapshot::SnapshotKind;
use sluice_connectors::SourcePoll;

/// A subtask's link to checkpointing.
pub(crate) struct CheckpointHooks {
    pub control: mpsc::UnboundedReceiver<TaskControl>,
    pub acker: std::sync::Arc<dyn SnapshotAcker>,
    pub exactly_once: bool,
    /// Final checkpoints (FLIP-147): at the end of its input the subtask waits for a
    /// checkpoint that covers it before it finishes.
    pub final_checkpoint: bool,
    /// The newest checkpoint this subtask snapshotted.
    pub last_snapshot: u64,
    /// A trigger a running non-source subtask received (it snapshots when the barrier comes
    /// through its inputs); answered in the finishing phase if that barrier never came.
    pub unanswered_trigger: Option<Barrier>,
}

/// What the subtask does after a barrier.
enum AfterBarrier {
    Continue,
    /// The stop-with-savepoint completed: end without flushing.
    Stop,
}

/// How often processing-time operators are ticked.
const PROCESSING_TIME_TICK: Duration = Duration::from_millis(100);

struct Output<'a> {
    writers: &'a mut [RecordWriter],
    /// The sink the chain ends in, if it ends in one (then there are no writers).
    sink: Option<&'a mut SinkStage>,
    metrics: &'a TaskMetrics,
    ctx: &'a OperatorContext,
}

impl Output<'_> {
    async fn batches(&mut self, batches: Vec<RecordBatch>) -> Result<(), TaskError> {
        if let Some(sink) = self.sink.as_deref_mut() {
            // A sink emits nothing (Flink counts no records out for it).
            for b in batches {
                sink.write(b).await?;
            }
            return Ok(());
        }
        for b in &batches {
            TaskMetrics::add(&self.metrics.records_out, b.num_rows() as u64);
            self.metrics.first_record();
            for w in self.writers.iter_mut() {
                w.emit(b, &self.metrics.time).await?;
            }
        }
        Ok(())
    }

    async fn event(&mut self, event: StreamEvent) -> Result<(), TaskError> {
        for w in self.writers.iter_mut() {
            w.broadcast_event(event.clone(), &self.metrics.time).await?;
        }
        Ok(())
    }

    /// What the watermark fires goes downstream a part at a time (a large RocksDB window a
    /// chunk per part), then the watermark.
    async fn watermark(&mut self, chain: &mut Chain, wm: i64) -> Result<(), TaskError> {
        loop {
            let (fired, more) = chain.watermark_step(wm, self.ctx)?;
            self.batches(fired).await?;
            if !more {
                break;
            }
        }
        self.event(StreamEvent::Watermark(wm)).await
    }

    /// The source's watermark, when it has event time, advanced, and its emit interval has
    /// passed: through the chain and on; returns it.
    async fn source_watermark(&mut self, chain: &mut Chain, source: &mut SourcePlan) -> Result<Option<i64>, TaskError> {
        let Some(wm) = source.rowtime.and_then(|_| source.watermarks.advance()) else {
            return Ok(None);
        };
        self.watermark(chain, wm).await?;
        Ok(Some(wm))
    }

    /// End of input: final watermark, flush the chain and the sink (which commits nothing
    /// here with final checkpoints), end-of-partition downstream.
    async fn finish(
        &mut self,
        chain: &mut Chain,
        watermark_sent: i64,
        final_checkpoint: bool,
    ) -> Result<(), TaskError> {
        if watermark_sent < i64::MAX {
            self.watermark(chain, i64::MAX).await?;
        }
        let rest = chain.finish(self.ctx)?;
        self.batches(rest).await?;
        if let Some(sink) = self.sink.as_deref_mut() {
            sink.end_of_input(final_checkpoint).await?;
        }
        self.event(StreamEvent::EndOfPartition).await?;
        Ok(())
    }

    /// Checkpoint `id` completed: the chain, the sink (which commits) and the source hear it.
    async fn checkpoint_complete(
        &mut self,
        chain: &mut Chain,
        source: Option<&mut SourcePlan>,
        id: u64,
    ) -> Result<(), TaskError> {
        chain.notify_checkpoint_complete(id)?;
        if let Some(sink) = self.sink.as_deref_mut() {
            sink.checkpoint_complete(id).await?;
        }
        if let Some(source) = source {
            source.reader.notify_checkpoint_complete(id).await?;
        }
        Ok(())
    }

    /// Checkpoint `id` was aborted: the sink and the source hear it.
    async fn checkpoint_aborted(&mut self, source: Option<&mut SourcePlan>, id: u64) -> Result<(), TaskError> {
        if let Some(sink) = self.sink.as_deref_mut() {
            sink.checkpoint_aborted(id).await?;
        }
        if let Some(source) = source {
            source.reader.notify_checkpoint_aborted(id).await?;
        }
        Ok(())
    }
}

/// Snapshots the chain (and the source's split positions), acknowledges, forwards the barrier;
/// for a stop barrier, waits for the savepoint to complete (or be abandoned).
async fn take_checkpoint(
    out: &mut Output<'_>,
    chain: &mut Chain,
    mut source: Option<&mut SourcePlan>,
    barrier: Barrier,
    hooks: &mut CheckpointHooks,
) -> Result<AfterBarrier, TaskError> {
    // What operators flush before a barrier (a local aggregate's partials) precedes it.
    let flushed = chain.pre_barrier(out.ctx)?;
    out.batches(flushed).await?;
    snapshot_and_ack(out, chain, split_snapshot(source.as_deref()), &barrier, hooks, false).await?;
    out.event(StreamEvent::Barrier(barrier.clone())).await?;
    if !barrier.stop {
        return Ok(AfterBarrier::Continue);
    }
    loop {
        match hooks.control.recv().await {
            Some(TaskControl::Complete(id, _)) => {
                out.checkpoint_complete(chain, source.as_deref_mut(), id).await?;
                if id >= barrier.id {
                    return Ok(AfterBarrier::Stop);
                }
            }
            Some(TaskControl::Abort(id)) if id == barrier.id => {
                out.checkpoint_aborted(source.as_deref_mut(), id).await?;
                return Ok(AfterBarrier::Continue);
            }
            Some(_) => {}
            None => return Ok(AfterBarrier::Stop),
        }
    }
}

/// A source's split positions as its operator snapshot (taken before any await, so a reader
/// need not be `Sync`).
fn split_snapshot(source: Option<&SourcePlan>) -> Option<(String, OperatorSnapshot)> {
    source.map(|source| {
        let mut s = OperatorSnapshot::default();
        s.list(
            SPLITS_STATE,
            RedistributionMode::SplitDistribute,
            source.reader.snapshot_splits(),
        );
        (source.uid.clone(), s)
    })
}

/// The synchronous part of a checkpoint: snapshot the chain, the source's split positions and
/// the sink's pre-commit, and hand the snapshot to the acker, which uploads it and
/// acknowledges.
async fn snapshot_and_ack(
    out: &mut Output<'_>,
    chain: &mut Chain,
    splits: Option<(String, OperatorSnapshot)>,
    barrier: &Barrier,
    hooks: &mut CheckpointHooks,
    end_of_input: bool,
) -> Result<(), TaskError> {
    let started = Instant::now();
    let result = async {
        let mut snaps = chain.snapshot(barrier.id, SnapshotKind::of(barrier))?;
        snaps.extend(splits);
        if let Some(sink) = out.sink.as_deref_mut() {
            let s = sink.snapshot(barrier.id).await?;
            if !s.is_empty() {
                snaps.push((sink.uid.clone(), s));
            }
        }
        Ok::<_, TaskError>(snaps)
    }
    .await;
    match result {
        Ok(snaps) => {
            let sync_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            hooks.last_snapshot = hooks.last_snapshot.max(barrier.id);
            hooks.acker.acknowledge(barrier, snaps, sync_ms, end_of_input);
            Ok(())
        }
        // A failed synchronous part fails the task (Flink's rule).
        Err(e) => Err(e.context(format!("checkpoint {} failed in its synchronous part", barrier.id))),
    }
}

/// The finishing phase with final checkpoints (FLIP-147): the subtask's input has ended and
/// its last output went downstream, but its sinks committed nothing since the last checkpoint.
/// It snapshots on each checkpoint's trigger (its inputs ended, so no barrier comes through
/// them), including one it was triggered for while still running whose barrier never reached
/// it, and acknowledges it as taken after the end of input. Sinks commit as those checkpoints
/// complete. It ends with the job's final checkpoint: the first one that every subtask
/// snapshotted after the end of its input, so no later checkpoint needs it (or with a stopping
/// checkpoint it took part in, as a running subtask would).
async fn await_final_checkpoint(
    out: &mut Output<'_>,
    chain: &mut Chain,
    mut source: Option<&mut SourcePlan>,
    hooks: &mut CheckpointHooks,
) -> Result<(), TaskError> {
    // A stopping checkpoint (stop-with-savepoint, a rescale) this subtask snapshotted ends it
    // too once complete, as it ends a running subtask.
    let mut stop: Option<u64> = None;
    let mut pending = hooks.unanswered_trigger.take();
    hooks.acker.input_ended();
    loop {
        let control = match pending.take() {
            Some(barrier) => Some(TaskControl::Trigger(barrier, false)),
            None => {
                // Nothing to do until the jobmanager says more: Flink counts it idle.
                out.metrics.time.enter(Phase::Idle);
                let next = hooks.control.recv().await;
                out.metrics.time.enter(Phase::Busy);
                next
            }
        };
        match control {
            Some(TaskControl::Trigger(barrier, _)) if barrier.id > hooks.last_snapshot => {
                snapshot_and_ack(out, chain, split_snapshot(source.as_deref()), &barrier, hooks, true).await?;
                if barrier.stop {
                    stop = Some(barrier.id);
                }
            }
            Some(TaskControl::Complete(id, job_final)) => {
                out.checkpoint_complete(chain, source.as_deref_mut(), id).await?;
                if job_final || stop.is_some_and(|s| id >= s) {
                    return Ok(());
                }
            }
            Some(TaskControl::Abort(id)) => out.checkpoint_aborted(source.as_deref_mut(), id).await?,
            // A bounded source's enumerator knows its splits up front; one that discovers never
            // reaches the end of its input.
            Some(TaskControl::AddSplits(uid, _)) => {
                return Err(TaskError::internal(format!(
                    "source '{uid}' was given splits after the end of its input"
                )))
            }
            Some(TaskControl::Trigger(..)) => {}
            None => {
                return Err(TaskError::from(
                    "the task's control channel closed before its final checkpoint",
                ))
            }
        }
    }
}

fn not_a_source(uid: &str) -> TaskError {
    TaskError::internal(format!(
        "splits for source '{uid}' reached a subtask that reads no source"
    ))
}

fn max_timestamp(batch: &RecordBatch, column: usize) -> Option<i64> {
    let ts = batch.column(column).as_primitive_opt::<TimestampMillisecondType>()?;
    (0..ts.len()).filter(|i| !ts.is_null(*i)).map(|i| ts.value(i)).max()
}

/// A task's operators, dropped on a blocking thread when the task ends: their state (millions
/// of heap entries, or a RocksDB instance whose directory goes with it) is freed while the
/// task's end is reported and the next attempt deploys, not before, and off the async workers.
struct DroppedOffThread(Option<Chain>);

impl std::ops::Deref for DroppedOffThread {
    type Target = Chain;
    fn deref(&self) -> &Chain {
        self.0.as_ref().expect("the chain is taken only on drop")
    }
}

impl std::ops::DerefMut for DroppedOffThread {
    fn deref_mut(&mut self) -> &mut Chain {
        self.0.as_mut().expect("the chain is taken only on drop")
    }
}

impl Drop for DroppedOffThread {
    fn drop(&mut self) {
        let chain = self.0.take();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn_blocking(move || drop(chain));
        }
    }
}

/// Runs a subtask to its end. Cancellation is by dropping the future.
pub(crate) async fn run_task(
    plan: TaskPlan,
    gate: Option<InputGate>,
    mut writers: Vec<RecordWriter>,
    ctx: OperatorContext,
    mut hooks: CheckpointHooks,
) -> Result<(), TaskError> {
    let TaskPlan {
        source,
        chain,
        mut sink,
    } = plan;
    let mut chain = DroppedOffThread(Some(chain));
    let metrics = ctx.metrics();
    if let Some(sink) = sink.as_mut() {
        sink.recover().await?;
    }
    let mut out = Output {
        writers: &mut writers,
        sink: sink.as_mut(),
        metrics,
        ctx: &ctx,
    };
    match (source, gate) {
        (Some(mut source), _) => {
            let mut last_wm = i64::MIN;
            let mut idle_announced = false;
            loop {
                metrics.time.enter(Phase::Busy);
                while let Ok(control) = hooks.control.try_recv() {
                    match control {
                        TaskControl::Trigger(barrier, drain) => {
                            // Stop with drain: every window fires before the final savepoint.
                            if drain && last_wm < i64::MAX {
                                out.watermark(&mut chain, i64::MAX).await?;
                                last_wm = i64::MAX;
                            }
                            let step =
                                take_checkpoint(&mut out, &mut chain, Some(&mut source), barrier, &mut hooks).await?;
                            if let AfterBarrier::Stop = step {
                                return Ok(());
                            }
                        }
                        TaskControl::Complete(id, _) => {
                            out.checkpoint_complete(&mut chain, Some(&mut source), id).await?
                        }
                        TaskControl::Abort(id) => out.checkpoint_aborted(Some(&mut source), id).await?,
                        TaskControl::AddSplits(uid, splits) => source.add_splits(&uid, splits)?,
                    }
                }
                match source.reader.next_batch().await? {
                    SourcePoll::Batch(batch, split) => {
                        if idle_announced {
                            out.event(StreamEvent::Idle(false)).await?;
                            idle_announced = false;
                        }
                        if let Some(ts) = source.rowtime.and_then(|c| max_timestamp(&batch, c)) {
                            source.watermarks.on_rows(split, ts);
                        }
                        if source.reader.split_finished(split) {
                            source.watermarks.on_split_finished(split);
                        }
                        let produced = chain.process(0, batch, &ctx)?;
                        out.batches(produced).await?;
                        if let Some(wm) = out.source_watermark(&mut chain, &mut source).await? {
                            last_wm = wm;
                        }
                        // Let cancellation and other tasks in between batches.
                        tokio::task::yield_now().await;
                    }
                    SourcePoll::Wait(d) => {
                        // An advance the emit interval held back goes out while no rows come.
                        if let Some(wm) = out.source_watermark(&mut chain, &mut source).await? {
                            last_wm = wm;
                        }
                        if !idle_announced && source.watermarks.all_idle() {
                            out.event(StreamEvent::Idle(true)).await?;
                            idle_announced = true;
                        }
                        metrics.time.enter(Phase::Idle);
                        tokio::time::sleep(d).await;
                    }
                    SourcePoll::Finished => break,
                }
            }
            out.finish(&mut chain, last_wm, hooks.final_checkpoint).await?;
            if hooks.final_checkpoint {
                await_final_checkpoint(&mut out, &mut chain, Some(&mut source), &mut hooks).await?;
            }
            Ok(())
        }
        (None, Some(mut gate)) => {
            let mut valve = WatermarkValve::new(gate.channels());
            let mut aligner = Aligner::new(gate.channels(), hooks.exactly_once);
            let mut ended = 0usize;
            let mut tick = tokio::time::interval(PROCESSING_TIME_TICK);
            let ticking = chain.uses_processing_time();
            loop {
                metrics.time.enter(Phase::Idle);
                let next = tokio::select! {
                    next = gate.next() => next,
                    control = hooks.control.recv() => {
                        metrics.time.enter(Phase::Busy);
                        match control {
                            Some(TaskControl::Complete(id, _)) => out.checkpoint_complete(&mut chain, None, id).await?,
                            Some(TaskControl::Trigger(barrier, _)) => hooks.unanswered_trigger = Some(barrier),
                            Some(TaskControl::Abort(id)) => out.checkpoint_aborted(None, id).await?,
                            Some(TaskControl::AddSplits(uid, _)) => return Err(not_a_source(&uid)),
                            // The executor dropped its end: the task is being torn down.
                            None => return Err("the task's control channel closed".into()),
                        }
                        continue;
                    }
                    _ = tick.tick(), if ticking => {
                        metrics.time.enter(Phase::Busy);
                        let fired = chain.processing_time(sluice_common::wall_ms::wall_ms(), &ctx)?;
                        out.batches(fired).await?;
                        continue;
                    }
                };
                metrics.time.enter(Phase::Busy);
                let Some((ch, event)) = next else {
                    return Err("the input gate closed before every channel ended".into());
                };
                let advanced = match event {
                    StreamEvent::Batch(b) => {
                        TaskMetrics::add(&metrics.records_in, b.num_rows() as u64);
                        metrics.first_record();
                        let produced = chain.process(gate.input_of(ch), b, &ctx)?;
                        out.batches(produced).await?;
                        continue;
                    }
                    StreamEvent::Watermark(w) => valve.on_watermark(ch, w),
                    StreamEvent::Idle(idle) => valve.on_idle(ch, idle),
                    StreamEvent::EndOfPartition => {
                        ended += 1;
                        if let Some(barrier) = aligner.on_end(ch) {
                            gate.unblock_all();
                            if let AfterBarrier::Stop =
                                take_checkpoint(&mut out, &mut chain, None, barrier, &mut hooks).await?
                            {
                                return Ok(());
                            }
                        }
                        valve.on_end(ch)
                    }
                    StreamEvent::Barrier(barrier) => {
                        match aligner.on_barrier(ch, barrier) {
                            AlignStep::Wait { block } => {
                                if block {
                                    gate.block(ch);
                                }
                            }
                            AlignStep::Overtaken { old, block } => {
                                hooks.acker.decline(
                                    old,
                                    format!("checkpoint {old} was overtaken by a newer barrier during alignment"),
                                );
                                gate.unblock_all();
                                if block {
                                    gate.block(ch);
                                }
                            }
                            AlignStep::Snapshot(b) => {
                                gate.unblock_all();
                                if let AfterBarrier::Stop =
                                    take_checkpoint(&mut out, &mut chain, None, b, &mut hooks).await?
                                {
                                    return Ok(());
                                }
                            }
                            AlignStep::Ignore => {}
                        }
                        continue;
                    }
                    StreamEvent::Broken(reason) => return Err(reason.into()),
                };
                if let Some(wm) = advanced {
                    metrics.input_watermark.store(wm, Ordering::Relaxed);
                    out.watermark(&mut chain, wm).await?;
                }
                if ended == gate.channels() {
                    break;
                }
            }
            out.finish(&mut chain, valve.current(), hooks.final_checkpoint).await?;
            if hooks.final_checkpoint {
                await_final_checkpoint(&mut out, &mut chain, None, &mut hooks).await?;
            }
            Ok(())
        }
        (None, None) => Err("a task needs a source or an input".into()),
    }
}
