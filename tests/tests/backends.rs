//! `MetricsBackend`: definitions on different backends served side by side from real
//! servers — the default Prometheus (`--prometheus-url`), a second Prometheus, and a Thanos
//! Query enforcing tenancy on `tenant_id` whose tenant header is set per namespace — with
//! the result cache on, so that a cache, flight or batch shared between two backends or two
//! tenants would serve another's value. The expected values are what each exporter
//! publishes, written out here.

use metrics_registry_apiserver::upstream::QueryOptions;
use metrics_registry_tests::exporter::Exporter;
use metrics_registry_tests::prometheus::{Prometheus, PrometheusOptions};
use metrics_registry_tests::registry::{Registry, RegistryOptions};
use metrics_registry_tests::registry_process::binary;
use metrics_registry_tests::thanos::{Tenancy, ThanosQuery, ThanosSidecar};
use std::time::Duration;

const CUSTOM: &str = "/apis/custom.metrics.k8s.io/v1beta2";
const EXTERNAL: &str = "/apis/external.metrics.k8s.io/v1beta1";
const TENANT_HEADER: &str = "X-Scope-OrgID";
const TENANT_LABEL: &str = "tenant_id";

fn backends(second: &str, thanos: &str) -> String {
    format!(
        r#"
apiVersion: metrics-registry.io/v1beta1
kind: MetricsBackend
metadata: {{name: second}}
spec:
  url: {second}
  timeout: 3s
---
apiVersion: metrics-registry.io/v1beta1
kind: MetricsBackend
metadata: {{name: tenants}}
spec:
  url: {thanos}
  tenant: {{header: {TENANT_HEADER}, value: "<<.Namespace>>"}}
---
apiVersion: metrics-registry.io/v1beta1
kind: MetricsBackend
metadata: {{name: team-a-only}}
spec:
  url: {second}
  allowedNamespaces: {{names: [team-a]}}
"#
    )
}

const DEFINITIONS: &str = r#"
# The same metric in two namespaces, each from its own backend.
apiVersion: metrics-registry.io/v1beta1
kind: ServiceMetric
metadata: {name: depth, namespace: team-a}
spec:
  query: sum by (<<.GroupBy>>) (queue_depth{<<.LabelMatchers>>})
---
apiVersion: metrics-registry.io/v1beta1
kind: ServiceMetric
metadata: {name: depth, namespace: team-b}
spec:
  backend: second
  query: sum by (<<.GroupBy>>) (queue_depth{<<.LabelMatchers>>})
---
# One query text for every namespace: only the tenant header tells them apart.
apiVersion: metrics-registry.io/v1beta1
kind: ClusterExternalMetric
metadata: {name: tenant-depth}
spec:
  metricName: tenant_depth
  backend: tenants
  query: sum(queue_depth{<<.LabelMatchers>>})
---
# Refused: the backend allows team-a only.
apiVersion: metrics-registry.io/v1beta1
kind: ServiceMetric
metadata: {name: sneaky, namespace: team-b}
spec:
  backend: team-a-only
  query: sum by (<<.GroupBy>>) (queue_depth{<<.LabelMatchers>>})
---
# Allowed there.
apiVersion: metrics-registry.io/v1beta1
kind: ServiceMetric
metadata: {name: sneaky, namespace: team-a}
spec:
  backend: team-a-only
  query: sum by (<<.GroupBy>>) (queue_depth{<<.LabelMatchers>>})
"#;

/// One exporter and Prometheus; every `queue_depth` series gets `factor` times its base
/// value (team-a 1, team-b 2), and a `tenant_id` label for the Thanos one.
async fn prometheus(factor: f64, tenants: bool) -> (Exporter, Prometheus) {
    let exporter = Exporter::start().await.unwrap();
    for (namespace, base) in [("team-a", 1.0), ("team-b", 2.0)] {
        let mut labels = vec![("namespace", namespace), ("service", "orders")];
        if tenants {
            labels.push((TENANT_LABEL, namespace));
        }
        exporter.set("queue_depth", &labels, base * factor);
    }
    let prometheus = Prometheus::start(PrometheusOptions {
        targets: vec![exporter.addr()],
        // A Thanos sidecar needs external labels; `replica` is Query's replica label.
        external_labels: vec![("replica".into(), "0".into())],
        ..PrometheusOptions::default()
    })
    .await
    .unwrap();
    prometheus
        .wait_for_series("queue_depth", Duration::from_secs(30))
        .await
        .unwrap();
    (exporter, prometheus)
}

