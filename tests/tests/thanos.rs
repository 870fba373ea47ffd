//! Thanos Query in front of the test Prometheus (through a Thanos sidecar), and the
//! multi-tenant header path: with Query enforcing tenancy on `tenant_id`, the header
//! metrics-registry sends (`--prometheus-header X-Scope-OrgID=…`) decides what it serves.

use metrics_registry_tests::exporter::Exporter;
use metrics_registry_tests::fixtures::BACKEND_DEFINITIONS;
use metrics_registry_tests::prometheus::{Prometheus, PrometheusOptions};
use metrics_registry_tests::registry::{Answer, Registry, RegistryOptions};
use metrics_registry_tests::thanos::{Tenancy, ThanosQuery, ThanosSidecar};
use serde_json::json;
use std::time::Duration;

const TENANT_HEADER: &str = "X-Scope-OrgID";
const TENANT_LABEL: &str = "tenant_id";

const OBJECT: &str = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/services/cart/latency";
const RATE: &str =
    "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/services/cart/requests_per_second";
const PODS: &str = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*/busy-workers";
const EXTERNAL: &str = "/apis/external.metrics.k8s.io/v1beta1";

/// Every series exists once per tenant, with values that tell the tenants apart
/// (tenant-b's are ten times tenant-a's); `kube_adapter_metric_b_only` is tenant-b's alone.
fn publish(exporter: &Exporter) {
    for (tenant, factor) in [("tenant-a", 1.0), ("tenant-b", 10.0)] {
        let shop = [("namespace", "shop"), (TENANT_LABEL, tenant)];
        exporter.set(
            "latency",
            &[shop[0], ("service", "cart"), shop[1]],
            5.25 * factor,
        );
        exporter.set_growing(
            "requests_total",
            &[shop[0], ("service", "cart"), shop[1]],
            2.5 * factor,
        );
        for (pod, workers) in [("cart-1", 3.0), ("cart-2", 4.0)] {
            exporter.set(
                "busy_workers",
                &[shop[0], ("pod", pod), shop[1]],
                workers * factor,
            );
        }
        exporter.set(
            "kube_adapter_metric_queue",
            &[("queue", "orders"), (TENANT_LABEL, tenant)],
            3.0 * factor,
        );
    }
    exporter.set(
        "kube_adapter_metric_b_only",
        &[("queue", "b"), (TENANT_LABEL, "tenant-b")],
        1.0,
    );
}

struct Backend {
    _exporter: Exporter,
    _prometheus: Prometheus,
    sidecar: ThanosSidecar,
}

async fn backend() -> Backend {
    metrics_registry_tests::init_test_logging();
    let exporter = Exporter::start().await.unwrap();
    publish(&exporter);
    let prometheus = Prometheus::start(PrometheusOptions {
        targets: vec![exporter.addr()],
        // The sidecar needs external labels; `replica` is Query's replica label.
        external_labels: vec![("replica".into(), "0".into())],
        ..PrometheusOptions::default()
    })
    .await
    .unwrap();
    let sidecar = ThanosSidecar::start(&prometheus).await.unwrap();
    Backend {
        _exporter: exporter,
        _prometheus: prometheus,
        sidecar,
    }
}

fn pod_values(answer: &Answer) -> Vec<(String, String)> {
    let mut got: Vec<(String, String)> = answer
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
    got
}

