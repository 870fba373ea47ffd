//! The router: the metrics APIs, discovery and health endpoints.

use crate::api::{self, ApiState};
use crate::error::ApiError;
use crate::readiness::ReadyState;
use crate::table::ObjectKind;
use crate::telemetry::{self, RequestKindLabels, RequestLabels, SelfMetrics};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::Arc;
use tracing::Instrument;

/// Every route the server answers. Authentication, when enabled, wraps this router
/// except for the health endpoints, which stay open for probes; `/metrics` is then
/// authorized like any non-resource path (`get` on `/metrics`, as metrics-server does).
pub fn metrics_routes(state: ApiState) -> Router {
    Router::new()
        .route("/metrics", get(self_metrics))
        .route(
            "/apis/custom.metrics.k8s.io/{version}",
            get(api::custom_discovery),
        )
        .route(
            "/apis/custom.metrics.k8s.io/{version}/{*path}",
            get(api::custom_metric),
        )
        .route(
            "/apis/external.metrics.k8s.io/v1beta1",
            get(api::external_discovery),
        )
        .route(
            "/apis/external.metrics.k8s.io/v1beta1/{*path}",
            get(api::external_metric),
        )
        .route("/apis/metrics.k8s.io/v1beta1", get(api::resource_discovery))
        .route(
            "/apis/metrics.k8s.io/v1beta1/{*path}",
            get(api::resource_metric),
        )
        .fallback(|uri: axum::http::Uri| async move {
            ApiError::not_found(format!(
                "the server could not find the requested resource ({})",
                uri.path()
            ))
        })
        .with_state(state)
}

/// `/healthz`, `/livez` and `/readyz`; readiness waits for the first full sync.
pub fn health_routes(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn readyz(State(state): State<ApiState>) -> impl IntoResponse {
    match state.readiness.state() {
        ReadyState::Ready => (StatusCode::OK, "ok"),
        ReadyState::Loading => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: definitions not loaded yet",
        ),
        ReadyState::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "not ready: shutting down"),
    }
}

/// Health plus metrics routes, without authentication (the plain-HTTP loopback mode).
pub fn insecure_router(state: ApiState) -> Router {
    health_routes(state.clone()).merge(metrics_routes(state))
}

/// The server's own metrics.
async fn self_metrics(State(state): State<ApiState>) -> impl IntoResponse {
    (
        [(http::header::CONTENT_TYPE, telemetry::CONTENT_TYPE)],
        state.metrics.encode(),
    )
}

/// Wraps the whole application (authentication included, so refusals count too): a
/// tracing span per request, and the request counter and latency histogram.
pub fn observed(app: Router, metrics: Arc<SelfMetrics>) -> Router {
    app.layer(axum::middleware::from_fn_with_state(metrics, observe))
}

async fn observe(
    State(metrics): State<Arc<SelfMetrics>>,
    request: Request,
    next: Next,
) -> Response {
    let started = std::time::Instant::now();
    let kind = request_kind(request.uri().path());
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        code = tracing::field::Empty,
        elapsed_ms = tracing::field::Empty,
    );
    let response = next.run(request).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let code = response.status().as_u16();
    span.record("code", code);
    span.record("elapsed_ms", elapsed.as_secs_f64() * 1000.0);
    metrics
        .request_duration
        .get_or_create(&kind)
        .observe(elapsed.as_secs_f64());
    metrics
        .requests
        .get_or_create(&RequestLabels {
            group: kind.group,
            version: kind.version,
            resource: kind.resource,
            code: code.to_string(),
        })
        .inc();
    response
}

/// Group, version and resource of a path, from a bounded set of values: metric names,
/// namespaces and object names never become labels.
fn request_kind(path: &str) -> RequestKindLabels {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let kind = |group: &str, version: &str, resource: &str| RequestKindLabels {
        group: group.to_owned(),
        version: version.to_owned(),
        resource: resource.to_owned(),
    };
    fn known_version(version: &str) -> &str {
        if matches!(version, "v1beta1" | "v1beta2") {
            version
        } else {
            "unknown"
        }
    }
    match segments.as_slice() {
        [
            "apis",
            group @ ("custom.metrics.k8s.io" | "external.metrics.k8s.io"),
            version,
            rest @ ..,
        ] => {
            let version = known_version(version);
            let resource = match (*group, rest) {
                (_, []) => "discovery",
                ("external.metrics.k8s.io", _) => "metrics",
                (_, ["namespaces", _, "metrics", _]) | (_, ["namespaces", _, _]) => "namespaces",
                (_, ["namespaces", _, resource, _, _]) | (_, [resource, _, _]) => {
                    ObjectKind::from_resource(resource).map_or("unknown", ObjectKind::resource)
                }
                _ => "unknown",
            };
            kind(group, version, resource)
        }
        ["apis", group @ "metrics.k8s.io", version, rest @ ..] => {
            let resource = match rest {
                [] => "discovery",
                ["nodes", ..] => "nodes",
                ["pods", ..] | ["namespaces", _, "pods", ..] => "pods",
                _ => "unknown",
            };
            kind(group, known_version(version), resource)
        }
        [path @ ("healthz" | "livez" | "readyz" | "metrics")] => kind("", "", path),
        _ => kind("", "", "other"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_labels_stay_bounded() {
        let resource = |path: &str| request_kind(path).resource;
        assert_eq!(
            resource("/apis/custom.metrics.k8s.io/v1beta2/namespaces/a/pods/p/m"),
            "pods"
        );
        assert_eq!(
            resource("/apis/custom.metrics.k8s.io/v1beta1/namespaces/a/metrics/m"),
            "namespaces"
        );
        assert_eq!(resource("/apis/custom.metrics.k8s.io/v1beta2"), "discovery");
        assert_eq!(
            resource("/apis/custom.metrics.k8s.io/v1beta2/namespaces/a/jobs.batch/p/m"),
            "unknown"
        );
        assert_eq!(
            resource("/apis/external.metrics.k8s.io/v1beta1/namespaces/a/queue"),
            "metrics"
        );
        assert_eq!(
            resource("/apis/metrics.k8s.io/v1beta1/namespaces/a/pods/p"),
            "pods"
        );
        assert_eq!(resource("/apis/metrics.k8s.io/v1beta1/nodes"), "nodes");
        assert_eq!(resource("/apis/metrics.k8s.io/v1beta1/x/y/z"), "unknown");
        assert_eq!(resource("/metrics"), "metrics");
        assert_eq!(resource("/some/thing/else"), "other");
        let kind = request_kind("/apis/custom.metrics.k8s.io/v9/x");
        assert_eq!(
            (kind.group.as_str(), kind.version.as_str()),
            ("custom.metrics.k8s.io", "unknown")
        );
    }
}
