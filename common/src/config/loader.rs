//! Builds a process's configuration from its layers, lowest first: option defaults (implicit),
//! the config file (`--config-dir DIR/config.yaml`, else the copy of `conf/config.yaml` embedded
//! in the binary), `SLUICE_PROPERTIES` (YAML lines, like Flink's `FLINK_PROPERTIES`), then
//! `-D key=value` flags.

use std::path::{Path, PathBuf};

use super::configuration::{ConfigError, Configuration, Origin};
use super::yaml_flatten::flatten_yaml;

/// The shipped `conf/config.yaml`, used when no config directory is given.
pub const EMBEDDED_CONFIG: &str = include_str!("../../../conf/config.yaml");

/// Name of the config file inside a config directory (Flink 2's name).
pub const CONFIG_FILE_NAME: &str = "config.yaml";

/// Environment variable holding extra YAML configuration lines.
pub const PROPERTIES_ENV: &str = "SLUICE_PROPERTIES";

/// Inputs to [`load`]; `from_process` fills the environment part.
#[derive(Debug, Clone, Default)]
pub struct ConfigSources {
    pub config_dir: Option<PathBuf>,
    pub properties: Option<String>,
    pub dynamic: Vec<String>,
}

impl ConfigSources {
    pub fn from_process(config_dir: Option<PathBuf>, dynamic: Vec<String>) -> Self {
        ConfigSources {
            config_dir,
            properties: std::env::var(PROPERTIES_ENV).ok(),
            dynamic,
        }
    }
}

/// A loaded configuration and the warnings (unknown or deprecated keys) to log.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Configuration,
    pub warnings: Vec<String>,
    /// Where the file layer came from, for the startup log.
    pub file: String,
}

fn apply_yaml(
    config: &mut Configuration,
    text: &str,
    source_name: &str,
    origin: impl Fn(usize) -> Origin,
) -> Result<(), ConfigError> {
    let entries = flatten_yaml(text).map_err(|p| ConfigError::Yaml {
        source_name: source_name.to_string(),
        line: p.line,
        column: p.column,
        message: p.message,
    })?;
    for e in entries {
        config.set(e.key, e.value, origin(e.line));
    }
    Ok(())
}

/// Reads `DIR/config.yaml`; a missing directory or file is an error naming the path.
fn read_config_file(dir: &Path) -> Result<(PathBuf, String), ConfigError> {
    let path = dir.join(CONFIG_FILE_NAME);
    std::fs::read_to_string(&path)
        .map(|text| (path.clone(), text))
        .map_err(|e| ConfigError::Io {
            path,
            message: e.to_string(),
        })
}

/// Parses one `-D` argument (`key=value`, value may contain `=`).
fn parse_flag(flag: &str) -> Result<(&str, &str), ConfigError> {
    match flag.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim(), v.trim())),
        _ => Err(ConfigError::BadFlag { flag: flag.to_string() }),
    }
}

/// Layers the sources and validates the result.
pub fn load(sources: &ConfigSources) -> Result<Loaded, ConfigError> {
    let mut config = Configuration::new();
    let file = match &sources.config_dir {
        Some(dir) => {
            let (path, text) = read_config_file(dir)?;
            let shown = path.display().to_string();
            apply_yaml(&mut config, &text, &shown, |line| Origin::File {
                path: path.clone(),
                line,
            })?;
            shown
        }
        None => {
            apply_yaml(&mut config, EMBEDDED_CONFIG, "embedded conf/config.yaml", |line| {
                Origin::Embedded { line }
            })?;
            "embedded conf/config.yaml".to_string()
        }
    };
    if let Some(props) = &sources.properties {
        apply_yaml(&mut config, props, PROPERTIES_ENV, |line| Origin::Env { line })?;
    }
    for flag in &sources.dynamic {
        let (k, v) = parse_flag(flag)?;
        config.set(k, v, Origin::Flag);
    }
    let warnings = config.validate()?;
    Ok(Loaded { config, warnings, file })
}

