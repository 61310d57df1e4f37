//! Fault tolerance end to end, with real processes: checkpoints every second to file:// or to
//! a real S3 server (SeaweedFS), `kill -9` of a taskmanager mid-run with a replacement started,
//! and stop-with-savepoint at parallelism 2 restored at 3 and then 1. In every case the
//! committed output of the file sink must equal the reference computed here: no window lost,
//! none doubled.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use sluice_tests::seaweed::SeaweedFs;
use sluice_tests::windowed_job::WindowedJob;
use sluice_tests::{get_text, job_id_of as job_id, wait_for, Cluster, Daemon};

/// 150k rows over 50 users: 75 windows of 2 s.
const JOB: WindowedJob = WindowedJob {
    rows: 150_000,
    keys: 50,
    splits: 4,
};

fn job(out: &Path, rate: u32) -> String {
    JOB.yaml(out, rate, 2)
}

fn assert_exact(out: &Path) {
    JOB.assert_exact(out)
}

/// One slot per taskmanager, so the job's two slots span both and a kill hits it.
const ONE_SLOT: &[&str] = &["-D", "taskmanager.numberOfTaskSlots=1"];

struct Running {
    jm: Daemon,
    jm_metrics: u16,
    survivor: Daemon,
    victim: Daemon,
    out: std::path::PathBuf,
    id: String,
}

/// Starts a jobmanager and two one-slot taskmanagers, submits the job and waits for two
/// completed checkpoints.
fn run_until_two_checkpoints(cluster: &mut Cluster) -> Running {
    let (jm, jm_metrics) = cluster.start_jobmanager();
    let (survivor, _) = cluster.start_taskmanager(ONE_SLOT);
    let (victim, _) = cluster.start_taskmanager(ONE_SLOT);
    cluster.wait_taskmanagers(2, Duration::from_secs(20));
    let out = cluster.config_dir().join("out");
    let file = cluster.config_dir().join("job.yaml");
    std::fs::write(&file, job(&out, 15_000)).expect("job file");
    let run = cluster.sluice("run", &["-d", file.to_str().expect("path")]);
    assert!(run.status.success(), "{run:?}");
    let id = job_id(&run);
    wait_for(Duration::from_secs(30), "two completed checkpoints", || {
        (cluster.completed_checkpoints(&id) >= 2).then_some(())
    });
    Running {
        jm,
        jm_metrics,
        survivor,
        victim,
        out,
        id,
    }
}

/// Runs the job with checkpoints, kills one taskmanager with SIGKILL after two completed
/// checkpoints, starts a replacement, and checks the committed output.
fn kill_and_recover(extra_config: &str) {
    let mut cluster = Cluster::new(&format!(
        "execution.checkpointing.interval: 1 s\nrestart-strategy.type: fixed-delay\n\
         restart-strategy.fixed-delay.attempts: 3\nrestart-strategy.fixed-delay.delay: 500 ms\n\
         execution.checkpointing.num-retained: 2\n{extra_config}"
    ));
    let Running {
        jm: _jm,
        jm_metrics,
        survivor: _a,
        mut victim,
        out,
        id,
    } = run_until_two_checkpoints(&mut cluster);
    victim.kill9();
    let (_c, _) = cluster.start_taskmanager(ONE_SLOT);
    cluster.wait_job_state(&id, "FINISHED", Duration::from_secs(120));
    let stats = cluster
        .rest(&format!("/jobs/{id}/checkpoints"))
        .expect("checkpoint stats");
    assert!(
        stats["latest"]["restored"].is_object(),
        "the job restored a checkpoint: {stats}"
    );
    assert!(
        stats["latest"]["completed"]["external_path"].as_str().is_some(),
        "{stats}"
    );
    assert_exact(&out);
    let completed = stats["counts"]["completed"].as_u64().unwrap_or(0);
    println!("{completed} checkpoints completed; output exact after kill -9 and restore");

    // Flink's job-scope checkpoint metrics, through Flink's metric query on REST: the job has
    // finished, so its series are gone from the jobmanager's Prometheus endpoint.
    let scrape = get_text(&format!("http://127.0.0.1:{jm_metrics}/metrics")).expect("jobmanager metrics");
    assert!(!scrape.contains(&id), "a finished job's series are dropped:\n{scrape}");
    let value = |name: &str| -> f64 {
        let m = cluster
            .rest(&format!("/jobs/{id}/metrics?get={name}"))
            .expect("job metrics");
        m[0]["value"]
            .as_str()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} for job {id}: {m}"))
    };
    assert_eq!(value("numberOfCompletedCheckpoints"), completed as f64);
    assert!(value("numRestarts") >= 1.0, "numRestarts");
    assert!(value("lastCheckpointSize") > 0.0, "lastCheckpointSize");
    assert!(value("lastCheckpointDuration") > 0.0, "lastCheckpointDuration");
    value("numberOfFailedCheckpoints");
    assert_eq!(value("numberOfInProgressCheckpoints"), 0.0);
}

