//! The task runtime (DESIGN §6): building a subtask from its vertex (`build`), the subtask loop
//! (`task`), the two-phase-commit sink at a chain's end (`sink_stage`), event-time tracking
//! (`watermarks`) and per-subtask counters (`metrics`).

pub mod build;
pub mod checkpointing;
pub mod metrics;
pub mod sink_stage;
pub mod task;
pub mod watermarks;
