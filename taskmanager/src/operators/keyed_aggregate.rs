//! The continuous aggregate (Flink SQL's `GROUP BY` without a window): per key, the
//! accumulators of its aggregates live in keyed state (one value per key: the accumulators'
//! state fields in Arrow's row format, as windows store theirs), and every batch emits one row
//! per key it touched with that key's new values: an upsert stream keyed by the key columns.
//!
//! State TTL (`state.ttl`, else `table.exec.state.ttl`) is the keyed state's: the expiry moves
//! on every write (`OnCreateAndWrite`), an expired value is never read (`NeverReturnExpired`,
//! so the key starts again from nothing), and snapshots leave expired entries out; on RocksDB
//! the compaction filter drops them too.

use std::collections::HashMap;
use std::time::Duration;

use arrow::array::{ArrayRef, UInt32Array};
use arrow::compute::take;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};
use datafusion::logical_expr::EmitTo;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use sluice_common::job::expr::compile_aggregate;
use sluice_common::key_groups::{hash_keys, key_group};

use super::window::{aggregate_arguments, df, new_accumulators, StateCodec};
use super::{Operator, OperatorContext};
use crate::error::TaskError;
use crate::state::keyed::{KeyedState, StateDescriptor, ValueState};
use crate::state::snapshot::SnapshotKind;
use crate::state::snapshot::{OperatorRestoreData, OperatorSnapshot};
use crate::state::StateSettings;

pub(crate) struct KeyedAggregate {
    keys: Vec<usize>,
    codec: StateCodec,
    aggs: Vec<AggregateFunctionExpr>,
    output: SchemaRef,
    state: KeyedState,
    accumulators: ValueState<Vec<u8>>,
    max_parallelism: u32,
}

impl KeyedAggregate {
    pub(crate) fn new(
        keys: &[String],
        aggregates: &[(String, String)],
        ttl: Option<Duration>,
        input: &SchemaRef,
        output: SchemaRef,
        settings: StateSettings,
        restore: Option<OperatorRestoreData>,
    ) -> Result<KeyedAggregate, String> {
        let keys: Vec<usize> = keys
            .iter()
            .map(|k| input.index_of(k).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        let fields = keys
            .iter()
            .map(|i| SortField::new(input.field(*i).data_type().clone()))
            .collect();
        let converter = RowConverter::new(fields).map_err(|e| e.to_string())?;
        let aggs: Vec<AggregateFunctionExpr> = aggregates
            .iter()
            .map(|(name, sql)| compile_aggregate(name, sql, input))
            .collect::<Result<_, _>>()?;
        let codec = StateCodec::new(converter, &aggs, settings.max_parallelism)?;
        let mut descriptor = StateDescriptor::new("aggregate");
        if let Some(t) = ttl.or(settings.default_ttl) {
            descriptor = descriptor.with_ttl(t);
        }
        Ok(KeyedAggregate {
            keys,
            codec,
            aggs,
            output,
            state: KeyedState::open(&settings, restore.as_ref())?,
            accumulators: ValueState::new(descriptor),
            max_parallelism: settings.max_parallelism,
        })
    }

    /// Folds a batch into the keys' accumulators; the touched keys with their new values.
    fn apply(&mut self, batch: &RecordBatch) -> Result<RecordBatch, String> {
        let n_rows = batch.num_rows();
        let key_columns: Vec<ArrayRef> = self.keys.iter().map(|i| batch.column(*i).clone()).collect();
        let key_rows = self
            .codec
            .keys
            .convert_columns(&key_columns)
            .map_err(|e| e.to_string())?;
        let hashes = hash_keys(&key_columns, n_rows)?;
        // Distinct keys in the order they first come: group g.
        let mut index: HashMap<&[u8], usize> = HashMap::new();
        let mut group_of = Vec::with_capacity(n_rows);
        let mut first_rows: Vec<u32> = Vec::new();
        for r in 0..n_rows {
            let g = *index.entry(key_rows.row(r).data()).or_insert_with(|| {
                first_rows.push(r as u32);
                first_rows.len() - 1
            });
            group_of.push(g);
        }
        let groups = first_rows.len();
        let group_key = |g: usize| {
            let r = first_rows[g] as usize;
            (key_group(hashes[r], self.max_parallelism), key_rows.row(r))
        };
        // The live accumulators of the keys that have some.
        let mut found = Vec::new();
        let mut stored: Vec<Vec<u8>> = Vec::new();
        for g in 0..groups {
            let (kg, row) = group_key(g);
            self.state.set_current_key_in_group(kg, row.as_ref())?;
            if let Some(v) = self.accumulators.value(&mut self.state)? {
                found.push(g);
                stored.push(v);
            }
        }
        let mut accs = new_accumulators(&self.aggs)?;
        if !found.is_empty() {
            let states = self.codec.decode_states(stored.iter().map(Vec::as_slice))?;
            for (acc, st) in accs.iter_mut().zip(&states) {
                df(acc.merge_batch(st, &found, groups))?;
            }
        }
        let args = aggregate_arguments(&self.aggs, batch)?;
        for (acc, a) in accs.iter_mut().zip(&args) {
            df(acc.update_batch(a, &group_of, None, groups))?;
        }
        let states = accs
            .iter_mut()
            .map(|a| df(a.state(EmitTo::All)))
            .collect::<Result<Vec<_>, _>>()?;
        let rows = self.codec.encode_states(&states)?;
        for g in 0..groups {
            let (kg, row) = group_key(g);
            self.state.set_current_key_in_group(kg, row.as_ref())?;
            self.accumulators
                .update(&mut self.state, &rows.row(g).as_ref().to_vec())?;
        }
        // The values, from the states just stored (evaluating consumes accumulators).
        let all: Vec<usize> = (0..groups).collect();
        let mut fresh = new_accumulators(&self.aggs)?;
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.output.fields().len());
        let firsts = UInt32Array::from(first_rows);
        for k in &key_columns {
            columns.push(take(k.as_ref(), &firsts, None).map_err(|e| e.to_string())?);
        }
        for (acc, st) in fresh.iter_mut().zip(&states) {
            df(acc.merge_batch(st, &all, groups))?;
            columns.push(df(acc.evaluate(EmitTo::All))?);
        }
        RecordBatch::try_new(self.output.clone(), columns).map_err(|e| e.to_string())
    }
}

