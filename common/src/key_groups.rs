//! Keys → key groups → subtasks, with Flink's formulas (`KeyGroupRangeAssignment`) and
//! Sluice's one fixed key hash.
//!
//! **The key hash** (part of the checkpoint format; it never changes): the key columns of a row
//! are encoded canonically, column after column — a null as the byte `0x00`; any other value as
//! `0x01` followed by: Int32/Int64/Timestamp(ms) as 8-byte little-endian `i64`; Float32/Float64
//! as the 8-byte little-endian IEEE bits of the `f64` (with -0.0 folded into 0.0 and every NaN
//! into one); Boolean as one byte; Utf8 as a 4-byte little-endian length and the UTF-8 bytes —
//! and the bytes are hashed with XXH64, seed 0. Key group = hash mod max-parallelism.

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, StringArray};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, Float32Type, Float64Type, Int32Type, Int64Type, TimeUnit, TimestampMillisecondType};
use twox_hash::XxHash64;

pub const LOWER_BOUND_MAX_PARALLELISM: u32 = 1 << 7;
pub const UPPER_BOUND_MAX_PARALLELISM: u32 = 1 << 15;

/// Flink's `computeDefaultMaxParallelism`: round p·1.5 up to a power of two, within 128..32768.
pub fn default_max_parallelism(parallelism: u32) -> u32 {
    (parallelism + parallelism / 2)
        .max(1)
        .next_power_of_two()
        .clamp(LOWER_BOUND_MAX_PARALLELISM, UPPER_BOUND_MAX_PARALLELISM)
}

/// The key group of a key hash (a mask when max parallelism is a power of two, as by default).
pub fn key_group(hash: u64, max_parallelism: u32) -> u32 {
    if max_parallelism.is_power_of_two() {
        (hash & u64::from(max_parallelism - 1)) as u32
    } else {
        (hash % u64::from(max_parallelism)) as u32
    }
}

/// Flink's `computeOperatorIndexForKeyGroup`.
pub fn subtask_for_key_group(max_parallelism: u32, parallelism: u32, key_group: u32) -> u32 {
    (u64::from(key_group) * u64::from(parallelism) / u64::from(max_parallelism)) as u32
}

/// Flink's `computeKeyGroupRangeForOperatorIndex`: the inclusive range subtask `i` owns.
pub fn key_group_range(max_parallelism: u32, parallelism: u32, i: u32) -> (u32, u32) {
    let (m, p, i) = (u64::from(max_parallelism), u64::from(parallelism), u64::from(i));
    ((i * m).div_ceil(p) as u32, (((i + 1) * m - 1) / p) as u32)
}

/// Whether a column type can be part of a key.
pub fn is_key_type(ty: &DataType) -> bool {
    matches!(
        ty,
        DataType::Int32
            | DataType::Int64
            | DataType::Float32
            | DataType::Float64
            | DataType::Boolean
            | DataType::Utf8
            | DataType::Timestamp(TimeUnit::Millisecond, _)
    )
}

fn float_bits(v: f64) -> [u8; 8] {
    let canonical = if v == 0.0 {
        0.0
    } else if v.is_nan() {
        f64::NAN
    } else {
        v
    };
    canonical.to_bits().to_le_bytes()
}

