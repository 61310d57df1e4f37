//! A job whose sink is slower than its source (datagen at full speed, parallelism 3, into a
//! blackhole sink that discards 2000 rows per second, parallelism 1): Flink's time accounting
//! shows each source subtask back-pressured and the sink busy, about 1000 ms/s each, on the
//! taskmanagers' Prometheus endpoints, on a real Prometheus (where the shipped
//! `SluiceBackPressure` alert fires) and on REST (`/backpressure`, `/subtasks/metrics`). After
//! the job is cancelled no series of it remains on either daemon's `/metrics`.

use std::time::Duration;

use sluice_tests::prometheus::{install, start, wait_query};
use sluice_tests::tools::{have_tool, runs};
use sluice_tests::{get_text, wait_for, Cluster, SLOW_SINK_JOB};

/// A series' value from Prometheus text, for a line holding every one of `needles`.
fn values(text: &str, metric: &str, needles: &[&str]) -> Vec<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")) && needles.iter().all(|n| l.contains(n)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .collect()
}

fn vertex_id(cluster: &Cluster, job: &str, prefix: &str) -> String {
    let details = cluster.rest(&format!("/jobs/{job}")).expect("job details");
    details["vertices"]
        .as_array()
        .expect("vertices")
        .iter()
        .find(|v| v["name"].as_str().is_some_and(|n| n.starts_with(prefix)))
        .and_then(|v| v["id"].as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("no vertex named {prefix}… in {details}"))
}

#[test]
fn slow_sink_back_pressures_the_source_everywhere_and_series_end_with_the_job() {
    if !have_tool(
        runs("prometheus", &["--version"]),
        "prometheus is not installed (Debian package prometheus; scripts/test.sh installs it)",
    ) {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    // The shipped rules, held for 5 s instead of a minute so the test does not wait that long.
    let targets = install(dir.path(), Some("5s"));
    let mut cluster = Cluster::new(&format!(
        "metrics.reporter.prom.file-sd-dir: {}\nheartbeat.interval: 1 s\n",
        targets.display()
    ));
    let (_jm, jm_metrics) = cluster.start_jobmanager();
    let (_a, tm_a) = cluster.start_taskmanager(&[]);
    let (_b, tm_b) = cluster.start_taskmanager(&[]);
    cluster.wait_taskmanagers(2, Duration::from_secs(20));
    let id = cluster.submit(SLOW_SINK_JOB, "slow-sink.yaml");
    cluster.wait_job_state(&id, "RUNNING", Duration::from_secs(30));
    let prometheus = start(dir.path());

    // The taskmanagers' own endpoints: every source subtask ≥ 900 ms/s back-pressured, the
    // sink ≥ 900 ms/s busy, and each subtask's three times add up to about a second.
    let scrape = || {
        [tm_a, tm_b]
            .iter()
            .map(|p| get_text(&format!("http://127.0.0.1:{p}/metrics")).unwrap_or_default())
            .collect::<String>()
    };
    let job_label = format!("job_id=\"{id}\"");
    let text = wait_for(
        Duration::from_secs(60),
        "source back-pressured, sink busy on /metrics",
        || {
            let text = scrape();
            let bp = values(
                &text,
                "flink_taskmanager_job_task_backPressuredTimeMsPerSecond",
                &[&job_label, "task_name=\"Source"],
            );
            let busy = values(
                &text,
                "flink_taskmanager_job_task_busyTimeMsPerSecond",
                &[&job_label, "Sink:_out"],
            );
            (bp.len() == 3 && bp.iter().all(|v| *v >= 900.0) && busy.len() == 1 && busy[0] >= 900.0).then_some(text)
        },
    );
    for line in text
        .lines()
        .filter(|l| l.contains(&job_label) && l.contains("TimeMsPerSecond"))
    {
        println!("{line}");
    }
    for subtask in ["subtask_index=\"0\"", "subtask_index=\"1\"", "subtask_index=\"2\""] {
        let sum: f64 = ["busy", "idle", "backPressured"]
            .iter()
            .flat_map(|k| {
                values(
                    &text,
                    &format!("flink_taskmanager_job_task_{k}TimeMsPerSecond"),
                    &[&job_label, "task_name=\"Source", subtask],
                )
            })
            .sum();
        assert!(
            (950.0..=1000.5).contains(&sum),
            "busy + idle + back-pressured = {sum} ms/s for {subtask}"
        );
    }

    // Prometheus: the same, and the shipped back-pressure alert fires.
    let r = wait_query(
        &prometheus,
        "min(flink_taskmanager_job_task_backPressuredTimeMsPerSecond{task_name=~\"Source.*\"}) >= 900",
        Duration::from_secs(60),
    );
    println!("Prometheus: source back-pressured ≥ {} ms/s", r[0]["value"][1]);
    wait_query(
        &prometheus,
        "min(flink_taskmanager_job_task_busyTimeMsPerSecond{task_name=~\"Sink.*\"}) >= 900",
        Duration::from_secs(30),
    );
    wait_for(Duration::from_secs(60), "SluiceBackPressure firing", || {
        (prometheus.alert_state("SluiceBackPressure").as_deref() == Some("firing")).then_some(())
    });
    println!("Prometheus: SluiceBackPressure is firing");

    // REST: Flink's back-pressure view and aggregated subtask metrics.
    let source = vertex_id(&cluster, &id, "Source");
    let sink = vertex_id(&cluster, &id, "Sink");
    let bp = wait_for(Duration::from_secs(30), "REST back-pressure high on the source", || {
        let v = cluster.rest(&format!("/jobs/{id}/vertices/{source}/backpressure"))?;
        let subtasks = v["subtasks"].as_array()?;
        (v["backpressureLevel"] == "high"
            && subtasks.len() == 3
            && subtasks.iter().all(|s| s["ratio"].as_f64().is_some_and(|r| r >= 0.9)))
        .then_some(v)
    });
    println!("REST backpressure of the source: {bp}");
    let busy = wait_for(Duration::from_secs(30), "REST busy time of the sink", || {
        let v = cluster.rest(&format!(
            "/jobs/{id}/vertices/{sink}/subtasks/metrics?get=busyTimeMsPerSecond&agg=min"
        ))?;
        (v[0]["min"].as_f64()? >= 900.0).then_some(v)
    });
    println!("REST busy time of the sink: {busy}");

    // Cancelled: the job's series leave both daemons' endpoints.
    let c = cluster.sluice("cancel", &[id.as_str()]);
    assert!(c.status.success(), "{c:?}");
    cluster.wait_job_state(&id, "CANCELED", Duration::from_secs(30));
    wait_for(Duration::from_secs(30), "no series of the cancelled job", || {
        let all: String = [jm_metrics, tm_a, tm_b]
            .iter()
            .map(|p| get_text(&format!("http://127.0.0.1:{p}/metrics")).unwrap_or_default())
            .collect();
        let left: Vec<&str> = all.lines().filter(|l| l.contains(&id)).collect();
        left.is_empty().then_some(())
    });
    let jm_text = get_text(&format!("http://127.0.0.1:{jm_metrics}/metrics")).unwrap_or_default();
    assert!(
        jm_text.contains("flink_jobmanager_numRegisteredTaskManagers"),
        "the process series stay: {jm_text}"
    );
}
