//! Errors as clients of an aggregated API expect them: `metav1.Status` bodies.

use crate::prometheus::PrometheusError;
use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;

/// The reasons our `metav1.Status` answers carry: the one list of them, each with its
/// HTTP code and the section of docs/troubleshooting.md that explains its messages (the
/// guide's test reads this list, so a new reason cannot go undocumented).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatusReason {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    TooManyRequests,
    NotImplemented,
    BadGateway,
    ServiceUnavailable,
    Timeout,
}

impl StatusReason {
    pub const ALL: [StatusReason; 9] = [
        StatusReason::BadRequest,
        StatusReason::Unauthorized,
        StatusReason::Forbidden,
        StatusReason::NotFound,
        StatusReason::TooManyRequests,
        StatusReason::NotImplemented,
        StatusReason::BadGateway,
        StatusReason::ServiceUnavailable,
        StatusReason::Timeout,
    ];

    pub fn code(self) -> u16 {
        match self {
            StatusReason::BadRequest => 400,
            StatusReason::Unauthorized => 401,
            StatusReason::Forbidden => 403,
            StatusReason::NotFound => 404,
            StatusReason::TooManyRequests => 429,
            StatusReason::NotImplemented => 501,
            StatusReason::BadGateway => 502,
            StatusReason::ServiceUnavailable => 503,
            StatusReason::Timeout => 504,
        }
    }

    /// The `reason` field as Kubernetes spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            StatusReason::BadRequest => "BadRequest",
            StatusReason::Unauthorized => "Unauthorized",
            StatusReason::Forbidden => "Forbidden",
            StatusReason::NotFound => "NotFound",
            StatusReason::TooManyRequests => "TooManyRequests",
            StatusReason::NotImplemented => "NotImplemented",
            StatusReason::BadGateway => "BadGateway",
            StatusReason::ServiceUnavailable => "ServiceUnavailable",
            StatusReason::Timeout => "Timeout",
        }
    }

    /// The heading of docs/troubleshooting.md that lists its messages (`### 404 `NotFound``).
    pub fn doc_anchor(self) -> String {
        format!("{}-{}", self.code(), self.as_str().to_ascii_lowercase())
    }
}

/// An error answered to a client, with the real cause in `message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} {}: {message}", reason.as_str())]
pub struct ApiError {
    pub code: u16,
    pub reason: StatusReason,
    pub message: String,
    /// Seconds a client should wait before retrying, sent as `Retry-After`.
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(reason: StatusReason, message: impl Into<String>) -> Self {
        ApiError {
            code: reason.code(),
            reason,
            message: message.into(),
            retry_after: None,
        }
    }
    /// 429, which client-go retries after `Retry-After` by itself.
    pub fn too_many_requests(message: impl Into<String>, retry_after: u32) -> Self {
        ApiError {
            retry_after: Some(retry_after),
            ..Self::new(StatusReason::TooManyRequests, message)
        }
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusReason::NotFound, message)
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusReason::BadRequest, message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusReason::Unauthorized, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusReason::Forbidden, message)
    }
    pub fn not_implemented(message: impl Into<String>) -> Self {
        Self::new(StatusReason::NotImplemented, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusReason::ServiceUnavailable, message)
    }
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(StatusReason::Timeout, message)
    }
}

impl From<PrometheusError> for ApiError {
    fn from(error: PrometheusError) -> Self {
        let reason = match error.http_status() {
            503 => StatusReason::ServiceUnavailable,
            504 => StatusReason::Timeout,
            _ => StatusReason::BadGateway,
        };
        ApiError::new(reason, error.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = Status {
            status: Some("Failure".to_owned()),
            message: Some(self.message),
            reason: Some(self.reason.as_str().to_owned()),
            code: Some(i32::from(self.code)),
            ..Default::default()
        };
        let mut response = (status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}
