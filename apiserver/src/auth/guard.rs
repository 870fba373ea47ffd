//! The per-request checks: who is calling, and may they.

use super::attributes::{forbidden_message, path_unescape};
use super::cache::{Lookup, ReviewCache};
use super::certificate::{Subject, Trust, VerifiedChain, verified_chain};
use super::{
    AccessReviewer, Attributes, AuthError, AuthenticationConfig, Decision, TokenReviewer, UserInfo,
    attributes_for,
};
use crate::error::ApiError;
use crate::https::PeerCertificates;
use crate::telemetry::{ReviewLabels, SelfMetrics};
use crate::tls::{crypto_provider, parse_roots};
use arc_swap::ArcSwap;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Kubernetes' privileged group: allowed everything without asking the cluster.
const MASTERS: &str = "system:masters";
const CACHE_CAPACITY: usize = 4096;
const TOKEN: &str = "token";
const ACCESS: &str = "access";

/// How long review answers are reused; a revoked token or role binding takes at most
/// this long to bite. Kubernetes' delegated defaults are 10 s for all four; allowed
/// answers are kept 30 s here so that an HPA polling every 15 s costs no review per
/// request, while denials and rejected tokens still expire after 10 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheTtls {
    pub token_authenticated: Duration,
    pub token_rejected: Duration,
    pub allowed: Duration,
    pub denied: Duration,
}

impl Default for CacheTtls {
    fn default() -> Self {
        CacheTtls {
            token_authenticated: Duration::from_secs(30),
            token_rejected: Duration::from_secs(10),
            allowed: Duration::from_secs(30),
            denied: Duration::from_secs(10),
        }
    }
}

/// Shared by every request: the authentication config, swapped when the ConfigMap
/// changes, the reviewers, and their caches.
pub struct Guard {
    provider: Arc<CryptoProvider>,
    compiled: ArcSwap<Compiled>,
    generations: AtomicU64,
    /// Chains verified so far (a connection's requests after its first reuse the result).
    chains_verified: AtomicU64,
    metrics: Arc<SelfMetrics>,
    tokens: Option<Arc<dyn TokenReviewer>>,
    access: Arc<dyn AccessReviewer>,
    ttls: CacheTtls,
    // Tokens are cached under their digest so that the cache never holds a
    // credential that outlives the request carrying it.
    token_digest: &'static dyn rustls::crypto::hash::Hash,
    token_cache: ReviewCache<Vec<u8>, Option<UserInfo>>,
    decision_cache: ReviewCache<(UserInfo, Attributes), Decision>,
}

impl fmt::Debug for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard")
            .field("tokens", &self.tokens.is_some())
            .field("ttls", &self.ttls)
            .finish_non_exhaustive()
    }
}

impl Guard {
    /// `tokens: None` refuses bearer tokens (certificates only).
    pub fn new(
        config: AuthenticationConfig,
        tokens: Option<Arc<dyn TokenReviewer>>,
        access: Arc<dyn AccessReviewer>,
    ) -> Result<Arc<Self>, AuthError> {
        Self::with_cache_ttls(config, tokens, access, CacheTtls::default())
    }

    pub fn with_cache_ttls(
        config: AuthenticationConfig,
        tokens: Option<Arc<dyn TokenReviewer>>,
        access: Arc<dyn AccessReviewer>,
        ttls: CacheTtls,
    ) -> Result<Arc<Self>, AuthError> {
        let provider = crypto_provider().map_err(|_| AuthError::NoCryptoProvider)?;
        let token_digest = provider
            .cipher_suites
            .iter()
            .find_map(|suite| suite.tls13())
            .map(|suite| suite.common.hash_provider)
            .ok_or(AuthError::NoCryptoProvider)?;
        let compiled = Compiled::new(&provider, &config, 0)?;
        Ok(Arc::new(Guard {
            provider,
            compiled: ArcSwap::from_pointee(compiled),
            generations: AtomicU64::new(1),
            chains_verified: AtomicU64::new(0),
            metrics: SelfMetrics::global(),
            tokens,
            access,
            ttls,
            token_digest,
            token_cache: ReviewCache::new(CACHE_CAPACITY),
            decision_cache: ReviewCache::new(CACHE_CAPACITY),
        }))
    }

