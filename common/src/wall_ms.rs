//! The wall clock in milliseconds since the Unix epoch, as Sluice's timestamps hold it (event
//! times, processing-time timers, TTL deadlines, heartbeat stamps). A clock before 1970 reads 0.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 for a clock set before it).
pub fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_a_time_after_2020() {
        assert!(super::wall_ms() > 1_577_836_800_000);
    }
}
