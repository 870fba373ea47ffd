//! AWS SigV4 for a `MetricsBackend` (Amazon Managed Service for Prometheus): the real
//! binary, with credentials in its environment — static keys, then a web identity
//! exchanged at a stand-in STS — signs every query, and a gateway in front of a real
//! Prometheus checks each signature with its own implementation of the algorithm (AWS'
//! published steps, on ring's HMAC-SHA256; no code shared with the signer) before it
//! forwards. A wrong secret is refused by the gateway and reported as such.

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use metrics_registry_tests::exporter::Exporter;
use metrics_registry_tests::ports::free_addr;
use metrics_registry_tests::registry_process::binary;
use metrics_registry_tests::stack::scraping;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const REGION: &str = "eu-west-1";
const STATIC_KEY: &str = "AKIDSTATIC";
const STATIC_SECRET: &str = "static-secret";
const WEB_KEY: &str = "ASIAWEB";
const WEB_SECRET: &str = "web-secret";
const WEB_SESSION: &str = "web-session-token";
const ROLE: &str = "arn:aws:iam::123456789012:role/metrics-registry";
const WEB_TOKEN: &str = "projected-service-account-token";

struct Gateway {
    prometheus: String,
    http: reqwest::Client,
    verified: AtomicUsize,
    refused: AtomicUsize,
    exchanged: AtomicUsize,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256(data: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, data).as_ref())
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    ring::hmac::sign(&key, data).as_ref().to_vec()
}

/// RFC 3986 unreserved characters stay; everything else is `%XX`, upper case.
fn aws_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Why the request's signature is not what `secret` makes of it, if it is not.
fn check_signature(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    key: &str,
    secret: &str,
    session: Option<&str>,
) -> Result<(), String> {
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or("no Authorization")?;
    let rest = authorization
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or("not AWS4-HMAC-SHA256")?;
    let field = |name: &str| {
        rest.split(", ")
            .find_map(|part| part.strip_prefix(&format!("{name}=")))
            .ok_or(format!("no {name}"))
    };
    let credential = field("Credential")?;
    let signed_headers = field("SignedHeaders")?;
    let signature = field("Signature")?;
    let scope_parts: Vec<&str> = credential.splitn(2, '/').collect();
    if scope_parts[0] != key {
        return Err(format!("access key {}", scope_parts[0]));
    }
    let scope = scope_parts[1];
    let [date, region, service, "aws4_request"] = scope.split('/').collect::<Vec<_>>()[..] else {
        return Err(format!("scope {scope}"));
    };
    if (region, service) != (REGION, "aps") {
        return Err(format!("region/service {region}/{service}"));
    }
    let amz_date = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or("no X-Amz-Date")?;
    if headers
        .get("x-amz-security-token")
        .and_then(|v| v.to_str().ok())
        != session
    {
        return Err("X-Amz-Security-Token".into());
    }
    for needed in ["host", "x-amz-date"] {
        if !signed_headers.split(';').any(|h| h == needed) {
            return Err(format!("{needed} is not signed"));
        }
    }
    let url = reqwest::Url::parse(&format!("http://x{uri}")).unwrap();
    let mut pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (aws_encode(&k), aws_encode(&v)))
        .collect();
    pairs.sort();
    let query = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let canonical_headers: String = signed_headers
        .split(';')
        .map(|name| {
            let value = headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            format!(
                "{name}:{}\n",
                value.split_whitespace().collect::<Vec<_>>().join(" ")
            )
        })
        .collect();
    let canonical_request = format!(
        "{method}\n{}\n{query}\n{canonical_headers}\n{signed_headers}\n{}",
        uri.path(),
        sha256(body)
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        sha256(canonical_request.as_bytes())
    );
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    let k_signing = hmac(&k_service, b"aws4_request");
    let expected = hex(&hmac(&k_signing, string_to_sign.as_bytes()));
    if expected != signature {
        return Err("signature mismatch".into());
    }
    Ok(())
}

async fn query(
    State(gateway): State<Arc<Gateway>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let checks = [
        (STATIC_KEY, STATIC_SECRET, None),
        (WEB_KEY, WEB_SECRET, Some(WEB_SESSION)),
    ];
    let verdicts: Vec<Result<(), String>> = checks
        .iter()
        .map(|(key, secret, session)| {
            check_signature(&method, &uri, &headers, &body, key, secret, *session)
        })
        .collect();
    if !verdicts.iter().any(Result::is_ok) {
        gateway.refused.fetch_add(1, Ordering::SeqCst);
        let why = verdicts
            .into_iter()
            .filter_map(Result::err)
            .collect::<Vec<_>>()
            .join("; ");
        let body = serde_json::json!({"status": "error", "errorType": "forbidden", "error": why});
        return (StatusCode::FORBIDDEN, body.to_string()).into_response();
    }
    gateway.verified.fetch_add(1, Ordering::SeqCst);
    let mut forward = gateway
        .http
        .request(method.clone(), format!("{}{}", gateway.prometheus, uri))
        .body(body.to_vec());
    if let Some(kind) = headers.get("content-type") {
        forward = forward.header("content-type", kind.clone());
    }
    let answer = forward.send().await.unwrap();
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap();
    (status, answer.text().await.unwrap()).into_response()
}

