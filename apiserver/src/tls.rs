//! The serving certificate and the rustls configuration built from it.
//!
//! Both halves change while the process runs: the certificate when its Secret is
//! rotated (files on disk), the client-CA bundle when kube-apiserver rewrites the
//! extension-apiserver-authentication ConfigMap. [`ReloadableTls`] rebuilds the rustls
//! configuration for either and swaps it under the listener, so new connections see
//! the change and open ones keep the configuration they were accepted with.

use axum_server::tls_rustls::RustlsConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::{RootCertStore, ServerConfig};
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

/// Every certificate in a PEM bundle; `what` names the source in errors.
pub(crate) fn parse_certificates(
    what: &str,
    pem: &str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(what, format!("not a PEM certificate bundle: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(what, "no PEM certificate found"));
    }
    Ok(certs)
}

/// Trust anchors from a PEM bundle. Every certificate must be usable: silently
/// skipping one would make clients of that CA fail with a far less helpful error.
pub(crate) fn parse_roots(what: &str, pem: &str) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for (index, der) in parse_certificates(what, pem)?.into_iter().enumerate() {
        roots.add(der).map_err(|e| {
            invalid(
                what,
                format!("certificate #{} is not a usable CA: {e}", index + 1),
            )
        })?;
    }
    Ok(roots)
}

/// A certificate chain (leaf first) and its private key, both PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct ServingCertificate {
    pub cert_pem: String,
    pub key_pem: String,
}

// The key must never reach a log line through `{:?}`.
impl fmt::Debug for ServingCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServingCertificate")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

impl ServingCertificate {
    /// Reads and parses both files; whether the key belongs to the certificate is
    /// checked when a [`ReloadableTls`] is built from them.
    pub fn from_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let read = |what, path: &Path| {
            std::fs::read_to_string(path).map_err(|source| TlsError::Read {
                what,
                path: path.to_owned(),
                source,
            })
        };
        let serving = ServingCertificate {
            cert_pem: read("serving certificate", cert)?,
            key_pem: read("serving key", key)?,
        };
        serving.parse_files(cert, key)?;
        Ok(serving)
    }

    /// Self-signed for these DNS names/IPs (e.g. metrics-registry.ns.svc, localhost,
    /// 127.0.0.1); usable as its own caBundle.
    pub fn self_signed(hosts: &[String]) -> Result<Self, TlsError> {
        const WHAT: &str = "self-signed serving certificate";
        let Some(first) = hosts.first() else {
            return Err(invalid(WHAT, "needs at least one DNS name or IP address"));
        };
        let mut params =
            rcgen::CertificateParams::new(hosts.to_vec()).map_err(|e| invalid(WHAT, e))?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, first.as_str());
        // Not a CA: rustls (webpki) refuses a CA certificate as a server's leaf, and Go
        // trusts a self-signed leaf found verbatim in the caBundle without one.
        params.is_ca = rcgen::IsCa::NoCa;
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        // Backdated a day for clocks running behind ours; ten years because nothing
        // renews this certificate while the process runs, only a restart does.
        let today = jiff::Timestamp::now()
            .to_zoned(jiff::tz::TimeZone::UTC)
            .date();
        let midnight = rcgen::date_time_ymd(
            today.year().into(),
            today.month().unsigned_abs(),
            today.day().unsigned_abs(),
        );
        params.not_before = midnight - Duration::from_secs(24 * 3600);
        params.not_after = midnight + Duration::from_secs(3650 * 24 * 3600);
        let key = rcgen::KeyPair::generate().map_err(|e| invalid(WHAT, e))?;
        let cert = params.self_signed(&key).map_err(|e| invalid(WHAT, e))?;
        Ok(ServingCertificate {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// The PEM an APIService caBundle needs to trust this certificate (for a
    /// self-signed one: itself; for a chain: its last certificate).
    pub fn ca_bundle(&self) -> String {
        const END: &str = "-----END CERTIFICATE-----";
        // Cut from the PEM text rather than re-encoding DER: no base64 dependency, and
        // the bytes are exactly what the operator put in the Secret.
        let Some(end) = self.cert_pem.rfind(END) else {
            return String::new();
        };
        let begin = self.cert_pem[..end]
            .rfind("-----BEGIN CERTIFICATE-----")
            .unwrap_or(0);
        format!("{}\n", &self.cert_pem[begin..end + END.len()])
    }

    fn parse(
        &self,
        cert_what: &str,
        key_what: &str,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
        let chain = parse_certificates(cert_what, &self.cert_pem)?;
        // The parser's message never contains key material, only what it expected.
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).map_err(|e| {
            invalid(
                key_what,
                format!("no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"),
            )
        })?;
        Ok((chain, key))
    }

    fn parse_files(
        &self,
        cert: &Path,
        key: &Path,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
        self.parse(
            &format!("serving certificate {}", cert.display()),
            &format!("serving key {}", key.display()),
        )
    }
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
