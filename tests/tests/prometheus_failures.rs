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
#[ignore = "needs Prometheus (Debian package `prometheus`): run through scripts/test.sh"]
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
#[ignore = "needs Prometheus (Debian package `prometheus`): run through scripts/test.sh"]
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

/// A server in Prometheus' place that answers every request with `answer` (raw HTTP),
/// then closes the connection.
async fn misbehaving_prometheus(answer: &'static str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = vec![0u8; 8192];
                let _ = socket.read(&mut request).await;
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    url
}

#[tokio::test]
async fn garbage_answers_are_502_or_503_and_never_a_value() {
    metrics_registry_tests::init_test_logging();
    for (answer, code, needle) in [
        (
            "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: 19\r\n\r\n<html>login</html>\n",
            502,
            "sent an unreadable answer",
        ),
        (
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 40\r\n\r\n{\"status\":\"success\",\"data\":{\"resultType\"",
            502,
            "sent an unreadable answer",
        ),
        (
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 96\r\n\r\n{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":[{\"metric\":{},\"value\":[1,\"5\"]}",
            503,
            "connection failed mid-request",
        ),
        ("not http at all\r\n\r\n", 503, "is unreachable"),
    ] {
        let url = misbehaving_prometheus(answer).await;
        let registry = Registry::start(
            RegistryOptions::new(url.clone()),
            &[("defs.yaml", DEFINITIONS)],
        )
        .await
        .unwrap();
        let answer = registry.get(PATH).await;
        assert_eq!(answer.status, code, "{}", answer.body);
        assert_eq!(answer.body["kind"], "Status");
        assert!(answer.body.get("items").is_none(), "{}", answer.body);
        assert!(
            answer.message().contains(&format!("Prometheus at {url}"))
                && answer.message().contains(needle),
            "{}",
            answer.message()
        );
        registry.stop().await;
    }
}

#[tokio::test]
#[ignore = "needs Prometheus (Debian package `prometheus`): run through scripts/test.sh"]
async fn an_answer_over_the_size_limit_is_502_naming_the_limit() {
    let stack = Stack::start(
        &[(
            "defs.yaml",
            "apiVersion: metrics-registry.io/v1beta1\nkind: ClusterPodMetric\nmetadata: {name: busy}\nspec: {query: 'max(busy{<<.LabelMatchers>>}) by (<<.GroupBy>>)'}\n",
        )],
        |exporter| {
            for i in 0..300 {
                exporter.set("busy", &[("namespace", "shop"), ("pod", &format!("worker-{i}"))], i as f64);
            }
        },
        "busy",
        |options| options.prometheus_max_response_bytes = 4096,
    )
    .await
    .unwrap();
    let pods = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods";
    // One pod's answer fits, all 300 do not.
    let one = stack.registry.get(&format!("{pods}/worker-7/busy")).await;
    assert_eq!((one.status, one.value(0)), (200, "7"), "{}", one.body);
    let all = stack.registry.get(&format!("{pods}/*/busy")).await;
    assert_eq!(all.status, 502, "{}", all.body);
    assert_eq!(all.body["reason"], "BadGateway");
    assert!(
        all.message().contains("larger than 4096 bytes")
            && all.message().contains("--prometheus-max-response-bytes"),
        "{}",
        all.message()
    );
}

#[tokio::test]
#[ignore = "needs Prometheus (Debian package `prometheus`): run through scripts/test.sh"]
async fn prometheus_killed_during_a_request_is_503_then_values_return() {
    let mut stack = Stack::start(&[("defs.yaml", DEFINITIONS)], publish, "latency", |_| {})
        .await
        .unwrap();
    assert_eq!(stack.registry.get(PATH).await.value(0), "5");
    // Requests racing the kill get either the right value or a 503, nothing else.
    let registry = &stack.registry;
    let prometheus = &mut stack.prometheus;
    let requests = futures::future::join_all((0..40).map(|_| registry.get(PATH)));
    let (answers, ()) = tokio::join!(requests, async move {
        tokio::time::sleep(Duration::from_millis(5)).await;
        prometheus.stop();
    });
    let after = registry.get(PATH).await;
    assert_eq!(after.status, 503, "{}", after.body);
    for answer in answers.iter().chain([&after]) {
        match answer.status {
            200 => assert_eq!(answer.value(0), "5"),
            503 => assert!(
                answer.message().contains("unreachable"),
                "{}",
                answer.message()
            ),
            other => panic!("{other}: {}", answer.body),
        }
    }
    stack.prometheus.restart().await.unwrap();
    stack
        .registry
        .wait_until(PATH, Duration::from_secs(15), |a| {
            a.status == 200 && a.value(0) == "5"
        })
        .await
        .unwrap();
}
