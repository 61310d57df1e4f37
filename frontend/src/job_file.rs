//! The job file (DESIGN §3a) read into typed specs. Every field is checked where it stands:
//! unknown fields, wrong kinds and bad values are errors naming line, column and what was
//! expected. Semantics across nodes (inputs, columns, cycles) are the graph builder's business.

use std::collections::BTreeMap;
use std::time::Duration;

use sluice_common::config::parse_duration;
use sluice_common::job::spec::*;
use sluice_common::job::types::ColumnType;
use sluice_common::job::{JobError, JobResult};
use sluice_common::yaml_tree::{parse_yaml, Node, Pos, Value};

/// `Option` → `Result` with an empty reason, for parsers whose failure needs no explanation.
trait OkOrDefault<T> {
    fn ok_or_default(self) -> Result<T, String>;
}

impl<T> OkOrDefault<T> for Option<T> {
    fn ok_or_default(self) -> Result<T, String> {
        self.ok_or_else(String::new)
    }
}

/// A mapping whose fields are taken one by one; leftovers are unknown fields.
struct Fields<'a> {
    pos: Pos,
    what: &'a str,
    entries: Vec<(&'a str, &'a Node, Pos)>,
}

impl<'a> Fields<'a> {
    fn of(node: &'a Node, what: &'a str) -> JobResult<Fields<'a>> {
        let Value::Map(entries) = &node.value else {
            return Err(JobError::at(
                node.pos,
                format!("expected {what} as a mapping, found {}", node.kind()),
            ));
        };
        let mut out = Vec::with_capacity(entries.len());
        for (k, v) in entries {
            let key = k
                .as_str()
                .ok_or_else(|| JobError::at(k.pos, format!("expected a field name in {what}")))?;
            if out.iter().any(|(seen, _, _)| *seen == key) {
                return Err(JobError::at(k.pos, format!("field '{key}' appears twice in {what}")));
            }
            out.push((key, v, k.pos));
        }
        Ok(Fields {
            pos: node.pos,
            what,
            entries: out,
        })
    }

    fn take(&mut self, key: &str) -> Option<&'a Node> {
        let i = self.entries.iter().position(|(k, v, _)| *k == key && !v.is_null())?;
        Some(self.entries.remove(i).1)
    }

    fn str(&mut self, key: &str) -> JobResult<Option<(String, Pos)>> {
        match self.take(key) {
            None => Ok(None),
            Some(n) => scalar(n, key).map(|s| Some((s, n.pos))),
        }
    }

    fn required(&mut self, key: &str) -> JobResult<(String, Pos)> {
        match self.str(key)? {
            Some(v) => Ok(v),
            None => Err(self.missing(key, format!("{} needs a '{key}' field", self.what))),
        }
    }

    /// A required field is absent: a field that looks like its misspelling is named (with
    /// where it stands), else `message` at the mapping.
    fn missing(&self, key: &str, message: String) -> JobError {
        let typo = self
            .entries
            .iter()
            .find(|(k, v, _)| !v.is_null() && sluice_common::suggest::closest(k, [key]).is_some());
        match typo {
            Some((k, _, pos)) => JobError::at(
                *pos,
                format!("unknown field '{k}' in {}. Did you mean '{key}'?", self.what),
            ),
            None => JobError::at(self.pos, message),
        }
    }

    /// An optional field parsed by `parse`; a bad value names the key, the expected form and
    /// the value.
    fn parsed<T>(
        &mut self,
        key: &str,
        expected: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> JobResult<Option<T>> {
        match self.str(key)? {
            None => Ok(None),
            Some((text, pos)) => parse(&text).map(Some).map_err(|why| {
                let why = if why.is_empty() {
                    String::new()
                } else {
                    format!(": {why}")
                };
                JobError::at(pos, format!("'{key}' must be {expected}, found '{text}'{why}"))
            }),
        }
    }

    fn positive(&mut self, key: &str) -> JobResult<Option<u32>> {
        self.parsed(key, "a whole number of at least 1", |t| {
            t.parse::<u32>().ok().filter(|n| *n > 0).ok_or_default()
        })
    }

    fn duration(&mut self, key: &str) -> JobResult<Option<Duration>> {
        self.parsed(key, "a duration such as 5 s or 10 min", parse_duration)
    }

    fn bool(&mut self, key: &str) -> JobResult<Option<bool>> {
        self.parsed(key, "true or false", |t| match t {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(String::new()),
        })
    }

    /// Fails on the first field nobody took.
    fn done(self, allowed: &[&str]) -> JobResult<()> {
        match self.entries.into_iter().find(|(_, v, _)| !v.is_null()) {
            None => Ok(()),
            Some((key, _, pos)) => Err(JobError::at(
                pos,
                format!(
                    "unknown field '{key}' in {}; expected one of: {}.{}",
                    self.what,
                    allowed.join(", "),
                    sluice_common::suggest::did_you_mean(key, allowed.iter().copied())
                ),
            )),
        }
    }
}

