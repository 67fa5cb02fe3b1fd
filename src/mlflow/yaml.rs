//! YAML as MLflow reads and writes it: PyYAML's `safe_load` (YAML 1.1 types: `yes` is a bool,
//! `2025-01-01` a timestamp, `1_000` an int) and `safe_dump(default_flow_style=False)` (block
//! style, sorted keys, 2-space indent, indentless lists under keys, strings quoted only when
//! needed, long scalars folded at 80 columns, non-ASCII escaped in double quotes).
//!
//! Parsing uses the `saphyr-parser` event stream; this module only resolves scalar types the
//! YAML 1.1 way and expands aliases with a budget, so a "billion laughs" file is an error, not an
//! exhausted machine. The writer is PyYAML's emitter algorithm for the node kinds MLmodel files
//! use, so a file MLflow wrote comes back byte for byte.

use std::sync::LazyLock;

use regex::Regex;
use saphyr_parser::{Event, Parser, ScalarStyle, Span};

/// Most nodes alias expansion may produce; MLmodel files have a few hundred.
const MAX_EXPANDED_NODES: usize = 1_000_000;

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

    fn set(&mut self, key: Node, value: Node) {
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some((_, slot)) => *slot = value,
            None => self.0.push((key, value)),
        }
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

fn key_text(key: &Node) -> String {
    match key {
        Node::Str(s) | Node::Timestamp(s) => s.clone(),
        other => scalar_text(other).unwrap_or_default(),
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct YamlError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

fn error_at(span: &Span, message: impl Into<String>) -> YamlError {
    YamlError { line: span.start.line(), column: span.start.col() + 1, message: message.into() }
}

/// Parses one YAML document (a leading BOM is ignored). An empty document is `Node::Null`.
pub fn parse(text: &str) -> Result<Node, YamlError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut events = Vec::new();
    for item in Parser::new_from_str(text) {
        match item {
            Ok(event) => events.push(event),
            Err(e) => {
                return Err(YamlError {
                    line: e.marker().line(),
                    column: e.marker().col() + 1,
                    message: e.info().to_owned(),
                });
            }
        }
    }
    let mut builder = Builder { events, at: 0, anchors: Vec::new(), budget: MAX_EXPANDED_NODES };
    builder.document()
}

struct Builder<'a> {
    events: Vec<(Event<'a>, Span)>,
    at: usize,
    anchors: Vec<(usize, Node)>,
    budget: usize,
}

impl<'a> Builder<'a> {
    fn next(&mut self) -> Option<(Event<'a>, Span)> {
        let item = self.events.get(self.at).cloned();
        self.at += 1;
        item
    }

    fn document(&mut self) -> Result<Node, YamlError> {
        let mut root = None;
        let mut documents = 0;
        while let Some((event, span)) = self.next() {
            match event {
                Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
                Event::StreamEnd => break,
                Event::DocumentStart(_) => {
                    documents += 1;
                    if documents > 1 {
                        return Err(error_at(&span, "more than one YAML document; an MLmodel file holds one"));
                    }
                }
                _ => {
                    self.at -= 1;
                    root = Some(self.node()?);
                }
            }
        }
        Ok(root.unwrap_or(Node::Null))
    }

    fn spend(&mut self, span: &Span, nodes: usize) -> Result<(), YamlError> {
        if nodes > self.budget {
            return Err(error_at(span, "aliases expand to too many nodes (refusing a possible \"billion laughs\" document)"));
        }
        self.budget -= nodes;
        Ok(())
    }

    fn node(&mut self) -> Result<Node, YamlError> {
        let Some((event, span)) = self.next() else {
            return Err(YamlError { line: 0, column: 0, message: "unexpected end of document".into() });
        };
        self.spend(&span, 1)?;
        match event {
            Event::Scalar(value, style, anchor, tag) => {
                let node = resolve_scalar(&value, style, tag.as_deref().map(|t| (t.handle.as_str(), t.suffix.as_str())))
                    .map_err(|m| error_at(&span, m))?;
                self.remember(anchor, &node);
                Ok(node)
            }
            Event::SequenceStart(anchor, _) => {
                let mut items = Vec::new();
                loop {
                    if matches!(self.events.get(self.at), Some((Event::SequenceEnd, _))) {
                        self.at += 1;
                        break;
                    }
                    items.push(self.node()?);
                }
                let node = Node::Seq(items);
                self.remember(anchor, &node);
                Ok(node)
            }
            Event::MappingStart(anchor, _) => {
                let mut map = Mapping::new();
                let mut merges = Vec::new();
                loop {
                    if matches!(self.events.get(self.at), Some((Event::MappingEnd, _))) {
                        self.at += 1;
                        break;
                    }
                    let key_is_merge = matches!(
                        self.events.get(self.at),
                        Some((Event::Scalar(value, ScalarStyle::Plain, _, None), _)) if value.as_ref() == "<<"
                    );
                    let key = self.node()?;
                    let value = self.node()?;
                    if key_is_merge {
                        merges.push(value);
                    } else {
                        map.set(key, value);
                    }
                }
                // `<<: *base` merges keys not set explicitly (PyYAML's SafeLoader does this).
                for merged in merges {
                    let sources = match merged {
                        Node::Map(m) => vec![m],
                        Node::Seq(items) => items.into_iter().filter_map(|i| if let Node::Map(m) = i { Some(m) } else { None }).collect(),
                        _ => return Err(error_at(&span, "a merge key (<<) must name a mapping")),
                    };
                    for source in sources {
                        for (k, v) in source.0 {
                            if !map.0.iter().any(|(existing, _)| *existing == k) {
                                map.0.push((k, v));
                            }
                        }
                    }
                }
                let node = Node::Map(map);
                self.remember(anchor, &node);
                Ok(node)
            }
            Event::Alias(anchor) => {
                let node = self
                    .anchors
                    .iter()
                    .rev()
                    .find(|(id, _)| *id == anchor)
                    .map(|(_, node)| node.clone())
                    .ok_or_else(|| error_at(&span, "an alias names an anchor that was not defined"))?;
                self.spend(&span, count_nodes(&node))?;
                Ok(node)
            }
            other => Err(error_at(&span, format!("unexpected YAML structure ({other:?})"))),
        }
    }

    fn remember(&mut self, anchor: usize, node: &Node) {
        if anchor != 0 {
            self.anchors.push((anchor, node.clone()));
        }
    }
}

fn count_nodes(node: &Node) -> usize {
    match node {
        Node::Seq(items) => 1 + items.iter().map(count_nodes).sum::<usize>(),
        Node::Map(map) => 1 + map.0.iter().map(|(k, v)| count_nodes(k) + count_nodes(v)).sum::<usize>(),
        _ => 1,
    }
}

static BOOL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)$").expect("valid")
});
static INT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$")
        .expect("valid")
});
static FLOAT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")
        .expect("valid")
});
static NULL: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^(?:~|null|Null|NULL|)$").expect("valid"));
static TIMESTAMP: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]|[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?(?:[Tt]|[ \t]+)[0-9][0-9]?:[0-9][0-9]:[0-9][0-9](?:\.[0-9]*)?(?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)$")
        .expect("valid")
});

