//! Flink-style configuration (DESIGN §11): flat or nested YAML, typed options with Flink's
//! names and defaults, layered defaults < file < `SLUICE_PROPERTIES` < `-D`.

mod args;
mod configuration;
mod constraints;
mod loader;
pub mod options;
pub mod units;
mod yaml_flatten;

pub use args::ConfigArgs;
pub use configuration::{ConfigError, Configuration, Entry, Origin};
pub use loader::{load, ConfigSources, Loaded, CONFIG_FILE_NAME, EMBEDDED_CONFIG, PROPERTIES_ENV};
pub use options::{ConfigOption, PortRange};
pub use units::{format_duration, parse_duration, MemorySize};
pub use yaml_flatten::{flatten_yaml, FlatEntry, YamlProblem};
