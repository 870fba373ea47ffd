//! Front-proxy authentication: the user kube-apiserver vouches for in `X-Remote-*`
//! headers, believed only from its front-proxy certificate.
//!
//! Every sentence in this file is a message users see: docs/troubleshooting.md lists them.

use super::attributes::path_unescape;
use super::client_chain::Subject;
use super::verifier::{header_names, verifier};
use super::{AuthError, RequestHeaderConfig, UserInfo};
use http::{HeaderMap, HeaderName};
use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use std::collections::BTreeMap;
use std::sync::Arc;

pub(super) struct RequestHeader {
    // Built from the front-proxy CA alone: the handshake only proved the chain against
    // the union with the client CA, which would let any cluster user be the proxy.
    pub(super) verifier: Arc<dyn ClientCertVerifier>,
    allowed_names: Vec<String>,
    pub(super) username_headers: Vec<HeaderName>,
    pub(super) uid_headers: Vec<HeaderName>,
    pub(super) group_headers: Vec<HeaderName>,
    extra_prefixes: Vec<String>,
}

impl RequestHeader {
    pub(super) fn new(
        provider: &Arc<CryptoProvider>,
        rh: &RequestHeaderConfig,
    ) -> Result<Self, AuthError> {
        Ok(RequestHeader {
            verifier: verifier(provider, "requestheader-client-ca-file", &rh.client_ca_pem)?,
            allowed_names: rh.allowed_names.clone(),
            username_headers: header_names("requestheader-username-headers", &rh.username_headers)?,
            uid_headers: header_names("requestheader-uid-headers", &rh.uid_headers)?,
            group_headers: header_names("requestheader-group-headers", &rh.group_headers)?,
            extra_prefixes: rh
                .extra_headers_prefixes
                .iter()
                .map(|prefix| prefix.to_ascii_lowercase())
                .collect(),
        })
    }

    pub(super) fn user(
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
    pub(super) fn extra_key(&self, header: &str) -> Option<String> {
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
