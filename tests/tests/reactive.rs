//! Reactive mode end to end, with real processes: a keyed windowed job with an exactly-once file
//! sink follows taskmanagers joining (scale-up by stop-with-checkpoint) and leaving, by SIGTERM
//! (the taskmanager drains: scale-down by stop-with-checkpoint) and SIGKILL (scale-down by
//! failover) in turn, in alternating rounds, and its committed output equals the reference. Every rescale's pause is printed. Two reactive jobs in one session cluster
//! both scale up when a taskmanager joins.

use std::time::Duration;

use sluice_tests::windowed_job::WindowedJob;
use sluice_tests::{wait_for, wait_parallelism, Cluster, Daemon};

fn reactive_config(checkpoints: &std::path::Path) -> String {
    format!(
        "scheduler-mode: reactive\n\
         execution.checkpointing.dir: file://{}\nexecution.checkpointing.interval: 1 s\n\
         execution.checkpointing.num-retained: 2\n\
         restart-strategy.type: fixed-delay\nrestart-strategy.fixed-delay.attempts: 1000\n\
         restart-strategy.fixed-delay.delay: 100 ms\n\
         taskmanager.graceful-shutdown.timeout: 30 s\n",
        checkpoints.display()
    )
}

#[test]
fn reactive_job_follows_taskmanagers_with_exact_results() {
    follow_taskmanagers("state.backend.type: hashmap\n", 400_000, 5);
}

/// RocksDB with incremental checkpoints and local recovery: a rescaled subtask opens the old
/// subtask's files that overlap it most in place, clips them to its key groups and ingests the
/// rest (`state/rocks/`); every rescale records its phases.
#[test]
fn reactive_rocksdb_job_rescales_from_its_files_with_exact_results() {
    let history = follow_taskmanagers(
        "state.backend.type: rocksdb\nexecution.checkpointing.incremental: true\n\
         execution.checkpointing.local-backup.enabled: true\nexecution.state-recovery.from-local: true\n\
         state.backend.rocksdb.rescaling.use-delete-files-in-range: true\nheartbeat.interval: 500 ms\n\
         state.backend.rocksdb.rescaling.prefetch: true\n",
        200_000,
        2,
    );
    // The first record after a rescale comes with a heartbeat of its attempt: the last
    // attempt ran to the job's end, so its record has one.
    let last_first_record = history.last().map(|r| &r["phases"]["first_record_ms"]);
    assert!(
        last_first_record.is_some_and(|v| v.is_u64()),
        "the last rescale's first record after: {history:?}"
    );
    for r in &history {
        let phases = &r["phases"];
        for phase in ["stop_ms", "deploy_ms", "download_ms", "restore_ms"] {
            assert!(phases[phase].is_u64(), "{phase} in {r}");
        }
        let (pause, stop, deploy) = (
            r["pause_ms"].as_u64().unwrap_or(0),
            phases["stop_ms"].as_u64().unwrap_or(0),
            phases["deploy_ms"].as_u64().unwrap_or(0),
        );
        assert_eq!(pause, stop + deploy, "{r}");
        // The taskmanagers' own figures fall inside the deployment that waited for them.
        let slowest = ["download_ms", "restore_ms"]
            .iter()
            .map(|p| phases[*p].as_u64().unwrap_or(u64::MAX))
            .max()
            .unwrap_or(u64::MAX);
        assert!(slowest <= deploy, "download and restore inside the deployment: {r}");
        // The new attempt's first record came after its deployment began, and (the source
        // runs on) within seconds of every task running: not a stamp of another attempt.
        if let Some(first) = phases["first_record_ms"].as_u64() {
            assert!(first >= stop, "first record after the deployment's start: {r}");
            let pause = r["pause_ms"].as_u64().unwrap_or(0);
            assert!(first <= pause + 30_000, "first record soon after the pause: {r}");
        }
        // A scale-up stops with a checkpoint, unless a failure interrupted it (the record
        // then says so and the job restarted from its latest checkpoint).
        let interrupted = r["cause"]
            .as_str()
            .is_some_and(|c| c.contains("interrupted by a failure"));
        if r["to_parallelism"].as_u64() > r["from_parallelism"].as_u64() && !interrupted {
            assert!(
                phases["stop_checkpoint_ms"].is_u64() && phases["stop_checkpoint_uploaded_bytes"].is_u64(),
                "a scale-up stops with a checkpoint: {r}"
            );
            // With incremental checkpoints, after one taken while the job ran, whose state
            // the next attempt's taskmanagers prefetched (local recovery).
            assert!(phases["prepare_checkpoint_ms"].is_u64(), "a prepared stop: {r}");
            assert!(phases["prefetch_ms"].is_u64(), "prefetched before the stop: {r}");
        }
    }
    // Round 1's SIGTERM: the job rescaled off the leaving taskmanager the same way.
    let graceful: Vec<&serde_json::Value> = history
        .iter()
        .filter(|r| r["cause"].as_str().is_some_and(|c| c.contains("is shutting down")))
        .collect();
    assert_eq!(graceful.len(), 1, "one scale-down by SIGTERM: {history:?}");
    let phases = &graceful[0]["phases"];
    for phase in ["stop_checkpoint_ms", "prepare_checkpoint_ms", "prefetch_ms"] {
        assert!(phases[phase].is_u64(), "{phase} in {}", graceful[0]);
    }
    assert!(graceful[0]["to_parallelism"].as_u64() < graceful[0]["from_parallelism"].as_u64());
}

