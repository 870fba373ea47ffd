//! custom.metrics.k8s.io against a real Prometheus: every path in both versions.

use metrics_registry_tests::fixtures::{KONG_LATENCY, SEED_004, WORKLOADS, publish_seed_series};
use metrics_registry_tests::stack::Stack;
use serde_json::json;

const V1: &str = "/apis/custom.metrics.k8s.io/v1beta1";
const V2: &str = "/apis/custom.metrics.k8s.io/v2";
const V2B: &str = "/apis/custom.metrics.k8s.io/v1beta2";

async fn seed_stack() -> Stack {
    Stack::start(
        &[
            ("kong.yaml", KONG_LATENCY),
            ("app.yaml", SEED_004),
            ("workloads.yaml", WORKLOADS),
        ],
        publish_seed_series,
        "pod_value",
        |_| {},
    )
    .await
    .expect("stack starts")
}

#[tokio::test]
#[ignore = "needs Prometheus (Debian package `prometheus`): run through scripts/test.sh"]
async fn object_metric_in_both_versions_matches_the_seed() {
    let stack = seed_stack().await;
    let path = "namespaces/default/services/echo/kong_upstream_latency_ms_60s_average";

    let v1 = stack.registry.get(&format!("{V1}/{path}")).await;
    assert_eq!(v1.status, 200, "{}", v1.body);
    assert_eq!(v1.body["kind"], "MetricValueList");
    assert_eq!(v1.body["apiVersion"], "custom.metrics.k8s.io/v1beta1");
    let item = &v1.body["items"][0];
    assert_eq!(
        item["describedObject"],
        json!({"kind": "Service", "namespace": "default", "name": "echo", "apiVersion": "v1"})
    );
    assert_eq!(item["metricName"], "kong_upstream_latency_ms_60s_average");
    assert_eq!(item["value"], "102312m");
    assert_eq!(item["selector"], serde_json::Value::Null);
    assert!(item["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(v1.items().len(), 1);

    let v2 = stack.registry.get(&format!("{V2B}/{path}")).await;
    assert_eq!(v2.status, 200, "{}", v2.body);
    assert_eq!(v2.body["apiVersion"], "custom.metrics.k8s.io/v1beta2");
    assert_eq!(
        v2.body["items"][0]["metric"],
        json!({"name": "kong_upstream_latency_ms_60s_average", "selector": null})
    );
    assert_eq!(v2.value(0), "102312m");

    // An unknown version is not served.
    assert_eq!(
        stack.registry.get(&format!("{V2}/{path}")).await.status,
        404
    );
}

#[tokio::test]
#[ignore = "needs Prometheus (Debian package `prometheus`): run through scripts/test.sh"]
async fn every_kind_and_path_shape() {
    let stack = seed_stack().await;
    let registry = &stack.registry;
    for version in [V1, V2B] {
        for (path, value) in [
            ("namespaces/prod/deployments.apps/api/deployment-rps", "11"),
            ("namespaces/prod/statefulsets.apps/db/statefulset-rps", "12"),
            ("namespaces/prod/daemonsets.apps/agent/daemonset-rps", "13"),
            (
                "namespaces/prod/ingresses.networking.k8s.io/web/ingress-rps",
                "14500m",
            ),
            ("namespaces/prod/pods/p-1/pod-value", "100m"),
            (
                "namespaces/mynamespace/services/rmq/rmq-queue-forum-messages",
                "45",
            ),
            ("namespaces/mynamespace/metrics/queue-length", "300m"),
            ("namespaces/mynamespace/queue-length", "300m"),
        ] {
            let answer = registry.get(&format!("{version}/{path}")).await;
            assert_eq!(answer.status, 200, "{version}/{path}: {}", answer.body);
            assert_eq!(answer.value(0), value, "{version}/{path}");
        }
        let namespace = registry
            .get(&format!(
                "{version}/namespaces/mynamespace/metrics/queue-length"
            ))
            .await;
        assert_eq!(
            namespace.body["items"][0]["describedObject"],
            json!({"kind": "Namespace", "name": "mynamespace", "apiVersion": "v1"})
        );
        let deployment = registry
            .get(&format!(
                "{version}/namespaces/prod/deployments.apps/api/deployment-rps"
            ))
            .await;
        assert_eq!(
            deployment.body["items"][0]["describedObject"]["apiVersion"],
            "apps/v1"
        );
        let ingress = registry
            .get(&format!(
                "{version}/namespaces/prod/ingresses.networking.k8s.io/web/ingress-rps"
            ))
            .await;
        assert_eq!(
            ingress.body["items"][0]["describedObject"]["apiVersion"],
            "networking.k8s.io/v1"
        );
    }
    // Namespaces across the cluster: only namespaces that define the metric.
    let all = registry
        .get(&format!("{V2B}/namespaces/*/queue-length"))
        .await;
    assert_eq!(all.status, 200, "{}", all.body);
    assert_eq!(all.items().len(), 1);
    // The window a definition declares is reported.
    let window = registry
        .get(&format!(
            "{V2B}/namespaces/mynamespace/services/rmq/queue-depth"
        ))
        .await;
    assert_eq!(window.body["items"][0]["windowSeconds"], 60);
    let window = registry
        .get(&format!(
            "{V1}/namespaces/mynamespace/services/rmq/queue-depth"
        ))
        .await;
    assert_eq!(window.body["items"][0]["window"], 60);
}

#[tokio::test]
#[ignore = "needs Prometheus (Debian package `prometheus`): run through scripts/test.sh"]
async fn wildcard_answers_every_object_with_a_usable_value() {
    let stack = seed_stack().await;
    let answer = stack
        .registry
        .get(&format!(
            "{V2B}/namespaces/mynamespace/pods/*/php-fpm-active-workers"
        ))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let mut got: Vec<(String, String)> = answer
        .items()
        .iter()
        .map(|i| {
            (
                i["describedObject"]["name"].as_str().unwrap().to_string(),
                i["value"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    got.sort();
    // web-3 is NaN in Prometheus and is left out rather than sent as a number.
    assert_eq!(
        got,
        vec![("web-1".into(), "3".into()), ("web-2".into(), "6".into())]
    );

    // Without a cluster there is nothing to resolve a labelSelector against.
    let selector = stack
        .registry
        .get(&format!(
            "{V2B}/namespaces/mynamespace/pods/*/php-fpm-active-workers?labelSelector=app%3Dweb"
        ))
        .await;
    assert_eq!(selector.status, 501, "{}", selector.body);
    assert_eq!(selector.body["kind"], "Status");
    assert!(
        selector.message().contains("needs a Kubernetes cluster"),
        "{}",
        selector.message()
    );
}

#[tokio::test]
#[ignore = "needs Prometheus (Debian package `prometheus`): run through scripts/test.sh"]
async fn non_finite_values_are_never_numbers() {
    let stack = seed_stack().await;
    let nan = stack
        .registry
        .get(&format!(
            "{V2B}/namespaces/mynamespace/pods/web-3/php-fpm-active-workers"
        ))
        .await;
    assert_eq!(nan.status, 404, "{}", nan.body);
    assert!(nan.message().contains("NaN"), "{}", nan.message());
    let inf = stack
        .registry
        .get(&format!("{V2B}/namespaces/prod/pods/p-2/pod-value"))
        .await;
    assert_eq!(inf.status, 404, "{}", inf.body);
    assert!(inf.message().contains("Inf"), "{}", inf.message());
}

#[tokio::test]
#[ignore = "needs Prometheus (Debian package `prometheus`): run through scripts/test.sh"]
async fn metric_label_selector_becomes_escaped_matchers() {
    let stack = seed_stack().await;
    let registry = &stack.registry;
    let base = format!("{V2B}/namespaces/mynamespace/services/rmq/queue-depth");
    for (selector, value) in [
        ("", "52"),
        ("?metricLabelSelector=queue%3Dother_queue", "7"),
        (
            "?metricLabelSelector=queue%20in%20(other_queue,send_forum_message)",
            "52",
        ),
        ("?metricLabelSelector=queue%20notin%20(other_queue)", "45"),
        ("?metricLabelSelector=queue!%3Dother_queue,vhost", "45"),
    ] {
        let answer = registry.get(&format!("{base}{selector}")).await;
        assert_eq!(answer.status, 200, "{selector}: {}", answer.body);
        assert_eq!(answer.value(0), value, "{selector}");
    }
    let echoed = registry
        .get(&format!("{base}?metricLabelSelector=queue%3Dother_queue"))
        .await;
    assert_eq!(
        echoed.body["items"][0]["metric"]["selector"],
        json!({"matchLabels": {"queue": "other_queue"}})
    );

    // Valid but long: refused before it reaches a query or a cache key.
    let long_selector = format!("?metricLabelSelector=queue%3D{}", "q".repeat(8193 - 6));
    for (selector, needle) in [
        (
            "?metricLabelSelector=namespace%3Dkube-system",
            "may not select on \"namespace\"",
        ),
        (
            "?metricLabelSelector=service%3Dother",
            "may not select on \"service\"",
        ),
        (
            "?metricLabelSelector=queue%20in%20(a",
            "invalid metricLabelSelector",
        ),
        (
            "?metricLabelSelector=app.kubernetes.io%2Fname%3Dx",
            "invalid metricLabelSelector",
        ),
        (
            "?metricLabelSelector=count%3E5",
            "invalid metricLabelSelector",
        ),
        (
            long_selector.as_str(),
            "metricLabelSelector is 8193 bytes long; at most 8192 are accepted",
        ),
    ] {
        let answer = registry.get(&format!("{base}{selector}")).await;
        assert_eq!(answer.status, 400, "{selector}: {}", answer.body);
        assert_eq!(answer.body["reason"], "BadRequest");
        assert!(
            answer.message().contains(needle),
            "{selector}: {}",
            answer.message()
        );
    }
}

#[tokio::test]
#[ignore = "needs Prometheus (Debian package `prometheus`): run through scripts/test.sh"]
async fn request_values_cannot_inject_promql() {
    let stack = seed_stack().await;
    // The name is sent percent-encoded; it must arrive as one escaped string value, so
    // Prometheus finds no such service rather than running the injected vector(1).
    let evil = "echo%22%7D%20or%20vector(1)%20or%20x%7Ba%3D%22";
    let answer = stack
        .registry
        .get(&format!(
            "{V2B}/namespaces/default/services/{evil}/kong_upstream_latency_ms_60s_average"
        ))
        .await;
    assert_eq!(answer.status, 404, "{}", answer.body);
    assert!(answer.message().contains("no data"), "{}", answer.message());
}

#[tokio::test]
#[ignore = "needs Prometheus (Debian package `prometheus`): run through scripts/test.sh"]
async fn discovery_lists_each_metric_once_per_resource() {
    let stack = seed_stack().await;
    for version in ["v1beta1", "v1beta2"] {
        let answer = stack
            .registry
            .get(&format!("/apis/custom.metrics.k8s.io/{version}"))
            .await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body["kind"], "APIResourceList");
        assert_eq!(
            answer.body["groupVersion"],
            format!("custom.metrics.k8s.io/{version}")
        );
        let resources = answer.body["resources"].as_array().unwrap();
        let names: Vec<&str> = resources
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        for expected in [
            "services/kong_upstream_latency_ms_60s_average",
            "services/rmq-queue-forum-messages",
            "pods/php-fpm-active-workers",
            "namespaces/queue-length",
            "deployments.apps/deployment-rps",
            "ingresses.networking.k8s.io/ingress-rps",
        ] {
            assert_eq!(
                names.iter().filter(|n| **n == expected).count(),
                1,
                "{expected} in {names:?}"
            );
        }
        let namespace = resources
            .iter()
            .find(|r| r["name"] == "namespaces/queue-length")
            .unwrap();
        assert_eq!(namespace["namespaced"], false);
        assert_eq!(namespace["kind"], "MetricValueList");
        assert_eq!(namespace["verbs"], json!(["get"]));
    }
}

#[tokio::test]
#[ignore = "needs Prometheus (Debian package `prometheus`): run through scripts/test.sh"]
async fn errors_are_statuses_with_the_cause() {
    let stack = seed_stack().await;
    let registry = &stack.registry;
    for (path, code, needle) in [
        (
            format!("{V2B}/namespaces/default/services/echo/nope"),
            404,
            "could not find the metric nope for services",
        ),
        (
            // Defined only in mynamespace, which a request in `other` must not learn.
            format!("{V2B}/namespaces/other/services/rmq/queue-depth"),
            404,
            "no definition of it in namespace other and no cluster-wide one",
        ),
        (
            format!("{V2B}/namespaces/default/jobs.batch/x/m"),
            404,
            "no metrics for resource",
        ),
        (
            format!("{V2B}/namespaces/default/pods/x"),
            404,
            "could not find the requested resource",
        ),
        (
            format!("{V2B}/pods/x/pod-value"),
            404,
            "pods are namespaced",
        ),
        (
            format!(
                "{V2B}/namespaces/default/services/missing/kong_upstream_latency_ms_60s_average"
            ),
            404,
            "no data",
        ),
        (
            "/apis/nothing/here".to_string(),
            404,
            "could not find the requested resource",
        ),
    ] {
        let answer = registry.get(&path).await;
        assert_eq!(answer.status, code, "{path}: {}", answer.body);
        assert_eq!(answer.body["kind"], "Status", "{path}");
        assert_eq!(answer.body["apiVersion"], "v1");
        assert_eq!(answer.body["status"], "Failure");
        assert_eq!(answer.body["code"], code);
        assert!(
            answer.message().contains(needle),
            "{path}: {}",
            answer.message()
        );
        assert!(
            !answer.message().contains("mynamespace"),
            "{path} names another namespace: {}",
            answer.message()
        );
    }
    let health = registry.get("/healthz").await;
    assert_eq!(health.status, 200);
    assert_eq!(registry.get("/livez").await.status, 200);
    assert_eq!(registry.get("/readyz").await.status, 200);
}
