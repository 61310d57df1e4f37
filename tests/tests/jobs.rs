//! The streaming runtime end to end: real jobmanager and taskmanager processes run jobs
//! submitted with the `sluice` CLI. Results are checked against references computed here from
//! the datagen expressions; failures must carry Flink's messages.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use sluice_tests::{job_id_of as job_id, Cluster};

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// "2026-01-01T00:05:00" (Arrow's JSON form of a millisecond timestamp) → epoch ms.
fn parse_ts(s: &str) -> i64 {
    let n = |a: usize, b: usize| s[a..b].parse::<i64>().unwrap_or_else(|_| panic!("bad timestamp {s}"));
    let days = days_from_civil(n(0, 4), n(5, 7), n(8, 10));
    let ms = if s.len() > 19 {
        s[20..].parse::<i64>().unwrap_or(0)
    } else {
        0
    };
    ((days * 24 + n(11, 13)) * 60 + n(14, 16)) * 60_000 + n(17, 19) * 1000 + ms
}

const ROWS: i64 = 1_000_000;

fn windowed_job(out: &Path) -> String {
    format!(
        r#"name: exact-windows
parallelism: 4
sources:
  - id: events
    connector: datagen
    parallelism: 2
    options: {{number-of-rows: {ROWS}, splits: 8}}
    schema:
      - {{name: user_id, type: bigint, expr: "seq % 1000"}}
      - {{name: amount,  type: double, expr: "CAST(seq % 10 AS DOUBLE)"}}
      - {{name: ts,      type: timestamp, expr: "to_timestamp_millis(1767225600000 + seq * 7)"}}
    watermark: {{column: ts, max-out-of-orderness: 2 s}}
operators:
  - id: per-user
    input: events
    key-by: [user_id]
    window: {{type: tumbling, size: 10 s}}
    aggregate: {{n: "count(*)", total: "sum(amount)"}}
sinks:
  - id: out
    input: per-user
    connector: file
    options: {{path: "{}", format: json}}
"#,
        out.display()
    )
}

#[test]
fn keyed_tumbling_job_across_two_taskmanagers_is_exact() {
    let mut cluster = Cluster::new("");
    let (_jm, _) = cluster.start_jobmanager();
    let (_a, _) = cluster.start_taskmanager(&[]);
    let (_b, _) = cluster.start_taskmanager(&[]);
    cluster.wait_taskmanagers(2, Duration::from_secs(20));
    let out = cluster.config_dir().join("out");
    let job = cluster.config_dir().join("windows.yaml");
    std::fs::write(&job, windowed_job(&out)).expect("job file");

    let run = cluster.sluice("run", &[job.to_str().expect("path")]);
    assert!(run.status.success(), "{}", text(&run));
    let id = job_id(&run);
    let details = cluster.rest(&format!("/jobs/{id}")).expect("job details");
    assert_eq!(details["state"], "FINISHED");
    let vertices = details["vertices"].as_array().expect("vertices");
    assert_eq!(vertices.len(), 2, "{details}");
    assert_eq!(vertices[1]["parallelism"], 4);
    assert_eq!(cluster.overview("slots-available"), Some(4), "slots released");

    let mut reference: BTreeMap<(i64, i64), (i64, f64)> = BTreeMap::new();
    for seq in 0..ROWS {
        let ts = 1767225600000 + seq * 7;
        let e = reference.entry((ts - ts.rem_euclid(10_000), seq % 1000)).or_default();
        e.0 += 1;
        e.1 += (seq % 10) as f64;
    }
    let mut got: BTreeMap<(i64, i64), (i64, f64)> = BTreeMap::new();
    let mut files = 0;
    for entry in std::fs::read_dir(&out).expect("output dir") {
        let path = entry.expect("entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("").to_string();
        assert!(
            name.starts_with("part-") && name.ends_with(".json"),
            "unexpected file {name}"
        );
        files += 1;
        for line in std::fs::read_to_string(&path).expect("part file").lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("json line");
            let start = parse_ts(v["window_start"].as_str().expect("window_start"));
            assert_eq!(parse_ts(v["window_end"].as_str().expect("window_end")) - start, 10_000);
            let key = (start, v["user_id"].as_i64().expect("user_id"));
            let prev = got.insert(key, (v["n"].as_i64().expect("n"), v["total"].as_f64().expect("total")));
            assert!(prev.is_none(), "window {key:?} emitted twice");
        }
    }
    assert_eq!(files, 4, "one part file per sink subtask");
    assert_eq!(got.len(), reference.len());
    for (k, (n, t)) in &reference {
        let (gn, gt) = got.get(k).unwrap_or_else(|| panic!("missing window {k:?}"));
        assert_eq!(gn, n, "count of {k:?}");
        assert!((gt - t).abs() < 1e-6, "sum of {k:?}: {gt} vs {t}");
    }
    println!("{} windows of {ROWS} rows match the reference", reference.len());
}

