//! The check a PostgreSQL sink makes before it writes: the table exists, every column of the
//! stream is a column of the table whose type can hold the stream's values, no `NOT NULL`
//! column without a default is left out, and in upsert mode a unique index covers exactly the
//! primary key (what `ON CONFLICT (pk)` needs). Each failure is a config-class error naming the
//! table and the column.

use arrow::datatypes::{DataType, Schema};
use sluice_common::failure::ClassedError;
use tokio_postgres::Client;

use super::options::PgOptions;
use super::retry::sql_error;

/// A column of the table: name, type as PostgreSQL prints it, its type's name, whether it is
/// `NOT NULL` and has a default.
struct TableColumn {
    name: String,
    shown: String,
    typname: String,
    not_null: bool,
    has_default: bool,
}

/// The PostgreSQL types (`pg_type.typname`) that take values of an Arrow type as text.
fn accepts(data_type: &DataType) -> &'static [&'static str] {
    use DataType::*;
    match data_type {
        Boolean => &["bool"],
        Int8 | Int16 | UInt8 => &["int2", "int4", "int8", "numeric", "float4", "float8"],
        Int32 | UInt16 => &["int4", "int8", "numeric", "float8"],
        Int64 | UInt32 => &["int8", "numeric", "float8"],
        UInt64 => &["numeric"],
        Float16 | Float32 => &["float4", "float8", "numeric"],
        Float64 => &["float8", "numeric"],
        Decimal32(..) | Decimal64(..) | Decimal128(..) | Decimal256(..) => &["numeric"],
        Utf8 | LargeUtf8 | Utf8View => &["text", "varchar", "bpchar", "json", "jsonb", "uuid", "name", "citext"],
        Timestamp(_, _) => &["timestamp", "timestamptz"],
        Date32 | Date64 => &["date", "timestamp", "timestamptz"],
        Time32(_) | Time64(_) => &["time"],
        _ => &[],
    }
}

async fn table_columns(client: &Client, options: &PgOptions) -> Result<Vec<TableColumn>, ClassedError> {
    let table = options.qualified_table();
    let exists = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
        .await
        .map_err(|e| sql_error(options, "checking that the table exists", &e))?;
    if !exists.get::<_, bool>(0) {
        return Err(ClassedError::config(format!(
            "table '{}' does not exist in database {} (create it before the job starts)",
            options.table_name(),
            options.server()
        )));
    }
    let rows = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), t.typname::text, a.attnotnull, a.atthasdef \
             FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
             WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            &[&table],
        )
        .await
        .map_err(|e| sql_error(options, "reading the table's columns", &e))?;
    Ok(rows
        .iter()
        .map(|r| TableColumn {
            name: r.get(0),
            shown: r.get(1),
            typname: r.get(2),
            not_null: r.get(3),
            has_default: r.get(4),
        })
        .collect())
}

/// Checks `options`' table against the stream's `schema`.
pub(crate) async fn check_table(client: &Client, options: &PgOptions, schema: &Schema) -> Result<(), ClassedError> {
    let columns = table_columns(client, options).await?;
    let table = options.table_name();
    for field in schema.fields() {
        let Some(c) = columns.iter().find(|c| &c.name == field.name()) else {
            let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
            return Err(ClassedError::config(format!(
                "table '{table}' has no column '{}' (a column of the stream); its columns: {}",
                field.name(),
                names.join(", ")
            )));
        };
        if !accepts(field.data_type()).contains(&c.typname.as_str()) {
            return Err(ClassedError::config(format!(
                "column '{}' of table '{table}' is {}, which cannot hold the stream's {} values",
                c.name,
                c.shown,
                field.data_type()
            )));
        }
    }
    if let Some(c) = columns
        .iter()
        .find(|c| c.not_null && !c.has_default && schema.field_with_name(&c.name).is_err())
    {
        return Err(ClassedError::config(format!(
            "column '{}' of table '{table}' is NOT NULL without a default, and the stream has no such column",
            c.name
        )));
    }
    if options.primary_key.is_empty() {
        return Ok(());
    }
    for k in &options.primary_key {
        if schema.field_with_name(k).is_err() {
            return Err(ClassedError::config(format!(
                "primary-key column '{k}' of the sink into table '{table}' is not a column of the stream"
            )));
        }
    }
    let mut key = options.primary_key.clone();
    key.sort();
    let unique = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = to_regclass($1) AND i.indisunique \
             AND (SELECT array_agg(a.attname::text ORDER BY a.attname::text) FROM pg_attribute a \
                  WHERE a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)) = $2::text[])",
            &[&options.qualified_table(), &key],
        )
        .await
        .map_err(|e| sql_error(options, "reading the table's unique indexes", &e))?;
    if !unique.get::<_, bool>(0) {
        return Err(ClassedError::config(format!(
            "table '{table}' has no primary key or unique index on exactly ({}), which the upsert sink's ON CONFLICT needs",
            options.primary_key.join(", ")
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_fit_only_columns_wide_enough() {
        assert!(accepts(&DataType::Int64).contains(&"int8"));
        assert!(!accepts(&DataType::Int64).contains(&"int4"));
        assert!(accepts(&DataType::Int32).contains(&"int8"));
        assert!(!accepts(&DataType::Utf8).contains(&"int4"));
        assert!(accepts(&DataType::Binary).is_empty());
    }
}
