//! What to connect to and how: URL, credentials, CA and client certificate, headers.

use super::error::{PrometheusConfigError, error_chain};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Certificate, Identity, Url};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// HTTP method used for instant queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueryMethod {
    Get,
    Post,
    /// GET (cache and log friendly) unless the URL would get too long.
    #[default]
    Auto,
}

/// A credential or PEM document held in memory (a `MetricsBackend`'s, read from a Secret),
/// and where it came from, for messages that must never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct InlineSecret {
    /// e.g. `Secret metrics-registry/thanos-auth key token`.
    pub origin: String,
    pub value: Vec<u8>,
}

impl fmt::Debug for InlineSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes from {}>", self.value.len(), self.origin)
    }
}

/// OAuth2 client credentials (RFC 6749 §4.4): a token from `token_url`, sent as a bearer
/// token and fetched again shortly before it expires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuth2Config {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: InlineSecret,
    pub scopes: Vec<String>,
}

/// AWS SigV4 signing (Amazon Managed Service for Prometheus: service `aps`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigV4Config {
    pub region: String,
    pub service: String,
}

#[derive(Clone)]
pub struct PrometheusConfig {
    pub url: String,
    pub timeout: Duration,
    pub bearer_token_file: Option<PathBuf>,
    pub basic_auth_user: Option<String>,
    pub basic_auth_password_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    pub headers: Vec<(String, String)>,
    pub method: QueryMethod,
    /// Largest answer read; a bigger one is a 502 naming this limit.
    pub max_response_bytes: usize,
    /// In-memory counterparts of the files above (a `MetricsBackend`'s Secrets); a file
    /// and its counterpart cannot both be set.
    pub bearer_token: Option<InlineSecret>,
    pub basic_auth_password: Option<InlineSecret>,
    pub ca: Option<InlineSecret>,
    pub client_identity: Option<(InlineSecret, InlineSecret)>,
    pub oauth2: Option<OAuth2Config>,
    pub sigv4: Option<SigV4Config>,
}

/// 16 MiB: an instant vector of about 50,000 series with a few labels each.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

impl PrometheusConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            timeout: Duration::from_secs(10),
            bearer_token_file: None,
            basic_auth_user: None,
            basic_auth_password_file: None,
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
            headers: Vec::new(),
            method: QueryMethod::Auto,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            bearer_token: None,
            basic_auth_password: None,
            ca: None,
            client_identity: None,
            oauth2: None,
            sigv4: None,
        }
    }
}

// Hand-written so that configs can be logged: header values may carry
// tenant secrets, and a URL may embed a password.
impl fmt::Debug for PrometheusConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(name, _)| (name.as_str(), "<redacted>"))
            .collect();
        f.debug_struct("PrometheusConfig")
            .field("url", &redact_url(&self.url))
            .field("timeout", &self.timeout)
            .field("bearer_token_file", &self.bearer_token_file)
            .field("basic_auth_user", &self.basic_auth_user)
            .field("basic_auth_password_file", &self.basic_auth_password_file)
            .field("ca_file", &self.ca_file)
            .field("client_cert_file", &self.client_cert_file)
            .field("client_key_file", &self.client_key_file)
            .field("headers", &headers)
            .field("method", &self.method)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("bearer_token", &self.bearer_token)
            .field("basic_auth_password", &self.basic_auth_password)
            .field("ca", &self.ca)
            .field("client_identity", &self.client_identity)
            .field("oauth2", &self.oauth2)
            .field("sigv4", &self.sigv4)
            .finish()
    }
}

pub(super) fn parse_base_url(raw: &str) -> Result<Url, PrometheusConfigError> {
    let invalid = |reason: String| PrometheusConfigError::InvalidUrl {
        url: redact_url(raw),
        reason,
    };
    let mut url = Url::parse(raw.trim()).map_err(|e| invalid(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(format!(
            "scheme {:?} is not http or https",
            url.scheme()
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("no host".to_owned()));
    }
    // Credentials in the URL would show up in every error message.
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "credentials in the URL are not supported; use basic auth or a bearer token file"
                .to_owned(),
        ));
    }
    url.set_fragment(None);
    Ok(url)
}

/// Whether `raw` can be a client's base URL (http or https, a host, no credentials), as
/// [`crate::prometheus::PrometheusClient::new`] would judge it, without making one.
pub fn validate_url(raw: &str) -> Result<(), PrometheusConfigError> {
    parse_base_url(raw).map(drop)
}

/// Whether `headers` can be sent as extra headers, as the client would judge them.
pub fn validate_headers(headers: &[(String, String)]) -> Result<(), PrometheusConfigError> {
    extra_headers(headers, false).map(drop)
}

/// Best effort for showing a URL that may not even parse.
pub(super) fn redact_url(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("<redacted>"));
            url.to_string()
        }
        Ok(_) => raw.to_owned(),
        Err(_) if raw.contains('@') => "<unparseable URL with credentials>".to_owned(),
        Err(_) => raw.to_owned(),
    }
}

