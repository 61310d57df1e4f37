//! Flattens flink-conf-style YAML into `key → value` pairs with the line each came from.
//! Nested maps join their keys with dots (`taskmanager: {memory: {process: {size: 1728m}}}`
//! becomes `taskmanager.memory.process.size`), flat dotted keys stay as they are, and both can
//! be mixed, as in Flink 2's `config.yaml`. A list becomes its items joined by `;` (Flink's list
//! syntax for string options). A key with no value is skipped.

use crate::yaml_tree::{parse_yaml, Node, Value};

pub use crate::yaml_tree::YamlProblem;

/// One configuration entry read from YAML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlatEntry {
    pub key: String,
    pub value: String,
    /// 1-based line of the key.
    pub line: usize,
}

fn problem(message: &str, node: &Node) -> YamlProblem {
    YamlProblem {
        message: message.to_string(),
        line: node.pos.line,
        column: node.pos.column,
    }
}

fn flatten_map(prefix: &str, entries: &[(Node, Node)], out: &mut Vec<FlatEntry>) -> Result<(), YamlProblem> {
    for (key_node, value) in entries {
        let key = match &key_node.value {
            Value::Scalar(k) => k.as_str(),
            _ => return Err(problem("a configuration key must be a plain name", key_node)),
        };
        let key = if prefix.is_empty() {
            key.to_string()
        } else {
            format!("{prefix}.{key}")
        };
        match &value.value {
            Value::Null => {}
            Value::Scalar(text) => out.push(FlatEntry {
                key,
                value: text.clone(),
                line: key_node.pos.line,
            }),
            Value::Map(inner) => flatten_map(&key, inner, out)?,
            Value::Seq(items) => {
                let mut parts = Vec::with_capacity(items.len());
                for item in items {
                    match &item.value {
                        Value::Scalar(text) => parts.push(text.clone()),
                        _ => return Err(problem("lists may hold only plain values", item)),
                    }
                }
                out.push(FlatEntry {
                    key,
                    value: parts.join(";"),
                    line: key_node.pos.line,
                });
            }
        }
    }
    Ok(())
}

/// Flattens a YAML text. An empty text (or one holding only comments) yields no entries.
/// When a key appears twice the later one wins, as Flink's loader does.
pub fn flatten_yaml(text: &str) -> Result<Vec<FlatEntry>, YamlProblem> {
    let root = parse_yaml(text)?;
    let mut out = Vec::new();
    match &root.value {
        Value::Null => {}
        Value::Map(entries) => flatten_map("", entries, &mut out)?,
        Value::Scalar(_) => {
            return Err(problem(
                "expected a mapping of configuration keys, found a plain value",
                &root,
            ))
        }
        Value::Seq(_) => return Err(problem("expected a mapping of configuration keys, found a list", &root)),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String, usize)> {
        flatten_yaml(text)
            .unwrap()
            .into_iter()
            .map(|e| (e.key, e.value, e.line))
            .collect()
    }

    #[test]
    fn flat_and_nested_give_the_same_keys() {
        let flat = pairs("taskmanager.memory.process.size: 1728m\ntaskmanager.numberOfTaskSlots: 2\n");
        let nested =
            pairs("# comment\ntaskmanager:\n  memory:\n    process:\n      size: 1728m\n  numberOfTaskSlots: 2\n");
        assert_eq!(flat[0].0, "taskmanager.memory.process.size");
        assert_eq!(flat[0].1, "1728m");
        assert_eq!(nested[0].0, flat[0].0);
        assert_eq!(nested[0].1, flat[0].1);
        assert_eq!(nested[0].2, 5, "line of the innermost key");
        assert_eq!(nested[1].0, "taskmanager.numberOfTaskSlots");
    }

    #[test]
    fn mixed_dotted_keys_inside_maps() {
        let got = pairs("jobmanager:\n  rpc.port: 6123\n  memory.process.size: 1600m\n");
        assert_eq!(got[0].0, "jobmanager.rpc.port");
        assert_eq!(got[1].0, "jobmanager.memory.process.size");
    }

    #[test]
    fn lists_null_and_empty() {
        let got = pairs("io.tmp.dirs: [/a, /b]\nempty:\n");
        assert_eq!(got, vec![("io.tmp.dirs".into(), "/a;/b".into(), 1)]);
        assert!(pairs("# nothing here\n").is_empty());
        assert!(pairs("").is_empty());
    }

    #[test]
    fn bad_yaml_names_line_and_column() {
        let e = flatten_yaml("a: 1\nb: [1, 2\n").unwrap_err();
        assert!(e.line >= 2, "{e:?}");
        let e = flatten_yaml("just a string").unwrap_err();
        assert!(e.message.contains("expected a mapping"), "{e:?}");
        let e = flatten_yaml("- a\n- b\n").unwrap_err();
        assert!(e.message.contains("found a list"), "{e:?}");
    }
}
