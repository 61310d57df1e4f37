//! The datagen reader. With `number-of-rows` the index range is cut into `splits` contiguous
//! ranges; without it each split s produces `s, s + splits, s + 2·splits, …` forever. Either
//! way the output is a pure function of the options, so tests can compute the expected result
//! themselves. `rows-per-second` limits the total over all subtasks (each reader takes its
//! splits' share), constant or on a schedule; a rate-limited reader reports the rows due but
//! not produced yet as `pendingRecords`. A split's position is its id and the number of rows
//! it produced.

use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, Int64Array};
use arrow::compute::cast;
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use sluice_common::failure::ClassedError;
use sluice_common::job::expr::{compile_scalar, CompiledExpr};
use sluice_common::job::graph::seq_schema;
use sluice_common::job::spec::ColumnSpec;

use super::schedule::RateSchedule;
use super::DatagenOptions;
use crate::contract::{OperatorMetrics, Source, SourcePoll, Split};
use crate::splits::{decode_position, encode_position};

struct DataSplit {
    /// Next k: the split's k-th row.
    next: u64,
    /// Bounded: rows `first..end` of the global index; unbounded: `id + k·stride`.
    first: u64,
    end: Option<u64>,
    id: u64,
}

pub(crate) struct DatagenSource {
    splits: Vec<DataSplit>,
    columns: Vec<(CompiledExpr, DataType)>,
    schema: SchemaRef,
    batch_size: usize,
    stride: u64,
    /// This reader's share of the schedule's rows (its splits of all).
    share: f64,
    /// When the reader stood at `origin` seconds into the schedule.
    started: Instant,
    origin: f64,
    produced: u64,
    turn: usize,
    schedule: RateSchedule,
    number_of_rows: Option<u64>,
    metrics: OperatorMetrics,
}

impl DatagenSource {
    fn split(&self, id: u64, next: u64) -> DataSplit {
        let total = self.stride;
        match self.number_of_rows {
            Some(n) => DataSplit {
                next,
                first: id * n / total,
                end: Some((id + 1) * n / total),
                id,
            },
            None => DataSplit {
                next,
                first: 0,
                end: None,
                id,
            },
        }
    }

    /// A reader with no splits yet (`add_splits` gives them).
    pub(crate) fn new(
        options: &DatagenOptions,
        columns: &[ColumnSpec],
        schema: SchemaRef,
        metrics: OperatorMetrics,
    ) -> Result<Self, ClassedError> {
        let seq = seq_schema();
        let columns = columns
            .iter()
            .map(|c| {
                let sql = c
                    .expr
                    .as_deref()
                    .ok_or_else(|| ClassedError::config(format!("datagen column '{}' has no expr", c.name)))?;
                Ok((compile_scalar(sql, &seq).map_err(ClassedError::user)?, c.ty.arrow()))
            })
            .collect::<Result<Vec<_>, ClassedError>>()?;
        Ok(DatagenSource {
            splits: Vec::new(),
            columns,
            schema,
            batch_size: options.batch_size,
            stride: u64::from(options.splits),
            share: 0.0,
            started: Instant::now(),
            origin: 0.0,
            produced: 0,
            turn: 0,
            schedule: options.rows_per_second.clone(),
            number_of_rows: options.number_of_rows,
            metrics,
        })
    }

    fn generate(&self, split: &DataSplit, n: u64) -> Result<RecordBatch, String> {
        let seq: Int64Array = match split.end {
            Some(_) => (split.first + split.next..split.first + split.next + n)
                .map(|v| v as i64)
                .collect(),
            None => (split.next..split.next + n)
                .map(|k| (split.id + k * self.stride) as i64)
                .collect(),
        };
        let input = RecordBatch::try_new(seq_schema(), vec![Arc::new(seq)]).map_err(|e| e.to_string())?;
        let arrays = self
            .columns
            .iter()
            .map(|(expr, ty)| {
                let a = expr.evaluate(&input)?;
                if a.data_type() == ty {
                    Ok(a)
                } else {
                    cast(&a, ty).map_err(|e| format!("casting '{}' to {ty}: {e}", expr.sql))
                }
            })
            .collect::<Result<Vec<ArrayRef>, String>>()?;
        RecordBatch::try_new(self.schema.clone(), arrays).map_err(|e| e.to_string())
    }
}

#[async_trait]
impl Source for DatagenSource {
    async fn next_batch(&mut self) -> Result<SourcePoll, ClassedError> {
        let open: Vec<usize> = (0..self.splits.len())
            .filter(|&i| {
                self.splits[i]
                    .end
                    .is_none_or(|end| self.splits[i].first + self.splits[i].next < end)
            })
            .collect();
        if open.is_empty() {
            return Ok(SourcePoll::Finished);
        }
        let mut want = self.batch_size as u64;
        if !self.schedule.unlimited() && self.share > 0.0 {
            let now = self.origin + self.started.elapsed().as_secs_f64();
            let base = self.schedule.rows_by(self.origin);
            let allowed = ((self.schedule.rows_by(now) - base) * self.share) as u64;
            self.metrics
                .set("pendingRecords", &[], allowed.saturating_sub(self.produced) as f64);
            if self.produced >= allowed {
                let next = base + (self.produced + 1) as f64 / self.share;
                return Ok(SourcePoll::Wait(self.schedule.wait_for(next, now)));
            }
            // Small batches at low rates keep rows (and watermarks) flowing smoothly.
            let rate = self.schedule.rate_at(now) * self.share;
            want = want
                .min((allowed - self.produced).max(1))
                .min(((rate / 10.0) as u64).max(1));
        }
        self.turn = (self.turn + 1) % open.len();
        let i = open[self.turn];
        let split = &self.splits[i];
        let n = match split.end {
            Some(end) => want.min(end - split.first - split.next),
            None => want,
        };
        let batch = self.generate(split, n)?;
        self.splits[i].next += n;
        self.produced += n;
        Ok(SourcePoll::Batch(batch, i))
    }

