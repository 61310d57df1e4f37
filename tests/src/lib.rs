//! Harness for end-to-end tests: starts the real `jobmanager`/`taskmanager` binaries on
//! 127.0.0.1 with free ports, captures their logs, and stops every process it started (on drop,
//! and via PR_SET_PDEATHSIG should the test process itself die). Every wait is bounded.

use std::fs::File;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod flink;
pub mod kafka;
pub mod postgres;
pub mod prometheus;
pub mod seaweed;
pub mod tools;
pub mod windowed_job;

/// Directory holding the workspace's built binaries (next to this test executable).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .expect("target directory")
}

/// The repository's root (scripts, conf).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Path of a workspace binary; fails the test with the command to build it if missing.
pub fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "binary {} not found; build it first with `cargo build --bins` (scripts/test.sh does)",
        path.display()
    );
    path
}

/// A port that was free a moment ago on 127.0.0.1. It is taken below Linux's ephemeral range
/// (32768–60999), from a counter each test process starts at its own offset, so that a port the
/// kernel hands out meanwhile (an outgoing connection, a daemon's port-0 bind in a test running
/// in parallel) cannot be the same one.
pub fn free_port() -> u16 {
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let start = (std::process::id() % 100) * (SPAN / 100);
    let _ = NEXT.compare_exchange(u32::MAX, start, Ordering::Relaxed, Ordering::Relaxed);
    for _ in 0..SPAN {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1 in {FIRST}..{}", FIRST + SPAN)
}

/// Polls `check` every 50 ms until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, what: &str, check: impl FnMut() -> Option<T>) -> T {
    wait_or_explain(timeout, check, || format!("waiting for {what}"))
}

