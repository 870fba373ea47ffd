//! HTTP handlers of custom.metrics.k8s.io and external.metrics.k8s.io.

use crate::error::ApiError;
use crate::external::{
    EXTERNAL_PREFIX, ExternalCatalog, is_valid_external_name, render_external_query,
};
use crate::objects::{ObjectIndex, ObjectIndexError};
use crate::prometheus::Sample;
use crate::quantity::milli_quantity;
use crate::render::{ObjectSelection, RenderRequest, render_query};
use crate::rules::{MetricRule, ObjectKind, RuleTable, SharedRuleTable};
use crate::selector::LabelSelector;
use crate::upstream::{ObjectAnswer, ObjectRequest, Upstream};
use crate::wire::{
    self, ApiResource, ApiResourceList, CustomVersion, DescribedObject, ExternalMetricValue,
    ExternalMetricValueList, MetricValue, MetricValueList,
};
use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use std::collections::HashSet;
use std::sync::Arc;

/// Above this many objects a wildcard request matches the namespace and filters locally
/// instead of sending one long regex.
pub const MAX_REGEX_OBJECTS: usize = 100;

pub use crate::readiness::Readiness;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub rules: SharedRuleTable,
    /// Prometheus, behind single flight, batching, the cache and the in-flight bound.
    pub upstream: Upstream,
    pub objects: Arc<dyn ObjectIndex>,
    pub external: Arc<ExternalCatalog>,
    pub readiness: Readiness,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricParams {
    #[serde(default)]
    label_selector: Option<String>,
    #[serde(default)]
    metric_label_selector: Option<String>,
}

type ApiResult<T> = Result<Json<T>, ApiError>;

fn not_found_path(path: &str) -> ApiError {
    ApiError::not_found(format!(
        "the server could not find the requested resource ({path})"
    ))
}

pub async fn custom_discovery(
    State(state): State<ApiState>,
    Path(version): Path<String>,
) -> ApiResult<ApiResourceList> {
    let version = CustomVersion::parse(&version).ok_or_else(|| not_found_path(&version))?;
    let table = state.rules.load();
    let resources: Vec<ApiResource> = table
        .discovery()
        .map(|(kind, metric)| ApiResource {
            name: format!("{}/{}", kind.resource(), metric),
            singular_name: "",
            namespaced: kind.is_namespaced(),
            kind: "MetricValueList",
            verbs: ["get"],
        })
        .collect();
    Ok(Json(wire::api_resource_list(
        version.group_version(),
        resources,
    )))
}

pub async fn external_discovery(State(state): State<ApiState>) -> ApiResult<ApiResourceList> {
    let table = state.rules.load();
    let mut names: Vec<String> = state.external.names().iter().cloned().collect();
    names.extend(table.external_metrics().iter().cloned());
    names.sort();
    names.dedup();
    let resources: Vec<ApiResource> = names
        .into_iter()
        .map(|name| ApiResource {
            name,
            singular_name: "",
            namespaced: true,
            kind: "ExternalMetricValueList",
            verbs: ["get"],
        })
        .collect();
    Ok(Json(wire::api_resource_list(
        "external.metrics.k8s.io/v1beta1",
        resources,
    )))
}

/// What a custom metrics URL asks for.
#[derive(Debug, PartialEq, Eq)]
enum Target<'a> {
    /// `namespaces/{ns}/{resource}/{name|*}/{metric}`
    Namespaced {
        kind: ObjectKind,
        namespace: &'a str,
        name: &'a str,
        metric: &'a str,
    },
    /// `namespaces/{ns}/metrics/{metric}` and `namespaces/{ns|*}/{metric}`
    NamespaceObject { namespace: &'a str, metric: &'a str },
}

fn parse_custom_path(path: &str) -> Result<Target<'_>, ApiError> {
    let segments: Vec<&str> = path.split('/').collect();
    if segments.iter().any(|s| s.is_empty()) {
        return Err(not_found_path(path));
    }
    let resource = |segment: &str| {
        ObjectKind::from_resource(segment).ok_or_else(|| {
            ApiError::not_found(format!(
                "the server has no metrics for resource {segment:?}; known resources are {}",
                ObjectKind::ALL.map(|k| k.resource()).join(", ")
            ))
        })
    };
    match segments.as_slice() {
        ["namespaces", namespace, "metrics", metric] => {
            Ok(Target::NamespaceObject { namespace, metric })
        }
        ["namespaces", namespace, resource_segment, name, metric] => {
            match resource(resource_segment)? {
                ObjectKind::Namespace => Err(not_found_path(path)),
                kind => Ok(Target::Namespaced {
                    kind,
                    namespace,
                    name,
                    metric,
                }),
            }
        }
        [resource_segment, name, metric] => match resource(resource_segment)? {
            ObjectKind::Namespace => Ok(Target::NamespaceObject {
                namespace: name,
                metric,
            }),
            kind => Err(ApiError::not_found(format!(
                "{} are namespaced: ask for /namespaces/{{namespace}}/{}/{name}/{metric}",
                kind.resource(),
                kind.resource()
            ))),
        },
        _ => Err(not_found_path(path)),
    }
}

