//! `cpu_cost(x, micros)`: returns `x` unchanged after spending `micros` microseconds of CPU per
//! row (a spin, not a sleep: the time is real work on the task's thread). For load tests and
//! demos of the autoscaler: an operator whose expression calls it costs a known amount of CPU
//! per row, so a load step is reproducible (e.g. `sum(cpu_cost(v, 1000))` in a keyed window).
//! `wait_cost(x, micros)` blocks the task as long without using the CPU, like a slow call
//! would: busy time counts it the same, and a small machine can run several such subtasks in
//! parallel (the autoscaler tests use it on 2-core CI machines).

use std::time::{Duration, Instant};

use arrow::datatypes::DataType;
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};

#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct CpuCost {
    signature: Signature,
    /// Spin (`cpu_cost`) or sleep (`wait_cost`).
    spin: bool,
}

impl CpuCost {
    pub(crate) fn new(spin: bool) -> CpuCost {
        CpuCost {
            // Volatile: never folded into a constant, the cost is paid for every row.
            signature: Signature::any(2, Volatility::Volatile),
            spin,
        }
    }

    fn fn_name(&self) -> &'static str {
        if self.spin {
            "cpu_cost"
        } else {
            "wait_cost"
        }
    }
}

/// The microseconds argument of `name`: a non-negative whole number.
fn micros(name: &str, value: &ColumnarValue) -> Result<u64> {
    let ColumnarValue::Scalar(s) = value else {
        return exec_err!("{name}(x, micros): micros must be a constant");
    };
    match s.cast_to(&DataType::Int64)? {
        ScalarValue::Int64(Some(m)) if m >= 0 => Ok(m as u64),
        other => exec_err!("{name}(x, micros): micros must be 0 or more, found {other}"),
    }
}

impl ScalarUDFImpl for CpuCost {
    fn name(&self) -> &str {
        self.fn_name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let name = self.fn_name();
        match arg_types {
            [x, m] if m.is_integer() => Ok(x.clone()),
            [_, m] => plan_err!("{name}(x, micros): micros must be an integer, found {m}"),
            _ => plan_err!("{name} takes two arguments (x, micros)"),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let name = self.fn_name();
        let [x, m] = args.args.as_slice() else {
            return exec_err!("{name} takes two arguments (x, micros)");
        };
        let spend = Duration::from_micros(micros(name, m)?.saturating_mul(args.number_rows as u64));
        if self.spin {
            let start = Instant::now();
            while start.elapsed() < spend {
                std::hint::spin_loop();
            }
        } else {
            std::thread::sleep(spend);
        }
        Ok(x.clone())
    }
}
