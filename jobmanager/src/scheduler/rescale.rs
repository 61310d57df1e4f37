//! Rescaling: the reactive policy (a job's share of the slots, the parallelism it plans with),
//! per-vertex resource requirements (`PUT /jobs/:id/resource-requirements`), and the
//! stop-with-checkpoint that starts a rescale and the record that ends it.

use std::sync::Arc;
use std::time::Instant;

use sluice_common::config::options::*;
use sluice_common::job::GraphOptions;
use sluice_connectors::registry;
use sluice_frontend::compile_job;

use super::reactive::{PendingRescale, ReactiveSettings, RescaleRecord, ScaleUpWatch};
use crate::checkpoint::Coordinator;

use super::*;

/// How long after a rescale its first record is looked for (and an earlier stamp arriving
/// later may replace the one recorded).
const FIRST_RECORD_WINDOW_MS: u64 = 60_000;

impl Scheduler {
    /// Reactive mode: the slots to take now, 0 to keep waiting. The job's share if that many
    /// are free; what is free once the slots stayed short for the stabilization timeout.
    pub(super) fn reactive_slots(&self, handle: &Handle, r: &ReactiveSettings, waiting_since: Instant) -> u32 {
        let want = self.reactive_target(handle);
        let (_, _, free) = self.registry.totals();
        if want > 0 && free >= want {
            want
        } else if free > 0 && want > 0 && waiting_since.elapsed() >= r.stabilization {
            free.min(want)
        } else {
            0
        }
    }

    /// Reactive mode: min(max parallelism, the job's even share of the registered slots).
    pub(super) fn reactive_target(&self, handle: &Handle) -> u32 {
        let (id, max_parallelism) = {
            let job = handle.lock();
            (job.id.clone(), job.graph.max_parallelism)
        };
        // Called every tick: read the few fields needed, not a clone of every job.
        let handles: Vec<Arc<Handle>> = self.handles().values().cloned().collect();
        let mut jobs: Vec<(u64, String)> = handles
            .iter()
            .filter_map(|h| {
                let j = h.lock();
                (j.reactive && !j.state.is_terminal()).then(|| (j.start_time, j.id.clone()))
            })
            .collect();
        jobs.sort();
        let index = jobs.iter().position(|(_, j)| *j == id).unwrap_or(0);
        let (_, total, _) = self.registry.totals();
        reactive::share(total, index, jobs.len()).min(max_parallelism)
    }

    /// Recompiles the job at parallelism `p` (reactive) or with its submitted parallelism, and
    /// the per-node parallelism the scheduler decided; the max parallelism (the key groups)
    /// stays.
    pub(super) fn replan(&self, handle: &Handle, p: Option<u32>) -> Result<(), String> {
        let mut job = handle.lock();
        let graph = self.plan_at(&job, p)?;
        job.graph = Arc::new(graph);
        Ok(())
    }

    /// The graph `replan(p)` would give `job`, left unset.
    pub(super) fn plan_at(&self, job: &Job, p: Option<u32>) -> Result<sluice_common::job::JobGraph, String> {
        let options = GraphOptions {
            default_parallelism: self.settings.default_parallelism,
            parallelism: p.or(job.parallelism),
            node_parallelism: job.node_parallelism.clone(),
            restored_max_parallelism: Some(job.graph.max_parallelism),
            uniform: job.reactive,
            cluster_config: Some(Arc::new(job.config.clone())),
        };
        compile_job(&job.yaml, &job.file, &options, registry()).map_err(|e| e.to_string())
    }

    /// The job's resource requirements in Flink's body.
    pub(crate) fn requirements(&self, id: &str) -> Result<serde_json::Value, SchedulerError> {
        let handle = self.handle(id)?;
        let job = handle.lock();
        Ok(requirements::to_json(&job.graph, &job.requirements))
    }

    /// Sets the job's resource requirements; a running job rescales to fit them.
    pub(crate) fn set_requirements(&self, id: &str, body: &serde_json::Value) -> Result<(), SchedulerError> {
        let handle = self.handle(id)?;
        let mut job = handle.lock();
        if job.reactive {
            return Err(SchedulerError::WrongState("Resource requirements cannot be changed in reactive mode (scheduler-mode: reactive): the parallelism follows the slots.".into()));
        }
        if job.state.is_terminal() {
            return Err(SchedulerError::WrongState(format!(
                "Job {id} has already ended ({}).",
                job.state.name()
            )));
        }
        if job.config.get_opt(&CHECKPOINTS_DIR).ok().flatten().is_none() {
            return Err(SchedulerError::BadRequest(
                "Rescaling a job goes through a checkpoint: set execution.checkpointing.dir.".into(),
            ));
        }
        job.requirements = requirements::parse(&job.graph, body).map_err(SchedulerError::BadRequest)?;
        drop(job);
        handle.send(JobCommand::RequirementsChanged);
        Ok(())
    }