#[test]
fn exactly_once_after_kill9_heap_backend_file_checkpoints() {
    let dir = tempfile::tempdir().expect("dir");
    kill_and_recover(&format!(
        "state.backend.type: hashmap\nexecution.checkpointing.dir: file://{}",
        dir.path().display()
    ));
}

#[test]
fn exactly_once_after_kill9_rocksdb_incremental_s3_checkpoints() {
    let s3 = SeaweedFs::start();
    kill_and_recover(&format!(
        "state.backend.type: rocksdb\nexecution.checkpointing.incremental: true\n\
         execution.checkpointing.dir: s3://{}/checkpoints\n{}",
        sluice_tests::seaweed::BUCKET,
        s3.config_lines()
    ));
}

/// Local recovery with RocksDB and incremental checkpoints to S3: after a `kill -9` of the other
/// taskmanager, the survivor (registered first, so it runs subtask 0 in both attempts) takes
/// every SST file of its restored state from its local copies, and the output stays exact.
#[test]
fn local_recovery_takes_the_survivors_state_from_its_local_copies() {
    let s3 = SeaweedFs::start();
    let mut cluster = Cluster::new(&format!(
        "execution.checkpointing.interval: 1 s\nrestart-strategy.type: fixed-delay\n\
         restart-strategy.fixed-delay.attempts: 3\nrestart-strategy.fixed-delay.delay: 500 ms\n\
         state.backend.type: rocksdb\nexecution.checkpointing.incremental: true\n\
         execution.checkpointing.local-backup.enabled: true\nexecution.state-recovery.from-local: true\n\
         execution.checkpointing.dir: s3://{}/checkpoints\n{}",
        sluice_tests::seaweed::BUCKET,
        s3.config_lines()
    ));
    let (_jm, _) = cluster.start_jobmanager();
    let (survivor, _) = cluster.start_taskmanager(ONE_SLOT);
    cluster.wait_taskmanagers(1, Duration::from_secs(20));
    let (mut victim, _) = cluster.start_taskmanager(ONE_SLOT);
    cluster.wait_taskmanagers(2, Duration::from_secs(20));
    let out = cluster.config_dir().join("out");
    let id = cluster.submit(&job(&out, 15_000), "job.yaml");
    wait_for(Duration::from_secs(30), "two completed checkpoints", || {
        (cluster.completed_checkpoints(&id) >= 2).then_some(())
    });
    victim.kill9();
    let (_c, _) = cluster.start_taskmanager(ONE_SLOT);
    cluster.wait_job_state(&id, "FINISHED", Duration::from_secs(120));
    assert_exact(&out);
    let log = survivor.log();
    let local = sst_restores(&log);
    assert!(
        local.iter().any(|(taken, total, _)| *total > 0 && taken == total),
        "the survivor restored from its local copies: {local:?}\n{log}"
    );
    println!("survivor's restores (SST files taken locally, of, key groups): {local:?}");
}

/// A taskmanager's restores of SST files as its log tells them ("Local recovery: a of b SST
/// files of key groups x-y taken from local copies, …"): (taken locally, of, key groups).
fn sst_restores(log: &str) -> Vec<(u64, u64, String)> {
    log.lines()
        .filter_map(|l| l.split("Local recovery: ").nth(1))
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            Some((
                words.first()?.parse().ok()?,
                words.get(2)?.parse().ok()?,
                words.get(8)?.to_string(),
            ))
        })
        .collect()
}

