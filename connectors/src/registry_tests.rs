//! The registry's promise: a connector is its own code plus one registration. A toy source
//! (`counter`: `to` rows 0..to, one split per reader) is registered here and nowhere else, and
//! a job file using it compiles, enumerates and reads; the error for an unknown connector
//! lists the registered ones.

use arrow::array::Int64Array;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use sluice_common::failure::ClassedError;
use sluice_common::job::spec::SourceSpec;
use sluice_common::job::{GraphOptions, JobResult, NodeKind};
use sluice_frontend::compile_job;

use crate::contract::{Source, SourceContext, SourcePoll, Split};
use crate::enumerator::{RoundRobinEnumerator, SplitEnumerator};
use crate::options::OptionReader;
use crate::registry::{Connector, Registry};

struct Counter;

fn to(spec: &SourceSpec) -> JobResult<i64> {
    let mut r = OptionReader::new(&spec.options, spec.pos, format!("counter source '{}'", spec.id));
    let to = r.parse::<i64>("to", "a whole number")?.unwrap_or(10);
    r.done()?;
    Ok(to)
}

impl Connector for Counter {
    fn name(&self) -> &'static str {
        "counter"
    }

    fn is_source(&self) -> bool {
        true
    }

    fn check_source(&self, spec: &SourceSpec, _parallelism: u32) -> JobResult<()> {
        to(spec).map(|_| ())
    }

    fn enumerator(&self, _spec: &SourceSpec, _parallelism: u32) -> Result<Box<dyn SplitEnumerator>, ClassedError> {
        Ok(Box::new(RoundRobinEnumerator::new(|| {
            Ok(vec![("only".to_string(), vec![0])])
        })))
    }

    fn create_source(&self, ctx: &SourceContext) -> Result<Box<dyn Source>, ClassedError> {
        let to = to(ctx.spec)?;
        Ok(Box::new(CounterSource {
            schema: ctx.schema.clone(),
            to,
            splits: Vec::new(),
        }))
    }
}

struct CounterSource {
    schema: arrow::datatypes::SchemaRef,
    to: i64,
    splits: Vec<Split>,
}

#[async_trait]
impl Source for CounterSource {
    fn add_splits(&mut self, splits: Vec<Split>) -> Result<(), ClassedError> {
        self.splits.extend(splits);
        Ok(())
    }

    async fn next_batch(&mut self) -> Result<SourcePoll, ClassedError> {
        if self.splits.pop().is_none() {
            return Ok(SourcePoll::Finished);
        }
        let rows = Int64Array::from_iter_values(0..self.to);
        let batch = RecordBatch::try_new(self.schema.clone(), vec![std::sync::Arc::new(rows)])
            .map_err(|e| ClassedError::internal(e.to_string()))?;
        Ok(SourcePoll::Batch(batch, 0))
    }

    fn split_count(&self) -> usize {
        1
    }

    fn split_finished(&self, _i: usize) -> bool {
        self.splits.is_empty()
    }

    fn snapshot_splits(&self) -> Vec<Split> {
        self.splits.clone()
    }
}

const JOB: &str = "sources:\n  - id: c\n    connector: counter\n    options: {to: 5}\n    schema: [{name: n, type: bigint}]\nsinks:\n  - {id: o, input: c, connector: blackhole}\n";

#[test]
fn a_toy_connector_needs_only_its_code_and_one_registration() {
    let registry = Registry::builtin().with(Counter);
    let g = compile_job(JOB, "toy.yaml", &GraphOptions::default(), &registry).unwrap();
    let NodeKind::Source { spec } = &g.nodes[0].kind else {
        panic!("the first node is the source")
    };
    let connector = registry.source(spec).unwrap();
    let mut e = connector.enumerator(spec, 1).unwrap();
    e.discover().unwrap();
    let splits = e.assign(1).remove(0);
    let ctx = SourceContext {
        spec,
        schema: g.nodes[0].schema.clone(),
        parallelism: 1,
        subtask: 0,
        metrics: Default::default(),
    };
    let mut reader = connector.create_source(&ctx).unwrap();
    reader.add_splits(splits).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let SourcePoll::Batch(b, _) = rt.block_on(reader.next_batch()).unwrap() else {
        panic!("a batch")
    };
    assert_eq!(b.num_rows(), 5);
    assert!(matches!(rt.block_on(reader.next_batch()), Ok(SourcePoll::Finished)));

    // Its options are checked at submission like any built-in's.
    let bad = compile_job(
        &JOB.replace("to: 5", "to: five"),
        "toy.yaml",
        &GraphOptions::default(),
        &registry,
    );
    let e = bad.unwrap_err().to_string();
    assert!(
        e.contains("option 'to' of counter source 'c' must be a whole number, found 'five'"),
        "{e}"
    );
}

#[test]
fn an_unknown_connector_lists_the_registered_ones() {
    let e = compile_job(JOB, "toy.yaml", &GraphOptions::default(), &Registry::builtin()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "toy.yaml:2:7: unknown source connector 'counter' of 'c'; expected datagen, file or kafka"
    );
    let with = Registry::builtin().with(Counter);
    let e = compile_job(
        &JOB.replace("connector: counter", "connector: pulsar"),
        "toy.yaml",
        &GraphOptions::default(),
        &with,
    )
    .unwrap_err();
    assert!(
        e.to_string().ends_with("expected counter, datagen, file or kafka"),
        "{e}"
    );
    let e = compile_job(
        &JOB.replace("connector: blackhole", "connector: counter"),
        "toy.yaml",
        &GraphOptions::default(),
        &with,
    )
    .unwrap_err();
    assert!(
        e.to_string().contains(
            "unknown sink connector 'counter' of 'o'; expected blackhole, file, jdbc, kafka, postgres or print"
        ),
        "{e}"
    );
}