#[test]
fn too_few_network_buffers_fail_the_job_with_flinks_message() {
    let mut cluster = Cluster::new(
        "taskmanager.memory.network.min: 128kb\ntaskmanager.memory.network.max: 128kb\njobmanager.adaptive-scheduler.resource-wait-timeout: 10 s\n",
    );
    let (_jm, _) = cluster.start_jobmanager();
    let (_a, _) = cluster.start_taskmanager(&[]);
    let (_b, _) = cluster.start_taskmanager(&[]);
    cluster.wait_taskmanagers(2, Duration::from_secs(20));
    let job = cluster.config_dir().join("windows.yaml");
    std::fs::write(&job, windowed_job(&cluster.config_dir().join("out"))).expect("job file");
    let run = cluster.sluice("run", &[job.to_str().expect("path")]);
    assert!(!run.status.success());
    let out = text(&run);
    assert!(
        out.contains("Insufficient number of network buffers: required"),
        "{out}"
    );
    assert!(
        out.contains("The total number of network buffers is currently set to 4 of 32768 bytes each"),
        "{out}"
    );
    assert!(out.contains("'taskmanager.memory.network.fraction', 'taskmanager.memory.network.min', and 'taskmanager.memory.network.max'"), "{out}");
    assert_eq!(cluster.overview("jobs-failed"), Some(1));
    assert_eq!(cluster.overview("slots-available"), Some(4), "slots released");
}

#[test]
fn a_job_needing_more_slots_than_exist_fails_with_the_slot_message() {
    let mut cluster = Cluster::new("jobmanager.adaptive-scheduler.resource-wait-timeout: 1 s\n");
    let (_jm, _) = cluster.start_jobmanager();
    let (_a, _) = cluster.start_taskmanager(&[]);
    cluster.wait_taskmanagers(1, Duration::from_secs(20));
    let job = cluster.config_dir().join("windows.yaml");
    std::fs::write(&job, windowed_job(&cluster.config_dir().join("out"))).expect("job file");
    let run = cluster.sluice("run", &["-p", "8", job.to_str().expect("path")]);
    assert!(!run.status.success());
    let out = text(&run);
    assert!(
        out.contains(
            "the job needs 8 slots, but only 2 of 2 slots (on 1 taskmanagers) were available after waiting 1 s"
        ),
        "{out}"
    );
}

