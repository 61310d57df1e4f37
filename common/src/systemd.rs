//! systemd's readiness protocol (`Type=notify`, `sd_notify(3)`): when the service manager set
//! `NOTIFY_SOCKET`, a daemon sends `READY=1` once it serves (the jobmanager) or is registered
//! (a taskmanager), `STATUS=…` lines as it goes, and `STOPPING=1` when it shuts down. Without
//! `NOTIFY_SOCKET` every call does nothing. A path starting with `@` is an abstract socket.

use std::os::unix::net::UnixDatagram;

/// Sends `state` (newline-separated `KEY=value` assignments) to the service manager. Failures
/// are logged, never fatal: the daemon works without systemd.
pub fn notify(state: &str) {
    let Ok(path) = std::env::var("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send(&path, state) {
        tracing::warn!("Could not notify systemd at NOTIFY_SOCKET={path}: {e}");
    }
}

fn send(path: &str, state: &str) -> std::io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    match path.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            socket.send_to_addr(state.as_bytes(), &addr)?;
        }
        None => {
            socket.send_to(state.as_bytes(), path)?;
        }
    }
    Ok(())
}

/// `READY=1` with a status line.
pub fn ready(status: &str) {
    notify(&format!("READY=1\nSTATUS={status}"));
}

/// `STOPPING=1`.
pub fn stopping() {
    notify("STOPPING=1");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        send(path.to_str().unwrap(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }
}
