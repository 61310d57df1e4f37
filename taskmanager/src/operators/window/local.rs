//! The local phase of a two-phase windowed aggregate (Flink's `LocalWindowAggregate`, chained
//! before the shuffle): rows are aggregated per (pane, key) in heap panes, and the partial
//! results leave as rows — the keys, one partial value per aggregate, the pane's max timestamp
//! as event time — so a hot key sends one row per pane and flush instead of one per input row.
//!
//! A watermark flushes the panes it closes before it goes on (so no partial is late where its
//! rows were not; open panes keep aggregating). Everything is flushed before a checkpoint
//! barrier (so it checkpoints nothing and rescales freely), when it is full and at the end of
//! input. Full is `buffer_entries` (pane, key) entries (`table.exec.mini-batch.size`) or, where
//! that is unset, a quarter of the slot's heap budget in keys and accumulators (Flink's window
//! local phase also buffers by memory). Holding nothing it must keep, it never fails on the
//! heap budget as window panes do: it flushes at its bound, which one batch may pass.
//! Rows without an event time are dropped and counted late, as the one-phase window would.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow::array::{ArrayRef, TimestampMillisecondArray};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;

use super::aggregate::{compile_keyed, event_times};
use super::assigner::{self, Window};
use super::heap_panes::HeapPanes;
use super::pane_store::{KeyedInput, PaneStore};
use super::state_codec::StateCodec;
use crate::error::TaskError;
use crate::operators::{Operator, OperatorContext};
use crate::state::StateSettings;

pub(crate) struct LocalWindowAggregate {
    keys: Vec<usize>,
    rowtime: usize,
    pane_ms: i64,
    codec: StateCodec,
    aggs: Vec<AggregateFunctionExpr>,
    output: SchemaRef,
    panes: HeapPanes,
    /// Full at this many (pane, key) entries; 0: at `buffer_bytes` of heap.
    buffer_entries: u64,
    buffer_bytes: usize,
    late: Arc<AtomicU64>,
}

impl LocalWindowAggregate {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        keys: &[String],
        pane: std::time::Duration,
        aggregates: &[(String, String)],
        rowtime: &str,
        buffer_entries: u64,
        input: &SchemaRef,
        output: SchemaRef,
        late: Arc<AtomicU64>,
        settings: StateSettings,
    ) -> Result<LocalWindowAggregate, String> {
        let pane_ms = i64::try_from(pane.as_millis()).unwrap_or(i64::MAX);
        if pane_ms <= 0 {
            return Err(format!("a local window's pane must be at least 1 ms, not {pane:?}"));
        }
        let rowtime = input.index_of(rowtime).map_err(|e| e.to_string())?;
        let (keys, aggs, codec) = compile_keyed(keys, aggregates, input, settings.max_parallelism)?;
        // The bound below is what limits it; the panes' own budget check would fail the job.
        let unbudgeted = StateSettings {
            heap_budget: u64::MAX,
            ..settings.clone()
        };
        let panes = HeapPanes::open(&unbudgeted, None, &codec, &aggs)?;
        Ok(LocalWindowAggregate {
            keys,
            rowtime,
            pane_ms,
            codec,
            aggs,
            output,
            panes,
            buffer_entries,
            buffer_bytes: usize::try_from(settings.heap_budget / 4).unwrap_or(usize::MAX),
            late,
        })
    }

    fn full(&self) -> bool {
        match self.buffer_entries {
            0 => self.panes.heap_bytes() >= self.buffer_bytes,
            n => self.panes.entries() as u64 >= n,
        }
    }

    /// The partial results of every pane `time` closes (`i64::MAX`: all) as rows: keys,
    /// partials, the pane's max timestamp.
    fn flush(&mut self, time: i64, out: &mut Vec<RecordBatch>) -> Result<(), String> {
        if self.panes.entries() == 0 {
            return Ok(());
        }
        for fired in self.panes.fire(&self.codec, &self.aggs, time)? {
            let time = TimestampMillisecondArray::from_iter_values(fired.windows.iter().map(Window::max_timestamp));
            let mut columns: Vec<ArrayRef> = fired.keys;
            columns.extend(fired.values);
            columns.push(Arc::new(time));
            out.push(RecordBatch::try_new(self.output.clone(), columns).map_err(|e| e.to_string())?);
        }
        Ok(())
    }
}

