//! How wildcard requests learn which objects a `labelSelector` names. The apiserver
//! only sees this trait; the operator implements it from its watch caches.

use crate::selector::LabelSelector;
use crate::table::ObjectKind;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObjectIndexError {
    /// No cluster to ask (standalone mode).
    #[error("{0}")]
    NoCluster(String),
    /// The cache for this kind is not synced yet.
    #[error("{0}")]
    NotReady(String),
}

/// Resolves object label selectors from memory; never a live LIST per request.
pub trait ObjectIndex: Send + Sync + 'static {
    /// Names of the `kind` objects in `namespace` (all namespaces for cluster-scoped kinds)
    /// whose labels match `selector`.
    fn select(
        &self,
        kind: ObjectKind,
        namespace: Option<&str>,
        selector: &LabelSelector,
    ) -> Result<Vec<String>, ObjectIndexError>;

    /// The value of `label` on the namespace `namespace` (`None`: no such label, or no
    /// such namespace).
    fn namespace_label(
        &self,
        namespace: &str,
        label: &str,
    ) -> Result<Option<String>, ObjectIndexError>;
}

/// Standalone mode: there are no objects to select from.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoCluster;

impl ObjectIndex for NoCluster {
    fn select(
        &self,
        kind: ObjectKind,
        _namespace: Option<&str>,
        _selector: &LabelSelector,
    ) -> Result<Vec<String>, ObjectIndexError> {
        Err(ObjectIndexError::NoCluster(format!(
            "a labelSelector on {} needs a Kubernetes cluster to resolve objects, and this server \
             runs without one (--manifests); ask for a named object, or for * without labelSelector",
            kind.resource()
        )))
    }

    fn namespace_label(
        &self,
        _namespace: &str,
        label: &str,
    ) -> Result<Option<String>, ObjectIndexError> {
        Err(ObjectIndexError::NoCluster(format!(
            "the tenant is the namespace label {label:?}, and this server runs without a cluster \
             to read namespaces from (--manifests); use tenant.value instead"
        )))
    }
}
