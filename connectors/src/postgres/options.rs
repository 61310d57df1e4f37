//! The PostgreSQL sink's options, with Flink's JDBC connector names and defaults: `url`
//! (`jdbc:postgresql://host:port/db` as a Flink user writes it, or `postgres://…`), `table-name`
//! (optionally `schema.table`), `username`, `password`, `sink.buffer-flush.max-rows` (100),
//! `sink.buffer-flush.interval` (1 s), `sink.max-retries` (3), `connection.pool.max-size`
//! (8: the connections all subtasks of the sink hold together), and beyond Flink
//! `sink.delivery-guarantee` (`at-least-once` (default) or `exactly-once`: prepared
//! transactions committed with the checkpoint), `primary-key` (`;`-separated columns: upsert
//! mode) and `sink.transaction-id-prefix` (the prepared transactions' names). The password is
//! never part of a message or a log line.

use std::time::Duration;

use sluice_common::job::spec::SinkSpec;
use sluice_common::job::{JobError, JobResult};

use crate::options::{choice, OptionReader};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `INSERT … ON CONFLICT (pk) DO UPDATE`: idempotent, replays leave the table exact.
    Upsert,
    /// COPY in autocommit at every flush and barrier.
    AtLeastOnce,
    /// COPY into one transaction per checkpoint, `PREPARE TRANSACTION` at the barrier,
    /// `COMMIT PREPARED` when the checkpoint completes.
    ExactlyOnce,
}

#[derive(Clone)]
pub(crate) struct PgOptions {
    pub host: String,
    pub port: u16,
    pub database: String,
    /// Other `?key=value` parameters of the URL the client understands (`sslmode`,
    /// `connect_timeout`, `application_name`, …).
    pub params: Vec<(String, String)>,
    pub user: Option<String>,
    pub password: Option<String>,
    /// `(schema, table)`; no schema: the connection's search path.
    pub schema: Option<String>,
    pub table: String,
    pub max_rows: usize,
    pub flush_interval: Duration,
    pub max_retries: u32,
    pub pool_max: u32,
    pub mode: Mode,
    pub primary_key: Vec<String>,
    pub txn_prefix: String,
}

impl std::fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOptions")
            .field("server", &self.server())
            .field("table", &self.table_name())
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "******"))
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// `jdbc:postgresql://host[:port]/db[?k=v&…]` or `postgres[ql]://[user[:password]@]host[:port]/db[?…]`
/// → (host, port, database, user, password, parameters).
type ParsedUrl = (
    String,
    u16,
    String,
    Option<String>,
    Option<String>,
    Vec<(String, String)>,
);

fn parse_url(url: &str) -> Result<ParsedUrl, String> {
    let rest = url
        .strip_prefix("jdbc:postgresql://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .or_else(|| url.strip_prefix("postgres://"))
        .ok_or("it must start with jdbc:postgresql://, postgresql:// or postgres://")?;
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, database) = rest.split_once('/').ok_or("it names no database (…/<database>)")?;
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (user, password) = match userinfo {
        None => (None, None),
        Some(u) => match u.split_once(':') {
            Some((u, p)) => (Some(u.to_string()), Some(p.to_string())),
            None => (Some(u.to_string()), None),
        },
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().map_err(|_| format!("port '{p}' is not a number"))?),
        None => (hostport, 5432),
    };
    if host.is_empty() {
        return Err("it names no host".into());
    }
    if database.is_empty() {
        return Err("it names no database (…/<database>)".into());
    }
    let mut params = Vec::new();
    let (mut user, mut password) = (user, password);
    for kv in query.split('&').filter(|kv| !kv.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        match k {
            "user" => user = Some(v.to_string()),
            "password" => password = Some(v.to_string()),
            _ => params.push((k.to_string(), v.to_string())),
        }
    }
    Ok((host.to_string(), port, database.to_string(), user, password, params))
}

/// A URL with any password in it replaced, for messages.
fn masked_url(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(scheme_end) = out.find("://") {
        let after = scheme_end + 3;
        if let Some(at) = out[after..].find('@').map(|i| i + after) {
            if let Some(colon) = out[after..at].find(':').map(|i| i + after) {
                out.replace_range(colon + 1..at, "******");
            }
        }
    }
    if let Some(q) = out.find("password=") {
        let start = q + "password=".len();
        let end = out[start..].find('&').map_or(out.len(), |i| i + start);
        out.replace_range(start..end, "******");
    }
    out
}

