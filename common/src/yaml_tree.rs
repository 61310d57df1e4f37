//! A YAML document as a tree whose every node knows its 1-based line and column, so the
//! configuration loader and the job-file parser can name the exact place of a problem.

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// Where a node starts in its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    fn of(mark: &Marker) -> Pos {
        Pos {
            line: mark.line(),
            column: mark.col() + 1,
        }
    }
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A plain or quoted scalar; `~`, `null` and empty plain scalars are `Null`.
    Scalar(String),
    Null,
    Seq(Vec<Node>),
    /// Keys in document order.
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub pos: Pos,
}

impl Node {
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    /// What kind of node this is, for "expected X, found Y" messages.
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Scalar(_) => "a value",
            Value::Null => "nothing",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// A problem in the YAML text itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlProblem {
    pub message: String,
    pub line: usize,
    pub column: usize,
}

enum Open {
    Seq(Pos, Vec<Node>),
    Map(Pos, Vec<(Node, Node)>, Option<Node>),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Open>,
    root: Option<Node>,
    problem: Option<YamlProblem>,
    documents: usize,
}

impl Builder {
    fn fail(&mut self, message: &str, pos: Pos) {
        if self.problem.is_none() {
            self.problem = Some(YamlProblem {
                message: message.to_string(),
                line: pos.line,
                column: pos.column,
            });
        }
    }

    fn push_node(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Open::Seq(_, items)) => items.push(node),
            Some(Open::Map(_, entries, pending)) => match pending.take() {
                None => *pending = Some(node),
                Some(key) => entries.push((key, node)),
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.problem.is_some() {
            return;
        }
        let pos = Pos::of(&mark);
        match ev {
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents > 1 {
                    self.fail("only one YAML document is allowed", pos);
                }
            }
            Event::Scalar(text, style, ..) => {
                let plain = matches!(style, yaml_rust2::scanner::TScalarStyle::Plain);
                let value = if plain && (text.is_empty() || text == "~" || text == "null") {
                    Value::Null
                } else {
                    Value::Scalar(text)
                };
                self.push_node(Node { value, pos });
            }
            Event::SequenceStart(..) => self.stack.push(Open::Seq(pos, Vec::new())),
            Event::MappingStart(..) => self.stack.push(Open::Map(pos, Vec::new(), None)),
            Event::SequenceEnd | Event::MappingEnd => {
                let node = match self.stack.pop() {
                    Some(Open::Seq(pos, items)) => Node {
                        value: Value::Seq(items),
                        pos,
                    },
                    Some(Open::Map(pos, entries, _)) => Node {
                        value: Value::Map(entries),
                        pos,
                    },
                    None => return,
                };
                self.push_node(node);
            }
            Event::Alias(_) => self.fail("YAML aliases are not supported", pos),
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
        }
    }
}

/// Parses one YAML document; an empty text gives a `Null` root.
pub fn parse_yaml(text: &str) -> Result<Node, YamlProblem> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut builder, true).map_err(|e| YamlProblem {
        message: e.info().to_string(),
        line: e.marker().line(),
        column: e.marker().col() + 1,
    })?;
    if let Some(problem) = builder.problem {
        return Err(problem);
    }
    Ok(builder.root.unwrap_or(Node {
        value: Value::Null,
        pos: Pos { line: 1, column: 1 },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_of_nested_nodes() {
        let root = parse_yaml("a:\n  b: [1, x]\n  c: ~\n").unwrap();
        let Value::Map(entries) = &root.value else {
            panic!("map")
        };
        let (_, inner) = &entries[0];
        let Value::Map(inner) = &inner.value else {
            panic!("inner map")
        };
        assert_eq!(inner[0].0.as_str(), Some("b"));
        assert_eq!(inner[0].0.pos, Pos { line: 2, column: 3 });
        let Value::Seq(items) = &inner[0].1.value else {
            panic!("seq")
        };
        assert_eq!(items[1].as_str(), Some("x"));
        assert_eq!(items[1].pos.column, 10);
        assert!(inner[1].1.is_null());
    }

    #[test]
    fn quoted_empty_is_a_value() {
        let root = parse_yaml("a: ''\n").unwrap();
        let Value::Map(entries) = &root.value else {
            panic!("map")
        };
        assert_eq!(entries[0].1.as_str(), Some(""));
    }
}
