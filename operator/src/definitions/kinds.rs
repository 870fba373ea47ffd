//! The eighteen kinds of `metrics-registry.io/v1beta1`, described once. Each names its
//! resource type in the `crds` crate — whose derive gives the CRD, the API resource and
//! the scope — and, for a `*Metric`, the kind of object it measures. Everything else
//! (the compiler, the table, the watches, the statuses) goes through this table; nothing
//! joins kinds by their names.
//!
//! Every sentence in this file is a message users see: docs/troubleshooting.md lists them.

use super::{DefinitionBody, DefinitionStatus};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::core::{ApiResource, NamespaceResourceScope};
use kube::{CustomResourceExt, Resource};
use metrics_registry_apiserver::table::ObjectKind;
use metrics_registry_crds as crds;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::any::TypeId;
use std::fmt::Debug;

/// What every definition resource type offers besides being a Kubernetes resource.
pub trait DefinitionResource:
    Resource<DynamicType = ()>
    + CustomResourceExt
    + Clone
    + Debug
    + DeserializeOwned
    + Serialize
    + Send
    + Sync
    + 'static
{
    fn body(&self) -> DefinitionBody;
    fn definition_status(&self) -> Option<DefinitionStatus>;
}

/// Code generic over the resource type of a kind (a typed watch, a typed decode).
pub trait KindVisitor {
    type Output;
    fn visit<K: DefinitionResource>(self, kind: DefinitionKind) -> Self::Output;
}

fn is_namespaced<K: Resource>() -> bool
where
    K::Scope: 'static,
{
    TypeId::of::<K::Scope>() == TypeId::of::<NamespaceResourceScope>()
}

macro_rules! definition_kinds {
    ($($kind:ident => $resource:ty, $object:expr;)*) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum DefinitionKind {
            $($kind,)*
        }

        impl DefinitionKind {
            pub const ALL: [DefinitionKind; 18] = [$(DefinitionKind::$kind,)*];

            /// The Kind, as in manifests (the resource types carry the same; a test checks).
            pub fn name(self) -> &'static str {
                match self {
                    $(DefinitionKind::$kind => stringify!($kind),)*
                }
            }

            /// The object kind a `*Metric` describes; `None` for the kinds that describe no
            /// object (`ExternalMetric`, `ClusterExternalMetric`, `ResourceMetrics`,
            /// `CustomPrometheusRules`, `MetricsBackend`).
            pub fn object(self) -> Option<ObjectKind> {
                match self {
                    $(DefinitionKind::$kind => $object,)*
                }
            }

            /// Whether objects of this kind live in a namespace.
            pub fn is_namespaced(self) -> bool {
                match self {
                    $(DefinitionKind::$kind => is_namespaced::<$resource>(),)*
                }
            }

            pub fn api_resource(self) -> ApiResource {
                match self {
                    $(DefinitionKind::$kind => ApiResource::erase::<$resource>(&()),)*
                }
            }

            pub fn crd(self) -> CustomResourceDefinition {
                match self {
                    $(DefinitionKind::$kind => <$resource as CustomResourceExt>::crd(),)*
                }
            }

            /// Runs `visitor` with this kind's resource type.
            pub fn visit<V: KindVisitor>(self, visitor: V) -> V::Output {
                match self {
                    $(DefinitionKind::$kind => visitor.visit::<$resource>(self),)*
                }
            }
        }
    };
}

definition_kinds! {
    PodMetric => crds::PodMetric, Some(ObjectKind::Pod);
    ClusterPodMetric => crds::ClusterPodMetric, Some(ObjectKind::Pod);
    ServiceMetric => crds::ServiceMetric, Some(ObjectKind::Service);
    ClusterServiceMetric => crds::ClusterServiceMetric, Some(ObjectKind::Service);
    IngressMetric => crds::IngressMetric, Some(ObjectKind::Ingress);
    ClusterIngressMetric => crds::ClusterIngressMetric, Some(ObjectKind::Ingress);
    DeploymentMetric => crds::DeploymentMetric, Some(ObjectKind::Deployment);
    ClusterDeploymentMetric => crds::ClusterDeploymentMetric, Some(ObjectKind::Deployment);
    StatefulSetMetric => crds::StatefulSetMetric, Some(ObjectKind::StatefulSet);
    ClusterStatefulSetMetric => crds::ClusterStatefulSetMetric, Some(ObjectKind::StatefulSet);
    DaemonSetMetric => crds::DaemonSetMetric, Some(ObjectKind::DaemonSet);
    ClusterDaemonSetMetric => crds::ClusterDaemonSetMetric, Some(ObjectKind::DaemonSet);
    NamespaceMetric => crds::NamespaceMetric, Some(ObjectKind::Namespace);
    ExternalMetric => crds::ExternalMetric, None;
    ClusterExternalMetric => crds::ClusterExternalMetric, None;
    ResourceMetrics => crds::ResourceMetrics, None;
    CustomPrometheusRules => crds::CustomPrometheusRules, None;
    MetricsBackend => crds::MetricsBackend, None;
}

macro_rules! metric_resources {
    ($($resource:ty),*) => {
        $(impl DefinitionResource for $resource {
            fn body(&self) -> DefinitionBody {
                DefinitionBody::Metric(crds::MetricSpec::from(&self.spec))
            }
            fn definition_status(&self) -> Option<DefinitionStatus> {
                self.status.clone().map(DefinitionStatus::Metric)
            }
        })*
    };
}

