//! The checkpoint coordinator against a fake taskmanager gateway: a periodic checkpoint is
//! triggered at every taskmanager, completes with the last acknowledgement (its `_metadata`
//! written), and is announced; the job's final checkpoint (every subtask past the end of its
//! input) is announced as such; a declined checkpoint is announced as aborted; declines beyond
//! the tolerance make the job fail; once every subtask's input ended, the final checkpoint is
//! triggered without waiting for the interval; a checkpoint holds the split enumerators' states
//! from its trigger; with standby copies, a completed periodic checkpoint (not a stop) asks the
//! taskmanagers to fetch its state.

use std::sync::Arc;
use std::time::Duration;

use sluice_common::config::Configuration;
use sluice_common::job::GraphOptions;
use sluice_connectors::{RestoredEnumerators, SourceEnumerators};
use sluice_frontend::compile_job;
use sluice_proto::control::{CheckpointAck, CheckpointDecline, NotifyCheckpointRequest};

use super::coordinator::{CheckpointHistory, CheckpointSettings, Coordinator};
use crate::resource_manager::{test_record, Gateway, RecordingGateway};

const JOB: &str = "name: j\nparallelism: 2\nsources:\n  - id: s\n    connector: datagen\n    schema: [{name: k, type: bigint, expr: \"seq\"}]\nsinks:\n  - {id: o, input: s, connector: blackhole}\n";

struct Fixture {
    coordinator: Coordinator,
    gateway: Arc<RecordingGateway>,
    history: Arc<std::sync::Mutex<CheckpointHistory>>,
    _dir: tempfile::TempDir,
}

fn fixture(tolerable_failures: u32) -> Fixture {
    fixture_every(tolerable_failures, Duration::ZERO)
}

/// Which of the triggers so far stop the tasks, in order.
fn stops(f: &Fixture) -> Vec<bool> {
    f.gateway.triggers.lock().unwrap().iter().map(|t| t.stop).collect()
}

fn prepares(f: &Fixture) -> Vec<bool> {
    f.gateway
        .triggers
        .lock()
        .unwrap()
        .iter()
        .map(|t| t.prepare_stop)
        .collect()
}

fn fixture_every(tolerable_failures: u32, interval: Duration) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let graph =
        Arc::new(compile_job(JOB, "job.yaml", &GraphOptions::default(), sluice_connectors::registry()).unwrap());
    let gateway = Arc::new(RecordingGateway::default());
    let settings = CheckpointSettings {
        interval: Some(interval),
        timeout: Duration::from_secs(60),
        min_pause: Duration::ZERO,
        max_concurrent: 1,
        tolerable_failures,
        retained: 1,
        dir: Some(format!("file://{}", dir.path().display())),
        savepoint_dir: None,
        prepare_stop: false,
        prefetch_before_stop: false,
        standby: false,
    };
    let history = Arc::default();
    let coordinator = Coordinator::new(
        settings,
        Configuration::new(),
        "job-1".into(),
        7,
        graph,
        vec![test_record("a", Gateway(gateway.clone()))],
        Arc::default(),
        Arc::clone(&history),
    );
    Fixture {
        coordinator,
        gateway,
        history,
        _dir: dir,
    }
}

impl Fixture {
    /// The newest completion notice the taskmanager received.
    fn last_notice(&self) -> NotifyCheckpointRequest {
        self.gateway
            .notices
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("a completion notice")
    }
}

fn ack(id: u64, subtask: u32, end_of_input: bool) -> CheckpointAck {
    CheckpointAck {
        job_id: "job-1".into(),
        epoch: 7,
        checkpoint_id: id,
        vertex: 0,
        subtask,
        end_of_input,
        ..Default::default()
    }
}

