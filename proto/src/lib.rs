//! Wire types only: the generated gRPC control-plane messages and services shared by the
//! jobmanager and the taskmanagers (DESIGN §4), and the stored checkpoint format (DESIGN §8).
//! No logic lives here. Modules nest as the protobuf packages do, so cross-package references
//! in the generated code resolve.

#![allow(clippy::all, clippy::pedantic)]

pub mod sluice {
    pub mod control {
        pub mod v1 {
            tonic::include_proto!("sluice.control.v1");
        }
    }
    pub mod checkpoint {
        pub mod v1 {
            tonic::include_proto!("sluice.checkpoint.v1");
        }
    }
}

/// `sluice.checkpoint.v1`: the stored form of checkpoints and savepoints.
pub use sluice::checkpoint::v1 as checkpoint;
/// `sluice.control.v1`: registration, heartbeats, the taskmanager gateway, checkpoint acks.
pub use sluice::control::v1 as control;