pub(super) fn extra_headers(
    headers: &[(String, String)],
    has_auth: bool,
) -> Result<HeaderMap, PrometheusConfigError> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let invalid = |reason: &str| PrometheusConfigError::InvalidHeader {
            name: name.clone(),
            reason: reason.to_owned(),
        };
        let header_name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid("not a valid header name"))?;
        if has_auth && header_name == AUTHORIZATION {
            return Err(invalid(
                "conflicts with the configured bearer token or basic auth",
            ));
        }
        // The value is deliberately left out of the error: it may be a secret.
        let mut header_value = HeaderValue::from_str(value)
            .map_err(|_| invalid("the value is not a valid header value"))?;
        header_value.set_sensitive(true);
        map.append(header_name, header_value);
    }
    Ok(map)
}

fn read_file(what: &'static str, path: &Path) -> Result<Vec<u8>, PrometheusConfigError> {
    std::fs::read(path).map_err(|e| PrometheusConfigError::UnreadableFile {
        what,
        path: path.to_owned(),
        cause: e.to_string(),
    })
}

pub(super) fn load_ca(path: &Path) -> Result<Vec<Certificate>, PrometheusConfigError> {
    const WHAT: &str = "CA file";
    let pem = read_file(WHAT, path)?;
    parse_ca(&pem, |cause| PrometheusConfigError::InvalidFile {
        what: WHAT,
        path: path.to_owned(),
        cause,
    })
}

/// The CA certificates of an in-memory PEM bundle.
pub(super) fn inline_ca(secret: &InlineSecret) -> Result<Vec<Certificate>, PrometheusConfigError> {
    parse_ca(&secret.value, |cause| {
        PrometheusConfigError::InvalidSecret {
            what: "CA bundle",
            origin: secret.origin.clone(),
            cause,
        }
    })
}

fn parse_ca(
    pem: &[u8],
    invalid: impl Fn(String) -> PrometheusConfigError,
) -> Result<Vec<Certificate>, PrometheusConfigError> {
    let ders = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(e.to_string()))?;
    if ders.is_empty() {
        return Err(invalid("no PEM certificate found".to_owned()));
    }
    // reqwest would only find a broken certificate when building the
    // client, and without naming the file; rustls's own parser finds it now.
    let mut roots = rustls::RootCertStore::empty();
    for der in &ders {
        roots
            .add(der.clone())
            .map_err(|e| invalid(format!("not a usable CA certificate: {e}")))?;
    }
    ders.iter()
        .map(|der| Certificate::from_der(der).map_err(|e| invalid(error_chain(&e))))
        .collect()
}

/// A client certificate and key held in memory.
pub(super) fn inline_identity(
    cert: &InlineSecret,
    key: &InlineSecret,
) -> Result<Identity, PrometheusConfigError> {
    let invalid = |secret: &InlineSecret, what: &'static str, cause: String| {
        PrometheusConfigError::InvalidSecret {
            what,
            origin: secret.origin.clone(),
            cause,
        }
    };
    match CertificateDer::pem_slice_iter(&cert.value).collect::<Result<Vec<_>, _>>() {
        Ok(certs) if !certs.is_empty() => {}
        Ok(_) => {
            return Err(invalid(
                cert,
                "client certificate",
                "no PEM certificate found".to_owned(),
            ));
        }
        Err(e) => return Err(invalid(cert, "client certificate", e.to_string())),
    }
    PrivateKeyDer::from_pem_slice(&key.value).map_err(|e| {
        invalid(
            key,
            "client key",
            format!("no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"),
        )
    })?;
    let mut combined = cert.value.clone();
    combined.push(b'\n');
    combined.extend_from_slice(&key.value);
    Identity::from_pem(&combined)
        .map_err(|e| invalid(cert, "client certificate/key pair", error_chain(&e)))
}

pub(super) fn load_identity(
    cert_path: &Path,
    key_path: &Path,
) -> Result<Identity, PrometheusConfigError> {
    const CERT: &str = "client certificate file";
    const KEY: &str = "client key file";
    let cert = read_file(CERT, cert_path)?;
    let key = read_file(KEY, key_path)?;

    // Checked one file at a time so the error names the file at fault;
    // reqwest would only report the combination.
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&cert).collect();
    match certs {
        Ok(certs) if !certs.is_empty() => {}
        Ok(_) => {
            return Err(PrometheusConfigError::InvalidFile {
                what: CERT,
                path: cert_path.to_owned(),
                cause: "no PEM certificate found".to_owned(),
            });
        }
        Err(e) => {
            return Err(PrometheusConfigError::InvalidFile {
                what: CERT,
                path: cert_path.to_owned(),
                cause: e.to_string(),
            });
        }
    }
    PrivateKeyDer::from_pem_slice(&key).map_err(|e| PrometheusConfigError::InvalidFile {
        what: KEY,
        path: key_path.to_owned(),
        cause: format!("no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"),
    })?;

    let mut combined = cert;
    combined.push(b'\n');
    combined.extend_from_slice(&key);
    Identity::from_pem(&combined).map_err(|e| PrometheusConfigError::InvalidFile {
        what: "client certificate/key pair",
        path: cert_path.to_owned(),
        cause: error_chain(&e),
    })
}
