//! The process level of Flink's memory model, shared by jobmanager and taskmanager
//! (`ProcessMemoryUtils`): which of fine-grained / total Flink / total process memory drives
//! the derivation, and how JVM metaspace and overhead are derived around the Flink memory.

use crate::config::options::ConfigOption;
use crate::config::{Configuration, MemorySize};

use super::fraction::RangeFraction;
use super::{read_size, MemoryError};

/// The options of one process kind (taskmanager or jobmanager).
pub struct ProcessMemoryOptions {
    pub required_fine_grained: &'static [&'static ConfigOption<MemorySize>],
    pub total_flink: &'static ConfigOption<MemorySize>,
    pub total_process: &'static ConfigOption<MemorySize>,
    pub metaspace: &'static ConfigOption<MemorySize>,
    pub overhead_min: &'static ConfigOption<MemorySize>,
    pub overhead_max: &'static ConfigOption<MemorySize>,
    pub overhead_fraction: &'static ConfigOption<f32>,
}

/// The Flink-memory part of a process kind (`FlinkMemoryUtils`).
pub trait FlinkMemory: Sized {
    const OPTIONS: ProcessMemoryOptions;
    fn derive_from_fine_grained(config: &Configuration) -> Result<Self, MemoryError>;
    fn derive_from_total_flink(config: &Configuration, total: MemorySize) -> Result<Self, MemoryError>;
    fn total_flink(&self) -> MemorySize;
}

/// A fully derived process: its Flink memory plus JVM metaspace and overhead reserves.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessMemorySpec<F> {
    pub flink: F,
    pub metaspace: MemorySize,
    pub overhead: MemorySize,
}

impl<F: FlinkMemory> ProcessMemorySpec<F> {
    pub fn total_process(&self) -> MemorySize {
        MemorySize(self.flink.total_flink().0 + self.metaspace.0 + self.overhead.0)
    }

    /// `ProcessMemoryUtils.memoryProcessSpecFromConfig`.
    pub fn from_config(config: &Configuration) -> Result<Self, MemoryError> {
        let o = F::OPTIONS;
        if o.required_fine_grained.iter().all(|opt| config.contains(*opt)) {
            let flink = F::derive_from_fine_grained(config)?;
            let (metaspace, overhead) = jvm_from_total_flink::<F>(config, flink.total_flink())?;
            Ok(Self {
                flink,
                metaspace,
                overhead,
            })
        } else if config.contains(o.total_flink) {
            let total = read_size(config, o.total_flink)?;
            let flink = F::derive_from_total_flink(config, total)?;
            let (metaspace, overhead) = jvm_from_total_flink::<F>(config, total)?;
            Ok(Self {
                flink,
                metaspace,
                overhead,
            })
        } else if config.contains(o.total_process) {
            let process = read_size(config, o.total_process)?;
            let (metaspace, overhead) = jvm_with_total_process::<F>(config, process)?;
            let total = process.saturating_sub(MemorySize(metaspace.0 + overhead.0));
            let flink = F::derive_from_total_flink(config, total)?;
            Ok(Self {
                flink,
                metaspace,
                overhead,
            })
        } else {
            let fine: Vec<&str> = o.required_fine_grained.iter().map(|opt| opt.key).collect();
            Err(MemoryError::new(format!(
                "Either required fine-grained memory ({}), or Total Flink Memory size ({}), or Total Process Memory size ({}) need to be configured explicitly.",
                fine.join(" and "),
                o.total_flink,
                o.total_process
            )))
        }
    }
}

fn overhead_range<F: FlinkMemory>(config: &Configuration) -> Result<RangeFraction, MemoryError> {
    let o = F::OPTIONS;
    RangeFraction::from_config(
        config,
        read_size(config, o.overhead_min)?,
        read_size(config, o.overhead_max)?,
        o.overhead_fraction,
    )
}

fn jvm_with_total_process<F: FlinkMemory>(
    config: &Configuration,
    process: MemorySize,
) -> Result<(MemorySize, MemorySize), MemoryError> {
    let metaspace = read_size(config, F::OPTIONS.metaspace)?;
    let overhead = overhead_range::<F>(config)?.derive("jvm overhead memory", process);
    if metaspace.0 + overhead.0 > process.0 {
        return Err(MemoryError::new(format!(
            "Sum of configured JVM Metaspace ({}) and JVM Overhead ({}) exceed configured Total Process Memory ({}).",
            metaspace.human(),
            overhead.human(),
            process.human()
        )));
    }
    Ok((metaspace, overhead))
}

fn jvm_from_total_flink<F: FlinkMemory>(
    config: &Configuration,
    total_flink: MemorySize,
) -> Result<(MemorySize, MemorySize), MemoryError> {
    let o = F::OPTIONS;
    let metaspace = read_size(config, o.metaspace)?;
    let flink_and_metaspace = MemorySize(total_flink.0 + metaspace.0);
    let range = overhead_range::<F>(config)?;
    if !config.contains(o.total_process) {
        let overhead = range.derive_inverse("jvm overhead memory", flink_and_metaspace);
        return Ok((metaspace, overhead));
    }
    let process = read_size(config, o.total_process)?;
    if flink_and_metaspace > process {
        // Flink 2.3's wording, double space before the last parenthesis included.
        return Err(MemoryError::new(format!(
            "The configured Total Process Memory size ({}) is less than the sum of the derived Total Flink Memory size ({}) and the configured or default JVM Metaspace size  ({}).",
            process.human(),
            total_flink.human(),
            metaspace.human()
        )));
    }
    let overhead = process.saturating_sub(flink_and_metaspace);
    if !range.contains(overhead) {
        return Err(MemoryError::new(format!(
            "Derived JVM Overhead size ({}) is not in configured JVM Overhead range [{}, {}].",
            overhead.human(),
            range.min.human(),
            range.max.human()
        )));
    }
    if config.contains(o.overhead_fraction) && overhead != process.multiply(range.fraction) {
        tracing::info!(
            "The derived JVM Overhead size ({}) does not match the configured or default JVM Overhead fraction ({}) from the configured Total Process Memory size ({}). The derived JVM Overhead size will be used.",
            overhead.human(),
            range.fraction,
            process.human()
        );
    }
    Ok((metaspace, overhead))
}
