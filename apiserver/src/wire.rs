//! JSON shapes of custom.metrics.k8s.io (v1beta1, v1beta2), external.metrics.k8s.io
//! (v1beta1) and metrics.k8s.io (v1beta1), written by hand: the published Rust crates for these types serialise
//! wrong field names. Discovery uses k8s-openapi's `APIResource`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResource;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The custom metrics API versions served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CustomVersion {
    V1Beta1,
    V1Beta2,
}

impl CustomVersion {
    pub fn parse(segment: &str) -> Option<Self> {
        match segment {
            "v1beta1" => Some(CustomVersion::V1Beta1),
            "v1beta2" => Some(CustomVersion::V1Beta2),
            _ => None,
        }
    }
    pub fn group_version(self) -> &'static str {
        match self {
            CustomVersion::V1Beta1 => "custom.metrics.k8s.io/v1beta1",
            CustomVersion::V1Beta2 => "custom.metrics.k8s.io/v1beta2",
        }
    }
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DescribedObject {
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    pub api_version: &'static str,
}

/// One value of a custom metric, independent of the API version it is written in.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricValue {
    pub described_object: DescribedObject,
    pub metric: String,
    /// The request's `metricLabelSelector` as a `metav1.LabelSelector`, `null` when none;
    /// built once per request and shared by its items.
    pub selector: Option<Arc<serde_json::Value>>,
    pub timestamp: String,
    pub window_seconds: Option<i64>,
    pub value: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MetricValueV1Beta1<'a> {
    described_object: &'a DescribedObject,
    metric_name: &'a str,
    timestamp: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    window: Option<i64>,
    value: &'a str,
    selector: Option<&'a serde_json::Value>,
}

#[derive(Serialize)]
struct MetricIdentifier<'a> {
    name: &'a str,
    selector: Option<&'a serde_json::Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MetricValueV1Beta2<'a> {
    described_object: &'a DescribedObject,
    metric: MetricIdentifier<'a>,
    timestamp: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    window_seconds: Option<i64>,
    value: &'a str,
}

/// `metadata: {}`.
#[derive(Debug, Serialize)]
struct EmptyMeta {}

/// A `MetricValueList` in the requested version, written straight from the items.
#[derive(Debug)]
pub struct MetricValueList {
    pub version: CustomVersion,
    pub items: Vec<MetricValue>,
}

/// The items of a [`MetricValueList`] in their version's shape.
struct VersionedItems<'a>(&'a MetricValueList);

impl Serialize for VersionedItems<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let version = self.0.version;
        serializer.collect_seq(self.0.items.iter().map(|item| match version {
            CustomVersion::V1Beta1 => VersionedItem::V1Beta1(MetricValueV1Beta1 {
                described_object: &item.described_object,
                metric_name: &item.metric,
                timestamp: &item.timestamp,
                window: item.window_seconds,
                value: &item.value,
                selector: item.selector.as_deref(),
            }),
            CustomVersion::V1Beta2 => VersionedItem::V1Beta2(MetricValueV1Beta2 {
                described_object: &item.described_object,
                metric: MetricIdentifier {
                    name: &item.metric,
                    selector: item.selector.as_deref(),
                },
                timestamp: &item.timestamp,
                window_seconds: item.window_seconds,
                value: &item.value,
            }),
        }))
    }
}

#[derive(Serialize)]
#[serde(untagged)]
enum VersionedItem<'a> {
    V1Beta1(MetricValueV1Beta1<'a>),
    V1Beta2(MetricValueV1Beta2<'a>),
}

impl Serialize for MetricValueList {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut list = serializer.serialize_struct("MetricValueList", 4)?;
        list.serialize_field("kind", "MetricValueList")?;
        list.serialize_field("apiVersion", self.version.group_version())?;
        list.serialize_field("metadata", &EmptyMeta {})?;
        list.serialize_field("items", &VersionedItems(self))?;
        list.end()
    }
}

/// One value of an external metric.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExternalMetricValue {
    pub metric_name: String,
    pub metric_labels: BTreeMap<String, String>,
    pub timestamp: String,
    pub value: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalMetricValueList {
    kind: &'static str,
    api_version: &'static str,
    metadata: EmptyMeta,
    items: Vec<ExternalMetricValue>,
}

pub fn external_metric_value_list(items: Vec<ExternalMetricValue>) -> ExternalMetricValueList {
    ExternalMetricValueList {
        kind: "ExternalMetricValueList",
        api_version: "external.metrics.k8s.io/v1beta1",
        metadata: EmptyMeta {},
        items,
    }
}

