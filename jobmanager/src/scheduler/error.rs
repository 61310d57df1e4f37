//! What a request to the scheduler can fail with, by kind, so REST answers with the status code
//! the kind calls for (404 for an unknown job, 409 for a job in the wrong state, 400 for a bad
//! request) instead of guessing from the message.

use std::fmt;

use axum::http::StatusCode;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SchedulerError {
    /// No job with this id.
    JobNotFound(String),
    /// The job exists but its state does not allow the request.
    WrongState(String),
    /// The request itself is wrong (a body, a mode, a setting it needs).
    BadRequest(String),
}

impl SchedulerError {
    pub(crate) fn not_found(id: &str) -> Self {
        SchedulerError::JobNotFound(format!("Job {id} not found"))
    }

    pub(crate) fn status(&self) -> StatusCode {
        match self {
            SchedulerError::JobNotFound(_) => StatusCode::NOT_FOUND,
            SchedulerError::WrongState(_) => StatusCode::CONFLICT,
            SchedulerError::BadRequest(_) => StatusCode::BAD_REQUEST,
        }
    }
}

impl fmt::Display for SchedulerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SchedulerError::JobNotFound(m) | SchedulerError::WrongState(m) | SchedulerError::BadRequest(m) => {
                f.write_str(m)
            }
        }
    }
}

impl std::error::Error for SchedulerError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_choose_status_codes() {
        assert_eq!(SchedulerError::not_found("x").status(), StatusCode::NOT_FOUND);
        assert_eq!(SchedulerError::not_found("x").to_string(), "Job x not found");
        assert_eq!(SchedulerError::WrongState("s".into()).status(), StatusCode::CONFLICT);
        assert_eq!(SchedulerError::BadRequest("b".into()).status(), StatusCode::BAD_REQUEST);
    }
}