/// STS' `AssumeRoleWithWebIdentity`, for the one role and token of this test.
async fn sts(State(gateway): State<Arc<Gateway>>, body: String) -> Response {
    let form: Vec<(String, String)> = reqwest::Url::parse(&format!("http://x/?{body}"))
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let get = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if get("Action") != Some("AssumeRoleWithWebIdentity")
        || get("RoleArn") != Some(ROLE)
        || get("WebIdentityToken") != Some(WEB_TOKEN)
    {
        return (
            StatusCode::FORBIDDEN,
            "<Error><Code>AccessDenied</Code></Error>",
        )
            .into_response();
    }
    gateway.exchanged.fetch_add(1, Ordering::SeqCst);
    let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
    format!(
        "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>\
         <AccessKeyId>{WEB_KEY}</AccessKeyId><SecretAccessKey>{WEB_SECRET}</SecretAccessKey>\
         <SessionToken>{WEB_SESSION}</SessionToken><Expiration>{}</Expiration>\
         </Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>",
        expires.strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    .into_response()
}

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The binary in standalone mode with `env` added to its environment.
fn start(manifests: &std::path::Path, prometheus: &str, env: &[(&str, &str)]) -> Server {
    let addr = free_addr();
    let mut command = Command::new(binary().unwrap());
    command
        .args(["run", "--manifests"])
        .arg(manifests)
        .args([
            "--insecure-listen",
            &addr.to_string(),
            "--prometheus-url",
            prometheus,
        ])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_ROLE_ARN")
        .env_remove("AWS_WEB_IDENTITY_TOKEN_FILE")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (name, value) in env {
        command.env(name, value);
    }
    Server {
        child: command.spawn().unwrap(),
        base: format!("http://{addr}"),
    }
}

const PATH: &str = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/team-a/services/orders/via-aws";

/// Polls until the server answers something other than "not up yet" or a 404 of a
/// definition not loaded yet; returns the status and body.
async fn answer(server: &Server) -> (u16, serde_json::Value) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(response) = reqwest::get(format!("{}{PATH}", server.base)).await {
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            if status != 404 {
                return (status, body);
            }
        }
        assert!(Instant::now() < deadline, "no answer from {}", server.base);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
#[ignore = "needs Prometheus (Debian's prometheus): run through scripts/test.sh"]
async fn queries_are_signed_with_credentials_from_the_environment_chain() {
    metrics_registry_tests::init_test_logging();
    let exporter = Exporter::start().await.unwrap();
    exporter.set(
        "queue_depth",
        &[("namespace", "team-a"), ("service", "orders")],
        7.0,
    );
    let (prometheus, _rules) = scraping(&exporter, "queue_depth").await.unwrap();
    let gateway = Arc::new(Gateway {
        prometheus: prometheus.url(),
        http: reqwest::Client::new(),
        verified: AtomicUsize::new(0),
        refused: AtomicUsize::new(0),
        exchanged: AtomicUsize::new(0),
    });
    let app = axum::Router::new()
        .route("/api/v1/query", axum::routing::get(query).post(query))
        .route("/sts", axum::routing::post(sts))
        .with_state(gateway.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("defs");
    std::fs::create_dir(&manifests).unwrap();
    std::fs::write(
        manifests.join("defs.yaml"),
        format!(
            r#"
apiVersion: metrics-registry.io/v1beta1
kind: MetricsBackend
metadata: {{name: amp}}
spec:
  url: {gateway_url}
  auth: {{sigv4: {{region: {REGION}}}}}
---
apiVersion: metrics-registry.io/v1beta1
kind: ServiceMetric
metadata: {{name: via-aws, namespace: team-a}}
spec:
  backend: amp
  query: sum by (<<.GroupBy>>) (queue_depth{{<<.LabelMatchers>>}})
"#
        ),
    )
    .unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, WEB_TOKEN).unwrap();

    // Static keys from the environment.
    let server = start(
        &manifests,
        &prometheus.url(),
        &[
            ("AWS_ACCESS_KEY_ID", STATIC_KEY),
            ("AWS_SECRET_ACCESS_KEY", STATIC_SECRET),
        ],
    );
    let (status, body) = answer(&server).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["items"][0]["value"], "7", "{body}");
    drop(server);

    // A web identity, exchanged at STS for temporary credentials with a session token.
    let sts_url = format!("{gateway_url}/sts");
    let token_path = token_file.display().to_string();
    let server = start(
        &manifests,
        &prometheus.url(),
        &[
            ("AWS_ROLE_ARN", ROLE),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", &token_path),
            ("AWS_ENDPOINT_URL_STS", &sts_url),
        ],
    );
    let (status, body) = answer(&server).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["items"][0]["value"], "7", "{body}");
    for _ in 0..3 {
        assert_eq!(answer(&server).await.0, 200);
    }
    assert_eq!(
        gateway.exchanged.load(Ordering::SeqCst),
        1,
        "credentials reused"
    );
    drop(server);
    assert_eq!(gateway.refused.load(Ordering::SeqCst), 0);
    let verified = gateway.verified.load(Ordering::SeqCst);

    // A wrong secret: the gateway's refusal, quoted, and the secret nowhere.
    let server = start(
        &manifests,
        &prometheus.url(),
        &[
            ("AWS_ACCESS_KEY_ID", STATIC_KEY),
            ("AWS_SECRET_ACCESS_KEY", "wrong-secret"),
        ],
    );
    let (status, body) = answer(&server).await;
    let message = body["message"].as_str().unwrap_or_default().to_owned();
    assert_eq!(status, 502, "{body}");
    assert!(
        message.contains("HTTP 403") && message.contains("signature mismatch"),
        "{message}"
    );
    assert!(!message.contains("wrong-secret"), "{message}");
    // No credentials at all: 503 naming the chain.
    drop(server);
    let server = start(&manifests, &prometheus.url(), &[]);
    let (status, body) = answer(&server).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("no AWS credentials"),
        "{body}"
    );
    println!(
        "SigV4: {verified} queries verified by an independent signature check (static keys, then a web identity exchanged once at STS); wrong secret → 502 quoting the 403; no credentials → 503"
    );
}
