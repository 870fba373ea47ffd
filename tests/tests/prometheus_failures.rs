//! Prometheus down, slow or refusing a query: honest 5xx statuses, then recovery.

use metrics_registry_tests::exporter::Exporter;
use metrics_registry_tests::registry::{Registry, RegistryOptions};
use metrics_registry_tests::stack::Stack;
use std::time::Duration;

const PATH: &str = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/services/cart/latency";
const EXTERNAL: &str = "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/queue";

const DEFINITIONS: &str = r#"
apiVersion: metrics-registry.io/v1beta1
kind: ClusterServiceMetric
metadata: {name: latency}
spec: {query: 'max(latency{<<.LabelMatchers>>}) by (<<.GroupBy>>)'}
---
# limitk is PromQL the parser knows but this Prometheus (2.x) rejects.
apiVersion: metrics-registry.io/v1beta1
kind: ClusterServiceMetric
metadata: {name: too-new}
spec: {query: 'limitk(1, latency{<<.LabelMatchers>>})'}
"#;

fn publish(exporter: &Exporter) {
    exporter.set(
        "latency",
        &[("namespace", "shop"), ("service", "cart")],
        5.0,
    );
    exporter.set("kube_adapter_metric_queue", &[("queue", "q")], 3.0);
}

#[tokio::test]
async fn prometheus_down_is_503_and_recovers() {
    let mut stack = Stack::start(&[("defs.yaml", DEFINITIONS)], publish, "latency", |_| {})
        .await
        .unwrap();
    assert_eq!(stack.registry.get(PATH).await.value(0), "5");

    stack.prometheus.stop();
    for path in [PATH, EXTERNAL] {
        let down = stack.registry.get(path).await;
        assert_eq!(down.status, 503, "{path}: {}", down.body);
        assert_eq!(down.body["kind"], "Status");
        assert_eq!(down.body["reason"], "ServiceUnavailable");
        let expected = format!("Prometheus at {} is unreachable", stack.prometheus.url());
        assert!(down.message().contains(&expected), "{}", down.message());
    }
    // Discovery never waits on Prometheus.
    assert_eq!(
        stack
            .registry
            .get("/apis/custom.metrics.k8s.io/v1beta2")
            .await
            .status,
        200
    );
    assert_eq!(stack.registry.get("/readyz").await.status, 200);

    stack.prometheus.restart().await.unwrap();
    stack
        .registry
        .wait_until(PATH, Duration::from_secs(15), |a| {
            a.status == 200 && a.value(0) == "5"
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn rejected_query_is_502_with_prometheus_message() {
    let stack = Stack::start(&[("defs.yaml", DEFINITIONS)], publish, "latency", |_| {})
        .await
        .unwrap();
    let answer = stack
        .registry
        .get(&PATH.replace("/latency", "/too-new"))
        .await;
    assert_eq!(answer.status, 502, "{}", answer.body);
    assert_eq!(answer.body["reason"], "BadGateway");
    assert!(
        answer.message().contains("rejected the query"),
        "{}",
        answer.message()
    );
    assert!(answer.message().contains("limitk"), "{}", answer.message());
}

#[tokio::test]
async fn slow_prometheus_is_504() {
    metrics_registry_tests::init_test_logging();
    // Accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let _accepting = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let mut options = RegistryOptions::new(url.clone());
    options.prometheus_timeout = Duration::from_millis(300);
    let registry = Registry::start(options, &[("defs.yaml", DEFINITIONS)])
        .await
        .unwrap();
    let answer = registry.get(PATH).await;
    assert_eq!(answer.status, 504, "{}", answer.body);
    assert_eq!(answer.body["reason"], "Timeout");
    assert!(
        answer
            .message()
            .contains(&format!("Prometheus at {url} did not answer within")),
        "{}",
        answer.message()
    );
}