#[test]
fn cancel_stops_a_running_job() {
    let mut cluster = Cluster::new("heartbeat.interval: 1 s\n");
    let (_jm, _) = cluster.start_jobmanager();
    let (_a, metrics_a) = cluster.start_taskmanager(&[]);
    let (_b, _) = cluster.start_taskmanager(&[]);
    cluster.wait_taskmanagers(2, Duration::from_secs(20));
    let job = cluster.config_dir().join("endless.yaml");
    let out = cluster.config_dir().join("out");
    std::fs::write(
        &job,
        format!(
            "name: endless\nparallelism: 3\nsources:\n  - id: s\n    connector: datagen\n    options: {{rows-per-second: 5000}}\n    schema: [{{name: k, type: bigint, expr: \"seq % 10\"}}]\noperators:\n  - {{id: f, input: s, filter: \"k >= 0\", partition: rebalance}}\nsinks:\n  - {{id: o, input: f, connector: file, options: {{path: \"{}\"}}}}\n",
            out.display()
        ),
    )
    .expect("job file");
    let run = cluster.sluice("run", &["-d", job.to_str().expect("path")]);
    assert!(run.status.success(), "{}", text(&run));
    let id = job_id(&run);
    cluster.wait_job_state(&id, "RUNNING", Duration::from_secs(10));
    sluice_tests::wait_for(Duration::from_secs(10), "records to flow", || {
        let d = cluster.rest(&format!("/jobs/{id}"))?;
        (d["vertices"][1]["metrics"]["read-records"].as_u64()? > 0).then_some(())
    });
    assert_eq!(cluster.overview("slots-available"), Some(1));
    // Flink's per-subtask metrics, labelled as Flink's Prometheus reporter labels them.
    let scraped = sluice_tests::wait_for(Duration::from_secs(10), "task metrics", || {
        let t = sluice_tests::get_text(&format!("http://127.0.0.1:{metrics_a}/metrics"))?;
        t.contains("flink_taskmanager_job_task_numRecordsInPerSecond")
            .then_some(t)
    });
    for name in [
        "busyTimeMsPerSecond",
        "idleTimeMsPerSecond",
        "backPressuredTimeMsPerSecond",
        "numRecordsIn",
        "numRecordsOut",
        "numRecordsInPerSecond",
        "numRecordsOutPerSecond",
        "currentInputWatermark",
    ] {
        let metric = format!("flink_taskmanager_job_task_{name}{{");
        let line = scraped
            .lines()
            .find(|l| l.starts_with(&metric))
            .unwrap_or_else(|| panic!("no {metric} in:\n{scraped}"));
        for label in [
            "job_id=",
            "job_name=\"endless\"",
            "task_id=",
            "task_name=",
            "subtask_index=",
            "tm_id=",
        ] {
            assert!(line.contains(label), "{line} lacks {label}");
        }
    }
    let cancel = cluster.sluice("cancel", &[&id]);
    assert!(cancel.status.success(), "{}", text(&cancel));
    assert!(text(&cancel).contains(&format!("Cancelled job {id}.")));
    assert_eq!(cluster.overview("jobs-cancelled"), Some(1));
    sluice_tests::wait_for(Duration::from_secs(10), "slots to be released", || {
        (cluster.overview("slots-available") == Some(4)).then_some(())
    });
    // As Flink's CLI: terminated jobs only with -a, start times as local dates.
    let list = cluster.sluice("list", &[]);
    assert!(text(&list).contains("No running jobs."), "{}", text(&list));
    assert!(!text(&list).contains(&id), "{}", text(&list));
    let list = cluster.sluice("list", &["-a"]);
    assert!(
        text(&list).contains(&format!("{id} : endless (CANCELED)")),
        "{}",
        text(&list)
    );
}

#[test]
fn every_example_job_runs() {
    let mut cluster = Cluster::new("");
    let (_jm, _) = cluster.start_jobmanager();
    let (_a, _) = cluster.start_taskmanager(&[]);
    let (_b, _) = cluster.start_taskmanager(&[]);
    cluster.wait_taskmanagers(2, Duration::from_secs(20));
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/jobs");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("conf/jobs")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    files.sort();
    assert!(files.len() >= 4);
    for file in files {
        let info = cluster.sluice("info", &[file.to_str().expect("path")]);
        assert!(info.status.success(), "{}: {}", file.display(), text(&info));
        let yaml = std::fs::read_to_string(&file).expect("job file");
        if yaml.contains("connector: kafka") {
            run_kafka_example(&cluster, &file, &yaml);
            continue;
        }
        if yaml.contains("jdbc:postgresql://") {
            run_postgres_example(&cluster, &file, &yaml);
            continue;
        }
        let run = cluster.sluice("run", &[file.to_str().expect("path")]);
        assert!(run.status.success(), "{}: {}", file.display(), text(&run));
        println!("{}: {}", file.display(), text(&run).lines().last().unwrap_or(""));
    }
}

/// A Kafka example runs against a local broker (its topics created, a few records in): its
/// bootstrap address is replaced by the broker's, it is run detached and cancelled once it runs.
fn run_kafka_example(cluster: &Cluster, file: &Path, yaml: &str) {
    use sluice_tests::kafka::{have_broker, Broker};
    if !have_broker() {
        return;
    }
    let broker = Broker::start(cluster.config_dir());
    broker.create_topic("views", 16);
    broker.create_topic("views-per-user", 4);
    let records: Vec<(i32, Option<String>, String)> = (0..160)
        .map(|n: i64| {
            (
                (n % 16) as i32,
                None,
                format!(
                    r#"{{"user_id": {}, "amount": 1.5, "ts": {}}}"#,
                    n % 8,
                    1_767_225_600_000 + n
                ),
            )
        })
        .collect();
    broker.produce("views", &records);
    let local = cluster.config_dir().join(file.file_name().expect("name"));
    std::fs::write(&local, yaml.replace("127.0.0.1:9092", &broker.bootstrap)).expect("job file");
    let run = cluster.sluice("run", &["-d", local.to_str().expect("path")]);
    assert!(run.status.success(), "{}: {}", file.display(), text(&run));
    let id = sluice_tests::job_id_of(&run);
    cluster.wait_job_state(&id, "RUNNING", Duration::from_secs(30));
    let c = cluster.sluice("cancel", &[id.as_str()]);
    assert!(c.status.success(), "{c:?}");
    println!("{}: running against a local broker, then cancelled", file.display());
}

