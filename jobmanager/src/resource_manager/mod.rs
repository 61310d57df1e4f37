//! The jobmanager's view of its taskmanagers (Flink's ResourceManager): who is registered,
//! their slots and memory pools, and liveness through the heartbeat stream.

mod heartbeat;
mod registry;

pub use heartbeat::monitor_heartbeats;
pub use registry::{now_ms, LossCause, Registry, TaskManagerRecord};