impl Operator for LocalWindowAggregate {
    fn process(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        _ctx: &OperatorContext,
        out: &mut Vec<RecordBatch>,
    ) -> Result<(), TaskError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let ts = event_times(&batch, self.rowtime)?;
        let mut run = assigner::TumblingRun::new(self.pane_ms);
        let assigned: Vec<(Window, u32)> = ts
            .iter()
            .enumerate()
            .filter(|(_, &t)| t != i64::MIN)
            .map(|(r, &t)| (run.window(t), r as u32))
            .collect();
        self.late
            .fetch_add((ts.len() - assigned.len()) as u64, Ordering::Relaxed);
        let input = KeyedInput::read(&self.keys, &self.codec, &self.aggs, &batch, self.panes.reads_key_rows())?;
        self.panes
            .add(&self.codec, &self.aggs, &input.pane_batch(&ts, &assigned, i64::MIN))?;
        if self.full() {
            self.flush(i64::MAX, out)?;
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: i64, out: &mut Vec<RecordBatch>) -> Result<(), TaskError> {
        Ok(self.flush(watermark, out)?)
    }

    fn prepare_snapshot_pre_barrier(&mut self, out: &mut Vec<RecordBatch>) -> Result<(), TaskError> {
        Ok(self.flush(i64::MAX, out)?)
    }

