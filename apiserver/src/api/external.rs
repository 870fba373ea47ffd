//! Reads of external metrics.

use super::{ApiResult, ApiState, MetricParams, not_found_path, parse_selector};
use crate::error::ApiError;
use crate::external::{EXTERNAL_PREFIX, is_valid_external_name, render_external_query};
use crate::prometheus::Sample;
use crate::quantity::milli_quantity;
use crate::wire::{self, ExternalMetricValue, ExternalMetricValueList};
use axum::Json;
use axum::extract::{Path, Query, State};

pub async fn external_metric(
    State(state): State<ApiState>,
    Path(path): Path<String>,
    Query(params): Query<MetricParams>,
) -> ApiResult<ExternalMetricValueList> {
    let segments: Vec<&str> = path.split('/').collect();
    let ["namespaces", namespace, metric] = segments.as_slice() else {
        return Err(not_found_path(&path));
    };
    if namespace.is_empty() {
        return Err(not_found_path(&path));
    }
    let selector = parse_selector("labelSelector", params.label_selector.as_deref())?;
    let matchers = selector
        .to_promql_matchers()
        .map_err(|error| ApiError::bad_request(format!("invalid labelSelector: {error}")))?;
    let table = state.table.load();
    // A definition's live query first (namespace over cluster), then the series.
    if let Some(rule) = table.external_rule(metric, namespace) {
        let query = rule.query(&matchers, namespace);
        let upstream = state
            .backends
            .upstream(&rule.backend, namespace, &*state.objects)?;
        let samples = upstream.query_bounded(&query, rule.bounds).await.map_err(|error| {
            tracing::warn!(%error, query = %query, source = %rule.source, "Prometheus query failed");
            ApiError::from(error)
        })?;
        return Ok(Json(wire::external_metric_value_list(items(
            metric, &samples,
        ))));
    }
    if !is_valid_external_name(metric) {
        return Err(ApiError::not_found(format!(
            "the server could not find the external metric {metric:?}: names must be valid Prometheus metric names after the {EXTERNAL_PREFIX} prefix"
        )));
    }
    // By default a request reads its own namespace's series and those of no namespace.
    let scope = table.external_scope(metric);
    let query = render_external_query(metric, &matchers, namespace, scope);
    let upstream = state.backends.default_backend();
    let samples = upstream.query(&query).await.map_err(|error| {
        tracing::warn!(%error, query = %query, "Prometheus query failed");
        ApiError::from(error)
    })?;
    let items = items(metric, &samples);
    if samples.is_empty() {
        let known = state.external.contains(metric) || table.external_metrics().contains(*metric);
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

/// One item per sample, with its labels but the series name; samples whose value no
/// quantity can hold are skipped (and logged).
fn items(metric: &str, samples: &[Sample]) -> Vec<ExternalMetricValue> {
    let mut items = Vec::with_capacity(samples.len());
    for sample in samples {
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
    items
}
