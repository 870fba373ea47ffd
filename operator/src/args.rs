//! Command-line arguments, one `Args` struct per concern.

use crate::compiler::CompileOptions;
use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use metrics_registry_apiserver::auth::CacheTtls;
use metrics_registry_apiserver::prometheus::{PrometheusConfig, QueryMethod};
use metrics_registry_apiserver::serve::ServeLimits;
use metrics_registry_apiserver::upstream::QueryOptions;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "metrics-registry",
    version,
    about = "Prometheus metrics for the HorizontalPodAutoscaler, declared as custom resources"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve custom.metrics.k8s.io and external.metrics.k8s.io from definitions.
    Run(Box<RunArgs>),
    /// Print every CustomResourceDefinition as YAML.
    Crds(CrdsArgs),
    /// Validate definition files offline; exit 1 with one line per problem.
    Check(CheckArgs),
    /// Turn a prometheus-adapter configuration into definitions; one line on stderr per
    /// part that does not carry over as it was; exit 1 when nothing converts.
    Convert(crate::convert::command::ConvertArgs),
    /// Remove what a running installation created by itself — PrometheusRules,
    /// self-registered APIServices, the Lease — after stopping its Deployment so that no
    /// replica writes them again (the Helm chart runs this before `helm uninstall`).
    Uninstall(UninstallArgs),
}

#[derive(Debug, Args)]
pub struct LogArgs {
    /// Log filter (tracing EnvFilter syntax); RUST_LOG works too.
    #[arg(
        long,
        global = true,
        env = "METRICS_REGISTRY_LOG",
        default_value = "info"
    )]
    pub log_level: String,
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Plain)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Plain,
    Json,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub prometheus: PrometheusArgs,
    #[command(flatten)]
    pub serving: ServingArgs,
    #[command(flatten)]
    pub definitions: DefinitionArgs,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(Debug, Args)]
pub struct ServingArgs {
    /// HTTPS address of the aggregated API server.
    #[arg(long, default_value = "0.0.0.0:6443")]
    pub listen: SocketAddr,
    /// Plain HTTP without authentication, for local use; loopback addresses only.
    #[arg(long, value_name = "ADDR")]
    pub insecure_listen: Option<SocketAddr>,
    /// Serving certificate (PEM, reloaded when it changes); without it one is generated at start.
    #[arg(long, value_name = "FILE", requires = "tls_private_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    #[arg(long, value_name = "FILE", requires = "tls_cert_file")]
    pub tls_private_key_file: Option<PathBuf>,
    /// Extra names for the generated certificate (the Service's DNS names and localhost are always in it).
    #[arg(long = "tls-host", value_name = "NAME")]
    pub tls_hosts: Vec<String>,
    /// Close connections that do not complete a request head (and TLS handshake) within this.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,
    /// Answer 504 to a request that takes longer than this.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Connections served at once; more wait to be accepted.
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// On SIGTERM, how long requests in flight may take before the process exits anyway.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
}

impl ServingArgs {
    pub fn limits(&self) -> ServeLimits {
        ServeLimits {
            header_read_timeout: self.header_read_timeout,
            request_timeout: self.request_timeout,
            max_connections: self.max_connections,
            shutdown_grace: self.shutdown_grace,
        }
    }
}

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

#[derive(Debug, Args)]
pub struct DefinitionArgs {
    /// Read definitions from the YAML files of this folder instead of the cluster; changes are picked up live.
    #[arg(long, value_name = "DIR")]
    pub manifests: Option<PathBuf>,
    /// Let namespaced definitions read series of other namespaces (off: queries are pinned to their namespace).
    #[arg(long)]
    pub disable_namespace_isolation: bool,
    /// Read an external metric only from series whose `namespace` label is the namespace of
    /// the HPA that asks, as prometheus-adapter's namespaced external rules do; a
    /// CustomPrometheusRules' `externalMetricsNamespaced` decides for the metrics it records.
    #[arg(long)]
    pub external_metrics_namespaced: bool,
    /// Write CustomPrometheusRules as Prometheus rule files into this folder (which Prometheus'
    /// rule_files must include) and POST /-/reload to Prometheus after each change.
    #[arg(long, value_name = "DIR")]
    pub rules_dir: Option<PathBuf>,
}

impl DefinitionArgs {
    pub fn compile_options(&self) -> CompileOptions {
        CompileOptions {
            namespace_isolation: !self.disable_namespace_isolation,
            external_metrics_namespaced: self.external_metrics_namespaced,
        }
    }
}

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
        config.queries = QueryOptions {
            max_in_flight: self.prometheus_max_in_flight,
            cache_max_age: self.query_cache_max_age,
            batch_window: self.query_batch_window,
            ..QueryOptions::default()
        };
        config.method = match self.prometheus_method {
            Method::Auto => QueryMethod::Auto,
            Method::Get => QueryMethod::Get,
            Method::Post => QueryMethod::Post,
        };
        config
    }
}

