//! The Kafka source reader of one subtask (Flink's `KafkaSourceReader`): `assign()`s the
//! topic-partitions it was handed (no group management: offsets travel in checkpoints), polls
//! without blocking, turns each partition's records into a batch (the value in the source's
//! format, metadata columns from the record), keeps the next offset of every split for
//! checkpoints, finishes a split at its stopping offset (bounded mode) and commits the
//! checkpointed offsets to the group when the checkpoint completes (for monitoring; a failed
//! commit is logged and counted, never fatal). A record that does not decode fails the job
//! naming topic, partition and offset, unless `json.ignore-parse-errors` skips it or
//! `scan.dead-letter-topic` sends it there (durably, before its offset counts as read).
//!
//! Metrics, with Flink's KafkaSource names (Prometheus:
//! `flink_taskmanager_job_task_operator_<name>`): `KafkaSourceReader_KafkaConsumer_records_lag_max`
//! and `pendingRecords` (from the high watermarks librdkafka's statistics report each second,
//! no extra requests),
//! `KafkaSourceReader_topic_partition_currentOffset` / `..._committedOffset` (labels topic and
//! partition), `KafkaSourceReader_commitsSucceeded` / `..._commitsFailed`, `numRecordsInErrors`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, BinaryArray, Int32Array, Int64Array, StringArray, TimestampMillisecondArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::message::Message;
use rdkafka::ClientContext;
use rdkafka::{Offset, TopicPartitionList};
use sluice_common::failure::{ClassedError, FailureClass};

use super::options::{KafkaSourceOptions, Metadata, ValueFormat};
use super::polled::{DeadRecord, Polled, Record};
use super::split::{KafkaSplit, COMMITTED, EARLIEST};
use crate::contract::{OperatorMetrics, Source, SourcePoll, Split};

/// The most records one poll round takes.
const MAX_RECORDS: usize = 8192;
/// How long a reader that found nothing waits before it polls again: from `FIRST_WAIT`,
/// doubling on every empty poll up to `IDLE_WAIT`, back to `FIRST_WAIT` once records come (a
/// busy topic is read again at once, an idle one costs a poll every 20 ms).
const FIRST_WAIT: Duration = Duration::from_millis(1);
const IDLE_WAIT: Duration = Duration::from_millis(20);
/// Sluice's default for librdkafka's `fetch.queue.backoff.ms` (a `properties.*` overrides it).
const FETCH_QUEUE_BACKOFF_MS: &str = "10";

/// Keeps the high watermark of every partition from librdkafka's statistics.
#[derive(Default)]
pub(crate) struct Watermarks {
    /// topic → partition → high watermark.
    high: std::sync::Mutex<HashMap<String, HashMap<i32, i64>>>,
}

impl ClientContext for Watermarks {
    fn stats(&self, statistics: rdkafka::Statistics) {
        let mut high = self.high.lock().unwrap_or_else(|p| p.into_inner());
        for (topic, t) in statistics.topics {
            for (partition, p) in t.partitions {
                if partition >= 0 && p.hi_offset >= 0 {
                    high.entry(topic.clone()).or_default().insert(partition, p.hi_offset);
                }
            }
        }
    }
}

impl ConsumerContext for Watermarks {}

type KafkaConsumer = BaseConsumer<Watermarks>;

pub(crate) struct KafkaReader {
    options: KafkaSourceOptions,
    schema: SchemaRef,
    /// The columns read from the value (the schema without metadata columns).
    value_schema: SchemaRef,
    consumer: Arc<KafkaConsumer>,
    splits: Vec<KafkaSplit>,
    /// The assignment must be renewed (splits added or finished).
    reassign: bool,
    /// Batches built but not handed out, with the next offset of their split after them. A
    /// split's offset moves only when its batch is handed out, so a snapshot never counts
    /// records still waiting here.
    ready: VecDeque<(RecordBatch, usize, i64)>,
    /// Offsets of the latest snapshot, committed when a checkpoint completes.
    snapshot: RefCell<Vec<(String, i32, i64)>>,
    commits_succeeded: Arc<AtomicU64>,
    commits_failed: Arc<AtomicU64>,
    skipped: u64,
    metrics: OperatorMetrics,
    /// Records that did not decode, with their split and the error, for the dead-letter topic.
    dead: Vec<(usize, DeadRecord, String)>,
    dead_letter_producer: Option<Arc<rdkafka::producer::BaseProducer>>,
    /// The wait after the next empty poll.
    wait: Duration,
}

