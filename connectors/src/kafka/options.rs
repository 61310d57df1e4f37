//! The Kafka source's options, with Flink SQL's Kafka connector names and defaults: `topic`
//! (one or a `;`-separated list) or `topic-pattern` (a regular expression every topic name must
//! match whole; topics created later are found by discovery), `properties.bootstrap.servers` (required),
//! `properties.group.id`, any other `properties.*` handed to the client, `scan.startup.mode`
//! (`earliest-offset`, `latest-offset`, `group-offsets` (default), `timestamp`,
//! `specific-offsets`) with `scan.startup.timestamp-millis` / `scan.startup.specific-offsets`,
//! `scan.topic-partition-discovery.interval` (5 min; 0 turns discovery off), `scan.bounded.mode`
//! (`unbounded` (default), `latest-offset`, `group-offsets`, `timestamp`, `specific-offsets`,
//! with `scan.bounded.timestamp-millis` / `scan.bounded.specific-offsets`), `format` (`json` (default), `csv`, `raw`),
//! `json.ignore-parse-errors`, and beyond Flink `scan.dead-letter-topic` (a record that does
//! not decode goes there, with the error in its headers, instead of failing the job). Columns read the record's value in that format; a column whose
//! `expr` is `topic`, `partition`, `offset`, `timestamp` or `key` holds that part of the record
//! instead (Flink SQL's metadata columns).

use std::collections::BTreeMap;
use std::time::Duration;

use sluice_common::job::spec::SourceSpec;
use sluice_common::job::{JobError, JobResult};

use crate::options::{choice, OptionReader};

/// Where a partition starts (`scan.startup.mode`) or stops (`scan.bounded.mode`, which has no
/// `Earliest`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StartupMode {
    Earliest,
    Latest,
    /// The group's committed offsets; `auto.offset.reset` decides where none exists (Flink's
    /// default: none, so a partition without a commit fails the job).
    GroupOffsets,
    Timestamp(i64),
    /// partition → offset; other partitions use the committed offset, else the earliest (so a
    /// bounded source reads nothing of them without a commit), as Flink's `OffsetsInitializer.offsets`.
    Specific(BTreeMap<i32, i64>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ValueFormat {
    Json,
    Csv,
    Raw,
}

/// A column filled from the record rather than its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Metadata {
    Topic,
    Partition,
    Offset,
    Timestamp,
    Key,
}

