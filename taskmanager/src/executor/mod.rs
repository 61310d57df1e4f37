//! The taskmanager's executor side: its slot table, the gRPC gateway the jobmanager calls
//! (`service`), deploying and running subtasks (`deploy`), and staying registered with the
//! jobmanager (`registration`).

mod checkpoint_acker;
pub mod deploy;
mod job_runs;
mod registration;
mod reporter;
mod service;
mod slot_table;

pub use job_runs::{JobRuns, TaskEntry};
pub use registration::{maintain_registration, RegistrationSettings, Reported};
pub use reporter::StateReporter;
pub use service::{StateEnv, TaskManagerGateway};
pub use slot_table::SlotTable;

#[cfg(test)]
mod deploy_tests;
