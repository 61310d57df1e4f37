//! The taskmanager's executor side: its slot table, the gRPC gateway the jobmanager calls
//! (`service`), deploying and running subtasks (`deploy`), and staying registered with the
//! jobmanager (`registration`).

mod checkpoint_acker;
pub(crate) mod deploy;
mod job_runs;
mod permits;
mod registration;
mod reporter;
mod service;
mod slot_table;

pub(crate) use job_runs::{JobRuns, TaskEntry};
pub(crate) use permits::PermitClient;
pub(crate) use registration::{maintain_registration, RegistrationSettings, Reported};
pub(crate) use reporter::StateReporter;
pub(crate) use service::{StateEnv, TaskManagerGateway};
pub(crate) use slot_table::SlotTable;

#[cfg(test)]
mod deploy_tests;
