//! SQL expressions of job files compiled once with DataFusion into vectorised physical
//! expressions over a schema (DESIGN §3): scalar expressions for filters, projections and
//! datagen columns, aggregate calls for windows. JSON functions (`json_get_str(doc, 'user')`,
//! `json_get_int`, `json_get_float`, `json_as_text`, `json_length`, …; the
//! `datafusion-functions-json` crate) read JSON held in string columns, so parsing a record's
//! nested fields is one `select`. `cpu_cost(x, micros)` and `wait_cost(x, micros)`
//! (`cpu_cost.rs`) make an expression cost a known time per row, for load tests. Two shapes are
//! then rewritten into cheaper ones with the same results (`specialise`: `const_div.rs`,
//! `select_case.rs`).

use std::sync::{Arc, LazyLock};

use arrow::array::ArrayRef;
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::DFSchema;
use datafusion::logical_expr::{Expr, ExprSchemable};
use datafusion::physical_expr::aggregate::{AggregateExprBuilder, AggregateFunctionExpr};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::{lit, SessionContext};

use super::const_div::ConstDivExpr;
use super::select_case::SelectCase;

/// One context for parsing and planning; planning reads only its function registry, which
/// holds DataFusion's functions, the JSON ones, `cpu_cost` and `wait_cost`.
static CONTEXT: LazyLock<SessionContext> = LazyLock::new(|| {
    let mut ctx = SessionContext::new();
    for spin in [true, false] {
        ctx.register_udf(datafusion::logical_expr::ScalarUDF::new_from_impl(
            super::cpu_cost::CpuCost::new(spin),
        ));
    }
    ctx.register_udf(datafusion::logical_expr::ScalarUDF::new_from_impl(
        super::wall_clock::WallClock::new(),
    ));
    if let Err(e) = datafusion_functions_json::register_all(&mut ctx) {
        // Only a name clash with a built-in could do this; expressions without JSON
        // functions still compile.
        tracing::warn!("JSON functions are not available in expressions: {e}");
    }
    ctx
});

/// A compiled scalar expression and its result type.
#[derive(Debug, Clone)]
pub struct CompiledExpr {
    pub sql: String,
    pub data_type: DataType,
    pub nullable: bool,
    physical: Arc<dyn PhysicalExpr>,
}

impl CompiledExpr {
    /// Evaluates over a whole batch.
    pub fn evaluate(&self, batch: &RecordBatch) -> Result<ArrayRef, String> {
        self.physical
            .evaluate(batch)
            .and_then(|v| v.into_array(batch.num_rows()))
            .map_err(|e| format!("evaluating '{}': {e}", self.sql))
    }
}

fn df_schema(schema: &SchemaRef) -> Result<DFSchema, String> {
    DFSchema::try_from(schema.as_ref().clone()).map_err(|e| e.to_string())
}

/// Short form of DataFusion's error for messages (its first line, without the "Error during
/// planning:" style prefixes).
fn clean(e: impl std::fmt::Display) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or("").to_string();
    first
        .trim_start_matches("Schema error: ")
        .trim_start_matches("Error during planning: ")
        .trim_start_matches("SQL error: ")
        .to_string()
}

fn logical(sql: &str, schema: &DFSchema) -> Result<Expr, String> {
    CONTEXT.parse_sql_expr(sql, schema).map_err(clean)
}

/// Compiles a scalar SQL expression against `schema`.
pub fn compile_scalar(sql: &str, schema: &SchemaRef) -> Result<CompiledExpr, String> {
    compile_scalar_as(sql, schema, true)
}

/// `compile_scalar`, with or without the rewrites of `specialise` (tests compare the two).
fn compile_scalar_as(sql: &str, schema: &SchemaRef, specialised: bool) -> Result<CompiledExpr, String> {
    let dfs = df_schema(schema)?;
    let expr = logical(sql, &dfs)?;
    let (_, field) = expr.to_field(&dfs).map_err(clean)?;
    let (data_type, nullable) = (field.data_type().clone(), field.is_nullable());
    let mut physical = CONTEXT.create_physical_expr(expr, &dfs).map_err(clean)?;
    if specialised {
        physical = specialise(physical, schema);
    }
    Ok(CompiledExpr {
        sql: sql.to_string(),
        data_type,
        nullable,
        physical,
    })
}