    /// A running job whose requirements changed: when another per-vertex parallelism fits the
    /// slots (those it holds and the free ones), stops it with a checkpoint to rescale.
    pub(super) async fn maybe_fit_requirements(
        &self,
        handle: &Handle,
        held: u32,
        coordinator: &mut Coordinator,
    ) -> bool {
        let (graph, reqs) = {
            let job = handle.lock();
            (job.graph.clone(), job.requirements.clone())
        };
        let (_, _, free) = self.registry.totals();
        let Some(target) = requirements::fit(&graph, &reqs, held + free) else {
            tracing::warn!(
                "The resource requirements of job {} do not fit the slots; it keeps its parallelism.",
                graph.name
            );
            return false;
        };
        if graph.vertices.iter().all(|v| target.get(&v.id) == Some(&v.parallelism)) {
            return false;
        }
        let what = format!("to fit its resource requirements ({target:?})");
        if !Self::begin_rescale(handle, coordinator, "resource requirements changed".into(), &what).await {
            return false;
        }
        handle.lock().plan_vertex_parallelism(&target);
        true
    }

    /// Reactive scale-up: stops the job with a checkpoint when its share of slots grew enough
    /// and the extra slots are free. `true` once the stop is under way.
    pub(super) async fn maybe_scale_up(
        &self,
        handle: &Handle,
        r: &ReactiveSettings,
        watch: &mut ScaleUpWatch,
        coordinator: &mut Coordinator,
    ) -> bool {
        let (current, vertices) = {
            let job = handle.lock();
            (job.current_parallelism(), job.graph.vertices.len() as u32)
        };
        let desired = self.reactive_target(handle);
        let (_, _, free) = self.registry.totals();
        let fits = desired > current && free >= desired - current;
        if !watch.observe(
            r,
            current * vertices,
            if fits { desired * vertices } else { 0 },
            Instant::now(),
        ) {
            return false;
        }
        let cause = format!("{desired} slots became available to the job");
        Self::begin_rescale(
            handle,
            coordinator,
            cause,
            &format!("from parallelism {current} to {desired}"),
        )
        .await
    }

    /// Reactive: a taskmanager the attempt holds slots on is leaving (it drains as it shuts
    /// down): the job stops with a checkpoint and comes back on the slots left, instead of
    /// failing over once it is gone. `true` once the stop is under way.
    pub(super) async fn maybe_move_off(
        &self,
        handle: &Handle,
        held: &[(String, u32)],
        coordinator: &mut Coordinator,
    ) -> bool {
        let Some((leaving, _)) = held.iter().find(|(tm, _)| self.registry.is_leaving(tm)) else {
            return false;
        };
        let cause = format!("TaskManager {leaving} is shutting down");
        Self::begin_rescale(handle, coordinator, cause, "off a taskmanager that shuts down").await
    }

    /// Stops the job with a checkpoint for a rescale and records the rescale as under way;
    /// `false` when the stop cannot start.
    pub(super) async fn begin_rescale(
        handle: &Handle,
        coordinator: &mut Coordinator,
        cause: String,
        what: &str,
    ) -> bool {
        let pending = PendingRescale::now(&handle.lock(), cause);
        if !coordinator.stop_with_checkpoint().await {
            return false;
        }
        let mut job = handle.lock();
        tracing::info!(
            "Rescaling job {} ({}) {what}: stopping it with a checkpoint.",
            job.name,
            job.id
        );
        job.pending_rescale = Some(pending);
        true
    }

    /// The first time every task of an attempt runs: a rescale under way is over. It is
    /// recorded when some vertex's parallelism changed (a change of one vertex among wider ones
    /// leaves the job's parallelism as it was).
    pub(super) fn finish_rescale(handle: &Handle) {
        let mut job = handle.lock();
        let Some(pending) = job.pending_rescale.take() else {
            return;
        };
        let to = job.current_parallelism();
        let vertices: Vec<(String, u32, u32)> = job
            .vertex_parallelism()
            .into_iter()
            .filter_map(|(id, now)| {
                let before = pending.from_vertices.iter().find(|(v, _)| *v == id).map(|(_, p)| *p)?;
                (before != now).then_some((id, before, now))
            })
            .collect();
        if vertices.is_empty() {
            return;
        }
        let pause_ms = pending.since.elapsed().as_millis() as u64;
        let deploy_ms = pending.deploying.map_or(0, |d| d.elapsed().as_millis() as u64);
        let stop_ms = pause_ms.saturating_sub(deploy_ms);
        tracing::info!(
            "Job {} ({}) rescaled from parallelism {} to {to} in {pause_ms} ms ({}): stop {stop_ms} ms, deployment {deploy_ms} ms (state fetched in {} ms, opened in {} ms).",
            job.name,
            job.id,
            pending.parallelism_before(),
            pending.cause,
            pending.download_ms,
            pending.restore_ms
        );
        job.rescales.push(RescaleRecord {
            timestamp_ms: pending.timestamp_ms,
            from: pending.parallelism_before(),
            to,
            cause: pending.cause,
            pause_ms,
            stop_ms,
            deploy_ms,
            download_ms: pending.download_ms,
            restore_ms: pending.restore_ms,
            stop_checkpoint: pending.stop_checkpoint,
            prepare_ms: pending.prepare_ms,
            prefetch: pending.prefetch,
            first_record_ms: None,
            vertices,
        });
    }

