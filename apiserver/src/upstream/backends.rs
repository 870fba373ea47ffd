//! Which [`Upstream`] a rule's query goes to: one per backend and tenant, so single
//! flight, batches and cached answers are never shared between two backends or two
//! tenants — each pair has its own, whatever its queries look like. The tenants of one
//! backend share its connections and its bound on queries in flight.

use super::Upstream;
use crate::error::ApiError;
use crate::objects::ObjectIndex;
use crate::prometheus::{
    InlineSecret, OAuth2Config, PrometheusClient, PrometheusConfig, PrometheusError,
};
use crate::table::{
    BackendAuth, BackendSpec, DEFAULT_BACKEND, SecretRef, TenantValue, render_tenant,
};
use arc_swap::ArcSwap;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio::sync::watch;

/// What the last probe of a backend found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeResult {
    Reachable,
    Unreachable,
    /// The backend (or its OAuth2 token endpoint) refused the credentials.
    AuthRefused,
    /// The TLS handshake failed: CA or certificate.
    TlsError,
    /// No client: a Secret is missing or holds something unusable.
    Unusable,
}

impl ProbeResult {
    pub const ALL: [ProbeResult; 5] = [
        ProbeResult::Reachable,
        ProbeResult::Unreachable,
        ProbeResult::AuthRefused,
        ProbeResult::TlsError,
        ProbeResult::Unusable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProbeResult::Reachable => "Reachable",
            ProbeResult::Unreachable => "Unreachable",
            ProbeResult::AuthRefused => "AuthRefused",
            ProbeResult::TlsError => "TlsError",
            ProbeResult::Unusable => "Unusable",
        }
    }

    fn of(error: &PrometheusError) -> ProbeResult {
        match error {
            PrometheusError::Unreachable { tls: true, .. } => ProbeResult::TlsError,
            PrometheusError::Rejected {
                status: 401 | 403, ..
            }
            | PrometheusError::Token { .. }
            | PrometheusError::AwsCredentials { .. } => ProbeResult::AuthRefused,
            PrometheusError::Credentials { .. } => ProbeResult::Unusable,
            _ => ProbeResult::Unreachable,
        }
    }
}

/// A backend's last probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    pub result: ProbeResult,
    /// What was found, in words (the error, or that it answered).
    pub message: String,
    pub at: SystemTime,
}

/// Where the Secrets backends name are read: the cluster (a cache of the release
/// namespace's Secrets) or, in standalone mode, a folder.
pub trait SecretStore: Send + Sync {
    /// The value of one key of one Secret; the error says what is missing, never a value.
    fn value(&self, secret: &SecretRef) -> Result<InlineSecret, String>;
}

