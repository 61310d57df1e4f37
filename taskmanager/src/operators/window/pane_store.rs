//! The pane-store interface: where a window aggregate keeps its windows' accumulators between
//! batches. The aggregate (`aggregate.rs`) owns time, window assignment, late rows and
//! emitting; a store owns the representation: `HeapPanes` (live group accumulators per pane,
//! `hashmap` backend), `RocksPanes` (pane state in RocksDB, `rocksdb` backend) and
//! `SessionWindows` (per-key merging sessions on the keyed state of either backend). Every
//! store snapshots to the same per-key-group format, so a restore may change parallelism or
//! backend.

use arrow::array::{Array, ArrayRef, TimestampMillisecondArray, UInt32Array};
use arrow::compute::take;
use arrow::row::Rows;
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use std::sync::Arc;

use super::assigner::Window;
use super::state_codec::StateCodec;
use crate::state::snapshot::KeyedSnapshot;
use crate::state::snapshot::SnapshotKind;

/// The rows of one batch, as a store takes them.
pub(super) struct PaneBatch<'a> {
    /// Each aggregate's argument arrays.
    pub args: &'a [Vec<ArrayRef>],
    pub key_columns: &'a [ArrayRef],
    /// The keys in Arrow's row format, unless the store said it reads none
    /// (`PaneStore::reads_key_rows`) and the key is one BIGINT column.
    pub key_rows: Option<&'a Rows>,
    /// Each row's time (event or processing), `i64::MIN` for a null event time.
    pub ts: &'a [i64],
    /// (window, row) of every row that is not late, for window kinds assigned up front
    /// (tumbling, sliding); empty for sessions, which assign (and merge) their own.
    pub assigned: &'a [(Window, u32)],
    /// Windows this time has fired take no more rows.
    pub watermark: i64,
}

/// What a keyed aggregate reads of a batch before it is placed in panes: the key columns, the
/// keys in Arrow's row format (where needed), and each aggregate's argument arrays.
pub(super) struct KeyedInput {
    pub key_columns: Vec<ArrayRef>,
    pub key_rows: Option<Rows>,
    pub args: Vec<Vec<ArrayRef>>,
}

impl KeyedInput {
    /// `rows`: whether the store reads row-encoded keys even of a BIGINT key.
    pub(super) fn read(
        keys: &[usize],
        codec: &StateCodec,
        aggs: &[AggregateFunctionExpr],
        batch: &arrow::record_batch::RecordBatch,
        rows: bool,
    ) -> Result<KeyedInput, String> {
        let key_columns: Vec<ArrayRef> = keys.iter().map(|i| batch.column(*i).clone()).collect();
        let key_rows = (rows || !codec.int_key)
            .then(|| codec.keys.convert_columns(&key_columns).map_err(|e| e.to_string()))
            .transpose()?;
        let args = aggregate_arguments(aggs, batch)?;
        Ok(KeyedInput {
            key_columns,
            key_rows,
            args,
        })
    }

    /// The rows as a store takes them, with their times and assigned windows.
    pub(super) fn pane_batch<'a>(
        &'a self,
        ts: &'a [i64],
        assigned: &'a [(Window, u32)],
        watermark: i64,
    ) -> PaneBatch<'a> {
        PaneBatch {
            args: &self.args,
            key_columns: &self.key_columns,
            key_rows: self.key_rows.as_ref(),
            ts,
            assigned,
            watermark,
        }
    }
}

/// Fired windows as output columns: one row per (window, key).
pub(super) struct Fired {
    pub windows: Vec<Window>,
    pub keys: Vec<ArrayRef>,
    /// One array per aggregate.
    pub values: Vec<ArrayRef>,
}

impl Fired {
    /// The rows of one fired pane: its keys and its group accumulators (one group per key).
    pub(super) fn pane(
        window: Window,
        keys: Vec<ArrayRef>,
        n: usize,
        accs: Vec<Box<dyn GroupsAccumulator>>,
    ) -> Result<Option<Fired>, String> {
        if n == 0 {
            return Ok(None);
        }
        let values = accs
            .into_iter()
            .map(|mut acc| df(acc.evaluate(EmitTo::All)))
            .collect::<Result<_, _>>()?;
        Ok(Some(Fired {
            windows: vec![window; n],
            keys,
            values,
        }))
    }

