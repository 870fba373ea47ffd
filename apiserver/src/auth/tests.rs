//! The guard end to end: real HTTPS on 127.0.0.1, clients holding certificates made
//! by throwaway CAs, fake reviewers standing in for the cluster.

use super::PeerCertificates;
use super::test_pki::{Leaf, TestCa};
use super::*;
use crate::api::{ApiState, Readiness};
use crate::error::StatusReason;
use crate::external::ExternalCatalog;
use crate::objects::NoCluster;
use crate::prometheus::{PrometheusClient, PrometheusConfig};
use crate::router::{health_routes, metrics_routes};
use crate::tls::{ReloadableTls, ServingCertificate};
use crate::tls_acceptor::serve_https;
use axum::extract::Extension;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

const FRONT_PROXY_CN: &str = "front-proxy-client";
const CM_PODS: &str = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/ns/pods/*/m";

/// The CAs of a pretend cluster: two front-proxy CAs in one bundle (as during a CA
/// rotation), the cluster CA, and one nobody trusts.
struct Pki {
    front: TestCa,
    front_next: TestCa,
    cluster: TestCa,
    stranger: TestCa,
}

impl Pki {
    fn new() -> Self {
        Pki {
            front: TestCa::new("front-proxy-ca"),
            front_next: TestCa::new("front-proxy-ca-next"),
            cluster: TestCa::new("kubernetes"),
            stranger: TestCa::new("stranger"),
        }
    }

    fn config(&self, allowed_names: &[&str]) -> AuthenticationConfig {
        let list = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect();
        AuthenticationConfig {
            request_header: Some(RequestHeaderConfig {
                client_ca_pem: format!("{}{}", self.front.pem(), self.front_next.pem()),
                allowed_names: list(allowed_names),
                username_headers: list(&["X-Remote-User"]),
                uid_headers: list(&["X-Remote-Uid"]),
                group_headers: list(&["X-Remote-Group"]),
                extra_headers_prefixes: list(&["X-Remote-Extra-"]),
            }),
            client_ca_pem: Some(self.cluster.pem()),
        }
    }

    fn proxy(&self) -> Leaf {
        self.front.client(FRONT_PROXY_CN, &[])
    }
}

#[derive(Default)]
struct FakeTokens {
    calls: AtomicUsize,
    unreachable: AtomicBool,
}

impl TokenReviewer for FakeTokens {
    fn review<'a>(
        &'a self,
        token: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<Option<UserInfo>, AuthError>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.unreachable.load(Ordering::SeqCst) {
                return Err(AuthError::Review(
                    "TokenReview: connection refused".to_owned(),
                ));
            }
            Ok((token == "good-token").then(|| UserInfo {
                username: "system:serviceaccount:ns:reader".to_owned(),
                uid: "sa-uid".to_owned(),
                groups: vec!["system:serviceaccounts".to_owned()],
                extra: Default::default(),
            }))
        })
    }
}

type Rule = dyn Fn(&UserInfo, &Attributes) -> Result<Decision, AuthError> + Send + Sync;

/// Answers with `rule` and records what it was asked.
struct FakeAccess {
    rule: Mutex<Box<Rule>>,
    asked: Mutex<Vec<(String, Attributes)>>,
}

impl FakeAccess {
    fn new(
        rule: impl Fn(&UserInfo, &Attributes) -> Result<Decision, AuthError> + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(FakeAccess {
            rule: Mutex::new(Box::new(rule)),
            asked: Mutex::new(Vec::new()),
        })
    }
    fn allow_all() -> Arc<Self> {
        Self::new(|_, _| Ok(Decision::Allowed))
    }
    fn set_rule(
        &self,
        rule: impl Fn(&UserInfo, &Attributes) -> Result<Decision, AuthError> + Send + Sync + 'static,
    ) {
        *self.rule.lock().unwrap() = Box::new(rule);
    }
    fn calls(&self) -> usize {
        self.asked.lock().unwrap().len()
    }
}

impl AccessReviewer for FakeAccess {
    fn review<'a>(
        &'a self,
        user: &'a UserInfo,
        attributes: &'a Attributes,
    ) -> futures::future::BoxFuture<'a, Result<Decision, AuthError>> {
        let answer = (self.rule.lock().unwrap())(user, attributes);
        self.asked
            .lock()
            .unwrap()
            .push((user.username.clone(), attributes.clone()));
        Box::pin(async move { answer })
    }
}

fn api_state() -> ApiState {
    install_provider();
    ApiState {
        table: crate::table::shared_rule_table(),
        // Never reached: these tests only ask for discovery and unknown metrics.
        backends: crate::upstream::Backends::new(
            crate::upstream::Upstream::new(
                PrometheusClient::new(PrometheusConfig::new("http://127.0.0.1:9")).unwrap(),
                Default::default(),
                crate::telemetry::SelfMetrics::new(),
            ),
            Arc::new(crate::upstream::NoSecrets("none here")),
        ),
        objects: Arc::new(NoCluster),
        external: ExternalCatalog::new(),
        readiness: Readiness::default(),
        metrics: crate::telemetry::SelfMetrics::new(),
    }
}

/// What the handler saw: the user, and which credentials still reached it.
async fn whoami(
    Extension(user): Extension<UserInfo>,
    peer: Option<Extension<PeerCertificates>>,
    headers: http::HeaderMap,
) -> Json<Value> {
    let credential_headers: Vec<&str> = headers
        .keys()
        .map(|name| name.as_str())
        .filter(|name| *name == "authorization" || name.starts_with("x-remote-"))
        .collect();
    Json(json!({
        "user": user,
        "peerCertificates": peer.map_or(0, |Extension(p)| p.chain().len()),
        "credentialHeaders": credential_headers,
    }))
}

struct Server {
    url: String,
    serving: ServingCertificate,
    tls: Arc<ReloadableTls>,
    guard: Arc<Guard>,
    handle: crate::serve::ServeHandle,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

impl Server {
    async fn start(
        config: AuthenticationConfig,
        tokens: Option<Arc<dyn TokenReviewer>>,
        access: Arc<dyn AccessReviewer>,
    ) -> Server {
        install_provider();
        let serving =
            ServingCertificate::self_signed(&["localhost".to_owned(), "127.0.0.1".to_owned()])
                .unwrap();
        let tls = Arc::new(ReloadableTls::new(serving.clone(), config.client_ca_bundle()).unwrap());
        let guard = Guard::new(config, tokens, access).unwrap();
        Self::start_with(serving, tls, guard).await
    }

    async fn start_with(
        serving: ServingCertificate,
        tls: Arc<ReloadableTls>,
        guard: Arc<Guard>,
    ) -> Server {
        let state = api_state();
        let protected = Router::new()
            .route("/whoami", get(whoami))
            .merge(metrics_routes(state.clone()))
            .layer(axum::middleware::from_fn_with_state(
                guard.clone(),
                require_auth,
            ));
        let app = health_routes(state).merge(protected);

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "https://127.0.0.1:{}",
            listener.local_addr().unwrap().port()
        );
        let handle = crate::serve::ServeHandle::new();
        tokio::spawn(serve_https(
            listener,
            app,
            tls.clone(),
            crate::serve::ServeLimits::default(),
            handle.signalled(),
        ));
        Server {
            url,
            serving,
            tls,
            guard,
            handle,
        }
    }

    fn client(&self, identity: Option<&Leaf>) -> reqwest::Client {
        client_trusting(&self.serving.ca_bundle(), identity)
    }

    async fn get(
        &self,
        identity: Option<&Leaf>,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<(u16, Value), reqwest::Error> {
        let mut request = self.client(identity).get(format!("{}{path}", self.url));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let body = response.text().await?;
        Ok((
            status,
            serde_json::from_str(&body).unwrap_or(Value::String(body)),
        ))
    }
}

fn client_trusting(ca_pem: &str, identity: Option<&Leaf>) -> reqwest::Client {
    install_provider();
    let mut builder = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap()])
        .timeout(Duration::from_secs(10));
    if let Some(leaf) = identity {
        builder = builder.identity(leaf.identity());
    }
    builder.build().unwrap()
}

fn proxied_alice() -> Vec<(&'static str, &'static str)> {
    vec![
        ("X-Remote-User", "alice"),
        ("X-Remote-Uid", "alice-uid"),
        ("X-Remote-Group", "devs"),
        ("x-remote-group", "system:authenticated"),
        ("X-Remote-Extra-Scopes", "read"),
        ("X-Remote-Extra-Scopes", "write"),
        ("X-Remote-Extra-Example.com%2fteam", "blue"),
    ]
}

fn assert_unauthorized(result: (u16, Value), needle: &str) {
    let (status, body) = result;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["kind"], "Status", "{body}");
    assert_eq!(body["reason"], "Unauthorized", "{body}");
    assert_eq!(body["code"], 401, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains(needle), "{needle:?} not in {message:?}");
}

#[tokio::test]
async fn front_proxy_user_reaches_the_handler() {
    let pki = Pki::new();
    let server = Server::start(pki.config(&[FRONT_PROXY_CN]), None, FakeAccess::allow_all()).await;
    let (status, body) = server
        .get(Some(&pki.proxy()), "/whoami", &proxied_alice())
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["user"],
        json!({
            "username": "alice",
            "uid": "alice-uid",
            "groups": ["devs", "system:authenticated"],
            "extra": {"scopes": ["read", "write"], "example.com/team": ["blue"]},
        })
    );
    assert_eq!(body["peerCertificates"], 1);
    // Authenticated requests lose their credentials before the handler sees them.
    assert_eq!(body["credentialHeaders"], json!([]));
}

#[tokio::test]
async fn front_proxy_works_over_http1_too() {
    let pki = Pki::new();
    let server = Server::start(pki.config(&[FRONT_PROXY_CN]), None, FakeAccess::allow_all()).await;
    let client = reqwest::Client::builder()
        .tls_certs_only([
            reqwest::Certificate::from_pem(server.serving.ca_bundle().as_bytes()).unwrap(),
        ])
        .identity(pki.proxy().identity())
        .http1_only()
        .build()
        .unwrap();
    let response = client
        .get(format!("{}/whoami", server.url))
        .header("X-Remote-User", "alice")
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), http::Version::HTTP_11);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["user"]["username"], "alice");
}

#[tokio::test]
async fn front_proxy_cn_must_be_allowed() {
    let pki = Pki::new();
    let server = Server::start(pki.config(&[FRONT_PROXY_CN]), None, FakeAccess::allow_all()).await;
    let impostor = pki.front.client("someone-else", &[]);
    assert_unauthorized(
        server
            .get(Some(&impostor), "/whoami", &proxied_alice())
            .await
            .unwrap(),
        r#"common name "someone-else" is not in requestheader-allowed-names"#,
    );
}

#[tokio::test]
async fn empty_allowed_names_accept_any_cn_from_the_front_proxy_ca() {
    let pki = Pki::new();
    let server = Server::start(pki.config(&[]), None, FakeAccess::allow_all()).await;
    let proxy = pki.front.client("any-name-at-all", &[]);
    let (status, body) = server
        .get(Some(&proxy), "/whoami", &proxied_alice())
        .await
        .unwrap();
    assert_eq!(
        (status, &body["user"]["username"]),
        (200, &json!("alice")),
        "{body}"
    );
}

#[tokio::test]
async fn every_ca_in_the_front_proxy_bundle_is_trusted() {
    let pki = Pki::new();
    let server = Server::start(pki.config(&[FRONT_PROXY_CN]), None, FakeAccess::allow_all()).await;
    let proxy = pki.front_next.client(FRONT_PROXY_CN, &[]);
    let (status, body) = server
        .get(Some(&proxy), "/whoami", &proxied_alice())
        .await
        .unwrap();
    assert_eq!(
        (status, &body["user"]["username"]),
        (200, &json!("alice")),
        "{body}"
    );
}

#[tokio::test]
async fn certificate_from_an_untrusted_ca_never_reaches_the_handler() {
    let pki = Pki::new();
    let server = Server::start(pki.config(&[]), None, FakeAccess::allow_all()).await;
    let impostor = pki.stranger.client(FRONT_PROXY_CN, &[]);
    // The handshake refuses it; should it ever get through, the guard must.
    match server
        .get(Some(&impostor), "/whoami", &proxied_alice())
        .await
    {
        Err(error) => {
            let chain = format!("{error:?}");
            assert!(chain.contains("UnknownCA"), "{chain}");
        }
        Ok(result) => assert_unauthorized(result, "not signed by a CA this server trusts"),
    }
}

#[tokio::test]
async fn front_proxy_request_without_username_is_refused() {
    let pki = Pki::new();
    let server = Server::start(pki.config(&[FRONT_PROXY_CN]), None, FakeAccess::allow_all()).await;
    assert_unauthorized(
        server
            .get(
                Some(&pki.proxy()),
                "/whoami",
                &[("X-Remote-Group", "system:masters")],
            )
            .await
            .unwrap(),
        "names no user (no x-remote-user header)",
    );
}

#[tokio::test]
async fn cluster_ca_certificate_names_user_and_groups() {
    let pki = Pki::new();
    let server = Server::start(pki.config(&[FRONT_PROXY_CN]), None, FakeAccess::allow_all()).await;
    let carol = pki.cluster.client("carol", &["ops"]);
    // Headers from anyone but the front proxy mean nothing.
    let (status, body) = server
        .get(Some(&carol), "/whoami", &[("X-Remote-User", "admin")])
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["user"],
        json!({"username": "carol", "uid": "", "groups": ["ops", "system:authenticated"], "extra": {}})
    );
    assert_eq!(body["credentialHeaders"], json!([]));
}

#[tokio::test]
async fn no_credentials_is_a_401_status() {
    let pki = Pki::new();
    let tokens: Arc<dyn TokenReviewer> = Arc::new(FakeTokens::default());
    let server = Server::start(pki.config(&[]), Some(tokens), FakeAccess::allow_all()).await;
    let result = server.get(None, CM_PODS, &proxied_alice()).await.unwrap();
    assert_eq!(result.1["apiVersion"], "v1");
    assert_eq!(result.1["status"], "Failure");
    assert_unauthorized(result, "no credentials: anonymous requests are not allowed");
    // A non-bearer scheme is no credential either.
    assert_unauthorized(
        server
            .get(None, "/whoami", &[("Authorization", "Basic YWxpY2U6cHc=")])
            .await
            .unwrap(),
        "no credentials",
    );
}

#[tokio::test]
async fn bearer_tokens_are_reviewed_and_cached() {
    let pki = Pki::new();
    let tokens = Arc::new(FakeTokens::default());
    let server = Server::start(
        pki.config(&[]),
        Some(tokens.clone() as Arc<dyn TokenReviewer>),
        FakeAccess::allow_all(),
    )
    .await;
    let auth = [("Authorization", "Bearer good-token")];
    for _ in 0..2 {
        let (status, body) = server.get(None, "/whoami", &auth).await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["user"]["username"], "system:serviceaccount:ns:reader");
        assert_eq!(
            body["user"]["groups"],
            json!(["system:serviceaccounts", "system:authenticated"])
        );
        assert_eq!(body["credentialHeaders"], json!([]));
    }
    assert_eq!(tokens.calls.load(Ordering::SeqCst), 1);

    let bad = [("Authorization", "bearer bad-token")];
    for _ in 0..2 {
        assert_unauthorized(
            server.get(None, "/whoami", &bad).await.unwrap(),
            "the bearer token was rejected",
        );
    }
    assert_eq!(tokens.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn token_review_failure_is_a_503_and_not_cached() {
    let pki = Pki::new();
    let tokens = Arc::new(FakeTokens::default());
    tokens.unreachable.store(true, Ordering::SeqCst);
    let server = Server::start(
        pki.config(&[]),
        Some(tokens.clone() as Arc<dyn TokenReviewer>),
        FakeAccess::allow_all(),
    )
    .await;
    let auth = [("Authorization", "Bearer good-token")];
    let (status, body) = server.get(None, "/whoami", &auth).await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("connection refused")
            && !body["message"].as_str().unwrap().contains("good-token"),
        "{body}"
    );
    tokens.unreachable.store(false, Ordering::SeqCst);
    let (status, _) = server.get(None, "/whoami", &auth).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(tokens.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn tokens_are_refused_without_a_reviewer() {
    let pki = Pki::new();
    let server = Server::start(pki.config(&[]), None, FakeAccess::allow_all()).await;
    assert_unauthorized(
        server
            .get(None, "/whoami", &[("Authorization", "Bearer good-token")])
            .await
            .unwrap(),
        "bearer tokens are not accepted",
    );
    assert_unauthorized(
        server
            .get(None, "/whoami", &[("Authorization", "Bearer  two-spaces")])
            .await
            .unwrap(),
        "empty or malformed",
    );
}

#[tokio::test]
async fn denial_is_a_kubernetes_style_403() {
    let pki = Pki::new();
    let access = FakeAccess::new(|_, _| {
        Ok(Decision::Denied {
            reason: "no RBAC policy matched".to_owned(),
        })
    });
    let server = Server::start(pki.config(&[]), None, access.clone()).await;
    let (status, body) = server
        .get(Some(&pki.proxy()), CM_PODS, &[("X-Remote-User", "bob")])
        .await
        .unwrap();
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        body,
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "pods.custom.metrics.k8s.io \"*\" is forbidden: User \"bob\" cannot get \
                        resource \"pods/m\" in API group \"custom.metrics.k8s.io\" in the \
                        namespace \"ns\": no RBAC policy matched",
            "reason": "Forbidden",
            "code": 403,
        })
    );
    let asked = access.asked.lock().unwrap().clone();
    assert_eq!(asked, [("bob".to_owned(), attributes_for(CM_PODS))]);
}

#[tokio::test]
async fn allowed_requests_reach_the_metrics_handlers() {
    let pki = Pki::new();
    let access = FakeAccess::allow_all();
    let server = Server::start(pki.config(&[]), None, access.clone()).await;
    let alice = [("X-Remote-User", "alice")];
    let (status, body) = server
        .get(
            Some(&pki.proxy()),
            "/apis/custom.metrics.k8s.io/v1beta2",
            &alice,
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["kind"], "APIResourceList", "{body}");
    // Past the guard, the handler's own answer: this metric does not exist.
    let (status, body) = server
        .get(Some(&pki.proxy()), CM_PODS, &alice)
        .await
        .unwrap();
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        access.asked.lock().unwrap()[0].1,
        Attributes::NonResource {
            path: "/apis/custom.metrics.k8s.io/v1beta2".to_owned(),
            verb: "get".to_owned()
        }
    );
}

#[tokio::test]
async fn access_reviews_are_cached_and_masters_never_asked() {
    install_provider();
    let access = FakeAccess::new(|user, _| {
        Ok(if user.username == "alice" {
            Decision::Allowed
        } else {
            Decision::Denied {
                reason: String::new(),
            }
        })
    });
    let guard = Guard::new(AuthenticationConfig::default(), None, access.clone()).unwrap();
    let user = |name: &str, groups: &[&str]| UserInfo {
        username: name.to_owned(),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        ..Default::default()
    };

    let alice = user("alice", &[]);
    guard.authorize(&alice, CM_PODS).await.unwrap();
    guard.authorize(&alice, CM_PODS).await.unwrap();
    assert_eq!(access.calls(), 1);

    let bob = user("bob", &[]);
    for _ in 0..2 {
        let err = guard.authorize(&bob, CM_PODS).await.unwrap_err();
        assert_eq!((err.code, err.reason), (403, StatusReason::Forbidden));
        assert!(
            err.message.ends_with(r#"in the namespace "ns""#),
            "{}",
            err.message
        );
    }
    assert_eq!(access.calls(), 2);

    // Another path, or the same user in another group, is another question.
    guard
        .authorize(&alice, "/apis/custom.metrics.k8s.io/v1beta2")
        .await
        .unwrap();
    let _ = guard.authorize(&user("bob", &["extra"]), CM_PODS).await;
    assert_eq!(access.calls(), 4);

    let root = user("bob", &["system:masters"]);
    guard.authorize(&root, CM_PODS).await.unwrap();
    assert_eq!(access.calls(), 4);
}

#[tokio::test(start_paused = true)]
async fn cached_decisions_expire() {
    install_provider();
    let access = FakeAccess::allow_all();
    let ttls = CacheTtls {
        allowed: Duration::from_millis(50),
        ..CacheTtls::default()
    };
    let guard = Guard::with_cache_ttls(
        AuthenticationConfig::default(),
        None,
        access.clone(),
        ttls,
        crate::telemetry::SelfMetrics::new(),
    )
    .unwrap();
    let alice = UserInfo {
        username: "alice".to_owned(),
        ..Default::default()
    };
    guard.authorize(&alice, CM_PODS).await.unwrap();
    guard.authorize(&alice, CM_PODS).await.unwrap();
    assert_eq!(access.calls(), 1);
    tokio::time::advance(Duration::from_millis(80)).await;
    access.set_rule(|_, _| {
        Ok(Decision::Denied {
            reason: String::new(),
        })
    });
    assert_eq!(
        guard.authorize(&alice, CM_PODS).await.unwrap_err().code,
        403
    );
    assert_eq!(access.calls(), 2);
}

#[tokio::test]
async fn access_review_failure_is_a_503_never_an_allow() {
    install_provider();
    let access =
        FakeAccess::new(|_, _| Err(AuthError::Review("SubjectAccessReview: timeout".to_owned())));
    let guard = Guard::new(AuthenticationConfig::default(), None, access.clone()).unwrap();
    let alice = UserInfo {
        username: "alice".to_owned(),
        ..Default::default()
    };
    for _ in 0..2 {
        let err = guard.authorize(&alice, CM_PODS).await.unwrap_err();
        assert_eq!(err.code, 503);
        assert!(err.message.contains("timeout"), "{}", err.message);
    }
    // Failures are not remembered: the next request asks again.
    assert_eq!(access.calls(), 2);
}

#[tokio::test]
async fn set_config_swaps_allowed_names_at_runtime() {
    let pki = Pki::new();
    let server = Server::start(pki.config(&["old-proxy"]), None, FakeAccess::allow_all()).await;
    assert_unauthorized(
        server
            .get(Some(&pki.proxy()), "/whoami", &proxied_alice())
            .await
            .unwrap(),
        "not in requestheader-allowed-names",
    );
    server
        .guard
        .set_config(pki.config(&[FRONT_PROXY_CN]))
        .unwrap();
    let (status, body) = server
        .get(Some(&pki.proxy()), "/whoami", &proxied_alice())
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");

    // A broken config is refused and the working one stays.
    let mut broken = pki.config(&[]);
    broken.request_header.as_mut().unwrap().client_ca_pem = "garbage".to_owned();
    let err = server.guard.set_config(broken).unwrap_err();
    assert!(
        err.to_string().starts_with("requestheader-client-ca-file"),
        "{err}"
    );
    let (status, _) = server
        .get(Some(&pki.proxy()), "/whoami", &proxied_alice())
        .await
        .unwrap();
    assert_eq!(status, 200);
}

#[tokio::test]
async fn client_ca_bundle_reaches_the_handshake_at_runtime() {
    let pki = Pki::new();
    install_provider();
    let serving = ServingCertificate::self_signed(&["127.0.0.1".to_owned()]).unwrap();
    // Started before the ConfigMap was read: no client certificates asked for yet.
    let tls = Arc::new(ReloadableTls::new(serving.clone(), None).unwrap());
    let guard = Guard::new(
        AuthenticationConfig::default(),
        None,
        FakeAccess::allow_all(),
    )
    .unwrap();
    let server = Server::start_with(serving, tls, guard).await;
    assert_unauthorized(
        server
            .get(Some(&pki.proxy()), "/whoami", &proxied_alice())
            .await
            .unwrap(),
        "no credentials",
    );

    let config = pki.config(&[FRONT_PROXY_CN]);
    server.tls.set_client_ca(config.client_ca_bundle()).unwrap();
    server.guard.set_config(config).unwrap();
    let (status, body) = server
        .get(Some(&pki.proxy()), "/whoami", &proxied_alice())
        .await
        .unwrap();
    assert_eq!(
        (status, &body["user"]["username"]),
        (200, &json!("alice")),
        "{body}"
    );
}

#[tokio::test]
async fn health_routes_stay_open() {
    let pki = Pki::new();
    let server = Server::start(pki.config(&[]), None, FakeAccess::allow_all()).await;
    for path in ["/healthz", "/livez"] {
        let (status, body) = server.get(None, path, &[]).await.unwrap();
        assert_eq!((status, body), (200, json!("ok")), "{path}");
    }
    // Not ready yet, but answered rather than refused.
    let (status, _) = server.get(None, "/readyz", &[]).await.unwrap();
    assert_eq!(status, 503);
    assert_unauthorized(
        server
            .get(None, "/apis/custom.metrics.k8s.io/v1beta2", &[])
            .await
            .unwrap(),
        "no credentials",
    );
}

#[tokio::test]
async fn serving_certificate_reloads_in_place() {
    let pki = Pki::new();
    let server = Server::start(pki.config(&[]), None, FakeAccess::allow_all()).await;
    let new_ca = TestCa::new("rotated-serving-ca");
    let pinned_to_new = client_trusting(&new_ca.pem(), None);
    let healthz = format!("{}/healthz", server.url);
    pinned_to_new
        .get(&healthz)
        .send()
        .await
        .expect_err("the old certificate is not from the new CA");

    server
        .tls
        .set_serving(new_ca.serving(&["127.0.0.1"]))
        .unwrap();
    let response = client_trusting(&new_ca.pem(), None)
        .get(&healthz)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    server
        .client(None)
        .get(&healthz)
        .send()
        .await
        .expect_err("the old certificate is gone");
}

#[tokio::test]
async fn serving_certificate_follows_its_files() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let first_ca = TestCa::new("first-serving-ca");
    let first = first_ca.serving(&["127.0.0.1"]);
    std::fs::write(&cert_path, &first.cert_pem).unwrap();
    std::fs::write(&key_path, &first.key_pem).unwrap();

    install_provider();
    let serving = ServingCertificate::from_files(&cert_path, &key_path).unwrap();
    let config = pki.config(&[]);
    let tls = Arc::new(ReloadableTls::new(serving.clone(), config.client_ca_bundle()).unwrap());
    let guard = Guard::new(config, None, FakeAccess::allow_all()).unwrap();
    let server = Server::start_with(serving, tls, guard).await;
    let watch = server.tls.spawn_file_watch(
        cert_path.clone(),
        key_path.clone(),
        Duration::from_millis(20),
    );
    let healthz = format!("{}/healthz", server.url);
    let works = |ca: String| {
        let healthz = healthz.clone();
        async move {
            client_trusting(&ca, None)
                .get(&healthz)
                .send()
                .await
                .is_ok()
        }
    };
    assert!(works(first_ca.pem()).await);

    // A key that does not match is ignored; the served certificate stays.
    let second_ca = TestCa::new("second-serving-ca");
    let second = second_ca.serving(&["127.0.0.1"]);
    std::fs::write(&cert_path, &second.cert_pem).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(works(first_ca.pem()).await);
    assert!(!works(second_ca.pem()).await);

    std::fs::write(&key_path, &second.key_pem).unwrap();
    let mut switched = false;
    for _ in 0..250 {
        if works(second_ca.pem()).await {
            switched = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(switched, "the new files were never served");
    assert!(!works(first_ca.pem()).await);
    watch.abort();
}

fn peer(leaf: &Leaf) -> PeerCertificates {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let der = CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).unwrap();
    PeerCertificates::new(vec![der])
}

fn header_map(pairs: &[(&str, &str)]) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    for (name, value) in pairs {
        headers.append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            http::HeaderValue::from_str(value).unwrap(),
        );
    }
    headers
}

#[tokio::test]
async fn the_guard_checks_the_ca_even_when_the_handshake_did_not() {
    install_provider();
    let pki = Pki::new();
    let guard = Guard::new(pki.config(&[]), None, FakeAccess::allow_all()).unwrap();
    let stranger = peer(&pki.stranger.client(FRONT_PROXY_CN, &[]));
    let err = guard
        .authenticate(Some(&stranger), &header_map(&proxied_alice()))
        .await
        .unwrap_err();
    assert_eq!(err.code, 401);
    assert!(
        err.message
            .contains("not signed by a CA this server trusts")
            && err.message.contains("front-proxy CA")
            && err.message.contains("client CA"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn a_cluster_ca_certificate_cannot_act_as_the_front_proxy() {
    install_provider();
    let pki = Pki::new();
    // Same CN as the real proxy, but from the CA every cluster user's certificate
    // comes from: the handshake accepts it (the union bundle), the guard must not
    // believe its headers.
    let guard = Guard::new(pki.config(&[FRONT_PROXY_CN]), None, FakeAccess::allow_all()).unwrap();
    let lookalike = peer(&pki.cluster.client(FRONT_PROXY_CN, &[]));
    let user = guard
        .authenticate(Some(&lookalike), &header_map(&proxied_alice()))
        .await
        .unwrap();
    assert_eq!(user.username, FRONT_PROXY_CN);
    // The forged X-Remote-* identity is ignored: only the group every authenticated user has.
    assert_eq!(user.groups, vec!["system:authenticated".to_string()]);
    assert!(user.extra.is_empty());

    let mut no_client_ca = pki.config(&[FRONT_PROXY_CN]);
    no_client_ca.client_ca_pem = None;
    guard.set_config(no_client_ca).unwrap();
    let err = guard
        .authenticate(Some(&lookalike), &header_map(&proxied_alice()))
        .await
        .unwrap_err();
    assert_eq!(err.code, 401, "{}", err.message);
}

#[tokio::test]
async fn unreadable_identity_headers_are_refused() {
    install_provider();
    let pki = Pki::new();
    let guard = Guard::new(pki.config(&[]), None, FakeAccess::allow_all()).unwrap();
    let mut headers = http::HeaderMap::new();
    headers.insert(
        "x-remote-user",
        http::HeaderValue::from_bytes(b"al\xffice").unwrap(),
    );
    let err = guard
        .authenticate(Some(&peer(&pki.proxy())), &headers)
        .await
        .unwrap_err();
    assert_eq!(err.code, 401);
    assert!(
        err.message.contains("x-remote-user header is not UTF-8"),
        "{}",
        err.message
    );
    assert!(
        !err.message.contains("al"),
        "values are never echoed: {}",
        err.message
    );
}

#[tokio::test]
async fn empty_username_header_falls_to_the_next_one() {
    install_provider();
    let pki = Pki::new();
    let mut config = pki.config(&[]);
    config.request_header.as_mut().unwrap().username_headers =
        vec!["X-Remote-User".to_owned(), "X-Forwarded-User".to_owned()];
    let guard = Guard::new(config, None, FakeAccess::allow_all()).unwrap();
    let user = guard
        .authenticate(
            Some(&peer(&pki.proxy())),
            &header_map(&[("X-Remote-User", ""), ("x-forwarded-user", "dave")]),
        )
        .await
        .unwrap();
    assert_eq!(user.username, "dave");
}

#[tokio::test]
async fn a_connection_verifies_its_chain_once_until_the_cas_change() {
    install_provider();
    let pki = Pki::new();
    let guard = Guard::new(pki.config(&[]), None, FakeAccess::allow_all()).unwrap();
    // One value per connection, cloned onto each of its requests.
    let connection = peer(&pki.proxy());
    for _ in 0..5 {
        let user = guard
            .authenticate(Some(&connection.clone()), &header_map(&proxied_alice()))
            .await
            .unwrap();
        assert_eq!(user.username, "alice");
    }
    assert_eq!(guard.chains_verified(), 1);
    // Another connection with the same certificate verifies its own.
    guard
        .authenticate(Some(&peer(&pki.proxy())), &header_map(&proxied_alice()))
        .await
        .unwrap();
    assert_eq!(guard.chains_verified(), 2);

    // The front-proxy CA is retired (another CA in the ConfigMap): the open connection's
    // next request is checked again and refused.
    let mut retired = pki.config(&[]);
    retired.request_header.as_mut().unwrap().client_ca_pem = TestCa::new("new-front-proxy").pem();
    guard.set_config(retired).unwrap();
    let err = guard
        .authenticate(Some(&connection), &header_map(&proxied_alice()))
        .await
        .unwrap_err();
    assert_eq!(err.code, 401, "{}", err.message);
    assert_eq!(guard.chains_verified(), 3);
}
