//! The seed scenarios end to end: a real kube-apiserver with its aggregator, the real
//! HPA controller in kube-controller-manager as the client, a real node running the
//! workloads, a real Prometheus, and metrics-registry in cluster mode (in this process,
//! to reach its rule files and its port directly) behind APIServices. One control plane,
//! scenarios in order. Seed 000–002's scaling runs through the installed chart in
//! `e2e_chart.rs`.

use metrics_registry::kubernetes::leader::Leadership;
use metrics_registry_tests::e2e::{E2e, Timeline};
use metrics_registry_tests::scenarios::set_latency;
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real node: run through scripts/test.sh (network namespace, containerd, kubelet)"]
async fn seed_scenarios_with_the_real_hpa_controller() {
    let started = Instant::now();
    let e2e = E2e::start(|exporter| {
        set_latency(exporter, 100.0);
        // Seed 004's queues are long from the start, so the 5 m average is stable.
        exporter.set(
            "rabbitmq_queue_messages",
            &[
                ("namespace", "mynamespace"),
                ("service", "rmq"),
                ("queue", "send_forum_message"),
                ("vhost", "/"),
            ],
            100.0,
        );
        exporter.set(
            "sqs_messages_visible",
            &[("queue", "send_forum_messages")],
            100.0,
        );
    })
    .await
    .expect("end-to-end stack starts");
    println!(
        "stack up in {:.1}s (control plane, Prometheus, metrics-registry, APIServices available)",
        started.elapsed().as_secs_f64()
    );

    kong_definition_served(&e2e).await;
    scenario_precedence_live(&e2e).await;
    scenario_seed_004(&e2e).await;
    scenario_keda_trigger_as_external_metric(&e2e).await;
    scenario_resource_metrics(&e2e).await;
    scenario_statuses_and_columns(&e2e).await;
    scenario_prometheus_rule_objects(&e2e).await;
    scenario_auth(&e2e).await;
    e2e.stop().await;
}

/// `kubectl get` columns and status: a bad definition says why; the others keep serving.
async fn scenario_statuses_and_columns(e2e: &E2e) {
    e2e.apply_yaml(
        r#"
apiVersion: metrics-registry.io/v1beta1
kind: ServiceMetric
metadata: {name: broken, namespace: kong}
spec: {query: 'sum(rate(x{<<.LabelMatchers>>}[5m])'}
"#,
    )
    .await
    .unwrap();
    let broken = e2e
        .wait_status("ServiceMetric", Some("kong"), "broken", |status| {
            status["conditions"][0]["reason"].is_string()
        })
        .await;
    assert_eq!(broken["conditions"][0]["status"], "False", "{broken}");
    assert_eq!(
        broken["conditions"][0]["reason"], "InvalidQuery",
        "{broken}"
    );
    assert_eq!(broken["observedGeneration"], 1, "{broken}");
    // The table kubectl prints.
    let request =
        http::Request::get("/apis/metrics-registry.io/v1beta1/namespaces/kong/servicemetrics")
            .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
            .body(Vec::new())
            .unwrap();
    let table: serde_json::Value = e2e.admin.request(request).await.unwrap();
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        columns,
        ["Name", "Metric", "Ready", "Reason", "Age", "Message"]
    );
    let row = &table["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["cells"][0] == "broken")
        .unwrap()["cells"];
    assert_eq!(
        (&row[1], &row[2], &row[3]),
        (&json!("broken"), &json!("False"), &json!("InvalidQuery")),
        "{row}"
    );
    // The last error, as the status has it (the parser's message).
    assert_eq!(row[5], broken["conditions"][0]["message"], "{row}");
    assert!(row[5].as_str().is_some_and(|m| !m.is_empty()), "{row}");
    let served = e2e
        .status(
            "ClusterServiceMetric",
            None,
            "kong-upstream-latency-ms-60s-average",
        )
        .await;
    assert_eq!(served["conditions"][0]["status"], "True", "{served}");
    assert_eq!(served["metricName"], "kong_upstream_latency_ms_60s_average");
    println!("status: broken definition → Ready=False InvalidQuery; others Ready=True");
}

