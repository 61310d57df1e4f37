//! The PostgreSQL sink writer of one subtask. Rows are buffered and flushed every
//! `sink.buffer-flush.max-rows` rows or `sink.buffer-flush.interval`, and at every barrier:
//!
//! - at-least-once: `COPY` in autocommit;
//! - upsert: `COPY` into a session temp table, then `INSERT … SELECT … ON CONFLICT (pk) DO
//!   UPDATE` in one transaction (the last row of each key only), idempotent on replay;
//! - exactly-once: the checkpoint's rows go into one transaction (`COPY` at each flush while
//!   the writer may keep its connection, else all at the barrier), `PREPARE TRANSACTION` at the
//!   barrier and `COMMIT PREPARED` when the checkpoint completes. The checkpoint's rows stay in
//!   memory until prepared, so a broken connection is retried by replaying them into a new
//!   transaction. After a restore each subtask commits its share of the restored transactions;
//!   at its first barrier subtask 0 rolls back what earlier attempts prepared that no
//!   checkpoint holds.
//!
//! A failure the server may get over (connection lost, shutting down, starting up) is retried
//! `sink.max-retries` times with back-off (1 s, 2 s, 4 s, …) on a new connection; then the task
//! fails with a transient error and the restart strategy takes over.

use std::collections::HashSet;
use std::time::Instant;

use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use bytes::Bytes;
use futures::SinkExt;
use serde_json::{json, Value};
use sluice_common::failure::ClassedError;
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use super::encode::{csv_rows, last_per_key};
use super::options::{quote_ident, Mode, PgOptions};
use super::pool::{lease, Lease};
use super::prepared::{self, literal};
use super::retry::{backoff, retryable, sql_error, Failure};
use super::table_check::check_table;
use crate::contract::{Committable, Permits, Sink, SinkContext};
use crate::failpoint::failpoint;

/// The session temp table upserts are staged in.
const STAGE: &str = "pg_temp.sluice_stage";

enum Op {
    /// Write the buffered rows (by the mode).
    Flush,
    /// Exactly-once: everything of the checkpoint into the transaction, then prepare it.
    Prepare(String),
    /// `COMMIT PREPARED`.
    Commit(String),
    /// Only connect (and do the checks that come with a first connection).
    Connect,
    /// Roll back what other attempts prepared that the restored checkpoint does not hold.
    CleanUp,
}

pub(crate) struct PgWriter {
    options: PgOptions,
    permits: Option<std::sync::Arc<dyn Permits>>,
    schema: SchemaRef,
    subtask: u32,
    attempt: u64,
    /// More subtasks than connections: hold one only while writing.
    shared: bool,
    key: Vec<usize>,
    copy_sql: String,
    /// Upsert: the session temp table rows are staged in (made on each new connection).
    stage_sql: String,
    upsert_sql: String,
    lease: Option<Lease>,
    checked: bool,
    pending: Vec<RecordBatch>,
    pending_rows: usize,
    last_flush: Instant,
    /// At-least-once and upsert: the rows of the flush under way.
    out: Vec<u8>,
    /// Exactly-once: the rows of the checkpoint under way, and how many bytes of them the open
    /// transaction holds.
    txn_rows: Vec<u8>,
    txn_copied: usize,
    txn_open: bool,
    /// The names the restored checkpoint holds (never rolled back by the clean-up).
    restored: HashSet<String>,
    cleaned: bool,
}

