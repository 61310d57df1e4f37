//! `now()` as a streaming job means it: the wall clock when a batch is evaluated, as a
//! millisecond timestamp like Sluice's event-time columns (so `now() - ts` is a duration).
//! DataFusion's own `now()` is the start time of a query, folded into a constant at planning and
//! not callable afterwards; a job's expressions are compiled once and run for as long as the
//! job does.

use arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::{plan_err, Result, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};

#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct WallClock {
    signature: Signature,
}

impl WallClock {
    pub(crate) fn new() -> WallClock {
        WallClock {
            // Volatile: evaluated at every batch, never folded.
            signature: Signature::nullary(Volatility::Volatile),
        }
    }
}

impl ScalarUDFImpl for WallClock {
    fn name(&self) -> &str {
        "now"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        if !arg_types.is_empty() {
            return plan_err!("now() takes no arguments");
        }
        Ok(DataType::Timestamp(TimeUnit::Millisecond, None))
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let ms = crate::wall_ms::wall_ms();
        Ok(ColumnarValue::Scalar(ScalarValue::TimestampMillisecond(Some(ms), None)))
    }
}
