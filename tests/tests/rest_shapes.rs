//! Every REST answer Flink's clients and web UI read, deserialized by Flink 2.3's own classes:
//! `tests/java/FlinkRestShapes.java` takes each endpoint's response type from its Flink
//! `MessageHeaders` and parses the answer with Flink's strict REST mapper, as `RestClient`
//! does. The cluster runs a windowed job with checkpoints (vertex details, subtask metrics,
//! back-pressure, watermarks, checkpoint config and details, metrics queries), a job that
//! failed (the exception history) and disposes a savepoint (which deletes its directory).

use std::time::Duration;

use serde_json::json;
use sluice_tests::flink::{flink_bin, run_java_probe};
use sluice_tests::tools::{have_tool, runs};
use sluice_tests::{unbounded_job, wait_for, Cluster};

const FAILING_JOB: &str = r#"name: fails-at-once
parallelism: 1
config: {restart-strategy.type: none}
sources:
  - id: events
    connector: datagen
    options: {number-of-rows: 10}
    schema:
      - {name: k, type: bigint, expr: "seq"}
sinks:
  - id: out
    input: events
    connector: file
    options: {path: "file:///proc/sluice-cannot-write-here", format: csv}
"#;

#[test]
fn flinks_rest_classes_parse_every_answer() {
    let bin = flink_bin();
    if !have_tool(
        bin.is_some() && runs("javac", &["-version"]),
        "the Flink jars (PyPI apache-flink in ~/.cache/sluice-tools/flink-venv) or javac (Debian openjdk-17-jdk-headless) is missing; scripts/test.sh installs both",
    ) {
        return;
    }
    let Some(bin) = bin else { return };
    let storage = tempfile::tempdir().expect("dir");
    let mut cluster = Cluster::new(&format!(
        "execution.checkpointing.dir: file://{0}/chk\nexecution.checkpointing.savepoint-dir: file://{0}/sp\n\
         execution.checkpointing.interval: 2 s\nheartbeat.interval: 1 s\n",
        storage.path().display()
    ));
    let (_jm, _) = cluster.start_jobmanager();
    let _a = cluster.start_taskmanager(&[]);
    let _b = cluster.start_taskmanager(&[]);
    cluster.wait_taskmanagers(2, Duration::from_secs(20));
    let id = cluster.submit(&unbounded_job("shapes", 2, 2000), "shapes.yaml");
    let failed = cluster.submit(FAILING_JOB, "fails.yaml");
    cluster.wait_job_state(&failed, "FAILED", Duration::from_secs(30));
    wait_for(Duration::from_secs(30), "two checkpoints", || {
        (cluster.completed_checkpoints(&id) >= 2).then_some(())
    });
    let details = cluster.rest(&format!("/jobs/{id}")).expect("job details");
    let vertices: Vec<String> = details["vertices"]
        .as_array()
        .expect("vertices")
        .iter()
        .filter_map(|v| v["id"].as_str().map(str::to_string))
        .collect();
    let window = vertices.last().expect("a vertex").clone();
    // Subtask digests (with watermarks) reach the jobmanager with the heartbeats.
    wait_for(Duration::from_secs(20), "watermarks of the window", || {
        let w = cluster.rest(&format!("/jobs/{id}/vertices/{window}/watermarks"))?;
        (w.as_array()?.len() == 2).then_some(())
    });
    let tm = cluster.rest("/taskmanagers").expect("taskmanagers")["taskmanagers"][0]["id"]
        .as_str()
        .expect("tm id")
        .to_string();

    // A savepoint to dispose.
    let (status, body) = cluster.rest_post(&format!("/jobs/{id}/savepoints"), &json!({}));
    assert_eq!(status, 202, "{body}");
    let trigger = serde_json::from_str::<serde_json::Value>(&body).expect("json")["request-id"]
        .as_str()
        .expect("request-id")
        .to_string();
    let location = wait_for(Duration::from_secs(30), "the savepoint", || {
        let v = cluster.rest(&format!("/jobs/{id}/savepoints/{trigger}"))?;
        v["operation"]["location"].as_str().map(str::to_string)
    });
    let (status, body) = cluster.rest_post("/savepoint-disposal", &json!({"savepoint-path": location}));
    assert_eq!(status, 200, "{body}");
    let disposal = serde_json::from_str::<serde_json::Value>(&body).expect("json")["request-id"]
        .as_str()
        .expect("request-id")
        .to_string();
    wait_for(Duration::from_secs(20), "the disposal", || {
        let v = cluster.rest(&format!("/savepoint-disposal/{disposal}"))?;
        (v["status"]["id"] == "COMPLETED").then_some(())
    });
    let dir = location.trim_start_matches("file://");
    assert!(!std::path::Path::new(dir).exists(), "{dir} was disposed of");

    // The newest completed checkpoint, read last: the history keeps the latest 10 only.
    let checkpoint = cluster.rest(&format!("/jobs/{id}/checkpoints")).expect("checkpoints")["latest"]["completed"]
        ["id"]
        .as_u64()
        .expect("a completed checkpoint");
    let m = "org.apache.flink.runtime.rest.messages";
    let endpoints: Vec<(String, String)> = [
        ("/overview".to_string(), format!("{m}.ClusterOverviewHeaders")),
        ("/config".into(), format!("{m}.DashboardConfigurationHeaders")),
        (
            "/jars".into(),
            "org.apache.flink.runtime.webmonitor.handlers.JarListHeaders".into(),
        ),
        ("/taskmanagers".into(), format!("{m}.taskmanager.TaskManagersHeaders")),
        (
            format!("/taskmanagers/{tm}"),
            format!("{m}.taskmanager.TaskManagerDetailsHeaders"),
        ),
        (
            format!("/taskmanagers/{tm}/metrics?get=Status.JVM.CPU.Load"),
            format!("{m}.job.metrics.TaskManagerMetricsHeaders"),
        ),
        (format!("/jobs/{id}"), format!("{m}.job.JobDetailsHeaders")),
        (format!("/jobs/{id}/config"), format!("{m}.JobConfigHeaders")),
        (format!("/jobs/{id}/plan"), format!("{m}.JobPlanHeaders")),
        (
            format!("/jobs/{id}/accumulators"),
            format!("{m}.JobAccumulatorsHeaders"),
        ),
        (format!("/jobs/{id}/exceptions"), format!("{m}.JobExceptionsHeaders")),
        (
            format!("/jobs/{failed}/exceptions"),
            format!("{m}.JobExceptionsHeaders"),
        ),
        (
            format!("/jobs/{id}/metrics"),
            format!("{m}.job.metrics.JobMetricsHeaders"),
        ),
        (
            format!("/jobs/{id}/metrics?get=numRestarts,lastCheckpointDuration"),
            format!("{m}.job.metrics.JobMetricsHeaders"),
        ),
        (
            format!("/jobs/{id}/checkpoints"),
            format!("{m}.checkpoints.CheckpointingStatisticsHeaders"),
        ),
        (
            format!("/jobs/{id}/checkpoints/config"),
            format!("{m}.checkpoints.CheckpointConfigHeaders"),
        ),
        (
            format!("/jobs/{id}/checkpoints/details/{checkpoint}"),
            format!("{m}.checkpoints.CheckpointStatisticDetailsHeaders"),
        ),
        (
            format!("/savepoint-disposal/{disposal}"),
            format!("{m}.job.savepoints.SavepointDisposalStatusHeaders"),
        ),
        (
            "POST /savepoint-disposal {\"savepoint-path\": \"file:///nonexistent\"}".into(),
            format!("{m}.job.savepoints.SavepointDisposalTriggerHeaders"),
        ),
    ]
    .into_iter()
    .chain(vertices.iter().flat_map(|v| {
        [
            (
                format!("/jobs/{id}/vertices/{v}"),
                format!("{m}.JobVertexDetailsHeaders"),
            ),
            (
                format!("/jobs/{id}/vertices/{v}/subtasks/metrics?get=busyTimeMsPerSecond,numRecordsInPerSecond"),
                format!("{m}.job.metrics.AggregatedSubtaskMetricsHeaders"),
            ),
            (
                format!("/jobs/{id}/vertices/{v}/subtasks/metrics?get=busyTimeMsPerSecond&agg=max,avg"),
                format!("{m}.job.metrics.AggregatedSubtaskMetricsHeaders"),
            ),
            (
                format!("/jobs/{id}/vertices/{v}/backpressure"),
                format!("{m}.JobVertexBackPressureHeaders"),
            ),
            (
                format!("/jobs/{id}/vertices/{v}/watermarks"),
                format!("{m}.job.metrics.JobVertexWatermarksHeaders"),
            ),
        ]
    }))
    .collect();
    let base = format!("http://127.0.0.1:{}", cluster.rest_port);
    let args: Vec<String> = std::iter::once(base)
        .chain(endpoints.iter().map(|(path, class)| format!("{path}={class}")))
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let work = tempfile::tempdir().expect("dir");
    let out = run_java_probe(&bin, "FlinkRestShapes", &args, work.path());
    assert_eq!(
        out.lines().filter(|l| l.starts_with("ok ")).count(),
        endpoints.len(),
        "every answer parsed:\n{out}"
    );
    let exceptions = cluster.rest(&format!("/jobs/{failed}/exceptions")).expect("exceptions");
    let entry = &exceptions["exceptionHistory"]["entries"][0];
    assert!(
        entry["stacktrace"]
            .as_str()
            .is_some_and(|s| s.contains("sluice-cannot-write-here")),
        "{exceptions}"
    );
    assert!(entry["timestamp"].as_u64().is_some_and(|t| t > 0), "{exceptions}");
    let c = cluster.sluice("cancel", &[id.as_str()]);
    assert!(c.status.success(), "{c:?}");
}
