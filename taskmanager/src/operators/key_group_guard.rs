//! The check behind `reinterpret-as-keyed` (Flink's `reinterpretAsKeyedStream`): the operator's
//! input comes over a forward edge, trusted to be partitioned by its keys exactly as a hash edge
//! would partition it. Flink's caveat is that nothing checks it and wrong state follows; here
//! every row's key group must be one this subtask owns, else the job fails naming the row.

use arrow::array::ArrayRef;
use arrow::record_batch::RecordBatch;
use arrow::util::display::array_value_to_string;
use sluice_common::key_groups::{hash_keys, key_group};
use sluice_common::state::KeyGroupRange;

use super::{Operator, OperatorContext};
use crate::error::TaskError;

pub(crate) struct KeyGroupGuard {
    operator: String,
    keys: Vec<String>,
    max_parallelism: u32,
    range: KeyGroupRange,
}

impl KeyGroupGuard {
    pub(crate) fn new(operator: &str, keys: &[String], max_parallelism: u32, range: KeyGroupRange) -> Self {
        KeyGroupGuard {
            operator: operator.to_string(),
            keys: keys.to_vec(),
            max_parallelism,
            range,
        }
    }
}

impl Operator for KeyGroupGuard {
    fn process(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        ctx: &OperatorContext,
        out: &mut Vec<RecordBatch>,
    ) -> Result<(), TaskError> {
        let columns = self
            .keys
            .iter()
            .map(|k| {
                batch
                    .column_by_name(k)
                    .cloned()
                    .ok_or_else(|| format!("'{}': no key column '{k}'", self.operator))
            })
            .collect::<Result<Vec<ArrayRef>, String>>()?;
        let hashes = hash_keys(&columns, batch.num_rows())?;
        if let Some((row, kg)) = hashes
            .iter()
            .map(|h| key_group(*h, self.max_parallelism))
            .enumerate()
            .find(|(_, kg)| !self.range.contains(*kg))
        {
            let key: Vec<String> = self
                .keys
                .iter()
                .zip(&columns)
                .map(|(name, c)| format!("{name}={}", array_value_to_string(c, row).unwrap_or_default()))
                .collect();
            return Err(TaskError::user(format!(
                "'{}' reinterprets its input as keyed by [{}], but the row with {} (key group {kg}) reached subtask {}, which owns key groups {}..={}: the input is not partitioned by these keys; key the operator with a hash edge (drop reinterpret-as-keyed)",
                self.operator,
                self.keys.join(", "),
                key.join(", "),
                ctx.task.subtask,
                self.range.start,
                self.range.end
            )));
        }
        out.push(batch);
        Ok(())
    }

    fn passes_input_on(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    #[test]
    fn rows_of_other_key_groups_fail_the_job_naming_the_row() {
        let batch = |keys: Vec<i64>| {
            let schema = Arc::new(Schema::new(vec![Field::new("user_id", DataType::Int64, false)]));
            RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(keys))]).unwrap()
        };
        let ctx = OperatorContext::for_tests();
        // Subtask 0 of 2 over 128 key groups owns 0..=63.
        let range = KeyGroupRange::of_subtask(128, 2, 0);
        let mut guard = KeyGroupGuard::new("per-user", &["user_id".to_string()], 128, range);
        let kg = |k: i64| {
            let h = hash_keys(&[Arc::new(Int64Array::from(vec![k])) as ArrayRef], 1).unwrap()[0];
            key_group(h, 128)
        };
        let mine: Vec<i64> = (0..1000).filter(|k| range.contains(kg(*k))).take(5).collect();
        let other = (0..1000).find(|k| !range.contains(kg(*k))).unwrap();
        let mut out = Vec::new();
        guard.process(0, batch(mine), &ctx, &mut out).unwrap();
        assert_eq!(out.len(), 1, "rows of its own key groups pass");
        let e = guard
            .process(0, batch(vec![other]), &ctx, &mut out)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("user_id={other}")) && e.contains("key groups 0..=63") && e.contains("not partitioned"),
            "{e}"
        );
    }
}