impl PgWriter {
    pub(crate) fn new(options: PgOptions, ctx: &SinkContext) -> Result<PgWriter, ClassedError> {
        let schema = ctx.schema.clone();
        let columns: Vec<String> = schema.fields().iter().map(|f| quote_ident(f.name())).collect();
        let cols = columns.join(", ");
        let mut key = Vec::new();
        for k in &options.primary_key {
            key.push(schema.index_of(k).map_err(|_| {
                ClassedError::config(format!(
                    "primary-key column '{k}' of the sink into table '{}' is not a column of the stream",
                    options.table_name()
                ))
            })?);
        }
        let table = options.qualified_table();
        let copy_sql = match options.mode {
            Mode::Upsert => format!("COPY {STAGE} ({cols}) FROM STDIN (FORMAT csv)"),
            _ => format!("COPY {table} ({cols}) FROM STDIN (FORMAT csv)"),
        };
        let pk: Vec<String> = options.primary_key.iter().map(|k| quote_ident(k)).collect();
        let updates: Vec<String> = schema
            .fields()
            .iter()
            .filter(|f| !options.primary_key.contains(f.name()))
            .map(|f| format!("{c} = EXCLUDED.{c}", c = quote_ident(f.name())))
            .collect();
        let on_conflict = if updates.is_empty() {
            "DO NOTHING".to_string()
        } else {
            format!("DO UPDATE SET {}", updates.join(", "))
        };
        let upsert_sql = format!(
            "INSERT INTO {table} ({cols}) SELECT {cols} FROM {STAGE} ON CONFLICT ({}) {on_conflict}; TRUNCATE {STAGE}",
            pk.join(", ")
        );
        let stage_sql =
            format!("CREATE TEMP TABLE IF NOT EXISTS sluice_stage AS SELECT {cols} FROM {table} WITH NO DATA");
        Ok(PgWriter {
            stage_sql,
            shared: ctx.parallelism > options.pool_max,
            permits: ctx.permits.clone(),
            options,
            schema,
            subtask: ctx.subtask,
            attempt: ctx.attempt,
            key,
            copy_sql,
            upsert_sql,
            lease: None,
            checked: false,
            pending: Vec::new(),
            pending_rows: 0,
            last_flush: Instant::now(),
            out: Vec::new(),
            txn_rows: Vec::new(),
            txn_copied: 0,
            txn_open: false,
            restored: HashSet::new(),
            cleaned: false,
        })
    }

    /// What a new connection does first: the table check (once) and the upsert stage table.
    async fn on_connect(&mut self, client: &Client) -> Result<(), Failure> {
        if !self.checked {
            check_table(client, &self.options, &self.schema).await?;
            if self.options.mode == Mode::ExactlyOnce {
                let row = client
                    .query_one("SELECT current_setting('max_prepared_transactions')::int", &[])
                    .await?;
                if row.get::<_, i32>(0) == 0 {
                    return Err(Failure::Other(ClassedError::config(format!(
                        "PostgreSQL {} has max_prepared_transactions = 0, so the exactly-once sink into table '{}' cannot prepare transactions: set max_prepared_transactions (postgresql.conf; at least twice the sink's parallelism) and restart the server, or use sink.delivery-guarantee: at-least-once",
                        self.options.server(),
                        self.options.table_name()
                    ))));
                }
            }
            self.checked = true;
        }
        if self.options.mode == Mode::Upsert {
            client.batch_execute(&self.stage_sql).await?;
        }
        Ok(())
    }

    /// A new connection under a permit, set up by `on_connect`.
    async fn connect(&mut self) -> Result<Lease, Failure> {
        let l = lease(&self.options, self.permits.as_ref()).await?;
        self.on_connect(l.client()?).await?;
        Ok(l)
    }