pub async fn custom_metric(
    State(state): State<ApiState>,
    Path((version, path)): Path<(String, String)>,
    Query(params): Query<MetricParams>,
) -> ApiResult<MetricValueList> {
    let version = CustomVersion::parse(&version).ok_or_else(|| not_found_path(&version))?;
    let target = parse_custom_path(&path)?;
    let metric_selector = parse_selector(
        "metricLabelSelector",
        params.metric_label_selector.as_deref(),
    )?;
    let object_selector = parse_selector("labelSelector", params.label_selector.as_deref())?;
    let table = state.rules.load_full();
    let items = match target {
        Target::Namespaced {
            kind,
            namespace,
            name,
            metric,
        } => {
            let rule = lookup(&table, kind, metric, namespace)?;
            let names = if name == "*" {
                select_objects(&state, kind, Some(namespace), &object_selector)?
            } else {
                Some(vec![name.to_string()])
            };
            values_for(&state, rule, namespace, names, &metric_selector).await?
        }
        Target::NamespaceObject {
            namespace: "*",
            metric,
        } => {
            let mut namespaces = table.namespaces_defining(ObjectKind::Namespace, metric);
            if namespaces.is_empty() {
                return Err(unknown_metric(ObjectKind::Namespace, metric, None));
            }
            if !object_selector.is_empty() {
                let selected: HashSet<String> =
                    select_objects(&state, ObjectKind::Namespace, None, &object_selector)?
                        .unwrap_or_default()
                        .into_iter()
                        .collect();
                namespaces.retain(|ns| selected.contains(ns));
            }
            let mut items = Vec::new();
            for namespace in &namespaces {
                let rule = lookup(&table, ObjectKind::Namespace, metric, namespace)?;
                let names = Some(vec![namespace.clone()]);
                match values_for(&state, rule, namespace, names, &metric_selector).await {
                    Ok(values) => items.extend(values),
                    Err(error) if error.code == 404 => {}
                    Err(error) => return Err(error),
                }
            }
            items
        }
        Target::NamespaceObject { namespace, metric } => {
            let rule = lookup(&table, ObjectKind::Namespace, metric, namespace)?;
            values_for(
                &state,
                rule,
                namespace,
                Some(vec![namespace.to_string()]),
                &metric_selector,
            )
            .await?
        }
    };
    Ok(Json(MetricValueList { version, items }))
}

fn parse_selector(parameter: &str, value: Option<&str>) -> Result<LabelSelector, ApiError> {
    LabelSelector::parse(value.unwrap_or("")).map_err(|error| {
        ApiError::bad_request(format!(
            "invalid {parameter} {:?}: {error}",
            value.unwrap_or("")
        ))
    })
}

fn lookup<'t>(
    table: &'t RuleTable,
    kind: ObjectKind,
    metric: &str,
    namespace: &str,
) -> Result<&'t Arc<MetricRule>, ApiError> {
    table
        .lookup(kind, metric, namespace)
        .ok_or_else(|| unknown_metric(kind, metric, Some(namespace)))
}

/// Says only what holds for the requester's namespace and the cluster: whether another
/// namespace defines the metric is none of its business (tenants would learn each
/// other's metric names and namespaces), so that case reads exactly like a metric
/// nobody defines.
fn unknown_metric(kind: ObjectKind, metric: &str, namespace: Option<&str>) -> ApiError {
    let place = match namespace {
        Some(namespace) => format!(
            ": there is no definition of it in namespace {namespace} and no cluster-wide one"
        ),
        None => String::new(),
    };
    ApiError::not_found(format!(
        "the server could not find the metric {metric} for {}{place}",
        kind.resource()
    ))
}

