//! The job state machine driven against a fake taskmanager (its gateway records what it is
//! asked; task states are reported by the test): deploy and finish; a config-class failure
//! fails the job without a restart; a transient one restarts it (a new attempt is deployed)
//! under the restart strategy; cancellation; a job that cannot get its slots fails with the
//! slot message after the resource wait; subtasks that report the end of their input get
//! their final checkpoint at once (not at the interval) and still show as RUNNING.

use std::sync::Arc;
use std::time::Duration;

use sluice_common::config::Configuration;
use sluice_common::failure::FailureClass;
use sluice_proto::control::{SubmitTasksRequest, TaskState, TaskStateUpdate};

use crate::resource_manager::{test_record, Gateway, RecordingGateway, Registry};
use crate::scheduler::{Scheduler, SchedulerSettings, SubmitOptions};

const JOB: &str = "name: j\nparallelism: 2\nsources:\n  - id: s\n    connector: datagen\n    schema: [{name: k, type: bigint, expr: \"seq\"}]\nsinks:\n  - {id: o, input: s, connector: blackhole}\n";

/// Five restarts, 10 ms apart.
const RESTARTS: &str = "restart-strategy.type: fixed-delay\nrestart-strategy.fixed-delay.attempts: 5\nrestart-strategy.fixed-delay.delay: 10 ms\n";

struct Cluster {
    scheduler: Scheduler,
    tm: Arc<RecordingGateway>,
}

fn cluster(config: &str, wait: Duration) -> Cluster {
    let registry = Registry::default();
    let tm = Arc::new(RecordingGateway::default());
    registry.register(test_record("a", Gateway(tm.clone())));
    let mut c = Configuration::new();
    for line in config.lines().filter(|l| !l.is_empty()) {
        let (k, v) = line.split_once(": ").unwrap();
        c = c.with(k, v);
    }
    let scheduler = Scheduler::new(
        registry,
        SchedulerSettings {
            default_parallelism: 1,
            resource_wait_timeout: wait,
            config: c,
            ha: None,
        },
    );
    Cluster { scheduler, tm }
}

impl Cluster {
    async fn submit(&self, yaml: &str) -> String {
        self.scheduler
            .submit(yaml.to_string(), "job.yaml".into(), SubmitOptions::default())
            .await
            .unwrap()
    }

    /// Waits (bounded) until job `id` is in `state`.
    async fn state_becomes(&self, id: &str, state: &str) {
        for _ in 0..200 {
            if self.scheduler.job(id).is_some_and(|j| j.state.name() == state) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "job {id} is {:?}, not {state}",
            self.scheduler.job(id).map(|j| j.state.name())
        );
    }

