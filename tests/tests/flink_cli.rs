//! The real Flink 2.3 CLI (`flink` of PyPI's `apache-flink`, installed by scripts/test.sh through
//! scripts/deps.sh) drives a Sluice cluster with `-m 127.0.0.1:<rest.port>`: `list` (default,
//! `-r`, `-s`, `-a`), `savepoint` (with and without `--type`), `stop --savepointPath` (with and
//! without `--drain`) and `cancel`, each answer parsed by Flink's own REST client classes; the
//! job details and status the CLI has no verb for are read by `tests/java/FlinkRestProbe.java`
//! through Flink's `RestClusterClient`.
//! A job that waits for slots is listed as scheduled.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sluice_tests::flink::{flink_bin, run_java_probe};
use sluice_tests::tools::{have_tool, runs};
use sluice_tests::{unbounded_job, wait_for, Cluster};

struct Flink {
    bin: PathBuf,
    rest: String,
    dir: tempfile::TempDir,
}

impl Flink {
    /// Runs `flink <verb> -m <rest> args…`; returns (success, stdout + stderr).
    fn run(&self, verb: &str, args: &[&str]) -> (bool, String) {
        let out = Command::new(&self.bin)
            .arg(verb)
            .args(["-m", &self.rest])
            .args(args)
            .env("FLINK_CONF_DIR", self.dir.path())
            .env("FLINK_LOG_DIR", self.dir.path())
            .output()
            .expect("run flink");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        println!("$ flink {verb} {}\n{text}", args.join(" "));
        (out.status.success(), text)
    }
}

impl Flink {
    /// Reads job `id` with tests/java/FlinkRestProbe.java (Flink's `RestClusterClient`).
    fn probe(&self, id: &str) -> String {
        let (host, port) = self.rest.split_once(':').expect("host:port");
        run_java_probe(&self.bin, "FlinkRestProbe", &[host, port, id], self.dir.path())
    }
}

fn line_of(text: &str, id: &str) -> String {
    text.lines().find(|l| l.contains(id)).unwrap_or_default().to_string()
}

/// `dd.MM.yyyy HH:mm:ss : <id> : <name> (<state>)`.
fn assert_listed(text: &str, id: &str, name: &str, state: &str) {
    let line = line_of(text, id);
    assert!(
        line.ends_with(&format!(" : {id} : {name} ({state})")),
        "{id} not {state} in:\n{text}"
    );
    let date = line.split(" : ").next().unwrap_or_default();
    assert_eq!(date.len(), 19, "start time as dd.MM.yyyy HH:mm:ss: {line}");
}

