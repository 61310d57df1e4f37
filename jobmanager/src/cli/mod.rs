//! The `sluice` command line client (Flink's `flink` CLI shape): a REST client for
//! `run [-m host:port] [-p N] [-d] [-Dkey=value] JOB.yaml`, `list [-r|-s|-a]`, `cancel JOBID`,
//! `savepoint`, `stop` and `info JOB.yaml`. `-D` may stand before or after the verb; on `run`
//! the dynamic properties become the job's configuration (over the job file's `config:`), as
//! `flink run -Dkey=value` does.

mod client;
mod list;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use serde_json::Value;

use client::Client;
use sluice_common::config::options::{PARALLELISM_DEFAULT, REST_ADDRESS, REST_PORT};
use sluice_common::config::ConfigArgs;
use sluice_common::job::GraphOptions;
use sluice_frontend::compile_job;

#[derive(Parser, Debug)]
#[command(name = "sluice", version, about = "Submit and manage jobs on a Sluice cluster")]
pub struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Submits a job file; waits for it to end unless -d.
    Run {
        /// REST address of the jobmanager (host:port); default rest.address:rest.port.
        #[arg(short = 'm', long = "jobmanager")]
        jobmanager: Option<String>,
        /// Default parallelism of the job's vertices.
        #[arg(short = 'p', long = "parallelism")]
        parallelism: Option<u32>,
        /// Detached: return once the job is submitted.
        #[arg(short = 'd', long = "detached")]
        detached: bool,
        /// Start from this savepoint or retained checkpoint (directory or its _metadata).
        #[arg(short = 's', long = "fromSavepoint")]
        from_savepoint: Option<String>,
        /// Skip state of operators the job no longer has.
        #[arg(short = 'n', long = "allowNonRestoredState")]
        allow_non_restored_state: bool,
        job: PathBuf,
    },
    /// Triggers a savepoint of a running job and prints its path.
    Savepoint {
        #[arg(short = 'm', long = "jobmanager")]
        jobmanager: Option<String>,
        job_id: String,
        /// Target directory (default: execution.checkpointing.savepoint-dir).
        target: Option<String>,
    },
    /// Stops a job with a savepoint (stop-with-savepoint).
    Stop {
        #[arg(short = 'm', long = "jobmanager")]
        jobmanager: Option<String>,
        /// Target directory (default: execution.checkpointing.savepoint-dir).
        #[arg(short = 'p', long = "savepointPath")]
        savepoint_path: Option<String>,
        /// Emit the maximum watermark first, so every window fires.
        #[arg(short = 'd', long = "drain")]
        drain: bool,
        job_id: String,
    },
    /// Lists the jobs of the cluster (running and scheduled; -a adds terminated ones).
    List {
        #[arg(short = 'm', long = "jobmanager")]
        jobmanager: Option<String>,
        /// Only running (and restarting) jobs.
        #[arg(short = 'r', long = "running")]
        running: bool,
        /// Only scheduled jobs (waiting for slots).
        #[arg(short = 's', long = "scheduled")]
        scheduled: bool,
        /// Running, scheduled and terminated jobs.
        #[arg(short = 'a', long = "all")]
        all: bool,
    },
    /// Cancels a job.
    Cancel {
        #[arg(short = 'm', long = "jobmanager")]
        jobmanager: Option<String>,
        job_id: String,
    },
    /// Prints a job file's plan (vertices, parallelism, chains, edges) without submitting it.
    Info {
        #[arg(short = 'p', long = "parallelism")]
        parallelism: Option<u32>,
        job: PathBuf,
    },
}

fn client(args: &ConfigArgs, jobmanager: Option<String>) -> Result<Client, String> {
    let address = match jobmanager {
        Some(a) => a,
        None => {
            let loaded = args.load().map_err(|e| e.to_string())?;
            let c = &loaded.config;
            let host = c
                .get_opt(&REST_ADDRESS)
                .map_err(|e| e.to_string())?
                .unwrap_or_else(|| "localhost".into());
            let port = c.get(&REST_PORT).map_err(|e| e.to_string())?;
            format!("{host}:{port}")
        }
    };
    Client::new(&address)
}

