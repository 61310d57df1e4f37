//! A job's autoscaler between evaluations (Flink's `JobAutoScalerImpl` loop): after every
//! (re)start it waits out the stabilization interval, fills the metric window, then evaluates
//! at each look. Scale-ups act at once; a scale-down acts only once it has been wanted for
//! `scale-down.interval` (at the highest parallelism wanted meanwhile). A decision that needs
//! more slots than the job holds and the cluster has free waits for them, says how many are
//! missing, and runs `sluice.autoscaler.taskmanager-command` with the taskmanager count that
//! provides them; after a scale-down the command hands idle taskmanagers back.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::{json, Value};
use sluice_proto::control::TaskDigest;

use super::decide::{decide, evaluate, Evaluated, LastScaleUp, Proposal, VertexInfo};
use super::settings::AutoscalerSettings;
use super::window::MetricWindow;

/// The cluster's slots as a decision needs them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slots {
    /// Slots the job holds now.
    pub held: u32,
    pub free: u32,
    pub taskmanagers: u32,
    pub per_taskmanager: u32,
}

/// What the scheduler should do.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action {
    /// Rescale to these vertex parallelisms (by vertex id).
    Rescale {
        parallelism: BTreeMap<String, u32>,
        cause: String,
    },
    /// Run the taskmanager command for this many taskmanagers.
    Command { taskmanagers: u32, slots: u32 },
}

/// One decision on one vertex, as REST shows it.
#[derive(Debug, Clone)]
pub(crate) struct DecisionRecord {
    pub timestamp_ms: u64,
    pub vertex: String,
    pub vertex_name: String,
    pub from: u32,
    pub to: u32,
    pub reason: String,
    pub metrics: Evaluated,
    /// What became of it: rescaling, or waiting for slots.
    pub outcome: String,
}

#[derive(Debug, Clone)]
pub(crate) struct JobAutoscaler {
    pub settings: AutoscalerSettings,
    epoch: Option<u64>,
    running_since: Option<Instant>,
    collecting_since: Option<Instant>,
    window: MetricWindow,
    /// Vertex id → (first wanted, the highest parallelism wanted since) of delayed scale-downs.
    pending_down: BTreeMap<String, (Instant, u32)>,
    last_scale_ups: BTreeMap<String, LastScaleUp>,
    /// The taskmanager count the command last ran with.
    commanded: Option<u32>,
    pub decisions: Vec<DecisionRecord>,
    /// Every decision and every one that rescaled since the job started (the history above
    /// keeps the newest only).
    decisions_total: u64,
    rescales_total: u64,
    /// The latest evaluation: (vertex id, name, parallelism, metrics).
    pub evaluated: Vec<(String, String, u32, Evaluated)>,
    pub status: &'static str,
    pub wanted_slots: u32,
    pub missing_slots: u32,
    pub last_command: Option<String>,
}

/// How many decisions REST keeps.
const HISTORY: usize = 100;

/// The outcome of a decision the job rescales for.
const RESCALING: &str = "rescaling";

impl JobAutoscaler {
    pub(crate) fn new(settings: AutoscalerSettings) -> JobAutoscaler {
        JobAutoscaler {
            settings,
            epoch: None,
            running_since: None,
            collecting_since: None,
            window: MetricWindow::default(),
            pending_down: BTreeMap::new(),
            last_scale_ups: BTreeMap::new(),
            commanded: None,
            decisions: Vec::new(),
            decisions_total: 0,
            rescales_total: 0,
            evaluated: Vec::new(),
            status: "waiting for the job to run",
            wanted_slots: 0,
            missing_slots: 0,
            last_command: None,
        }
    }