    /// Takes effect for the next request; on error the previous config stays.
    pub fn set_config(&self, config: AuthenticationConfig) -> Result<(), AuthError> {
        let generation = self.generations.fetch_add(1, Ordering::Relaxed);
        let compiled = Compiled::new(&self.provider, &config, generation)?;
        self.compiled.store(Arc::new(compiled));
        Ok(())
    }

    /// Tries, like Kubernetes' union authenticator, the front proxy, then the client
    /// CA, then the bearer token. 401 with every reason that applied; 503 when the
    /// token could not be reviewed, since then nothing is known about the caller.
    pub async fn authenticate(
        &self,
        peer: Option<&PeerCertificates>,
        headers: &HeaderMap,
    ) -> Result<UserInfo, ApiError> {
        self.authenticate_any(peer, headers)
            .await
            .map(with_authenticated_group)
    }

    async fn authenticate_any(
        &self,
        peer: Option<&PeerCertificates>,
        headers: &HeaderMap,
    ) -> Result<UserInfo, ApiError> {
        let compiled = self.compiled.load_full();
        let mut reasons = Vec::new();
        if let Some(chain) =
            peer.and_then(|peer| verified_chain(peer, &compiled.trust(), &self.chains_verified))
        {
            match compiled.authenticate_certificate(&chain, headers) {
                Ok(user) => return Ok(user),
                Err(reason) => reasons.push(reason),
            }
        }
        match bearer_token(headers) {
            Bearer::Absent => {}
            Bearer::Malformed => reasons.push("the bearer token is empty or malformed".to_owned()),
            Bearer::Token(token) => match &self.tokens {
                None => reasons.push(
                    "bearer tokens are not accepted by this server; present a client certificate"
                        .to_owned(),
                ),
                Some(reviewer) => match self.review_token(reviewer.as_ref(), token).await {
                    Ok(Some(user)) => return Ok(user),
                    Ok(None) => reasons.push("the bearer token was rejected".to_owned()),
                    Err(e) => {
                        tracing::warn!(error = %e, "TokenReview failed");
                        return Err(ApiError::unavailable(format!(
                            "could not verify the bearer token: {e}"
                        )));
                    }
                },
            },
        }
        if reasons.is_empty() {
            reasons.push(compiled.no_credentials(self.tokens.is_some()));
        }
        Err(ApiError::unauthorized(reasons.join("; ")))
    }

    /// 403 with Kubernetes' message when the cluster denies the request; 503 when it
    /// could not be asked, which never lets a request through.
    pub async fn authorize(&self, user: &UserInfo, path: &str) -> Result<(), ApiError> {
        if user.groups.iter().any(|group| group == MASTERS) {
            return Ok(());
        }
        let attributes = attributes_for(path);
        let key = (user.clone(), attributes);
        let ttls = self.ttls;
        let (decision, lookup) = self
            .decision_cache
            .get_or_review(
                &key,
                || self.access.review(user, &key.1),
                |decision| match decision {
                    Decision::Allowed => ttls.allowed,
                    Decision::Denied { .. } => ttls.denied,
                },
            )
            .await;
        self.count(ACCESS, lookup);
        let decision = decision.map_err(|e| {
            tracing::warn!(error = %e, "SubjectAccessReview failed");
            ApiError::unavailable(format!("could not authorize the request: {e}"))
        })?;
        match decision {
            Decision::Allowed => Ok(()),
            Decision::Denied { reason } => Err(ApiError::forbidden(forbidden_message(
                user, &key.1, &reason,
            ))),
        }
    }