/// A keyed windowed job of `rows` rows follows `rounds` rounds of a third taskmanager joining
/// and the oldest being killed; its output is exact. Returns the rescale history.
fn follow_taskmanagers(backend: &str, rows: i64, rounds: usize) -> Vec<serde_json::Value> {
    let job = WindowedJob {
        rows,
        keys: 50,
        splits: 6,
    };
    let checkpoints = tempfile::tempdir().expect("dir");
    let local = tempfile::tempdir().expect("dir");
    let mut cluster = Cluster::new(&format!(
        "{}{backend}taskmanager.state.local.root-dirs: {}\n",
        reactive_config(checkpoints.path()),
        local.path().display()
    ));
    let one_slot = ["-D", "taskmanager.numberOfTaskSlots=1"];
    let (_jm, _) = cluster.start_jobmanager();
    let mut tms: Vec<Daemon> = (0..2).map(|_| cluster.start_taskmanager(&one_slot).0).collect();
    cluster.wait_taskmanagers(2, Duration::from_secs(20));
    let out = cluster.config_dir().join("out");
    let id = cluster.submit(&job.yaml(&out, 8_000, 1), "job.yaml");
    wait_parallelism(cluster.rest_port, &id, 2, Duration::from_secs(30));

    for round in 1..=rounds {
        // Up: a third taskmanager joins.
        tms.push(cluster.start_taskmanager(&one_slot).0);
        wait_parallelism(cluster.rest_port, &id, 3, Duration::from_secs(30));
        // The taskmanager that joined dropped the local state of the one killed last round.
        let roots = std::fs::read_dir(local.path()).map_or(0, |d| d.count());
        assert_eq!(roots, tms.len(), "one local state directory per live taskmanager");
        let done = cluster.completed_checkpoints(&id);
        wait_for(Duration::from_secs(20), "a checkpoint at parallelism 3", || {
            (cluster.completed_checkpoints(&id) > done).then_some(())
        });
        // Down: the oldest taskmanager leaves, by SIGTERM in odd rounds (its jobs rescale off
        // it before it exits 0), else killed.
        let mut leaving = tms.remove(0);
        if round % 2 == 1 {
            leaving.signal(libc::SIGTERM);
            let status = leaving.wait_exit(Duration::from_secs(45));
            assert!(
                status.success(),
                "taskmanager exit status {status:?}\n{}",
                leaving.log()
            );
            assert!(leaving.log().contains("moved off"), "{}", leaving.log());
        } else {
            leaving.kill9();
        }
        wait_parallelism(cluster.rest_port, &id, 2, Duration::from_secs(30));
        let done = cluster.completed_checkpoints(&id);
        wait_for(Duration::from_secs(20), "a checkpoint at parallelism 2", || {
            (cluster.completed_checkpoints(&id) > done).then_some(())
        });
        println!("round {round}: 2 → 3 → 2");
    }
    let state = cluster.rest(&format!("/jobs/{id}")).expect("job");
    assert_eq!(state["state"], "RUNNING", "the source must outlast the rounds: {state}");
    cluster.wait_job_state(&id, "FINISHED", Duration::from_secs(180));

    let details = cluster.rest(&format!("/jobs/{id}")).expect("job");
    let history = details["rescales"]["history"].as_array().expect("history").clone();
    for r in &history {
        println!(
            "rescale {} → {}: pause {} ms ({})",
            r["from_parallelism"], r["to_parallelism"], r["pause_ms"], r["cause"]
        );
    }
    assert!(
        history.len() >= 2 * rounds,
        "{rounds} rounds make {} rescales: {history:?}",
        2 * rounds
    );
    let ups: Vec<u64> = history
        .iter()
        .filter(|r| r["to_parallelism"].as_u64() > r["from_parallelism"].as_u64())
        .filter_map(|r| r["pause_ms"].as_u64())
        .collect();
    let downs: Vec<u64> = history
        .iter()
        .filter(|r| r["to_parallelism"].as_u64() < r["from_parallelism"].as_u64())
        .filter_map(|r| r["pause_ms"].as_u64())
        .collect();
    println!(
        "scale-up pauses (ms): {ups:?}, max {:?}; scale-down pauses (ms): {downs:?}, max {:?}",
        ups.iter().max(),
        downs.iter().max()
    );
    job.assert_exact(&out);
    history
}

