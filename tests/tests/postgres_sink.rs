//! The PostgreSQL sink against a real PostgreSQL (Debian's, started by the test on 127.0.0.1)
//! and real processes. The job is the fault-tolerance reference (generated rows → key by user →
//! 2 s tumbling windows with count and sum) into two tables at once: an upsert table (primary
//! key user and window) and an exactly-once append table (prepared transactions).
//! - `kill -9` of a taskmanager mid-job: both tables equal the reference row for row, none
//!   twice, and no prepared transaction is left.
//! - A failpoint crashes the taskmanager after a checkpoint completed and before `COMMIT
//!   PREPARED`: the restarted attempt commits the prepared transactions, rows exactly once.
//! - PostgreSQL stopped for 10 s mid-job and started again: the sink retries, the task fails,
//!   the job restarts and the tables are exact.
//! - `connection.pool.max-size: 3` with a sink of parallelism 8 over two taskmanagers:
//!   `pg_stat_activity` never shows more than 3 connections of the sink.
//! - Refusals: a missing table, a column whose type cannot hold the stream's values, and a
//!   server with `max_prepared_transactions = 0` fail the job naming what is wrong.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sluice_tests::postgres::{have_postgres, Postgres};
use sluice_tests::windowed_job::WindowedJob;
use sluice_tests::{wait_or_explain, Cluster};

const TABLES: &str = "CREATE TABLE up (user_id bigint, window_start timestamp, window_end timestamp, n bigint, \
                      total double precision, PRIMARY KEY (user_id, window_start)); \
                      CREATE TABLE eo (user_id bigint, window_start timestamp, window_end timestamp, n bigint, \
                      total double precision)";

/// The windowed job writing to `up` (upsert) and `eo` (exactly-once append) at `pg`, with
/// extra options for both sinks.
fn job(w: &WindowedJob, pg: &Postgres, rate: u32, parallelism: u32, extra: &str) -> String {
    let base = w.yaml(std::path::Path::new("/unused"), rate, parallelism);
    let cut = base.find("sinks:").unwrap_or(base.len());
    let url = pg.jdbc_url();
    format!(
        r#"{}sinks:
  - id: up
    input: per-user
    connector: jdbc
    options:
      url: "{url}"
      table-name: up
      username: postgres
      password: s3cret-pw
      primary-key: "user_id;window_start"
{extra}  - id: eo
    input: per-user
    connector: postgres
    options:
      url: "{url}"
      table-name: public.eo
      username: postgres
      password: s3cret-pw
      sink.delivery-guarantee: exactly-once
{extra}"#,
        &base[..cut]
    )
}

/// (window start ms, user) → (count, sum) of a table; a window seen twice fails.
fn table(pg: &Postgres, name: &str) -> BTreeMap<(i64, i64), (i64, f64)> {
    let mut got = BTreeMap::new();
    for line in pg.query(&format!(
        "SELECT (extract(epoch from window_start) * 1000)::bigint, user_id, n, total FROM {name}"
    )) {
        let f: Vec<&str> = line.split('|').collect();
        let key = (f[0].parse().expect("start"), f[1].parse().expect("user"));
        let prev = got.insert(key, (f[2].parse().expect("n"), f[3].parse().expect("total")));
        assert!(prev.is_none(), "{name}: window {key:?} twice");
    }
    got
}

fn assert_tables_exact(pg: &Postgres, w: &WindowedJob) {
    let want = w.windows();
    for name in ["up", "eo"] {
        let got = table(pg, name);
        assert_eq!(got.len(), want.len(), "{name}: number of windows");
        for (k, (n, total)) in &want {
            let g = got.get(k).unwrap_or_else(|| panic!("{name}: window {k:?} missing"));
            assert_eq!(g.0, *n, "{name}: count of {k:?}");
            assert!((g.1 - total).abs() < 1e-6, "{name}: sum of {k:?}");
        }
    }
    let prepared = pg.query("SELECT gid FROM pg_prepared_xacts");
    assert!(prepared.is_empty(), "prepared transactions left behind: {prepared:?}");
}

