//! `CustomPrometheusRules`: Prometheus recording and alerting rules in the
//! prometheus-operator `RuleGroup` shape, handed to Prometheus by the operator.

use crate::Condition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Prometheus rule groups. A recording rule named `kube_adapter_metric_<name>` makes
/// `<name>` an external metric.
#[derive(
    CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq,
)]
#[kube(
    group = "metrics-registry.io",
    version = "v1beta1",
    kind = "CustomPrometheusRules",
    doc = "Prometheus recording and alerting rules; `kube_adapter_metric_<name>` records become external metrics.",
    plural = "customprometheusrules",
    status = "RulesStatus",
    shortname = "cpr",
    category = "metrics-registry",
    derive = "PartialEq",
    derive = "Default",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct CustomPrometheusRulesSpec {
    /// Rule groups, as in a Prometheus rule file.
    pub groups: Vec<RuleGroup>,
}

/// One Prometheus rule group.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RuleGroup {
    /// Group name, unique within the object.
    pub name: String,
    /// Evaluation interval, e.g. `30s`; Prometheus' global interval when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Rules evaluated in order.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// A recording rule (`record`) or an alerting rule (`alert`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// Name of the series to record, e.g. `kube_adapter_metric_queue_depth`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    /// Name of the alert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
    /// PromQL expression.
    pub expr: IntOrString,
    /// Alerting rules: how long the condition must hold before firing, e.g. `5m`.
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    pub for_: Option<String>,
    /// Labels added to the result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Alerting rules: annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// Status written by the operator on every `CustomPrometheusRules`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RulesStatus {
    /// `Ready` condition: True when every rule is valid and handed to Prometheus.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// External metrics these rules record (`kube_adapter_metric_<name>` → `<name>`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_metrics: Vec<String>,
}
