//! Talking to a PostgreSQL server that may go away: which errors are worth another try (the
//! connection broke, the server shuts down or is starting, too many connections) and which are
//! the job's or the setup's (a constraint, a type, a missing privilege), connecting with the
//! connection task spawned, and the back-off between tries (`sink.max-retries`).

use std::time::Duration;

use sluice_common::failure::{ClassedError, FailureClass};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

use super::options::PgOptions;

/// Whether `e` may pass on another connection: no server answer at all (I/O, closed), or
/// SQLSTATE class 08 (connection exception), 57P01–57P03 (shutdown, cannot connect now),
/// 53300 (too many connections), 40001/40P01 (serialization failure, deadlock).
pub(crate) fn retryable(e: &tokio_postgres::Error) -> bool {
    match e.code() {
        None => true,
        Some(code) => {
            let c = code.code();
            c.starts_with("08")
                || c.starts_with("57P")
                || *code == SqlState::TOO_MANY_CONNECTIONS
                || *code == SqlState::T_R_SERIALIZATION_FAILURE
                || *code == SqlState::T_R_DEADLOCK_DETECTED
        }
    }
}

/// A failure of `what` on the server, classed: transient when another try may pass, config
/// for privileges, missing objects and settings, user for the data (constraints, values).
pub(crate) fn sql_error(options: &PgOptions, what: &str, e: &tokio_postgres::Error) -> ClassedError {
    let class = if retryable(e) {
        FailureClass::Transient
    } else {
        match e.code().map(|c| c.code().to_string()) {
            Some(c) if c.starts_with("42") || c.starts_with("28") || c.starts_with("3D") || c.starts_with("55") => {
                FailureClass::Config
            }
            _ => FailureClass::User,
        }
    };
    let detail = match e.as_db_error() {
        Some(db) => format!(
            "{} ({}){}",
            db.message(),
            db.code().code(),
            db.detail().map(|d| format!(": {d}")).unwrap_or_default()
        ),
        None => e.to_string(),
    };
    ClassedError::new(
        class,
        format!(
            "PostgreSQL {} table '{}': {what}: {detail}",
            options.server(),
            options.table_name()
        ),
    )
}

/// Why an operation on the server failed: the server said so (perhaps worth another try),
/// or something else did (a check, the pool).
pub(crate) enum Failure {
    Pg(tokio_postgres::Error),
    Other(ClassedError),
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        Failure::Pg(e)
    }
}

impl From<ClassedError> for Failure {
    fn from(e: ClassedError) -> Self {
        Failure::Other(e)
    }
}

/// Opens a connection; its I/O runs on the returned task, which ends once the client is
/// dropped and the connection closed.
pub(crate) async fn connect(
    options: &PgOptions,
) -> Result<(Client, tokio::task::JoinHandle<()>), tokio_postgres::Error> {
    let (client, connection) = options.client_config().connect(NoTls).await?;
    let io = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("A PostgreSQL connection ended: {e}");
        }
    });
    Ok((client, io))
}

/// The wait before retry `attempt` (1-based): 1 s, 2 s, 4 s, … at most 10 s.
pub(crate) fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.saturating_sub(1).min(4)).min(Duration::from_secs(10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_up_to_ten_seconds() {
        let waits: Vec<u64> = (1..=6).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(waits, vec![1, 2, 4, 8, 10, 10]);
    }
}
