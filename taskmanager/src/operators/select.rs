//! `select: {column: <SQL expression>, …}`: computes the output columns from each batch.

use crate::error::TaskError;
use crate::operators::OperatorContext;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use sluice_common::job::expr::{compile_scalar, CompiledExpr};

use super::Operator;

pub(crate) struct Select {
    columns: Vec<CompiledExpr>,
    output: SchemaRef,
}

impl Select {
    pub(crate) fn new(columns: &[(String, String)], input: &SchemaRef, output: SchemaRef) -> Result<Select, String> {
        let columns = columns
            .iter()
            .map(|(_, sql)| compile_scalar(sql, input))
            .collect::<Result<_, _>>()?;
        Ok(Select { columns, output })
    }
}

impl Operator for Select {
    fn process(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        _ctx: &OperatorContext,
        out: &mut Vec<RecordBatch>,
    ) -> Result<(), TaskError> {
        let arrays = self
            .columns
            .iter()
            .map(|c| c.evaluate(&batch))
            .collect::<Result<Vec<_>, _>>()?;
        out.push(RecordBatch::try_new(self.output.clone(), arrays).map_err(|e| e.to_string())?);
        Ok(())
    }
}