/// With prometheus-operator's CRD installed, rules become PrometheusRule objects; orphans go.
async fn scenario_prometheus_rule_objects(e2e: &E2e) {
    use metrics_registry::definitions::{DefinitionId, DefinitionKind};
    use metrics_registry::sinks::recording_rules::{RulesOutput, prometheus_rules_installed};
    let crd = metrics_registry_tests::third_party::prometheus_rule_crd()
        .await
        .unwrap();
    e2e.apply_yaml(&crd).await.unwrap();
    e2e.apply_yaml("apiVersion: v1\nkind: Namespace\nmetadata: {name: monitoring}\n")
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !prometheus_rules_installed(&e2e.admin).await {
        assert!(Instant::now() < deadline, "PrometheusRule CRD not served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    e2e.apply_yaml(
        "apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata: {name: hand-made, namespace: monitoring}\nspec: {groups: []}\n",
    )
    .await
    .unwrap();
    let output = RulesOutput::PrometheusRules {
        client: e2e.admin.clone(),
        namespace: "monitoring".into(),
        labels: [("prometheus".to_string(), "main".to_string())].into(),
    };
    let id = DefinitionId {
        kind: DefinitionKind::CustomPrometheusRules,
        namespace: None,
        name: "sqs".into(),
    };
    let groups: Vec<metrics_registry_crds::RuleGroup> = serde_json::from_value(json!([
        {"name": "sqs", "rules": [{"record": "kube_adapter_metric_sqs", "expr": "sum(x) by (queue)"}]}
    ]))
    .unwrap();
    output
        .try_sync(&[(id, groups)].into(), &Leadership::Always)
        .await
        .unwrap();
    let rule = e2e.get_raw("/apis/monitoring.coreos.com/v1/namespaces/monitoring/prometheusrules/metrics-registry-sqs").await.unwrap();
    assert_eq!(rule["metadata"]["labels"]["prometheus"], "main", "{rule}");
    assert_eq!(
        rule["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "metrics-registry"
    );
    assert_eq!(
        rule["spec"]["groups"][0]["rules"][0]["record"],
        "kube_adapter_metric_sqs"
    );
    output
        .try_sync(&Default::default(), &Leadership::Always)
        .await
        .unwrap();
    let gone = e2e.get_raw("/apis/monitoring.coreos.com/v1/namespaces/monitoring/prometheusrules/metrics-registry-sqs").await;
    assert!(format!("{gone:?}").contains("NotFound"), "{gone:?}");
    let kept = e2e
        .get_raw("/apis/monitoring.coreos.com/v1/namespaces/monitoring/prometheusrules/hand-made")
        .await;
    assert!(kept.is_ok(), "objects not ours are left alone: {kept:?}");
    println!("PrometheusRule: written with labels, orphan removed, others untouched");
}

/// Seed 000's definition, applied with its workload, is served through the aggregator.
async fn kong_definition_served(e2e: &E2e) {
    e2e.apply_yaml(&format!(
        "{}\n---\n{}",
        metrics_registry_tests::fixtures::KONG_LATENCY,
        e2e.workload("kong", "command", 1)
    ))
    .await
    .unwrap();
    let path = "/apis/custom.metrics.k8s.io/v1beta1/namespaces/kong/services/command/kong_upstream_latency_ms_60s_average";
    let served = e2e
        .wait_raw(path, Duration::from_secs(1), |body| {
            body["items"][0]["value"] == "100"
        })
        .await;
    assert!(served.is_ok(), "{served:?}");
    println!(
        "seed 000: definition applied → served through the aggregator in {:?}",
        served.unwrap()
    );
    let raw = e2e.get_raw(path).await.unwrap();
    assert_eq!(raw["kind"], "MetricValueList");
    assert_eq!(raw["items"][0]["describedObject"]["name"], "command");
}

/// A namespaced override changes what the HPA reads within a second; deleting it falls back.
async fn scenario_precedence_live(e2e: &E2e) {
    let path = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/kong/services/command/kong_upstream_latency_ms_60s_average";
    let before = e2e.get_raw(path).await.unwrap();
    let cluster_value = before["items"][0]["value"].as_str().unwrap().to_string();
    let overriding = r#"
apiVersion: metrics-registry.io/v1beta1
kind: ServiceMetric
metadata: {name: kong-latency-override, namespace: kong}
spec:
  metricName: kong_upstream_latency_ms_60s_average
  objectLabel: exported_service
  namespaceLabel: exported_namespace
  query: 'avg by (<<.GroupBy>>) (kong_upstream_latency_ms_average{<<.LabelMatchers>>}) * 1000'
"#;
    let applied = Instant::now();
    e2e.apply_yaml(overriding).await.unwrap();
    let took = e2e
        .wait_raw(path, Duration::from_secs(1), |body| {
            body["items"][0]["value"] != cluster_value.as_str()
        })
        .await;
    assert!(took.is_ok(), "override not served within 1 s: {took:?}");
    println!(
        "precedence: namespaced override served {:?} after apply",
        applied.elapsed()
    );
    // The cluster definition reports where it is overridden (status is written right
    // after the swap, so it may trail the served value by a moment).
    let status = e2e
        .wait_status(
            "ClusterServiceMetric",
            None,
            "kong-upstream-latency-ms-60s-average",
            |status| status["overriddenIn"] == json!(["kong"]),
        )
        .await;
    assert_eq!(status["overriddenIn"], json!(["kong"]), "{status}");

    let deleted = Instant::now();
    e2e.delete("ServiceMetric", Some("kong"), "kong-latency-override")
        .await
        .unwrap();
    let back = e2e
        .wait_raw(path, Duration::from_secs(1), |body| {
            body["items"][0]["value"] == cluster_value.as_str()
        })
        .await;
    assert!(back.is_ok(), "fallback not served within 1 s: {back:?}");
    println!(
        "precedence: fallback to the cluster definition {:?} after delete",
        deleted.elapsed()
    );
}

/// Seed 004: ServiceMetric (RabbitMQ, Object Value), PodMetric (php-fpm, Pods AverageValue), External from a recording rule.
async fn scenario_seed_004(e2e: &E2e) {
    e2e.apply_yaml(metrics_registry_tests::fixtures::SEED_004_E2E)
        .await
        .unwrap();
    e2e.apply_yaml(&e2e.workload("mynamespace", "myconsumer", 1))
        .await
        .unwrap();
    e2e.apply_yaml(&e2e.workload("mynamespace", "mybackend", 1))
        .await
        .unwrap();
    e2e.apply_yaml(&e2e.workload("mynamespace", "sqsconsumer", 1))
        .await
        .unwrap();
    // Busy php-fpm workers per pod follow the pods the Deployment has.
    let exporter = e2e.exporter.clone();
    let pods_feed = e2e.feed_pod_series("mynamespace", "app=mybackend", move |pod| {
        exporter.set(
            "phpfpm_processes_total",
            &[
                ("namespace", "mynamespace"),
                ("pod", pod),
                ("state", "active"),
            ],
            12.0,
        );
    });
    e2e.apply_yaml(metrics_registry_tests::fixtures::SEED_004_HPAS)
        .await
        .unwrap();

    let mut timeline = Timeline::new("seed 004: RabbitMQ, php-fpm, SQS");
    for (name, expected) in [("myconsumer", 3), ("mybackend", 3), ("sqsconsumer", 3)] {
        let scaled = e2e
            .wait_replicas_at_least(
                "mynamespace",
                name,
                expected,
                Duration::from_secs(90),
                &mut timeline,
            )
            .await;
        assert!(
            scaled.is_ok(),
            "{name}: {scaled:?}\n{}",
            e2e.hpa_conditions("mynamespace", name).await
        );
    }
    drop(pods_feed);
    timeline.print();
}

/// Seed 003's KEDA `prometheus` trigger as the migration guide rewrites it: an
/// `ExternalMetric` (a live query, pinned to its namespace) and a plain External HPA.
/// A gauge of the same name in another namespace must not count.
async fn scenario_keda_trigger_as_external_metric(e2e: &E2e) {
    e2e.exporter
        .set("yumeko_gauge", &[("namespace", "nginx")], 700.0);
    e2e.exporter
        .set("yumeko_gauge", &[("namespace", "elsewhere")], 100000.0);
    e2e.apply_yaml(
        r#"
apiVersion: v1
kind: Namespace
metadata: {name: nginx}
---
apiVersion: metrics-registry.io/v1beta1
kind: ExternalMetric
metadata: {name: yumeko-gauge, namespace: nginx}
spec:
  metricName: yumeko_gauge
  query: sum(yumeko_gauge{<<.LabelMatchers>>})
"#,
    )
    .await
    .unwrap();
    let status = e2e
        .wait_status("ExternalMetric", Some("nginx"), "yumeko-gauge", |status| {
            status["conditions"][0]["reason"] == "Served"
        })
        .await;
    assert_eq!(
        status["conditions"][0]["message"], "served as external metric yumeko_gauge",
        "{status}"
    );
    assert_eq!(status["metricName"], "yumeko_gauge", "{status}");
    e2e.apply_yaml(&e2e.workload("nginx", "nginx-deployment", 1))
        .await
        .unwrap();
    e2e.apply_yaml(
        r#"
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: nginx-deployment, namespace: nginx}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: nginx-deployment}
  minReplicas: 1
  maxReplicas: 10
  metrics:
  - type: External
    external:
      metric: {name: yumeko_gauge}
      target: {type: AverageValue, averageValue: "223"}
"#,
    )
    .await
    .unwrap();
    // 700 / 223 per replica → 4 replicas; the other namespace's 100000 would make it 10.
    let mut timeline = Timeline::new("seed 003: KEDA's prometheus trigger as an ExternalMetric");
    let scaled = e2e
        .wait_replicas(
            "nginx",
            "nginx-deployment",
            4,
            Duration::from_secs(90),
            &mut timeline,
        )
        .await;
    assert!(
        scaled.is_ok(),
        "{scaled:?}\n{}",
        e2e.hpa_conditions("nginx", "nginx-deployment").await
    );
    timeline.print();
}

