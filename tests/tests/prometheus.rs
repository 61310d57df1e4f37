//! A real Prometheus server (Debian's `prometheus`) on 127.0.0.1 scrapes the jobmanager and the
//! taskmanagers of a running job, loads `scripts/prometheus/alerts.yml` unchanged, and every
//! alert expression evaluates; their `>= 0` variants return series, so the metrics the rules
//! need are there; every query of the shipped Grafana dashboard evaluates too. Skipped, with a
//! message, where `prometheus` is not installed.

use std::time::Duration;

use serde_json::Value;
use sluice_tests::prometheus::{install, start};
use sluice_tests::tools::{have_tool, runs};
use sluice_tests::{get_json, repo_root, unbounded_job, wait_for, Cluster};

/// Prometheus' shipped configuration in a temporary directory and a cluster announcing its
/// daemons there; `None` (the test prints SKIPPED) without a `prometheus` binary.
fn prometheus_setup() -> Option<(tempfile::TempDir, std::path::PathBuf, Cluster)> {
    if !have_tool(
        runs("prometheus", &["--version"]),
        "prometheus is not installed (Debian package prometheus; scripts/test.sh installs it)",
    ) {
        return None;
    }
    // The shipped configuration finds the daemons through the target files they write: no
    // port is listed anywhere.
    let dir = tempfile::tempdir().expect("dir");
    let targets = install(dir.path(), None);
    let cluster = Cluster::new(&format!("metrics.reporter.prom.file-sd-dir: {}\n", targets.display()));
    Some((dir, targets, cluster))
}

#[test]
fn alert_rules_evaluate_on_a_running_job() {
    let Some((dir, targets, mut cluster)) = prometheus_setup() else {
        return;
    };
    let (_jm, jm_metrics) = cluster.start_jobmanager();
    let (_a, tm_a) = cluster.start_taskmanager(&[]);
    let (_b, tm_b) = cluster.start_taskmanager(&[]);
    cluster.wait_taskmanagers(2, Duration::from_secs(20));
    let id = cluster.submit(&unbounded_job("watched", 3, 20000), "job.yaml");
    for port in [jm_metrics, tm_a, tm_b] {
        let found = std::fs::read_dir(&targets)
            .expect("target files")
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().ends_with(&format!("-{port}.json")));
        assert!(found, "no target file for metrics port {port} in {}", targets.display());
    }

    let prometheus = start(dir.path());
    let presence = [
        "avg(flink_taskmanager_job_task_backPressuredTimeMsPerSecond) >= 0",
        "avg(flink_taskmanager_Status_JVM_CPU_Load) >= 0",
        "avg(flink_taskmanager_job_task_busyTimeMsPerSecond) >= 0",
    ];
    for expr in presence {
        let result = wait_for(Duration::from_secs(60), expr, || prometheus.query_some(expr));
        println!("{expr}: {}", result[0]["value"]);
    }
    // The rules themselves, loaded unchanged from scripts/prometheus/alerts.yml.
    let rules = wait_for(Duration::from_secs(30), "the rules evaluated", || {
        let v = get_json(&format!("http://127.0.0.1:{}/api/v1/rules", prometheus.port))?;
        let rules: Vec<Value> = v["data"]["groups"]
            .as_array()?
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        (rules.len() == 4
            && rules
                .iter()
                .all(|r| r["health"] == "ok" && r["lastEvaluation"] != "0001-01-01T00:00:00Z"))
        .then_some(rules)
    });
    for r in &rules {
        println!(
            "rule {}: {} (health {}, state {})",
            r["name"], r["query"], r["health"], r["state"]
        );
        let expr = r["query"].as_str().expect("query");
        assert!(prometheus.query(expr).is_some(), "{expr} evaluates");
    }
    // The jobmanager is scraped too.
    wait_for(Duration::from_secs(30), "the jobmanager's metrics", || {
        let r = prometheus.query("flink_jobmanager_numRegisteredTaskManagers")?;
        (r[0]["value"][1] == "2").then_some(())
    });
    // Every query of the shipped Grafana dashboard evaluates.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("scripts/grafana/sluice-dashboard.json")).expect("dashboard"),
    )
    .expect("dashboard JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    for target in panels
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
    {
        let expr = target["expr"].as_str().expect("expr");
        assert!(
            prometheus.query(expr).is_some(),
            "dashboard query {expr} does not evaluate"
        );
    }
    println!("{} dashboard panels' queries evaluate", panels.len());
    let c = cluster.sluice("cancel", &[id.as_str()]);
    assert!(c.status.success(), "{c:?}");
}

