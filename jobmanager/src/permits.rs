//! Permits of resources connectors share across the subtasks of a job attempt on every
//! taskmanager (`AcquirePermit` / `ReleasePermit`): a sink's database connections under
//! `connection.pool.max-size`. A pool is per job attempt (job id, epoch): a new attempt's first
//! request drops the pools of the job's other attempts (their tasks are gone, and with them
//! their connections).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

#[derive(Default)]
pub(crate) struct PermitTable {
    /// (job id, epoch, pool) → holders.
    pools: Mutex<HashMap<(String, u64, String), HashSet<String>>>,
}

impl PermitTable {
    /// Grants `holder` a permit of `pool` when it holds one already or fewer than `max` are
    /// held.
    pub(crate) fn acquire(&self, job: &str, epoch: u64, pool: &str, max: u32, holder: &str) -> bool {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        pools.retain(|(j, e, _), _| j != job || *e == epoch);
        let holders = pools.entry((job.to_string(), epoch, pool.to_string())).or_default();
        if holders.contains(holder) {
            return true;
        }
        if holders.len() < max.max(1) as usize {
            holders.insert(holder.to_string());
            return true;
        }
        false
    }

    pub(crate) fn release(&self, job: &str, epoch: u64, pool: &str, holder: &str) {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(holders) = pools.get_mut(&(job.to_string(), epoch, pool.to_string())) {
            holders.remove(holder);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_max_holders_and_a_new_attempt_starts_afresh() {
        let t = PermitTable::default();
        assert!(t.acquire("j", 1, "db", 2, "a"));
        assert!(t.acquire("j", 1, "db", 2, "b"));
        assert!(!t.acquire("j", 1, "db", 2, "c"));
        assert!(
            t.acquire("j", 1, "db", 2, "a"),
            "a holder asking again keeps its permit"
        );
        t.release("j", 1, "db", "a");
        assert!(t.acquire("j", 1, "db", 2, "c"));
        assert!(t.acquire("other", 1, "db", 1, "x"), "pools are per job");
        assert!(
            t.acquire("j", 2, "db", 1, "a"),
            "attempt 2 does not see attempt 1's holders"
        );
        assert!(!t.acquire("j", 2, "db", 1, "b"));
    }
}
