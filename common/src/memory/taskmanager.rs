//! The taskmanager's Flink memory (`TaskExecutorFlinkMemoryUtils`): framework and task heap,
//! framework and task off-heap, managed memory and network memory, derived with Flink's
//! precedence, fractions and error texts.

use crate::config::options::*;
use crate::config::{Configuration, MemorySize};

use super::fraction::RangeFraction;
use super::process::{FlinkMemory, ProcessMemoryOptions, ProcessMemorySpec};
use super::{read_size, MemoryError};

/// The taskmanager's fully derived memory configuration.
pub type TaskManagerMemory = ProcessMemorySpec<TaskExecutorFlinkMemory>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskExecutorFlinkMemory {
    pub framework_heap: MemorySize,
    pub framework_off_heap: MemorySize,
    pub task_heap: MemorySize,
    pub task_off_heap: MemorySize,
    pub network: MemorySize,
    pub managed: MemorySize,
}

impl TaskExecutorFlinkMemory {
    /// Framework + task heap (Flink's JVM heap; in Sluice, the Rust heap budget).
    pub fn heap(&self) -> MemorySize {
        MemorySize(self.framework_heap.0 + self.task_heap.0)
    }

    /// Framework off-heap + task off-heap + network (Flink's JVM direct memory).
    pub fn direct(&self) -> MemorySize {
        MemorySize(self.framework_off_heap.0 + self.task_off_heap.0 + self.network.0)
    }
}

struct Common {
    framework_heap: MemorySize,
    framework_off_heap: MemorySize,
    task_off_heap: MemorySize,
}

fn common(config: &Configuration) -> Result<Common, MemoryError> {
    Ok(Common {
        framework_heap: read_size(config, &TM_FRAMEWORK_HEAP)?,
        framework_off_heap: read_size(config, &TM_FRAMEWORK_OFF_HEAP)?,
        task_off_heap: read_size(config, &TM_TASK_OFF_HEAP)?,
    })
}

fn network_range(config: &Configuration) -> Result<RangeFraction, MemoryError> {
    RangeFraction::from_config(
        config,
        read_size(config, &TM_NETWORK_MIN)?,
        read_size(config, &TM_NETWORK_MAX)?,
        &TM_NETWORK_FRACTION,
    )
}

fn managed(config: &Configuration, total_flink: MemorySize) -> Result<MemorySize, MemoryError> {
    if config.contains(&TM_MANAGED_SIZE) {
        return read_size(config, &TM_MANAGED_SIZE);
    }
    let range = RangeFraction::from_config(config, MemorySize::ZERO, MemorySize::MAX, &TM_MANAGED_FRACTION)?;
    Ok(range.derive("managed memory", total_flink))
}

fn exceeds_without_network(c: &Common, task_heap: MemorySize, managed: MemorySize, total: MemorySize) -> MemoryError {
    MemoryError::new(format!(
        "Sum of configured Framework Heap Memory ({}), Framework Off-Heap Memory ({}), Task Heap Memory ({}), Task Off-Heap Memory ({}) and Managed Memory ({}) exceed configured Total Flink Memory ({}).",
        c.framework_heap.human(),
        c.framework_off_heap.human(),
        task_heap.human(),
        c.task_off_heap.human(),
        managed.human(),
        total.human()
    ))
}

/// Network = total Flink − everything else, which must then lie in the network range.
fn network_as_rest(
    config: &Configuration,
    c: &Common,
    task_heap: MemorySize,
    managed: MemorySize,
    total: MemorySize,
) -> Result<MemorySize, MemoryError> {
    let rest = c.framework_heap.0 + c.framework_off_heap.0 + task_heap.0 + c.task_off_heap.0 + managed.0;
    if rest > total.0 {
        return Err(exceeds_without_network(c, task_heap, managed, total));
    }
    let network = MemorySize(total.0 - rest);
    let range = network_range(config)?;
    if !range.contains(network) {
        return Err(MemoryError::new(format!(
            "If Total Flink, Task Heap and (or) Managed Memory sizes are explicitly configured then the Network Memory size is the rest of the Total Flink memory after subtracting all other configured types of memory, but the derived Network Memory is inconsistent with its configuration.\nCaused by: Derived Network Memory size ({}) is not in configured Network Memory range [{}, {}].",
            network.human(),
            range.min.human(),
            range.max.human()
        )));
    }
    if config.contains(&TM_NETWORK_FRACTION) && network != total.multiply(range.fraction) {
        tracing::info!(
            "The derived Network Memory size ({}) does not match the configured Network Memory fraction ({}) from the configured Total Flink Memory size ({}). The derived Network Memory size will be used.",
            network.human(),
            range.fraction,
            total.human()
        );
    }
    Ok(network)
}