impl Metadata {
    fn parse(name: &str) -> Option<Metadata> {
        match name.trim() {
            "topic" => Some(Metadata::Topic),
            "partition" => Some(Metadata::Partition),
            "offset" => Some(Metadata::Offset),
            "timestamp" => Some(Metadata::Timestamp),
            "key" => Some(Metadata::Key),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct KafkaSourceOptions {
    pub topics: Vec<String>,
    /// `topic-pattern`, anchored to match whole names.
    pub pattern: Option<regex::Regex>,
    /// Client properties, `bootstrap.servers` and `group.id` included.
    pub properties: BTreeMap<String, String>,
    pub startup: StartupMode,
    pub discovery_interval: Option<Duration>,
    /// Where each partition stops (`scan.bounded.mode`); `None` reads on forever.
    pub bounded: Option<StartupMode>,
    pub format: ValueFormat,
    pub ignore_parse_errors: bool,
    /// Where records that do not decode go (instead of failing the job).
    pub dead_letter_topic: Option<String>,
    pub commit_on_checkpoint: bool,
    /// Per column of the schema: `Some` when the column is a metadata column.
    pub metadata: Vec<Option<Metadata>>,
}

/// `format`: json (default), csv or raw.
pub(crate) fn value_format<'a>(r: &mut OptionReader<'a>, what: &str) -> JobResult<ValueFormat> {
    choice(
        r,
        "format",
        ValueFormat::Json,
        &[
            ("json", ValueFormat::Json),
            ("csv", ValueFormat::Csv),
            ("raw", ValueFormat::Raw),
        ],
        what,
    )
}

/// Every `properties.*` option (the client's configuration); `bootstrap.servers` is required.
pub(crate) fn client_properties(r: &mut OptionReader<'_>, what: &str) -> JobResult<BTreeMap<String, String>> {
    let properties: BTreeMap<String, String> = r
        .prefixed("properties.")
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if !properties.contains_key("bootstrap.servers") {
        return Err(JobError::at(
            r.owner(),
            format!("{what} needs the option 'properties.bootstrap.servers'"),
        ));
    }
    Ok(properties)
}

/// Flink's default discovery interval (`scan.topic-partition-discovery.interval`).
const DISCOVERY_DEFAULT: Duration = Duration::from_secs(300);

/// `partition:0,offset:42;partition:1,offset:300`.
fn specific_offsets(text: &str) -> Result<BTreeMap<i32, i64>, String> {
    let mut out = BTreeMap::new();
    for entry in text.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let mut partition = None;
        let mut offset = None;
        for field in entry.split(',') {
            match field.split_once(':').map(|(k, v)| (k.trim(), v.trim())) {
                Some(("partition", v)) => partition = v.parse::<i32>().ok(),
                Some(("offset", v)) => offset = v.parse::<i64>().ok(),
                _ => return Err(format!("'{entry}' is not 'partition:<n>,offset:<n>'")),
            }
        }
        match (partition, offset) {
            (Some(p), Some(o)) => out.insert(p, o),
            _ => return Err(format!("'{entry}' is not 'partition:<n>,offset:<n>'")),
        };
    }
    Ok(out)
}

/// The option names of a startup or stopping position.
struct OffsetKeys {
    mode: &'static str,
    timestamp: &'static str,
    specific: &'static str,
}

const STARTUP: OffsetKeys = OffsetKeys {
    mode: "scan.startup.mode",
    timestamp: "scan.startup.timestamp-millis",
    specific: "scan.startup.specific-offsets",
};

const BOUNDED: OffsetKeys = OffsetKeys {
    mode: "scan.bounded.mode",
    timestamp: "scan.bounded.timestamp-millis",
    specific: "scan.bounded.specific-offsets",
};

/// The mode option among `modes` with its timestamp or specific offsets; `None` when unset or
/// `unbounded`.
fn offsets_mode(
    r: &mut OptionReader<'_>,
    keys: &OffsetKeys,
    modes: &[&str],
    what: &str,
) -> JobResult<Option<StartupMode>> {
    let key = keys.mode;
    let Some((mode, pos)) = r.get(key).map(|(m, p)| (m.trim().to_string(), *p)) else {
        return Ok(None);
    };
    if !modes.contains(&mode.as_str()) {
        return Err(JobError::at(
            pos,
            format!(
                "unknown {key} '{mode}' of {what}; expected one of: {}",
                modes.join(", ")
            ),
        ));
    }
    Ok(match mode.as_str() {
        "unbounded" => None,
        "earliest-offset" => Some(StartupMode::Earliest),
        "latest-offset" => Some(StartupMode::Latest),
        "group-offsets" => Some(StartupMode::GroupOffsets),
        "timestamp" => {
            let ts_key = keys.timestamp;
            match r.parse::<i64>(ts_key, "a whole number of milliseconds")? {
                Some(ts) => Some(StartupMode::Timestamp(ts)),
                None => return Err(JobError::at(pos, format!("{what}: {key} 'timestamp' needs '{ts_key}'"))),
            }
        }
        _ => {
            let offsets_key = keys.specific;
            match r.get(offsets_key) {
                Some((text, p)) => {
                    Some(StartupMode::Specific(specific_offsets(text).map_err(|e| {
                        JobError::at(*p, format!("option '{offsets_key}' of {what}: {e}"))
                    })?))
                }
                None => {
                    return Err(JobError::at(
                        pos,
                        format!("{what}: {key} 'specific-offsets' needs '{offsets_key}'"),
                    ))
                }
            }
        }
    })
}

impl KafkaSourceOptions {
    pub(crate) fn of(spec: &SourceSpec) -> JobResult<KafkaSourceOptions> {
        let what = format!("kafka source '{}'", spec.id);
        let mut r = OptionReader::new(&spec.options, spec.pos, what.clone());
        let topics: Vec<String> = match r.get("topic") {
            Some((t, _)) => t
                .split(';')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect(),
            None => Vec::new(),
        };
        let pattern = match r.get("topic-pattern") {
            None => None,
            Some((p, pos)) => Some(regex::Regex::new(&format!("^(?:{p})$")).map_err(|e| {
                JobError::at(
                    *pos,
                    format!("option 'topic-pattern' of {what} is not a regular expression: {e}"),
                )
            })?),
        };
        match (topics.is_empty(), pattern.is_some()) {
            (true, false) => {
                return Err(JobError::at(
                    r.owner(),
                    format!("{what} needs the option 'topic' or 'topic-pattern'"),
                ))
            }
            (false, true) => {
                return Err(JobError::at(
                    r.owner(),
                    format!("{what}: option 'topic' and 'topic-pattern' shouldn't be set together"),
                ))
            }
            _ => {}
        }
        let properties = client_properties(&mut r, &what)?;
        let group_id = properties.get("group.id").cloned();
        let startup = offsets_mode(
            &mut r,
            &STARTUP,
            &[
                "earliest-offset",
                "latest-offset",
                "group-offsets",
                "timestamp",
                "specific-offsets",
            ],
            &what,
        )?
        .unwrap_or(StartupMode::GroupOffsets);
        if startup == StartupMode::GroupOffsets && group_id.is_none() {
            return Err(JobError::at(
                r.owner(),
                format!(
                    "{what}: 'properties.group.id' is required for scan.startup.mode 'group-offsets' (the default)"
                ),
            ));
        }
        let discovery = r
            .duration("scan.topic-partition-discovery.interval")?
            .unwrap_or(DISCOVERY_DEFAULT);
        let bounded = offsets_mode(
            &mut r,
            &BOUNDED,
            &[
                "unbounded",
                "latest-offset",
                "group-offsets",
                "timestamp",
                "specific-offsets",
            ],
            &what,
        )?;
        if bounded == Some(StartupMode::GroupOffsets) && group_id.is_none() {
            return Err(JobError::at(
                r.owner(),
                format!("{what}: 'properties.group.id' is required for scan.bounded.mode 'group-offsets'"),
            ));
        }
        let format = value_format(&mut r, &what)?;
        let ignore_parse_errors = r
            .parse::<bool>("json.ignore-parse-errors", "true or false")?
            .unwrap_or(false);
        let dead_letter_topic = r
            .get("scan.dead-letter-topic")
            .map(|(t, _)| t.trim().to_string())
            .filter(|t| !t.is_empty());
        r.done()?;
        let commit_on_checkpoint = properties
            .get("commit.offsets.on.checkpoint")
            .is_none_or(|v| v.trim() != "false")
            && group_id.is_some();
        let mut metadata = Vec::new();
        for c in &spec.schema {
            match &c.expr {
                None => metadata.push(None),
                Some(e) => match Metadata::parse(e) {
                    Some(m) => metadata.push(Some(m)),
                    None => {
                        return Err(JobError::at(
                            c.pos,
                            format!(
                                "'{}': column '{}': a kafka source column's expr names record metadata: topic, partition, offset, timestamp or key; found '{e}'",
                                spec.id, c.name
                            ),
                        ))
                    }
                },
            }
        }
        if format == ValueFormat::Raw && metadata.iter().filter(|m| m.is_none()).count() != 1 {
            return Err(JobError::at(
                spec.pos,
                format!("{what}: format 'raw' reads the value into exactly one column (besides metadata columns)"),
            ));
        }
        Ok(KafkaSourceOptions {
            topics,
            pattern,
            properties,
            startup,
            discovery_interval: (!discovery.is_zero() && bounded.is_none()).then_some(discovery),
            bounded,
            format,
            ignore_parse_errors,
            dead_letter_topic,
            commit_on_checkpoint,
            metadata,
        })
    }

