use super::error::BODY_SNIPPET_LEN;
use super::*;
use axum::extract::Request;
use axum::http::HeaderMap as AxumHeaders;
use reqwest::Url;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const VECTOR: &str = r#"{"status":"success","data":{"resultType":"vector","result":[
    {"metric":{"__name__":"up","job":"api"},"value":[1700000000.123,"102.312"]},
    {"metric":{"job":"nan"},"value":[1700000000.5,"NaN"]},
    {"metric":{"job":"inf"},"value":[1700000001,"+Inf"]}]}}"#;

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    form: Vec<(String, String)>,
    headers: AxumHeaders,
}

type Respond = dyn Fn(&Seen) -> (u16, String) + Send + Sync;

struct Fake {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Fake {
    fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn last(&self) -> Seen {
        self.requests()
            .pop()
            .expect("the fake Prometheus saw no request")
    }
}

fn pairs(encoded: &str) -> Vec<(String, String)> {
    Url::parse(&format!("http://x/?{encoded}"))
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A fake Prometheus that records every request and answers with
/// `respond`, after `delay`.
async fn fake_with_delay(
    delay: Duration,
    respond: impl Fn(&Seen) -> (u16, String) + Send + Sync + 'static,
) -> Fake {
    install_provider();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let respond: Arc<Respond> = Arc::new(respond);
    let recorder = seen.clone();
    let app = axum::Router::new().fallback(move |request: Request| {
        let recorder = recorder.clone();
        let respond = respond.clone();
        async move {
            let (parts, body) = request.into_parts();
            let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
            let seen = Seen {
                method: parts.method.to_string(),
                path: parts.uri.path().to_owned(),
                query: pairs(parts.uri.query().unwrap_or("")),
                form: pairs(&String::from_utf8_lossy(&body)),
                headers: parts.headers,
            };
            recorder.lock().unwrap().push(seen.clone());
            tokio::time::sleep(delay).await;
            let (status, body) = respond(&seen);
            (
                axum::http::StatusCode::from_u16(status).unwrap(),
                [("content-type", "application/json")],
                body,
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Fake { url, seen }
}

async fn fake(respond: impl Fn(&Seen) -> (u16, String) + Send + Sync + 'static) -> Fake {
    fake_with_delay(Duration::ZERO, respond).await
}

fn ok(body: &str) -> impl Fn(&Seen) -> (u16, String) + Send + Sync + 'static {
    let body = body.to_owned();
    move |_| (200, body.clone())
}

fn client(config: PrometheusConfig) -> PrometheusClient {
    install_provider();
    PrometheusClient::new(config).expect("valid config")
}

fn write_file(dir: &tempfile::TempDir, name: &str, content: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, content).unwrap();
    path
}

fn header<'a>(seen: &'a Seen, name: &str) -> Option<&'a str> {
    seen.headers.get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn decodes_vector_keeping_values_verbatim() {
    let prom = fake(ok(VECTOR)).await;
    let samples = client(PrometheusConfig::new(&prom.url))
        .query("up")
        .await
        .unwrap();
    assert_eq!(samples.len(), 3);
    assert_eq!(
        samples[0].labels,
        Labels::from_iter([
            ("__name__".to_owned(), "up".to_owned()),
            ("job".to_owned(), "api".to_owned())
        ])
    );
    assert_eq!(samples[0].timestamp, 1700000000.123);
    assert_eq!(samples[0].value, "102.312");
    assert_eq!(samples[1].value, "NaN");
    assert_eq!(samples[2].value, "+Inf");
    assert_eq!(samples[2].timestamp, 1700000001.0);

    let seen = prom.last();
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.path, "/api/v1/query");
    // The client's timeout goes along, so Prometheus stops evaluating when we stop waiting.
    assert_eq!(
        seen.query,
        vec![
            ("query".to_owned(), "up".to_owned()),
            ("timeout".to_owned(), "10000ms".to_owned())
        ]
    );
}

#[tokio::test]
async fn decodes_empty_vector() {
    let prom = fake(ok(
        r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#,
    ))
    .await;
    let samples = client(PrometheusConfig::new(&prom.url))
        .query("absent_metric")
        .await
        .unwrap();
    assert!(samples.is_empty());
}

#[tokio::test]
async fn decodes_scalar_as_one_unlabelled_sample() {
    let prom = fake(ok(
        r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000.5,"42"]}}"#,
    ))
    .await;
    let samples = client(PrometheusConfig::new(&prom.url))
        .query("scalar(up)")
        .await
        .unwrap();
    assert_eq!(
        samples,
        vec![Sample {
            labels: Labels::default(),
            timestamp: 1700000000.5,
            value: "42".to_owned()
        }]
    );
}

