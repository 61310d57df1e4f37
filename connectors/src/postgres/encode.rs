//! Rows → the text `COPY … FROM STDIN (FORMAT csv)` reads: every value quoted (quotes doubled),
//! NULL an empty unquoted field, so an empty string and NULL stay apart. Values print as
//! Arrow displays them (ISO timestamps, plain numbers), which PostgreSQL's input functions
//! parse. Upsert buffers keep only the last row of each key (`last_per_key`): one `INSERT … ON
//! CONFLICT DO UPDATE` may not touch a row twice.

use std::collections::HashMap;
use std::fmt::Write as _;

use arrow::array::{Array, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use sluice_common::failure::ClassedError;

fn formatters<'a>(
    batch: &'a RecordBatch,
    options: &'a FormatOptions<'a>,
) -> Result<Vec<ArrayFormatter<'a>>, ClassedError> {
    batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), options))
        .collect::<Result<_, _>>()
        .map_err(|e| ClassedError::internal(format!("cannot format a column for COPY: {e}")))
}

/// Appends `batch`'s rows to `out` as CSV.
pub(crate) fn csv_rows(batch: &RecordBatch, out: &mut Vec<u8>) -> Result<(), ClassedError> {
    let options = FormatOptions::default();
    let columns = formatters(batch, &options)?;
    let mut field = String::new();
    for row in 0..batch.num_rows() {
        for (i, (f, array)) in columns.iter().zip(batch.columns()).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            if array.is_null(row) {
                continue;
            }
            field.clear();
            write!(field, "{}", f.value(row))
                .map_err(|e| ClassedError::internal(format!("cannot format a value for COPY: {e}")))?;
            out.push(b'"');
            for b in field.bytes() {
                if b == b'"' {
                    out.push(b'"');
                }
                out.push(b);
            }
            out.push(b'"');
        }
        out.push(b'\n');
    }
    Ok(())
}

/// The rows of `batch` with the last row of each key (the columns at `key`), in the order
/// those last rows came.
pub(crate) fn last_per_key(batch: &RecordBatch, key: &[usize]) -> Result<RecordBatch, ClassedError> {
    let options = FormatOptions::default().with_null("\u{0}NULL");
    let columns: Vec<ArrayFormatter> = key
        .iter()
        .map(|i| ArrayFormatter::try_new(batch.column(*i).as_ref(), &options))
        .collect::<Result<_, _>>()
        .map_err(|e| ClassedError::internal(format!("cannot format a key column: {e}")))?;
    let mut last: HashMap<String, u32> = HashMap::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let mut k = String::new();
        for f in &columns {
            let _ = write!(k, "{}\u{1}", f.value(row));
        }
        last.insert(k, row as u32);
    }
    if last.len() == batch.num_rows() {
        return Ok(batch.clone());
    }
    let mut rows: Vec<u32> = last.into_values().collect();
    rows.sort_unstable();
    take_record_batch(batch, &UInt32Array::from(rows))
        .map_err(|e| ClassedError::internal(format!("cannot select the last row per key: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn batch(ids: Vec<Option<i64>>, names: Vec<Option<&str>>) -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![Arc::new(Int64Array::from(ids)), Arc::new(StringArray::from(names))],
        )
        .unwrap()
    }

    #[test]
    fn csv_keeps_null_and_empty_apart_and_doubles_quotes() {
        let b = batch(vec![Some(1), None, Some(3)], vec![Some("a \"b\", c"), Some(""), None]);
        let mut out = Vec::new();
        csv_rows(&b, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\"1\",\"a \"\"b\"\", c\"\n,\"\"\n\"3\",\n"
        );
    }

    #[test]
    fn the_last_row_of_each_key_stays_in_arrival_order() {
        let b = batch(
            vec![Some(1), Some(2), Some(1), None, Some(3), None],
            vec![Some("a"), Some("b"), Some("c"), Some("d"), Some("e"), Some("f")],
        );
        let got = last_per_key(&b, &[0]).unwrap();
        let names = got.column(1).as_any().downcast_ref::<StringArray>().unwrap();
        let names: Vec<&str> = names.iter().map(|n| n.unwrap()).collect();
        assert_eq!(names, vec!["b", "c", "e", "f"]);
    }
}
