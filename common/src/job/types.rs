//! Column types a job file can name, and their Arrow types.

use arrow::datatypes::{DataType, TimeUnit};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    BigInt,
    Int,
    Double,
    Float,
    String,
    Boolean,
    Timestamp,
}

impl ColumnType {
    pub fn parse(text: &str) -> Result<ColumnType, String> {
        Ok(match text.to_ascii_lowercase().as_str() {
            "bigint" | "long" | "int64" => ColumnType::BigInt,
            "int" | "integer" | "int32" => ColumnType::Int,
            "double" | "float64" => ColumnType::Double,
            "float" | "real" | "float32" => ColumnType::Float,
            "string" | "varchar" | "text" => ColumnType::String,
            "boolean" | "bool" => ColumnType::Boolean,
            "timestamp" => ColumnType::Timestamp,
            other => {
                return Err(format!(
                    "unknown column type '{other}'; expected bigint, int, double, float, string, boolean or timestamp"
                ))
            }
        })
    }

    /// The name a job file uses (`parse` reads it back).
    pub fn name(self) -> &'static str {
        match self {
            ColumnType::BigInt => "bigint",
            ColumnType::Int => "int",
            ColumnType::Double => "double",
            ColumnType::Float => "float",
            ColumnType::String => "string",
            ColumnType::Boolean => "boolean",
            ColumnType::Timestamp => "timestamp",
        }
    }

    pub fn arrow(self) -> DataType {
        match self {
            ColumnType::BigInt => DataType::Int64,
            ColumnType::Int => DataType::Int32,
            ColumnType::Double => DataType::Float64,
            ColumnType::Float => DataType::Float32,
            ColumnType::String => DataType::Utf8,
            ColumnType::Boolean => DataType::Boolean,
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Millisecond, None),
        }
    }
}
