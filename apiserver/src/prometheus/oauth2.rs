//! OAuth2 client credentials (RFC 6749 §4.4): the token endpoint is asked for a token with
//! the client's id and secret (HTTP basic, as §2.3.1 requires every server to accept), and
//! the token is reused until shortly before it expires. Concurrent queries wait for one
//! request to the endpoint; a 401 from Prometheus drops the token so the next query asks
//! again.

use super::config::OAuth2Config;
use super::error::{PrometheusConfigError, PrometheusError, error_chain, snippet};
use super::secret::Credential;
use reqwest::Url;
use serde::Deserialize;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// Used when the endpoint does not say how long its token lives.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(60);

pub(crate) struct Tokens {
    config: OAuth2Config,
    secret: Credential,
    token_url: Url,
    /// The token and when to stop using it.
    cached: Mutex<Option<(String, Instant)>>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl Tokens {
    pub(super) fn new(
        config: OAuth2Config,
        secret: Credential,
    ) -> Result<Self, PrometheusConfigError> {
        let token_url = super::config::parse_base_url(&config.token_url).map_err(|error| {
            PrometheusConfigError::InvalidSecret {
                what: "OAuth2 token URL",
                origin: config.token_url.clone(),
                cause: error.to_string(),
            }
        })?;
        Ok(Tokens {
            config,
            secret,
            token_url,
            cached: Mutex::new(None),
        })
    }

    /// Whether the token endpoint is plain HTTP (no TLS roots needed).
    pub(super) fn plain_http(&self) -> bool {
        self.token_url.scheme() == "http"
    }

    /// A token that is still good, fetched with `http` when there is none.
    pub(super) async fn token(
        &self,
        http: &reqwest::Client,
        prometheus_url: &str,
    ) -> Result<String, PrometheusError> {
        let mut cached = self.cached.lock().await;
        if let Some((token, until)) = cached.as_ref()
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let failed = |cause: String| PrometheusError::Token {
            url: prometheus_url.to_owned(),
            token_url: self.config.token_url.clone(),
            cause,
        };
        let secret = self.secret.get()?;
        let mut form = vec![("grant_type", "client_credentials".to_owned())];
        if !self.config.scopes.is_empty() {
            form.push(("scope", self.config.scopes.join(" ")));
        }
        let response = http
            .post(self.token_url.clone())
            .basic_auth(&self.config.client_id, Some(secret))
            .form(&form)
            .send()
            .await
            .map_err(|e| failed(error_chain(&e.without_url())))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| failed(error_chain(&e.without_url())))?;
        if !status.is_success() {
            return Err(failed(format!("HTTP {status}: {}", snippet(&body))));
        }
        let answer: TokenAnswer =
            serde_json::from_slice(&body).map_err(|e| failed(format!("unreadable answer: {e}")))?;
        if let Some(kind) = &answer.token_type
            && !kind.eq_ignore_ascii_case("bearer")
        {
            return Err(failed(format!("token_type {kind:?} is not Bearer")));
        }
        let lifetime = answer
            .expires_in
            .map_or(DEFAULT_LIFETIME, Duration::from_secs);
        // Renewed a little early, so a token never expires on its way to Prometheus.
        let margin = (lifetime / 10).min(Duration::from_secs(30));
        *cached = Some((
            answer.access_token.clone(),
            Instant::now() + lifetime - margin,
        ));
        Ok(answer.access_token)
    }

    /// Forgets the token (Prometheus refused it).
    pub(super) async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }
}
