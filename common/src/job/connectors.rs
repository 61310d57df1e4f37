//! Typed options of the source and sink connectors, checked when the job graph is built so a
//! bad option fails the submission (with its line and column), not a task later.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::yaml_tree::Pos;

use super::error::{JobError, JobResult};

/// Rows a datagen subtask generates per batch unless `batch-size` says otherwise.
pub const DEFAULT_DATAGEN_BATCH: usize = 4096;

#[derive(Debug, Clone, PartialEq)]
pub struct DatagenOptions {
    /// `None` = unbounded.
    pub number_of_rows: Option<u64>,
    /// Total over all subtasks; 0 = unlimited.
    pub rows_per_second: f64,
    pub splits: u32,
    pub batch_size: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Json,
    Csv,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FileSourceOptions {
    pub path: PathBuf,
    pub format: FileFormat,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FileSinkOptions {
    pub path: PathBuf,
    pub format: FileFormat,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SourceConnector {
    Datagen(DatagenOptions),
    File(FileSourceOptions),
}

#[derive(Debug, Clone, PartialEq)]
pub enum SinkConnector {
    Print,
    Blackhole,
    File(FileSinkOptions),
}

type Options = BTreeMap<String, (String, Pos)>;

struct Reader<'a> {
    options: &'a Options,
    used: Vec<&'a str>,
    owner: Pos,
    what: String,
}

impl<'a> Reader<'a> {
    fn new(options: &'a Options, owner: Pos, what: String) -> Self {
        Reader {
            options,
            used: Vec::new(),
            owner,
            what,
        }
    }

    fn get(&mut self, key: &'a str) -> Option<&'a (String, Pos)> {
        self.used.push(key);
        self.options.get(key)
    }

    fn parse<T: std::str::FromStr>(&mut self, key: &'a str, expected: &str) -> JobResult<Option<T>> {
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

    fn path(&mut self, key: &'a str) -> JobResult<PathBuf> {
        let (text, pos) = self
            .get(key)
            .ok_or_else(|| JobError::at(self.owner, format!("{} needs the option '{key}'", self.what)))?;
        local_path(text).map_err(|e| JobError::at(*pos, e))
    }

    fn format(&mut self) -> JobResult<FileFormat> {
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

    fn done(self) -> JobResult<()> {
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

pub fn source_connector(
    connector: &str,
    options: &Options,
    pos: Pos,
    id: &str,
    parallelism: u32,
) -> JobResult<SourceConnector> {
    let mut r = Reader::new(options, pos, format!("{connector} source '{id}'"));
    let c = match connector {
        "datagen" => {
            let number_of_rows = r.parse::<u64>("number-of-rows", "a whole number")?;
            let rows_per_second = r.parse::<f64>("rows-per-second", "a number")?.unwrap_or(0.0);
            if !(rows_per_second.is_finite() && rows_per_second >= 0.0) {
                return Err(JobError::at(
                    pos,
                    format!("rows-per-second of source '{id}' must be 0 or more"),
                ));
            }
            let splits = r
                .parse::<u32>("splits", "a whole number of at least 1")?
                .unwrap_or(parallelism);
            if splits == 0 {
                return Err(JobError::at(pos, format!("splits of source '{id}' must be at least 1")));
            }
            let batch_size = r
                .parse::<usize>("batch-size", "a whole number of at least 1")?
                .unwrap_or(DEFAULT_DATAGEN_BATCH);
            if batch_size == 0 {
                return Err(JobError::at(
                    pos,
                    format!("batch-size of source '{id}' must be at least 1"),
                ));
            }
            SourceConnector::Datagen(DatagenOptions {
                number_of_rows,
                rows_per_second,
                splits,
                batch_size,
            })
        }
        "file" => SourceConnector::File(FileSourceOptions {
            path: r.path("path")?,
            format: r.format()?,
        }),
        other => {
            return Err(JobError::at(
                pos,
                format!("unknown source connector '{other}' of '{id}'; expected datagen or file"),
            ))
        }
    };
    r.done()?;
    Ok(c)
}

pub fn sink_connector(connector: &str, options: &Options, pos: Pos, id: &str) -> JobResult<SinkConnector> {
    let mut r = Reader::new(options, pos, format!("{connector} sink '{id}'"));
    let c = match connector {
        "print" => SinkConnector::Print,
        "blackhole" => SinkConnector::Blackhole,
        "file" => SinkConnector::File(FileSinkOptions {
            path: r.path("path")?,
            format: r.format()?,
        }),
        other => {
            return Err(JobError::at(
                pos,
                format!("unknown sink connector '{other}' of '{id}'; expected print, blackhole or file"),
            ))
        }
    };
    r.done()?;
    Ok(c)
}
