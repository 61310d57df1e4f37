//! The slots this taskmanager offers (`taskmanager.numberOfTaskSlots`) and how many are free.

use std::sync::atomic::{AtomicU32, Ordering};

use sluice_proto::control::SlotReport;

#[derive(Debug)]
pub(crate) struct SlotTable {
    total: u32,
    used: AtomicU32,
}

impl SlotTable {
    pub(crate) fn new(total: u32) -> Self {
        SlotTable {
            total,
            used: AtomicU32::new(0),
        }
    }

    pub(crate) fn total(&self) -> u32 {
        self.total
    }

    /// Marks `n` slots as used by a deployment.
    pub(crate) fn take(&self, n: u32) -> Result<(), String> {
        let mut used = self.used.load(Ordering::Acquire);
        loop {
            if used + n > self.total {
                return Err(format!(
                    "this taskmanager has {} free slots, the deployment needs {n}",
                    self.total - used.min(self.total)
                ));
            }
            match self
                .used
                .compare_exchange(used, used + n, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Ok(()),
                Err(now) => used = now,
            }
        }
    }

    pub(crate) fn give_back(&self, n: u32) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| Some(u.saturating_sub(n)));
    }

    pub(crate) fn report(&self) -> SlotReport {
        let used = self.used.load(Ordering::Relaxed).min(self.total);
        SlotReport {
            total: self.total,
            free: self.total - used,
        }
    }
}
