//! The Kafka sink (Flink's `KafkaSink`) with Flink SQL's option names: `topic`,
//! `properties.bootstrap.servers` and any `properties.*`, `sink.delivery-guarantee`
//! (`none`, `at-least-once` (default), `exactly-once`), `sink.transactional-id-prefix`
//! (required for exactly-once), `key.fields` (`;`-separated columns, written as a JSON object
//! key), `sink.partitioner` (`default`: Kafka's, by key; `fixed`: subtask i → partition
//! i mod n; `round-robin`), `format` (`json` (default), `csv`, `raw`).
//!
//! - at-least-once: every barrier waits until the broker acknowledged every record sent
//!   (a delivery error fails the job: nothing is lost silently).
//! - exactly-once: one transaction per checkpoint and subtask, flushed at the barrier and
//!   committed when the checkpoint completes; a new transaction starts at once. Transactional
//!   ids come from a pool per subtask, `<prefix>-<subtask>-<slot>` (slot < `ID_POOL`), never
//!   one a precommitted transaction still holds. A committable names the transaction and the
//!   producer id and epoch it runs under (from librdkafka's statistics). After a crash between
//!   a checkpoint's completion and the commit, the restored committables are committed by the
//!   wire protocol (`end_txn.rs`): the gap Arroyo leaves open is closed. Then every id of the
//!   pool is fenced, which aborts what the crashed attempt left open.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::array::{Array, AsArray};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientConfig, ClientContext};
use serde_json::{json, Value};
use sluice_common::failure::{ClassedError, FailureClass};
use sluice_common::job::spec::SinkSpec;
use sluice_common::job::{JobError, JobResult};

