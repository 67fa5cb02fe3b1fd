//! `yaml.safe_dump(default_flow_style=False)`: PyYAML's emitter algorithm for block mappings
//! and sequences and the three scalar styles MLmodel files use.

use super::resolve::resolve_plain;
use super::style::{Style, analyze};
use super::{Mapping, Node, key_text, scalar_text};

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
                // Right after an escape `start` is past `end` (Python's slice is then empty).
                let mut data: String = chars.get(start..end).map(|part| part.iter().collect()).unwrap_or_default();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mlflow::yaml::parse;

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
}