/// What a plain scalar means to PyYAML's resolver.
fn resolve_plain(text: &str) -> Node {
    if NULL.is_match(text) {
        Node::Null
    } else if BOOL.is_match(text) {
        Node::Bool(matches!(text.as_bytes()[0], b'y' | b'Y' | b't' | b'T') || text.eq_ignore_ascii_case("on"))
    } else if INT.is_match(text) {
        parse_int(text).map(Node::Int).unwrap_or_else(|| Node::Str(text.to_owned()))
    } else if FLOAT.is_match(text) {
        Node::Float(parse_float(text))
    } else if TIMESTAMP.is_match(text) {
        Node::Timestamp(text.to_owned())
    } else {
        Node::Str(text.to_owned())
    }
}

fn parse_int(text: &str) -> Option<i128> {
    let cleaned: String = text.chars().filter(|&c| c != '_').collect();
    let (sign, digits) = match cleaned.strip_prefix('-') {
        Some(rest) => (-1, rest.to_owned()),
        None => (1, cleaned.strip_prefix('+').unwrap_or(&cleaned).to_owned()),
    };
    let value = if digits == "0" {
        0
    } else if let Some(binary) = digits.strip_prefix("0b") {
        i128::from_str_radix(binary, 2).ok()?
    } else if let Some(hex) = digits.strip_prefix("0x") {
        i128::from_str_radix(hex, 16).ok()?
    } else if digits.starts_with('0') {
        i128::from_str_radix(&digits, 8).ok()?
    } else if digits.contains(':') {
        digits.split(':').try_fold(0i128, |acc, part| Some(acc * 60 + part.parse::<i128>().ok()?))?
    } else {
        digits.parse().ok()?
    };
    Some(sign * value)
}

