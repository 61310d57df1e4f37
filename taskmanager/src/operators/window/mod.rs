//! Keyed windows with aggregates: window assignment (`assigner`) and the aggregating operator
//! (`aggregate`) for tumbling, sliding and session windows in event or processing time, whose
//! panes live behind one store interface (`pane_store`: heap, RocksDB, sessions), and the
//! local phase of a two-phase window (`local`).

mod aggregate;
pub(crate) mod assigner;
mod heap_panes;
mod local;
mod pane_keys;
mod pane_store;
mod rocks_panes;
mod sessions;
mod state_codec;

pub(crate) use aggregate::WindowAggregate;
pub(crate) use local::LocalWindowAggregate;
pub(crate) use pane_store::{aggregate_arguments, df, new_accumulators};
pub(crate) use state_codec::StateCodec;
