//! Failpoints for tests: a named point in a connector where the process crashes when the
//! environment variable `SLUICE_FAILPOINT` (a comma-separated list) names it. Never set in
//! production use.

/// Whether `SLUICE_FAILPOINT` names `name`.
pub(crate) fn failpoint(name: &str) -> bool {
    std::env::var("SLUICE_FAILPOINT").is_ok_and(|v| v.split(',').any(|f| f.trim() == name))
}
