//! The effective configuration: key → value with where each value came from, typed reads of
//! registered options (explicit value, else deprecated key, else Flink's default), and the
//! validation that turns a bad value into an error naming key, value, origin and expected form.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use super::options::{find_option, ConfigOption, OptionValue, KNOWN_OPTIONS, TM_MANAGED_FRACTION, TM_MANAGED_SIZE};

/// Where a configuration value came from, for error messages and `/jobmanager/config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A config file, 1-based line.
    File { path: PathBuf, line: usize },
    /// The configuration embedded in the binary (a copy of `conf/config.yaml`).
    Embedded { line: usize },
    /// A line of the `SLUICE_PROPERTIES` environment variable.
    Env { line: usize },
    /// A `-D key=value` flag.
    Flag,
    /// Set by the program itself (e.g. tests, job overrides).
    Program,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { path, line } => write!(f, "{}, line {line}", path.display()),
            Origin::Embedded { line } => write!(f, "embedded conf/config.yaml, line {line}"),
            Origin::Env { line } => write!(f, "SLUICE_PROPERTIES, line {line}"),
            Origin::Flag => write!(f, "-D flag"),
            Origin::Program => write!(f, "set by the program"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub value: String,
    pub origin: Origin,
}

/// Everything that can be wrong with configuration input.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("Invalid value '{value}' for configuration key '{key}' ({origin}): {reason}. Expected {expected}.")]
    InvalidValue {
        key: String,
        value: String,
        origin: Origin,
        reason: String,
        expected: &'static str,
    },
    #[error("Invalid YAML in {source_name} at line {line}, column {column}: {message}")]
    Yaml {
        source_name: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("Cannot read configuration file {path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("Invalid dynamic property '-D {flag}': expected -D key=value")]
    BadFlag { flag: String },
    #[error("Configuration key '{key}' has no value and no default; set it in config.yaml or with -D {key}=...")]
    Missing { key: String },
}

/// Where errors are messages (the daemons' setup paths), a configuration error is its text.
impl From<ConfigError> for String {
    fn from(e: ConfigError) -> String {
        e.to_string()
    }
}

/// The layered configuration of one process.
#[derive(Debug, Clone, Default)]
pub struct Configuration {
    entries: BTreeMap<String, Entry>,
}

impl Configuration {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` (a later layer overrides an earlier one).
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>, origin: Origin) {
        self.entries.insert(
            key.into(),
            Entry {
                value: value.into(),
                origin,
            },
        );
    }

    /// This configuration with `overrides` on top (a job's own keys over the cluster's).
    pub fn overlaid<'a>(&self, overrides: impl IntoIterator<Item = (&'a String, &'a String)>) -> Configuration {
        let mut c = self.clone();
        for (k, v) in overrides {
            c.set(k.clone(), v.clone(), Origin::Program);
        }
        c
    }

    /// Convenience for programs and tests: `set(key, value, Origin::Program)`.
    pub fn with(mut self, key: &str, value: &str) -> Self {
        self.set(key, value, Origin::Program);
        self
    }

    pub fn entries(&self) -> impl Iterator<Item = (&String, &Entry)> {
        self.entries.iter()
    }

    pub fn raw(&self, key: &str) -> Option<&Entry> {
        self.entries.get(key)
    }

    /// The value a key has here as text: set explicitly (under its name or a deprecated one),
    /// else its default; `None` when neither (for scripts: `jobmanager --print-option KEY`).
    pub fn effective_text(&self, key: &str) -> Option<String> {
        let Some(option) = find_option(key) else {
            return self.entries.get(key).map(|e| e.value.clone());
        };
        std::iter::once(option.key())
            .chain(option.deprecated_keys().iter().copied())
            .find_map(|k| self.entries.get(k).map(|e| e.value.clone()))
            .or_else(|| option.default_value().map(str::to_string))
    }

    /// The explicitly configured entry for an option: its key, else a deprecated key.
    pub(super) fn explicit<T>(&self, option: &ConfigOption<T>) -> Option<(&str, &Entry)> {
        std::iter::once(option.key)
            .chain(option.deprecated_keys.iter().copied())
            .find_map(|k| self.entries.get(k).map(|e| (k, e)))
    }

    /// Flink's `Configuration.contains`: set explicitly (under any accepted name).
    pub fn contains<T>(&self, option: &ConfigOption<T>) -> bool {
        self.explicit(option).is_some()
    }

    /// The option's value: explicit, else its default, else `None`.
    pub fn get_opt<T: OptionValue>(&self, option: &ConfigOption<T>) -> Result<Option<T>, ConfigError> {
        match self.explicit(option) {
            Some((key, entry)) => T::parse_value(&entry.value)
                .map(Some)
                .map_err(|reason| ConfigError::InvalidValue {
                    key: key.to_string(),
                    value: entry.value.clone(),
                    origin: entry.origin.clone(),
                    reason,
                    expected: T::EXPECTED,
                }),
            None => match option.default {
                None => Ok(None),
                Some(default) => T::parse_value(default)
                    .map(Some)
                    .map_err(|reason| ConfigError::InvalidValue {
                        key: option.key.to_string(),
                        value: default.to_string(),
                        origin: Origin::Program,
                        reason,
                        expected: T::EXPECTED,
                    }),
            },
        }
    }

    /// The option's value, explicit or default; an error when it has neither.
    pub fn get<T: OptionValue>(&self, option: &ConfigOption<T>) -> Result<T, ConfigError> {
        self.get_opt(option)?.ok_or_else(|| ConfigError::Missing {
            key: option.key.to_string(),
        })
    }

    /// Checks every entry: registered keys must parse as their type (first failure is the
    /// error); unregistered and deprecated keys come back as warnings naming them.
    pub fn validate(&self) -> Result<Vec<String>, ConfigError> {
        let mut warnings = Vec::new();
        for (key, entry) in &self.entries {
            match find_option(key) {
                None => warnings.push(format!(
                    "Unknown configuration key '{key}' ({}) is ignored by Sluice.{}",
                    entry.origin,
                    unknown_key_hint(key)
                )),
                Some(option) => {
                    option.check(&entry.value).map_err(|reason| ConfigError::InvalidValue {
                        key: key.clone(),
                        value: entry.value.clone(),
                        origin: entry.origin.clone(),
                        reason,
                        expected: option.expected(),
                    })?;
                    if option.key() != key {
                        warnings.push(format!(
                            "Configuration key '{key}' ({}) is deprecated; use '{}' instead.",
                            entry.origin,
                            option.key()
                        ));
                    }
                }
            }
        }
        if let (Some(size), Some(fraction)) = (
            self.entries.get(TM_MANAGED_SIZE.key),
            self.entries.get(TM_MANAGED_FRACTION.key),
        ) {
            warnings.push(format!(
                "Note: taskmanager.memory.managed.size ({}, {}) is set, so taskmanager.memory.managed.fraction ({}, {}) is not used: an explicit size wins over a fraction, as in Flink.",
                size.value, size.origin, fraction.value, fraction.origin
            ));
        }
        self.check_constraints()?;
        Ok(warnings)
    }

    /// Key/value pairs for display, with secrets masked as Flink's `GlobalConfiguration` does.
    pub fn displayable(&self) -> Vec<(String, String)> {
        self.entries
            .iter()
            .map(|(k, e)| {
                let v = if is_sensitive(k) {
                    "******".to_string()
                } else {
                    e.value.clone()
                };
                (k.clone(), v)
            })
            .collect()
    }
}

/// What to say about a key Sluice does not know: the JVM-heap keys people bring from other
/// tools, else the closest known key.
fn unknown_key_hint(key: &str) -> String {
    if key.ends_with(".jvm-heap.size") && key.starts_with("taskmanager.") {
        return " The taskmanager's heap is taskmanager.memory.task.heap.size plus taskmanager.memory.framework.heap.size; set those, or taskmanager.memory.process.size and let them be derived.".to_string();
    }
    let known = KNOWN_OPTIONS
        .iter()
        .flat_map(|o| std::iter::once(o.key()).chain(o.deprecated_keys().iter().copied()));
    crate::suggest::did_you_mean(key, known)
}

/// Flink hides values of keys containing these words (`GlobalConfiguration.isSensitive`).
fn is_sensitive(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "fs.azure.account.key",
        "apikey",
        "api-key",
        "auth-params",
        "service-key",
        "token",
        "basic-auth",
        "jaas.config",
        "http-headers",
    ]
    .iter()
    .any(|w| k.contains(w))
}

#[cfg(test)]
mod tests {
    use super::super::options::*;
    use super::super::units::MemorySize;
    use super::*;

    #[test]
    fn unknown_keys_get_a_hint() {
        let c = Configuration::new()
            .with("taskmanager.memory.proces.size", "1g")
            .with("taskmanager.memory.jvm-heap.size", "1g")
            .with("taskmanager.memory.managed.size", "256m")
            .with("taskmanager.memory.managed.fraction", "0.5");
        let w = c.validate().unwrap().join("\n");
        assert!(
            w.contains("Unknown configuration key 'taskmanager.memory.proces.size' (set by the program) is ignored by Sluice. Did you mean 'taskmanager.memory.process.size'?"),
            "{w}"
        );
        assert!(
            w.contains("'taskmanager.memory.jvm-heap.size'")
                && w.contains("taskmanager.memory.task.heap.size plus taskmanager.memory.framework.heap.size"),
            "{w}"
        );
        assert!(
            w.contains("taskmanager.memory.managed.size (256m, set by the program) is set, so taskmanager.memory.managed.fraction (0.5, set by the program) is not used"),
            "{w}"
        );
    }

    #[test]
    fn typed_reads_fall_back_to_deprecated_keys_then_defaults() {
        let c = Configuration::new().with("taskmanager.network.memory.min", "32m");
        assert_eq!(c.get(&TM_NETWORK_MIN).unwrap(), MemorySize::mebibytes(32));
        assert!(c.contains(&TM_NETWORK_MIN));
        assert_eq!(c.get(&TM_NETWORK_MAX).unwrap(), MemorySize::MAX);
        assert!(!c.contains(&TM_NETWORK_MAX));
        assert_eq!(c.get_opt(&TM_PROCESS_SIZE).unwrap(), None);
        assert!(matches!(c.get(&TM_PROCESS_SIZE), Err(ConfigError::Missing { .. })));
        let warnings = c.validate().unwrap();
        assert!(warnings[0].contains("deprecated; use 'taskmanager.memory.network.min'"));
    }

    #[test]
    fn invalid_value_names_key_value_origin_and_form() {
        let mut c = Configuration::new();
        c.set(
            "taskmanager.memory.process.size",
            "lots",
            Origin::File {
                path: "conf/config.yaml".into(),
                line: 7,
            },
        );
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("'lots'"), "{e}");
        assert!(e.contains("'taskmanager.memory.process.size'"), "{e}");
        assert!(e.contains("conf/config.yaml, line 7"), "{e}");
        assert!(e.contains("memory size"), "{e}");
    }

    #[test]
    fn unknown_keys_warn_by_name() {
        let c = Configuration::new().with("env.java.opts.all", "-Xfoo");
        let warnings = c.validate().unwrap();
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("'env.java.opts.all'"));
    }

    #[test]
    fn secrets_are_masked() {
        let c = Configuration::new()
            .with("s3.secret-key", "hunter2")
            .with("rest.port", "1");
        let shown = c.displayable();
        assert!(shown.contains(&("s3.secret-key".into(), "******".into())));
        assert!(shown.contains(&("rest.port".into(), "1".into())));
    }
}
