//! `CASE WHEN c THEN a ELSE b END` as a select: both branches are evaluated over the whole
//! batch and each row picks its value without a branch. DataFusion instead filters the batch
//! by `c`, evaluates each branch on its part and merges the parts back, which costs more than
//! the branches themselves when they are as cheap as a column, a literal or `seq % n` (the
//! skewed keys of benchmark S1, say). Only branches that cannot fail are evaluated on every
//! row (`infallible`): `CASE WHEN x <> 0 THEN 10 / x ELSE 0 END` keeps DataFusion's own
//! evaluation, which never divides by the zero its condition excludes.

use std::fmt::{self, Display, Formatter};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, PrimitiveArray};
use arrow::buffer::BooleanBuffer;
use arrow::compute::kernels::zip::zip;
use arrow::datatypes::{ArrowPrimitiveType, DataType, Float32Type, Float64Type, Int32Type, Int64Type, Schema};
use arrow::record_batch::RecordBatch;
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, Operator};
use datafusion::physical_expr::expressions::{
    BinaryExpr, CaseExpr, Column, IsNotNullExpr, IsNullExpr, Literal, NotExpr,
};
use datafusion::physical_expr::PhysicalExpr;

use super::const_div::ConstDivExpr;

/// Whether evaluating `expr` on any row of its schema cannot fail: columns, literals,
/// comparisons and boolean logic over such, and the rewrites of this module and `const_div`.
pub(crate) fn infallible(expr: &Arc<dyn PhysicalExpr>) -> bool {
    let kind = expr.is::<Column>()
        || expr.is::<Literal>()
        || expr.is::<ConstDivExpr>()
        || expr.is::<SelectCase>()
        || expr.is::<NotExpr>()
        || expr.is::<IsNullExpr>()
        || expr.is::<IsNotNullExpr>()
        || expr.downcast_ref::<BinaryExpr>().is_some_and(|b| {
            use Operator::*;
            matches!(
                b.op(),
                Eq | NotEq | Lt | LtEq | Gt | GtEq | And | Or | IsDistinctFrom | IsNotDistinctFrom
            )
        });
    kind && expr.children().into_iter().all(infallible)
}

/// `CASE WHEN when THEN then ELSE otherwise END` with branches that cannot fail.
#[derive(Debug, Eq)]
pub(crate) struct SelectCase {
    when: Arc<dyn PhysicalExpr>,
    then: Arc<dyn PhysicalExpr>,
    otherwise: Arc<dyn PhysicalExpr>,
}

// By hand: a derived `PartialEq` cannot compare `Arc<dyn PhysicalExpr>` fields, and `Hash`
// must agree with it.
impl PartialEq for SelectCase {
    fn eq(&self, other: &Self) -> bool {
        self.when.eq(&other.when) && self.then.eq(&other.then) && self.otherwise.eq(&other.otherwise)
    }
}

impl Hash for SelectCase {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.when.hash(state);
        self.then.hash(state);
        self.otherwise.hash(state);
    }
}

impl SelectCase {
    /// The rewrite of DataFusion's `CaseExpr` when it has no base expression, one WHEN, an
    /// ELSE, infallible branches and one type throughout; `None` leaves it as it is.
    pub(crate) fn replacing(expr: &Arc<dyn PhysicalExpr>, schema: &Schema) -> Option<Arc<dyn PhysicalExpr>> {
        let case = expr.downcast_ref::<CaseExpr>()?;
        if case.expr().is_some() {
            return None;
        }
        let [(when, then)] = case.when_then_expr() else {
            return None;
        };
        let otherwise = case.else_expr()?;
        if !infallible(then) || !infallible(otherwise) {
            return None;
        }
        let ty = case.data_type(schema).ok()?;
        if then.data_type(schema).ok()? != ty || otherwise.data_type(schema).ok()? != ty {
            return None;
        }
        Some(Arc::new(Self {
            when: Arc::clone(when),
            then: Arc::clone(then),
            otherwise: Arc::clone(otherwise),
        }))
    }
}

