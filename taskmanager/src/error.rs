//! A task's failure: the message and its class (`sluice_common::failure::FailureClass`), which
//! decides whether the jobmanager restarts the job. It is the classed error operators and
//! connectors fail with (`sluice_common::failure::ClassedError`): code that knows better says
//! so (`TaskError::user`, `TaskError::config`); any other error (`From<String>`) is transient
//! and retried, as Flink retries what it does not recognise.

pub(crate) use sluice_common::failure::ClassedError as TaskError;
