//! Failures carry a class, and the restart strategy only retries what can succeed: a sink path
//! that cannot be written (config) and a record that does not decode (user) fail the job after
//! one attempt with the cause (file, line and value for the record) in `/jobs/:id/exceptions`;
//! a lost taskmanager (transient) is restarted under the same restart strategy.

use std::time::Duration;

use sluice_tests::{job_restarts, unbounded_job, Cluster};

const RESTARTS: &str = "restart-strategy.type: fixed-delay\nrestart-strategy.fixed-delay.attempts: 10\n\
                        restart-strategy.fixed-delay.delay: 100 ms\n";

/// Submits `yaml`, which must end FAILED without a restart with a failure of `class`; returns
/// the root cause `/jobs/:id/exceptions` shows.
fn fails_at_once(cluster: &Cluster, yaml: &str, class: &str) -> String {
    let id = cluster.submit(yaml, &format!("{class}-failure-job.yaml"));
    cluster.wait_job_state(&id, "FAILED", Duration::from_secs(30));
    let exceptions = cluster.rest(&format!("/jobs/{id}/exceptions")).expect("exceptions");
    println!("{class} failure: {exceptions}");
    // Flink 2's exception history: the newest failure first, its class as a failure label.
    let root = &exceptions["exceptionHistory"]["entries"][0];
    assert_eq!(root["failureLabels"]["failureClass"], class, "{exceptions}");
    let restarts = cluster
        .rest(&format!("/jobs/{id}/metrics?get=numRestarts"))
        .expect("job metrics");
    assert_eq!(
        restarts[0]["value"], "0",
        "a {class} failure is not restarted: {restarts}"
    );
    root["stacktrace"].as_str().unwrap_or_default().to_string()
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
    let cause = fails_at_once(&cluster, &sink_job, "config");
    assert!(cause.contains("not-a-directory/out"), "{cause}");

    // User: one record of a JSON-lines file does not decode.
    let input = dir.join("amounts.json");
    let mut lines: Vec<String> = (0..5000).map(|i| format!("{{\"amount\": {i}.5}}")).collect();
    lines[4321] = "{\"amount\": \"oops\"}".to_string();
    std::fs::write(&input, lines.join("\n") + "\n").expect("input");
    let record_job = format!(
        "name: bad-record\nparallelism: 1\nsources:\n  - id: s\n    connector: file\n    options: {{path: \"{}\", format: json}}\n    schema: [{{name: amount, type: double}}]\nsinks:\n  - {{id: o, input: s, connector: blackhole}}\n",
        input.display()
    );
    let cause = fails_at_once(&cluster, &record_job, "user");
    assert!(
        cause.contains(&format!("{}, line 4322: cannot read record", input.display())) && cause.contains("oops"),
        "{cause}"
    );

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
    sluice_tests::wait_or_explain(
        Duration::from_secs(60),
        || (job_restarts(jm_metrics, &id) >= 1 && cluster.job_state(&id).as_deref() == Some("RUNNING")).then_some(()),
        || {
            format!(
                "waiting for a restart after the lost taskmanager: {} restarts, job {:?}, exceptions {:?}; logs:\n{}",
                job_restarts(jm_metrics, &id),
                cluster.job_state(&id),
                cluster.rest(&format!("/jobs/{id}/exceptions")),
                cluster.log_tails(30)
            )
        },
    );
    println!(
        "transient failure: restarted {} time(s), running again",
        job_restarts(jm_metrics, &id)
    );
}

/// `reinterpret-as-keyed`: over an input that a key-by really partitioned it runs (no second
/// shuffle); over one that is not partitioned by its keys the job fails at once, as a user
/// failure naming the row, instead of keeping wrong state.
#[test]
fn reinterpret_as_keyed_runs_on_partitioned_input_and_fails_on_the_rest() {
    let mut cluster = Cluster::new(RESTARTS);
    let (_jm, _) = cluster.start_jobmanager();
    let (_tm, _) = cluster.start_taskmanager(&[]);
    cluster.wait_taskmanagers(1, Duration::from_secs(20));
    let job = |shuffle: bool| {
        let (shuffled, input) = if shuffle {
            ("  - {id: shuffled, input: s, key-by: [user_id]}\n", "shuffled")
        } else {
            ("", "s")
        };
        format!(
            r#"name: reinterpreted
parallelism: 2
sources:
  - id: s
    connector: datagen
    options: {{number-of-rows: 20000, splits: 4}}
    schema:
      - {{name: user_id, type: bigint, expr: "seq % 100"}}
      - {{name: ts, type: timestamp, expr: "to_timestamp_millis(1767225600000 + seq)"}}
    watermark: {{column: ts, max-out-of-orderness: 0 ms}}
operators:
{shuffled}  - id: per-user
    input: {input}
    key-by: [user_id]
    reinterpret-as-keyed: true
    window: {{type: tumbling, size: 2 s}}
    aggregate: {{n: "count(*)"}}
sinks:
  - {{id: o, input: per-user, connector: blackhole}}
"#
        )
    };
    let id = cluster.submit(&job(true), "partitioned.yaml");
    cluster.wait_job_state(&id, "FINISHED", Duration::from_secs(60));
    let cause = fails_at_once(&cluster, &job(false), "user");
    assert!(
        cause.contains("'per-user' reinterprets its input as keyed by [user_id]") && cause.contains("not partitioned"),
        "{cause}"
    );
}
