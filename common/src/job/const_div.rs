//! BIGINT division and remainder by a literal (`seq % 100000`, `(seq % n) / 100`) without a
//! hardware divide per row: the divisor's reciprocal is worked out once at compile time and
//! each row costs a 64×64→128-bit multiply, a shift and two adds. This is what an optimising
//! compiler (and HotSpot's C2) does for a constant divisor; the magic numbers are those of
//! Granlund and Montgomery ("Division by invariant integers using multiplication", 1994) as
//! Hacker's Delight §10-4 derives them, exact for every 64-bit dividend. Results and errors
//! equal DataFusion's: divisors 0, 1 and -1 are left to DataFusion (its division-by-zero and
//! overflow errors stay its own), and for every other divisor neither `/` nor `%` can fail.

use std::fmt::{self, Display, Formatter};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{Array, Int64Array};
use arrow::datatypes::{DataType, Schema};
use arrow::record_batch::RecordBatch;
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, Operator};
use datafusion::physical_expr::expressions::{BinaryExpr, Literal};
use datafusion::physical_expr::PhysicalExpr;

/// A divisor `d` with |d| ≥ 2 and its signed magic number: `n / d` is the high half of
/// `magic × n`, corrected by `n` when the magic's sign differs from the divisor's, shifted
/// right by `shift` and rounded toward zero.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub(crate) struct Reciprocal {
    divisor: i64,
    magic: i64,
    shift: u32,
}

impl Reciprocal {
    /// `None` for 0, 1 and -1, which DataFusion keeps (its errors, or nothing to gain).
    pub(crate) fn new(divisor: i64) -> Option<Self> {
        if (-1..=1).contains(&divisor) {
            return None;
        }
        const TWO63: u64 = 1 << 63;
        let ad = divisor.unsigned_abs();
        let t = TWO63 + ((divisor as u64) >> 63);
        let anc = t - 1 - t % ad;
        let (mut q1, mut r1) = (TWO63 / anc, TWO63 % anc);
        let (mut q2, mut r2) = (TWO63 / ad, TWO63 % ad);
        let mut p = 63u32;
        loop {
            p += 1;
            q1 = q1.wrapping_mul(2);
            r1 = r1.wrapping_mul(2);
            if r1 >= anc {
                q1 = q1.wrapping_add(1);
                r1 = r1.wrapping_sub(anc);
            }
            q2 = q2.wrapping_mul(2);
            r2 = r2.wrapping_mul(2);
            if r2 >= ad {
                q2 = q2.wrapping_add(1);
                r2 = r2.wrapping_sub(ad);
            }
            let delta = ad - r2;
            // Until 2^p exceeds the error bound of rounding 2^p / |d| up.
            let imprecise = q1 < delta || (q1 == delta && r1 == 0);
            if !imprecise || p >= 128 {
                break;
            }
        }
        let magic = q2.wrapping_add(1) as i64;
        let magic = if divisor < 0 { magic.wrapping_neg() } else { magic };
        Some(Self {
            divisor,
            magic,
            shift: p - 64,
        })
    }

    /// `n / d`, truncated toward zero, as `i64::wrapping_div` gives it.
    #[inline(always)]
    pub(crate) fn quotient(&self, n: i64) -> i64 {
        let mut q = ((i128::from(self.magic) * i128::from(n)) >> 64) as i64;
        if self.divisor > 0 && self.magic < 0 {
            q = q.wrapping_add(n);
        } else if self.divisor < 0 && self.magic > 0 {
            q = q.wrapping_sub(n);
        }
        q >>= self.shift;
        q.wrapping_add(((q as u64) >> 63) as i64)
    }

    /// `n % d`, with the sign of `n`, as `i64::wrapping_rem` gives it.
    #[inline(always)]
    pub(crate) fn remainder(&self, n: i64) -> i64 {
        n.wrapping_sub(self.quotient(n).wrapping_mul(self.divisor))
    }
}

/// `input / divisor` or `input % divisor` for a BIGINT `input` and a literal divisor.
#[derive(Debug, Eq)]
pub(crate) struct ConstDivExpr {
    input: Arc<dyn PhysicalExpr>,
    by: Reciprocal,
    remainder: bool,
}

// By hand: a derived `PartialEq` cannot compare `Arc<dyn PhysicalExpr>` fields, and `Hash`
// must agree with it.
impl PartialEq for ConstDivExpr {
    fn eq(&self, other: &Self) -> bool {
        self.input.eq(&other.input) && self.by == other.by && self.remainder == other.remainder
    }
}

impl Hash for ConstDivExpr {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.input.hash(state);
        self.by.hash(state);
        self.remainder.hash(state);
    }
}

