//! The slots this taskmanager offers (`taskmanager.numberOfTaskSlots`) and how many are free.

use std::sync::atomic::{AtomicU32, Ordering};

use sluice_proto::control::SlotReport;

#[derive(Debug)]
pub struct SlotTable {
    total: u32,
    used: AtomicU32,
}

impl SlotTable {
    pub fn new(total: u32) -> Self {
        SlotTable {
            total,
            used: AtomicU32::new(0),
        }
    }

    pub fn total(&self) -> u32 {
        self.total
    }

    pub fn report(&self) -> SlotReport {
        let used = self.used.load(Ordering::Relaxed).min(self.total);
        SlotReport {
            total: self.total,
            free: self.total - used,
        }
    }
}
