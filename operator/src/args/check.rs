//! `check`: offline validation of definition files, optionally tried against a live Prometheus.

use super::parse::{parse_duration, parse_header};
use clap::Args;
use metrics_registry_apiserver::prometheus::PrometheusConfig;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Definition files (YAML, multi-document).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    #[arg(long)]
    pub disable_namespace_isolation: bool,
    #[command(flatten)]
    pub live: LiveCheckArgs,
}

/// `check --prometheus-url`: evaluate each valid definition against a running Prometheus.
#[derive(Debug, Args)]
pub struct LiveCheckArgs {
    /// Also evaluate every valid definition against this Prometheus (or Thanos, Mimir,
    /// VictoriaMetrics) and print its query and what it would serve; exit 1 when a query fails.
    #[arg(long, value_name = "URL")]
    pub prometheus_url: Option<String>,
    /// Extra header NAME=VALUE sent with every query (e.g. X-Scope-OrgID=tenant); repeatable.
    #[arg(long = "prometheus-header", value_name = "NAME=VALUE", value_parser = parse_header, requires = "prometheus_url")]
    pub prometheus_headers: Vec<(String, String)>,
    /// File with a bearer token for that Prometheus.
    #[arg(long, value_name = "FILE", requires = "prometheus_url")]
    pub prometheus_bearer_token_file: Option<PathBuf>,
    /// CA bundle that signs that Prometheus' certificate.
    #[arg(long, value_name = "FILE", requires = "prometheus_url")]
    pub prometheus_ca_file: Option<PathBuf>,
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub prometheus_timeout: Duration,
    /// Namespace the sample request of cluster-wide definitions asks for (default: every
    /// namespace); namespaced definitions are asked for their own.
    #[arg(long, value_name = "NS", requires = "prometheus_url")]
    pub namespace: Option<String>,
    /// Exit 1 also when a definition's query returns nothing it could serve.
    #[arg(long, requires = "prometheus_url")]
    pub require_data: bool,
}

impl LiveCheckArgs {
    /// `None` without `--prometheus-url`: the check stays offline.
    pub fn config(&self) -> Option<PrometheusConfig> {
        let mut config = PrometheusConfig::new(self.prometheus_url.clone()?);
        config.timeout = self.prometheus_timeout;
        config.headers = self.prometheus_headers.clone();
        config.bearer_token_file = self.prometheus_bearer_token_file.clone();
        config.ca_file = self.prometheus_ca_file.clone();
        Some(config)
    }
}
