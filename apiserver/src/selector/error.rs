//! What can go wrong parsing a selector or rendering it as PromQL.

use thiserror::Error;

use super::Operator;

/// Positions are byte offsets into the selector text.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SelectorError {
    #[error(
        "invalid label selector {input:?}: found {found} at position {position}, expected {expected}"
    )]
    Syntax {
        input: String,
        position: usize,
        found: String,
        expected: &'static str,
    },
    #[error("invalid label selector {input:?}: label key {key:?} at position {position}: {reason}")]
    InvalidKey {
        input: String,
        key: String,
        position: usize,
        reason: &'static str,
    },
    #[error(
        "invalid label selector {input:?}: value {value:?} for key {key:?} at position {position}: {reason}"
    )]
    InvalidValue {
        input: String,
        key: String,
        value: String,
        position: usize,
        reason: &'static str,
    },
    #[error(
        "invalid label selector {input:?}: value {value:?} at position {position} must be a 64-bit integer for '{}'",
        .operator.symbol()
    )]
    NotAnInteger {
        input: String,
        value: String,
        position: usize,
        operator: Operator,
    },
    #[error("label key {key:?} is not a valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)")]
    NotPromqlLabelName { key: String },
    #[error(
        "label selector requirement on {key:?} uses '{}', which PromQL label matchers cannot express",
        .operator.symbol()
    )]
    UnsupportedByPromql { key: String, operator: Operator },
    #[error(
        "label selector requirement on {key:?} with '{}' has {count} values, expected {expected}",
        .operator.symbol()
    )]
    ValueCount {
        key: String,
        operator: Operator,
        count: usize,
        expected: &'static str,
    },
}