    /// One try of `op` on the current connection (opened first when there is none).
    async fn try_op(&mut self, op: &Op, lease: &Lease) -> Result<(), Failure> {
        let client = lease.client()?;
        match op {
            Op::Connect => Ok(()),
            Op::Flush => match self.options.mode {
                Mode::AtLeastOnce => copy(client, &self.copy_sql, &self.out)
                    .await
                    .map(|_| ())
                    .map_err(Failure::Pg),
                Mode::Upsert => {
                    client.batch_execute("BEGIN").await?;
                    copy(client, &self.copy_sql, &self.out).await?;
                    client.batch_execute(&self.upsert_sql).await?;
                    client.batch_execute("COMMIT").await.map_err(Failure::Pg)
                }
                Mode::ExactlyOnce => self.copy_into_txn(client).await,
            },
            Op::Prepare(gid) => {
                self.copy_into_txn(client).await?;
                let prepared = client
                    .batch_execute(&format!("PREPARE TRANSACTION {}", literal(gid)))
                    .await;
                self.forget_txn();
                match prepared {
                    Err(e) if e.code() == Some(&SqlState::DUPLICATE_OBJECT) => {
                        // A retry of a prepare whose answer was lost: it is prepared already.
                        client.batch_execute("ROLLBACK").await?;
                        Ok(())
                    }
                    other => other.map_err(Failure::Pg),
                }
            }
            Op::Commit(gid) => {
                if self.txn_open {
                    // COMMIT PREPARED cannot run inside a transaction block, and rows of the
                    // next checkpoint may already be copied into one (a flush between the
                    // prepare and the checkpoint's completion). It holds only rows kept in
                    // `txn_rows`: roll it back, and the next flush copies them again.
                    client.batch_execute("ROLLBACK").await?;
                    self.forget_txn();
                }
                prepared::commit(client, gid).await.map_err(Failure::Pg)
            }
            Op::CleanUp => {
                let gone =
                    prepared::roll_back_lingering(client, &self.options.txn_prefix, self.attempt, &self.restored)
                        .await?;
                if !gone.is_empty() {
                    tracing::info!(
                        "Rolled back {} prepared transaction(s) of earlier attempts into table '{}' that no checkpoint holds: {}",
                        gone.len(),
                        self.options.table_name(),
                        gone.join(", ")
                    );
                }
                Ok(())
            }
        }
    }

    /// The open transaction ended (prepared, rolled back or lost with its connection): the
    /// checkpoint's rows still in `txn_rows` go into the next one.
    fn forget_txn(&mut self) {
        self.txn_open = false;
        self.txn_copied = 0;
    }

    /// Exactly-once: opens the transaction when needed and copies the rows it lacks.
    async fn copy_into_txn(&mut self, client: &Client) -> Result<(), Failure> {
        if !self.txn_open {
            client.batch_execute("BEGIN").await?;
            self.txn_open = true;
            self.txn_copied = 0;
        }
        if self.txn_copied < self.txn_rows.len() {
            copy(client, &self.copy_sql, &self.txn_rows[self.txn_copied..]).await?;
            self.txn_copied = self.txn_rows.len();
        }
        Ok(())
    }

    /// Runs `op`, retrying on a new connection what the server may get over.
    async fn run(&mut self, op: Op, what: &str) -> Result<(), ClassedError> {
        let mut retries = 0;
        loop {
            let lease = match self.lease.take() {
                Some(l) => Ok(l),
                None => self.connect().await,
            };
            let result = match lease {
                Ok(l) => {
                    let r = self.try_op(&op, &l).await;
                    // Keep the connection unless it broke or the pool is shared (and no
                    // transaction needs it until the barrier).
                    let keep = match &r {
                        Ok(()) => !self.shared || self.txn_open,
                        Err(Failure::Pg(e)) => !retryable(e) && !l.is_closed(),
                        Err(Failure::Other(_)) => true,
                    };
                    if keep {
                        self.lease = Some(l);
                    }
                    r
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => return Ok(()),
                Err(Failure::Other(e)) => return Err(e),
                Err(Failure::Pg(e)) if retryable(&e) && retries < self.options.max_retries => {
                    retries += 1;
                    // A broken connection took its open transaction with it.
                    self.lease = None;
                    self.forget_txn();
                    let wait = backoff(retries);
                    tracing::warn!(
                        "PostgreSQL {} table '{}': {what} failed ({e}); retry {retries} of {} in {wait:?}",
                        self.options.server(),
                        self.options.table_name(),
                        self.options.max_retries
                    );
                    tokio::time::sleep(wait).await;
                }
                Err(Failure::Pg(e)) => {
                    let mut err = sql_error(&self.options, what, &e);
                    if retries > 0 {
                        err = ClassedError::new(err.class, format!("{} (after {retries} retries)", err.message));
                    }
                    return Err(err);
                }
            }
        }
    }

    /// Writes what is buffered (exactly-once: into the open transaction, unless the writer
    /// takes turns for connections: then it waits for the barrier).
    async fn flush(&mut self, barrier: bool) -> Result<(), ClassedError> {
        self.last_flush = Instant::now();
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch = concat_batches(&self.schema, &self.pending)
            .map_err(|e| ClassedError::internal(format!("cannot join the buffered rows: {e}")))?;
        self.pending.clear();
        self.pending_rows = 0;
        match self.options.mode {
            Mode::ExactlyOnce => {
                csv_rows(&batch, &mut self.txn_rows)?;
                // At the barrier the prepare copies them; a writer taking turns waits for it.
                if barrier || self.shared {
                    return Ok(());
                }
                self.run(Op::Flush, "writing rows into the checkpoint's transaction")
                    .await
            }
            Mode::Upsert => {
                let batch = last_per_key(&batch, &self.key)?;
                self.out.clear();
                csv_rows(&batch, &mut self.out)?;
                self.run(Op::Flush, "upserting rows").await
            }
            Mode::AtLeastOnce => {
                self.out.clear();
                csv_rows(&batch, &mut self.out)?;
                self.run(Op::Flush, "copying rows").await
            }
        }
    }
}

/// `COPY … FROM STDIN` of `data` (CSV rows), sent in pieces of at most 1 MiB.
async fn copy(client: &Client, sql: &str, data: &[u8]) -> Result<u64, tokio_postgres::Error> {
    let sink = client.copy_in::<_, Bytes>(sql).await?;
    futures::pin_mut!(sink);
    for piece in data.chunks(1 << 20) {
        sink.send(Bytes::copy_from_slice(piece)).await?;
    }
    sink.finish().await
}

#[async_trait]
impl Sink for PgWriter {
    /// The table check at start (`run` gives the connection back when the pool is shared).
    async fn open(&mut self) -> Result<(), ClassedError> {
        self.run(Op::Connect, "connecting").await
    }

