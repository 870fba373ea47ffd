use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Condition type every definition carries.
pub const READY: &str = "Ready";

/// A status condition in the shape of `metav1.Condition`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Which condition this is; metrics-registry writes `Ready`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True` when the object is served (a `*Metric`) or handed to Prometheus
    /// (`CustomPrometheusRules`), `False` when it is not (`reason` and `message` say why),
    /// `Unknown` before metrics-registry has looked at it.
    pub status: ConditionStatus,
    /// One CamelCase word, shown in the Reason column: `Served` or `Accepted` when ready,
    /// else why not, e.g. `InvalidQuery`, `UnknownPlaceholder`, `MissingPlaceholder`,
    /// `NamespaceEscape`, `Conflict`, `InvalidRule` or `InvalidSpec`.
    #[serde(default)]
    pub reason: String,
    /// Shown in the Message column. When not ready: what is wrong, in words a user can act
    /// on (the PromQL parser's message for a bad query); when ready: what is served, e.g.
    /// `served as services/latency`.
    #[serde(default)]
    pub message: String,
    /// When `status` last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    /// The `metadata.generation` this condition was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Status of a condition.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// Not yet known.
    #[default]
    Unknown,
}