/// A PostgreSQL example runs to its end against a local server (its table created as the
/// file's header says), and the table holds every window.
fn run_postgres_example(cluster: &Cluster, file: &Path, yaml: &str) {
    use sluice_tests::postgres::{have_postgres, Postgres};
    if !have_postgres() {
        return;
    }
    let pg = Postgres::start(16);
    pg.query(
        "CREATE TABLE views_per_user (user_id bigint, window_start timestamp, window_end timestamp, \
         events bigint, total double precision, PRIMARY KEY (user_id, window_start))",
    );
    let local = cluster.config_dir().join(file.file_name().expect("name"));
    std::fs::write(
        &local,
        yaml.replace("127.0.0.1:5432", &format!("127.0.0.1:{}", pg.port)),
    )
    .expect("job file");
    let run = cluster.sluice("run", &[local.to_str().expect("path")]);
    assert!(run.status.success(), "{}: {}", file.display(), text(&run));
    // 100000 rows, 1 ms apart: 10 windows of 10 s, 500 users each.
    let rows = pg.query("SELECT count(*), sum(events) FROM views_per_user");
    assert_eq!(rows, vec!["5000|100000".to_string()], "{}", file.display());
    println!("{}: 5000 windows upserted into a local PostgreSQL", file.display());
}

#[test]
fn bad_job_files_are_rejected_with_their_position() {
    let mut cluster = Cluster::new("");
    let (_jm, _) = cluster.start_jobmanager();
    cluster.wait_taskmanagers(0, Duration::from_secs(20));
    let job = cluster.config_dir().join("bad.yaml");
    std::fs::write(&job, "sources:\n  - id: s\n    connector: datagen\n    schema: [{name: x, type: bigint, expr: seq}]\nsinks:\n  - {id: o, input: nope, connector: print}\n").expect("job file");
    let run = cluster.sluice("run", &[job.to_str().expect("path")]);
    assert!(!run.status.success());
    let out = text(&run);
    assert!(
        out.contains("bad.yaml:6:") && out.contains("unknown input 'nope'"),
        "{out}"
    );
    let info = cluster.sluice("info", &[job.to_str().expect("path")]);
    assert!(!info.status.success() && text(&info).contains("unknown input 'nope'"));
}

#[test]
fn killing_a_taskmanager_fails_the_job_and_frees_the_survivors_slots() {
    let mut cluster = Cluster::new("heartbeat.interval: 1 s\n");
    let (_jm, _) = cluster.start_jobmanager();
    let (_a, _) = cluster.start_taskmanager(&[]);
    let (mut b, _) = cluster.start_taskmanager(&[]);
    cluster.wait_taskmanagers(2, Duration::from_secs(20));
    let job = cluster.config_dir().join("endless-keyed.yaml");
    std::fs::write(
        &job,
        "name: endless-keyed\nparallelism: 4\nsources:\n  - id: s\n    connector: datagen\n    options: {rows-per-second: 20000}\n    schema: [{name: k, type: bigint, expr: \"seq % 100\"}]\noperators:\n  - {id: by-key, input: s, key-by: k}\nsinks:\n  - {id: o, input: by-key, connector: blackhole}\n",
    )
    .expect("job file");
    let run = cluster.sluice("run", &["-d", job.to_str().expect("path")]);
    assert!(run.status.success(), "{}", text(&run));
    let id = job_id(&run);
    cluster.wait_job_state(&id, "RUNNING", Duration::from_secs(10));
    sluice_tests::wait_for(Duration::from_secs(10), "records to cross taskmanagers", || {
        let d = cluster.rest(&format!("/jobs/{id}"))?;
        (d["vertices"][1]["metrics"]["read-records"].as_u64()? > 1000).then_some(())
    });
    b.kill9();
    cluster.wait_job_state(&id, "FAILED", Duration::from_secs(15));
    let cause = cluster.rest(&format!("/jobs/{id}/exceptions")).expect("exceptions")["exceptionHistory"]["entries"][0]
        ["stacktrace"]
        .to_string();
    assert!(cause.contains("was lost while running the job"), "{cause}");
    sluice_tests::wait_for(Duration::from_secs(10), "the survivor's slots to be free", || {
        (cluster.overview("slots-available") == Some(2) && cluster.overview("slots-total") == Some(2)).then_some(())
    });
}