    /// The client configuration: every `properties.*` but the ones Sluice reads itself.
    pub(crate) fn client_config(&self) -> rdkafka::ClientConfig {
        let mut c = rdkafka::ClientConfig::new();
        for (k, v) in &self.properties {
            if k != "commit.offsets.on.checkpoint" {
                c.set(k, v);
            }
        }
        // Offsets travel in checkpoints; the group only hears commits on checkpoints (Flink's
        // default `enable.auto.commit=false`, kept when the user says otherwise).
        if !self.properties.contains_key("enable.auto.commit") {
            c.set("enable.auto.commit", "false");
        }
        if self.startup == StartupMode::GroupOffsets && !self.properties.contains_key("auto.offset.reset") {
            // Flink's group-offsets default (reset strategy NONE): a partition without a
            // committed offset is an error, not a silent start at the end.
            c.set("auto.offset.reset", "error");
        }
        if !self.properties.contains_key("group.id") {
            // librdkafka wants a group id even for assign(); nothing is committed without the user's.
            c.set("group.id", "sluice-kafka-source");
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specific_offsets_parse_as_flink_writes_them() {
        let m = specific_offsets("partition:0,offset:42;partition:1,offset:300").unwrap();
        assert_eq!(m, BTreeMap::from([(0, 42), (1, 300)]));
        assert!(specific_offsets("partition:0").unwrap_err().contains("partition:0"));
    }
}