fn transient(what: String) -> ClassedError {
    ClassedError::new(FailureClass::Transient, what)
}

impl KafkaReader {
    pub(crate) fn new(
        options: KafkaSourceOptions,
        schema: SchemaRef,
        metrics: OperatorMetrics,
    ) -> Result<KafkaReader, ClassedError> {
        let mut config = options.client_config();
        if !options.properties.contains_key("statistics.interval.ms") {
            config.set("statistics.interval.ms", "1000");
        }
        if !options.properties.contains_key("fetch.queue.backoff.ms") {
            // librdkafka stops fetching a partition for this long (1 s by default) once its
            // prefetch queue is past `queued.min.messages`: a reader that drains the queue in
            // less then waits for the broker with nothing to read (K1 read 75 % of the raw
            // consumer's rate with the default, 105 % with this).
            config.set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS);
        }
        let consumer: KafkaConsumer = config
            .create_with_context(Watermarks::default())
            .map_err(|e| ClassedError::config(format!("cannot create a Kafka consumer: {e}")))?;
        let value_fields: Vec<_> = schema
            .fields()
            .iter()
            .zip(&options.metadata)
            .filter(|(_, m)| m.is_none())
            .map(|(f, _)| f.as_ref().clone())
            .collect();
        Ok(KafkaReader {
            value_schema: Arc::new(Schema::new(value_fields)),
            options,
            schema,
            consumer: Arc::new(consumer),
            splits: Vec::new(),
            reassign: false,
            ready: VecDeque::new(),
            snapshot: RefCell::new(Vec::new()),
            commits_succeeded: Arc::default(),
            commits_failed: Arc::default(),
            skipped: 0,
            metrics,
            dead: Vec::new(),
            dead_letter_producer: None,
            wait: FIRST_WAIT,
        })
    }

    /// The index of the split of `topic`'s `partition` (a reader holds a few: a scan, no
    /// allocation per record).
    fn split_index(&self, topic: &str, partition: i32) -> Option<usize> {
        self.splits
            .iter()
            .position(|s| s.partition == partition && s.topic == topic)
    }

    /// Assigns every unfinished split at its next offset (or the marker's position).
    fn assign(&mut self) -> Result<(), ClassedError> {
        let mut tpl = TopicPartitionList::new();
        for s in self.splits.iter().filter(|s| !s.finished()) {
            let offset = match s.offset {
                EARLIEST => Offset::Beginning,
                COMMITTED => Offset::Stored,
                o => Offset::Offset(o),
            };
            tpl.add_partition_offset(&s.topic, s.partition, offset)
                .map_err(|e| transient(format!("cannot assign {}: {e}", s.id())))?;
        }
        self.consumer
            .assign(&tpl)
            .map_err(|e| transient(format!("cannot assign Kafka partitions: {e}")))?;
        self.reassign = false;
        Ok(())
    }

    /// Takes what the consumer has now, up to `MAX_RECORDS`, by split.
    fn poll(&mut self) -> Result<Vec<Polled>, ClassedError> {
        let mut by_split: Vec<Polled> = self.splits.iter().map(|_| Polled::default()).collect();
        // A key is copied out only where something reads it: a key column or a dead letter.
        let keep_keys =
            self.options.metadata.contains(&Some(Metadata::Key)) || self.options.dead_letter_topic.is_some();
        for _ in 0..MAX_RECORDS {
            let Some(polled) = self.consumer.poll(Duration::ZERO) else {
                break;
            };
            let m = polled.map_err(|e| self.poll_error(e))?;
            let Some(i) = self.split_index(m.topic(), m.partition()) else {
                continue;
            };
            if self.splits[i].stop.is_some_and(|stop| m.offset() >= stop) {
                continue;
            }
            by_split[i].push(
                m.offset(),
                m.timestamp().to_millis(),
                m.key().filter(|_| keep_keys).map(<[u8]>::to_vec),
                m.payload(),
            );
        }
        Ok(by_split)
    }

    fn poll_error(&self, e: rdkafka::error::KafkaError) -> ClassedError {
        let text = e.to_string();
        if text.contains("no reset policy")
            || text.contains("Offset out of range")
            || text.contains("AutoOffsetReset")
            || text.contains("automatically reset")
        {
            // Flink: "Undefined offset with no reset policy for partition(s)".
            ClassedError::config(format!(
                "Undefined offset with no reset policy for a partition of {} (group-offsets without a committed offset; set properties.auto.offset.reset or another scan.startup.mode): {text}",
                self.options.topics.join(";")
            ))
        } else {
            transient(format!("reading from Kafka failed: {text}"))
        }
    }

    /// The value columns of `records`, in the source's format; a record that does not decode
    /// fails (or is skipped with `json.ignore-parse-errors`).
    fn values(&mut self, split: usize, polled: &mut Polled) -> Result<Vec<ArrayRef>, ClassedError> {
        if self.value_schema.fields().is_empty() {
            return Ok(Vec::new());
        }
        let first = polled.records.first().map_or(-1, |r| r.offset);
        if self.options.format == ValueFormat::Raw {
            let field = &self.value_schema.fields()[0];
            let values = polled.records.iter().map(|r| polled.value(r));
            let raw: ArrayRef = match field.data_type() {
                DataType::Binary => Arc::new(BinaryArray::from_iter(values)),
                _ => Arc::new(StringArray::from_iter(
                    values.map(|v| v.map(|v| String::from_utf8_lossy(v).into_owned())),
                )),
            };
            return Ok(vec![
                cast(&raw, field.data_type()).map_err(|e| self.bad(split, first, &e.to_string()))?
            ]);
        }
        // Only CSV looks for newlines inside values: a JSON value may hold them.
        let csv = self.options.format == ValueFormat::Csv;
        let spans_lines = csv && (0..polled.len()).any(|i| polled.spans_lines(i));
        match self.decode(polled.text(), polled.len(), spans_lines) {
            Ok(batch) => Ok(batch.columns().to_vec()),
            Err(_) => {
                // Find the records that do not decode: fail on the first, or skip them all.
                let mut kept = Polled::default();
                for i in 0..polled.len() {
                    match self.decode(polled.line(i), 1, csv && polled.spans_lines(i)) {
                        Ok(_) => polled.move_to(i, &mut kept),
                        Err(e) if self.options.dead_letter_topic.is_some() => {
                            self.skipped += 1;
                            self.dead.push((split, polled.take_dead(i), e));
                        }
                        Err(e) if self.options.ignore_parse_errors => {
                            self.skipped += 1;
                            tracing::debug!("skipping a record that does not decode: {e}");
                        }
                        Err(e) => return Err(self.bad(split, polled.records[i].offset, &e)),
                    }
                }
                *polled = kept;
                self.decode(polled.text(), polled.len(), false)
                    .map(|b| b.columns().to_vec())
                    .map_err(|e| self.bad(split, polled.records.first().map_or(-1, |r| r.offset), &e))
            }
        }
    }

    /// `rows` records from `text`, one per line; `spans_lines`: a CSV value held a newline.
    fn decode(&self, text: &[u8], rows: usize, spans_lines: bool) -> Result<RecordBatch, String> {
        if spans_lines {
            return Err("a CSV value spans lines".into());
        }
        let batch = match self.options.format {
            ValueFormat::Csv => {
                let mut reader = arrow::csv::ReaderBuilder::new(self.value_schema.clone())
                    .with_header(false)
                    .with_batch_size(rows.max(1))
                    .build(text)
                    .map_err(|e| e.to_string())?;
                reader.next().transpose().map_err(|e| e.to_string())?
            }
            _ => {
                let mut decoder = arrow::json::ReaderBuilder::new(self.value_schema.clone())
                    .with_batch_size(rows.max(1))
                    .build_decoder()
                    .map_err(|e| e.to_string())?;
                decoder.decode(text).map_err(|e| e.to_string())?;
                decoder.flush().map_err(|e| e.to_string())?
            }
        };
        let batch = batch.unwrap_or_else(|| RecordBatch::new_empty(self.value_schema.clone()));
        if batch.num_rows() != rows {
            return Err(format!("{} of {rows} records decoded", batch.num_rows()));
        }
        Ok(batch)
    }

    fn bad(&self, split: usize, offset: i64, error: &str) -> ClassedError {
        let s = &self.splits[split];
        ClassedError::user(format!(
            "Failed to deserialize consumer record of topic '{}', partition {}, offset {offset} ({:?}): {error}",
            s.topic, s.partition, self.options.format
        ))
    }

    /// A metadata column of `records`, cast to the column's type.
    fn metadata(&self, split: usize, m: Metadata, records: &[Record], ty: &DataType) -> Result<ArrayRef, ClassedError> {
        let s = &self.splits[split];
        let raw: ArrayRef = match m {
            Metadata::Topic => Arc::new(StringArray::from(vec![s.topic.as_str(); records.len()])),
            Metadata::Partition => Arc::new(Int32Array::from(vec![s.partition; records.len()])),
            Metadata::Offset => Arc::new(Int64Array::from_iter_values(records.iter().map(|r| r.offset))),
            Metadata::Timestamp => Arc::new(TimestampMillisecondArray::from_iter(
                records.iter().map(|r| r.timestamp),
            )),
            Metadata::Key => Arc::new(StringArray::from_iter(
                records
                    .iter()
                    .map(|r| r.key.as_deref().map(|k| String::from_utf8_lossy(k).into_owned())),
            )),
        };
        cast(&raw, ty).map_err(|e| self.bad(split, records.first().map_or(-1, |r| r.offset), &e.to_string()))
    }

    /// The batch of `records` (None when every one was skipped as undecodable), and the
    /// split's next offset after them.
    fn batch(&mut self, split: usize, mut polled: Polled) -> Result<(Option<RecordBatch>, i64), ClassedError> {
        let next = polled
            .records
            .last()
            .map_or(self.splits[split].offset, |r| r.offset + 1);
        let mut values = self.values(split, &mut polled)?.into_iter();
        if polled.is_empty() {
            return Ok((None, next));
        }
        let mut columns = Vec::with_capacity(self.schema.fields().len());
        for (f, m) in self.schema.fields().iter().zip(self.options.metadata.clone()) {
            match m {
                Some(m) => columns.push(self.metadata(split, m, &polled.records, f.data_type())?),
                None => columns.push(
                    values
                        .next()
                        .ok_or_else(|| ClassedError::internal("a Kafka value column is missing"))?,
                ),
            }
        }
        RecordBatch::try_new(self.schema.clone(), columns)
            .map(|b| (Some(b), next))
            .map_err(|e| ClassedError::internal(format!("building a Kafka batch: {e}")))
    }

    /// Writes the records that did not decode to the dead-letter topic and waits until the
    /// broker has them (so their offsets may count as read).
    async fn send_dead_letters(&mut self) -> Result<(), ClassedError> {
        let Some(topic) = self.options.dead_letter_topic.clone() else {
            return Ok(());
        };
        if self.dead.is_empty() {
            return Ok(());
        }
        if self.dead_letter_producer.is_none() {
            let mut config = rdkafka::ClientConfig::new();
            if let Some(servers) = self.options.properties.get("bootstrap.servers") {
                config.set("bootstrap.servers", servers);
            }
            let p: rdkafka::producer::BaseProducer = config
                .create()
                .map_err(|e| ClassedError::config(format!("cannot create the dead-letter producer: {e}")))?;
            self.dead_letter_producer = Some(Arc::new(p));
        }
        let Some(producer) = self.dead_letter_producer.clone() else {
            return Ok(());
        };
        let letters: Vec<(String, i32, DeadRecord, String)> = self
            .dead
            .drain(..)
            .map(|(split, r, e)| (self.splits[split].topic.clone(), self.splits[split].partition, r, e))
            .collect();
        let n = letters.len();
        tokio::task::spawn_blocking(move || {
            use rdkafka::message::{Header, OwnedHeaders};
            use rdkafka::producer::{BaseRecord, Producer};
            for (source, partition, r, error) in &letters {
                let (p, o) = (partition.to_string(), r.offset.to_string());
                let headers = OwnedHeaders::new()
                    .insert(Header {
                        key: "sluice.error",
                        value: Some(error.as_str()),
                    })
                    .insert(Header {
                        key: "sluice.topic",
                        value: Some(source.as_str()),
                    })
                    .insert(Header {
                        key: "sluice.partition",
                        value: Some(p.as_str()),
                    })
                    .insert(Header {
                        key: "sluice.offset",
                        value: Some(o.as_str()),
                    });
                let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&topic)
                    .payload(r.value.as_deref().unwrap_or_default())
                    .headers(headers);
                if let Some(k) = &r.key {
                    record = record.key(&k[..]);
                }
                producer
                    .send(record)
                    .map_err(|(e, _)| transient(format!("writing to dead-letter topic '{topic}' failed: {e}")))?;
            }
            producer
                .flush(Duration::from_secs(60))
                .map_err(|e| transient(format!("writing to dead-letter topic '{topic}' failed: {e}")))
        })
        .await
        .map_err(|e| ClassedError::internal(format!("dead letters: {e}")))??;
        tracing::warn!("Sent {n} record(s) that do not decode to the dead-letter topic.");
        Ok(())
    }

    /// Lag from the consumer's cached high watermarks (no request): the largest per partition
    /// (`records_lag_max`) and their sum (`pendingRecords`).
    fn report_lag(&self) {
        let mut max = 0i64;
        let mut sum = 0i64;
        let high = self.consumer.context().high.lock().unwrap_or_else(|p| p.into_inner());
        for s in self.splits.iter().filter(|s| !s.finished() && s.offset >= 0) {
            if let Some(h) = high.get(s.topic.as_str()).and_then(|p| p.get(&s.partition)) {
                let lag = (h - s.offset).max(0);
                max = max.max(lag);
                sum += lag;
            }
        }
        drop(high);
        self.metrics
            .set("KafkaSourceReader_KafkaConsumer_records_lag_max", &[], max as f64);
        self.metrics.set("pendingRecords", &[], sum as f64);
        self.metrics.set("numRecordsInErrors", &[], self.skipped as f64);
    }

    /// Hands out the oldest ready batch, moving its split's offset past it.
    fn hand_out(&mut self) -> Option<SourcePoll> {
        while let Some((batch, split, next)) = self.ready.pop_front() {
            let was_open = !self.splits[split].finished();
            self.splits[split].offset = next;
            let s = &self.splits[split];
            let partition = s.partition.to_string();
            self.metrics.set(
                "KafkaSourceReader_topic_partition_currentOffset",
                &[("topic", &s.topic), ("partition", &partition)],
                (next - 1) as f64,
            );
            if was_open && self.splits[split].finished() {
                self.reassign = true;
            }
            if batch.num_rows() > 0 {
                return Some(SourcePoll::Batch(batch, split));
            }
        }
        None
    }
}

