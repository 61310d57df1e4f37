//! The taskmanager's memory pools as derived by Flink's model: sizes for registration and the
//! metrics Flink exposes for them. Segments of the network pool are counted here; the pool
//! itself hands them out lazily (so an idle taskmanager stays small).

use std::collections::HashMap;

use sluice_common::config::options::{
    NETWORK_BUFFERS_PER_CHANNEL, NETWORK_FLOATING_BUFFERS_PER_GATE, TASK_SLOTS, TM_SEGMENT_SIZE,
};
use sluice_common::config::{Configuration, MemorySize};
use sluice_common::memory::TaskManagerMemory;

/// Derived pools plus the network segment geometry.
#[derive(Debug, Clone)]
pub struct MemoryPools {
    pub memory: TaskManagerMemory,
    pub segment_size: MemorySize,
    /// `taskmanager.numberOfTaskSlots`: the pools' shares are per slot.
    pub slots: u32,
    /// `taskmanager.network.memory.buffers-per-channel` and `floating-buffers-per-gate`.
    pub buffers_per_channel: u32,
    pub floating_buffers_per_gate: u32,
}

impl MemoryPools {
    /// Derives the pools with Flink's rules; the error carries Flink's prefix and text.
    pub fn from_config(config: &Configuration) -> Result<MemoryPools, String> {
        let memory = TaskManagerMemory::from_config(config)
            .map_err(|e| format!("TaskManager memory configuration failed: {e}"))?;
        let segment_size = config.get(&TM_SEGMENT_SIZE)?;
        if segment_size.bytes() == 0 {
            return Err("taskmanager.memory.segment-size must be larger than 0 bytes".into());
        }
        Ok(MemoryPools {
            memory,
            segment_size,
            slots: config.get(&TASK_SLOTS)?.get(),
            buffers_per_channel: config.get(&NETWORK_BUFFERS_PER_CHANNEL)?.get(),
            floating_buffers_per_gate: config.get(&NETWORK_FLOATING_BUFFERS_PER_GATE)?.get(),
        })
    }

    /// What Sluice enforces beyond Flink's breakdown: each slot's share of task heap (heap
    /// state backend, window panes, operator buffers) and of managed memory (RocksDB), and what
    /// the network buffers allow. Printed after Flink's breakdown by `--print-memory`.
    pub fn sluice_breakdown(&self) -> String {
        let f = &self.memory.flink;
        let slots = u64::from(self.slots);
        let segments = self.total_network_segments();
        let per_slot = segments / slots;
        let bpc = u64::from(self.buffers_per_channel);
        // A subtask with one keyed input gate and one keyed output partition at parallelism p
        // needs p·bpc + 1 (gate) + p + 1 (partition) buffers: Flink's required minimums.
        let max_p = per_slot.saturating_sub(2) / (bpc + 1);
        let mut out = String::new();
        out.push_str(&format!(
            "Enforced by Sluice per slot (taskmanager.numberOfTaskSlots: {}):\n",
            self.slots
        ));
        out.push_str(&format!(
            "  Task heap per slot:            {}  (heap state backend, window panes, operator buffers)\n",
            MemorySize(f.task_heap.bytes() / slots).human()
        ));
        out.push_str(&format!(
            "  Managed memory per slot:       {}  (RocksDB block cache and write buffers)\n",
            MemorySize(f.managed.bytes() / slots).human()
        ));
        out.push_str(&format!(
            "  Network buffers:               {segments} of {} (taskmanager.memory.segment-size), {per_slot} per slot\n",
            self.segment_size.human()
        ));
        out.push_str(&format!(
            "    an input gate of n channels needs n x {bpc} (buffers-per-channel) + 1, an output partition of n subpartitions n + 1,\n    and a gate borrows up to {} floating buffers (floating-buffers-per-gate) when free:\n    every slot can run a keyed exchange (one input gate, one output partition) at parallelism up to {max_p}.\n",
            self.floating_buffers_per_gate
        ));
        out
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
        let text = pools.sluice_breakdown();
        assert!(
            text.contains("Task heap per slot:            384.000mb (402653174 bytes)"),
            "{text}"
        );
        assert!(
            text.contains("Managed memory per slot:       512.000mb (536870920 bytes)"),
            "{text}"
        );
        // (4096 - 2) / (2 + 1)
        assert!(text.contains("parallelism up to 1364."), "{text}");
        assert_eq!(pools.to_json()["taskmanager.memory.managed.size"], 536870920u64);
        let bad = Configuration::new();
        assert!(MemoryPools::from_config(&bad)
            .unwrap_err()
            .starts_with("TaskManager memory configuration failed: Either required"));
    }
}
