//! `ExternalMetric` and `ClusterExternalMetric`: external metrics answered from a live
//! PromQL query, without a recording rule (KEDA's Prometheus trigger, as a definition).

use crate::MetricStatus;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The fields both external kinds have.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExternalSpec {
    pub query: String,
    pub metric_name: Option<String>,
    /// `ClusterExternalMetric` only: the series label matched against the asking HPA's
    /// namespace, as part of `<<.LabelMatchers>>`.
    pub namespace_label: Option<String>,
    /// The `MetricsBackend` queried; `None` is the backend named `default`.
    pub backend: Option<String>,
    pub timeout: Option<String>,
    pub max_age: Option<String>,
}

macro_rules! external_kind {
    (
        $(#[$doc:meta])*
        $spec:ident => $kind:tt, $short:tt, $summary:tt, $($scope:ident)?
        { $($(#[$field_doc:meta])* $vis:vis $field:ident: $type:ty,)* }
        |$this:ident| $namespace_label:expr
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
            /// PromQL template whose result is the external metric: one item per series, with
            /// the series' labels. `<<.LabelMatchers>>` (or `«.LabelMatchers»`) is replaced by
            /// the HPA's `metric.selector` as escaped matchers, and is optional. An `ExternalMetric`'s
            /// selectors are pinned to its namespace (`namespace="<its namespace>"` is added).
            /// Example:
            /// `sum(rabbitmq_queue_messages{<<.LabelMatchers>>}) by (queue)`.
            pub query: String,
            /// Name HPAs use for this metric; defaults to `metadata.name`.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub metric_name: Option<String>,
            /// The `MetricsBackend` the query is sent to; unset, the Prometheus of the
            /// `--prometheus-*` flags (the backend named `default`).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub backend: Option<String>,
            /// How long the query may take, here and on Prometheus (sent as its `timeout`
            /// parameter), e.g. `2s`; unset, the backend's timeout.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub timeout: Option<String>,
            /// The oldest cached answer served, e.g. `5s`; at most the server's
            /// `--prometheus-cache-max-age` (answers are cached only when that is set).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub max_age: Option<String>,
            $($(#[$field_doc])* $vis $field: $type,)*
        }

        impl From<&$spec> for ExternalSpec {
            fn from($this: &$spec) -> Self {
                ExternalSpec {
                    query: $this.query.clone(),
                    metric_name: $this.metric_name.clone(),
                    namespace_label: $namespace_label,
                    backend: $this.backend.clone(),
                    timeout: $this.timeout.clone(),
                    max_age: $this.max_age.clone(),
                }
            }
        }
    };
}

external_kind!(
    /// An external metric for HPAs in the definition's namespace, from a live query pinned to it.
    ExternalMetricSpec => "ExternalMetric", "extm", "An external metric for HPAs in the definition's namespace, from a live query pinned to it.", namespaced
    {}
    |_spec| None
);
external_kind!(
    /// An external metric for HPAs in every namespace (overridable per namespace by an ExternalMetric).
    ClusterExternalMetricSpec => "ClusterExternalMetric", "cextm", "An external metric for HPAs in every namespace (overridable per namespace by an ExternalMetric).",
    {
        /// Series label matched against the asking HPA's namespace: when set,
        /// `<<.LabelMatchers>>` holds `<namespaceLabel>="<the HPA's namespace>"` besides the
        /// HPA's selector, so one definition answers each namespace from its own series
        /// (prometheus-adapter's namespaced `externalRules`). Unset, every namespace reads
        /// what the query returns.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub namespace_label: Option<String>,
    }
    |spec| spec.namespace_label.clone()
);
