//! `blackhole`: discards every row (Flink's blackhole connector). No options.

use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use sluice_common::failure::ClassedError;
use sluice_common::job::spec::SinkSpec;
use sluice_common::job::JobResult;

use crate::contract::{Sink, SinkContext};
use crate::options::OptionReader;
use crate::registry::Connector;

pub(crate) struct Blackhole;

impl Connector for Blackhole {
    fn name(&self) -> &'static str {
        "blackhole"
    }

    fn is_sink(&self) -> bool {
        true
    }

    fn check_sink(&self, spec: &SinkSpec) -> JobResult<()> {
        OptionReader::new(&spec.options, spec.pos, format!("blackhole sink '{}'", spec.id)).done()
    }

    fn create_sink(&self, _ctx: &SinkContext) -> Result<Box<dyn Sink>, ClassedError> {
        Ok(Box::new(Discard))
    }
}

struct Discard;

#[async_trait]
impl Sink for Discard {
    async fn write(&mut self, _batch: RecordBatch) -> Result<(), ClassedError> {
        Ok(())
    }
}