/// Standby copies (`execution.state-recovery.standby-copies`) in reactive mode: once both
/// taskmanagers fetched the latest checkpoint's files as standby copies, a `kill -9` of one
/// scales the job down to the survivor, which restores the whole state, the lost
/// taskmanager's key groups included, from its local copies (no SST file downloaded); the
/// output stays exact.
#[test]
fn standby_copies_let_the_survivor_restore_the_lost_taskmanagers_state_locally() {
    let s3 = SeaweedFs::start();
    let mut cluster = Cluster::new(&format!(
        "scheduler-mode: reactive\nexecution.checkpointing.interval: 3 s\n\
         restart-strategy.type: fixed-delay\nrestart-strategy.fixed-delay.attempts: 3\n\
         restart-strategy.fixed-delay.delay: 200 ms\n\
         state.backend.type: rocksdb\nexecution.checkpointing.incremental: true\n\
         execution.state-recovery.from-local: true\nexecution.state-recovery.standby-copies: true\n\
         execution.checkpointing.dir: s3://{}/checkpoints\n{}",
        sluice_tests::seaweed::BUCKET,
        s3.config_lines()
    ));
    let (_jm, _) = cluster.start_jobmanager();
    let (survivor, _) = cluster.start_taskmanager(ONE_SLOT);
    let (mut victim, _) = cluster.start_taskmanager(ONE_SLOT);
    cluster.wait_taskmanagers(2, Duration::from_secs(20));
    let out = cluster.config_dir().join("out");
    let id = cluster.submit(&job(&out, 10_000), "job.yaml");
    // The newest completed checkpoint, once both taskmanagers hold it as standby copies (the
    // next one comes 3 s after it: the kill follows within one poll).
    let standby = |n: u64| format!("of checkpoint {n} of job {id} as standby copies");
    let restored_from = wait_for(Duration::from_secs(30), "a checkpoint held as standby copies", || {
        let stats = cluster.rest(&format!("/jobs/{id}/checkpoints"))?;
        let n = stats["latest"]["completed"]["id"].as_u64()?;
        (survivor.log().contains(&standby(n)) && victim.log().contains(&standby(n))).then_some(n)
    });
    victim.kill9();
    cluster.wait_job_state(&id, "FINISHED", Duration::from_secs(120));
    assert_exact(&out);
    let stats = cluster
        .rest(&format!("/jobs/{id}/checkpoints"))
        .expect("checkpoint stats");
    let restored = stats["latest"]["restored"]["id"].as_u64();
    assert_eq!(
        restored,
        Some(restored_from),
        "restored the checkpoint held as standby: {stats}"
    );
    let log = survivor.log();
    let local = sst_restores(&log);
    assert!(
        local.len() >= 2 && local.iter().all(|(taken, total, _)| *total > 0 && taken == total),
        "the survivor restored both taskmanagers' key groups from its local copies: {local:?}\n{log}"
    );
    println!("survivor's restores (SST files taken locally, of, key groups): {local:?}");
}

/// Stop-with-savepoint at parallelism 2, restore at 3, stop again, restore at 1 and finish.
#[test]
fn savepoint_restores_at_other_parallelism() {
    let savepoints = tempfile::tempdir().expect("dir");
    let mut cluster = Cluster::new("state.backend.type: hashmap\n");
    let (_jm, _) = cluster.start_jobmanager();
    let (_a, _) = cluster.start_taskmanager(&[]);
    let (_b, _) = cluster.start_taskmanager(&[]);
    cluster.wait_taskmanagers(2, Duration::from_secs(20));
    let out = cluster.config_dir().join("out");
    let file = cluster.config_dir().join("job.yaml");
    std::fs::write(&file, job(&out, 20_000)).expect("job file");
    let file = file.to_str().expect("path").to_string();
    let sp_dir = savepoints.path().to_str().expect("path").to_string();

    let stop = |id: &str| -> String {
        std::thread::sleep(Duration::from_millis(1500));
        let o = cluster.sluice("stop", &["--savepointPath", &sp_dir, id]);
        let text = String::from_utf8_lossy(&o.stdout).to_string();
        assert!(o.status.success(), "{text}{}", String::from_utf8_lossy(&o.stderr));
        cluster.wait_job_state(id, "FINISHED", Duration::from_secs(30));
        text.split("Path: ").nth(1).expect("savepoint path").trim().to_string()
    };

    let run = cluster.sluice("run", &["-d", &file]);
    let first = stop(&job_id(&run));
    let run = cluster.sluice("run", &["-d", "-s", &first, "-p", "3", &file]);
    assert!(run.status.success(), "{run:?}");
    let second = stop(&job_id(&run));
    let run = cluster.sluice("run", &["-s", &second, "-p", "1", &file]);
    assert!(run.status.success(), "{run:?}");
    assert_exact(&out);

    // Above the stored max parallelism: Flink's message.
    let too_wide = cluster.sluice("run", &["-d", "-s", &second, "-p", "200", &file]);
    let text = String::from_utf8_lossy(&too_wide.stderr).to_string();
    assert!(
        text.contains(
            "The maximum parallelism (128) of the restored state is lower than the configured parallelism (200)"
        ),
        "{text}"
    );
}

