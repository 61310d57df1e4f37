//! `blackhole`: discards every row, updates too (Flink's blackhole connector). Option `rows-per-second`
//! (total over all subtasks, 0 = unlimited, the default) makes it a slow sink that discards
//! no faster than that, for trying back-pressure, alerts and autoscaling without a real slow
//! system behind it.

use std::time::Duration;

use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use sluice_common::failure::ClassedError;
use sluice_common::job::spec::SinkSpec;
use sluice_common::job::{JobError, JobResult};
use tokio::time::Instant;

use crate::contract::{Sink, SinkContext};
use crate::options::OptionReader;
use crate::registry::Connector;

pub(crate) struct Blackhole;

/// The `rows-per-second` option, checked.
fn rows_per_second(spec: &SinkSpec) -> JobResult<f64> {
    let mut r = OptionReader::new(&spec.options, spec.pos, format!("blackhole sink '{}'", spec.id));
    let rate = r.parse::<f64>("rows-per-second", "a number")?.unwrap_or(0.0);
    r.done()?;
    if !(rate.is_finite() && rate >= 0.0) {
        return Err(JobError::at(
            spec.pos,
            format!("rows-per-second of sink '{}' must be 0 or more, not {rate}", spec.id),
        ));
    }
    Ok(rate)
}

impl Connector for Blackhole {
    fn name(&self) -> &'static str {
        "blackhole"
    }

    fn is_sink(&self) -> bool {
        true
    }

    fn check_sink(&self, spec: &SinkSpec) -> JobResult<()> {
        rows_per_second(spec).map(|_| ())
    }

    /// Discarding needs no keys: it takes a continuous aggregate's updates too (Flink's
    /// blackhole accepts every changelog).
    fn accepts_updates(&self, _spec: &SinkSpec) -> bool {
        true
    }

    fn create_sink(&self, ctx: &SinkContext) -> Result<Box<dyn Sink>, ClassedError> {
        let rate = rows_per_second(ctx.spec)?;
        Ok(Box::new(Discard {
            rate: rate / f64::from(ctx.parallelism.max(1)),
            free_at: None,
        }))
    }
}

struct Discard {
    /// Rows per second for this subtask; 0 = unlimited.
    rate: f64,
    /// When the rows discarded so far are paid for.
    free_at: Option<Instant>,
}

#[async_trait]
impl Sink for Discard {
    async fn write(&mut self, batch: RecordBatch) -> Result<(), ClassedError> {
        if self.rate > 0.0 {
            let now = Instant::now();
            let start = self.free_at.filter(|t| *t > now).unwrap_or(now);
            let due = start + Duration::from_secs_f64(batch.num_rows() as f64 / self.rate);
            self.free_at = Some(due);
            tokio::time::sleep_until(due).await;
        }
        Ok(())
    }
}
