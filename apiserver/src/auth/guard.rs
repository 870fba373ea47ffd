//! The [`Guard`] every request passes: the authentication config, the reviewers and
//! their caches, and the order in which credentials are tried.
//!
//! Every sentence in this file is a message users see: docs/troubleshooting.md lists them.

use super::PeerCertificates;
use super::authorize::Authorizer;
use super::bearer::{Bearer, TokenAuthenticator, bearer_token};
use super::cache::CacheTtls;
use super::client_chain::verified_chain;
use super::x509::Verifiers;
use super::{AccessReviewer, AuthError, AuthenticationConfig, TokenReviewer, UserInfo};
use crate::error::ApiError;
use crate::telemetry::SelfMetrics;
use crate::tls::crypto_provider;
use arc_swap::ArcSwap;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName};
use rustls::crypto::CryptoProvider;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Shared by every request: the authentication config, swapped when the ConfigMap
/// changes, and the token and access reviews with their caches.
pub struct Guard {
    provider: Arc<CryptoProvider>,
    compiled: ArcSwap<Verifiers>,
    generations: AtomicU64,
    /// Chains verified so far (a connection's requests after its first reuse the result).
    chains_verified: AtomicU64,
    /// `None` when bearer tokens are refused.
    tokens: Option<TokenAuthenticator>,
    authorizer: Authorizer,
    ttls: CacheTtls,
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
            tokens: tokens.map(|reviewer| {
                TokenAuthenticator::new(reviewer, token_digest, ttls, metrics.clone())
            }),
            authorizer: Authorizer::new(access, ttls, metrics),
            ttls,
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
                Some(authenticator) => match authenticator.review(token).await {
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
        self.authorizer.authorize(user, path).await
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
