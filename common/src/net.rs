//! Binding listeners the way Flink's port options mean it: the first free port of a range on a
//! bind host (`0` = any free port; no host = all interfaces).

use std::io;

use tokio::net::TcpListener;

use crate::config::PortRange;

/// The address to bind for an optional bind-host option (`None` → all interfaces).
pub fn bind_host(option: Option<String>) -> String {
    option.unwrap_or_else(|| "0.0.0.0".to_string())
}

/// This host's name (`gethostname`), or `localhost` when it has none.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into the buffer we own.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..end]) {
        Ok(name) if rc == 0 && !name.is_empty() => name.to_string(),
        _ => "localhost".to_string(),
    }
}

/// Binds the first port of `ports` that is free on `host`.
pub async fn bind_first_free(host: &str, ports: &PortRange) -> io::Result<TcpListener> {
    let mut last_error = None;
    for port in ports.ports() {
        match TcpListener::bind((host, port)).await {
            Ok(listener) => return Ok(listener),
            Err(e) => last_error = Some(e),
        }
    }
    let tried: Vec<String> = ports
        .0
        .iter()
        .map(|(lo, hi)| if lo == hi { lo.to_string() } else { format!("{lo}-{hi}") })
        .collect();
    let cause = last_error
        .map(|e| e.to_string())
        .unwrap_or_else(|| "empty range".into());
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        format!("could not bind {host} on any port of {}: {cause}", tried.join(",")),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::options::OptionValue;

    #[tokio::test]
    async fn skips_ports_in_use() {
        let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = taken.local_addr().unwrap().port();
        let range = PortRange::parse_value(&format!("{port},0")).unwrap();
        let got = bind_first_free("127.0.0.1", &range).await.unwrap();
        assert_ne!(got.local_addr().unwrap().port(), port);
        let only = PortRange::parse_value(&port.to_string()).unwrap();
        let e = bind_first_free("127.0.0.1", &only).await.unwrap_err();
        assert!(e.to_string().contains(&port.to_string()), "{e}");
    }
}
