//! Final checkpoints (Flink's FLIP-147): a bounded exactly-once job whose sinks used to commit
//! their last part file the moment their input ended. Every taskmanager is killed with
//! SIGKILL at moments swept over the job's end — before the sources finish, while the sinks
//! wait for the checkpoint that covers the end of input, and after — replacements are started,
//! and every run must end FINISHED with each window committed exactly once.

use std::time::{Duration, Instant};

use sluice_tests::windowed_job::WindowedJob;
use sluice_tests::{checkpoints_and_restarts, job_id_of, Cluster};

const JOB: WindowedJob = WindowedJob {
    rows: 40_000,
    keys: 2_000,
    splits: 4,
};
const RATE: u32 = 20_000;
const ONE_SLOT: &[&str] = &["-D", "taskmanager.numberOfTaskSlots=1"];

#[test]
fn kill9_of_every_taskmanager_in_the_finishing_phase_leaves_the_output_exact() {
    let checkpoints = tempfile::tempdir().expect("dir");
    let mut cluster = Cluster::new(&checkpoints_and_restarts(checkpoints.path(), "1 s"));
    let (_jm, _) = cluster.start_jobmanager();
    let mut tms = vec![
        cluster.start_taskmanager(ONE_SLOT).0,
        cluster.start_taskmanager(ONE_SLOT).0,
    ];
    cluster.wait_taskmanagers(2, Duration::from_secs(20));

    let run = |cluster: &Cluster, n: usize| -> (String, std::path::PathBuf) {
        let out = cluster.config_dir().join(format!("out-{n}"));
        let file = cluster.config_dir().join(format!("job-{n}.yaml"));
        std::fs::write(&file, JOB.yaml(&out, RATE, 2)).expect("job file");
        let submitted = cluster.sluice("run", &["-d", file.to_str().expect("path")]);
        assert!(submitted.status.success(), "{submitted:?}");
        let id = job_id_of(&submitted);
        cluster.wait_job_state(&id, "RUNNING", Duration::from_secs(30));
        (id, out)
    };

    // How long the job runs undisturbed, from RUNNING to FINISHED: its end (sources done,
    // sinks waiting for the final checkpoint) is the last second or so of that.
    let (id, out) = run(&cluster, 0);
    let started = Instant::now();
    cluster.wait_job_state(&id, "FINISHED", Duration::from_secs(60));
    let span = started.elapsed();
    JOB.assert_exact(&out);
    println!("undisturbed: {span:?} from RUNNING to FINISHED");

    // Kill every taskmanager at offsets swept across the end of input, and (0) the moment a
    // first sink subtask reports FINISHED while the job is not (the sweep's other runs stop
    // early at that moment too): that is where a sink that commits at the end of its own
    // input duplicates what the restart replays.
    let mut killed_while_running = 0;
    for (n, back_ms) in [0u64, 1_600, 1_200, 900, 600, 400, 200, 50].into_iter().enumerate() {
        let (id, out) = run(&cluster, n + 1);
        let deadline = Instant::now() + span.saturating_sub(Duration::from_millis(back_ms));
        let deadline = if back_ms == 0 {
            Instant::now() + span * 2
        } else {
            deadline
        };
        let state = cluster.first_finished_sink_or(&id, deadline);
        for tm in &mut tms {
            tm.kill9();
        }
        if state.starts_with("RUNNING") {
            killed_while_running += 1;
        }
        tms = vec![
            cluster.start_taskmanager(ONE_SLOT).0,
            cluster.start_taskmanager(ONE_SLOT).0,
        ];
        cluster.wait_job_state(&id, "FINISHED", Duration::from_secs(120));
        JOB.assert_exact(&out);
        println!("killed {back_ms} ms before the undisturbed end (job was {state}): output exact");
    }
    assert!(
        killed_while_running >= 4,
        "the sweep hit the running job only {killed_while_running} times"
    );
}
