//! Per-subtask counters behind Flink's task metrics (`numRecordsIn/Out`, busy / idle /
//! back-pressured time, `currentInputWatermark`, `numLateRecordsDropped`). The task loop adds
//! to them; `rates_at` turns them into Flink's per-second figures over a view of at least
//! `RATE_VIEW` (Flink's metric views update every 5 seconds), which Prometheus, the heartbeat
//! digests (REST, dashboard) and anything else read alike.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::time_account::TimeAccount;

/// How long a per-second figure is averaged over (Flink's `MetricView` interval).
pub(crate) const RATE_VIEW: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub(crate) struct TaskMetrics {
    pub records_in: AtomicU64,
    pub records_out: AtomicU64,
    pub time: TimeAccount,
    pub input_watermark: AtomicI64,
    /// When (unix ms) the first record came in (or, from a source, went out); 0 before.
    pub first_record_ms: AtomicU64,
    pub late_dropped: Arc<AtomicU64>,
    /// What the subtask's connector reports in its operator scope.
    pub operator: sluice_connectors::OperatorMetrics,
    /// The job file's metrics of the subtask's operators.
    pub user: super::user_metrics::UserMetrics,
    view: Mutex<RateView>,
}

/// A point-in-time copy of the counters.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TaskSample {
    pub records_in: u64,
    pub records_out: u64,
    pub busy_ns: u64,
    pub idle_ns: u64,
    pub backpressured_ns: u64,
}

/// Per-second figures: records, and milliseconds per second in each phase.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct TaskRates {
    pub records_in: f64,
    pub records_out: f64,
    pub busy_ms: f64,
    pub idle_ms: f64,
    pub backpressured_ms: f64,
}

#[derive(Debug)]
struct RateView {
    /// When `last` was taken.
    at: Instant,
    last: TaskSample,
    rates: TaskRates,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl TaskSample {
    /// Rates from `before` to `self`, `secs` apart.
    fn rates_since(&self, before: &TaskSample, secs: f64) -> TaskRates {
        if secs <= 0.0 {
            return TaskRates::default();
        }
        let per_second = |a: u64, b: u64| a.saturating_sub(b) as f64 / secs;
        let ms_per_second = |a: u64, b: u64| (per_second(a, b) / 1e6).min(1000.0);
        TaskRates {
            records_in: per_second(self.records_in, before.records_in),
            records_out: per_second(self.records_out, before.records_out),
            busy_ms: ms_per_second(self.busy_ns, before.busy_ns),
            idle_ms: ms_per_second(self.idle_ns, before.idle_ns),
            backpressured_ms: ms_per_second(self.backpressured_ns, before.backpressured_ns),
        }
    }
}

impl TaskMetrics {
    pub(crate) fn new() -> Arc<TaskMetrics> {
        Arc::new(TaskMetrics::starting_at(Instant::now()))
    }

    fn starting_at(now: Instant) -> TaskMetrics {
        TaskMetrics {
            records_in: AtomicU64::new(0),
            records_out: AtomicU64::new(0),
            time: TimeAccount::starting(super::time_account::Phase::Busy, now),
            input_watermark: AtomicI64::new(i64::MIN),
            first_record_ms: AtomicU64::new(0),
            late_dropped: Arc::default(),
            operator: Default::default(),
            user: Default::default(),
            view: Mutex::new(RateView {
                at: now,
                last: TaskSample::default(),
                rates: TaskRates::default(),
            }),
        }
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Stamps the first record's time, once.
    pub(crate) fn first_record(&self) {
        if self.first_record_ms.load(Ordering::Relaxed) == 0 {
            let now = u64::try_from(sluice_common::wall_ms::wall_ms()).unwrap_or(0).max(1);
            let _ = self
                .first_record_ms
                .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    pub(crate) fn sample_at(&self, now: Instant) -> TaskSample {
        let t = self.time.totals_at(now);
        TaskSample {
            records_in: self.records_in.load(Ordering::Relaxed),
            records_out: self.records_out.load(Ordering::Relaxed),
            busy_ns: nanos(t.busy),
            idle_ns: nanos(t.idle),
            backpressured_ns: nanos(t.back_pressured),
        }
    }

    /// The per-second figures of the latest complete view, moving the view on when it is at
    /// least `RATE_VIEW` old. Zero until the first view completes.
    pub(crate) fn rates_at(&self, now: Instant) -> TaskRates {
        let mut view = self.view.lock().unwrap_or_else(|e| e.into_inner());
        let age = now.saturating_duration_since(view.at);
        if age >= RATE_VIEW {
            let sample = self.sample_at(now);
            view.rates = sample.rates_since(&view.last, age.as_secs_f64());
            view.last = sample;
            view.at = now;
        }
        view.rates
    }
}

#[cfg(test)]
mod tests {
    use super::super::time_account::Phase;
    use super::*;

    #[test]
    fn rates_cover_a_whole_view_and_hold_until_the_next() {
        let t0 = Instant::now();
        let m = TaskMetrics::starting_at(t0);
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        m.time.enter_at(Phase::BackPressured, at(1000));
        TaskMetrics::add(&m.records_out, 5000);
        assert_eq!(m.rates_at(at(4000)), TaskRates::default(), "no view has completed");
        let r = m.rates_at(at(5000));
        assert_eq!(r.busy_ms, 200.0);
        assert_eq!(r.backpressured_ms, 800.0);
        assert_eq!(r.records_out, 1000.0);
        assert_eq!(m.rates_at(at(7000)), r, "the view holds until it is RATE_VIEW old");
        let r = m.rates_at(at(10_000));
        assert_eq!((r.busy_ms, r.backpressured_ms, r.idle_ms), (0.0, 1000.0, 0.0));
    }
}