impl Display for SelectCase {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CASE WHEN {} THEN {} ELSE {} END",
            self.when, self.then, self.otherwise
        )
    }
}

impl PhysicalExpr for SelectCase {
    fn data_type(&self, schema: &Schema) -> Result<DataType> {
        self.then.data_type(schema)
    }

    fn nullable(&self, schema: &Schema) -> Result<bool> {
        Ok(self.then.nullable(schema)? || self.otherwise.nullable(schema)?)
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        let rows = batch.num_rows();
        let mask = match self.when.evaluate(batch)? {
            // A constant condition: only one branch is needed.
            ColumnarValue::Scalar(ScalarValue::Boolean(Some(true))) => return self.then.evaluate(batch),
            ColumnarValue::Scalar(ScalarValue::Boolean(_)) => return self.otherwise.evaluate(batch),
            ColumnarValue::Scalar(other) => return Err(not_boolean(self, &other.data_type())),
            ColumnarValue::Array(a) => a,
        };
        let Some(mask) = mask.as_boolean_opt() else {
            return Err(not_boolean(self, mask.data_type()));
        };
        // A NULL condition takes the ELSE branch.
        let mask = match mask.nulls() {
            Some(valid) => mask.values() & valid.inner(),
            None => mask.values().clone(),
        };
        let then = self.then.evaluate(batch)?.into_array(rows)?;
        let otherwise = self.otherwise.evaluate(batch)?.into_array(rows)?;
        let picked = match then.data_type() {
            DataType::Int64 => pick::<Int64Type>(&mask, &then, &otherwise),
            DataType::Int32 => pick::<Int32Type>(&mask, &then, &otherwise),
            DataType::Float64 => pick::<Float64Type>(&mask, &then, &otherwise),
            DataType::Float32 => pick::<Float32Type>(&mask, &then, &otherwise),
            _ => None,
        };
        let out = match picked {
            Some(out) => out,
            None => zip(&BooleanArray::new(mask, None), &then, &otherwise)?,
        };
        Ok(ColumnarValue::Array(out))
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        vec![&self.when, &self.then, &self.otherwise]
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn PhysicalExpr>>) -> Result<Arc<dyn PhysicalExpr>> {
        let [when, then, otherwise] = super::expr::exactly(&self, children)?;
        Ok(Arc::new(Self { when, then, otherwise }))
    }

    fn fmt_sql(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "CASE WHEN ")?;
        self.when.fmt_sql(f)?;
        write!(f, " THEN ")?;
        self.then.fmt_sql(f)?;
        write!(f, " ELSE ")?;
        self.otherwise.fmt_sql(f)?;
        write!(f, " END")
    }
}

/// Row `i` takes `then[i]` where bit `i` of `mask` is set and `otherwise[i]` elsewhere, a
/// word of the mask at a time so that the inner loop is a plain select. `None` when either
/// side has nulls (arrow's `zip` handles those).
fn pick<T: ArrowPrimitiveType>(mask: &BooleanBuffer, then: &ArrayRef, otherwise: &ArrayRef) -> Option<ArrayRef> {
    let (a, b) = (then.as_primitive_opt::<T>()?, otherwise.as_primitive_opt::<T>()?);
    if a.null_count() > 0 || b.null_count() > 0 {
        return None;
    }
    let (a, b) = (a.values(), b.values());
    let mut out = Vec::with_capacity(mask.len());
    let chunks = mask.inner().bit_chunks(mask.offset(), mask.len());
    for (word, (a, b)) in chunks.iter_padded().zip(a.chunks(64).zip(b.chunks(64))) {
        out.extend(
            a.iter()
                .zip(b)
                .enumerate()
                .map(|(bit, (x, y))| if (word >> bit) & 1 == 1 { *x } else { *y }),
        );
    }
    Some(Arc::new(PrimitiveArray::<T>::new(out.into(), None)))
}

fn not_boolean(expr: &SelectCase, found: &DataType) -> DataFusionError {
    DataFusionError::Internal(format!("'{expr}': the WHEN condition must be BOOLEAN, got {found}"))
}
