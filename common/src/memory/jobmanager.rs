//! The jobmanager's Flink memory (`JobManagerFlinkMemoryUtils`): heap and off-heap inside the
//! total Flink memory, with Flink's precedence and error texts.

use crate::config::options::*;
use crate::config::{Configuration, MemorySize};

use super::process::{FlinkMemory, ProcessMemoryOptions, ProcessMemorySpec};
use super::{read_size, MemoryError};

/// The jobmanager's fully derived memory configuration.
pub type JobManagerMemory = ProcessMemorySpec<JobManagerFlinkMemory>;

/// Below this heap Flink warns (`JobManagerOptions.MIN_JVM_HEAP_SIZE`).
const MIN_HEAP: MemorySize = MemorySize::mebibytes(128);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobManagerFlinkMemory {
    pub heap: MemorySize,
    pub off_heap: MemorySize,
}

fn checked(heap: MemorySize, off_heap: MemorySize) -> JobManagerFlinkMemory {
    if heap < MIN_HEAP {
        tracing::warn!(
            "The configured or derived JVM heap memory size ({}) is less than its recommended minimum value ({})",
            heap.human(),
            MIN_HEAP.human()
        );
    }
    JobManagerFlinkMemory { heap, off_heap }
}

impl FlinkMemory for JobManagerFlinkMemory {
    const OPTIONS: ProcessMemoryOptions = ProcessMemoryOptions {
        required_fine_grained: &[&JM_HEAP],
        total_flink: &JM_FLINK_SIZE,
        total_process: &JM_PROCESS_SIZE,
        metaspace: &JM_JVM_METASPACE,
        overhead_min: &JM_JVM_OVERHEAD_MIN,
        overhead_max: &JM_JVM_OVERHEAD_MAX,
        overhead_fraction: &JM_JVM_OVERHEAD_FRACTION,
    };

    fn derive_from_fine_grained(config: &Configuration) -> Result<Self, MemoryError> {
        let heap = read_size(config, &JM_HEAP)?;
        let off_heap = read_size(config, &JM_OFF_HEAP)?;
        // Flink 2.3's JobManagerFlinkMemoryUtils: an explicit off-heap size must add up with the
        // heap to the total; else the off-heap size is what the total leaves.
        let mut off_heap = off_heap;
        if config.contains(&JM_FLINK_SIZE) {
            let total = read_size(config, &JM_FLINK_SIZE)?;
            if config.contains(&JM_OFF_HEAP) {
                if heap.0 + off_heap.0 != total.0 {
                    return Err(MemoryError::new(format!(
                        "Sum of the configured JVM Heap Memory ({}) and the configured Off-heap Memory ({}) does not match the configured Total Flink Memory ({}). Please, make the configuration consistent or configure only one option: either JVM Heap or Total Flink Memory.",
                        heap.human(),
                        off_heap.human(),
                        total.human()
                    )));
                }
            } else {
                if heap > total {
                    return Err(MemoryError::new(format!(
                        "The configured JVM Heap Memory ({}) exceeds the configured Total Flink Memory ({}). Please, make the configuration consistent or configure only one option: either JVM Heap or Total Flink Memory.",
                        heap.human(),
                        total.human()
                    )));
                }
                let derived = MemorySize(total.0 - heap.0);
                if derived != off_heap {
                    tracing::info!(
                        "The Off-Heap Memory size ({}) is derived the configured Total Flink Memory size ({}) minus the configured JVM Heap Memory size ({}). The default Off-Heap Memory size ({}) is ignored.",
                        derived.human(),
                        total.human(),
                        heap.human(),
                        off_heap.human()
                    );
                }
                off_heap = derived;
            }
        }
        Ok(checked(heap, off_heap))
    }

    fn derive_from_total_flink(config: &Configuration, total: MemorySize) -> Result<Self, MemoryError> {
        let off_heap = read_size(config, &JM_OFF_HEAP)?;
        if total <= off_heap {
            return Err(MemoryError::new(format!(
                "The configured Total Flink Memory ({}) is less than the configured Off-heap Memory ({}).",
                total.human(),
                off_heap.human()
            )));
        }
        Ok(checked(MemorySize(total.0 - off_heap.0), off_heap))
    }

    fn total_flink(&self) -> MemorySize {
        MemorySize(self.heap.0 + self.off_heap.0)
    }
}

