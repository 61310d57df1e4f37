//! The Kafka source's split enumerator on the jobmanager (Flink's `KafkaSourceEnumerator`):
//! lists the topics' partitions through a metadata request, resolves the starting offsets the
//! startup mode fixes at the first discovery (latest, timestamp, specific offsets; earliest and
//! committed offsets are markers the reader resolves), places every new partition with
//! Flink's `getSplitOwner`, and finds partitions added while the job runs (read from the
//! earliest offset, as Flink does). Built on `RoundRobinEnumerator`, whose state (assigned and
//! unassigned splits) goes into checkpoints.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use sluice_common::failure::{ClassedError, FailureClass};

use super::options::{KafkaSourceOptions, StartupMode};
use super::owner::split_owner;
use super::split::{KafkaSplit, COMMITTED, EARLIEST};
use crate::enumerator::{ListedSplit, RoundRobinEnumerator, SplitEnumerator};

/// How long one metadata or offsets request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

fn transient(what: String) -> ClassedError {
    ClassedError::new(FailureClass::Transient, what)
}

struct Lister {
    options: KafkaSourceOptions,
    consumer: BaseConsumer,
    /// Whether the job's first discovery is behind it (only that one uses the startup mode;
    /// set by the enumerator, also when it is restored).
    started: Arc<AtomicBool>,
}

impl Lister {
    fn servers(&self) -> &str {
        self.options
            .properties
            .get("bootstrap.servers")
            .map_or("", String::as_str)
    }

    fn partitions(&self, topic: &str) -> Result<Vec<i32>, ClassedError> {
        let md = self
            .consumer
            .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
            .map_err(|e| {
                transient(format!(
                    "cannot read the metadata of topic '{topic}' from {}: {e}",
                    self.servers()
                ))
            })?;
        let t = md
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .ok_or_else(|| ClassedError::config(format!("topic '{topic}' does not exist on {}", self.servers())))?;
        if let Some(e) = t.error() {
            return Err(ClassedError::config(format!(
                "topic '{topic}' cannot be read from {}: {}",
                self.servers(),
                rdkafka::types::RDKafkaErrorCode::from(e)
            )));
        }
        Ok(t.partitions().iter().map(|p| p.id()).collect())
    }

    /// (low, high) watermarks of a partition.
    fn watermarks(&self, topic: &str, partition: i32) -> Result<(i64, i64), ClassedError> {
        self.consumer
            .fetch_watermarks(topic, partition, REQUEST_TIMEOUT)
            .map_err(|e| transient(format!("cannot read the offsets of {topic}-{partition}: {e}")))
    }

    fn high_watermark(&self, topic: &str, partition: i32) -> Result<i64, ClassedError> {
        self.watermarks(topic, partition).map(|(_, high)| high)
    }

    fn low_watermark(&self, topic: &str, partition: i32) -> Result<i64, ClassedError> {
        self.watermarks(topic, partition).map(|(low, _)| low)
    }

