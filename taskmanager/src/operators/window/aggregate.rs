//! The keyed window aggregate: time (event time from the rowtime column, or the clock),
//! window assignment (tumbling and sliding up front; sessions merge in their store), late rows
//! (rows of windows the watermark already fired are dropped and counted) and emitting: a window
//! fires when the watermark (or, in processing time, the clock) reaches its max timestamp.
//!
//! The panes themselves live in a `PaneStore` (`pane_store.rs`) chosen by window kind and
//! state backend: `HeapPanes` (`hashmap`), `RocksPanes` (`rocksdb`) or `SessionWindows`
//! (sessions, on either backend). The operator's watermark is operator state (union, the
//! minimum wins on restore), so rows of windows fired before a checkpoint stay late after
//! recovery.

use crate::error::TaskError;
use crate::operators::OperatorContext;
use crate::state::snapshot::SnapshotKind;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{SchemaRef, TimestampMillisecondType};
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use sluice_common::job::expr::compile_aggregate;
use sluice_common::job::spec::{TimeKind, WindowKind, WindowSpec};
use sluice_common::proto::checkpoint::RedistributionMode;

use super::assigner::{self, Window};
use super::heap_panes::HeapPanes;
use super::pane_store::{df, KeyedInput, PaneStore};
use super::rocks_panes::RocksPanes;
use super::sessions::SessionWindows;
use super::state_codec::StateCodec;
use crate::operators::Operator;
use crate::state::snapshot::{OperatorRestoreData, OperatorSnapshot};
use crate::state::timers::TimeDomain;
use crate::state::StateSettings;
use sluice_common::config::options::StateBackendKind;

const WATERMARK_STATE: &str = "window-watermark";

pub(crate) struct WindowAggregate {
    kind: WindowKind,
    time: TimeKind,
    rowtime: Option<usize>,
    keys: Vec<usize>,
    codec: StateCodec,
    aggs: Vec<AggregateFunctionExpr>,
    output: SchemaRef,
    watermark: i64,
    store: Box<dyn PaneStore>,
    late: Arc<AtomicU64>,
    scratch: Vec<Window>,
    /// The time of the last `fire`: a store that fires in parts has more due at it.
    firing_at: i64,
}

fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl WindowAggregate {
    /// `rowtime` names the event-time column (required for event time).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        window: &WindowSpec,
        rowtime: Option<&str>,
        keys: &[String],
        aggregates: &[(String, String)],
        input: &SchemaRef,
        output: SchemaRef,
        late: Arc<AtomicU64>,
        settings: StateSettings,
        restore: Option<OperatorRestoreData>,
    ) -> Result<WindowAggregate, String> {
        let (kind, time) = (window.kind, window.time);
        let index = |name: &str| input.index_of(name).map_err(|e| e.to_string());
        let rowtime = match (time, rowtime) {
            (TimeKind::Event, Some(c)) => Some(index(c)?),
            (TimeKind::Event, None) => return Err("an event-time window needs a rowtime column".into()),
            (TimeKind::Processing, _) => None,
        };
        let (keys, aggs, codec) = compile_keyed(keys, aggregates, input, settings.max_parallelism)?;
        let store: Box<dyn PaneStore> = match (settings.backend, kind) {
            (_, WindowKind::Session { gap }) => {
                let domain = match time {
                    TimeKind::Event => TimeDomain::EventTime,
                    TimeKind::Processing => TimeDomain::ProcessingTime,
                };
                Box::new(SessionWindows::open(&settings, restore.as_ref(), millis(gap), domain)?)
            }
            (StateBackendKind::HashMap, _) => Box::new(HeapPanes::open(&settings, restore.as_ref(), &codec, &aggs)?),
            (StateBackendKind::RocksDb, _) => Box::new(RocksPanes::open(&settings, restore.as_ref())?),
        };
        let watermark = restore
            .as_ref()
            .and_then(|r| r.lists.list(WATERMARK_STATE))
            .and_then(|marks| {
                marks
                    .iter()
                    .filter_map(|b| b.as_slice().try_into().ok().map(i64::from_le_bytes))
                    .min()
            })
            .unwrap_or(i64::MIN);
        Ok(WindowAggregate {
            kind,
            time,
            rowtime,
            keys,
            codec,
            aggs,
            output,
            watermark,
            store,
            late,
            scratch: Vec::new(),
            firing_at: i64::MIN,
        })
    }

    fn timestamps(&self, batch: &RecordBatch) -> Result<Vec<i64>, String> {
        match self.rowtime {
            Some(i) => event_times(batch, i),
            None => {
                let now = sluice_common::wall_ms::wall_ms();
                Ok(vec![now; batch.num_rows()])
            }
        }
    }

    /// (window, row) for every row of a batch that is not late; counts the late ones.
    /// Sessions assign their own windows (they merge), so nothing is assigned for them here.
    fn assign_rows(&mut self, ts: &[i64]) -> Vec<(Window, u32)> {
        if matches!(self.kind, WindowKind::Session { .. }) {
            return Vec::new();
        }
        let mut out = Vec::with_capacity(ts.len());
        let mut late = 0u64;
        let mut windows = std::mem::take(&mut self.scratch);
        let mut run = assigner::TumblingRun::new(match self.kind {
            WindowKind::Tumbling { size } => millis(size),
            _ => 1,
        });
        for (r, &t) in ts.iter().enumerate() {
            windows.clear();
            match self.kind {
                WindowKind::Tumbling { .. } => windows.push(run.window(t)),
                WindowKind::Sliding { size, slide } => assigner::sliding(t, millis(size), millis(slide), &mut windows),
                WindowKind::Session { .. } => {}
            }
            let before = out.len();
            for w in &windows {
                if t != i64::MIN && !w.is_fired_by(self.watermark) {
                    out.push((*w, r as u32));
                }
            }
            if out.len() == before {
                late += 1;
            }
        }
        self.scratch = windows;
        self.late.fetch_add(late, Ordering::Relaxed);
        out
    }

    fn fire(&mut self, time: i64, out: &mut Vec<RecordBatch>) -> Result<(), String> {
        self.firing_at = time;
        for fired in self.store.fire(&self.codec, &self.aggs, time)? {
            let batch = RecordBatch::try_new(self.output.clone(), fired.into_columns()).map_err(|e| e.to_string())?;
            out.push(batch);
        }
        Ok(())
    }
}