fn scalar(node: &Node, what: &str) -> JobResult<String> {
    node.as_str().map(str::to_string).ok_or_else(|| {
        JobError::at(
            node.pos,
            format!("expected a value for '{what}', found {}", node.kind()),
        )
    })
}

fn seq<'a>(node: &'a Node, what: &str) -> JobResult<&'a [Node]> {
    match &node.value {
        Value::Seq(items) => Ok(items),
        _ => Err(JobError::at(
            node.pos,
            format!("expected '{what}' to be a list, found {}", node.kind()),
        )),
    }
}

fn map_entries<'a>(node: &'a Node, what: &str) -> JobResult<Vec<(String, &'a Node, Pos)>> {
    let Value::Map(entries) = &node.value else {
        return Err(JobError::at(
            node.pos,
            format!("expected '{what}' to be a mapping, found {}", node.kind()),
        ));
    };
    entries.iter().map(|(k, v)| Ok((scalar(k, what)?, v, k.pos))).collect()
}

fn options(node: Option<&Node>) -> JobResult<BTreeMap<String, (String, Pos)>> {
    let mut out = BTreeMap::new();
    if let Some(node) = node {
        for (k, v, _) in map_entries(node, "options")? {
            out.insert(k.clone(), (scalar(v, &k)?, v.pos));
        }
    }
    Ok(out)
}

/// `key-by: user_id` or `key-by: [a, b]`.
fn name_list(node: &Node, what: &str) -> JobResult<Vec<String>> {
    match &node.value {
        Value::Scalar(s) => Ok(vec![s.clone()]),
        Value::Seq(items) => items.iter().map(|n| scalar(n, what)).collect(),
        _ => Err(JobError::at(
            node.pos,
            format!("expected '{what}' to be a name or a list of names"),
        )),
    }
}

fn partition(text: &str, pos: Pos) -> JobResult<Partition> {
    match text {
        "rebalance" => Ok(Partition::Rebalance),
        "broadcast" => Ok(Partition::Broadcast),
        other => Err(JobError::at(
            pos,
            format!("unknown partition '{other}'; expected rebalance or broadcast"),
        )),
    }
}

/// `input: a`, `input: [a, b]`, or `input: [{id: a, partition: rebalance}]`.
fn inputs(node: &Node, default_partition: Option<Partition>) -> JobResult<Vec<InputSpec>> {
    let one = |n: &Node| -> JobResult<InputSpec> {
        match &n.value {
            Value::Scalar(id) => Ok(InputSpec {
                id: id.clone(),
                partition: default_partition,
                pos: n.pos,
            }),
            Value::Map(_) => {
                let mut f = Fields::of(n, "an input")?;
                let (id, _) = f.required("id")?;
                let p = match f.str("partition")? {
                    Some((t, pos)) => Some(partition(&t, pos)?),
                    None => default_partition,
                };
                f.done(&["id", "partition"])?;
                Ok(InputSpec {
                    id,
                    partition: p,
                    pos: n.pos,
                })
            }
            _ => Err(JobError::at(n.pos, "expected an input id or {id, partition}")),
        }
    };
    match &node.value {
        Value::Seq(items) if !items.is_empty() => items.iter().map(one).collect(),
        Value::Seq(_) => Err(JobError::at(node.pos, "'input' lists no inputs")),
        _ => Ok(vec![one(node)?]),
    }
}

fn column(node: &Node) -> JobResult<ColumnSpec> {
    let mut f = Fields::of(node, "a column")?;
    let (name, _) = f.required("name")?;
    let (ty, ty_pos) = f.required("type")?;
    let ty = ColumnType::parse(&ty).map_err(|e| JobError::at(ty_pos, e))?;
    let expr = f.str("expr")?.map(|(e, _)| e);
    f.done(&["name", "type", "expr"])?;
    Ok(ColumnSpec {
        name,
        ty,
        expr,
        pos: node.pos,
    })
}

