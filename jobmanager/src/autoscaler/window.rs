//! The metric window (Flink's `ScalingMetricCollector`): every subtask's accumulated counters
//! (records in and out, busy and back-pressured milliseconds, a source's pending records) as
//! the heartbeats bring them, each observation stamped when it first appeared, kept for
//! `job.autoscaler.metrics.window`. A vertex's rates are the differences across the window:
//! records per second summed over subtasks, busy time as the busiest subtask's share (Flink's
//! default busy-time aggregator MAX), the backlog and how fast it grows.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use sluice_proto::control::TaskDigest;

use super::decide::VertexMetrics;

#[derive(Debug, Clone, Copy, PartialEq)]
struct Counters {
    records_in: f64,
    records_out: f64,
    busy_ms: f64,
    backpressured_ms: f64,
    pending: Option<f64>,
}

impl From<&TaskDigest> for Counters {
    fn from(d: &TaskDigest) -> Counters {
        Counters {
            records_in: d.records_in as f64,
            records_out: d.records_out as f64,
            busy_ms: d.busy_ms as f64,
            backpressured_ms: d.backpressured_ms as f64,
            pending: d.pending_records,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct MetricWindow {
    /// (vertex, subtask) → observations, oldest first.
    subtasks: BTreeMap<(u32, u32), VecDeque<(Instant, Counters)>>,
}

impl MetricWindow {
    /// Takes the digests' counters that changed since the last look; forgets observations
    /// that fell out of the window (keeping one at its start).
    pub(crate) fn observe<'a>(
        &mut self,
        now: Instant,
        digests: impl Iterator<Item = &'a TaskDigest>,
        window: Duration,
    ) {
        for d in digests {
            let c = Counters::from(d);
            let seen = self.subtasks.entry((d.vertex, d.subtask)).or_default();
            if seen.back().is_none_or(|(_, last)| *last != c) {
                seen.push_back((now, c));
            }
            while seen.len() > 2 && seen.get(1).is_some_and(|(t, _)| now.duration_since(*t) >= window) {
                seen.pop_front();
            }
        }
    }

    pub(crate) fn clear(&mut self) {
        self.subtasks.clear();
    }

    /// The vertex's rates over the window (`None` until each of its `parallelism` subtasks
    /// was seen twice). A source's input rate is the rate it emits.
    pub(crate) fn vertex(&self, vertex: u32, parallelism: u32, source: bool) -> Option<VertexMetrics> {
        let mut m = VertexMetrics::default();
        let mut any_pending = false;
        for subtask in 0..parallelism {
            let seen = self.subtasks.get(&(vertex, subtask))?;
            let ((t0, first), (t1, last)) = (seen.front()?, seen.back()?);
            let secs = t1.duration_since(*t0).as_secs_f64();
            if secs <= 0.0 {
                return None;
            }
            let records_in = if source {
                last.records_out - first.records_out
            } else {
                last.records_in - first.records_in
            };
            m.input_rate += records_in / secs;
            m.output_rate += (last.records_out - first.records_out) / secs;
            m.busy = m.busy.max((last.busy_ms - first.busy_ms) / secs);
            m.backpressured = m
                .backpressured
                .max((last.backpressured_ms - first.backpressured_ms) / secs);
            if let (Some(a), Some(b)) = (first.pending, last.pending) {
                any_pending = true;
                m.lag += b;
                m.lag_rate += (b - a) / secs;
            }
        }
        m.has_lag = any_pending;
        Some(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(subtask: u32, records: u64, busy: u64, pending: Option<f64>) -> TaskDigest {
        TaskDigest {
            vertex: 1,
            subtask,
            records_in: records,
            records_out: records,
            busy_ms: busy,
            pending_records: pending,
            ..TaskDigest::default()
        }
    }

    #[test]
    fn rates_over_the_window_from_changed_counters() {
        let mut w = MetricWindow::default();
        let t0 = Instant::now();
        let window = Duration::from_secs(10);
        w.observe(t0, [digest(0, 0, 0, Some(0.0)), digest(1, 0, 0, None)].iter(), window);
        assert!(w.vertex(1, 2, false).is_none(), "one observation is no rate");
        // The same counters again are no new observation.
        w.observe(t0 + Duration::from_secs(1), [digest(0, 0, 0, Some(0.0))].iter(), window);
        let t = t0 + Duration::from_secs(4);
        w.observe(
            t,
            [digest(0, 400, 2000, Some(200.0)), digest(1, 800, 1000, None)].iter(),
            window,
        );
        let m = w.vertex(1, 2, false).unwrap();
        assert_eq!(m.input_rate, 300.0);
        assert_eq!(m.busy, 500.0, "the busiest subtask");
        assert_eq!((m.lag, m.lag_rate, m.has_lag), (200.0, 50.0, true));
        assert!(w.vertex(1, 3, false).is_none(), "a subtask not seen yet");
        // Old observations leave the window.
        let late = t0 + Duration::from_secs(30);
        w.observe(late, [digest(0, 1400, 2000, Some(200.0))].iter(), window);
        w.observe(
            late + Duration::from_secs(10),
            [digest(0, 2400, 2000, Some(200.0))].iter(),
            window,
        );
        let seen = &w.subtasks[&(1, 0)];
        assert_eq!(seen.len(), 2);
    }
}