fn cluster() -> (Cluster, tempfile::TempDir) {
    let checkpoints = tempfile::tempdir().expect("dir");
    // Restarts enough to outlast a database that is down for 10 s.
    let cluster = Cluster::new(&format!(
        "execution.checkpointing.dir: file://{}\nexecution.checkpointing.interval: 500 ms\n\
         restart-strategy.type: fixed-delay\nrestart-strategy.fixed-delay.attempts: 100\n\
         restart-strategy.fixed-delay.delay: 500 ms\ntaskmanager.numberOfTaskSlots: 2\n",
        checkpoints.path().display()
    ));
    (cluster, checkpoints)
}

#[test]
fn upsert_and_exactly_once_tables_are_exact_through_a_killed_taskmanager() {
    if !have_postgres() {
        return;
    }
    let pg = Postgres::start(64);
    pg.query(TABLES);
    let (mut cluster, _cp) = cluster();
    let (jm, _) = cluster.start_jobmanager();
    let (mut a, _) = cluster.start_taskmanager(&[]);
    let (b, _) = cluster.start_taskmanager(&[]);
    cluster.wait_taskmanagers(2, Duration::from_secs(20));
    let w = WindowedJob {
        rows: 60_000,
        keys: 20,
        splits: 4,
    };
    let id = cluster.submit(&job(&w, &pg, 6000, 4, ""), "pg.yaml");
    wait_or_explain(
        Duration::from_secs(60),
        || (cluster.completed_checkpoints(&id) >= 3).then_some(()),
        || format!("checkpoints of {id}; logs:\n{}", cluster.log_tails(30)),
    );
    let before = pg.query("SELECT count(*) FROM eo");
    a.kill9();
    let _c = cluster.start_taskmanager(&[]);
    wait_or_explain(
        Duration::from_secs(120),
        || (cluster.job_state(&id).as_deref() == Some("FINISHED")).then_some(()),
        || format!("job {:?}; logs:\n{}", cluster.job_state(&id), cluster.log_tails(40)),
    );
    assert_tables_exact(&pg, &w);
    // The password appears nowhere a user looks: REST, the job's config, the logs.
    for path in [
        format!("/jobs/{id}"),
        format!("/jobs/{id}/config"),
        format!("/jobs/{id}/plan"),
    ] {
        let body = cluster.rest(&path).map(|v| v.to_string()).unwrap_or_default();
        assert!(!body.contains("s3cret-pw"), "{path} shows the password");
    }
    assert!(!jm.log().contains("s3cret-pw"), "the jobmanager logged the password");
    assert!(!b.log().contains("s3cret-pw"), "a taskmanager logged the password");
    println!(
        "kill -9: {} windows exact in the upsert and the exactly-once table ({} rows committed before the kill)",
        w.windows().len(),
        before.first().cloned().unwrap_or_default()
    );
}

#[test]
fn a_crash_between_checkpoint_completion_and_commit_prepared_still_commits() {
    if !have_postgres() {
        return;
    }
    let pg = Postgres::start(64);
    pg.query(TABLES);
    let (mut cluster, _cp) = cluster();
    let _jm = cluster.start_jobmanager();
    let (mut a, _) = cluster.start_with_env(
        "taskmanager",
        &[],
        &[("SLUICE_FAILPOINT", "postgres-sink-before-commit")],
    );
    cluster.wait_taskmanagers(1, Duration::from_secs(20));
    let w = WindowedJob {
        rows: 20_000,
        keys: 10,
        splits: 2,
    };
    let id = cluster.submit(&job(&w, &pg, 5000, 2, ""), "gap.yaml");
    let status = a.wait_exit(Duration::from_secs(60));
    assert!(!status.success(), "the failpoint crashed the taskmanager: {status:?}");
    assert!(a.log().contains("Failpoint postgres-sink-before-commit"), "{}", a.log());
    let prepared = pg.query("SELECT gid FROM pg_prepared_xacts");
    assert!(!prepared.is_empty(), "the crash left a prepared transaction to commit");
    let _b = cluster.start_taskmanager(&[]);
    wait_or_explain(
        Duration::from_secs(90),
        || (cluster.job_state(&id).as_deref() == Some("FINISHED")).then_some(()),
        || format!("job {:?}; logs:\n{}", cluster.job_state(&id), cluster.log_tails(30)),
    );
    assert_tables_exact(&pg, &w);
    println!(
        "failpoint: {} prepared transaction(s) at the crash, committed by the restarted attempt; tables exact",
        prepared.len()
    );
}

