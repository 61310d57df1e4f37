//! The CLI's REST client: the jobmanager's address as a user writes it (`host:port` or
//! `http://host:port/`), requests with Flink's error body decoded, and failures that say what to
//! check (a refused connection, a port that speaks something other than HTTP, an answer that is
//! not the jobmanager's).

use std::time::Duration;

use serde_json::Value;

pub(crate) struct Client {
    /// `http://host:port`, no trailing slash.
    pub(crate) base: String,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .build()
        .into()
}

/// `host:port`, `http://host:port` or `http://host:port/` → `http://host:port`.
pub(crate) fn base_url(address: &str) -> Result<String, String> {
    let trimmed = address.trim().trim_end_matches('/');
    let (scheme, rest) = match trimmed.split_once("://") {
        Some((s, r)) => (s.to_ascii_lowercase(), r),
        None => ("http".to_string(), trimmed),
    };
    if scheme != "http" {
        return Err(format!(
            "jobmanager address '{address}': the scheme '{scheme}://' is not supported (the REST endpoint speaks http)"
        ));
    }
    if rest.is_empty() || rest.contains('/') {
        return Err(format!(
            "jobmanager address '{address}' is not of the form host:port (e.g. localhost:8081)"
        ));
    }
    Ok(format!("http://{rest}"))
}

impl Client {
    pub(crate) fn new(address: &str) -> Result<Client, String> {
        Ok(Client {
            base: base_url(address)?,
        })
    }

    /// What a transport failure means for the user.
    fn unreachable(&self, e: ureq::Error) -> String {
        let base = &self.base;
        match e {
            ureq::Error::ConnectionFailed | ureq::Error::Io(_) => format!(
                "cannot reach the jobmanager at {base} ({e}): is it running, and is this its rest.address and rest.port (default 8081)?"
            ),
            ureq::Error::HostNotFound => {
                format!("cannot reach the jobmanager at {base}: the host name does not resolve")
            }
            ureq::Error::Protocol(_) => format!(
                "{base} did not answer HTTP ({e}): is this the jobmanager's rest.port (default 8081), not jobmanager.rpc.port (6123) or another service's port?"
            ),
            ureq::Error::Timeout(_) => format!("the jobmanager at {base} did not answer within 30 s"),
            other => format!("cannot reach the jobmanager at {base}: {other}"),
        }
    }

    /// Decodes an answer: the JSON body on success, Flink's `{"errors": [...]}` otherwise.
    fn decode(&self, mut response: ureq::http::Response<ureq::Body>, url: &str) -> Result<Value, String> {
        let status = response.status();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| format!("{url}: {e}"))?;
        let Ok(value) = serde_json::from_str::<Value>(&text) else {
            return Err(format!(
                "{url} answered HTTP {status} with a body that is not JSON: is {} a Sluice jobmanager's REST endpoint?",
                self.base
            ));
        };
        if status.is_success() {
            return Ok(value);
        }
        let errors = value["errors"]
            .as_array()
            .map(|a| a.iter().filter_map(|e| e.as_str()).collect::<Vec<_>>().join("\n"));
        Err(errors.unwrap_or_else(|| format!("{url}: HTTP {status}")))
    }

    pub(crate) fn get(&self, path: &str) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let r = agent().get(&url).call().map_err(|e| self.unreachable(e))?;
        self.decode(r, &url)
    }

    pub(crate) fn post(&self, path: &str, body: &str) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let r = agent().post(&url).send(body).map_err(|e| self.unreachable(e))?;
        self.decode(r, &url)
    }

    pub(crate) fn patch(&self, path: &str) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let r = agent().patch(&url).send_empty().map_err(|e| self.unreachable(e))?;
        self.decode(r, &url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_as_users_write_them() {
        assert_eq!(base_url("localhost:8081").unwrap(), "http://localhost:8081");
        assert_eq!(base_url("http://localhost:8081").unwrap(), "http://localhost:8081");
        assert_eq!(base_url("HTTP://h:1/").unwrap(), "http://h:1");
        assert!(base_url("https://h:1").unwrap_err().contains("'https://'"));
        assert!(base_url("h:1/api").unwrap_err().contains("host:port"));
    }

    #[test]
    fn a_port_that_is_not_http_says_what_to_check() {
        // A listener that answers with something other than HTTP (as the gRPC port would).
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            use std::io::{Read, Write};
            if let Ok((mut s, _)) = listener.accept() {
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf);
                let _ = s.write_all(b"\x00\x00\x12\x04\x00\x00\x00\x00\x00garbage that is not http\r\n\r\n");
            }
        });
        let e = Client::new(&format!("127.0.0.1:{port}"))
            .unwrap()
            .get("/jobs/overview")
            .unwrap_err();
        assert!(e.contains("rest.port"), "{e}");
        let _ = server.join();
    }

    #[test]
    fn a_refused_connection_says_what_to_check() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let e = Client::new(&format!("127.0.0.1:{port}"))
            .unwrap()
            .get("/overview")
            .unwrap_err();
        assert!(e.contains("is it running") && e.contains("rest.port"), "{e}");
    }
}
