//! Restart strategies (Flink's `restart-strategy.*`): whether a failed job restarts and after
//! how long. Default: exponential-delay when the job checkpoints, none otherwise.

use std::time::{Duration, Instant};

use sluice_common::config::options::*;
use sluice_common::config::Configuration;

#[derive(Debug, Clone)]
pub(crate) enum RestartStrategy {
    None,
    FixedDelay {
        attempts: u32,
        delay: Duration,
        used: u32,
    },
    FailureRate {
        max: u32,
        interval: Duration,
        delay: Duration,
        failures: Vec<Instant>,
    },
    ExponentialDelay {
        initial: Duration,
        max: Duration,
        multiplier: f64,
        reset_threshold: Duration,
        jitter: f64,
        attempts_before_reset: u32,
        current: Duration,
        attempts: u32,
        last_failure: Option<Instant>,
    },
}

fn cfg<T>(r: Result<T, sluice_common::config::ConfigError>) -> Result<T, String> {
    r.map_err(|e| e.to_string())
}

impl RestartStrategy {
    pub(crate) fn from_config(config: &Configuration, checkpointing: bool) -> Result<Self, String> {
        let kind = match cfg(config.get_opt(&RESTART_STRATEGY))? {
            Some(k) => k,
            None if checkpointing => RestartStrategyKind::ExponentialDelay,
            None => RestartStrategyKind::None,
        };
        Ok(match kind {
            RestartStrategyKind::None => RestartStrategy::None,
            RestartStrategyKind::FixedDelay => RestartStrategy::FixedDelay {
                attempts: cfg(config.get(&RESTART_FIXED_DELAY_ATTEMPTS))?,
                delay: cfg(config.get(&RESTART_FIXED_DELAY_DELAY))?,
                used: 0,
            },
            RestartStrategyKind::FailureRate => RestartStrategy::FailureRate {
                max: cfg(config.get(&RESTART_FAILURE_RATE_MAX))?,
                interval: cfg(config.get(&RESTART_FAILURE_RATE_INTERVAL))?,
                delay: cfg(config.get(&RESTART_FAILURE_RATE_DELAY))?,
                failures: Vec::new(),
            },
            RestartStrategyKind::ExponentialDelay => {
                let initial = cfg(config.get(&RESTART_EXP_INITIAL_BACKOFF))?;
                RestartStrategy::ExponentialDelay {
                    initial,
                    max: cfg(config.get(&RESTART_EXP_MAX_BACKOFF))?,
                    multiplier: f64::from(cfg(config.get(&RESTART_EXP_MULTIPLIER))?),
                    reset_threshold: cfg(config.get(&RESTART_EXP_RESET_THRESHOLD))?,
                    jitter: f64::from(cfg(config.get(&RESTART_EXP_JITTER))?),
                    attempts_before_reset: cfg(config.get(&RESTART_EXP_ATTEMPTS))?,
                    current: initial,
                    attempts: 0,
                    last_failure: None,
                }
            }
        })
    }

    /// A failure happened now: `Some(delay)` to restart after, `None` to give up.
    pub(crate) fn on_failure(&mut self, now: Instant) -> Option<Duration> {
        match self {
            RestartStrategy::None => None,
            RestartStrategy::FixedDelay { attempts, delay, used } => {
                if *used >= *attempts {
                    return None;
                }
                *used += 1;
                Some(*delay)
            }
            RestartStrategy::FailureRate {
                max,
                interval,
                delay,
                failures,
            } => {
                failures.retain(|t| now.duration_since(*t) < *interval);
                failures.push(now);
                (failures.len() as u32 <= *max).then_some(*delay)
            }
            RestartStrategy::ExponentialDelay {
                initial,
                max,
                multiplier,
                reset_threshold,
                jitter,
                attempts_before_reset,
                current,
                attempts,
                last_failure,
            } => {
                if last_failure.is_some_and(|t| now.duration_since(t) >= *reset_threshold) {
                    *current = *initial;
                    *attempts = 0;
                }
                if *attempts >= *attempts_before_reset {
                    return None;
                }
                *last_failure = Some(now);
                *attempts += 1;
                let base = *current;
                *current = Duration::from_secs_f64((base.as_secs_f64() * *multiplier).min(max.as_secs_f64()));
                // ± jitter, from the clock's sub-second noise (no RNG dependency needed).
                let noise = f64::from(now.elapsed().subsec_nanos() % 1000) / 1000.0 * 2.0 - 1.0;
                Some(Duration::from_secs_f64(
                    (base.as_secs_f64() * (1.0 + *jitter * noise)).max(0.0),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_checkpointing() {
        let c = Configuration::new();
        assert!(matches!(
            RestartStrategy::from_config(&c, false).unwrap(),
            RestartStrategy::None
        ));
        assert!(matches!(
            RestartStrategy::from_config(&c, true).unwrap(),
            RestartStrategy::ExponentialDelay { .. }
        ));
    }

    #[test]
    fn fixed_delay_gives_up_after_its_attempts() {
        let c = Configuration::new()
            .with("restart-strategy.type", "fixed-delay")
            .with("restart-strategy.fixed-delay.attempts", "2")
            .with("restart-strategy.fixed-delay.delay", "10 ms");
        let mut s = RestartStrategy::from_config(&c, false).unwrap();
        let now = Instant::now();
        assert_eq!(s.on_failure(now), Some(Duration::from_millis(10)));
        assert_eq!(s.on_failure(now), Some(Duration::from_millis(10)));
        assert_eq!(s.on_failure(now), None);
    }

    #[test]
    fn failure_rate_counts_within_the_interval() {
        let c = Configuration::new()
            .with("restart-strategy.type", "failure-rate")
            .with("restart-strategy.failure-rate.max-failures-per-interval", "2");
        let mut s = RestartStrategy::from_config(&c, false).unwrap();
        let now = Instant::now();
        assert!(s.on_failure(now).is_some());
        assert!(s.on_failure(now).is_some());
        assert!(s.on_failure(now).is_none());
    }

    #[test]
    fn exponential_backoff_grows_to_its_cap() {
        let c = Configuration::new()
            .with("restart-strategy.type", "exponential-delay")
            .with("restart-strategy.exponential-delay.jitter-factor", "0")
            .with("restart-strategy.exponential-delay.initial-backoff", "100 ms")
            .with("restart-strategy.exponential-delay.max-backoff", "200 ms")
            .with("restart-strategy.exponential-delay.backoff-multiplier", "2");
        let mut s = RestartStrategy::from_config(&c, true).unwrap();
        let now = Instant::now();
        let d: Vec<u128> = (0..3).map(|_| s.on_failure(now).unwrap().as_millis()).collect();
        assert_eq!(d, vec![100, 200, 200]);
    }
}
