//! A PostgreSQL server for end-to-end tests: Debian's binaries (scripts/deps.sh installs the
//! `postgresql` package; `SLUICE_POSTGRES_BIN_DIR` overrides), a fresh cluster made by
//! `initdb` in its own directory, the server on 127.0.0.1 with a free port (as the `postgres`
//! user when the tests run as root, since the server refuses root), stopped and started again
//! on demand; queries through `psql`.

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// The newest `/usr/lib/postgresql/<version>/bin` with `initdb` and `postgres`.
pub fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("SLUICE_POSTGRES_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|d| d.join("initdb").exists() && d.join("postgres").exists())
        .collect();
    dirs.sort_by_key(|d| {
        d.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    dirs.pop()
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/none/bin"))
}

/// Whether the server binaries and psql are installed; SKIPPED (or, under
/// SLUICE_REQUIRE_TOOLS=1, a failure) when they are not.
pub fn have_postgres() -> bool {
    let psql = Command::new("psql")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    crate::tools::have_tool(
        bin_dir().join("initdb").exists() && psql,
        "PostgreSQL (Debian's postgresql and postgresql-client) is missing; scripts/test.sh installs it",
    )
}

/// The uid and gid of `postgres` when running as root (the server will not run as root).
fn server_user() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let line = passwd.lines().find(|l| l.starts_with("postgres:"))?;
    let fields: Vec<&str> = line.split(':').collect();
    Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?))
}

/// As the server user, and killed with the test process (the death signal is set after the
/// uid changed, which would clear it).
fn as_server_user(cmd: &mut Command) -> &mut Command {
    if let Some((uid, gid)) = server_user() {
        cmd.uid(uid).gid(gid);
    }
    // SAFETY: prctl is async-signal-safe; the closure only makes that call.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd
}

pub struct Postgres {
    pub port: u16,
    _root: tempfile::TempDir,
    data: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    max_prepared: u32,
}

impl Postgres {
    /// A fresh cluster, started; `max_prepared_transactions` as given (0 turns prepared
    /// transactions off).
    pub fn start(max_prepared: u32) -> Postgres {
        let root = tempfile::Builder::new().prefix("sluice-pg-").tempdir().expect("dir");
        // The server user must reach its data directory.
        std::fs::set_permissions(root.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
        let data = root.path().join("data");
        std::fs::create_dir(&data).expect("data dir");
        if let Some((uid, gid)) = server_user() {
            std::os::unix::fs::chown(&data, Some(uid), Some(gid)).expect("chown data dir");
        }
        let out = as_server_user(Command::new(bin_dir().join("initdb")).args(["-D"]).arg(&data).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
        ]))
        .output()
        .expect("run initdb");
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        let mut pg = Postgres {
            port: free_port(),
            log: root.path().join("postgres.log"),
            _root: root,
            data,
            child: None,
            max_prepared,
        };
        pg.start_server();
        pg
    }

    /// Starts the server on its data directory and port; waits (at most 30 s) until it takes
    /// queries.
    pub fn start_server(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log");
        let err = log.try_clone().expect("log");
        let child = as_server_user(
            Command::new(bin_dir().join("postgres"))
                .arg("-D")
                .arg(&self.data)
                .args(["-p", &self.port.to_string(), "-k"])
                .arg(&self.data)
                .args([
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    "fsync=off",
                    "-c",
                    "max_connections=100",
                ])
                .args(["-c", &format!("max_prepared_transactions={}", self.max_prepared)])
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(err),
        )
        .spawn()
        .expect("start postgres");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() && self.try_query("SELECT 1").is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not start on {}: {}",
                self.port,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Fast shutdown (SIGINT: connections are cut, open transactions rolled back); waits for it.
    pub fn stop_server(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: signalling our own child.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGINT);
            }
            let deadline = Instant::now() + Duration::from_secs(30);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `jdbc:postgresql://127.0.0.1:<port>/postgres`.
    pub fn jdbc_url(&self) -> String {
        format!("jdbc:postgresql://127.0.0.1:{}/postgres", self.port)
    }

    /// Runs `sql` through psql; the rows as lines of `|`-separated fields.
    pub fn try_query(&self, sql: &str) -> Result<Vec<String>, String> {
        let out = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .env("PGCONNECT_TIMEOUT", "5")
            .output()
            .map_err(|e| format!("psql: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).to_string());
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect())
    }

    /// As `try_query`, failing the test on an error.
    pub fn query(&self, sql: &str) -> Vec<String> {
        self.try_query(sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop_server();
    }
}
