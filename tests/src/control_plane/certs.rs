//! The PKI of a test control plane, generated fresh for every cluster.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// Names the kube-apiserver serving certificate must cover: loopback for the tests, the
/// in-cluster names for anything that resolves the `kubernetes` Service, and its ClusterIP
/// (the first address of `--service-cluster-ip-range`).
const APISERVER_SANS: &[&str] = &[
    "127.0.0.1",
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
    "10.0.0.1",
];

/// id-at-organizationName (2.5.4.10).
const ORGANIZATION_OID: &[u64] = &[2, 5, 4, 10];

/// Common name the apiserver presents to aggregated API servers; they accept only the names
/// in `--requestheader-allowed-names`.
pub const FRONT_PROXY_CLIENT_CN: &str = "front-proxy-client";

/// Which certificate authority signs a certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertAuthority {
    /// `--client-ca-file`: client certificates signed by it authenticate users.
    Cluster,
    /// `--requestheader-client-ca-file`: only the authenticating proxy's certificates.
    FrontProxy,
}

/// A certificate and its PKCS#8 key, as PEM and as files.
#[derive(Clone, Debug)]
pub struct CertFiles {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

pub struct ClusterCerts {
    pub ca_cert_pem: String,
    pub ca_cert_path: PathBuf,
    pub ca_key_path: PathBuf,
    pub front_proxy_ca_cert_pem: String,
    pub front_proxy_ca_path: PathBuf,
    pub front_proxy_client_cert_path: PathBuf,
    pub front_proxy_client_key_path: PathBuf,
    pub front_proxy_client: CertFiles,
    pub apiserver_serving: CertFiles,
    /// CN `admin`, O `system:masters`.
    pub admin: CertFiles,
    /// CN `system:kube-controller-manager`.
    pub controller_manager: CertFiles,
    /// CN `system:kube-scheduler`.
    pub scheduler: CertFiles,
    /// ECDSA P-256 key that signs service-account tokens (PKCS#8).
    pub service_account_key_pem: String,
    pub service_account_key_path: PathBuf,
    /// Public half of the service-account key, which verifies the tokens.
    pub service_account_pub_pem: String,
    pub service_account_pub_path: PathBuf,
    cluster_ca: CertifiedIssuer<'static, KeyPair>,
    front_proxy_ca: CertifiedIssuer<'static, KeyPair>,
}

impl ClusterCerts {
    /// Generates every certificate and writes them into `dir`; `apiserver_ips` are extra
    /// addresses the apiserver's serving certificate must cover.
    pub fn generate(dir: &Path, apiserver_ips: &[String]) -> anyhow::Result<ClusterCerts> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let cluster_ca = new_ca("metrics-registry-test-ca")?;
        let front_proxy_ca = new_ca("metrics-registry-test-front-proxy-ca")?;
        let ca_key_path = dir.join("ca.key");
        write(&ca_key_path, &cluster_ca.key().serialize_pem())?;
        let ca_cert_path = dir.join("ca.crt");
        write(&ca_cert_path, &cluster_ca.pem())?;
        let front_proxy_ca_path = dir.join("front-proxy-ca.crt");
        write(&front_proxy_ca_path, &front_proxy_ca.pem())?;

        let mut apiserver_sans: Vec<&str> = APISERVER_SANS.to_vec();
        apiserver_sans.extend(apiserver_ips.iter().map(String::as_str));
        let apiserver_serving = issue(
            &cluster_ca,
            Leaf {
                cn: "kube-apiserver",
                orgs: &[],
                sans: &apiserver_sans,
                server: true,
            },
        )?
        .write(dir, "apiserver")?;
        let admin =
            issue(&cluster_ca, Leaf::client("admin", &["system:masters"]))?.write(dir, "admin")?;
        let controller_manager = issue(
            &cluster_ca,
            Leaf::client("system:kube-controller-manager", &[]),
        )?
        .write(dir, "controller-manager")?;
        let scheduler = issue(&cluster_ca, Leaf::client("system:kube-scheduler", &[]))?
            .write(dir, "scheduler")?;
        let front_proxy_client = issue(&front_proxy_ca, Leaf::client(FRONT_PROXY_CLIENT_CN, &[]))?
            .write(dir, "front-proxy-client")?;

        let service_account = KeyPair::generate().context("generating the service-account key")?;
        let service_account_key_pem = service_account.serialize_pem();
        let service_account_key_path = dir.join("sa.key");
        write(&service_account_key_path, &service_account_key_pem)?;
        let service_account_pub_pem = service_account.public_key_pem();
        let service_account_pub_path = dir.join("sa.pub");
        write(&service_account_pub_path, &service_account_pub_pem)?;

        Ok(ClusterCerts {
            ca_cert_pem: cluster_ca.pem(),
            ca_cert_path,
            ca_key_path,
            front_proxy_ca_cert_pem: front_proxy_ca.pem(),
            front_proxy_ca_path,
            front_proxy_client_cert_path: front_proxy_client.cert_path.clone(),
            front_proxy_client_key_path: front_proxy_client.key_path.clone(),
            front_proxy_client,
            apiserver_serving,
            admin,
            controller_manager,
            scheduler,
            service_account_key_pem,
            service_account_key_path,
            service_account_pub_pem,
            service_account_pub_path,
            cluster_ca,
            front_proxy_ca,
        })
    }

