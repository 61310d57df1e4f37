//! Errors in a job file: the file, the line and column, and what was expected.

use std::fmt;

use crate::yaml_tree::Pos;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobError {
    pub file: Option<String>,
    pub pos: Option<Pos>,
    pub message: String,
}

impl JobError {
    pub fn at(pos: Pos, message: impl Into<String>) -> JobError {
        JobError {
            file: None,
            pos: Some(pos),
            message: message.into(),
        }
    }

    pub fn general(message: impl Into<String>) -> JobError {
        JobError {
            file: None,
            pos: None,
            message: message.into(),
        }
    }

    /// Names the file the job came from.
    pub fn in_file(mut self, file: &str) -> JobError {
        self.file = Some(file.to_string());
        self
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.as_deref().unwrap_or("job");
        match self.pos {
            Some(p) => write!(f, "{file}:{}:{}: {}", p.line, p.column, self.message),
            None => write!(f, "{file}: {}", self.message),
        }
    }
}

impl std::error::Error for JobError {}

pub type JobResult<T> = Result<T, JobError>;

/// A job-file error met while running (a connector reading options on a taskmanager that the
/// jobmanager checked at submission) fails the job as a setting's failure.
impl From<JobError> for crate::failure::ClassedError {
    fn from(e: JobError) -> Self {
        crate::failure::ClassedError::config(e.to_string())
    }
}