/// A key column's values, downcast once per batch rather than once per row.
enum Values<'a> {
    /// Int64 and Timestamp(ms).
    I64(&'a [i64]),
    I32(&'a [i32]),
    F64(&'a [f64]),
    F32(&'a [f32]),
    Bool(&'a BooleanArray),
    Utf8(&'a StringArray),
}

struct KeyColumn<'a> {
    nulls: Option<&'a NullBuffer>,
    values: Values<'a>,
}

impl<'a> KeyColumn<'a> {
    fn new(column: &'a ArrayRef) -> Result<Self, String> {
        let values = match column.data_type() {
            DataType::Int64 => Values::I64(column.as_primitive::<Int64Type>().values()),
            DataType::Timestamp(TimeUnit::Millisecond, _) => {
                Values::I64(column.as_primitive::<TimestampMillisecondType>().values())
            }
            DataType::Int32 => Values::I32(column.as_primitive::<Int32Type>().values()),
            DataType::Float64 => Values::F64(column.as_primitive::<Float64Type>().values()),
            DataType::Float32 => Values::F32(column.as_primitive::<Float32Type>().values()),
            DataType::Boolean => Values::Bool(column.as_boolean()),
            DataType::Utf8 => Values::Utf8(column.as_string::<i32>()),
            other => return Err(format!("a key column cannot have type {other}")),
        };
        Ok(KeyColumn {
            nulls: column.nulls().filter(|n| n.null_count() > 0),
            values,
        })
    }

    /// Appends the canonical encoding of row `row` to `out`.
    fn encode(&self, row: usize, out: &mut Vec<u8>) {
        if self.nulls.is_some_and(|n| n.is_null(row)) {
            out.push(0);
            return;
        }
        out.push(1);
        match &self.values {
            Values::I64(v) => out.extend_from_slice(&v[row].to_le_bytes()),
            Values::I32(v) => out.extend_from_slice(&i64::from(v[row]).to_le_bytes()),
            Values::F64(v) => out.extend_from_slice(&float_bits(v[row])),
            Values::F32(v) => out.extend_from_slice(&float_bits(f64::from(v[row]))),
            Values::Bool(a) => out.push(u8::from(a.value(row))),
            Values::Utf8(a) => {
                let s = a.value(row);
                out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                out.extend_from_slice(s.as_bytes());
            }
        }
    }
}

/// The key hash of a key's canonical bytes.
pub fn hash_bytes(canonical: &[u8]) -> u64 {
    XxHash64::oneshot(0, canonical)
}

/// The hash of a non-null integer key alone: `0x01` and 8 little-endian bytes.
fn hash_i64(v: i64) -> u64 {
    let mut b = [1u8; 9];
    b[1..].copy_from_slice(&v.to_le_bytes());
    XxHash64::oneshot(0, &b)
}

/// The key hash of every row of a batch's key columns.
pub fn hash_keys(columns: &[ArrayRef], rows: usize) -> Result<Vec<u64>, String> {
    let typed = columns.iter().map(KeyColumn::new).collect::<Result<Vec<_>, _>>()?;
    // The common case, one integer key without nulls, skips the byte buffer.
    if let [KeyColumn { nulls: None, values }] = typed.as_slice() {
        match values {
            Values::I64(v) => return Ok(v.iter().take(rows).map(|v| hash_i64(*v)).collect()),
            Values::I32(v) => return Ok(v.iter().take(rows).map(|v| hash_i64(i64::from(*v))).collect()),
            _ => {}
        }
    }
    let mut hashes = Vec::with_capacity(rows);
    let mut buf = Vec::with_capacity(32);
    for row in 0..rows {
        buf.clear();
        for c in &typed {
            c.encode(row, &mut buf);
        }
        hashes.push(hash_bytes(&buf));
    }
    Ok(hashes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use std::sync::Arc;

    #[test]
    fn flink_range_examples() {
        assert_eq!(key_group_range(128, 3, 0), (0, 42));
        assert_eq!(key_group_range(128, 3, 1), (43, 85));
        assert_eq!(key_group_range(128, 3, 2), (86, 127));
        for kg in 0..128 {
            let i = subtask_for_key_group(128, 3, kg);
            let (lo, hi) = key_group_range(128, 3, i);
            assert!(lo <= kg && kg <= hi, "kg {kg} → {i}");
        }
    }

    #[test]
    fn key_group_is_the_hash_modulo_max_parallelism() {
        for h in [0u64, 1, 127, 128, 12345, u64::MAX] {
            for m in [128u32, 100, 32768, 1] {
                assert_eq!(u64::from(key_group(h, m)), h % u64::from(m), "{h} mod {m}");
            }
        }
    }

    #[test]
    fn flink_default_max_parallelism() {
        assert_eq!(default_max_parallelism(1), 128);
        assert_eq!(default_max_parallelism(85), 128);
        assert_eq!(default_max_parallelism(100), 256);
        assert_eq!(default_max_parallelism(200), 512);
        assert_eq!(default_max_parallelism(1000), 2048);
        assert_eq!(default_max_parallelism(20000), 32768);
    }

    #[test]
    fn key_hash_is_fixed() {
        // These values are part of the checkpoint format: they must never change.
        let ints: ArrayRef = Arc::new(Int64Array::from(vec![Some(0), Some(42), None]));
        let h = hash_keys(std::slice::from_ref(&ints), 3).unwrap();
        let mut expect = Vec::new();
        for bytes in [&[1u8, 0, 0, 0, 0, 0, 0, 0, 0][..], &[1, 42, 0, 0, 0, 0, 0, 0, 0], &[0]] {
            expect.push(XxHash64::oneshot(0, bytes));
        }
        assert_eq!(h, expect);
        let strs: ArrayRef = Arc::new(StringArray::from(vec!["ab"]));
        let h = hash_keys(&[strs, ints], 1).unwrap();
        assert_eq!(
            h[0],
            XxHash64::oneshot(0, &[1, 2, 0, 0, 0, b'a', b'b', 1, 0, 0, 0, 0, 0, 0, 0, 0])
        );
        assert_eq!(XxHash64::oneshot(0, b""), 0xEF46DB3751D8E999, "XXH64 reference value");
    }

    #[test]
    fn integer_fast_path_hashes_like_the_canonical_bytes() {
        let i64s: ArrayRef = Arc::new(Int64Array::from(vec![0, 42, -7]));
        let i32s: ArrayRef = Arc::new(arrow::array::Int32Array::from(vec![0, 42, -7]));
        let fast = hash_keys(std::slice::from_ref(&i64s), 3).unwrap();
        assert_eq!(fast, hash_keys(std::slice::from_ref(&i32s), 3).unwrap());
        for (h, v) in fast.iter().zip([0i64, 42, -7]) {
            let mut bytes = vec![1u8];
            bytes.extend_from_slice(&v.to_le_bytes());
            assert_eq!(*h, XxHash64::oneshot(0, &bytes));
        }
        // A sliced column hashes its own rows.
        assert_eq!(hash_keys(&[i64s.slice(1, 2)], 2).unwrap(), fast[1..]);
    }
}
