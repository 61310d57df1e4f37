//! The values of a subtask's user metrics (job file `metrics:`, compiled in
//! `sluice_common::job::user_metrics`) and the pass-through operator that feeds them: it sits in
//! the chain right before the operator that declared them and sees the same batches. Counters
//! add up, meters keep a minute of counts for their rate (Flink's `MeterView(60)`), gauges keep
//! the last batch's value, histograms a sliding window of the last 1024 values (Flink's
//! `DescriptiveStatisticsHistogram`) and their count. Read at each scrape.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use sluice_common::job::user_metrics::{CompiledMetric, MetricKind, Observation};

use crate::error::TaskError;
use crate::operators::{Operator, OperatorContext};

/// Values a histogram keeps.
const RESERVOIR: usize = 1024;
/// A meter's rate spans this long (Flink's `MeterView` default).
const METER_SPAN: Duration = Duration::from_secs(60);
/// Flink's Prometheus reporter exports these quantiles of a histogram.
pub(crate) const QUANTILES: [f64; 8] = [0.0, 0.5, 0.75, 0.95, 0.98, 0.99, 0.999, 1.0];

#[derive(Debug)]
enum Value {
    Counter(f64),
    Meter {
        total: f64,
        marks: VecDeque<(Instant, f64)>,
    },
    Gauge(f64),
    Histogram {
        window: VecDeque<f64>,
        count: u64,
    },
}

impl Value {
    fn new(kind: MetricKind) -> Value {
        match kind {
            MetricKind::Counter => Value::Counter(0.0),
            MetricKind::Meter => Value::Meter {
                total: 0.0,
                marks: VecDeque::new(),
            },
            MetricKind::Gauge => Value::Gauge(0.0),
            MetricKind::Histogram => Value::Histogram {
                window: VecDeque::with_capacity(RESERVOIR),
                count: 0,
            },
        }
    }

    fn record(&mut self, observation: Observation, now: Instant) {
        match (self, observation) {
            (Value::Counter(c), Observation::Add(n)) => *c += n,
            (Value::Meter { total, marks }, Observation::Add(n)) => {
                *total += n;
                // One mark per second at most, a minute of them.
                if marks
                    .back()
                    .is_none_or(|(t, _)| now.duration_since(*t) >= Duration::from_secs(1))
                {
                    marks.push_back((now, *total));
                } else if let Some(last) = marks.back_mut() {
                    last.1 = *total;
                }
                while marks.len() > 2 && marks.front().is_some_and(|(t, _)| now.duration_since(*t) > METER_SPAN) {
                    marks.pop_front();
                }
            }
            (Value::Gauge(g), Observation::Set(Some(v))) => *g = v,
            (Value::Histogram { window, count }, Observation::Samples(values)) => {
                for v in values {
                    if window.len() == RESERVOIR {
                        window.pop_front();
                    }
                    window.push_back(v);
                    *count += 1;
                }
            }
            _ => {}
        }
    }

    fn read(&self, now: Instant) -> Reading {
        match self {
            Value::Counter(c) | Value::Gauge(c) => Reading::Gauge(*c),
            Value::Meter { total, marks } => {
                let rate = match marks.front() {
                    Some((t, first)) => {
                        let span = now.duration_since(*t).as_secs_f64().max(1.0);
                        // The first mark holds the total after its batch; what came before
                        // it is unknown, so the rate counts from there.
                        (total - first) / span
                    }
                    None => 0.0,
                };
                Reading::Gauge(rate)
            }
            Value::Histogram { window, count } => {
                let mut sorted: Vec<f64> = window.iter().copied().collect();
                sorted.sort_by(|a, b| a.total_cmp(b));
                let quantiles = QUANTILES
                    .iter()
                    .map(|q| {
                        let v = if sorted.is_empty() {
                            0.0
                        } else {
                            let i = (q * (sorted.len() - 1) as f64).round() as usize;
                            sorted[i.min(sorted.len() - 1)]
                        };
                        (*q, v)
                    })
                    .collect();
                Reading::Summary {
                    quantiles,
                    count: *count,
                }
            }
        }
    }
}