#[derive(Debug, Args)]
pub struct CrdsArgs {
    /// Write one file per CRD into this folder instead of printing.
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct UninstallArgs {
    /// Kubeconfig to use instead of the in-cluster config or $KUBECONFIG.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Namespace of the Deployment and the Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "metrics-registry")]
    pub namespace: String,
    /// Deployment to scale to zero (and wait for) before deleting anything.
    #[arg(long)]
    pub deployment: Option<String>,
    #[arg(long, default_value = "metrics-registry")]
    pub lease: String,
    /// Also delete APIServices the server registered itself (`--register-apiservices`).
    #[arg(long)]
    pub apiservices: bool,
    /// How long to wait for the Deployment's pods to stop.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub timeout: Duration,
}

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

pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    promql_parser::util::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration like 10s or 500ms: {e}"))
}

/// A duration where zero means "off".
pub(crate) fn parse_duration_or_zero(text: &str) -> Result<Duration, String> {
    if text
        .trim_end_matches(['s', 'm', 'h'])
        .chars()
        .all(|c| c == '0')
        && !text.is_empty()
    {
        return Ok(Duration::ZERO);
    }
    parse_duration(text)
}

pub(crate) fn parse_header(text: &str) -> Result<(String, String), String> {
    let (name, value) = text.split_once('=').ok_or("expected NAME=VALUE")?;
    if name.is_empty() {
        return Err("header name is empty".into());
    }
    Ok((name.trim().to_string(), value.to_string()))
}

/// `--insecure-listen` serves without authentication, so it must stay on this machine.
pub fn require_loopback(addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    if !addr.ip().is_loopback() {
        bail!(
            "--insecure-listen {addr} is not a loopback address: plain HTTP without authentication is only allowed on 127.0.0.1 or [::1]"
        );
    }
    Ok(addr)
}

/// The manifests folder must exist before anything is served. The path is kept as given
/// (made absolute, symlinks not resolved) so that a re-pointed symlink is followed.
pub fn manifests_dir(path: &std::path::Path) -> anyhow::Result<PathBuf> {
    let metadata = std::fs::metadata(path)
        .with_context(|| format!("--manifests {}: folder not found", path.display()))?;
    if !metadata.is_dir() {
        bail!("--manifests {}: not a folder", path.display());
    }
    std::path::absolute(path).with_context(|| format!("--manifests {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_into_a_prometheus_config() {
        let cli = Cli::try_parse_from([
            "metrics-registry",
            "run",
            "--manifests",
            "defs",
            "--insecure-listen",
            "127.0.0.1:8080",
            "--prometheus-url",
            "http://prom:9090/prefix",
            "--prometheus-timeout",
            "1500ms",
            "--prometheus-header",
            "X-Scope-OrgID=tenant-a",
            "--prometheus-method",
            "post",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!()
        };
        let config = args.prometheus.config();
        assert_eq!(config.timeout, Duration::from_millis(1500));
        assert_eq!(
            config.headers,
            vec![("X-Scope-OrgID".to_string(), "tenant-a".to_string())]
        );
        assert!(matches!(config.method, QueryMethod::Post));
        assert_eq!(config.queries, QueryOptions::default());
    }

    #[test]
    fn query_and_auth_cache_flags() {
        let cli = Cli::try_parse_from([
            "metrics-registry",
            "run",
            "--query-cache-max-age",
            "1500ms",
            "--query-batch-window",
            "0",
            "--prometheus-max-in-flight",
            "8",
            "--authorization-cache-authorized-ttl",
            "1m",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!()
        };
        let queries = args.prometheus.config().queries;
        assert_eq!(queries.cache_max_age, Duration::from_millis(1500));
        assert_eq!(queries.batch_window, Duration::ZERO);
        assert_eq!(queries.max_in_flight, 8);
        let ttls = args.cluster.auth_cache.ttls();
        assert_eq!(ttls.allowed, Duration::from_secs(60));
        assert_eq!(
            ttls,
            CacheTtls {
                allowed: ttls.allowed,
                ..CacheTtls::default()
            }
        );
    }

    #[test]
    fn external_metrics_namespaced_reaches_the_compiler() {
        let parse = |extra: &[&str]| {
            let cli = Cli::try_parse_from(
                ["metrics-registry", "run", "--manifests", "defs"]
                    .iter()
                    .chain(extra),
            )
            .unwrap();
            let Command::Run(args) = cli.command else {
                panic!()
            };
            args.definitions.compile_options()
        };
        assert!(!parse(&[]).external_metrics_namespaced);
        let options = parse(&["--external-metrics-namespaced"]);
        assert!(options.external_metrics_namespaced && options.namespace_isolation);
    }

    #[test]
    fn insecure_listen_stays_on_loopback() {
        assert!(require_loopback("127.0.0.1:1".parse().unwrap()).is_ok());
        assert!(require_loopback("[::1]:1".parse().unwrap()).is_ok());
        let err = require_loopback("0.0.0.0:1".parse().unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a loopback"), "{err}");
    }

    #[test]
    fn half_configured_basic_auth_is_refused() {
        let result = Cli::try_parse_from([
            "metrics-registry",
            "run",
            "--prometheus-basic-auth-user",
            "u",
        ]);
        assert!(result.is_err());
    }
}