    /// `window_start`, `window_end`, the keys, then the aggregates.
    pub(super) fn into_columns(self) -> Vec<ArrayRef> {
        let start = TimestampMillisecondArray::from_iter_values(self.windows.iter().map(|w| w.start));
        let end = TimestampMillisecondArray::from_iter_values(self.windows.iter().map(|w| w.end));
        let mut columns: Vec<ArrayRef> = vec![Arc::new(start), Arc::new(end)];
        columns.extend(self.keys);
        columns.extend(self.values);
        columns
    }
}

pub(super) trait PaneStore: Send {
    /// Adds a batch's rows; returns how many of them it found late (only stores that assign
    /// their own windows find any).
    fn add(&mut self, codec: &StateCodec, aggs: &[AggregateFunctionExpr], batch: &PaneBatch) -> Result<u64, String>;

    /// Removes and returns windows `time` has fired, oldest first: all of them, or (a store
    /// that bounds what one call emits) a part, the rest reported by `fire_pending`.
    fn fire(&mut self, codec: &StateCodec, aggs: &[AggregateFunctionExpr], time: i64) -> Result<Vec<Fired>, String>;

    /// Whether it reads a batch's keys row-encoded even where the key is one BIGINT column.
    fn reads_key_rows(&self) -> bool {
        true
    }

    /// Whether windows `time` has fired are still to be emitted by further `fire` calls.
    fn fire_pending(&self, _time: i64) -> bool {
        false
    }

    /// The keyed part of the operator's snapshot.
    fn snapshot(
        &mut self,
        codec: &StateCodec,
        aggs: &[AggregateFunctionExpr],
        checkpoint_id: u64,
        kind: SnapshotKind,
    ) -> Result<KeyedSnapshot, String>;

    fn notify_checkpoint_complete(&mut self, _checkpoint_id: u64) {}
}

impl PaneBatch<'_> {
    /// The row-encoded keys, for a store that reads them (`reads_key_rows`).
    pub(super) fn rows(&self) -> Result<&Rows, String> {
        self.key_rows
            .ok_or_else(|| "window keys were read without their row encoding".to_string())
    }
}

/// A DataFusion result with its error as the task's message.
pub(crate) fn df<T>(r: datafusion::common::Result<T>) -> Result<T, String> {
    r.map_err(|e| e.to_string())
}

/// The rows `idx` of each argument array; the arrays themselves when `idx` is every row in
/// order (a batch whose rows all fall in one pane), without a copy.
pub(super) fn take_rows(args: &[ArrayRef], idx: &UInt32Array) -> Result<Vec<ArrayRef>, String> {
    let every_row = |a: &ArrayRef| {
        a.len() == idx.len() && idx.null_count() == 0 && idx.values().iter().enumerate().all(|(i, &r)| r as usize == i)
    };
    if args.first().is_some_and(every_row) {
        return Ok(args.to_vec());
    }
    args.iter()
        .map(|arr| take(arr.as_ref(), idx, None).map_err(|e| e.to_string()))
        .collect()
}

/// Each aggregate's argument arrays, evaluated over `batch`.
pub(crate) fn aggregate_arguments(
    aggs: &[AggregateFunctionExpr],
    batch: &arrow::record_batch::RecordBatch,
) -> Result<Vec<Vec<ArrayRef>>, String> {
    aggs.iter()
        .map(|a| {
            a.expressions()
                .iter()
                .map(|e| df(e.evaluate(batch).and_then(|v| v.into_array(batch.num_rows()))))
                .collect()
        })
        .collect()
}

pub(crate) fn new_accumulators(aggs: &[AggregateFunctionExpr]) -> Result<Vec<Box<dyn GroupsAccumulator>>, String> {
    aggs.iter().map(|a| df(a.create_groups_accumulator())).collect()
}

#[cfg(test)]
#[path = "pane_store_tests.rs"]
mod tests;
