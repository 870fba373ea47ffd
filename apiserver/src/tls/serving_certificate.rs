//! PEM parsing, and the serving certificate read from files or made self-signed.

use super::{TlsError, invalid};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::fmt;
use std::path::Path;
use std::time::Duration;

/// Every certificate in a PEM bundle; `what` names the source in errors.
fn parse_certificates(what: &str, pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
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
    /// checked when a [`ReloadableTls`](super::ReloadableTls) is built from them.
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

    pub(super) fn parse(
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

    pub(super) fn parse_files(
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
