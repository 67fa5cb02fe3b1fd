//! From `saphyr-parser` events to [`Node`]s: anchors, aliases, merge keys and the one-document
//! rule, within [`Limits`]: the document's size, its nesting depth, the number of values it
//! expands to and the bytes aliases may copy. Events are consumed as the parser produces them,
//! so a refused document stops early, and keys are indexed by hash, so a mapping of many keys
//! is read in linear time.

use std::{
    collections::HashMap,
    hash::{Hash as _, Hasher as _},
    iter::Peekable,
};

use saphyr_parser::{Event, Parser, ScalarStyle, Span, StrInput};

use super::resolve::resolve_scalar;
use super::{Mapping, Node, YamlError};

/// What one document may cost. The defaults fit MLmodel files (a few KB, a few hundred values)
/// with a wide margin and keep a hostile file to well under a second and a few hundred MB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of YAML text.
    pub max_bytes: usize,
    /// Nested collections (PyYAML itself fails a few hundred levels deep: Python's recursion limit).
    pub max_depth: usize,
    /// Values (scalars and collections) after alias expansion.
    pub max_nodes: usize,
    /// Bytes of scalar text that aliases (and the anchors they copy) may add.
    pub max_alias_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_bytes: 16 << 20, max_depth: 200, max_nodes: 200_000, max_alias_bytes: 4 << 20 }
    }
}

fn error_at(span: &Span, message: impl Into<String>) -> YamlError {
    YamlError { line: span.start.line(), column: span.start.col() + 1, message: message.into() }
}

/// Parses one YAML document (a leading BOM is ignored) within the default [`Limits`]. An empty
/// document is `Node::Null`.
pub fn parse(text: &str) -> Result<Node, YamlError> {
    parse_with(text, &Limits::default())
}

/// Like [`parse`], within `limits`.
pub fn parse_with(text: &str, limits: &Limits) -> Result<Node, YamlError> {
    if text.len() > limits.max_bytes {
        return Err(YamlError {
            line: 1,
            column: 1,
            message: format!(
                "the document is {} bytes; YAML files ModelDesk reads may be at most {} bytes",
                text.len(),
                limits.max_bytes
            ),
        });
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut builder = Builder {
        events: Parser::new_from_str(text).peekable(),
        anchors: HashMap::new(),
        nodes_left: limits.max_nodes,
        alias_bytes_left: limits.max_alias_bytes,
        depth: 0,
        limits: *limits,
    };
    builder.document()
}

/// What a built value holds: how many values and how many bytes of scalar text.
#[derive(Debug, Clone, Copy, Default)]
struct Cost {
    nodes: usize,
    bytes: usize,
}

impl Cost {
    fn add(&mut self, other: Cost) {
        self.nodes = self.nodes.saturating_add(other.nodes);
        self.bytes = self.bytes.saturating_add(other.bytes);
    }
}

struct Builder<'a> {
    events: Peekable<Parser<'a, StrInput<'a>>>,
    /// Anchor id → the value it names (a later anchor with the same name replaces it).
    anchors: HashMap<usize, (Node, Cost)>,
    nodes_left: usize,
    alias_bytes_left: usize,
    depth: usize,
    limits: Limits,
}

fn scan_error(error: &saphyr_parser::ScanError) -> YamlError {
    YamlError { line: error.marker().line(), column: error.marker().col() + 1, message: error.info().to_owned() }
}

impl<'a> Builder<'a> {
    fn next(&mut self) -> Result<Option<(Event<'a>, Span)>, YamlError> {
        match self.events.next() {
            None => Ok(None),
            Some(Ok(item)) => Ok(Some(item)),
            Some(Err(error)) => Err(scan_error(&error)),
        }
    }