use super::end_txn;
use super::options::{client_properties, value_format, ValueFormat};
use crate::contract::{Committable, Sink, SinkContext};
use crate::failpoint::failpoint;
use crate::options::{choice, OptionReader};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Guarantee {
    None,
    AtLeastOnce,
    ExactlyOnce,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Partitioner {
    Default,
    Fixed,
    RoundRobin,
}

#[derive(Debug, Clone)]
pub(crate) struct KafkaSinkOptions {
    pub topic: String,
    pub properties: BTreeMap<String, String>,
    pub guarantee: Guarantee,
    pub prefix: Option<String>,
    pub key_fields: Vec<String>,
    pub partitioner: Partitioner,
    pub format: ValueFormat,
}

/// How long a flush or a transaction step may take.
const BROKER_WAIT: Duration = Duration::from_secs(60);
/// Transactional ids per subtask: at most this many transactions may wait for their commit.
const ID_POOL: u64 = 8;

impl KafkaSinkOptions {
    pub(crate) fn of(spec: &SinkSpec) -> JobResult<KafkaSinkOptions> {
        let what = format!("kafka sink '{}'", spec.id);
        let mut r = OptionReader::new(&spec.options, spec.pos, what.clone());
        let topic = r
            .get("topic")
            .map(|(t, _)| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| JobError::at(spec.pos, format!("{what} needs the option 'topic'")))?;
        let properties = client_properties(&mut r, &what)?;
        let guarantee = choice(
            &mut r,
            "sink.delivery-guarantee",
            Guarantee::AtLeastOnce,
            &[
                ("none", Guarantee::None),
                ("at-least-once", Guarantee::AtLeastOnce),
                ("exactly-once", Guarantee::ExactlyOnce),
            ],
            &what,
        )?;
        let prefix = r.get("sink.transactional-id-prefix").map(|(p, _)| p.trim().to_string());
        if guarantee == Guarantee::ExactlyOnce && prefix.as_deref().is_none_or(str::is_empty) {
            return Err(JobError::at(
                spec.pos,
                format!("{what}: EXACTLY_ONCE delivery guarantee requires a transactionalIdPrefix to be set to provide unique transaction names across multiple KafkaSinks writing to the same Kafka cluster (option 'sink.transactional-id-prefix')"),
            ));
        }
        let key_fields: Vec<String> = r
            .get("key.fields")
            .map(|(k, _)| {
                k.split(';')
                    .map(str::trim)
                    .filter(|k| !k.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let partitioner = choice(
            &mut r,
            "sink.partitioner",
            Partitioner::Default,
            &[
                ("default", Partitioner::Default),
                ("fixed", Partitioner::Fixed),
                ("round-robin", Partitioner::RoundRobin),
            ],
            &what,
        )?;
        let format = value_format(&mut r, &what)?;
        r.done()?;
        Ok(KafkaSinkOptions {
            topic,
            properties,
            guarantee,
            prefix,
            key_fields,
            partitioner,
            format,
        })
    }

    /// Exactly-once needs checkpoints, and a transaction that lives through a checkpoint
    /// interval: `transaction.timeout.ms` (librdkafka's default 60000) must be at least twice
    /// the interval, else the broker aborts a transaction before its checkpoint commits it.
    pub(crate) fn check_checkpointing(&self, spec: &SinkSpec, interval: Option<Duration>) -> JobResult<()> {
        if self.guarantee != Guarantee::ExactlyOnce {
            return Ok(());
        }
        let what = format!("kafka sink '{}'", spec.id);
        let Some(interval) = interval else {
            return Err(JobError::at(
                spec.pos,
                format!("{what}: the EXACTLY_ONCE delivery guarantee commits with checkpoints; set execution.checkpointing.interval"),
            ));
        };
        let timeout = match self.properties.get("transaction.timeout.ms") {
            None => Duration::from_millis(60_000),
            Some(t) => Duration::from_millis(t.trim().parse::<u64>().map_err(|_| {
                JobError::at(
                    spec.pos,
                    format!(
                        "{what}: properties.transaction.timeout.ms must be a whole number of milliseconds, found '{t}'"
                    ),
                )
            })?),
        };
        if timeout < interval * 2 {
            return Err(JobError::at(
                spec.pos,
                format!(
                    "{what}: transaction.timeout.ms ({} ms) must be at least twice the checkpoint interval ({} ms), or the broker aborts transactions before their checkpoint commits them (data loss); raise properties.transaction.timeout.ms (within the broker's transaction.max.timeout.ms) or checkpoint more often",
                    timeout.as_millis(),
                    interval.as_millis()
                ),
            ));
        }
        Ok(())
    }

    fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }
}

fn transient(what: String) -> ClassedError {
    ClassedError::new(FailureClass::Transient, what)
}

/// Remembers the first delivery error, which fails the next flush, and the producer id and
/// epoch librdkafka's statistics report.
#[derive(Default)]
struct Deliveries {
    error: Mutex<Option<String>>,
    producer: Mutex<Option<(i64, i16)>>,
}

impl ClientContext for Deliveries {
    fn stats(&self, statistics: rdkafka::Statistics) {
        if let Some(eos) = statistics.eos {
            if eos.producer_id >= 0 {
                let epoch = i16::try_from(eos.producer_epoch).unwrap_or(-1);
                *self.producer.lock().unwrap_or_else(|p| p.into_inner()) = Some((eos.producer_id, epoch));
            }
        }
    }
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            let mut slot = self.error.lock().unwrap_or_else(|p| p.into_inner());
            slot.get_or_insert_with(|| e.to_string());
        }
    }
}

type KafkaProducer = BaseProducer<Deliveries>;

/// A row's value and key bytes.
type EncodedRow = (Vec<u8>, Option<Vec<u8>>);

/// A producer and, for exactly-once, the transactional id it holds.
struct Txn {
    producer: Arc<KafkaProducer>,
    id: Option<String>,
    slot: u64,
    records: u64,
}

pub(crate) struct KafkaWriter {
    options: KafkaSinkOptions,
    schema: SchemaRef,
    subtask: u32,
    key_columns: Vec<usize>,
    current: Option<Txn>,
    /// Transactions flushed at a barrier, by checkpoint, committed when it completes.
    precommitted: BTreeMap<u64, Txn>,
    /// Where the search for a free transactional id starts.
    next_txn: u64,
    partitions: Option<i32>,
    next_partition: i32,
    /// Whether this attempt fenced the pool's ids yet (before its first transaction).
    fenced: bool,
    /// Transactional ids the restored checkpoint holds (some subtask commits each): never
    /// fenced or reused by this attempt.
    reserved: std::collections::HashSet<String>,
}

/// Runs a blocking producer call off the async workers.
async fn blocking<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> Result<T, ClassedError> + Send + 'static,
) -> Result<T, ClassedError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ClassedError::internal(format!("{what}: {e}")))?
}

