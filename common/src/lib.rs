//! What both daemons must agree on: configuration (`config`), the memory model (`memory`),
//! process observability (`observability`) and the wire types re-exported from `sluice-proto`.

pub mod config;
pub mod failure;
pub mod ha;
pub mod job;
pub mod key_groups;
pub mod memory;
pub mod net;
pub mod observability;
pub mod signals;
pub mod state;
pub mod storage;
pub mod suggest;
pub mod systemd;
pub mod wall_ms;
pub mod yaml_tree;

pub use sluice_proto as proto;

/// Sluice's version, reported where Flink reports `flink-version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
