//! The [`Guard`] every request passes: the authentication config, the reviewers and
//! their caches, and the order in which credentials are tried.

use super::PeerCertificates;
use super::bearer::{Bearer, bearer_token};
use super::cache::{Lookup, ReviewCache};
use super::client_chain::verified_chain;
use super::x509::Verifiers;
use super::{
    AccessReviewer, Attributes, AuthError, AuthenticationConfig, Decision, TokenReviewer, UserInfo,
};
use crate::error::ApiError;
use crate::telemetry::{ReviewLabels, SelfMetrics};
use crate::tls::crypto_provider;
use arc_swap::ArcSwap;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName};
use rustls::crypto::CryptoProvider;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Bytes each review cache may hold: some 20,000 users' tokens or decisions, a small
/// share of the chart's 128 MiB memory limit.
const CACHE_BYTES: u64 = 8 << 20;

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
    compiled: ArcSwap<Verifiers>,
    generations: AtomicU64,
    /// Chains verified so far (a connection's requests after its first reuse the result).
    chains_verified: AtomicU64,
    pub(super) metrics: Arc<SelfMetrics>,
    pub(super) tokens: Option<Arc<dyn TokenReviewer>>,
    pub(super) access: Arc<dyn AccessReviewer>,
    pub(super) ttls: CacheTtls,
    // Tokens are cached under their digest so that the cache never holds a
    // credential that outlives the request carrying it.
    pub(super) token_digest: &'static dyn rustls::crypto::hash::Hash,
    pub(super) token_cache: ReviewCache<Vec<u8>, Option<UserInfo>>,
    pub(super) decision_cache: ReviewCache<(UserInfo, Attributes), Decision>,
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
    /// `tokens: None` refuses bearer tokens (certificates only). Default cache TTLs and
    /// self-metrics of its own.
    pub fn new(
        config: AuthenticationConfig,
        tokens: Option<Arc<dyn TokenReviewer>>,
        access: Arc<dyn AccessReviewer>,
    ) -> Result<Arc<Self>, AuthError> {
        Self::with_cache_ttls(
            config,
            tokens,
            access,
            CacheTtls::default(),
            SelfMetrics::new(),
        )
    }

    /// Counts its reviews and cache hits in `metrics`.
    pub fn with_cache_ttls(
        config: AuthenticationConfig,
        tokens: Option<Arc<dyn TokenReviewer>>,
        access: Arc<dyn AccessReviewer>,
        ttls: CacheTtls,
        metrics: Arc<SelfMetrics>,
    ) -> Result<Arc<Self>, AuthError> {
        let provider = crypto_provider().map_err(|_| AuthError::NoCryptoProvider)?;
        let token_digest = provider
            .cipher_suites
            .iter()
            .find_map(|suite| suite.tls13())
            .map(|suite| suite.common.hash_provider)
            .ok_or(AuthError::NoCryptoProvider)?;
        let compiled = Verifiers::new(&provider, &config, 0)?;
        Ok(Arc::new(Guard {
            provider,
            compiled: ArcSwap::from_pointee(compiled),
            generations: AtomicU64::new(1),
            chains_verified: AtomicU64::new(0),
            metrics,
            tokens,
            access,
            ttls,
            token_digest,
            token_cache: ReviewCache::new(CACHE_BYTES),
            decision_cache: ReviewCache::new(CACHE_BYTES),
        }))
    }

    /// Takes effect for the next request; on error the previous config stays.
    pub fn set_config(&self, config: AuthenticationConfig) -> Result<(), AuthError> {
        let generation = self.generations.fetch_add(1, Ordering::Relaxed);
        let compiled = Verifiers::new(&self.provider, &config, generation)?;
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

    pub(super) fn count(&self, review: &'static str, lookup: Lookup) {
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
    pub(super) fn remove_credentials(&self, headers: &mut HeaderMap) {
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
