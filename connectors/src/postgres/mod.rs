//! `postgres` (also `jdbc` with a `jdbc:postgresql://` URL, as a Flink user writes it): a sink
//! into a PostgreSQL table with Flink's JDBC option names (`options.rs`), checked against the
//! table before it writes (`table_check.rs`), writing rows as CSV `COPY` (`encode.rs`) in
//! upsert, at-least-once or exactly-once mode (`writer.rs`; prepared transactions in
//! `prepared.rs`), with connections under the sink's pool size (`pool.rs`) and retries of what
//! the server may get over (`retry.rs`).

mod encode;
mod options;
mod pool;
mod prepared;
mod retry;
mod table_check;
mod writer;

use sluice_common::failure::ClassedError;
use sluice_common::job::spec::SinkSpec;
use sluice_common::job::{JobError, JobResult};

use crate::contract::{Sink, SinkContext};
use crate::registry::Connector;
use options::{Mode, PgOptions};

pub(crate) struct Postgres {
    name: &'static str,
}

impl Postgres {
    pub(crate) const NAMED: Postgres = Postgres { name: "postgres" };
    pub(crate) const JDBC: Postgres = Postgres { name: "jdbc" };
}

impl Connector for Postgres {
    fn name(&self) -> &'static str {
        self.name
    }

    fn is_sink(&self) -> bool {
        true
    }

    fn check_sink(&self, spec: &SinkSpec) -> JobResult<()> {
        PgOptions::of(spec).map(|_| ())
    }

    /// Upsert mode (a primary key) applies updating streams.
    fn accepts_updates(&self, spec: &SinkSpec) -> bool {
        PgOptions::of(spec).is_ok_and(|o| o.mode == Mode::Upsert)
    }

    fn check_sink_checkpointing(&self, spec: &SinkSpec, interval: Option<std::time::Duration>) -> JobResult<()> {
        let options = PgOptions::of(spec)?;
        if options.mode == Mode::ExactlyOnce && interval.is_none() {
            return Err(JobError::at(
                spec.pos,
                format!(
                    "{} sink '{}' with sink.delivery-guarantee 'exactly-once' commits with checkpoints: set execution.checkpointing.interval",
                    spec.connector, spec.id
                ),
            ));
        }
        Ok(())
    }

    fn create_sink(&self, ctx: &SinkContext) -> Result<Box<dyn Sink>, ClassedError> {
        Ok(Box::new(writer::PgWriter::new(PgOptions::of(ctx.spec)?, ctx)?))
    }
}
