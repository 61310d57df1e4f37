//! The Kafka source's options, with Flink SQL's Kafka connector names and defaults: `topic`
//! (one or a `;`-separated list) or `topic-pattern` (a regular expression every topic name must
//! match whole; topics created later are found by discovery), `properties.bootstrap.servers` (required),
//! `properties.group.id`, any other `properties.*` handed to the client, `scan.startup.mode`
//! (`earliest-offset`, `latest-offset`, `group-offsets` (default), `timestamp`,
//! `specific-offsets`) with `scan.startup.timestamp-millis` / `scan.startup.specific-offsets`,
//! `scan.topic-partition-discovery.interval` (5 min; 0 turns discovery off), `scan.bounded.mode`
//! (`unbounded` (default) or `latest-offset`), `format` (`json` (default), `csv`, `raw`),
//! `json.ignore-parse-errors`, and beyond Flink `scan.dead-letter-topic` (a record that does
//! not decode goes there, with the error in its headers, instead of failing the job). Columns read the record's value in that format; a column whose
//! `expr` is `topic`, `partition`, `offset`, `timestamp` or `key` holds that part of the record
//! instead (Flink SQL's metadata columns).

use std::collections::BTreeMap;
use std::time::Duration;

use sluice_common::job::spec::SourceSpec;
use sluice_common::job::{JobError, JobResult};

use crate::options::OptionReader;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StartupMode {
    Earliest,
    Latest,
    /// The group's committed offsets; `auto.offset.reset` decides where none exists (Flink's
    /// default: none, so a partition without a commit fails the job).
    GroupOffsets,
    Timestamp(i64),
    /// partition → offset; other partitions start from the committed offset, else earliest.
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
    pub bounded_latest: bool,
    pub format: ValueFormat,
    pub ignore_parse_errors: bool,
    /// Where records that do not decode go (instead of failing the job).
    pub dead_letter_topic: Option<String>,
    pub commit_on_checkpoint: bool,
    /// Per column of the schema: `Some` when the column is a metadata column.
    pub metadata: Vec<Option<Metadata>>,
}

/// The value of option `key` among `choices` (its default when unset); anything else is an
/// error naming the option, its owner and the accepted values.
pub(crate) fn choice<'a, T: Copy>(
    r: &mut OptionReader<'a>,
    key: &'a str,
    default: T,
    choices: &[(&str, T)],
    what: &str,
) -> JobResult<T> {
    match r.get(key) {
        None => Ok(default),
        Some((text, pos)) => choices
            .iter()
            .find(|(name, _)| *name == text.trim())
            .map(|(_, v)| *v)
            .ok_or_else(|| {
                let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
                JobError::at(
                    *pos,
                    format!(
                        "unknown {key} '{text}' of {what}; expected one of: {}",
                        names.join(", ")
                    ),
                )
            }),
    }
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
        let mode = r.get("scan.startup.mode").cloned();
        let startup = match mode.as_ref().map(|(m, p)| (m.as_str(), *p)) {
            None | Some(("group-offsets", _)) => StartupMode::GroupOffsets,
            Some(("earliest-offset", _)) => StartupMode::Earliest,
            Some(("latest-offset", _)) => StartupMode::Latest,
            Some(("timestamp", pos)) => match r.parse::<i64>("scan.startup.timestamp-millis", "a whole number of milliseconds")? {
                Some(ts) => StartupMode::Timestamp(ts),
                None => {
                    return Err(JobError::at(
                        pos,
                        format!("{what}: scan.startup.mode 'timestamp' needs 'scan.startup.timestamp-millis'"),
                    ))
                }
            },
            Some(("specific-offsets", pos)) => match r.get("scan.startup.specific-offsets") {
                Some((text, p)) => StartupMode::Specific(
                    specific_offsets(text)
                        .map_err(|e| JobError::at(*p, format!("option 'scan.startup.specific-offsets' of {what}: {e}")))?,
                ),
                None => {
                    return Err(JobError::at(
                        pos,
                        format!("{what}: scan.startup.mode 'specific-offsets' needs 'scan.startup.specific-offsets'"),
                    ))
                }
            },
            Some((other, pos)) => {
                return Err(JobError::at(
                    pos,
                    format!(
                        "unknown scan.startup.mode '{other}' of {what}; expected earliest-offset, latest-offset, group-offsets, timestamp or specific-offsets"
                    ),
                ))
            }
        };
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
        let bounded_latest = choice(
            &mut r,
            "scan.bounded.mode",
            false,
            &[("unbounded", false), ("latest-offset", true)],
            &what,
        )?;
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
            discovery_interval: (!discovery.is_zero() && !bounded_latest).then_some(discovery),
            bounded_latest,
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
