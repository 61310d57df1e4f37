//! `kafka`: Flink's Kafka source (FLIP-27 `KafkaSource`) with Flink SQL's option names
//! (`options.rs`). Splits are topic-partitions (`split.rs`) that the jobmanager's enumerator
//! finds and places with Flink's `getSplitOwner` (`enumerator.rs`, `owner.rs`); each subtask
//! reads its partitions by `assign()` and checkpoints the next offset of each (`source.rs`).
//! The sink (`sink.rs`) writes with none, at-least-once or exactly-once (transactions) delivery.

mod end_txn;
mod enumerator;
mod options;
mod owner;
mod polled;
mod sink;
mod source;
mod split;

use sluice_common::failure::ClassedError;
use sluice_common::job::spec::{SinkSpec, SourceSpec};
use sluice_common::job::JobResult;

use crate::contract::{Sink, SinkContext, Source, SourceContext};
use crate::enumerator::SplitEnumerator;
use crate::registry::Connector;
use options::KafkaSourceOptions;

pub(crate) struct Kafka;

impl Connector for Kafka {
    fn name(&self) -> &'static str {
        "kafka"
    }

    fn is_source(&self) -> bool {
        true
    }

    fn is_sink(&self) -> bool {
        true
    }

    fn check_source(&self, spec: &SourceSpec, _parallelism: u32) -> JobResult<()> {
        KafkaSourceOptions::of(spec).map(|_| ())
    }

    fn enumerator(&self, spec: &SourceSpec, _parallelism: u32) -> Result<Box<dyn SplitEnumerator>, ClassedError> {
        enumerator::enumerator(KafkaSourceOptions::of(spec)?)
    }

    fn create_source(&self, ctx: &SourceContext) -> Result<Box<dyn Source>, ClassedError> {
        Ok(Box::new(source::KafkaReader::new(
            KafkaSourceOptions::of(ctx.spec)?,
            ctx.schema.clone(),
            ctx.metrics.clone(),
        )?))
    }

    fn check_sink(&self, spec: &SinkSpec) -> JobResult<()> {
        sink::KafkaSinkOptions::of(spec).map(|_| ())
    }

    fn check_sink_checkpointing(&self, spec: &SinkSpec, interval: Option<std::time::Duration>) -> JobResult<()> {
        sink::KafkaSinkOptions::of(spec)?.check_checkpointing(spec, interval)
    }

    fn create_sink(&self, ctx: &SinkContext) -> Result<Box<dyn Sink>, ClassedError> {
        Ok(Box::new(sink::KafkaWriter::new(
            sink::KafkaSinkOptions::of(ctx.spec)?,
            ctx,
        )?))
    }
}
