//! HTTP handlers of custom.metrics.k8s.io, external.metrics.k8s.io and metrics.k8s.io:
//! discovery here, metric reads in the submodules.

mod custom;
mod external;
mod resource;
mod values;

#[cfg(test)]
mod tests;

pub use custom::custom_metric;
pub use external::external_metric;
pub use resource::{resource_discovery, resource_metric};

use crate::error::ApiError;
use crate::external::ExternalCatalog;
use crate::objects::ObjectIndex;
use crate::selector::LabelSelector;
use crate::table::SharedRuleTable;
use crate::telemetry::SelfMetrics;
use crate::upstream::Backends;
use crate::wire::{self, CustomVersion};
use axum::Json;
use axum::extract::{Path, State};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList;
use serde::Deserialize;
use std::sync::Arc;

pub use crate::readiness::Readiness;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub table: SharedRuleTable,
    /// The backends (the default one and the `MetricsBackend`s), each behind single
    /// flight, batching, the cache and the in-flight bound, per tenant.
    pub backends: Backends,
    pub objects: Arc<dyn ObjectIndex>,
    pub external: Arc<ExternalCatalog>,
    pub readiness: Readiness,
    /// The process' self-metrics, served on `/metrics`.
    pub metrics: Arc<SelfMetrics>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricParams {
    #[serde(default)]
    label_selector: Option<String>,
    #[serde(default)]
    metric_label_selector: Option<String>,
}

pub(super) type ApiResult<T> = Result<Json<T>, ApiError>;

pub(super) fn not_found_path(path: &str) -> ApiError {
    ApiError::not_found(format!(
        "the server could not find the requested resource ({path})"
    ))
}

pub async fn custom_discovery(
    State(state): State<ApiState>,
    Path(version): Path<String>,
) -> ApiResult<APIResourceList> {
    let version = CustomVersion::parse(&version).ok_or_else(|| not_found_path(&version))?;
    let table = state.table.load();
    let resources = table
        .discovery()
        .map(|(kind, metric)| {
            wire::metric_resource(
                format!("{}/{}", kind.resource(), metric),
                kind.is_namespaced(),
                "MetricValueList",
            )
        })
        .collect();
    Ok(Json(APIResourceList {
        group_version: version.group_version().to_owned(),
        resources,
    }))
}

pub async fn external_discovery(State(state): State<ApiState>) -> ApiResult<APIResourceList> {
    let table = state.table.load();
    let mut names: Vec<String> = state.external.names().iter().cloned().collect();
    names.extend(table.external_metrics().iter().cloned());
    names.extend(table.external_rule_names().map(str::to_string));
    names.sort();
    names.dedup();
    let resources = names
        .into_iter()
        .map(|name| wire::metric_resource(name, true, "ExternalMetricValueList"))
        .collect();
    Ok(Json(APIResourceList {
        group_version: "external.metrics.k8s.io/v1beta1".to_owned(),
        resources,
    }))
}

/// Longest `labelSelector`/`metricLabelSelector` accepted. Kubernetes selectors an HPA
/// sends are a few dozen bytes; every byte of one is rendered into the query and kept
/// in the caches keyed by it, so a client cannot make either large.
pub const MAX_SELECTOR_BYTES: usize = 8192;

pub(super) fn parse_selector(
    parameter: &str,
    value: Option<&str>,
) -> Result<LabelSelector, ApiError> {
    if let Some(text) = value
        && text.len() > MAX_SELECTOR_BYTES
    {
        return Err(ApiError::bad_request(format!(
            "{parameter} is {} bytes long; at most {MAX_SELECTOR_BYTES} are accepted",
            text.len()
        )));
    }
    LabelSelector::parse(value.unwrap_or("")).map_err(|error| {
        ApiError::bad_request(format!(
            "invalid {parameter} {:?}: {error}",
            value.unwrap_or("")
        ))
    })
}
