//! Turning a rule and the objects asked for into metric values from Prometheus.

use super::ApiState;
use crate::error::ApiError;
use crate::prometheus::Sample;
use crate::quantity::milli_quantity;
use crate::render::{ObjectSelection, RenderRequest, render_query};
use crate::selector::LabelSelector;
use crate::table::MetricRule;
use crate::upstream::{ObjectAnswer, ObjectRequest, Upstream};
use crate::wire::{self, DescribedObject, MetricValue};
use std::collections::HashSet;
use std::sync::Arc;

pub(super) async fn values_for(
    state: &ApiState,
    rule: &Arc<MetricRule>,
    namespace: &str,
    names: Option<Vec<String>>,
    metric_selector: &LabelSelector,
) -> Result<Vec<MetricValue>, ApiError> {
    let matchers = metric_matchers(rule, metric_selector)?;
    let upstream = state
        .backends
        .upstream(&rule.backend, namespace, &*state.objects)?;
    let objects = ObjectSelection::of(names.as_deref());
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
        let answer = upstream
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
                let samples = fetch(&upstream, rule, &query).await?;
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

    let samples = fetch(&upstream, rule, &query).await?;
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
    upstream: &Upstream,
    rule: &MetricRule,
    query: &str,
) -> Result<crate::upstream::Samples, ApiError> {
    upstream
        .query_bounded(query, rule.bounds)
        .await
        .map_err(|error| query_failed(rule, query, error))
}

fn no_data(label: &str, name: &str, query: &str) -> ApiError {
    ApiError::not_found(format!(
        "Prometheus returned no data for {label}={name:?} (query: {query})"
    ))
}

pub(super) fn pick_sample<'s>(
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
