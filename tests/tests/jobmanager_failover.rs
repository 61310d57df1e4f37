//! Jobmanager failover through the object store (`high-availability.type: object-store` on a
//! real SeaweedFS): a jobmanager killed with SIGKILL and started again with the same
//! configuration recovers its job without resubmission and resumes it from its latest
//! checkpoint; with two jobmanagers a standby takes over from a killed leader, and from a
//! paused (SIGSTOP) one, which after SIGCONT finds its lease gone and exits without completing
//! a checkpoint. Every run ends with each window committed exactly once.

use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_tests::seaweed::{SeaweedFs, BUCKET};
use sluice_tests::windowed_job::WindowedJob;
use sluice_tests::{all_tasks_running, free_port, get_json, wait_or_explain, Cluster, Daemon};

const ONE_SLOT: &[&str] = &["-D", "taskmanager.numberOfTaskSlots=1"];

/// HA and checkpoints in SeaweedFS; a 3 s lease, taskmanagers that notice a silent
/// jobmanager within 3 s.
fn ha_config(s3: &SeaweedFs) -> String {
    format!(
        "{}high-availability.type: object-store\nhigh-availability.storageDir: s3://{BUCKET}/ha\n\
         high-availability.cluster-id: failover-{}\n\
         high-availability.object-store.lease-duration: 3 s\nhigh-availability.object-store.renew-interval: 1 s\n\
         heartbeat.interval: 500 ms\nheartbeat.timeout: 3 s\n\
         execution.checkpointing.dir: s3://{BUCKET}/checkpoints\nexecution.checkpointing.interval: 500 ms\n\
         restart-strategy.type: fixed-delay\nrestart-strategy.fixed-delay.attempts: 20\n\
         restart-strategy.fixed-delay.delay: 200 ms\n",
        s3.config_lines(),
        std::process::id()
    )
}

fn job(rest: u16, id: &str) -> Option<Value> {
    get_json(&format!("http://127.0.0.1:{rest}/jobs/{id}"))
}

fn completed(rest: u16, id: &str) -> u64 {
    get_json(&format!("http://127.0.0.1:{rest}/jobs/{id}/checkpoints"))
        .and_then(|v| v["counts"]["completed"].as_u64())
        .unwrap_or(0)
}

fn wait(cluster: &Cluster, timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    wait_or_explain(
        timeout,
        || check().then_some(()),
        || format!("{what}; logs:\n{}", cluster.log_tails(25)),
    );
}

#[test]
fn a_killed_jobmanager_restarted_resumes_its_job_from_the_latest_checkpoint() {
    let s3 = SeaweedFs::start();
    let job_spec = WindowedJob {
        rows: 60_000,
        keys: 1_000,
        splits: 4,
    };
    let mut cluster = Cluster::new(&ha_config(&s3));
    let rest = cluster.rest_port;
    let (mut jm, _) = cluster.start_jobmanager();
    let _tms = [
        cluster.start_taskmanager(ONE_SLOT).0,
        cluster.start_taskmanager(ONE_SLOT).0,
    ];
    cluster.wait_taskmanagers(2, Duration::from_secs(30));
    let out = cluster.config_dir().join("out");
    let id = cluster.submit(&job_spec.yaml(&out, 4_000, 2), "failover.yaml");
    wait(
        &cluster,
        Duration::from_secs(30),
        "job running with 2 checkpoints",
        || all_tasks_running(rest, &id) && completed(rest, &id) >= 2,
    );
    jm.kill9();
    let restarted = Instant::now();
    let (_jm, _) = cluster.start_jobmanager();
    wait(&cluster, Duration::from_secs(60), "the recovered job running", || {
        all_tasks_running(rest, &id)
    });
    let resumed = restarted.elapsed();
    let restored = job(rest, &id).map(|j| j.to_string()).unwrap_or_default();
    let checkpoints = get_json(&format!("http://127.0.0.1:{rest}/jobs/{id}/checkpoints")).unwrap_or_default();
    println!(
        "jobmanager restart → all tasks running: {} ms; restored: {}",
        resumed.as_millis(),
        checkpoints["latest"]["restored"]
    );
    assert!(
        checkpoints["latest"]["restored"]["id"].as_u64().is_some_and(|c| c >= 2),
        "resumed from a checkpoint: {checkpoints} / {restored}"
    );
    wait(&cluster, Duration::from_secs(120), "the recovered job FINISHED", || {
        job(rest, &id).is_some_and(|j| j["state"] == "FINISHED")
    });
    job_spec.assert_exact(&out);
}