    fn split_count(&self) -> usize {
        self.splits.len()
    }

    fn split_finished(&self, i: usize) -> bool {
        self.splits
            .get(i)
            .is_none_or(|s| s.end.is_some_and(|end| s.first + s.next >= end))
    }

    fn snapshot_splits(&self) -> Vec<Split> {
        (0..self.splits.len())
            .filter(|i| !self.split_finished(*i))
            .map(|i| encode_position(self.splits[i].id, self.splits[i].next))
            .collect()
    }

    fn add_splits(&mut self, splits: Vec<Split>) -> Result<(), ClassedError> {
        for e in &splits {
            let (id, next) = decode_position(e)?;
            if id >= self.stride {
                return Err(ClassedError::config(format!(
                    "datagen split {id} does not exist (splits: {}); was 'splits' changed since the checkpoint?",
                    self.stride
                )));
            }
            self.splits.push(self.split(id, next));
        }
        self.share = self.splits.len() as f64 / self.stride as f64;
        // Resume the schedule where the splits stand: each split produces 1/stride of its rows.
        let mean_next = self.splits.iter().map(|s| s.next as f64).sum::<f64>() / self.splits.len().max(1) as f64;
        self.origin = self.schedule.time_of(mean_next * self.stride as f64);
        self.started = Instant::now();
        self.produced = 0;
        self.turn = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::AsArray;
    use arrow::datatypes::{Field, Int64Type, Schema};
    use sluice_common::job::types::ColumnType;
    use std::time::Duration;

    fn reader(rows: Option<u64>, splits: u32, p: u32, i: u32) -> DatagenSource {
        let options = DatagenOptions {
            number_of_rows: rows,
            rows_per_second: RateSchedule::constant(0.0),
            splits,
            batch_size: 7,
        };
        let cols = vec![ColumnSpec {
            name: "x".into(),
            ty: ColumnType::BigInt,
            expr: Some("seq * 2".into()),
            pos: Default::default(),
        }];
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, true)]));
        let mut r = DatagenSource::new(&options, &cols, schema, OperatorMetrics::default()).unwrap();
        let mine = (0..u64::from(splits)).filter(|s| s % u64::from(p) == u64::from(i));
        r.add_splits(mine.map(|s| encode_position(s, 0)).collect()).unwrap();
        r
    }

    fn poll(r: &mut DatagenSource) -> SourcePoll {
        block_on(r.next_batch()).unwrap()
    }

    /// The reader's futures never wait on I/O, so a current-thread runtime drives them.
    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn drain(mut r: DatagenSource) -> Vec<i64> {
        let mut out = Vec::new();
        loop {
            match poll(&mut r) {
                SourcePoll::Batch(b, _) => out.extend(b.column(0).as_primitive::<Int64Type>().values().iter().copied()),
                SourcePoll::Finished => return out,
                SourcePoll::Wait(_) => panic!("no rate limit set"),
            }
        }
    }

    #[test]
    fn bounded_splits_cover_every_row_once() {
        let mut all: Vec<i64> = (0..3).flat_map(|i| drain(reader(Some(100), 5, 3, i))).collect();
        all.sort_unstable();
        assert_eq!(all, (0..100).map(|v| v * 2).collect::<Vec<_>>());
    }

    #[test]
    fn unbounded_splits_interleave() {
        let mut r = reader(None, 2, 2, 1);
        let SourcePoll::Batch(b, _) = poll(&mut r) else {
            panic!("batch")
        };
        let v: Vec<i64> = b.column(0).as_primitive::<Int64Type>().values().to_vec();
        assert_eq!(v, vec![2, 6, 10, 14, 18, 22, 26]);
    }

    #[test]
    fn rate_limit_waits() {
        let options = DatagenOptions {
            number_of_rows: None,
            rows_per_second: RateSchedule::parse("10 for 1 min, then 20").unwrap(),
            splits: 1,
            batch_size: 100,
        };
        let cols = vec![ColumnSpec {
            name: "x".into(),
            ty: ColumnType::BigInt,
            expr: Some("seq".into()),
            pos: Default::default(),
        }];
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, true)]));
        let metrics = OperatorMetrics::default();
        let mut r = DatagenSource::new(&options, &cols, schema.clone(), metrics.clone()).unwrap();
        r.add_splits(vec![encode_position(0, 0)]).unwrap();
        assert!(matches!(poll(&mut r), SourcePoll::Wait(_)));
        // Behind the schedule: the rows due are the backlog.
        r.started -= Duration::from_secs(2);
        assert!(matches!(poll(&mut r), SourcePoll::Batch(..)));
        let pending = metrics
            .snapshot()
            .into_iter()
            .find(|(k, _)| k.0 == "pendingRecords")
            .map(|(_, v)| v);
        assert_eq!(pending, Some(20.0));
        // A restored reader resumes the schedule where its split stood (70 s in: rate 20).
        let mut r = DatagenSource::new(&options, &cols, schema, OperatorMetrics::default()).unwrap();
        r.add_splits(vec![encode_position(0, 800)]).unwrap();
        assert_eq!(r.origin, 70.0);
    }
}
