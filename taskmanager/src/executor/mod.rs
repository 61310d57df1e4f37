//! The taskmanager's executor side: its slot table, the gRPC gateway the jobmanager calls
//! (`service`), deploying and running subtasks (`deploy`), and staying registered with the
//! jobmanager (`registration`).

pub mod deploy;
mod registration;
mod service;
mod slot_table;

pub use registration::{maintain_registration, RegistrationSettings};
pub use service::TaskManagerGateway;
pub use slot_table::SlotTable;

#[cfg(test)]
mod deploy_tests;
