//! The Prometheus (or compatible) backend: address, credentials and how queries are sent.

use super::parse::{parse_duration, parse_duration_or_zero, parse_header};
use clap::{Args, ValueEnum};
use metrics_registry_apiserver::prometheus::{PrometheusConfig, QueryMethod};
use metrics_registry_apiserver::upstream::QueryOptions;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct PrometheusArgs {
    /// Base URL of the Prometheus HTTP API (Prometheus, Thanos, Mimir, VictoriaMetrics).
    #[arg(long, env = "PROMETHEUS_URL", default_value = "http://127.0.0.1:9090")]
    pub prometheus_url: String,
    /// Timeout of one Prometheus request, e.g. 10s or 500ms.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub prometheus_timeout: Duration,
    /// File with a bearer token, re-read whenever it changes.
    #[arg(long, value_name = "FILE")]
    pub prometheus_bearer_token_file: Option<PathBuf>,
    #[arg(
        long,
        value_name = "USER",
        requires = "prometheus_basic_auth_password_file"
    )]
    pub prometheus_basic_auth_user: Option<String>,
    #[arg(long, value_name = "FILE", requires = "prometheus_basic_auth_user")]
    pub prometheus_basic_auth_password_file: Option<PathBuf>,
    /// CA bundle that signs Prometheus' certificate.
    #[arg(long, value_name = "FILE")]
    pub prometheus_ca_file: Option<PathBuf>,
    #[arg(long, value_name = "FILE", requires = "prometheus_client_key_file")]
    pub prometheus_client_cert_file: Option<PathBuf>,
    #[arg(long, value_name = "FILE", requires = "prometheus_client_cert_file")]
    pub prometheus_client_key_file: Option<PathBuf>,
    /// Extra header NAME=VALUE sent with every request (e.g. X-Scope-OrgID=tenant); repeatable.
    #[arg(long = "prometheus-header", value_name = "NAME=VALUE", value_parser = parse_header)]
    pub prometheus_headers: Vec<(String, String)>,
    /// HTTP method of queries: auto uses POST only when the URL would be too long.
    #[arg(long, value_enum, default_value_t = Method::Auto)]
    pub prometheus_method: Method,
    /// Largest Prometheus answer read (bytes); a larger one is answered with a 502 naming this limit.
    #[arg(long, default_value_t = metrics_registry_apiserver::prometheus::DEFAULT_MAX_RESPONSE_BYTES)]
    pub prometheus_max_response_bytes: usize,
    /// How often the list of kube_adapter_metric_* series is refreshed.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub external_refresh_interval: Duration,
    /// Queries to Prometheus at once; past it requests get 429 with Retry-After (0: no bound).
    #[arg(long, default_value_t = 64)]
    pub prometheus_max_in_flight: usize,
    /// Reuse a query's answer while it is younger than this (from when the query was
    /// sent); 0s turns the result cache off. With it, one query also refreshes the
    /// objects of the same metric and namespace asked for recently.
    #[arg(long, default_value = "0s", value_parser = parse_duration_or_zero)]
    pub query_cache_max_age: Duration,
    /// How long a request for one object waits for requests for other objects of the
    /// same metric and namespace to be asked together; 0s sends at once (requests still
    /// share a query with those that arrive while their group's previous one runs).
    #[arg(long, default_value = "0s", value_parser = parse_duration_or_zero)]
    pub query_batch_window: Duration,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Method {
    Auto,
    Get,
    Post,
}

impl PrometheusArgs {
    pub fn config(&self) -> PrometheusConfig {
        let mut config = PrometheusConfig::new(self.prometheus_url.clone());
        config.timeout = self.prometheus_timeout;
        config.bearer_token_file = self.prometheus_bearer_token_file.clone();
        config.basic_auth_user = self.prometheus_basic_auth_user.clone();
        config.basic_auth_password_file = self.prometheus_basic_auth_password_file.clone();
        config.ca_file = self.prometheus_ca_file.clone();
        config.client_cert_file = self.prometheus_client_cert_file.clone();
        config.client_key_file = self.prometheus_client_key_file.clone();
        config.headers = self.prometheus_headers.clone();
        config.max_response_bytes = self.prometheus_max_response_bytes;
        config.method = match self.prometheus_method {
            Method::Auto => QueryMethod::Auto,
            Method::Get => QueryMethod::Get,
            Method::Post => QueryMethod::Post,
        };
        config
    }

    /// How the server shares, batches, caches and bounds its queries.
    pub fn query_options(&self) -> QueryOptions {
        QueryOptions {
            max_in_flight: self.prometheus_max_in_flight,
            cache_max_age: self.query_cache_max_age,
            batch_window: self.query_batch_window,
            ..QueryOptions::default()
        }
    }
}
