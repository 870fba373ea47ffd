//! External metrics kept to the asking HPA's namespace, against a real Prometheus: by
//! default namespace team-a reads its own `kube_adapter_metric_*` series and those with
//! no `namespace` label (a cloud queue); with `--external-metrics-namespaced` (or a
//! `CustomPrometheusRules` with `externalMetricsNamespaced: true`) only its own; with
//! `--external-metrics-cluster-wide` (or `externalMetricsNamespaced: false`) every
//! namespace's.

use metrics_registry::compiler::ExternalScope;
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
    // A queue of no namespace, e.g. a cloud queue's depth.
    exporter.set(
        "kube_adapter_metric_queue_depth",
        &[("queue", "cloud")],
        5.0,
    );
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
async fn each_namespace_reads_its_own_series_and_those_of_no_namespace() {
    let stack = Stack::start(&[], publish, "kube_adapter_metric_queue_depth", |_| {})
        .await
        .unwrap();
    let default = &stack.registry;
    let with_scope = |scope| {
        let mut options = RegistryOptions::new(stack.prometheus.url());
        options.external_scope = scope;
        Registry::start(options, &[])
    };
    let strict = with_scope(ExternalScope::Namespace).await.unwrap();
    let open = with_scope(ExternalScope::Cluster).await.unwrap();
    let depth = |namespace: &str| format!("{EXTERNAL}/namespaces/{namespace}/queue_depth");
    let none = || pair("<none>", "5");

    // The default: team-a's queue and the cloud queue, never team-b's.
    assert_eq!(
        items(&default.get(&depth("team-a")).await),
        vec![none(), pair("team-a", "3")]
    );
    assert_eq!(
        items(&default.get(&depth("team-b")).await),
        vec![none(), pair("team-b", "40")]
    );
    // --external-metrics-namespaced: only the namespace's own.
    assert_eq!(
        items(&strict.get(&depth("team-a")).await),
        vec![pair("team-a", "3")]
    );
    // --external-metrics-cluster-wide: team-a reads team-b's queue too.
    assert_eq!(
        items(&open.get(&depth("team-a")).await),
        vec![none(), pair("team-a", "3"), pair("team-b", "40")]
    );

    // A selector naming another namespace narrows further; it never widens.
    let across = format!(
        "{}?labelSelector=namespace%3Dteam-b,queue%3Dorders",
        depth("team-a")
    );
    assert_eq!(items(&default.get(&across).await), vec![]);
    assert_eq!(items(&strict.get(&across).await), vec![]);
    assert_eq!(items(&open.get(&across).await), vec![pair("team-b", "40")]);

    // A namespace with no series of its own still reads the cloud queue by default.
    assert_eq!(items(&default.get(&depth("team-c")).await), vec![none()]);
    assert_eq!(items(&strict.get(&depth("team-c")).await), vec![]);

    // The namespace from the URL is escaped: attempts to close the string (or widen the
    // regex) and read team-b stay one non-existent namespace name.
    for hostile in [
        "team-a%22%7D%20or%20kube_adapter_metric_queue_depth%7Bnamespace%3D%22team-b",
        "team-.%2A",
        "team-b%7Cteam-a",
    ] {
        for registry in [default, &strict] {
            let answer = registry.get(&depth(hostile)).await;
            let read: Vec<(String, String)> = items(&answer);
            assert!(
                read.iter().all(|(namespace, _)| namespace == "<none>"),
                "{hostile}: {}",
                answer.body
            );
        }
    }

    strict.stop().await;
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
    // A metric no object decides for follows the server's default.
    assert_eq!(
        items(&registry.get(&depth).await),
        vec![pair("<none>", "5"), pair("team-a", "3")]
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
