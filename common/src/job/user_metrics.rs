//! User metrics a job file declares on an operator (`metrics:`), Flink's four kinds: a
//! `counter` (rows, or the sum of a row expression), a `meter` (the same as a rate per second),
//! a `gauge` (an aggregate call over each batch, e.g. `max(amount)`) and a `histogram` (of a
//! row expression, e.g. the event-time lag `now() - ts`). Here each is compiled against the
//! operator's input rows (at submission, so a bad one is refused with its position) and turns a
//! batch into an observation; the taskmanager keeps their values and exports them in Flink's
//! operator scope.

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, IntervalUnit, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;

use super::expr::{compile_aggregate, compile_scalar, CompiledExpr};
use crate::yaml_tree::Pos;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Meter,
    Gauge,
    Histogram,
}

impl MetricKind {
    pub fn parse(text: &str) -> Option<MetricKind> {
        match text {
            "counter" => Some(MetricKind::Counter),
            "meter" => Some(MetricKind::Meter),
            "gauge" => Some(MetricKind::Gauge),
            "histogram" => Some(MetricKind::Histogram),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Meter => "meter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        }
    }
}

/// One declared metric.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSpec {
    /// Its name in the Prometheus series `flink_taskmanager_job_task_operator_<name>`.
    pub name: String,
    pub kind: MetricKind,
    /// Counter and meter: a row expression summed (absent: rows are counted). Gauge: an
    /// aggregate call. Histogram: a row expression.
    pub value: Option<String>,
    pub pos: Pos,
}

/// What one batch tells a metric.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    /// Counter and meter: add this much.
    Add(f64),
    /// Gauge: the batch's value (none when the aggregate is null).
    Set(Option<f64>),
    /// Histogram: one value per row (nulls left out).
    Samples(Vec<f64>),
}

enum Probe {
    Rows,
    Sum(CompiledExpr),
    Aggregate(Box<AggregateFunctionExpr>),
    Values(CompiledExpr),
}

pub struct CompiledMetric {
    pub spec: MetricSpec,
    probe: Probe,
}

/// Whether a row expression's values can be measured: numbers, durations and intervals
/// (in milliseconds), timestamps (milliseconds since the epoch).
fn measurable(t: &DataType) -> bool {
    t.is_numeric()
        || matches!(
            t,
            DataType::Duration(_)
                | DataType::Interval(IntervalUnit::MonthDayNano)
                | DataType::Interval(IntervalUnit::DayTime)
                | DataType::Timestamp(..)
        )
}

/// Values as f64, durations, intervals and timestamps in milliseconds; nulls as `None`.
fn as_f64(values: &ArrayRef) -> Result<Vec<Option<f64>>, String> {
    let per_ms = |unit: &TimeUnit| match unit {
        TimeUnit::Second => 1e-3,
        TimeUnit::Millisecond => 1.0,
        TimeUnit::Microsecond => 1e3,
        TimeUnit::Nanosecond => 1e6,
    };
    let scaled = |a: &ArrayRef, divisor: f64| -> Result<Vec<Option<f64>>, String> {
        let ints = cast(a, &DataType::Int64).map_err(|e| e.to_string())?;
        Ok(ints
            .as_primitive::<arrow::datatypes::Int64Type>()
            .iter()
            .map(|v| v.map(|v| v as f64 / divisor))
            .collect())
    };
    match values.data_type() {
        DataType::Duration(u) | DataType::Timestamp(u, _) => scaled(values, per_ms(u)),
        DataType::Interval(IntervalUnit::MonthDayNano) => Ok(values
            .as_primitive::<arrow::datatypes::IntervalMonthDayNanoType>()
            .iter()
            .map(|v| {
                v.map(|v| (f64::from(v.months) * 30.0 + f64::from(v.days)) * 86_400_000.0 + v.nanoseconds as f64 / 1e6)
            })
            .collect()),
        DataType::Interval(IntervalUnit::DayTime) => Ok(values
            .as_primitive::<arrow::datatypes::IntervalDayTimeType>()
            .iter()
            .map(|v| v.map(|v| f64::from(v.days) * 86_400_000.0 + f64::from(v.milliseconds)))
            .collect()),
        _ => {
            let f = cast(values, &DataType::Float64).map_err(|e| e.to_string())?;
            Ok(f.as_primitive::<Float64Type>().iter().collect())
        }
    }
}

/// Compiles `spec` against the rows the operator receives; the error says what is wrong with it.
pub fn compile_metric(spec: &MetricSpec, input: &SchemaRef) -> Result<CompiledMetric, String> {
    let what = format!("{} '{}'", spec.kind.name(), spec.name);
    if spec.name.is_empty() || !spec.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("{what}: a metric name is letters, digits and '_'"));
    }
    let row_expr = |sql: &str| -> Result<CompiledExpr, String> {
        let e = compile_scalar(sql, input).map_err(|e| format!("{what}: {e}"))?;
        if !measurable(&e.data_type) {
            return Err(format!(
                "{what}: '{sql}' is {}, not a number, duration or timestamp",
                e.data_type
            ));
        }
        Ok(e)
    };
    let probe = match (spec.kind, spec.value.as_deref()) {
        (MetricKind::Counter | MetricKind::Meter, None) => Probe::Rows,
        (MetricKind::Counter | MetricKind::Meter, Some(sql)) => Probe::Sum(row_expr(sql)?),
        (MetricKind::Histogram, Some(sql)) => Probe::Values(row_expr(sql)?),
        (MetricKind::Gauge, Some(sql)) => {
            let agg = compile_aggregate(&spec.name, sql, input).map_err(|e| format!("{what}: {e}"))?;
            let t = agg.field().data_type().clone();
            if !measurable(&t) {
                return Err(format!("{what}: '{sql}' is {t}, not a number"));
            }
            Probe::Aggregate(Box::new(agg))
        }
        (MetricKind::Histogram | MetricKind::Gauge, None) => {
            return Err(format!(
                "{what} needs a 'value': {}",
                if spec.kind == MetricKind::Gauge {
                    "an aggregate call over each batch, e.g. max(amount)"
                } else {
                    "a row expression, e.g. now() - ts"
                }
            ))
        }
    };
    Ok(CompiledMetric {
        spec: spec.clone(),
        probe,
    })
}

