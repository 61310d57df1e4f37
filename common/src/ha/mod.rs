//! High availability in the object store (`high-availability.type: object-store`), without
//! ZooKeeper or Kubernetes: a leader lease taken with create-only writes, and the fencing token
//! it carries (`lease`); where the HA services keep their files (`settings`). The jobmanager
//! contends for the lease and keeps its submitted jobs beside it; taskmanagers read it to find
//! the leader and reject requests carrying an older token.

mod lease;
mod settings;

pub use lease::{Leadership, LeaseRecord};
pub use settings::HaSettings;

/// The gRPC metadata key a jobmanager's requests to taskmanagers carry its fencing token in.
pub const FENCING_TOKEN_HEADER: &str = "sluice-fencing-token";
