//! external.metrics.k8s.io against a real Prometheus, with the seed's
//! `CustomPrometheusRules` recording rule evaluated by Prometheus itself.

use metrics_registry_tests::fixtures::{SEED_004, publish_seed_series};
use metrics_registry_tests::stack::Stack;
use serde_json::json;
use std::time::Duration;

const EXTERNAL: &str = "/apis/external.metrics.k8s.io/v1beta1";

#[tokio::test]
#[ignore = "needs Prometheus (Debian package `prometheus`): run through scripts/test.sh"]
async fn kube_adapter_metric_series_are_external_metrics() {
    let stack = Stack::start(
        &[("app.yaml", SEED_004)],
        publish_seed_series,
        "sqs_messages_visible",
        |_| {},
    )
    .await
    .unwrap();
    let registry = &stack.registry;

    // The CustomPrometheusRules became a rule file, Prometheus was reloaded and evaluates it.
    let rule_file = stack
        .rules
        .path()
        .join("metrics-registry-prometheus-metrics-adapter-sqs-messages-visible.yaml");
    assert!(rule_file.exists(), "rule file written");
    let selected = format!(
        "{EXTERNAL}/namespaces/mynamespace/sqs_messages_visible?labelSelector=queue%3Dsend_forum_messages"
    );
    let evaluated = registry
        .wait_until(&selected, Duration::from_secs(15), |a| a.items().len() == 1)
        .await;
    assert!(evaluated.is_ok(), "{evaluated:?}");
    let one = registry.get(&selected).await;
    assert_eq!(one.status, 200, "{}", one.body);
    assert_eq!(one.body["kind"], "ExternalMetricValueList");
    assert_eq!(one.body["apiVersion"], "external.metrics.k8s.io/v1beta1");
    let item = &one.body["items"][0];
    assert_eq!(item["metricName"], "sqs_messages_visible");
    assert_eq!(
        item["metricLabels"],
        json!({"queue": "send_forum_messages"})
    );
    assert_eq!(item["value"], "42");

    // Discovery: series found in Prometheus plus the names recording rules declare.
    let listed = registry
        .wait_until(EXTERNAL, Duration::from_secs(10), |a| {
            a.body.to_string().contains("\"direct_queue\"")
        })
        .await;
    assert!(listed.is_ok(), "{listed:?}");
    let answer = registry.get(EXTERNAL).await;
    assert_eq!(
        answer.body["groupVersion"],
        "external.metrics.k8s.io/v1beta1"
    );
    let resources = answer.body["resources"].as_array().unwrap();
    let names: Vec<&str> = resources
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec!["declared_only", "direct_queue", "sqs_messages_visible"]
    );
    assert_eq!(resources[0]["kind"], "ExternalMetricValueList");
    assert_eq!(resources[0]["namespaced"], true);

    // Without a selector every series is returned; the HPA sums them.
    let all = registry
        .get(&format!(
            "{EXTERNAL}/namespaces/mynamespace/sqs_messages_visible"
        ))
        .await;
    assert_eq!(all.items().len(), 2, "{}", all.body);
    let in_set = registry
        .get(&format!("{EXTERNAL}/namespaces/x/sqs_messages_visible?labelSelector=queue%20in%20(other,send_forum_messages)"))
        .await;
    assert_eq!(in_set.items().len(), 2, "{}", in_set.body);

    // A series exported with the prefix needs no rule.
    let direct = registry
        .get(&format!("{EXTERNAL}/namespaces/x/direct_queue"))
        .await;
    assert_eq!(direct.value(0), "3", "{}", direct.body);

    // Declared by a rule but without data yet: an empty list, not an error.
    let declared = registry
        .get(&format!("{EXTERNAL}/namespaces/x/declared_only"))
        .await;
    assert_eq!(declared.status, 200, "{}", declared.body);
    assert_eq!(declared.items().len(), 0);

    for (path, code, needle) in [
        (
            format!("{EXTERNAL}/namespaces/x/unknown_metric"),
            404,
            "no series kube_adapter_metric_unknown_metric",
        ),
        (
            format!("{EXTERNAL}/namespaces/x/bad-name"),
            404,
            "valid Prometheus metric names",
        ),
        (
            format!("{EXTERNAL}/namespaces/x/sqs_messages_visible?labelSelector=queue%20in%20("),
            400,
            "invalid labelSelector",
        ),
        (
            format!("{EXTERNAL}/sqs_messages_visible"),
            404,
            "could not find",
        ),
        (
            format!("{EXTERNAL}/namespaces/x/a/b"),
            404,
            "could not find",
        ),
    ] {
        let answer = registry.get(&path).await;
        assert_eq!(answer.status, code, "{path}: {}", answer.body);
        assert_eq!(answer.body["kind"], "Status");
        assert!(
            answer.message().contains(needle),
            "{path}: {}",
            answer.message()
        );
    }

    // Deleting the definition deletes its rule file.
    registry.remove("app.yaml");
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while rule_file.exists() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!rule_file.exists(), "rule file removed with its definition");
}
