//! The chart's ServiceMonitor and its RBAC, for real: rendered by helm, stored by a real
//! kube-apiserver under prometheus-operator's own `ServiceMonitor` CRD (its strict schema
//! prunes any field it does not know, so what comes back must equal what was rendered),
//! and the service account it names can then read `/metrics` from metrics-registry in
//! cluster mode (real TokenReview and SubjectAccessReview), while another cannot.

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use metrics_registry_tests::cluster_mode::{InProcessOperator, install_crds, wait_established};
use metrics_registry_tests::control_plane::{ControlPlane, ControlPlaneOptions};
use metrics_registry_tests::e2e::{apply_yaml, chart_dir, helm};
use metrics_registry_tests::third_party::service_monitor_crd;
use serde_json::Value;
use std::time::{Duration, Instant};

const RELEASE: &str = "metrics-registry";
const NAMESPACE: &str = "metrics-registry";

async fn token(admin: &kube::Client, namespace: &str, name: &str) -> String {
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), namespace);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    accounts
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .expect("a token")
        .status
        .expect("a token status")
        .token
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the control plane and helm built from Go and prometheus-operator's ServiceMonitor CRD: run through scripts/test.sh"]
async fn chart_service_monitor_is_accepted_and_its_account_reads_metrics() {
    metrics_registry_tests::init_test_logging();
    let plane = ControlPlane::start(ControlPlaneOptions::default())
        .await
        .expect("control plane starts");
    let admin = plane.admin_client().await.unwrap();
    install_crds(&admin).await.unwrap();
    apply_yaml(&admin, &service_monitor_crd().await.unwrap())
        .await
        .unwrap();
    wait_established(
        &Api::all(admin.clone()),
        "servicemonitors.monitoring.coreos.com",
    )
    .await
    .unwrap();
    apply_yaml(
        &admin,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: metrics-registry}\n---\n\
         apiVersion: v1\nkind: Namespace\nmetadata: {name: monitoring}\n---\n\
         apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: prometheus-k8s, namespace: monitoring}\n---\n\
         apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: someone-else, namespace: monitoring}\n",
    )
    .await
    .unwrap();

    let rendered = helm(
        plane.kubeconfig_path(),
        &[
            "template",
            RELEASE,
            &chart_dir().display().to_string(),
            "--namespace",
            NAMESPACE,
            "--show-only",
            "templates/servicemonitor.yaml",
            "--set",
            "serviceMonitor.enabled=true",
            "--set",
            "serviceMonitor.prometheusServiceAccount.name=prometheus-k8s",
            "--set",
            "serviceMonitor.prometheusServiceAccount.namespace=monitoring",
        ],
    )
    .await
    .unwrap();
    apply_yaml(&admin, &rendered).await.unwrap();

    // Stored as rendered: the real schema kept every field.
    let monitor_yaml = rendered
        .split("\n---")
        .find(|document| document.contains("\nkind: ServiceMonitor\n"))
        .expect("a ServiceMonitor is rendered");
    let wanted: Value = serde_saphyr::from_str(monitor_yaml).unwrap();
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "monitoring.coreos.com",
        "v1",
        "ServiceMonitor",
    ));
    let monitors: Api<DynamicObject> = Api::namespaced_with(admin.clone(), NAMESPACE, &resource);
    let stored = monitors.get(RELEASE).await.expect("the ServiceMonitor");
    assert_eq!(stored.data["spec"], wanted["spec"]);
    assert_eq!(stored.data["spec"]["endpoints"][0]["port"], "https");
    assert_eq!(
        stored.data["spec"]["endpoints"][0]["tlsConfig"]["ca"]["secret"]["key"],
        "ca.crt"
    );

    // The bound account reads /metrics from a server doing real reviews; another cannot.
    let operator = InProcessOperator::start(&plane, "http://127.0.0.1:9", None)
        .await
        .unwrap();
    let http = reqwest::Client::builder()
        // The server's own certificate is not what is tested here.
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let url = format!("https://{}/metrics", operator.addr);
    let prometheus = token(&admin, "monitoring", "prometheus-k8s").await;
    let someone_else = token(&admin, "monitoring", "someone-else").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        operator.check_running().unwrap();
        let answer = http.get(&url).bearer_auth(&prometheus).send().await;
        if let Ok(answer) = answer
            && answer.status() == 200
        {
            break answer.text().await.unwrap();
        }
        assert!(Instant::now() < deadline, "/metrics within 30 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        body.contains("metrics_registry_auth_reviews_total"),
        "{body}"
    );
    // The first scrape is counted once answered, so the second shows it.
    let body = http
        .get(&url)
        .bearer_auth(&prometheus)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        body.lines().any(
            |line| line.starts_with("metrics_registry_http_requests_total{")
                && line.contains("resource=\"metrics\"")
                && line.contains("code=\"200\"")
        ),
        "{body}"
    );
    let refused = http
        .get(&url)
        .bearer_auth(&someone_else)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let status: Value = refused.json().await.unwrap();
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "Forbidden");
    operator.stop().await;
}
