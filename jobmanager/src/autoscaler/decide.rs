//! The decision (Flink's `ScalingMetricEvaluator` and `JobVertexScaler`, after DS2): per vertex
//! the true processing rate (input rate / busy share), the target rate propagated from the
//! sources in topological order (a source's observed rate plus its backlog's growth; other
//! vertices the sum of their inputs' targets times each input's output ratio), the catch-up
//! rate (backlog / catch-up duration, propagated the same way), and the scale factor target
//! capacity / true rate, clamped by the max factors, to a parallelism within the vertex bounds,
//! aligned to a divisor of the key groups for keyed inputs (of the partitions for sources that
//! have them). A vertex whose utilization is inside target ± boundary keeps its parallelism.
//! A pure function of the window's metrics, so recorded series test it.

use serde_json::{json, Value};

use super::settings::AutoscalerSettings;

/// A vertex as the decision sees it.
#[derive(Debug, Clone)]
pub(crate) struct VertexInfo {
    pub id: String,
    pub parallelism: u32,
    /// Indices (into the same list) of the vertices feeding it.
    pub inputs: Vec<usize>,
    pub source: bool,
    /// Fed by a keyed (hash) edge: its parallelism should divide the key groups.
    pub keyed: bool,
    /// A source's partition count, when its connector has partitions.
    pub partitions: Option<u32>,
}

/// A vertex's rates over the metric window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct VertexMetrics {
    /// Records per second in (a source: out).
    pub input_rate: f64,
    pub output_rate: f64,
    /// Busy milliseconds per second of the busiest subtask.
    pub busy: f64,
    pub backpressured: f64,
    /// A source's backlog (pending records) at the window's end, and its growth per second.
    pub lag: f64,
    pub lag_rate: f64,
    pub has_lag: bool,
}

/// What the decision computed for a vertex.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Evaluated {
    pub metrics: VertexMetrics,
    /// Records per second the vertex could process at its parallelism (∞ when never busy).
    pub true_rate: f64,
    pub target_rate: f64,
    pub catch_up_rate: f64,
    /// Share of its capacity the target rate needs.
    pub utilization: f64,
}

impl Evaluated {
    pub(crate) fn to_json(self) -> Value {
        let finite = |v: f64| if v.is_finite() { json!(v) } else { Value::Null };
        json!({
            "input_rate": self.metrics.input_rate,
            "output_rate": self.metrics.output_rate,
            "busy_time_ms_per_second": self.metrics.busy,
            "backpressured_time_ms_per_second": self.metrics.backpressured,
            "pending_records": self.metrics.has_lag.then_some(self.metrics.lag),
            "lag_growth_per_second": self.metrics.has_lag.then_some(self.metrics.lag_rate),
            "true_processing_rate": finite(self.true_rate),
            "target_data_rate": self.target_rate,
            "catch_up_data_rate": self.catch_up_rate,
            "utilization": finite(self.utilization),
        })
    }
}

/// A vertex's new parallelism and why.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Proposal {
    pub vertex: usize,
    pub from: u32,
    pub to: u32,
    pub reason: String,
}

/// A vertex's last scale-up, to judge whether it was effective: its true rate before, and
/// the parallelism it went from and to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct LastScaleUp {
    pub true_rate: f64,
    pub from: u32,
    pub to: u32,
}

/// Vertex indices, inputs before the vertices they feed.
fn topological(vertices: &[VertexInfo]) -> Vec<usize> {
    let mut order = Vec::with_capacity(vertices.len());
    let mut placed = vec![false; vertices.len()];
    while order.len() < vertices.len() {
        let before = order.len();
        for (i, v) in vertices.iter().enumerate() {
            if !placed[i] && v.inputs.iter().all(|u| placed.get(*u).copied().unwrap_or(true)) {
                placed[i] = true;
                order.push(i);
            }
        }
        if order.len() == before {
            // A cycle cannot come from a job file; take the rest as listed.
            order.extend((0..vertices.len()).filter(|i| !placed[*i]));
        }
    }
    order
}

