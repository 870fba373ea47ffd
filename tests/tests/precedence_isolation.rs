//! Namespace-over-cluster precedence and namespace isolation, against a real Prometheus.

use metrics_registry_tests::exporter::Exporter;
use metrics_registry_tests::stack::Stack;

const V2: &str = "/apis/custom.metrics.k8s.io/v1beta2";

const DEFINITIONS: &str = r#"
apiVersion: metrics-registry.io/v1beta1
kind: ClusterServiceMetric
metadata: {name: requests}
spec: {query: 'sum(cluster_requests{<<.LabelMatchers>>}) by (<<.GroupBy>>)'}
---
apiVersion: metrics-registry.io/v1beta1
kind: ServiceMetric
metadata: {name: requests, namespace: team-a}
spec: {query: 'sum(team_requests{<<.LabelMatchers>>}) by (<<.GroupBy>>)'}
---
apiVersion: metrics-registry.io/v1beta1
kind: PodMetric
metadata: {name: requests, namespace: team-a}
spec: {query: 'sum(pod_requests{<<.LabelMatchers>>}) by (<<.GroupBy>>)'}
---
# Multiplies by the sum of all `secret` series it can see: 1 in its own namespace.
apiVersion: metrics-registry.io/v1beta1
kind: ServiceMetric
metadata: {name: scaled, namespace: team-a}
spec: {query: 'sum(cluster_requests{<<.LabelMatchers>>}) by (<<.GroupBy>>) * on() group_left() sum(secret)'}
---
apiVersion: metrics-registry.io/v1beta1
kind: ServiceMetric
metadata: {name: escape, namespace: team-a}
spec: {query: 'sum(cluster_requests{<<.LabelMatchers>>}) by (<<.GroupBy>>) * on() group_left() sum(secret{namespace="team-b"})'}
"#;

fn publish(exporter: &Exporter) {
    for namespace in ["team-a", "team-b"] {
        exporter.set(
            "cluster_requests",
            &[("namespace", namespace), ("service", "api")],
            10.0,
        );
    }
    exporter.set(
        "team_requests",
        &[("namespace", "team-a"), ("service", "api")],
        20.0,
    );
    exporter.set(
        "pod_requests",
        &[("namespace", "team-a"), ("pod", "api-1")],
        30.0,
    );
    exporter.set("secret", &[("namespace", "team-a")], 1.0);
    exporter.set("secret", &[("namespace", "team-b")], 1000.0);
}

#[tokio::test]
#[ignore = "needs Prometheus (Debian package `prometheus`): run through scripts/test.sh"]
async fn namespaced_definition_wins_in_its_namespace_only() {
    let stack = Stack::start(&[("defs.yaml", DEFINITIONS)], publish, "secret", |_| {})
        .await
        .unwrap();
    let registry = &stack.registry;
    let team_a = registry
        .get(&format!("{V2}/namespaces/team-a/services/api/requests"))
        .await;
    assert_eq!(team_a.value(0), "20", "{}", team_a.body);
    let team_b = registry
        .get(&format!("{V2}/namespaces/team-b/services/api/requests"))
        .await;
    assert_eq!(team_b.value(0), "10", "{}", team_b.body);
    // A PodMetric of the same name is its own metric.
    let pods = registry
        .get(&format!("{V2}/namespaces/team-a/pods/api-1/requests"))
        .await;
    assert_eq!(pods.value(0), "30", "{}", pods.body);
    let pods_b = registry
        .get(&format!("{V2}/namespaces/team-b/pods/api-1/requests"))
        .await;
    assert_eq!(pods_b.status, 404, "{}", pods_b.body);
    // Discovery lists services/requests once although two scopes define it.
    let discovery = registry.get(V2).await;
    let count = discovery.body["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["name"] == "services/requests")
        .count();
    assert_eq!(count, 1);
}

#[tokio::test]
#[ignore = "needs Prometheus (Debian package `prometheus`): run through scripts/test.sh"]
async fn namespaced_queries_read_only_their_namespace() {
    let stack = Stack::start(&[("defs.yaml", DEFINITIONS)], publish, "secret", |_| {})
        .await
        .unwrap();
    let registry = &stack.registry;
    // 10 × sum(secret) seen from team-a only = 10 × 1.
    let scaled = registry
        .get(&format!("{V2}/namespaces/team-a/services/api/scaled"))
        .await;
    assert_eq!(scaled.value(0), "10", "{}", scaled.body);
    // A definition naming another namespace is not served; the others are.
    let escape = registry
        .get(&format!("{V2}/namespaces/team-a/services/api/escape"))
        .await;
    assert_eq!(escape.status, 404, "{}", escape.body);
    assert!(
        !registry
            .get(V2)
            .await
            .body
            .to_string()
            .contains("services/escape")
    );
    stack.registry.stop().await;
}

#[tokio::test]
#[ignore = "needs Prometheus (Debian package `prometheus`): run through scripts/test.sh"]
async fn isolation_can_be_turned_off() {
    let stack = Stack::start(&[("defs.yaml", DEFINITIONS)], publish, "secret", |o| {
        o.namespace_isolation = false
    })
    .await
    .unwrap();
    let scaled = stack
        .registry
        .get(&format!("{V2}/namespaces/team-a/services/api/scaled"))
        .await;
    assert_eq!(scaled.value(0), "10010", "{}", scaled.body);
    let escape = stack
        .registry
        .get(&format!("{V2}/namespaces/team-a/services/api/escape"))
        .await;
    assert_eq!(escape.value(0), "10k", "{}", escape.body);
}
