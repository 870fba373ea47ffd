//! Which [`Upstream`] a rule's query goes to: one per backend and tenant, so single
//! flight, batches and cached answers are never shared between two backends or two
//! tenants — each pair has its own, whatever its queries look like. The tenants of one
//! backend share its connections and its bound on queries in flight.

use super::Upstream;
use crate::error::ApiError;
use crate::prometheus::{PrometheusClient, PrometheusConfig};
use crate::table::{BackendSpec, DEFAULT_BACKEND};
use arc_swap::ArcSwap;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// Cheap to clone: clones share every backend.
#[derive(Clone)]
pub struct Backends {
    default: Upstream,
    named: Arc<ArcSwap<HashMap<String, Arc<Named>>>>,
}

/// A `MetricsBackend` as served: its client (or why there is none) and its tenants.
struct Named {
    spec: Arc<BackendSpec>,
    connection: Result<Upstream, String>,
    /// By tenant header value; as many as the namespaces asking.
    tenants: Mutex<HashMap<String, Upstream>>,
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
    /// Only the default backend (the `--prometheus-*` flags' Prometheus).
    pub fn new(default: Upstream) -> Self {
        Backends {
            default,
            named: Arc::new(ArcSwap::from_pointee(HashMap::new())),
        }
    }

    /// The default backend.
    pub fn default_backend(&self) -> &Upstream {
        &self.default
    }

    /// Makes the named backends those of `specs`: unchanged ones keep their connections,
    /// flights and caches; changed and new ones start afresh; the rest are dropped. Called
    /// before the table naming them is published.
    pub fn sync(&self, specs: &BTreeMap<String, Arc<BackendSpec>>) {
        let current = self.named.load();
        if current.len() == specs.len()
            && specs
                .iter()
                .all(|(name, spec)| current.get(name).is_some_and(|n| n.spec == *spec))
        {
            return;
        }
        let named = specs
            .iter()
            .map(|(name, spec)| {
                let kept = current.get(name).filter(|n| n.spec == *spec).cloned();
                let named = kept.unwrap_or_else(|| Arc::new(self.connect(spec.clone())));
                (name.clone(), named)
            })
            .collect();
        self.named.store(Arc::new(named));
    }

    fn connect(&self, spec: Arc<BackendSpec>) -> Named {
        let mut config = PrometheusConfig::new(spec.url.clone());
        config.timeout = spec.timeout;
        config.max_response_bytes = spec.max_response_bytes;
        config.headers = spec.headers.clone();
        let connection = PrometheusClient::new(config)
            .map(|client| self.default.sibling(client, true))
            .map_err(|error| error.to_string());
        if let Err(error) = &connection {
            tracing::warn!(backend = %spec.source, %error, "backend unusable");
        }
        Named {
            spec,
            connection,
            tenants: Mutex::new(HashMap::new()),
        }
    }

    /// The upstream of `backend` for a request in `namespace` (the tenant's, when the
    /// backend has a tenant header).
    pub fn upstream(&self, backend: &str, namespace: &str) -> Result<Upstream, ApiError> {
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
        let value = tenant.tenant(namespace);
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
