//! Client certificates: the authentication config compiled into verifiers, and the
//! user a verified chain stands for.
//!
//! Every sentence in this file is a message users see: docs/troubleshooting.md lists them.

use super::client_chain::{Subject, Trust, VerifiedChain};
use super::request_header::RequestHeader;
use super::verifier::verifier;
use super::{AuthError, AuthenticationConfig, UserInfo};
use http::HeaderMap;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use std::sync::Arc;

/// The config with its CA bundles turned into verifiers and its header names parsed,
/// once per change rather than per request.
pub(super) struct Verifiers {
    /// Distinct for every config applied: verifications kept on connections are only
    /// reused under the generation they were made with.
    generation: u64,
    pub(super) request_header: Option<RequestHeader>,
    client_ca: Option<Arc<dyn ClientCertVerifier>>,
}

impl Verifiers {
    pub(super) fn new(
        provider: &Arc<CryptoProvider>,
        config: &AuthenticationConfig,
        generation: u64,
    ) -> Result<Self, AuthError> {
        let request_header = match &config.request_header {
            None => None,
            Some(rh) => Some(RequestHeader::new(provider, rh)?),
        };
        let client_ca = match &config.client_ca_pem {
            None => None,
            Some(pem) => Some(verifier(provider, "client-ca-file", pem)?),
        };
        Ok(Verifiers {
            generation,
            request_header,
            client_ca,
        })
    }

    pub(super) fn trust(&self) -> Trust<'_> {
        Trust {
            generation: self.generation,
            front_proxy: self.request_header.as_ref().map(|rh| &rh.verifier),
            client_ca: self.client_ca.as_ref(),
        }
    }

    pub(super) fn authenticate_certificate(
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

    pub(super) fn no_credentials(&self, tokens: bool) -> String {
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
