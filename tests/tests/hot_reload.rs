//! Manifest changes are served within a second; broken files keep the last good table.

use metrics_registry_tests::exporter::Exporter;
use metrics_registry_tests::stack::Stack;
use std::time::Duration;

const PATH: &str = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/services/cart/latency";

fn definition(series: &str) -> String {
    format!(
        "apiVersion: metrics-registry.io/v1beta1\nkind: ClusterServiceMetric\nmetadata: {{name: latency}}\nspec: {{query: 'max({series}{{<<.LabelMatchers>>}}) by (<<.GroupBy>>)'}}\n"
    )
}

fn publish(exporter: &Exporter) {
    exporter.set(
        "latency_a",
        &[("namespace", "shop"), ("service", "cart")],
        1.0,
    );
    exporter.set(
        "latency_b",
        &[("namespace", "shop"), ("service", "cart")],
        2.0,
    );
}

/// One definition reading `latency_a` (1), with `latency_b` (2) in Prometheus too.
async fn start_serving_latency_a() -> Stack {
    let stack = Stack::start(
        &[("latency.yaml", &definition("latency_a"))],
        publish,
        "latency_b",
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(stack.registry.get(PATH).await.value(0), "1");
    stack
}

#[tokio::test]
async fn edits_are_served_within_a_second() {
    let stack = start_serving_latency_a().await;
    let registry = &stack.registry;

    let mut latencies = Vec::new();
    for (round, (series, expected)) in [("latency_b", "2"), ("latency_a", "1"), ("latency_b", "2")]
        .into_iter()
        .enumerate()
    {
        registry.write("latency.yaml", &definition(series));
        let took = registry
            .wait_until(PATH, Duration::from_secs(1), |a| {
                a.status == 200 && a.value(0) == expected
            })
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        latencies.push(took);
    }
    println!("reload latency (write → new value served): {latencies:?}");

    // A new file adds a metric; removing it takes the metric away.
    registry.write(
        "extra.yaml",
        &definition("latency_a").replace("name: latency", "name: extra"),
    );
    let extra = PATH.replace("/latency", "/extra");
    registry
        .wait_until(&extra, Duration::from_secs(1), |a| a.status == 200)
        .await
        .unwrap();
    registry.remove("extra.yaml");
    registry
        .wait_until(&extra, Duration::from_secs(1), |a| a.status == 404)
        .await
        .unwrap();
}

#[tokio::test]
async fn broken_files_keep_the_last_good_table() {
    let stack = start_serving_latency_a().await;
    let registry = &stack.registry;

    // Broken YAML in another file: nothing changes, not even the valid edit made with it.
    registry.write("broken.yaml", "kind: [unclosed");
    registry.write("latency.yaml", &definition("latency_b"));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(registry.get(PATH).await.value(0), "1");

    // Once fixed, the pending edit goes live.
    registry.remove("broken.yaml");
    registry
        .wait_until(PATH, Duration::from_secs(1), |a| a.value(0) == "2")
        .await
        .unwrap();

    // A valid file with a bad query: that definition is not served, the others are.
    registry.write(
        "bad-query.yaml",
        "apiVersion: metrics-registry.io/v1beta1\nkind: ClusterServiceMetric\nmetadata: {name: bad}\nspec: {query: 'sum(x{<<.LabelMatchers>>}'}\n",
    );
    let bad = PATH.replace("/latency", "/bad");
    registry
        .wait_until(&bad, Duration::from_secs(1), |a| a.status == 404)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(registry.get(PATH).await.value(0), "2");
}
