//! HTTP client for the Prometheus query API (also spoken by Thanos, Mimir and
//! VictoriaMetrics), as used to evaluate metric rules.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Certificate, Identity, StatusCode, Url};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

/// Longest URL sent as a GET under [`QueryMethod::Auto`]. Proxies and load
/// balancers commonly reject longer request lines (HTTP 414), while the body
/// of a POST has no such limit.
const MAX_GET_URL_LEN: usize = 4096;

/// How much of a non-JSON error body ends up in an error message: enough to
/// recognise a proxy's error page, not enough to flood the log.
const BODY_SNIPPET_LEN: usize = 300;

/// HTTP method used for instant queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueryMethod {
    Get,
    Post,
    /// GET (cache and log friendly) unless the URL would get too long.
    #[default]
    Auto,
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
}

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
            .finish()
    }
}

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    /// Unix seconds.
    pub timestamp: f64,
    /// Kept as text: Prometheus sends "NaN", "+Inf" and values whose exact
    /// decimal form matters to whoever republishes them.
    pub value: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PrometheusConfigError {
    #[error("invalid Prometheus URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot read {what} {}: {cause}", path.display())]
    UnreadableFile {
        what: &'static str,
        path: PathBuf,
        cause: String,
    },
    #[error("invalid {what} {}: {cause}", path.display())]
    InvalidFile {
        what: &'static str,
        path: PathBuf,
        cause: String,
    },
    #[error("incomplete Prometheus configuration: {0}")]
    Incomplete(&'static str),
    #[error("conflicting Prometheus configuration: {0}")]
    Conflict(&'static str),
    #[error("invalid extra header {name:?}: {reason}")]
    InvalidHeader { name: String, reason: String },
    #[error(
        "no rustls crypto provider is installed; install one (e.g. ring) before creating the Prometheus client"
    )]
    NoCryptoProvider,
    #[error("cannot set up the HTTP client for Prometheus: {0}")]
    Client(String),
}

#[derive(Debug, thiserror::Error)]
pub enum PrometheusError {
    /// Connection refused, DNS failure, TLS failure, connection reset.
    #[error("Prometheus at {url} is unreachable: {cause}")]
    Unreachable { url: String, cause: String },
    #[error("Prometheus at {url} did not answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    /// Prometheus answered with an error status and/or an error document.
    /// For a body that is not JSON (a proxy's error page), `error_type` is
    /// the HTTP reason phrase and `message` the start of the body.
    #[error("Prometheus at {url} rejected the query: {error_type}: {message} (HTTP {status})")]
    Rejected {
        url: String,
        status: u16,
        error_type: String,
        message: String,
    },
    #[error("Prometheus at {url} sent an unreadable answer: {cause}")]
    Decode { url: String, cause: String },
    #[error(
        "Prometheus at {url} returned a {result_type} result where an instant vector or scalar was expected"
    )]
    UnexpectedResult { url: String, result_type: String },
    /// Never carries the file's content.
    #[error("cannot read Prometheus credentials from {}: {cause}", path.display())]
    Credentials { path: PathBuf, cause: String },
}

impl PrometheusError {
    /// The status a gateway in front of Prometheus answers with, so callers
    /// can tell "down" and "slow" apart from "broken".
    pub fn http_status(&self) -> u16 {
        match self {
            Self::Unreachable { .. } => 503,
            Self::Timeout { .. } => 504,
            _ => 502,
        }
    }
}

/// Cheap to clone: clones share one connection pool.
#[derive(Clone)]
pub struct PrometheusClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    /// Base URL as shown in errors and logs: no trailing slash, no password.
    display_url: String,
    timeout: Duration,
    method: QueryMethod,
    auth: Auth,
}

enum Auth {
    None,
    Bearer(PathBuf),
    Basic {
        user: String,
        password_file: PathBuf,
    },
}

impl fmt::Debug for PrometheusClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrometheusClient")
            .field("url", &self.inner.display_url)
            .field("timeout", &self.inner.timeout)
            .field("method", &self.inner.method)
            .finish_non_exhaustive()
    }
}

impl PrometheusClient {
    /// Validates the URL and loads CA/client cert at construction; errors
    /// name the file and the cause.
    pub fn new(config: PrometheusConfig) -> Result<Self, PrometheusConfigError> {
        let base = parse_base_url(&config.url)?;
        let display_url = base.as_str().trim_end_matches('/').to_owned();
        let auth = auth_from_config(&config)?;
        let default_headers = extra_headers(&config.headers, !matches!(auth, Auth::None))?;

        // reqwest panics when it has to build a rustls config without a
        // provider; an error is kinder to whoever wires up the process.
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            return Err(PrometheusConfigError::NoCryptoProvider);
        }

        let mut builder = reqwest::Client::builder()
            .timeout(config.timeout)
            .default_headers(default_headers)
            .user_agent(concat!(
                env!("CARGO_PKG_NAME"),
                "/",
                env!("CARGO_PKG_VERSION")
            ))
            // A redirect would silently turn a POST into a GET and hide a
            // misconfigured URL; the API never redirects on its own.
            .redirect(reqwest::redirect::Policy::none());

        if let Some(ca_file) = &config.ca_file {
            // Only the given CA: a private Prometheus must not be
            // impersonable by any publicly trusted certificate.
            builder = builder.tls_certs_only(load_ca(ca_file)?);
        } else if base.scheme() == "http" {
            // The platform verifier fails to build when the system has no CA
            // bundle (distroless images); plain HTTP never needs it.
            builder = builder.tls_certs_only(Vec::new());
        }

        match (&config.client_cert_file, &config.client_key_file) {
            (Some(cert), Some(key)) => builder = builder.identity(load_identity(cert, key)?),
            (None, None) => {}
            _ => {
                return Err(PrometheusConfigError::Incomplete(
                    "client_cert_file and client_key_file must be set together",
                ));
            }
        }