    /// The first offset with a timestamp at or after `ts`, else the end offset (fetched first,
    /// so nothing written meanwhile is skipped).
    fn offset_for_time(&self, topic: &str, partition: i32, ts: i64) -> Result<i64, ClassedError> {
        let end = self.high_watermark(topic, partition)?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(ts))
            .map_err(|e| transient(format!("{topic}-{partition}: {e}")))?;
        let found = self
            .consumer
            .offsets_for_times(tpl, REQUEST_TIMEOUT)
            .map_err(|e| transient(format!("cannot look up offsets by time in {topic}-{partition}: {e}")))?;
        Ok(found
            .find_partition(topic, partition)
            .and_then(|p| match p.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            })
            .unwrap_or(end))
    }

    /// The group's committed offset of a partition, if it has one.
    fn committed(&self, topic: &str, partition: i32) -> Result<Option<i64>, ClassedError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, partition);
        let got = self
            .consumer
            .committed_offsets(tpl, REQUEST_TIMEOUT)
            .map_err(|e| transient(format!("cannot read the committed offset of {topic}-{partition}: {e}")))?;
        Ok(got.find_partition(topic, partition).and_then(|p| match p.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        }))
    }

    /// Where a partition stops in bounded mode (Flink's stopping initializers): its end offset
    /// now, the group's committed offset (an error without one), the first offset at or after a
    /// time, or a given offset (unlisted partitions: committed, else earliest, so nothing).
    fn stop_offset(&self, topic: &str, partition: i32, mode: &StartupMode) -> Result<i64, ClassedError> {
        let group = || self.options.properties.get("group.id").map_or("", String::as_str);
        match mode {
            StartupMode::Latest | StartupMode::Earliest => self.high_watermark(topic, partition),
            StartupMode::Timestamp(ts) => self.offset_for_time(topic, partition, *ts),
            StartupMode::GroupOffsets => self.committed(topic, partition)?.ok_or_else(|| {
                ClassedError::config(format!(
                    "Partition {topic}-{partition} should stop at committed offset. But there is no committed offset of this partition for group {}",
                    group()
                ))
            }),
            StartupMode::Specific(offsets) => match offsets.get(&partition) {
                Some(o) => Ok(*o),
                None => match self.committed(topic, partition)? {
                    Some(o) => Ok(o),
                    None => self.low_watermark(topic, partition),
                },
            },
        }
    }

    fn start_offset(&self, topic: &str, partition: i32) -> Result<i64, ClassedError> {
        if self.started.load(Ordering::Acquire) {
            return Ok(EARLIEST);
        }
        Ok(match &self.options.startup {
            StartupMode::Earliest => EARLIEST,
            StartupMode::GroupOffsets => COMMITTED,
            StartupMode::Latest => self.high_watermark(topic, partition)?,
            StartupMode::Timestamp(ts) => self.offset_for_time(topic, partition, *ts)?,
            StartupMode::Specific(offsets) => offsets.get(&partition).copied().unwrap_or(EARLIEST),
        })
    }

    /// The topics to read: those listed, or every topic the pattern matches now.
    fn topics(&self) -> Result<Vec<String>, ClassedError> {
        let Some(pattern) = &self.options.pattern else {
            return Ok(self.options.topics.clone());
        };
        let md = self
            .consumer
            .fetch_metadata(None, REQUEST_TIMEOUT)
            .map_err(|e| transient(format!("cannot list the topics of {}: {e}", self.servers())))?;
        let mut topics: Vec<String> = md
            .topics()
            .iter()
            .map(|t| t.name().to_string())
            .filter(|t| pattern.is_match(t))
            .collect();
        topics.sort();
        Ok(topics)
    }

    fn list(&mut self) -> Result<Vec<ListedSplit>, ClassedError> {
        let mut out = Vec::new();
        for topic in &self.topics()? {
            for partition in self.partitions(topic)? {
                let stop = match &self.options.bounded {
                    Some(mode) => Some(self.stop_offset(topic, partition, mode)?),
                    None => None,
                };
                let mut offset = self.start_offset(topic, partition)?;
                if stop.is_some() && offset == EARLIEST {
                    // A number, so a split with nothing to read (start ≥ stop) is finished at once.
                    offset = self.low_watermark(topic, partition)?;
                }
                let split = KafkaSplit {
                    topic: topic.clone(),
                    partition,
                    offset,
                    stop,
                };
                out.push((split.id(), split.encode()));
            }
        }
        Ok(out)
    }
}

/// `topic-partition` → (topic, partition).
fn parse_id(id: &str) -> Option<(&str, i32)> {
    let (topic, partition) = id.rsplit_once('-')?;
    Some((topic, partition.parse().ok()?))
}

pub(crate) fn enumerator(options: KafkaSourceOptions) -> Result<Box<dyn SplitEnumerator>, ClassedError> {
    let consumer: BaseConsumer = options
        .client_config()
        .create()
        .map_err(|e| ClassedError::config(format!("cannot create a Kafka client: {e}")))?;
    let interval = options.discovery_interval;
    let started = Arc::new(AtomicBool::new(false));
    let lister = Mutex::new(Lister {
        options,
        consumer,
        started: started.clone(),
    });
    Ok(Box::new(
        RoundRobinEnumerator::new(move || lister.lock().unwrap_or_else(|p| p.into_inner()).list())
            .discovering_every(interval)
            .sharing_started(started)
            .placing_by(|id, readers| parse_id(id).map_or(0, |(t, p)| split_owner(t, p, readers))),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_ids_name_topic_and_partition() {
        assert_eq!(parse_id("my-topic-12"), Some(("my-topic", 12)));
        assert_eq!(parse_id("nopartition"), None);
    }
}