impl CompiledMetric {
    /// What `batch` tells this metric.
    pub fn observe(&self, batch: &RecordBatch) -> Result<Observation, String> {
        let what = |e: String| format!("{} '{}': {e}", self.spec.kind.name(), self.spec.name);
        Ok(match &self.probe {
            Probe::Rows => Observation::Add(batch.num_rows() as f64),
            Probe::Sum(e) => Observation::Add(
                as_f64(&e.evaluate(batch).map_err(what)?)
                    .map_err(what)?
                    .into_iter()
                    .flatten()
                    .sum(),
            ),
            Probe::Values(e) => Observation::Samples(
                as_f64(&e.evaluate(batch).map_err(what)?)
                    .map_err(what)?
                    .into_iter()
                    .flatten()
                    .collect(),
            ),
            Probe::Aggregate(agg) => {
                let mut acc = agg.create_accumulator().map_err(|e| what(e.to_string()))?;
                let args = agg
                    .expressions()
                    .iter()
                    .map(|e| e.evaluate(batch).and_then(|v| v.into_array(batch.num_rows())))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| what(e.to_string()))?;
                acc.update_batch(&args).map_err(|e| what(e.to_string()))?;
                let value = acc.evaluate().map_err(|e| what(e.to_string()))?;
                let array = value.to_array().map_err(|e| what(e.to_string()))?;
                Observation::Set(as_f64(&array).map_err(what)?.first().copied().flatten())
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Float64Array, Int64Array, TimestampMillisecondArray};
    use arrow::datatypes::{Field, Schema};

    use super::*;

    fn spec(kind: MetricKind, value: Option<&str>) -> MetricSpec {
        MetricSpec {
            name: "m".into(),
            kind,
            value: value.map(str::to_string),
            pos: Pos::default(),
        }
    }

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("amount", DataType::Float64, true),
            Field::new("ts", crate::job::graph::timestamp_type(), false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 3])),
                Arc::new(Float64Array::from(vec![Some(1.5), None, Some(4.0)])),
                Arc::new(TimestampMillisecondArray::from(vec![1_000, 2_000, 3_000])),
            ],
        )
        .unwrap()
    }

    fn observe(kind: MetricKind, value: Option<&str>) -> Observation {
        let b = batch();
        compile_metric(&spec(kind, value), &b.schema())
            .unwrap()
            .observe(&b)
            .unwrap()
    }

    #[test]
    fn each_kind_observes_a_batch() {
        assert_eq!(observe(MetricKind::Counter, None), Observation::Add(3.0));
        assert_eq!(observe(MetricKind::Meter, Some("amount")), Observation::Add(5.5));
        assert_eq!(observe(MetricKind::Gauge, Some("max(k)")), Observation::Set(Some(3.0)));
        assert_eq!(
            observe(MetricKind::Histogram, Some("amount * 2")),
            Observation::Samples(vec![3.0, 8.0])
        );
        // Event-time lag in milliseconds: a timestamp minus a timestamp.
        let Observation::Samples(lag) = observe(MetricKind::Histogram, Some("ts - to_timestamp_millis(500)")) else {
            panic!("samples")
        };
        assert_eq!(lag, vec![500.0, 1500.0, 2500.0]);
        // now() is the wall clock at each batch, not a constant of the compilation.
        let lag = compile_metric(&spec(MetricKind::Histogram, Some("now() - ts")), &batch().schema()).unwrap();
        let first = lag.observe(&batch()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let (Observation::Samples(a), Observation::Samples(b)) = (first, lag.observe(&batch()).unwrap()) else {
            panic!("samples")
        };
        assert!(b[0] >= a[0] + 20.0, "{a:?} then {b:?}");
    }

    #[test]
    fn bad_declarations_say_what_is_wrong() {
        let s = batch().schema();
        let err = |kind, value: Option<&str>| compile_metric(&spec(kind, value), &s).err().unwrap_or_default();
        assert!(err(MetricKind::Gauge, None).contains("needs a 'value'"));
        assert!(err(MetricKind::Gauge, Some("k + 1")).contains("not an aggregate"));
        assert!(err(MetricKind::Histogram, Some("nope")).contains("nope"));
        assert!(err(MetricKind::Histogram, Some("'text'")).contains("not a number"));
        let bad_name = MetricSpec {
            name: "a-b".into(),
            ..spec(MetricKind::Counter, None)
        };
        assert!(compile_metric(&bad_name, &s)
            .err()
            .unwrap_or_default()
            .contains("letters"));
    }
}
