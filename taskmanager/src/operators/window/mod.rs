//! Keyed windows with aggregates: window assignment (`assigner`) and the aggregating operator
//! (`aggregate`) for tumbling, sliding and session windows in event or processing time.

mod aggregate;
pub(crate) mod assigner;
mod pane_keys;
mod rocks_state;
mod sessions;
mod state_codec;

pub(crate) use aggregate::WindowAggregate;