    async fn write(&mut self, batch: RecordBatch) -> Result<(), ClassedError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.pending_rows += batch.num_rows();
        self.pending.push(batch);
        if self.pending_rows >= self.options.max_rows || self.last_flush.elapsed() >= self.options.flush_interval {
            self.flush(false).await?;
        }
        Ok(())
    }

    async fn pre_commit(&mut self, checkpoint_id: u64) -> Result<Vec<Committable>, ClassedError> {
        if self.options.mode == Mode::ExactlyOnce && self.subtask == 0 && !self.cleaned {
            // At the first barrier: every subtask has recovered its share of the restored
            // transactions by now (recovery precedes reading), so `restored` is complete.
            self.run(Op::CleanUp, "rolling back prepared transactions of earlier attempts")
                .await?;
            self.cleaned = true;
        }
        self.flush(true).await?;
        if self.options.mode != Mode::ExactlyOnce || (self.txn_rows.is_empty() && !self.txn_open) {
            return Ok(Vec::new());
        }
        let gid = prepared::gid(&self.options.txn_prefix, self.attempt, self.subtask, checkpoint_id);
        self.run(Op::Prepare(gid.clone()), "preparing the checkpoint's transaction")
            .await?;
        self.txn_rows.clear();
        Ok(vec![json!({"gid": gid, "checkpoint": checkpoint_id})
            .to_string()
            .into_bytes()])
    }

    async fn recover(&mut self, mine: Vec<Committable>, all: &[Committable]) -> Result<(), ClassedError> {
        self.restored = all
            .iter()
            .filter_map(|c| serde_json::from_slice::<Value>(c).ok())
            .filter_map(|v| v["gid"].as_str().map(str::to_string))
            .collect();
        self.commit(mine).await
    }

    async fn commit(&mut self, committables: Vec<Committable>) -> Result<(), ClassedError> {
        for c in committables {
            let v: Value = serde_json::from_slice(&c)
                .map_err(|e| ClassedError::internal(format!("a PostgreSQL committable is not usable: {e}")))?;
            let Some(gid) = v["gid"].as_str().map(str::to_string) else {
                continue;
            };
            if failpoint("postgres-sink-before-commit") {
                tracing::error!("Failpoint postgres-sink-before-commit: crashing before COMMIT PREPARED {gid}.");
                std::process::abort();
            }
            self.run(Op::Commit(gid.clone()), "committing a prepared transaction")
                .await?;
            tracing::debug!("Committed prepared transaction {gid}.");
        }
        Ok(())
    }
}