#[test]
fn a_standby_takes_over_from_a_killed_and_from_a_paused_leader() {
    let s3 = SeaweedFs::start();
    let job_spec = WindowedJob {
        rows: 120_000,
        keys: 1_000,
        splits: 4,
    };
    let mut cluster = Cluster::new(&ha_config(&s3));
    let start_jm = |cluster: &mut Cluster| -> (Daemon, u16) {
        let (rpc, rest) = (free_port(), free_port());
        let (jm, _) = cluster.start_with_env(
            "jobmanager",
            &[
                "-D",
                &format!("jobmanager.rpc.port={rpc}"),
                "-D",
                &format!("rest.port={rest}"),
            ],
            &[],
        );
        (jm, rest)
    };
    let (mut a, a_rest) = start_jm(&mut cluster);
    // A leads (it started first); B stands by.
    wait(&cluster, Duration::from_secs(30), "A leading", || {
        get_json(&format!("http://127.0.0.1:{a_rest}/overview")).is_some()
    });
    let (mut b, b_rest) = start_jm(&mut cluster);
    let _tms = [
        cluster.start_taskmanager(ONE_SLOT).0,
        cluster.start_taskmanager(ONE_SLOT).0,
    ];
    wait(&cluster, Duration::from_secs(30), "2 taskmanagers at A", || {
        get_json(&format!("http://127.0.0.1:{a_rest}/overview")).and_then(|o| o["taskmanagers"].as_u64()) == Some(2)
    });
    assert!(
        get_json(&format!("http://127.0.0.1:{b_rest}/overview")).is_none(),
        "a standby serves no REST"
    );
    let out = cluster.config_dir().join("out");
    let file = cluster.config_dir().join("standby.yaml");
    std::fs::write(&file, job_spec.yaml(&out, 4_000, 2)).expect("job file");
    let run = std::process::Command::new(sluice_tests::binary("sluice"))
        .args([
            "run",
            "-m",
            &format!("127.0.0.1:{a_rest}"),
            "-d",
            file.to_str().expect("path"),
        ])
        .output()
        .expect("sluice run");
    assert!(run.status.success(), "{run:?}");
    let id = sluice_tests::job_id_of(&run);
    wait(
        &cluster,
        Duration::from_secs(30),
        "job running at A with 2 checkpoints",
        || all_tasks_running(a_rest, &id) && completed(a_rest, &id) >= 2,
    );

    // The leader dies: B takes over after the lease expires and resumes the job.
    a.kill9();
    let killed = Instant::now();
    wait(&cluster, Duration::from_secs(60), "the job running at B", || {
        all_tasks_running(b_rest, &id)
    });
    println!(
        "leader killed → job running at the standby: {} ms",
        killed.elapsed().as_millis()
    );
    wait(&cluster, Duration::from_secs(30), "B checkpointing", || {
        completed(b_rest, &id) >= 2
    });

    // A comes back as the standby; the leader B is paused, A takes over, B is resumed.
    let (a2, a2_rest) = start_jm(&mut cluster);
    std::thread::sleep(Duration::from_secs(2));
    b.signal(libc::SIGSTOP);
    let paused = Instant::now();
    wait(&cluster, Duration::from_secs(60), "the job running at A again", || {
        all_tasks_running(a2_rest, &id)
    });
    println!(
        "leader paused → job running at the standby: {} ms",
        paused.elapsed().as_millis()
    );
    wait(&cluster, Duration::from_secs(30), "A checkpointing", || {
        completed(a2_rest, &id) >= 1
    });
    let before = b.log().len();
    b.signal(libc::SIGCONT);
    let status = b.wait_exit(Duration::from_secs(20));
    let after = b.log()[before..].to_string();
    println!("the resumed old leader exited ({status}):\n{after}");
    assert!(!status.success(), "a deposed leader exits with an error");
    assert!(after.contains("lost its leadership"), "{after}");
    assert!(
        !after.contains("Completed checkpoint"),
        "a deposed leader completes no checkpoint: {after}"
    );
    wait(&cluster, Duration::from_secs(120), "the job FINISHED at A", || {
        job(a2_rest, &id).is_some_and(|j| j["state"] == "FINISHED")
    });
    job_spec.assert_exact(&out);
    a2.signal(libc::SIGTERM);
}