/// As `wait_for`; on a timeout the panic says `explain()` (evaluated only then).
pub fn wait_or_explain<T>(
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
    explain: impl FnOnce() -> String,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        if start.elapsed() >= timeout {
            panic!("timed out after {timeout:?} {}", explain());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One running daemon process; killed when dropped.
pub struct Daemon {
    pub name: String,
    child: Child,
    log: PathBuf,
    exited: Option<ExitStatus>,
}

impl Daemon {
    /// Starts `binary args…` with stdout and stderr in `log`.
    pub fn start(name: &str, binary: &Path, args: &[String], log: PathBuf) -> Daemon {
        Self::start_with_env(name, binary, args, &[], log)
    }

    /// As `start`, with extra environment variables for the child only.
    pub fn start_with_env(name: &str, binary: &Path, args: &[String], envs: &[(&str, &str)], log: PathBuf) -> Daemon {
        let out = File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let mut cmd = Command::new(binary);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .env_remove("SLUICE_PROPERTIES")
            .env_remove("SLUICE_CONF_DIR")
            .envs(envs.iter().copied());
        // SAFETY: prctl is async-signal-safe; the closure only makes that call.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        Daemon {
            name: name.to_string(),
            child,
            log,
            exited: None,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: sending a signal to our own child's pid.
        unsafe {
            libc::kill(self.pid(), signal);
        }
    }

    /// `kill -9`, and reap it.
    pub fn kill9(&mut self) {
        self.signal(libc::SIGKILL);
        self.exited = self.child.wait().ok();
    }

    /// Waits (bounded) for the process to exit and returns its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        if let Some(s) = self.exited {
            return s;
        }
        let status = wait_for(timeout, &format!("{} to exit", self.name), || {
            self.child.try_wait().ok().flatten()
        });
        self.exited = Some(status);
        status
    }

    pub fn is_running(&mut self) -> bool {
        self.exited.is_none() && matches!(self.child.try_wait(), Ok(None))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// GET `url`; `None` on any failure (not up yet, refused, non-2xx).
fn get(url: &str) -> Option<ureq::http::Response<ureq::Body>> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    agent.get(url).call().ok()
}

/// GET `url` and parse JSON; `None` on any failure.
pub fn get_json(url: &str) -> Option<Value> {
    get(url)?.body_mut().read_json::<Value>().ok()
}

/// GET `url` as text; `None` on any failure.
pub fn get_text(url: &str) -> Option<String> {
    get(url)?.body_mut().read_to_string().ok()
}

/// Cluster configuration for tests that kill taskmanagers: checkpoints every `interval` into
/// `dir`, and a fixed-delay restart strategy (5 attempts, 200 ms apart).
pub fn checkpoints_and_restarts(dir: &Path, interval: &str) -> String {
    format!(
        "execution.checkpointing.dir: file://{}\nexecution.checkpointing.interval: {interval}\n\
         restart-strategy.type: fixed-delay\nrestart-strategy.fixed-delay.attempts: 5\n\
         restart-strategy.fixed-delay.delay: 200 ms\n",
        dir.display()
    )
}

/// Cluster configuration for reactive-mode tests: checkpoints every 500 ms into `dir`, and a
/// fixed-delay restart strategy that outlasts any test (1000 attempts, 100 ms apart).
pub fn reactive_checkpoints(dir: &Path) -> String {
    format!(
        "scheduler-mode: reactive\nexecution.checkpointing.dir: file://{}\nexecution.checkpointing.interval: 500 ms\n\
         restart-strategy.type: fixed-delay\nrestart-strategy.fixed-delay.attempts: 1000\n\
         restart-strategy.fixed-delay.delay: 100 ms\n",
        dir.display()
    )
}

/// A reactive cluster (`reactive_checkpoints`) with a jobmanager and two one-slot
/// taskmanagers, registered: a job at parallelism 2 spans both, so a kill hits it.
pub struct ReactivePair {
    pub cluster: Cluster,
    pub jm: Daemon,
    pub tms: Vec<Daemon>,
}

impl ReactivePair {
    const ONE_SLOT: [&'static str; 2] = ["-D", "taskmanager.numberOfTaskSlots=1"];

    pub fn start(checkpoints: &Path) -> ReactivePair {
        let mut cluster = Cluster::new(&reactive_checkpoints(checkpoints));
        let (jm, _) = cluster.start_jobmanager();
        let tms = vec![
            cluster.start_taskmanager(&Self::ONE_SLOT).0,
            cluster.start_taskmanager(&Self::ONE_SLOT).0,
        ];
        cluster.wait_taskmanagers(2, Duration::from_secs(20));
        ReactivePair { cluster, jm, tms }
    }

    /// After two more completed checkpoints of job `id`: `kill -9` of one taskmanager (the job
    /// fails over to parallelism 1), then a new one joins (a reactive rescale back to 2).
    pub fn kill_one_and_rejoin(&mut self, id: &str) {
        let done = self.cluster.completed_checkpoints(id);
        wait_for(Duration::from_secs(30), "two checkpoints", || {
            (self.cluster.completed_checkpoints(id) >= done + 2).then_some(())
        });
        self.tms.remove(0).kill9();
        wait_parallelism(self.cluster.rest_port, id, 1, Duration::from_secs(30));
        self.tms.push(self.cluster.start_taskmanager(&Self::ONE_SLOT).0);
        wait_parallelism(self.cluster.rest_port, id, 2, Duration::from_secs(30));
    }
}

/// `flink_jobmanager_job_numRestarts` of job `id` on the jobmanager's metrics port (0 while
/// it does not answer).
pub fn job_restarts(metrics_port: u16, id: &str) -> u64 {
    get_text(&format!("http://127.0.0.1:{metrics_port}/metrics"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("flink_jobmanager_job_numRestarts{") && l.contains(id))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// The JobID `sluice run` printed ("Job has been submitted with JobID …").
pub fn job_id_of(o: &std::process::Output) -> String {
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    out.split("JobID ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("no job id in: {out}"))
        .to_string()
}

/// A local cluster in a temporary directory: one config dir, fixed ports for the jobmanager,
/// a fresh metrics port per daemon.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub rpc_port: u16,
    pub rest_port: u16,
    started: usize,
}

impl Cluster {
    /// Writes `config.yaml` with loopback addresses and the given extra lines.
    pub fn new(extra_config: &str) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let rpc_port = free_port();
        let rest_port = free_port();
        let config = format!(
            "jobmanager.rpc.address: 127.0.0.1\njobmanager.rpc.port: {rpc_port}\njobmanager.bind-host: 127.0.0.1\n\
             jobmanager.memory.process.size: 1600m\n\
             rest.address: 127.0.0.1\nrest.bind-address: 127.0.0.1\nrest.port: {rest_port}\n\
             taskmanager.host: 127.0.0.1\ntaskmanager.bind-host: 127.0.0.1\ntaskmanager.numberOfTaskSlots: 2\n\
             taskmanager.memory.process.size: 1728m\n{extra_config}\n"
        );
        std::fs::write(dir.path().join("config.yaml"), config).expect("config.yaml");
        Cluster {
            dir,
            rpc_port,
            rest_port,
            started: 0,
        }
    }

    pub fn config_dir(&self) -> &Path {
        self.dir.path()
    }

    fn start(&mut self, binary_name: &str, extra: &[&str]) -> (Daemon, u16) {
        self.start_with_env(binary_name, extra, &[])
    }

    /// Starts `jobmanager` or `taskmanager` with extra flags and environment variables;
    /// returns it with its metrics port.
    pub fn start_with_env(&mut self, binary_name: &str, extra: &[&str], envs: &[(&str, &str)]) -> (Daemon, u16) {
        self.started += 1;
        let metrics_port = free_port();
        let mut args = vec![
            "--config-dir".to_string(),
            self.config_dir().display().to_string(),
            "-D".to_string(),
            format!("metrics.reporter.prom.port={metrics_port}"),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let name = format!("{binary_name}-{}", self.started);
        let log = self.dir.path().join(format!("{name}.log"));
        (
            Daemon::start_with_env(&name, &binary(binary_name), &args, envs, log),
            metrics_port,
        )
    }

    /// Starts a jobmanager; returns it with its metrics port.
    pub fn start_jobmanager(&mut self) -> (Daemon, u16) {
        self.start("jobmanager", &[])
    }

    /// Starts a taskmanager with extra flags; returns it with its metrics port.
    pub fn start_taskmanager(&mut self, extra: &[&str]) -> (Daemon, u16) {
        self.start("taskmanager", extra)
    }

    pub fn rest(&self, path: &str) -> Option<Value> {
        get_json(&format!("http://127.0.0.1:{}{path}", self.rest_port))
    }

    /// PUT a JSON body to the REST API; the status and the response body.
    pub fn rest_put(&self, path: &str, body: &Value) -> (u16, String) {
        self.rest_send("PUT", path, body)
    }

    /// POST a JSON body to the REST API; the status and the response body.
    pub fn rest_post(&self, path: &str, body: &Value) -> (u16, String) {
        self.rest_send("POST", path, body)
    }

    fn rest_send(&self, method: &str, path: &str, body: &Value) -> (u16, String) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(5)))
            .http_status_as_error(false)
            .build()
            .into();
        let url = format!("http://127.0.0.1:{}{path}", self.rest_port);
        let request = if method == "POST" {
            agent.post(&url)
        } else {
            agent.put(&url)
        };
        match request
            .header("content-type", "application/json")
            .send(body.to_string())
        {
            Ok(mut r) => (r.status().as_u16(), r.body_mut().read_to_string().unwrap_or_default()),
            Err(e) => (0, e.to_string()),
        }
    }

    /// The `/overview` counter `field`, when the REST endpoint answers.
    pub fn overview(&self, field: &str) -> Option<u64> {
        self.rest("/overview")?.get(field)?.as_u64()
    }

    /// Runs the `sluice` CLI against this cluster (`-m` added after the verb).
    pub fn sluice(&self, verb: &str, args: &[&str]) -> std::process::Output {
        let rest = format!("127.0.0.1:{}", self.rest_port);
        let mut cmd = Command::new(binary("sluice"));
        cmd.arg(verb);
        if verb != "info" {
            cmd.args(["-m", &rest]);
        }
        cmd.args(args)
            .env_remove("SLUICE_PROPERTIES")
            .env_remove("SLUICE_CONF_DIR");
        cmd.output().expect("run sluice")
    }

    /// The state of job `id`, when the REST endpoint answers.
    pub fn job_state(&self, id: &str) -> Option<String> {
        Some(self.rest(&format!("/jobs/{id}"))?["state"].as_str()?.to_string())
    }

    /// Waits until job `id` is in `state`.
    pub fn wait_job_state(&self, id: &str, state: &str, timeout: Duration) {
        wait_for(timeout, &format!("job {id} to be {state}"), || {
            (self.job_state(id).as_deref() == Some(state)).then_some(())
        });
    }

    /// Writes `yaml` as `file_name` in the config dir, submits it detached, and returns its id.
    pub fn submit(&self, yaml: &str, file_name: &str) -> String {
        let file = self.config_dir().join(file_name);
        std::fs::write(&file, yaml).expect("job file");
        let run = self.sluice("run", &["-d", file.to_str().expect("path")]);
        assert!(run.status.success(), "{run:?}");
        job_id_of(&run)
    }

    /// How many checkpoints job `id` completed (0 while REST does not answer).
    pub fn completed_checkpoints(&self, id: &str) -> u64 {
        self.rest(&format!("/jobs/{id}/checkpoints"))
            .and_then(|v| v["counts"]["completed"].as_u64())
            .unwrap_or(0)
    }

    /// Waits until `/overview` reports `n` taskmanagers; returns how long it took.
    /// On a timeout the panic carries the end of every daemon log.
    pub fn wait_taskmanagers(&self, n: u64, timeout: Duration) -> Duration {
        let start = Instant::now();
        wait_or_explain(
            timeout,
            || (self.overview("taskmanagers") == Some(n)).then_some(()),
            || {
                format!(
                    "waiting for {n} registered taskmanagers (have {:?}); logs:\n{}",
                    self.overview("taskmanagers"),
                    self.log_tails(20)
                )
            },
        );
        start.elapsed()
    }

    /// Polls job `id` until `deadline`, or until a sink subtask reports FINISHED while the job
    /// does not; returns the job's state then ("RUNNING (a sink subtask finished)" for the
    /// latter): the finishing phase of a bounded job.
    pub fn first_finished_sink_or(&self, id: &str, deadline: Instant) -> String {
        loop {
            let job = self.rest(&format!("/jobs/{id}")).unwrap_or_default();
            let state = job["state"].as_str().unwrap_or_default().to_string();
            let finished: u64 = job["vertices"]
                .as_array()
                .map(|vs| {
                    vs.iter()
                        .filter(|v| v["name"].as_str().is_some_and(|n| n.contains("Sink:")))
                        .filter_map(|v| v["tasks"]["FINISHED"].as_u64())
                        .sum()
                })
                .unwrap_or(0);
            if state == "RUNNING" && finished > 0 {
                return format!("{state} (a sink subtask finished)");
            }
            if Instant::now() >= deadline || state == "FINISHED" {
                return state;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// The last `lines` lines of each daemon log of this cluster.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        let Ok(entries) = std::fs::read_dir(self.dir.path()) else {
            return out;
        };
        let mut logs: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        logs.sort();
        for log in logs {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- {}\n", log.display()));
            for line in &all[all.len().saturating_sub(lines)..] {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

/// Whether job `id` runs with every vertex running, on the jobmanager whose REST is at
/// `rest_port`.
pub fn all_tasks_running(rest_port: u16, id: &str) -> bool {
    get_json(&format!("http://127.0.0.1:{rest_port}/jobs/{id}")).is_some_and(|j| {
        j["state"] == "RUNNING"
            && j["vertices"]
                .as_array()
                .is_some_and(|vs| !vs.is_empty() && vs.iter().all(|v| v["status"] == "RUNNING"))
    })
}

/// The REST details of job `id` (jobmanager REST at `rest_port`) once it runs at parallelism
/// `p` in every vertex with no rescale under way.
pub fn wait_parallelism(rest_port: u16, id: &str, p: u64, timeout: Duration) -> Value {
    wait_for(timeout, &format!("job {id} running at parallelism {p}"), || {
        let job = get_json(&format!("http://127.0.0.1:{rest_port}/jobs/{id}"))?;
        let running = job["state"] == "RUNNING"
            && job["parallelism"].as_u64() == Some(p)
            && job["rescales"]["in-progress"] == false
            && job["vertices"]
                .as_array()?
                .iter()
                .all(|v| v["status"] == "RUNNING" && v["parallelism"].as_u64() == Some(p));
        running.then_some(job)
    })
}

/// An unbounded job: generated keys at `rows_per_second`, 1 s processing-time windows per key,
/// into a blackhole, at `parallelism`.
pub fn unbounded_job(name: &str, parallelism: u32, rows_per_second: u32) -> String {
    format!(
        r#"name: {name}
parallelism: {parallelism}
sources:
  - id: events
    connector: datagen
    options: {{rows-per-second: {rows_per_second}}}
    schema:
      - {{name: k, type: bigint, expr: "seq % 100"}}
operators:
  - id: per-key
    input: events
    key-by: [k]
    window: {{type: tumbling, size: 1 s, time: processing}}
    aggregate: {{n: "count(*)"}}
sinks:
  - id: out
    input: per-key
    connector: blackhole
"#
    )
}

/// A job whose sink is slower than its source: datagen at full speed (parallelism 3) into a
/// blackhole sink that discards 2000 rows per second (parallelism 1), so the sources are
/// back-pressured and the sink busy all the time.
pub const SLOW_SINK_JOB: &str = r#"name: slow-sink
parallelism: 3
sources:
  - id: events
    connector: datagen
    schema:
      - {name: k, type: bigint, expr: "seq"}
sinks:
  - id: out
    input: events
    connector: blackhole
    parallelism: 1
    options: {rows-per-second: 2000}
"#;