#[tokio::test]
async fn matrix_and_string_results_are_unexpected() {
    let prom = fake(|seen: &Seen| {
        let body = if seen.query[0].1 == "up[5m]" {
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"1"]]}]}}"#
        } else {
            r#"{"status":"success","data":{"resultType":"string","result":[1,"foo"]}}"#
        };
        (200, body.to_owned())
    })
    .await;
    let client = client(PrometheusConfig::new(&prom.url));
    for (query, expected) in [("up[5m]", "matrix"), ("\"foo\"", "string")] {
        match client.query(query).await {
            Err(e @ PrometheusError::UnexpectedResult { .. }) => {
                assert_eq!(e.http_status(), 502);
                let PrometheusError::UnexpectedResult { result_type, .. } = e else {
                    unreachable!()
                };
                assert_eq!(result_type, expected);
            }
            other => panic!("expected UnexpectedResult, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn auto_method_switches_to_post_for_long_queries() {
    let prom = fake(ok(VECTOR)).await;
    let client = client(PrometheusConfig::new(&prom.url));
    let long = format!("up{{job=~\"{}\"}}", "a|".repeat(3000));

    client.query("up").await.unwrap();
    client.query(&long).await.unwrap();

    let seen = prom.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].method, "GET");
    assert_eq!(seen[1].method, "POST");
    assert_eq!(seen[1].path, "/api/v1/query");
    assert!(seen[1].query.is_empty());
    assert_eq!(
        seen[1].form,
        vec![
            ("query".to_owned(), long),
            ("timeout".to_owned(), "10000ms".to_owned())
        ]
    );
    assert_eq!(
        header(&seen[1], "content-type"),
        Some("application/x-www-form-urlencoded")
    );
}

#[tokio::test]
async fn forced_methods_are_honoured() {
    let prom = fake(ok(VECTOR)).await;
    let mut config = PrometheusConfig::new(&prom.url);
    config.method = QueryMethod::Post;
    client(config.clone()).query("up").await.unwrap();
    config.method = QueryMethod::Get;
    client(config).query(&"x".repeat(5000)).await.unwrap();

    let seen = prom.requests();
    assert_eq!(seen[0].method, "POST");
    assert_eq!(
        seen[0].form,
        vec![
            ("query".to_owned(), "up".to_owned()),
            ("timeout".to_owned(), "10000ms".to_owned())
        ]
    );
    assert_eq!(seen[1].method, "GET");
}

#[tokio::test]
async fn keeps_path_prefix_with_or_without_trailing_slash() {
    let prom = fake(ok(VECTOR)).await;
    for base in [format!("{}/prom/", prom.url), format!("{}/prom", prom.url)] {
        let client = client(PrometheusConfig::new(&base));
        assert_eq!(client.url(), format!("{}/prom", prom.url));
        client.query("up").await.unwrap();
        assert_eq!(prom.last().path, "/prom/api/v1/query");
    }
    let root = client(PrometheusConfig::new(format!("{}/", prom.url)));
    assert_eq!(root.url(), prom.url);
    root.query("up").await.unwrap();
    assert_eq!(prom.last().path, "/api/v1/query");
}

#[tokio::test]
async fn bearer_token_is_reread_after_the_file_changes() {
    let prom = fake(ok(VECTOR)).await;
    let dir = tempfile::tempdir().unwrap();
    let token = write_file(&dir, "token", "first-token\n");
    let mut config = PrometheusConfig::new(&prom.url);
    config.bearer_token_file = Some(token.clone());
    let client = client(config);

    for _ in 0..3 {
        client.query("up").await.unwrap();
        assert_eq!(
            header(&prom.last(), "authorization"),
            Some("Bearer first-token")
        );
    }
    assert_eq!(client.token_reads(), 1, "read once while unchanged");

    std::fs::write(&token, "  second-token  \n").unwrap();
    client.query("up").await.unwrap();
    assert_eq!(
        header(&prom.last(), "authorization"),
        Some("Bearer second-token")
    );
    assert_eq!(client.token_reads(), 2);
    // Kubernetes swaps a projected token's file for a new one.
    let replacement = write_file(&dir, "token.new", "third-token");
    std::fs::rename(&replacement, &token).unwrap();
    client.query("up").await.unwrap();
    assert_eq!(
        header(&prom.last(), "authorization"),
        Some("Bearer third-token")
    );

    std::fs::remove_file(&token).unwrap();
    match client.query("up").await {
        Err(e @ PrometheusError::Credentials { .. }) => {
            assert!(e.to_string().contains("token"), "{e}");
            assert!(!e.to_string().contains("second-token"), "{e}");
        }
        other => panic!("expected Credentials, got {other:?}"),
    }
}

