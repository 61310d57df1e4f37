//! Splits found while a job runs (a file source with `source.monitor-interval`): files that
//! appear in the watched directory reach the running readers through the jobmanager's
//! enumerator; after a taskmanager is killed (`kill -9`) the job restores its last checkpoint,
//! whose enumerator state says which files some reader already had, so files found since are
//! read once and files read before are not dealt again. Every row ends up committed exactly once.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use sluice_tests::{checkpoints_and_restarts, job_restarts, wait_or_explain, Cluster};

const ONE_SLOT: &[&str] = &["-D", "taskmanager.numberOfTaskSlots=1"];
const ROWS_PER_FILE: i64 = 500;

/// Writes rows [n·500, (n+1)·500) as file `f{n}.json`, whole at once (a hidden name renamed).
fn add_file(dir: &Path, n: i64) {
    let text: String = (n * ROWS_PER_FILE..(n + 1) * ROWS_PER_FILE)
        .map(|id| format!("{{\"id\": {id}}}\n"))
        .collect();
    let hidden = dir.join(format!(".f{n}.json"));
    std::fs::write(&hidden, text).expect("input file");
    std::fs::rename(&hidden, dir.join(format!("f{n:03}.json"))).expect("rename");
}

/// How many times each id is in a committed part file.
fn committed(out: &Path) -> BTreeMap<i64, u32> {
    let mut seen = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(out) else {
        return seen;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if !name.starts_with("part-") {
            continue;
        }
        for line in std::fs::read_to_string(entry.path()).unwrap_or_default().lines() {
            if let Some(id) = serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v["id"].as_i64())
            {
                *seen.entry(id).or_insert(0) += 1;
            }
        }
    }
    seen
}

fn wait_rows(cluster: &Cluster, out: &Path, files: i64) {
    wait_or_explain(
        Duration::from_secs(60),
        || (committed(out).len() as i64 >= files * ROWS_PER_FILE).then_some(()),
        || {
            format!(
                "{} rows of {} files committed, {} seen\n{}",
                files * ROWS_PER_FILE,
                files,
                committed(out).len(),
                cluster.log_tails(30)
            )
        },
    );
}

#[test]
fn files_found_while_running_are_read_once_across_a_kill9() {
    let checkpoints = tempfile::tempdir().expect("dir");
    let mut cluster = Cluster::new(&checkpoints_and_restarts(checkpoints.path(), "300 ms"));
    let (_jm, jm_metrics) = cluster.start_jobmanager();
    let mut first = cluster.start_taskmanager(ONE_SLOT).0;
    let _second = cluster.start_taskmanager(ONE_SLOT).0;
    cluster.wait_taskmanagers(2, Duration::from_secs(20));

    let input = cluster.config_dir().join("in");
    let out = cluster.config_dir().join("out");
    std::fs::create_dir_all(&input).expect("input dir");
    add_file(&input, 0);
    let yaml = format!(
        "name: monitored\nsources:\n  - id: files\n    connector: file\n    parallelism: 2\n    \
         options: {{path: \"{}\", format: json, source.monitor-interval: 200 ms}}\n    \
         schema: [{{name: id, type: bigint}}]\nsinks:\n  - {{id: o, input: files, connector: file, \
         options: {{path: \"{}\", format: json}}}}\n",
        input.display(),
        out.display()
    );
    let id = cluster.submit(&yaml, "monitored.yaml");
    cluster.wait_job_state(&id, "RUNNING", Duration::from_secs(30));
    wait_rows(&cluster, &out, 1);

    // New files while it runs: dealt to the running readers.
    for n in 1..4 {
        add_file(&input, n);
    }
    wait_rows(&cluster, &out, 4);

    // A taskmanager dies; files arrive while the job restarts and after.
    first.kill9();
    add_file(&input, 4);
    let _third = cluster.start_taskmanager(ONE_SLOT).0;
    wait_or_explain(
        Duration::from_secs(60),
        || (job_restarts(jm_metrics, &id) >= 1 && cluster.job_state(&id).as_deref() == Some("RUNNING")).then_some(()),
        || format!("waiting for the restart after the kill\n{}", cluster.log_tails(30)),
    );
    add_file(&input, 5);
    wait_rows(&cluster, &out, 6);
    // A little longer: what a wrong restore would deal again shows up within a few intervals.
    std::thread::sleep(Duration::from_secs(2));
    let seen = committed(&out);
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(twice.is_empty(), "rows committed more than once: {twice:?}");
    assert_eq!(seen.len() as i64, 6 * ROWS_PER_FILE);
    assert_eq!(
        cluster.job_state(&id).as_deref(),
        Some("RUNNING"),
        "a monitored source runs on"
    );
}
