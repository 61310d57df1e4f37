//! Failures carry a class, and the restart strategy only retries what can succeed: a sink path
//! that cannot be written (config) and a record that does not decode (user) fail the job after
//! one attempt with the cause (file, line and value for the record) in `/jobs/:id/exceptions`;
//! a lost taskmanager (transient) is restarted under the same restart strategy.

use std::time::Duration;

use sluice_tests::{get_text, unbounded_job, Cluster};

const RESTARTS: &str = "restart-strategy.type: fixed-delay\nrestart-strategy.fixed-delay.attempts: 10\n\
                        restart-strategy.fixed-delay.delay: 100 ms\n";

/// `flink_jobmanager_job_numRestarts` of job `id` on the jobmanager's metrics port.
fn restarts(metrics_port: u16, id: &str) -> u64 {
    get_text(&format!("http://127.0.0.1:{metrics_port}/metrics"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("flink_jobmanager_job_numRestarts{") && l.contains(id))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

#[test]
fn config_and_user_failures_fail_at_once_and_transient_ones_restart() {
    let mut cluster = Cluster::new(RESTARTS);
    let (_jm, jm_metrics) = cluster.start_jobmanager();
    let (mut a, _) = cluster.start_taskmanager(&[]);
    cluster.wait_taskmanagers(1, Duration::from_secs(20));
    let dir = cluster.config_dir().to_path_buf();

    // Config: the sink's directory would have to be inside a regular file.
    let blocker = dir.join("not-a-directory");
    std::fs::write(&blocker, "x").expect("file");
    let sink_job = format!(
        "name: unwritable\nparallelism: 1\nsources:\n  - id: s\n    connector: datagen\n    options: {{number-of-rows: 1000}}\n    schema: [{{name: k, type: bigint, expr: \"seq\"}}]\nsinks:\n  - {{id: o, input: s, connector: file, options: {{path: \"{}/out\"}}}}\n",
        blocker.display()
    );
    let id = cluster.submit(&sink_job, "unwritable.yaml");
    cluster.wait_job_state(&id, "FAILED", Duration::from_secs(30));
    let exceptions = cluster.rest(&format!("/jobs/{id}/exceptions")).expect("exceptions");
    let cause = exceptions["root-exception"].as_str().unwrap_or_default();
    println!("config failure: {exceptions}");
    assert_eq!(exceptions["failure-class"], "config", "{exceptions}");
    assert!(cause.contains("not-a-directory/out"), "{cause}");
    assert_eq!(restarts(jm_metrics, &id), 0, "a config failure is not restarted");

    // User: one record of a JSON-lines file does not decode.
    let input = dir.join("amounts.json");
    let mut lines: Vec<String> = (0..5000).map(|i| format!("{{\"amount\": {i}.5}}")).collect();
    lines[4321] = "{\"amount\": \"oops\"}".to_string();
    std::fs::write(&input, lines.join("\n") + "\n").expect("input");
    let record_job = format!(
        "name: bad-record\nparallelism: 1\nsources:\n  - id: s\n    connector: file\n    options: {{path: \"{}\", format: json}}\n    schema: [{{name: amount, type: double}}]\nsinks:\n  - {{id: o, input: s, connector: blackhole}}\n",
        input.display()
    );
    let id = cluster.submit(&record_job, "bad-record.yaml");
    cluster.wait_job_state(&id, "FAILED", Duration::from_secs(30));
    let exceptions = cluster.rest(&format!("/jobs/{id}/exceptions")).expect("exceptions");
    let cause = exceptions["root-exception"].as_str().unwrap_or_default();
    println!("user failure: {exceptions}");
    assert_eq!(exceptions["failure-class"], "user", "{exceptions}");
    assert!(
        cause.contains(&format!("{}, line 4322: cannot read record", input.display())) && cause.contains("oops"),
        "{cause}"
    );
    assert_eq!(restarts(jm_metrics, &id), 0, "a user failure is not restarted");

    // Transient: the taskmanager running the job is killed; a new one takes over.
    let checkpoints = tempfile::tempdir().expect("dir");
    let endless = unbounded_job("endless", 1, 1000).replace(
        "name: endless\n",
        &format!(
            "name: endless\nconfig:\n  execution.checkpointing.dir: file://{}\n  execution.checkpointing.interval: 300 ms\n",
            checkpoints.path().display()
        ),
    );
    let id = cluster.submit(&endless, "endless.yaml");
    cluster.wait_job_state(&id, "RUNNING", Duration::from_secs(30));
    a.kill9();
    let _b = cluster.start_taskmanager(&[]);
    sluice_tests::wait_for(Duration::from_secs(60), "a restart after the lost taskmanager", || {
        (restarts(jm_metrics, &id) >= 1 && cluster.job_state(&id).as_deref() == Some("RUNNING")).then_some(())
    });
    println!(
        "transient failure: restarted {} time(s), running again",
        restarts(jm_metrics, &id)
    );
}
