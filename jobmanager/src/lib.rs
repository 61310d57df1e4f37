//! The Sluice jobmanager: the taskmanager registry and liveness (`resource_manager`), the
//! control-plane gRPC service (`rpc`), the Flink-compatible REST API (`rest`) and the daemon
//! that wires them (`daemon`).

pub mod checkpoint;
pub mod cli;
pub mod daemon;
pub mod resource_manager;
pub mod rest;
mod rpc;
pub mod scheduler;
