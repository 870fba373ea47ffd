//! Backends as the table carries them: where a rule's queries go and with which headers,
//! compiled from `MetricsBackend` definitions. No clients here; `upstream::Backends` makes
//! them.

use std::fmt;
use std::time::Duration;

/// The backend of the `--prometheus-*` flags, which rules without `spec.backend` use.
pub const DEFAULT_BACKEND: &str = "default";

/// One piece of a tenant header's value template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TenantSegment {
    Literal(String),
    /// The namespace of the object or HPA asked about.
    Namespace,
}

/// Where a request's tenant comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TenantValue {
    /// A template of the namespace's name.
    Template(Vec<TenantSegment>),
    /// A label of the Namespace object.
    NamespaceLabel(String),
}

/// The header naming a multi-tenant backend's tenant, per namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantHeader {
    pub header: String,
    pub value: TenantValue,
}

/// The tenant a template makes of `namespace`.
pub fn render_tenant(template: &[TenantSegment], namespace: &str) -> String {
    template
        .iter()
        .map(|segment| match segment {
            TenantSegment::Literal(text) => text.as_str(),
            TenantSegment::Namespace => namespace,
        })
        .collect()
}

/// A key of a Secret (where Secrets are is the server's business: the cluster, or a
/// folder in standalone mode).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SecretRef {
    pub name: String,
    pub key: String,
}

/// How a backend's queries authenticate.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum BackendAuth {
    #[default]
    None,
    Bearer(SecretRef),
    Basic {
        username: String,
        password: SecretRef,
    },
    OAuth2 {
        token_url: String,
        client_id: String,
        client_secret: SecretRef,
        scopes: Vec<String>,
    },
    /// Credentials from the process' environment.
    SigV4 {
        region: String,
        service: String,
    },
}

/// A backend's CA and client certificate.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct BackendTls {
    pub ca: Option<SecretRef>,
    /// Certificate and key.
    pub identity: Option<(SecretRef, SecretRef)>,
}

impl BackendSpec {
    /// Every Secret key the backend needs.
    pub fn secrets(&self) -> Vec<&SecretRef> {
        let mut secrets = Vec::new();
        match &self.auth {
            BackendAuth::None | BackendAuth::SigV4 { .. } => {}
            BackendAuth::Bearer(token) => secrets.push(token),
            BackendAuth::Basic { password, .. } => secrets.push(password),
            BackendAuth::OAuth2 { client_secret, .. } => secrets.push(client_secret),
        }
        secrets.extend(&self.tls.ca);
        if let Some((cert, key)) = &self.tls.identity {
            secrets.extend([cert, key]);
        }
        secrets
    }
}

/// A named backend, compiled.
#[derive(Clone, PartialEq, Eq)]
pub struct BackendSpec {
    pub url: String,
    pub timeout: Duration,
    pub max_response_bytes: usize,
    /// Sent with every query; values may be secrets, so `Debug` leaves them out.
    pub headers: Vec<(String, String)>,
    pub tenant: Option<TenantHeader>,
    pub auth: BackendAuth,
    pub tls: BackendTls,
    /// Where it comes from, e.g. `MetricsBackend thanos`.
    pub source: String,
}

impl fmt::Debug for BackendSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<&str> = self.headers.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("BackendSpec")
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("headers", &headers)
            .field("tenant", &self.tenant)
            .field("auth", &self.auth)
            .field("tls", &self.tls)
            .field("source", &self.source)
            .finish()
    }
}