#[async_trait]
impl Source for KafkaReader {
    fn add_splits(&mut self, splits: Vec<Split>) -> Result<(), ClassedError> {
        for bytes in splits {
            let s = KafkaSplit::decode(&bytes)?;
            if self.split_index(&s.topic, s.partition).is_some() {
                continue;
            }
            self.splits.push(s);
            self.reassign = true;
        }
        Ok(())
    }

    async fn next_batch(&mut self) -> Result<SourcePoll, ClassedError> {
        if let Some(poll) = self.hand_out() {
            return Ok(poll);
        }
        // Bounded: done when every split reached its stopping offset; a reader without splits
        // (more readers than partitions, or all finished before a restore) is done at once.
        if self.options.bounded.is_some() && self.splits.iter().all(KafkaSplit::finished) {
            return Ok(SourcePoll::Finished);
        }
        if self.reassign {
            self.assign()?;
        }
        let polled = self.poll()?;
        for (i, records) in polled.into_iter().enumerate().filter(|(_, p)| !p.is_empty()) {
            let (batch, next) = self.batch(i, records)?;
            // Skipped records still move the offset (an empty batch carries it).
            let batch = batch.unwrap_or_else(|| RecordBatch::new_empty(self.schema.clone()));
            self.ready.push_back((batch, i, next));
        }
        self.send_dead_letters().await?;
        self.report_lag();
        Ok(match self.hand_out() {
            Some(poll) => {
                self.wait = FIRST_WAIT;
                poll
            }
            None => {
                let wait = self.wait;
                self.wait = (wait * 2).min(IDLE_WAIT);
                SourcePoll::Wait(wait)
            }
        })
    }