/// No Secrets at all: a backend that needs one says how to provide it.
pub struct NoSecrets(pub &'static str);

impl SecretStore for NoSecrets {
    fn value(&self, secret: &SecretRef) -> Result<InlineSecret, String> {
        Err(format!(
            "cannot read key {:?} of Secret {:?}: {}",
            secret.key, secret.name, self.0
        ))
    }
}

/// Cheap to clone: clones share every backend.
#[derive(Clone)]
pub struct Backends {
    default: Upstream,
    secrets: Arc<dyn SecretStore>,
    /// The specs of the last [`Backends::sync`], for [`Backends::refresh_secrets`]; held
    /// while the backends are rebuilt so that two rebuilds never interleave.
    specs: Arc<Mutex<BTreeMap<String, Arc<BackendSpec>>>>,
    named: Arc<ArcSwap<HashMap<String, Arc<Named>>>>,
    /// Counts probe rounds, so that whoever reports probes knows when to look.
    probed: Arc<watch::Sender<u64>>,
    /// Woken when a backend was added or rebuilt, so that it is probed at once.
    rebuilt: Arc<tokio::sync::Notify>,
}

/// A `MetricsBackend` as served: its client (or why there is none) and its tenants.
struct Named {
    spec: Arc<BackendSpec>,
    /// The Secret values it was built with (or why they could not be read).
    secrets: Result<Vec<InlineSecret>, String>,
    connection: Result<Upstream, String>,
    /// By tenant header value; as many as the namespaces asking.
    tenants: Mutex<HashMap<String, Upstream>>,
    probe: Mutex<Option<Probe>>,
}

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let named = self.named.load();
        f.debug_struct("Backends")
            .field("default", &self.default)
            .field("named", &named.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Backends {
    /// Only the default backend (the `--prometheus-*` flags' Prometheus) until
    /// [`Backends::sync`]; `secrets` is where the others' Secrets are read.
    pub fn new(default: Upstream, secrets: Arc<dyn SecretStore>) -> Self {
        Backends {
            default,
            secrets,
            specs: Arc::new(Mutex::new(BTreeMap::new())),
            named: Arc::new(ArcSwap::from_pointee(HashMap::new())),
            probed: Arc::new(watch::channel(0).0),
            rebuilt: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// Completes when a backend was added or rebuilt since the last call.
    pub async fn rebuilt(&self) {
        self.rebuilt.notified().await;
    }

    /// Asks every named backend whether it answers (its build info, with its credentials
    /// and tenant-less), all at once; then tells [`Backends::probe_rounds`] watchers.
    pub async fn probe_all(&self) {
        let named = self.named.load_full();
        let probes = named.values().map(|named| async move {
            let (result, message) = match &named.connection {
                Err(error) => (ProbeResult::Unusable, error.clone()),
                Ok(upstream) => match upstream.client().ready().await {
                    Ok(()) => (
                        ProbeResult::Reachable,
                        format!("{} answered", upstream.client().url()),
                    ),
                    Err(error) => (ProbeResult::of(&error), error.to_string()),
                },
            };
            *named.probe.lock().unwrap_or_else(|e| e.into_inner()) = Some(Probe {
                result,
                message,
                at: SystemTime::now(),
            });
        });
        futures::future::join_all(probes).await;
        self.probed.send_modify(|rounds| *rounds += 1);
    }

    /// The last probe of the backend named `name`, if it was probed since it changed.
    pub fn last_probe(&self, name: &str) -> Option<Probe> {
        let named = self.named.load();
        let named = named.get(name)?;
        named
            .probe
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Changes after each probe round.
    pub fn probe_rounds(&self) -> watch::Receiver<u64> {
        self.probed.subscribe()
    }

    /// The default backend.
    pub fn default_backend(&self) -> &Upstream {
        &self.default
    }

    /// Makes the named backends those of `specs`: unchanged ones (same spec, same Secret
    /// values) keep their connections, flights and caches; changed and new ones start
    /// afresh; the rest are dropped. Called before the table naming them is published.
    pub fn sync(&self, specs: &BTreeMap<String, Arc<BackendSpec>>) {
        let mut held = self.specs.lock().unwrap_or_else(|e| e.into_inner());
        *held = specs.clone();
        self.rebuild(&held);
    }

    /// Reads every backend's Secrets again and rebuilds those whose values changed (a
    /// Secret was created, rotated or deleted).
    pub fn refresh_secrets(&self) {
        let held = self.specs.lock().unwrap_or_else(|e| e.into_inner());
        self.rebuild(&held);
    }

    fn rebuild(&self, specs: &BTreeMap<String, Arc<BackendSpec>>) {
        let current = self.named.load();
        let mut changed = current.len() != specs.len();
        let named = specs
            .iter()
            .map(|(name, spec)| {
                let secrets = self.read_secrets(spec);
                let kept = current
                    .get(name)
                    .filter(|n| n.spec == *spec && n.secrets == secrets)
                    .cloned();
                let named = kept.unwrap_or_else(|| {
                    changed = true;
                    Arc::new(self.connect(spec.clone(), secrets))
                });
                (name.clone(), named)
            })
            .collect();
        if changed {
            self.named.store(Arc::new(named));
            self.rebuilt.notify_one();
        }
    }

    fn read_secrets(&self, spec: &BackendSpec) -> Result<Vec<InlineSecret>, String> {
        spec.secrets()
            .into_iter()
            .map(|secret| self.secrets.value(secret))
            .collect()
    }

    fn connect(&self, spec: Arc<BackendSpec>, secrets: Result<Vec<InlineSecret>, String>) -> Named {
        let connection = secrets
            .clone()
            .and_then(|values| client_config(&spec, values))
            .and_then(|config| PrometheusClient::new(config).map_err(|error| error.to_string()))
            .map(|client| self.default.sibling(client, true));
        if let Err(error) = &connection {
            tracing::warn!(backend = %spec.source, %error, "backend unusable");
        }
        Named {
            spec,
            secrets,
            connection,
            tenants: Mutex::new(HashMap::new()),
            probe: Mutex::new(None),
        }
    }

    /// The upstream of `backend` for a request in `namespace` (the tenant's, when the
    /// backend has a tenant header; `objects` knows the namespaces' labels).
    pub fn upstream(
        &self,
        backend: &str,
        namespace: &str,
        objects: &dyn ObjectIndex,
    ) -> Result<Upstream, ApiError> {
        if backend == DEFAULT_BACKEND {
            return Ok(self.default.clone());
        }
        let named = self.named.load();
        let Some(named) = named.get(backend) else {
            return Err(ApiError::unavailable(format!(
                "the MetricsBackend {backend:?} is not known to this server yet"
            )));
        };
        let connection = named.connection.as_ref().map_err(|error| {
            ApiError::unavailable(format!("{} cannot be used: {error}", named.spec.source))
        })?;
        let Some(tenant) = &named.spec.tenant else {
            return Ok(connection.clone());
        };
        let value = match &tenant.value {
            TenantValue::Template(template) => render_tenant(template, namespace),
            TenantValue::NamespaceLabel(label) => match objects.namespace_label(namespace, label) {
                Ok(Some(value)) => value,
                Ok(None) => {
                    return Err(ApiError::forbidden(format!(
                        "namespace {namespace:?} has no label {label:?}, which names its tenant on {}; label the namespace to let it read from there",
                        named.spec.source
                    )));
                }
                Err(error) => return Err(ApiError::unavailable(error.to_string())),
            },
        };
        let mut tenants = named.tenants.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(upstream) = tenants.get(&value) {
            return Ok(upstream.clone());
        }
        let client = connection
            .client()
            .with_tenant(&tenant.header, &value)
            .map_err(|error| ApiError::unavailable(format!("{}: {error}", named.spec.source)))?;
        let upstream = connection.sibling(client, false);
        tenants.insert(value, upstream.clone());
        Ok(upstream)
    }
}

/// The client configuration of `spec`, its Secrets' `values` in the order
/// [`BackendSpec::secrets`] lists them.
fn client_config(
    spec: &BackendSpec,
    values: Vec<InlineSecret>,
) -> Result<PrometheusConfig, String> {
    let mut values = values.into_iter();
    let mut next = || {
        values
            .next()
            .ok_or_else(|| "a Secret value is missing".to_owned())
    };
    let mut config = PrometheusConfig::new(spec.url.clone());
    config.timeout = spec.timeout;
    config.max_response_bytes = spec.max_response_bytes;
    config.headers = spec.headers.clone();
    match &spec.auth {
        BackendAuth::None | BackendAuth::SigV4 { .. } => {}
        BackendAuth::Bearer(_) => config.bearer_token = Some(next()?),
        BackendAuth::Basic { username, .. } => {
            config.basic_auth_user = Some(username.clone());
            config.basic_auth_password = Some(next()?);
        }
        BackendAuth::OAuth2 {
            token_url,
            client_id,
            scopes,
            ..
        } => {
            config.oauth2 = Some(OAuth2Config {
                token_url: token_url.clone(),
                client_id: client_id.clone(),
                client_secret: next()?,
                scopes: scopes.clone(),
            });
        }
    }
    if let BackendAuth::SigV4 { region, service } = &spec.auth {
        config.sigv4 = Some(crate::prometheus::SigV4Config {
            region: region.clone(),
            service: service.clone(),
        });
    }
    if spec.tls.ca.is_some() {
        config.ca = Some(next()?);
    }
    if spec.tls.identity.is_some() {
        config.client_identity = Some((next()?, next()?));
    }
    Ok(config)
}
