//! docker-compose on the real Docker engine (skipped, with the reason, where `docker info`
//! fails or no compose tool is installed): images built locally (a debootstrapped base, then
//! the runtime image from the built binaries), `scripts/docker/docker-compose.yml` up with two
//! taskmanagers and the S3 server, a reactive job submitted through the published REST port;
//! `--scale taskmanager=3` → its parallelism rises, `docker stop` of one → it falls;
//! `docker network disconnect` of a taskmanager → it is declared lost (heartbeat timeout), the
//! job fails over without it, and once reconnected its late messages are fenced. The committed
//! output is exact: nothing lost, nothing doubled. The cluster's Kafka-protocol broker takes a
//! job's records at kafka:9092, its PostgreSQL a job's rows at postgres:5432.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use sluice_tests::kafka::Broker;
use sluice_tests::tools::{have_tool, runs};
use sluice_tests::windowed_job::WindowedJob;
use sluice_tests::{bin_dir, free_port, get_json, job_id_of, repo_root, wait_for, wait_parallelism};

/// `docker-compose` (Debian's) or `docker compose` (the plugin).
fn compose_tool() -> Option<Vec<String>> {
    let ok = |cmd: &[&str]| {
        Command::new(cmd[0])
            .args(&cmd[1..])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if ok(&["docker-compose", "version"]) {
        Some(vec!["docker-compose".into()])
    } else if ok(&["docker", "compose", "version"]) {
        Some(vec!["docker".into(), "compose".into()])
    } else {
        None
    }
}

struct Compose {
    tool: Vec<String>,
    project: String,
    env: Vec<(String, String)>,
}

impl Compose {
    fn run(&self, args: &[&str]) -> Output {
        let file = repo_root().join("scripts/docker/docker-compose.yml");
        Command::new(&self.tool[0])
            .args(&self.tool[1..])
            .args(["-p", &self.project, "-f", file.to_str().expect("path")])
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("run compose")
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "compose {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).to_string()
    }

    /// Container ids of the taskmanagers.
    fn taskmanagers(&self) -> Vec<String> {
        self.ok(&["ps", "-q", "taskmanager"])
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        let logs = self.run(&["logs", "--no-color", "--tail", "30"]);
        if std::thread::panicking() {
            eprintln!("{}", String::from_utf8_lossy(&logs.stdout));
        }
        let _ = self.run(&["down", "-v", "--timeout", "5"]);
    }
}

fn docker(args: &[&str]) -> String {
    let o = Command::new("docker").args(args).output().expect("docker");
    assert!(
        o.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// Writes `yaml` to `file` and runs it on the cluster (`sluice run`, attached) to its end.
fn run_to_end(rest: u16, file: &Path, yaml: &str) {
    std::fs::write(file, yaml).expect("job file");
    let run = Command::new(bin_dir().join("sluice"))
        .args(["run", "-m", &format!("127.0.0.1:{rest}"), file.to_str().expect("path")])
        .env_remove("SLUICE_PROPERTIES")
        .output()
        .expect("sluice run");
    assert!(run.status.success(), "{run:?}");
}

fn job_details(rest: u16, id: &str) -> Option<Value> {
    get_json(&format!("http://127.0.0.1:{rest}/jobs/{id}"))
}

fn taskmanagers(rest: u16) -> Option<u64> {
    get_json(&format!("http://127.0.0.1:{rest}/overview"))?["taskmanagers"].as_u64()
}

#[test]
fn compose_cluster_rescales_and_fences_a_partitioned_taskmanager() {
    if !have_tool(runs("docker", &["info"]), "`docker info` failed: no Docker engine here") {
        return;
    }
    let tool = compose_tool();
    if !have_tool(
        tool.is_some(),
        "neither docker-compose nor `docker compose` is installed",
    ) {
        return;
    }
    let Some(tool) = tool else { return };
    let build = Command::new(repo_root().join("scripts/docker/build-image.sh"))
        .env("SLUICE_BIN_DIR", bin_dir())
        .output()
        .expect("build-image.sh");
    assert!(
        build.status.success(),
        "building the images: {}{}",
        String::from_utf8_lossy(&build.stdout),
        String::from_utf8_lossy(&build.stderr)
    );

    let data = tempfile::tempdir().expect("dir");
    let rest = free_port();
    let compose = Compose {
        tool,
        project: format!("sluicetest{}", std::process::id()),
        env: vec![
            ("SLUICE_REST_PORT".into(), format!("127.0.0.1:{rest}")),
            ("SLUICE_DATA_DIR".into(), data.path().display().to_string()),
            ("SLUICE_HEARTBEAT_TIMEOUT".into(), "4 s".into()),
        ],
    };
    compose.ok(&["up", "-d", "--scale", "taskmanager=2"]);
    wait_for(Duration::from_secs(60), "2 taskmanagers registered", || {
        (taskmanagers(rest) == Some(2)).then_some(())
    });

    let job = WindowedJob {
        rows: 300_000,
        keys: 50,
        splits: 6,
    };
    let file = data.path().join("job.yaml");
    std::fs::write(&file, job.yaml(Path::new("/data/out"), 5_000, 1)).expect("job file");
    let run = Command::new(bin_dir().join("sluice"))
        .args([
            "run",
            "-m",
            &format!("127.0.0.1:{rest}"),
            "-d",
            file.to_str().expect("path"),
        ])
        .env_remove("SLUICE_PROPERTIES")
        .output()
        .expect("sluice run");
    assert!(run.status.success(), "{run:?}");
    let id = job_id_of(&run);
    wait_parallelism(rest, &id, 2, Duration::from_secs(60));

    compose.ok(&["up", "-d", "--no-recreate", "--scale", "taskmanager=3"]);
    wait_parallelism(rest, &id, 3, Duration::from_secs(60));
    println!("scale to 3 taskmanagers: parallelism 3");

    let tms = compose.taskmanagers();
    docker(&["stop", "-t", "1", &tms[0]]);
    wait_parallelism(rest, &id, 2, Duration::from_secs(60));
    println!("docker stop of one: parallelism 2");

    // Partition: one of the two running taskmanagers loses the network.
    let tms: Vec<String> = compose
        .taskmanagers()
        .into_iter()
        .filter(|c| docker(&["inspect", "-f", "{{.State.Running}}", c]).trim() == "true")
        .collect();
    let victim = &tms[0];
    let network = docker(&[
        "inspect",
        "-f",
        "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}",
        victim,
    ])
    .trim()
    .to_string();
    docker(&["network", "disconnect", &network, victim]);
    wait_for(
        Duration::from_secs(30),
        "the partitioned taskmanager declared lost",
        || (taskmanagers(rest) == Some(1)).then_some(()),
    );
    wait_parallelism(rest, &id, 1, Duration::from_secs(60));
    println!("network disconnect: declared lost, parallelism 1");
    docker(&["network", "connect", &network, victim]);
    // It registers again (a new registration; its old attempt's messages are ignored) and the
    // job scales back up.
    wait_parallelism(rest, &id, 2, Duration::from_secs(60));
    println!("reconnected: registered anew, parallelism 2");

    wait_for(Duration::from_secs(240), "the job to finish", || {
        let j = job_details(rest, &id)?;
        assert_ne!(j["state"], "FAILED", "{j}");
        (j["state"] == "FINISHED").then_some(())
    });
    let history = job_details(rest, &id).expect("job")["rescales"]["history"].clone();
    println!("rescales: {history}");
    job.assert_exact(&data.path().join("out"));

    // The broker service: a job in the cluster writes to it by its service name, the test
    // reads the topic through the container's address.
    let kafka = compose.ok(&["ps", "-q", "kafka"]).trim().to_string();
    let ip = docker(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &kafka,
    ])
    .trim()
    .to_string();
    let broker = Broker::external(format!("{ip}:9092"));
    broker.create_topic("compose-events", 2);
    let to_kafka = r#"name: to-kafka
parallelism: 1
sources:
  - id: rows
    connector: datagen
    options: {number-of-rows: 500}
    schema:
      - {name: n, type: bigint, expr: "seq"}
sinks:
  - id: out
    input: rows
    connector: kafka
    options:
      topic: compose-events
      properties.bootstrap.servers: "kafka:9092"
      sink.delivery-guarantee: at-least-once
"#;
    run_to_end(rest, &data.path().join("to-kafka.yaml"), to_kafka);
    let got = broker.read_all("compose-events", "read_uncommitted");
    assert_eq!(got.len(), 500, "the job's records in the compose broker");
    println!("kafka service: 500 records written by a job at kafka:9092");

    // The PostgreSQL service: a job writes to it by its service name (exactly-once append).
    let pg = compose.ok(&["ps", "-q", "postgres"]).trim().to_string();
    let psql = |sql: &str| docker(&["exec", &pg, "psql", "-h", "/tmp", "-U", "postgres", "-XAtq", "-c", sql]);
    psql("CREATE TABLE compose_rows (n bigint)");
    let to_pg = r#"name: to-postgres
parallelism: 2
sources:
  - id: rows
    connector: datagen
    options: {number-of-rows: 500}
    schema:
      - {name: n, type: bigint, expr: "seq"}
sinks:
  - id: out
    input: rows
    connector: jdbc
    options:
      url: "jdbc:postgresql://postgres:5432/postgres"
      table-name: compose_rows
      username: postgres
      sink.delivery-guarantee: exactly-once
"#;
    run_to_end(rest, &data.path().join("to-postgres.yaml"), to_pg);
    assert_eq!(
        psql("SELECT count(*), count(DISTINCT n) FROM compose_rows").trim(),
        "500|500"
    );
    println!("postgres service: 500 rows written exactly once by a job at postgres:5432");
}
