//! The jobmanager's view of its taskmanagers (Flink's ResourceManager): who is registered,
//! their slots and memory pools, and liveness through the heartbeat stream.

mod gateway;
mod heartbeat;
mod registry;

#[cfg(test)]
pub(crate) use gateway::RecordingGateway;
pub(crate) use gateway::{Gateway, GrpcGateway};
pub(crate) use heartbeat::monitor_heartbeats;
#[cfg(test)]
pub(crate) use registry::test_record;
pub(crate) use registry::{now_ms, LossCause, Registry, TaskManagerRecord};
