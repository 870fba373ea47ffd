//! The serving certificate and the rustls configuration built from it.
//!
//! Both halves change while the process runs: the certificate when its Secret is
//! rotated (files on disk), the client-CA bundle when kube-apiserver rewrites the
//! extension-apiserver-authentication ConfigMap. [`ReloadableTls`] rebuilds the rustls
//! configuration for either and swaps it under the listener, so new connections see
//! the change and open ones keep the configuration they were accepted with.

mod serving_certificate;

pub use serving_certificate::ServingCertificate;
pub(crate) use serving_certificate::parse_roots;

use axum_server::tls_rustls::RustlsConfig;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {message}")]
    Invalid { what: String, message: String },
    #[error(
        "no rustls crypto provider is installed for this process; install one \
         (rustls::crypto::ring::default_provider().install_default()) before serving TLS"
    )]
    NoCryptoProvider,
}

fn invalid(what: impl Into<String>, message: impl fmt::Display) -> TlsError {
    TlsError::Invalid {
        what: what.into(),
        message: message.to_string(),
    }
}

/// The process-wide provider, so the server, the verifiers and every client agree on
/// one; an error instead of rustls's panic when the binary forgot to install it.
pub(crate) fn crypto_provider() -> Result<Arc<CryptoProvider>, TlsError> {
    CryptoProvider::get_default()
        .cloned()
        .ok_or(TlsError::NoCryptoProvider)
}

struct State {
    serving: ServingCertificate,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_verifier: Arc<dyn ClientCertVerifier>,
}

/// Hot-reloadable rustls config: serving cert + optional client-CA bundle
/// (front-proxy CA ∪ client CA) for OPTIONAL client certificates, ALPN h2 + http/1.1.
///
/// Client certificates are optional in the handshake because probes, token callers and
/// kube-apiserver itself all share the port; which CA a certificate chains to, and
/// what that means, is decided per request by [`crate::auth::Guard`].
pub struct ReloadableTls {
    provider: Arc<CryptoProvider>,
    // One lock around both halves so a certificate reload and a CA change cannot
    // each publish a config that lacks the other's update.
    state: Mutex<State>,
    config: RustlsConfig,
}

impl fmt::Debug for ReloadableTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadableTls").finish_non_exhaustive()
    }
}

impl ReloadableTls {
    pub fn new(
        serving: ServingCertificate,
        client_ca_pem: Option<String>,
    ) -> Result<Self, TlsError> {
        let provider = crypto_provider()?;
        let (chain, key) = serving.parse("serving certificate", "serving key")?;
        let client_verifier = client_verifier(&provider, client_ca_pem.as_deref())?;
        let state = State {
            serving,
            chain,
            key,
            client_verifier,
        };
        let config = RustlsConfig::from_config(Arc::new(server_config(&provider, &state)?));
        Ok(ReloadableTls {
            provider,
            state: Mutex::new(state),
            config,
        })
    }

    /// Takes effect for connections accepted from now on.
    pub fn set_serving(&self, serving: ServingCertificate) -> Result<(), TlsError> {
        let (chain, key) = serving.parse("serving certificate", "serving key")?;
        self.update(|state| {
            state.serving = serving;
            state.chain = chain;
            state.key = key;
        })
    }

    /// `None` stops asking for client certificates.
    pub fn set_client_ca(&self, client_ca_pem: Option<String>) -> Result<(), TlsError> {
        let verifier = client_verifier(&self.provider, client_ca_pem.as_deref())?;
        self.update(|state| state.client_verifier = verifier)
    }

    /// The configuration to hand to the listener; it follows every later change.
    pub fn rustls_config(&self) -> RustlsConfig {
        self.config.clone()
    }

    /// The certificate currently served.
    pub fn serving(&self) -> ServingCertificate {
        self.lock().serving.clone()
    }

    /// Polls the files and reloads when both parse and match; a broken pair keeps the
    /// old one and logs why.
    pub fn spawn_file_watch(
        self: &Arc<Self>,
        cert: PathBuf,
        key: PathBuf,
        every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let tls = Arc::clone(self);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(every);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_failure: Option<String> = None;
            let mut warned = false;
            loop {
                interval.tick().await;
                let failure = match tls.reload_from_files(&cert, &key).await {
                    Ok(true) => {
                        tracing::info!(cert = %cert.display(), "reloaded the serving certificate");
                        None
                    }
                    Ok(false) => None,
                    Err(e) => Some(e.to_string()),
                };
                match failure {
                    None => {
                        last_failure = None;
                        warned = false;
                    }
                    // A Secret update swaps the files one after the other, so a single
                    // mismatched read is expected; only a pair still broken on the next
                    // poll is worth a warning, and only once.
                    Some(reason) if last_failure.as_ref() == Some(&reason) => {
                        if !warned {
                            tracing::warn!(
                                error = %reason,
                                "keeping the previous serving certificate"
                            );
                            warned = true;
                        }
                    }
                    Some(reason) => {
                        tracing::debug!(error = %reason, "serving certificate files not usable yet");
                        last_failure = Some(reason);
                        warned = false;
                    }
                }
            }
        })
    }

    /// `Ok(true)` when the files differed from what is served and were loaded.
    async fn reload_from_files(&self, cert: &Path, key: &Path) -> Result<bool, TlsError> {
        let read = |what, path: PathBuf| async move {
            tokio::fs::read_to_string(&path)
                .await
                .map_err(|source| TlsError::Read { what, path, source })
        };
        let serving = ServingCertificate {
            cert_pem: read("serving certificate", cert.to_owned()).await?,
            key_pem: read("serving key", key.to_owned()).await?,
        };
        if self.lock().serving == serving {
            return Ok(false);
        }
        let (chain, key_der) = serving.parse_files(cert, key)?;
        self.update(|state| {
            state.serving = serving;
            state.chain = chain;
            state.key = key_der;
        })
        .map_err(|e| match e {
            // Name the files: the caller only sees this through the log.
            TlsError::Invalid { what, message } => TlsError::Invalid {
                what: format!("{what} ({} with {})", cert.display(), key.display()),
                message,
            },
            other => other,
        })?;
        Ok(true)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies `change` to a copy, and publishes it only if rustls accepts the result.
    fn update(&self, change: impl FnOnce(&mut State)) -> Result<(), TlsError> {
        let mut state = self.lock();
        let mut next = State {
            serving: state.serving.clone(),
            chain: state.chain.clone(),
            key: state.key.clone_key(),
            client_verifier: state.client_verifier.clone(),
        };
        change(&mut next);
        let config = server_config(&self.provider, &next)?;
        *state = next;
        self.config.reload_from_config(Arc::new(config));
        Ok(())
    }
}

fn client_verifier(
    provider: &Arc<CryptoProvider>,
    client_ca_pem: Option<&str>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let Some(pem) = client_ca_pem else {
        return Ok(WebPkiClientVerifier::no_client_auth());
    };
    const WHAT: &str = "client CA bundle";
    let roots = parse_roots(WHAT, pem)?;
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| invalid(WHAT, e))
}

fn server_config(provider: &Arc<CryptoProvider>, state: &State) -> Result<ServerConfig, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("TLS configuration", e))?
        .with_client_cert_verifier(state.client_verifier.clone())
        // Also checks that the key belongs to the leaf certificate.
        .with_single_cert(state.chain.clone(), state.key.clone_key())
        .map_err(|e| invalid("serving certificate and key", e))?;
    // kube-apiserver talks HTTP/2 to aggregated servers when offered.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests;
