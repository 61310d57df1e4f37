//! Flattens flink-conf-style YAML into `key → value` pairs with the line each came from.
//! Nested maps join their keys with dots (`taskmanager: {memory: {process: {size: 1728m}}}`
//! becomes `taskmanager.memory.process.size`), flat dotted keys stay as they are, and both can
//! be mixed, as in Flink 2's `config.yaml`. A list becomes its items joined by `;` (Flink's list
//! syntax for string options).

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// One configuration entry read from YAML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlatEntry {
    pub key: String,
    pub value: String,
    /// 1-based line of the key.
    pub line: usize,
}

/// Why a YAML text could not be flattened: the message and its 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlProblem {
    pub message: String,
    pub line: usize,
    pub column: usize,
}

enum Frame {
    /// A mapping under `prefix`; `pending` holds a key read but whose value is not yet seen.
    Map {
        prefix: String,
        pending: Option<(String, usize)>,
    },
    /// A list that will become the value of `key`.
    List {
        key: String,
        line: usize,
        items: Vec<String>,
    },
}

#[derive(Default)]
struct Flattener {
    stack: Vec<Frame>,
    entries: Vec<FlatEntry>,
    problem: Option<YamlProblem>,
    saw_document: bool,
}

impl Flattener {
    fn fail(&mut self, message: impl Into<String>, mark: &Marker) {
        if self.problem.is_none() {
            self.problem = Some(YamlProblem {
                message: message.into(),
                line: mark.line(),
                column: mark.col() + 1,
            });
        }
    }

    fn join(prefix: &str, key: &str) -> String {
        if prefix.is_empty() {
            key.to_string()
        } else {
            format!("{prefix}.{key}")
        }
    }

    fn scalar(&mut self, text: String, mark: &Marker) {
        match self.stack.last_mut() {
            Some(Frame::Map { prefix, pending }) => match pending.take() {
                None => {
                    if text.is_empty() {
                        self.fail("empty key", mark);
                    } else {
                        *pending = Some((Self::join(prefix, &text), mark.line()));
                    }
                }
                Some((key, line)) => {
                    // `key:` with nothing after it is YAML null: no value, so no entry.
                    if !text.is_empty() {
                        self.entries.push(FlatEntry {
                            key,
                            value: text,
                            line,
                        });
                    }
                }
            },
            Some(Frame::List { items, .. }) => items.push(text),
            None => self.fail(
                "expected a mapping of configuration keys, found a plain value",
                mark,
            ),
        }
    }

    /// The key a nested collection will belong to, taken from the enclosing mapping.
    fn take_pending_key(&mut self, mark: &Marker) -> Option<(String, usize)> {
        match self.stack.last_mut() {
            None => Some((String::new(), mark.line())),
            Some(Frame::Map { pending, .. }) => {
                let taken = pending.take();
                if taken.is_none() {
                    self.fail("a mapping or list cannot be used as a key", mark);
                }
                taken
            }
            Some(Frame::List { .. }) => {
                self.fail("lists may hold only plain values", mark);
                None
            }
        }
    }
}

impl MarkedEventReceiver for Flattener {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.problem.is_some() {
            return;
        }
        match ev {
            Event::DocumentStart => {
                if self.saw_document {
                    self.fail("only one YAML document is allowed", &mark);
                }
                self.saw_document = true;
            }
            Event::Scalar(text, ..) => self.scalar(text, &mark),
            Event::MappingStart(..) => {
                if let Some((prefix, _)) = self.take_pending_key(&mark) {
                    self.stack.push(Frame::Map {
                        prefix,
                        pending: None,
                    });
                }
            }
            Event::MappingEnd => {
                self.stack.pop();
            }
            Event::SequenceStart(..) => {
                if self.stack.is_empty() {
                    self.fail(
                        "expected a mapping of configuration keys, found a list",
                        &mark,
                    );
                } else if let Some((key, line)) = self.take_pending_key(&mark) {
                    self.stack.push(Frame::List {
                        key,
                        line,
                        items: Vec::new(),
                    });
                }
            }
            Event::SequenceEnd => {
                if let Some(Frame::List { key, line, items }) = self.stack.pop() {
                    self.entries.push(FlatEntry {
                        key,
                        value: items.join(";"),
                        line,
                    });
                }
            }
            Event::Alias(_) => self.fail("YAML aliases are not supported in configuration", &mark),
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
        }
    }
}

/// Flattens a YAML text. An empty text (or one holding only comments) yields no entries.
/// When a key appears twice the later one wins, as Flink's loader does.
pub fn flatten_yaml(text: &str) -> Result<Vec<FlatEntry>, YamlProblem> {
    let mut flattener = Flattener::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut flattener, true).map_err(|e| YamlProblem {
        message: e.info().to_string(),
        line: e.marker().line(),
        column: e.marker().col() + 1,
    })?;
    match flattener.problem {
        Some(problem) => Err(problem),
        None => Ok(flattener.entries),
    }
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
        let flat =
            pairs("taskmanager.memory.process.size: 1728m\ntaskmanager.numberOfTaskSlots: 2\n");
        let nested = pairs(
            "# comment\ntaskmanager:\n  memory:\n    process:\n      size: 1728m\n  numberOfTaskSlots: 2\n",
        );
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
