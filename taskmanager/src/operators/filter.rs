//! `filter: <SQL predicate>`: keeps the rows where it is true (null counts as false).

use crate::error::TaskError;
use crate::operators::OperatorContext;
use arrow::array::AsArray;
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use sluice_common::job::expr::{compile_scalar, CompiledExpr};

use super::Operator;

pub(crate) struct Filter {
    predicate: CompiledExpr,
}

impl Filter {
    pub(crate) fn new(sql: &str, input: &SchemaRef) -> Result<Filter, String> {
        Ok(Filter {
            predicate: compile_scalar(sql, input)?,
        })
    }
}

impl Operator for Filter {
    fn process(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        _ctx: &OperatorContext,
        out: &mut Vec<RecordBatch>,
    ) -> Result<(), TaskError> {
        let mask = self.predicate.evaluate(&batch)?;
        let mask = mask.as_boolean_opt().ok_or("filter did not yield booleans")?;
        let kept = filter_record_batch(&batch, mask).map_err(|e| e.to_string())?;
        if kept.num_rows() > 0 {
            out.push(kept);
        }
        Ok(())
    }
}
