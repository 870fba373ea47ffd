//! metrics.k8s.io (`kubectl top`, Resource HPAs) served from a real Prometheus through a
//! `ResourceMetrics` definition with cAdvisor- and node-exporter-shaped series. The
//! expected usage is what the exporter is told, written out here.

use metrics_registry_tests::stack::Stack;
use serde_json::Value;

const METRICS: &str = "/apis/metrics.k8s.io/v1beta1";

const DEFINITION: &str = r#"
apiVersion: metrics-registry.io/v1beta1
kind: ResourceMetrics
metadata: {name: default}
spec:
  cpu:
    containerQuery: sum by (<<.GroupBy>>) (rate(container_cpu_usage_seconds_total{container!="",<<.LabelMatchers>>}[10s]))
    nodeQuery: sum by (<<.GroupBy>>) (rate(node_cpu_seconds_total{mode!="idle",<<.LabelMatchers>>}[10s]))
  memory:
    containerQuery: sum by (<<.GroupBy>>) (container_memory_working_set_bytes{container!="",<<.LabelMatchers>>})
    nodeQuery: sum by (<<.GroupBy>>) (node_memory_MemTotal_bytes{<<.LabelMatchers>>} - node_memory_MemAvailable_bytes{<<.LabelMatchers>>})
  windowSeconds: 60
"#;

/// "250000000n" → 0.25 cores.
fn cores(quantity: &Value) -> f64 {
    let text = quantity.as_str().unwrap_or_default();
    text.strip_suffix('n')
        .and_then(|n| n.parse::<f64>().ok())
        .map(|n| n / 1e9)
        .unwrap_or(f64::NAN)
}

fn close(actual: f64, expected: f64) -> bool {
    (actual - expected).abs() <= expected * 0.02
}

#[tokio::test]
#[ignore = "needs Prometheus (Debian package `prometheus`): run through scripts/test.sh"]
async fn pod_and_node_metrics_from_cadvisor_and_node_exporter_series() {
    let stack = Stack::start(
        &[("resources.yaml", DEFINITION)],
        |exporter| {
            for (namespace, pod, container, cpu, memory) in [
                ("shop", "web-1", "app", 0.25, 64.0 * 1024.0 * 1024.0),
                ("shop", "web-1", "sidecar", 0.01, 8.0 * 1024.0 * 1024.0),
                ("shop", "web-2", "app", 0.5, 128.0 * 1024.0 * 1024.0),
                ("other", "db-1", "db", 2.0, 1024.0 * 1024.0 * 1024.0),
            ] {
                let labels = [
                    ("namespace", namespace),
                    ("pod", pod),
                    ("container", container),
                ];
                exporter.set_growing("container_cpu_usage_seconds_total", &labels, cpu);
                exporter.set("container_memory_working_set_bytes", &labels, memory);
                // cAdvisor's pod-level series (no container) must not count twice.
                let pod_level = [("namespace", namespace), ("pod", pod), ("container", "")];
                exporter.set_growing("container_cpu_usage_seconds_total", &pod_level, 100.0);
            }
            for (node, busy) in [("node-a", 1.5), ("node-b", 0.5)] {
                exporter.set_growing(
                    "node_cpu_seconds_total",
                    &[("node", node), ("mode", "user")],
                    busy,
                );
                exporter.set_growing(
                    "node_cpu_seconds_total",
                    &[("node", node), ("mode", "idle")],
                    3.0,
                );
                exporter.set("node_memory_MemTotal_bytes", &[("node", node)], 8e9);
                exporter.set("node_memory_MemAvailable_bytes", &[("node", node)], 6e9);
            }
        },
        "container_cpu_usage_seconds_total",
        |_| {},
    )
    .await
    .unwrap();
    let registry = &stack.registry;

    let discovery = registry.get(METRICS).await;
    assert_eq!(discovery.status, 200, "{}", discovery.body);
    assert_eq!(discovery.body["groupVersion"], "metrics.k8s.io/v1beta1");

    // rate() is exact once its 10 s window holds only the counters' growth.
    let pods_path = format!("{METRICS}/namespaces/shop/pods");
    let listed = registry
        .wait_until(&pods_path, std::time::Duration::from_secs(40), |a| {
            a.items().len() == 2
                && close(cores(&a.items()[0]["containers"][0]["usage"]["cpu"]), 0.25)
        })
        .await;
    assert!(listed.is_ok(), "{listed:?}");
    let pods = registry.get(&pods_path).await;
    assert_eq!(pods.body["kind"], "PodMetricsList");
    let web1 = &pods.items()[0];
    assert_eq!(web1["kind"], "PodMetrics");
    assert_eq!(web1["metadata"]["name"], "web-1");
    assert_eq!(web1["metadata"]["namespace"], "shop");
    assert_eq!(web1["window"], "60s");
    let containers = web1["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 2, "{web1}");
    assert_eq!(containers[0]["name"], "app");
    assert!(close(cores(&containers[0]["usage"]["cpu"]), 0.25), "{web1}");
    assert_eq!(containers[0]["usage"]["memory"], "65536Ki");
    assert_eq!(containers[1]["name"], "sidecar");
    assert!(close(cores(&containers[1]["usage"]["cpu"]), 0.01), "{web1}");

    // One pod by name; another namespace's pod is not in shop's list, and is 404 there.
    let one = registry
        .get(&format!("{METRICS}/namespaces/shop/pods/web-2"))
        .await;
    assert_eq!(one.status, 200, "{}", one.body);
    assert!(
        close(cores(&one.body["containers"][0]["usage"]["cpu"]), 0.5),
        "{}",
        one.body
    );
    let elsewhere = registry
        .get(&format!("{METRICS}/namespaces/shop/pods/db-1"))
        .await;
    assert_eq!(elsewhere.status, 404, "{}", elsewhere.body);
    assert!(
        elsewhere.body["message"]
            .as_str()
            .unwrap()
            .contains("podmetrics.metrics.k8s.io \"db-1\" not found")
    );
    // Every namespace.
    let all = registry.get(&format!("{METRICS}/pods")).await;
    let names: Vec<&str> = all
        .items()
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["db-1", "web-1", "web-2"], "{}", all.body);

    // Nodes: busy (not idle) CPU, total minus available memory.
    let nodes = registry.get(&format!("{METRICS}/nodes")).await;
    assert_eq!(nodes.body["kind"], "NodeMetricsList", "{}", nodes.body);
    assert_eq!(nodes.items().len(), 2, "{}", nodes.body);
    let node_a = registry.get(&format!("{METRICS}/nodes/node-a")).await;
    assert_eq!(node_a.body["kind"], "NodeMetrics", "{}", node_a.body);
    assert!(
        close(cores(&node_a.body["usage"]["cpu"]), 1.5),
        "{}",
        node_a.body
    );
    assert_eq!(node_a.body["usage"]["memory"], "1953125Ki");
    let missing = registry.get(&format!("{METRICS}/nodes/node-z")).await;
    assert_eq!(missing.status, 404, "{}", missing.body);

    // A labelSelector needs the cluster's pods: standalone mode says so.
    let selected = registry
        .get(&format!("{pods_path}?labelSelector=app%3Dweb"))
        .await;
    assert_eq!(selected.status, 501, "{}", selected.body);
    // A path the API does not have.
    let wrong = registry
        .get(&format!("{METRICS}/namespaces/shop/deployments"))
        .await;
    assert_eq!(wrong.status, 404, "{}", wrong.body);
}
