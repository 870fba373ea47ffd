//! Kubernetes label selectors.
//!
//! Parsing follows `k8s.io/apimachinery/pkg/labels.Parse` token for token, so a
//! selector is accepted here exactly when the Kubernetes API server would
//! accept it. Parsed selectors can be evaluated against a label set, rendered
//! as PromQL label matchers, or rendered as a `metav1.LabelSelector` object.
//!
//! Two deliberate differences from apimachinery: requirements keep their input
//! order (apimachinery sorts them by key) so that rendered matchers line up
//! with what the user wrote, and a NUL byte is an ordinary (invalid) character
//! instead of silently ending the input as in the Go lexer.

mod error;
mod lex;
mod parse;
mod promql;
mod validate;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;
use serde_json::Value;

use lex::Kind;
use parse::Parser;

pub use error::SelectorError;
pub use promql::{is_prometheus_label_name, promql_string, quote_regex};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operator {
    Equals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

impl Operator {
    fn symbol(&self) -> &'static str {
        match self {
            Operator::Equals => "=",
            Operator::NotEquals => "!=",
            Operator::In => "in",
            Operator::NotIn => "notin",
            Operator::Exists => "exists",
            Operator::DoesNotExist => "!",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    /// Parsed selectors hold these sorted and deduplicated, as apimachinery's
    /// value sets do.
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    pub requirements: Vec<Requirement>,
}

/// Kubernetes selector syntax, as a user would write it back.
impl std::fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .requirements
            .iter()
            .map(|r| match r.operator {
                Operator::Exists => r.key.clone(),
                Operator::DoesNotExist => format!("!{}", r.key),
                Operator::In | Operator::NotIn => {
                    format!("{} {} ({})", r.key, r.operator.symbol(), r.values.join(","))
                }
                _ => format!("{}{}{}", r.key, r.operator.symbol(), r.values.join(",")),
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

impl LabelSelector {
    /// Parses the Kubernetes label-selector syntax accepted by apimachinery's
    /// `labels.Parse`: comma-separated `a=b`, `a==b`, `a!=b`, `a in (x,y)`,
    /// `a notin (x,y)`, `a`, `!a`, `a>5`, `a<5`, with spaces, tabs, CR and LF
    /// allowed between tokens. Empty values are allowed (`a=`, `a in (x,)`, and
    /// `a in ()` meaning the set holding only the empty value). Blank input
    /// yields the empty selector, which matches everything.
    pub fn parse(input: &str) -> Result<LabelSelector, SelectorError> {
        let mut parser = Parser::new(input);
        let mut requirements = Vec::new();
        if parser.peek().kind == Kind::End {
            return Ok(LabelSelector { requirements });
        }
        let first = parser.peek();
        if !first.starts_requirement() {
            return Err(parser.syntax_error(first, "a label key or '!'"));
        }
        loop {
            requirements.push(parser.requirement()?);
            let separator = parser.advance();
            match separator.kind {
                Kind::End => return Ok(LabelSelector { requirements }),
                Kind::Comma => {
                    let next = parser.peek();
                    if !next.starts_requirement() {
                        return Err(parser.syntax_error(next, "a label key or '!' after ','"));
                    }
                }
                _ => return Err(parser.syntax_error(separator, "',' or end of string")),
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Label keys the selector mentions, in requirement order (repeats included).
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.requirements.iter().map(|r| r.key.as_str())
    }

    /// Whether `labels` satisfies every requirement, with Kubernetes semantics:
    /// `!=`, `notin` and `!` match when the key is absent, while `>` and `<`
    /// need the key present with a 64-bit integer value.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Renders one PromQL label matcher per requirement, in order:
    /// `k="v"`, `k!="v"`, `k=~"v1|v2"`, `k!~"v1|v2"`, `k!=""` (exists) and
    /// `k=""` (does not exist). Values are regex-quoted for `in`/`notin` and
    /// every literal goes through [`promql_string`], so the result can be
    /// pasted between `{` and `}` whatever the values contain.
    ///
    /// Prometheus treats an empty label value as an absent label, so `a=`
    /// and `a in ()` also match series without `a`, unlike in Kubernetes.
    pub fn to_promql_matchers(&self) -> Result<Vec<String>, SelectorError> {
        self.requirements
            .iter()
            .map(Requirement::to_promql_matcher)
            .collect()
    }

    /// Renders the selector as a `metav1.LabelSelector`.
    ///
    /// A repeated `=` on the same key cannot share the `matchLabels` map, so
    /// later ones become `In` expressions. `>`/`<` become `Gt`/`Lt`
    /// expressions; those exist only in node selectors, so the API server
    /// rejects them in a `LabelSelector`.
    pub fn to_label_selector(&self) -> metav1::LabelSelector {
        let mut match_labels = BTreeMap::new();
        let mut match_expressions = Vec::new();
        for requirement in &self.requirements {
            let (operator, with_values) = match requirement.operator {
                Operator::Equals
                    if requirement.values.len() == 1
                        && !match_labels.contains_key(&requirement.key) =>
                {
                    match_labels.insert(requirement.key.clone(), requirement.values[0].clone());
                    continue;
                }
                // Kubernetes matches a multi-valued `=` against any of its values.
                Operator::Equals | Operator::In => ("In", true),
                Operator::NotEquals | Operator::NotIn => ("NotIn", true),
                Operator::Exists => ("Exists", false),
                Operator::DoesNotExist => ("DoesNotExist", false),
                Operator::GreaterThan => ("Gt", true),
                Operator::LessThan => ("Lt", true),
            };
            match_expressions.push(metav1::LabelSelectorRequirement {
                key: requirement.key.clone(),
                operator: operator.to_owned(),
                values: with_values.then(|| requirement.values.clone()),
            });
        }
        metav1::LabelSelector {
            match_labels: (!match_labels.is_empty()).then_some(match_labels),
            match_expressions: (!match_expressions.is_empty()).then_some(match_expressions),
        }
    }

    /// [`to_label_selector`](Self::to_label_selector) as JSON. The empty
    /// selector becomes `{}` (match everything), never `null`, which
    /// Kubernetes reads as "match nothing".
    pub fn to_label_selector_json(&self) -> Value {
        serde_json::to_value(self.to_label_selector())
            .expect("a LabelSelector always serialises to JSON")
    }
}

impl Requirement {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::Equals | Operator::In => value.is_some_and(|v| self.values.contains(v)),
            Operator::NotEquals | Operator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(actual), [bound]) = (value, self.values.as_slice()) else {
                    return false;
                };
                let (Ok(actual), Ok(bound)) = (actual.parse::<i64>(), bound.parse::<i64>()) else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    actual > bound
                } else {
                    actual < bound
                }
            }
        }
    }
}
