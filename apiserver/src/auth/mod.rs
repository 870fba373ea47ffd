//! Authentication and authorization as an aggregated API server does them.
//!
//! kube-apiserver proxies to us with its front-proxy client certificate and the user
//! it authenticated in `X-Remote-*` headers; we believe those headers only from that
//! certificate. Other callers may present a certificate from the cluster CA or a
//! bearer token. Every request is then authorized by the cluster (SubjectAccessReview).
//!
//! The Kubernetes calls themselves (TokenReview, SubjectAccessReview, the ConfigMap
//! watch) live in the operator behind [`TokenReviewer`] and [`AccessReviewer`], so that
//! this crate does not depend on a Kubernetes client.

mod attributes;
mod authorize;
mod bearer;
mod cache;
mod client_chain;
mod config;
mod guard;
mod middleware;
mod request_header;
mod verifier;
mod x509;

#[cfg(test)]
pub(crate) mod test_pki;
#[cfg(test)]
mod tests;

pub use attributes::{Attributes, ResourceAttributes, attributes_for};
pub use cache::CacheTtls;
pub use client_chain::{PeerCertificates, VerifiedChain};
pub use config::{AuthenticationConfig, CONFIGMAP_NAME, CONFIGMAP_NAMESPACE, RequestHeaderConfig};
pub use guard::Guard;
pub use middleware::require_auth;

use crate::telemetry;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Who made a request, as Kubernetes' `user.Info`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct UserInfo {
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

/// The two kinds of review, as the self-metrics label them.
const TOKEN: &str = "token";
const ACCESS: &str = "access";

/// Counts one lookup of a review cache: a hit (cached or shared) or a review sent.
fn count_lookup(metrics: &telemetry::SelfMetrics, review: &'static str, lookup: cache::Lookup) {
    let labels = telemetry::ReviewLabels { review };
    match lookup {
        cache::Lookup::Cached | cache::Lookup::Shared => {
            metrics.auth_cache_hits.get_or_create(&labels).inc()
        }
        cache::Lookup::Reviewed => metrics.auth_reviews.get_or_create(&labels).inc(),
    };
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// A value of the authentication ConfigMap is unusable; `key` is its data key.
    #[error("{key}: {message}")]
    Config { key: String, message: String },
    /// The cluster could not answer a review; the reviewer says why.
    #[error("{0}")]
    Review(String),
    #[error(
        "no rustls crypto provider is installed for this process; install one \
         (rustls::crypto::ring::default_provider().install_default()) first"
    )]
    NoCryptoProvider,
}

impl AuthError {
    fn config(key: &str, message: impl std::fmt::Display) -> Self {
        AuthError::Config {
            key: key.to_owned(),
            message: message.to_string(),
        }
    }
}

/// TokenReview: who a bearer token belongs to.
pub trait TokenReviewer: Send + Sync + 'static {
    /// `Ok(None)` when the cluster rejects the token, `Err` when it could not be asked.
    /// The error is shown to the caller and logged, so it must never contain the token.
    fn review<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Option<UserInfo>, AuthError>>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// `reason` is the reviewer's explanation, possibly empty.
    Denied {
        reason: String,
    },
}

/// SubjectAccessReview: whether a user may do what a request asks.
pub trait AccessReviewer: Send + Sync + 'static {
    fn review<'a>(
        &'a self,
        user: &'a UserInfo,
        attributes: &'a Attributes,
    ) -> BoxFuture<'a, Result<Decision, AuthError>>;
}