impl Operator for KeyedAggregate {
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
        out.push(self.apply(&batch)?);
        Ok(())
    }

    fn snapshot(&mut self, checkpoint_id: u64, kind: SnapshotKind) -> Result<OperatorSnapshot, TaskError> {
        Ok(OperatorSnapshot {
            keyed: Some(self.state.snapshot(checkpoint_id, kind)?),
            ..Default::default()
        })
    }

    fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<(), TaskError> {
        self.state.notify_checkpoint_complete(checkpoint_id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::test_settings;
    use arrow::array::{Array, Float64Array, Int64Array};
    use arrow::datatypes::{DataType, Field, Schema};
    use sluice_common::config::options::StateBackendKind;
    use std::sync::Arc;

    fn input() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("user", DataType::Int64, false),
            Field::new("amount", DataType::Float64, false),
        ]))
    }

    fn output() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("user", DataType::Int64, false),
            Field::new("n", DataType::Int64, false),
            Field::new("total", DataType::Float64, true),
        ]))
    }

    fn batch(rows: &[(i64, f64)]) -> RecordBatch {
        RecordBatch::try_new(
            input(),
            vec![
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.1))),
            ],
        )
        .unwrap()
    }

    fn op(backend: StateBackendKind, dir: &std::path::Path, ttl: Option<Duration>) -> KeyedAggregate {
        KeyedAggregate::new(
            &["user".to_string()],
            &[("n".into(), "count(*)".into()), ("total".into(), "sum(amount)".into())],
            ttl,
            &input(),
            output(),
            test_settings(backend, dir, (0, 127)),
            None,
        )
        .unwrap()
    }

    fn rows(b: &RecordBatch) -> Vec<(i64, i64, f64)> {
        let u = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        let n = b.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
        let t = b.column(2).as_any().downcast_ref::<Float64Array>().unwrap();
        (0..b.num_rows())
            .map(|i| (u.value(i), n.value(i), t.value(i)))
            .collect()
    }

    #[test]
    fn each_batch_emits_the_new_values_of_the_keys_it_touched_on_either_backend() {
        for backend in [StateBackendKind::HashMap, StateBackendKind::RocksDb] {
            let dir = tempfile::tempdir().unwrap();
            let mut a = op(backend, dir.path(), None);
            let first = a.apply(&batch(&[(1, 1.0), (2, 2.0), (1, 3.0)])).unwrap();
            assert_eq!(rows(&first), vec![(1, 2, 4.0), (2, 1, 2.0)]);
            let second = a.apply(&batch(&[(2, 5.0)])).unwrap();
            assert_eq!(rows(&second), vec![(2, 2, 7.0)], "{backend:?}");
            assert!(second.column(0).null_count() == 0);
        }
    }

    #[test]
    fn an_expired_key_starts_again_from_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = op(StateBackendKind::HashMap, dir.path(), Some(Duration::from_millis(50)));
        a.apply(&batch(&[(1, 1.0)])).unwrap();
        std::thread::sleep(Duration::from_millis(120));
        let after = a.apply(&batch(&[(1, 1.0)])).unwrap();
        assert_eq!(rows(&after), vec![(1, 1, 1.0)]);
    }
}
