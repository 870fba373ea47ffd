use super::*;
use crate::compiler::ExternalScope;
use metrics_registry_apiserver::auth::CacheTtls;
use metrics_registry_apiserver::prometheus::QueryMethod;
use metrics_registry_apiserver::upstream::QueryOptions;
use std::time::Duration;

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
    assert_eq!(args.prometheus.query_options(), QueryOptions::default());
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
    let queries = args.prometheus.query_options();
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
    assert_eq!(
        parse(&[]).external_scope,
        ExternalScope::NamespaceOrUnlabelled
    );
    let options = parse(&["--external-metrics-namespaced"]);
    assert!(options.external_scope == ExternalScope::Namespace && options.namespace_isolation);
    assert_eq!(
        parse(&["--external-metrics-cluster-wide"]).external_scope,
        ExternalScope::Cluster
    );
    let both = Cli::try_parse_from([
        "metrics-registry",
        "run",
        "--manifests",
        "defs",
        "--external-metrics-namespaced",
        "--external-metrics-cluster-wide",
    ]);
    assert!(both.is_err());
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
