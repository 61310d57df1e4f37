//! Why a task failed, as a class the restart decision reads (Flink's `FailureResult`:
//! `canRestart` / `canNotRestart`): a bad record or job (user) and a wrong setting (config)
//! fail the same way on every attempt, so the job fails at once with its cause; a lost peer,
//! an unreachable store or a full disk (transient) and Sluice's own faults (internal) are
//! retried under the restart strategy. The class travels with the task's failure report.

use sluice_proto::control::FailureClass as WireClass;

/// A task's failure because the task it sends to went away: the consequence of that task's
/// own failure (or of its taskmanager's loss), never a root cause.
pub const CONSUMER_GONE: &str = "the consuming task has ended";
/// A task's failure because the task it receives from went away.
pub const PRODUCER_GONE: &str = "the sending taskmanager closed the data connection before the end of the partition";

/// Whether a task's failure message only reports another task's end: the jobmanager reports
/// the first failure that is not one of these as the job's cause.
pub fn is_consequence(message: &str) -> bool {
    message.contains(CONSUMER_GONE) || message.contains(PRODUCER_GONE)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// The job or its data: a bad record, an expression that cannot run.
    User,
    /// A setting: a sink path that cannot be written, a wrong option.
    Config,
    /// The environment, which may recover: a lost peer, an I/O or network error.
    Transient,
    /// A fault of Sluice itself.
    Internal,
}

impl FailureClass {
    /// Whether an attempt may succeed where this one failed.
    pub fn can_restart(self) -> bool {
        matches!(self, FailureClass::Transient | FailureClass::Internal)
    }

    pub fn name(self) -> &'static str {
        match self {
            FailureClass::User => "user",
            FailureClass::Config => "config",
            FailureClass::Transient => "transient",
            FailureClass::Internal => "internal",
        }
    }

    pub fn to_wire(self) -> i32 {
        (match self {
            FailureClass::User => WireClass::User,
            FailureClass::Config => WireClass::Config,
            FailureClass::Transient => WireClass::Transient,
            FailureClass::Internal => WireClass::Internal,
        }) as i32
    }

    /// An unknown or unset class counts as transient (retried), as Flink retries what it
    /// does not recognise.
    pub fn from_wire(v: i32) -> FailureClass {
        match WireClass::try_from(v) {
            Ok(WireClass::User) => FailureClass::User,
            Ok(WireClass::Config) => FailureClass::Config,
            Ok(WireClass::Internal) => FailureClass::Internal,
            _ => FailureClass::Transient,
        }
    }
}

/// An error with its class: what a task, an operator or a connector fails with. Code that
/// knows better says so (`ClassedError::user`, `ClassedError::config`); any other error
/// (`From<String>`) is transient and retried, as Flink retries what it does not recognise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassedError {
    pub class: FailureClass,
    pub message: String,
}

impl ClassedError {
    pub fn new(class: FailureClass, message: impl Into<String>) -> Self {
        ClassedError {
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

    /// A fault of Sluice itself.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(FailureClass::Internal, message)
    }

    /// The same failure with `context: ` before its message.
    pub fn context(self, context: impl std::fmt::Display) -> Self {
        ClassedError {
            class: self.class,
            message: format!("{context}: {}", self.message),
        }
    }
}

impl From<String> for ClassedError {
    fn from(message: String) -> Self {
        Self::new(FailureClass::Transient, message)
    }
}

impl From<&str> for ClassedError {
    fn from(message: &str) -> Self {
        Self::new(FailureClass::Transient, message)
    }
}

impl std::fmt::Display for ClassedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ClassedError {}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_can_succeed_again_restarts() {
        for c in [
            FailureClass::User,
            FailureClass::Config,
            FailureClass::Transient,
            FailureClass::Internal,
        ] {
            assert_eq!(FailureClass::from_wire(c.to_wire()), c);
        }
        assert!(!FailureClass::User.can_restart());
        assert!(!FailureClass::Config.can_restart());
        assert!(FailureClass::Transient.can_restart());
        assert_eq!(FailureClass::from_wire(0), FailureClass::Transient);
    }
}
