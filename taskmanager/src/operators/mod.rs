//! Operators and the operator chain a subtask runs: each takes whole batches and emits batches;
//! watermarks pass through the chain in order, so rows a window emits on a watermark reach the
//! operators after it before they see that watermark. At a barrier every operator of the
//! chain hands over its snapshot, labelled with its uid. Errors are `TaskError`s: an operator
//! that knows the failure is the job's or a setting's says so, so the job is not restarted
//! in vain.

mod broadcast_join;
mod context;
mod filter;
mod key_group_guard;
mod keyed_aggregate;
mod select;
pub(crate) mod window;

use arrow::record_batch::RecordBatch;

use crate::error::TaskError;
use crate::state::snapshot::OperatorSnapshot;
use crate::state::snapshot::SnapshotKind;

pub(crate) use broadcast_join::{BroadcastColumns, BroadcastJoin};
pub(crate) use context::{OperatorContext, TaskInfo};
pub(crate) use filter::Filter;
pub(crate) use key_group_guard::KeyGroupGuard;
pub(crate) use keyed_aggregate::KeyedAggregate;
pub(crate) use select::Select;

pub(crate) trait Operator: Send {
    /// A batch from input `input` (0 for one-input operators; a chained operator's input is
    /// the previous operator, 0). Synchronous: CPU work, no future per batch.
    fn process(
        &mut self,
        input: usize,
        batch: RecordBatch,
        ctx: &OperatorContext,
        out: &mut Vec<RecordBatch>,
    ) -> Result<(), TaskError>;

    /// Event time reached `watermark`.
    fn on_watermark(&mut self, _watermark: i64, _out: &mut Vec<RecordBatch>) -> Result<(), TaskError> {
        Ok(())
    }

    /// Wall-clock tick for processing-time operators.
    fn on_processing_time(&mut self, _now_ms: i64, _out: &mut Vec<RecordBatch>) -> Result<(), TaskError> {
        Ok(())
    }

    /// Input ended (after the final watermark): flush and close.
    fn finish(&mut self, _out: &mut Vec<RecordBatch>) -> Result<(), TaskError> {
        Ok(())
    }

    /// After `on_watermark`, `on_processing_time` or `finish`: it emitted part of what that
    /// call owes (a bounded chunk) and must be called again with the same argument; the task
    /// sends each part downstream first, so the output never piles up.
    fn has_pending_output(&self) -> bool {
        false
    }

    /// Whether it needs `on_processing_time` ticks.
    fn uses_processing_time(&self) -> bool {
        false
    }

    /// A checkpoint barrier is about to be taken (Flink's `prepareSnapshotPreBarrier`): what
    /// the operator emits here goes downstream before the barrier.
    fn prepare_snapshot_pre_barrier(&mut self, _out: &mut Vec<RecordBatch>) -> Result<(), TaskError> {
        Ok(())
    }

    /// The synchronous part of a checkpoint: the operator's state as of the barrier.
    fn snapshot(&mut self, _checkpoint_id: u64, _kind: SnapshotKind) -> Result<OperatorSnapshot, TaskError> {
        Ok(OperatorSnapshot::default())
    }

    /// Checkpoint `checkpoint_id` is complete (two-phase-commit sinks commit here).
    fn notify_checkpoint_complete(&mut self, _checkpoint_id: u64) -> Result<(), TaskError> {
        Ok(())
    }

    /// A probe that emits its input unchanged: the operator after it still sees which input
    /// a batch came from.
    fn passes_input_on(&self) -> bool {
        false
    }
}

/// Operators chained in one subtask.
pub(crate) struct Chain {
    ops: Vec<Box<dyn Operator>>,
    /// The uid of each operator (its state's name in snapshots).
    uids: Vec<String>,
    /// The operator a watermark that emitted in parts resumes at (0: none in progress).
    resume: usize,
}

impl Chain {
    pub(crate) fn new(ops: Vec<(String, Box<dyn Operator>)>) -> Chain {
        let (uids, ops) = ops.into_iter().unzip();
        Chain { ops, uids, resume: 0 }
    }

    /// Every operator's snapshot that holds state, by uid.
    pub(crate) fn snapshot(
        &mut self,
        checkpoint_id: u64,
        kind: SnapshotKind,
    ) -> Result<Vec<(String, OperatorSnapshot)>, TaskError> {
        let mut out = Vec::new();
        for (uid, op) in self.uids.iter().zip(self.ops.iter_mut()) {
            let s = op.snapshot(checkpoint_id, kind)?;
            if !s.is_empty() {
                out.push((uid.clone(), s));
            }
        }
        Ok(out)
    }

    pub(crate) fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<(), TaskError> {
        self.ops
            .iter_mut()
            .try_for_each(|op| op.notify_checkpoint_complete(checkpoint_id))
    }

    pub(crate) fn uses_processing_time(&self) -> bool {
        self.ops.iter().any(|o| o.uses_processing_time())
    }

    /// Runs `batches` from input `input` of operator `k` through the rest of the chain.
    fn run_from(
        &mut self,
        k: usize,
        input: usize,
        mut batches: Vec<RecordBatch>,
        ctx: &OperatorContext,
    ) -> Result<Vec<RecordBatch>, TaskError> {
        let mut from = input;
        for op in self.ops[k..].iter_mut() {
            if batches.is_empty() {
                break;
            }
            let mut next = Vec::new();
            for b in batches {
                op.process(from, b, ctx, &mut next)?;
            }
            batches = next;
            if !op.passes_input_on() {
                from = 0;
            }
        }
        Ok(batches)
    }

