//! Flink's process memory model for jobmanager and taskmanager (DESIGN §10): same keys,
//! defaults, derivation order and error texts, so a Flink config yields the same pool sizes.

mod fraction;
mod jobmanager;
mod process;
mod taskmanager;

pub use fraction::RangeFraction;
pub use jobmanager::{JobManagerFlinkMemory, JobManagerMemory};
pub use process::{FlinkMemory, ProcessMemorySpec};
pub use taskmanager::{TaskExecutorFlinkMemory, TaskManagerMemory};

use crate::config::options::ConfigOption;
use crate::config::{Configuration, MemorySize};

/// A memory configuration Flink would reject; the text is Flink's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct MemoryError {
    pub message: String,
}

impl MemoryError {
    pub fn new(message: impl Into<String>) -> Self {
        MemoryError {
            message: message.into(),
        }
    }
}

/// `ProcessMemoryUtils.getMemorySizeFromConfig`.
pub(crate) fn read_size(config: &Configuration, option: &ConfigOption<MemorySize>) -> Result<MemorySize, MemoryError> {
    config.get(option).map_err(|cause| {
        MemoryError::new(format!(
            "Cannot read memory size from config option '{}'.\nCaused by: {cause}",
            option.key
        ))
    })
}

pub(crate) fn read_fraction(config: &Configuration, option: &ConfigOption<f32>) -> Result<f32, MemoryError> {
    config.get(option).map_err(|cause| MemoryError::new(cause.to_string()))
}

/// Lays out a breakdown as Flink's startup log does: two spaces per level, values from `column`.
pub(crate) fn format_breakdown(title: &str, column: usize, rows: &[(usize, &str, MemorySize)]) -> String {
    let mut out = format!("{title}\n");
    for (level, label, size) in rows {
        let head = format!("{}{label}", "  ".repeat(*level));
        out.push_str(&format!("{head:<column$}{}\n", size.human()));
    }
    out
}
