//! A datagen rate that follows a schedule: `rows-per-second: "1000 for 2 min, then 3000"`
//! (a plain number is a constant rate; 0 = unlimited). The schedule runs in the source's own
//! time, which a reader derives from the rows its splits produced, so a restored or rescaled
//! job resumes the schedule where it stood instead of starting it over. Rows that were due but
//! not produced yet are the generator's backlog (`pendingRecords`), the arrival rate an
//! autoscaler sees when the job cannot keep up.

use std::time::Duration;

/// Steps of (rows per second, how long); the last step has no end.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RateSchedule {
    steps: Vec<(f64, Option<f64>)>,
}

impl RateSchedule {
    pub(crate) fn constant(rate: f64) -> RateSchedule {
        RateSchedule {
            steps: vec![(rate, None)],
        }
    }

    /// Reads `300`, `300 for 40 s, then 900 for 1 min, then 300`.
    pub(crate) fn parse(text: &str) -> Result<RateSchedule, String> {
        let parts: Vec<&str> = text.split(',').map(str::trim).collect();
        let mut steps = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let part = if i > 0 {
                part.strip_prefix("then")
                    .map(str::trim)
                    .ok_or_else(|| format!("expected 'then <rate> [for <duration>]' after a comma, found '{part}'"))?
            } else {
                part
            };
            let (rate, length) = match part.split_once(" for ") {
                Some((rate, length)) => (rate.trim(), Some(length.trim())),
                None => (part, None),
            };
            let rate: f64 = rate
                .parse()
                .ok()
                .filter(|r: &f64| r.is_finite() && *r >= 0.0)
                .ok_or_else(|| format!("'{rate}' is not a rate (a number of rows per second, 0 or more)"))?;
            let length = match length {
                Some(l) => {
                    let d = sluice_common::config::parse_duration(l).map_err(|e| format!("step '{part}': {e}"))?;
                    if d.is_zero() {
                        return Err(format!("step '{part}' lasts no time"));
                    }
                    Some(d.as_secs_f64())
                }
                None if i + 1 < parts.len() => {
                    return Err(format!(
                        "step '{part}' needs 'for <duration>': only the last step runs on"
                    ))
                }
                None => None,
            };
            if rate == 0.0 && parts.len() > 1 {
                return Err("a schedule's rates must be above 0 (0 means unlimited, for a constant rate only)".into());
            }
            steps.push((rate, length));
        }
        Ok(RateSchedule { steps })
    }

    /// No limit (a constant 0).
    pub(crate) fn unlimited(&self) -> bool {
        self.steps.len() == 1 && self.steps[0].0 == 0.0
    }

    /// Rows due by `t` seconds into the schedule (the last step runs on; a step with an end
    /// past its last one keeps its rate).
    pub(crate) fn rows_by(&self, t: f64) -> f64 {
        let (mut rows, mut start) = (0.0, 0.0);
        for (rate, length) in &self.steps {
            match length {
                Some(l) if t > start + l => {
                    rows += rate * l;
                    start += l;
                }
                _ => return rows + rate * (t - start).max(0.0),
            }
        }
        let last = self.steps.last().map_or(0.0, |s| s.0);
        rows + last * (t - start).max(0.0)
    }

    /// The schedule time at which `rows` rows are due (the inverse of `rows_by`).
    pub(crate) fn time_of(&self, rows: f64) -> f64 {
        let (mut left, mut start) = (rows.max(0.0), 0.0);
        for (rate, length) in &self.steps {
            match length {
                Some(l) if left > rate * l => {
                    left -= rate * l;
                    start += l;
                }
                _ => return start + if *rate > 0.0 { left / rate } else { 0.0 },
            }
        }
        let last = self.steps.last().map_or(0.0, |s| s.0);
        start + if last > 0.0 { left / last } else { 0.0 }
    }

    /// The rate at `t` seconds into the schedule.
    pub(crate) fn rate_at(&self, t: f64) -> f64 {
        let mut start = 0.0;
        for (rate, length) in &self.steps {
            match length {
                Some(l) if t >= start + l => start += l,
                _ => return *rate,
            }
        }
        self.steps.last().map_or(0.0, |s| s.0)
    }

    /// How long until `rows` rows are due, from `t` (for a reader waiting for its next row).
    pub(crate) fn wait_for(&self, rows: f64, t: f64) -> Duration {
        Duration::from_secs_f64((self.time_of(rows) - t).clamp(0.001, 0.1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_accumulate_and_invert() {
        let s = RateSchedule::parse("100 for 10 s, then 300 for 1 min, then 50").unwrap();
        assert_eq!(s.rows_by(5.0), 500.0);
        assert_eq!(s.rows_by(10.0), 1000.0);
        assert_eq!(s.rows_by(20.0), 4000.0);
        assert_eq!(s.rows_by(80.0), 1000.0 + 18000.0 + 500.0);
        for t in [0.0, 3.0, 10.0, 15.5, 70.0, 90.0] {
            assert!((s.time_of(s.rows_by(t)) - t).abs() < 1e-9, "t = {t}");
        }
        assert_eq!(
            (s.rate_at(9.0), s.rate_at(10.0), s.rate_at(100.0)),
            (100.0, 300.0, 50.0)
        );
        assert!(!s.unlimited());
        assert!(RateSchedule::parse("0").unwrap().unlimited());
        assert_eq!(RateSchedule::parse("250").unwrap(), RateSchedule::constant(250.0));
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        let e = |t: &str| RateSchedule::parse(t).unwrap_err();
        assert!(e("fast").contains("'fast' is not a rate"));
        assert!(e("100, then 200").contains("needs 'for <duration>'"));
        assert!(e("100 for 1 s, 200").contains("expected 'then"));
        assert!(e("100 for soon, then 2").contains("step '100 for soon'"));
        assert!(e("0 for 1 s, then 5").contains("above 0"));
        assert!(e("-3").contains("not a rate"));
    }
}