#[tokio::test]
async fn basic_auth_reads_the_password_file() {
    let prom = fake(ok(VECTOR)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = PrometheusConfig::new(&prom.url);
    config.basic_auth_user = Some("alice".to_owned());
    config.basic_auth_password_file = Some(write_file(&dir, "password", "s3cret\n"));
    client(config).query("up").await.unwrap();
    // base64("alice:s3cret")
    assert_eq!(
        header(&prom.last(), "authorization"),
        Some("Basic YWxpY2U6czNjcmV0")
    );
}

#[tokio::test]
async fn sends_extra_headers_on_every_endpoint() {
    let prom = fake(|seen: &Seen| match seen.path.as_str() {
        "/api/v1/query" => (200, VECTOR.to_owned()),
        _ => (200, r#"{"status":"success","data":[]}"#.to_owned()),
    })
    .await;
    let mut config = PrometheusConfig::new(&prom.url);
    config.headers = vec![("X-Scope-OrgID".to_owned(), "tenant-1".to_owned())];
    let client = client(config);
    client.query("up").await.unwrap();
    client.label_values("job", &[]).await.unwrap();
    client.ready().await.unwrap();
    for seen in prom.requests() {
        assert_eq!(header(&seen, "x-scope-orgid"), Some("tenant-1"), "{seen:?}");
    }
}

#[tokio::test]
async fn prometheus_error_json_is_rejected() {
    let prom = fake(|_: &Seen| {
        (
            400,
            r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:3: parse error"}"#
                .to_owned(),
        )
    })
    .await;
    let err = client(PrometheusConfig::new(&prom.url))
        .query("up{")
        .await
        .unwrap_err();
    assert_eq!(err.http_status(), 502);
    let PrometheusError::Rejected {
        status,
        ref error_type,
        ref message,
        ..
    } = err
    else {
        panic!("expected Rejected, got {err:?}");
    };
    assert_eq!(status, 400);
    assert_eq!(error_type, "bad_data");
    assert!(message.contains("parse error"), "{message}");
    assert_eq!(
        err.to_string(),
        format!(
            "Prometheus at {} rejected the query: bad_data: invalid parameter \"query\": 1:3: parse error (HTTP 400)",
            prom.url
        )
    );
}

#[tokio::test]
async fn error_status_inside_a_200_is_rejected() {
    let prom = fake(ok(
        r#"{"status":"error","errorType":"execution","error":"many-to-many matching not allowed"}"#,
    ))
    .await;
    let err = client(PrometheusConfig::new(&prom.url))
        .query("a / b")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PrometheusError::Rejected { error_type, .. } if error_type == "execution"),
        "{err:?}"
    );
}

#[tokio::test]
async fn non_json_error_body_is_rejected_with_a_snippet() {
    let page = format!(
        "<html><head><title>414 Request-URI Too Large</title></head>\n<body>{}</body></html>",
        "x".repeat(1000)
    );
    let prom = fake(move |_: &Seen| (414, page.clone())).await;
    let err = client(PrometheusConfig::new(&prom.url))
        .query("up")
        .await
        .unwrap_err();
    assert_eq!(err.http_status(), 502);
    let PrometheusError::Rejected {
        status, message, ..
    } = &err
    else {
        panic!("expected Rejected, got {err:?}");
    };
    assert_eq!(*status, 414);
    assert!(
        message.starts_with("<html><head><title>414 Request-URI Too Large"),
        "{message}"
    );
    assert!(message.chars().count() <= BODY_SNIPPET_LEN + 3, "{message}");
    assert!(err.to_string().ends_with("(HTTP 414)"), "{err}");
}

#[tokio::test]
async fn non_json_success_is_a_decode_error() {
    let prom = fake(ok("<html>login page</html>")).await;
    let err = client(PrometheusConfig::new(&prom.url))
        .query("up")
        .await
        .unwrap_err();
    assert!(matches!(err, PrometheusError::Decode { .. }), "{err:?}");
    assert_eq!(err.http_status(), 502);
    assert!(err.to_string().contains("login page"), "{err}");
}

#[tokio::test]
async fn closed_port_is_unreachable() {
    install_provider();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let err = client(PrometheusConfig::new(&url))
        .query("up")
        .await
        .unwrap_err();
    assert!(
        matches!(err, PrometheusError::Unreachable { tls: false, .. }),
        "{err:?}"
    );
    assert_eq!(err.http_status(), 503);
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("Prometheus at {url} is unreachable: ")),
        "{text}"
    );
    // The cause chain reaches the operating system's reason.
    assert!(text.to_lowercase().contains("refused"), "{text}");
    assert!(!text.contains("query=up"), "{text}");
}