/// `None` means every object that has the label.
fn select_objects(
    state: &ApiState,
    kind: ObjectKind,
    namespace: Option<&str>,
    selector: &LabelSelector,
) -> Result<Option<Vec<String>>, ApiError> {
    if selector.is_empty() {
        return Ok(None);
    }
    match state.objects.select(kind, namespace, selector) {
        Ok(names) if names.is_empty() => Err(ApiError::not_found(format!(
            "no {} {}match labelSelector {:?}",
            kind.resource(),
            namespace
                .map(|ns| format!("in namespace {ns} "))
                .unwrap_or_default(),
            selector.to_string()
        ))),
        Ok(names) => Ok(Some(names)),
        Err(ObjectIndexError::NoCluster(message)) => Err(ApiError::not_implemented(message)),
        Err(ObjectIndexError::NotReady(message)) => Err(ApiError::unavailable(message)),
    }
}

/// Matchers from `metricLabelSelector`, refusing labels that would widen the request
/// beyond its namespace or object.
fn metric_matchers(rule: &MetricRule, selector: &LabelSelector) -> Result<Vec<String>, ApiError> {
    for key in selector.keys() {
        if key == rule.namespace_label || key == rule.object_label || key == "namespace" {
            return Err(ApiError::bad_request(format!(
                "metricLabelSelector may not select on {key:?}: the namespace and the object are given by the request path"
            )));
        }
    }
    selector
        .to_promql_matchers()
        .map_err(|error| ApiError::bad_request(format!("invalid metricLabelSelector: {error}")))
}

async fn values_for(
    state: &ApiState,
    rule: &Arc<MetricRule>,
    namespace: &str,
    names: Option<Vec<String>>,
    metric_selector: &LabelSelector,
) -> Result<Vec<MetricValue>, ApiError> {
    let matchers = metric_matchers(rule, metric_selector)?;
    let objects = object_selection(names.as_deref());
    let single = matches!(objects, ObjectSelection::One(_)) && names.is_some();
    let query = render_query(
        rule,
        &RenderRequest {
            namespace,
            objects,
            metric_matchers: &matchers,
        },
    );
    let selector_json =
        (!metric_selector.is_empty()).then(|| Arc::new(metric_selector.to_label_selector_json()));
    let make = |name: &str, sample: &Sample| -> Result<MetricValue, String> {
        let value = milli_quantity(&sample.value).map_err(|error| error.to_string())?;
        Ok(MetricValue {
            described_object: DescribedObject {
                kind: rule.object.kind(),
                namespace: rule.object.is_namespaced().then(|| namespace.to_string()),
                name: name.to_string(),
                api_version: rule.object.api_version(),
            },
            metric: rule.metric.clone(),
            selector: selector_json.clone(),
            timestamp: wire::timestamp(sample.timestamp),
            window_seconds: rule.window_seconds,
            value,
        })
    };

    if single {
        let name = names.as_ref().map(|n| n[0].as_str()).unwrap_or_default();
        let answer = state
            .upstream
            .object(ObjectRequest {
                rule,
                namespace,
                metric_matchers: &matchers,
                name,
            })
            .await
            .map_err(|error| query_failed(rule, &query, error))?;
        let sample = match answer {
            ObjectAnswer::Value(sample) => sample,
            ObjectAnswer::Absent => return Err(no_data(&rule.object_label, name, &query)),
            ObjectAnswer::Ambiguous => {
                let samples = fetch(state, rule, &query).await?;
                pick_sample(&samples, &rule.object_label, name, &query)?.clone()
            }
        };
        let value = make(name, &sample).map_err(|problem| {
            ApiError::not_found(format!(
                "the metric {} for {} {namespace}/{name} has no usable value: {problem} (query: {query})",
                rule.metric,
                rule.object.resource()
            ))
        })?;
        return Ok(vec![value]);
    }

    let samples = fetch(state, rule, &query).await?;
    let wanted: Option<HashSet<&str>> = names
        .as_ref()
        .map(|n| n.iter().map(String::as_str).collect());
    let mut items = Vec::new();
    let mut seen = HashSet::new();
    for sample in samples.iter() {
        let Some(name) = sample.labels.get(&rule.object_label) else {
            continue;
        };
        if wanted.as_ref().is_some_and(|w| !w.contains(name)) || !seen.insert(name) {
            continue;
        }
        match make(name, sample) {
            Ok(item) => items.push(item),
            Err(problem) => {
                tracing::warn!(object = %name, metric = %rule.metric, %problem, "skipping value")
            }
        }
    }
    if items.is_empty() {
        return Err(ApiError::not_found(format!(
            "the metric {} for {} in namespace {namespace} has no values: Prometheus returned {} series with a {} label for query {query}",
            rule.metric,
            rule.object.resource(),
            samples.len(),
            rule.object_label
        )));
    }
    Ok(items)
}

