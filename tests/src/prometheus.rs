//! A real Prometheus server (Debian's `prometheus`) for end-to-end tests: the shipped
//! `scripts/prometheus/prometheus.yml` and `alerts.yml`, laid out as in an installation
//! (`scripts/prometheus/` beside `log/`), finding the daemons through the file-SD target
//! files they write into `log/prometheus-targets`, with scrape and evaluation every second.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::{free_port, get_json, repo_root, Daemon};

pub struct Prometheus {
    pub port: u16,
    _daemon: Daemon,
}

/// Lays out the shipped configuration under `dir`; `rule_for` replaces the alert rules'
/// `for:` durations (the expressions stay as shipped). Returns the directory the daemons
/// must announce themselves in (`metrics.reporter.prom.file-sd-dir`).
pub fn install(dir: &Path, rule_for: Option<&str>) -> PathBuf {
    let prom_dir = dir.join("scripts/prometheus");
    std::fs::create_dir_all(&prom_dir).expect("mkdir");
    let shipped =
        std::fs::read_to_string(repo_root().join("scripts/prometheus/prometheus.yml")).expect("prometheus.yml");
    let config = shipped
        .replace("scrape_interval: 15s", "scrape_interval: 1s")
        .replace("evaluation_interval: 15s", "evaluation_interval: 1s")
        .replace("refresh_interval: 30s", "refresh_interval: 1s");
    assert!(config.contains("file_sd_configs"), "{config}");
    std::fs::write(prom_dir.join("prometheus.yml"), config).expect("config");
    let mut alerts = std::fs::read_to_string(repo_root().join("scripts/prometheus/alerts.yml")).expect("alerts.yml");
    if let Some(d) = rule_for {
        alerts = alerts
            .lines()
            .map(|l| match l.split_once("for: ") {
                Some((indent, _)) => format!("{indent}for: {d}"),
                None => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n");
    }
    std::fs::write(prom_dir.join("alerts.yml"), alerts).expect("alerts.yml");
    dir.join("log/prometheus-targets")
}

/// Starts Prometheus on a free port with the configuration `install` laid out in `dir`.
pub fn start(dir: &Path) -> Prometheus {
    let port = free_port();
    let args = vec![
        format!(
            "--config.file={}",
            dir.join("scripts/prometheus/prometheus.yml").display()
        ),
        format!("--web.listen-address=127.0.0.1:{port}"),
        format!("--storage.tsdb.path={}", dir.join("data").display()),
    ];
    let daemon = Daemon::start("prometheus", Path::new("prometheus"), &args, dir.join("prometheus.log"));
    Prometheus { port, _daemon: daemon }
}

impl Prometheus {
    /// An instant query's result vector; `None` when it does not evaluate.
    pub fn query(&self, expr: &str) -> Option<Value> {
        let mut url = format!("http://127.0.0.1:{}/api/v1/query?query=", self.port);
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

    /// The query's result when it has at least one series.
    pub fn query_some(&self, expr: &str) -> Option<Value> {
        self.query(expr).filter(|r| r.as_array().is_some_and(|a| !a.is_empty()))
    }

    /// The state of alert `name` (`pending`, `firing`), if it is active.
    pub fn alert_state(&self, name: &str) -> Option<String> {
        let v = get_json(&format!("http://127.0.0.1:{}/api/v1/alerts", self.port))?;
        v["data"]["alerts"]
            .as_array()?
            .iter()
            .find(|a| a["labels"]["alertname"] == name)
            .and_then(|a| a["state"].as_str().map(str::to_string))
    }
}

/// Waits at most `timeout` for `expr` to have a series; its result.
pub fn wait_query(p: &Prometheus, expr: &str, timeout: Duration) -> Value {
    crate::wait_for(timeout, expr, || p.query_some(expr))
}
