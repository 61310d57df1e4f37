//! A Kafka split is one topic-partition with the next offset to read (Flink's
//! `KafkaPartitionSplit`): a number, or a marker the reader resolves (`EARLIEST`, the group's
//! `COMMITTED` offset), and an optional stopping offset (bounded mode). Its id in the
//! enumerator is `topic-partition`. Stored as a small JSON object.

use serde_json::{json, Value};
use sluice_common::failure::ClassedError;

use crate::contract::Split;

/// Start from the partition's first record (Flink's `EARLIEST_OFFSET`).
pub(crate) const EARLIEST: i64 = -2;
/// Start from the group's committed offset (Flink's `COMMITTED_OFFSET`).
pub(crate) const COMMITTED: i64 = -3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KafkaSplit {
    pub topic: String,
    pub partition: i32,
    /// The next offset to read, or `EARLIEST` / `COMMITTED`.
    pub offset: i64,
    /// Read up to (not including) this offset, then the split is finished.
    pub stop: Option<i64>,
}

impl KafkaSplit {
    pub(crate) fn id(&self) -> String {
        format!("{}-{}", self.topic, self.partition)
    }

    pub(crate) fn encode(&self) -> Split {
        json!({"topic": self.topic, "partition": self.partition, "offset": self.offset, "stop": self.stop})
            .to_string()
            .into_bytes()
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<KafkaSplit, ClassedError> {
        let bad = |why: &str| {
            ClassedError::internal(format!(
                "a Kafka split in the checkpoint is not usable ({why}): {}",
                String::from_utf8_lossy(bytes)
            ))
        };
        let v: Value = serde_json::from_slice(bytes).map_err(|e| bad(&e.to_string()))?;
        Ok(KafkaSplit {
            topic: v["topic"].as_str().ok_or_else(|| bad("no topic"))?.to_string(),
            partition: v["partition"]
                .as_i64()
                .and_then(|p| i32::try_from(p).ok())
                .ok_or_else(|| bad("no partition"))?,
            offset: v["offset"].as_i64().ok_or_else(|| bad("no offset"))?,
            stop: v["stop"].as_i64(),
        })
    }

    /// Whether every record before the stopping offset was read.
    pub(crate) fn finished(&self) -> bool {
        self.stop.is_some_and(|s| self.offset >= 0 && self.offset >= s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_split_survives_its_encoding_and_bad_bytes_are_named() {
        let s = KafkaSplit {
            topic: "orders".into(),
            partition: 3,
            offset: 42,
            stop: Some(100),
        };
        assert_eq!(KafkaSplit::decode(&s.encode()).unwrap(), s);
        assert_eq!(s.id(), "orders-3");
        assert!(!s.finished());
        let done = KafkaSplit { offset: 100, ..s };
        assert!(done.finished());
        let err = KafkaSplit::decode(b"{\"topic\": \"t\"}").unwrap_err();
        assert!(err.to_string().contains("no partition"), "{err}");
    }
}