fn watermark(node: &Node) -> JobResult<WatermarkSpec> {
    let mut f = Fields::of(node, "a watermark")?;
    let (column, _) = f.required("column")?;
    let max_out_of_orderness = f.duration("max-out-of-orderness")?.unwrap_or(Duration::ZERO);
    let idle_timeout = f.duration("idle-timeout")?;
    f.done(&["column", "max-out-of-orderness", "idle-timeout"])?;
    Ok(WatermarkSpec {
        column,
        max_out_of_orderness,
        idle_timeout,
        // The job's `pipeline.auto-watermark-interval`, once the graph is built.
        emit_interval: Duration::ZERO,
        pos: node.pos,
    })
}

fn source(node: &Node) -> JobResult<SourceSpec> {
    let mut f = Fields::of(node, "a source")?;
    let (id, _) = f.required("id")?;
    let uid = f.str("uid")?.map(|(u, _)| u).unwrap_or_else(|| id.clone());
    let (connector, _) = f.required("connector")?;
    let parallelism = f.positive("parallelism")?;
    let options = options(f.take("options"))?;
    let schema = match f.take("schema") {
        None => Vec::new(),
        Some(n) => seq(n, "schema")?.iter().map(column).collect::<JobResult<_>>()?,
    };
    let watermark = f.take("watermark").map(watermark).transpose()?;
    f.done(&[
        "id",
        "uid",
        "connector",
        "parallelism",
        "options",
        "schema",
        "watermark",
    ])?;
    Ok(SourceSpec {
        id,
        uid,
        pos: node.pos,
        connector,
        parallelism,
        options,
        schema,
        watermark,
    })
}

/// The longest window size, slide or gap: 100,000 days, so that window bounds of any event time
/// a job can meet stay representable timestamps.
const MAX_WINDOW_DURATION: Duration = Duration::from_secs(100_000 * 86_400);

fn window(node: &Node) -> JobResult<WindowSpec> {
    let mut f = Fields::of(node, "a window")?;
    let (kind, kind_pos) = f.required("type")?;
    let need = |f: &mut Fields, key: &str| -> JobResult<Duration> {
        let d = f
            .duration(key)?
            .ok_or_else(|| JobError::at(node.pos, format!("a {kind} window needs '{key}'")))?;
        if d.is_zero() {
            return Err(JobError::at(
                node.pos,
                format!("'{key}' of a window must be larger than 0"),
            ));
        }
        if d > MAX_WINDOW_DURATION {
            return Err(JobError::at(
                node.pos,
                format!(
                    "'{key}' of a window is {}: window bounds would leave the range of timestamps; at most {}",
                    sluice_common::config::format_duration(d),
                    sluice_common::config::format_duration(MAX_WINDOW_DURATION)
                ),
            ));
        }
        Ok(d)
    };
    let kind = match kind.as_str() {
        "tumbling" => WindowKind::Tumbling {
            size: need(&mut f, "size")?,
        },
        "sliding" => WindowKind::Sliding {
            size: need(&mut f, "size")?,
            slide: need(&mut f, "slide")?,
        },
        "session" => WindowKind::Session {
            gap: need(&mut f, "gap")?,
        },
        other => {
            return Err(JobError::at(
                kind_pos,
                format!("unknown window type '{other}'; expected tumbling, sliding or session"),
            ))
        }
    };
    let time = match f.str("time")? {
        None => TimeKind::Event,
        Some((t, pos)) => match t.as_str() {
            "event" => TimeKind::Event,
            "processing" => TimeKind::Processing,
            other => {
                return Err(JobError::at(
                    pos,
                    format!("unknown time '{other}'; expected event or processing"),
                ))
            }
        },
    };
    f.done(&["type", "size", "slide", "gap", "time"])?;
    Ok(WindowSpec {
        kind,
        time,
        pos: node.pos,
    })
}

const OPERATOR_FIELDS: [&str; 17] = [
    "id",
    "uid",
    "input",
    "partition",
    "parallelism",
    "chain",
    "filter",
    "select",
    "key-by",
    "window",
    "aggregate",
    "state.ttl",
    "union",
    "metrics",
    "reinterpret-as-keyed",
    "broadcast",
    "salt",
];

