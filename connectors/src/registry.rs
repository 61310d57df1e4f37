//! The connector registry: every connector by name, each one a `Connector` that checks its
//! options and columns at submission (on the jobmanager, as the job compiler's
//! `ConnectorCatalog`), makes the enumerator of a source's splits (jobmanager) and builds
//! readers and writers (taskmanagers). Errors that list the valid connectors come from here.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use sluice_common::failure::ClassedError;
use sluice_common::job::spec::{SinkSpec, SourceSpec};
use sluice_common::job::{ConnectorCatalog, JobError, JobResult};

use crate::contract::{Sink, SinkContext, Source, SourceContext};
use crate::enumerator::SplitEnumerator;

/// One connector: a source, a sink or both. A method for a side it lacks is never called (the
/// registry checks `is_source` / `is_sink` first).
pub trait Connector: Send + Sync {
    fn name(&self) -> &'static str;

    fn is_source(&self) -> bool {
        false
    }

    fn is_sink(&self) -> bool {
        false
    }

    /// At submission: the source's options parse and its columns follow this connector's
    /// rules; errors carry the position of what is wrong.
    fn check_source(&self, _spec: &SourceSpec, _parallelism: u32) -> JobResult<()> {
        Err(JobError::general(format!("{} is not a source connector", self.name())))
    }

    /// On the jobmanager: the enumerator of a source's splits.
    fn enumerator(&self, _spec: &SourceSpec, _parallelism: u32) -> Result<Box<dyn SplitEnumerator>, ClassedError> {
        Err(ClassedError::internal(format!(
            "{} is not a source connector",
            self.name()
        )))
    }

    /// On a taskmanager: the reader of one source subtask (with no splits yet).
    fn create_source(&self, _ctx: &SourceContext) -> Result<Box<dyn Source>, ClassedError> {
        Err(ClassedError::internal(format!(
            "{} is not a source connector",
            self.name()
        )))
    }

    /// At submission: the sink's options parse.
    fn check_sink(&self, _spec: &SinkSpec) -> JobResult<()> {
        Err(JobError::general(format!("{} is not a sink connector", self.name())))
    }

    /// Whether the sink applies an updating stream (upserts by key).
    fn accepts_updates(&self, _spec: &SinkSpec) -> bool {
        false
    }

    /// At submission, once the job's configuration is known: the sink agrees with its
    /// checkpointing (`None`: checkpointing is off), e.g. a transaction must outlive a
    /// checkpoint interval.
    fn check_sink_checkpointing(&self, _spec: &SinkSpec, _interval: Option<std::time::Duration>) -> JobResult<()> {
        Ok(())
    }

    /// On a taskmanager: the writer of one sink subtask.
    fn create_sink(&self, _ctx: &SinkContext) -> Result<Box<dyn Sink>, ClassedError> {
        Err(ClassedError::internal(format!(
            "{} is not a sink connector",
            self.name()
        )))
    }
}

/// Connectors by name.
pub struct Registry {
    connectors: BTreeMap<&'static str, Box<dyn Connector>>,
}

/// The registry of the built-in connectors, shared by the whole process.
pub fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::builtin)
}

impl Registry {
    pub fn empty() -> Registry {
        Registry {
            connectors: BTreeMap::new(),
        }
    }

    /// Every connector Sluice ships. A new connector is one line here.
    pub fn builtin() -> Registry {
        Registry::empty()
            .with(crate::datagen::Datagen)
            .with(crate::file::File)
            .with(crate::kafka::Kafka)
            .with(crate::postgres::Postgres::NAMED)
            .with(crate::postgres::Postgres::JDBC)
            .with(crate::print::Print)
            .with(crate::blackhole::Blackhole)
    }

    pub fn with(mut self, connector: impl Connector + 'static) -> Registry {
        self.connectors.insert(connector.name(), Box::new(connector));
        self
    }

    /// The names of the connectors that can be sources (`sources`) or sinks.
    pub fn names(&self, sources: bool) -> Vec<&'static str> {
        self.connectors
            .values()
            .filter(|c| if sources { c.is_source() } else { c.is_sink() })
            .map(|c| c.name())
            .collect()
    }

    fn find(&self, name: &str, source: bool) -> Option<&dyn Connector> {
        self.connectors
            .get(name)
            .map(|c| c.as_ref())
            .filter(|c| if source { c.is_source() } else { c.is_sink() })
    }

    /// "unknown source connector 'x' of 'id'; expected a, b or c".
    fn unknown(&self, name: &str, id: &str, source: bool) -> String {
        let names = self.names(source);
        let list = match names.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            Some((last, _)) => last.to_string(),
            None => "none".into(),
        };
        let side = if source { "source" } else { "sink" };
        format!("unknown {side} connector '{name}' of '{id}'; expected {list}")
    }

    pub fn source(&self, spec: &SourceSpec) -> Result<&dyn Connector, ClassedError> {
        self.find(&spec.connector, true)
            .ok_or_else(|| ClassedError::config(self.unknown(&spec.connector, &spec.id, true)))
    }

    /// Every sink of `graph` agrees with the job's checkpoint interval (`None`: off).
    pub fn check_sinks_checkpointing(
        &self,
        graph: &sluice_common::job::JobGraph,
        interval: Option<std::time::Duration>,
    ) -> JobResult<()> {
        for node in &graph.nodes {
            if let sluice_common::job::NodeKind::Sink { spec } = &node.kind {
                if let Some(c) = self.find(&spec.connector, false) {
                    c.check_sink_checkpointing(spec, interval)?;
                }
            }
        }
        Ok(())
    }

    pub fn sink(&self, spec: &SinkSpec) -> Result<&dyn Connector, ClassedError> {
        self.find(&spec.connector, false)
            .ok_or_else(|| ClassedError::config(self.unknown(&spec.connector, &spec.id, false)))
    }
}

impl ConnectorCatalog for Registry {
    fn check_source(&self, spec: &SourceSpec, parallelism: u32) -> JobResult<()> {
        let c = self
            .find(&spec.connector, true)
            .ok_or_else(|| JobError::at(spec.pos, self.unknown(&spec.connector, &spec.id, true)))?;
        c.check_source(spec, parallelism)
    }

    fn check_sink(&self, spec: &SinkSpec) -> JobResult<()> {
        let c = self
            .find(&spec.connector, false)
            .ok_or_else(|| JobError::at(spec.pos, self.unknown(&spec.connector, &spec.id, false)))?;
        c.check_sink(spec)
    }

    fn accepts_updates(&self, spec: &SinkSpec) -> bool {
        self.find(&spec.connector, false)
            .is_some_and(|c| c.accepts_updates(spec))
    }
}