    /// One look at a running attempt `epoch` (every subtask running). `names` are the vertex
    /// names for the record; `digests` the job's latest subtask digests.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn tick(
        &mut self,
        now: Instant,
        now_ms: u64,
        epoch: u64,
        vertices: &[VertexInfo],
        names: &[String],
        key_groups: u32,
        digests: &[TaskDigest],
        slots: Slots,
    ) -> Vec<Action> {
        if self.epoch != Some(epoch) {
            self.epoch = Some(epoch);
            self.running_since = Some(now);
            self.collecting_since = None;
            self.window.clear();
            self.pending_down.clear();
            self.evaluated.clear();
        }
        let s = self.settings.clone();
        if self
            .running_since
            .is_some_and(|t| now.duration_since(t) < s.stabilization)
        {
            self.status = "stabilizing after a (re)start";
            return Vec::new();
        }
        self.window.observe(now, digests.iter(), s.metrics_window);
        let since = *self.collecting_since.get_or_insert(now);
        if now.duration_since(since) < s.metrics_window {
            self.status = "collecting metrics";
            return Vec::new();
        }
        let Some(metrics) = vertices
            .iter()
            .enumerate()
            .map(|(i, v)| self.window.vertex(i as u32, v.parallelism, v.source))
            .collect::<Option<Vec<_>>>()
        else {
            self.status = "collecting metrics";
            return Vec::new();
        };
        self.status = "evaluating";
        let evaluated = evaluate(&s, vertices, &metrics);
        self.evaluated = vertices
            .iter()
            .zip(names)
            .zip(&evaluated)
            .map(|((v, n), e)| (v.id.clone(), n.clone(), v.parallelism, *e))
            .collect();
        let last = self.last_scale_ups.clone();
        let proposals = decide(&s, vertices, &evaluated, key_groups, &|id| last.get(id).copied());
        let ready = self.delay_scale_downs(now, proposals, vertices);
        if ready.is_empty() {
            self.wanted_slots = 0;
            self.missing_slots = 0;
            return Vec::new();
        }
        let mut parallelism: BTreeMap<String, u32> = vertices.iter().map(|v| (v.id.clone(), v.parallelism)).collect();
        for p in &ready {
            parallelism.insert(vertices[p.vertex].id.clone(), p.to);
        }
        // Slot sharing: the job needs as many slots as its widest vertex.
        let needed = parallelism.values().copied().max().unwrap_or(0);
        let available = slots.held + slots.free;
        let per = slots.per_taskmanager.max(1);
        let mut actions = Vec::new();
        if needed > available {
            let missing = needed - available;
            let taskmanagers = slots.taskmanagers + missing.div_ceil(per);
            let first = self.wanted_slots != needed;
            self.wanted_slots = needed;
            self.missing_slots = missing;
            self.status = "waiting for slots";
            if first {
                let outcome = format!("waiting for {missing} more slot(s): {needed} needed, {available} available");
                self.record(now_ms, &ready, vertices, names, &evaluated, &outcome);
            }
            if s.taskmanager_command.is_some() && self.commanded != Some(taskmanagers) {
                self.commanded = Some(taskmanagers);
                actions.push(Action::Command {
                    taskmanagers,
                    slots: taskmanagers * per,
                });
            }
            return actions;
        }
        self.wanted_slots = needed;
        self.missing_slots = 0;
        self.record(now_ms, &ready, vertices, names, &evaluated, RESCALING);
        for p in &ready {
            if p.to > p.from {
                let true_rate = evaluated[p.vertex].true_rate;
                self.last_scale_ups.insert(
                    vertices[p.vertex].id.clone(),
                    LastScaleUp {
                        true_rate,
                        from: p.from,
                        to: p.to,
                    },
                );
            }
        }
        let cause = ready
            .iter()
            .map(|p| {
                format!(
                    "autoscaler: {} {} → {}",
                    names.get(p.vertex).map_or("?", String::as_str),
                    p.from,
                    p.to
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        actions.push(Action::Rescale { parallelism, cause });
        // Hand idle taskmanagers back: keep those the slots in use need.
        let in_use = (slots.taskmanagers * per).saturating_sub(slots.free + slots.held) + needed;
        let keep = in_use.div_ceil(per).max(1);
        if s.taskmanager_command.is_some() && keep < slots.taskmanagers && self.commanded != Some(keep) {
            self.commanded = Some(keep);
            actions.push(Action::Command {
                taskmanagers: keep,
                slots: keep * per,
            });
        }
        actions
    }

    /// Scale-ups pass; a scale-down passes once wanted for the scale-down interval (at the
    /// highest parallelism wanted meanwhile). A vertex no longer wanting one forgets it.
    fn delay_scale_downs(&mut self, now: Instant, proposals: Vec<Proposal>, vertices: &[VertexInfo]) -> Vec<Proposal> {
        let interval = self.settings.scale_down_interval;
        let downs: Vec<&str> = proposals
            .iter()
            .filter(|p| p.to < p.from)
            .map(|p| vertices[p.vertex].id.as_str())
            .collect();
        self.pending_down.retain(|id, _| downs.contains(&id.as_str()));
        let mut ready = Vec::new();
        for mut p in proposals {
            if p.to > p.from {
                ready.push(p);
                continue;
            }
            let id = vertices[p.vertex].id.clone();
            let (since, highest) = self.pending_down.entry(id.clone()).or_insert((now, p.to));
            *highest = (*highest).max(p.to);
            if now.duration_since(*since) >= interval {
                p.to = *highest;
                self.pending_down.remove(&id);
                if p.to < p.from {
                    ready.push(p);
                }
            } else {
                self.status = "scale-down delayed (job.autoscaler.scale-down.interval)";
            }
        }
        ready
    }

    fn record(
        &mut self,
        now_ms: u64,
        ready: &[Proposal],
        vertices: &[VertexInfo],
        names: &[String],
        evaluated: &[Evaluated],
        outcome: &str,
    ) {
        for p in ready {
            self.decisions_total += 1;
            self.rescales_total += u64::from(outcome == RESCALING);
            tracing::info!(
                "Autoscaler: vertex {} from parallelism {} to {} ({outcome}): {}",
                names.get(p.vertex).map_or("?", String::as_str),
                p.from,
                p.to,
                p.reason
            );
            self.decisions.push(DecisionRecord {
                timestamp_ms: now_ms,
                vertex: vertices[p.vertex].id.clone(),
                vertex_name: names.get(p.vertex).cloned().unwrap_or_default(),
                from: p.from,
                to: p.to,
                reason: p.reason.clone(),
                metrics: evaluated[p.vertex],
                outcome: outcome.to_string(),
            });
        }
        if self.decisions.len() > HISTORY {
            let extra = self.decisions.len() - HISTORY;
            self.decisions.drain(..extra);
        }
    }

    /// `GET /jobs/:id/autoscaler`.
    pub(crate) fn to_json(&self) -> Value {
        let s = &self.settings;
        json!({
            "enabled": true,
            "status": self.status,
            "settings": {
                "metrics_window_ms": s.metrics_window.as_millis() as u64,
                "stabilization_interval_ms": s.stabilization.as_millis() as u64,
                "target_utilization": s.target_utilization,
                "target_utilization_boundary": s.boundary,
                "scale_down_interval_ms": s.scale_down_interval.as_millis() as u64,
                "taskmanager_command": s.taskmanager_command,
            },
            "wanted_slots": self.wanted_slots,
            "missing_slots": self.missing_slots,
            "last_command": self.last_command,
            "decisions": self.decisions.iter().map(|d| json!({
                "timestamp": d.timestamp_ms,
                "vertex": d.vertex,
                "vertex_name": d.vertex_name,
                "from": d.from,
                "to": d.to,
                "reason": d.reason,
                "outcome": d.outcome,
                "metrics": d.metrics.to_json(),
            })).collect::<Vec<_>>(),
            "vertices": self.evaluated.iter().map(|(id, name, p, e)| json!({
                "id": id,
                "name": name,
                "parallelism": p,
                "metrics": e.to_json(),
            })).collect::<Vec<_>>(),
        })
    }

    /// `flink_jobmanager_job_autoscaler_<name>`.
    pub(crate) fn metric_values(&self) -> Vec<(&'static str, f64)> {
        let max_utilization = self.evaluated.iter().map(|e| e.3.utilization).fold(0.0, f64::max);
        vec![
            ("autoscaler_decisions", self.decisions_total as f64),
            ("autoscaler_rescales", self.rescales_total as f64),
            ("autoscaler_wantedSlots", f64::from(self.wanted_slots)),
            ("autoscaler_missingSlots", f64::from(self.missing_slots)),
            ("autoscaler_maxUtilization", max_utilization),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_decision_metrics_count_past_the_history_rest_keeps() {
        let mut a = JobAutoscaler::new(AutoscalerSettings::for_tests());
        let vertices = [VertexInfo {
            id: "v".into(),
            parallelism: 1,
            inputs: Vec::new(),
            source: false,
            keyed: false,
            partitions: None,
        }];
        let evaluated = [Evaluated {
            metrics: Default::default(),
            true_rate: 1.0,
            target_rate: 1.0,
            catch_up_rate: 0.0,
            utilization: 1.0,
        }];
        let up = [Proposal {
            vertex: 0,
            from: 1,
            to: 2,
            reason: "busy".into(),
        }];
        for i in 0..150 {
            let outcome = if i % 3 == 0 { "waiting for slots" } else { RESCALING };
            a.record(i, &up, &vertices, &["v".to_string()], &evaluated, outcome);
        }
        assert_eq!(a.decisions.len(), HISTORY);
        let m: BTreeMap<_, _> = a.metric_values().into_iter().collect();
        assert_eq!(m["autoscaler_decisions"], 150.0);
        assert_eq!(m["autoscaler_rescales"], 100.0);
    }
}