/// An `aggregate:` map (output column → aggregate call); `what` names its operator.
fn aggregate_calls(agg: &Node, what: &str) -> JobResult<Vec<(String, String, Pos)>> {
    let aggregates: Vec<(String, String, Pos)> = map_entries(agg, "aggregate")?
        .into_iter()
        .map(|(k, v, _)| Ok((k.clone(), scalar(v, &k)?, v.pos)))
        .collect::<JobResult<_>>()?;
    if aggregates.is_empty() {
        return Err(JobError::at(agg.pos, format!("{what} aggregates nothing")));
    }
    Ok(aggregates)
}

/// The fields every node with inputs starts with.
struct Head<'a> {
    id: String,
    uid: String,
    inputs: Vec<InputSpec>,
    input_node: &'a Node,
}

/// Reads `id`, `uid` (default: the id), `partition` (default for every input) and `input`.
fn head<'a>(f: &mut Fields<'a>, what: &str) -> JobResult<Head<'a>> {
    let (id, _) = f.required("id")?;
    let uid = f.str("uid")?.map(|(u, _)| u).unwrap_or_else(|| id.clone());
    let default_partition = match f.str("partition")? {
        Some((t, pos)) => Some(partition(&t, pos)?),
        None => None,
    };
    let input_node = match f.take("input") {
        Some(n) => n,
        None => return Err(f.missing("input", format!("{what} '{id}' needs an 'input'"))),
    };
    let inputs = inputs(input_node, default_partition)?;
    Ok(Head {
        id,
        uid,
        inputs,
        input_node,
    })
}

