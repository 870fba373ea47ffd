//! The thirteen `*Metric` kinds. They share one spec shape; each kind gets its own
//! spec struct because the `CustomResource` derive generates one root type per struct.

use crate::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Status written by the operator on every `*Metric` definition.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MetricStatus {
    /// `Ready` condition: True (`Served`) when the definition is served, False with a reason
    /// (`InvalidQuery`, `UnknownPlaceholder`, `NamespaceEscape`, `Conflict`, ...) and the
    /// problem in its message otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` the status describes; older than the object's means
    /// metrics-registry has not looked at the latest change yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The metric name HPAs use (`spec.metricName` or `metadata.name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_name: Option<String>,
    /// Cluster kinds only: namespaces where a namespaced definition of the same metric overrides this one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overridden_in: Vec<String>,
}

/// The fields every `*Metric` spec has, independent of its kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetricSpec {
    /// See the generated specs' field docs.
    pub query: String,
    pub metric_name: Option<String>,
    pub object_label: Option<String>,
    pub namespace_label: Option<String>,
    pub window_seconds: Option<i64>,
    /// The `MetricsBackend` queried; `None` is the backend named `default`.
    pub backend: Option<String>,
    pub timeout: Option<String>,
    pub max_age: Option<String>,
}

macro_rules! metric_kind {
    (
        $(#[$doc:meta])*
        $spec:ident => $kind:tt, $short:tt, $summary:tt, $($scope:ident)?
    ) => {
        $(#[$doc])*
        #[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
        #[kube(
            group = "metrics-registry.io",
            version = "v1beta1",
            kind = $kind,
            doc = $summary,
            $($scope,)?
            status = "MetricStatus",
            shortname = $short,
            category = "metrics-registry",
            derive = "PartialEq",
            derive = "Default",
            printcolumn = r#"{"name":"Metric","type":"string","jsonPath":".status.metricName"}"#,
            printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
            printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
            printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
            printcolumn = r#"{"name":"Message","type":"string","description":"The Ready condition's message: why the definition is not served (the last error), or what is served","jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#
        )]
        #[serde(rename_all = "camelCase")]
        pub struct $spec {
            /// PromQL template that returns one value per object. `<<.LabelMatchers>>` is replaced
            /// by the request's matchers (metric label selector, namespace, object label) and
            /// `<<.GroupBy>>` by the object label; `«.LabelMatchers»` and `«.GroupBy»` are accepted
            /// too. Example: `sum(rate(http_requests_total{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)`.
            pub query: String,
            /// Name HPAs use for this metric; defaults to `metadata.name` (object names cannot hold `_`).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub metric_name: Option<String>,
            /// Series label that holds the object's name, instead of the kind's default
            /// (`pod`, `service`, `ingress`, `deployment`, `statefulset`, `daemonset`, `namespace`).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub object_label: Option<String>,
            /// Series label that holds the object's namespace, instead of `namespace`
            /// (e.g. `exported_namespace` for series re-labelled by a scraper).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub namespace_label: Option<String>,
            /// Window the query aggregates over, reported to clients as `windowSeconds`.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[schemars(range(min = 1))]
            pub window_seconds: Option<i64>,
            /// The `MetricsBackend` the query is sent to; unset, the Prometheus of the
            /// `--prometheus-*` flags (the backend named `default`).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub backend: Option<String>,
            /// How long this metric's query may take, here and on Prometheus (sent as its
            /// `timeout` parameter), e.g. `2s`; unset, the backend's timeout.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub timeout: Option<String>,
            /// The oldest cached answer served for this metric, e.g. `5s`; at most the
            /// server's `--prometheus-cache-max-age` (answers are cached only when that is set).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub max_age: Option<String>,
        }

        impl From<&$spec> for MetricSpec {
            fn from(spec: &$spec) -> Self {
                MetricSpec {
                    query: spec.query.clone(),
                    metric_name: spec.metric_name.clone(),
                    object_label: spec.object_label.clone(),
                    namespace_label: spec.namespace_label.clone(),
                    window_seconds: spec.window_seconds,
                    backend: spec.backend.clone(),
                    timeout: spec.timeout.clone(),
                    max_age: spec.max_age.clone(),
                }
            }
        }
    };
}

metric_kind!(
    /// A metric of Pods in the definition's namespace.
    PodMetricSpec => "PodMetric", "pm", "A metric of Pods in the definition's namespace.", namespaced
);
metric_kind!(
    /// A metric of Pods in every namespace (overridable per namespace by a PodMetric).
    ClusterPodMetricSpec => "ClusterPodMetric", "cpm", "A metric of Pods in every namespace (overridable per namespace by a PodMetric).",
);
metric_kind!(
    /// A metric of Services in the definition's namespace.
    ServiceMetricSpec => "ServiceMetric", "svcm", "A metric of Services in the definition's namespace.", namespaced
);
metric_kind!(
    /// A metric of Services in every namespace (overridable per namespace by a ServiceMetric).
    ClusterServiceMetricSpec => "ClusterServiceMetric", "csvcm", "A metric of Services in every namespace (overridable per namespace by a ServiceMetric).",
);
metric_kind!(
    /// A metric of Ingresses in the definition's namespace.
    IngressMetricSpec => "IngressMetric", "ingm", "A metric of Ingresses in the definition's namespace.", namespaced
);
metric_kind!(
    /// A metric of Ingresses in every namespace (overridable per namespace by an IngressMetric).
    ClusterIngressMetricSpec => "ClusterIngressMetric", "cingm", "A metric of Ingresses in every namespace (overridable per namespace by an IngressMetric).",
);
metric_kind!(
    /// A metric of Deployments in the definition's namespace.
    DeploymentMetricSpec => "DeploymentMetric", "deploym", "A metric of Deployments in the definition's namespace.", namespaced
);
metric_kind!(
    /// A metric of Deployments in every namespace (overridable per namespace by a DeploymentMetric).
    ClusterDeploymentMetricSpec => "ClusterDeploymentMetric", "cdeploym", "A metric of Deployments in every namespace (overridable per namespace by a DeploymentMetric).",
);
metric_kind!(
    /// A metric of StatefulSets in the definition's namespace.
    StatefulSetMetricSpec => "StatefulSetMetric", "stsm", "A metric of StatefulSets in the definition's namespace.", namespaced
);
metric_kind!(
    /// A metric of StatefulSets in every namespace (overridable per namespace by a StatefulSetMetric).
    ClusterStatefulSetMetricSpec => "ClusterStatefulSetMetric", "cstsm", "A metric of StatefulSets in every namespace (overridable per namespace by a StatefulSetMetric).",
);
metric_kind!(
    /// A metric of DaemonSets in the definition's namespace.
    DaemonSetMetricSpec => "DaemonSetMetric", "dsm", "A metric of DaemonSets in the definition's namespace.", namespaced
);
metric_kind!(
    /// A metric of DaemonSets in every namespace (overridable per namespace by a DaemonSetMetric).
    ClusterDaemonSetMetricSpec => "ClusterDaemonSetMetric", "cdsm", "A metric of DaemonSets in every namespace (overridable per namespace by a DaemonSetMetric).",
);
metric_kind!(
    /// A metric of the Namespace the definition lives in (`namespaces/{ns}/metrics/{metric}`).
    NamespaceMetricSpec => "NamespaceMetric", "nsm", "A metric of the Namespace the definition lives in (`namespaces/{ns}/metrics/{metric}`).", namespaced
);