fn read_job(path: &PathBuf) -> Result<(String, String), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read job file {}: {e}", path.display()))?;
    Ok((text, path.display().to_string()))
}

/// Percent-encodes a query value.
fn query_value(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

struct RunArgs {
    /// `-D key=value` flags: the job's configuration on top of its file's `config:`.
    dynamic: Vec<String>,
    parallelism: Option<u32>,
    detached: bool,
    from_savepoint: Option<String>,
    allow_non_restored_state: bool,
}

/// Triggers a savepoint (or stop-with-savepoint) and waits for its location.
fn savepoint(c: &Client, id: &str, path: &str, body: Value) -> Result<(), String> {
    let trigger = c.post(&format!("/jobs/{id}/{path}"), &body.to_string())?["request-id"]
        .as_str()
        .ok_or("the jobmanager returned no trigger id")?
        .to_string();
    println!("Triggering savepoint for job {id}.");
    println!("Waiting for response...");
    let deadline = Instant::now() + Duration::from_secs(600);
    while Instant::now() < deadline {
        let status = c.get(&format!("/jobs/{id}/savepoints/{trigger}"))?;
        if status["status"]["id"] == "COMPLETED" {
            if let Some(location) = status["operation"]["location"].as_str() {
                println!("Savepoint completed. Path: {location}");
                return Ok(());
            }
            let cause = status["operation"]["failure-cause"]["stack-trace"]
                .as_str()
                .unwrap_or("unknown cause");
            return Err(format!("Triggering a savepoint for the job {id} failed: {cause}"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(format!("The savepoint of job {id} did not complete within 10 minutes."))
}

fn run(c: &Client, job: &PathBuf, args: RunArgs) -> Result<(), String> {
    let RunArgs {
        dynamic,
        parallelism,
        detached,
        from_savepoint,
        allow_non_restored_state,
    } = args;
    let (text, file) = read_job(job)?;
    let mut url = format!("/jobs?file={}", file.replace(['&', '?', '#', ' '], "_"));
    if let Some(p) = parallelism {
        url.push_str(&format!("&parallelism={p}"));
    }
    if let Some(s) = from_savepoint {
        url.push_str(&format!("&savepointPath={}", query_value(&s)));
    }
    if allow_non_restored_state {
        url.push_str("&allowNonRestoredState=true");
    }
    if !dynamic.is_empty() {
        let mut config = serde_json::Map::new();
        for flag in &dynamic {
            let (k, v) = flag
                .split_once('=')
                .filter(|(k, _)| !k.trim().is_empty())
                .ok_or_else(|| format!("-D {flag}: expected key=value"))?;
            config.insert(k.trim().to_string(), Value::String(v.trim().to_string()));
        }
        url.push_str(&format!("&config={}", query_value(&Value::Object(config).to_string())));
    }
    let id = c.post(&url, &text)?["jobid"]
        .as_str()
        .ok_or("the jobmanager returned no job id")?
        .to_string();
    println!("Job has been submitted with JobID {id}");
    if detached {
        return Ok(());
    }
    let started = Instant::now();
    let mut told_waiting = false;
    loop {
        let job = c.get(&format!("/jobs/{id}"))?;
        let state = job["state"].as_str().unwrap_or("UNKNOWN").to_string();
        if !told_waiting {
            if let Some(w) = waiting_note(&job) {
                println!("{w}");
                told_waiting = true;
            }
        }
        match state.as_str() {
            "FINISHED" => {
                println!("Program execution finished");
                println!("Job with JobID {id} has finished.");
                println!(
                    "Job Runtime: {} ms",
                    job["duration"].as_u64().unwrap_or(started.elapsed().as_millis() as u64)
                );
                return Ok(());
            }
            "FAILED" | "CANCELED" => {
                let cause = job["failure-cause"].as_str().unwrap_or("no cause recorded");
                return Err(format!("Job with JobID {id} ended as {state}: {cause}"));
            }
            _ => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

/// What a job that waits for slots waits for (`waiting-for-resources` of `GET /jobs/:id`).
fn waiting_note(job: &Value) -> Option<String> {
    let w = job.get("waiting-for-resources")?;
    let timeout = match w["timeout-ms"].as_u64() {
        Some(ms) => format!(
            "it fails if they do not come within {} (jobmanager.adaptive-scheduler.resource-wait-timeout)",
            sluice_common::config::format_duration(Duration::from_millis(ms))
        ),
        None => "it waits until they come".to_string(),
    };
    Some(format!(
        "Waiting for resources: the job needs {} slots, {} of {} are free; {timeout}.",
        w["slots-needed"], w["slots-available"], w["slots-total"]
    ))
}

fn list(c: &Client, show: list::Show) -> Result<(), String> {
    println!("Waiting for response...");
    let jobs = c.get("/jobs/overview")?;
    let jobs = jobs["jobs"].as_array().cloned().unwrap_or_default();
    let note = |j: &Value| {
        let id = j["jid"].as_str()?;
        waiting_note(&c.get(&format!("/jobs/{id}")).ok()?)
    };
    for line in list::render(&jobs, show, &note) {
        println!("{line}");
    }
    Ok(())
}

fn cancel(c: &Client, id: &str) -> Result<(), String> {
    println!("Cancelling job {id}.");
    c.patch(&format!("/jobs/{id}?mode=cancel"))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if c.get(&format!("/jobs/{id}"))?["state"].as_str() == Some("CANCELED") {
            println!("Cancelled job {id}.");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("job {id} did not reach CANCELED within 30 s"))
}

fn info(args: &ConfigArgs, job: &PathBuf, parallelism: Option<u32>) -> Result<(), String> {
    let (text, file) = read_job(job)?;
    let loaded = args.load().map_err(|e| e.to_string())?;
    let default_parallelism = loaded
        .config
        .get(&PARALLELISM_DEFAULT)
        .map_err(|e| e.to_string())?
        .get();
    let graph = compile_job(
        &text,
        &file,
        &GraphOptions {
            default_parallelism,
            parallelism,
            cluster_config: Some(std::sync::Arc::new(loaded.config.clone())),
            ..Default::default()
        },
        sluice_connectors::registry(),
    )
    .map_err(|e| e.to_string())?;
    print!("{}", graph.describe());
    Ok(())
}

/// Runs the CLI; the error is printed by the caller and makes the exit code non-zero.
pub fn main(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Run {
            jobmanager,
            parallelism,
            detached,
            from_savepoint,
            allow_non_restored_state,
            job,
        } => run(
            &client(&cli.config, jobmanager)?,
            &job,
            RunArgs {
                dynamic: cli.config.dynamic.clone(),
                parallelism,
                detached,
                from_savepoint,
                allow_non_restored_state,
            },
        ),
        Command::Savepoint {
            jobmanager,
            job_id,
            target,
        } => savepoint(
            &client(&cli.config, jobmanager)?,
            &job_id,
            "savepoints",
            serde_json::json!({ "target-directory": target, "cancel-job": false }),
        ),
        Command::Stop {
            jobmanager,
            savepoint_path,
            drain,
            job_id,
        } => savepoint(
            &client(&cli.config, jobmanager)?,
            &job_id,
            "stop",
            serde_json::json!({ "targetDirectory": savepoint_path, "drain": drain }),
        ),
        Command::List {
            jobmanager,
            running,
            scheduled,
            all,
        } => list(
            &client(&cli.config, jobmanager)?,
            list::Show {
                running,
                scheduled,
                all,
            },
        ),
        Command::Cancel { jobmanager, job_id } => cancel(&client(&cli.config, jobmanager)?, &job_id),
        Command::Info { parallelism, job } => info(&cli.config, &job, parallelism),
    }
}