#[test]
fn two_reactive_jobs_in_a_session_cluster_both_scale_up() {
    let job = WindowedJob {
        rows: 10_000_000,
        keys: 20,
        splits: 6,
    };
    let checkpoints = tempfile::tempdir().expect("dir");
    let mut cluster = Cluster::new(&reactive_config(checkpoints.path()));
    let (_jm, _) = cluster.start_jobmanager();
    let two_slots = ["-D", "taskmanager.numberOfTaskSlots=2"];
    let _a = cluster.start_taskmanager(&two_slots);
    let _b = cluster.start_taskmanager(&two_slots);
    cluster.wait_taskmanagers(2, Duration::from_secs(20));
    let first = cluster.submit(&job.yaml(&cluster.config_dir().join("out-1"), 500, 1), "one.yaml");
    wait_parallelism(cluster.rest_port, &first, 4, Duration::from_secs(30));
    // The second job's even share (2 of 4) is not free: a running job is not scaled down to
    // make room, so it waits until the cluster grows.
    let second = cluster.submit(&job.yaml(&cluster.config_dir().join("out-2"), 500, 1), "two.yaml");
    let _c = cluster.start_taskmanager(&two_slots);
    cluster.wait_taskmanagers(3, Duration::from_secs(20));
    // 6 slots: the first job keeps 4 (a running job is not scaled down), the second takes 2.
    wait_parallelism(cluster.rest_port, &second, 2, Duration::from_secs(30));
    let _d = cluster.start_taskmanager(&two_slots);
    let _e = cluster.start_taskmanager(&two_slots);
    cluster.wait_taskmanagers(5, Duration::from_secs(20));
    // 10 slots split evenly: 5 each; both rescale.
    let one = wait_parallelism(cluster.rest_port, &first, 5, Duration::from_secs(30));
    let two = wait_parallelism(cluster.rest_port, &second, 5, Duration::from_secs(30));
    for (name, j) in [("first", &one), ("second", &two)] {
        println!("{name} job rescales: {}", j["rescales"]["history"]);
        assert!(j["rescales"]["count"].as_u64() >= Some(1), "{name}: {j}");
    }
    for id in [&first, &second] {
        let c = cluster.sluice("cancel", &[id.as_str()]);
        assert!(c.status.success(), "{c:?}");
    }
}

/// Reactive mode ignores the parallelism a job declares (Flink's rule): a source declared at 32
/// (above the slots) and a window declared at 1 (below) run at what the slots allow, and follow
/// taskmanagers coming and going, exactly.
#[test]
fn declared_parallelism_above_and_below_the_slots_runs_at_what_the_slots_allow() {
    let job = WindowedJob {
        rows: 200_000,
        keys: 50,
        splits: 8,
    };
    let checkpoints = tempfile::tempdir().expect("dir");
    let mut cluster = Cluster::new(&reactive_config(checkpoints.path()));
    let (_jm, _) = cluster.start_jobmanager();
    let mut tms: Vec<Daemon> = (0..2).map(|_| cluster.start_taskmanager(&[]).0).collect();
    cluster.wait_taskmanagers(2, Duration::from_secs(20));
    let out = cluster.config_dir().join("out");
    let yaml = job
        .yaml(&out, 10_000, 1)
        .replace(
            "    connector: datagen\n",
            "    connector: datagen\n    parallelism: 32\n",
        )
        .replace("    key-by: [user_id]\n", "    key-by: [user_id]\n    parallelism: 1\n");
    assert!(
        yaml.contains("parallelism: 32") && yaml.contains("    parallelism: 1\n"),
        "{yaml}"
    );
    let id = cluster.submit(&yaml, "declared.yaml");
    wait_parallelism(cluster.rest_port, &id, 4, Duration::from_secs(30));
    tms.push(cluster.start_taskmanager(&[]).0);
    wait_parallelism(cluster.rest_port, &id, 6, Duration::from_secs(30));
    tms.remove(0).kill9();
    wait_parallelism(cluster.rest_port, &id, 4, Duration::from_secs(30));
    cluster.wait_job_state(&id, "FINISHED", Duration::from_secs(120));
    job.assert_exact(&out);
}