fn sanity_check_total_flink(config: &Configuration, m: &TaskExecutorFlinkMemory) -> Result<(), MemoryError> {
    if !config.contains(&TM_FLINK_SIZE) {
        return Ok(());
    }
    let configured = read_size(config, &TM_FLINK_SIZE)?;
    if configured == m.total_flink() {
        return Ok(());
    }
    Err(MemoryError::new(format!(
        "Configured and Derived Flink internal memory sizes (total {}) do not add up to the configured Total Flink Memory size ({}). Configured and Derived Flink internal memory sizes are: Framework Heap Memory ({}), Framework Off-Heap Memory ({}), Task Heap Memory ({}), Task Off-Heap Memory ({}), Network Memory ({}), Managed Memory ({}).",
        m.total_flink().human(),
        configured.human(),
        m.framework_heap.human(),
        m.framework_off_heap.human(),
        m.task_heap.human(),
        m.task_off_heap.human(),
        m.network.human(),
        m.managed.human()
    )))
}

/// The derived components, checked against a configured total Flink memory.
fn assemble(
    config: &Configuration,
    c: &Common,
    task_heap: MemorySize,
    network: MemorySize,
    managed: MemorySize,
) -> Result<TaskExecutorFlinkMemory, MemoryError> {
    let m = TaskExecutorFlinkMemory {
        framework_heap: c.framework_heap,
        framework_off_heap: c.framework_off_heap,
        task_heap,
        task_off_heap: c.task_off_heap,
        network,
        managed,
    };
    sanity_check_total_flink(config, &m)?;
    Ok(m)
}

impl FlinkMemory for TaskExecutorFlinkMemory {
    const OPTIONS: ProcessMemoryOptions = ProcessMemoryOptions {
        required_fine_grained: &[&TM_TASK_HEAP, &TM_MANAGED_SIZE],
        total_flink: &TM_FLINK_SIZE,
        total_process: &TM_PROCESS_SIZE,
        metaspace: &TM_JVM_METASPACE,
        overhead_min: &TM_JVM_OVERHEAD_MIN,
        overhead_max: &TM_JVM_OVERHEAD_MAX,
        overhead_fraction: &TM_JVM_OVERHEAD_FRACTION,
    };

    fn derive_from_fine_grained(config: &Configuration) -> Result<Self, MemoryError> {
        let task_heap = read_size(config, &TM_TASK_HEAP)?;
        let managed = read_size(config, &TM_MANAGED_SIZE)?;
        let c = common(config)?;
        let network = if config.contains(&TM_FLINK_SIZE) {
            let total = read_size(config, &TM_FLINK_SIZE)?;
            network_as_rest(config, &c, task_heap, managed, total)?
        } else {
            let rest =
                MemorySize(c.framework_heap.0 + c.framework_off_heap.0 + task_heap.0 + c.task_off_heap.0 + managed.0);
            network_range(config)?.derive_inverse("network memory", rest)
        };
        assemble(config, &c, task_heap, network, managed)
    }

    fn derive_from_total_flink(config: &Configuration, total: MemorySize) -> Result<Self, MemoryError> {
        let c = common(config)?;
        let managed = managed(config, total)?;
        let (task_heap, network) = if config.contains(&TM_TASK_HEAP) {
            let task_heap = read_size(config, &TM_TASK_HEAP)?;
            (task_heap, network_as_rest(config, &c, task_heap, managed, total)?)
        } else {
            let network = network_range(config)?.derive("network memory", total);
            let rest = c.framework_heap.0 + c.framework_off_heap.0 + c.task_off_heap.0 + managed.0 + network.0;
            if rest > total.0 {
                return Err(MemoryError::new(format!(
                    "Sum of configured Framework Heap Memory ({}), Framework Off-Heap Memory ({}), Task Off-Heap Memory ({}), Managed Memory ({}) and Network Memory ({}) exceed configured Total Flink Memory ({}).",
                    c.framework_heap.human(),
                    c.framework_off_heap.human(),
                    c.task_off_heap.human(),
                    managed.human(),
                    network.human(),
                    total.human()
                )));
            }
            (MemorySize(total.0 - rest), network)
        };
        assemble(config, &c, task_heap, network, managed)
    }

