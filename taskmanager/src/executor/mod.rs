//! The taskmanager's executor side: its slot table, the gRPC gateway the jobmanager calls
//! (`service`), and staying registered with the jobmanager (`registration`).

mod registration;
mod service;
mod slot_table;

pub use registration::{maintain_registration, RegistrationSettings};
pub use service::TaskManagerGateway;
pub use slot_table::SlotTable;