    async fn review_token(
        &self,
        reviewer: &dyn TokenReviewer,
        token: &str,
    ) -> Result<Option<UserInfo>, AuthError> {
        let key = self.token_digest.hash(token.as_bytes()).as_ref().to_vec();
        let ttls = self.ttls;
        let (result, lookup) = self
            .token_cache
            .get_or_review(
                &key,
                || reviewer.review(token),
                |user| match user {
                    Some(_) => ttls.token_authenticated,
                    None => ttls.token_rejected,
                },
            )
            .await;
        self.count(TOKEN, lookup);
        result
    }

    fn count(&self, review: &'static str, lookup: Lookup) {
        let labels = ReviewLabels { review };
        match lookup {
            Lookup::Cached | Lookup::Shared => {
                self.metrics.auth_cache_hits.get_or_create(&labels).inc()
            }
            Lookup::Reviewed => self.metrics.auth_reviews.get_or_create(&labels).inc(),
        };
    }

    /// Client certificate chains verified so far; a connection verifies its chain once.
    pub fn chains_verified(&self) -> u64 {
        self.chains_verified.load(Ordering::Relaxed)
    }

    /// Handlers never need the credentials, and dropping them keeps any of them out
    /// of whatever a handler might log or forward.
    fn remove_credentials(&self, headers: &mut HeaderMap) {
        headers.remove(AUTHORIZATION);
        let compiled = self.compiled.load();
        let Some(rh) = &compiled.request_header else {
            return;
        };
        let mut names: Vec<HeaderName> = rh
            .username_headers
            .iter()
            .chain(&rh.uid_headers)
            .chain(&rh.group_headers)
            .cloned()
            .collect();
        names.extend(
            headers
                .keys()
                .filter(|name| rh.extra_key(name.as_str()).is_some())
                .cloned(),
        );
        for name in names {
            headers.remove(name);
        }
    }
}

/// axum middleware for `Router::layer(axum::middleware::from_fn_with_state(guard,
/// require_auth))`: authenticates and authorizes, then hands the handler the request
/// with the [`UserInfo`] in its extensions and the credentials removed.
/// Like k8s.io/apiserver's `AuthenticatedGroupAdder`: every authenticated user is in
/// `system:authenticated`, which RBAC's bootstrap roles (discovery, OpenAPI) are bound
/// to. The aggregator's own fetches rely on it.
fn with_authenticated_group(mut user: UserInfo) -> UserInfo {
    if !user.groups.iter().any(|group| group == AUTHENTICATED) {
        user.groups.push(AUTHENTICATED.to_owned());
    }
    user
}

const AUTHENTICATED: &str = "system:authenticated";

pub async fn require_auth(
    State(guard): State<Arc<Guard>>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = request.extensions().get::<PeerCertificates>().cloned();
    let user = match guard.authenticate(peer.as_ref(), request.headers()).await {
        Ok(user) => user,
        Err(error) => {
            tracing::debug!(path = request.uri().path(), reason = %error.message, "unauthenticated request");
            return error.into_response();
        }
    };
    if let Err(error) = guard.authorize(&user, request.uri().path()).await {
        tracing::debug!(
            path = request.uri().path(),
            user = %user.username,
            reason = %error.message,
            "request not authorized"
        );
        return error.into_response();
    }
    guard.remove_credentials(request.headers_mut());
    request.extensions_mut().insert(user);
    next.run(request).await
}

/// The config with its CA bundles turned into verifiers and its header names parsed,
/// once per change rather than per request.
struct Compiled {
    /// Distinct for every config applied: verifications kept on connections are only
    /// reused under the generation they were made with.
    generation: u64,
    request_header: Option<RequestHeader>,
    client_ca: Option<Arc<dyn ClientCertVerifier>>,
}

struct RequestHeader {
    // Built from the front-proxy CA alone: the handshake only proved the chain against
    // the union with the client CA, which would let any cluster user be the proxy.
    verifier: Arc<dyn ClientCertVerifier>,
    allowed_names: Vec<String>,
    username_headers: Vec<HeaderName>,
    uid_headers: Vec<HeaderName>,
    group_headers: Vec<HeaderName>,
    extra_prefixes: Vec<String>,
}

