//! Cluster mode: the API server connection, self-registration, PrometheusRule objects,
//! leader election, shutdown and how long authentication answers are reused.

use super::parse::{parse_duration, parse_header};
use clap::Args;
use metrics_registry_apiserver::auth::CacheTtls;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Kubeconfig to use instead of the in-cluster config or $KUBECONFIG.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Create or update the APIServices (v1beta2 and v1beta1 custom.metrics, v1beta1
    /// external.metrics) with our CA, for installs without the Helm chart (which manages
    /// them itself). The leader registers; with a generated certificate run one replica.
    #[arg(long)]
    pub register_apiservices: bool,
    /// With --register-apiservices, also register v1beta1.metrics.k8s.io (`kubectl top`,
    /// Resource HPAs; served from a ResourceMetrics definition). Only one server can own
    /// it: leave it to metrics-server unless that is gone.
    #[arg(long, requires = "register_apiservices")]
    pub register_resource_metrics_apiservice: bool,
    /// Namespace of the Service in front of this server.
    #[arg(long, env = "POD_NAMESPACE", default_value = "metrics-registry")]
    pub service_namespace: String,
    #[arg(long, default_value = "metrics-registry")]
    pub service_name: String,
    #[arg(long, default_value_t = 443)]
    pub service_port: i32,
    /// Namespace for PrometheusRule objects made from CustomPrometheusRules.
    #[arg(long, default_value = "monitoring")]
    pub prometheus_rules_namespace: String,
    /// Label NAME=VALUE on those PrometheusRule objects (so Prometheus selects them); repeatable.
    #[arg(long = "prometheus-rule-label", value_name = "NAME=VALUE", value_parser = parse_header)]
    pub prometheus_rule_labels: Vec<(String, String)>,
    /// Timeout of each request to the API server other than watches (reviews, status
    /// writes, the Lease); failed requests are not retried by the client.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub kube_api_timeout: Duration,
    #[command(flatten)]
    pub leader_election: LeaderElectionArgs,
    #[command(flatten)]
    pub shutdown: ShutdownArgs,
    #[command(flatten)]
    pub auth_cache: AuthCacheArgs,
}

/// How long TokenReview and SubjectAccessReview answers are reused. The defaults cover
/// the HPA's 15 s period, so a polling HPA costs no review per request; a revoked token
/// or role binding takes at most this long to bite.
#[derive(Debug, Args)]
pub struct AuthCacheArgs {
    /// Authenticated bearer tokens.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub authentication_token_cache_ttl: Duration,
    /// Requests SubjectAccessReview allowed.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub authorization_cache_authorized_ttl: Duration,
    /// Requests SubjectAccessReview denied, and rejected tokens.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub authorization_cache_unauthorized_ttl: Duration,
}

impl AuthCacheArgs {
    pub fn ttls(&self) -> CacheTtls {
        CacheTtls {
            token_authenticated: self.authentication_token_cache_ttl,
            token_rejected: self.authorization_cache_unauthorized_ttl,
            allowed: self.authorization_cache_authorized_ttl,
            denied: self.authorization_cache_unauthorized_ttl,
        }
    }
}

/// Several replicas serve; the holder of a Lease is the only one that writes.
#[derive(Debug, Args)]
pub struct LeaderElectionArgs {
    /// Elect a leader among replicas (only it writes statuses, PrometheusRules, rule
    /// files and APIServices); `--leader-elect=false` makes this replica always write.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub leader_elect: bool,
    /// Namespace of the Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "metrics-registry")]
    pub leader_election_namespace: String,
    #[arg(long, default_value = "metrics-registry")]
    pub leader_election_lease: String,
    /// This replica's name in the Lease (a per-process suffix is added); defaults to the pod name.
    #[arg(long, env = "POD_NAME")]
    pub leader_election_identity: Option<String>,
    /// A holder that stops renewing is replaced after this long.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub leader_election_lease_duration: Duration,
    /// A holder that cannot renew for this long stops writing.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub leader_election_renew_deadline: Duration,
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub leader_election_retry_period: Duration,
}

/// What happens on SIGTERM in cluster mode: `/readyz` fails at once, requests are still
/// served for `--shutdown-delay` (while endpoints and the aggregator stop routing here),
/// then open requests get `--shutdown-grace` to finish.
#[derive(Debug, Args)]
pub struct ShutdownArgs {
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub shutdown_delay: Duration,
}
