//! What a scalar means to PyYAML's `SafeLoader` resolver (YAML 1.1: `yes` is a bool,
//! `2025-01-01` a timestamp, `1_000` an int) and which tags it accepts.

use std::sync::LazyLock;

use regex::Regex;
use saphyr_parser::ScalarStyle;

use super::Node;

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
pub(super) fn resolve_plain(text: &str) -> Node {
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

pub(super) fn resolve_scalar(value: &str, style: ScalarStyle, tag: Option<(&str, &str)>) -> Result<Node, String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mlflow::yaml::parse;

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
}