async fn external_names(registry: &Registry) -> Vec<String> {
    registry.get(EXTERNAL).await.body["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| r["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
#[ignore = "needs Prometheus and Thanos built from Go (scripts/build-thanos.sh): run through scripts/test.sh"]
async fn thanos_query_in_front_of_prometheus_serves_object_pods_and_external() {
    let backend = backend().await;
    let mut query = ThanosQuery::start(&backend.sidecar, None).await.unwrap();
    // Two samples of the counter through Query: the sidecar is connected and irate() works.
    query
        .wait_for_series(
            "count_over_time(requests_total[10s]) > 1",
            Duration::from_secs(60),
            &[],
        )
        .await
        .unwrap();
    let registry = Registry::start(
        RegistryOptions::new(query.url()),
        &[("defs.yaml", BACKEND_DEFINITIONS)],
    )
    .await
    .unwrap();

    // Without tenancy both tenants' series are read: max and sum show it.
    let object = registry.get(OBJECT).await;
    assert_eq!(
        (object.status, object.value(0)),
        (200, "52500m"),
        "{}",
        object.body
    );
    let rate = registry.get(RATE).await;
    assert_eq!(
        (rate.status, rate.value(0)),
        (200, "27500m"),
        "{}",
        rate.body
    );
    let pods = registry.get(PODS).await;
    assert_eq!(pods.status, 200, "{}", pods.body);
    assert_eq!(
        pod_values(&pods),
        [
            ("cart-1".into(), "33".into()),
            ("cart-2".into(), "44".into())
        ]
    );
    registry
        .wait_until(EXTERNAL, Duration::from_secs(10), |a| {
            a.body.to_string().contains("\"b_only\"")
        })
        .await
        .unwrap();
    assert_eq!(external_names(&registry).await, ["b_only", "queue"]);
    let queue = registry
        .get(&format!(
            "{EXTERNAL}/namespaces/shop/queue?labelSelector=tenant_id%3Dtenant-a"
        ))
        .await;
    assert_eq!(queue.status, 200, "{}", queue.body);
    assert_eq!(queue.items().len(), 1, "{}", queue.body);
    assert_eq!(queue.value(0), "3");
    // Query dropped the replica label, as it does for an HA pair.
    let labels = &queue.body["items"][0]["metricLabels"];
    assert_eq!(
        (&labels["queue"], &labels["replica"]),
        (&json!("orders"), &serde_json::Value::Null),
        "{labels}"
    );

    // Query stopped: the same clear 503 as for Prometheus.
    query.stop();
    let down = registry.get(OBJECT).await;
    assert_eq!(down.status, 503, "{}", down.body);
    assert!(
        down.message()
            .contains(&format!("Prometheus at {} is unreachable", query.url())),
        "{}",
        down.message()
    );
    println!(
        "Thanos Query: object 52500m, rate 27500m, pods cart-1=33 cart-2=44, external queue{{tenant-a}}=3; stopped → 503"
    );
    registry.stop().await;
}

#[tokio::test]
#[ignore = "needs Prometheus and Thanos built from Go (scripts/build-thanos.sh): run through scripts/test.sh"]
async fn tenant_header_selects_what_an_enforcing_thanos_query_serves() {
    let backend = backend().await;
    let tenancy = Tenancy {
        header: TENANT_HEADER.into(),
        label: TENANT_LABEL.into(),
    };
    let query = ThanosQuery::start(&backend.sidecar, Some(&tenancy))
        .await
        .unwrap();
    for tenant in ["tenant-a", "tenant-b"] {
        query
            .wait_for_series(
                "count_over_time(requests_total[10s]) > 1",
                Duration::from_secs(60),
                &[(TENANT_HEADER, tenant)],
            )
            .await
            .unwrap();
    }
    let registry_for = |tenant: Option<&str>| {
        let mut options = RegistryOptions::new(query.url());
        options.prometheus_headers = tenant
            .map(|t| vec![(TENANT_HEADER.to_owned(), t.to_owned())])
            .unwrap_or_default();
        Registry::start(options, &[("defs.yaml", BACKEND_DEFINITIONS)])
    };

    for (tenant, object, rate, pods, queue) in [
        ("tenant-a", "5250m", "2500m", ["3", "4"], "3"),
        ("tenant-b", "52500m", "25", ["30", "40"], "30"),
    ] {
        let registry = registry_for(Some(tenant)).await.unwrap();
        let answer = registry.get(OBJECT).await;
        assert_eq!(
            (answer.status, answer.value(0)),
            (200, object),
            "{tenant}: {}",
            answer.body
        );
        let answer = registry.get(RATE).await;
        assert_eq!(
            (answer.status, answer.value(0)),
            (200, rate),
            "{tenant}: {}",
            answer.body
        );
        let answer = registry.get(PODS).await;
        assert_eq!(
            pod_values(&answer),
            [
                ("cart-1".to_owned(), pods[0].to_owned()),
                ("cart-2".to_owned(), pods[1].to_owned())
            ],
            "{tenant}: {}",
            answer.body
        );
        // No selector: every series the tenant may see, and only those.
        let answer = registry
            .get(&format!("{EXTERNAL}/namespaces/shop/queue"))
            .await;
        assert_eq!(answer.items().len(), 1, "{tenant}: {}", answer.body);
        assert_eq!(answer.value(0), queue, "{tenant}");
        assert_eq!(
            answer.body["items"][0]["metricLabels"][TENANT_LABEL], tenant,
            "{}",
            answer.body
        );
        // Discovery reads label values through the same header.
        let expected: &[&str] = if tenant == "tenant-b" {
            &["b_only", "queue"]
        } else {
            &["queue"]
        };
        registry
            .wait_until(EXTERNAL, Duration::from_secs(10), |a| {
                a.body.to_string().contains("\"queue\"")
            })
            .await
            .unwrap();
        assert_eq!(external_names(&registry).await, expected, "{tenant}");
        println!(
            "{TENANT_HEADER}={tenant}: object {object}, rate {rate}, pods {pods:?}, external queue {queue}, discovery {expected:?}"
        );
        registry.stop().await;
    }

    // Without the header Query uses its default tenant, which has no series.
    let registry = registry_for(None).await.unwrap();
    let answer = registry.get(OBJECT).await;
    assert_eq!(answer.status, 404, "{}", answer.body);
    let answer = registry
        .get(&format!("{EXTERNAL}/namespaces/shop/b_only"))
        .await;
    assert_eq!(answer.status, 404, "{}", answer.body);
    println!("no header: 404 for the object and for tenant-b's external metric");
    registry.stop().await;
}