#[test]
fn postgres_down_for_ten_seconds_then_back_and_the_tables_are_exact() {
    if !have_postgres() {
        return;
    }
    let mut pg = Postgres::start(64);
    pg.query(TABLES);
    let (mut cluster, _cp) = cluster();
    let _jm = cluster.start_jobmanager();
    let _a = cluster.start_taskmanager(&[]);
    let _b = cluster.start_taskmanager(&[]);
    cluster.wait_taskmanagers(2, Duration::from_secs(20));
    let w = WindowedJob {
        rows: 60_000,
        keys: 10,
        splits: 4,
    };
    let id = cluster.submit(&job(&w, &pg, 3000, 4, "      sink.max-retries: \"2\"\n"), "down.yaml");
    wait_or_explain(
        Duration::from_secs(60),
        || (cluster.completed_checkpoints(&id) >= 3).then_some(()),
        || format!("checkpoints of {id}; logs:\n{}", cluster.log_tails(30)),
    );
    pg.stop_server();
    std::thread::sleep(Duration::from_secs(10));
    pg.start_server();
    wait_or_explain(
        Duration::from_secs(180),
        || (cluster.job_state(&id).as_deref() == Some("FINISHED")).then_some(()),
        || format!("job {:?}; logs:\n{}", cluster.job_state(&id), cluster.log_tails(40)),
    );
    assert_tables_exact(&pg, &w);
    let details = cluster.rest(&format!("/jobs/{id}/exceptions")).expect("exceptions");
    println!("PostgreSQL down 10 s: tables exact; exceptions {}", details);
}