/// One listing of the job's `shared/` directory: object → (size, e-tag or modification time).
type Listing = BTreeMap<String, (u64, String)>;

/// Incremental RocksDB checkpoints on a real S3 server, checked on the object listing: each
/// checkpoint uploads only the SST files it references that were not there before (objects
/// already there are not written again), and once a checkpoint is dropped (num-retained 1) the
/// shared files no retained checkpoint references are deleted.
#[test]
fn incremental_checkpoints_upload_only_new_files_and_delete_dropped_ones() {
    use sluice_common::config::{load, ConfigSources};
    use sluice_common::storage::{open_location, CheckpointStore};

    let s3 = SeaweedFs::start();
    let url = format!("s3://{}/checkpoints", sluice_tests::seaweed::BUCKET);
    // A pause of 2 s after each checkpoint leaves the listing still between two of them.
    let mut cluster = Cluster::new(&format!(
        "state.backend.type: rocksdb\nexecution.checkpointing.incremental: true\n\
         execution.checkpointing.dir: {url}\nexecution.checkpointing.interval: 1 s\n\
         execution.checkpointing.min-pause: 2 s\nexecution.checkpointing.num-retained: 1\n{}",
        s3.config_lines()
    ));
    let (_jm, _) = cluster.start_jobmanager();
    let (_tm, _) = cluster.start_taskmanager(&[]);
    cluster.wait_taskmanagers(1, Duration::from_secs(20));
    let out = cluster.config_dir().join("out");
    let file = cluster.config_dir().join("job.yaml");
    std::fs::write(&file, job(&out, 6_000)).expect("job file");
    let run = cluster.sluice("run", &["-d", file.to_str().expect("path")]);
    assert!(run.status.success(), "{run:?}");
    let id = job_id(&run);

    let config = load(&ConfigSources {
        properties: Some(s3.config_lines()),
        ..Default::default()
    })
    .expect("config")
    .config;
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let store = CheckpointStore::new(open_location(&url, &config).expect("location"), &id);
    let shared_dir = store.layout.root().clone().join("shared");
    let list = || -> Listing {
        rt.block_on(store.location.list_path(&shared_dir))
            .expect("listing")
            .into_iter()
            .map(|o| {
                let version = o.e_tag.clone().unwrap_or_else(|| o.last_modified.to_rfc3339());
                (o.location.filename().unwrap_or("").to_string(), (o.size, version))
            })
            .collect()
    };
    // The shared files checkpoint `n`'s metadata references.
    let referenced = |n: u64| -> BTreeMap<String, ()> {
        let bytes = rt.block_on(store.get(&store.layout.metadata(n))).expect("metadata");
        let m = sluice_common::storage::decode_metadata(&bytes).expect("decodes");
        m.operators
            .iter()
            .flat_map(|o| &o.subtasks)
            .flat_map(|s| &s.keyed)
            .flat_map(|h| &h.shared_files)
            .map(|f| (f.rsplit('/').next().unwrap_or(f).to_string(), ()))
            .collect()
    };

    // (checkpoint id, referenced files, listing once the dropped checkpoint's files are gone)
    let mut seen: Vec<(u64, BTreeMap<String, ()>, Listing)> = Vec::new();
    let mut last = 0;
    let started = std::time::Instant::now();
    while seen.len() < 8 && started.elapsed() < Duration::from_secs(60) {
        let stats = cluster.rest(&format!("/jobs/{id}/checkpoints"));
        let latest = stats
            .as_ref()
            .and_then(|s| s["latest"]["completed"]["id"].as_u64())
            .unwrap_or(0);
        if latest > last {
            last = latest;
            let refs = referenced(latest);
            // Retention runs right after completion: wait (bounded) until it has deleted.
            let listing = wait_for(
                Duration::from_secs(3),
                "dropped checkpoints' shared files deleted",
                || {
                    let l = list();
                    l.keys().eq(refs.keys()).then_some(l)
                },
            );
            seen.push((latest, refs, listing));
        }
        if cluster.job_state(&id).as_deref() == Some("FINISHED") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(seen.len() >= 4, "only {} checkpoints completed", seen.len());
    let mut reused = 0;
    let mut deleted = 0;
    for pair in seen.windows(2) {
        let ((a, _, before), (b, refs, after)) = (&pair[0], &pair[1]);
        let new: Vec<_> = after.keys().filter(|k| !before.contains_key(*k)).collect();
        let kept: Vec<_> = after.keys().filter(|k| before.contains_key(*k)).collect();
        let gone = before.keys().filter(|k| !after.contains_key(*k)).count();
        for k in &kept {
            assert_eq!(before[*k], after[*k], "{k} was uploaded again by checkpoint {b}");
        }
        assert!(new.iter().all(|k| refs.contains_key(*k)));
        println!(
            "checkpoint {b}: references {} shared files, uploaded {} new, reused {} of checkpoint {a}, \
             {gone} of checkpoint {a} deleted",
            refs.len(),
            new.len(),
            kept.len()
        );
        reused += kept.len();
        deleted += gone;
    }
    assert!(reused > 0, "no checkpoint reused an earlier one's SST files");
    assert!(
        deleted > 0,
        "no dropped checkpoint's shared file was deleted (no compaction?)"
    );
    // The private part of dropped checkpoints is gone too: only the newest directory is left.
    let ids = rt.block_on(store.checkpoint_ids()).expect("ids");
    assert!(ids.len() <= 2, "checkpoint directories left: {ids:?}");
    cluster.wait_job_state(&id, "FINISHED", Duration::from_secs(120));
    assert_exact(&out);
}

/// The newest checkpoint's `_metadata` is corrupted while the jobmanager is down (HA: a
/// jobmanager killed with `kill -9`, as a torn write would leave it), with a taskmanager: the
/// jobmanager started again recovers the job from the previous checkpoint and logs why it
/// passed the newest over. (A jobmanager that lives restores the latest checkpoint it
/// completed as it holds it, as Flink's completed checkpoint store does.)
#[test]
fn corrupted_newest_metadata_falls_back_to_the_previous_checkpoint() {
    let checkpoints = tempfile::tempdir().expect("dir");
    let ha = tempfile::tempdir().expect("dir");
    let mut cluster = Cluster::new(&format!(
        "state.backend.type: hashmap\nexecution.checkpointing.dir: file://{}\n\
         execution.checkpointing.interval: 1 s\nexecution.checkpointing.num-retained: 3\n\
         restart-strategy.type: fixed-delay\nrestart-strategy.fixed-delay.attempts: 20\n\
         restart-strategy.fixed-delay.delay: 200 ms\n\
         high-availability.type: object-store\nhigh-availability.storageDir: file://{}\n\
         high-availability.object-store.lease-duration: 3 s\nhigh-availability.object-store.renew-interval: 1 s\n\
         heartbeat.interval: 500 ms\nheartbeat.timeout: 3 s\n",
        checkpoints.path().display(),
        ha.path().display()
    ));
    let Running {
        mut jm,
        survivor: _a,
        mut victim,
        id,
        ..
    } = run_until_two_checkpoints(&mut cluster);
    jm.kill9();
    victim.kill9();
    let job_dir = checkpoints.path().join(&id);
    let newest = std::fs::read_dir(&job_dir)
        .expect("job checkpoint dir")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("chk-")?.parse::<u64>().ok())
        .filter(|n| job_dir.join(format!("chk-{n}/_metadata")).exists())
        .max()
        .expect("a completed checkpoint");
    std::fs::write(job_dir.join(format!("chk-{newest}/_metadata")), b"torn write").expect("corrupt");
    let (jm, _) = cluster.start_jobmanager();
    let (_c, _) = cluster.start_taskmanager(ONE_SLOT);
    let restored = wait_for(Duration::from_secs(60), "the job to restore", || {
        cluster
            .rest(&format!("/jobs/{id}/checkpoints"))
            .and_then(|s| s["latest"]["restored"]["id"].as_u64())
    });
    assert_eq!(restored, newest - 1, "restored the checkpoint before the corrupted one");
    let log = jm.log();
    assert!(
        log.contains(&format!("Checkpoint {newest} of")) && log.contains("is not usable"),
        "the jobmanager logs why checkpoint {newest} was passed over:\n{log}"
    );
    println!("checkpoint {newest} corrupted; restored {restored}");
    cluster.wait_job_state(&id, "FINISHED", Duration::from_secs(120));
}
