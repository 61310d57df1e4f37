//! The configuration flags every Sluice binary takes: `--config-dir DIR` and `-D key=value`.

use std::path::PathBuf;

use super::loader::{load, ConfigSources, Loaded};
use super::ConfigError;

#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConfigArgs {
    /// Directory holding config.yaml (default: $SLUICE_CONF_DIR, else the embedded defaults).
    #[arg(long = "config-dir", env = "SLUICE_CONF_DIR", value_name = "DIR", global = true)]
    pub config_dir: Option<PathBuf>,
    /// Overrides a configuration key; repeatable (highest precedence). Accepted before or
    /// after a subcommand.
    #[arg(short = 'D', value_name = "key=value", global = true)]
    pub dynamic: Vec<String>,
}

impl ConfigArgs {
    /// Loads this process's configuration: file < SLUICE_PROPERTIES < -D.
    pub fn load(&self) -> Result<Loaded, ConfigError> {
        load(&ConfigSources::from_process(
            self.config_dir.clone(),
            self.dynamic.clone(),
        ))
    }
}
