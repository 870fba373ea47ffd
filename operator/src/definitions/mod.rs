//! Definitions as the compiler sees them: kind, identity and spec, with no trace of
//! where they came from (the cluster or a manifest folder).
//!
//! Every sentence in this file is a message users see: docs/troubleshooting.md lists them.

mod kinds;
mod record;

pub use kinds::{DefinitionKind, DefinitionResource, KindVisitor};
pub use record::ObjectRecord;

use metrics_registry_crds::{
    BackendStatus, CustomPrometheusRulesSpec, ExternalSpec, MetricSpec, MetricStatus,
    MetricsBackendSpec, ResourceMetricsSpec, RulesStatus,
};
use std::fmt;

/// Which object a definition is.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DefinitionId {
    pub kind: DefinitionKind,
    pub namespace: Option<String>,
    pub name: String,
}

impl fmt::Display for DefinitionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(namespace) => write!(f, "{} {namespace}/{}", self.kind.name(), self.name),
            None => write!(f, "{} {}", self.kind.name(), self.name),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum DefinitionBody {
    Metric(MetricSpec),
    External(ExternalSpec),
    Resources(ResourceMetricsSpec),
    Rules(CustomPrometheusRulesSpec),
    // Boxed: much larger than the other specs.
    Backend(Box<MetricsBackendSpec>),
}

/// The `.status` of a definition, typed as the CRDs declare it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum DefinitionStatus {
    Metric(MetricStatus),
    Rules(RulesStatus),
    Backend(BackendStatus),
}

impl DefinitionStatus {
    pub fn conditions(&self) -> &[metrics_registry_crds::Condition] {
        match self {
            DefinitionStatus::Metric(status) => &status.conditions,
            DefinitionStatus::Rules(status) => &status.conditions,
            DefinitionStatus::Backend(status) => &status.conditions,
        }
    }
}

impl DefinitionBody {
    /// The `MetricsBackend` named in `spec.backend`, unless it is the default one.
    pub fn named_backend(&self) -> Option<&str> {
        let backend = match self {
            DefinitionBody::Metric(spec) => spec.backend.as_deref(),
            DefinitionBody::External(spec) => spec.backend.as_deref(),
            DefinitionBody::Resources(spec) => spec.backend.as_deref(),
            DefinitionBody::Rules(_) | DefinitionBody::Backend(_) => None,
        };
        backend.filter(|name| *name != metrics_registry_apiserver::table::DEFAULT_BACKEND)
    }
}

/// One definition in the snapshot the compiler reads.
#[derive(Clone, Debug, PartialEq)]
pub struct Definition {
    pub id: DefinitionId,
    pub generation: Option<i64>,
    /// `metadata.creationTimestamp` (RFC 3339); older definitions win conflicts.
    pub created: Option<String>,
    pub body: DefinitionBody,
}

/// Why an object could not be read as a definition at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("{0}")]
    Invalid(String),
}

/// Reads an object as the resource type of its kind.
struct DecodeBody<'a>(&'a serde_json::Value);

impl KindVisitor for DecodeBody<'_> {
    type Output = Result<DefinitionBody, String>;
    fn visit<K: DefinitionResource>(self, _: DefinitionKind) -> Self::Output {
        serde_json::from_value::<K>(self.0.clone())
            .map(|object| object.body())
            .map_err(|e| e.to_string())
    }
}

impl Definition {
    /// A definition from a typed object as the cluster has it; `None` without a name
    /// (which an API server never sends).
    pub fn from_resource<K: DefinitionResource>(
        kind: DefinitionKind,
        object: &K,
    ) -> Option<Definition> {
        let meta = object.meta();
        Some(Definition {
            id: DefinitionId {
                kind,
                namespace: meta.namespace.clone(),
                name: meta.name.clone()?,
            },
            generation: meta.generation,
            created: meta.creation_timestamp.as_ref().map(|t| t.0.to_string()),
            body: object.body(),
        })
    }

