//! `file`: a source reading JSON lines or CSV files (`path`: a file or a directory of them,
//! `format`: json | csv) and an exactly-once sink writing them (`path`: the directory, `format`).
//! A file source's columns are read from the files, so they take no `expr`. The enumerator
//! lists the path on the jobmanager; each file is one split, named by its path. With
//! `source.monitor-interval` (Flink's option) the source is unbounded: the enumerator lists the
//! path again at that interval and deals the files it has not seen to the running readers.

mod sink;
mod source;

use std::path::PathBuf;
use std::time::Duration;

use sluice_common::failure::ClassedError;
use sluice_common::job::spec::{SinkSpec, SourceSpec};
use sluice_common::job::{JobError, JobResult};
use sluice_common::yaml_tree::Pos;

use crate::contract::{Sink, SinkContext, Source, SourceContext};
use crate::enumerator::{RoundRobinEnumerator, SplitEnumerator};
use crate::options::{FileFormat, OptionReader};
use crate::registry::Connector;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FileOptions {
    pub path: PathBuf,
    pub format: FileFormat,
    /// Sources only: list the path again at this interval (the source never ends).
    pub monitor_interval: Option<Duration>,
}

impl FileOptions {
    fn parse(
        options: &std::collections::BTreeMap<String, (String, Pos)>,
        pos: Pos,
        what: String,
        source: bool,
    ) -> JobResult<Self> {
        let mut r = OptionReader::new(options, pos, what);
        let o = FileOptions {
            path: r.path("path")?,
            format: r.format()?,
            monitor_interval: if source {
                r.duration("source.monitor-interval")?.filter(|d| !d.is_zero())
            } else {
                None
            },
        };
        r.done()?;
        Ok(o)
    }

    fn of_source(spec: &SourceSpec) -> JobResult<Self> {
        Self::parse(&spec.options, spec.pos, format!("file source '{}'", spec.id), true)
    }

    fn of_sink(spec: &SinkSpec) -> JobResult<Self> {
        Self::parse(&spec.options, spec.pos, format!("file sink '{}'", spec.id), false)
    }
}

pub(crate) struct File;

impl Connector for File {
    fn name(&self) -> &'static str {
        "file"
    }

    fn is_source(&self) -> bool {
        true
    }

    fn is_sink(&self) -> bool {
        true
    }

    fn check_source(&self, spec: &SourceSpec, _parallelism: u32) -> JobResult<()> {
        FileOptions::of_source(spec)?;
        match spec.schema.iter().find(|c| c.expr.is_some()) {
            Some(col) => Err(JobError::at(
                col.pos,
                format!(
                    "'{}': column '{}': a file source reads columns, it takes no 'expr'",
                    spec.id, col.name
                ),
            )),
            None => Ok(()),
        }
    }

    /// One split per file of the path (in name order), each from its start, named by its path.
    fn enumerator(&self, spec: &SourceSpec, _parallelism: u32) -> Result<Box<dyn SplitEnumerator>, ClassedError> {
        let o = FileOptions::of_source(spec)?;
        let path = o.path;
        Ok(Box::new(
            RoundRobinEnumerator::new(move || {
                Ok(source::list_files(&path)?
                    .into_iter()
                    .map(|file| (file.display().to_string(), source::file_split(&file, 0)))
                    .collect())
            })
            .discovering_every(o.monitor_interval),
        ))
    }

    fn create_source(&self, ctx: &SourceContext) -> Result<Box<dyn Source>, ClassedError> {
        let o = FileOptions::of_source(ctx.spec)?;
        Ok(Box::new(source::FileSource::new(&o, ctx.schema.clone())?))
    }

    fn check_sink(&self, spec: &SinkSpec) -> JobResult<()> {
        FileOptions::of_sink(spec).map(|_| ())
    }

    fn create_sink(&self, ctx: &SinkContext) -> Result<Box<dyn Sink>, ClassedError> {
        let o = FileOptions::of_sink(ctx.spec)?;
        Ok(Box::new(sink::FileSink::new(&o, ctx.subtask, ctx.attempt)))
    }
}
