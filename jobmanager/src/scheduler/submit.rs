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
        let id = uuid::Uuid::new_v4().simple().to_string();
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
        tokio::spawn(states::drive(self.clone(), handle, received));
        Ok(id)
    }
}
