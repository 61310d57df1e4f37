//! Prometheus file-based service discovery: with `metrics.reporter.prom.file-sd-dir` set, each
//! daemon writes one target file (`<kind>-<host>-<port>.json`, Prometheus's `file_sd_configs`
//! format) naming the metrics address it bound, and removes it when it stops. A Prometheus
//! whose config reads `<dir>/*.json` then scrapes every daemon of the cluster, however many
//! there are and whichever port of the range each one took.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The target file of a running daemon; removed on drop (a clean stop). A daemon killed with
/// SIGKILL leaves its file behind, and Prometheus shows that target as down.
pub struct FileSdTarget {
    path: PathBuf,
}

impl Drop for FileSdTarget {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The host Prometheus should scrape: the bound address, or this host's name when the daemon
/// listens on every interface.
fn scrape_host(addr: &SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        crate::net::hostname()
    } else {
        addr.ip().to_string()
    }
}

/// Writes the target file of daemon `kind` (jobmanager, taskmanager) serving metrics at `addr`
/// into `dir` (created if missing), atomically (a scraper never reads half a file).
pub fn write_file_sd_target(dir: &Path, kind: &str, addr: SocketAddr) -> Result<FileSdTarget, String> {
    let host = scrape_host(&addr);
    let target = if addr.is_ipv6() && !addr.ip().is_unspecified() {
        format!("[{host}]:{}", addr.port())
    } else {
        format!("{host}:{}", addr.port())
    };
    let body = serde_json::json!([{ "targets": [target], "labels": { "sluice_daemon": kind } }]);
    std::fs::create_dir_all(dir).map_err(|e| {
        format!(
            "metrics.reporter.prom.file-sd-dir: cannot create {}: {e}",
            dir.display()
        )
    })?;
    let name = format!("{kind}-{}-{}.json", host.replace([':', '/'], "_"), addr.port());
    let path = dir.join(&name);
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, body.to_string())
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| {
            format!(
                "metrics.reporter.prom.file-sd-dir: cannot write {}: {e}",
                path.display()
            )
        })?;
    Ok(FileSdTarget { path })
}

/// The target file for `metrics.reporter.prom.file-sd-dir`, when it is set.
pub fn announce_metrics(
    config: &crate::config::Configuration,
    kind: &str,
    addr: SocketAddr,
) -> Result<Option<FileSdTarget>, String> {
    let dir = config
        .get_opt(&crate::config::options::PROMETHEUS_FILE_SD_DIR)
        .map_err(|e| e.to_string())?;
    dir.map(|d| write_file_sd_target(Path::new(&d), kind, addr)).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_removes_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let sd = dir.path().join("targets");
        let guard = write_file_sd_target(&sd, "taskmanager", "127.0.0.1:9251".parse().unwrap()).unwrap();
        let path = sd.join("taskmanager-127.0.0.1-9251.json");
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(v[0]["targets"][0], "127.0.0.1:9251");
        assert_eq!(v[0]["labels"]["sluice_daemon"], "taskmanager");
        drop(guard);
        assert!(!path.exists());
    }
}