fn config_error(key: &str, message: impl fmt::Display) -> AuthError {
    AuthError::Config {
        key: key.to_owned(),
        message: message.to_string(),
    }
}

fn verifier(
    provider: &Arc<CryptoProvider>,
    key: &str,
    pem: &str,
) -> Result<Arc<dyn ClientCertVerifier>, AuthError> {
    let roots = parse_roots(key, pem).map_err(|e| match e {
        crate::tls::TlsError::Invalid { message, .. } => config_error(key, message),
        other => config_error(key, other),
    })?;
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| config_error(key, e))
}

fn header_names(key: &str, names: &[String]) -> Result<Vec<HeaderName>, AuthError> {
    names
        .iter()
        .map(|name| {
            HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| config_error(key, format!("{name:?} is not a valid HTTP header name")))
        })
        .collect()
}

impl Compiled {
    fn new(
        provider: &Arc<CryptoProvider>,
        config: &AuthenticationConfig,
        generation: u64,
    ) -> Result<Self, AuthError> {
        let request_header = match &config.request_header {
            None => None,
            Some(rh) => Some(RequestHeader {
                verifier: verifier(provider, "requestheader-client-ca-file", &rh.client_ca_pem)?,
                allowed_names: rh.allowed_names.clone(),
                username_headers: header_names(
                    "requestheader-username-headers",
                    &rh.username_headers,
                )?,
                uid_headers: header_names("requestheader-uid-headers", &rh.uid_headers)?,
                group_headers: header_names("requestheader-group-headers", &rh.group_headers)?,
                extra_prefixes: rh
                    .extra_headers_prefixes
                    .iter()
                    .map(|prefix| prefix.to_ascii_lowercase())
                    .collect(),
            }),
        };
        let client_ca = match &config.client_ca_pem {
            None => None,
            Some(pem) => Some(verifier(provider, "client-ca-file", pem)?),
        };
        Ok(Compiled {
            generation,
            request_header,
            client_ca,
        })
    }

    fn trust(&self) -> Trust<'_> {
        Trust {
            generation: self.generation,
            front_proxy: self.request_header.as_ref().map(|rh| &rh.verifier),
            client_ca: self.client_ca.as_ref(),
        }
    }

    fn authenticate_certificate(
        &self,
        chain: &VerifiedChain,
        headers: &HeaderMap,
    ) -> Result<UserInfo, String> {
        let mut proxy_failure = None;
        let mut untrusted = Vec::new();
        if let Some(rh) = &self.request_header {
            match &chain.front_proxy {
                Some(Ok(())) => match rh.user(&chain.subject, headers) {
                    Ok(user) => return Ok(user),
                    Err(reason) => proxy_failure = Some(reason),
                },
                Some(Err(e)) => untrusted.push(format!("front-proxy CA: {e}")),
                None => {}
            }
        }
        if self.client_ca.is_some() {
            match &chain.client_ca {
                Some(Ok(())) => return certificate_user(&chain.subject),
                Some(Err(e)) => untrusted.push(format!("client CA: {e}")),
                None => {}
            }
        }
        if let Some(reason) = proxy_failure {
            return Err(reason);
        }
        if untrusted.is_empty() {
            return Err(
                "client certificates are not accepted: the cluster publishes no client CA"
                    .to_owned(),
            );
        }
        Err(format!(
            "the client certificate is not signed by a CA this server trusts ({})",
            untrusted.join(", ")
        ))
    }

    fn no_credentials(&self, tokens: bool) -> String {
        let mut accepted = Vec::new();
        if self.request_header.is_some() {
            accepted.push("kube-apiserver's front-proxy certificate");
        }
        if self.client_ca.is_some() {
            accepted.push("a client certificate from the cluster CA");
        }
        if tokens {
            accepted.push("a bearer token");
        }
        if accepted.is_empty() {
            return "no credentials, and this server has no way to authenticate any".to_owned();
        }
        format!(
            "no credentials: anonymous requests are not allowed; present {}",
            accepted.join(" or ")
        )
    }
}

