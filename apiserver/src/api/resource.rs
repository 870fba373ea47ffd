//! Reads of metrics.k8s.io: `PodMetrics` and `NodeMetrics` from the served
//! `ResourceMetrics` rule, one CPU and one memory query per request.

use super::{ApiState, MetricParams, not_found_path, parse_selector};
use crate::error::ApiError;
use crate::objects::ObjectIndexError;
use crate::resource_metrics::{
    PodSelection, container_query, node_metrics, node_query, pod_metrics,
};
use crate::table::{ObjectKind, ResourceRule};
use crate::upstream::{QueryError, Samples};
use crate::wire::{self, ResourceMetricsList};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList;
use std::sync::Arc;

pub async fn resource_discovery() -> Json<APIResourceList> {
    let resource = |name: &str, namespaced: bool, kind: &str| {
        let mut resource = wire::metric_resource(name.to_string(), namespaced, kind);
        resource.verbs = vec!["get".to_owned(), "list".to_owned()];
        resource
    };
    Json(APIResourceList {
        group_version: wire::METRICS_GROUP_VERSION.to_owned(),
        resources: vec![
            resource("nodes", false, "NodeMetrics"),
            resource("pods", true, "PodMetrics"),
        ],
    })
}

/// What a path asks for.
enum Asked<'a> {
    Nodes(Option<&'a str>),
    Pods {
        namespace: Option<&'a str>,
        name: Option<&'a str>,
    },
}

fn asked(path: &str) -> Option<Asked<'_>> {
    let segments: Vec<&str> = path.split('/').collect();
    Some(match segments.as_slice() {
        ["nodes"] => Asked::Nodes(None),
        ["nodes", name] if !name.is_empty() => Asked::Nodes(Some(name)),
        ["pods"] => Asked::Pods {
            namespace: None,
            name: None,
        },
        ["namespaces", namespace, "pods"] if !namespace.is_empty() => Asked::Pods {
            namespace: Some(namespace),
            name: None,
        },
        ["namespaces", namespace, "pods", name] if !namespace.is_empty() && !name.is_empty() => {
            Asked::Pods {
                namespace: Some(namespace),
                name: Some(name),
            }
        }
        _ => return None,
    })
}

pub async fn resource_metric(
    State(state): State<ApiState>,
    Path(path): Path<String>,
    Query(params): Query<MetricParams>,
) -> Result<Response, ApiError> {
    let asked = asked(&path).ok_or_else(|| not_found_path(&path))?;
    let Some(rule) = state.table.load().resource_rule().cloned() else {
        return Err(ApiError::not_found(
            "metrics.k8s.io is not served: no ResourceMetrics definition is (create one; see docs/definitions.md)",
        ));
    };
    let selector = parse_selector("labelSelector", params.label_selector.as_deref())?;
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    match asked {
        Asked::Nodes(name) => {
            let (cpu, memory) = (
                node_query(&rule, &rule.cpu.node, name),
                node_query(&rule, &rule.memory.node, name),
            );
            let (cpu, memory) = cpu_and_memory(&state, &rule, &cpu, &memory).await?;
            let nodes = node_metrics(&rule, &cpu, &memory, &now);
            match name {
                Some(name) => nodes
                    .into_iter()
                    .next()
                    .map(|node| Json(node).into_response())
                    .ok_or_else(|| not_found("nodemetrics", name)),
                None => {
                    Ok(Json(ResourceMetricsList::new("NodeMetricsList", nodes)).into_response())
                }
            }
        }
        Asked::Pods { namespace, name } => {
            let names: Option<Vec<String>> = match (name, namespace) {
                (Some(name), _) => Some(vec![name.to_string()]),
                (None, _) if selector.is_empty() => None,
                (None, namespace) => {
                    match state.objects.select(ObjectKind::Pod, namespace, &selector) {
                        Ok(names) if names.is_empty() => {
                            return Ok(Json(ResourceMetricsList::<wire::PodMetrics>::new(
                                "PodMetricsList",
                                Vec::new(),
                            ))
                            .into_response());
                        }
                        Ok(names) => Some(names),
                        Err(ObjectIndexError::NoCluster(message)) => {
                            return Err(ApiError::not_implemented(message));
                        }
                        Err(ObjectIndexError::NotReady(message)) => {
                            return Err(ApiError::unavailable(message));
                        }
                    }
                }
            };
            let pods = match namespace {
                Some(namespace) => PodSelection::Namespace(namespace, names.as_deref()),
                None => PodSelection::All,
            };
            let (cpu, memory) = (
                container_query(&rule, &rule.cpu.container, pods),
                container_query(&rule, &rule.memory.container, pods),
            );
            let (cpu, memory) = cpu_and_memory(&state, &rule, &cpu, &memory).await?;
            let mut items = pod_metrics(&rule, &cpu, &memory, &now);
            // Every namespace with a selector: the index named pods of any namespace.
            if let (None, Some(names)) = (namespace, &names) {
                items.retain(|pod| names.contains(&pod.metadata.name));
            }
            match name {
                Some(name) => items
                    .into_iter()
                    .next()
                    .map(|pod| Json(pod).into_response())
                    .ok_or_else(|| not_found("podmetrics", name)),
                None => Ok(Json(ResourceMetricsList::new("PodMetricsList", items)).into_response()),
            }
        }
    }
}

/// As metrics-server says it: `podmetrics.metrics.k8s.io "web-1" not found`.
fn not_found(resource: &str, name: &str) -> ApiError {
    ApiError::not_found(format!(
        "{resource}.metrics.k8s.io {name:?} not found: Prometheus has no usage for it"
    ))
}

/// The CPU and the memory query, at once.
async fn cpu_and_memory(
    state: &ApiState,
    rule: &Arc<ResourceRule>,
    cpu: &str,
    memory: &str,
) -> Result<(Samples, Samples), ApiError> {
    // A ResourceMetrics' backend has no per-namespace tenant (the compiler sees to it).
    let upstream = state
        .backends
        .upstream(&rule.backend, "", &*state.objects)?;
    let (cpu_answer, memory_answer) = futures::join!(upstream.query(cpu), upstream.query(memory));
    let failed = |query: &str, error: QueryError| {
        tracing::warn!(%error, query = %query, source = %rule.source, "Prometheus query failed");
        ApiError::from(error)
    };
    Ok((
        cpu_answer.map_err(|e| failed(cpu, e))?,
        memory_answer.map_err(|e| failed(memory, e))?,
    ))
}
