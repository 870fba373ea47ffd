//! `MetricsBackend` credentials from Secrets (`--secrets-dir` in standalone mode, laid out
//! as mounted Secrets): basic auth, a bearer token and OAuth2 client credentials, each
//! checked by a gateway written here in front of a real Prometheus — it forwards only
//! requests whose credentials it issued or expects — and an OAuth2 token endpoint that
//! checks the client's id, secret, grant type and scope and issues short-lived tokens.
//! Rotated Secrets are picked up; a wrong password is a clear error that never shows it.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use metrics_registry_tests::exporter::Exporter;
use metrics_registry_tests::prometheus::Prometheus;
use metrics_registry_tests::registry::{Registry, RegistryOptions};
use metrics_registry_tests::stack::scraping;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const CLIENT_ID: &str = "metrics-registry";
const CLIENT_SECRET: &str = "client-s3cret";
const SCOPE: &str = "metrics.read";
/// Short, so that the test sees tokens renewed.
const TOKEN_LIFETIME_SECS: u64 = 2;

/// What the gateway lets through.
#[derive(Default)]
struct Gate {
    basic: Mutex<Option<(String, String)>>,
    bearer: Mutex<BTreeSet<String>>,
    issued: AtomicUsize,
    refused: AtomicUsize,
    prometheus: String,
    http: reqwest::Client,
}

fn basic_of(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

async fn token(State(gate): State<Arc<Gate>>, headers: HeaderMap, body: String) -> Response {
    // The form's values here need no decoding beyond `+` (none holds `%` escapes).
    let form: BTreeMap<String, String> = body
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.replace('+', " ")))
        .collect();
    let client = basic_of(&headers);
    if client != Some((CLIENT_ID.to_owned(), CLIENT_SECRET.to_owned()))
        || form.get("grant_type").map(String::as_str) != Some("client_credentials")
        || form.get("scope").map(String::as_str) != Some(SCOPE)
    {
        return (StatusCode::UNAUTHORIZED, r#"{"error":"invalid_client"}"#).into_response();
    }
    let n = gate.issued.fetch_add(1, Ordering::SeqCst) + 1;
    let token = format!("issued-{n}");
    gate.bearer.lock().unwrap().insert(token.clone());
    axum::Json(serde_json::json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": TOKEN_LIFETIME_SECS,
    }))
    .into_response()
}

async fn query(
    State(gate): State<Arc<Gate>>,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let basic_ok =
        basic_of(&headers).is_some_and(|pair| gate.basic.lock().unwrap().as_ref() == Some(&pair));
    let bearer_ok = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|token| gate.bearer.lock().unwrap().contains(token));
    if !basic_ok && !bearer_ok {
        gate.refused.fetch_add(1, Ordering::SeqCst);
        return (
            StatusCode::UNAUTHORIZED,
            r#"{"status":"error","errorType":"unauthorized","error":"bad credentials"}"#,
        )
            .into_response();
    }
    let answer = gate
        .http
        .get(format!("{}/api/v1/query", gate.prometheus))
        .query(&params)
        .send()
        .await
        .unwrap();
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap();
    (status, answer.text().await.unwrap()).into_response()
}

async fn gateway(prometheus: &Prometheus) -> (String, Arc<Gate>) {
    let gate = Arc::new(Gate {
        prometheus: prometheus.url(),
        http: reqwest::Client::new(),
        ..Gate::default()
    });
    let app = axum::Router::new()
        .route("/token", axum::routing::post(token))
        .route("/api/v1/query", axum::routing::get(query).post(query))
        .with_state(gate.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, gate)
}

fn write_secret(dir: &Path, name: &str, key: &str, value: &str) {
    std::fs::create_dir_all(dir.join(name)).unwrap();
    // As the kubelet updates a mounted Secret: a new file swapped in.
    let tmp = dir.join(name).join(format!(".{key}.tmp"));
    std::fs::write(&tmp, value).unwrap();
    std::fs::rename(tmp, dir.join(name).join(key)).unwrap();
}

fn definitions(gateway: &str) -> String {
    let mut text = format!(
        r#"
apiVersion: metrics-registry.io/v1beta1
kind: MetricsBackend
metadata: {{name: basic}}
spec:
  url: {gateway}
  auth: {{basic: {{username: reader, password: {{name: prom-basic, key: password}}}}}}
---
apiVersion: metrics-registry.io/v1beta1
kind: MetricsBackend
metadata: {{name: bearer}}
spec:
  url: {gateway}
  auth: {{bearerToken: {{name: prom-token, key: token}}}}
---
apiVersion: metrics-registry.io/v1beta1
kind: MetricsBackend
metadata: {{name: oauth2}}
spec:
  url: {gateway}
  auth:
    oauth2:
      tokenUrl: {gateway}/token
      clientId: {CLIENT_ID}
      clientSecret: {{name: idp, key: client-secret}}
      scopes: [{SCOPE}]
"#
    );
    for backend in ["basic", "bearer", "oauth2"] {
        text.push_str(&format!(
            r#"---
apiVersion: metrics-registry.io/v1beta1
kind: ServiceMetric
metadata: {{name: via-{backend}, namespace: team-a}}
spec:
  backend: {backend}
  query: sum by (<<.GroupBy>>) (queue_depth{{<<.LabelMatchers>>}})
"#
        ));
    }
    text
}

