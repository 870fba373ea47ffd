//! A `MetricsBackend` on the real control plane, read through kube-apiserver's aggregator:
//! its bearer token is a Secret of metrics-registry's namespace, read under the chart's
//! RBAC (the server runs as the chart's ServiceAccount) and followed when it rotates; its
//! tenant is a label of the asking namespace; its probe reaches the status. In front of
//! the real Prometheus sits a gateway that answers only the current token and records the
//! tenant each query names.

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use metrics_registry_tests::e2e::E2e;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const EXTERNAL: &str = "/apis/external.metrics.k8s.io/v1beta1";

#[derive(Default)]
struct Gate {
    token: Mutex<String>,
    tenants: Mutex<Vec<String>>,
    prometheus: String,
}

async fn forward(
    State(gate): State<Arc<Gate>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let expected = format!("Bearer {}", gate.token.lock().unwrap());
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return (
            StatusCode::UNAUTHORIZED,
            r#"{"status":"error","errorType":"unauthorized","error":"wrong token"}"#,
        )
            .into_response();
    }
    if let Some(tenant) = headers.get("x-scope-orgid").and_then(|v| v.to_str().ok()) {
        gate.tenants.lock().unwrap().push(tenant.to_owned());
    }
    let mut request = reqwest::Client::new()
        .request(method, format!("{}{uri}", gate.prometheus))
        .body(body.to_vec());
    if let Some(kind) = headers.get("content-type") {
        request = request.header("content-type", kind.clone());
    }
    let answer = request.send().await.unwrap();
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap();
    (status, answer.text().await.unwrap()).into_response()
}

#[tokio::test]
#[ignore = "needs a real node: run through scripts/test.sh (network namespace, containerd, kubelet)"]
async fn a_backend_with_a_secret_token_and_a_tenant_per_namespace_label() {
    let e2e = E2e::start(|exporter| {
        for (namespace, depth) in [("shop", 12.0), ("lab", 5.0)] {
            exporter.set(
                "queue_depth",
                &[("namespace", namespace), ("queue", "q")],
                depth,
            );
        }
    })
    .await
    .expect("end-to-end stack starts");
    let gate = Arc::new(Gate {
        token: Mutex::new("first-token".into()),
        prometheus: e2e.prometheus.url(),
        ..Gate::default()
    });
    let app = axum::Router::new()
        .fallback(forward)
        .with_state(gate.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let secret = |token: &str| {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: gateway-token, namespace: metrics-registry}}\nstringData: {{token: {token}}}\n"
        )
    };
    e2e.apply_yaml(&secret("first-token")).await.unwrap();
    e2e.apply_yaml(&format!(
        r#"
apiVersion: v1
kind: Namespace
metadata: {{name: shop, labels: {{tenant: acme}}}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: lab}}
---
apiVersion: metrics-registry.io/v1beta1
kind: MetricsBackend
metadata: {{name: gateway}}
spec:
  url: {gateway}
  auth: {{bearerToken: {{name: gateway-token, key: token}}}}
  tenant: {{header: X-Scope-OrgID, namespaceLabel: tenant}}
---
apiVersion: metrics-registry.io/v1beta1
kind: ClusterExternalMetric
metadata: {{name: depth}}
spec:
  backend: gateway
  namespaceLabel: namespace
  query: sum(queue_depth{{<<.LabelMatchers>>}})
"#
    ))
    .await
    .unwrap();

    let shop = format!("{EXTERNAL}/namespaces/shop/depth");
    let took = e2e
        .wait_raw(&shop, Duration::from_secs(30), |body| {
            body["items"][0]["value"] == "12"
        })
        .await
        .unwrap();
    assert!(
        gate.tenants.lock().unwrap().iter().all(|t| t == "acme"),
        "{:?}",
        gate.tenants.lock().unwrap()
    );
    // A namespace without the label has no tenant on this backend.
    let lab = e2e
        .get_raw(&format!("{EXTERNAL}/namespaces/lab/depth"))
        .await;
    let refused = format!("{lab:?}");
    assert!(
        refused.contains("403") && refused.contains("has no label \\\"tenant\\\""),
        "{refused}"
    );
    // The probe went through with the Secret's token.
    let status = e2e
        .wait_status("MetricsBackend", None, "gateway", |status| {
            status["lastProbe"]["result"] == "Reachable"
        })
        .await;
    assert_eq!(status["conditions"][0]["reason"], "Accepted", "{status}");

    // The token rotates: the gateway takes only the new one; the Secret follows.
    *gate.token.lock().unwrap() = "second-token".into();
    e2e.apply_yaml(&secret("second-token")).await.unwrap();
    let rotated = e2e
        .wait_raw(&shop, Duration::from_secs(30), |body| {
            body["items"][0]["value"] == "12"
        })
        .await
        .unwrap();
    println!(
        "MetricsBackend on the real control plane: shop (tenant=acme) served 12 after {took:?}, every query with X-Scope-OrgID=acme; \
         lab (no label) → 403; probe Reachable with the Secret's token; rotated token served again after {rotated:?}"
    );
    e2e.stop().await;
}