/// metrics.k8s.io from Prometheus: `v1beta1.metrics.k8s.io` registered by the server,
/// a `ResourceMetrics` over cAdvisor-shaped series, and a `type: Resource` HPA on CPU that
/// the real controller scales with it.
async fn scenario_resource_metrics(e2e: &E2e) {
    // Registered by the server itself (--register-resource-metrics-apiservice).
    let registered = e2e
        .wait_raw(
            "/apis/metrics.k8s.io/v1beta1",
            Duration::from_secs(60),
            |discovery| discovery["groupVersion"] == "metrics.k8s.io/v1beta1",
        )
        .await;
    assert!(registered.is_ok(), "{registered:?}");
    e2e.apply_yaml(
        r#"
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
  windowSeconds: 10
"#,
    )
    .await
    .unwrap();
    e2e.apply_yaml(&e2e.workload("resources", "cpu-burner", 1))
        .await
        .unwrap();
    // Half a core per pod, from the moment it exists (a counter set once per pod).
    let exporter = e2e.exporter.clone();
    let started = std::sync::Mutex::new(std::collections::HashSet::new());
    let feed = e2e.feed_pod_series("resources", "app=cpu-burner", move |pod| {
        if started.lock().unwrap().insert(pod.to_string()) {
            let labels = [
                ("namespace", "resources"),
                ("pod", pod),
                ("container", "app"),
            ];
            exporter.set_growing("container_cpu_usage_seconds_total", &labels, 0.5);
            exporter.set(
                "container_memory_working_set_bytes",
                &labels,
                32.0 * 1048576.0,
            );
        }
    });
    let served = e2e
        .wait_raw(
            "/apis/metrics.k8s.io/v1beta1/namespaces/resources/pods",
            Duration::from_secs(60),
            |list| list["items"][0]["containers"][0]["usage"]["memory"] == "32768Ki",
        )
        .await;
    assert!(served.is_ok(), "{served:?}");
    e2e.apply_yaml(
        r#"
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: cpu-burner, namespace: resources}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: cpu-burner}
  minReplicas: 1
  maxReplicas: 3
  metrics:
  - type: Resource
    resource:
      name: cpu
      target: {type: AverageValue, averageValue: 200m}
