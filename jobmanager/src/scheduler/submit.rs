//! Submitting a job: the job file compiled into a JobGraph at the parallelism asked for, the
//! savepoint or retained checkpoint it starts from read and checked (max parallelism, state of
//! operators the job no longer has), its effective configuration (cluster, job file `config:`,
//! the submitter's `-D`), and its lifecycle started.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use sluice_common::config::options::*;
use sluice_common::job::GraphOptions;
use sluice_common::state::assignment::check_max_parallelism;
use sluice_common::storage::{location_url, open_location};
use sluice_connectors::registry;
use sluice_frontend::compile_job;
use tokio::sync::Notify;

use super::job::{Job, JobState, RestoreSource};
use crate::resource_manager::now_ms;

use super::*;

impl Scheduler {
    /// Reads the snapshot a job starts from: `path` is its directory or its `_metadata`.
    pub(super) async fn read_snapshot(
        &self,
        path: &str,
    ) -> Result<(String, sluice_common::proto::checkpoint::CheckpointMetadata), String> {
        let url = location_url(path.trim_end_matches('/').trim_end_matches("/_metadata"));
        // Opening a file:// location creates its directory: a missing savepoint must not.
        if let Some(dir) = url.strip_prefix("file://") {
            if !tokio::fs::try_exists(dir).await.unwrap_or(false) {
                return Err(format!(
                    "Cannot restore from the savepoint at {url}: {dir} does not exist"
                ));
            }
        }
        let metadata = open_location(&url, &self.settings.config)?
            .read_metadata()
            .await
            .map_err(|e| format!("Cannot restore from the savepoint at {url}: {e}"))?;
        Ok((url, metadata))
    }