/// Replaces, bottom up, the parts of DataFusion's plan that have a cheaper equivalent with the
/// same results and errors: BIGINT division by a literal (`const_div`) and two-way CASEs with
/// branches that cannot fail (`select_case`).
fn specialise(physical: Arc<dyn PhysicalExpr>, schema: &SchemaRef) -> Arc<dyn PhysicalExpr> {
    let rewritten = Arc::clone(&physical).transform_up(|e| {
        let cheaper = ConstDivExpr::replacing(&e, schema).or_else(|| SelectCase::replacing(&e, schema));
        Ok(match cheaper {
            Some(c) => Transformed::yes(c),
            None => Transformed::no(e),
        })
    });
    // The closure never fails; should the traversal, DataFusion's own plan still stands.
    rewritten.map(|t| t.data).unwrap_or(physical)
}

/// The children `with_new_children` hands to one of `specialise`'s rewrites, which takes
/// exactly `N`.
pub(super) fn exactly<const N: usize>(
    expr: &dyn std::fmt::Display,
    children: Vec<Arc<dyn PhysicalExpr>>,
) -> datafusion::common::Result<[Arc<dyn PhysicalExpr>; N]> {
    <[_; N]>::try_from(children)
        .map_err(|c| datafusion::common::DataFusionError::Internal(format!("{expr} takes {N} inputs, got {}", c.len())))
}

/// Compiles an aggregate call such as `count(*)`, `sum(amount)`, `avg(price * 2)` against the
/// schema of the rows it aggregates; `name` becomes its output column.
pub fn compile_aggregate(name: &str, sql: &str, schema: &SchemaRef) -> Result<AggregateFunctionExpr, String> {
    let dfs = df_schema(schema)?;
    let mut expr = logical(sql, &dfs)?;
    while let Expr::Alias(alias) = expr {
        expr = *alias.expr;
    }
    let Expr::AggregateFunction(call) = expr else {
        return Err(format!(
            "'{sql}' is not an aggregate call such as count(*), sum(x), min(x), max(x), avg(x)"
        ));
    };
    if call.params.filter.is_some() || !call.params.order_by.is_empty() {
        return Err(format!(
            "'{sql}': FILTER and ORDER BY inside aggregates are not supported"
        ));
    }
    let mut args = Vec::with_capacity(call.params.args.len());
    for arg in call.params.args {
        #[allow(deprecated)]
        let arg = match arg {
            Expr::Wildcard { .. } => lit(1i64),
            other => other,
        };
        args.push(CONTEXT.create_physical_expr(arg, &dfs).map_err(clean)?);
    }
    AggregateExprBuilder::new(call.func, args)
        .schema(schema.clone())
        .alias(name)
        .human_display(sql.to_string())
        .with_distinct(call.params.distinct)
        .build()
        .map_err(clean)
}