metric_resources!(
    crds::PodMetric,
    crds::ClusterPodMetric,
    crds::ServiceMetric,
    crds::ClusterServiceMetric,
    crds::IngressMetric,
    crds::ClusterIngressMetric,
    crds::DeploymentMetric,
    crds::ClusterDeploymentMetric,
    crds::StatefulSetMetric,
    crds::ClusterStatefulSetMetric,
    crds::DaemonSetMetric,
    crds::ClusterDaemonSetMetric,
    crds::NamespaceMetric
);

macro_rules! external_resources {
    ($($resource:ty),*) => {
        $(impl DefinitionResource for $resource {
            fn body(&self) -> DefinitionBody {
                DefinitionBody::External(crds::ExternalSpec::from(&self.spec))
            }
            fn definition_status(&self) -> Option<DefinitionStatus> {
                self.status.clone().map(DefinitionStatus::Metric)
            }
        })*
    };
}

external_resources!(crds::ExternalMetric, crds::ClusterExternalMetric);

impl DefinitionResource for crds::ResourceMetrics {
    fn body(&self) -> DefinitionBody {
        DefinitionBody::Resources(self.spec.clone())
    }
    fn definition_status(&self) -> Option<DefinitionStatus> {
        self.status.clone().map(DefinitionStatus::Metric)
    }
}

impl DefinitionResource for crds::CustomPrometheusRules {
    fn body(&self) -> DefinitionBody {
        DefinitionBody::Rules(self.spec.clone())
    }
    fn definition_status(&self) -> Option<DefinitionStatus> {
        self.status.clone().map(DefinitionStatus::Rules)
    }
}

impl DefinitionResource for crds::MetricsBackend {
    fn body(&self) -> DefinitionBody {
        DefinitionBody::Backend(Box::new(self.spec.clone()))
    }
    fn definition_status(&self) -> Option<DefinitionStatus> {
        self.status.clone().map(DefinitionStatus::Backend)
    }
}

impl DefinitionKind {
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// The spec fields of this kind, as manifests spell them (a file's misspelt field is
    /// an error; see `Definition::from_object`). `None` for `CustomPrometheusRules`,
    /// whose spec the resource type checks itself.
    pub fn spec_fields(self) -> Option<&'static [&'static str]> {
        match self {
            DefinitionKind::CustomPrometheusRules => None,
            DefinitionKind::ExternalMetric => {
                Some(&["query", "metricName", "backend", "timeout", "maxAge"])
            }
            DefinitionKind::ClusterExternalMetric => Some(&[
                "query",
                "metricName",
                "backend",
                "timeout",
                "maxAge",
                "namespaceLabel",
            ]),
            DefinitionKind::MetricsBackend => Some(&[
                "url",
                "timeout",
                "maxResponseBytes",
                "auth",
                "tls",
                "headers",
                "tenant",
                "allowedNamespaces",
            ]),
            DefinitionKind::ResourceMetrics => Some(&[
                "cpu",
                "memory",
                "podLabel",
                "namespaceLabel",
                "containerLabel",
                "nodeLabel",
                "windowSeconds",
                "backend",
            ]),
            _ => Some(&[
                "query",
                "metricName",
                "objectLabel",
                "namespaceLabel",
                "windowSeconds",
                "backend",
                "timeout",
                "maxAge",
            ]),
        }
    }

    /// Every CustomResourceDefinition, in the order of SPEC §2.
    pub fn crds() -> Vec<CustomResourceDefinition> {
        Self::ALL.into_iter().map(DefinitionKind::crd).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_scopes_are_the_resource_types_own() {
        for kind in DefinitionKind::ALL {
            let crd = kind.crd();
            assert_eq!(kind.name(), crd.spec.names.kind);
            assert_eq!(kind.api_resource().kind, kind.name());
            assert_eq!(
                kind.is_namespaced(),
                crd.spec.scope == "Namespaced",
                "{}",
                kind.name()
            );
            // Cluster kinds are the `Cluster*` ones (and CustomPrometheusRules,
            // ResourceMetrics, MetricsBackend).
            assert_eq!(
                !kind.is_namespaced(),
                kind.name().starts_with("Cluster")
                    || matches!(
                        kind,
                        DefinitionKind::CustomPrometheusRules
                            | DefinitionKind::ResourceMetrics
                            | DefinitionKind::MetricsBackend
                    ),
                "{}",
                kind.name()
            );
        }
    }

    #[test]
    fn eighteen_kinds_in_one_group_with_status_and_columns() {
        let crds = DefinitionKind::crds();
        assert_eq!(crds.len(), 18);
        for crd in &crds {
            assert_eq!(crd.spec.group, crds::GROUP);
            let version = &crd.spec.versions[0];
            assert_eq!(version.name, crds::VERSION);
            assert!(
                version
                    .subresources
                    .as_ref()
                    .and_then(|s| s.status.as_ref())
                    .is_some(),
                "{} has no status subresource",
                crd.spec.names.kind
            );
            let columns: Vec<_> = version
                .additional_printer_columns
                .iter()
                .flatten()
                .map(|c| c.name.as_str())
                .collect();
            for column in ["Ready", "Reason", "Age", "Message"] {
                assert!(
                    columns.contains(&column),
                    "{}: {columns:?}",
                    crd.spec.names.kind
                );
            }
        }
    }
}
