//! The `sluice` command line client (Flink's `flink` CLI shape): a REST client for
//! `run [-m host:port] [-p N] [-d] JOB.yaml`, `list`, `cancel JOBID` and `info JOB.yaml`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use serde_json::Value;
use sluice_common::config::options::{PARALLELISM_DEFAULT, REST_ADDRESS, REST_PORT};
use sluice_common::config::ConfigArgs;
use sluice_common::job::{compile_job, GraphOptions};

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
    /// Lists the jobs of the cluster.
    List {
        #[arg(short = 'm', long = "jobmanager")]
        jobmanager: Option<String>,
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

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .build()
        .into()
}

/// Flink's error body (`{"errors": [...]}`) or the status line.
fn body_or_error(mut response: ureq::http::Response<ureq::Body>, what: &str) -> Result<Value, String> {
    let status = response.status();
    let text = response
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("{what}: {e}"))?;
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(value);
    }
    let errors = value["errors"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e.as_str()).collect::<Vec<_>>().join("\n"));
    Err(errors.unwrap_or_else(|| format!("{what}: HTTP {status}")))
}

struct Client {
    base: String,
}

impl Client {
    fn get(&self, path: &str) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let r = agent()
            .get(&url)
            .call()
            .map_err(|e| format!("cannot reach the jobmanager at {}: {e}", self.base))?;
        body_or_error(r, &url)
    }
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
    Ok(Client {
        base: format!("http://{address}"),
    })
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
    parallelism: Option<u32>,
    detached: bool,
    from_savepoint: Option<String>,
    allow_non_restored_state: bool,
}

/// Triggers a savepoint (or stop-with-savepoint) and waits for its location.
fn savepoint(c: &Client, id: &str, path: &str, body: Value) -> Result<(), String> {
    let url = format!("{}/jobs/{id}/{path}", c.base);
    let r = agent()
        .post(&url)
        .send(body.to_string().as_str())
        .map_err(|e| format!("cannot reach the jobmanager at {}: {e}", c.base))?;
    let trigger = body_or_error(r, "savepoint")?["request-id"]
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
        parallelism,
        detached,
        from_savepoint,
        allow_non_restored_state,
    } = args;
    let (text, file) = read_job(job)?;
    let mut url = format!("{}/jobs?file={}", c.base, file.replace(['&', '?', '#', ' '], "_"));
    if let Some(p) = parallelism {
        url.push_str(&format!("&parallelism={p}"));
    }
    if let Some(s) = from_savepoint {
        url.push_str(&format!("&savepointPath={}", query_value(&s)));
    }
    if allow_non_restored_state {
        url.push_str("&allowNonRestoredState=true");
    }
    let r = agent()
        .post(&url)
        .send(text.as_str())
        .map_err(|e| format!("cannot reach the jobmanager at {}: {e}", c.base))?;
    let id = body_or_error(r, "submit")?["jobid"]
        .as_str()
        .ok_or("the jobmanager returned no job id")?
        .to_string();
    println!("Job has been submitted with JobID {id}");
    if detached {
        return Ok(());
    }
    let started = Instant::now();
    loop {
        let job = c.get(&format!("/jobs/{id}"))?;
        let state = job["state"].as_str().unwrap_or("UNKNOWN").to_string();
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

fn list(c: &Client) -> Result<(), String> {
    let jobs = c.get("/jobs/overview")?;
    let jobs = jobs["jobs"].as_array().cloned().unwrap_or_default();
    let line = |j: &Value| {
        format!(
            "{} : {} : {} ({})",
            j["start-time"],
            j["jid"].as_str().unwrap_or(""),
            j["name"].as_str().unwrap_or(""),
            j["state"].as_str().unwrap_or("")
        )
    };
    let (running, ended): (Vec<&Value>, Vec<&Value>) = jobs
        .iter()
        .partition(|j| !matches!(j["state"].as_str(), Some("FINISHED" | "FAILED" | "CANCELED")));
    println!("------------------ Running/Restarting Jobs -------------------");
    if running.is_empty() {
        println!("No running jobs.");
    }
    for j in running {
        println!("{}", line(j));
    }
    println!("--------------------------------------------------------------");
    println!("---------------------- Terminated Jobs -----------------------");
    for j in ended {
        println!("{}", line(j));
    }
    println!("--------------------------------------------------------------");
    Ok(())
}

fn cancel(c: &Client, id: &str) -> Result<(), String> {
    println!("Cancelling job {id}.");
    let r = agent()
        .patch(&format!("{}/jobs/{id}?mode=cancel", c.base))
        .send_empty()
        .map_err(|e| format!("cannot reach the jobmanager at {}: {e}", c.base))?;
    body_or_error(r, "cancel")?;
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
            ..Default::default()
        },
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
        Command::List { jobmanager } => list(&client(&cli.config, jobmanager)?),
        Command::Cancel { jobmanager, job_id } => cancel(&client(&cli.config, jobmanager)?, &job_id),
        Command::Info { parallelism, job } => info(&cli.config, &job, parallelism),
    }
}