impl KafkaWriter {
    pub(crate) fn new(options: KafkaSinkOptions, ctx: &SinkContext) -> Result<KafkaWriter, ClassedError> {
        let key_columns = options
            .key_fields
            .iter()
            .map(|k| {
                ctx.schema.index_of(k).map_err(|_| {
                    ClassedError::config(format!("key.fields of kafka sink '{}': no column '{k}'", ctx.spec.id))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(KafkaWriter {
            options,
            schema: ctx.schema.clone(),
            subtask: ctx.subtask,
            key_columns,
            current: None,
            precommitted: BTreeMap::new(),
            next_txn: 0,
            partitions: None,
            next_partition: 0,
            fenced: false,
            reserved: Default::default(),
        })
    }

    fn transactional_id(&self, slot: u64) -> String {
        format!(
            "{}-{}-{slot}",
            self.options.prefix.as_deref().unwrap_or("sluice"),
            self.subtask
        )
    }

    /// A pool slot no precommitted transaction holds.
    fn free_slot(&mut self) -> Result<u64, ClassedError> {
        for _ in 0..ID_POOL {
            let slot = self.next_txn % ID_POOL;
            self.next_txn += 1;
            if !self.precommitted.values().any(|t| t.slot == slot)
                && !self.reserved.contains(&self.transactional_id(slot))
            {
                return Ok(slot);
            }
        }
        Err(transient(format!(
            "kafka sink: {ID_POOL} transactions wait for their checkpoints to complete; no transactional id is free"
        )))
    }

    /// A producer for the next transaction (exactly-once: `init_transactions` fences whatever
    /// an earlier holder of the id left open, then `begin_transaction`).
    async fn open(&mut self) -> Result<(), ClassedError> {
        if self.current.is_some() {
            return Ok(());
        }
        if !self.fenced {
            self.fence_lingering().await?;
            self.fenced = true;
        }
        let exactly_once = self.options.guarantee == Guarantee::ExactlyOnce;
        let mut config = self.options.client_config();
        let slot = if exactly_once { self.free_slot()? } else { 0 };
        let id = exactly_once.then(|| self.transactional_id(slot));
        if let Some(id) = &id {
            config.set("transactional.id", id);
            // The statistics carry the producer id and epoch a committable must name.
            config.set("statistics.interval.ms", "100");
        }
        let topic = self.options.topic.clone();
        let txn = blocking("opening a Kafka producer", move || {
            let producer: KafkaProducer = config
                .create_with_context(Deliveries::default())
                .map_err(|e| ClassedError::config(format!("cannot create a Kafka producer: {e}")))?;
            if exactly_once {
                producer
                    .init_transactions(BROKER_WAIT)
                    .map_err(|e| transient(format!("initializing Kafka transactions failed: {e}")))?;
                producer
                    .begin_transaction()
                    .map_err(|e| transient(format!("beginning a Kafka transaction failed: {e}")))?;
            }
            let partitions = producer
                .client()
                .fetch_metadata(Some(&topic), BROKER_WAIT)
                .ok()
                .and_then(|md| {
                    md.topics()
                        .iter()
                        .find(|t| t.name() == topic)
                        .map(|t| t.partitions().len() as i32)
                });
            Ok((producer, partitions))
        })
        .await?;
        self.partitions = txn.1.filter(|n| *n > 0);
        self.current = Some(Txn {
            producer: Arc::new(txn.0),
            id,
            slot,
            records: 0,
        });
        Ok(())
    }

    /// Fences the transactional ids an earlier attempt of this subtask may have left open.
    async fn fence_lingering(&mut self) -> Result<(), ClassedError> {
        if self.options.guarantee != Guarantee::ExactlyOnce {
            return Ok(());
        }
        for slot in 0..ID_POOL {
            let id = self.transactional_id(slot);
            if self.reserved.contains(&id) {
                continue;
            }
            let mut config = self.options.client_config();
            config.set("transactional.id", id);
            blocking("aborting a lingering Kafka transaction", move || {
                let p: KafkaProducer = config
                    .create_with_context(Deliveries::default())
                    .map_err(|e| ClassedError::config(format!("cannot create a Kafka producer: {e}")))?;
                p.init_transactions(BROKER_WAIT)
                    .map_err(|e| transient(format!("aborting a lingering Kafka transaction failed: {e}")))
            })
            .await?;
        }
        Ok(())
    }

    /// Each row's value (and key) bytes.
    fn encode(&self, batch: &RecordBatch) -> Result<Vec<EncodedRow>, ClassedError> {
        let fail = |e: &dyn std::fmt::Display| ClassedError::user(format!("kafka sink: cannot encode a row: {e}"));
        let values: Vec<Vec<u8>> = match self.options.format {
            ValueFormat::Json => {
                let mut w = arrow::json::LineDelimitedWriter::new(Vec::new());
                w.write(batch).map_err(|e| fail(&e))?;
                w.finish().map_err(|e| fail(&e))?;
                w.into_inner()
                    .split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                    .map(<[u8]>::to_vec)
                    .collect()
            }
            ValueFormat::Csv => {
                let mut w = arrow::csv::WriterBuilder::new().with_header(false).build(Vec::new());
                w.write(batch).map_err(|e| fail(&e))?;
                w.into_inner()
                    .split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                    .map(<[u8]>::to_vec)
                    .collect()
            }
            ValueFormat::Raw => {
                let col =
                    arrow::compute::cast(batch.column(0), &arrow::datatypes::DataType::Utf8).map_err(|e| fail(&e))?;
                let s = col.as_string::<i32>();
                (0..s.len())
                    .map(|i| {
                        if s.is_null(i) {
                            Vec::new()
                        } else {
                            s.value(i).as_bytes().to_vec()
                        }
                    })
                    .collect()
            }
        };
        if values.len() != batch.num_rows() {
            return Err(ClassedError::internal("kafka sink: rows and encoded values differ"));
        }
        let keys: Vec<Option<Vec<u8>>> = if self.key_columns.is_empty() {
            vec![None; batch.num_rows()]
        } else {
            let keyed = batch.project(&self.key_columns).map_err(|e| fail(&e))?;
            let mut w = arrow::json::LineDelimitedWriter::new(Vec::new());
            w.write(&keyed).map_err(|e| fail(&e))?;
            w.finish().map_err(|e| fail(&e))?;
            w.into_inner()
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .map(|l| Some(l.to_vec()))
                .collect()
        };
        Ok(values.into_iter().zip(keys).collect())
    }

    fn partition_for(&mut self) -> Option<i32> {
        let n = self.partitions?;
        match self.options.partitioner {
            Partitioner::Default => None,
            Partitioner::Fixed => Some(i32::try_from(self.subtask).unwrap_or(0) % n),
            Partitioner::RoundRobin => {
                self.next_partition = (self.next_partition + 1) % n;
                Some(self.next_partition)
            }
        }
    }

    /// Waits until the broker has every record of `txn`; a delivery error fails.
    async fn flush(txn: &Txn) -> Result<(), ClassedError> {
        let producer = txn.producer.clone();
        blocking("flushing the Kafka producer", move || {
            producer
                .flush(BROKER_WAIT)
                .map_err(|e| transient(format!("flushing records to Kafka failed: {e}")))?;
            match producer
                .context()
                .error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
            {
                Some(e) => Err(transient(format!("a record could not be written to Kafka: {e}"))),
                None => Ok(()),
            }
        })
        .await
    }

    /// The producer id and epoch of `txn`, once librdkafka's statistics reported them.
    async fn identity(txn: &Txn) -> Result<(i64, i16), ClassedError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            txn.producer.poll(Duration::ZERO);
            if let Some(found) = *txn
                .producer
                .context()
                .producer
                .lock()
                .unwrap_or_else(|p| p.into_inner())
            {
                return Ok(found);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(transient(format!(
                    "kafka sink: librdkafka did not report the producer id of transaction {}",
                    txn.id.as_deref().unwrap_or_default()
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn commit_txn(txn: Txn) -> Result<(), ClassedError> {
        let id = txn.id.clone().unwrap_or_default();
        blocking("committing a Kafka transaction", move || {
            txn.producer
                .commit_transaction(BROKER_WAIT)
                .map_err(|e| transient(format!("committing Kafka transaction {id} failed: {e}")))
        })
        .await
    }
}

#[async_trait]
impl Sink for KafkaWriter {
    async fn write(&mut self, batch: RecordBatch) -> Result<(), ClassedError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        debug_assert_eq!(batch.schema().fields().len(), self.schema.fields().len());
        self.open().await?;
        let rows = self.encode(&batch)?;
        let topic = self.options.topic.clone();
        for (value, key) in rows {
            let partition = self.partition_for();
            let Some(txn) = self.current.as_mut() else {
                return Err(ClassedError::internal("kafka sink: no producer"));
            };
            let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&topic).payload(&value[..]);
            if let Some(k) = &key {
                record = record.key(&k[..]);
            }
            if let Some(p) = partition {
                record = record.partition(p);
            }
            let mut pending = record;
            loop {
                match txn.producer.send(pending) {
                    Ok(()) => break,
                    Err((
                        rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                        back,
                    )) => {
                        txn.producer.poll(Duration::from_millis(10));
                        pending = back;
                    }
                    Err((e, _)) => {
                        return Err(transient(format!(
                            "sending a record to Kafka topic '{topic}' failed: {e}"
                        )))
                    }
                }
            }
            txn.records += 1;
        }
        if let Some(txn) = &self.current {
            txn.producer.poll(Duration::ZERO);
        }
        Ok(())
    }

    async fn pre_commit(&mut self, checkpoint_id: u64) -> Result<Vec<Committable>, ClassedError> {
        match self.options.guarantee {
            Guarantee::None => Ok(Vec::new()),
            Guarantee::AtLeastOnce => {
                if let Some(txn) = &self.current {
                    Self::flush(txn).await?;
                }
                Ok(Vec::new())
            }
            Guarantee::ExactlyOnce => {
                let Some(txn) = self.current.take() else {
                    return Ok(Vec::new());
                };
                if txn.records == 0 {
                    // Nothing to commit: keep the transaction open for the next checkpoint.
                    self.current = Some(txn);
                    return Ok(Vec::new());
                }
                Self::flush(&txn).await?;
                let (producer_id, producer_epoch) = Self::identity(&txn).await?;
                let committable = json!({
                    "transactional_id": txn.id,
                    "producer_id": producer_id,
                    "producer_epoch": producer_epoch,
                    "checkpoint": checkpoint_id,
                })
                .to_string()
                .into_bytes();
                self.precommitted.insert(checkpoint_id, txn);
                Ok(vec![committable])
            }
        }
    }

    /// Commits this subtask's share of the restored committables; the ids of all of them stay
    /// untouched by this attempt (another subtask may still be committing its share).
    async fn recover(&mut self, mine: Vec<Committable>, all: &[Committable]) -> Result<(), ClassedError> {
        for c in all {
            if let Some(id) = serde_json::from_slice::<Value>(c)
                .ok()
                .and_then(|v| v["transactional_id"].as_str().map(str::to_string))
            {
                self.reserved.insert(id);
            }
        }
        self.commit(mine).await
    }

    async fn commit(&mut self, committables: Vec<Committable>) -> Result<(), ClassedError> {
        for c in committables {
            let v: Value = serde_json::from_slice(&c)
                .map_err(|e| ClassedError::internal(format!("a Kafka committable is not usable: {e}")))?;
            let Some(checkpoint) = v["checkpoint"].as_u64() else {
                continue;
            };
            if failpoint("kafka-sink-before-commit") {
                tracing::error!(
                    "Failpoint kafka-sink-before-commit: crashing before committing checkpoint {checkpoint}."
                );
                std::process::abort();
            }
            match self.precommitted.remove(&checkpoint) {
                Some(txn) => {
                    tracing::debug!(
                        "Committing Kafka transaction {:?} of checkpoint {checkpoint} ({} records).",
                        txn.id,
                        txn.records
                    );
                    Self::commit_txn(txn).await?
                }
                None => {
                    // Precommitted by an attempt that crashed after the checkpoint completed.
                    let handle = end_txn::TxnHandle {
                        transactional_id: v["transactional_id"].as_str().unwrap_or_default().to_string(),
                        producer_id: v["producer_id"].as_i64().unwrap_or(-1),
                        producer_epoch: v["producer_epoch"]
                            .as_i64()
                            .and_then(|e| i16::try_from(e).ok())
                            .unwrap_or(-1),
                    };
                    let bootstrap = self
                        .options
                        .properties
                        .get("bootstrap.servers")
                        .cloned()
                        .unwrap_or_default();
                    let h = handle.clone();
                    blocking("committing a restored Kafka transaction", move || {
                        end_txn::commit(&bootstrap, &h).map_err(transient)
                    })
                    .await?;
                    tracing::info!(
                        "Committed Kafka transaction {} (producer id {}, epoch {}) of checkpoint {checkpoint}, precommitted before a restart.",
                        handle.transactional_id,
                        handle.producer_id,
                        handle.producer_epoch
                    );
                }
            }
        }
        Ok(())
    }
}
