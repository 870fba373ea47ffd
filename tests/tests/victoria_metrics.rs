//! VictoriaMetrics as the backend: a real single-node VictoriaMetrics scrapes the test
//! exporter and metrics-registry queries its Prometheus-compatible API.

use metrics_registry_tests::exporter::Exporter;
use metrics_registry_tests::fixtures::BACKEND_DEFINITIONS;
use metrics_registry_tests::registry::{Registry, RegistryOptions};
use metrics_registry_tests::victoria_metrics::VictoriaMetrics;
use serde_json::json;
use std::time::Duration;

fn publish(exporter: &Exporter) {
    exporter.set(
        "latency",
        &[("namespace", "shop"), ("service", "cart")],
        5.25,
    );
    exporter.set("latency", &[("namespace", "shop"), ("service", "web")], 7.0);
    exporter.set_growing(
        "requests_total",
        &[("namespace", "shop"), ("service", "cart")],
        2.5,
    );
    for (pod, workers) in [("cart-1", 3.0), ("cart-2", 4.0)] {
        exporter.set(
            "busy_workers",
            &[("namespace", "shop"), ("pod", pod)],
            workers,
        );
    }
    // Another namespace's pod: the namespaced PodMetric must not see it.
    exporter.set(
        "busy_workers",
        &[("namespace", "other"), ("pod", "cart-1")],
        100.0,
    );
    exporter.set("kube_adapter_metric_queue", &[("queue", "orders")], 3.0);
    exporter.set("kube_adapter_metric_queue", &[("queue", "mails")], 12.0);
}

#[tokio::test]
#[ignore = "needs VictoriaMetrics (Debian package `victoria-metrics`): run through scripts/test.sh"]
async fn object_pods_and_external_from_victoria_metrics_then_503_when_it_stops() {
    metrics_registry_tests::init_test_logging();
    let exporter = Exporter::start().await.unwrap();
    publish(&exporter);
    let mut victoria = VictoriaMetrics::start(&[exporter.addr()]).await.unwrap();
    // Two samples of the counter, so that irate() has something to work on.
    victoria
        .wait_for_series(
            "count_over_time(requests_total[10s]) > 1",
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    let registry = Registry::start(
        RegistryOptions::new(victoria.url()),
        &[("defs.yaml", BACKEND_DEFINITIONS)],
    )
    .await
    .unwrap();

    // Object, in both versions.
    for version in ["v1beta1", "v1beta2"] {
        let path =
            format!("/apis/custom.metrics.k8s.io/{version}/namespaces/shop/services/cart/latency");
        let answer = registry.get(&path).await;
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
        assert_eq!(answer.value(0), "5250m", "{path}: {}", answer.body);
        assert_eq!(answer.items().len(), 1, "{}", answer.body);
    }
    let rate = registry
        .get(
            "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/services/cart/requests_per_second",
        )
        .await;
    assert_eq!(rate.status, 200, "{}", rate.body);
    assert_eq!(rate.value(0), "2500m", "{}", rate.body);

    // Pods: every pod of the namespace, and one pod by name.
    let pods = registry
        .get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*/busy-workers")
        .await;
    assert_eq!(pods.status, 200, "{}", pods.body);
    let mut got: Vec<(String, String)> = pods
        .items()
        .iter()
        .map(|item| {
            (
                item["describedObject"]["name"].as_str().unwrap().to_owned(),
                item["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [("cart-1".into(), "3".into()), ("cart-2".into(), "4".into())]
    );
    let one = registry
        .get("/apis/custom.metrics.k8s.io/v1beta1/namespaces/shop/pods/cart-2/busy-workers")
        .await;
    assert_eq!((one.status, one.value(0)), (200, "4"), "{}", one.body);

    // External: discovery from VictoriaMetrics' label-values API, values by selector.
    let external = "/apis/external.metrics.k8s.io/v1beta1";
    registry
        .wait_until(external, Duration::from_secs(10), |a| {
            a.body.to_string().contains("\"queue\"")
        })
        .await
        .unwrap();
    let selected = registry
        .get(&format!(
            "{external}/namespaces/shop/queue?labelSelector=queue%3Dorders"
        ))
        .await;
    assert_eq!(selected.status, 200, "{}", selected.body);
    assert_eq!(selected.items().len(), 1, "{}", selected.body);
    // The series' labels as scraped, the scrape's own `job` and `instance` included.
    let labels = &selected.body["items"][0]["metricLabels"];
    assert_eq!(
        (&labels["queue"], &labels["job"]),
        (&json!("orders"), &json!("exporter")),
        "{labels}"
    );
    assert_eq!(selected.value(0), "3");
    let all = registry
        .get(&format!("{external}/namespaces/shop/queue"))
        .await;
    let mut values: Vec<&str> = all
        .items()
        .iter()
        .map(|item| item["value"].as_str().unwrap())
        .collect();
    values.sort();
    assert_eq!(values, ["12", "3"], "{}", all.body);

    // No data for an object: 404 naming the query, as with Prometheus.
    let missing = registry
        .get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/services/none/latency")
        .await;
    assert_eq!(missing.status, 404, "{}", missing.body);

    // VictoriaMetrics stopped: the clear 503, and discovery still answers.
    victoria.stop();
    let down_message = format!("Prometheus at {} is unreachable", victoria.url());
    for path in [
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/services/cart/latency",
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*/busy-workers",
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/queue",
    ] {
        let down = registry.get(path).await;
        assert_eq!(down.status, 503, "{path}: {}", down.body);
        assert_eq!(down.body["reason"], "ServiceUnavailable", "{path}");
        assert!(down.message().contains(&down_message), "{}", down.message());
    }
    assert_eq!(
        registry
            .get("/apis/custom.metrics.k8s.io/v1beta2")
            .await
            .status,
        200
    );
    println!(
        "VictoriaMetrics: object 5250m, rate 2500m, pods cart-1=3 cart-2=4, external orders=3; stopped → 503"
    );
    registry.stop().await;
}