/// Checks that `agg` can run the way a window keeps it: with a grouped accumulator (one group
/// per key) for tumbling and sliding windows, a row accumulator per session for session
/// windows. Aggregates DataFusion offers only one way (e.g. `approx_percentile_cont` has no
/// grouped accumulator) are rejected here, at submission, instead of failing every attempt.
pub fn check_window_aggregate(agg: &AggregateFunctionExpr, sessions: bool) -> Result<(), String> {
    let supported = "count, sum, avg, min, max, bool_and, bool_or, bit_and, bit_or, bit_xor, stddev, var";
    if sessions {
        return agg
            .create_accumulator()
            .map(|_| ())
            .map_err(|e| format!("cannot run in a session window: {}", clean(e)));
    }
    if !agg.groups_accumulator_supported() {
        return Err(format!(
            "'{}' cannot run in a tumbling or sliding window: it has no grouped accumulator (aggregates that do: {supported})",
            agg.human_display().unwrap_or(agg.name())
        ));
    }
    agg.create_groups_accumulator()
        .map(|_| ())
        .map_err(|e| format!("cannot run in a tumbling or sliding window: {}", clean(e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, Int64Array};
    use arrow::datatypes::{Field, Schema};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("user_id", DataType::Int64, false),
            Field::new("amount", DataType::Float64, false),
        ]))
    }

    #[test]
    fn scalar_types_and_evaluation() {
        let s = schema();
        let e = compile_scalar("amount * 0.908", &s).unwrap();
        assert_eq!(e.data_type, DataType::Float64);
        let batch = RecordBatch::try_new(
            s.clone(),
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(Float64Array::from(vec![10.0, 20.0])),
            ],
        )
        .unwrap();
        let out = e.evaluate(&batch).unwrap();
        let out = out.as_any().downcast_ref::<Float64Array>().unwrap();
        assert!((out.value(1) - 18.16).abs() < 1e-9);
        let f = compile_scalar("user_id % 2 = 0 AND amount > 0", &s).unwrap();
        assert_eq!(f.data_type, DataType::Boolean);
    }

    /// `cpu_cost` returns its argument and spends its microseconds for every row.
    #[test]
    fn cpu_cost_spends_time_per_row() {
        let s: SchemaRef = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)]));
        let batch = RecordBatch::try_new(s.clone(), vec![Arc::new(Int64Array::from(vec![1, 2, 3, 4]))]).unwrap();
        let e = compile_scalar("cpu_cost(v, 2000)", &s).unwrap();
        assert_eq!(e.data_type, DataType::Int64);
        let start = std::time::Instant::now();
        let out = e.evaluate(&batch).unwrap();
        assert!(start.elapsed() >= std::time::Duration::from_millis(8), "4 rows × 2 ms");
        assert_eq!(
            out.as_any().downcast_ref::<Int64Array>().unwrap().values(),
            &[1, 2, 3, 4]
        );
        assert!(compile_scalar("cpu_cost(v, 'x')", &s)
            .unwrap_err()
            .contains("micros must be an integer"));
        let start = std::time::Instant::now();
        compile_scalar("wait_cost(v, 2000)", &s)
            .unwrap()
            .evaluate(&batch)
            .unwrap();
        assert!(
            start.elapsed() >= std::time::Duration::from_millis(8),
            "4 rows × 2 ms asleep"
        );
    }

    /// The seed's JSON parsing step as one select: nested fields of a JSON string column.
    #[test]
    fn json_functions_read_nested_fields() {
        let s: SchemaRef = Arc::new(Schema::new(vec![Field::new("doc", DataType::Utf8, true)]));
        let batch = RecordBatch::try_new(
            s.clone(),
            vec![Arc::new(arrow::array::StringArray::from(vec![
                r#"{"user": {"id": 7, "name": "ann"}, "amount": 2.5}"#,
                r#"{"user": {"id": 9, "name": "bo"}, "amount": 1.0}"#,
            ]))],
        )
        .unwrap();
        let id = compile_scalar("json_get_int(doc, 'user', 'id')", &s).unwrap();
        let ids = id.evaluate(&batch).unwrap();
        let ids = arrow::compute::cast(&ids, &DataType::Int64).unwrap();
        let ids = ids.as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!((ids.value(0), ids.value(1)), (7, 9));
        let name = compile_scalar("json_get_str(doc, 'user', 'name')", &s).unwrap();
        let names = arrow::compute::cast(&name.evaluate(&batch).unwrap(), &DataType::Utf8).unwrap();
        let names = names.as_any().downcast_ref::<arrow::array::StringArray>().unwrap();
        assert_eq!(names.value(1), "bo");
        let amount = compile_scalar("json_get_float(doc, 'amount') * 2", &s).unwrap();
        assert_eq!(amount.data_type, DataType::Float64);
    }

    /// The rewrites of `specialise` give DataFusion's own results (and errors) on nulls,
    /// extremes and more than one 64-row word of a CASE's mask; the ones that must not apply
    /// (a divisor of 0 or 1, a branch that can fail) do not.
    #[test]
    fn specialised_expressions_equal_datafusions_own() {
        let s: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Int64, true),
            Field::new("f", DataType::Float64, false),
            Field::new("s", DataType::Utf8, true),
        ]));
        let mut a: Vec<Option<i64>> = vec![Some(i64::MIN), Some(i64::MAX), None, Some(-7), Some(0), Some(-1)];
        a.extend((0..150).map(|i| Some(i * 7919 - 500_000)));
        let b: Vec<Option<i64>> = (0..a.len() as i64)
            .map(|i| (i % 5 != 0).then_some(i * 3 - 40))
            .collect();
        let f: Vec<f64> = (0..a.len()).map(|i| i as f64 * 0.5 - 3.0).collect();
        let text: Vec<Option<String>> = (0..a.len()).map(|i| (i % 7 != 0).then(|| format!("r{i}"))).collect();
        let batch = RecordBatch::try_new(
            s.clone(),
            vec![
                Arc::new(Int64Array::from(a)),
                Arc::new(Int64Array::from(b)),
                Arc::new(Float64Array::from(f)),
                Arc::new(arrow::array::StringArray::from(text)),
            ],
        )
        .unwrap();
        let specialised = [
            "a % 100000",
            "a / 7",
            "a % 2 = 0",
            "(a % 1000) / 100",
            "CAST(a % 100 AS DOUBLE)",
            "CASE WHEN a % 2 = 0 THEN 0 ELSE a % 100000 END",
            "CASE WHEN a > b THEN a ELSE b END",
            "CASE WHEN a > 0 THEN f ELSE 1.5 END",
            "CASE WHEN a > 0 THEN s ELSE 'none' END",
            "CASE WHEN NOT (a < b) OR b IS NULL THEN b ELSE a % 3 END",
        ];
        let unchanged = ["a / 1", "a % 1", "CASE WHEN a <> 0 THEN 10 / a ELSE 0 END", "a / 0"];
        for (sql, expect_rewrite) in specialised
            .iter()
            .map(|q| (q, true))
            .chain(unchanged.iter().map(|q| (q, false)))
        {
            let ours = compile_scalar(sql, &s).unwrap_or_else(|e| panic!("{sql}: {e}"));
            let theirs = compile_scalar_as(sql, &s, false).unwrap_or_else(|e| panic!("{sql}: {e}"));
            let rewritten = |e: &CompiledExpr| {
                let plan = format!("{:?}", e.physical);
                plan.contains("ConstDivExpr") || plan.contains("SelectCase")
            };
            assert_eq!(rewritten(&ours), expect_rewrite, "{sql}: {:?}", ours.physical);
            assert!(!rewritten(&theirs), "{sql}: DataFusion's own plan is compared");
            match (ours.evaluate(&batch), theirs.evaluate(&batch)) {
                (Ok(x), Ok(y)) => assert_eq!(x.as_ref(), y.as_ref(), "{sql}"),
                (Err(_), Err(_)) => assert_eq!(*sql, "a / 0", "only division by zero fails"),
                (x, y) => panic!("{sql}: ours {x:?}, DataFusion's {y:?}"),
            }
        }
    }

    #[test]
    fn unknown_columns_are_named() {
        let e = compile_scalar("price > 0", &schema()).unwrap_err();
        assert!(e.contains("price"), "{e}");
    }

    #[test]
    fn aggregates() {
        let s = schema();
        for (sql, ty) in [
            ("count(*)", DataType::Int64),
            ("sum(amount)", DataType::Float64),
            ("avg(amount)", DataType::Float64),
            ("min(user_id)", DataType::Int64),
            ("max(amount)", DataType::Float64),
        ] {
            let a = compile_aggregate("x", sql, &s).unwrap_or_else(|e| panic!("{sql}: {e}"));
            assert_eq!(a.field().data_type(), &ty, "{sql}");
            assert!(a.groups_accumulator_supported(), "{sql}");
        }
        assert!(compile_aggregate("x", "amount + 1", &s)
            .unwrap_err()
            .contains("not an aggregate"));
        // Aggregates DataFusion runs only row by row are refused for tumbling/sliding windows.
        for sql in ["approx_percentile_cont(amount, 0.5)", "first_value(amount)"] {
            let a = compile_aggregate("x", sql, &s).unwrap_or_else(|e| panic!("{sql}: {e}"));
            let e = check_window_aggregate(&a, false).unwrap_err();
            assert!(e.contains("cannot run in a tumbling or sliding window"), "{sql}: {e}");
            assert!(!e.contains('{'), "no Debug dump: {e}");
        }
        let sum = compile_aggregate("x", "sum(amount)", &s).unwrap();
        assert!(check_window_aggregate(&sum, false).is_ok());
        assert!(check_window_aggregate(&sum, true).is_ok());
    }
}
