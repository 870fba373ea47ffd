//! Reads of custom metrics: the URL's target, the rule for it and the objects it names.

use super::values::values_for;
use super::{ApiResult, ApiState, MetricParams, not_found_path, parse_selector};
use crate::error::ApiError;
use crate::objects::ObjectIndexError;
use crate::selector::LabelSelector;
use crate::table::{MetricRule, ObjectKind, RuleTable};
use crate::wire::{CustomVersion, MetricValueList};
use axum::Json;
use axum::extract::{Path, Query, State};
use std::collections::HashSet;
use std::sync::Arc;

/// What a custom metrics URL asks for.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Target<'a> {
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

pub(super) fn parse_custom_path(path: &str) -> Result<Target<'_>, ApiError> {
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
    let table = state.table.load_full();
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

pub(super) fn lookup<'t>(
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
pub(super) fn unknown_metric(kind: ObjectKind, metric: &str, namespace: Option<&str>) -> ApiError {
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
