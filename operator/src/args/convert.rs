//! `metrics-registry convert`'s flags (the command itself is `crate::convert::command`).

use super::{parse_duration, parse_header};
use clap::{Args, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// prometheus-adapter configuration: its config file, the ConfigMap that holds it, or
    /// the prometheus-adapter Helm chart's values (rules.custom/external/resource).
    pub file: PathBuf,
    /// List each seriesQuery's series from this Prometheus and name them as the adapter does
    /// at discovery; without it, each rule becomes one metric, with the assumption printed.
    #[arg(long, value_name = "URL")]
    pub prometheus_url: Option<String>,
    /// Extra header NAME=VALUE for Prometheus (X-Scope-OrgID=tenant, Authorization=Bearer …); repeatable.
    #[arg(long = "prometheus-header", value_name = "NAME=VALUE", value_parser = parse_header, requires = "prometheus_url")]
    pub prometheus_headers: Vec<(String, String)>,
    /// CA bundle that signs Prometheus' certificate.
    #[arg(long, value_name = "FILE", requires = "prometheus_url")]
    pub prometheus_ca_file: Option<PathBuf>,
    /// Series seen within this long are listed (the adapter's --metrics-max-age).
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    pub metrics_max_age: Duration,
    /// cluster: Cluster* kinds, served in every namespace; namespaced: the namespaced kinds,
    /// written into each --namespace.
    #[arg(long, value_enum, default_value_t = ScopeArg::Cluster)]
    pub scope: ScopeArg,
    /// Namespace of namespaced definitions (repeatable). With --scope cluster, the namespaces
    /// that get NamespaceMetrics, which have no cluster-wide kind.
    #[arg(long = "namespace", value_name = "NS")]
    pub namespaces: Vec<String>,
    /// live-queries: each external rule's metrics as ClusterExternalMetrics (the query runs
    /// per request, filtered as the adapter filters); recording-rules: as CustomPrometheusRules
    /// recording kube_adapter_metric_* series.
    #[arg(long, value_enum, default_value_t = ExternalRulesAsArg::LiveQueries)]
    pub external_rules_as: ExternalRulesAsArg,
    /// Write one file per object into this folder instead of printing them.
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScopeArg {
    Cluster,
    Namespaced,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExternalRulesAsArg {
    LiveQueries,
    RecordingRules,
}