#[tokio::test]
async fn a_checkpoint_completes_with_its_last_ack_and_the_final_one_says_so() {
    let mut f = fixture(0);
    f.coordinator.tick(true, false, Vec::new()).await;
    let trigger = f.gateway.triggers.lock().unwrap().last().cloned().expect("a trigger");
    assert_eq!((trigger.checkpoint_id, trigger.epoch), (1, 7));

    // One vertex (source and sink chained) at parallelism 2: two acks complete it.
    f.coordinator.on_ack(ack(1, 0, false)).await;
    assert!(
        f.gateway.notices.lock().unwrap().is_empty(),
        "not complete after one ack"
    );
    f.coordinator.on_ack(ack(1, 1, true)).await;
    let notice = f.last_notice();
    assert_eq!(notice.checkpoint_id, 1);
    assert!(
        !notice.end_of_input,
        "one subtask was still running: not the job's final checkpoint"
    );
    let metadata = std::fs::read_dir(f._dir.path().join("job-1"))
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| e.path().join("_metadata").exists());
    assert!(metadata, "chk-1/_metadata written");
    // Held for a restart, which restores it without reading the storage.
    let (id, url, bytes) = f.history.lock().unwrap().latest.clone().expect("the latest completed");
    assert!(id == 1 && url.ends_with("chk-1"), "{id} {url}");
    assert_eq!(
        sluice_common::storage::decode_metadata(&bytes).unwrap().checkpoint_id,
        1
    );

    // Every subtask snapshotted checkpoint 2 after the end of its input: the final one.
    f.coordinator.tick(true, false, Vec::new()).await;
    f.coordinator.on_ack(ack(2, 0, true)).await;
    f.coordinator.on_ack(ack(2, 1, true)).await;
    let notice = f.last_notice();
    assert_eq!((notice.checkpoint_id, notice.end_of_input), (2, true));
    assert!(f.coordinator.fatal.is_none());
    // After the job's final checkpoint nothing more is triggered (its tasks are ending).
    let triggers = f.gateway.triggers.lock().unwrap().len();
    f.coordinator.tick(true, false, Vec::new()).await;
    assert_eq!(f.gateway.triggers.lock().unwrap().len(), triggers);
}

#[tokio::test]
async fn declines_beyond_the_tolerance_fail_the_job() {
    let mut f = fixture(1);
    for id in 1..=2u64 {
        f.coordinator.tick(true, false, Vec::new()).await;
        f.coordinator.on_decline(&CheckpointDecline {
            job_id: "job-1".into(),
            epoch: 7,
            checkpoint_id: id,
            vertex: 0,
            subtask: 1,
            reason: "disk full".into(),
        });
    }
    // Each declined checkpoint is announced as aborted (at the tick after the decline).
    f.coordinator.tick(true, false, Vec::new()).await;
    let aborted: Vec<u64> = f
        .gateway
        .aborts
        .lock()
        .unwrap()
        .iter()
        .map(|n| n.checkpoint_id)
        .collect();
    assert_eq!(aborted, vec![1, 2]);
    let fatal = f.coordinator.fatal.clone().expect("the job must fail");
    assert!(
        fatal.contains("tolerable failure threshold (1)") && fatal.contains("disk full"),
        "{fatal}"
    );
    // A stale attempt's acknowledgement is ignored.
    f.coordinator.tick(true, false, Vec::new()).await;
    let mut stale = ack(3, 0, false);
    stale.epoch = 6;
    f.coordinator.on_ack(stale).await;
    assert!(f.gateway.notices.lock().unwrap().is_empty());
}

#[tokio::test]
async fn the_final_checkpoint_does_not_wait_for_the_interval() {
    let mut f = fixture_every(0, Duration::from_secs(3600));
    let triggers = |f: &Fixture| f.gateway.triggers.lock().unwrap().len();
    f.coordinator.tick(true, false, Vec::new()).await;
    assert_eq!(triggers(&f), 0, "the interval has not passed");

    // Every subtask reported the end of its input: the final checkpoint starts now, once.
    f.coordinator.tick(true, true, Vec::new()).await;
    assert_eq!(triggers(&f), 1);
    f.coordinator.tick(true, true, Vec::new()).await;
    assert_eq!(triggers(&f), 1, "not again while it is pending");
    f.coordinator.on_ack(ack(1, 0, true)).await;
    f.coordinator.on_ack(ack(1, 1, true)).await;
    let notice = f.last_notice();
    assert_eq!((notice.checkpoint_id, notice.end_of_input), (1, true));
    f.coordinator.tick(true, true, Vec::new()).await;
    assert_eq!(triggers(&f), 1, "nothing after the job's final checkpoint");
}

#[tokio::test]
async fn a_checkpoint_some_subtasks_took_while_running_is_followed_by_the_final_one() {
    let mut f = fixture_every(0, Duration::from_secs(3600));
    let triggers = |f: &Fixture| f.gateway.triggers.lock().unwrap().len();
    f.coordinator.tick(true, true, Vec::new()).await;
    // Subtask 0 had snapshotted checkpoint 1 from its barrier before its input ended.
    f.coordinator.on_ack(ack(1, 0, false)).await;
    f.coordinator.on_ack(ack(1, 1, true)).await;
    assert!(!f.last_notice().end_of_input);
    f.coordinator.tick(true, true, Vec::new()).await;
    assert_eq!(triggers(&f), 2, "the final checkpoint follows at once");
}

