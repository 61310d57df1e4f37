//! A real Prometheus server (Debian's `prometheus`) on 127.0.0.1 scrapes the jobmanager and the
//! taskmanagers of a running job, loads `scripts/prometheus/alerts.yml` unchanged, and every
//! alert expression evaluates; their `>= 0` variants return series, so the metrics the rules
//! need are there; every query of the shipped Grafana dashboard evaluates too. Skipped, with a
//! message, where `prometheus` is not installed.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use sluice_tests::tools::{have_tool, runs};
use sluice_tests::{free_port, get_json, repo_root, unbounded_job, wait_for, Cluster, Daemon};

fn query(port: u16, expr: &str) -> Option<Value> {
    let mut url = format!("http://127.0.0.1:{port}/api/v1/query?query=");
    for b in expr.bytes() {
        if b.is_ascii_alphanumeric() || b"_.-~".contains(&b) {
            url.push(b as char);
        } else {
            url.push_str(&format!("%{b:02X}"));
        }
    }
    let v = get_json(&url)?;
    (v["status"] == "success").then(|| v["data"]["result"].clone())
}

#[test]
fn alert_rules_evaluate_on_a_running_job() {
    if !have_tool(
        runs("prometheus", &["--version"]),
        "prometheus is not installed (Debian package prometheus; scripts/test.sh installs it)",
    ) {
        return;
    }
    // The shipped scripts/prometheus/prometheus.yml, laid out as in an installation
    // (scripts/prometheus/ beside log/), finds the daemons through the target files they write
    // into log/prometheus-targets: no port is listed anywhere.
    let dir = tempfile::tempdir().expect("dir");
    let prom_dir = dir.path().join("scripts/prometheus");
    std::fs::create_dir_all(&prom_dir).expect("mkdir");
    let targets = dir.path().join("log/prometheus-targets");
    let shipped =
        std::fs::read_to_string(repo_root().join("scripts/prometheus/prometheus.yml")).expect("prometheus.yml");
    let config = shipped
        .replace("scrape_interval: 15s", "scrape_interval: 1s")
        .replace("evaluation_interval: 15s", "evaluation_interval: 1s")
        .replace("refresh_interval: 30s", "refresh_interval: 1s");
    assert!(config.contains("file_sd_configs"), "{config}");
    let config_path = prom_dir.join("prometheus.yml");
    std::fs::write(&config_path, config).expect("config");
    std::fs::copy(
        repo_root().join("scripts/prometheus/alerts.yml"),
        prom_dir.join("alerts.yml"),
    )
    .expect("alerts.yml");

    let mut cluster = Cluster::new(&format!("metrics.reporter.prom.file-sd-dir: {}\n", targets.display()));
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

    let port = free_port();
    let args = vec![
        format!("--config.file={}", config_path.display()),
        format!("--web.listen-address=127.0.0.1:{port}"),
        format!("--storage.tsdb.path={}", dir.path().join("data").display()),
    ];
    let _prometheus = Daemon::start(
        "prometheus",
        Path::new("prometheus"),
        &args,
        dir.path().join("prometheus.log"),
    );
    let presence = [
        "avg(flink_taskmanager_job_task_backPressuredTimeMsPerSecond) >= 0",
        "avg(flink_taskmanager_Status_JVM_CPU_Load) >= 0",
        "avg(flink_taskmanager_job_task_busyTimeMsPerSecond) >= 0",
    ];
    for expr in presence {
        let result = wait_for(Duration::from_secs(60), expr, || {
            query(port, expr).filter(|r| r.as_array().is_some_and(|a| !a.is_empty()))
        });
        println!("{expr}: {}", result[0]["value"]);
    }
    // The rules themselves, loaded unchanged from scripts/prometheus/alerts.yml.
    let rules = wait_for(Duration::from_secs(30), "the rules evaluated", || {
        let v = get_json(&format!("http://127.0.0.1:{port}/api/v1/rules"))?;
        let rules: Vec<Value> = v["data"]["groups"]
            .as_array()?
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        (rules.len() == 3
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
        assert!(query(port, expr).is_some(), "{expr} evaluates");
    }
    // The jobmanager is scraped too.
    wait_for(Duration::from_secs(30), "the jobmanager's metrics", || {
        let r = query(port, "flink_jobmanager_numRegisteredTaskManagers")?;
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
        assert!(query(port, expr).is_some(), "dashboard query {expr} does not evaluate");
    }
    println!("{} dashboard panels' queries evaluate", panels.len());
    let c = cluster.sluice("cancel", &[id.as_str()]);
    assert!(c.status.success(), "{c:?}");
}
