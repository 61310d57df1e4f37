//! Reading a connector's `options:` with their positions: every option a connector asks for is
//! marked used, a value that does not parse names the option, the connector and what it
//! expected, and an option nobody asked for is an error listing the ones that exist. A bad
//! option fails the submission (with its line and column), not a task later.

use std::collections::BTreeMap;
use std::path::PathBuf;

use sluice_common::job::{JobError, JobResult};
use sluice_common::yaml_tree::Pos;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Json,
    Csv,
}

type Options = BTreeMap<String, (String, Pos)>;

pub struct OptionReader<'a> {
    options: &'a Options,
    used: Vec<&'a str>,
    owner: Pos,
    what: String,
}

impl<'a> OptionReader<'a> {
    /// `what` names the owner in messages, e.g. "datagen source 'events'".
    pub fn new(options: &'a Options, owner: Pos, what: String) -> Self {
        OptionReader {
            options,
            used: Vec::new(),
            owner,
            what,
        }
    }

    /// Where the options' owner stands, for errors about a missing or wrong combination.
    pub fn owner(&self) -> Pos {
        self.owner
    }

    pub fn get(&mut self, key: &'a str) -> Option<&'a (String, Pos)> {
        self.used.push(key);
        self.options.get(key)
    }

    pub fn parse<T: std::str::FromStr>(&mut self, key: &'a str, expected: &str) -> JobResult<Option<T>> {
        match self.get(key) {
            None => Ok(None),
            Some((text, pos)) => text.trim().parse::<T>().map(Some).map_err(|_| {
                JobError::at(
                    *pos,
                    format!("option '{key}' of {} must be {expected}, found '{text}'", self.what),
                )
            }),
        }
    }

    /// Every option whose key starts with `prefix` (e.g. Kafka's `properties.`), as (key after
    /// the prefix, value), all marked used.
    pub fn prefixed(&mut self, prefix: &str) -> Vec<(&'a str, &'a str)> {
        let options: &'a Options = self.options;
        let found: Vec<(&'a str, &'a str)> = options
            .iter()
            .filter_map(|(k, (v, _))| k.strip_prefix(prefix).map(|rest| (rest, v.as_str())))
            .collect();
        self.used
            .extend(options.keys().filter(|k| k.starts_with(prefix)).map(String::as_str));
        found
    }

    /// A duration such as `10 s` or `500 ms` (Flink's notation).
    pub fn duration(&mut self, key: &'a str) -> JobResult<Option<std::time::Duration>> {
        match self.get(key) {
            None => Ok(None),
            Some((text, pos)) => sluice_common::config::parse_duration(text)
                .map(Some)
                .map_err(|e| JobError::at(*pos, format!("option '{key}' of {}: {e}", self.what))),
        }
    }

    pub fn path(&mut self, key: &'a str) -> JobResult<PathBuf> {
        let (text, pos) = self
            .get(key)
            .ok_or_else(|| JobError::at(self.owner, format!("{} needs the option '{key}'", self.what)))?;
        local_path(text).map_err(|e| JobError::at(*pos, e))
    }

    pub fn format(&mut self) -> JobResult<FileFormat> {
        match self.get("format") {
            None => Ok(FileFormat::Json),
            Some((text, pos)) => match text.as_str() {
                "json" => Ok(FileFormat::Json),
                "csv" => Ok(FileFormat::Csv),
                other => Err(JobError::at(
                    *pos,
                    format!("unknown format '{other}' of {}; expected json or csv", self.what),
                )),
            },
        }
    }

    /// Fails on an option nobody asked for.
    pub fn done(self) -> JobResult<()> {
        match self.options.iter().find(|(k, _)| !self.used.contains(&k.as_str())) {
            None => Ok(()),
            Some((k, (_, pos))) => Err(JobError::at(
                *pos,
                format!(
                    "unknown option '{k}' of {}; expected one of: {}",
                    self.what,
                    self.used.join(", ")
                ),
            )),
        }
    }
}

/// `file:///tmp/x` or a plain path → a local path. Other schemes are not sources of files yet.
pub fn local_path(text: &str) -> Result<PathBuf, String> {
    if let Some(rest) = text.strip_prefix("file://") {
        if !rest.starts_with('/') {
            return Err(format!("'{text}' is not an absolute file:// URL (file:///path)"));
        }
        return Ok(PathBuf::from(rest));
    }
    if text.contains("://") {
        return Err(format!(
            "'{text}': only local paths and file:// URLs are supported here"
        ));
    }
    if text.is_empty() {
        return Err("the path is empty".into());
    }
    Ok(PathBuf::from(text))
}

/// The value of option `key` among `choices` (its default when unset); anything else is an
/// error naming the option, its owner and the accepted values.
pub(crate) fn choice<'a, T: Copy>(
    r: &mut OptionReader<'a>,
    key: &'a str,
    default: T,
    choices: &[(&str, T)],
    what: &str,
) -> JobResult<T> {
    match r.get(key) {
        None => Ok(default),
        Some((text, pos)) => choices
            .iter()
            .find(|(name, _)| *name == text.trim())
            .map(|(_, v)| *v)
            .ok_or_else(|| {
                let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
                JobError::at(
                    *pos,
                    format!(
                        "unknown {key} '{text}' of {what}; expected one of: {}",
                        names.join(", ")
                    ),
                )
            }),
    }
}