/// The key columns' indices, the compiled aggregates and the state codec of a keyed aggregate
/// over `input`.
pub(super) fn compile_keyed(
    keys: &[String],
    aggregates: &[(String, String)],
    input: &SchemaRef,
    max_parallelism: u32,
) -> Result<(Vec<usize>, Vec<AggregateFunctionExpr>, StateCodec), String> {
    let keys: Vec<usize> = keys
        .iter()
        .map(|k| input.index_of(k).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let fields = keys
        .iter()
        .map(|i| SortField::new(input.field(*i).data_type().clone()))
        .collect();
    let converter = df(RowConverter::new(fields).map_err(Into::into))?;
    let aggs: Vec<AggregateFunctionExpr> = aggregates
        .iter()
        .map(|(name, sql)| compile_aggregate(name, sql, input))
        .collect::<Result<_, _>>()?;
    let mut codec = StateCodec::new(converter, &aggs, max_parallelism)?;
    codec.int_key = matches!(keys.as_slice(), [k] if input.field(*k).data_type() == &arrow::datatypes::DataType::Int64);
    Ok((keys, aggs, codec))
}

/// Each row's event time from column `rowtime`; a null one (it cannot be placed in a window,
/// so it is late) as `i64::MIN`.
pub(super) fn event_times(batch: &RecordBatch, rowtime: usize) -> Result<Vec<i64>, String> {
    let col = batch
        .column(rowtime)
        .as_primitive_opt::<TimestampMillisecondType>()
        .ok_or("rowtime column is not a timestamp")?;
    if col.null_count() == 0 {
        return Ok(col.values().to_vec());
    }
    Ok((0..col.len())
        .map(|r| if col.is_null(r) { i64::MIN } else { col.value(r) })
        .collect())
}

impl Operator for WindowAggregate {
    fn process(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        _ctx: &OperatorContext,
        _out: &mut Vec<RecordBatch>,
    ) -> Result<(), TaskError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let ts = self.timestamps(&batch)?;
        let input = KeyedInput::read(&self.keys, &self.codec, &self.aggs, &batch, self.store.reads_key_rows())?;
        let assigned = self.assign_rows(&ts);
        let rows = input.pane_batch(&ts, &assigned, self.watermark);
        let late = self.store.add(&self.codec, &self.aggs, &rows)?;
        self.late.fetch_add(late, Ordering::Relaxed);
        Ok(())
    }

    fn snapshot(&mut self, checkpoint_id: u64, kind: SnapshotKind) -> Result<OperatorSnapshot, TaskError> {
        let keyed = self.store.snapshot(&self.codec, &self.aggs, checkpoint_id, kind)?;
        let mut snap = OperatorSnapshot {
            keyed: Some(keyed),
            ..Default::default()
        };
        snap.list(
            WATERMARK_STATE,
            RedistributionMode::Union,
            vec![self.watermark.to_le_bytes().to_vec()],
        );
        Ok(snap)
    }

    fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<(), TaskError> {
        self.store.notify_checkpoint_complete(checkpoint_id);
        Ok(())
    }

    fn on_watermark(&mut self, watermark: i64, out: &mut Vec<RecordBatch>) -> Result<(), TaskError> {
        if self.time == TimeKind::Processing {
            return Ok(());
        }
        self.watermark = self.watermark.max(watermark);
        Ok(self.fire(self.watermark, out)?)
    }

    fn on_processing_time(&mut self, now_ms: i64, out: &mut Vec<RecordBatch>) -> Result<(), TaskError> {
        if self.time == TimeKind::Event {
            return Ok(());
        }
        self.watermark = self.watermark.max(now_ms);
        Ok(self.fire(self.watermark, out)?)
    }

    /// End of input: every open window fires (in processing time too).
    fn finish(&mut self, out: &mut Vec<RecordBatch>) -> Result<(), TaskError> {
        Ok(self.fire(i64::MAX, out)?)
    }

    /// A RocksDB store fires a large window a chunk per call: more is due at this time.
    fn has_pending_output(&self) -> bool {
        self.store.fire_pending(self.firing_at)
    }

    fn uses_processing_time(&self) -> bool {
        self.time == TimeKind::Processing
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::snapshot::KeyedSnapshot;
    use crate::state::test_settings;
    use arrow::array::TimestampMillisecondArray;
    use arrow::array::{ArrayRef, Float64Array, Int64Array};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use std::time::Duration;

    fn input() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("v", DataType::Float64, false),
            Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), false),
        ]))
    }

    fn output() -> SchemaRef {
        let ts = DataType::Timestamp(TimeUnit::Millisecond, None);
        Arc::new(Schema::new(vec![
            Field::new("window_start", ts.clone(), false),
            Field::new("window_end", ts, false),
            Field::new("k", DataType::Int64, false),
            Field::new("n", DataType::Int64, true),
            Field::new("total", DataType::Float64, true),
        ]))
    }

    fn batch(rows: &[(i64, f64, i64)]) -> RecordBatch {
        RecordBatch::try_new(
            input(),
            vec![
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(TimestampMillisecondArray::from_iter_values(rows.iter().map(|r| r.2))),
            ],
        )
        .unwrap()
    }

    fn op(kind: WindowKind) -> (WindowAggregate, Arc<AtomicU64>) {
        op_with(kind, StateBackendKind::HashMap, (0, 127), None)
    }

    fn op_with(
        kind: WindowKind,
        backend: StateBackendKind,
        range: (u32, u32),
        restore: Option<OperatorRestoreData>,
    ) -> (WindowAggregate, Arc<AtomicU64>) {
        let late = Arc::new(AtomicU64::new(0));
        let aggs = vec![
            ("n".to_string(), "count(*)".to_string()),
            ("total".to_string(), "sum(v)".to_string()),
        ];
        let spec = WindowSpec {
            kind,
            time: TimeKind::Event,
            pos: Default::default(),
        };
        let w = WindowAggregate::new(
            &spec,
            Some("ts"),
            &["k".into()],
            &aggs,
            &input(),
            output(),
            late.clone(),
            test_settings(backend, &std::env::temp_dir(), range),
            restore,
        )
        .unwrap();
        (w, late)
    }

    /// (start, end, key, count, sum) of every output row, sorted.
    fn rows(out: &[RecordBatch]) -> Vec<(i64, i64, i64, i64, f64)> {
        let mut v = Vec::new();
        for b in out {
            let s = b.column(0).as_primitive::<TimestampMillisecondType>();
            let e = b.column(1).as_primitive::<TimestampMillisecondType>();
            let k = b.column(2).as_primitive::<arrow::datatypes::Int64Type>();
            let n = b.column(3).as_primitive::<arrow::datatypes::Int64Type>();
            let t = b.column(4).as_primitive::<arrow::datatypes::Float64Type>();
            for i in 0..b.num_rows() {
                v.push((s.value(i), e.value(i), k.value(i), n.value(i), t.value(i)));
            }
        }
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v
    }

    #[test]
    fn tumbling_fires_at_max_timestamp_and_drops_late_rows() {
        let (mut w, late) = op(WindowKind::Tumbling {
            size: Duration::from_millis(1000),
        });
        let mut out = Vec::new();
        w.process(
            0,
            batch(&[(1, 1.0, 100), (2, 2.0, 900), (1, 3.0, 999), (1, 4.0, 1000)]),
            &OperatorContext::for_tests(),
            &mut out,
        )
        .unwrap();
        w.on_watermark(998, &mut out).unwrap();
        assert!(out.is_empty(), "window [0,1000) must wait for watermark 999");
        w.on_watermark(999, &mut out).unwrap();
        assert_eq!(rows(&out), vec![(0, 1000, 1, 2, 4.0), (0, 1000, 2, 1, 2.0)]);
        // A row for the fired window is late; one for the open window is not.
        out.clear();
        w.process(
            0,
            batch(&[(1, 9.0, 500), (1, 5.0, 1500)]),
            &OperatorContext::for_tests(),
            &mut out,
        )
        .unwrap();
        assert_eq!(late.load(Ordering::Relaxed), 1);
        w.finish(&mut out).unwrap();
        assert_eq!(rows(&out), vec![(1000, 2000, 1, 2, 9.0)]);
    }

    #[test]
    fn processing_time_windows_fire_on_the_clock() {
        let late = Arc::new(AtomicU64::new(0));
        let aggs = vec![
            ("n".to_string(), "count(*)".to_string()),
            ("total".to_string(), "sum(v)".to_string()),
        ];
        let spec = WindowSpec {
            kind: WindowKind::Tumbling {
                size: Duration::from_millis(1000),
            },
            time: TimeKind::Processing,
            pos: Default::default(),
        };
        let s = test_settings(StateBackendKind::HashMap, &std::env::temp_dir(), (0, 127));
        let mut w = WindowAggregate::new(&spec, None, &["k".into()], &aggs, &input(), output(), late, s, None).unwrap();
        assert!(w.uses_processing_time());
        let mut out = Vec::new();
        // Event timestamps are ignored: rows land in the window of the wall clock.
        w.process(
            0,
            batch(&[(1, 2.0, 0), (1, 3.0, 0)]),
            &OperatorContext::for_tests(),
            &mut out,
        )
        .unwrap();
        w.on_watermark(i64::MAX, &mut out).unwrap();
        assert!(out.is_empty(), "watermarks do not fire processing-time windows");
        let now = sluice_common::wall_ms::wall_ms();
        w.on_processing_time(now + 2000, &mut out).unwrap();
        let got = rows(&out);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].2, got[0].3, got[0].4), (1, 2, 5.0));
        assert!(got[0].0 <= now && now < got[0].1 + 1000);
    }

    #[test]
    fn sliding_counts_each_row_in_every_window() {
        let (mut w, _) = op(WindowKind::Sliding {
            size: Duration::from_millis(1000),
            slide: Duration::from_millis(500),
        });
        let mut out = Vec::new();
        w.process(0, batch(&[(1, 1.0, 700)]), &OperatorContext::for_tests(), &mut out)
            .unwrap();
        w.finish(&mut out).unwrap();
        assert_eq!(rows(&out), vec![(0, 1000, 1, 1, 1.0), (500, 1500, 1, 1, 1.0)]);
    }

    #[test]
    fn sessions_merge_per_key() {
        for backend in [StateBackendKind::HashMap, StateBackendKind::RocksDb] {
            let session = WindowKind::Session {
                gap: Duration::from_millis(100),
            };
            let (mut w, late) = op_with(session, backend, (0, 127), None);
            let mut out = Vec::new();
            w.process(
                0,
                batch(&[(1, 1.0, 0), (1, 1.0, 250), (2, 5.0, 0)]),
                &OperatorContext::for_tests(),
                &mut out,
            )
            .unwrap();
            // 120 bridges nothing yet (0+100 < 120); 180 joins [120,220) with [250,350) once 150 arrives.
            w.process(
                0,
                batch(&[(1, 1.0, 120), (1, 1.0, 180)]),
                &OperatorContext::for_tests(),
                &mut out,
            )
            .unwrap();
            w.on_watermark(99, &mut out).unwrap();
            assert_eq!(
                rows(&out),
                vec![(0, 100, 1, 1, 1.0), (0, 100, 2, 1, 5.0)],
                "{backend:?}"
            );
            out.clear();
            // Its session [-1, 99) has already fired at 99: late.
            w.process(0, batch(&[(2, 1.0, -1)]), &OperatorContext::for_tests(), &mut out)
                .unwrap();
            w.finish(&mut out).unwrap();
            assert_eq!(rows(&out), vec![(120, 350, 1, 3, 3.0)], "{backend:?}");
            assert_eq!(late.load(Ordering::Relaxed), 1, "{backend:?}");
        }
    }

    /// Snapshot at parallelism 1, restore split over two subtasks (and on the other backend):
    /// the fired results equal those of an uninterrupted run.
    #[test]
    fn snapshot_restores_by_key_group_on_either_backend() {
        let rows_a: Vec<(i64, f64, i64)> = (0..200).map(|i| (i % 37, i as f64, (i * 7) % 3000)).collect();
        let rows_b: Vec<(i64, f64, i64)> = (200..400).map(|i| (i % 37, i as f64, (i * 7) % 3000)).collect();
        for kind in [
            WindowKind::Tumbling {
                size: Duration::from_millis(1000),
            },
            WindowKind::Session {
                gap: Duration::from_millis(40),
            },
        ] {
            restores_by_key_group(kind, &rows_a, &rows_b);
        }
    }

    fn restores_by_key_group(tumbling: WindowKind, rows_a: &[(i64, f64, i64)], rows_b: &[(i64, f64, i64)]) {
        let (mut whole, _) = op(tumbling);
        let mut expected = Vec::new();
        whole
            .process(0, batch(rows_a), &OperatorContext::for_tests(), &mut expected)
            .unwrap();
        whole
            .process(0, batch(rows_b), &OperatorContext::for_tests(), &mut expected)
            .unwrap();
        whole.finish(&mut expected).unwrap();

        for (from, to) in [
            (StateBackendKind::HashMap, StateBackendKind::HashMap),
            (StateBackendKind::HashMap, StateBackendKind::RocksDb),
            (StateBackendKind::RocksDb, StateBackendKind::HashMap),
            (StateBackendKind::RocksDb, StateBackendKind::RocksDb),
        ] {
            let (mut first, _) = op_with(tumbling, from, (0, 127), None);
            let mut out = Vec::new();
            first
                .process(0, batch(rows_a), &OperatorContext::for_tests(), &mut out)
                .unwrap();
            let snap = first.snapshot(1, SnapshotKind::Checkpoint).unwrap();
            let Some(KeyedSnapshot::Full { range, data, offsets }) = snap.keyed else {
                panic!("full snapshot expected");
            };
            let mut got = out;
            for (lo, hi) in [(0, 63), (64, 127)] {
                let restore = OperatorRestoreData {
                    full: vec![(data.clone(), range, offsets.clone())],
                    ..Default::default()
                };
                let (mut part, _) = op_with(tumbling, to, (lo, hi), Some(restore));
                let mine: Vec<(i64, f64, i64)> = rows_b
                    .iter()
                    .copied()
                    .filter(|r| {
                        let kg = part
                            .codec
                            .key_groups(std::iter::once(
                                part.codec
                                    .keys
                                    .convert_columns(&[Arc::new(Int64Array::from(vec![r.0])) as ArrayRef])
                                    .unwrap()
                                    .row(0)
                                    .data(),
                            ))
                            .unwrap()[0];
                        (lo..=hi).contains(&kg)
                    })
                    .collect();
                if !mine.is_empty() {
                    part.process(0, batch(&mine), &OperatorContext::for_tests(), &mut got)
                        .unwrap();
                }
                part.finish(&mut got).unwrap();
            }
            assert_eq!(rows(&got), rows(&expected), "{tumbling:?}: {from:?} → {to:?}");
        }
    }
}