fn path(backend: &str) -> String {
    format!("/apis/custom.metrics.k8s.io/v1beta2/namespaces/team-a/services/orders/via-{backend}")
}

#[tokio::test]
#[ignore = "needs Prometheus (Debian's prometheus): run through scripts/test.sh"]
async fn credentials_come_from_secrets_and_follow_their_rotation() {
    metrics_registry_tests::init_test_logging();
    let exporter = Exporter::start().await.unwrap();
    exporter.set(
        "queue_depth",
        &[("namespace", "team-a"), ("service", "orders")],
        7.0,
    );
    let (prometheus, _rules) = scraping(&exporter, "queue_depth").await.unwrap();
    let (gateway_url, gate) = gateway(&prometheus).await;
    *gate.basic.lock().unwrap() = Some(("reader".into(), "pa55word".into()));
    gate.bearer.lock().unwrap().insert("static-token".into());

    let secrets = tempfile::tempdir().unwrap();
    write_secret(secrets.path(), "prom-basic", "password", "pa55word\n");
    write_secret(secrets.path(), "prom-token", "token", "static-token");
    write_secret(secrets.path(), "idp", "client-secret", CLIENT_SECRET);
    let mut options = RegistryOptions::new(prometheus.url());
    options.secrets_dir = Some(secrets.path().to_path_buf());
    let registry = Registry::start(options, &[("defs.yaml", &definitions(&gateway_url))])
        .await
        .unwrap();

    for backend in ["basic", "bearer", "oauth2"] {
        let answer = registry.get(&path(backend)).await;
        assert_eq!(
            (answer.status, answer.value(0)),
            (200, "7"),
            "{backend}: {}",
            answer.body
        );
    }
    assert_eq!(gate.refused.load(Ordering::SeqCst), 0);
    let first = gate.issued.load(Ordering::SeqCst);
    assert_eq!(first, 1, "one token for the first queries");

    // Tokens are reused while good and renewed before they expire: no query is refused.
    for _ in 0..12 {
        let answer = registry.get(&path("oauth2")).await;
        assert_eq!(
            (answer.status, answer.value(0)),
            (200, "7"),
            "{}",
            answer.body
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let renewed = gate.issued.load(Ordering::SeqCst);
    assert!(
        (2..=4).contains(&renewed),
        "{renewed} tokens in 3 s of {TOKEN_LIFETIME_SECS} s tokens"
    );
    assert_eq!(gate.refused.load(Ordering::SeqCst), 0);

    // The bearer token rotates: the gateway takes only the new one, the Secret follows.
    {
        let mut bearer = gate.bearer.lock().unwrap();
        bearer.remove("static-token");
        bearer.insert("rotated-token".into());
    }
    write_secret(secrets.path(), "prom-token", "token", "rotated-token");
    let took = registry
        .wait_until(&path("bearer"), Duration::from_secs(10), |a| {
            a.status == 200 && a.value(0) == "7"
        })
        .await
        .unwrap();

    // A wrong password: the gateway's refusal, named, and the password nowhere.
    write_secret(secrets.path(), "prom-basic", "password", "wr0ng-pa55");
    registry
        .wait_until(&path("basic"), Duration::from_secs(10), |a| a.status == 502)
        .await
        .unwrap();
    let refused = registry.get(&path("basic")).await;
    let message = refused.message();
    assert!(
        message.contains(&gateway_url) && message.contains("HTTP 401"),
        "{message}"
    );
    assert!(
        !message.contains("wr0ng") && !message.contains("pa55"),
        "{message}"
    );
    // A Secret that is gone: the backend says which.
    std::fs::remove_file(secrets.path().join("idp/client-secret")).unwrap();
    registry
        .wait_until(&path("oauth2"), Duration::from_secs(10), |a| {
            a.status == 503 && a.message().contains("idp/client-secret")
        })
        .await
        .unwrap();
    println!(
        "credentials from Secrets: basic, bearer and OAuth2 served 7 through a checking gateway; \
         {renewed} OAuth2 tokens of {TOKEN_LIFETIME_SECS} s in 3 s, none refused; \
         rotated bearer token used after {took:?}; wrong password → 502 naming HTTP 401, no secret shown; \
         missing Secret → 503 naming it"
    );
    registry.stop().await;
}
