//! A task's failure: the message and its class (`sluice_common::failure::FailureClass`), which
//! decides whether the jobmanager restarts the job. Code that knows better says so
//! (`TaskError::user`, `TaskError::config`); any other error (`From<String>`) is transient and
//! retried, as Flink retries what it does not recognise.

use std::fmt;

use sluice_common::failure::FailureClass;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskError {
    pub class: FailureClass,
    pub message: String,
}

impl TaskError {
    pub fn new(class: FailureClass, message: impl Into<String>) -> Self {
        TaskError {
            class,
            message: message.into(),
        }
    }

    /// The job or its data is wrong: no attempt can succeed.
    pub fn user(message: impl Into<String>) -> Self {
        Self::new(FailureClass::User, message)
    }

    /// A setting is wrong: no attempt can succeed until it is changed.
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(FailureClass::Config, message)
    }

    /// The same failure with `context: ` before its message.
    pub fn context(self, context: impl fmt::Display) -> Self {
        TaskError {
            class: self.class,
            message: format!("{context}: {}", self.message),
        }
    }
}

impl From<String> for TaskError {
    fn from(message: String) -> Self {
        Self::new(FailureClass::Transient, message)
    }
}

impl From<&str> for TaskError {
    fn from(message: &str) -> Self {
        Self::new(FailureClass::Transient, message)
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The class of an I/O error on a path the job's configuration names (a sink directory): a
/// missing permission or a path that cannot be a directory is the setting's fault; anything
/// else (a full disk, a flaky mount) may pass.
pub fn io_class(e: &std::io::Error) -> FailureClass {
    use std::io::ErrorKind::*;
    match e.kind() {
        PermissionDenied | NotADirectory | IsADirectory | ReadOnlyFilesystem | InvalidFilename => FailureClass::Config,
        _ => FailureClass::Transient,
    }
}
