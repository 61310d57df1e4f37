//! The autoscaler's settings: Flink's `job.autoscaler.*` keys (also under the Kubernetes
//! operator's `kubernetes.operator.job.autoscaler.*` spellings) from the job's effective
//! configuration, so a job file's `config:` overrides the cluster's.

use std::time::Duration;

use sluice_common::config::options::*;
use sluice_common::config::Configuration;
#[cfg(test)]
use sluice_common::config::Origin;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AutoscalerSettings {
    pub metrics_window: Duration,
    pub stabilization: Duration,
    pub target_utilization: f64,
    pub boundary: f64,
    pub catch_up: Duration,
    pub restart_time: Duration,
    pub scale_up_max_factor: f64,
    pub scale_down_max_factor: f64,
    pub min_parallelism: u32,
    pub max_parallelism: u32,
    pub scale_down_interval: Duration,
    pub effectiveness_threshold: f64,
    pub effectiveness_detection: bool,
    pub taskmanager_command: Option<String>,
}

impl AutoscalerSettings {
    /// `None` when `job.autoscaler.enabled` is false; an error names a key whose value is out
    /// of range.
    pub(crate) fn from_config(c: &Configuration) -> Result<Option<AutoscalerSettings>, String> {
        let e = |e: sluice_common::config::ConfigError| e.to_string();
        if !c.get(&AUTOSCALER_ENABLED).map_err(e)? {
            return Ok(None);
        }
        let s = AutoscalerSettings {
            metrics_window: c.get(&AUTOSCALER_METRICS_WINDOW).map_err(e)?,
            stabilization: c.get(&AUTOSCALER_STABILIZATION_INTERVAL).map_err(e)?,
            target_utilization: f64::from(c.get(&AUTOSCALER_TARGET_UTILIZATION).map_err(e)?),
            boundary: f64::from(c.get(&AUTOSCALER_TARGET_UTILIZATION_BOUNDARY).map_err(e)?),
            catch_up: c.get(&AUTOSCALER_CATCH_UP_DURATION).map_err(e)?,
            restart_time: c.get(&AUTOSCALER_RESTART_TIME).map_err(e)?,
            scale_up_max_factor: f64::from(c.get(&AUTOSCALER_SCALE_UP_MAX_FACTOR).map_err(e)?),
            scale_down_max_factor: f64::from(c.get(&AUTOSCALER_SCALE_DOWN_MAX_FACTOR).map_err(e)?),
            min_parallelism: c.get(&AUTOSCALER_VERTEX_MIN_PARALLELISM).map_err(e)?.get(),
            max_parallelism: c.get(&AUTOSCALER_VERTEX_MAX_PARALLELISM).map_err(e)?.get(),
            scale_down_interval: c.get(&AUTOSCALER_SCALE_DOWN_INTERVAL).map_err(e)?,
            effectiveness_threshold: f64::from(c.get(&AUTOSCALER_EFFECTIVENESS_THRESHOLD).map_err(e)?),
            effectiveness_detection: c.get(&AUTOSCALER_EFFECTIVENESS_DETECTION).map_err(e)?,
            taskmanager_command: c.get_opt(&AUTOSCALER_TASKMANAGER_COMMAND).map_err(e)?,
        };
        let range = |key: &str, v: f64, lo: f64, hi: f64| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(format!("{key} must be between {lo} and {hi}, found {v}"))
            }
        };
        range(AUTOSCALER_TARGET_UTILIZATION.key, s.target_utilization, 0.01, 1.0)?;
        range(AUTOSCALER_TARGET_UTILIZATION_BOUNDARY.key, s.boundary, 0.0, 1.0)?;
        range(AUTOSCALER_SCALE_DOWN_MAX_FACTOR.key, s.scale_down_max_factor, 0.0, 1.0)?;
        range(AUTOSCALER_SCALE_UP_MAX_FACTOR.key, s.scale_up_max_factor, 0.0, f64::MAX)?;
        if s.min_parallelism > s.max_parallelism {
            return Err(format!(
                "{} ({}) must not exceed {} ({})",
                AUTOSCALER_VERTEX_MIN_PARALLELISM.key,
                s.min_parallelism,
                AUTOSCALER_VERTEX_MAX_PARALLELISM.key,
                s.max_parallelism
            ));
        }
        if s.metrics_window.is_zero() {
            return Err(format!("{} must be longer than 0", AUTOSCALER_METRICS_WINDOW.key));
        }
        Ok(Some(s))
    }
}

#[cfg(test)]
impl AutoscalerSettings {
    /// Flink's defaults with short times, for the decision tests.
    pub(crate) fn for_tests() -> AutoscalerSettings {
        let mut c = Configuration::default();
        c.set(AUTOSCALER_ENABLED.key, "true", Origin::Flag);
        AutoscalerSettings::from_config(&c).unwrap().unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flink_defaults_and_the_operator_spellings() {
        let mut c = Configuration::default();
        assert_eq!(AutoscalerSettings::from_config(&c).unwrap(), None);
        c.set("kubernetes.operator.job.autoscaler.enabled", "true", Origin::Flag);
        c.set(
            "kubernetes.operator.job.autoscaler.target.utilization",
            "0.5",
            Origin::Flag,
        );
        let s = AutoscalerSettings::from_config(&c).unwrap().unwrap();
        assert_eq!(s.target_utilization, 0.5);
        assert_eq!(s.metrics_window, Duration::from_secs(900));
        assert_eq!(s.stabilization, Duration::from_secs(300));
        assert_eq!((s.boundary * 10.0).round(), 3.0);
        assert_eq!(s.scale_down_interval, Duration::from_secs(3600));
        assert_eq!((s.min_parallelism, s.max_parallelism), (1, 200));
        c.set("job.autoscaler.target.utilization", "1.5", Origin::Flag);
        let e = AutoscalerSettings::from_config(&c).unwrap_err();
        assert!(e.contains("job.autoscaler.target.utilization must be between"), "{e}");
    }
}
