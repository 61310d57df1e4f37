//! Keyed windows with aggregates: window assignment (`assigner`) and the aggregating operator
//! (`aggregate`) for tumbling, sliding and session windows in event or processing time.

mod aggregate;
pub mod assigner;

pub use aggregate::WindowAggregate;
