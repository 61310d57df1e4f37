//! The Sluice jobmanager: the taskmanager registry and liveness (`resource_manager`), the
//! control-plane gRPC service (`rpc`), the Flink-compatible REST API (`rest`), the `sluice`
//! command-line client (`cli`) and the daemon that wires them (`daemon`). Only what the
//! binaries need is public; everything else is crate-internal, and `unreachable_pub` keeps it
//! so (dead code shows).
#![warn(unreachable_pub)]

mod autoscaler;
pub(crate) mod checkpoint;
pub mod cli;
pub mod daemon;
pub(crate) mod ha;
mod permits;
pub(crate) mod resource_manager;
pub(crate) mod rest;
mod rpc;
pub(crate) mod scheduler;
