//! Process observability shared by both daemons: logging setup, heap accounting, CPU load,
//! and the Prometheus endpoint (DESIGN §12).

mod file_sd;
mod heap_accounting;
mod logging;
mod process_stats;
mod prometheus;

pub use file_sd::{announce_metrics, FileSdTarget};
pub use heap_accounting::heap_used_bytes;
pub use logging::init_logging;
pub use process_stats::{physical_memory_bytes, resident_set_bytes, CpuLoad};
pub use prometheus::{label_value, serve_prometheus, MetricsRefresh, ScrapeText};