"#,
    )
    .await
    .unwrap();
    // 500m per pod against 200m → the most replicas allowed.
    let mut timeline = Timeline::new("metrics.k8s.io: a Resource HPA on CPU");
    let scaled = e2e
        .wait_replicas(
            "resources",
            "cpu-burner",
            3,
            Duration::from_secs(120),
            &mut timeline,
        )
        .await;
    assert!(
        scaled.is_ok(),
        "{scaled:?}\n{}",
        e2e.hpa_conditions("resources", "cpu-burner").await
    );
    drop(feed);
    timeline.print();
}

/// No credentials → 401; a certificate from another CA or an unlisted name → 401; no RBAC → 403.
async fn scenario_auth(e2e: &E2e) {
    let path = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/kong/services/command/kong_upstream_latency_ms_60s_average";
    let cases = [
        ("no credentials", None, "admin", 401),
        (
            "certificate from an unknown CA",
            Some(e2e.foreign_client_cert()),
            "admin",
            401,
        ),
        (
            "front-proxy CA but a name not allowed",
            Some(e2e.front_proxy_cert("not-allowed")),
            "admin",
            401,
        ),
        (
            "the front proxy, for a user without RBAC",
            Some(e2e.front_proxy_cert("front-proxy-client")),
            "nobody",
            403,
        ),
        (
            "the front proxy, for a user in system:masters",
            Some(e2e.front_proxy_cert("front-proxy-client")),
            "admin",
            200,
        ),
    ];
    for (what, identity, user, expected) in cases {
        let mut headers = vec![("X-Remote-User", user)];
        if user == "admin" {
            headers.push(("X-Remote-Group", "system:masters"));
        }
        let status = e2e.direct_status(path, identity, &headers).await;
        assert_eq!(status, expected, "{what}");
    }
    // Through the aggregator, a user without RBAC is refused by kube-apiserver itself.
    let bob = e2e.control_plane.client_for("bob", &[]).await.unwrap();
    let request = http::Request::get(path).body(Vec::new()).unwrap();
    let refused = bob.request_text(request).await;
    assert!(format!("{refused:?}").contains("forbidden"), "{refused:?}");
}
