//! The autoscaler end to end (real jobmanager and taskmanagers, short windows and intervals):
//! a keyed job whose window costs 2 ms per row runs at parallelism 1; a ×3 load step
//! (a datagen rate schedule) makes the autoscaler settle within two decisions on a parallelism
//! that keeps utilization inside the boundary, with no further decision while the load stays;
//! when the load drops it scales down only after the scale-down interval; the committed
//! output through every decision equals the reference. With too few slots, the taskmanager
//! command runs with the count that provides them, and the job reaches the decided
//! parallelism. The two tests run one after the other.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_tests::windowed_job::WindowedJob;
use sluice_tests::{binary, job_id_of, wait_for, Cluster};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Each row costs the window 2 ms (asleep: a 2-core machine still runs two such subtasks in
/// parallel), so one subtask takes at most ~500 rows/s.
const COST: &str = "wait_cost(amount, 2000)";

/// Short autoscaler times; heartbeats every second bring the subtask counters.
fn autoscaler_config(checkpoints: &Path, extra: &str) -> String {
    format!(
        "execution.checkpointing.dir: file://{}\nexecution.checkpointing.interval: 1 s\n\
         heartbeat.interval: 1 s\nstate.backend.type: rocksdb\n\
         job.autoscaler.enabled: true\njob.autoscaler.stabilization.interval: 5 s\n\
         job.autoscaler.metrics.window: 10 s\njob.autoscaler.scale-down.interval: 30 s\n\
         job.autoscaler.restart.time: 5 s\njob.autoscaler.catch-up.duration: 5 min\n{extra}",
        checkpoints.display()
    )
}

/// The keyed window vertex (the one the cost is in) and its parallelism.
fn window_vertex(job: &Value) -> Option<(String, u64)> {
    job["vertices"]
        .as_array()?
        .iter()
        .find(|v| v["name"].as_str().is_some_and(|n| n.contains("per-user")))
        .map(|v| {
            (
                v["id"].as_str().unwrap_or("").to_string(),
                v["parallelism"].as_u64().unwrap_or(0),
            )
        })
}

fn rescaling(decisions: &Value) -> Vec<Value> {
    decisions
        .as_array()
        .map(|d| d.iter().filter(|d| d["outcome"] == "rescaling").cloned().collect())
        .unwrap_or_default()
}

#[test]
fn a_load_step_settles_without_flapping_and_scales_down_after_the_interval() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    // 200 rows/s for 30 s, 600/s (×3) for 60 s, then 100/s for 60 s.
    let job = WindowedJob {
        rows: 200 * 30 + 600 * 60 + 100 * 60,
        keys: 20,
        splits: 4,
    };
    let checkpoints = tempfile::tempdir().expect("dir");
    let mut cluster = Cluster::new(&autoscaler_config(checkpoints.path(), ""));
    let (_jm, _) = cluster.start_jobmanager();
    let _a = cluster.start_taskmanager(&[]);
    let _b = cluster.start_taskmanager(&[]);
    cluster.wait_taskmanagers(2, Duration::from_secs(20));
    let out = cluster.config_dir().join("out");
    let file = cluster.config_dir().join("job.yaml");
    std::fs::write(
        &file,
        job.yaml_with(&out, "200 for 30 s, then 600 for 60 s, then 100", 1, COST),
    )
    .expect("job file");
    let run = cluster.sluice("run", &["-d", file.to_str().expect("path")]);
    assert!(run.status.success(), "{run:?}");
    let id = job_id_of(&run);
    let started = Instant::now();

    // Follow the job: when each decision came, when the scale-down was first held back.
    let mut delayed_since: Option<u64> = None;
    let mut timeline: Vec<String> = Vec::new();
    let mut last_seen = 0;
    let mut last_status = String::new();
    let deadline = Instant::now() + Duration::from_secs(400);
    let details = loop {
        assert!(
            Instant::now() < deadline,
            "the job did not finish:\n{}",
            cluster.log_tails(30)
        );
        std::thread::sleep(Duration::from_millis(500));
        let (Some(j), Some(a)) = (
            cluster.rest(&format!("/jobs/{id}")),
            cluster.rest(&format!("/jobs/{id}/autoscaler")),
        ) else {
            continue;
        };
        if delayed_since.is_none()
            && a["status"]
                .as_str()
                .is_some_and(|s| s.starts_with("scale-down delayed"))
        {
            delayed_since = Some(now_ms());
        }
        let status = format!(
            "{} {:?}",
            a["status"].as_str().unwrap_or(""),
            a["vertices"].as_array().map(|vs| vs
                .iter()
                .map(|v| (
                    v["parallelism"].as_u64().unwrap_or(0),
                    (v["metrics"]["utilization"].as_f64().unwrap_or(0.0) * 100.0).round()
                ))
                .collect::<Vec<_>>())
        );
        if status != last_status {
            println!("{:>5.1} s  {status}", started.elapsed().as_secs_f64());
            last_status = status;
        }
        let decisions = a["decisions"].as_array().cloned().unwrap_or_default();
        for d in &decisions[last_seen.min(decisions.len())..] {
            let line = format!(
                "{:>5.1} s  {} {} → {} ({}), utilization {:.2}: {}",
                started.elapsed().as_secs_f64(),
                d["vertex_name"].as_str().unwrap_or(""),
                d["from"],
                d["to"],
                d["outcome"].as_str().unwrap_or(""),
                d["metrics"]["utilization"].as_f64().unwrap_or(f64::NAN),
                d["reason"].as_str().unwrap_or("")
            );
            println!("{line}");
            timeline.push(line);
        }
        last_seen = decisions.len();
        if j["state"] == "FINISHED" {
            break (j, a);
        }
        assert!(
            !matches!(j["state"].as_str(), Some("FAILED" | "CANCELED")),
            "job ended {}:\n{}",
            j["state"],
            cluster.log_tails(30)
        );
    };
    let (job_details, autoscaler) = details;
    let rescales = rescaling(&autoscaler["decisions"]);
    // Up: at most two decisions to settle (a decision may move several vertices at once).
    let up_times: Vec<u64> = rescales
        .iter()
        .take_while(|d| d["to"].as_u64() > d["from"].as_u64())
        .filter_map(|d| d["timestamp"].as_u64())
        .collect();
    let mut decisions = up_times.clone();
    decisions.dedup();
    assert!(
        (1..=2).contains(&decisions.len()),
        "settled within two decisions: {timeline:#?}"
    );
    let settled_at = *decisions.last().expect("a scale-up");
    // Then only scale-downs, once the load dropped.
    let downs: Vec<&Value> = rescales[up_times.len()..].iter().collect();
    assert!(!downs.is_empty(), "a scale-down after the load dropped: {timeline:#?}");
    assert!(
        downs.iter().all(|d| d["to"].as_u64() < d["from"].as_u64()),
        "no decision but scale-downs after settling: {timeline:#?}"
    );
    let down_at = downs[0]["timestamp"].as_u64().unwrap_or(0);
    // The steady stretch at 600/s after settling: at least 5 stabilization intervals.
    assert!(
        down_at - settled_at >= 25_000,
        "steady for 25 s without a decision: {timeline:#?}"
    );
    let held_back = delayed_since.expect("the scale-down was held back first");
    assert!(
        down_at + 1_000 >= held_back + 30_000,
        "the scale-down came {} ms after it was first wanted, before the 30 s interval: {timeline:#?}",
        down_at.saturating_sub(held_back)
    );
    println!("decision timeline:\n{}", timeline.join("\n"));
    println!("rescales: {}", job_details["rescales"]["history"]);
    job.assert_exact(&out);
}

