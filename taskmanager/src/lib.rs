//! The Sluice taskmanager: slots and the jobmanager link (`executor`), memory pools
//! (`memory`), and the daemon that wires them (`daemon`). Only what the binary needs is public;
//! everything else is crate-internal, and `unreachable_pub` keeps it so (dead code shows).
#![warn(unreachable_pub)]

pub mod daemon;
pub(crate) mod error;
pub(crate) mod executor;
pub(crate) mod memory;
pub(crate) mod metrics;
pub(crate) mod network;
pub(crate) mod operators;
pub(crate) mod runtime;
pub(crate) mod state;

pub use memory::MemoryPools;