#[tokio::test]
async fn a_query_may_have_its_own_timeout_sent_to_prometheus_too() {
    let prom = fake_with_delay(Duration::from_secs(5), ok(VECTOR)).await;
    let client = client(PrometheusConfig::new(&prom.url));
    let started = Instant::now();
    let err = client
        .query_within("up", Some(Duration::from_millis(150)))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(matches!(err, PrometheusError::Timeout { .. }), "{err:?}");
    assert!(err.to_string().contains("150ms"), "{err}");
    let seen = prom.last();
    assert!(
        seen.query
            .contains(&("timeout".to_owned(), "150ms".to_owned())),
        "{:?}",
        seen.query
    );
}

#[tokio::test]
async fn slow_server_times_out() {
    let prom = fake_with_delay(Duration::from_secs(5), ok(VECTOR)).await;
    let mut config = PrometheusConfig::new(&prom.url);
    config.timeout = Duration::from_millis(200);
    let started = Instant::now();
    let err = client(config).query("up").await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(matches!(err, PrometheusError::Timeout { .. }), "{err:?}");
    assert_eq!(err.http_status(), 504);
    assert_eq!(
        err.to_string(),
        format!("Prometheus at {} did not answer within 200ms", prom.url)
    );
}

#[tokio::test]
async fn label_values_sends_match_parameters() {
    let prom = fake(ok(r#"{"status":"success","data":["api","node exporter"]}"#)).await;
    let client = client(PrometheusConfig::new(format!("{}/prefix/", prom.url)));
    let values = client
        .label_values("job", &["up{env=\"prod\"}", "process_start_time_seconds"])
        .await
        .unwrap();
    assert_eq!(values, vec!["api", "node exporter"]);
    let seen = prom.last();
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.path, "/prefix/api/v1/label/job/values");
    assert_eq!(
        seen.query,
        vec![
            ("match[]".to_owned(), "up{env=\"prod\"}".to_owned()),
            (
                "match[]".to_owned(),
                "process_start_time_seconds".to_owned()
            ),
        ]
    );
}

#[tokio::test]
async fn reload_posts_to_the_lifecycle_endpoint() {
    let prom = fake(
        |seen: &Seen| match (seen.method.as_str(), seen.path.as_str()) {
            ("POST", "/prefix/-/reload") => (200, String::new()),
            _ => (403, "Lifecycle API is not enabled.".to_owned()),
        },
    )
    .await;
    let on = client(PrometheusConfig::new(format!("{}/prefix", prom.url)));
    on.reload().await.unwrap();
    assert_eq!(prom.last().method, "POST");

    let off = client(PrometheusConfig::new(format!("{}/other", prom.url)));
    let error = off.reload().await.unwrap_err();
    assert_eq!(error.http_status(), 502);
    assert!(
        error.to_string().contains("Lifecycle API is not enabled"),
        "{error}"
    );
}

#[tokio::test]
async fn ready_checks_the_api_and_falls_back_to_ready_endpoint() {
    let prom = fake(|seen: &Seen| match seen.path.as_str() {
        "/api/v1/status/buildinfo" => (404, "404 page not found".to_owned()),
        "/-/ready" => (200, "Prometheus Server is Ready.".to_owned()),
        _ => (500, String::new()),
    })
    .await;
    client(PrometheusConfig::new(&prom.url))
        .ready()
        .await
        .unwrap();
    let paths: Vec<String> = prom.requests().into_iter().map(|s| s.path).collect();
    assert_eq!(paths, vec!["/api/v1/status/buildinfo", "/-/ready"]);

    let starting = fake(|_: &Seen| (503, "Service Unavailable".to_owned())).await;
    let err = client(PrometheusConfig::new(&starting.url))
        .ready()
        .await
        .unwrap_err();
    assert!(
        matches!(err, PrometheusError::Rejected { status: 503, .. }),
        "{err:?}"
    );
}

#[test]
fn debug_never_shows_secrets() {
    let mut config = PrometheusConfig::new("https://user:hunter2@thanos.example/prefix");
    config.bearer_token_file = Some(PathBuf::from("token-file"));
    config.basic_auth_user = Some("alice".to_owned());
    config.basic_auth_password_file = Some(PathBuf::from("password-file"));
    config.headers = vec![("X-Scope-OrgID".to_owned(), "tenant-secret".to_owned())];
    let debug = format!("{config:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(!debug.contains("tenant-secret"), "{debug}");
    assert!(debug.contains("X-Scope-OrgID"), "{debug}");
    assert!(debug.contains("password-file"), "{debug}");
}

#[test]
fn missing_ca_file_is_named() {
    install_provider();
    let mut config = PrometheusConfig::new("https://prometheus.example");
    let missing = std::env::temp_dir().join("no-such-dir-for-prometheus-test/ca.pem");
    config.ca_file = Some(missing.clone());
    let err = PrometheusClient::new(config).unwrap_err();
    assert!(
        matches!(err, PrometheusConfigError::UnreadableFile { .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains(&missing.display().to_string()), "{text}");
    assert!(text.contains("CA file"), "{text}");
}

#[test]
fn ca_file_without_certificates_is_invalid() {
    install_provider();
    let dir = tempfile::tempdir().unwrap();
    let mut config = PrometheusConfig::new("https://prometheus.example");
    config.ca_file = Some(write_file(&dir, "ca.pem", "not a certificate\n"));
    let err = PrometheusClient::new(config.clone()).unwrap_err();
    assert!(
        matches!(err, PrometheusConfigError::InvalidFile { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("ca.pem"), "{err}");

    // Valid PEM framing around something that is not a certificate.
    config.ca_file = Some(write_file(
        &dir,
        "broken.pem",
        "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n",
    ));
    let err = PrometheusClient::new(config).unwrap_err();
    assert!(
        matches!(err, PrometheusConfigError::InvalidFile { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("broken.pem"), "{err}");
}

#[test]
fn bad_client_key_is_named() {
    install_provider();
    let dir = tempfile::tempdir().unwrap();
    let mut config = PrometheusConfig::new("https://prometheus.example");
    config.client_cert_file = Some(write_file(&dir, "tls.crt", "garbage"));
    config.client_key_file = Some(write_file(&dir, "tls.key", "garbage"));
    let err = PrometheusClient::new(config).unwrap_err();
    assert!(err.to_string().contains("tls.crt"), "{err}");
}

#[test]
fn rejects_bad_configurations() {
    install_provider();
    let cases: Vec<(PrometheusConfig, &str)> = vec![
        (PrometheusConfig::new("not a url"), "invalid Prometheus URL"),
        (PrometheusConfig::new("ftp://host/"), "scheme"),
        (
            PrometheusConfig::new("http://user:pw@host/"),
            "credentials in the URL",
        ),
        (
            PrometheusConfig {
                basic_auth_user: Some("alice".to_owned()),
                ..PrometheusConfig::new("http://host")
            },
            "basic_auth_password_file",
        ),
        (
            PrometheusConfig {
                client_cert_file: Some(PathBuf::from("tls.crt")),
                ..PrometheusConfig::new("http://host")
            },
            "client_key_file",
        ),
        (
            PrometheusConfig {
                bearer_token_file: Some(PathBuf::from("token")),
                basic_auth_user: Some("alice".to_owned()),
                basic_auth_password_file: Some(PathBuf::from("password")),
                ..PrometheusConfig::new("http://host")
            },
            "only one of a bearer token, basic auth, OAuth2 and SigV4",
        ),
        (
            PrometheusConfig {
                headers: vec![("X-Scope-OrgID".to_owned(), "bad\nvalue".to_owned())],
                ..PrometheusConfig::new("http://host")
            },
            "X-Scope-OrgID",
        ),
    ];
    for (config, expected) in cases {
        let err = PrometheusClient::new(config).unwrap_err().to_string();
        assert!(
            err.contains(expected),
            "{err:?} should mention {expected:?}"
        );
        assert!(!err.contains("pw@"), "{err}");
        assert!(!err.contains("bad\nvalue"), "{err}");
    }
}

// Test-only PKI (P-256, valid 2000-2999) so TLS can be exercised
// without a certificate generator among the dependencies. These keys
// protect nothing.
const TEST_CA: &str = "\
    -----BEGIN CERTIFICATE-----\n\
    MIIBazCCARCgAwIBAgIUPvcV80RXMN88g6BPtGhtlIDlTU0wCgYIKoZIzj0EAwIw\n\
    EjEQMA4GA1UEAwwHdGVzdC1jYTAgFw0wMDAxMDEwMDAwMDBaGA8yOTk5MTIzMTAw\n\
    MDAwMFowEjEQMA4GA1UEAwwHdGVzdC1jYTBZMBMGByqGSM49AgEGCCqGSM49AwEH\n\
    A0IABPLl7p6NwaVF30IAxheAmbvDUX0lzT6sJLwRwJwR85KkN9+b6jXM5cRuibHQ\n\
    uk5S0S8bAJBnBeiOxH81PxOVvnujQjBAMA8GA1UdEwEB/wQFMAMBAf8wDgYDVR0P\n\
    AQH/BAQDAgEGMB0GA1UdDgQWBBSvdIgny4nFojANcKEllvcKYF+NgDAKBggqhkjO\n\
    PQQDAgNJADBGAiEA0zVUU/kzno4QiZE25CUGU/mVSUlhrFuHKC24GljwT5UCIQDp\n\
    bO8Y15FcZip6NacZWm7XzHKRlvnm8E8Oxo4fm0BUig==\n\
    -----END CERTIFICATE-----\n";
const OTHER_CA: &str = "\
    -----BEGIN CERTIFICATE-----\n\
    MIIBazCCARKgAwIBAgIUYopdLED74vu43xv+wPoi0iwXVGkwCgYIKoZIzj0EAwIw\n\
    EzERMA8GA1UEAwwIb3RoZXItY2EwIBcNMDAwMTAxMDAwMDAwWhgPMjk5OTEyMzEw\n\
    MDAwMDBaMBMxETAPBgNVBAMMCG90aGVyLWNhMFkwEwYHKoZIzj0CAQYIKoZIzj0D\n\
    AQcDQgAEnJFSOMKfgruOueJaVC6axPn0zokQXJQT/cWaCfltC+zgqr+lnquXkX2c\n\
    +JqF+KgH7EwBnnvVMT+7C1xJSPEvUaNCMEAwDwYDVR0TAQH/BAUwAwEB/zAOBgNV\n\
    HQ8BAf8EBAMCAQYwHQYDVR0OBBYEFDV/LyIEwLJG4OQIymHVbaWzA9AuMAoGCCqG\n\
    SM49BAMCA0cAMEQCIDIaUS2LqEHHaOqyVqgNw8q18bjAkxIic3K4O2UHBbg8AiAG\n\
    MO7wB7H2KdYVFyneaIdWXQ5TaEvrpojqoJmGo7c5Cw==\n\
    -----END CERTIFICATE-----\n";
const SERVER_CERT: &str = "\
    -----BEGIN CERTIFICATE-----\n\
    MIIBgTCCASegAwIBAgIUMoLieTI9bkNMNqQKSXgqN8F42g4wCgYIKoZIzj0EAwIw\n\
    EjEQMA4GA1UEAwwHdGVzdC1jYTAgFw0wMDAxMDEwMDAwMDBaGA8yOTk5MTIzMTAw\n\
    MDAwMFowFDESMBAGA1UEAwwJMTI3LjAuMC4xMFkwEwYHKoZIzj0CAQYIKoZIzj0D\n\
    AQcDQgAE+6VdQBPYpSSqwnZTXsWBKXspHlhysls6gIg2noELHxHav49ix3oDBxXZ\n\
    rKz58n2pwBwLkK/kmY4xliX/q8FlsqNXMFUwDAYDVR0TAQH/BAIwADATBgNVHSUE\n\
    DDAKBggrBgEFBQcDATAfBgNVHSMEGDAWgBSvdIgny4nFojANcKEllvcKYF+NgDAP\n\
    BgNVHREECDAGhwR/AAABMAoGCCqGSM49BAMCA0gAMEUCIQDog8ixLwv/idxSDUGS\n\
    yUYEQjm6XiEuvM02c1h4CfIuWwIgZ5dpulA122zNnMWn3/pUHiTcI3s2uEdrdX3e\n\
    0VPlFpQ=\n\
    -----END CERTIFICATE-----\n";
const SERVER_KEY: &str = "\
    -----BEGIN PRIVATE KEY-----\n\
    MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg/AOD6pyeJ+h/AQA2\n\
    cn09lpnaSacH+NSn6F/6y73n8k6hRANCAAT7pV1AE9ilJKrCdlNexYEpeykeWHKy\n\
    WzqAiDaegQsfEdq/j2LHegMHFdmsrPnyfanAHAuQr+SZjjGWJf+rwWWy\n\
    -----END PRIVATE KEY-----\n";
const CLIENT_CERT: &str = "\
    -----BEGIN CERTIFICATE-----\n\
    MIIBbjCCARSgAwIBAgIUcO8dQzhRHM3ffPV2yLMXYSpHsAIwCgYIKoZIzj0EAwIw\n\
    EjEQMA4GA1UEAwwHdGVzdC1jYTAgFw0wMDAxMDEwMDAwMDBaGA8yOTk5MTIzMTAw\n\
    MDAwMFowEjEQMA4GA1UEAwwHYWRhcHRlcjBZMBMGByqGSM49AgEGCCqGSM49AwEH\n\
    A0IABOpXpHFPp6FbAXlGSX176GLNIpiDtCTG5s+OoqReNxjconEIL/R8uXUb/Lcl\n\
    gJktm9R1WLn8dIgUro7MqJZtmkKjRjBEMAwGA1UdEwEB/wQCMAAwEwYDVR0lBAww\n\
    CgYIKwYBBQUHAwIwHwYDVR0jBBgwFoAUr3SIJ8uJxaIwDXChJZb3CmBfjYAwCgYI\n\
    KoZIzj0EAwIDSAAwRQIgF7UQfiEychywFXQwVHLp2/F2/4veA+IkEP5QwyU/aDwC\n\
    IQCBTctwV1o9iCvC3tC3LgkrMbq/uXYzV6wEG6LuEpiC7w==\n\
    -----END CERTIFICATE-----\n";
const CLIENT_KEY: &str = "\
    -----BEGIN PRIVATE KEY-----\n\
    MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg4+hdMouxmeF6G+Vs\n\
    yLoES2RhuR0oxpA1ec3+PlEOXS2hRANCAATqV6RxT6ehWwF5Rkl9e+hizSKYg7Qk\n\
    xubPjqKkXjcY3KJxCC/0fLl1G/y3JYCZLZvUdVi5/HSIFK6OzKiWbZpC\n\
    -----END PRIVATE KEY-----\n";

/// A TLS server on its own thread that answers every request with an
/// empty vector, optionally demanding a client certificate signed by
/// the test CA.
fn tls_server(require_client_cert: bool) -> String {
    use std::io::{Read, Write};

    install_provider();
    let certs = CertificateDer::pem_slice_iter(SERVER_CERT.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(SERVER_KEY.as_bytes()).unwrap();
    let builder = rustls::ServerConfig::builder();
    let builder = if require_client_cert {
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(TEST_CA.as_bytes()) {
            roots.add(ca.unwrap()).unwrap();
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
            .build()
            .unwrap();
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let config = Arc::new(builder.with_single_cert(certs, key).unwrap());

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let connection = rustls::ServerConnection::new(config.clone()).unwrap();
            let mut tls = rustls::StreamOwned::new(connection, stream);
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            // Handshake failures surface here as read errors.
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match tls.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            if request.windows(4).any(|w| w == b"\r\n\r\n") {
                let body = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
                let _ = write!(
                    tls,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.flush();
            }
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    url
}

#[tokio::test]
async fn trusts_the_configured_ca() {
    let url = tls_server(false);
    let dir = tempfile::tempdir().unwrap();
    let mut config = PrometheusConfig::new(&url);
    config.ca_file = Some(write_file(&dir, "ca.pem", TEST_CA));
    let samples = client(config).query("up").await.unwrap();
    assert!(samples.is_empty());
}

#[tokio::test]
async fn trusts_only_the_configured_ca() {
    let url = tls_server(false);
    let dir = tempfile::tempdir().unwrap();
    let mut config = PrometheusConfig::new(&url);
    config.ca_file = Some(write_file(&dir, "ca.pem", OTHER_CA));
    let err = client(config).query("up").await.unwrap_err();
    // Told apart from a refused connection by rustls' own error, not by its text.
    assert!(
        matches!(err, PrometheusError::Unreachable { tls: true, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
}

#[tokio::test]
async fn presents_the_client_certificate() {
    let url = tls_server(true);
    let dir = tempfile::tempdir().unwrap();
    let mut config = PrometheusConfig::new(&url);
    config.ca_file = Some(write_file(&dir, "ca.pem", TEST_CA));
    client(config.clone())
        .query("up")
        .await
        .expect_err("the server demands a client certificate");

    config.client_cert_file = Some(write_file(&dir, "tls.crt", CLIENT_CERT));
    config.client_key_file = Some(write_file(&dir, "tls.key", CLIENT_KEY));
    client(config).query("up").await.unwrap();
}

fn inline(origin: &str, value: &str) -> InlineSecret {
    InlineSecret {
        origin: origin.to_owned(),
        value: value.as_bytes().to_vec(),
    }
}

/// A `MetricsBackend`'s CA and client certificate come from Secrets, in memory.
#[tokio::test]
async fn trusts_and_presents_certificates_held_in_memory() {
    let url = tls_server(true);
    let mut config = PrometheusConfig::new(&url);
    config.ca = Some(inline("Secret ns/tls key ca.crt", OTHER_CA));
    let err = client(config.clone()).query("up").await.unwrap_err();
    assert!(
        matches!(err, PrometheusError::Unreachable { tls: true, .. }),
        "{err:?}"
    );

    config.ca = Some(inline("Secret ns/tls key ca.crt", TEST_CA));
    client(config.clone())
        .query("up")
        .await
        .expect_err("the server demands a client certificate");
    config.client_identity = Some((
        inline("Secret ns/tls key tls.crt", CLIENT_CERT),
        inline("Secret ns/tls key tls.key", CLIENT_KEY),
    ));
    client(config.clone()).query("up").await.unwrap();

    // What is wrong names the Secret, never its content.
    config.client_identity = Some((
        inline("Secret ns/tls key tls.crt", CLIENT_CERT),
        inline("Secret ns/tls key tls.key", "not a key"),
    ));
    let err = PrometheusClient::new(config.clone())
        .unwrap_err()
        .to_string();
    assert!(err.contains("Secret ns/tls key tls.key"), "{err}");
    assert!(!err.contains("not a key"), "{err}");
    config.client_identity = None;
    config.ca = Some(inline("Secret ns/tls key ca.crt", "garbage"));
    let err = PrometheusClient::new(config.clone())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("invalid CA bundle from Secret ns/tls key ca.crt"),
        "{err}"
    );
    // A file and a Secret for the same thing: refused, not one silently preferred.
    let dir = tempfile::tempdir().unwrap();
    config.ca = Some(inline("Secret ns/tls key ca.crt", TEST_CA));
    config.ca_file = Some(write_file(&dir, "ca.pem", TEST_CA));
    let err = PrometheusClient::new(config).unwrap_err().to_string();
    assert!(err.contains("cannot both be used"), "{err}");
}

#[tokio::test]
async fn in_memory_bearer_and_basic_credentials_are_sent() {
    let prom = fake(ok(VECTOR)).await;
    let mut config = PrometheusConfig::new(&prom.url);
    config.bearer_token = Some(inline("Secret ns/auth key token", "t0ken\n"));
    client(config.clone()).query("up").await.unwrap();
    assert_eq!(header(&prom.last(), "authorization"), Some("Bearer t0ken"));
    config.bearer_token = None;
    config.basic_auth_user = Some("reader".to_owned());
    config.basic_auth_password = Some(inline("Secret ns/auth key password", "pw"));
    client(config.clone()).query("up").await.unwrap();
    // base64("reader:pw")
    assert_eq!(
        header(&prom.last(), "authorization"),
        Some("Basic cmVhZGVyOnB3")
    );
    config.basic_auth_password = Some(inline("Secret ns/auth key password", "  "));
    let err = PrometheusClient::new(config).unwrap_err().to_string();
    assert!(
        err.contains("Secret ns/auth key password") && err.contains("empty"),
        "{err}"
    );
}

#[test]
fn mismatched_client_key_is_rejected() {
    install_provider();
    let dir = tempfile::tempdir().unwrap();
    let mut config = PrometheusConfig::new("https://prometheus.example");
    config.ca_file = Some(write_file(&dir, "ca.pem", TEST_CA));
    config.client_cert_file = Some(write_file(&dir, "tls.crt", CLIENT_CERT));
    config.client_key_file = Some(write_file(&dir, "tls.key", SERVER_KEY));
    let err = PrometheusClient::new(config).unwrap_err().to_string();
    assert!(err.contains("tls.crt") && err.contains("tls.key"), "{err}");
}

#[tokio::test]
async fn an_answer_over_the_size_limit_is_a_502_naming_the_limit() {
    let series: Vec<String> = (0..200)
        .map(|i| format!(r#"{{"metric":{{"pod":"p-{i}"}},"value":[1,"{i}"]}}"#))
        .collect();
    let body = format!(
        r#"{{"status":"success","data":{{"resultType":"vector","result":[{}]}}}}"#,
        series.join(",")
    );
    let size = body.len();
    let prom = fake(ok(&body)).await;
    let mut config = PrometheusConfig::new(&prom.url);
    config.max_response_bytes = size;
    assert_eq!(client(config.clone()).query("up").await.unwrap().len(), 200);

    config.max_response_bytes = size - 1;
    let err = client(config).query("up").await.unwrap_err();
    assert!(matches!(err, PrometheusError::TooLarge { .. }), "{err:?}");
    assert_eq!(err.http_status(), 502);
    let text = err.to_string();
    assert!(
        text.contains(&format!("larger than {} bytes", size - 1))
            && text.contains("--prometheus-max-response-bytes"),
        "{text}"
    );
}

#[tokio::test]
async fn unknown_result_types_and_wrong_shapes_are_decode_errors() {
    for body in [
        r#"{"status":"success","data":{"resultType":"histogram","result":[]}}"#,
        r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":1},"value":[1,"2"]}]}}"#,
        r#"{"status":"success","data":{"resultType":"scalar","result":"x"}}"#,
    ] {
        let prom = fake(ok(body)).await;
        let err = client(PrometheusConfig::new(&prom.url))
            .query("up")
            .await
            .unwrap_err();
        assert!(
            matches!(err, PrometheusError::Decode { .. }),
            "{body}: {err:?}"
        );
        assert_eq!(err.http_status(), 502);
    }
}
