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
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Message","type":"string","description":"The Ready condition's message: every problem of invalid rules, or the external metrics valid ones declare","jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct CustomPrometheusRulesSpec {
    /// Rule groups, as in a Prometheus rule file; group names must be unique.
    pub groups: Vec<RuleGroup>,
    /// Whether the external metrics these rules record are read only in the namespace of
    /// the HPA that asks: `true` adds `namespace="<its namespace>"` to every request's
    /// query (as prometheus-adapter's namespaced external rules do), `false` reads the
    /// series of every namespace. Unset: the server decides — by default the HPA's own
    /// namespace and series without a `namespace` label; `--external-metrics-namespaced`
    /// and `--external-metrics-cluster-wide` change that. When objects disagree about one
    /// metric, `true` wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_metrics_namespaced: Option<bool>,
}

/// One Prometheus rule group.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RuleGroup {
    /// Group name, unique within the object.
    pub name: String,
    /// How often the group's rules are evaluated, e.g. `30s` or `1m30s` (a unit is
    /// required); Prometheus' global evaluation interval when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// The group's rules, evaluated in order.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// A recording rule (`record`) or an alerting rule (`alert`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// Recording rules: name of the series to record. `kube_adapter_metric_<name>` serves
    /// external metric `<name>`, e.g. `kube_adapter_metric_queue_depth` → `queue_depth`.
    /// Set exactly one of `record` and `alert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    /// Alerting rules: name of the alert. Set exactly one of `record` and `alert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
    /// PromQL expression evaluated at every interval (a string; an integer is read as a
    /// number literal).
    pub expr: IntOrString,
    /// Alerting rules: how long the expression must return results before the alert fires,
    /// e.g. `5m` (a unit is required); at once when unset.
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    pub for_: Option<String>,
    /// Labels added to every series the rule records or every alert it fires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Alerting rules: annotations of the alert, e.g. `summary`; values may use
    /// Prometheus' template language (`{{ $value }}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// Status written by the operator on every `CustomPrometheusRules`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RulesStatus {
    /// `Ready` condition: True (`Accepted`) when every rule is valid and handed to
    /// Prometheus, False (`InvalidRule`, or `InvalidSpec` for an object that cannot be
    /// read) with every problem in the message otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` the status describes; older than the object's means
    /// metrics-registry has not looked at the latest change yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// External metrics these rules record (`kube_adapter_metric_<name>` → `<name>`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_metrics: Vec<String>,
}