#[tokio::test]
async fn a_checkpoint_holds_the_split_enumerators_state_from_its_trigger() {
    let f = fixture(0);
    let graph = compile_job(JOB, "job.yaml", &GraphOptions::default(), sluice_connectors::registry()).unwrap();
    let (enumerators, dealt) =
        SourceEnumerators::start(&graph, sluice_connectors::registry(), &Default::default()).unwrap();
    assert!(!dealt.is_empty());
    let mut f = Fixture {
        coordinator: f
            .coordinator
            .with_enumerators(Arc::new(std::sync::Mutex::new(enumerators))),
        ..f
    };
    f.coordinator.tick(true, false, Vec::new()).await;
    f.coordinator.on_ack(ack(1, 0, false)).await;
    f.coordinator.on_ack(ack(1, 1, false)).await;
    let bytes = std::fs::read(f._dir.path().join("job-1/chk-1/_metadata")).unwrap();
    let metadata = sluice_common::storage::decode_metadata(&bytes).unwrap();
    assert_eq!(metadata.enumerators.len(), 1);
    assert_eq!(metadata.enumerators[0].uid, graph.nodes[0].uid);
    // Restored from it, the enumerator deals nothing again: the readers hold every split.
    let restored = RestoredEnumerators {
        states: metadata.enumerators.into_iter().map(|e| (e.uid, e.state)).collect(),
        restored_uids: Default::default(),
    };
    let (_, dealt) = SourceEnumerators::start(&graph, sluice_connectors::registry(), &restored).unwrap();
    assert!(dealt.is_empty(), "{dealt:?}");
}

#[tokio::test]
async fn a_prepared_stop_waits_for_a_checkpoint_taken_while_running() {
    let mut f = fixture_every(0, Duration::from_secs(3600));
    f.coordinator.settings.prepare_stop = true;
    assert!(f.coordinator.stop_with_checkpoint().await);
    assert_eq!(stops(&f), vec![false], "first a checkpoint the running tasks take");
    assert!(f.coordinator.stopping() && f.coordinator.stop_triggered.is_none());
    f.coordinator.tick(true, false, Vec::new()).await;
    assert_eq!(stops(&f), vec![false], "the stop waits while it is pending");
    complete(&mut f, 1).await;
    assert_eq!(stops(&f), vec![false, false], "then the second round");
    complete(&mut f, 2).await;
    assert_eq!(stops(&f), vec![false, false, true], "once it completed, the stop");
    assert_eq!(
        prepares(&f),
        vec![true, true, false],
        "both rounds hold compactions until the stop"
    );
    let t = f.coordinator.stop_triggered.expect("the stop's trigger");
    assert!(t.prepared_ms.is_some(), "{t:?}");
    f.coordinator.on_ack(ack(3, 0, false)).await;
    f.coordinator.on_ack(ack(3, 1, false)).await;
    assert!(f.coordinator.stopped && f.coordinator.stopped_with.is_some());
}

/// Both subtasks acknowledge checkpoint `id`, then a tick.
async fn complete(f: &mut Fixture, id: u64) {
    f.coordinator.on_ack(ack(id, 0, false)).await;
    f.coordinator.on_ack(ack(id, 1, false)).await;
    f.coordinator.tick(true, false, Vec::new()).await;
}

#[tokio::test]
async fn a_stop_asked_during_a_periodic_checkpoint_prepares_after_it() {
    let mut f = fixture_every(0, Duration::from_millis(1));
    f.coordinator.settings.prepare_stop = true;
    let mut f = tick_until(f, 1).await;
    assert_eq!(prepares(&f), vec![false], "a periodic checkpoint is under way");
    assert!(f.coordinator.stop_with_checkpoint().await);
    assert_eq!(stops(&f), vec![false], "the stop waits for it");
    complete(&mut f, 1).await;
    complete(&mut f, 2).await;
    assert_eq!(
        prepares(&f),
        vec![false, true, true],
        "then the two rounds that hold compactions"
    );
    assert_eq!(stops(&f), vec![false, false, false]);
    complete(&mut f, 3).await;
    assert_eq!(stops(&f), vec![false, false, false, true], "and after them, the stop");
}

#[tokio::test]
async fn a_prepared_stop_waits_for_the_prefetch_of_its_checkpoints_state() {
    let mut f = fixture_every(0, Duration::from_secs(3600));
    f.coordinator.settings.prepare_stop = true;
    f.coordinator.settings.prefetch_before_stop = true;
    assert!(f.coordinator.stop_with_checkpoint().await);
    complete(&mut f, 1).await;
    assert!(f.coordinator.prepared.is_none(), "the first round is not prefetched");
    complete(&mut f, 2).await;
    assert_eq!(
        stops(&f),
        vec![false, false],
        "the completed checkpoint waits to be taken"
    );
    let prepared = f.coordinator.prepared.take().expect("the prepared checkpoint");
    assert_eq!(prepared.metadata.checkpoint_id, 2);
    assert!(prepared.url.ends_with("chk-2"), "{}", prepared.url);
    let (done, wait) = tokio::sync::oneshot::channel::<()>();
    f.coordinator.hold_stop(tokio::spawn(async move {
        let _ = wait.await;
    }));
    f.coordinator.tick(true, false, Vec::new()).await;
    assert_eq!(stops(&f), vec![false, false], "the stop waits for the prefetch");
    assert!(f.coordinator.stopping());
    let _ = done.send(());
    let f = tick_until(f, 3).await;
    assert_eq!(stops(&f), vec![false, false, true], "then the stop");
}

