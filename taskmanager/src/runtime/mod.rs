//! The task runtime (DESIGN §6): building a subtask from its vertex (`build`), the subtask loop
//! (`task`), the two-phase-commit sink at a chain's end (`sink_stage`), event-time tracking
//! (`watermarks`) per-subtask counters (`metrics`) and
//! busy / idle / back-pressured time (`time_account`).

pub(crate) mod build;
pub(crate) mod checkpointing;
pub(crate) mod metrics;
pub(crate) mod sink_stage;
pub(crate) mod task;
pub(crate) mod time_account;
pub(crate) mod user_metrics;
pub(crate) mod watermarks;
