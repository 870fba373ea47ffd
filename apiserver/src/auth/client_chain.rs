//! What a client certificate chain proves, worked out once per connection.
//!
//! Verifying a chain and parsing the leaf costs far more than the rest of a request, and
//! a connection's chain never changes. What may change is what we trust: the ConfigMap's
//! CA bundles. So the result is kept on the connection ([`PeerCertificates`]) together
//! with the generation of the trust it was checked against, and worked out again when
//! that generation moved on (a CA retired from the ConfigMap is refused on open
//! connections from its next request), when the leaf expires, and at least every
//! [`REVERIFY_AFTER`].

use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest a verification is reused on one connection.
pub(crate) const REVERIFY_AFTER: Duration = Duration::from_secs(60);

/// The leaf's subject, as Kubernetes reads it.
#[derive(Clone, Debug)]
pub(crate) struct Subject {
    /// The last common name, as Go reads it; empty when there is none.
    pub common_name: String,
    pub organizations: Vec<String>,
    /// Unix seconds.
    not_after: i64,
}

/// The chain checked against one generation of the trusted CAs.
#[derive(Clone, Debug)]
pub struct VerifiedChain {
    generation: u64,
    valid_until: Instant,
    /// `None` when no such CA is configured; `Err` says why the chain does not verify.
    pub(crate) front_proxy: Option<Result<(), String>>,
    pub(crate) client_ca: Option<Result<(), String>>,
    pub(crate) subject: Result<Subject, String>,
}

/// The verifiers of one configuration generation.
pub(crate) struct Trust<'a> {
    pub generation: u64,
    pub front_proxy: Option<&'a Arc<dyn ClientCertVerifier>>,
    pub client_ca: Option<&'a Arc<dyn ClientCertVerifier>>,
}

/// The connection's verification if it still holds for `trust`, else a new one (kept
/// for the next request). `verified` counts the chains actually verified.
pub(crate) fn verified_chain(
    peer: &PeerCertificates,
    trust: &Trust<'_>,
    verified: &std::sync::atomic::AtomicU64,
) -> Option<VerifiedChain> {
    let (leaf, intermediates) = peer.chain().split_first()?;
    let mut slot = peer.verified.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(cached) = slot.as_ref()
        && cached.generation == trust.generation
        && Instant::now() < cached.valid_until
    {
        return Some(cached.clone());
    }
    verified.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let now = UnixTime::now();
    let check = |verifier: &Arc<dyn ClientCertVerifier>| {
        verifier
            .verify_client_cert(leaf, intermediates, now)
            .map(drop)
            .map_err(|e| e.to_string())
    };
    let subject = subject(leaf);
    let mut valid_until = Instant::now() + REVERIFY_AFTER;
    if let Ok(subject) = &subject {
        let left = subject.not_after - now.as_secs() as i64;
        valid_until = valid_until.min(Instant::now() + Duration::from_secs(left.max(0) as u64));
    }
    let chain = VerifiedChain {
        generation: trust.generation,
        valid_until,
        front_proxy: trust.front_proxy.map(check),
        client_ca: trust.client_ca.map(check),
        subject,
    };
    *slot = Some(chain.clone());
    Some(chain)
}

/// Common name (the last one, as Go reads it), organizations and expiry.
fn subject(leaf: &CertificateDer<'_>) -> Result<Subject, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| format!("the client certificate cannot be parsed: {e}"))?;
    let text = |attribute: &x509_parser::x509::AttributeTypeAndValue<'_>| {
        attribute
            .as_str()
            .map(str::to_owned)
            .map_err(|e| format!("the client certificate's subject cannot be read: {e}"))
    };
    let common_name = match cert.subject().iter_common_name().last() {
        Some(attribute) => text(attribute)?,
        None => String::new(),
    };
    let organizations = cert
        .subject()
        .iter_organization()
        .map(text)
        .collect::<Result<_, _>>()?;
    Ok(Subject {
        common_name,
        organizations,
        not_after: cert.validity().not_after.timestamp(),
    })
}

/// The chain the client presented in the TLS handshake, leaf first. Present only
/// when the client sent one, which the handshake has then verified against the
/// client-CA bundle in force at the time. Every request of a connection carries a clone
/// of the same value, so what [`super::Guard`] worked out about the chain is kept
/// here for the connection's next requests.
#[derive(Clone, Debug)]
pub struct PeerCertificates {
    chain: Arc<Vec<CertificateDer<'static>>>,
    pub(crate) verified: Arc<std::sync::Mutex<Option<VerifiedChain>>>,
}

impl PeerCertificates {
    pub fn new(chain: Vec<CertificateDer<'static>>) -> Self {
        PeerCertificates {
            chain: Arc::new(chain),
            verified: Arc::default(),
        }
    }

    /// Leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }
}