/// The seed's `ScalingMetrics` as job-file metrics (a processing-latency histogram, a
/// throughput meter, a backlog gauge) on a real Prometheus scrape, named and labelled as
/// Flink's reporter names them.
#[test]
fn job_file_metrics_reach_prometheus_with_flinks_names_and_quantiles() {
    let Some((dir, _targets, mut cluster)) = prometheus_setup() else {
        return;
    };
    let (_jm, _) = cluster.start_jobmanager();
    let (_tm, tm_metrics) = cluster.start_taskmanager(&[]);
    cluster.wait_taskmanagers(1, Duration::from_secs(20));
    let job = r#"name: scaling-metrics
parallelism: 1
sources:
  - id: events
    connector: datagen
    options: {rows-per-second: 2000}
    schema:
      - {name: user_id, type: bigint, expr: "seq % 100"}
      - {name: amount, type: double, expr: "CAST(seq % 10 AS DOUBLE)"}
      - {name: ts, type: timestamp, expr: "now()"}
operators:
  - id: measured
    input: events
    filter: "amount >= 0"
    metrics:
      - {name: processingLatency, type: histogram, value: "now() - ts"}
      - {name: throughput, type: meter}
      - {name: backlog, type: gauge, value: "count(*)"}
      - {name: amountTotal, type: counter, value: amount}
sinks:
  - {id: out, input: measured, connector: blackhole}
"#;
    let id = cluster.submit(job, "scaling-metrics.yaml");
    // The taskmanager's own text first: the types and the quantile labels as Flink writes them.
    let text = wait_for(Duration::from_secs(30), "the user metrics on the taskmanager", || {
        let t = sluice_tests::get_text(&format!("http://127.0.0.1:{tm_metrics}/metrics"))?;
        t.contains("flink_taskmanager_job_task_operator_processingLatency_count")
            .then_some(t)
    });
    for line in [
        "# TYPE flink_taskmanager_job_task_operator_processingLatency summary",
        "# TYPE flink_taskmanager_job_task_operator_throughput gauge",
        "# TYPE flink_taskmanager_job_task_operator_backlog gauge",
    ] {
        assert!(text.contains(line), "{line} in:\n{text}");
    }
    let prometheus = start(dir.path());
    for q in ["0.0", "0.5", "0.75", "0.95", "0.98", "0.99", "0.999", "1.0"] {
        let expr = format!(
            "flink_taskmanager_job_task_operator_processingLatency{{quantile=\"{q}\",operator_name=\"measured\",job_id=\"{id}\"}}"
        );
        let r = wait_for(Duration::from_secs(60), &expr, || prometheus.query_some(&expr));
        let latency: f64 = r[0]["value"][1]
            .as_str()
            .and_then(|v| v.parse().ok())
            .expect("a number");
        assert!((0.0..60_000.0).contains(&latency), "{expr} = {latency} ms");
    }
    let count = "flink_taskmanager_job_task_operator_processingLatency_count{operator_name=\"measured\"} > 0";
    wait_for(Duration::from_secs(30), count, || prometheus.query_some(count));
    // The meter is the rate per second of the rows the operator received (2000/s generated).
    let rate = "flink_taskmanager_job_task_operator_throughput{operator_name=\"measured\"} > 500";
    let r = wait_for(Duration::from_secs(60), rate, || prometheus.query_some(rate));
    println!("throughput meter: {} rows/s", r[0]["value"][1]);
    let backlog = "flink_taskmanager_job_task_operator_backlog{operator_name=\"measured\"} > 0";
    wait_for(Duration::from_secs(30), backlog, || prometheus.query_some(backlog));
    let total = "flink_taskmanager_job_task_operator_amountTotal{operator_name=\"measured\"} > 0";
    wait_for(Duration::from_secs(30), total, || prometheus.query_some(total));
    let c = cluster.sluice("cancel", &[id.as_str()]);
    assert!(c.status.success(), "{c:?}");
}
