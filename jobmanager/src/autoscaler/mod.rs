//! The autoscaler (Flink's Kubernetes-operator autoscaler, built into the jobmanager so any
//! cluster has it): `job.autoscaler.enabled` and Flink's `job.autoscaler.*` keys
//! (`settings.rs`), the metric window over the heartbeats' subtask digests (`window.rs`), the
//! decision as Flink's algorithm (`decide.rs`, a pure function), and the per-job loop that
//! stabilizes, delays scale-downs and asks for taskmanagers (`state.rs`). The scheduler
//! (`scheduler/autoscale.rs`) looks at it while a job executes and applies its decisions with
//! the stop-with-checkpoint rescale, so keyed state stays exact.

mod decide;
mod settings;
mod state;
mod window;

pub(crate) use decide::VertexInfo;
pub(crate) use settings::AutoscalerSettings;
pub(crate) use state::{Action, JobAutoscaler, Slots};