#[tokio::test]
#[ignore = "needs Prometheus and Thanos built from Go (scripts/build-thanos.sh): run through scripts/test.sh"]
async fn definitions_read_their_own_backend_and_tenant() {
    metrics_registry_tests::init_test_logging();
    let (_default_exporter, default) = prometheus(1.0, false).await;
    let (_second_exporter, second) = prometheus(100.0, false).await;
    let (_tenant_exporter, tenant_prometheus) = prometheus(1000.0, true).await;
    let sidecar = ThanosSidecar::start(&tenant_prometheus).await.unwrap();
    let tenancy = Tenancy {
        header: TENANT_HEADER.into(),
        label: TENANT_LABEL.into(),
    };
    let thanos = ThanosQuery::start(&sidecar, Some(&tenancy)).await.unwrap();
    for tenant in ["team-a", "team-b"] {
        thanos
            .wait_for_series(
                "queue_depth",
                Duration::from_secs(60),
                &[(TENANT_HEADER, tenant)],
            )
            .await
            .unwrap();
    }

    let mut options = RegistryOptions::new(default.url());
    // Answers reused for 30 s: a cache entry shared across backends or tenants would show.
    options.queries = QueryOptions {
        cache_max_age: Duration::from_secs(30),
        batch_window: Duration::from_millis(5),
        ..QueryOptions::default()
    };
    let backends = backends(&second.url(), &thanos.url());
    let registry = Registry::start(
        options,
        &[("backends.yaml", &backends), ("defs.yaml", DEFINITIONS)],
    )
    .await
    .unwrap();

    // Asked together, many times over: every answer is its own backend's and tenant's.
    let object = |namespace: &str, metric: &str| {
        format!("{CUSTOM}/namespaces/{namespace}/services/orders/{metric}")
    };
    let external = |namespace: &str| format!("{EXTERNAL}/namespaces/{namespace}/tenant_depth");
    let cases = [
        (object("team-a", "depth"), "1"),    // default Prometheus
        (object("team-b", "depth"), "200"),  // the second Prometheus
        (object("team-a", "sneaky"), "100"), // the second, allowed for team-a
        (external("team-a"), "1k"),          // Thanos, tenant team-a
        (external("team-b"), "2k"),          // Thanos, tenant team-b
    ];
    for round in 0..3 {
        let answers =
            futures::future::join_all(cases.iter().map(|(path, _)| registry.get(path))).await;
        for ((path, expected), answer) in cases.iter().zip(answers) {
            assert_eq!(answer.status, 200, "round {round}, {path}: {}", answer.body);
            assert_eq!(answer.items().len(), 1, "{path}: {}", answer.body);
            assert_eq!(answer.value(0), *expected, "round {round}, {path}");
        }
    }

    // The refused definition is not served, and the compiler says why.
    let refused = registry.get(&object("team-b", "sneaky")).await;
    assert_eq!(refused.status, 404, "{}", refused.body);
    let check = std::process::Command::new(binary().unwrap())
        .arg("check")
        .arg(registry.manifests().join("backends.yaml"))
        .arg(registry.manifests().join("defs.yaml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(!check.status.success(), "{stdout}");
    let line = stdout
        .lines()
        .find(|line| line.contains("ServiceMetric team-b/sneaky"))
        .unwrap_or_else(|| panic!("check names the refused definition: {stdout}"));
    assert!(
        line.contains("BackendNotAllowed") && line.contains("does not allow namespace \"team-b\""),
        "{line}"
    );

    // A backend that goes away takes its definitions with it; back, they are served again.
    registry.remove("backends.yaml");
    registry
        .wait_until(&object("team-b", "depth"), Duration::from_secs(10), |a| {
            a.status == 404
        })
        .await
        .unwrap();
    let default_kept = registry.get(&object("team-a", "depth")).await;
    assert_eq!((default_kept.status, default_kept.value(0)), (200, "1"));
    registry.write("backends.yaml", &backends);
    registry
        .wait_until(&object("team-b", "depth"), Duration::from_secs(10), |a| {
            a.status == 200 && a.value(0) == "200"
        })
        .await
        .unwrap();
    println!(
        "backends: default team-a=1, second team-b=200 (team-a-only refused for team-b: BackendNotAllowed), \
         Thanos tenants team-a=1k team-b=2k from one query text, 3 rounds with the cache on; \
         backend removed → 404, back → 200"
    );
    registry.stop().await;
}
