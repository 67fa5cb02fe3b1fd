//! YAML as MLflow reads and writes it: PyYAML's `safe_load` (YAML 1.1 types: `yes` is a bool,
//! `2025-01-01` a timestamp, `1_000` an int) and `safe_dump(default_flow_style=False)` (block
//! style, sorted keys, 2-space indent, indentless lists under keys, strings quoted only when
//! needed, long scalars folded at 80 columns, non-ASCII escaped in double quotes).
//!
//! Parsing uses the `saphyr-parser` event stream; this module only resolves scalar types the
//! YAML 1.1 way and expands aliases with a budget, so a "billion laughs" file is an error, not an
//! exhausted machine. The writer is PyYAML's emitter algorithm for the node kinds MLmodel files
//! use, so a file MLflow wrote comes back byte for byte.
//!
//! Submodules: `parse` (events to nodes, with the limits), `resolve` (what a plain scalar means),
//! `emit` (block layout) and `style` (how one scalar is written).

mod emit;
mod parse;
mod resolve;
mod style;

pub use emit::{emit, emit_with};
pub use parse::{Limits, parse, parse_with};
pub use style::python_float;

#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    /// A plain scalar PyYAML reads as a datetime; kept as written.
    Timestamp(String),
    Seq(Vec<Node>),
    Map(Mapping),
}

/// Keys in document order; a repeated key keeps its first position and its last value, as a
/// Python dict built by PyYAML does.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Mapping(pub Vec<(Node, Node)>);

impl Mapping {
    pub fn new() -> Self {
        Self(Vec::new())
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.0.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        self.0.iter_mut().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Sets `key`, keeping its position if present.
    pub fn insert(&mut self, key: &str, value: Node) {
        match self.get_mut(key) {
            Some(slot) => *slot = value,
            None => self.0.push((Node::Str(key.to_owned()), value)),
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<Node> {
        let index = self.0.iter().position(|(k, _)| k.as_str() == Some(key))?;
        Some(self.0.remove(index).1)
    }

    /// String keys in document order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().filter_map(|(k, _)| k.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Node, &Node)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Node {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&Mapping> {
        match self {
            Node::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_map_mut(&mut self) -> Option<&mut Mapping> {
        match self {
            Node::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Node::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Node::Null)
    }

    /// What Python would call the value's type, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Node::Null => "null",
            Node::Bool(_) => "a boolean",
            Node::Int(_) => "an integer",
            Node::Float(_) => "a number",
            Node::Str(_) => "a string",
            Node::Timestamp(_) => "a timestamp",
            Node::Seq(_) => "a list",
            Node::Map(_) => "a mapping",
        }
    }

    /// The value as JSON (timestamps become strings; integers beyond i64/u64 become strings).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(*b),
            Node::Int(i) => i64::try_from(*i)
                .map(Value::from)
                .or_else(|_| u64::try_from(*i).map(Value::from))
                .unwrap_or_else(|_| Value::String(i.to_string())),
            Node::Float(f) => serde_json::Number::from_f64(*f).map(Value::Number).unwrap_or(Value::Null),
            Node::Str(s) | Node::Timestamp(s) => Value::String(s.clone()),
            Node::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            Node::Map(map) => Value::Object(
                map.0.iter().map(|(k, v)| (key_text(k), v.to_json())).collect(),
            ),
        }
    }

    /// A node from JSON (numbers become ints when integral in JSON, floats otherwise).
    pub fn from_json(value: &serde_json::Value) -> Node {
        use serde_json::Value;
        match value {
            Value::Null => Node::Null,
            Value::Bool(b) => Node::Bool(*b),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Node::Int(i128::from(i))
                } else if let Some(u) = n.as_u64() {
                    Node::Int(i128::from(u))
                } else {
                    Node::Float(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Value::String(s) => Node::Str(s.clone()),
            Value::Array(items) => Node::Seq(items.iter().map(Node::from_json).collect()),
            Value::Object(map) => {
                Node::Map(Mapping(map.iter().map(|(k, v)| (Node::Str(k.clone()), Node::from_json(v))).collect()))
            }
        }
    }
}

pub(crate) fn key_text(key: &Node) -> String {
    match key {
        Node::Str(s) | Node::Timestamp(s) => s.clone(),
        other => scalar_text(other).unwrap_or_default(),
    }
}

/// The text PyYAML writes for a non-string scalar.
pub(crate) fn scalar_text(node: &Node) -> Option<String> {
    Some(match node {
        Node::Null => "null".into(),
        Node::Bool(b) => if *b { "true" } else { "false" }.into(),
        Node::Int(i) => i.to_string(),
        Node::Float(f) => python_float(*f),
        Node::Timestamp(t) => t.clone(),
        Node::Str(s) => s.clone(),
        Node::Seq(_) | Node::Map(_) => return None,
    })
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct YamlError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}
