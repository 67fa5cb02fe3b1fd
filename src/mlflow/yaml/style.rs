//! How one scalar is written: PyYAML's scalar analysis (which styles a string allows) and
//! Python's `repr(float)` as the representer adjusts it.

pub(super) enum Style {
    Plain,
    Single,
    Double,
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

pub(super) struct Analysis {
    pub(super) empty: bool,
    pub(super) multiline: bool,
    pub(super) allow_block_plain: bool,
    pub(super) allow_single_quoted: bool,
}

/// PyYAML's `Emitter.analyze_scalar` (with `allow_unicode=False`), reduced to what block
/// context needs.
pub(super) fn analyze(text: &str) -> Analysis {
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
    use crate::mlflow::yaml::{Node, resolve::resolve_plain};

    #[test]
    fn floats_are_written_like_python() {
        for (value, text) in [(0.1, "0.1"), (100.0, "100.0"), (1e-5, "1.0e-05"), (1.5e-7, "1.5e-07"), (1e16, "1.0e+16"), (-2.5, "-2.5"), (123456789.125, "123456789.125")] {
            assert_eq!(python_float(value), text);
            assert_eq!(resolve_plain(text), Node::Float(value), "{text} reads back");
        }
    }
}