impl RequestHeader {
    fn user(
        &self,
        subject: &Result<Subject, String>,
        headers: &HeaderMap,
    ) -> Result<UserInfo, String> {
        let common_name = &subject.as_ref().map_err(Clone::clone)?.common_name;
        if !self.allowed_names.is_empty() && !self.allowed_names.contains(common_name) {
            return Err(format!(
                "the client certificate's common name {common_name:?} is not in \
                 requestheader-allowed-names {:?}",
                self.allowed_names
            ));
        }
        let Some(username) = first_value(headers, &self.username_headers)? else {
            return Err(format!(
                "the front proxy's request names no user (no {} header)",
                self.username_headers
                    .iter()
                    .map(HeaderName::as_str)
                    .collect::<Vec<_>>()
                    .join(" or ")
            ));
        };
        let uid = first_value(headers, &self.uid_headers)?.unwrap_or_default();
        let mut groups = Vec::new();
        for name in &self.group_headers {
            for value in headers.get_all(name) {
                let value = utf8(name.as_str(), value)?;
                if !value.is_empty() {
                    groups.push(value.to_owned());
                }
            }
        }
        let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, value) in headers {
            if let Some(key) = self.extra_key(name.as_str()) {
                extra
                    .entry(key)
                    .or_default()
                    .push(utf8(name.as_str(), value)?.to_owned());
            }
        }
        Ok(UserInfo {
            username,
            uid,
            groups,
            extra,
        })
    }

    /// The extra key a header carries, if it is one: the rest of its (lowercase) name,
    /// percent-decoded because keys like `scopes.example.com/x` cannot be header names.
    fn extra_key(&self, header: &str) -> Option<String> {
        self.extra_prefixes.iter().find_map(|prefix| {
            let encoded = header.strip_prefix(prefix.as_str())?;
            Some(path_unescape(encoded).unwrap_or_else(|| encoded.to_owned()))
        })
    }
}

fn utf8<'a>(name: &str, value: &'a http::HeaderValue) -> Result<&'a str, String> {
    std::str::from_utf8(value.as_bytes()).map_err(|_| format!("the {name} header is not UTF-8"))
}

/// The first non-empty value among `names`, in order.
fn first_value(headers: &HeaderMap, names: &[HeaderName]) -> Result<Option<String>, String> {
    for name in names {
        if let Some(value) = headers.get(name) {
            let value = utf8(name.as_str(), value)?;
            if !value.is_empty() {
                return Ok(Some(value.to_owned()));
            }
        }
    }
    Ok(None)
}

fn certificate_user(subject: &Result<Subject, String>) -> Result<UserInfo, String> {
    let subject = subject.as_ref().map_err(Clone::clone)?;
    if subject.common_name.is_empty() {
        return Err("the client certificate has no common name to name its user".to_owned());
    }
    Ok(UserInfo {
        username: subject.common_name.clone(),
        groups: subject.organizations.clone(),
        ..Default::default()
    })
}

enum Bearer<'a> {
    Absent,
    Malformed,
    Token(&'a str),
}

/// As Kubernetes reads it: other schemes are not ours to judge and count as absent.
fn bearer_token(headers: &HeaderMap) -> Bearer<'_> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Bearer::Absent;
    };
    let Ok(value) = value.to_str() else {
        return Bearer::Malformed;
    };
    let mut parts = value.trim().splitn(3, ' ');
    let (Some(scheme), Some(token)) = (parts.next(), parts.next()) else {
        return Bearer::Absent;
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Bearer::Absent;
    }
    if token.is_empty() {
        return Bearer::Malformed;
    }
    Bearer::Token(token)
}