#[test]
fn too_few_slots_run_the_taskmanager_command_and_the_job_reaches_the_decided_parallelism() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let job = WindowedJob {
        rows: 200 * 15 + 600 * 120,
        keys: 20,
        splits: 4,
    };
    let checkpoints = tempfile::tempdir().expect("dir");
    let work = tempfile::tempdir().expect("dir");
    // The command starts taskmanagers in the background until `$1` run (the test's own one
    // counts) and notes each count it was asked for; the test kills what it started.
    let script = work.path().join("taskmanagers.sh");
    let asked = work.path().join("asked");
    let pids = work.path().join("pids");
    let mut cluster = Cluster::new(&autoscaler_config(
        checkpoints.path(),
        &format!(
            "taskmanager.numberOfTaskSlots: 1\nsluice.autoscaler.taskmanager-command: sh {} {{taskmanagers}}\n",
            script.display()
        ),
    ));
    std::fs::write(
        &script,
        format!(
            "echo \"$1\" >> {asked}\nrunning=$((1 + $(cat {pids} 2>/dev/null | wc -l)))\n\
             while [ \"$running\" -lt \"$1\" ]; do\n\
               {tm} --config-dir {cfg} -D metrics.reporter.prom.port=0 > {dir}/tm-$running.log 2>&1 &\n\
               echo $! >> {pids}\n  running=$((running + 1))\ndone\n",
            asked = asked.display(),
            pids = pids.display(),
            tm = binary("taskmanager").display(),
            cfg = cluster.config_dir().display(),
            dir = work.path().display(),
        ),
    )
    .expect("script");
    struct KillStarted<'a>(&'a Path);
    impl Drop for KillStarted<'_> {
        fn drop(&mut self) {
            for pid in std::fs::read_to_string(self.0).unwrap_or_default().lines() {
                if let Ok(pid) = pid.trim().parse::<i32>() {
                    // SAFETY: kill(2) on a pid this test's script started.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
    }
    let _started = KillStarted(&pids);
    let (_jm, _) = cluster.start_jobmanager();
    let _a = cluster.start_taskmanager(&[]);
    cluster.wait_taskmanagers(1, Duration::from_secs(20));
    let out = cluster.config_dir().join("out");
    let file = cluster.config_dir().join("job.yaml");
    std::fs::write(&file, job.yaml_with(&out, "200 for 15 s, then 600", 1, COST)).expect("job file");
    let run = cluster.sluice("run", &["-d", file.to_str().expect("path")]);
    assert!(run.status.success(), "{run:?}");
    let id = job_id_of(&run);
    // The shortage lasts only until the started taskmanagers register: its decision record,
    // not the current `missing_slots`, is what stays ("waiting for 1 more slot(s): 2 needed, …").
    let wanted = wait_for(
        Duration::from_secs(120),
        "the autoscaler to ask for taskmanagers",
        || {
            let a = cluster.rest(&format!("/jobs/{id}/autoscaler"))?;
            a["decisions"]
                .as_array()?
                .iter()
                .find(|d| d["outcome"].as_str().is_some_and(|o| o.starts_with("waiting for")))
                .cloned()
        },
    );
    println!("waiting: {wanted}");
    let wanted_slots: u64 = wanted["outcome"]
        .as_str()
        .and_then(|o| o.split(": ").nth(1))
        .and_then(|o| o.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("the needed slots in the decision");
    let expected = wanted_slots.to_string();
    wait_for(Duration::from_secs(30), "the command to run", || {
        let asked = std::fs::read_to_string(&asked).ok()?;
        asked.lines().any(|l| l.trim() == expected).then_some(())
    });
    let reached = wait_for(Duration::from_secs(90), "the decided parallelism", || {
        let j = cluster.rest(&format!("/jobs/{id}"))?;
        let (_, p) = window_vertex(&j)?;
        (j["state"] == "RUNNING" && p == wanted_slots && j["rescales"]["in-progress"] == false).then_some(j)
    });
    println!("rescales: {}", reached["rescales"]["history"]);
    let a = cluster.rest(&format!("/jobs/{id}/autoscaler")).expect("autoscaler");
    assert_eq!(a["missing_slots"], 0, "{a}");
    assert!(
        a["last_command"].as_str().is_some_and(|c| c.contains("succeeded")),
        "{a}"
    );
    let _ = cluster.sluice("cancel", &[&id]);
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
