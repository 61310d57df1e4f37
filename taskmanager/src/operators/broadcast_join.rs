//! The broadcast state pattern (Flink's `connect(broadcast).process(...)`): input 1 is a
//! broadcast stream of entries keyed by a column; every subtask keeps all of them. Input 0's rows
//! look up the entry their `lookup` column names, as it was at the row's event time: the entry
//! version with the latest event time not after the row's. A main row waits until the
//! watermark (the smaller of both inputs') passes its event time, so every entry that could
//! apply has arrived; the result is the same whatever order the two inputs arrive in, on every
//! attempt. Rows behind the watermark on arrival are joined at once with what is known.
//! Each subtask snapshots its copy of the entries (broadcast redistribution: subtask i of a
//! rescaled job takes old subtask i mod p's copy) and its waiting rows (split among the new
//! subtasks).

use std::collections::BTreeMap;

use arrow::array::{new_null_array, Array, ArrayRef, AsArray, BooleanArray};
use arrow::compute::{cast, concat_batches, filter_record_batch, interleave};
use arrow::datatypes::{DataType, Int64Type, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow::util::display::array_value_to_string;
use sluice_common::job::expr::{compile_scalar, CompiledExpr};
use sluice_common::proto::checkpoint::RedistributionMode;
use sluice_common::state::batch_ipc::{batch_to_ipc, batches_from_ipc};

use super::{Operator, OperatorContext};
use crate::error::TaskError;
use crate::state::snapshot::SnapshotKind;
use crate::state::snapshot::{OperatorRestoreData, OperatorSnapshot};

const ENTRIES: &str = "broadcast-entries";
const WAITING: &str = "broadcast-waiting";

/// Where the columns are.
pub(crate) struct BroadcastColumns {
    pub main: SchemaRef,
    pub main_time: String,
    pub lookup: String,
    pub rules: SchemaRef,
    pub rules_time: String,
    pub key: String,
    pub output: SchemaRef,
}

pub(crate) struct BroadcastJoin {
    cols: BroadcastColumns,
    inner: bool,
    filter: Option<CompiledExpr>,
    /// Entry key → its versions (event time, the one-row entry), oldest first.
    entries: BTreeMap<String, Vec<(i64, RecordBatch)>>,
    /// Main rows waiting for the watermark.
    waiting: Vec<RecordBatch>,
    watermark: i64,
    /// Indices of the rule columns the output carries.
    carried: Vec<usize>,
}

fn times(batch: &RecordBatch, column: &str) -> Result<Vec<Option<i64>>, String> {
    let c = batch
        .column_by_name(column)
        .ok_or_else(|| format!("no column '{column}'"))?;
    let ints = cast(c, &DataType::Int64).map_err(|e| e.to_string())?;
    Ok(ints.as_primitive::<Int64Type>().iter().collect())
}

fn texts(batch: &RecordBatch, column: &str) -> Result<Vec<Option<String>>, String> {
    let c = batch
        .column_by_name(column)
        .ok_or_else(|| format!("no column '{column}'"))?;
    (0..c.len())
        .map(|i| {
            if c.is_null(i) {
                Ok(None)
            } else {
                array_value_to_string(c, i).map(Some).map_err(|e| e.to_string())
            }
        })
        .collect()
}

impl BroadcastJoin {
    pub(crate) fn new(
        cols: BroadcastColumns,
        inner: bool,
        filter: Option<&str>,
        restore: Option<OperatorRestoreData>,
    ) -> Result<BroadcastJoin, String> {
        let filter = filter.map(|sql| compile_scalar(sql, &cols.output)).transpose()?;
        let carried = cols
            .rules
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| f.name() != &cols.key && f.name() != &cols.rules_time)
            .map(|(i, _)| i)
            .collect();
        let mut op = BroadcastJoin {
            cols,
            inner,
            filter,
            entries: BTreeMap::new(),
            waiting: Vec::new(),
            watermark: i64::MIN,
            carried,
        };
        if let Some(r) = restore {
            for bytes in r.lists.list(ENTRIES).unwrap_or_default() {
                for b in batches_from_ipc(bytes)? {
                    op.add_entries(&b)?;
                }
            }
            for bytes in r.lists.list(WAITING).unwrap_or_default() {
                op.waiting.extend(batches_from_ipc(bytes)?);
            }
        }
        Ok(op)
    }

    fn add_entries(&mut self, batch: &RecordBatch) -> Result<(), String> {
        let keys = texts(batch, &self.cols.key)?;
        let ts = times(batch, &self.cols.rules_time)?;
        for (row, (key, t)) in keys.into_iter().zip(ts).enumerate() {
            let (Some(key), Some(t)) = (key, t) else {
                return Err(format!(
                    "a broadcast entry without '{}' or '{}' (row {row} of its batch)",
                    self.cols.key, self.cols.rules_time
                ));
            };
            let versions = self.entries.entry(key).or_default();
            let at = versions.partition_point(|(v, _)| *v <= t);
            // The same event time again: the later arrival wins.
            if at > 0 && versions[at - 1].0 == t {
                versions[at - 1].1 = batch.slice(row, 1);
            } else {
                versions.insert(at, (t, batch.slice(row, 1)));
            }
        }
        Ok(())
    }

    /// Main rows joined with the entries in force at their event time, filtered.
    fn join(&self, batch: &RecordBatch) -> Result<Option<RecordBatch>, String> {
        let keys = texts(batch, &self.cols.lookup)?;
        let ts = times(batch, &self.cols.main_time)?;
        let mut matched: Vec<&RecordBatch> = Vec::new();
        let mut picks: Vec<(usize, usize)> = Vec::with_capacity(batch.num_rows());
        for (key, t) in keys.iter().zip(&ts) {
            let version = key.as_ref().zip(*t).and_then(|(k, t)| {
                let versions = self.entries.get(k)?;
                let at = versions.partition_point(|(v, _)| *v <= t);
                (at > 0).then(|| &versions[at - 1].1)
            });
            picks.push(match version {
                Some(v) => {
                    matched.push(v);
                    (matched.len(), 0)
                }
                None => (0, 0),
            });
        }
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        for &c in &self.carried {
            let field = self.cols.rules.field(c);
            let null = new_null_array(field.data_type(), 1);
            let mut sources: Vec<&dyn Array> = vec![null.as_ref()];
            sources.extend(matched.iter().map(|b| b.column(c).as_ref()));
            columns.push(interleave(&sources, &picks).map_err(|e| e.to_string())?);
        }
        let mut out = RecordBatch::try_new(self.cols.output.clone(), columns).map_err(|e| e.to_string())?;
        if self.inner {
            let found: BooleanArray = picks.iter().map(|(s, _)| Some(*s > 0)).collect();
            out = filter_record_batch(&out, &found).map_err(|e| e.to_string())?;
        }
        if let Some(f) = &self.filter {
            let mask = f.evaluate(&out)?;
            let mask = mask
                .as_boolean_opt()
                .ok_or("the broadcast filter did not yield booleans")?;
            out = filter_record_batch(&out, mask).map_err(|e| e.to_string())?;
        }
        Ok((out.num_rows() > 0).then_some(out))
    }

    /// Joins and emits `batch`'s rows at or before `up_to`; returns the rest, which wait.
    fn join_due(
        &self,
        batch: RecordBatch,
        up_to: i64,
        out: &mut Vec<RecordBatch>,
    ) -> Result<Option<RecordBatch>, String> {
        let due: BooleanArray = times(&batch, &self.cols.main_time)?
            .into_iter()
            .map(|t| Some(t.is_none_or(|t| t <= up_to)))
            .collect();
        let now = filter_record_batch(&batch, &due).map_err(|e| e.to_string())?;
        let later = filter_record_batch(&batch, &arrow::compute::not(&due).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        if now.num_rows() > 0 {
            out.extend(self.join(&now)?);
        }
        Ok((later.num_rows() > 0).then_some(later))
    }

    /// Joins and emits the waiting rows at or before `up_to`, in arrival order.
    fn release(&mut self, up_to: i64, out: &mut Vec<RecordBatch>) -> Result<(), String> {
        let mut still = Vec::new();
        for b in std::mem::take(&mut self.waiting) {
            still.extend(self.join_due(b, up_to, out)?);
        }
        self.waiting = still;
        Ok(())
    }

    /// Versions no waiting or future row can need: all but the newest at or before the watermark.
    fn prune(&mut self) {
        let wm = self.watermark;
        for versions in self.entries.values_mut() {
            let at = versions.partition_point(|(v, _)| *v <= wm);
            if at > 1 {
                versions.drain(..at - 1);
            }
        }
    }
}

impl Operator for BroadcastJoin {
    fn process(
        &mut self,
        input: usize,
        batch: RecordBatch,
        _ctx: &OperatorContext,
        out: &mut Vec<RecordBatch>,
    ) -> Result<(), TaskError> {
        if input == 1 {
            return Ok(self.add_entries(&batch)?);
        }
        // Rows already behind the watermark are joined now; the rest wait for it.
        let later = self.join_due(batch, self.watermark, out)?;
        self.waiting.extend(later);
        Ok(())
    }

    fn on_watermark(&mut self, watermark: i64, out: &mut Vec<RecordBatch>) -> Result<(), TaskError> {
        self.watermark = self.watermark.max(watermark);
        self.release(self.watermark, out)?;
        self.prune();
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<RecordBatch>) -> Result<(), TaskError> {
        self.release(i64::MAX, out)?;
        Ok(())
    }

    fn snapshot(&mut self, _checkpoint_id: u64, _kind: SnapshotKind) -> Result<OperatorSnapshot, TaskError> {
        let mut s = OperatorSnapshot::default();
        let rows: Vec<RecordBatch> = self.entries.values().flatten().map(|(_, b)| b.clone()).collect();
        let entries = if rows.is_empty() {
            Vec::new()
        } else {
            vec![batch_to_ipc(
                &concat_batches(&self.cols.rules, &rows).map_err(|e| e.to_string())?,
            )?]
        };
        s.list(ENTRIES, RedistributionMode::Broadcast, entries);
        let waiting = if self.waiting.is_empty() {
            Vec::new()
        } else {
            vec![batch_to_ipc(
                &concat_batches(&self.cols.main, &self.waiting).map_err(|e| e.to_string())?,
            )?]
        };
        s.list(WAITING, RedistributionMode::SplitDistribute, waiting);
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Float64Array, Int64Array, StringArray, TimestampMillisecondArray};
    use arrow::datatypes::{Field, Schema};

    use std::sync::Arc;

    use super::*;
    use sluice_common::job::graph::timestamp_type;
    use sluice_common::state::assignment::OperatorRestore;

    fn cols() -> BroadcastColumns {
        let main = Arc::new(Schema::new(vec![
            Field::new("user", DataType::Int64, false),
            Field::new("group", DataType::Utf8, false),
            Field::new("ts", timestamp_type(), false),
        ]));
        let rules = Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("limit", DataType::Float64, false),
            Field::new("at", timestamp_type(), false),
        ]));
        let mut fields: Vec<Field> = main.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new("limit", DataType::Float64, true));
        BroadcastColumns {
            main,
            main_time: "ts".into(),
            lookup: "group".into(),
            rules,
            rules_time: "at".into(),
            key: "name".into(),
            output: Arc::new(Schema::new(fields)),
        }
    }

    fn main_rows(rows: &[(i64, &str, i64)]) -> RecordBatch {
        RecordBatch::try_new(
            cols().main,
            vec![
                Arc::new(Int64Array::from(rows.iter().map(|r| r.0).collect::<Vec<_>>())),
                Arc::new(StringArray::from(rows.iter().map(|r| r.1).collect::<Vec<_>>())),
                Arc::new(TimestampMillisecondArray::from(
                    rows.iter().map(|r| r.2).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap()
    }

    fn rules(rows: &[(&str, f64, i64)]) -> RecordBatch {
        RecordBatch::try_new(
            cols().rules,
            vec![
                Arc::new(StringArray::from(rows.iter().map(|r| r.0).collect::<Vec<_>>())),
                Arc::new(Float64Array::from(rows.iter().map(|r| r.1).collect::<Vec<_>>())),
                Arc::new(TimestampMillisecondArray::from(
                    rows.iter().map(|r| r.2).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap()
    }

    /// (user, limit) of every output row.
    fn joined(out: &[RecordBatch]) -> Vec<(i64, Option<f64>)> {
        out.iter()
            .flat_map(|b| {
                let users = b.column(0).as_primitive::<Int64Type>().clone();
                let limits = b.column(3).as_primitive::<arrow::datatypes::Float64Type>().clone();
                (0..b.num_rows())
                    .map(|i| (users.value(i), limits.is_valid(i).then(|| limits.value(i))))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn rows_take_the_entry_in_force_at_their_event_time_whatever_the_arrival_order() {
        let ctx = OperatorContext::for_tests();
        let mut op = BroadcastJoin::new(cols(), false, None, None).unwrap();
        let mut out = Vec::new();
        // Main rows first, the rules after them: nothing is emitted before the watermark.
        op.process(
            0,
            main_rows(&[(1, "a", 100), (2, "a", 300), (3, "b", 300), (4, "c", 50)]),
            &ctx,
            &mut out,
        )
        .unwrap();
        op.process(
            1,
            rules(&[("a", 10.0, 0), ("a", 20.0, 200), ("b", 5.0, 400)]),
            &ctx,
            &mut out,
        )
        .unwrap();
        assert!(out.is_empty());
        op.on_watermark(300, &mut out).unwrap();
        // a@100 → 10; a@300 → 20 (the version of 200); b@300 → none yet in force; c → none.
        assert_eq!(
            joined(&out),
            vec![(1, Some(10.0)), (2, Some(20.0)), (3, None), (4, None)]
        );

        // Snapshot, restore elsewhere (a rescaled subtask): the same entries apply.
        out.clear();
        op.process(0, main_rows(&[(5, "b", 450)]), &ctx, &mut out).unwrap();
        let snap = op.snapshot(1, SnapshotKind::Checkpoint).unwrap();
        let restore = OperatorRestoreData {
            lists: OperatorRestore {
                keyed: Vec::new(),
                lists: snap
                    .lists
                    .iter()
                    .map(|l| (l.name.clone(), l.elements.clone()))
                    .collect(),
                range: None,
            },
            ..Default::default()
        };
        let mut again = BroadcastJoin::new(cols(), true, Some("limit > 1"), Some(restore)).unwrap();
        again.finish(&mut out).unwrap();
        assert_eq!(
            joined(&out),
            vec![(5, Some(5.0))],
            "inner join with its filter, after restore"
        );
    }
}
