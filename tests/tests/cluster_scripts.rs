//! The shipped cluster scripts against real daemons: `start-cluster.sh` starts a jobmanager
//! and one taskmanager per `conf/workers` line, `taskmanager.sh start|stop` adds and removes
//! one, and `stop-cluster.sh` stops them all cleanly (pid files gone, logs written).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sluice_tests::{bin_dir, free_port, get_json, wait_for};

struct ScriptCluster {
    dir: tempfile::TempDir,
    rest_port: u16,
}

impl ScriptCluster {
    fn new() -> ScriptCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        for sub in ["conf", "log", "pid"] {
            std::fs::create_dir(dir.path().join(sub)).expect("mkdir");
        }
        let rest_port = free_port();
        let metrics = free_port();
        let config = format!(
            "jobmanager.rpc.address: 127.0.0.1\njobmanager.rpc.port: {}\njobmanager.bind-host: 127.0.0.1\n\
             jobmanager.memory.process.size: 1600m\nrest.bind-address: 127.0.0.1\nrest.port: {rest_port}\n\
             taskmanager.host: 127.0.0.1\ntaskmanager.bind-host: 127.0.0.1\ntaskmanager.memory.process.size: 1728m\n\
             metrics.reporter.prom.port: {metrics}-{}\n",
            free_port(),
            metrics + 10
        );
        std::fs::write(dir.path().join("conf/config.yaml"), config).expect("config");
        std::fs::write(
            dir.path().join("conf/workers"),
            "# two local taskmanagers\nlocalhost\nlocalhost\n",
        )
        .expect("workers");
        ScriptCluster { dir, rest_port }
    }

    fn script(&self, name: &str, args: &[&str]) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts").join(name);
        let out = Command::new("bash")
            .arg(&path)
            .args(args)
            .env("SLUICE_CONF_DIR", self.dir.path().join("conf"))
            .env("SLUICE_LOG_DIR", self.dir.path().join("log"))
            .env("SLUICE_PID_DIR", self.dir.path().join("pid"))
            .env("SLUICE_BIN_DIR", bin_dir())
            .output()
            .expect("run script");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{name} {args:?} failed:\n{text}");
        text
    }

    fn taskmanagers(&self) -> Option<u64> {
        get_json(&format!("http://127.0.0.1:{}/overview", self.rest_port))?["taskmanagers"].as_u64()
    }

    fn wait_taskmanagers(&self, n: u64) {
        wait_for(Duration::from_secs(20), &format!("{n} taskmanagers"), || {
            (self.taskmanagers() == Some(n)).then_some(())
        });
    }

    fn pid_files(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.dir.path().join("pid"))
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default()
    }
}

impl Drop for ScriptCluster {
    /// Whatever happened, leave no daemon behind: SIGKILL every pid still listed.
    fn drop(&mut self) {
        for file in self.pid_files() {
            for pid in std::fs::read_to_string(&file).unwrap_or_default().lines() {
                if let Ok(pid) = pid.trim().parse::<i32>() {
                    // SAFETY: signalling a pid our own scripts recorded.
                    unsafe {
                        libc::kill(pid, libc::SIGKILL);
                    }
                }
            }
        }
    }
}

#[test]
fn start_scale_and_stop_a_local_cluster_with_the_scripts() {
    let cluster = ScriptCluster::new();
    let out = cluster.script("start-cluster.sh", &[]);
    assert_eq!(out.matches("Started taskmanager").count(), 2, "{out}");
    cluster.wait_taskmanagers(2);

    cluster.script("taskmanager.sh", &["start"]);
    cluster.wait_taskmanagers(3);
    cluster.script("taskmanager.sh", &["stop"]);
    cluster.wait_taskmanagers(2);

    let out = cluster.script("stop-cluster.sh", &[]);
    assert!(out.contains("Stopped jobmanager"), "{out}");
    assert!(
        cluster.pid_files().is_empty(),
        "pid files left: {:?}",
        cluster.pid_files()
    );
    assert_eq!(
        cluster.taskmanagers(),
        None,
        "REST still answering after stop-cluster.sh"
    );
    let logs: Vec<String> = std::fs::read_dir(cluster.dir.path().join("log"))
        .expect("log dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    // Every daemon announced its metrics port to Prometheus (file SD) and took it back on stop.
    let targets = cluster.dir.path().join("log/prometheus-targets");
    assert!(targets.is_dir(), "no {}", targets.display());
    let left: Vec<_> = std::fs::read_dir(&targets)
        .expect("targets")
        .filter_map(|e| e.ok())
        .collect();
    assert!(left.is_empty(), "target files left after a clean stop: {left:?}");
    assert_eq!(logs.len(), 4, "one log per daemon started");
    let jm_log = logs
        .iter()
        .find(|l| l.contains("JobManager stopped."))
        .expect("jobmanager log");
    assert_eq!(
        jm_log.matches("deregistered (TaskManager shutting down)").count(),
        3,
        "{jm_log}"
    );
}