impl PgOptions {
    pub(crate) fn of(spec: &SinkSpec) -> JobResult<PgOptions> {
        let what = format!("{} sink '{}'", spec.connector, spec.id);
        let mut r = OptionReader::new(&spec.options, spec.pos, what.clone());
        let Some((url, url_pos)) = r.get("url").cloned() else {
            return Err(JobError::at(r.owner(), format!("{what} needs the option 'url'")));
        };
        let (host, port, database, url_user, url_password, params) = parse_url(url.trim()).map_err(|e| {
            JobError::at(
                url_pos,
                format!("option 'url' of {what} ('{}'): {e}", masked_url(url.trim())),
            )
        })?;
        let Some((table, table_pos)) = r.get("table-name").cloned() else {
            return Err(JobError::at(r.owner(), format!("{what} needs the option 'table-name'")));
        };
        let (schema, table) = match table.trim().split_once('.') {
            Some((s, t)) => (Some(s.to_string()), t.to_string()),
            None => (None, table.trim().to_string()),
        };
        if table.is_empty() {
            return Err(JobError::at(
                table_pos,
                format!("option 'table-name' of {what} is empty"),
            ));
        }
        let user = r.get("username").map(|(u, _)| u.trim().to_string()).or(url_user);
        let password = r.get("password").map(|(p, _)| p.clone()).or(url_password);
        let max_rows = r
            .parse::<usize>("sink.buffer-flush.max-rows", "a whole number")?
            .unwrap_or(100);
        let flush_interval = r
            .duration("sink.buffer-flush.interval")?
            .unwrap_or(Duration::from_secs(1));
        let max_retries = r.parse::<u32>("sink.max-retries", "a whole number")?.unwrap_or(3);
        let pool_max = r
            .parse::<u32>("connection.pool.max-size", "a whole number")?
            .unwrap_or(8);
        if pool_max == 0 {
            return Err(JobError::at(
                r.get("connection.pool.max-size").map_or(r.owner(), |(_, p)| *p),
                format!("option 'connection.pool.max-size' of {what} must be at least 1"),
            ));
        }
        let exactly_once = choice(
            &mut r,
            "sink.delivery-guarantee",
            false,
            &[("at-least-once", false), ("exactly-once", true)],
            &what,
        )?;
        let primary_key: Vec<String> = r
            .get("primary-key")
            .map(|(k, _)| {
                k.split(';')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let mode = match (primary_key.is_empty(), exactly_once) {
            (false, _) => Mode::Upsert,
            (true, true) => Mode::ExactlyOnce,
            (true, false) => Mode::AtLeastOnce,
        };
        let txn_prefix = r
            .get("sink.transaction-id-prefix")
            .map(|(p, _)| p.trim().to_string())
            .unwrap_or_else(|| format!("sluice-{}-{}", table, spec.uid));
        r.done()?;
        Ok(PgOptions {
            host,
            port,
            database,
            params,
            user,
            password,
            schema,
            table,
            max_rows: max_rows.max(1),
            flush_interval,
            max_retries,
            pool_max,
            mode,
            primary_key,
            txn_prefix,
        })
    }

    /// `host:port/database`, for messages.
    pub(crate) fn server(&self) -> String {
        format!("{}:{}/{}", self.host, self.port, self.database)
    }

    /// The table as written in SQL (quoted identifiers).
    pub(crate) fn qualified_table(&self) -> String {
        match &self.schema {
            Some(s) => format!("{}.{}", quote_ident(s), quote_ident(&self.table)),
            None => quote_ident(&self.table),
        }
    }

    /// The table as the user named it, for messages.
    pub(crate) fn table_name(&self) -> String {
        match &self.schema {
            Some(s) => format!("{s}.{}", self.table),
            None => self.table.clone(),
        }
    }

    pub(crate) fn client_config(&self) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host(&self.host).port(self.port).dbname(&self.database);
        c.user(self.user.as_deref().unwrap_or("postgres"));
        if let Some(p) = &self.password {
            c.password(p);
        }
        c.application_name(format!("sluice:{}", self.txn_prefix));
        c.connect_timeout(Duration::from_secs(10));
        for (k, v) in &self.params {
            match k.as_str() {
                "application_name" | "ApplicationName" => {
                    c.application_name(v);
                }
                "connect_timeout" | "connectTimeout" => {
                    if let Ok(s) = v.parse::<u64>() {
                        c.connect_timeout(Duration::from_secs(s));
                    }
                }
                "options" => {
                    c.options(v);
                }
                _ => {}
            }
        }
        c
    }
}

/// `"name"` with inner quotes doubled.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_as_flink_and_libpq_write_them() {
        let (h, p, d, u, pw, params) =
            parse_url("jdbc:postgresql://db.local:5433/shop?user=a&password=b&sslmode=disable").unwrap();
        assert_eq!((h.as_str(), p, d.as_str()), ("db.local", 5433, "shop"));
        assert_eq!((u.as_deref(), pw.as_deref()), (Some("a"), Some("b")));
        assert_eq!(params, vec![("sslmode".to_string(), "disable".to_string())]);
        let (h, p, _, u, pw, _) = parse_url("postgres://me:secret@127.0.0.1/db").unwrap();
        assert_eq!(
            (h.as_str(), p, u.as_deref(), pw.as_deref()),
            ("127.0.0.1", 5432, Some("me"), Some("secret"))
        );
        assert!(parse_url("mysql://x/y").unwrap_err().contains("jdbc:postgresql://"));
        assert!(parse_url("jdbc:postgresql://host:x/db")
            .unwrap_err()
            .contains("port 'x'"));
        assert!(parse_url("jdbc:postgresql://host:5432")
            .unwrap_err()
            .contains("database"));
    }

    #[test]
    fn passwords_are_masked_in_urls() {
        assert_eq!(masked_url("postgres://me:secret@h/db"), "postgres://me:******@h/db");
        assert_eq!(
            masked_url("jdbc:postgresql://h/db?user=a&password=b&x=1"),
            "jdbc:postgresql://h/db?user=a&password=******&x=1"
        );
    }
}
