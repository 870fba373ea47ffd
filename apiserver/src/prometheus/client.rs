//! The client: requests with credentials, answers read under a size cap, errors that
//! say which Prometheus failed and how.

use super::auth::{Auth, auth_from_config};
use super::config::{
    PrometheusConfig, QueryMethod, extra_headers, inline_ca, inline_identity, load_ca,
    load_identity, parse_base_url,
};
use super::error::{PrometheusConfigError, PrometheusError, error_chain, snippet};
use super::response::{self, Envelope, QueryData, Sample};
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderName, HeaderValue};
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest URL sent as a GET under [`QueryMethod::Auto`]. Proxies and load
/// balancers commonly reject longer request lines (HTTP 414), while the body
/// of a POST has no such limit.
const MAX_GET_URL_LEN: usize = 4096;

/// Whether rustls, somewhere down `error`'s sources, refused the handshake. I/O errors
/// wrap their payload without listing it as a source, so they are unwrapped too.
fn is_tls_failure(error: &reqwest::Error) -> bool {
    fn is_rustls(error: &(dyn std::error::Error + 'static)) -> bool {
        if error.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        let inner = error
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|inner| inner as &(dyn std::error::Error + 'static));
        inner.is_some_and(is_rustls) || error.source().is_some_and(is_rustls)
    }
    std::error::Error::source(error).is_some_and(is_rustls)
}

/// Cheap to clone: clones share one connection pool.
#[derive(Clone)]
pub struct PrometheusClient {
    inner: Arc<Inner>,
    /// A header of this clone only (a tenant's), on top of the configured ones.
    tenant: Option<(HeaderName, HeaderValue)>,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    /// Base URL as shown in errors and logs: no trailing slash, no password.
    display_url: String,
    timeout: Duration,
    method: QueryMethod,
    max_response_bytes: usize,
    auth: Auth,
    /// The client for the OAuth2 token endpoint, with OAuth2 only.
    token_http: Option<reqwest::Client>,
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

        let ca = match (&config.ca_file, &config.ca) {
            (Some(ca_file), None) => Some(load_ca(ca_file)?),
            (None, Some(secret)) => Some(inline_ca(secret)?),
            (None, None) => None,
            (Some(_), Some(_)) => {
                return Err(PrometheusConfigError::Conflict(
                    "a CA file and an in-memory CA cannot both be used",
                ));
            }
        };
        if let Some(ca) = &ca {
            // Only the given CA: a private Prometheus must not be
            // impersonable by any publicly trusted certificate.
            builder = builder.tls_certs_only(ca.clone());
        } else if base.scheme() == "http" {
            // The platform verifier fails to build when the system has no CA
            // bundle (distroless images); plain HTTP never needs it.
            builder = builder.tls_certs_only(Vec::new());
        }

        match (
            &config.client_cert_file,
            &config.client_key_file,
            &config.client_identity,
        ) {
            (Some(cert), Some(key), None) => builder = builder.identity(load_identity(cert, key)?),
            (None, None, Some((cert, key))) => {
                builder = builder.identity(inline_identity(cert, key)?)
            }
            (None, None, None) => {}
            (_, _, Some(_)) => {
                return Err(PrometheusConfigError::Conflict(
                    "client certificate files and an in-memory client certificate cannot both be used",
                ));
            }
            _ => {
                return Err(PrometheusConfigError::Incomplete(
                    "client_cert_file and client_key_file must be set together",
                ));
            }
        }

        // The token endpoint gets neither Prometheus' extra headers (a tenant's) nor its
        // client certificate; it trusts the same CA.
        let token_http = match &auth {
            Auth::SigV4(_) => Some(
                // STS: the system's CA certificates (it is AWS'), or plain HTTP in tests.
                reqwest::Client::builder()
                    .timeout(config.timeout)
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .map_err(|e| PrometheusConfigError::Client(error_chain(&e)))?,
            ),
            Auth::OAuth2(tokens) => {
                let mut token_builder = reqwest::Client::builder()
                    .timeout(config.timeout)
                    .redirect(reqwest::redirect::Policy::none());
                if let Some(ca) = &ca {
                    token_builder = token_builder.tls_certs_only(ca.clone());
                } else if tokens.plain_http() {
                    token_builder = token_builder.tls_certs_only(Vec::new());
                }
                Some(
                    token_builder
                        .build()
                        .map_err(|e| PrometheusConfigError::Client(error_chain(&e)))?,
                )
            }
            _ => None,
        };

        let http = builder.build().map_err(|e| {
            let mut cause = error_chain(&e);
            // rustls-platform-verifier refuses to start without a system CA
            // bundle, which surprises people running in minimal images; its error text
            // is not ours to match, so the hint goes on whenever the system bundle is used.
            if ca.is_none() && base.scheme() == "https" {
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
                max_response_bytes: config.max_response_bytes,
                auth,
                token_http,
            }),
            tenant: None,
        })
    }

    /// A client sharing this one's connections that also sends `name: value` with every
    /// request: a tenant's view of a multi-tenant backend.
    pub fn with_tenant(&self, name: &str, value: &str) -> Result<Self, PrometheusConfigError> {
        let invalid = |reason: &str| PrometheusConfigError::InvalidHeader {
            name: name.to_owned(),
            reason: reason.to_owned(),
        };
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid("not a valid header name"))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| invalid("the tenant is not a valid header value"))?;
        Ok(PrometheusClient {
            inner: self.inner.clone(),
            tenant: Some((name, value)),
        })
    }

    /// The tenant header's value this client sends, if any.
    pub fn tenant(&self) -> Option<&str> {
        self.tenant
            .as_ref()
            .and_then(|(_, value)| value.to_str().ok())
    }

    /// The base URL without trailing slash, as used in error messages.
    pub fn url(&self) -> &str {
        &self.inner.display_url
    }

    /// Instant query. A scalar result becomes one sample without labels.
    pub async fn query(&self, promql: &str) -> Result<Vec<Sample>, PrometheusError> {
        self.query_within(promql, None).await
    }

    /// Instant query that may take `timeout` instead of the configured timeout.
    pub async fn query_within(
        &self,
        promql: &str,
        timeout: Option<Duration>,
    ) -> Result<Vec<Sample>, PrometheusError> {
        let within = timeout.unwrap_or(self.inner.timeout);
        let url = self.endpoint(&["api", "v1", "query"]);
        // Prometheus cancels the evaluation at its own `timeout`, so a query abandoned here
        // stops costing there too.
        let timeout = format!("{}ms", within.as_millis().max(1));
        let mut with_query = url.clone();
        with_query
            .query_pairs_mut()
            .append_pair("query", promql)
            .append_pair("timeout", &timeout);
        let use_post = match self.inner.method {
            QueryMethod::Get => false,
            QueryMethod::Post => true,
            QueryMethod::Auto => with_query.as_str().len() > MAX_GET_URL_LEN,
        };
        let request = if use_post {
            self.inner
                .http
                .post(url)
                .form(&[("query", promql), ("timeout", &timeout)])
        } else {
            self.inner.http.get(with_query)
        };

        let started = Instant::now();
        let data: QueryData = self.send(request.timeout(within), within).await?;
        let samples = response::samples(&self.inner.display_url, data)?;
        tracing::debug!(
            query = promql,
            method = if use_post { "POST" } else { "GET" },
            elapsed = ?started.elapsed(),
            series = samples.len(),
            "Prometheus query"
        );
        Ok(samples)
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
        let values: Option<Vec<String>> = self
            .send(self.inner.http.get(url), self.inner.timeout)
            .await?;
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
        let within = self.inner.timeout;
        match self.send_raw(self.inner.http.get(buildinfo), within).await {
            Ok(_) => Ok(()),
            Err(PrometheusError::Rejected { status: 404, .. }) => {
                let ready = self.endpoint(&["-", "ready"]);
                self.send_raw(self.inner.http.get(ready), within)
                    .await
                    .map(drop)
            }
            Err(e) => Err(e),
        }
    }

    /// POST {url}/-/reload: makes Prometheus re-read its rule files (needs
    /// `--web.enable-lifecycle`; a 403 or 404 from Prometheus says it is off).
    pub async fn reload(&self) -> Result<(), PrometheusError> {
        let reload = self.endpoint(&["-", "reload"]);
        self.send_raw(self.inner.http.post(reload), self.inner.timeout)
            .await
            .map(drop)
    }

    /// How often the bearer token file was read (tests).
    #[cfg(test)]
    pub(super) fn token_reads(&self) -> u64 {
        match &self.inner.auth {
            Auth::Bearer(super::secret::Credential::File(file)) => file.reads(),
            _ => 0,
        }
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
        within: Duration,
    ) -> Result<T, PrometheusError> {
        let body = self.send_raw(request, within).await?;
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

    /// Sends the request with credentials; any non-2xx answer is an error, and so is
    /// an answer larger than the configured maximum (read no further than that).
    async fn send_raw(
        &self,
        request: reqwest::RequestBuilder,
        within: Duration,
    ) -> Result<Vec<u8>, PrometheusError> {
        let mut request = self
            .authorize(request.header(ACCEPT, "application/json"))
            .await?;
        if let Some((name, value)) = &self.tenant {
            request = request.header(name, value);
        }
        let mut request = request
            .build()
            .map_err(|e| self.transport_error(e, within))?;
        if let Auth::SigV4(signer) = &self.inner.auth {
            let sts = self
                .inner
                .token_http
                .as_ref()
                .expect("SigV4 clients have an STS client");
            signer
                .sign(&mut request, &self.inner.display_url, sts)
                .await?;
        }
        let mut response = self
            .inner
            .http
            .execute(request)
            .await
            .map_err(|e| self.transport_error(e, within))?;
        let status = response.status();
        let limit = self.inner.max_response_bytes;
        let too_large = || PrometheusError::TooLarge {
            url: self.inner.display_url.clone(),
            limit,
        };
        let announced = response.content_length().unwrap_or(0);
        if announced > limit as u64 {
            return Err(too_large());
        }
        let mut body = Vec::with_capacity(announced as usize);
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport_error(e, within))?
        {
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        if status.is_success() {
            return Ok(body);
        }
        if status == StatusCode::UNAUTHORIZED
            && let Auth::OAuth2(tokens) = &self.inner.auth
        {
            tokens.invalidate().await;
        }
        Err(self.rejection(status, &body))
    }

    async fn authorize(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, PrometheusError> {
        // Files are followed because Kubernetes rotates projected tokens and mounted
        // secrets in place; they are read again only when they changed.
        let bearer = |token: String, origin: String| {
            let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                PrometheusError::Credentials {
                    path: origin.into(),
                    cause: "the token contains characters not allowed in an HTTP header".to_owned(),
                }
            })?;
            value.set_sensitive(true);
            Ok::<_, PrometheusError>(value)
        };
        Ok(match &self.inner.auth {
            Auth::None => request,
            Auth::Bearer(credential) => request.header(
                AUTHORIZATION,
                bearer(credential.get()?, credential.origin())?,
            ),
            Auth::Basic { user, password } => request.basic_auth(user, Some(password.get()?)),
            Auth::OAuth2(tokens) => {
                let http = self
                    .inner
                    .token_http
                    .as_ref()
                    .expect("OAuth2 clients have a token client");
                let token = tokens.token(http, &self.inner.display_url).await?;
                request.header(
                    AUTHORIZATION,
                    bearer(token, "the OAuth2 token endpoint".to_owned())?,
                )
            }
            // Signed once the request is complete, in `send_raw`.
            Auth::SigV4(_) => request,
        })
    }

    fn transport_error(&self, error: reqwest::Error, within: Duration) -> PrometheusError {
        let url = self.inner.display_url.clone();
        if error.is_timeout() {
            return PrometheusError::Timeout {
                url,
                timeout: within,
            };
        }
        let connect = error.is_connect();
        let tls = is_tls_failure(&error);
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
        PrometheusError::Unreachable { url, cause, tls }
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
