//! HTTP client for the Prometheus query API (also spoken by Thanos, Mimir and
//! VictoriaMetrics), as used to evaluate metric rules.

mod auth;
mod client;
mod config;
mod error;
mod oauth2;
mod response;
mod secret;
mod sigv4;

pub use client::PrometheusClient;
pub use config::{
    DEFAULT_MAX_RESPONSE_BYTES, InlineSecret, OAuth2Config, PrometheusConfig, QueryMethod,
    SigV4Config, validate_headers, validate_url,
};
pub use error::{PrometheusConfigError, PrometheusError};
pub use response::{Labels, Sample};

#[cfg(test)]
mod tests;