    /// Each recent rescale's "first record after": from its pause's start until a subtask of
    /// its new attempt downstream of the sources took its first record (in a job of sources
    /// only: until one emitted its first), read from the heartbeat digests. Each subtask stamps
    /// its first record itself, so the figure does not depend on when its heartbeat came; an
    /// earlier stamp arriving later (another taskmanager's) replaces it. A rescale's attempt is
    /// told apart by time: its stamps fall between its deployment's start and the next
    /// rescale. Rescales older than a minute are left as they are.
    pub(super) fn note_first_record(&self, handle: &Handle) {
        let now = now_ms();
        let (id, downstream) = {
            let job = handle.lock();
            if !job
                .rescales
                .iter()
                .any(|r| now < r.timestamp_ms + FIRST_RECORD_WINDOW_MS)
            {
                return;
            }
            let g = &job.graph;
            let downstream: Vec<u32> = g
                .vertices
                .iter()
                .filter(|v| g.edges.iter().any(|e| e.target == v.index))
                .map(|v| v.index as u32)
                .collect();
            (job.id.clone(), downstream)
        };
        let stamps: Vec<u64> = self
            .registry
            .task_digests()
            .into_iter()
            .filter(|d| d.job_id == id && d.first_record_ms > 0)
            .filter(|d| downstream.is_empty() || downstream.contains(&d.vertex))
            .map(|d| d.first_record_ms)
            .collect();
        first_records_into(&mut handle.lock().rescales, &stamps, now);
    }
}

/// Sets each recent rescale's `first_record_ms` from the subtasks' first-record stamps (unix
/// ms): the earliest stamp after its deployment began (`timestamp_ms + stop_ms`) and before
/// the next rescale, counted from its pause's start; an earlier one replaces a later one.
/// Rescales older than `FIRST_RECORD_WINDOW_MS` at `now` are left as they are.
fn first_records_into(rescales: &mut [RescaleRecord], stamps: &[u64], now: u64) {
    for i in 0..rescales.len() {
        let until = rescales.get(i + 1).map_or(u64::MAX, |n| n.timestamp_ms);
        let r = &mut rescales[i];
        if now >= r.timestamp_ms + FIRST_RECORD_WINDOW_MS {
            continue;
        }
        let from = r.timestamp_ms + r.stop_ms;
        let first = stamps.iter().copied().filter(|t| (from..until).contains(t)).min();
        if let Some(t) = first {
            let ms = t.saturating_sub(r.timestamp_ms);
            if r.first_record_ms.is_none_or(|m| ms < m) {
                r.first_record_ms = Some(ms);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(timestamp_ms: u64, stop_ms: u64) -> RescaleRecord {
        RescaleRecord {
            timestamp_ms,
            from: 2,
            to: 3,
            cause: String::new(),
            pause_ms: 0,
            stop_ms,
            deploy_ms: 0,
            download_ms: 0,
            restore_ms: 0,
            stop_checkpoint: None,
            prepare_ms: None,
            prefetch: None,
            first_record_ms: None,
            vertices: Vec::new(),
        }
    }

    #[test]
    fn a_rescales_first_record_is_the_earliest_stamp_of_its_own_attempt() {
        let mut rescales = vec![record(1_000, 100), record(5_000, 200)];
        // 1_050: before the first attempt's deployment; 5_100: the second rescale's stop.
        first_records_into(&mut rescales, &[1_050, 1_400, 5_100, 5_300, 1_300], 6_000);
        assert_eq!(rescales[0].first_record_ms, Some(300));
        assert_eq!(rescales[1].first_record_ms, Some(300));
        // A later heartbeat brings an earlier stamp (another taskmanager's): it replaces it.
        first_records_into(&mut rescales, &[5_250], 6_000);
        assert_eq!(rescales[1].first_record_ms, Some(250));
        // No stamp in its attempt: still unknown.
        let mut quiet = vec![record(1_000, 100)];
        first_records_into(&mut quiet, &[900, 1_050], 2_000);
        assert_eq!(quiet[0].first_record_ms, None);
        // Older than the window: left as it is.
        first_records_into(&mut quiet, &[1_200], 1_000 + FIRST_RECORD_WINDOW_MS);
        assert_eq!(quiet[0].first_record_ms, None);
    }
}
