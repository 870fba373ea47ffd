//! Rendering requirements as PromQL label matchers, and the escaping that
//! keeps any label value inside its string literal or regex.

use super::{Operator, Requirement, SelectorError};

impl Requirement {
    pub(super) fn to_promql_matcher(&self) -> Result<String, SelectorError> {
        if !is_prometheus_label_name(&self.key) {
            return Err(SelectorError::NotPromqlLabelName {
                key: self.key.clone(),
            });
        }
        let (operator, literal) = match self.operator {
            Operator::Equals => ("=", self.single_value()?.to_owned()),
            Operator::NotEquals => ("!=", self.single_value()?.to_owned()),
            Operator::In => ("=~", self.alternation()?),
            Operator::NotIn => ("!~", self.alternation()?),
            Operator::Exists => ("!=", String::new()),
            Operator::DoesNotExist => ("=", String::new()),
            Operator::GreaterThan | Operator::LessThan => {
                return Err(SelectorError::UnsupportedByPromql {
                    key: self.key.clone(),
                    operator: self.operator.clone(),
                });
            }
        };
        Ok(format!("{}{operator}{}", self.key, promql_string(&literal)))
    }

    fn single_value(&self) -> Result<&str, SelectorError> {
        match self.values.as_slice() {
            [value] => Ok(value),
            values => Err(self.value_count_error(values.len(), "exactly one")),
        }
    }

    /// An anchored PromQL regex matching exactly the listed values.
    fn alternation(&self) -> Result<String, SelectorError> {
        if self.values.is_empty() {
            // `k=~""` would match every series without `k` instead of none.
            return Err(self.value_count_error(0, "at least one"));
        }
        let quoted: Vec<String> = self.values.iter().map(|v| quote_regex(v)).collect();
        Ok(quoted.join("|"))
    }

    fn value_count_error(&self, count: usize, expected: &'static str) -> SelectorError {
        SelectorError::ValueCount {
            key: self.key.clone(),
            operator: self.operator.clone(),
            count,
            expected,
        }
    }
}

/// A PromQL double-quoted string literal, quotes included.
///
/// Besides `\` and `"`, control characters are escaped because the PromQL
/// lexer rejects a raw newline inside a string. `\xNN` is only used below
/// U+0080: in Go string syntax it denotes a byte, not a character. U+FFFD is
/// escaped because the PromQL lexer cannot tell it apart from invalid UTF-8
/// and rejects it; U+2028/U+2029 are escaped so the query survives being
/// embedded in JavaScript.
pub fn promql_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for ch in value.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{b}' => out.push_str("\\v"),
            '\u{c}' => out.push_str("\\f"),
            c if c.is_ascii_control() => out.push_str(&format!("\\x{:02x}", u32::from(c))),
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{fffd}') => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Escapes RE2 metacharacters (the set Go's `regexp.QuoteMeta` escapes) so
/// the value matches itself literally.
pub fn quote_regex(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for ch in value.chars() {
        if matches!(
            ch,
            '\\' | '.' | '+' | '*' | '?' | '(' | ')' | '|' | '[' | ']' | '{' | '}' | '^' | '$'
        ) {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, what Prometheus accepts as a label name.
pub fn is_prometheus_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}
