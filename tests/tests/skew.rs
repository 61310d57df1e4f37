//! Two-phase (local-global) windowed aggregation end to end, with real processes: the
//! reference job with `table.optimizer.agg-phase-strategy: TWO_PHASE` runs its local phase
//! chained to the source and the window merges the partials; through a `kill -9` of a
//! taskmanager and a reactive rescale back up, the committed windows equal the one-phase
//! reference exactly (the local phase flushes before every barrier, so it has no state to lose).
//! A window with `salt: 4` (shuffled by key and salt, pre-aggregated, merged by key) commits the
//! same windows.

use std::time::Duration;

use sluice_tests::windowed_job::WindowedJob;
use sluice_tests::{wait_parallelism, Cluster, ReactivePair};

/// 120k rows over 40 users: 60 windows of 2 s.
const JOB: WindowedJob = WindowedJob {
    rows: 120_000,
    keys: 40,
    splits: 4,
};

fn two_phase(yaml: String) -> String {
    yaml.replacen(
        "sources:",
        "config: {table.optimizer.agg-phase-strategy: TWO_PHASE, table.exec.mini-batch.size: 500}\nsources:",
        1,
    )
}

/// The job's vertex names, as REST lists them.
fn vertex_names(job: &serde_json::Value) -> Vec<&str> {
    job["vertices"]
        .as_array()
        .expect("vertices")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect()
}

#[test]
fn two_phase_windows_stay_exact_through_a_kill_and_a_rescale() {
    let checkpoints = tempfile::tempdir().expect("dir");
    let mut pair = ReactivePair::start(checkpoints.path());
    let out = pair.cluster.config_dir().join("out");
    let id = pair.cluster.submit(&two_phase(JOB.yaml(&out, 8_000, 2)), "skew.yaml");
    let job = wait_parallelism(pair.cluster.rest_port, &id, 2, Duration::from_secs(30));
    assert_eq!(
        vertex_names(&job),
        ["Source: events -> per-user-local", "per-user -> Sink: out"],
        "the local phase runs in the source's chain"
    );
    pair.kill_one_and_rejoin(&id);
    pair.cluster.wait_job_state(&id, "FINISHED", Duration::from_secs(180));
    JOB.assert_exact(&out);
    println!("two-phase windows exact after kill -9 and a rescale back to 2");
}

#[test]
fn a_salted_window_commits_the_one_phase_windows() {
    let checkpoints = tempfile::tempdir().expect("dir");
    let mut cluster = Cluster::new(&format!(
        "execution.checkpointing.dir: file://{}\nexecution.checkpointing.interval: 500 ms\nrestart-strategy.type: none\n",
        checkpoints.path().display()
    ));
    let (_jm, _) = cluster.start_jobmanager();
    let _tms = [cluster.start_taskmanager(&[]).0, cluster.start_taskmanager(&[]).0];
    cluster.wait_taskmanagers(2, Duration::from_secs(20));
    let out = cluster.config_dir().join("out");
    let yaml = JOB
        .yaml(&out, 40_000, 2)
        .replacen("    key-by: [user_id]\n", "    key-by: [user_id]\n    salt: 4\n", 1);
    let id = cluster.submit(&yaml, "salted.yaml");
    cluster.wait_job_state(&id, "FINISHED", Duration::from_secs(120));
    let job = cluster.rest(&format!("/jobs/{id}")).expect("job details");
    assert_eq!(
        vertex_names(&job),
        [
            "Source: events -> per-user-salt",
            "per-user-local",
            "per-user -> Sink: out"
        ],
        "the job ran salted"
    );
    JOB.assert_exact(&out);
}
