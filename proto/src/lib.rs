//! Wire types only: the generated gRPC control-plane messages and services shared by the
//! jobmanager and the taskmanagers (DESIGN §4). No logic lives here.

#![allow(clippy::all, clippy::pedantic)]

/// `sluice.control.v1`: registration, heartbeats and taskmanager gateway.
pub mod control {
    tonic::include_proto!("sluice.control.v1");
}

/// `sluice.checkpoint.v1`: the stored form of checkpoints and savepoints.
pub mod checkpoint {
    tonic::include_proto!("sluice.checkpoint.v1");
}