fn operator(node: &Node) -> JobResult<OperatorSpec> {
    let mut f = Fields::of(node, "an operator")?;
    let Head { id, uid, inputs, .. } = head(&mut f, "operator")?;
    let parallelism = f.positive("parallelism")?;
    let chain = f.bool("chain")?.unwrap_or(true);
    let key_by = f
        .take("key-by")
        .map(|n| name_list(n, "key-by"))
        .transpose()?
        .unwrap_or_default();
    let filter = f.str("filter")?;
    let select = f
        .take("select")
        .map(|n| -> JobResult<Vec<(String, String, Pos)>> {
            map_entries(n, "select")?
                .into_iter()
                .map(|(k, v, _)| Ok((k.clone(), scalar(v, &k)?, v.pos)))
                .collect()
        })
        .transpose()?;
    let window_spec = f.take("window").map(window).transpose()?;
    let aggregate_node = f.take("aggregate");
    let ttl = f.duration("state.ttl")?;
    let union = f.bool("union")?.unwrap_or(false);
    let metrics = list(f.take("metrics"), "metrics", metric)?;
    let reinterpret = f.bool("reinterpret-as-keyed")?;
    let broadcast_spec = f.take("broadcast").map(broadcast).transpose()?;
    let salt = f.positive("salt")?;
    f.done(&OPERATOR_FIELDS)?;
    if let Some(n) = salt {
        if window_spec.is_none() {
            return Err(JobError::at(
                node.pos,
                format!("operator '{id}': 'salt' spreads the key of a 'window'; this operator has none"),
            ));
        }
        if n < 2 {
            return Err(JobError::at(
                node.pos,
                format!(
                    "operator '{id}': 'salt: {n}' spreads a key over one bucket, which changes nothing; use 2 or more"
                ),
            ));
        }
    }
    if reinterpret == Some(true) && key_by.is_empty() {
        return Err(JobError::at(
            node.pos,
            format!("operator '{id}': 'reinterpret-as-keyed' needs 'key-by' (the columns its input is partitioned by)"),
        ));
    }

    let kinds = [
        filter.is_some(),
        select.is_some(),
        window_spec.is_some(),
        union,
        broadcast_spec.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if kinds > 1 {
        return Err(JobError::at(
            node.pos,
            format!(
                "operator '{id}' has more than one of filter, select, window, union, broadcast; split it into several operators"
            ),
        ));
    }
    if ttl.is_some() && (window_spec.is_some() || aggregate_node.is_none()) {
        return Err(JobError::at(
            node.pos,
            format!("operator '{id}': 'state.ttl' applies to an 'aggregate' without a 'window'"),
        ));
    }
    let kind = if let Some((expr, pos)) = filter {
        OperatorKind::Filter(expr, pos)
    } else if let Some(cols) = select {
        if cols.is_empty() {
            return Err(JobError::at(node.pos, format!("operator '{id}' selects no columns")));
        }
        OperatorKind::Select(cols)
    } else if let Some(window) = window_spec {
        let Some(agg) = aggregate_node else {
            return Err(JobError::at(
                window.pos,
                format!("window operator '{id}' needs an 'aggregate'"),
            ));
        };
        let aggregates = aggregate_calls(agg, &format!("window operator '{id}'"))?;
        if key_by.is_empty() {
            return Err(JobError::at(
                window.pos,
                format!("window operator '{id}' needs 'key-by'"),
            ));
        }
        OperatorKind::Window { window, aggregates }
    } else if let Some(agg) = aggregate_node {
        if key_by.is_empty() {
            return Err(JobError::at(
                agg.pos,
                format!("operator '{id}': an 'aggregate' without a 'window' needs 'key-by' (a continuous aggregate per key)"),
            ));
        }
        let aggregates = aggregate_calls(agg, &format!("aggregate operator '{id}'"))?;
        OperatorKind::Aggregate {
            aggregates,
            ttl: ttl.filter(|t| !t.is_zero()),
        }
    } else if let Some(b) = broadcast_spec {
        if inputs.len() > 1 {
            return Err(JobError::at(
                node.pos,
                format!(
                    "operator '{id}' connects one main input to its broadcast input; it lists {} inputs",
                    inputs.len()
                ),
            ));
        }
        OperatorKind::Broadcast(b)
    } else if union || inputs.len() > 1 {
        OperatorKind::Union
    } else if !key_by.is_empty() {
        OperatorKind::KeyBy
    } else {
        return Err(JobError::at(
            node.pos,
            format!("operator '{id}' does nothing; give it one of filter, select, key-by, window, union"),
        ));
    };
    Ok(OperatorSpec {
        id,
        uid,
        pos: node.pos,
        inputs,
        parallelism,
        chain,
        key_by,
        kind,
        metrics,
        reinterpret_as_keyed: reinterpret == Some(true),
        salt,
    })
}

/// `broadcast: {input: rules, key: rule_id, lookup: user_group, join: left, filter: "…"}`.
fn broadcast(node: &Node) -> JobResult<BroadcastSpec> {
    let mut f = Fields::of(node, "a broadcast")?;
    let input_node = match f.take("input") {
        Some(n) => n,
        None => return Err(f.missing("input", "a broadcast needs the 'input' it receives".to_string())),
    };
    let mut ins = inputs(input_node, Some(Partition::Broadcast))?;
    if ins.len() != 1 {
        return Err(JobError::at(input_node.pos, "a broadcast has one input"));
    }
    let mut input = ins.remove(0);
    input.partition = Some(Partition::Broadcast);
    let (key, _) = f.required("key")?;
    let (lookup, _) = f.required("lookup")?;
    let inner = match f.str("join")? {
        None => false,
        Some((j, pos)) => match j.as_str() {
            "left" => false,
            "inner" => true,
            other => {
                return Err(JobError::at(
                    pos,
                    format!("unknown join '{other}'; expected left or inner"),
                ))
            }
        },
    };
    let filter = f.str("filter")?.map(|(e, _)| e);
    f.done(&["input", "key", "lookup", "join", "filter"])?;
    Ok(BroadcastSpec {
        input,
        key,
        lookup,
        inner,
        filter,
        pos: node.pos,
    })
}

/// One of an operator's `metrics:`: `{name: n, type: counter|meter|gauge|histogram, value: …}`.
fn metric(node: &Node) -> JobResult<MetricSpec> {
    let mut f = Fields::of(node, "a metric")?;
    let (name, _) = f.required("name")?;
    let (kind, kind_pos) = f.required("type")?;
    let kind = MetricKind::parse(&kind).ok_or_else(|| {
        JobError::at(
            kind_pos,
            format!("unknown metric type '{kind}'; expected counter, meter, gauge or histogram"),
        )
    })?;
    let value = f.str("value")?.map(|(v, _)| v);
    f.done(&["name", "type", "value"])?;
    Ok(MetricSpec {
        name,
        kind,
        value,
        pos: node.pos,
    })
}

fn sink(node: &Node) -> JobResult<SinkSpec> {
    let mut f = Fields::of(node, "a sink")?;
    let Head {
        id,
        uid,
        inputs: mut ins,
        input_node,
    } = head(&mut f, "sink")?;
    if ins.len() != 1 {
        return Err(JobError::at(
            input_node.pos,
            format!("sink '{id}' takes one input; put a union before it"),
        ));
    }
    let (connector, _) = f.required("connector")?;
    let parallelism = f.positive("parallelism")?;
    let mut options = options(f.take("options"))?;
    // Flink's `sink.parallelism` option is the sink's parallelism, as `parallelism:` is.
    let parallelism = match (parallelism, options.remove("sink.parallelism")) {
        (p, None) => p,
        (None, Some((text, pos))) => Some(text.trim().parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(|| {
            JobError::at(
                pos,
                format!(
                    "option 'sink.parallelism' of sink '{id}' must be a whole number of at least 1, found '{text}'"
                ),
            )
        })?),
        (Some(_), Some((_, pos))) => {
            return Err(JobError::at(
                pos,
                format!("sink '{id}' sets both 'parallelism' and option 'sink.parallelism'; keep one"),
            ))
        }
    };
    f.done(&["id", "uid", "input", "partition", "connector", "parallelism", "options"])?;
    Ok(SinkSpec {
        id,
        uid,
        pos: node.pos,
        input: ins.remove(0),
        connector,
        parallelism,
        options,
    })
}

/// A per-job override must be a key Sluice knows, with a valid value.
fn check_config_override(key: &str, value: &str, key_pos: Pos, value_pos: Pos) -> JobResult<()> {
    let option = sluice_common::config::options::find_option(key)
        .ok_or_else(|| JobError::at(key_pos, format!("unknown configuration key '{key}' in config")))?;
    option.check(value).map_err(|why| {
        JobError::at(
            value_pos,
            format!(
                "invalid value '{value}' for '{key}': {why}; expected {}",
                option.expected()
            ),
        )
    })
}

fn list<T>(node: Option<&Node>, what: &str, each: fn(&Node) -> JobResult<T>) -> JobResult<Vec<T>> {
    match node {
        None => Ok(Vec::new()),
        Some(n) => seq(n, what)?.iter().map(each).collect(),
    }
}

/// Parses a job file's text. `file` names it in errors.
pub fn parse_job(text: &str, file: &str) -> JobResult<JobSpec> {
    parse_inner(text).map_err(|e| e.in_file(file))
}

fn parse_inner(text: &str) -> JobResult<JobSpec> {
    let root = parse_yaml(text).map_err(|p| {
        JobError::at(
            Pos {
                line: p.line,
                column: p.column,
            },
            format!("invalid YAML: {}", p.message),
        )
    })?;
    if root.is_null() {
        return Err(JobError::at(
            root.pos,
            "the job file is empty; expected name, sources, operators, sinks",
        ));
    }
    let mut f = Fields::of(&root, "the job")?;
    let name = f.str("name")?.map(|(n, _)| n).unwrap_or_else(|| "job".to_string());
    let parallelism = f.positive("parallelism")?;
    let max_parallelism = f.positive("max-parallelism")?;
    let config = match f.take("config") {
        None => Vec::new(),
        Some(n) => map_entries(n, "config")?
            .into_iter()
            .map(|(k, v, kpos)| {
                let value = scalar(v, &k)?;
                check_config_override(&k, &value, kpos, v.pos)?;
                Ok((k.clone(), value))
            })
            .collect::<JobResult<_>>()?,
    };
    let sources = list(f.take("sources"), "sources", source)?;
    let operators = list(f.take("operators"), "operators", operator)?;
    let sinks = list(f.take("sinks"), "sinks", sink)?;
    f.done(&[
        "name",
        "parallelism",
        "max-parallelism",
        "config",
        "sources",
        "operators",
        "sinks",
    ])?;
    if sources.is_empty() {
        return Err(JobError::at(root.pos, "the job has no sources"));
    }
    if sinks.is_empty() {
        return Err(JobError::at(root.pos, "the job has no sinks"));
    }
    Ok(JobSpec {
        name,
        parallelism,
        max_parallelism,
        config,
        sources,
        operators,
        sinks,
    })
}
