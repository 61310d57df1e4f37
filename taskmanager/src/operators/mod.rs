//! Operators and the operator chain a subtask runs: each takes whole batches and emits batches;
//! watermarks pass through the chain in order, so rows a window emits on a watermark reach the
//! operators after it before they see that watermark.

mod filter;
mod select;
pub mod window;

use arrow::record_batch::RecordBatch;

pub use filter::Filter;
pub use select::Select;

pub trait Operator: Send {
    fn process(&mut self, batch: RecordBatch, out: &mut Vec<RecordBatch>) -> Result<(), String>;

    /// Event time reached `watermark`.
    fn on_watermark(&mut self, _watermark: i64, _out: &mut Vec<RecordBatch>) -> Result<(), String> {
        Ok(())
    }

    /// Wall-clock tick for processing-time operators.
    fn on_processing_time(&mut self, _now_ms: i64, _out: &mut Vec<RecordBatch>) -> Result<(), String> {
        Ok(())
    }

    /// Input ended (after the final watermark): flush and close.
    fn finish(&mut self, _out: &mut Vec<RecordBatch>) -> Result<(), String> {
        Ok(())
    }

    /// Whether it needs `on_processing_time` ticks.
    fn uses_processing_time(&self) -> bool {
        false
    }
}

/// Operators chained in one subtask.
pub struct Chain {
    ops: Vec<Box<dyn Operator>>,
}

impl Chain {
    pub fn new(ops: Vec<Box<dyn Operator>>) -> Chain {
        Chain { ops }
    }

    pub fn uses_processing_time(&self) -> bool {
        self.ops.iter().any(|o| o.uses_processing_time())
    }

    fn run_from(&mut self, k: usize, mut batches: Vec<RecordBatch>) -> Result<Vec<RecordBatch>, String> {
        for op in &mut self.ops[k..] {
            if batches.is_empty() {
                break;
            }
            let mut next = Vec::new();
            for b in batches {
                op.process(b, &mut next)?;
            }
            batches = next;
        }
        Ok(batches)
    }

    /// Runs a batch through the chain; returns what leaves its end.
    pub fn process(&mut self, batch: RecordBatch) -> Result<Vec<RecordBatch>, String> {
        self.run_from(0, vec![batch])
    }

    fn each(
        &mut self,
        mut call: impl FnMut(&mut dyn Operator, &mut Vec<RecordBatch>) -> Result<(), String>,
    ) -> Result<Vec<RecordBatch>, String> {
        let mut outputs = Vec::new();
        for k in 0..self.ops.len() {
            let mut emitted = Vec::new();
            call(self.ops[k].as_mut(), &mut emitted)?;
            outputs.extend(self.run_from(k + 1, emitted)?);
        }
        Ok(outputs)
    }

    pub fn watermark(&mut self, watermark: i64) -> Result<Vec<RecordBatch>, String> {
        self.each(|op, out| op.on_watermark(watermark, out))
    }

    pub fn processing_time(&mut self, now_ms: i64) -> Result<Vec<RecordBatch>, String> {
        self.each(|op, out| op.on_processing_time(now_ms, out))
    }

    pub fn finish(&mut self) -> Result<Vec<RecordBatch>, String> {
        self.each(|op, out| op.finish(out))
    }
}