    fn total_flink(&self) -> MemorySize {
        MemorySize(
            self.framework_heap.0
                + self.framework_off_heap.0
                + self.task_heap.0
                + self.task_off_heap.0
                + self.network.0
                + self.managed.0,
        )
    }
}

impl TaskManagerMemory {
    /// The derived sizes under Flink's option names, as Flink's `BashJavaUtils` hands them to
    /// the TaskExecutor (`network.min` = `network.max` = the derived network size).
    pub fn to_options(&self) -> Vec<(&'static str, u64)> {
        let f = &self.flink;
        vec![
            (TM_FRAMEWORK_HEAP.key, f.framework_heap.0),
            (TM_TASK_HEAP.key, f.task_heap.0),
            (TM_MANAGED_SIZE.key, f.managed.0),
            (TM_NETWORK_MIN.key, f.network.0),
            (TM_NETWORK_MAX.key, f.network.0),
            (TM_FRAMEWORK_OFF_HEAP.key, f.framework_off_heap.0),
            (TM_TASK_OFF_HEAP.key, f.task_off_heap.0),
            (TM_JVM_METASPACE.key, self.metaspace.0),
            (TM_JVM_OVERHEAD_MIN.key, self.overhead.0),
            (TM_JVM_OVERHEAD_MAX.key, self.overhead.0),
            (TM_FLINK_SIZE.key, f.total_flink().0),
            (TM_PROCESS_SIZE.key, self.total_process().0),
        ]
    }