    fn finish(&mut self, out: &mut Vec<RecordBatch>) -> Result<(), TaskError> {
        Ok(self.flush(i64::MAX, out)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::snapshot::SnapshotKind;
    use crate::state::test_settings;
    use arrow::array::{AsArray, Int64Array};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema, TimeUnit, TimestampMillisecondType};
    use sluice_common::config::options::StateBackendKind;
    use std::time::Duration;

    fn ts_type() -> DataType {
        DataType::Timestamp(TimeUnit::Millisecond, None)
    }

    fn input() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("v", DataType::Int64, false),
            Field::new("ts", ts_type(), true),
        ]))
    }

    fn output() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("n", DataType::Int64, false),
            Field::new("total", DataType::Int64, true),
            Field::new("ts", ts_type(), false),
        ]))
    }

    fn batch(rows: &[(i64, i64, Option<i64>)]) -> RecordBatch {
        RecordBatch::try_new(
            input(),
            vec![
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(TimestampMillisecondArray::from_iter(rows.iter().map(|r| r.2))),
            ],
        )
        .unwrap()
    }

    fn op(buffer_entries: u64) -> (LocalWindowAggregate, Arc<AtomicU64>) {
        op_with(buffer_entries, 64 << 20)
    }

    fn op_with(buffer_entries: u64, heap_budget: u64) -> (LocalWindowAggregate, Arc<AtomicU64>) {
        let late = Arc::new(AtomicU64::new(0));
        let aggs = vec![
            ("n".to_string(), "count(*)".to_string()),
            ("total".to_string(), "sum(v)".to_string()),
        ];
        let mut settings = test_settings(StateBackendKind::HashMap, &std::env::temp_dir(), (0, 127));
        settings.heap_budget = heap_budget;
        let op = LocalWindowAggregate::new(
            &["k".into()],
            Duration::from_millis(1000),
            &aggs,
            "ts",
            buffer_entries,
            &input(),
            output(),
            late.clone(),
            settings,
        )
        .unwrap();
        (op, late)
    }

    /// (key, count, sum, time) of every row, sorted.
    fn rows(out: &[RecordBatch]) -> Vec<(i64, i64, i64, i64)> {
        let mut v = Vec::new();
        for b in out {
            let k = b.column(0).as_primitive::<Int64Type>();
            let n = b.column(1).as_primitive::<Int64Type>();
            let s = b.column(2).as_primitive::<Int64Type>();
            let t = b.column(3).as_primitive::<TimestampMillisecondType>();
            for i in 0..b.num_rows() {
                v.push((k.value(i), n.value(i), s.value(i), t.value(i)));
            }
        }
        v.sort_unstable();
        v
    }

    #[test]
    fn partials_per_pane_and_key_leave_at_watermarks_barriers_and_when_full() {
        let (mut local, late) = op(1_000);
        let ctx = OperatorContext::for_tests();
        let mut out = Vec::new();
        local
            .process(
                0,
                batch(&[
                    (1, 2, Some(10)),
                    (1, 3, Some(20)),
                    (2, 5, Some(30)),
                    (1, 7, Some(1500)),
                    (3, 1, None),
                ]),
                &ctx,
                &mut out,
            )
            .unwrap();
        assert!(out.is_empty(), "holds rows until a watermark");
        assert_eq!(late.load(Ordering::Relaxed), 1, "a row without event time is late");
        local.on_watermark(998, &mut out).unwrap();
        assert!(out.is_empty(), "no pane closed at 998");
        local.on_watermark(999, &mut out).unwrap();
        assert_eq!(rows(&out), vec![(1, 2, 5, 999), (2, 1, 5, 999)], "the closed pane only");
        out.clear();
        local.process(0, batch(&[(2, 4, Some(1040))]), &ctx, &mut out).unwrap();
        local.prepare_snapshot_pre_barrier(&mut out).unwrap();
        assert_eq!(
            rows(&out),
            vec![(1, 1, 7, 1999), (2, 1, 4, 1999)],
            "a barrier takes all"
        );
        out.clear();
        local.on_watermark(5000, &mut out).unwrap();
        assert!(out.is_empty(), "nothing held, nothing sent");
        assert!(
            local.snapshot(1, SnapshotKind::Checkpoint).unwrap().is_empty(),
            "nothing to checkpoint"
        );

        let (mut small, _) = op(2);
        let mut out = Vec::new();
        small.process(0, batch(&[(1, 1, Some(0))]), &ctx, &mut out).unwrap();
        assert!(out.is_empty());
        small
            .process(0, batch(&[(1, 1, Some(0)), (1, 1, Some(0))]), &ctx, &mut out)
            .unwrap();
        assert!(out.is_empty(), "a hot key holds one entry however many rows it has");
        small.process(0, batch(&[(4, 9, Some(0))]), &ctx, &mut out).unwrap();
        assert_eq!(rows(&out), vec![(1, 3, 3, 999), (4, 1, 9, 999)], "two entries fill it");
        out.clear();
        small.process(0, batch(&[(5, 1, Some(0))]), &ctx, &mut out).unwrap();
        small.finish(&mut out).unwrap();
        assert_eq!(rows(&out), vec![(5, 1, 1, 999)]);
    }

    #[test]
    fn without_a_size_it_is_full_at_a_quarter_of_the_heap_budget() {
        let (mut local, _) = op_with(0, 64 << 10);
        let ctx = OperatorContext::for_tests();
        let mut out = Vec::new();
        let hot: Vec<(i64, i64, Option<i64>)> = (0..5_000).map(|_| (7, 1, Some(0))).collect();
        local.process(0, batch(&hot), &ctx, &mut out).unwrap();
        assert!(out.is_empty(), "one hot key's rows take one entry");
        // 50 new keys at a time: it flushes once it holds a quarter of the 64 KiB budget, long
        // before the whole budget (which would be reached only at about four times the keys).
        let (mut next, mut held) = (100, 0);
        while out.is_empty() {
            assert!(next < 10_000, "never full");
            held = local.panes.heap_bytes();
            let cold: Vec<(i64, i64, Option<i64>)> = (next..next + 50).map(|k| (k, 1, Some(0))).collect();
            local.process(0, batch(&cold), &ctx, &mut out).unwrap();
            next += 50;
        }
        assert!(
            held < 16 << 10,
            "flushed at a quarter of the budget, not later: held {held} bytes"
        );
        let flushed = rows(&out);
        assert_eq!(flushed.len(), (next - 100) as usize + 1, "every key flushed once");
        assert!(flushed.contains(&(7, 5_000, 5_000, 999)));

        // One batch larger than the whole budget flushes; it does not fail the job.
        out.clear();
        let cold: Vec<(i64, i64, Option<i64>)> = (0..5_000).map(|k| (k + 20_000, 1, Some(0))).collect();
        local.process(0, batch(&cold), &ctx, &mut out).unwrap();
        assert_eq!(rows(&out).len(), 5_000, "5,000 keys outgrow the budget: all flushed");
    }
}
