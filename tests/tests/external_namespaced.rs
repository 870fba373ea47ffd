//! External metrics pinned to the asking HPA's namespace, against a real Prometheus:
//! with `--external-metrics-namespaced` (or a `CustomPrometheusRules` with
//! `externalMetricsNamespaced: true`) namespace team-a reads only its own
//! `kube_adapter_metric_*` series; without it, every namespace's.

use metrics_registry_tests::exporter::Exporter;
use metrics_registry_tests::registry::{Answer, Registry, RegistryOptions};
use metrics_registry_tests::stack::Stack;
use std::time::Duration;

const EXTERNAL: &str = "/apis/external.metrics.k8s.io/v1beta1";

fn publish(exporter: &Exporter) {
    // Any series with the prefix is an external metric; one queue per namespace.
    for (namespace, depth) in [("team-a", 3.0), ("team-b", 40.0)] {
        exporter.set(
            "kube_adapter_metric_queue_depth",
            &[("namespace", namespace), ("queue", "orders")],
            depth,
        );
        exporter.set(
            "consumer_lag",
            &[("namespace", namespace), ("topic", "events")],
            depth * 10.0,
        );
    }
}

/// (namespace label, value) of every item, sorted.
fn items(answer: &Answer) -> Vec<(String, String)> {
    assert_eq!(answer.status, 200, "{}", answer.body);
    let mut items: Vec<(String, String)> = answer
        .items()
        .iter()
        .map(|item| {
            let label = &item["metricLabels"]["namespace"];
            (
                label.as_str().unwrap_or("<none>").to_string(),
                item["value"].as_str().unwrap_or("<none>").to_string(),
            )
        })
        .collect();
    items.sort();
    items
}

fn pair(namespace: &str, value: &str) -> (String, String) {
    (namespace.to_string(), value.to_string())
}

#[tokio::test]
#[ignore = "needs Prometheus (Debian package `prometheus`): run through scripts/test.sh"]
async fn the_flag_keeps_each_namespace_to_its_own_series() {
    let stack = Stack::start(&[], publish, "kube_adapter_metric_queue_depth", |o| {
        o.external_metrics_namespaced = true
    })
    .await
    .unwrap();
    let pinned = &stack.registry;
    let open = Registry::start(RegistryOptions::new(stack.prometheus.url()), &[])
        .await
        .unwrap();
    let depth = |namespace: &str| format!("{EXTERNAL}/namespaces/{namespace}/queue_depth");

    assert_eq!(
        items(&pinned.get(&depth("team-a")).await),
        vec![pair("team-a", "3")]
    );
    assert_eq!(
        items(&pinned.get(&depth("team-b")).await),
        vec![pair("team-b", "40")]
    );
    // Without the flag, team-a reads team-b's queue too.
    assert_eq!(
        items(&open.get(&depth("team-a")).await),
        vec![pair("team-a", "3"), pair("team-b", "40")]
    );

    // A selector naming another namespace narrows further; it never widens.
    let across = format!(
        "{}?labelSelector=namespace%3Dteam-b,queue%3Dorders",
        depth("team-a")
    );
    assert_eq!(items(&pinned.get(&across).await), vec![]);
    assert_eq!(items(&open.get(&across).await), vec![pair("team-b", "40")]);

    // A namespace with no series of a known metric: an empty list, as with no data.
    assert_eq!(items(&pinned.get(&depth("team-c")).await), vec![]);

    // The namespace from the URL is escaped: an attempt to close the string and add an
    // `or` reading team-b stays one (non-existent) namespace name.
    let hostile = "team-a%22%7D%20or%20kube_adapter_metric_queue_depth%7Bnamespace%3D%22team-b";
    let answer = pinned.get(&depth(hostile)).await;
    assert_eq!(items(&answer), vec![], "{}", answer.body);

    open.stop().await;
    stack.registry.stop().await;
}

const LAG_RULES: &str = r#"apiVersion: metrics-registry.io/v1beta1
kind: CustomPrometheusRules
metadata: {name: consumer-lag}
spec:
  externalMetricsNamespaced: NAMESPACED
  groups:
  - name: consumer-lag
    rules:
    - record: kube_adapter_metric_consumer_lag
      expr: sum by (namespace, topic) (consumer_lag)
"#;

fn lag_rules(namespaced: bool) -> String {
    LAG_RULES.replace("NAMESPACED", &namespaced.to_string())
}

#[tokio::test]
#[ignore = "needs Prometheus (Debian package `prometheus`): run through scripts/test.sh"]
async fn a_rules_object_decides_for_the_metrics_it_records() {
    let pinned_rules = lag_rules(true);
    let stack = Stack::start(
        &[("lag.yaml", &pinned_rules)],
        publish,
        "consumer_lag",
        |_| {},
    )
    .await
    .unwrap();
    let registry = &stack.registry;
    let lag = format!("{EXTERNAL}/namespaces/team-a/consumer_lag");
    let depth = format!("{EXTERNAL}/namespaces/team-a/queue_depth");

    // Prometheus evaluates the rule file metrics-registry wrote; team-a sees its own lag.
    let recorded = registry
        .wait_until(&lag, Duration::from_secs(20), |a| !a.items().is_empty())
        .await;
    assert!(recorded.is_ok(), "{recorded:?}");
    assert_eq!(items(&registry.get(&lag).await), vec![pair("team-a", "30")]);
    // A metric no object decides for follows the flag, off here.
    assert_eq!(
        items(&registry.get(&depth).await),
        vec![pair("team-a", "3"), pair("team-b", "40")]
    );

    // The same object set to false opens the metric to every namespace, live.
    registry.write("lag.yaml", &lag_rules(false));
    let opened = registry
        .wait_until(&lag, Duration::from_secs(10), |a| a.items().len() == 2)
        .await;
    assert!(opened.is_ok(), "{opened:?}");
    let answer = registry.get(&lag).await;
    assert_eq!(
        items(&answer),
        vec![pair("team-a", "30"), pair("team-b", "400")]
    );
    assert!(
        answer
            .items()
            .iter()
            .all(|item| item["metricLabels"]["topic"] == "events"),
        "{}",
        answer.body
    );
    stack.registry.stop().await;
}
