//! HTTP handlers of custom.metrics.k8s.io and external.metrics.k8s.io: discovery here,
//! metric reads in the submodules.

mod custom;
mod external;
mod values;

#[cfg(test)]
mod tests;

pub use custom::custom_metric;
pub use external::external_metric;

use crate::error::ApiError;
use crate::external::ExternalCatalog;
use crate::objects::ObjectIndex;
use crate::rules::SharedRuleTable;
use crate::selector::LabelSelector;
use crate::upstream::Upstream;
use crate::wire::{self, ApiResource, ApiResourceList, CustomVersion};
use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
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

pub(super) type ApiResult<T> = Result<Json<T>, ApiError>;

pub(super) fn not_found_path(path: &str) -> ApiError {
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

pub(super) fn parse_selector(
    parameter: &str,
    value: Option<&str>,
) -> Result<LabelSelector, ApiError> {
    LabelSelector::parse(value.unwrap_or("")).map_err(|error| {
        ApiError::bad_request(format!(
            "invalid {parameter} {:?}: {error}",
            value.unwrap_or("")
        ))
    })
}
