//! systemd: the shipped units pass `systemd-analyze verify` once installed by
//! `scripts/systemd/install.sh` (staged under a temporary root), and the daemons speak the
//! `Type=notify` protocol: READY=1 once the jobmanager serves and once a taskmanager is
//! registered, STOPPING=1 on SIGTERM. The protocol is checked against a real notification
//! socket, as systemd provides one.

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::Duration;

use sluice_tests::tools::{have_tool, runs};
use sluice_tests::{bin_dir, repo_root, Cluster};

#[test]
fn installed_units_pass_systemd_analyze_verify() {
    if !have_tool(
        runs("systemd-analyze", &["--version"]),
        "systemd-analyze is not installed (Debian package systemd; scripts/test.sh installs it)",
    ) {
        return;
    }
    let root = tempfile::tempdir().expect("dir");
    let install = Command::new(repo_root().join("scripts/systemd/install.sh"))
        .args(["--root", root.path().to_str().expect("path"), "--prefix", "/usr/local"])
        .env("SLUICE_BIN_DIR", bin_dir())
        .output()
        .expect("run install.sh");
    assert!(install.status.success(), "{install:?}");
    // The staged root needs systemd's own units (the targets ours are ordered against).
    std::fs::create_dir_all(root.path().join("usr/lib/systemd")).expect("mkdir");
    let copy = Command::new("cp")
        .args(["-r", "/usr/lib/systemd/system"])
        .arg(root.path().join("usr/lib/systemd"))
        .status()
        .expect("cp");
    assert!(copy.success(), "copying systemd's units");
    for unit in ["sluice-jobmanager.service", "sluice-taskmanager.service"] {
        let text = std::fs::read_to_string(root.path().join("etc/systemd/system").join(unit)).expect("unit");
        assert!(
            text.contains("Type=notify") && text.contains("Restart=on-failure"),
            "{text}"
        );
        assert!(
            text.contains("ExecStart=/usr/local/bin/") && text.contains("--config-dir /etc/sluice"),
            "{text}"
        );
        let verify = Command::new("systemd-analyze")
            .arg("verify")
            .arg(format!("--root={}", root.path().display()))
            .arg(unit)
            .output()
            .expect("systemd-analyze verify");
        let stderr = String::from_utf8_lossy(&verify.stderr);
        assert!(verify.status.success() && stderr.trim().is_empty(), "{unit}: {stderr}");
        println!("systemd-analyze verify {unit}: ok");
    }
    assert!(root.path().join("etc/sluice/config.yaml").exists());
    assert!(root.path().join("usr/local/bin/jobmanager").exists());
}

fn notification(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).expect("a notification within the timeout");
    String::from_utf8_lossy(&buf[..n]).to_string()
}

#[test]
fn daemons_notify_systemd_when_ready_and_when_stopping() {
    let dir = tempfile::tempdir().expect("dir");
    let jm_socket_path = dir.path().join("jm.notify");
    let tm_socket_path = dir.path().join("tm.notify");
    let jm_socket = UnixDatagram::bind(&jm_socket_path).expect("bind");
    let tm_socket = UnixDatagram::bind(&tm_socket_path).expect("bind");
    for s in [&jm_socket, &tm_socket] {
        s.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    }
    let mut cluster = Cluster::new("");
    let jm_env = jm_socket_path.to_str().expect("path");
    let (_jm, _) = cluster.start_with_env("jobmanager", &[], &[("NOTIFY_SOCKET", jm_env)]);
    let ready = notification(&jm_socket);
    assert!(ready.contains("READY=1"), "{ready}");
    // Ready means serving: REST answers at once.
    assert!(
        cluster.overview("taskmanagers").is_some(),
        "REST serves once READY=1 is sent"
    );

    let tm_env = tm_socket_path.to_str().expect("path");
    let (tm, _) = cluster.start_with_env("taskmanager", &[], &[("NOTIFY_SOCKET", tm_env)]);
    let ready = notification(&tm_socket);
    assert!(ready.contains("READY=1") && ready.contains("registered"), "{ready}");
    assert_eq!(
        cluster.overview("taskmanagers"),
        Some(1),
        "registered once READY=1 is sent"
    );
    tm.signal(libc::SIGTERM);
    let stopping = notification(&tm_socket);
    assert!(stopping.contains("STOPPING=1"), "{stopping}");
    println!("jobmanager and taskmanager sent READY=1; the taskmanager sent STOPPING=1 on SIGTERM");
}