impl ConstDivExpr {
    /// The rewrite of DataFusion's `BinaryExpr` when it is a BIGINT `/` or `%` by a literal
    /// other than 0, 1 and -1; `None` leaves the expression as it is.
    pub(crate) fn replacing(expr: &Arc<dyn PhysicalExpr>, schema: &Schema) -> Option<Arc<dyn PhysicalExpr>> {
        let binary = expr.downcast_ref::<BinaryExpr>()?;
        let remainder = match binary.op() {
            Operator::Divide => false,
            Operator::Modulo => true,
            _ => return None,
        };
        let ScalarValue::Int64(Some(divisor)) = binary.right().downcast_ref::<Literal>()?.value() else {
            return None;
        };
        if binary.left().data_type(schema).ok()? != DataType::Int64 {
            return None;
        }
        Some(Arc::new(Self {
            input: Arc::clone(binary.left()),
            by: Reciprocal::new(*divisor)?,
            remainder,
        }))
    }

    fn op(&self) -> char {
        if self.remainder {
            '%'
        } else {
            '/'
        }
    }

    fn apply(&self, n: i64) -> i64 {
        if self.remainder {
            self.by.remainder(n)
        } else {
            self.by.quotient(n)
        }
    }
}

impl Display for ConstDivExpr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.input, self.op(), self.by.divisor)
    }
}

impl PhysicalExpr for ConstDivExpr {
    fn data_type(&self, _schema: &Schema) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn nullable(&self, schema: &Schema) -> Result<bool> {
        self.input.nullable(schema)
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        match self.input.evaluate(batch)? {
            ColumnarValue::Scalar(ScalarValue::Int64(v)) => {
                Ok(ColumnarValue::Scalar(ScalarValue::Int64(v.map(|n| self.apply(n)))))
            }
            ColumnarValue::Array(array) => {
                let Some(values) = array.as_any().downcast_ref::<Int64Array>() else {
                    return Err(not_bigint(self, array.data_type()));
                };
                // Null slots hold some value too; dividing it cannot fail, and the result
                // keeps the input's null buffer. The operator is chosen once, outside the
                // per-row loop (`apply` is the scalar path).
                let out: Int64Array = if self.remainder {
                    values.unary(|n| self.by.remainder(n))
                } else {
                    values.unary(|n| self.by.quotient(n))
                };
                Ok(ColumnarValue::Array(Arc::new(out)))
            }
            ColumnarValue::Scalar(other) => Err(not_bigint(self, &other.data_type())),
        }
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        vec![&self.input]
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn PhysicalExpr>>) -> Result<Arc<dyn PhysicalExpr>> {
        let [input] = super::expr::exactly(&self, children)?;
        Ok(Arc::new(Self {
            input,
            by: self.by,
            remainder: self.remainder,
        }))
    }

    fn fmt_sql(&self, f: &mut Formatter<'_>) -> fmt::Result {
        self.input.fmt_sql(f)?;
        write!(f, " {} {}", self.op(), self.by.divisor)
    }
}

fn not_bigint(expr: &ConstDivExpr, found: &DataType) -> DataFusionError {
    DataFusionError::Internal(format!("'{expr}' expects BIGINT input, got {found}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every divisor class (small, powers of two and their neighbours, large, negative, the
    /// extremes) against the hardware, on dividends that hit every edge.
    #[test]
    fn the_reciprocal_divides_as_the_hardware_does() {
        let mut divisors: Vec<i64> = (2..300)
            .chain([1000, 7919, 100_000, 1_000_003, i64::MAX, i64::MAX - 1])
            .collect();
        for b in 1..63 {
            let p = 1i64 << b;
            divisors.extend([p - 1, p, p + 1]);
        }
        divisors.extend(divisors.clone().iter().map(|d| -d));
        divisors.extend([i64::MIN, i64::MIN + 1]);
        divisors.retain(|d| !(-1..=1).contains(d));
        let mut dividends: Vec<i64> = (-1000..1000).collect();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            dividends.push(x as i64);
        }
        dividends.extend([i64::MIN, i64::MIN + 1, i64::MAX, i64::MAX - 1]);
        for &d in &divisors {
            let r = Reciprocal::new(d).unwrap_or_else(|| panic!("{d} has a reciprocal"));
            for &n in dividends
                .iter()
                .chain([d, d.wrapping_sub(1), d.wrapping_add(1), d.wrapping_mul(3)].iter())
            {
                assert_eq!(r.quotient(n), n.wrapping_div(d), "{n} / {d}");
                assert_eq!(r.remainder(n), n.wrapping_rem(d), "{n} % {d}");
            }
        }
        for d in [-1, 0, 1] {
            assert!(Reciprocal::new(d).is_none(), "{d} stays with DataFusion");
        }
    }
}