#[test]
fn flink_cli_lists_savepoints_stops_and_cancels_sluice_jobs() {
    let bin = flink_bin();
    if !have_tool(
        bin.is_some() && runs("javac", &["-version"]),
        "the Flink CLI (PyPI apache-flink in ~/.cache/sluice-tools/flink-venv) or javac (Debian openjdk-17-jdk-headless) is missing; scripts/test.sh installs both",
    ) {
        return;
    }
    let Some(bin) = bin else { return };
    let storage = tempfile::tempdir().expect("dir");
    let mut cluster = Cluster::new(&format!(
        "execution.checkpointing.dir: file://{0}/chk\nexecution.checkpointing.savepoint-dir: file://{0}/sp\n\
         execution.checkpointing.interval: 500 ms\njobmanager.adaptive-scheduler.resource-wait-timeout: 10 min\n",
        storage.path().display()
    ));
    let (_jm, _) = cluster.start_jobmanager();
    let _a = cluster.start_taskmanager(&[]);
    let _b = cluster.start_taskmanager(&[]);
    cluster.wait_taskmanagers(2, Duration::from_secs(20));
    let flink = Flink {
        bin,
        rest: format!("127.0.0.1:{}", cluster.rest_port),
        dir: tempfile::tempdir().expect("dir"),
    };
    std::fs::write(flink.dir.path().join("config.yaml"), "").expect("flink config");
    let shipped_conf = flink.bin.parent().and_then(Path::parent).map(|home| home.join("conf"));
    if let Some(conf) = shipped_conf {
        // The CLI's own logging setup, so it logs to FLINK_LOG_DIR instead of complaining.
        let _ = std::fs::copy(
            conf.join("log4j-cli.properties"),
            flink.dir.path().join("log4j-cli.properties"),
        );
    }

    // Three running jobs of one slot each, and one that needs more slots than the cluster has.
    let running: Vec<String> = ["first", "second", "third"]
        .iter()
        .map(|n| cluster.submit(&unbounded_job(n, 1, 2000), &format!("{n}.yaml")))
        .collect();
    for id in &running {
        cluster.wait_job_state(id, "RUNNING", Duration::from_secs(30));
    }
    let waiting = cluster.submit(&unbounded_job("too-wide", 64, 10), "too-wide.yaml");
    wait_for(Duration::from_secs(10), "the wide job to wait for slots", || {
        cluster
            .rest(&format!("/jobs/{waiting}"))?
            .get("waiting-for-resources")
            .cloned()
    });

    let (ok, out) = flink.run("list", &[]);
    assert!(ok, "{out}");
    assert!(
        out.contains("------------------ Running/Restarting Jobs -------------------"),
        "{out}"
    );
    assert_listed(&out, &running[0], "first", "RUNNING");
    assert!(
        out.contains("----------------------- Scheduled Jobs -----------------------"),
        "{out}"
    );
    assert_listed(&out, &waiting, "too-wide", "CREATED");
    let (ok, out) = flink.run("list", &["-r"]);
    assert!(ok && out.contains(&running[1]) && !out.contains(&waiting), "{out}");
    let (ok, out) = flink.run("list", &["-s"]);
    assert!(ok && out.contains(&waiting) && !out.contains(&running[1]), "{out}");

    // The job details the CLI has no verb for, through Flink's own REST client classes.
    let probe = flink.probe(&running[0]);
    assert!(
        probe.contains(&format!("listed {} first RUNNING", running[0])),
        "{probe}"
    );
    assert!(probe.contains(&format!("listed {waiting} too-wide CREATED")), "{probe}");
    assert!(
        probe.contains(&format!(
            "details {} first RUNNING maxParallelism=128 vertices=2 plan-nodes=2",
            running[0]
        )),
        "{probe}"
    );
    assert!(probe.contains("parallelism=1 RUNNING"), "{probe}");
    assert!(probe.contains("status RUNNING"), "{probe}");

    // savepoint, with and without --type
    let (ok, out) = flink.run("savepoint", &[&running[0]]);
    assert!(ok, "{out}");
    let path = line_of(&out, "Savepoint completed. Path: ");
    assert!(path.contains("/sp/savepoint-"), "{out}");
    let target = format!("file://{}/typed", storage.path().display());
    let (ok, out) = flink.run("savepoint", &["--type", "native", &running[0], &target]);
    assert!(
        ok && out.contains(&format!("Savepoint completed. Path: {target}/savepoint-")),
        "{out}"
    );

    // stop with a savepoint, plain and draining
    let (ok, out) = flink.run("stop", &["--savepointPath", &target, &running[0]]);
    assert!(ok && out.contains("Savepoint completed. Path: "), "{out}");
    cluster.wait_job_state(&running[0], "FINISHED", Duration::from_secs(30));
    let (ok, out) = flink.run("stop", &["--savepointPath", &target, "--drain", &running[1]]);
    assert!(
        ok && out.contains("Draining job") && out.contains("Savepoint completed. Path: "),
        "{out}"
    );
    cluster.wait_job_state(&running[1], "FINISHED", Duration::from_secs(30));

    // cancel
    let (ok, out) = flink.run("cancel", &[&running[2]]);
    assert!(ok && out.contains(&format!("Cancelled job {}.", running[2])), "{out}");
    cluster.wait_job_state(&running[2], "CANCELED", Duration::from_secs(30));
    let (ok, out) = flink.run("cancel", &[&waiting]);
    assert!(ok, "{out}");
    cluster.wait_job_state(&waiting, "CANCELED", Duration::from_secs(30));

    let (ok, out) = flink.run("list", &["-a"]);
    assert!(ok, "{out}");
    assert!(out.contains("No running jobs."), "{out}");
    assert!(
        out.contains("---------------------- Terminated Jobs -----------------------"),
        "{out}"
    );
    assert_listed(&out, &running[0], "first", "FINISHED");
    assert_listed(&out, &running[2], "third", "CANCELED");
}