/// Target and catch-up rates and true processing rates of every vertex.
pub(crate) fn evaluate(s: &AutoscalerSettings, vertices: &[VertexInfo], metrics: &[VertexMetrics]) -> Vec<Evaluated> {
    let mut out: Vec<Option<Evaluated>> = vec![None; vertices.len()];
    let catch_up_secs = s.catch_up.as_secs_f64();
    for i in topological(vertices) {
        let (v, m) = (&vertices[i], metrics[i]);
        let (target, catch_up) = if v.source || v.inputs.is_empty() {
            let catch_up = if catch_up_secs > 0.0 {
                m.lag / catch_up_secs
            } else {
                0.0
            };
            ((m.input_rate + m.lag_rate).max(0.0), catch_up)
        } else {
            v.inputs.iter().fold((0.0, 0.0), |(t, c), &u| {
                let (up, um) = (out[u], metrics[u]);
                // The share of an input's records that reach this vertex.
                let ratio = if um.input_rate > 0.0 {
                    um.output_rate / um.input_rate
                } else {
                    1.0
                };
                up.map_or((t, c), |e| (t + e.target_rate * ratio, c + e.catch_up_rate * ratio))
            })
        };
        let true_rate = if m.busy > 0.0 {
            m.input_rate / (m.busy / 1000.0)
        } else {
            f64::INFINITY
        };
        let utilization = if true_rate.is_finite() && true_rate > 0.0 {
            target / true_rate
        } else {
            0.0
        };
        out[i] = Some(Evaluated {
            metrics: m,
            true_rate,
            target_rate: target,
            catch_up_rate: catch_up,
            utilization,
        });
    }
    out.into_iter().map(|e| e.unwrap_or(Evaluated::idle())).collect()
}

impl Evaluated {
    fn idle() -> Evaluated {
        Evaluated {
            metrics: VertexMetrics::default(),
            true_rate: f64::INFINITY,
            target_rate: 0.0,
            catch_up_rate: 0.0,
            utilization: 0.0,
        }
    }
}

/// The processing capacity a vertex needs to run at `utilization` (Flink's
/// `getTargetProcessingCapacity`): its backlog's catch-up rate, the input that piles up during
/// a restart worked off within the catch-up duration (`with_restart`), and the target rate
/// over the utilization.
fn capacity(s: &AutoscalerSettings, e: &Evaluated, utilization: f64, with_restart: bool) -> f64 {
    let catch_up_secs = s.catch_up.as_secs_f64();
    let restart = if with_restart && catch_up_secs > 0.0 {
        e.target_rate * s.restart_time.as_secs_f64() / catch_up_secs
    } else {
        0.0
    };
    e.catch_up_rate + restart + e.target_rate / utilization.max(1e-9)
}

/// The smallest parallelism in `p..=bound` that divides `n` (Flink's alignment), else `p`.
fn align(p: u32, n: u32, bound: u32) -> u32 {
    (p..=bound).find(|q| n.is_multiple_of(*q)).unwrap_or(p)
}

/// Each vertex's new parallelism where it should change.
pub(crate) fn decide(
    s: &AutoscalerSettings,
    vertices: &[VertexInfo],
    evaluated: &[Evaluated],
    key_groups: u32,
    last_scale_ups: &dyn Fn(&str) -> Option<LastScaleUp>,
) -> Vec<Proposal> {
    let mut out = Vec::new();
    for (i, (v, e)) in vertices.iter().zip(evaluated).enumerate() {
        if !e.true_rate.is_finite() || e.true_rate <= 0.0 {
            continue;
        }
        let up_threshold = capacity(s, e, s.target_utilization + s.boundary, false);
        let down_threshold = capacity(s, e, (s.target_utilization - s.boundary).max(0.01), true);
        if e.true_rate >= up_threshold && e.true_rate <= down_threshold {
            continue;
        }
        let factor = (capacity(s, e, s.target_utilization, true) / e.true_rate)
            .clamp(1.0 - s.scale_down_max_factor, 1.0 + s.scale_up_max_factor);
        let upper = s.max_parallelism.min(key_groups);
        let mut to = ((factor * f64::from(v.parallelism)).ceil() as u32).clamp(s.min_parallelism.min(upper), upper);
        if v.keyed {
            // Up to half the key groups; past that no divisor but all of them is in reach.
            to = align(to, key_groups, (key_groups / 2).min(upper));
        } else if let (true, Some(n)) = (v.source, v.partitions) {
            // Up to one partition per subtask: past half the partitions that is the only even
            // spread.
            to = align(to, n, upper.min(n));
        }
        if to == v.parallelism {
            continue;
        }
        if to > v.parallelism {
            if let Some(last) = last_scale_ups(&v.id) {
                // Flink's effectiveness check: the last scale-up should have raised the true rate
                // by at least the threshold's share of what the added subtasks promised.
                let expected = last.true_rate * (f64::from(last.to) / f64::from(last.from) - 1.0);
                let achieved = e.true_rate - last.true_rate;
                if s.effectiveness_detection
                    && last.to == v.parallelism
                    && expected > 0.0
                    && achieved < s.effectiveness_threshold * expected
                {
                    continue;
                }
            }
        }
        let direction = if to > v.parallelism { "above" } else { "below" };
        out.push(Proposal {
            vertex: i,
            from: v.parallelism,
            to,
            reason: format!(
                "utilization {:.2} is {direction} {:.2} ± {:.2}: target rate {:.1}/s (+ catch-up {:.1}/s) against a true processing rate of {:.1}/s at parallelism {}; scale factor {factor:.2}",
                e.utilization, s.target_utilization, s.boundary, e.target_rate, e.catch_up_rate, e.true_rate, v.parallelism
            ),
        });
    }
    out
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