    /// Runs a batch of the chain's input `input` through it; returns what leaves its end.
    pub(crate) fn process(
        &mut self,
        input: usize,
        batch: RecordBatch,
        ctx: &OperatorContext,
    ) -> Result<Vec<RecordBatch>, TaskError> {
        self.run_from(0, input, vec![batch], ctx)
    }

    /// Calls each operator in turn, its output through the rest of the chain, until one has
    /// more pending (`Operator::has_pending_output`): returns what left the chain so far and
    /// whether to call again, which resumes at that operator.
    fn each_step(
        &mut self,
        ctx: &OperatorContext,
        mut call: impl FnMut(&mut dyn Operator, &mut Vec<RecordBatch>) -> Result<(), TaskError>,
    ) -> Result<(Vec<RecordBatch>, bool), TaskError> {
        let mut outputs = Vec::new();
        while self.resume < self.ops.len() {
            let k = self.resume;
            let mut emitted = Vec::new();
            call(self.ops[k].as_mut(), &mut emitted)?;
            outputs.extend(self.run_from(k + 1, 0, emitted, ctx)?);
            if self.ops[k].has_pending_output() {
                return Ok((outputs, true));
            }
            self.resume += 1;
        }
        self.resume = 0;
        Ok((outputs, false))
    }

    /// `each_step` until done, everything collected.
    fn each(
        &mut self,
        ctx: &OperatorContext,
        mut call: impl FnMut(&mut dyn Operator, &mut Vec<RecordBatch>) -> Result<(), TaskError>,
    ) -> Result<Vec<RecordBatch>, TaskError> {
        let mut outputs = Vec::new();
        loop {
            let (part, more) = self.each_step(ctx, &mut call)?;
            outputs.extend(part);
            if !more {
                return Ok(outputs);
            }
        }
    }

    /// One part of a watermark's output: the task sends it before asking for the next
    /// (`true`: call again with the same watermark).
    pub(crate) fn watermark_step(
        &mut self,
        watermark: i64,
        ctx: &OperatorContext,
    ) -> Result<(Vec<RecordBatch>, bool), TaskError> {
        self.each_step(ctx, |op, out| op.on_watermark(watermark, out))
    }

    pub(crate) fn processing_time(
        &mut self,
        now_ms: i64,
        ctx: &OperatorContext,
    ) -> Result<Vec<RecordBatch>, TaskError> {
        self.each(ctx, |op, out| op.on_processing_time(now_ms, out))
    }

    pub(crate) fn pre_barrier(&mut self, ctx: &OperatorContext) -> Result<Vec<RecordBatch>, TaskError> {
        self.each(ctx, |op, out| op.prepare_snapshot_pre_barrier(out))
    }

    pub(crate) fn finish(&mut self, ctx: &OperatorContext) -> Result<Vec<RecordBatch>, TaskError> {
        self.each(ctx, |op, out| op.finish(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn rows(n: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from_iter_values(0..n))]).unwrap()
    }

    /// Emits `parts` batches on a watermark, one per call.
    struct InParts {
        parts: usize,
    }

    impl Operator for InParts {
        fn process(
            &mut self,
            _: usize,
            b: RecordBatch,
            _: &OperatorContext,
            out: &mut Vec<RecordBatch>,
        ) -> Result<(), TaskError> {
            out.push(b);
            Ok(())
        }

        fn on_watermark(&mut self, _: i64, out: &mut Vec<RecordBatch>) -> Result<(), TaskError> {
            if self.parts > 0 {
                self.parts -= 1;
                out.push(rows(1));
            }
            Ok(())
        }

        fn has_pending_output(&self) -> bool {
            self.parts > 0
        }
    }

    /// Counts the watermarks it sees and passes rows on.
    struct Counting(Arc<std::sync::atomic::AtomicUsize>);

    impl Operator for Counting {
        fn process(
            &mut self,
            _: usize,
            b: RecordBatch,
            _: &OperatorContext,
            out: &mut Vec<RecordBatch>,
        ) -> Result<(), TaskError> {
            out.push(b);
            Ok(())
        }

        fn on_watermark(&mut self, _: i64, _: &mut Vec<RecordBatch>) -> Result<(), TaskError> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        }
    }

    #[test]
    fn a_watermark_emitted_in_parts_reaches_later_operators_once_after_all_parts() {
        let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut chain = Chain::new(vec![
            ("a".into(), Box::new(InParts { parts: 3 })),
            ("b".into(), Box::new(Counting(seen.clone()))),
        ]);
        let ctx = OperatorContext::for_tests();
        let mut parts = Vec::new();
        loop {
            let (out, more) = chain.watermark_step(7, &ctx).unwrap();
            parts.push(out.len());
            if !more {
                break;
            }
            assert_eq!(
                seen.load(std::sync::atomic::Ordering::Relaxed),
                0,
                "not before the last part"
            );
        }
        assert_eq!(parts, [1, 1, 1]);
        assert_eq!(seen.load(std::sync::atomic::Ordering::Relaxed), 1);
        // The next watermark starts at the first operator again.
        assert_eq!(chain.watermark_step(8, &ctx).unwrap(), (Vec::new(), false));
        assert_eq!(seen.load(std::sync::atomic::Ordering::Relaxed), 2);
    }
}