    /// Whether the next event is the end of the current collection (consumed if so).
    fn at_end(&mut self, end: fn(&Event<'_>) -> bool) -> Result<bool, YamlError> {
        match self.events.peek() {
            Some(Ok((event, _))) if end(event) => {
                self.events.next();
                Ok(true)
            }
            Some(Err(error)) => Err(scan_error(error)),
            _ => Ok(false),
        }
    }

    fn document(&mut self) -> Result<Node, YamlError> {
        let mut root = None;
        let mut documents = 0;
        loop {
            match self.events.peek() {
                None => break,
                Some(Err(error)) => return Err(scan_error(error)),
                Some(Ok((Event::StreamStart | Event::DocumentEnd | Event::Nothing, _))) => {
                    self.events.next();
                }
                Some(Ok((Event::StreamEnd, _))) => break,
                Some(Ok((Event::DocumentStart(_), span))) => {
                    documents += 1;
                    if documents > 1 {
                        return Err(error_at(span, "more than one YAML document; an MLmodel file holds one"));
                    }
                    self.events.next();
                }
                Some(Ok(_)) => root = Some(self.node()?.0),
            }
        }
        Ok(root.unwrap_or(Node::Null))
    }

    fn spend_nodes(&mut self, span: &Span, nodes: usize) -> Result<(), YamlError> {
        if nodes > self.nodes_left {
            return Err(error_at(
                span,
                format!(
                    "the document holds more than {} values once aliases are expanded (MLmodel files hold a few hundred; refusing a possible \"billion laughs\" document)",
                    self.limits.max_nodes
                ),
            ));
        }
        self.nodes_left -= nodes;
        Ok(())
    }

    /// Charges a copy made for an anchor or an alias.
    fn spend_copy(&mut self, span: &Span, cost: Cost) -> Result<(), YamlError> {
        self.spend_nodes(span, cost.nodes)?;
        if cost.bytes > self.alias_bytes_left {
            return Err(error_at(
                span,
                format!(
                    "aliases copy more than {} bytes of text (refusing a possible \"billion laughs\" document)",
                    self.limits.max_alias_bytes
                ),
            ));
        }
        self.alias_bytes_left -= cost.bytes;
        Ok(())
    }

    fn enter(&mut self, span: &Span) -> Result<(), YamlError> {
        self.depth += 1;
        if self.depth > self.limits.max_depth {
            return Err(error_at(span, format!("collections are nested more than {} levels deep", self.limits.max_depth)));
        }
        Ok(())
    }

    fn node(&mut self) -> Result<(Node, Cost), YamlError> {
        let Some((event, span)) = self.next()? else {
            return Err(YamlError { line: 0, column: 0, message: "unexpected end of document".into() });
        };
        self.spend_nodes(&span, 1)?;
        let mut cost = Cost { nodes: 1, bytes: 0 };
        match event {
            Event::Scalar(value, style, anchor, tag) => {
                let node = resolve_scalar(&value, style, tag.as_deref().map(|t| (t.handle.as_str(), t.suffix.as_str())))
                    .map_err(|m| error_at(&span, m))?;
                cost.bytes = value.len();
                self.remember(anchor, &node, cost, &span)?;
                Ok((node, cost))
            }
            Event::SequenceStart(anchor, _) => {
                self.enter(&span)?;
                let mut items = Vec::new();
                while !self.at_end(|e| matches!(e, Event::SequenceEnd))? {
                    let (item, item_cost) = self.node()?;
                    cost.add(item_cost);
                    items.push(item);
                }
                self.depth -= 1;
                let node = Node::Seq(items);
                self.remember(anchor, &node, cost, &span)?;
                Ok((node, cost))
            }
            Event::MappingStart(anchor, _) => {
                self.enter(&span)?;
                let mut map = KeyedMapping::default();
                let mut merges = Vec::new();
                while !self.at_end(|e| matches!(e, Event::MappingEnd))? {
                    let key_is_merge = matches!(
                        self.events.peek(),
                        Some(Ok((Event::Scalar(value, ScalarStyle::Plain, _, None), _))) if value.as_ref() == "<<"
                    );
                    let (key, key_cost) = self.node()?;
                    let (value, value_cost) = self.node()?;
                    cost.add(key_cost);
                    cost.add(value_cost);
                    if key_is_merge {
                        merges.push(value);
                    } else {
                        map.set(key, value);
                    }
                }
                self.depth -= 1;
                // `<<: *base` merges keys not set explicitly (PyYAML's SafeLoader does this).
                for merged in merges {
                    let sources = match merged {
                        Node::Map(m) => vec![m],
                        Node::Seq(items) => items.into_iter().filter_map(|i| if let Node::Map(m) = i { Some(m) } else { None }).collect(),
                        _ => return Err(error_at(&span, "a merge key (<<) must name a mapping")),
                    };
                    for source in sources {
                        for (k, v) in source.0 {
                            map.insert_if_absent(k, v);
                        }
                    }
                }
                let node = Node::Map(map.mapping);
                self.remember(anchor, &node, cost, &span)?;
                Ok((node, cost))
            }
            Event::Alias(anchor) => {
                let (node, cost) = self
                    .anchors
                    .get(&anchor)
                    .map(|(node, cost)| (node, *cost))
                    .ok_or_else(|| error_at(&span, "an alias names an anchor that was not defined"))?;
                // The alias event itself was charged one node above.
                let copy = Cost { nodes: cost.nodes.saturating_sub(1), bytes: cost.bytes };
                let node = node.clone();
                self.spend_copy(&span, copy)?;
                Ok((node, cost))
            }
            other => Err(error_at(&span, format!("unexpected YAML structure ({other:?})"))),
        }
    }

    fn remember(&mut self, anchor: usize, node: &Node, cost: Cost, span: &Span) -> Result<(), YamlError> {
        if anchor != 0 {
            // Keeping a copy costs what it holds (nested anchors would otherwise copy a subtree
            // once per level).
            self.spend_copy(span, cost)?;
            self.anchors.insert(anchor, (node.clone(), cost));
        }
        Ok(())
    }
}

/// A mapping under construction with an index of its scalar keys, so that setting a key is
/// O(1) instead of a scan of the keys so far (80,000 keys took seconds that way).
#[derive(Default)]
struct KeyedMapping {
    mapping: Mapping,
    /// Hash of a scalar key → its position (the first key with that hash).
    index: HashMap<u64, usize>,
}

impl KeyedMapping {
    /// The position of `key`, if present.
    fn find(&self, key: &Node) -> Option<usize> {
        let Some(hash) = scalar_key_hash(key) else {
            return self.mapping.0.iter().position(|(k, _)| k == key);
        };
        let &first = self.index.get(&hash)?;
        if self.mapping.0[first].0 == *key {
            Some(first)
        } else {
            // A hash collision: fall back to a scan (correct, and rare).
            self.mapping.0.iter().position(|(k, _)| k == key)
        }
    }