#[cfg(test)]
mod tests {
    use super::super::options::*;
    use super::super::units::MemorySize;
    use super::*;
    use std::time::Duration;

    fn dir_with(text: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CONFIG_FILE_NAME), text).unwrap();
        dir
    }

    #[test]
    fn precedence_defaults_file_env_flags() {
        let dir = dir_with(
            "taskmanager:\n  numberOfTaskSlots: 2\n  memory.process.size: 1g\nheartbeat.timeout: 20 s\nrest.port: 9000\n",
        );
        let sources = ConfigSources {
            config_dir: Some(dir.path().to_path_buf()),
            properties: Some("heartbeat.timeout: 30 s\nrest.port: 9001\n".into()),
            dynamic: vec!["rest.port=9002".into()],
        };
        let loaded = load(&sources).unwrap();
        let c = &loaded.config;
        assert_eq!(c.get(&TASK_SLOTS).unwrap().get(), 2, "file");
        assert_eq!(c.get(&TM_PROCESS_SIZE).unwrap(), MemorySize(1 << 30), "nested file");
        assert_eq!(
            c.get(&HEARTBEAT_TIMEOUT).unwrap(),
            Duration::from_secs(30),
            "env over file"
        );
        assert_eq!(c.get(&REST_PORT).unwrap(), 9002, "flag over env");
        assert_eq!(c.get(&HEARTBEAT_INTERVAL).unwrap(), Duration::from_secs(10), "default");
        assert_eq!(c.raw("rest.port").unwrap().origin, Origin::Flag);
    }

    #[test]
    fn embedded_config_loads_cleanly() {
        let loaded = load(&ConfigSources::default()).unwrap();
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        assert!(loaded.config.contains(&TM_PROCESS_SIZE));
    }

    #[test]
    fn flink_2_shipped_config_loads_with_warnings_only() {
        let dir = dir_with(include_str!("../../testdata/flink-2-config.yaml"));
        let loaded = load(&ConfigSources {
            config_dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        })
        .unwrap();
        let c = &loaded.config;
        assert_eq!(c.get(&TM_PROCESS_SIZE).unwrap(), MemorySize::mebibytes(1728));
        assert_eq!(c.get(&JM_PROCESS_SIZE).unwrap(), MemorySize::mebibytes(1600));
        assert_eq!(c.get(&JOBMANAGER_RPC_PORT).unwrap(), 6123);
        let joined = loaded.warnings.join("\n");
        assert!(joined.contains("'env.java.opts.all'"), "{joined}");
        assert!(joined.contains("'jobmanager.execution.failover-strategy'"), "{joined}");
    }

    #[test]
    fn bad_inputs_name_what_is_wrong() {
        let dir = dir_with("taskmanager:\n  numberOfTaskSlots: zero\n");
        let e = load(&ConfigSources {
            config_dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("'taskmanager.numberOfTaskSlots'") && e.contains("'zero'"),
            "{e}"
        );
        assert!(e.contains("config.yaml, line 2"), "{e}");

        let dir = dir_with("a: [1, 2\n");
        let e = load(&ConfigSources {
            config_dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(matches!(e, ConfigError::Yaml { .. }), "{e}");

        let e = load(&ConfigSources {
            config_dir: Some("/nonexistent/sluice-conf".into()),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("/nonexistent/sluice-conf/config.yaml"), "{e}");

        let e = load(&ConfigSources {
            dynamic: vec!["rest.port".into()],
            ..Default::default()
        })
        .unwrap_err();
        assert!(matches!(e, ConfigError::BadFlag { .. }));

        let e = load(&ConfigSources {
            properties: Some("heartbeat.timeout: 3 eons\n".into()),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("SLUICE_PROPERTIES, line 1") && e.contains("'3 eons'"), "{e}");

        let e = load(&ConfigSources {
            dynamic: vec!["metrics.reporter.prom.port=9260-9250".into()],
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("-D flag") && e.contains("ends before it starts"), "{e}");
    }
}