#[test]
fn dynamic_properties_on_run_reach_the_job_before_or_after_the_verb() {
    let checkpoints = tempfile::tempdir().expect("dir");
    // The cluster checkpoints nowhere by itself: no interval configured.
    let mut cluster = Cluster::new(&format!(
        "execution.checkpointing.dir: file://{}\n",
        checkpoints.path().display()
    ));
    let (_jm, _) = cluster.start_jobmanager();
    let (_a, _) = cluster.start_taskmanager(&[]);
    cluster.wait_taskmanagers(1, Duration::from_secs(20));
    let file = cluster.config_dir().join("endless.yaml");
    std::fs::write(&file, sluice_tests::unbounded_job("endless", 1, 1000)).expect("job file");
    let rest = format!("127.0.0.1:{}", cluster.rest_port);
    let file = file.to_str().expect("path");
    // `flink run -Dkey=value` muscle memory: after the verb, attached value; and before it.
    let after = cluster.sluice("run", &["-d", "-Dexecution.checkpointing.interval=300ms", file]);
    assert!(after.status.success(), "{}", text(&after));
    let before = std::process::Command::new(sluice_tests::binary("sluice"))
        .args([
            "-D",
            "execution.checkpointing.interval=300ms",
            "run",
            "-m",
            &rest,
            "-d",
            file,
        ])
        .env_remove("SLUICE_PROPERTIES")
        .env_remove("SLUICE_CONF_DIR")
        .output()
        .expect("run sluice");
    assert!(before.status.success(), "{}", text(&before));
    for id in [job_id(&after), job_id(&before)] {
        sluice_tests::wait_for(Duration::from_secs(30), "checkpoints from the -D interval", || {
            (cluster.completed_checkpoints(&id) >= 2).then_some(())
        });
    }
}

#[test]
fn a_job_waiting_for_slots_says_so_and_the_cli_names_what_is_wrong() {
    let mut cluster = Cluster::new("jobmanager.adaptive-scheduler.resource-wait-timeout: 10 min\n");
    let (_jm, _) = cluster.start_jobmanager();
    let (_a, _) = cluster.start_taskmanager(&[]);
    cluster.wait_taskmanagers(1, Duration::from_secs(20));
    let id = cluster.submit(&sluice_tests::unbounded_job("wide", 64, 10), "wide.yaml");
    let waiting = sluice_tests::wait_for(Duration::from_secs(10), "waiting-for-resources", || {
        cluster
            .rest(&format!("/jobs/{id}"))?
            .get("waiting-for-resources")
            .cloned()
    });
    assert_eq!(waiting["slots-needed"], 64);
    assert_eq!(waiting["slots-total"], 2);
    let list = cluster.sluice("list", &["-s"]);
    let out = text(&list);
    assert!(out.contains(&format!("{id} : wide (CREATED)")), "{out}");
    assert!(
        out.contains("Waiting for resources: the job needs 64 slots, 2 of 2 are free; it fails if they do not come within 10 min (jobmanager.adaptive-scheduler.resource-wait-timeout)."),
        "{out}"
    );
    // `-m` as a URL works; a port that is not the REST port says what to check.
    let url = format!("http://127.0.0.1:{}/", cluster.rest_port);
    let by_url = std::process::Command::new(sluice_tests::binary("sluice"))
        .args(["list", "-m", &url])
        .output()
        .expect("run sluice");
    assert!(by_url.status.success(), "{}", text(&by_url));
    let rpc = format!("127.0.0.1:{}", cluster.rpc_port);
    let wrong = std::process::Command::new(sluice_tests::binary("sluice"))
        .args(["list", "-m", &rpc])
        .output()
        .expect("run sluice");
    assert!(!wrong.status.success());
    assert!(text(&wrong).contains("rest.port"), "{}", text(&wrong));
}
