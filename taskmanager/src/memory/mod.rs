//! The taskmanager's memory pools as derived by Flink's model: sizes for registration and the
//! metrics Flink exposes for them. Segments of the network pool are counted here; the pool
//! itself hands them out lazily (so an idle taskmanager stays small).

use std::collections::HashMap;

use sluice_common::config::options::TM_SEGMENT_SIZE;
use sluice_common::config::{Configuration, MemorySize};
use sluice_common::memory::TaskManagerMemory;

/// Derived pools plus the network segment geometry.
#[derive(Debug, Clone)]
pub struct MemoryPools {
    pub memory: TaskManagerMemory,
    pub segment_size: MemorySize,
}

impl MemoryPools {
    /// Derives the pools with Flink's rules; the error carries Flink's prefix and text.
    pub fn from_config(config: &Configuration) -> Result<MemoryPools, String> {
        let memory = TaskManagerMemory::from_config(config)
            .map_err(|e| format!("TaskManager memory configuration failed: {e}"))?;
        let segment_size = config.get(&TM_SEGMENT_SIZE).map_err(|e| e.to_string())?;
        if segment_size.bytes() == 0 {
            return Err("taskmanager.memory.segment-size must be larger than 0 bytes".into());
        }
        Ok(MemoryPools { memory, segment_size })
    }

    /// Network memory / segment size, as Flink's `NetworkBufferPool` counts segments.
    pub fn total_network_segments(&self) -> u64 {
        self.memory.flink.network.bytes() / self.segment_size.bytes()
    }

    /// Framework + task heap: the heap budget of the process.
    pub fn heap_max(&self) -> u64 {
        self.memory.flink.heap().bytes()
    }

    /// Pool sizes by Flink option name, for registration and `--print-memory --format json`.
    pub fn by_option(&self) -> HashMap<String, u64> {
        self.memory
            .to_options()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    }

    /// The JSON object `--print-memory --format json` prints.
    pub fn to_json(&self) -> serde_json::Value {
        let map: serde_json::Map<String, serde_json::Value> = self
            .memory
            .to_options()
            .into_iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::from(v)))
            .collect();
        serde_json::Value::Object(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_config_segments() {
        let config = Configuration::new().with("taskmanager.memory.process.size", "1728m");
        let pools = MemoryPools::from_config(&config).unwrap();
        // 134217730 bytes of network / 32 KiB segments.
        assert_eq!(pools.total_network_segments(), 4096);
        assert_eq!(pools.to_json()["taskmanager.memory.managed.size"], 536870920u64);
        let bad = Configuration::new();
        assert!(MemoryPools::from_config(&bad)
            .unwrap_err()
            .starts_with("TaskManager memory configuration failed: Either required"));
    }
}
