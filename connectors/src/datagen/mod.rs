//! `datagen`: rows whose columns are SQL expressions over the global row index `seq`. Options:
//! `number-of-rows` (bounded; unset = unbounded), `rows-per-second` (total over all subtasks,
//! 0 = unlimited; or a schedule such as `1000 for 2 min, then 3000`, see `schedule.rs`),
//! `splits` (default: the source's parallelism), `batch-size` (4096). Every column needs an
//! `expr` whose type can be cast to the column's.

mod schedule;
mod source;

use schedule::RateSchedule;

use arrow::datatypes::DataType;
use sluice_common::failure::ClassedError;
use sluice_common::job::expr::compile_scalar;
use sluice_common::job::graph::seq_schema;
use sluice_common::job::spec::SourceSpec;
use sluice_common::job::{JobError, JobResult};

use crate::contract::{Source, SourceContext};
use crate::enumerator::{RoundRobinEnumerator, SplitEnumerator};
use crate::options::OptionReader;
use crate::registry::Connector;
use crate::splits::encode_position;

/// Rows a datagen subtask generates per batch unless `batch-size` says otherwise.
pub(crate) const DEFAULT_BATCH: usize = 4096;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DatagenOptions {
    /// `None` = unbounded.
    pub number_of_rows: Option<u64>,
    /// Total over all subtasks; a constant 0 = unlimited.
    pub rows_per_second: RateSchedule,
    pub splits: u32,
    pub batch_size: usize,
}

impl DatagenOptions {
    pub(crate) fn parse(spec: &SourceSpec, parallelism: u32) -> JobResult<DatagenOptions> {
        let (pos, id) = (spec.pos, &spec.id);
        let mut r = OptionReader::new(&spec.options, pos, format!("datagen source '{id}'"));
        let number_of_rows = r.parse::<u64>("number-of-rows", "a whole number")?;
        let rows_per_second = match r.get("rows-per-second") {
            None => RateSchedule::constant(0.0),
            Some((text, at)) => RateSchedule::parse(text)
                .map_err(|e| JobError::at(*at, format!("option 'rows-per-second' of source '{id}': {e}")))?,
        };
        let splits = r
            .parse::<u32>("splits", "a whole number of at least 1")?
            .unwrap_or(parallelism);
        if splits == 0 {
            return Err(JobError::at(pos, format!("splits of source '{id}' must be at least 1")));
        }
        let batch_size = r
            .parse::<usize>("batch-size", "a whole number of at least 1")?
            .unwrap_or(DEFAULT_BATCH);
        if batch_size == 0 {
            return Err(JobError::at(
                pos,
                format!("batch-size of source '{id}' must be at least 1"),
            ));
        }
        r.done()?;
        Ok(DatagenOptions {
            number_of_rows,
            rows_per_second,
            splits,
            batch_size,
        })
    }
}

pub(crate) struct Datagen;

impl Connector for Datagen {
    fn name(&self) -> &'static str {
        "datagen"
    }

    fn is_source(&self) -> bool {
        true
    }

    fn check_source(&self, spec: &SourceSpec, parallelism: u32) -> JobResult<()> {
        DatagenOptions::parse(spec, parallelism)?;
        let seq = seq_schema();
        let at = |pos, message: String| JobError::at(pos, format!("'{}': {message}", spec.id));
        for col in &spec.schema {
            let Some(expr) = &col.expr else {
                return Err(at(
                    col.pos,
                    format!("datagen column '{}' needs an 'expr' over seq", col.name),
                ));
            };
            let compiled =
                compile_scalar(expr, &seq).map_err(|e| at(col.pos, format!("column '{}': {e}", col.name)))?;
            let target = col.ty.arrow();
            if matches!(target, DataType::Timestamp(..))
                && matches!(
                    compiled.data_type,
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                )
            {
                return Err(at(
                    col.pos,
                    format!(
                        "column '{}' is a timestamp but its expression '{expr}' is a string; give milliseconds since the epoch over seq, or parse the text with to_timestamp(...)",
                        col.name
                    ),
                ));
            }
            if !arrow::compute::can_cast_types(&compiled.data_type, &target) {
                return Err(at(
                    col.pos,
                    format!(
                        "column '{}': expression type {} cannot become {}",
                        col.name,
                        compiled.data_type,
                        col.ty.arrow()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Splits 0..`splits`, each from its first row.
    fn enumerator(&self, spec: &SourceSpec, parallelism: u32) -> Result<Box<dyn SplitEnumerator>, ClassedError> {
        let splits = DatagenOptions::parse(spec, parallelism)?.splits;
        Ok(Box::new(RoundRobinEnumerator::new(move || {
            Ok((0..u64::from(splits))
                .map(|s| (format!("split-{s}"), encode_position(s, 0)))
                .collect())
        })))
    }

    fn create_source(&self, ctx: &SourceContext) -> Result<Box<dyn Source>, ClassedError> {
        let options = DatagenOptions::parse(ctx.spec, ctx.parallelism)?;
        Ok(Box::new(source::DatagenSource::new(
            &options,
            &ctx.spec.schema,
            ctx.schema.clone(),
            ctx.metrics.clone(),
        )?))
    }
}
