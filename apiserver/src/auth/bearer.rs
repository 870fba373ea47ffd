//! Bearer tokens: reading them from the request and reviewing them with the cluster.
//!
//! Every sentence in this file is a message users see: docs/troubleshooting.md lists them.

use super::cache::{CacheTtls, REVIEW_CACHE_BYTES, ReviewCache};
use super::{AuthError, TOKEN, TokenReviewer, UserInfo, count_lookup};
use crate::telemetry::SelfMetrics;
use http::HeaderMap;
use http::header::AUTHORIZATION;
use std::sync::Arc;

/// Reviews bearer tokens with the cluster (TokenReview) and keeps the answers, under
/// the token's digest so that the cache never holds a credential that outlives the
/// request carrying it.
pub(super) struct TokenAuthenticator {
    reviewer: Arc<dyn TokenReviewer>,
    digest: &'static dyn rustls::crypto::hash::Hash,
    cache: ReviewCache<Vec<u8>, Option<UserInfo>>,
    ttls: CacheTtls,
    metrics: Arc<SelfMetrics>,
}

impl TokenAuthenticator {
    pub(super) fn new(
        reviewer: Arc<dyn TokenReviewer>,
        digest: &'static dyn rustls::crypto::hash::Hash,
        ttls: CacheTtls,
        metrics: Arc<SelfMetrics>,
    ) -> Self {
        TokenAuthenticator {
            reviewer,
            digest,
            cache: ReviewCache::new(REVIEW_CACHE_BYTES),
            ttls,
            metrics,
        }
    }

    /// The user the token stands for, `None` when the cluster rejects it.
    pub(super) async fn review(&self, token: &str) -> Result<Option<UserInfo>, AuthError> {
        let key = self.digest.hash(token.as_bytes()).as_ref().to_vec();
        let ttls = self.ttls;
        let (result, lookup) = self
            .cache
            .get_or_review(
                &key,
                || self.reviewer.review(token),
                |user| match user {
                    Some(_) => ttls.token_authenticated,
                    None => ttls.token_rejected,
                },
            )
            .await;
        count_lookup(&self.metrics, TOKEN, lookup);
        result
    }
}

pub(super) enum Bearer<'a> {
    Absent,
    Malformed,
    Token(&'a str),
}

/// As Kubernetes reads it: other schemes are not ours to judge and count as absent.
pub(super) fn bearer_token(headers: &HeaderMap) -> Bearer<'_> {
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