/// A metric's value at a scrape, as Flink's Prometheus reporter maps it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Reading {
    /// Counters, meters (their rate per second) and gauges.
    Gauge(f64),
    /// Histograms: the quantiles and the count.
    Summary { quantiles: Vec<(f64, f64)>, count: u64 },
}

/// A subtask's user metrics: (operator id, metric name) → value.
#[derive(Debug, Clone, Default)]
pub(crate) struct UserMetrics(Arc<Mutex<BTreeMap<(String, String), Value>>>);

impl UserMetrics {
    /// Every metric's reading now.
    pub(crate) fn read(&self) -> Vec<((String, String), Reading)> {
        let now = Instant::now();
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.read(now)))
            .collect()
    }
}

/// Feeds operator `operator`'s declared metrics with the batches it receives and passes them on.
pub(crate) struct MetricsProbe {
    operator: String,
    metrics: Vec<CompiledMetric>,
    values: UserMetrics,
}

impl MetricsProbe {
    pub(crate) fn new(operator: &str, metrics: Vec<CompiledMetric>, values: &UserMetrics) -> MetricsProbe {
        {
            let mut all = values.0.lock().unwrap_or_else(|p| p.into_inner());
            for m in &metrics {
                all.insert((operator.to_string(), m.spec.name.clone()), Value::new(m.spec.kind));
            }
        }
        MetricsProbe {
            operator: operator.to_string(),
            metrics,
            values: values.clone(),
        }
    }
}

impl Operator for MetricsProbe {
    fn process(
        &mut self,
        input: usize,
        batch: RecordBatch,
        _ctx: &OperatorContext,
        out: &mut Vec<RecordBatch>,
    ) -> Result<(), TaskError> {
        if input != 0 {
            // A broadcast input: the metrics are over the main rows.
            out.push(batch);
            return Ok(());
        }
        let now = Instant::now();
        let mut observed = Vec::with_capacity(self.metrics.len());
        for m in &self.metrics {
            observed.push((m.spec.name.clone(), m.observe(&batch).map_err(TaskError::user)?));
        }
        {
            let mut all = self.values.0.lock().unwrap_or_else(|p| p.into_inner());
            for (name, o) in observed {
                if let Some(v) = all.get_mut(&(self.operator.clone(), name)) {
                    v.record(o, now);
                }
            }
        }
        out.push(batch);
        Ok(())
    }

    fn passes_input_on(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_as_flinks_reporter_maps_them() {
        let t0 = Instant::now();
        let mut c = Value::new(MetricKind::Counter);
        c.record(Observation::Add(3.0), t0);
        c.record(Observation::Add(2.0), t0);
        assert_eq!(c.read(t0), Reading::Gauge(5.0));

        let mut m = Value::new(MetricKind::Meter);
        m.record(Observation::Add(100.0), t0);
        for s in 1..=10 {
            m.record(Observation::Add(100.0), t0 + Duration::from_secs(s));
        }
        assert_eq!(
            m.read(t0 + Duration::from_secs(10)),
            Reading::Gauge(100.0),
            "1000 more in 10 s"
        );

        let mut g = Value::new(MetricKind::Gauge);
        g.record(Observation::Set(Some(7.0)), t0);
        g.record(Observation::Set(None), t0);
        assert_eq!(g.read(t0), Reading::Gauge(7.0), "a null batch keeps the last value");

        let mut h = Value::new(MetricKind::Histogram);
        h.record(Observation::Samples((1..=2000).map(f64::from).collect()), t0);
        let Reading::Summary { quantiles, count } = h.read(t0) else {
            panic!("summary")
        };
        assert_eq!(count, 2000);
        assert_eq!(quantiles.first(), Some(&(0.0, 977.0)), "the window keeps the last 1024");
        assert_eq!(quantiles.last(), Some(&(1.0, 2000.0)));
        assert_eq!(quantiles.len(), QUANTILES.len());
    }
}