    /// Waits for the `n`-th deployment and returns it.
    async fn deployment(&self, n: usize) -> SubmitTasksRequest {
        for _ in 0..200 {
            if let Some(r) = self.tm.submits.lock().unwrap().get(n - 1) {
                return r.clone();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no deployment {n}");
    }

    /// Reports `state` for every subtask of deployment `d`.
    fn report(&self, d: &SubmitTasksRequest, state: TaskState, failure: Option<(FailureClass, &str)>) {
        self.report_with(d, state, failure, false);
    }

    fn report_with(
        &self,
        d: &SubmitTasksRequest,
        state: TaskState,
        failure: Option<(FailureClass, &str)>,
        end_of_input: bool,
    ) {
        for t in &d.tasks {
            self.report_one(d, (t.vertex, t.subtask), state, failure, end_of_input);
        }
    }

    /// Reports `state` for one subtask of deployment `d`.
    fn report_one(
        &self,
        d: &SubmitTasksRequest,
        (vertex, subtask): (u32, u32),
        state: TaskState,
        failure: Option<(FailureClass, &str)>,
        end_of_input: bool,
    ) {
        self.scheduler.on_task_state(&TaskStateUpdate {
            job_id: d.job_id.clone(),
            epoch: d.epoch,
            vertex,
            subtask,
            state: state as i32,
            failure: failure.map(|(_, m)| m.to_string()).unwrap_or_default(),
            failure_class: failure.map_or(0, |(c, _)| c.to_wire()),
            resource_id: "tm-a".into(),
            end_of_input,
        });
    }
}

#[tokio::test]
async fn deploys_runs_and_finishes() {
    let c = cluster("", Duration::from_secs(5));
    let id = c.submit(JOB).await;
    let d = c.deployment(1).await;
    assert_eq!(d.tasks.len(), 2, "one chained vertex at parallelism 2");
    c.report(&d, TaskState::Running, None);
    c.state_becomes(&id, "RUNNING").await;
    c.report(&d, TaskState::Finished, None);
    c.state_becomes(&id, "FINISHED").await;
}

#[tokio::test]
async fn a_config_failure_fails_the_job_without_a_restart() {
    let c = cluster(RESTARTS, Duration::from_secs(5));
    let id = c.submit(JOB).await;
    let d = c.deployment(1).await;
    c.report(&d, TaskState::Running, None);
    c.report(
        &d,
        TaskState::Failed,
        Some((FailureClass::Config, "sink path not writable")),
    );
    c.state_becomes(&id, "FAILED").await;
    let job = c.scheduler.job(&id).unwrap();
    assert_eq!(job.failure.as_deref(), Some("sink path not writable"));
    assert_eq!(job.failure_class, Some(FailureClass::Config));
    assert_eq!(c.tm.submits.lock().unwrap().len(), 1, "no second attempt");
}

#[tokio::test]
async fn a_transient_failure_restarts_the_job_in_a_new_attempt() {
    let c = cluster(RESTARTS, Duration::from_secs(5));
    let id = c.submit(JOB).await;
    let first = c.deployment(1).await;
    c.report(&first, TaskState::Running, None);
    c.report(
        &first,
        TaskState::Failed,
        Some((FailureClass::Transient, "connection reset")),
    );
    let second = c.deployment(2).await;
    assert!(second.epoch > first.epoch, "a new attempt has a newer epoch");
    // The old attempt's late reports are ignored.
    c.report(&first, TaskState::Canceled, None);
    c.report(&second, TaskState::Running, None);
    c.state_becomes(&id, "RUNNING").await;
    c.report(&second, TaskState::Finished, None);
    c.state_becomes(&id, "FINISHED").await;
}

#[tokio::test]
async fn cancel_cancels_the_attempt() {
    let c = cluster("", Duration::from_secs(5));
    let id = c.submit(JOB).await;
    let d = c.deployment(1).await;
    c.report(&d, TaskState::Running, None);
    c.state_becomes(&id, "RUNNING").await;
    c.scheduler.cancel(&id).unwrap();
    for _ in 0..200 {
        if !c.tm.cancels.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(c.tm.cancels.lock().unwrap()[0].epoch, d.epoch);
    c.report(&d, TaskState::Canceled, None);
    c.state_becomes(&id, "CANCELED").await;
}

#[tokio::test]
async fn too_few_slots_fail_after_the_resource_wait() {
    let c = cluster("", Duration::from_millis(200));
    let id = c.submit(&JOB.replace("parallelism: 2", "parallelism: 3")).await;
    c.state_becomes(&id, "FAILED").await;
    let cause = c.scheduler.job(&id).unwrap().failure.unwrap();
    assert!(
        cause.contains("the job needs 3 slots, but only 2 of 2 slots"),
        "{cause}"
    );
    assert!(c.tm.submits.lock().unwrap().is_empty());
}

#[tokio::test]
async fn the_end_of_every_input_triggers_the_final_checkpoint_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "execution.checkpointing.interval: 1 h\nexecution.checkpointing.dir: file://{}\n",
        dir.path().display()
    );
    let c = cluster(&config, Duration::from_secs(5));
    let id = c.submit(JOB).await;
    let d = c.deployment(1).await;
    c.report(&d, TaskState::Running, None);
    c.state_becomes(&id, "RUNNING").await;
    let triggers = || c.tm.triggers.lock().unwrap().len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(triggers(), 0, "the interval (1 h) has not passed");

    c.report_with(&d, TaskState::Running, None, true);
    for _ in 0..200 {
        if triggers() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        triggers(),
        1,
        "the final checkpoint is triggered without waiting for the interval"
    );
    let job = c.scheduler.job(&id).unwrap();
    assert_eq!(job.vertex_status(0), "RUNNING", "a finishing subtask shows as RUNNING");
    assert_eq!(job.task_counts(None).get("RUNNING"), Some(&2));
}

#[tokio::test]
async fn a_task_that_failed_on_a_broken_channel_does_not_hide_the_root_cause() {
    let c = cluster(RESTARTS, Duration::from_secs(5));
    let id = c.submit(JOB).await;
    let d = c.deployment(1).await;
    c.report(&d, TaskState::Running, None);
    c.state_becomes(&id, "RUNNING").await;
    // The producer notices first that its consumer is gone; the consumer's own failure (the
    // cause) arrives after it.
    let fail = |subtask: u32, class: FailureClass, message: &str| {
        c.report_one(&d, (0, subtask), TaskState::Failed, Some((class, message)), false)
    };
    fail(0, FailureClass::Transient, sluice_common::failure::CONSUMER_GONE);
    fail(
        1,
        FailureClass::Config,
        "the window's state exceeds the heap budget of its slot",
    );
    c.state_becomes(&id, "FAILED").await;
    let job = c.scheduler.job(&id).unwrap();
    assert_eq!(
        job.failure.as_deref(),
        Some("the window's state exceeds the heap budget of its slot")
    );
    assert_eq!(job.failure_class, Some(FailureClass::Config), "not restarted");
    assert_eq!(job.failure_task, Some((0, 1)));
}
