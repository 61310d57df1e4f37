//! Per-vertex resource requirements (Flink's externalized declarative resource management,
//! FLIP-291): `{"<vertexId>": {"parallelism": {"lowerBound": n, "upperBound": m}}}`. A change
//! makes a running job rescale to fit: every vertex at its upper bound when the slots allow,
//! else at what the slots allow but never below its lower bound (when even the lower bounds do
//! not fit, the job keeps running as it is).

use std::collections::BTreeMap;

use serde_json::{json, Value};
use sluice_common::job::JobGraph;

/// Vertex id → (lower bound, upper bound).
pub(crate) type Requirements = BTreeMap<String, (u32, u32)>;

/// The requirements in Flink's body: the set ones, else lower bound 1 and upper bound the
/// vertex's parallelism.
pub(crate) fn to_json(graph: &JobGraph, set: &Requirements) -> Value {
    let mut out = serde_json::Map::new();
    for v in &graph.vertices {
        let (lower, upper) = set.get(&v.id).copied().unwrap_or((1, v.parallelism));
        out.insert(
            v.id.clone(),
            json!({"parallelism": {"lowerBound": lower, "upperBound": upper}}),
        );
    }
    Value::Object(out)
}

/// Reads and checks a body: every vertex known, 1 ≤ lower ≤ upper ≤ max parallelism.
pub(crate) fn parse(graph: &JobGraph, body: &Value) -> Result<Requirements, String> {
    let map = body
        .as_object()
        .ok_or("the body must be an object of vertex ids to requirements")?;
    let mut out = Requirements::new();
    for (id, req) in map {
        if !graph.vertices.iter().any(|v| v.id == *id) {
            return Err(format!("the job has no vertex {id}"));
        }
        let bound = |name: &str| -> Result<u32, String> {
            req["parallelism"][name]
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| format!("vertex {id}: parallelism.{name} must be a positive integer"))
        };
        let (lower, upper) = (bound("lowerBound")?, bound("upperBound")?);
        if lower == 0 || lower > upper {
            return Err(format!(
                "vertex {id}: the bounds must satisfy 1 <= lowerBound ({lower}) <= upperBound ({upper})"
            ));
        }
        if upper > graph.max_parallelism {
            return Err(format!(
                "vertex {id}: upperBound {upper} exceeds the job's max parallelism {}",
                graph.max_parallelism
            ));
        }
        out.insert(id.clone(), (lower, upper));
    }
    Ok(out)
}

/// Each vertex's parallelism under `set` with `slots` slots (slot sharing: a job needs as many
/// slots as its widest vertex); `None` when even the lower bounds do not fit.
pub(crate) fn fit(graph: &JobGraph, set: &Requirements, slots: u32) -> Option<BTreeMap<String, u32>> {
    let mut out = BTreeMap::new();
    for v in &graph.vertices {
        let (lower, upper) = set.get(&v.id).copied().unwrap_or((v.parallelism, v.parallelism));
        let p = upper.min(slots);
        if p < lower {
            return None;
        }
        out.insert(v.id.clone(), p);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_common::job::GraphOptions;
    use sluice_frontend::compile_job;

    fn graph() -> JobGraph {
        let yaml = "name: j\nparallelism: 2\nsources:\n  - id: s\n    connector: datagen\n    options: {number-of-rows: 10}\n    schema:\n      - {name: k, type: bigint, expr: \"seq\"}\noperators:\n  - id: w\n    input: s\n    key-by: [k]\n    window: {type: tumbling, size: 1 s, time: processing}\n    aggregate: {n: \"count(*)\"}\nsinks:\n  - id: out\n    input: w\n    connector: blackhole\n";
        compile_job(yaml, "j.yaml", &GraphOptions::default(), sluice_connectors::registry()).unwrap()
    }

    #[test]
    fn bounds_are_checked_and_fitted_to_the_slots() {
        let g = graph();
        let (a, b) = (g.vertices[0].id.clone(), g.vertices[1].id.clone());
        let body = json!({ &a: {"parallelism": {"lowerBound": 1, "upperBound": 4}},
                           &b: {"parallelism": {"lowerBound": 2, "upperBound": 3}} });
        let set = parse(&g, &body).unwrap();
        assert_eq!(to_json(&g, &set)[&a]["parallelism"]["upperBound"], 4);
        let fitted = fit(&g, &set, 8).unwrap();
        assert_eq!((fitted[&a], fitted[&b]), (4, 3));
        let fitted = fit(&g, &set, 2).unwrap();
        assert_eq!((fitted[&a], fitted[&b]), (2, 2));
        assert!(fit(&g, &set, 1).is_none(), "vertex b needs 2");
        let bad = json!({ &a: {"parallelism": {"lowerBound": 3, "upperBound": 2}} });
        assert!(parse(&g, &bad)
            .unwrap_err()
            .contains("lowerBound (3) <= upperBound (2)"));
        assert!(parse(&g, &json!({"nope": {}})).unwrap_err().contains("no vertex nope"));
        let wide = json!({ &a: {"parallelism": {"lowerBound": 1, "upperBound": 1000}} });
        assert!(parse(&g, &wide).unwrap_err().contains("max parallelism"));
    }
}
