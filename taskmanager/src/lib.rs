//! The Sluice taskmanager: slots and the jobmanager link (`executor`), memory pools
//! (`memory`), and the daemon that wires them (`daemon`).

pub mod daemon;
pub mod error;
pub mod executor;
pub mod memory;
pub mod metrics;
pub mod network;
pub mod operators;
pub mod runtime;
pub mod state;