impl JobManagerMemory {
    /// The derived sizes under Flink's option names.
    pub fn to_options(&self) -> Vec<(&'static str, u64)> {
        vec![
            (JM_HEAP.key, self.flink.heap.0),
            (JM_OFF_HEAP.key, self.flink.off_heap.0),
            (JM_JVM_METASPACE.key, self.metaspace.0),
            (JM_JVM_OVERHEAD_MIN.key, self.overhead.0),
            (JM_JVM_OVERHEAD_MAX.key, self.overhead.0),
            (JM_FLINK_SIZE.key, self.flink.total_flink().0),
            (JM_PROCESS_SIZE.key, self.total_process().0),
        ]
    }

    /// Flink's startup breakdown (`BashJavaUtils.logMasterConfiguration`).
    pub fn breakdown(&self) -> String {
        let rows: [(usize, &str, MemorySize); 6] = [
            (1, "Total Process Memory:", self.total_process()),
            (2, "Total Flink Memory:", self.flink.total_flink()),
            (3, "JVM Heap:", self.flink.heap),
            (3, "Off-heap:", self.flink.off_heap),
            (2, "JVM Metaspace:", self.metaspace),
            (2, "JVM Overhead:", self.overhead),
        ];
        super::format_breakdown("Final Master Memory configuration:", 24, &rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn derive(pairs: &[(&str, &str)]) -> Result<JobManagerMemory, MemoryError> {
        let config = pairs.iter().fold(Configuration::new(), |c, (k, v)| c.with(k, v));
        JobManagerMemory::from_config(&config)
    }

    #[test]
    fn shipped_1600m() {
        let m = derive(&[("jobmanager.memory.process.size", "1600m")]).unwrap();
        assert_eq!(m.overhead, MemorySize::mebibytes(192));
        assert_eq!(m.flink.total_flink(), MemorySize::mebibytes(1152));
        assert_eq!(m.flink.heap, MemorySize::mebibytes(1024));
        assert_eq!(m.flink.off_heap, MemorySize::mebibytes(128));
        assert!(m
            .breakdown()
            .contains("      JVM Heap:         1024.000mb (1073741824 bytes)\n"));
    }

    #[test]
    fn heap_only() {
        let m = derive(&[("jobmanager.memory.heap.size", "1g")]).unwrap();
        assert_eq!(m.flink.total_flink(), MemorySize::mebibytes(1152));
        assert_eq!(m.metaspace, MemorySize::mebibytes(256));
    }

    #[test]
    fn errors() {
        let e = derive(&[]).unwrap_err().to_string();
        assert!(e.starts_with("Either required fine-grained memory (jobmanager.memory.heap.size), or Total Flink Memory size (Key: 'jobmanager.memory.flink.size'"), "{e}");
        let e = derive(&[("jobmanager.memory.flink.size", "100m")])
            .unwrap_err()
            .to_string();
        assert_eq!(e, "The configured Total Flink Memory (100.000mb (104857600 bytes)) is less than the configured Off-heap Memory (128.000mb (134217728 bytes)).");
        // Flink 2.3: without an explicit off-heap size, it is what the total leaves (here 0).
        let m = derive(&[
            ("jobmanager.memory.flink.size", "1g"),
            ("jobmanager.memory.heap.size", "1g"),
        ])
        .unwrap();
        assert_eq!(m.flink.off_heap, MemorySize(0));
        let e = derive(&[
            ("jobmanager.memory.flink.size", "1g"),
            ("jobmanager.memory.heap.size", "2g"),
        ])
        .unwrap_err()
        .to_string();
        assert_eq!(e, "The configured JVM Heap Memory (2.000gb (2147483648 bytes)) exceeds the configured Total Flink Memory (1024.000mb (1073741824 bytes)). Please, make the configuration consistent or configure only one option: either JVM Heap or Total Flink Memory.");
        let e = derive(&[
            ("jobmanager.memory.flink.size", "1g"),
            ("jobmanager.memory.heap.size", "1g"),
            ("jobmanager.memory.off-heap.size", "128m"),
        ])
        .unwrap_err()
        .to_string();
        assert_eq!(e, "Sum of the configured JVM Heap Memory (1024.000mb (1073741824 bytes)) and the configured Off-heap Memory (128.000mb (134217728 bytes)) does not match the configured Total Flink Memory (1024.000mb (1073741824 bytes)). Please, make the configuration consistent or configure only one option: either JVM Heap or Total Flink Memory.");
    }
}