    /// Replaces the front-proxy CA and the aggregator's client certificate (same files), as
    /// an operator rotating them would; kube-apiserver picks them up when it restarts.
    pub fn rotate_front_proxy(&mut self) -> anyhow::Result<()> {
        let ca = new_ca("metrics-registry-test-front-proxy-ca-rotated")?;
        write(&self.front_proxy_ca_path, &ca.pem())?;
        let dir = self
            .front_proxy_ca_path
            .parent()
            .context("the front-proxy CA has a folder")?
            .to_path_buf();
        self.front_proxy_client = issue(&ca, Leaf::client(FRONT_PROXY_CLIENT_CN, &[]))?
            .write(&dir, "front-proxy-client")?;
        self.front_proxy_ca_cert_pem = ca.pem();
        self.front_proxy_ca = ca;
        Ok(())
    }

    /// A client certificate for `cn` with organizations `orgs`, signed by `authority`;
    /// returns `(cert_pem, key_pem)`. The apiserver maps CN to the user name and O to groups.
    pub fn sign_client_cert(
        &self,
        authority: CertAuthority,
        cn: &str,
        orgs: &[&str],
    ) -> anyhow::Result<(String, String)> {
        let issuer = match authority {
            CertAuthority::Cluster => &self.cluster_ca,
            CertAuthority::FrontProxy => &self.front_proxy_ca,
        };
        let issued = issue(issuer, Leaf::client(cn, orgs))?;
        Ok((issued.cert_pem, issued.key_pem))
    }

    /// A serving certificate for `sans` (IP addresses or DNS names) signed by the cluster CA,
    /// for servers the apiserver or clients with the cluster CA must trust.
    pub fn sign_serving_cert(&self, cn: &str, sans: &[&str]) -> anyhow::Result<(String, String)> {
        let issued = issue(
            &self.cluster_ca,
            Leaf {
                cn,
                orgs: &[],
                sans,
                server: true,
            },
        )?;
        Ok((issued.cert_pem, issued.key_pem))
    }

    /// A serving certificate for 127.0.0.1 and localhost named `cn`, written into `dir`
    /// as `tls.crt` and `tls.key`: what a server under test on loopback is started with.
    pub fn write_loopback_serving_cert(
        &self,
        cn: &str,
        dir: &std::path::Path,
    ) -> anyhow::Result<(std::path::PathBuf, std::path::PathBuf)> {
        let (cert, key) = self.sign_serving_cert(cn, &["127.0.0.1", "localhost"])?;
        let (cert_path, key_path) = (dir.join("tls.crt"), dir.join("tls.key"));
        std::fs::write(&cert_path, cert)?;
        std::fs::write(&key_path, key)?;
        Ok((cert_path, key_path))
    }
}

struct Leaf<'a> {
    cn: &'a str,
    orgs: &'a [&'a str],
    sans: &'a [&'a str],
    server: bool,
}

impl<'a> Leaf<'a> {
    fn client(cn: &'a str, orgs: &'a [&'a str]) -> Self {
        Leaf {
            cn,
            orgs,
            sans: &[],
            server: false,
        }
    }
}

struct Issued {
    cert_pem: String,
    key_pem: String,
}

impl Issued {
    fn write(self, dir: &Path, stem: &str) -> anyhow::Result<CertFiles> {
        let cert_path = dir.join(format!("{stem}.crt"));
        let key_path = dir.join(format!("{stem}.key"));
        write(&cert_path, &self.cert_pem)?;
        write(&key_path, &self.key_pem)?;
        Ok(CertFiles {
            cert_pem: self.cert_pem,
            key_pem: self.key_pem,
            cert_path,
            key_path,
        })
    }
}

/// A client certificate from a CA that nothing trusts, for "wrong CA" tests.
pub fn foreign_client_cert(cn: &str) -> anyhow::Result<(String, String)> {
    let issued = issue(&new_ca("foreign-ca")?, Leaf::client(cn, &[]))?;
    Ok((issued.cert_pem, issued.key_pem))
}

fn new_ca(cn: &str) -> anyhow::Result<CertifiedIssuer<'static, KeyPair>> {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().with_context(|| format!("generating the key of {cn}"))?;
    CertifiedIssuer::self_signed(params, key).with_context(|| format!("self-signing {cn}"))
}

fn issue(issuer: &CertifiedIssuer<'static, KeyPair>, leaf: Leaf<'_>) -> anyhow::Result<Issued> {
    let sans: Vec<String> = leaf.sans.iter().map(|s| (*s).to_owned()).collect();
    let mut params = CertificateParams::new(sans)
        .with_context(|| format!("subject alternative names of {}", leaf.cn))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, leaf.cn);
    // rcgen keeps one value per attribute type, but Kubernetes reads every O as a group; the
    // same OID spelled as a custom type is a second slot, and no third one exists.
    let org_types = [
        DnType::OrganizationName,
        DnType::CustomDnType(ORGANIZATION_OID.to_vec()),
    ];
    if leaf.orgs.len() > org_types.len() {
        bail!(
            "{}: at most {} groups fit in a generated client certificate, got {:?}",
            leaf.cn,
            org_types.len(),
            leaf.orgs
        );
    }
    for (ty, org) in org_types.into_iter().zip(leaf.orgs) {
        params.distinguished_name.push(ty, *org);
    }
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![if leaf.server {
        ExtendedKeyUsagePurpose::ServerAuth
    } else {
        ExtendedKeyUsagePurpose::ClientAuth
    }];
    // Go builds chains by matching the authority key id against the CA's subject key id.
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().with_context(|| format!("generating the key of {}", leaf.cn))?;
    let cert = params
        .signed_by(&key, issuer)
        .with_context(|| format!("signing the certificate of {}", leaf.cn))?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn write(path: &Path, contents: &str) -> anyhow::Result<()> {
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}