    /// Reads a Kubernetes object (as JSON). `Ok(None)` for objects of other API groups or
    /// kinds, which manifest folders may hold next to definitions (HPAs, Deployments, ...).
    pub fn from_object(object: &serde_json::Value) -> Result<Option<Definition>, DecodeError> {
        let invalid = |message: String| Err(DecodeError::Invalid(message));
        let api_version = object
            .get("apiVersion")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        let kind_name = object.get("kind").and_then(|v| v.as_str()).unwrap_or("");
        if api_version.split('/').next() != Some(metrics_registry_crds::GROUP) {
            return Ok(None);
        }
        if api_version != metrics_registry_crds::API_VERSION {
            return invalid(format!(
                "{kind_name}: apiVersion {api_version} is not served; use {}",
                metrics_registry_crds::API_VERSION
            ));
        }
        let Some(kind) = DefinitionKind::from_name(kind_name) else {
            return invalid(format!("unknown kind {kind_name:?} in {api_version}"));
        };
        let metadata = object.get("metadata");
        let name = metadata
            .and_then(|m| m.get("name"))
            .and_then(|v| v.as_str())
            .unwrap_or("");
        if name.is_empty() {
            return invalid(format!("{kind_name} without metadata.name"));
        }
        let namespace = metadata
            .and_then(|m| m.get("namespace"))
            .and_then(|v| v.as_str());
        let namespace = match (kind.is_namespaced(), namespace) {
            // As kubectl does, a namespaced object without a namespace lands in `default`.
            (true, None) => Some("default".to_string()),
            (true, Some(ns)) => Some(ns.to_string()),
            (false, None) => None,
            (false, Some(ns)) => {
                return invalid(format!(
                    "{kind_name} {name} is cluster-scoped but sets metadata.namespace {ns:?}"
                ));
            }
        };
        let id = DefinitionId {
            kind,
            namespace,
            name: name.to_string(),
        };
        let Some(spec) = object.get("spec") else {
            return invalid(format!("{id}: spec is missing"));
        };
        if let Some(known) = kind.spec_fields()
            && let Some(fields) = spec.as_object()
            && let Some(unknown) = fields.keys().find(|k| !known.contains(&k.as_str()))
        {
            // The resource types ignore unknown fields (as the API server prunes them); in
            // a file a misspelt field would silently do nothing, so it is an error here.
            return invalid(format!(
                "{id}: unknown field spec.{unknown} (known: {})",
                known.join(", ")
            ));
        }
        let body = kind
            .visit(DecodeBody(object))
            .map_err(|e| DecodeError::Invalid(format!("{id}: invalid spec: {e}")))?;
        let generation = metadata
            .and_then(|m| m.get("generation"))
            .and_then(|v| v.as_i64());
        let created = metadata
            .and_then(|m| m.get("creationTimestamp"))
            .and_then(|v| v.as_str())
            .map(str::to_string);
        Ok(Some(Definition {
            id,
            generation,
            created,
            body,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_a_metric_and_defaults_the_namespace() {
        let definition = Definition::from_object(&json!({
            "apiVersion": "metrics-registry.io/v1beta1",
            "kind": "ServiceMetric",
            "metadata": {"name": "rmq"},
            "spec": {"query": "x", "metricName": "rmq_depth"}
        }))
        .unwrap()
        .unwrap();
        assert_eq!(definition.id.to_string(), "ServiceMetric default/rmq");
        let DefinitionBody::Metric(spec) = definition.body else {
            panic!()
        };
        assert_eq!(spec.metric_name.as_deref(), Some("rmq_depth"));
    }

    #[test]
    fn other_groups_are_skipped_and_bad_objects_explained() {
        assert_eq!(
            Definition::from_object(
                &json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler"})
            )
            .unwrap(),
            None
        );
        let err =
            |object: serde_json::Value| Definition::from_object(&object).unwrap_err().to_string();
        assert!(err(json!({"apiVersion": "metrics-registry.io/v1beta1", "kind": "Nope", "metadata": {"name": "a"}})).contains("unknown kind"));
        assert!(
            err(json!({"apiVersion": "metrics-registry.io/v1", "kind": "PodMetric"}))
                .contains("not served")
        );
        assert!(err(json!({"apiVersion": "metrics-registry.io/v1beta1", "kind": "PodMetric", "metadata": {"name": "a"}, "spec": {"querry": "x"}})).contains("unknown field spec.querry"));
        assert!(err(json!({"apiVersion": "metrics-registry.io/v1beta1", "kind": "PodMetric", "metadata": {"name": "a"}, "spec": {}})).contains("query"));
        assert!(err(json!({"apiVersion": "metrics-registry.io/v1beta1", "kind": "ClusterPodMetric", "metadata": {"name": "a", "namespace": "x"}, "spec": {"query": "x"}})).contains("cluster-scoped"));
        assert!(err(json!({"apiVersion": "metrics-registry.io/v1beta1", "kind": "PodMetric", "metadata": {}, "spec": {"query": "x"}})).contains("metadata.name"));
    }
}