fn query_failed(rule: &MetricRule, query: &str, error: crate::upstream::QueryError) -> ApiError {
    tracing::warn!(%error, source = %rule.source, query = %query, "Prometheus query failed");
    ApiError::from(error)
}

async fn fetch(
    state: &ApiState,
    rule: &MetricRule,
    query: &str,
) -> Result<crate::upstream::Samples, ApiError> {
    state
        .upstream
        .query(query)
        .await
        .map_err(|error| query_failed(rule, query, error))
}

fn no_data(label: &str, name: &str, query: &str) -> ApiError {
    ApiError::not_found(format!(
        "Prometheus returned no data for {label}={name:?} (query: {query})"
    ))
}

/// Named objects go into the query, but never as an unbounded regex: past
/// [`MAX_REGEX_OBJECTS`] the query matches the namespace and results are filtered here.
fn object_selection(names: Option<&[String]>) -> ObjectSelection<'_> {
    match names {
        Some([one]) => ObjectSelection::One(one),
        Some(names) if names.len() <= MAX_REGEX_OBJECTS => ObjectSelection::Many(names),
        _ => ObjectSelection::All,
    }
}

fn pick_sample<'s>(
    samples: &'s [Sample],
    label: &str,
    name: &str,
    query: &str,
) -> Result<&'s Sample, ApiError> {
    if let Some(sample) = samples.iter().find(|s| s.labels.get(label) == Some(name)) {
        return Ok(sample);
    }
    // A query without `by (<<.GroupBy>>)` returns one unlabelled series; it can only be this object's.
    if let [sample] = samples
        && !sample.labels.contains(label)
    {
        return Ok(sample);
    }
    Err(if samples.is_empty() {
        no_data(label, name, query)
    } else {
        ApiError::not_found(format!(
            "Prometheus returned {} series but none with {label}={name:?}; group the query by (<<.GroupBy>>) (query: {query})",
            samples.len()
        ))
    })
}

pub async fn external_metric(
    State(state): State<ApiState>,
    Path(path): Path<String>,
    Query(params): Query<MetricParams>,
) -> ApiResult<ExternalMetricValueList> {
    let segments: Vec<&str> = path.split('/').collect();
    let ["namespaces", namespace, metric] = segments.as_slice() else {
        return Err(not_found_path(&path));
    };
    if namespace.is_empty() || !is_valid_external_name(metric) {
        return Err(ApiError::not_found(format!(
            "the server could not find the external metric {metric:?}: names must be valid Prometheus metric names after the {EXTERNAL_PREFIX} prefix"
        )));
    }
    let selector = parse_selector("labelSelector", params.label_selector.as_deref())?;
    let matchers = selector
        .to_promql_matchers()
        .map_err(|error| ApiError::bad_request(format!("invalid labelSelector: {error}")))?;
    // A namespaced metric reads only the series of the asking HPA's namespace.
    let pinned = state.rules.load().external_namespaced(metric);
    let query = render_external_query(metric, &matchers, pinned.then_some(*namespace));
    let samples = state.upstream.query(&query).await.map_err(|error| {
        tracing::warn!(%error, query = %query, "Prometheus query failed");
        ApiError::from(error)
    })?;
    let mut items = Vec::with_capacity(samples.len());
    for sample in samples.iter() {
        match milli_quantity(&sample.value) {
            Ok(value) => {
                let labels = sample
                    .labels
                    .iter()
                    .filter(|(name, _)| *name != "__name__")
                    .map(|(name, value)| (name.to_string(), value.to_string()))
                    .collect();
                items.push(ExternalMetricValue {
                    metric_name: metric.to_string(),
                    metric_labels: labels,
                    timestamp: wire::timestamp(sample.timestamp),
                    value,
                });
            }
            Err(problem) => {
                tracing::warn!(metric = %metric, labels = ?sample.labels, %problem, "skipping external value")
            }
        }
    }
    if samples.is_empty() {
        let known = state.external.contains(metric)
            || state.rules.load().external_metrics().contains(*metric);
        if !known {
            return Err(ApiError::not_found(format!(
                "the server could not find the external metric {metric}: Prometheus has no series {EXTERNAL_PREFIX}{metric}"
            )));
        }
    } else {
        state.external.note(metric);
    }
    Ok(Json(wire::external_metric_value_list(items)))
}

#[cfg(test)]
mod tests;
