//! `print`: JSON lines on the taskmanager's stdout, prefixed `N> ` with the 1-based subtask, as
//! Flink prints. No options.

use std::io::Write;

use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use sluice_common::failure::ClassedError;
use sluice_common::job::spec::SinkSpec;
use sluice_common::job::JobResult;

use crate::contract::{Sink, SinkContext};
use crate::options::OptionReader;
use crate::registry::Connector;

pub(crate) struct Print;

impl Connector for Print {
    fn name(&self) -> &'static str {
        "print"
    }

    fn is_sink(&self) -> bool {
        true
    }

    fn check_sink(&self, spec: &SinkSpec) -> JobResult<()> {
        OptionReader::new(&spec.options, spec.pos, format!("print sink '{}'", spec.id)).done()
    }

    fn create_sink(&self, ctx: &SinkContext) -> Result<Box<dyn Sink>, ClassedError> {
        Ok(Box::new(PrintSink {
            prefix: format!("{}> ", ctx.subtask + 1),
        }))
    }
}

/// Rows as JSON lines.
pub(crate) fn json_lines(batch: &RecordBatch) -> Result<Vec<u8>, ClassedError> {
    let mut buf = Vec::new();
    let mut w = arrow::json::LineDelimitedWriter::new(&mut buf);
    w.write(batch).map_err(|e| ClassedError::internal(e.to_string()))?;
    w.finish().map_err(|e| ClassedError::internal(e.to_string()))?;
    drop(w);
    Ok(buf)
}

struct PrintSink {
    prefix: String,
}

#[async_trait]
impl Sink for PrintSink {
    async fn write(&mut self, batch: RecordBatch) -> Result<(), ClassedError> {
        let text = json_lines(&batch)?;
        let mut out = Vec::with_capacity(text.len() + 16 * batch.num_rows());
        for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            out.extend_from_slice(self.prefix.as_bytes());
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        std::io::stdout()
            .lock()
            .write_all(&out)
            .map_err(|e| ClassedError::from(format!("print sink: {e}")))
    }
}