    /// Compiles and starts a job; the error text names file, line and column.
    pub(crate) async fn submit(&self, yaml: String, file: String, opts: SubmitOptions) -> Result<String, String> {
        let restore = match &opts.savepoint_path {
            Some(p) => {
                let (url, metadata) = self.read_snapshot(p).await?;
                Some(RestoreSource {
                    url,
                    metadata,
                    allow_non_restored_state: opts.allow_non_restored_state,
                })
            }
            None => None,
        };
        let options = GraphOptions {
            default_parallelism: self.settings.default_parallelism,
            parallelism: opts.parallelism,
            node_parallelism: BTreeMap::new(),
            restored_max_parallelism: restore.as_ref().map(|r| r.metadata.max_parallelism),
            uniform: false,
            cluster_config: Some(std::sync::Arc::new(
                self.settings.config.overlaid(opts.dynamic.iter().map(|(k, v)| (k, v))),
            )),
        };
        if let Some(r) = &restore {
            // Flink's check first: the graph's own would name the max parallelism it adopted.
            let unbounded = GraphOptions {
                restored_max_parallelism: Some(sluice_common::key_groups::UPPER_BOUND_MAX_PARALLELISM),
                ..options.clone()
            };
            let probe = compile_job(&yaml, &file, &unbounded, registry()).map_err(|e| e.to_string())?;
            for v in &probe.vertices {
                check_max_parallelism(&r.metadata, &v.name, v.parallelism)?;
            }
        }
        let graph = compile_job(&yaml, &file, &options, registry()).map_err(|e| e.to_string())?;
        // The job's effective configuration: the cluster's, the job file's `config:` on top,
        // then the submitter's `-D` flags.
        let config = self
            .settings
            .config
            .overlaid(graph.config.iter().chain(&opts.dynamic).map(|(k, v)| (k, v)));
        cfg(config.check_constraints())?;
        let cp = checkpoint_settings(&config)?;
        registry()
            .check_sinks_checkpointing(&graph, cp.interval)
            .map_err(|e| e.in_file(&file).to_string())?;
        let reactive = cfg(config.get_opt(&SCHEDULER_MODE))?.is_some();
        if reactive && (cp.interval.is_none() || cp.dir.is_none()) {
            return Err("Reactive mode (scheduler-mode: reactive) rescales from checkpoints: set execution.checkpointing.interval and execution.checkpointing.dir.".into());
        }
        let autoscaler = crate::autoscaler::AutoscalerSettings::from_config(&config)?;
        if autoscaler.is_some() && reactive {
            return Err("The autoscaler (job.autoscaler.enabled) decides each vertex's parallelism; in reactive mode (scheduler-mode: reactive) the parallelism follows the slots. Use one of them.".into());
        }
        if autoscaler.is_some() && cp.dir.is_none() {
            return Err("The autoscaler (job.autoscaler.enabled) rescales through a checkpoint: set execution.checkpointing.dir.".into());
        }
        if let Some(r) = &restore {
            if !r.allow_non_restored_state {
                for op in &r.metadata.operators {
                    if !graph.nodes.iter().any(|n| n.uid == op.uid) {
                        return Err(format!(
                            "Failed to rollback to checkpoint/savepoint {}. Cannot map checkpoint/savepoint state for operator {} to the new program, because the operator is not available in the new program. If you want to allow to skip this, you can set the --allowNonRestoredState option on the CLI.",
                            r.url, op.uid
                        ));
                    }
                }
            }
        }
        let id = opts
            .job_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
        if self.handles().contains_key(&id) {
            return Err(format!("Job {id} already exists."));
        }
        if let Some(ha) = &self.settings.ha {
            if !ha.leadership.is_valid() {
                return Err("This jobmanager no longer holds the leader lease; submit to the current leader.".into());
            }
            let record = crate::ha::JobRecord {
                id: id.clone(),
                yaml: yaml.clone(),
                file: file.clone(),
                options: SubmitOptions {
                    job_id: Some(id.clone()),
                    ..opts.clone()
                },
            };
            ha.jobs
                .put(&record)
                .await
                .map_err(|e| format!("Cannot keep job {id} in the HA store (high-availability.storageDir): {e}"))?;
        }
        let now = now_ms();
        let mut timestamps = BTreeMap::new();
        timestamps.insert(JobState::Created.name(), now);
        let job = Job {
            id: id.clone(),
            name: graph.name.clone(),
            yaml,
            file,
            parallelism: opts.parallelism,
            graph: Arc::new(graph),
            state: JobState::Created,
            timestamps,
            start_time: now,
            end_time: None,
            epoch: 0,
            tasks: HashMap::new(),
            failure: None,
            failure_task: None,
            exceptions: Vec::new(),
            failure_class: None,
            waiting: None,
            config,
            checkpoints: Arc::default(),
            checkpoint_history: Arc::default(),
            restore,
            reactive,
            rescales: Vec::new(),
            pending_rescale: None,
            requirements: Default::default(),
            node_parallelism: BTreeMap::new(),
            autoscaler: autoscaler.map(crate::autoscaler::JobAutoscaler::new),
        };
        tracing::info!(
            "Received job {} ({id}) needing {} slots.",
            job.name,
            job.graph.slots_needed()
        );
        let (commands, received) = mpsc::unbounded_channel();
        let handle = Arc::new(Handle {
            job: Mutex::new(job),
            changed: Notify::new(),
            commands,
        });
        self.handles().insert(id.clone(), handle.clone());
        let driver = tokio::spawn(states::drive(self.clone(), handle.clone(), received));
        // A panic in the job's task must not leave it CREATED or RUNNING with nobody driving it.
        tokio::spawn(async move {
            if let Err(e) = driver.await {
                if e.is_panic() {
                    let p = e.into_panic();
                    let text = p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    tracing::error!("Job {}: its scheduler task panicked: {text}", handle.lock().id);
                    Scheduler::fail(&handle, format!("Internal error in the jobmanager's scheduler: {text}"));
                }
            }
        });
        Ok(id)
    }

    /// A new leader's start: submits every job the HA store keeps under its own id; each then
    /// resumes from its latest completed checkpoint once the slots are there. A job that does
    /// not submit stays in the store (a later leader tries again) and is logged.
    pub(crate) async fn recover_jobs(&self) -> Result<usize, String> {
        let Some(ha) = &self.settings.ha else {
            return Ok(0);
        };
        let mut recovered = 0;
        for r in ha.jobs.list().await? {
            let opts = SubmitOptions {
                job_id: Some(r.id.clone()),
                ..r.options
            };
            match self.submit(r.yaml, r.file, opts).await {
                Ok(_) => {
                    tracing::info!("Recovered job {} from the HA store.", r.id);
                    recovered += 1;
                }
                Err(e) => tracing::error!("Cannot recover job {} from the HA store: {e}", r.id),
            }
        }
        Ok(recovered)
    }

    /// A job reached a globally terminal state: no leader recovers it again.
    pub(super) async fn forget_job(&self, handle: &Handle) {
        if let Some(ha) = &self.settings.ha {
            let id = handle.lock().id.clone();
            // A deposed leader's view of the job is stale: the new leader owns its record.
            if !ha.leadership.is_valid() {
                return;
            }
            if let Err(e) = ha.jobs.remove(&id).await {
                tracing::warn!("Cannot remove the ended job {id} from the HA store: {e}");
            }
        }
    }
}