    fn push(&mut self, key: Node, value: Node) {
        if let Some(hash) = scalar_key_hash(&key) {
            self.index.entry(hash).or_insert(self.mapping.0.len());
        }
        self.mapping.0.push((key, value));
    }

    /// Sets `key`; a repeated key keeps its first position and its last value (a Python dict).
    fn set(&mut self, key: Node, value: Node) {
        match self.find(&key) {
            Some(at) => self.mapping.0[at].1 = value,
            None => self.push(key, value),
        }
    }

    fn insert_if_absent(&mut self, key: Node, value: Node) {
        if self.find(&key).is_none() {
            self.push(key, value);
        }
    }
}

/// A hash of a scalar key (kind and value); `None` for collections.
fn scalar_key_hash(key: &Node) -> Option<u64> {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    match key {
        Node::Null => 0u8.hash(&mut hasher),
        Node::Bool(b) => (1u8, b).hash(&mut hasher),
        Node::Int(i) => (2u8, i).hash(&mut hasher),
        // 0.0 and -0.0 are the same key (they compare equal).
        Node::Float(f) => (3u8, if *f == 0.0 { 0 } else { f.to_bits() }).hash(&mut hasher),
        Node::Str(s) => (4u8, s).hash(&mut hasher),
        Node::Timestamp(s) => (5u8, s).hash(&mut hasher),
        Node::Seq(_) | Node::Map(_) => return None,
    }
    Some(hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
