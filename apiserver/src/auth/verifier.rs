//! What the authentication config's values become: CA bundles turned into verifiers,
//! header names parsed. Used by the client-certificate and front-proxy checks alike.
//!
//! Every sentence in this file is a message users see: docs/troubleshooting.md lists them.

use super::AuthError;
use crate::tls::parse_roots;
use http::HeaderName;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use std::sync::Arc;

pub(super) fn verifier(
    provider: &Arc<CryptoProvider>,
    key: &str,
    pem: &str,
) -> Result<Arc<dyn ClientCertVerifier>, AuthError> {
    let roots = parse_roots(key, pem).map_err(|e| match e {
        crate::tls::TlsError::Invalid { message, .. } => AuthError::config(key, message),
        other => AuthError::config(key, other),
    })?;
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| AuthError::config(key, e))
}

pub(super) fn header_names(key: &str, names: &[String]) -> Result<Vec<HeaderName>, AuthError> {
    names
        .iter()
        .map(|name| {
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                AuthError::config(key, format!("{name:?} is not a valid HTTP header name"))
            })
        })
        .collect()
}
