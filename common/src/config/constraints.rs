//! Value rules beyond an option's type, with Flink's wording: a power-of-two segment size, a
//! positive heartbeat interval below the timeout, checkpoint interval and timeout of at least
//! 10 ms. Daemons refuse them at start (through `Configuration::validate`); a job's
//! `config:` overrides are checked at submission.

use std::time::Duration;

use super::configuration::{ConfigError, Configuration, Origin};
use super::options::*;

/// Flink's `MINIMAL_CHECKPOINT_TIME`.
const MINIMAL_CHECKPOINT_TIME: Duration = Duration::from_millis(10);

impl Configuration {
    /// The first rule the effective values break, as an error naming the key and its value.
    pub fn check_constraints(&self) -> Result<(), ConfigError> {
        let segment = self.get(&TM_SEGMENT_SIZE)?;
        if !segment.bytes().is_power_of_two() {
            return Err(self.broken(
                &TM_SEGMENT_SIZE,
                "Memory segment size must be a power of 2",
                "a power of 2, e.g. 32 kb",
            ));
        }
        let interval = self.get(&HEARTBEAT_INTERVAL)?;
        if interval.is_zero() {
            return Err(self.broken(
                &HEARTBEAT_INTERVAL,
                "The heartbeat interval must be larger than 0",
                "a positive duration, e.g. 10 s",
            ));
        }
        if self.get(&HEARTBEAT_TIMEOUT)? < interval {
            return Err(self.broken(
                &HEARTBEAT_TIMEOUT,
                "The heartbeat timeout should be larger or equal than the heartbeat interval",
                "a duration of at least heartbeat.interval",
            ));
        }
        if self.get(&CHECKPOINT_TIMEOUT)? < MINIMAL_CHECKPOINT_TIME {
            return Err(self.broken(
                &CHECKPOINT_TIMEOUT,
                "Checkpoint timeout must be larger than or equal to 10 ms",
                "a duration of at least 10 ms",
            ));
        }
        if self
            .get_opt(&CHECKPOINT_INTERVAL)?
            .is_some_and(|i| i < MINIMAL_CHECKPOINT_TIME)
        {
            return Err(self.broken(
                &CHECKPOINT_INTERVAL,
                "Checkpoint interval must be larger than or equal to 10 ms",
                "a duration of at least 10 ms",
            ));
        }
        Ok(())
    }

    /// The error for the option's effective value (its origin when set, else the program default).
    fn broken<T>(&self, option: &ConfigOption<T>, reason: &str, expected: &'static str) -> ConfigError {
        let (key, value, origin) = match self.explicit(option) {
            Some((key, e)) => (key.to_string(), e.value.clone(), e.origin.clone()),
            None => (
                option.key.to_string(),
                option.default.unwrap_or_default().to_string(),
                Origin::Program,
            ),
        };
        ConfigError::InvalidValue {
            key,
            value,
            origin,
            reason: reason.to_string(),
            expected,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(key: &str, value: &str) -> String {
        Configuration::new()
            .with(key, value)
            .check_constraints()
            .expect_err(key)
            .to_string()
    }

    #[test]
    fn flink_rules_refuse_values_that_parse() {
        assert!(Configuration::new().check_constraints().is_ok(), "defaults pass");
        let e = refused("taskmanager.memory.segment-size", "3kb");
        assert!(
            e.contains("taskmanager.memory.segment-size") && e.contains("power of 2"),
            "{e}"
        );
        let e = refused("heartbeat.interval", "0 ms");
        assert!(e.contains("heartbeat.interval") && e.contains("larger than 0"), "{e}");
        let e = refused("heartbeat.timeout", "5 s");
        assert!(e.contains("heartbeat.timeout"), "{e}");
        let e = refused("execution.checkpointing.timeout", "0 s");
        assert!(
            e.contains("execution.checkpointing.timeout") && e.contains("10 ms"),
            "{e}"
        );
        let e = refused("execution.checkpointing.interval", "1 ms");
        assert!(e.contains("execution.checkpointing.interval"), "{e}");
    }
}