/// Ticks until `n` checkpoints were triggered (at most a second).
async fn tick_until(mut f: Fixture, n: usize) -> Fixture {
    for _ in 0..100 {
        f.coordinator.tick(true, false, Vec::new()).await;
        if stops(&f).len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    f
}

#[tokio::test]
async fn a_prepared_stop_whose_checkpoint_fails_stops_anyway() {
    let mut f = fixture_every(5, Duration::from_secs(3600));
    f.coordinator.settings.prepare_stop = true;
    assert!(f.coordinator.stop_with_checkpoint().await);
    f.coordinator.on_decline(&CheckpointDecline {
        job_id: "job-1".into(),
        epoch: 7,
        checkpoint_id: 1,
        vertex: 0,
        subtask: 0,
        reason: "disk full".into(),
    });
    f.coordinator.tick(true, false, Vec::new()).await;
    assert_eq!(stops(&f), vec![false, true]);
}

#[tokio::test]
async fn an_unprepared_stop_stops_at_once() {
    let mut f = fixture_every(0, Duration::from_secs(3600));
    assert!(f.coordinator.stop_with_checkpoint().await);
    assert_eq!(stops(&f), vec![true]);
    assert!(f.coordinator.stop_triggered.is_some_and(|t| t.prepared_ms.is_none()));
}

#[tokio::test]
async fn an_unprepared_stop_asked_during_a_periodic_checkpoint_follows_it() {
    let f = fixture_every(0, Duration::from_millis(1));
    let mut f = tick_until(f, 1).await;
    f.coordinator.settings.prefetch_before_stop = true;
    assert!(f.coordinator.stop_with_checkpoint().await);
    assert_eq!(stops(&f), vec![false], "the stop waits for the checkpoint under way");
    assert!(f.coordinator.stopping());
    complete(&mut f, 1).await;
    assert_eq!(stops(&f), vec![false, true], "then it stops, with no prepare round");
    assert!(
        f.coordinator.prepared.is_none(),
        "nothing to prefetch without a prepared stop"
    );
    assert!(f.coordinator.stop_triggered.is_some_and(|t| t.prepared_ms.is_some()));
}

#[tokio::test]
async fn a_completed_periodic_checkpoint_starts_a_standby_round_and_a_stop_none() {
    let mut f = fixture(0);
    f.coordinator.settings.standby = true;
    let config = std::collections::HashMap::from([("state.backend.type".to_string(), "rocksdb".to_string())]);
    let mut f = Fixture {
        coordinator: f.coordinator.with_standby(config),
        ..f
    };
    let rounds = |f: &Fixture| f.gateway.prefetches.lock().unwrap().clone();
    f.coordinator.tick(true, false, Vec::new()).await;
    f.coordinator.on_ack(ack(1, 0, false)).await;
    f.coordinator.on_ack(ack(1, 1, false)).await;
    // The round runs on its own task: wait for it (at most a second).
    for _ in 0..100 {
        if !rounds(&f).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let sent = rounds(&f);
    assert_eq!(sent.len(), 1, "one round for checkpoint 1");
    let r = &sent[0];
    assert!(r.standby && r.url.ends_with("chk-1"), "{r:?}");
    assert_eq!(
        r.job_config.get("state.backend.type").map(String::as_str),
        Some("rocksdb")
    );
    // Every subtask of every operator: source and sink, two each.
    let mut tasks: Vec<(String, u32, u32)> = r
        .tasks
        .iter()
        .map(|t| (t.node_uid.clone(), t.parallelism, t.subtask))
        .collect();
    tasks.sort();
    assert_eq!(tasks.len(), 4, "{tasks:?}");
    assert!(tasks.iter().all(|t| t.1 == 2));
    // A stop's checkpoint gets none: the next attempt restores from it in the pause.
    assert!(f.coordinator.stop_with_checkpoint().await);
    f.coordinator.on_ack(ack(2, 0, false)).await;
    f.coordinator.on_ack(ack(2, 1, false)).await;
    assert!(f.coordinator.stopped);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(rounds(&f).len(), 1, "no round for the stop");
}
