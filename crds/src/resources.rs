//! `ResourceMetrics`: how metrics-registry serves `metrics.k8s.io` (`kubectl top`, Resource
//! HPAs) from Prometheus — prometheus-adapter's `resourceRules` as a definition.

use crate::MetricStatus;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The two queries of one resource. Both are PromQL templates with `<<.LabelMatchers>>`
/// (which objects are asked for) and `<<.GroupBy>>` (the labels that tell them apart).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ResourceQueries {
    /// Per container of a pod: grouped by namespace, pod and container label. CPU in cores
    /// (a rate of seconds), memory in bytes.
    pub container_query: String,
    /// Per node: grouped by the node label.
    pub node_query: String,
}

/// How `metrics.k8s.io` is served. The oldest valid one is served; others are `Conflict`.
#[derive(
    CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq,
)]
#[kube(
    group = "metrics-registry.io",
    version = "v1beta1",
    kind = "ResourceMetrics",
    plural = "resourcemetrics",
    doc = "How metrics.k8s.io (PodMetrics, NodeMetrics) is served from Prometheus.",
    status = "MetricStatus",
    shortname = "rsm",
    category = "metrics-registry",
    derive = "PartialEq",
    derive = "Default",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Message","type":"string","description":"The Ready condition's message: why it is not served, or what is served","jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ResourceMetricsSpec {
    /// CPU usage in cores, e.g. containerQuery
    /// `sum by (<<.GroupBy>>) (rate(container_cpu_usage_seconds_total{container!="",<<.LabelMatchers>>}[3m]))`.
    pub cpu: ResourceQueries,
    /// Memory usage in bytes, e.g. containerQuery
    /// `sum by (<<.GroupBy>>) (container_memory_working_set_bytes{container!="",<<.LabelMatchers>>})`.
    pub memory: ResourceQueries,
    /// Series label holding the pod's name (default `pod`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_label: Option<String>,
    /// Series label holding the pod's namespace (default `namespace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_label: Option<String>,
    /// Series label holding the container's name (default `container`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_label: Option<String>,
    /// Series label holding the node's name (default `node`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_label: Option<String>,
    /// The window the queries look at, reported as `window` (default 180).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub window_seconds: Option<i64>,
    /// The `MetricsBackend` queried; unset, the Prometheus of the `--prometheus-*` flags.
    /// It reads every namespace and the nodes at once, so the backend's tenant, if any,
    /// must be one fixed value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
}