    fn split_count(&self) -> usize {
        self.splits.len()
    }

    fn split_finished(&self, i: usize) -> bool {
        self.splits.get(i).is_some_and(KafkaSplit::finished)
    }

    fn snapshot_splits(&self) -> Vec<Split> {
        let open: Vec<&KafkaSplit> = self.splits.iter().filter(|s| !s.finished()).collect();
        *self.snapshot.borrow_mut() = self
            .splits
            .iter()
            .filter(|s| s.offset >= 0)
            .map(|s| (s.topic.clone(), s.partition, s.offset))
            .collect();
        open.into_iter().map(KafkaSplit::encode).collect()
    }

    async fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<(), ClassedError> {
        if !self.options.commit_on_checkpoint {
            return Ok(());
        }
        let offsets = self.snapshot.borrow().clone();
        if offsets.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for (topic, partition, next) in &offsets {
            if tpl
                .add_partition_offset(topic, *partition, Offset::Offset(*next))
                .is_err()
            {
                return Ok(());
            }
        }
        let consumer = self.consumer.clone();
        let (ok, failed) = (self.commits_succeeded.clone(), self.commits_failed.clone());
        let metrics = self.metrics.clone();
        // A commit waits for the broker: off the async workers, and never fatal.
        tokio::task::spawn_blocking(move || {
            match consumer.commit(&tpl, CommitMode::Sync) {
                Ok(()) => {
                    ok.fetch_add(1, Ordering::Relaxed);
                    for (topic, partition, next) in &offsets {
                        let p = partition.to_string();
                        metrics.set(
                            "KafkaSourceReader_topic_partition_committedOffset",
                            &[("topic", topic), ("partition", &p)],
                            *next as f64,
                        );
                    }
                }
                Err(e) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("Committing the offsets of checkpoint {checkpoint_id} to Kafka failed: {e}");
                }
            }
            metrics.set(
                "KafkaSourceReader_commitsSucceeded",
                &[],
                ok.load(Ordering::Relaxed) as f64,
            );
            metrics.set(
                "KafkaSourceReader_commitsFailed",
                &[],
                failed.load(Ordering::Relaxed) as f64,
            );
        });
        Ok(())
    }
}