        let http = builder.build().map_err(|e| {
            let mut cause = error_chain(&e);
            // rustls-platform-verifier refuses to start without a system CA
            // bundle, which surprises people running in minimal images.
            if config.ca_file.is_none() && cause.contains("CA certificates") {
                cause.push_str(
                    " (no CA file is configured, so the system CA certificates are needed)",
                );
            } else if let (Some(cert), Some(key)) =
                (&config.client_cert_file, &config.client_key_file)
            {
                cause.push_str(&format!(
                    " (client certificate {}, key {})",
                    cert.display(),
                    key.display()
                ));
            }
            PrometheusConfigError::Client(cause)
        })?;

        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base,
                display_url,
                timeout: config.timeout,
                method: config.method,
                auth,
            }),
        })
    }

    /// The base URL without trailing slash, as used in error messages.
    pub fn url(&self) -> &str {
        &self.inner.display_url
    }

    /// Instant query. A scalar result becomes one sample without labels.
    pub async fn query(&self, promql: &str) -> Result<Vec<Sample>, PrometheusError> {
        let url = self.endpoint(&["api", "v1", "query"]);
        let mut with_query = url.clone();
        with_query.query_pairs_mut().append_pair("query", promql);
        let use_post = match self.inner.method {
            QueryMethod::Get => false,
            QueryMethod::Post => true,
            QueryMethod::Auto => with_query.as_str().len() > MAX_GET_URL_LEN,
        };
        let request = if use_post {
            self.inner.http.post(url).form(&[("query", promql)])
        } else {
            self.inner.http.get(with_query)
        };

        let started = Instant::now();
        let data: QueryData = self.send(request).await?;
        tracing::debug!(
            query = promql,
            method = if use_post { "POST" } else { "GET" },
            elapsed = ?started.elapsed(),
            result_type = %data.result_type,
            "Prometheus query"
        );
        self.samples(data)
    }

    /// Values of `label`, restricted to series matching any of `matchers`.
    pub async fn label_values(
        &self,
        label: &str,
        matchers: &[&str],
    ) -> Result<Vec<String>, PrometheusError> {
        let mut url = self.endpoint(&["api", "v1", "label", label, "values"]);
        {
            let mut pairs = url.query_pairs_mut();
            for matcher in matchers {
                pairs.append_pair("match[]", matcher);
            }
        }
        let started = Instant::now();
        let values: Option<Vec<String>> = self.send(self.inner.http.get(url)).await?;
        let values = values.unwrap_or_default();
        tracing::debug!(
            label,
            ?matchers,
            elapsed = ?started.elapsed(),
            count = values.len(),
            "Prometheus label values"
        );
        Ok(values)
    }

    /// Checks that Prometheus answers, with the same authentication and
    /// headers as queries.
    pub async fn ready(&self) -> Result<(), PrometheusError> {
        // buildinfo lives under the API prefix, so it also works for Thanos
        // and Mimir behind a path prefix, where /-/ready is not routed; old
        // versions without it still have /-/ready.
        let buildinfo = self.endpoint(&["api", "v1", "status", "buildinfo"]);
        match self.send_raw(self.inner.http.get(buildinfo)).await {
            Ok(_) => Ok(()),
            Err(PrometheusError::Rejected { status: 404, .. }) => {
                let ready = self.endpoint(&["-", "ready"]);
                self.send_raw(self.inner.http.get(ready)).await.map(drop)
            }
            Err(e) => Err(e),
        }
    }

    /// POST {url}/-/reload: makes Prometheus re-read its rule files (needs
    /// `--web.enable-lifecycle`; a 403 or 404 from Prometheus says it is off).
    pub async fn reload(&self) -> Result<(), PrometheusError> {
        let reload = self.endpoint(&["-", "reload"]);
        self.send_raw(self.inner.http.post(reload)).await.map(drop)
    }

    fn endpoint(&self, segments: &[&str]) -> Url {
        let mut url = self.inner.base.clone();
        // parse_base_url rejected URLs that cannot carry a path.
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// Sends the request and unwraps the `data` of a successful API answer.
    async fn send<T: for<'de> Deserialize<'de>>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, PrometheusError> {
        let body = self.send_raw(request).await?;
        let envelope: Envelope<T> =
            serde_json::from_slice(&body).map_err(|e| self.decode_error(&e, &body))?;
        if envelope.status != "success" {
            return Err(PrometheusError::Rejected {
                url: self.inner.display_url.clone(),
                status: 200,
                error_type: envelope
                    .error_type
                    .unwrap_or_else(|| envelope.status.clone()),
                message: envelope.error.unwrap_or_default(),
            });
        }
        for warning in envelope.warnings.iter().chain(&envelope.infos) {
            tracing::debug!(url = %self.inner.display_url, warning, "Prometheus warning");
        }
        envelope.data.ok_or_else(|| PrometheusError::Decode {
            url: self.inner.display_url.clone(),
            cause: "successful answer without data".to_owned(),
        })
    }

    /// Sends the request with credentials; any non-2xx answer is an error.
    async fn send_raw(&self, request: reqwest::RequestBuilder) -> Result<Vec<u8>, PrometheusError> {
        let request = self
            .authorize(request.header(ACCEPT, "application/json"))
            .await?;
        let response = request.send().await.map_err(|e| self.transport_error(e))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(e))?;
        if status.is_success() {
            return Ok(body.to_vec());
        }
        Err(self.rejection(status, &body))
    }

    async fn authorize(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, PrometheusError> {
        // Files are read on every request because Kubernetes rotates
        // projected tokens and mounted secrets in place.
        Ok(match &self.inner.auth {
            Auth::None => request,
            Auth::Bearer(path) => {
                let token = read_secret(path).await?;
                let mut value =
                    HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                        PrometheusError::Credentials {
                            path: path.clone(),
                            cause: "the token contains characters not allowed in an HTTP header"
                                .to_owned(),
                        }
                    })?;
                value.set_sensitive(true);
                request.header(AUTHORIZATION, value)
            }
            Auth::Basic {
                user,
                password_file,
            } => {
                let password = read_secret(password_file).await?;
                request.basic_auth(user, Some(password))
            }
        })
    }

    fn samples(&self, data: QueryData) -> Result<Vec<Sample>, PrometheusError> {
        let QueryData {
            result_type,
            result,
        } = data;
        let decode = |e: serde_json::Error| PrometheusError::Decode {
            url: self.inner.display_url.clone(),
            cause: format!("invalid {result_type} result: {e}"),
        };
        match result_type.as_str() {
            "vector" => {
                let series: Option<Vec<VectorSample>> =
                    serde_json::from_value(result).map_err(decode)?;
                series
                    .unwrap_or_default()
                    .into_iter()
                    .map(|s| match s.value {
                        Some((timestamp, value)) => Ok(Sample {
                            labels: s.metric,
                            timestamp,
                            value,
                        }),
                        // Native histograms have no single value to serve.
                        None => Err(PrometheusError::UnexpectedResult {
                            url: self.inner.display_url.clone(),
                            result_type: "native histogram".to_owned(),
                        }),
                    })
                    .collect()
            }
            "scalar" => {
                let (timestamp, value): (f64, String) =
                    serde_json::from_value(result).map_err(decode)?;
                Ok(vec![Sample {
                    labels: BTreeMap::new(),
                    timestamp,
                    value,
                }])
            }
            other => Err(PrometheusError::UnexpectedResult {
                url: self.inner.display_url.clone(),
                result_type: other.to_owned(),
            }),
        }
    }

    fn transport_error(&self, error: reqwest::Error) -> PrometheusError {
        let url = self.inner.display_url.clone();
        if error.is_timeout() {
            return PrometheusError::Timeout {
                url,
                timeout: self.inner.timeout,
            };
        }
        let connect = error.is_connect();
        // The URL carries the whole query, and the message already names the
        // server.
        let chain = error_chain(&error.without_url());
        let cause = if connect {
            chain
        } else {
            // Connected, but the exchange broke off (Prometheus restarting, a
            // proxy cutting the connection, a TLS 1.3 server refusing the
            // client certificate): just as "down" to a caller.
            format!("the connection failed mid-request: {chain}")
        };
        PrometheusError::Unreachable { url, cause }
    }

    fn rejection(&self, status: StatusCode, body: &[u8]) -> PrometheusError {
        let url = self.inner.display_url.clone();
        if let Ok(envelope) = serde_json::from_slice::<Envelope<serde::de::IgnoredAny>>(body)
            && (envelope.error_type.is_some() || envelope.error.is_some())
        {
            return PrometheusError::Rejected {
                url,
                status: status.as_u16(),
                error_type: envelope
                    .error_type
                    .unwrap_or_else(|| envelope.status.clone()),
                message: envelope.error.unwrap_or_default(),
            };
        }
        PrometheusError::Rejected {
            url,
            status: status.as_u16(),
            error_type: status
                .canonical_reason()
                .unwrap_or("unexpected status")
                .to_owned(),
            message: snippet(body),
        }
    }

    fn decode_error(&self, error: &serde_json::Error, body: &[u8]) -> PrometheusError {
        PrometheusError::Decode {
            url: self.inner.display_url.clone(),
            cause: format!("{error}; body starts with: {}", snippet(body)),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<T> {
    status: String,
    data: Option<T>,
    error_type: Option<String>,
    error: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
    #[serde(default)]
    infos: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueryData {
    result_type: String,
    // Decoded once the type is known, so that an unexpected type gets its
    // own error instead of a confusing decode failure.
    #[serde(default)]
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct VectorSample {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    value: Option<(f64, String)>,
}

fn parse_base_url(raw: &str) -> Result<Url, PrometheusConfigError> {
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

/// Best effort for showing a URL that may not even parse.
fn redact_url(raw: &str) -> String {
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

fn auth_from_config(config: &PrometheusConfig) -> Result<Auth, PrometheusConfigError> {
    let basic = match (&config.basic_auth_user, &config.basic_auth_password_file) {
        (Some(user), Some(password_file)) => Some(Auth::Basic {
            user: user.clone(),
            password_file: password_file.clone(),
        }),
        (None, None) => None,
        _ => {
            return Err(PrometheusConfigError::Incomplete(
                "basic_auth_user and basic_auth_password_file must be set together",
            ));
        }
    };
    match (basic, &config.bearer_token_file) {
        (Some(_), Some(_)) => Err(PrometheusConfigError::Conflict(
            "a bearer token and basic auth cannot both be used",
        )),
        (Some(basic), None) => Ok(basic),
        (None, Some(token)) => Ok(Auth::Bearer(token.clone())),
        (None, None) => Ok(Auth::None),
    }
}

fn extra_headers(
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

fn load_ca(path: &Path) -> Result<Vec<Certificate>, PrometheusConfigError> {
    const WHAT: &str = "CA file";
    let invalid = |cause: String| PrometheusConfigError::InvalidFile {
        what: WHAT,
        path: path.to_owned(),
        cause,
    };
    let pem = read_file(WHAT, path)?;
    let ders = CertificateDer::pem_slice_iter(&pem)
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

fn load_identity(cert_path: &Path, key_path: &Path) -> Result<Identity, PrometheusConfigError> {
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

async fn read_secret(path: &Path) -> Result<String, PrometheusError> {
    let credentials = |cause: String| PrometheusError::Credentials {
        path: path.to_owned(),
        cause,
    };
    // Never include the content in an error: it is the secret.
    let content = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| credentials(e.to_string()))?;
    let secret = content.trim();
    if secret.is_empty() {
        return Err(credentials("the file is empty".to_owned()));
    }
    Ok(secret.to_owned())
}

/// The error and all its sources, skipping sources that merely repeat what
/// was already said (hyper and reqwest often wrap without adding anything).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut chain = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !text.is_empty() && !chain.contains(&text) {
            chain.push_str(": ");
            chain.push_str(&text);
        }
        source = cause.source();
    }
    chain
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.is_empty() {
        return "(empty body)".to_owned();
    }
    match collapsed.char_indices().nth(BODY_SNIPPET_LEN) {
        Some((cut, _)) => format!("{}...", &collapsed[..cut]),
        None => collapsed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::Request;
    use axum::http::HeaderMap as AxumHeaders;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const VECTOR: &str = r#"{"status":"success","data":{"resultType":"vector","result":[
        {"metric":{"__name__":"up","job":"api"},"value":[1700000000.123,"102.312"]},
        {"metric":{"job":"nan"},"value":[1700000000.5,"NaN"]},
        {"metric":{"job":"inf"},"value":[1700000001,"+Inf"]}]}}"#;

    #[derive(Debug, Clone)]
    struct Seen {
        method: String,
        path: String,
        query: Vec<(String, String)>,
        form: Vec<(String, String)>,
        headers: AxumHeaders,
    }

    type Respond = dyn Fn(&Seen) -> (u16, String) + Send + Sync;

    struct Fake {
        url: String,
        seen: Arc<Mutex<Vec<Seen>>>,
    }

    impl Fake {
        fn requests(&self) -> Vec<Seen> {
            self.seen.lock().unwrap().clone()
        }

        fn last(&self) -> Seen {
            self.requests()
                .pop()
                .expect("the fake Prometheus saw no request")
        }
    }

    fn pairs(encoded: &str) -> Vec<(String, String)> {
        Url::parse(&format!("http://x/?{encoded}"))
            .unwrap()
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    fn install_provider() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }

    /// A fake Prometheus that records every request and answers with
    /// `respond`, after `delay`.
    async fn fake_with_delay(
        delay: Duration,
        respond: impl Fn(&Seen) -> (u16, String) + Send + Sync + 'static,
    ) -> Fake {
        install_provider();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let respond: Arc<Respond> = Arc::new(respond);
        let recorder = seen.clone();
        let app = axum::Router::new().fallback(move |request: Request| {
            let recorder = recorder.clone();
            let respond = respond.clone();
            async move {
                let (parts, body) = request.into_parts();
                let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
                let seen = Seen {
                    method: parts.method.to_string(),
                    path: parts.uri.path().to_owned(),
                    query: pairs(parts.uri.query().unwrap_or("")),
                    form: pairs(&String::from_utf8_lossy(&body)),
                    headers: parts.headers,
                };
                recorder.lock().unwrap().push(seen.clone());
                tokio::time::sleep(delay).await;
                let (status, body) = respond(&seen);
                (
                    axum::http::StatusCode::from_u16(status).unwrap(),
                    [("content-type", "application/json")],
                    body,
                )
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Fake { url, seen }
    }

    async fn fake(respond: impl Fn(&Seen) -> (u16, String) + Send + Sync + 'static) -> Fake {
        fake_with_delay(Duration::ZERO, respond).await
    }

    fn ok(body: &str) -> impl Fn(&Seen) -> (u16, String) + Send + Sync + 'static {
        let body = body.to_owned();
        move |_| (200, body.clone())
    }

    fn client(config: PrometheusConfig) -> PrometheusClient {
        install_provider();
        PrometheusClient::new(config).expect("valid config")
    }

    /// A directory removed on drop (the crate has no tempfile dependency).
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "prometheus-client-test-{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        fn file(&self, name: &str, content: &str) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, content).unwrap();
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn header<'a>(seen: &'a Seen, name: &str) -> Option<&'a str> {
        seen.headers.get(name).map(|v| v.to_str().unwrap())
    }

    #[tokio::test]
    async fn decodes_vector_keeping_values_verbatim() {
        let prom = fake(ok(VECTOR)).await;
        let samples = client(PrometheusConfig::new(&prom.url))
            .query("up")
            .await
            .unwrap();
        assert_eq!(samples.len(), 3);
        assert_eq!(
            samples[0].labels,
            BTreeMap::from([
                ("__name__".to_owned(), "up".to_owned()),
                ("job".to_owned(), "api".to_owned())
            ])
        );
        assert_eq!(samples[0].timestamp, 1700000000.123);
        assert_eq!(samples[0].value, "102.312");
        assert_eq!(samples[1].value, "NaN");
        assert_eq!(samples[2].value, "+Inf");
        assert_eq!(samples[2].timestamp, 1700000001.0);

        let seen = prom.last();
        assert_eq!(seen.method, "GET");
        assert_eq!(seen.path, "/api/v1/query");
        assert_eq!(seen.query, vec![("query".to_owned(), "up".to_owned())]);
    }

    #[tokio::test]
    async fn decodes_empty_vector() {
        let prom = fake(ok(
            r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#,
        ))
        .await;
        let samples = client(PrometheusConfig::new(&prom.url))
            .query("absent_metric")
            .await
            .unwrap();
        assert!(samples.is_empty());
    }

    #[tokio::test]
    async fn decodes_scalar_as_one_unlabelled_sample() {
        let prom = fake(ok(
            r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000.5,"42"]}}"#,
        ))
        .await;
        let samples = client(PrometheusConfig::new(&prom.url))
            .query("scalar(up)")
            .await
            .unwrap();
        assert_eq!(
            samples,
            vec![Sample {
                labels: BTreeMap::new(),
                timestamp: 1700000000.5,
                value: "42".to_owned()
            }]
        );
    }

    #[tokio::test]
    async fn matrix_and_string_results_are_unexpected() {
        let prom = fake(|seen: &Seen| {
            let body = if seen.query[0].1 == "up[5m]" {
                r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"1"]]}]}}"#
            } else {
                r#"{"status":"success","data":{"resultType":"string","result":[1,"foo"]}}"#
            };
            (200, body.to_owned())
        })
        .await;
        let client = client(PrometheusConfig::new(&prom.url));
        for (query, expected) in [("up[5m]", "matrix"), ("\"foo\"", "string")] {
            match client.query(query).await {
                Err(e @ PrometheusError::UnexpectedResult { .. }) => {
                    assert_eq!(e.http_status(), 502);
                    let PrometheusError::UnexpectedResult { result_type, .. } = e else {
                        unreachable!()
                    };
                    assert_eq!(result_type, expected);
                }
                other => panic!("expected UnexpectedResult, got {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn auto_method_switches_to_post_for_long_queries() {
        let prom = fake(ok(VECTOR)).await;
        let client = client(PrometheusConfig::new(&prom.url));
        let long = format!("up{{job=~\"{}\"}}", "a|".repeat(3000));

        client.query("up").await.unwrap();
        client.query(&long).await.unwrap();

        let seen = prom.requests();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].method, "GET");
        assert_eq!(seen[1].method, "POST");
        assert_eq!(seen[1].path, "/api/v1/query");
        assert!(seen[1].query.is_empty());
        assert_eq!(seen[1].form, vec![("query".to_owned(), long)]);
        assert_eq!(
            header(&seen[1], "content-type"),
            Some("application/x-www-form-urlencoded")
        );
    }

    #[tokio::test]
    async fn forced_methods_are_honoured() {
        let prom = fake(ok(VECTOR)).await;
        let mut config = PrometheusConfig::new(&prom.url);
        config.method = QueryMethod::Post;
        client(config.clone()).query("up").await.unwrap();
        config.method = QueryMethod::Get;
        client(config).query(&"x".repeat(5000)).await.unwrap();

        let seen = prom.requests();
        assert_eq!(seen[0].method, "POST");
        assert_eq!(seen[0].form, vec![("query".to_owned(), "up".to_owned())]);
        assert_eq!(seen[1].method, "GET");
    }

    #[tokio::test]
    async fn keeps_path_prefix_with_or_without_trailing_slash() {
        let prom = fake(ok(VECTOR)).await;
        for base in [format!("{}/prom/", prom.url), format!("{}/prom", prom.url)] {
            let client = client(PrometheusConfig::new(&base));
            assert_eq!(client.url(), format!("{}/prom", prom.url));
            client.query("up").await.unwrap();
            assert_eq!(prom.last().path, "/prom/api/v1/query");
        }
        let root = client(PrometheusConfig::new(format!("{}/", prom.url)));
        assert_eq!(root.url(), prom.url);
        root.query("up").await.unwrap();
        assert_eq!(prom.last().path, "/api/v1/query");
    }

    #[tokio::test]
    async fn bearer_token_is_reread_after_the_file_changes() {
        let prom = fake(ok(VECTOR)).await;
        let dir = TempDir::new();
        let token = dir.file("token", "first-token\n");
        let mut config = PrometheusConfig::new(&prom.url);
        config.bearer_token_file = Some(token.clone());
        let client = client(config);

        client.query("up").await.unwrap();
        assert_eq!(
            header(&prom.last(), "authorization"),
            Some("Bearer first-token")
        );

        std::fs::write(&token, "  second-token  \n").unwrap();
        client.query("up").await.unwrap();
        assert_eq!(
            header(&prom.last(), "authorization"),
            Some("Bearer second-token")
        );

        std::fs::remove_file(&token).unwrap();
        match client.query("up").await {
            Err(e @ PrometheusError::Credentials { .. }) => {
                assert!(e.to_string().contains("token"), "{e}");
                assert!(!e.to_string().contains("second-token"), "{e}");
            }
            other => panic!("expected Credentials, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn basic_auth_reads_the_password_file() {
        let prom = fake(ok(VECTOR)).await;
        let dir = TempDir::new();
        let mut config = PrometheusConfig::new(&prom.url);
        config.basic_auth_user = Some("alice".to_owned());
        config.basic_auth_password_file = Some(dir.file("password", "s3cret\n"));
        client(config).query("up").await.unwrap();
        // base64("alice:s3cret")
        assert_eq!(
            header(&prom.last(), "authorization"),
            Some("Basic YWxpY2U6czNjcmV0")
        );
    }

    #[tokio::test]
    async fn sends_extra_headers_on_every_endpoint() {
        let prom = fake(|seen: &Seen| match seen.path.as_str() {
            "/api/v1/query" => (200, VECTOR.to_owned()),
            _ => (200, r#"{"status":"success","data":[]}"#.to_owned()),
        })
        .await;
        let mut config = PrometheusConfig::new(&prom.url);
        config.headers = vec![("X-Scope-OrgID".to_owned(), "tenant-1".to_owned())];
        let client = client(config);
        client.query("up").await.unwrap();
        client.label_values("job", &[]).await.unwrap();
        client.ready().await.unwrap();
        for seen in prom.requests() {
            assert_eq!(header(&seen, "x-scope-orgid"), Some("tenant-1"), "{seen:?}");
        }
    }

    #[tokio::test]
    async fn prometheus_error_json_is_rejected() {
        let prom = fake(|_: &Seen| {
            (
                400,
                r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:3: parse error"}"#
                    .to_owned(),
            )
        })
        .await;
        let err = client(PrometheusConfig::new(&prom.url))
            .query("up{")
            .await
            .unwrap_err();
        assert_eq!(err.http_status(), 502);
        let PrometheusError::Rejected {
            status,
            ref error_type,
            ref message,
            ..
        } = err
        else {
            panic!("expected Rejected, got {err:?}");
        };
        assert_eq!(status, 400);
        assert_eq!(error_type, "bad_data");
        assert!(message.contains("parse error"), "{message}");
        assert_eq!(
            err.to_string(),
            format!(
                "Prometheus at {} rejected the query: bad_data: invalid parameter \"query\": 1:3: parse error (HTTP 400)",
                prom.url
            )
        );
    }

    #[tokio::test]
    async fn error_status_inside_a_200_is_rejected() {
        let prom = fake(ok(
            r#"{"status":"error","errorType":"execution","error":"many-to-many matching not allowed"}"#,
        ))
        .await;
        let err = client(PrometheusConfig::new(&prom.url))
            .query("a / b")
            .await
            .unwrap_err();
        assert!(
            matches!(&err, PrometheusError::Rejected { error_type, .. } if error_type == "execution"),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn non_json_error_body_is_rejected_with_a_snippet() {
        let page = format!(
            "<html><head><title>414 Request-URI Too Large</title></head>\n<body>{}</body></html>",
            "x".repeat(1000)
        );
        let prom = fake(move |_: &Seen| (414, page.clone())).await;
        let err = client(PrometheusConfig::new(&prom.url))
            .query("up")
            .await
            .unwrap_err();
        assert_eq!(err.http_status(), 502);
        let PrometheusError::Rejected {
            status, message, ..
        } = &err
        else {
            panic!("expected Rejected, got {err:?}");
        };
        assert_eq!(*status, 414);
        assert!(
            message.starts_with("<html><head><title>414 Request-URI Too Large"),
            "{message}"
        );
        assert!(message.chars().count() <= BODY_SNIPPET_LEN + 3, "{message}");
        assert!(err.to_string().ends_with("(HTTP 414)"), "{err}");
    }

    #[tokio::test]
    async fn non_json_success_is_a_decode_error() {
        let prom = fake(ok("<html>login page</html>")).await;
        let err = client(PrometheusConfig::new(&prom.url))
            .query("up")
            .await
            .unwrap_err();
        assert!(matches!(err, PrometheusError::Decode { .. }), "{err:?}");
        assert_eq!(err.http_status(), 502);
        assert!(err.to_string().contains("login page"), "{err}");
    }

    #[tokio::test]
    async fn closed_port_is_unreachable() {
        install_provider();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let err = client(PrometheusConfig::new(&url))
            .query("up")
            .await
            .unwrap_err();
        assert!(
            matches!(err, PrometheusError::Unreachable { .. }),
            "{err:?}"
        );
        assert_eq!(err.http_status(), 503);
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("Prometheus at {url} is unreachable: ")),
            "{text}"
        );
        // The cause chain reaches the operating system's reason.
        assert!(text.to_lowercase().contains("refused"), "{text}");
        assert!(!text.contains("query=up"), "{text}");
    }

    #[tokio::test]
    async fn slow_server_times_out() {
        let prom = fake_with_delay(Duration::from_secs(5), ok(VECTOR)).await;
        let mut config = PrometheusConfig::new(&prom.url);
        config.timeout = Duration::from_millis(200);
        let started = Instant::now();
        let err = client(config).query("up").await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(3));
        assert!(matches!(err, PrometheusError::Timeout { .. }), "{err:?}");
        assert_eq!(err.http_status(), 504);
        assert_eq!(
            err.to_string(),
            format!("Prometheus at {} did not answer within 200ms", prom.url)
        );
    }

    #[tokio::test]
    async fn label_values_sends_match_parameters() {
        let prom = fake(ok(r#"{"status":"success","data":["api","node exporter"]}"#)).await;
        let client = client(PrometheusConfig::new(format!("{}/prefix/", prom.url)));
        let values = client
            .label_values("job", &["up{env=\"prod\"}", "process_start_time_seconds"])
            .await
            .unwrap();
        assert_eq!(values, vec!["api", "node exporter"]);
        let seen = prom.last();
        assert_eq!(seen.method, "GET");
        assert_eq!(seen.path, "/prefix/api/v1/label/job/values");
        assert_eq!(
            seen.query,
            vec![
                ("match[]".to_owned(), "up{env=\"prod\"}".to_owned()),
                (
                    "match[]".to_owned(),
                    "process_start_time_seconds".to_owned()
                ),
            ]
        );
    }

    #[tokio::test]
    async fn reload_posts_to_the_lifecycle_endpoint() {
        let prom = fake(
            |seen: &Seen| match (seen.method.as_str(), seen.path.as_str()) {
                ("POST", "/prefix/-/reload") => (200, String::new()),
                _ => (403, "Lifecycle API is not enabled.".to_owned()),
            },
        )
        .await;
        let on = client(PrometheusConfig::new(format!("{}/prefix", prom.url)));
        on.reload().await.unwrap();
        assert_eq!(prom.last().method, "POST");

        let off = client(PrometheusConfig::new(format!("{}/other", prom.url)));
        let error = off.reload().await.unwrap_err();
        assert_eq!(error.http_status(), 502);
        assert!(
            error.to_string().contains("Lifecycle API is not enabled"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn ready_checks_the_api_and_falls_back_to_ready_endpoint() {
        let prom = fake(|seen: &Seen| match seen.path.as_str() {
            "/api/v1/status/buildinfo" => (404, "404 page not found".to_owned()),
            "/-/ready" => (200, "Prometheus Server is Ready.".to_owned()),
            _ => (500, String::new()),
        })
        .await;
        client(PrometheusConfig::new(&prom.url))
            .ready()
            .await
            .unwrap();
        let paths: Vec<String> = prom.requests().into_iter().map(|s| s.path).collect();
        assert_eq!(paths, vec!["/api/v1/status/buildinfo", "/-/ready"]);

        let starting = fake(|_: &Seen| (503, "Service Unavailable".to_owned())).await;
        let err = client(PrometheusConfig::new(&starting.url))
            .ready()
            .await
            .unwrap_err();
        assert!(
            matches!(err, PrometheusError::Rejected { status: 503, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn debug_never_shows_secrets() {
        let mut config = PrometheusConfig::new("https://user:hunter2@thanos.example/prefix");
        config.bearer_token_file = Some(PathBuf::from("token-file"));
        config.basic_auth_user = Some("alice".to_owned());
        config.basic_auth_password_file = Some(PathBuf::from("password-file"));
        config.headers = vec![("X-Scope-OrgID".to_owned(), "tenant-secret".to_owned())];
        let debug = format!("{config:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(!debug.contains("tenant-secret"), "{debug}");
        assert!(debug.contains("X-Scope-OrgID"), "{debug}");
        assert!(debug.contains("password-file"), "{debug}");
    }

    #[test]
    fn missing_ca_file_is_named() {
        install_provider();
        let mut config = PrometheusConfig::new("https://prometheus.example");
        let missing = std::env::temp_dir().join("no-such-dir-for-prometheus-test/ca.pem");
        config.ca_file = Some(missing.clone());
        let err = PrometheusClient::new(config).unwrap_err();
        assert!(
            matches!(err, PrometheusConfigError::UnreadableFile { .. }),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(text.contains(&missing.display().to_string()), "{text}");
        assert!(text.contains("CA file"), "{text}");
    }

    #[test]
    fn ca_file_without_certificates_is_invalid() {
        install_provider();
        let dir = TempDir::new();
        let mut config = PrometheusConfig::new("https://prometheus.example");
        config.ca_file = Some(dir.file("ca.pem", "not a certificate\n"));
        let err = PrometheusClient::new(config.clone()).unwrap_err();
        assert!(
            matches!(err, PrometheusConfigError::InvalidFile { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("ca.pem"), "{err}");

        // Valid PEM framing around something that is not a certificate.
        config.ca_file = Some(dir.file(
            "broken.pem",
            "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n",
        ));
        let err = PrometheusClient::new(config).unwrap_err();
        assert!(
            matches!(err, PrometheusConfigError::InvalidFile { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("broken.pem"), "{err}");
    }

    #[test]
    fn bad_client_key_is_named() {
        install_provider();
        let dir = TempDir::new();
        let mut config = PrometheusConfig::new("https://prometheus.example");
        config.client_cert_file = Some(dir.file("tls.crt", "garbage"));
        config.client_key_file = Some(dir.file("tls.key", "garbage"));
        let err = PrometheusClient::new(config).unwrap_err();
        assert!(err.to_string().contains("tls.crt"), "{err}");
    }

    #[test]
    fn rejects_bad_configurations() {
        install_provider();
        let cases: Vec<(PrometheusConfig, &str)> = vec![
            (PrometheusConfig::new("not a url"), "invalid Prometheus URL"),
            (PrometheusConfig::new("ftp://host/"), "scheme"),
            (
                PrometheusConfig::new("http://user:pw@host/"),
                "credentials in the URL",
            ),
            (
                PrometheusConfig {
                    basic_auth_user: Some("alice".to_owned()),
                    ..PrometheusConfig::new("http://host")
                },
                "basic_auth_password_file",
            ),
            (
                PrometheusConfig {
                    client_cert_file: Some(PathBuf::from("tls.crt")),
                    ..PrometheusConfig::new("http://host")
                },
                "client_key_file",
            ),
            (
                PrometheusConfig {
                    bearer_token_file: Some(PathBuf::from("token")),
                    basic_auth_user: Some("alice".to_owned()),
                    basic_auth_password_file: Some(PathBuf::from("password")),
                    ..PrometheusConfig::new("http://host")
                },
                "both",
            ),
            (
                PrometheusConfig {
                    headers: vec![("X-Scope-OrgID".to_owned(), "bad\nvalue".to_owned())],
                    ..PrometheusConfig::new("http://host")
                },
                "X-Scope-OrgID",
            ),
        ];
        for (config, expected) in cases {
            let err = PrometheusClient::new(config).unwrap_err().to_string();
            assert!(
                err.contains(expected),
                "{err:?} should mention {expected:?}"
            );
            assert!(!err.contains("pw@"), "{err}");
            assert!(!err.contains("bad\nvalue"), "{err}");
        }
    }

    // Test-only PKI (P-256, valid 2000-2999) so TLS can be exercised
    // without a certificate generator among the dependencies. These keys
    // protect nothing.
    const TEST_CA: &str = "\
        -----BEGIN CERTIFICATE-----\n\
        MIIBazCCARCgAwIBAgIUPvcV80RXMN88g6BPtGhtlIDlTU0wCgYIKoZIzj0EAwIw\n\
        EjEQMA4GA1UEAwwHdGVzdC1jYTAgFw0wMDAxMDEwMDAwMDBaGA8yOTk5MTIzMTAw\n\
        MDAwMFowEjEQMA4GA1UEAwwHdGVzdC1jYTBZMBMGByqGSM49AgEGCCqGSM49AwEH\n\
        A0IABPLl7p6NwaVF30IAxheAmbvDUX0lzT6sJLwRwJwR85KkN9+b6jXM5cRuibHQ\n\
        uk5S0S8bAJBnBeiOxH81PxOVvnujQjBAMA8GA1UdEwEB/wQFMAMBAf8wDgYDVR0P\n\
        AQH/BAQDAgEGMB0GA1UdDgQWBBSvdIgny4nFojANcKEllvcKYF+NgDAKBggqhkjO\n\
        PQQDAgNJADBGAiEA0zVUU/kzno4QiZE25CUGU/mVSUlhrFuHKC24GljwT5UCIQDp\n\
        bO8Y15FcZip6NacZWm7XzHKRlvnm8E8Oxo4fm0BUig==\n\
        -----END CERTIFICATE-----\n";
    const OTHER_CA: &str = "\
        -----BEGIN CERTIFICATE-----\n\
        MIIBazCCARKgAwIBAgIUYopdLED74vu43xv+wPoi0iwXVGkwCgYIKoZIzj0EAwIw\n\
        EzERMA8GA1UEAwwIb3RoZXItY2EwIBcNMDAwMTAxMDAwMDAwWhgPMjk5OTEyMzEw\n\
        MDAwMDBaMBMxETAPBgNVBAMMCG90aGVyLWNhMFkwEwYHKoZIzj0CAQYIKoZIzj0D\n\
        AQcDQgAEnJFSOMKfgruOueJaVC6axPn0zokQXJQT/cWaCfltC+zgqr+lnquXkX2c\n\
        +JqF+KgH7EwBnnvVMT+7C1xJSPEvUaNCMEAwDwYDVR0TAQH/BAUwAwEB/zAOBgNV\n\
        HQ8BAf8EBAMCAQYwHQYDVR0OBBYEFDV/LyIEwLJG4OQIymHVbaWzA9AuMAoGCCqG\n\
        SM49BAMCA0cAMEQCIDIaUS2LqEHHaOqyVqgNw8q18bjAkxIic3K4O2UHBbg8AiAG\n\
        MO7wB7H2KdYVFyneaIdWXQ5TaEvrpojqoJmGo7c5Cw==\n\
        -----END CERTIFICATE-----\n";
    const SERVER_CERT: &str = "\
        -----BEGIN CERTIFICATE-----\n\
        MIIBgTCCASegAwIBAgIUMoLieTI9bkNMNqQKSXgqN8F42g4wCgYIKoZIzj0EAwIw\n\
        EjEQMA4GA1UEAwwHdGVzdC1jYTAgFw0wMDAxMDEwMDAwMDBaGA8yOTk5MTIzMTAw\n\
        MDAwMFowFDESMBAGA1UEAwwJMTI3LjAuMC4xMFkwEwYHKoZIzj0CAQYIKoZIzj0D\n\
        AQcDQgAE+6VdQBPYpSSqwnZTXsWBKXspHlhysls6gIg2noELHxHav49ix3oDBxXZ\n\
        rKz58n2pwBwLkK/kmY4xliX/q8FlsqNXMFUwDAYDVR0TAQH/BAIwADATBgNVHSUE\n\
        DDAKBggrBgEFBQcDATAfBgNVHSMEGDAWgBSvdIgny4nFojANcKEllvcKYF+NgDAP\n\
        BgNVHREECDAGhwR/AAABMAoGCCqGSM49BAMCA0gAMEUCIQDog8ixLwv/idxSDUGS\n\
        yUYEQjm6XiEuvM02c1h4CfIuWwIgZ5dpulA122zNnMWn3/pUHiTcI3s2uEdrdX3e\n\
        0VPlFpQ=\n\
        -----END CERTIFICATE-----\n";
    const SERVER_KEY: &str = "\
        -----BEGIN PRIVATE KEY-----\n\
        MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg/AOD6pyeJ+h/AQA2\n\
        cn09lpnaSacH+NSn6F/6y73n8k6hRANCAAT7pV1AE9ilJKrCdlNexYEpeykeWHKy\n\
        WzqAiDaegQsfEdq/j2LHegMHFdmsrPnyfanAHAuQr+SZjjGWJf+rwWWy\n\
        -----END PRIVATE KEY-----\n";
    const CLIENT_CERT: &str = "\
        -----BEGIN CERTIFICATE-----\n\
        MIIBbjCCARSgAwIBAgIUcO8dQzhRHM3ffPV2yLMXYSpHsAIwCgYIKoZIzj0EAwIw\n\
        EjEQMA4GA1UEAwwHdGVzdC1jYTAgFw0wMDAxMDEwMDAwMDBaGA8yOTk5MTIzMTAw\n\
        MDAwMFowEjEQMA4GA1UEAwwHYWRhcHRlcjBZMBMGByqGSM49AgEGCCqGSM49AwEH\n\
        A0IABOpXpHFPp6FbAXlGSX176GLNIpiDtCTG5s+OoqReNxjconEIL/R8uXUb/Lcl\n\
        gJktm9R1WLn8dIgUro7MqJZtmkKjRjBEMAwGA1UdEwEB/wQCMAAwEwYDVR0lBAww\n\
        CgYIKwYBBQUHAwIwHwYDVR0jBBgwFoAUr3SIJ8uJxaIwDXChJZb3CmBfjYAwCgYI\n\
        KoZIzj0EAwIDSAAwRQIgF7UQfiEychywFXQwVHLp2/F2/4veA+IkEP5QwyU/aDwC\n\
        IQCBTctwV1o9iCvC3tC3LgkrMbq/uXYzV6wEG6LuEpiC7w==\n\
        -----END CERTIFICATE-----\n";
    const CLIENT_KEY: &str = "\
        -----BEGIN PRIVATE KEY-----\n\
        MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg4+hdMouxmeF6G+Vs\n\
        yLoES2RhuR0oxpA1ec3+PlEOXS2hRANCAATqV6RxT6ehWwF5Rkl9e+hizSKYg7Qk\n\
        xubPjqKkXjcY3KJxCC/0fLl1G/y3JYCZLZvUdVi5/HSIFK6OzKiWbZpC\n\
        -----END PRIVATE KEY-----\n";

    /// A TLS server on its own thread that answers every request with an
    /// empty vector, optionally demanding a client certificate signed by
    /// the test CA.
    fn tls_server(require_client_cert: bool) -> String {
        use std::io::{Read, Write};

        install_provider();
        let certs = CertificateDer::pem_slice_iter(SERVER_CERT.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(SERVER_KEY.as_bytes()).unwrap();
        let builder = rustls::ServerConfig::builder();
        let builder = if require_client_cert {
            let mut roots = rustls::RootCertStore::empty();
            for ca in CertificateDer::pem_slice_iter(TEST_CA.as_bytes()) {
                roots.add(ca.unwrap()).unwrap();
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
                .build()
                .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let config = Arc::new(builder.with_single_cert(certs, key).unwrap());

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let connection = rustls::ServerConnection::new(config.clone()).unwrap();
                let mut tls = rustls::StreamOwned::new(connection, stream);
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                // Handshake failures surface here as read errors.
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                if request.windows(4).any(|w| w == b"\r\n\r\n") {
                    let body = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
                    let _ = write!(
                        tls,
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = tls.flush();
                }
                tls.conn.send_close_notify();
                let _ = tls.flush();
            }
        });
        url
    }

    #[tokio::test]
    async fn trusts_the_configured_ca() {
        let url = tls_server(false);
        let dir = TempDir::new();
        let mut config = PrometheusConfig::new(&url);
        config.ca_file = Some(dir.file("ca.pem", TEST_CA));
        let samples = client(config).query("up").await.unwrap();
        assert!(samples.is_empty());
    }

    #[tokio::test]
    async fn trusts_only_the_configured_ca() {
        let url = tls_server(false);
        let dir = TempDir::new();
        let mut config = PrometheusConfig::new(&url);
        config.ca_file = Some(dir.file("ca.pem", OTHER_CA));
        let err = client(config).query("up").await.unwrap_err();
        assert!(
            matches!(err, PrometheusError::Unreachable { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("UnknownIssuer"), "{err}");
    }

    #[tokio::test]
    async fn presents_the_client_certificate() {
        let url = tls_server(true);
        let dir = TempDir::new();
        let mut config = PrometheusConfig::new(&url);
        config.ca_file = Some(dir.file("ca.pem", TEST_CA));
        client(config.clone())
            .query("up")
            .await
            .expect_err("the server demands a client certificate");

        config.client_cert_file = Some(dir.file("tls.crt", CLIENT_CERT));
        config.client_key_file = Some(dir.file("tls.key", CLIENT_KEY));
        client(config).query("up").await.unwrap();
    }

    #[test]
    fn mismatched_client_key_is_rejected() {
        install_provider();
        let dir = TempDir::new();
        let mut config = PrometheusConfig::new("https://prometheus.example");
        config.ca_file = Some(dir.file("ca.pem", TEST_CA));
        config.client_cert_file = Some(dir.file("tls.crt", CLIENT_CERT));
        config.client_key_file = Some(dir.file("tls.key", SERVER_KEY));
        let err = PrometheusClient::new(config).unwrap_err().to_string();
        assert!(err.contains("tls.crt") && err.contains("tls.key"), "{err}");
    }
}
