//! The router: both metrics APIs, discovery and health endpoints.

use crate::api::{self, ApiState};
use crate::error::ApiError;
use crate::readiness::ReadyState;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;

/// Every route the server answers. Authentication, when enabled, wraps this router
/// except for the health endpoints, which stay open for probes.
pub fn metrics_routes(state: ApiState) -> Router {
    Router::new()
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