/// One discovery entry: a metric, readable with `get` only.
pub fn metric_resource(name: String, namespaced: bool, kind: &str) -> APIResource {
    APIResource {
        name,
        singular_name: String::new(),
        namespaced,
        kind: kind.to_owned(),
        verbs: vec!["get".to_owned()],
        ..Default::default()
    }
}

/// `metadata` of a resource metrics item.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ResourceMetricsMeta {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// When the answer was made, as metrics-server writes it.
    pub creation_timestamp: String,
}

/// `cpu` and `memory`, as quantities.
pub type Usage = BTreeMap<&'static str, String>;

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ContainerMetrics {
    pub name: String,
    pub usage: Usage,
}

/// `metrics.k8s.io/v1beta1` `PodMetrics`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PodMetrics {
    pub kind: &'static str,
    pub api_version: &'static str,
    pub metadata: ResourceMetricsMeta,
    pub timestamp: String,
    pub window: String,
    pub containers: Vec<ContainerMetrics>,
}

/// `metrics.k8s.io/v1beta1` `NodeMetrics`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NodeMetrics {
    pub kind: &'static str,
    pub api_version: &'static str,
    pub metadata: ResourceMetricsMeta,
    pub timestamp: String,
    pub window: String,
    pub usage: Usage,
}

pub const METRICS_GROUP_VERSION: &str = "metrics.k8s.io/v1beta1";

/// `PodMetricsList` / `NodeMetricsList`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ResourceMetricsList<T> {
    pub kind: &'static str,
    pub api_version: &'static str,
    pub metadata: serde_json::Value,
    pub items: Vec<T>,
}

impl<T> ResourceMetricsList<T> {
    pub fn new(kind: &'static str, items: Vec<T>) -> Self {
        ResourceMetricsList {
            kind,
            api_version: METRICS_GROUP_VERSION,
            metadata: serde_json::json!({}),
            items,
        }
    }
}

/// RFC 3339 (seconds) for a Prometheus sample timestamp.
pub fn timestamp(unix_seconds: f64) -> String {
    let seconds = unix_seconds.floor() as i64;
    jiff::Timestamp::from_second(seconds)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item() -> MetricValue {
        MetricValue {
            described_object: DescribedObject {
                kind: "Service",
                namespace: Some("default".into()),
                name: "echo".into(),
                api_version: "v1",
            },
            metric: "kong_upstream_latency_ms_60s_average".into(),
            selector: None,
            timestamp: "2024-03-06T13:11:12Z".into(),
            window_seconds: None,
            value: "102312m".into(),
        }
    }

    #[test]
    fn v1beta1_shape_matches_the_seed() {
        let list = serde_json::to_value(MetricValueList {
            version: CustomVersion::V1Beta1,
            items: vec![item()],
        })
        .unwrap();
        assert_eq!(
            list,
            serde_json::json!({
              "kind": "MetricValueList",
              "apiVersion": "custom.metrics.k8s.io/v1beta1",
              "metadata": {},
              "items": [{
                "describedObject": {"kind": "Service", "namespace": "default", "name": "echo", "apiVersion": "v1"},
                "metricName": "kong_upstream_latency_ms_60s_average",
                "timestamp": "2024-03-06T13:11:12Z",
                "value": "102312m",
                "selector": null
              }]
            })
        );
    }

    #[test]
    fn v1beta2_nests_the_metric_and_names_the_window() {
        let mut value = item();
        value.window_seconds = Some(60);
        let list = serde_json::to_value(MetricValueList {
            version: CustomVersion::V1Beta2,
            items: vec![value],
        })
        .unwrap();
        let item = &list["items"][0];
        assert_eq!(list["apiVersion"], "custom.metrics.k8s.io/v1beta2");
        assert_eq!(
            item["metric"],
            serde_json::json!({"name": "kong_upstream_latency_ms_60s_average", "selector": null})
        );
        assert_eq!(item["windowSeconds"], 60);
        assert!(item.get("metricName").is_none());
        assert!(item.get("window").is_none());
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(timestamp(1_709_730_672.123), "2024-03-06T13:11:12Z");
    }

    #[test]
    fn discovery_lists_metrics_in_the_api_resource_list_shape() {
        let list = k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList {
            group_version: "custom.metrics.k8s.io/v1beta2".to_owned(),
            resources: vec![metric_resource(
                "pods/latency".to_owned(),
                true,
                "MetricValueList",
            )],
        };
        assert_eq!(
            serde_json::to_value(list).unwrap(),
            serde_json::json!({
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": "custom.metrics.k8s.io/v1beta2",
                "resources": [{
                    "name": "pods/latency",
                    "singularName": "",
                    "namespaced": true,
                    "kind": "MetricValueList",
                    "verbs": ["get"]
                }]
            })
        );
    }
}
