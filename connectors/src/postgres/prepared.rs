//! The exactly-once sink's prepared transactions: their names (`<prefix>:<attempt>:<subtask>:
//! <checkpoint>`, unique per job attempt, subtask and checkpoint), committing one (twice is
//! harmless: a name that no longer exists was committed), and rolling back what earlier
//! attempts left prepared that no restored checkpoint holds.

use std::collections::HashSet;

use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

/// The name of the transaction `subtask` of job attempt `attempt` prepares at `checkpoint`.
pub(crate) fn gid(prefix: &str, attempt: u64, subtask: u32, checkpoint: u64) -> String {
    format!("{prefix}:{attempt}:{subtask}:{checkpoint}")
}

/// The attempt a name of this sink's carries; `None` for names of others.
pub(crate) fn attempt_of(prefix: &str, gid: &str) -> Option<u64> {
    let rest = gid.strip_prefix(prefix)?.strip_prefix(':')?;
    let mut parts = rest.split(':');
    let attempt = parts.next()?.parse().ok()?;
    (parts.count() == 2).then_some(attempt)
}

/// A string literal for SQL (`PREPARE TRANSACTION` takes no parameters).
pub(crate) fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `COMMIT PREPARED`; a transaction that no longer exists was committed before (commits are
/// retried after a crash).
pub(crate) async fn commit(client: &Client, gid: &str) -> Result<(), tokio_postgres::Error> {
    match client.batch_execute(&format!("COMMIT PREPARED {}", literal(gid))).await {
        Err(e) if e.code() == Some(&SqlState::UNDEFINED_OBJECT) => {
            tracing::debug!("Prepared transaction {gid} was committed before.");
            Ok(())
        }
        other => other,
    }
}

/// Rolls back this sink's prepared transactions of attempts other than `attempt` that `keep`
/// (the restored checkpoint's) does not name; returns their names.
pub(crate) async fn roll_back_lingering(
    client: &Client,
    prefix: &str,
    attempt: u64,
    keep: &HashSet<String>,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT gid FROM pg_prepared_xacts WHERE database = current_database()",
            &[],
        )
        .await?;
    let mut rolled_back = Vec::new();
    for row in rows {
        let gid: String = row.get(0);
        if attempt_of(prefix, &gid).is_some_and(|a| a != attempt) && !keep.contains(&gid) {
            match client
                .batch_execute(&format!("ROLLBACK PREPARED {}", literal(&gid)))
                .await
            {
                Err(e) if e.code() == Some(&SqlState::UNDEFINED_OBJECT) => {}
                Err(e) => return Err(e),
                Ok(()) => rolled_back.push(gid),
            }
        }
    }
    Ok(rolled_back)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_their_attempt_and_others_are_not_ours() {
        let g = gid("sluice-t-out", 7, 2, 15);
        assert_eq!(g, "sluice-t-out:7:2:15");
        assert_eq!(attempt_of("sluice-t-out", &g), Some(7));
        assert_eq!(attempt_of("sluice-t", &g), None);
        assert_eq!(attempt_of("sluice-t-out", "sluice-t-out:x:2:15"), None);
        assert_eq!(literal("a'b"), "'a''b'");
    }
}
