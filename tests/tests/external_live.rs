//! `ExternalMetric` and `ClusterExternalMetric`: external metrics answered from a live
//! PromQL query against a real Prometheus, without a recording rule. The expected values
//! are the ones the exporter publishes, written out here, not computed by the product.

use metrics_registry_tests::stack::Stack;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

const EXTERNAL: &str = "/apis/external.metrics.k8s.io/v1beta1";

const DEFINITIONS: &str = r#"
apiVersion: metrics-registry.io/v1beta1
kind: ExternalMetric
metadata: {name: queue-depth, namespace: team-a}
spec:
  metricName: queue_depth
  query: sum by (queue) (rabbitmq_queue_messages{<<.LabelMatchers>>})
---
apiVersion: metrics-registry.io/v1beta1
kind: ClusterExternalMetric
metadata: {name: queue-depth}
spec:
  metricName: queue_depth
  query: sum by (namespace, queue) (rabbitmq_queue_messages{<<.LabelMatchers>>})
---
# Reads team-a's series from team-b: refused, so team-b gets the cluster definition.
apiVersion: metrics-registry.io/v1beta1
kind: ExternalMetric
metadata: {name: queue-depth, namespace: team-b}
spec:
  metricName: queue_depth
  query: sum by (queue) (rabbitmq_queue_messages{namespace="team-a",<<.LabelMatchers>>})
---
# One definition for every namespace, each answered from its own series.
apiVersion: metrics-registry.io/v1beta1
kind: ClusterExternalMetric
metadata: {name: own-depth}
spec:
  metricName: own_depth
  namespaceLabel: namespace
  query: sum by (queue) (rabbitmq_queue_messages{<<.LabelMatchers>>})
---
apiVersion: metrics-registry.io/v1beta1
kind: ExternalMetric
metadata: {name: busy, namespace: team-a}
spec:
  query: sum(rabbitmq_consumers{<<.LabelMatchers>>})
"#;

/// (labels without `__name__`) → value, of every item.
fn values(answer: &Value) -> BTreeMap<String, String> {
    answer["items"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|item| {
            assert_eq!(item["metricName"], answer["items"][0]["metricName"]);
            (
                item["metricLabels"].to_string(),
                item["value"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn expected(pairs: &[(Value, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(labels, value)| (labels.to_string(), value.to_string()))
        .collect()
}

#[tokio::test]
#[ignore = "needs Prometheus (Debian package `prometheus`): run through scripts/test.sh"]
async fn external_metrics_from_live_queries_pinned_to_their_namespace() {
    let stack = Stack::start(
        &[("external.yaml", DEFINITIONS)],
        |exporter| {
            for (namespace, queue, value) in [
                ("team-a", "orders", 12.0),
                ("team-a", "billing", 3.0),
                ("team-b", "orders", 99.0),
            ] {
                exporter.set(
                    "rabbitmq_queue_messages",
                    &[("namespace", namespace), ("queue", queue)],
                    value,
                );
            }
            exporter.set("rabbitmq_consumers", &[("namespace", "team-a")], 4.0);
            exporter.set("rabbitmq_consumers", &[("namespace", "team-b")], 40.0);
        },
        "rabbitmq_queue_messages",
        |_| {},
    )
    .await
    .unwrap();
    let registry = &stack.registry;

    // team-a's own definition, pinned: its series only, the selector applied.
    let selected = registry
        .get(&format!(
            "{EXTERNAL}/namespaces/team-a/queue_depth?labelSelector=queue%3Dorders"
        ))
        .await;
    assert_eq!(selected.status, 200, "{}", selected.body);
    assert_eq!(selected.body["kind"], "ExternalMetricValueList");
    assert_eq!(
        values(&selected.body),
        expected(&[(json!({"queue": "orders"}), "12")])
    );
    let all = registry
        .get(&format!("{EXTERNAL}/namespaces/team-a/queue_depth"))
        .await;
    assert_eq!(
        values(&all.body),
        expected(&[
            (json!({"queue": "billing"}), "3"),
            (json!({"queue": "orders"}), "12"),
        ]),
        "{}",
        all.body
    );
    let set_based = registry
        .get(&format!(
            "{EXTERNAL}/namespaces/team-a/queue_depth?labelSelector=queue%20notin%20(orders)"
        ))
        .await;
    assert_eq!(
        values(&set_based.body),
        expected(&[(json!({"queue": "billing"}), "3")])
    );

    // team-b's own definition escapes its namespace: refused, so the cluster one answers,
    // over every namespace as its author wrote it.
    let team_b = registry
        .get(&format!("{EXTERNAL}/namespaces/team-b/queue_depth"))
        .await;
    assert_eq!(
        values(&team_b.body),
        expected(&[
            (json!({"namespace": "team-a", "queue": "billing"}), "3"),
            (json!({"namespace": "team-a", "queue": "orders"}), "12"),
            (json!({"namespace": "team-b", "queue": "orders"}), "99"),
        ]),
        "{}",
        team_b.body
    );

    // A cluster definition with a namespaceLabel: each namespace its own series.
    for (namespace, want) in [
        (
            "team-a",
            expected(&[
                (json!({"queue": "billing"}), "3"),
                (json!({"queue": "orders"}), "12"),
            ]),
        ),
        ("team-b", expected(&[(json!({"queue": "orders"}), "99")])),
        ("team-c", expected(&[])),
    ] {
        let answer = registry
            .get(&format!("{EXTERNAL}/namespaces/{namespace}/own_depth"))
            .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(values(&answer.body), want, "{namespace}: {}", answer.body);
    }

    // Named by the object: metadata.name without metricName; a sum without labels.
    let busy = registry
        .get(&format!("{EXTERNAL}/namespaces/team-a/busy"))
        .await;
    assert_eq!(
        values(&busy.body),
        expected(&[(json!({}), "4")]),
        "{}",
        busy.body
    );
    // Only team-a defines it: another namespace is told so, not served team-a's value.
    let elsewhere = registry
        .get(&format!("{EXTERNAL}/namespaces/team-b/busy"))
        .await;
    assert_eq!(elsewhere.status, 404, "{}", elsewhere.body);

    // Discovery lists both names.
    let listed = registry
        .wait_until(EXTERNAL, Duration::from_secs(10), |a| {
            a.body.to_string().contains("\"queue_depth\"")
        })
        .await;
    assert!(listed.is_ok(), "{listed:?}");
    assert!(
        registry
            .get(EXTERNAL)
            .await
            .body
            .to_string()
            .contains("\"busy\"")
    );

    // A bad selector is the client's error, and reaches no query.
    let bad = registry
        .get(&format!(
            "{EXTERNAL}/namespaces/team-a/queue_depth?labelSelector=queue%3D%3D%3Dx"
        ))
        .await;
    assert_eq!(bad.status, 400, "{}", bad.body);
}
