//! From `saphyr-parser` events to [`Node`]s: anchors, aliases (expanded with a budget), merge
//! keys, and the one-document rule.

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

use super::resolve::resolve_scalar;
use super::{Mapping, Node, YamlError};

/// Most nodes alias expansion may produce; MLmodel files have a few hundred.
const MAX_EXPANDED_NODES: usize = 1_000_000;

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