fn parse_float(text: &str) -> f64 {
    let cleaned: String = text.chars().filter(|&c| c != '_').collect::<String>().to_lowercase();
    let (sign, body) = match cleaned.strip_prefix('-') {
        Some(rest) => (-1.0, rest.to_owned()),
        None => (1.0, cleaned.strip_prefix('+').unwrap_or(&cleaned).to_owned()),
    };
    if body == ".inf" {
        sign * f64::INFINITY
    } else if body == ".nan" {
        f64::NAN
    } else if body.contains(':') {
        let value = body.split(':').fold(0.0, |acc, part| acc * 60.0 + part.parse::<f64>().unwrap_or(0.0));
        sign * value
    } else {
        sign * body.parse::<f64>().unwrap_or(f64::NAN)
    }
}

fn resolve_scalar(value: &str, style: ScalarStyle, tag: Option<(&str, &str)>) -> Result<Node, String> {
    match tag {
        None if style == ScalarStyle::Plain => Ok(resolve_plain(value)),
        None => Ok(Node::Str(value.to_owned())),
        Some(("!!", "str")) | Some(("!", "")) => Ok(Node::Str(value.to_owned())),
        Some(("!!", "null")) => Ok(Node::Null),
        Some(("!!", "bool")) => match resolve_plain(value) {
            Node::Bool(b) => Ok(Node::Bool(b)),
            _ => Err(format!("`{value}` is not a boolean")),
        },
        Some(("!!", "int")) => parse_int(value).map(Node::Int).ok_or_else(|| format!("`{value}` is not an integer")),
        Some(("!!", "float")) => Ok(Node::Float(parse_float(value))),
        Some(("!!", "timestamp")) => Ok(Node::Timestamp(value.to_owned())),
        Some((handle, suffix)) => Err(format!(
            "the tag `{handle}{suffix}` is not one yaml.safe_load accepts (MLflow would fail to read this file)"
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Writing

const BEST_WIDTH: usize = 80;
const INDENT: usize = 2;

/// Writes a document as `yaml.safe_dump(value, default_flow_style=False)` does (keys sorted).
pub fn emit(node: &Node) -> String {
    emit_with(node, true)
}

/// Like [`emit`]; with `sort_keys` false, keys keep their order (`sort_keys=False`, as MLflow
/// writes `python_env.yaml`).
pub fn emit_with(node: &Node, sort_keys: bool) -> String {
    let mut emitter = Emitter { out: String::new(), column: 0, whitespace: true, indention: true, sort_keys };
    match node {
        Node::Map(map) if !map.is_empty() => emitter.block_mapping(map, 0, true),
        Node::Seq(items) if !items.is_empty() => emitter.block_sequence(items, 0, true),
        other => {
            emitter.scalar_or_empty(other, 0, false);
            if matches!(other, Node::Str(_) | Node::Timestamp(_) | Node::Int(_) | Node::Float(_) | Node::Bool(_) | Node::Null) {
                // PyYAML ends a bare plain root scalar with a document end marker.
                emitter.out.push_str("\n...");
            }
        }
    }
    emitter.out.push('\n');
    emitter.out
}

struct Emitter {
    out: String,
    column: usize,
    whitespace: bool,
    indention: bool,
    sort_keys: bool,
}

fn is_collection(node: &Node) -> bool {
    matches!(node, Node::Map(m) if !m.is_empty()) || matches!(node, Node::Seq(s) if !s.is_empty())
}

/// Keys sorted as Python sorts them (all MLmodel keys are strings: by code point).
fn sorted_entries(map: &Mapping, sort: bool) -> Vec<&(Node, Node)> {
    let mut entries: Vec<&(Node, Node)> = map.0.iter().collect();
    if sort {
        entries.sort_by(|a, b| key_text(&a.0).cmp(&key_text(&b.0)));
    }
    entries
}

impl Emitter {
    fn write(&mut self, text: &str) {
        self.out.push_str(text);
        self.column += text.chars().count();
    }

    fn line_break(&mut self) {
        self.out.push('\n');
        self.column = 0;
        self.whitespace = true;
        self.indention = true;
    }

    fn write_indent(&mut self, indent: usize) {
        if !self.indention || self.column > indent || (self.column == indent && !self.whitespace) {
            self.line_break();
        }
        if self.column < indent {
            self.whitespace = true;
            let pad = " ".repeat(indent - self.column);
            self.out.push_str(&pad);
            self.column = indent;
        }
    }

    fn indicator(&mut self, text: &str, need_whitespace: bool, whitespace: bool, indention: bool) {
        if !(self.whitespace || !need_whitespace) {
            self.out.push(' ');
            self.column += 1;
        }
        self.write(text);
        self.whitespace = whitespace;
        self.indention = self.indention && indention;
    }

    fn block_mapping(&mut self, map: &Mapping, indent: usize, first_on_line: bool) {
        for (index, (key, value)) in sorted_entries(map, self.sort_keys).into_iter().enumerate() {
            if index > 0 || !first_on_line {
                self.write_indent(indent);
            }
            self.scalar_or_empty(key, indent, true);
            self.indicator(":", false, false, false);
            match value {
                Node::Map(m) if !m.is_empty() => {
                    self.write_indent(indent + INDENT);
                    self.block_mapping(m, indent + INDENT, true);
                }
                Node::Seq(items) if !items.is_empty() => {
                    // Lists under a key are "indentless": their dashes line up with the key.
                    self.block_sequence(items, indent, false);
                }
                scalar => self.scalar_or_empty(scalar, indent, false),
            }
        }
    }

    fn block_sequence(&mut self, items: &[Node], indent: usize, first_on_line: bool) {
        for (index, item) in items.iter().enumerate() {
            if index > 0 || !first_on_line {
                self.write_indent(indent);
            }
            self.indicator("-", true, false, true);
            match item {
                Node::Map(m) if !m.is_empty() => {
                    self.write_indent(indent + INDENT);
                    self.block_mapping(m, indent + INDENT, true);
                }
                Node::Seq(inner) if !inner.is_empty() => {
                    self.write_indent(indent + INDENT);
                    self.block_sequence(inner, indent + INDENT, true);
                }
                scalar => self.scalar_or_empty(scalar, indent, false),
            }
        }
    }

    /// A scalar, or `{}` / `[]` for an empty collection. `indent` is the enclosing block's.
    fn scalar_or_empty(&mut self, node: &Node, indent: usize, simple_key: bool) {
        match node {
            Node::Map(m) if m.is_empty() => self.indicator("{}", true, false, false),
            Node::Seq(s) if s.is_empty() => self.indicator("[]", true, false, false),
            Node::Map(_) | Node::Seq(_) => debug_assert!(!is_collection(node), "collections are written as blocks"),
            Node::Str(text) => {
                // A string is written plain only if it would not read back as another type.
                let implicit = resolve_plain(text) == Node::Str(text.clone());
                let analysis = analyze(text);
                let scalar_indent = indent + INDENT;
                let style = if implicit
                    && !(simple_key && (analysis.empty || analysis.multiline))
                    && analysis.allow_block_plain
                {
                    Style::Plain
                } else if analysis.allow_single_quoted && !(simple_key && analysis.multiline) {
                    Style::Single
                } else {
                    Style::Double
                };
                let split = !simple_key;
                match style {
                    Style::Plain => self.write_plain(text, scalar_indent, split),
                    Style::Single => self.write_single_quoted(text, scalar_indent, split),
                    Style::Double => self.write_double_quoted(text, scalar_indent, split),
                }
            }
            other => {
                let text = scalar_text(other).unwrap_or_default();
                self.write_plain(&text, indent + INDENT, !simple_key);
            }
        }
    }

    fn write_plain(&mut self, text: &str, indent: usize, split: bool) {
        if text.is_empty() {
            return;
        }
        if !self.whitespace {
            self.write(" ");
        }
        self.whitespace = false;
        self.indention = false;
        let chars: Vec<char> = text.chars().collect();
        let (mut spaces, mut start, mut end) = (false, 0usize, 0usize);
        while end <= chars.len() {
            let ch = chars.get(end).copied();
            if spaces {
                if ch != Some(' ') {
                    if start + 1 == end && self.column > BEST_WIDTH && split {
                        self.write_indent(indent);
                        self.whitespace = false;
                        self.indention = false;
                    } else {
                        let data: String = chars[start..end].iter().collect();
                        self.write(&data);
                    }
                    start = end;
                }
            } else if ch.is_none() || ch == Some(' ') {
                let data: String = chars[start..end].iter().collect();
                self.write(&data);
                start = end;
            }
            if let Some(c) = ch {
                spaces = c == ' ';
            }
            end += 1;
        }
    }

    fn write_single_quoted(&mut self, text: &str, indent: usize, split: bool) {
        self.indicator("'", true, false, false);
        let chars: Vec<char> = text.chars().collect();
        let is_break = |c: char| matches!(c, '\n' | '\u{85}' | '\u{2028}' | '\u{2029}');
        let (mut spaces, mut breaks, mut start, mut end) = (false, false, 0usize, 0usize);
        while end <= chars.len() {
            let ch = chars.get(end).copied();
            if spaces {
                if ch != Some(' ') {
                    if start + 1 == end && self.column > BEST_WIDTH && split && start != 0 && end != chars.len() {
                        self.write_indent(indent);
                    } else {
                        let data: String = chars[start..end].iter().collect();
                        self.write(&data);
                    }
                    start = end;
                }
            } else if breaks {
                if ch.is_none_or(|c| !is_break(c)) {
                    if chars[start] == '\n' {
                        self.line_break();
                    }
                    for &br in &chars[start..end] {
                        if br == '\n' {
                            self.line_break();
                        } else {
                            self.out.push(br);
                            self.column = 0;
                        }
                    }
                    self.write_indent(indent);
                    start = end;
                }
            } else if ch.is_none_or(|c| c == ' ' || is_break(c) || c == '\'') && start < end {
                let data: String = chars[start..end].iter().collect();
                self.write(&data);
                start = end;
            }
            if ch == Some('\'') {
                self.write("''");
                start = end + 1;
            }
            if let Some(c) = ch {
                spaces = c == ' ';
                breaks = is_break(c);
            }
            end += 1;
        }
        self.indicator("'", false, false, false);
    }

    fn write_double_quoted(&mut self, text: &str, indent: usize, split: bool) {
        self.indicator("\"", true, false, false);
        let chars: Vec<char> = text.chars().collect();
        let (mut start, mut end) = (0usize, 0usize);
        while end <= chars.len() {
            let ch = chars.get(end).copied();
            let needs_escape = |c: char| {
                matches!(c, '"' | '\\' | '\u{85}' | '\u{2028}' | '\u{2029}' | '\u{feff}') || !(' '..='~').contains(&c)
            };
            if ch.is_none_or(needs_escape) {
                if start < end {
                    let data: String = chars[start..end].iter().collect();
                    self.write(&data);
                    start = end;
                }
                if let Some(c) = ch {
                    let data = match c {
                        '\0' => "\\0".to_owned(),
                        '\x07' => "\\a".to_owned(),
                        '\x08' => "\\b".to_owned(),
                        '\t' => "\\t".to_owned(),
                        '\n' => "\\n".to_owned(),
                        '\x0b' => "\\v".to_owned(),
                        '\x0c' => "\\f".to_owned(),
                        '\r' => "\\r".to_owned(),
                        '\x1b' => "\\e".to_owned(),
                        '"' => "\\\"".to_owned(),
                        '\\' => "\\\\".to_owned(),
                        '\u{85}' => "\\N".to_owned(),
                        '\u{a0}' => "\\_".to_owned(),
                        '\u{2028}' => "\\L".to_owned(),
                        '\u{2029}' => "\\P".to_owned(),
                        c if (c as u32) <= 0xFF => format!("\\x{:02X}", c as u32),
                        c if (c as u32) <= 0xFFFF => format!("\\u{:04X}", c as u32),
                        c => format!("\\U{:08X}", c as u32),
                    };
                    self.write(&data);
                    start = end + 1;
                }
            }
            if 0 < end
                && end + 1 < chars.len()
                && (ch == Some(' ') || start >= end)
                && self.column + (end - start) > BEST_WIDTH
                && split
            {
                let mut data: String = chars[start..end].iter().collect();
                data.push('\\');
                if start < end {
                    start = end;
                }
                self.write(&data);
                self.write_indent(indent);
                self.whitespace = false;
                self.indention = false;
                if chars.get(start) == Some(&' ') {
                    self.write("\\");
                }
            }
            end += 1;
        }
        self.indicator("\"", false, false, false);
    }
}

enum Style {
    Plain,
    Single,
    Double,
}

/// The text PyYAML writes for a non-string scalar.
fn scalar_text(node: &Node) -> Option<String> {
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

/// `repr(float)` as PyYAML's representer adjusts it: `.nan`, `.inf`, `1.0e-05`, `100.0`.
pub fn python_float(value: f64) -> String {
    if value.is_nan() {
        return ".nan".into();
    }
    if value.is_infinite() {
        return if value > 0.0 { ".inf".into() } else { "-.inf".into() };
    }
    if value == 0.0 {
        return if value.is_sign_negative() { "-0.0".into() } else { "0.0".into() };
    }
    // Shortest round-trip digits, then Python's layout: plain for 1e-4 <= |x| < 1e16.
    let scientific = format!("{value:e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    let text = if (-4..16).contains(&exponent) {
        let point = exponent + 1;
        let body = if point <= 0 {
            format!("0.{}{}", "0".repeat((-point) as usize), digits)
        } else if point as usize >= digits.len() {
            format!("{}{}.0", digits, "0".repeat(point as usize - digits.len()))
        } else {
            format!("{}.{}", &digits[..point as usize], &digits[point as usize..])
        };
        body
    } else {
        let mut body = digits[..1].to_owned();
        if digits.len() > 1 {
            body.push('.');
            body.push_str(&digits[1..]);
        } else {
            body.push_str(".0");
        }
        format!("{body}e{}{:02}", if exponent < 0 { '-' } else { '+' }, exponent.abs())
    };
    if negative { format!("-{text}") } else { text }
}

struct Analysis {
    empty: bool,
    multiline: bool,
    allow_block_plain: bool,
    allow_single_quoted: bool,
}

/// PyYAML's `Emitter.analyze_scalar` (with `allow_unicode=False`), reduced to what block
/// context needs.
fn analyze(text: &str) -> Analysis {
    if text.is_empty() {
        return Analysis { empty: true, multiline: false, allow_block_plain: true, allow_single_quoted: true };
    }
    let chars: Vec<char> = text.chars().collect();
    let is_space = |c: char| matches!(c, '\0' | ' ' | '\t' | '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}');
    let is_break = |c: char| matches!(c, '\n' | '\u{85}' | '\u{2028}' | '\u{2029}');
    let mut block_indicators = text.starts_with("---") || text.starts_with("...");
    let (mut line_breaks, mut special) = (false, false);
    let (mut leading_space, mut leading_break, mut trailing_space, mut trailing_break) = (false, false, false, false);
    let (mut break_space, mut space_break) = (false, false);
    let mut preceded_by_whitespace = true;
    let mut followed_by_whitespace = chars.len() == 1 || is_space(chars[1]);
    let (mut previous_space, mut previous_break) = (false, false);
    for (index, &ch) in chars.iter().enumerate() {
        if index == 0 {
            if "#,[]{}&*!|>'\"%@`".contains(ch) {
                block_indicators = true;
            }
            if (ch == '?' || ch == ':') && followed_by_whitespace {
                block_indicators = true;
            }
            if ch == '-' && followed_by_whitespace {
                block_indicators = true;
            }
        } else {
            if ch == ':' && followed_by_whitespace {
                block_indicators = true;
            }
            if ch == '#' && preceded_by_whitespace {
                block_indicators = true;
            }
        }
        if is_break(ch) {
            line_breaks = true;
        }
        if !(ch == '\n' || (' '..='~').contains(&ch)) {
            // Without allow_unicode, anything outside printable ASCII needs double quotes.
            special = true;
        }
        if ch == ' ' {
            if index == 0 {
                leading_space = true;
            }
            if index == chars.len() - 1 {
                trailing_space = true;
            }
            if previous_break {
                break_space = true;
            }
            previous_space = true;
            previous_break = false;
        } else if is_break(ch) {
            if index == 0 {
                leading_break = true;
            }
            if index == chars.len() - 1 {
                trailing_break = true;
            }
            if previous_space {
                space_break = true;
            }
            previous_space = false;
            previous_break = true;
        } else {
            previous_space = false;
            previous_break = false;
        }
        preceded_by_whitespace = is_space(ch);
        followed_by_whitespace = index + 2 >= chars.len() || is_space(chars[index + 2]);
    }
    let mut allow_block_plain = true;
    let mut allow_single_quoted = true;
    if leading_space || leading_break || trailing_space || trailing_break {
        allow_block_plain = false;
    }
    if break_space {
        allow_block_plain = false;
        allow_single_quoted = false;
    }
    if space_break || special {
        allow_block_plain = false;
        allow_single_quoted = false;
    }
    if line_breaks || block_indicators {
        allow_block_plain = false;
    }
    Analysis { empty: false, multiline: line_breaks, allow_block_plain, allow_single_quoted }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_1_1_scalars_resolve_like_pyyaml() {
        let doc = parse("a: yes\nb: 'yes'\nc: 1_000\nd: 0x1F\ne: 1e3\nf: 1.5e+3\ng: 2025-01-01\nh: ~\ni: 0777\nj: .inf\nk: 1:30\n").unwrap();
        let map = doc.as_map().unwrap();
        assert_eq!(map.get("a"), Some(&Node::Bool(true)));
        assert_eq!(map.get("b"), Some(&Node::Str("yes".into())));
        assert_eq!(map.get("c"), Some(&Node::Int(1000)));
        assert_eq!(map.get("d"), Some(&Node::Int(31)));
        assert_eq!(map.get("e"), Some(&Node::Str("1e3".into())), "YAML 1.1 floats need a dot");
        assert_eq!(map.get("f"), Some(&Node::Float(1500.0)));
        assert_eq!(map.get("g"), Some(&Node::Timestamp("2025-01-01".into())));
        assert_eq!(map.get("h"), Some(&Node::Null));
        assert_eq!(map.get("i"), Some(&Node::Int(0o777)));
        assert_eq!(map.get("j"), Some(&Node::Float(f64::INFINITY)));
        assert_eq!(map.get("k"), Some(&Node::Int(90)));
    }

    #[test]
    fn duplicate_keys_keep_the_last_value_and_bom_crlf_json_are_read() {
        let doc = parse("\u{feff}a: 1\r\nb: 2\r\na: 3\r\n").unwrap();
        assert_eq!(doc.as_map().unwrap().get("a"), Some(&Node::Int(3)));
        let json = parse(r#"{"flavors": {"python_function": {"loader_module": "m"}}, "n": [1, 2.5, null]}"#).unwrap();
        assert_eq!(json.as_map().unwrap().get("n"), Some(&Node::Seq(vec![Node::Int(1), Node::Float(2.5), Node::Null])));
    }

    #[test]
    fn billion_laughs_is_refused() {
        let mut doc = String::from("a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
        let mut previous = 'a';
        for name in "bcdefghij".chars() {
            doc.push_str(&format!("{name}: &{name} [*{previous},*{previous},*{previous},*{previous},*{previous},*{previous},*{previous},*{previous},*{previous}]\n"));
            previous = name;
        }
        let error = parse(&doc).unwrap_err();
        assert!(error.message.contains("billion laughs"), "{error}");
        // Ordinary aliases and merges still work.
        let ok = parse("base: &b {x: 1}\nuse: *b\nmerged:\n  <<: *b\n  y: 2\n").unwrap();
        let merged = ok.as_map().unwrap().get("merged").unwrap().as_map().unwrap();
        assert_eq!(merged.get("x"), Some(&Node::Int(1)));
    }

    #[test]
    fn strings_are_quoted_only_when_needed() {
        let mut map = Mapping::new();
        for (key, value) in [
            ("a", "plain text"),
            ("b", "yes"),
            ("c", "2025-01-01 00:00:00.000000"),
            ("d", ""),
            ("e", "x "),
            ("f", "it's"),
            ("g", "café"),
            ("h", "line\nbreak"),
            ("i", "- dash"),
            ("j", "a: b"),
            ("k", "123"),
        ] {
            map.insert(key, Node::Str(value.into()));
        }
        let text = emit(&Node::Map(map.clone()));
        assert_eq!(
            text,
            "a: plain text\nb: 'yes'\nc: '2025-01-01 00:00:00.000000'\nd: ''\ne: 'x '\nf: it's\ng: \"caf\\xE9\"\nh: 'line\n\n  break'\ni: '- dash'\nj: 'a: b'\nk: '123'\n"
        );
        assert_eq!(parse(&text).unwrap(), Node::Map(map));
    }

    #[test]
    fn floats_are_written_like_python() {
        for (value, text) in [(0.1, "0.1"), (100.0, "100.0"), (1e-5, "1.0e-05"), (1.5e-7, "1.5e-07"), (1e16, "1.0e+16"), (-2.5, "-2.5"), (123456789.125, "123456789.125")] {
            assert_eq!(python_float(value), text);
            assert_eq!(resolve_plain(text), Node::Float(value), "{text} reads back");
        }
    }
}