#[test]
fn the_pool_size_bounds_the_connections_of_all_subtasks_together() {
    if !have_postgres() {
        return;
    }
    let pg = Postgres::start(64);
    pg.query("CREATE TABLE narrow (seq bigint, v bigint)");
    let (mut cluster, _cp) = cluster();
    let _jm = cluster.start_jobmanager();
    let _tms: Vec<_> = (0..2)
        .map(|_| cluster.start_taskmanager(&["-D", "taskmanager.numberOfTaskSlots=4"]))
        .collect();
    cluster.wait_taskmanagers(2, Duration::from_secs(20));
    let yaml = format!(
        r#"name: pooled
parallelism: 8
sources:
  - id: rows
    connector: datagen
    options: {{number-of-rows: 200000, splits: 8, rows-per-second: 40000}}
    schema:
      - {{name: seq, type: bigint, expr: "seq"}}
      - {{name: v, type: bigint, expr: "seq % 7"}}
sinks:
  - id: out
    input: rows
    connector: jdbc
    options:
      url: "{}"
      table-name: narrow
      username: postgres
      connection.pool.max-size: "3"
      sink.buffer-flush.max-rows: "500"
"#,
        pg.jdbc_url()
    );
    let id = cluster.submit(&yaml, "pooled.yaml");
    let done = Arc::new(AtomicBool::new(false));
    let most = Arc::new(AtomicUsize::new(0));
    let samples = Arc::new(AtomicUsize::new(0));
    let port = pg.port;
    let sampler = {
        let (done, most, samples) = (done.clone(), most.clone(), samples.clone());
        std::thread::spawn(move || {
            let count = || {
                std::process::Command::new("psql")
                    .args([
                        "-h",
                        "127.0.0.1",
                        "-p",
                        &port.to_string(),
                        "-U",
                        "postgres",
                        "-XAtq",
                        "-c",
                    ])
                    .arg("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'sluice:%'")
                    .output()
                    .ok()
                    .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse::<usize>().ok())
            };
            let deadline = std::time::Instant::now() + Duration::from_secs(120);
            while !done.load(Ordering::Acquire) && std::time::Instant::now() < deadline {
                if let Some(mut n) = count() {
                    // A permit goes back once the sink's side of a connection is closed; the
                    // server lists that backend until it has exited, a moment later. So a count
                    // over the pool must still be there when asked again at once to count.
                    if n > 3 {
                        n = n.min(count().unwrap_or(n));
                    }
                    most.fetch_max(n, Ordering::AcqRel);
                    samples.fetch_add(1, Ordering::AcqRel);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    wait_or_explain(
        Duration::from_secs(120),
        || (cluster.job_state(&id).as_deref() == Some("FINISHED")).then_some(()),
        || format!("job {:?}; logs:\n{}", cluster.job_state(&id), cluster.log_tails(30)),
    );
    done.store(true, Ordering::Release);
    let _ = sampler.join();
    let rows = pg.query("SELECT count(*), count(DISTINCT seq) FROM narrow");
    assert_eq!(rows, vec!["200000|200000".to_string()], "every row once");
    let most = most.load(Ordering::Acquire);
    assert!(samples.load(Ordering::Acquire) > 10, "pg_stat_activity was sampled");
    assert!(most <= 3, "at most 3 connections of the sink at once, saw {most}");
    assert!(most >= 1, "the sink's connections were seen");
    println!(
        "pool: parallelism 8, pool 3 over two taskmanagers: at most {most} connections in {} samples; 200000 rows",
        samples.load(Ordering::Acquire)
    );
}

#[test]
fn a_missing_table_a_wrong_column_type_and_no_prepared_transactions_are_named() {
    if !have_postgres() {
        return;
    }
    let pg = Postgres::start(0);
    pg.query(TABLES);
    pg.query("CREATE TABLE bad (user_id bigint, window_start timestamp, window_end timestamp, n int, total double precision)");
    let (mut cluster, _cp) = cluster();
    let _jm = cluster.start_jobmanager();
    let _a = cluster.start_taskmanager(&[]);
    cluster.wait_taskmanagers(1, Duration::from_secs(20));
    let w = WindowedJob {
        rows: 2000,
        keys: 4,
        splits: 2,
    };
    let cause = |yaml: &str, name: &str| {
        let id = cluster.submit(yaml, name);
        cluster.wait_job_state(&id, "FAILED", Duration::from_secs(60));
        cluster.rest(&format!("/jobs/{id}")).expect("job")["failure-cause"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let both = |table: &str| {
        job(&w, &pg, 2000, 1, "")
            .replace("table-name: up", &format!("table-name: {table}"))
            .replace("table-name: public.eo", &format!("table-name: {table}"))
    };
    let c = cause(&both("nope"), "missing.yaml");
    assert!(c.contains("table 'nope' does not exist"), "{c}");
    println!("missing table: {c}");
    let c = cause(&both("bad"), "types.yaml");
    assert!(c.contains("column 'n' of table 'bad' is integer"), "{c}");
    println!("wrong type: {c}");
    let c = cause(&job(&w, &pg, 2000, 1, ""), "noprep.yaml");
    assert!(c.contains("max_prepared_transactions = 0"), "{c}");
    println!("no prepared transactions: {c}");
}

/// A continuous aggregate (key-by + aggregate, no window) with a state TTL shorter than the job,
/// on RocksDB, upserted into PostgreSQL. `cycle` keys (`(seq / 1000) % 10`, 2000 rows/s) are
/// written for 0.5 s and then idle for 4.5 s, longer than the 2 s TTL: each run starts again
/// from zero, so the table ends with each key's last run only (1000 rows, not 3000). `fresh`
/// keys (`seq / 50`) never come back: with the TTL the checkpointed state stops growing
/// (`lastCheckpointSize`) while the keys seen keep growing. An append sink is refused.
#[test]
fn a_continuous_aggregate_with_state_ttl_restarts_expired_keys_and_stops_growing() {
    if !have_postgres() {
        return;
    }
    let pg = Postgres::start(8);
    pg.query(
        "CREATE TABLE cycle (c bigint PRIMARY KEY, n bigint, total double precision); \
         CREATE TABLE fresh (f bigint PRIMARY KEY, n bigint)",
    );
    let checkpoints = tempfile::tempdir().expect("dir");
    let mut cluster = Cluster::new(&format!(
        "execution.checkpointing.dir: file://{}\nexecution.checkpointing.interval: 1 s\n\
         state.backend.type: rocksdb\nrestart-strategy.type: none\ntable.exec.state.ttl: 1 h\n",
        checkpoints.path().display()
    ));
    let _jm = cluster.start_jobmanager();
    let _a = cluster.start_taskmanager(&[]);
    cluster.wait_taskmanagers(1, Duration::from_secs(20));
    let yaml = format!(
        r#"name: continuous
parallelism: 1
sources:
  - id: rows
    connector: datagen
    options: {{number-of-rows: 30000, rows-per-second: 2000}}
    schema:
      - {{name: c, type: bigint, expr: "(seq / 1000) % 10"}}
      - {{name: f, type: bigint, expr: "seq / 50"}}
      - {{name: amount, type: double, expr: "CAST(seq % 3 AS DOUBLE)"}}
operators:
  - id: per-cycle
    input: rows
    key-by: [c]
    aggregate: {{n: "count(*)", total: "sum(amount)"}}
    state.ttl: 2 s
  - id: per-fresh
    input: rows
    key-by: [f]
    aggregate: {{n: "count(*)"}}
    state.ttl: 2 s
sinks:
  - id: cycle
    input: per-cycle
    connector: postgres
    options: {{url: "{url}", table-name: cycle, primary-key: c}}
  - id: fresh
    input: per-fresh
    connector: postgres
    options: {{url: "{url}", table-name: fresh, primary-key: f}}
"#,
        url = pg.jdbc_url()
    );
    // An append sink cannot take the updating stream.
    let append = yaml.replace("table-name: fresh, primary-key: f", "table-name: fresh");
    let path = cluster.config_dir().join("append.yaml");
    std::fs::write(&path, &append).expect("job file");
    let refused = cluster.sluice("run", &["-d", path.to_str().expect("path")]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&refused.stdout),
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(!refused.status.success(), "{text}");
    assert!(
        text.contains("cannot take the updating stream of continuous aggregate 'per-fresh'"),
        "{text}"
    );
    println!("append sink refused: {}", text.lines().last().unwrap_or(""));

    let id = cluster.submit(&yaml, "continuous.yaml");
    let size_at = |cluster: &Cluster| -> u64 {
        cluster
            .rest(&format!("/jobs/{id}/checkpoints"))
            .and_then(|c| c["latest"]["completed"]["state_size"].as_u64())
            .unwrap_or(0)
    };
    std::thread::sleep(Duration::from_secs(5));
    let early = size_at(&cluster);
    std::thread::sleep(Duration::from_secs(7));
    let late = size_at(&cluster);
    wait_or_explain(
        Duration::from_secs(60),
        || (cluster.job_state(&id).as_deref() == Some("FINISHED")).then_some(()),
        || format!("job {:?}; logs:\n{}", cluster.job_state(&id), cluster.log_tails(30)),
    );
    // Each cycle key's last run: 1000 rows; the amounts of that run sum to the run's seq % 3.
    let mut want = Vec::new();
    for c in 0..10i64 {
        let last = 20_000 + c * 1000;
        let total: i64 = (last..last + 1000).map(|s| s % 3).sum();
        want.push(format!("{c}|1000|{total}"));
    }
    assert_eq!(
        pg.query("SELECT c, n, total FROM cycle ORDER BY c"),
        want,
        "expired keys restart from zero"
    );
    let fresh = pg.query("SELECT count(*), min(n), max(n) FROM fresh");
    assert_eq!(fresh, vec!["600|50|50".to_string()]);
    assert!(early > 0 && late > 0, "checkpoint sizes {early} and {late}");
    assert!(
        (late as f64) < (early as f64) * 1.5,
        "with the TTL the state stops growing: {early} bytes after 5 s, {late} after 12 s (keys seen grew 2.4×)"
    );
    println!("TTL: cycle keys restart from zero after 4.5 s idle; state {early} bytes at 5 s, {late} at 12 s");
}