    /// Flink's startup breakdown (`BashJavaUtils.logTaskExecutorConfiguration`).
    pub fn breakdown(&self) -> String {
        let f = &self.flink;
        let rows: [(usize, &str, MemorySize); 13] = [
            (1, "Total Process Memory:", self.total_process()),
            (2, "Total Flink Memory:", f.total_flink()),
            (3, "Total JVM Heap Memory:", f.heap()),
            (4, "Framework:", f.framework_heap),
            (4, "Task:", f.task_heap),
            (3, "Total Off-heap Memory:", MemorySize(f.managed.0 + f.direct().0)),
            (4, "Managed:", f.managed),
            (4, "Total JVM Direct Memory:", f.direct()),
            (5, "Framework:", f.framework_off_heap),
            (5, "Task:", f.task_off_heap),
            (5, "Network:", f.network),
            (2, "JVM Metaspace:", self.metaspace),
            (2, "JVM Overhead:", self.overhead),
        ];
        super::format_breakdown("Final TaskExecutor Memory configuration:", 33, &rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn derive(pairs: &[(&str, &str)]) -> Result<TaskManagerMemory, MemoryError> {
        let config = pairs.iter().fold(Configuration::new(), |c, (k, v)| c.with(k, v));
        TaskManagerMemory::from_config(&config)
    }

    const MB: f64 = 1048576.0;

    fn mb(size: MemorySize) -> f64 {
        size.0 as f64 / MB
    }

    #[test]
    fn flink_worked_example_process_1728m_to_the_byte() {
        let m = derive(&[("taskmanager.memory.process.size", "1728m")]).unwrap();
        // Byte values from Flink's own startup log for this configuration.
        assert_eq!(m.total_process().0, 1811939328);
        assert_eq!(m.flink.total_flink().0, 1342177280);
        assert_eq!(m.flink.heap().0, 536870902);
        assert_eq!(m.flink.task_heap.0, 402653174);
        assert_eq!(m.flink.managed.0, 536870920);
        assert_eq!(m.flink.network.0, 134217730);
        assert_eq!(m.flink.direct().0, 268435458);
        assert_eq!(m.metaspace.0, 268435456);
        assert_eq!(m.overhead.0, 201326592);
        assert_eq!(mb(m.flink.total_flink()), 1280.0);
        assert_eq!(mb(m.overhead), 192.0);
    }

    #[test]
    fn flink_worked_example_process_2g() {
        let m = derive(&[("taskmanager.memory.process.size", "2g")]).unwrap();
        let close = |got: MemorySize, want_mb: f64| (mb(got) - want_mb).abs() < 0.001;
        assert!(close(m.overhead, 204.8), "{}", mb(m.overhead));
        assert!(close(m.flink.total_flink(), 1587.2), "{}", mb(m.flink.total_flink()));
        assert!(close(m.flink.managed, 634.88), "{}", mb(m.flink.managed));
        assert!(close(m.flink.network, 158.72), "{}", mb(m.flink.network));
        assert!(close(m.flink.task_heap, 537.6), "{}", mb(m.flink.task_heap));
        assert!(close(m.flink.heap(), 665.6));
        assert!(close(m.flink.direct(), 286.72));
        assert_eq!(m.total_process().0, 2 << 30);
    }

    #[test]
    fn breakdown_matches_flink_log_layout() {
        let m = derive(&[("taskmanager.memory.process.size", "1728m")]).unwrap();
        let want = "Final TaskExecutor Memory configuration:
  Total Process Memory:          1.688gb (1811939328 bytes)
    Total Flink Memory:          1.250gb (1342177280 bytes)
      Total JVM Heap Memory:     512.000mb (536870902 bytes)
        Framework:               128.000mb (134217728 bytes)
        Task:                    384.000mb (402653174 bytes)
      Total Off-heap Memory:     768.000mb (805306378 bytes)
        Managed:                 512.000mb (536870920 bytes)
        Total JVM Direct Memory: 256.000mb (268435458 bytes)
          Framework:             128.000mb (134217728 bytes)
          Task:                  0 bytes
          Network:               128.000mb (134217730 bytes)
    JVM Metaspace:               256.000mb (268435456 bytes)
    JVM Overhead:                192.000mb (201326592 bytes)
";
        assert_eq!(m.breakdown(), want);
    }

    #[test]
    fn total_flink_size_drives_when_set() {
        let m = derive(&[("taskmanager.memory.flink.size", "1280m")]).unwrap();
        assert_eq!(m.flink.task_heap.0, 402653174);
        // overhead = inverse fraction of flink + metaspace = 1536m × 0.1/0.9 = 170.67m → min 192m.
        assert_eq!(m.overhead, MemorySize::mebibytes(192));
    }

    #[test]
    fn fine_grained_derives_network_by_inverse_fraction() {
        let m = derive(&[
            ("taskmanager.memory.task.heap.size", "512m"),
            ("taskmanager.memory.managed.size", "512m"),
        ])
        .unwrap();
        // rest = 128 + 128 + 512 + 0 + 512 = 1280m; network = 1280m × f/(1−f) ≈ 142.2m.
        let n = mb(m.flink.network);
        assert!((n - 142.222).abs() < 0.01, "{n}");
        assert_eq!(m.flink.task_heap, MemorySize::mebibytes(512));
    }

    #[test]
    fn error_when_nothing_is_configured() {
        let e = derive(&[]).unwrap_err().to_string();
        assert_eq!(
            e,
            "Either required fine-grained memory (taskmanager.memory.task.heap.size and taskmanager.memory.managed.size), or Total Flink Memory size (Key: 'taskmanager.memory.flink.size' , default: null (fallback keys: [])), or Total Process Memory size (Key: 'taskmanager.memory.process.size' , default: null (fallback keys: [])) need to be configured explicitly."
        );
    }

    #[test]
    fn error_when_components_exceed_total_flink_without_task_heap() {
        let e = derive(&[
            ("taskmanager.memory.flink.size", "400m"),
            ("taskmanager.memory.managed.size", "300m"),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("Sum of configured Framework Heap Memory (128.000mb (134217728 bytes)), Framework Off-Heap Memory (128.000mb (134217728 bytes)), Task Off-Heap Memory (0 bytes), Managed Memory (300.000mb (314572800 bytes)) and Network Memory (64.000mb (67108864 bytes)) exceed configured Total Flink Memory (400.000mb (419430400 bytes))."), "{e}");
    }

    #[test]
    fn error_when_components_exceed_total_flink_with_task_heap() {
        let e = derive(&[
            ("taskmanager.memory.flink.size", "1g"),
            ("taskmanager.memory.task.heap.size", "900m"),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("Sum of configured Framework Heap Memory (128.000mb (134217728 bytes)), Framework Off-Heap Memory (128.000mb (134217728 bytes)), Task Heap Memory (900.000mb (943718400 bytes)), Task Off-Heap Memory (0 bytes) and Managed Memory ("), "{e}");
        assert!(
            e.ends_with("exceed configured Total Flink Memory (1024.000mb (1073741824 bytes))."),
            "{e}"
        );
    }

    #[test]
    fn error_when_network_rest_is_outside_its_range() {
        let e = derive(&[
            ("taskmanager.memory.flink.size", "1g"),
            ("taskmanager.memory.task.heap.size", "300m"),
            ("taskmanager.memory.managed.size", "100m"),
            ("taskmanager.memory.network.max", "128m"),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("If Total Flink, Task Heap and (or) Managed Memory sizes are explicitly configured then the Network Memory size is the rest of the Total Flink memory after subtracting all other configured types of memory, but the derived Network Memory is inconsistent with its configuration."), "{e}");
        assert!(e.contains("Derived Network Memory size (368.000mb (385875968 bytes)) is not in configured Network Memory range [64.000mb (67108864 bytes), 128.000mb (134217728 bytes)]."), "{e}");
    }

    #[test]
    fn error_when_metaspace_and_overhead_exceed_process() {
        let e = derive(&[("taskmanager.memory.process.size", "400m")])
            .unwrap_err()
            .to_string();
        assert_eq!(e, "Sum of configured JVM Metaspace (256.000mb (268435456 bytes)) and JVM Overhead (192.000mb (201326592 bytes)) exceed configured Total Process Memory (400.000mb (419430400 bytes)).");
    }

    #[test]
    fn error_when_process_is_below_derived_flink_and_metaspace() {
        // Flink 2.3's text, verbatim (the double space before the last parenthesis included).
        let e = derive(&[
            ("taskmanager.memory.process.size", "8g"),
            ("taskmanager.memory.task.heap.size", "8g"),
            ("taskmanager.memory.managed.size", "2g"),
        ])
        .unwrap_err()
        .to_string();
        assert_eq!(e, "The configured Total Process Memory size (8.000gb (8589934592 bytes)) is less than the sum of the derived Total Flink Memory size (11.389gb (12228726349 bytes)) and the configured or default JVM Metaspace size  (256.000mb (268435456 bytes)).");
    }

    #[test]
    fn error_when_derived_overhead_is_outside_its_range() {
        let e = derive(&[
            ("taskmanager.memory.process.size", "3g"),
            ("taskmanager.memory.flink.size", "1g"),
        ])
        .unwrap_err()
        .to_string();
        assert_eq!(e, "Derived JVM Overhead size (1.750gb (1879048192 bytes)) is not in configured JVM Overhead range [192.000mb (201326592 bytes), 1024.000mb (1073741824 bytes)].");
    }

    #[test]
    fn error_for_inconsistent_fraction_range() {
        let e = derive(&[
            ("taskmanager.memory.process.size", "1728m"),
            ("taskmanager.memory.network.min", "256m"),
            ("taskmanager.memory.network.max", "128m"),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("Inconsistently configured Key: 'taskmanager.memory.network.fraction' , default: 0.1 (fallback keys: [{key=taskmanager.network.memory.fraction, isDeprecated=true}]) (0.10000000149011612) and its min (256.000mb (268435456 bytes)), max (128.000mb (134217728 bytes)) value"), "{e}");
        let e = derive(&[
            ("taskmanager.memory.process.size", "1728m"),
            ("taskmanager.memory.managed.fraction", "1.5"),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("taskmanager.memory.managed.fraction' , default: 0.4 (fallback keys: []) (1.5)"),
            "{e}"
        );
    }

    #[test]
    fn error_for_unreadable_size() {
        let e = derive(&[("taskmanager.memory.process.size", "big")])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("Cannot read memory size from config option 'taskmanager.memory.process.size'."),
            "{e}"
        );
    }

    #[test]
    fn options_json_keys() {
        let m = derive(&[("taskmanager.memory.process.size", "1728m")]).unwrap();
        let opts = m.to_options();
        assert!(opts.contains(&("taskmanager.memory.network.min", 134217730)));
        assert!(opts.contains(&("taskmanager.memory.network.max", 134217730)));
        assert!(opts.contains(&("taskmanager.memory.process.size", 1811939328)));
        assert_eq!(opts.len(), 12);
    }
}
